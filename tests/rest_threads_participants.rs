//! Threads and participants over HTTP.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn threads_create_read_and_post() {
    let app = spawn_app(&[]);
    let alice = user("alice", "acme");
    let id = app.conversation(&alice).await;

    let (status, body) = app.post(&alice, &format!("/api/conversations/{id}/threads"), json!({ "title": "<b onclick=x()>Refunds</b>" })).await;
    assert_eq!(status, 201, "{body}");
    let t = &body["thread"];
    let tid = t["id"].as_str().unwrap().to_string();
    assert_eq!(tid.len(), 36, "uuid");
    assert_eq!(t["message_count"], 0);
    assert!(!t["title"].as_str().unwrap().contains("onclick"));

    for i in 0..3 {
        let (status, body) = app.post(&alice, &format!("/api/conversations/{id}/threads/{tid}"), json!({ "content": format!("t{i}") })).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["message"]["thread_id"], tid.as_str());
    }
    let (status, body) = app.get(&alice, &format!("/api/conversations/{id}/threads/{tid}?limit=2")).await;
    assert_eq!(status, 200);
    assert_eq!(body["thread"]["message_count"], 3);
    assert_eq!(body["total"], 3);
    assert_eq!(body["limit"], 2);
    assert_eq!(body["offset"], 0);
    let contents: Vec<&str> = body["messages"].as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap()).collect();
    assert_eq!(contents, ["t1", "t2"]);

    let unknown = "6f1c0d4e-1b2a-4c3d-8e9f-0a1b2c3d4e5f";
    let (status, body) = app.get(&alice, &format!("/api/conversations/{id}/threads/{unknown}")).await;
    assert_eq!((status, body), (404, json!({ "error": "Thread not found" })));
    let (status, _) = app.post(&alice, &format!("/api/conversations/{id}/threads/{unknown}"), json!({ "content": "x" })).await;
    assert_eq!(status, 404);
    for body in [json!({}), json!({ "title": "" }), json!({ "title": 7 }), json!({ "title": "t".repeat(300) })] {
        let (status, _) = app.post(&alice, &format!("/api/conversations/{id}/threads"), body.clone()).await;
        assert_eq!(status, 400, "{body}");
    }
}

#[tokio::test]
async fn participants_add_and_remove() {
    let app = spawn_app(&[]);
    let alice = user("alice", "acme");
    let id = app.conversation(&alice).await;
    let path = format!("/api/conversations/{id}/participants");

    let (status, body) = app.post(&alice, &path, json!({ "userId": "bob" })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["conversation"]["participants"], json!(["alice", "bob"]));
    let (_, body) = app.post(&alice, &path, json!({ "userId": "bob" })).await;
    assert_eq!(body["conversation"]["participants"], json!(["alice", "bob"]), "adding twice is idempotent");

    let (status, body) = app.delete(&alice, &format!("{path}/bob")).await;
    assert_eq!(status, 200);
    assert_eq!(body["conversation"]["participants"], json!(["alice"]));
    let (status, _) = app.delete(&alice, &format!("{path}/bob")).await;
    assert_eq!(status, 404);

    for body in [json!({}), json!({ "userId": { "$gt": "" } }), json!({ "userId": "" }), json!({ "userId": "<b>x</b>" })] {
        let (status, _) = app.post(&alice, &path, body.clone()).await;
        assert_eq!(status, 400, "{body}");
    }
}

#[tokio::test]
async fn presence_route_lists_nobody_without_sockets() {
    let app = spawn_app(&[]);
    let alice = user("alice", "acme");
    let id = app.conversation(&alice).await;
    let (status, body) = app.get(&alice, &format!("/api/conversations/{id}/presence")).await;
    assert_eq!((status, body), (200, json!({ "online": [] })));
}
