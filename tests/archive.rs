//! The archive job: with a threshold of 30 days and rounds every few hundred milliseconds, a
//! conversation untouched for 40 days is archived and its room told, while a fresh one and an
//! old one with a recent message stay active; on two nodes sharing Redis, each round runs on
//! one node only. The stale conversations are made by writing their `updated_at` straight
//! into the app's store: the API cannot date anything in the past.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chat_service::domain::audit::{ActorKind, AuditAction, AuditFilter, AuditRecord, Transport};
use chat_service::domain::time::now;
use chat_service::domain::ConversationChanges;
use chat_service::store::{Scope, Store};
use common::redis::{shared_url, unique_prefix};
use common::socket::SocketClient;
use common::{spawn_app, spawn_node_sharing, user, TestApp};
use serde_json::Value;
use tokio::time::Instant;

const COMPANY: &str = "archive-co";

/// Gives a conversation an `updated_at` 40 days ago, as if nobody had touched it since.
async fn age(store: &Arc<dyn Store>, id: &str) {
    let changes = ConversationChanges { title: Some("Long ago".into()), ..Default::default() };
    let long_ago = now() - chrono::Duration::days(40);
    store.update_conversation(Scope::AnyCompany, id, &changes, long_ago).await.unwrap().expect("conversation exists");
}

async fn status(app: &TestApp, token: &str, id: &str) -> Value {
    let (code, body) = app.get(token, &format!("/api/conversations/{id}")).await;
    assert_eq!(code, 200, "{body}");
    body["conversation"]["status"].clone()
}

#[tokio::test]
async fn idle_conversations_are_archived_and_their_room_told() {
    let app = spawn_app(&[("ARCHIVE_AFTER_DAYS", "30"), ("ARCHIVE_INTERVAL_MS", "300")]);
    let alice = user("alice", COMPANY);
    let idle = app.conversation(&alice).await;
    let fresh = app.conversation(&alice).await;
    let talked_to = app.conversation(&alice).await;
    app.message(&alice, &talked_to, "still here").await;
    let mut member = SocketClient::connect(&app.base_url, &alice).await.expect("socket connects");
    member.join(&idle).await;
    member.join(&talked_to).await;

    let store = app.open_store().await;
    // Old by its update, but with a message just now: still active.
    age(&store, &talked_to).await;
    age(&store, &idle).await;

    let updated = member.wait_for("conversation:updated", |e| e["conversationId"] == idle.as_str()).await.data;
    assert_eq!(updated["conversation"]["id"], idle.as_str());
    assert_eq!(updated["conversation"]["status"], "archived");
    assert_eq!(status(&app, &alice, &idle).await, "archived");
    assert_eq!(status(&app, &alice, &fresh).await, "active");
    assert_eq!(status(&app, &alice, &talked_to).await, "active");
    assert_eq!(member.count_received("conversation:updated", |e| e["conversationId"] == talked_to.as_str()), 0);

    let (code, body) = app.get(&alice, "/api/conversations?status=archived").await;
    assert_eq!(code, 200);
    assert_eq!(body["total"], 1, "{body}");
}

/// Outcomes of the rounds of `job` a node logged (JSON logs): slot → ran it or not. A round
/// run logs `ran`.
fn rounds(node: &TestApp, job: &str, ran: &str) -> BTreeMap<u64, bool> {
    let mut outcomes = BTreeMap::new();
    for line in node.log_lines() {
        let Ok(entry) = serde_json::from_str::<Value>(&line) else { continue };
        let fields = &entry["fields"];
        let Some(slot) = fields["slot"].as_u64() else { continue };
        match fields["message"].as_str() {
            Some(m) if m == ran => outcomes.insert(slot, true),
            Some("round run by another node") if fields["job"] == job => outcomes.insert(slot, false),
            _ => None,
        };
    }
    outcomes
}

