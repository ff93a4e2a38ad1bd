//! Messages over HTTP: posting, paging, the main thread, edits, reactions, read receipts,
//! deletes, validation and sanitization.

mod common;

use common::*;
use common::socket::SocketClient;
use serde_json::{json, Value};

#[tokio::test]
async fn post_and_page_messages() {
    let app = spawn_app(&[]);
    let alice = user("alice", "acme");
    let id = app.conversation(&alice).await;

    let (status, body) = app
        .post(&alice, &format!("/api/conversations/{id}/messages"), json!({
            "content": "  first  ", "messageType": "image",
            "attachments": [{ "url": "https://cdn.test/a.png", "type": "image/png", "name": "a.png", "size": 10 }],
            "tempId": "t1"
        }))
        .await;
    assert_eq!(status, 201, "{body}");
    let m = &body["message"];
    assert_eq!(m["_id"], m["id"]);
    assert_eq!(m["conversation_id"], id.as_str());
    assert_eq!(m["content"], "first");
    assert_eq!(m["message_type"], "image");
    assert_eq!(m["sender_type"], "user");
    assert_eq!(m["sender_id"], "alice");
    assert_eq!(m["role"], "user");
    assert_eq!(m["attachments"][0]["name"], "a.png");
    assert!(m["thread_id"].is_null());

    // Attachments as a JSON string (as deployed clients send them); invalid entries dropped.
    let attachments = json!([{ "url": "https://cdn.test/b.pdf", "type": "file", "name": "b.pdf" }, { "url": "javascript:alert(1)", "type": "file", "name": "x" }]).to_string();
    let (status, body) = app.post(&alice, &format!("/api/conversations/{id}/messages"), json!({ "content": "second", "attachments": attachments })).await;
    assert_eq!(status, 201);
    assert_eq!(body["message"]["attachments"].as_array().unwrap().len(), 1);

    for i in 3..=12 {
        app.message(&alice, &id, &format!("m{i}")).await;
    }
    let (status, body) = app.get(&alice, &format!("/api/conversations/{id}/messages?limit=5")).await;
    assert_eq!(status, 200);
    assert_eq!(body["total"], 12);
    assert_eq!((body["limit"].as_u64(), body["offset"].as_u64()), (Some(5), Some(0)));
    let contents: Vec<&str> = body["messages"].as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap()).collect();
    assert_eq!(contents, ["m8", "m9", "m10", "m11", "m12"], "the newest page, in chronological order");
    let (_, body) = app.get(&alice, &format!("/api/conversations/{id}/messages?limit=5&offset=10")).await;
    let contents: Vec<&str> = body["messages"].as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap()).collect();
    assert_eq!(contents, ["first", "second"]);
    let (_, body) = app.get(&alice, &format!("/api/conversations/{id}/messages?limit=500")).await;
    assert_eq!(body["limit"], 100);
    let (_, body) = app.get(&alice, &format!("/api/conversations/{id}/messages?offset=50")).await;
    assert_eq!(body["messages"], json!([]));
    assert_eq!(body["total"], 12);
}

#[tokio::test]
async fn main_thread_excludes_thread_messages() {
    let app = spawn_app(&[]);
    let alice = user("alice", "acme");
    let id = app.conversation(&alice).await;
    let (_, t) = app.post(&alice, &format!("/api/conversations/{id}/threads"), json!({ "title": "Side" })).await;
    let tid = t["thread"]["id"].as_str().unwrap();
    app.message(&alice, &id, "main").await;
    let (status, body) = app.post(&alice, &format!("/api/conversations/{id}/messages"), json!({ "content": "in thread", "threadId": tid })).await;
    assert_eq!(status, 201);
    assert_eq!(body["message"]["thread_id"], tid);

    let (_, body) = app.get(&alice, &format!("/api/conversations/{id}/messages")).await;
    assert_eq!(body["total"], 1);
    assert_eq!(body["messages"][0]["content"], "main");
    let (_, body) = app.get(&alice, &format!("/api/conversations/{id}/messages?thread_id={tid}")).await;
    assert_eq!(body["total"], 1);
    assert_eq!(body["messages"][0]["content"], "in thread");

    let (status, body) = app.post(&alice, &format!("/api/conversations/{id}/messages"), json!({ "content": "x", "threadId": "6f1c0d4e-1b2a-4c3d-8e9f-0a1b2c3d4e5f" })).await;
    assert_eq!((status, body), (404, json!({ "error": "Thread not found" })));
}

