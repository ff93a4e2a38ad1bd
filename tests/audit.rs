//! The audit trail against the real binary: every mutating REST route and socket event leaves
//! exactly one record, with the request id the answer (and the log) carries; the trail is
//! readable by the company's admins only, paged by cursor; refusals are recorded too. On
//! whichever store CHAT_TEST_STORE picks.

mod common;

use std::time::{Duration, Instant};

use common::socket::SocketClient;
use common::{admin, spawn_app, user, widget, TestApp, INTERNAL_TOKEN};
use serde_json::{json, Value};

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";

/// Every record of `admin_token`'s company, newest first, read page by page through the cursor.
async fn trail(app: &TestApp, admin_token: &str, query: &str) -> Vec<Value> {
    let mut records = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/audit?limit=7{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (status, body) = app.get(admin_token, &path).await;
        assert_eq!(status, 200, "{body}");
        records.extend(body["records"].as_array().unwrap().iter().cloned());
        match body["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return records,
        }
    }
}

/// The trail once it holds at least `n` records (they are written in the background).
async fn trail_of_at_least(app: &TestApp, admin_token: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let records = trail(app, admin_token, "").await;
        if records.len() >= n || Instant::now() > deadline {
            return records;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One REST call with its own request id; answers the status and body.
async fn call(app: &TestApp, token: &str, method: &str, path: &str, body: Option<Value>, request_id: &str) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = app.http.request(method, app.url(path)).bearer_auth(token).header("x-request-id", request_id);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.expect("request");
    assert_eq!(res.headers()["x-request-id"], request_id, "the answer carries the request id");
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[tokio::test]
async fn every_mutating_route_and_event_leaves_exactly_one_record() {
    let app = spawn_app(&[]);
    let alice = user("alice", "acme");
    let boss = admin("boss", "acme");
    // (request id, action, transport) of every step.
    let mut expected: Vec<(String, &str, &str)> = Vec::new();
    let mut step = 0;
    let mut next_id = || {
        step += 1;
        format!("walk-{step}")
    };

    let rid = next_id();
    let (status, body) = call(&app, &alice, "POST", "/api/conversations", Some(json!({ "agent_id": "agent-1" })), &rid).await;
    assert_eq!(status, 201, "{body}");
    let c = body["conversation"]["id"].as_str().unwrap().to_string();
    expected.push((rid, "conversation.create", "rest"));

    let steps: Vec<(&str, String, Option<Value>, &str)> = vec![
        ("PUT", format!("/api/conversations/{c}"), Some(json!({ "title": "Renamed" })), "conversation.update"),
        ("PATCH", format!("/api/conversations/{c}"), Some(json!({ "tags": ["vip"] })), "conversation.update"),
        ("POST", format!("/api/conversations/{c}/participants"), Some(json!({ "userId": "bob" })), "participant.add"),
        ("DELETE", format!("/api/conversations/{c}/participants/bob"), None, "participant.remove"),
    ];
    for (method, path, body, action) in steps {
        let rid = next_id();
        let (status, answer) = call(&app, &alice, method, &path, body, &rid).await;
        assert!(status < 300, "{method} {path}: {status} {answer}");
        expected.push((rid, action, "rest"));
    }

    let rid = next_id();
    let (status, body) = call(&app, &alice, "POST", &format!("/api/conversations/{c}/messages"), Some(json!({ "content": "hi" })), &rid).await;
    assert_eq!(status, 201, "{body}");
    let m = body["message"]["id"].as_str().unwrap().to_string();
    expected.push((rid, "message.create", "rest"));
    let message_path = format!("/api/conversations/{c}/messages/{m}");
    for (body, action) in [
        (json!({ "content": "edited" }), "message.edit"),
        (json!({ "reaction": "👍" }), "message.reaction"),
        (json!({ "markAsRead": true }), "message.read"),
    ] {
        let rid = next_id();
        let (status, answer) = call(&app, &alice, "PATCH", &message_path, Some(body), &rid).await;
        assert_eq!(status, 200, "{answer}");
        expected.push((rid, action, "rest"));
    }
    let rid = next_id();
    assert_eq!(call(&app, &alice, "DELETE", &message_path, None, &rid).await.0, 200);
    expected.push((rid, "message.delete", "rest"));

    let rid = next_id();
    let (status, body) = call(&app, &alice, "POST", &format!("/api/conversations/{c}/threads"), Some(json!({ "title": "Billing" })), &rid).await;
    assert_eq!(status, 201, "{body}");
    let t = body["thread"]["id"].as_str().unwrap().to_string();
    expected.push((rid, "thread.create", "rest"));
    let rid = next_id();
    let path = format!("/api/conversations/{c}/threads/{t}");
    assert_eq!(call(&app, &alice, "POST", &path, Some(json!({ "content": "in thread" })), &rid).await.0, 201);
    expected.push((rid, "message.create", "rest"));

    // Attachments: upload, download, delete.
    let (header, body) = common::multipart_file("file", "pixel.png", None, PNG);
    let rid = next_id();
    let res = app
        .http
        .post(app.url(&format!("/api/conversations/{c}/attachments")))
        .bearer_auth(&alice)
        .header("content-type", header)
        .header("x-request-id", &rid)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let a = res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    expected.push((rid, "attachment.upload", "rest"));
    let rid = next_id();
    assert_eq!(call(&app, &alice, "GET", &format!("/api/attachments/{a}"), None, &rid).await.0, 200);
    expected.push((rid, "attachment.download", "rest"));
    let rid = next_id();
    assert_eq!(call(&app, &alice, "DELETE", &format!("/api/attachments/{a}"), None, &rid).await.0, 200);
    expected.push((rid, "attachment.delete", "rest"));

    // The internal API.
    let internal: Vec<(&str, String, Value, &str)> = vec![
        ("POST", "/api/internal/messages/emit".into(), json!({ "conversationId": c, "message": { "content": "relayed" } }), "message.relay"),
        ("POST", "/api/internal/messages/create".into(), json!({ "conversationId": c, "content": "from a service", "senderType": "agent" }), "message.create"),
        ("PATCH", format!("/api/internal/conversations/{c}"), json!({ "status": "ended" }), "conversation.update"),
        ("PUT", format!("/api/internal/conversations/{c}"), json!({ "status": "active" }), "conversation.update"),
        ("PATCH", format!("/api/internal/conversations/{c}/update"), json!({ "status": "ended" }), "conversation.update"),
        ("POST", format!("/api/internal/conversations/{c}/update"), json!({ "status": "active" }), "conversation.update"),
        ("PUT", format!("/api/internal/conversations/{c}/update"), json!({ "status": "ended" }), "conversation.update"),
    ];
    for (method, path, body, action) in internal {
        let rid = next_id();
        let (status, answer) = call(&app, INTERNAL_TOKEN, method, &path, Some(body), &rid).await;
        assert!(status < 300, "{method} {path}: {status} {answer}");
        expected.push((rid, action, "internal"));
    }

    // Socket events: a send and a thread; joins, leaves, typing and switches change nothing.
    let mut socket = SocketClient::connect(&app.base_url, &alice).await.expect("connect");
    socket.join(&c).await;
    socket.emit_ack("typing", json!({ "conversationId": c, "isTyping": true })).await;
    let ack = socket.emit_ack("message:send", json!({ "conversationId": c, "content": "over the socket" })).await;
    assert_eq!(ack.data["ok"], true, "{}", ack.data);
    let socket_message = ack.data["message"]["id"].as_str().unwrap().to_string();
    let ack = socket.emit_ack("thread:create", json!({ "conversationId": c, "title": "Socket thread" })).await;
    assert_eq!(ack.data["ok"], true, "{}", ack.data);
    let socket_thread = ack.data["thread"]["id"].as_str().unwrap().to_string();
    socket.emit_ack("thread:switch", json!({ "conversationId": c, "threadId": socket_thread })).await;
    socket.emit_ack("conversation:leave", json!({ "conversationId": c })).await;

    // Deleting a conversation (another one, so the rest stays readable by id).
    let (_, body) = app.post(&alice, "/api/conversations", json!({ "agent_id": "agent-1" })).await;
    let doomed = body["conversation"]["id"].as_str().unwrap().to_string();
    let rid = next_id();
    assert_eq!(call(&app, &alice, "DELETE", &format!("/api/conversations/{doomed}"), None, &rid).await.0, 200);
    expected.push((rid, "conversation.delete", "rest"));

    // REST steps, the untracked create of `doomed`, and the two socket events.
    let total = expected.len() + 1 + 2;
    let records = trail_of_at_least(&app, &boss, total).await;
    assert_eq!(records.len(), total, "exactly one record per step: {records:#?}");
    for (rid, action, transport) in &expected {
        let matching: Vec<&Value> = records.iter().filter(|r| r["requestId"] == rid.as_str()).collect();
        assert_eq!(matching.len(), 1, "{rid} ({action}): {matching:#?}");
        assert_eq!(matching[0]["action"], *action, "{rid}");
        assert_eq!(matching[0]["transport"], *transport, "{rid}");
        assert_eq!(matching[0]["companyId"], "acme");
        assert_eq!(matching[0]["clientAddress"], "127.0.0.1", "{rid}");
    }
    let by_subject = |id: &str| records.iter().filter(|r| r["subjectId"] == id).cloned().collect::<Vec<_>>();
    let sent = by_subject(&socket_message);
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0]["action"].as_str(), sent[0]["transport"].as_str()), (Some("message.create"), Some("socket")));
    assert_eq!(sent[0]["actor"], json!({ "type": "user", "id": "alice" }));
    assert_eq!(sent[0]["clientAddress"], "127.0.0.1", "a socket event's record names the handshake's address");
    let threaded = by_subject(&socket_thread);
    assert_eq!((threaded.len(), threaded[0]["action"].as_str()), (1, Some("thread.create")));
    let (sent_id, thread_id) = (sent[0]["requestId"].as_str().unwrap(), threaded[0]["requestId"].as_str().unwrap());
    assert_ne!(sent_id, thread_id, "a request id per socket event");
    assert_eq!(sent_id.split(':').next(), thread_id.split(':').next(), "both carry the socket id");
    assert_eq!(records.iter().filter(|r| r["actor"]["type"] == "service").count(), 7);

    // Newest first, no record twice across pages.
    let mut ids: Vec<&str> = records.iter().map(|r| r["id"].as_str().unwrap()).collect();
    let times: Vec<&str> = records.iter().map(|r| r["at"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), total);

    // Filters.
    let edits = trail(&app, &boss, "&action=message.edit").await;
    assert_eq!(edits.len(), 1);
    let by_conversation = trail(&app, &boss, &format!("&conversationId={doomed}")).await;
    assert_eq!(by_conversation.len(), 2, "create and delete of {doomed}");
    assert_eq!(trail(&app, &boss, "&actor=alice").await.len(), total - 7);
    let future = trail(&app, &boss, "&from=2999-01-01").await;
    assert!(future.is_empty());
    assert_eq!(app.get(&boss, "/api/audit?action=message.nuke").await.0, 400);
    assert_eq!(app.get(&boss, "/api/audit?cursor=garbage").await.0, 400);
    assert!(app.panics().is_empty());
}

