//! `/metrics`: every documented metric is served in the Prometheus text format, the values
//! move with socket and REST traffic, and `METRICS_TOKEN` closes it to everyone but bearers of
//! that token and admins.

mod common;

use common::socket::SocketClient;
use common::{now, sign, spawn_app, user};
use serde_json::json;

const COMPANY: &str = "metrics-co";

/// Every metric README "Metrics" documents (`chat_redis_up` only runs with Redis; see
/// tests/cluster.rs).
const DOCUMENTED: &[&str] = &[
    "chat_build_info",
    "chat_connections",
    "chat_rooms",
    "chat_socket_events_received_total",
    "chat_socket_events_emitted_total",
    "chat_messages_sent_total",
    "chat_broadcast_recipients_bucket",
    "chat_broadcast_recipients_sum",
    "chat_broadcast_recipients_count",
    "chat_send_ack_duration_seconds_bucket",
    "chat_send_ack_duration_seconds_count",
    "chat_socket_events_pending",
    "chat_busy_refusals_total",
    "chat_socket_recoveries_total",
    "chat_slow_consumer_disconnects_total",
    "chat_rate_limit_refusals_total",
    "chat_store_operation_duration_seconds_bucket",
    "chat_store_operation_duration_seconds_count",
    "chat_cache_hits_total",
    "chat_cache_misses_total",
    "chat_agent_call_duration_seconds_count",
    "chat_agent_call_failures_total",
    "chat_agent_pending",
    "chat_http_requests_total",
    "chat_audit_records_total",
];

fn admin(id: &str) -> String {
    sign(json!({ "sub": id, "company_id": COMPANY, "app_metadata": { "role": "admin" }, "exp": now() + 3600 }))
}

fn store_kind() -> &'static str {
    if std::env::var("CHAT_TEST_STORE").as_deref() == Ok("mongo") { "mongodb" } else { "sqlite" }
}

#[tokio::test]
async fn a_socket_send_and_a_rest_request_move_the_documented_metrics() {
    let app = spawn_app(&[("SOCKET_MESSAGE_LIMIT", "2")]);
    let token = user("sender", COMPANY);
    let conversation = app.conversation(&token).await;

    let res = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(res.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    let before = app.scrape(None).await;
    for name in DOCUMENTED {
        assert!(before.has(name), "{name} is documented but not served");
    }
    assert_eq!(before.value(&format!(r#"chat_build_info{{version="{}"}}"#, env!("CARGO_PKG_VERSION"))), 1.0);

    let mut member = SocketClient::connect(&app.base_url, &user("member", COMPANY)).await.expect("connect");
    member.join(&conversation).await;
    let mut sender = SocketClient::connect(&app.base_url, &token).await.expect("connect");
    sender.join(&conversation).await;
    let ack = sender.emit_ack("message:send", json!({ "conversationId": conversation, "content": "over the socket" })).await;
    assert_eq!(ack.data["ok"], true, "{}", ack.data);
    app.message(&token, &conversation, "over REST").await;
    member.wait_for("message:new", |m| m["message"]["content"] == "over REST").await;
    // Over the socket limit of 2 sends per window.
    sender.emit_ack("message:send", json!({ "conversationId": conversation, "content": "second" })).await;
    let refused = sender.emit_ack("message:send", json!({ "conversationId": conversation, "content": "third" })).await;
    assert_eq!(refused.data["ok"], false, "{}", refused.data);

    let after = app.scrape(None).await;
    let moved = |series: &str| after.value(series) - before.value(series);
    assert_eq!(moved(r#"chat_socket_events_received_total{event="conversation:join"}"#), 2.0);
    assert_eq!(moved(r#"chat_socket_events_received_total{event="message:send"}"#), 3.0);
    assert_eq!(moved(r#"chat_messages_sent_total{sender_type="user"}"#), 3.0);
    // Legacy events on: `message` and `message:new` for each message.
    assert_eq!(moved(r#"chat_socket_events_emitted_total{event="message:new"}"#), 3.0);
    assert_eq!(moved(r#"chat_socket_events_emitted_total{event="message"}"#), 3.0);
    assert_eq!(moved(r#"chat_socket_events_emitted_total{event="conversation:joined"}"#), 2.0);
    assert_eq!(moved(r#"chat_send_ack_duration_seconds_count{outcome="ok"}"#), 2.0);
    assert_eq!(moved(r#"chat_send_ack_duration_seconds_count{outcome="error"}"#), 1.0);
    assert!(after.value(r#"chat_send_ack_duration_seconds_sum{outcome="ok"}"#) > 0.0);
    assert_eq!(moved(r#"chat_rate_limit_refusals_total{limit="socket_message"}"#), 1.0);
    let store = store_kind();
    assert_eq!(moved(&format!(r#"chat_store_operation_duration_seconds_count{{operation="insert_message",store="{store}"}}"#)), 3.0);
    // A node without Redis answers repeated conversation lookups from memory
    // (`CONVERSATION_CACHE_TTL_MS`): at least the first reaches the store.
    assert!(moved(&format!(r#"chat_store_operation_duration_seconds_count{{operation="get_conversation",store="{store}"}}"#)) >= 1.0);
    assert!(moved(r#"chat_http_requests_total{status="2xx"}"#) >= 1.0);
    assert_eq!(after.value(r#"chat_connections{transport="websocket"}"#), 2.0);
    assert_eq!(after.value(r#"chat_connections{transport="polling"}"#), 0.0);
    assert_eq!(after.value("chat_rooms"), 1.0);
    // Each message's two room broadcasts reached both members of the room (the sender's
    // presence:update, as it connected, may have found one or two).
    let to_two = moved(r#"chat_broadcast_recipients_bucket{le="2"}"#) - moved(r#"chat_broadcast_recipients_bucket{le="1"}"#);
    assert!(to_two >= 6.0, "{to_two} broadcasts to two sockets");
    assert!(moved("chat_broadcast_recipients_sum") >= 12.0);
}

#[tokio::test]
async fn metrics_token_admits_its_bearer_and_admins_only() {
    let app = spawn_app(&[("METRICS_TOKEN", "scrape-secret-0123")]);
    let get = |token: Option<String>| {
        let mut req = app.http.get(app.url("/metrics"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        common::send(req)
    };
    for (token, error) in [
        (None, "Missing or invalid authorization header"),
        (Some("scrape-secret-0124".to_string()), "Invalid or expired token"),
        (Some(user("someone", COMPANY)), "Admin access required"),
        (Some(sign(json!({ "sub": "u", "user_metadata": { "role": "admin" }, "exp": now() + 60 }))), "Admin access required"),
    ] {
        let (status, body) = get(token).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body, json!({ "error": error }));
    }
    assert!(app.scrape(Some("scrape-secret-0123")).await.has("chat_build_info"));
    assert!(app.scrape(Some(&admin("operator"))).await.has("chat_build_info"));
    // The rest of the service is unchanged.
    let (status, _) = common::send(app.http.get(app.url("/health"))).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn metrics_off_records_and_serves_nothing() {
    let app = spawn_app(&[("METRICS", "off")]);
    let (status, body) = common::send(app.http.get(app.url("/metrics"))).await;
    assert_eq!((status, body), (404, json!({ "error": "Not found" })));
    let token = user("quiet", COMPANY);
    let conversation = app.conversation(&token).await;
    let mut client = SocketClient::connect(&app.base_url, &token).await.expect("connect");
    client.join(&conversation).await;
    let ack = client.emit_ack("message:send", json!({ "conversationId": conversation, "content": "still works" })).await;
    assert_eq!(ack.data["ok"], true, "{}", ack.data);
}