#[tokio::test]
async fn message_validation_and_sanitization() {
    let app = spawn_app(&[]);
    let alice = user("alice", "acme");
    let id = app.conversation(&alice).await;
    let path = format!("/api/conversations/{id}/messages");
    for body in [
        json!({ "content": "" }),
        json!({ "content": "   " }),
        json!({ "content": "x".repeat(20_000) }),
        json!({ "content": { "$gt": "" } }),
        json!({ "content": "ok", "messageType": "gif" }),
        json!({ "content": "ok", "messageType": "system" }),
        json!({ "content": "ok", "threadId": { "$ne": null } }),
        json!(["content"]),
    ] {
        let (status, res) = app.post(&alice, &path, body.clone()).await;
        assert_eq!(status, 400, "{body} -> {res}");
        assert_eq!(res["error"], "Invalid message data", "{res}");
        assert!(res["details"].is_array());
    }
    let (status, _) = app.post(&alice, &path, json!({ "content": "x".repeat(10_000) })).await;
    assert_eq!(status, 201);

    let dirty = "hi <script>alert(1)</script><img src=x onerror=alert(2)><a href=\"javascript:alert(3)\">link</a> <b>bold</b>";
    let m = app.message(&alice, &id, dirty).await;
    let content = m["content"].as_str().unwrap();
    assert!(!content.contains("<script"), "{content}");
    assert!(!content.contains("onerror"), "{content}");
    assert!(!content.contains("javascript:"), "{content}");
    assert!(content.contains("hi") && content.contains("link") && content.contains("bold"), "{content}");
    let (status, _) = app.post(&alice, &path, json!({ "content": "<script>alert(1)</script>" })).await;
    assert_eq!(status, 400, "nothing left once unsafe markup is removed");

    for bad_id in ["not-an-id", "65a1b2c3d4e5f6a7b8c9d0e", "%7B%22%24gt%22%3A%22%22%7D"] {
        let (status, _) = app.get(&alice, &format!("/api/conversations/{bad_id}/messages")).await;
        assert_eq!(status, 400, "{bad_id}");
    }
}