#[tokio::test]
async fn only_the_companys_admins_read_its_trail_and_refusals_are_recorded() {
    let app = spawn_app(&[("SOCKET_MESSAGE_LIMIT", "1")]);
    let alice = user("alice", "acme");
    let boss = admin("boss", "acme");
    let c = app.conversation(&alice).await;

    assert_eq!(app.get(&alice, "/api/audit").await.0, 403);
    assert_eq!(app.get(&widget(&c, "acme"), "/api/audit").await.0, 403);
    assert_eq!(app.http.get(app.url("/api/audit")).send().await.unwrap().status(), 401);

    // Another company's user asks for acme's conversation: recorded in acme's trail.
    let mallory = user("mallory", "evil-corp");
    assert_eq!(app.get(&mallory, &format!("/api/conversations/{c}")).await.0, 404);
    // A socket over its message limit.
    let mut socket = SocketClient::connect(&app.base_url, &alice).await.expect("connect");
    socket.join(&c).await;
    assert_eq!(socket.emit_ack("message:send", json!({ "conversationId": c, "content": "1" })).await.data["ok"], true);
    assert_eq!(socket.emit_ack("message:send", json!({ "conversationId": c, "content": "2" })).await.data["ok"], false);

    let records = trail_of_at_least(&app, &boss, 4).await;
    let actions: Vec<&str> = records.iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["rate_limit.refused", "message.create", "tenant.cross_attempt", "conversation.create"], "{records:#?}");
    assert_eq!(records[2]["actor"], json!({ "type": "user", "id": "mallory" }));
    assert_eq!(records[2]["conversationId"], c.as_str());
    assert_eq!(records[0]["detail"], "message:send");

    // evil-corp's admin sees none of it.
    let evil_boss = admin("evil-boss", "evil-corp");
    let (status, body) = app.get(&evil_boss, "/api/audit").await;
    assert_eq!(status, 200);
    assert!(body["records"].as_array().unwrap().is_empty(), "{body}");
    assert!(app.panics().is_empty());
}

/// Sends a message, stops the node with SIGTERM (which writes what is queued) and starts it
/// again; answers how many records its company's trail holds then.
async fn records_after_a_send_and_a_restart(env: &[(&str, &str)]) -> usize {
    let app = spawn_app(env);
    let alice = user("alice", "acme");
    let c = app.conversation(&alice).await;
    app.message(&alice, &c, "hello").await;
    let (status, _, app) = app.terminate_and_restart();
    assert!(status.success(), "{status:?}");
    let (code, body) = app.get(&admin("boss", "acme"), "/api/audit").await;
    assert_eq!(code, 200, "{body}");
    body["records"].as_array().unwrap().len()
}

#[tokio::test]
async fn queued_records_are_written_on_shutdown() {
    assert_eq!(records_after_a_send_and_a_restart(&[]).await, 2, "conversation.create and message.create");
}

#[tokio::test]
async fn audit_off_records_nothing() {
    assert_eq!(records_after_a_send_and_a_restart(&[("AUDIT", "off")]).await, 0);
}
