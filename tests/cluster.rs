//! Several nodes serving one set of rooms through a real Redis: two server processes share one
//! database and one Redis, clients sit on different nodes, and every event, presence answer,
//! rate limit and cached read must be the same as on one node. Also: Redis killed and
//! restarted under running nodes.

mod common;

use std::time::Duration;

use common::redis::{shared_url, unique_prefix, RedisServer};
use common::socket::SocketClient;
use common::{spawn_app, spawn_node_sharing, user, TestApp, INTERNAL_TOKEN};
use serde_json::{json, Value};
use tokio::time::Instant;

const COMPANY: &str = "cluster-co";

/// Two nodes on one database and one Redis namespace.
fn two_nodes(redis_url: &str, extra: &[(&str, &str)]) -> (TestApp, TestApp) {
    let prefix = unique_prefix();
    let mut env = vec![("REDIS_URL", redis_url), ("REDIS_PREFIX", prefix.as_str())];
    env.extend_from_slice(extra);
    let a = spawn_app(&env);
    let b = spawn_node_sharing(&a, &env);
    (a, b)
}

async fn client(node: &TestApp, token: &str) -> SocketClient {
    SocketClient::connect(&node.base_url, token).await.expect("socket connects")
}

fn content_is(text: &'static str) -> impl Fn(&Value) -> bool {
    move |m| m["content"] == text
}

fn new_with_content(text: &'static str) -> impl Fn(&Value) -> bool {
    move |e| e["message"]["content"] == text
}

