//! /api/conversations over HTTP: create, list with filters and paging, read, update, delete,
//! and data surviving a restart.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn create_read_update_delete() {
    let app = spawn_app(&[]);
    let alice = user("alice", "acme");

    let (status, body) = app
        .post(&alice, "/api/conversations", json!({
            "agentId": "agent-7", "channel": "voice", "contact_id": "contact-1", "title": "Billing",
            "participants": ["bob"], "tags": ["vip", "billing"], "metadata": { "source": "web" }
        }))
        .await;
    assert_eq!(status, 201, "{body}");
    let c = &body["conversation"];
    let id = c["id"].as_str().unwrap().to_string();
    assert_eq!(c["_id"], c["id"]);
    assert_eq!(id.len(), 24);
    assert!(id.chars().all(|ch| ch.is_ascii_hexdigit()));
    assert_eq!(c["agent_id"], "agent-7");
    assert_eq!(c["company_id"], "acme");
    assert_eq!(c["channel"], "voice");
    assert_eq!(c["status"], "active");
    assert_eq!(c["contact_id"], "contact-1");
    assert_eq!(c["participants"], json!(["bob", "alice"]));
    assert_eq!(c["tags"], json!(["vip", "billing"]));
    assert_eq!(c["metadata"]["source"], "web");
    assert_eq!(c["threads"], json!([]));
    assert!(c["started_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(c["started_at"].as_str().unwrap().len(), 24, "ISO with milliseconds");

    let (status, body) = app.get(&alice, &format!("/api/conversations/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(body["conversation"]["title"], "Billing");

    // PUT and PATCH are both partial.
    let (status, body) = app.put(&alice, &format!("/api/conversations/{id}"), json!({ "status": "ended", "ended_at": "2024-05-01T10:00:00.000Z" })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["conversation"]["status"], "ended");
    assert_eq!(body["conversation"]["ended_at"], "2024-05-01T10:00:00.000Z");
    assert_eq!(body["conversation"]["title"], "Billing");
    let (status, body) = app.patch(&alice, &format!("/api/conversations/{id}"), json!({ "tags": ["x"], "title": "Renamed" })).await;
    assert_eq!(status, 200);
    assert_eq!(body["conversation"]["tags"], json!(["x"]));
    assert_eq!(body["conversation"]["status"], "ended");
    assert_eq!(body["conversation"]["title"], "Renamed");

    app.message(&alice, &id, "hello").await;
    let (status, body) = app.delete(&alice, &format!("/api/conversations/{id}")).await;
    assert_eq!((status, body), (200, json!({ "success": true })));
    let (status, body) = app.get(&alice, &format!("/api/conversations/{id}")).await;
    assert_eq!((status, body), (404, json!({ "error": "Conversation not found" })));
    let (status, _) = app.get(&alice, &format!("/api/conversations/{id}/messages")).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn create_validation() {
    let app = spawn_app(&[]);
    let alice = user("alice", "acme");
    for body in [
        json!({ "channel": "chat" }),
        json!({ "agent_id": "a", "channel": "fax" }),
        json!({ "agent_id": { "$gt": "" } }),
        json!({ "agent_id": "a", "tags": "not-a-list" }),
        json!({ "agent_id": "a", "title": "t".repeat(201) }),
    ] {
        let (status, res) = app.post(&alice, "/api/conversations", body.clone()).await;
        assert_eq!(status, 400, "{body} -> {res}");
        assert!(res["error"].is_string());
    }
    let (status, res) = app.put(&alice, "/api/conversations/65a1b2c3d4e5f6a7b8c9d0e1", json!({ "status": "open" })).await;
    assert_eq!(status, 400, "{res}");
    // A malformed body is a 400 with the contract's error shape.
    let res = app
        .http
        .post(app.url("/api/conversations"))
        .bearer_auth(&alice)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(body["error"].is_string());
}

#[tokio::test]
async fn list_filters_and_paging() {
    let app = spawn_app(&[]);
    let alice = user("alice", "acme");
    let mut ids = Vec::new();
    for (i, (channel, tag)) in [("chat", "a"), ("sms", "b"), ("chat", "b"), ("email", "a")].iter().enumerate() {
        let (status, body) = app
            .post(&alice, "/api/conversations", json!({ "agent_id": format!("agent-{}", i % 2), "channel": channel, "tags": [tag], "title": format!("Topic {i}"), "contact_id": format!("c{}", i % 2) }))
            .await;
        assert_eq!(status, 201);
        ids.push(body["conversation"]["id"].as_str().unwrap().to_string());
    }
    app.put(&alice, &format!("/api/conversations/{}", ids[0]), json!({ "status": "archived" })).await;

    let (status, body) = app.get(&alice, "/api/conversations").await;
    assert_eq!(status, 200);
    assert_eq!(body["total"], 4);
    assert_eq!(body["limit"], 50);
    assert_eq!(body["offset"], 0);
    let listed: Vec<&str> = body["conversations"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    let newest_first: Vec<&str> = ids.iter().rev().map(String::as_str).collect();
    assert_eq!(listed, newest_first, "newest started_at first");

    let count = |q: &str| {
        let app = &app;
        let alice = alice.clone();
        let q = q.to_string();
        async move {
            let (status, body) = app.get(&alice, &format!("/api/conversations?{q}")).await;
            assert_eq!(status, 200, "{q}: {body}");
            body["total"].as_u64().unwrap()
        }
    };
    assert_eq!(count("channel=chat").await, 2);
    assert_eq!(count("status=archived").await, 1);
    assert_eq!(count("status=active&channel=chat").await, 1);
    assert_eq!(count("tag=b").await, 2);
    assert_eq!(count("agent_id=agent-1").await, 2);
    assert_eq!(count("contact_id=c0").await, 2);
    assert_eq!(count("q=topic%202").await, 1);
    assert_eq!(count("q=100%25").await, 0, "LIKE wildcards are literal");
    assert_eq!(count("startDate=2000-01-01&endDate=2999-12-31").await, 4);
    assert_eq!(count("endDate=2000-01-01").await, 0);
    assert_eq!(count("startDate=2999-01-01").await, 0);

    let (_, body) = app.get(&alice, "/api/conversations?limit=2&offset=1").await;
    assert_eq!(body["conversations"].as_array().unwrap().len(), 2);
    assert_eq!(body["conversations"][0]["id"], ids[2]);
    assert_eq!((body["limit"].as_u64(), body["offset"].as_u64()), (Some(2), Some(1)));
    let (_, body) = app.get(&alice, "/api/conversations?limit=5000").await;
    assert_eq!(body["limit"], 1000);

    for bad in ["status=open", "channel=fax", "limit=ten", "startDate=yesterday"] {
        let (status, _) = app.get(&alice, &format!("/api/conversations?{bad}")).await;
        assert_eq!(status, 400, "{bad}");
    }
}

/// Control characters in search text, filters and ids get the same 400 on every store
/// (MongoDB refuses a NUL inside a regular expression; it used to answer 500 there).
#[tokio::test]
async fn control_characters_in_filters_and_ids_are_refused_alike() {
    let app = spawn_app(&[]);
    let alice = user("alice", "acme");
    let id = app.conversation(&alice).await;

    for (query, field) in [
        ("q=%00", "q"),
        ("q=a%00b", "q"),
        ("q=%1B%5B0m", "q"),
        ("tag=%00", "tag"),
        ("contact_id=a%00", "contact_id"),
        ("agent_id=%00", "agent_id"),
        ("status=%00", "status"),
        ("channel=%00", "channel"),
    ] {
        let (status, body) = app.get(&alice, &format!("/api/conversations?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"], "Validation failed", "{query}");
        assert_eq!(body["details"][0]["field"], field, "{query}");
    }
    // Tabs and line breaks are control characters too; ordinary text still searches.
    let (status, _) = app.get(&alice, "/api/conversations?q=a%09b").await;
    assert_eq!(status, 400);
    let (status, body) = app.get(&alice, "/api/conversations?q=supp").await;
    assert_eq!((status, body["total"].as_u64()), (200, Some(1)));

    let nul = "a\u{0}b";
    for (body, field) in [
        (json!({ "agent_id": nul }), "agent_id"),
        (json!({ "agent_id": "a", "contact_id": nul }), "contact_id"),
        (json!({ "agent_id": "a", "participants": [nul] }), "participants"),
        (json!({ "agent_id": "a", "tags": [nul] }), "tags"),
    ] {
        let (status, answer) = app.post(&alice, "/api/conversations", body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["details"][0]["field"], field, "{body}");
    }
    let c = format!("/api/conversations/{id}");
    let (status, body) = app.put(&alice, &c, json!({ "tags": ["ok", "\u{7}"] })).await;
    assert_eq!((status, &body["details"][0]["field"]), (400, &json!("tags")), "{body}");
    let (status, body) = app.post(&alice, &format!("{c}/participants"), json!({ "userId": nul })).await;
    assert_eq!((status, &body["details"][0]["field"]), (400, &json!("userId")), "{body}");
    let (status, body) = app.delete(&alice, &format!("{c}/participants/a%00b")).await;
    assert_eq!((status, &body["details"][0]["field"]), (400, &json!("userId")), "{body}");
    let (status, body) = app.get(&alice, &format!("/api/conversations/{}%00", &id[..23])).await;
    assert_eq!((status, &body["error"]), (400, &json!("Invalid id")), "{body}");
    let (status, body) = app.get(&alice, &format!("{c}/messages?thread_id=%00")).await;
    assert_eq!((status, &body["error"]), (400, &json!("Invalid id")), "{body}");
    let m = app.message(&alice, &id, "hello").await;
    let (status, body) = app.patch(&alice, &format!("{c}/messages/{}", m["id"].as_str().unwrap()), json!({ "reaction": "\u{0}" })).await;
    assert_eq!((status, &body["details"][0]["field"]), (400, &json!("reaction")), "{body}");

    // The internal API's ids and filters follow the same rule.
    let (status, body) = app.post(INTERNAL_TOKEN, "/api/internal/messages/list", json!({ "companyId": nul })).await;
    assert_eq!((status, &body["details"][0]["field"]), (400, &json!("companyId")), "{body}");
    let create = json!({ "conversationId": id, "content": "x", "senderType": "agent", "senderId": nul });
    let (status, body) = app.post(INTERNAL_TOKEN, "/api/internal/messages/create", create).await;
    assert_eq!((status, &body["details"][0]["field"]), (400, &json!("senderId")), "{body}");

    // Nothing of that was stored.
    let (_, body) = app.get(&alice, "/api/conversations").await;
    assert_eq!(body["total"], 1);
    let (_, body) = app.get(&alice, &c).await;
    assert_eq!(body["conversation"]["participants"], json!(["alice"]));
    assert_eq!(body["conversation"]["tags"], json!([]));
}

#[tokio::test]
async fn data_survives_a_restart() {
    let app = spawn_app(&[]);
    let alice = user("alice", "acme");
    let id = app.conversation(&alice).await;
    let m = app.message(&alice, &id, "persisted").await;
    let (status, thread) = app.post(&alice, &format!("/api/conversations/{id}/threads"), json!({ "title": "Side" })).await;
    assert_eq!(status, 201);

    let app = app.restart();
    let (status, body) = app.get(&alice, &format!("/api/conversations/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(body["conversation"]["threads"][0]["id"], thread["thread"]["id"]);
    let (_, body) = app.get(&alice, &format!("/api/conversations/{id}/messages")).await;
    assert_eq!(body["messages"][0]["id"], m["id"]);
    assert_eq!(body["messages"][0]["content"], "persisted");
}