#[tokio::test]
async fn with_redis_each_round_runs_on_one_node() {
    let redis = shared_url();
    let prefix = unique_prefix();
    let env = [
        ("REDIS_URL", redis.as_str()),
        ("REDIS_PREFIX", prefix.as_str()),
        ("ARCHIVE_AFTER_DAYS", "30"),
        ("ARCHIVE_INTERVAL_MS", "200"),
        ("LOG_FORMAT", "json"),
        ("RUST_LOG", "warn,chat_service::archive=debug,chat_service::periodic=debug"),
    ];
    let a = spawn_app(&env);
    let b = spawn_node_sharing(&a, &env);
    let alice = user("alice", COMPANY);
    let idle = a.conversation(&alice).await;
    let mut on_b = SocketClient::connect(&b.base_url, &alice).await.expect("socket connects");
    on_b.join(&idle).await;
    age(&a.open_store().await, &idle).await;
    on_b.wait_for("conversation:updated", |e| e["conversation"]["status"] == "archived").await;

    // Slots both nodes woke for: one of them ran the round, the other left it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let shared = loop {
        let (on_a, on_b_node) = (rounds(&a, "archive", "archive round"), rounds(&b, "archive", "archive round"));
        let shared: Vec<(u64, bool, bool)> =
            on_a.iter().filter_map(|(slot, ran_a)| on_b_node.get(slot).map(|ran_b| (*slot, *ran_a, *ran_b))).collect();
        if shared.len() >= 8 {
            break shared;
        }
        assert!(Instant::now() < deadline, "fewer than 8 rounds seen by both nodes: a {on_a:?}, b {on_b_node:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for (slot, ran_on_a, ran_on_b) in &shared {
        assert!(ran_on_a ^ ran_on_b, "slot {slot}: ran on a: {ran_on_a}, on b: {ran_on_b}");
    }
    // Archived once, announced once, however many rounds and nodes.
    assert_eq!(on_b.count_received("conversation:updated", |e| e["conversationId"] == idle.as_str()), 0);
}

/// An audit record of `company` made `days_ago` days ago.
fn old_record(company: &str, days_ago: i64) -> AuditRecord {
    AuditRecord {
        id: chat_service::domain::new_object_id(),
        at: chat_service::domain::time::now() - chrono::Duration::days(days_ago),
        company_id: Some(company.into()),
        actor_kind: ActorKind::User,
        actor_id: Some("alice".into()),
        action: AuditAction::MessageCreate,
        conversation_id: None,
        subject_id: None,
        detail: None,
        client_address: None,
        transport: Transport::Rest,
        request_id: None,
    }
}

#[tokio::test]
async fn expired_audit_records_are_deleted_one_node_per_round() {
    let redis = shared_url();
    let prefix = unique_prefix();
    let env = [
        ("REDIS_URL", redis.as_str()),
        ("REDIS_PREFIX", prefix.as_str()),
        ("AUDIT_RETENTION_DAYS", "30"),
        ("AUDIT_RETENTION_INTERVAL_MS", "200"),
        ("LOG_FORMAT", "json"),
        ("RUST_LOG", "warn,chat_service::archive=debug,chat_service::periodic=debug"),
    ];
    let a = spawn_app(&env);
    let b = spawn_node_sharing(&a, &env);
    let store = a.open_store().await;
    let kept = old_record(COMPANY, 29);
    store.insert_audit_records(&[old_record(COMPANY, 31), old_record(COMPANY, 400), kept.clone()]).await.unwrap();

    let filter = AuditFilter { company_id: COMPANY.into(), limit: 100, ..Default::default() };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = store.list_audit_records(&filter).await.unwrap();
        if left.len() == 1 {
            assert_eq!(left[0].id, kept.id, "the record within the retention stays");
            break;
        }
        assert!(Instant::now() < deadline, "expired records left: {left:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let deadline = Instant::now() + Duration::from_secs(20);
    let ran = "audit retention round";
    let shared = loop {
        let (on_a, on_b) = (rounds(&a, "audit-retention", ran), rounds(&b, "audit-retention", ran));
        let shared: Vec<(u64, bool, bool)> =
            on_a.iter().filter_map(|(slot, ran_a)| on_b.get(slot).map(|ran_b| (*slot, *ran_a, *ran_b))).collect();
        if shared.len() >= 5 {
            break shared;
        }
        assert!(Instant::now() < deadline, "fewer than 5 rounds seen by both nodes: a {on_a:?}, b {on_b:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for (slot, ran_on_a, ran_on_b) in &shared {
        assert!(ran_on_a ^ ran_on_b, "slot {slot}: ran on a: {ran_on_a}, on b: {ran_on_b}");
    }
}