/// Polls `check` until it holds or the deadline passes; returns whether it held.
async fn eventually<F, Fut>(mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn events_caused_on_one_node_reach_clients_on_the_other() {
    let (a, b) = two_nodes(&shared_url(), &[]);
    let alice = user("alice", COMPANY);
    let bob = user("bob", COMPANY);
    let conv = a.conversation(&alice).await;

    let mut on_a = client(&a, &alice).await;
    on_a.join(&conv).await;
    let mut on_b = client(&b, &bob).await;
    on_b.join(&conv).await;
    assert_eq!(on_a.wait_for("user:joined", |e| e["userId"] == "bob").await.data, json!({ "conversationId": conv, "userId": "bob" }));

    // By a socket on node B.
    let ack = on_b.emit_ack("message:send", json!({ "conversationId": conv, "content": "from b" })).await.data;
    assert_eq!(ack["ok"], true, "{ack}");
    let legacy = on_a.wait_for("message", content_is("from b")).await.data;
    assert_eq!(legacy["id"], ack["message"]["id"]);
    let new = on_a.wait_for("message:new", new_with_content("from b")).await.data;
    assert_eq!(new["conversationId"], conv);

    on_b.emit("typing", json!({ "conversationId": conv, "isTyping": true }));
    let typing = on_a.wait_for("typing", |e| e["userId"] == "bob").await.data;
    assert_eq!(typing, json!({ "conversationId": conv, "userId": "bob", "isTyping": true }));
    on_a.wait_for("user:typing", |e| e["userId"] == "bob").await;

    let ack = on_b.emit_ack("thread:create", json!({ "conversationId": conv, "title": "Billing" })).await.data;
    assert_eq!(ack["ok"], true, "{ack}");
    let created = on_a.wait_for("thread:created", |e| e["thread"]["title"] == "Billing").await.data;
    assert_eq!(created["conversationId"], conv);

    // By REST calls that landed on node B.
    let (status, _) = b.post(&bob, &format!("/api/conversations/{conv}/messages"), json!({ "content": "rest on b" })).await;
    assert_eq!(status, 201);
    on_a.wait_for("message:new", new_with_content("rest on b")).await;
    on_a.wait_for("message", content_is("rest on b")).await;

    let (status, _) = b.patch(&bob, &format!("/api/conversations/{conv}"), json!({ "title": "Renamed on b" })).await;
    assert_eq!(status, 200);
    let updated = on_a.wait_for("conversation:updated", |e| e["conversation"]["title"] == "Renamed on b").await.data;
    assert_eq!(updated["conversationId"], conv);

    let (status, _) = b.post(&bob, &format!("/api/conversations/{conv}/threads"), json!({ "title": "Shipping" })).await;
    assert_eq!(status, 201);
    on_a.wait_for("thread:created", |e| e["thread"]["title"] == "Shipping").await;

    // By the internal API on node B.
    let (status, body) = send(
        b.http
            .post(b.url("/api/internal/messages/create"))
            .bearer_auth(INTERNAL_TOKEN)
            .json(&json!({ "conversationId": conv, "content": "internal on b", "senderType": "agent", "messageType": "text" })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    on_a.wait_for("message:new", new_with_content("internal on b")).await;

    // And the other way round, to a client on node B.
    let ack = on_a.emit_ack("message:send", json!({ "conversationId": conv, "content": "from a" })).await.data;
    assert_eq!(ack["ok"], true);
    on_b.wait_for("message:new", new_with_content("from a")).await;
    // The sender's own node delivers to the sender too, exactly once.
    on_a.wait_for("message:new", new_with_content("from a")).await;
    assert_eq!(on_a.count_received("message:new", new_with_content("from a")), 0);
}

async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    common::send(req).await
}

async fn online(node: &TestApp, token: &str, conv: &str) -> Value {
    let (status, body) = node.get(token, &format!("/api/conversations/{conv}/presence")).await;
    assert_eq!(status, 200, "{body}");
    body["online"].clone()
}

#[tokio::test]
async fn presence_is_the_same_on_every_node() {
    let (a, b) = two_nodes(&shared_url(), &[]);
    let alice = user("p-alice", COMPANY);
    let bob = user("p-bob", COMPANY);
    let conv = a.conversation(&alice).await;

    let mut on_a = client(&a, &alice).await;
    on_a.join(&conv).await;
    let mut bob_on_b = client(&b, &bob).await;
    bob_on_b.join(&conv).await;
    for node in [&a, &b] {
        assert_eq!(online(node, &alice, &conv).await, json!(["p-alice", "p-bob"]));
    }

    // Bob opens a second tab on node A: not news to anyone.
    let mut bob_on_a = client(&a, &bob).await;
    bob_on_a.join(&conv).await;
    on_a.wait_for("user:joined", |e| e["userId"] == "p-bob").await;
    on_a.wait_for("user:joined", |e| e["userId"] == "p-bob").await;

    // Closing the tab on node B: bob is still online (his tab on A) and still in the room.
    bob_on_b.close();
    on_a.wait_for("user:left", |e| e["userId"] == "p-bob").await;
    for node in [&a, &b] {
        assert_eq!(online(node, &alice, &conv).await, json!(["p-alice", "p-bob"]));
    }

    // Closing the last one: offline everywhere, announced once.
    bob_on_a.close();
    let offline = on_a.wait_for("presence:update", |e| e["userId"] == "p-bob" && e["status"] == "offline").await.data;
    assert_eq!(offline, json!({ "userId": "p-bob", "status": "offline" }));
    for node in [&a, &b] {
        assert_eq!(online(node, &alice, &conv).await, json!(["p-alice"]));
    }
    assert_eq!(on_a.count_received("presence:update", |e| e["userId"] == "p-bob" && e["status"] == "offline"), 0);
}

#[tokio::test]
async fn a_node_that_dies_does_not_leave_its_users_online() {
    let (a, b) = two_nodes(&shared_url(), &[("PRESENCE_TTL_MS", "1500")]);
    let alice = user("d-alice", COMPANY);
    let bob = user("d-bob", COMPANY);
    let conv = a.conversation(&alice).await;
    let mut on_a = client(&a, &alice).await;
    on_a.join(&conv).await;
    let mut on_b = client(&b, &bob).await;
    on_b.join(&conv).await;
    assert_eq!(online(&a, &alice, &conv).await, json!(["d-alice", "d-bob"]));

    // SIGKILL: node B cleans nothing up.
    drop(b);
    assert!(
        eventually(|| async { online(&a, &alice, &conv).await == json!(["d-alice"]) }).await,
        "the dead node's user is still listed: {}",
        online(&a, &alice, &conv).await
    );
}

#[tokio::test]
async fn a_node_that_stops_takes_its_users_offline_at_once() {
    // The default heartbeat ttl (30 s) is longer than `eventually` waits: only the node's
    // withdrawal on shutdown can make this pass.
    let (a, b) = two_nodes(&shared_url(), &[]);
    let alice = user("s-alice", COMPANY);
    let conv = a.conversation(&alice).await;
    let mut on_a = client(&a, &alice).await;
    on_a.join(&conv).await;
    let mut on_b = client(&b, &user("s-bob", COMPANY)).await;
    on_b.join(&conv).await;
    assert_eq!(online(&a, &alice, &conv).await, json!(["s-alice", "s-bob"]));

    assert!(b.terminate().success());
    assert!(eventually(|| async { online(&a, &alice, &conv).await == json!(["s-alice"]) }).await);
}

#[test]
fn a_node_does_not_start_without_its_redis() {
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chat-service"))
        .current_dir(dir.path())
        .env_clear()
        .env("PORT", "0")
        .env("DATA_DIR", dir.path())
        .env("JWT_SECRET", common::JWT_SECRET)
        .env("REDIS_URL", format!("redis://127.0.0.1:{closed_port}"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot start") && stderr.contains("redis"), "{stderr}");
}

#[tokio::test]
async fn the_rest_rate_limit_counts_requests_to_every_node() {
    let (a, b) = two_nodes(&shared_url(), &[("RATE_LIMIT_MAX", "6")]);
    let token = user("limited", COMPANY);
    let mut remaining = Vec::new();
    for i in 0..6 {
        let node = if i % 2 == 0 { &a } else { &b };
        let res = node.http.get(node.url("/api/conversations")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(res.status(), 200, "request {i}");
        remaining.push(res.headers()["ratelimit-remaining"].to_str().unwrap().to_string());
    }
    assert_eq!(remaining, ["5", "4", "3", "2", "1", "0"]);
    for node in [&a, &b] {
        let (status, body) = node.get(&token, "/api/conversations").await;
        assert_eq!(status, 429, "{body}");
        assert_eq!(body["error"], "Too many requests");
    }
}

#[tokio::test]
async fn the_socket_message_limit_holds_across_nodes() {
    let (a, b) = two_nodes(&shared_url(), &[("SOCKET_MESSAGE_LIMIT", "3")]);
    let spammer = user("spammer", COMPANY);
    let conv = a.conversation(&spammer).await;
    let on_a = client(&a, &spammer).await;
    let on_b = client(&b, &spammer).await;
    for (i, s) in [&on_a, &on_b, &on_a].into_iter().enumerate() {
        let ack = s.emit_ack("message:send", json!({ "conversationId": conv, "content": format!("burst {i}") })).await.data;
        assert_eq!(ack["ok"], true, "send {i}: {ack}");
    }
    let refused = on_b.emit_ack("message:send", json!({ "conversationId": conv, "content": "one too many" })).await.data;
    assert_eq!((refused["ok"].clone(), refused["error"].clone()), (json!(false), json!("Too many requests")));
}

#[tokio::test]
async fn reads_after_a_write_on_the_other_node_are_fresh() {
    let redis_url = shared_url();
    let (a, b) = two_nodes(&redis_url, &[]);
    let alice = user("c-alice", COMPANY);
    let conv = a.conversation(&alice).await;
    let first = a.message(&alice, &conv, "first").await;
    let messages = format!("/api/conversations/{conv}/messages");
    let one = format!("/api/conversations/{conv}");
    let contents = |body: &Value| body["messages"].as_array().unwrap().iter().map(|m| m["content"].clone()).collect::<Vec<_>>();

    // Read on A twice: the second answer comes from the cache and is the same.
    let page_lookups = |hit| format!(r#"chat_cache_{}_total{{entry="message_page"}}"#, if hit { "hits" } else { "misses" });
    let before = a.scrape(None).await;
    let (_, page) = a.get(&alice, &messages).await;
    assert_eq!(contents(&page), [json!("first")]);
    let (_, again) = a.get(&alice, &messages).await;
    assert_eq!(again, page);
    let after = a.scrape(None).await;
    for hit in [false, true] {
        assert_eq!(after.value(&page_lookups(hit)) - before.value(&page_lookups(hit)), 1.0, "one {}", page_lookups(hit));
    }
    let (_, c) = a.get(&alice, &one).await;
    assert_eq!(c["conversation"]["title"], "Support");
    let prefix = a_prefix(&a);
    assert!(cache_entries(&redis_url, &prefix).await > 0, "reads on node A cached nothing");

    // Writes through node B, each followed by a read on node A.
    b.message(&alice, &conv, "second").await;
    let (_, page) = a.get(&alice, &messages).await;
    assert_eq!(contents(&page), [json!("first"), json!("second")]);
    assert_eq!(page["total"], 2);

    let (status, _) = b.patch(&alice, &format!("{messages}/{}", first["id"].as_str().unwrap()), json!({ "content": "first, edited" })).await;
    assert_eq!(status, 200);
    let (_, page) = a.get(&alice, &messages).await;
    assert_eq!(contents(&page), [json!("first, edited"), json!("second")]);

    let (status, _) = b.delete(&alice, &format!("{messages}/{}", first["id"].as_str().unwrap())).await;
    assert_eq!(status, 200);
    let (_, page) = a.get(&alice, &messages).await;
    assert_eq!(contents(&page), [json!("second")]);

    let (status, _) = b.put(&alice, &one, json!({ "title": "Changed on b", "status": "ended" })).await;
    assert_eq!(status, 200);
    let (_, c) = a.get(&alice, &one).await;
    assert_eq!((c["conversation"]["title"].clone(), c["conversation"]["status"].clone()), (json!("Changed on b"), json!("ended")));

    let (status, thread) = b.post(&alice, &format!("{one}/threads"), json!({ "title": "T" })).await;
    assert_eq!(status, 201);
    let tid = thread["thread"]["id"].as_str().unwrap().to_string();
    b.post(&alice, &format!("{one}/threads/{tid}"), json!({ "content": "in thread" })).await;
    let (_, c) = a.get(&alice, &one).await;
    assert_eq!(c["conversation"]["threads"][0]["message_count"], 1);
    let (_, t) = a.get(&alice, &format!("{one}/threads/{tid}")).await;
    assert_eq!(contents(&t), [json!("in thread")]);

    let (status, _) = b.post(&alice, &format!("{one}/participants"), json!({ "userId": "newcomer" })).await;
    assert_eq!(status, 200);
    let (_, c) = a.get(&alice, &one).await;
    assert!(c["conversation"]["participants"].as_array().unwrap().contains(&json!("newcomer")));

    // Another tenant still sees nothing, cached or not.
    let (status, _) = a.get(&user("eve", "other-co"), &one).await;
    assert_eq!(status, 404);

    let (status, _) = b.delete(&alice, &one).await;
    assert_eq!(status, 200);
    let (status, _) = a.get(&alice, &one).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_write_made_directly_in_the_database_shows_up_once_the_entry_expires() {
    // Sibling services write the database without going through any node. Runs on the
    // embedded store, whose file the test writes as such a service would.
    let (a, _b) = two_nodes(&shared_url(), &[("CACHE_TTL_MS", "1000")]);
    let alice = user("o-alice", COMPANY);
    let conv = a.conversation(&alice).await;
    let path = format!("/api/conversations/{conv}");
    let (_, c) = a.get(&alice, &path).await;
    assert_eq!(c["conversation"]["title"], "Support");

    let db = rusqlite::Connection::open(a.data_dir.join("chat.db")).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(db.execute("UPDATE conversations SET title = 'Changed elsewhere' WHERE id = ?1", [&conv]).unwrap(), 1);
    assert!(
        eventually(|| async { a.get(&alice, &path).await.1["conversation"]["title"] == "Changed elsewhere" }).await,
        "the cached conversation never expired"
    );
}

fn a_prefix(node: &TestApp) -> String {
    node.env_value("REDIS_PREFIX").expect("node runs with a prefix")
}

/// Number of cache entries under `prefix` in Redis.
async fn cache_entries(redis_url: &str, prefix: &str) -> usize {
    let client = redis::Client::open(redis_url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}:cache:*")).query_async(&mut conn).await.unwrap();
    keys.iter().filter(|k| !k.contains(":cache:gen:") && !k.ends_with(":cache:epoch")).count()
}

async fn health(node: &TestApp) -> Value {
    let (status, body) = send(node.http.get(node.url("/health"))).await;
    assert_eq!(status, 200, "health must not fail over Redis: {body}");
    body
}

#[tokio::test]
async fn nodes_keep_serving_when_redis_dies_and_rejoin_when_it_returns() {
    let mut redis = RedisServer::start();
    let (a, b) = two_nodes(&redis.url(), &[]);
    let alice = user("k-alice", COMPANY);
    let bob = user("k-bob", COMPANY);
    let conv = a.conversation(&alice).await;
    let mut on_a = client(&a, &alice).await;
    on_a.join(&conv).await;
    let mut also_on_a = client(&a, &user("k-carol", COMPANY)).await;
    also_on_a.join(&conv).await;
    let mut on_b = client(&b, &bob).await;
    on_b.join(&conv).await;
    on_b.emit_ack("message:send", json!({ "conversationId": conv, "content": "before" })).await;
    on_a.wait_for("message:new", new_with_content("before")).await;
    assert_eq!(health(&a).await["checks"]["redis"]["status"], "ok");
    assert_eq!(a.scrape(None).await.value("chat_redis_up"), 1.0);

    redis.kill();

    // Sends succeed on each node, by socket and by REST, and reach that node's own clients.
    let ack = on_a.emit_ack("message:send", json!({ "conversationId": conv, "content": "during, a" })).await.data;
    assert_eq!(ack["ok"], true, "{ack}");
    also_on_a.wait_for("message:new", new_with_content("during, a")).await;
    let ack = on_b.emit_ack("message:send", json!({ "conversationId": conv, "content": "during, b" })).await.data;
    assert_eq!(ack["ok"], true, "{ack}");
    on_b.wait_for("message:new", new_with_content("during, b")).await;
    let (status, _) = b.post(&bob, &format!("/api/conversations/{conv}/messages"), json!({ "content": "rest during" })).await;
    assert_eq!(status, 201);
    let (status, page) = a.get(&alice, &format!("/api/conversations/{conv}/messages")).await;
    assert_eq!(status, 200);
    assert_eq!(page["total"], 4, "every send was stored: {page}");
    assert_eq!(online(&a, &alice, &conv).await, json!(["k-alice", "k-carol"]), "presence falls back to the node's own");
    for node in [&a, &b] {
        assert!(
            eventually(|| async { health(node).await["checks"]["redis"]["status"] == "degraded" }).await,
            "health does not report redis as degraded"
        );
        assert_eq!(health(node).await["status"], "degraded");
        assert_eq!(node.scrape(None).await.value("chat_redis_up"), 0.0);
    }

    redis.restart();

    for node in [&a, &b] {
        assert!(eventually(|| async { health(node).await["status"] == "ok" }).await, "redis never reported back");
    }
    // Cross-node delivery works again (the adapter re-subscribed on its own).
    let ack = on_b.emit_ack("message:send", json!({ "conversationId": conv, "content": "after" })).await.data;
    assert_eq!(ack["ok"], true);
    on_a.wait_for("message:new", new_with_content("after")).await;
    let ack = on_a.emit_ack("message:send", json!({ "conversationId": conv, "content": "after, from a" })).await.data;
    assert_eq!(ack["ok"], true);
    on_b.wait_for("message:new", new_with_content("after, from a")).await;
    // Presence is registered again, the same on both nodes.
    for node in [&a, &b] {
        assert!(
            eventually(|| async { online(node, &alice, &conv).await == json!(["k-alice", "k-bob", "k-carol"]) }).await,
            "presence after recovery: {}",
            online(node, &alice, &conv).await
        );
    }
    // Reads see everything written during the outage (the cache did not keep anything stale).
    let (_, page) = b.get(&bob, &format!("/api/conversations/{conv}/messages")).await;
    assert_eq!(page["total"], 6);
}

#[tokio::test]
async fn a_node_killed_mid_run_loses_no_acknowledged_message() {
    let (a, b) = two_nodes(&shared_url(), &[("SOCKET_MESSAGE_LIMIT", "1000000")]);
    let owner = user("audit-owner", COMPANY);
    let conversation = b.conversation(&owner).await;
    let first = b.message(&owner, &conversation, "audit start").await["id"].as_str().unwrap().to_string();

    let plan = common::audit::AuditPlan {
        nodes: vec![a.base_url.clone(), b.base_url.clone()],
        conversation,
        token: std::sync::Arc::new(|i, sender| user(&format!("audit-{}-{i}", if sender { "sender" } else { "member" }), COMPANY)),
        first_message: first,
        members: 8,
        senders: 4,
        rate: 25,
        duration: Duration::from_secs(6),
    };
    // Node A dies without warning halfway through: its members and senders move to node B.
    let a = std::sync::Arc::new(std::sync::Mutex::new(a));
    let doomed = a.clone();
    let report = common::audit::run(plan, move || doomed.lock().unwrap().kill()).await;
    println!("node loss: {report:?}");
    assert!(report.acknowledged > 100, "{report:?}");
    assert!(report.reconnects >= 4, "node A's members never reconnected: {report:?}");
    // Node A's members recover their sessions on node B (connection state recovery).
    assert_eq!(report.recovered, report.reconnects, "a member had to fall back to catching up: {report:?}");
    assert_eq!(report.missing, 0, "acknowledged messages some member never received: {report:?}");
    drop(a);
}