#[tokio::test]
async fn edit_react_read_and_delete() {
    let app = spawn_app(&[]);
    let alice = user("alice", "acme");
    let bob = user("bob", "acme");
    let id = app.conversation(&alice).await;
    let m = app.message(&alice, &id, "original").await;
    let mid = m["id"].as_str().unwrap();
    let path = format!("/api/conversations/{id}/messages/{mid}");

    let (status, body) = app.patch(&bob, &path, json!({ "content": "hijack" })).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = app.patch(&alice, &path, json!({ "content": "edited <script>x</script>" })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"]["content"], "edited");
    assert!(body["message"]["metadata"]["edited_at"].is_string());

    let (_, body) = app.patch(&bob, &path, json!({ "reaction": "👍" })).await;
    assert_eq!(body["message"]["metadata"]["reactions"][0]["emoji"], "👍");
    assert_eq!(body["message"]["metadata"]["reactions"][0]["user_id"], "bob");
    let (_, body) = app.patch(&alice, &path, json!({ "reaction": "👍" })).await;
    assert_eq!(body["message"]["metadata"]["reactions"].as_array().unwrap().len(), 2);
    let (_, body) = app.patch(&bob, &path, json!({ "reaction": "👍" })).await;
    assert_eq!(body["message"]["metadata"]["reactions"].as_array().unwrap().len(), 1, "same emoji again toggles it off");
    let (_, body) = app.patch(&alice, &path, json!({ "reaction": null })).await;
    assert_eq!(body["message"]["metadata"]["reactions"], json!([]));

    let (status, body) = app.patch(&bob, &path, json!({ "markAsRead": true })).await;
    assert_eq!(status, 200);
    assert!(body["message"]["metadata"]["read_at"].is_string());
    let (status, _) = app.patch(&bob, &path, json!({})).await;
    assert_eq!(status, 400);
    let (status, _) = app.patch(&bob, &path, json!({ "reaction": 5 })).await;
    assert_eq!(status, 400);

    let (status, _) = app.delete(&bob, &path).await;
    assert_eq!(status, 403);
    let (status, body) = app.delete(&alice, &path).await;
    assert_eq!((status, body), (200, json!({ "success": true })));
    let (_, body) = app.get(&alice, &format!("/api/conversations/{id}/messages")).await;
    assert_eq!(body["total"], 0, "deleted messages are never listed again");
    let (status, body) = app.patch(&alice, &path, json!({ "markAsRead": true })).await;
    assert_eq!((status, body), (404, json!({ "error": "Message not found" })));
    let (status, _) = app.delete(&alice, &path).await;
    assert_eq!(status, 404);
    let (status, _) = app.delete(&alice, &format!("/api/conversations/{id}/messages/zz")).await;
    assert_eq!(status, 400);
}

/// Attachments a client sends, as REST and `message:send` both take them: one with markup in
/// its URL and name, one whose type is markup, one of the category form the deployed
/// clients send, one `javascript:` link.
fn hostile_attachments() -> Value {
    json!([
        { "url": "https://cdn.test/a\"><script>alert(1)</script>.png?x=\"<y>", "type": "image/png", "name": "<img src=x onerror=alert(1)>a.png", "size": 10 },
        { "url": "https://cdn.test/b.png", "type": "<svg onload=alert(1)>", "name": "b.png" },
        { "url": "https://cdn.test/c.png", "type": "image", "name": "c.png" },
        { "url": "javascript:alert(1)", "type": "image/png", "name": "d.png" },
    ])
}

/// What is kept of `hostile_attachments`: the URL percent-encoded, the name without its
/// handler, the markup type and the script link dropped.
fn cleaned_attachments() -> Value {
    json!([
        { "url": "https://cdn.test/a%22%3E%3Cscript%3Ealert(1)%3C/script%3E.png?x=%22%3Cy%3E", "type": "image/png", "name": "<img src=\"x\">a.png", "size": 10 },
        { "url": "https://cdn.test/c.png", "type": "image", "name": "c.png" },
    ])
}

/// Attachment fields and metadata strings are cleaned before they are stored or broadcast,
/// whether they come over REST, a socket or the internal API.
#[tokio::test]
async fn attachments_and_metadata_are_cleaned_before_storing_and_broadcasting() {
    let app = spawn_app(&[]);
    let alice = user("alice", "acme");
    let id = app.conversation(&alice).await;
    let mut listener = SocketClient::connect(&app.base_url, &alice).await.expect("socket connects");
    listener.join(&id).await;
    let sender = SocketClient::connect(&app.base_url, &user("bob", "acme")).await.expect("socket connects");

    // REST
    let path = format!("/api/conversations/{id}/messages");
    let (status, body) = app.post(&alice, &path, json!({ "content": "over rest", "attachments": hostile_attachments() })).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["message"]["attachments"], cleaned_attachments());
    let event = listener.wait_for("message:new", |e| e["message"]["content"] == "over rest").await;
    assert_eq!(event.data["message"]["attachments"], cleaned_attachments());

    // Socket.IO, with the attachments as a JSON string as the deployed clients send them.
    let payload = json!({ "conversationId": id, "content": "over socket", "attachments": hostile_attachments().to_string() });
    let ack = sender.emit_ack("message:send", payload).await;
    assert_eq!(ack.data["ok"], true, "{}", ack.data);
    assert_eq!(ack.data["message"]["attachments"], cleaned_attachments());
    let event = listener.wait_for("message:new", |e| e["message"]["content"] == "over socket").await;
    assert_eq!(event.data["message"]["attachments"], cleaned_attachments());

    let (_, body) = app.get(&alice, &path).await;
    for m in body["messages"].as_array().unwrap() {
        assert_eq!(m["attachments"], cleaned_attachments(), "stored: {m}");
    }

    // Metadata string values, at any depth, on create, update and the internal API.
    let hostile = json!({ "note": "<img src=x onerror=alert(1)>hi", "nested": { "list": ["<script>alert(1)</script>ok", 3, true] } });
    let cleaned = json!({ "note": "<img src=\"x\">hi", "nested": { "list": ["ok", 3, true] } });
    let (status, body) = app.post(&alice, "/api/conversations", json!({ "agent_id": "a", "metadata": hostile })).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["conversation"]["metadata"], cleaned);
    let (_, body) = app.get(&alice, &format!("/api/conversations/{}", body["conversation"]["id"].as_str().unwrap())).await;
    assert_eq!(body["conversation"]["metadata"], cleaned);

    let (status, body) = app.patch(&alice, &format!("/api/conversations/{id}"), json!({ "metadata": hostile })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["conversation"]["metadata"], cleaned);
    let event = listener.wait_for("conversation:updated", |e| e["conversation"]["metadata"] != json!({})).await;
    assert_eq!(event.data["conversation"]["metadata"], cleaned);

    let internal = format!("/api/internal/conversations/{id}");
    let (status, body) = app.patch(INTERNAL_TOKEN, &internal, json!({ "metadata": { "from_service": "<script>x</script>kept" } })).await;
    assert_eq!(status, 200, "{body}");
    let (_, body) = app.get(&alice, &format!("/api/conversations/{id}")).await;
    assert_eq!(body["conversation"]["metadata"]["from_service"], "kept");

    let create = json!({ "conversationId": id, "content": "from a service", "senderType": "agent", "metadata": hostile });
    let (status, body) = app.post(INTERNAL_TOKEN, "/api/internal/messages/create", create).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"]["metadata"], cleaned);
    let event = listener.wait_for("message:new", |e| e["message"]["content"] == "from a service").await;
    assert_eq!(event.data["message"]["metadata"], cleaned);
}

