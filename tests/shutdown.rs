//! Stopping a node (SIGTERM) while clients send: it exits within a bounded time, its clients
//! are told to reconnect (their transport closes), and every message it acknowledged is
//! stored. Runs on SQLite, and on MongoDB with `CHAT_TEST_STORE=mongo`.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::socket::SocketClient;
use common::{spawn_app, user};
use serde_json::{json, Value};

const COMPANY: &str = "company-shutdown";

#[tokio::test]
async fn sigterm_during_sends_loses_no_acknowledged_message() {
    let app = spawn_app(&[("SOCKET_MESSAGE_LIMIT", "1000000")]);
    let owner = user("owner", COMPANY);
    let conversation = app.conversation(&owner).await;

    // Four clients send one message after another, as fast as they are answered, until their
    // connection goes away; each keeps the ids the server acknowledged.
    let started = Arc::new(tokio::sync::Barrier::new(5));
    let mut senders = Vec::new();
    for n in 0..4 {
        let client = SocketClient::connect(&app.base_url, &user(&format!("sender-{n}"), COMPANY)).await.expect("connect");
        let (conversation, started) = (conversation.clone(), started.clone());
        senders.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let mut refused = 0;
            for i in 0.. {
                let payload = json!({ "conversationId": conversation, "content": format!("{n}-{i}") });
                let Some(ack) = client.try_emit_ack("message:send", payload).await else { break };
                if ack.data["ok"] == true {
                    acknowledged.push(ack.data["message"]["id"].as_str().unwrap().to_string());
                } else {
                    // Sends that reach a stopping node are refused, never half done.
                    assert_eq!(ack.data["error"], "Service temporarily unavailable", "{}", ack.data);
                    refused += 1;
                }
                if i == 20 {
                    started.wait().await;
                }
            }
            (acknowledged, refused)
        }));
    }
    // Every sender is well under way before the signal.
    started.wait().await;
    let (status, took, app) = tokio::task::spawn_blocking(move || app.terminate_and_restart()).await.unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert!(took < Duration::from_secs(20), "SIGTERM to exit took {took:?}");

    let mut acknowledged = HashSet::new();
    let mut refused = 0;
    for sender in senders {
        // Each sender ends on its own: the stopping node closed its transport.
        let (ids, r) = sender.await.unwrap();
        acknowledged.extend(ids);
        refused += r;
    }

    let mut stored = HashSet::new();
    let mut offset = 0;
    loop {
        let (status, body) =
            app.get(&owner, &format!("/api/conversations/{conversation}/messages?limit=100&offset={offset}")).await;
        assert_eq!(status, 200, "{body}");
        let page = body["messages"].as_array().unwrap();
        stored.extend(page.iter().map(|m: &Value| m["id"].as_str().unwrap().to_string()));
        offset += 100;
        if offset >= body["total"].as_u64().unwrap() as usize {
            break;
        }
    }
    println!("shutdown: {} acknowledged, {refused} refused while stopping, {} stored, exit after {took:?}", acknowledged.len(), stored.len());
    let missing: Vec<_> = acknowledged.difference(&stored).collect();
    assert!(missing.is_empty(), "acknowledged but not stored: {missing:?}");
}

/// Members still online when the node stops are announced offline as their sockets close,
/// while the stop has already closed the Socket.IO namespace: those announcements find no one
/// to tell, and must not panic (they did, in socketioxide's `to`, for some of the sockets).
#[tokio::test]
async fn sigterm_with_members_online_panics_nowhere() {
    let app = spawn_app(&[]);
    let owner = user("owner", COMPANY);
    let conversation = app.conversation(&owner).await;
    let members = futures_util::future::join_all((0..300).map(|n| {
        let (base_url, conversation) = (app.base_url.clone(), conversation.clone());
        async move {
            let mut client = SocketClient::connect(&base_url, &user(&format!("member-{n}"), COMPANY)).await.expect("connect");
            client.join(&conversation).await;
            client
        }
    }))
    .await;
    let (status, panics) = tokio::task::spawn_blocking(move || app.terminate_reporting_panics()).await.unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert!(panics.is_empty(), "the stopping node panicked: {panics:?}");
    drop(members);
}
