//! /api/internal: the service-to-service API behind INTERNAL_SERVICE_TOKEN.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn internal_create_emit_list_and_update() {
    let app = spawn_app(&[]);
    let alice = user("alice", "acme");
    let id = app.conversation(&alice).await;

    let (status, body) = app
        .post(INTERNAL_TOKEN, "/api/internal/messages/create", json!({
            "conversationId": id, "content": "transcribed speech", "senderType": "agent", "metadata": { "call_id": "c1" }
        }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true);
    let m = &body["message"];
    assert_eq!(m["message_type"], "audio", "internal messages default to audio");
    assert_eq!(m["sender_type"], "agent");
    assert_eq!(m["role"], "assistant");
    assert_eq!(m["sender_id"], "agent-1");
    assert_eq!(m["metadata"]["call_id"], "c1");

    let (status, body) = app.post(INTERNAL_TOKEN, "/api/internal/messages/emit", json!({ "conversationId": id, "message": { "content": "live" } })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["messageId"].as_str().unwrap().len(), 24);
    let (_, body) = app.post(INTERNAL_TOKEN, "/api/internal/messages/emit", json!({ "conversationId": id, "message": { "_id": "abc", "content": "x" } })).await;
    assert_eq!(body["messageId"], "abc");

    app.message(&alice, &id, "from user").await;
    let other = user("zed", "other-co");
    let other_id = app.conversation(&other).await;
    app.message(&other, &other_id, "elsewhere").await;
    let (status, body) = app.post(INTERNAL_TOKEN, "/api/internal/messages/list", json!({ "companyId": "acme" })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["total"], 2);
    assert_eq!(body["messages"][0]["content"], "from user", "newest first");
    let (_, body) = app.post(INTERNAL_TOKEN, "/api/internal/messages/list", json!({ "companyId": "acme", "limit": 1 })).await;
    assert_eq!(body["messages"].as_array().unwrap().len(), 1);
    let (_, body) = app.post(INTERNAL_TOKEN, "/api/internal/messages/list", json!({ "companyId": "acme", "startDate": "2999-01-01" })).await;
    assert_eq!(body["total"], 0);
    let (status, _) = app.post(INTERNAL_TOKEN, "/api/internal/messages/list", json!({ "companyId": { "$ne": null } })).await;
    assert_eq!(status, 400);

    // Both update paths; metadata is merged, not replaced.
    app.put(&alice, &format!("/api/conversations/{id}"), json!({ "metadata": { "keep": 1 } })).await;
    let (status, body) = app.patch(INTERNAL_TOKEN, &format!("/api/internal/conversations/{id}"), json!({ "status": "completed", "metadata": { "duration": 42 } })).await;
    assert_eq!((status, body), (200, json!({ "success": true })));
    let (status, _) = app.patch(INTERNAL_TOKEN, &format!("/api/internal/conversations/{id}/update"), json!({ "ended_at": "2024-01-01T00:00:00.000Z", "metadata": { "x": "y" } })).await;
    assert_eq!(status, 200);
    let (_, body) = app.get(&alice, &format!("/api/conversations/{id}")).await;
    let c = &body["conversation"];
    assert_eq!(c["status"], "completed");
    assert_eq!(c["ended_at"], "2024-01-01T00:00:00.000Z");
    assert_eq!(c["metadata"], json!({ "keep": 1, "duration": 42, "x": "y" }));
}

#[tokio::test]
async fn internal_validation_and_not_found() {
    let app = spawn_app(&[]);
    let alice = user("alice", "acme");
    let id = app.conversation(&alice).await;
    let missing = "65a1b2c3d4e5f6a7b8c9d0e1";
    for body in [
        json!({ "conversationId": { "$gt": "" }, "content": "x", "senderType": "agent" }),
        json!({ "conversationId": id, "content": "", "senderType": "agent" }),
        json!({ "conversationId": id, "content": "x", "senderType": "robot" }),
        json!({ "conversationId": id, "content": "x" }),
        json!({ "conversationId": id, "content": "x", "senderType": "agent", "messageType": "gif" }),
    ] {
        let (status, res) = app.post(INTERNAL_TOKEN, "/api/internal/messages/create", body.clone()).await;
        assert_eq!(status, 400, "{body} -> {res}");
    }
    let (status, _) = app.post(INTERNAL_TOKEN, "/api/internal/messages/create", json!({ "conversationId": missing, "content": "x", "senderType": "agent" })).await;
    assert_eq!(status, 404);
    let (status, _) = app.post(INTERNAL_TOKEN, "/api/internal/messages/emit", json!({ "conversationId": missing, "message": {} })).await;
    assert_eq!(status, 404);
    let (status, _) = app.post(INTERNAL_TOKEN, "/api/internal/messages/emit", json!({ "conversationId": id, "message": "text" })).await;
    assert_eq!(status, 400);
    let (status, _) = app.patch(INTERNAL_TOKEN, &format!("/api/internal/conversations/{missing}"), json!({ "status": "ended" })).await;
    assert_eq!(status, 404);
    let (status, _) = app.patch(INTERNAL_TOKEN, &format!("/api/internal/conversations/{id}"), json!({ "status": "bogus" })).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn internal_token_is_required() {
    let app = spawn_app(&[]);
    let alice = user("alice", "acme");
    let id = app.conversation(&alice).await;
    let body = json!({ "conversationId": id, "message": {} });
    let res = app.http.post(app.url("/api/internal/messages/emit")).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let (status, _) = app.post("wrong-token", "/api/internal/messages/emit", body.clone()).await;
    assert_eq!(status, 401);
    let (status, _) = app.post(&alice, "/api/internal/messages/emit", body.clone()).await;
    assert_eq!(status, 401, "a user token is not the service token");

    let disabled = spawn_app(&[("INTERNAL_SERVICE_TOKEN", "")]);
    let (status, body) = disabled.post(INTERNAL_TOKEN, "/api/internal/messages/list", json!({ "companyId": "acme" })).await;
    assert_eq!(status, 503, "{body}");
    assert!(body["error"].is_string());
}