fn contents_of(body: &serde_json::Value) -> Vec<&str> {
    body["messages"].as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn messages_after_a_given_one() {
    let app = spawn_app(&[]);
    let alice = user("alice", "acme");
    let id = app.conversation(&alice).await;
    let (_, t) = app.post(&alice, &format!("/api/conversations/{id}/threads"), json!({ "title": "Side" })).await;
    let tid = t["thread"]["id"].as_str().unwrap().to_string();
    let mut ids = Vec::new();
    for i in 1..=7 {
        ids.push(app.message(&alice, &id, &format!("m{i}")).await["id"].as_str().unwrap().to_string());
        if i == 3 {
            let (status, _) = app.post(&alice, &format!("/api/conversations/{id}/messages"), json!({ "content": "in thread", "threadId": tid })).await;
            assert_eq!(status, 201);
        }
    }
    let path = |query: &str| format!("/api/conversations/{id}/messages?{query}");

    let (status, body) = app.get(&alice, &path(&format!("after={}&limit=3", ids[1]))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(contents_of(&body), ["m3", "m4", "m5"], "oldest first, main thread only");
    assert_eq!((body["total"].as_u64(), body["limit"].as_u64(), body["offset"].as_u64()), (Some(5), Some(3), Some(0)));
    assert_eq!(body["hasMore"], true);
    let (_, body) = app.get(&alice, &path(&format!("after={}&limit=3", ids[4]))).await;
    assert_eq!(contents_of(&body), ["m6", "m7"]);
    assert_eq!((body["total"].as_u64(), body["hasMore"].as_bool()), (Some(2), Some(false)));
    let (_, body) = app.get(&alice, &path(&format!("after={}", ids[6]))).await;
    assert_eq!((body["messages"].clone(), body["hasMore"].clone(), body["limit"].clone()), (json!([]), json!(false), json!(50)));
    let (_, body) = app.get(&alice, &path(&format!("after={}&thread_id={tid}", ids[0]))).await;
    assert_eq!(contents_of(&body), ["in thread"], "thread_id as in the listing; the anchor may be in another thread");
    let (_, body) = app.get(&alice, &path(&format!("after={}&limit=500", ids[0]))).await;
    assert_eq!(body["limit"], 100);

    // Deleted messages never appear; a deleted message still works as the anchor.
    let (status, _) = app.delete(&alice, &format!("/api/conversations/{id}/messages/{}", ids[5])).await;
    assert_eq!(status, 200);
    let (_, body) = app.get(&alice, &path(&format!("after={}", ids[4]))).await;
    assert_eq!(contents_of(&body), ["m7"]);
    let (status, body) = app.get(&alice, &path(&format!("after={}", ids[5]))).await;
    assert_eq!((status, contents_of(&body)), (200, vec!["m7"]));

    // Not a message of this conversation: 404, as for any id that names nothing here.
    let other = app.conversation(&alice).await;
    let foreign = app.message(&alice, &other, "elsewhere").await["id"].as_str().unwrap().to_string();
    for after in [foreign.as_str(), "aaaaaaaaaaaaaaaaaaaaaaaa"] {
        let (status, body) = app.get(&alice, &path(&format!("after={after}"))).await;
        assert_eq!((status, body), (404, json!({ "error": "Message not found" })));
    }
    let (status, body) = app.get(&user("mallory", "globex"), &path(&format!("after={}", ids[0]))).await;
    assert_eq!((status, body), (404, json!({ "error": "Conversation not found" })));
    for bad in ["after=nope", "after=%7B%22%24gt%22%3A%22%22%7D", "offset=2&after=aaaaaaaaaaaaaaaaaaaaaaaa"] {
        let (status, body) = app.get(&alice, &path(bad)).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
}

#[tokio::test]
async fn catching_up_page_by_page_skips_and_repeats_nothing() {
    let app = spawn_app(&[]);
    let alice = user("alice", "acme");
    let id = app.conversation(&alice).await;
    let first = app.message(&alice, &id, "first").await["id"].as_str().unwrap().to_string();
    // Concurrent posts: many share a millisecond.
    let post_path = format!("/api/conversations/{id}/messages");
    let posts = (0..60).map(|i| app.post(&alice, &post_path, json!({ "content": format!("c{i}") })));
    for (status, body) in futures_util::future::join_all(posts).await {
        assert_eq!(status, 201, "{body}");
    }
    let (_, listed) = app.get(&alice, &format!("/api/conversations/{id}/messages?limit=100")).await;
    let listed: Vec<String> = listed["messages"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(listed.len(), 61);

    let mut walked = vec![first];
    loop {
        let (status, body) =
            app.get(&alice, &format!("/api/conversations/{id}/messages?after={}&limit=7", walked.last().unwrap())).await;
        assert_eq!(status, 200, "{body}");
        walked.extend(body["messages"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()));
        if body["hasMore"] == false {
            break;
        }
    }
    assert_eq!(walked, listed, "pages after the last id received add up to the listing");
}
