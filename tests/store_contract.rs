//! The `Store` contract, written once and run against every backend: the embedded SQLite
//! store and MongoDB (the server named by `CHAT_TEST_MONGODB_URI`, which
//! `scripts/test-services.sh start` provides). Each test gets a fresh database. Each also runs
//! through the in-memory conversation cache (`store::local`) in front of either backend, with
//! entries that outlive the test: any read served stale after a write fails the contract.

use std::sync::Arc;

use chat_service::domain::time::{from_millis, Timestamp};
use chat_service::domain::{
    new_object_id, Channel, Conversation, ConversationChanges, ConversationFilter, Message, MessageSearch, MessageType,
    Role, SearchHit, SearchPosition, SearchQuery, SenderType, Status, Thread, ThreadScope,
};
use chat_service::store::local::LocalConversationCache;
use chat_service::store::mongo::{MongoSettings, MongoStore};
use chat_service::store::sqlite::SqliteStore;
use chat_service::store::{MessageChange, Scope, SearchMethod, Store};
use serde_json::{json, Map, Value};

/// A store under test and whatever keeps its data alive.
struct Backend {
    store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
}

async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    Backend { store: Arc::new(SqliteStore::open(dir.path()).unwrap()), _dir: Some(dir) }
}

/// The backend behind a conversation cache whose entries never expire during a test.
fn locally_cached(backend: Backend) -> Backend {
    let store = Arc::new(LocalConversationCache::new(backend.store, std::time::Duration::from_secs(3600)));
    Backend { store, _dir: backend._dir }
}

async fn mongo() -> Backend {
    let uri = std::env::var("CHAT_TEST_MONGODB_URI")
        .expect("CHAT_TEST_MONGODB_URI is not set: run scripts/test.sh, or scripts/test-services.sh start and source .test-services.env");
    let database = format!("contract_{}", new_object_id());
    let settings = MongoSettings {
        uri: &uri,
        database: Some(&database),
        pool_size: 20,
        timeout: std::time::Duration::from_secs(10),
    };
    let store = MongoStore::connect(&settings).await.unwrap();
    store.ensure_indexes().await.unwrap();
    Backend { store: Arc::new(store), _dir: None }
}

/// Generates one `#[tokio::test]` per backend for each contract function.
macro_rules! contract {
    ($($name:ident),+ $(,)?) => {
        mod on_sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() { super::$name(super::sqlite().await.store).await })+
        }
        mod on_mongodb {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() { super::$name(super::mongo().await.store).await })+
        }
        mod on_sqlite_locally_cached {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() { super::$name(super::locally_cached(super::sqlite().await).store).await })+
        }
        mod on_mongodb_locally_cached {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() { super::$name(super::locally_cached(super::mongo().await).store).await })+
        }
    };
}

contract!(
    answers_ping,
    conversation_round_trip_and_tenant_scope,
    conversation_updates,
    conversation_list_filters_order_and_paging,
    search_is_literal_and_case_insensitive,
    participants_are_a_set,
    threads_and_concurrent_counts,
    message_pages_and_threads,
    messages_after_continue_the_listing_order,
    messages_after_an_anchor_that_is_gone_or_foreign,
    message_changes,
    concurrent_reactions_all_survive,
    soft_delete_hides_but_keeps,
    delete_conversation_takes_its_messages,
    company_messages_newest_first_within_dates,
    summary_is_stored,
    archives_conversations_without_recent_activity,
    archiving_concurrently_archives_each_conversation_once,
    message_search_words_phrases_and_scope,
    message_search_follows_edits_and_deletes,
    message_search_follows_changes_made_before_it,
    message_search_pages_continue_without_repeats,
    conversation_search_matches_message_words,
);

fn at(ms: i64) -> Timestamp {
    from_millis(1_700_000_000_000 + ms)
}

fn conversation(company: &str, started: i64) -> Conversation {
    Conversation {
        id: new_object_id(),
        agent_id: "agent-1".into(),
        company_id: company.into(),
        contact_id: None,
        user_id: Some("alice".into()),
        participants: vec!["alice".into()],
        title: Some("Support".into()),
        channel: Channel::Chat,
        status: Status::Active,
        started_at: at(started),
        ended_at: None,
        tags: Vec::new(),
        metadata: Map::new(),
        threads: Vec::new(),
        summary: None,
        created_at: at(started),
        updated_at: at(started),
    }
}

fn message(conversation_id: &str, thread: Option<&str>, content: &str, created: i64) -> Message {
    Message {
        id: new_object_id(),
        conversation_id: conversation_id.into(),
        thread_id: thread.map(str::to_string),
        sender_type: SenderType::User,
        sender_id: "alice".into(),
        role: Role::User,
        content: content.into(),
        message_type: MessageType::Text,
        attachments: Vec::new(),
        ai_metadata: None,
        metadata: Map::new(),
        created_at: at(created),
    }
}

fn object(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

fn thread(title: &str) -> Thread {
    Thread { id: uuid_like(), title: title.into(), created_at: at(1), message_count: 0 }
}

fn uuid_like() -> String {
    let hex = new_object_id();
    format!("{}-{}-4{}-8{}-{}0000", &hex[0..8], &hex[8..12], &hex[12..15], &hex[15..18], &hex[18..24])
}

fn contents(messages: &[Message]) -> Vec<&str> {
    messages.iter().map(|m| m.content.as_str()).collect()
}

async fn answers_ping(store: Arc<dyn Store>) {
    store.ping().await.unwrap();
    assert!(["sqlite", "mongodb"].contains(&store.kind()));
}

async fn conversation_round_trip_and_tenant_scope(store: Arc<dyn Store>) {
    let mut c = conversation("acme", 0);
    c.contact_id = Some("contact-9".into());
    c.tags = vec!["vip".into()];
    c.metadata = object(json!({ "source": "widget", "nested": { "n": 1, "list": [1, "two"] } }));
    c.ended_at = Some(at(5));
    store.insert_conversation(&c).await.unwrap();

    let read = store.get_conversation(Scope::Company("acme"), &c.id).await.unwrap();
    assert_eq!(read.as_ref(), Some(&c));
    assert_eq!(store.get_conversation(Scope::AnyCompany, &c.id).await.unwrap().as_ref(), Some(&c));
    assert_eq!(store.get_conversation(Scope::Company("globex"), &c.id).await.unwrap(), None);
    assert_eq!(store.get_conversation(Scope::Company("acme"), &new_object_id()).await.unwrap(), None);
}

async fn conversation_updates(store: Arc<dyn Store>) {
    let mut c = conversation("acme", 0);
    c.metadata = object(json!({ "a": 1, "b": 2 }));
    store.insert_conversation(&c).await.unwrap();

    let changes = ConversationChanges {
        status: Some(Status::Ended),
        tags: Some(vec!["x".into(), "y".into()]),
        title: Some("Renamed".into()),
        ended_at: Some(Some(at(100))),
        metadata: Some(object(json!({ "b": 3, "c": 4 }))),
        merge_metadata: true,
    };
    let u = store.update_conversation(Scope::Company("acme"), &c.id, &changes, at(200)).await.unwrap().unwrap();
    assert_eq!(u.status, Status::Ended);
    assert_eq!(u.tags, vec!["x", "y"]);
    assert_eq!(u.title.as_deref(), Some("Renamed"));
    assert_eq!(u.ended_at, Some(at(100)));
    assert_eq!(Value::Object(u.metadata.clone()), json!({ "a": 1, "b": 3, "c": 4 }));
    assert_eq!(u.updated_at, at(200));
    assert_eq!(u.created_at, at(0));

    let replace = ConversationChanges {
        metadata: Some(object(json!({ "only": true }))),
        ended_at: Some(None),
        ..Default::default()
    };
    let u = store.update_conversation(Scope::AnyCompany, &c.id, &replace, at(300)).await.unwrap().unwrap();
    assert_eq!(Value::Object(u.metadata.clone()), json!({ "only": true }));
    assert_eq!(u.ended_at, None);
    assert_eq!(store.get_conversation(Scope::AnyCompany, &c.id).await.unwrap(), Some(u));

    let other = store.update_conversation(Scope::Company("globex"), &c.id, &replace, at(400)).await.unwrap();
    assert_eq!(other, None, "another company cannot update it");

    // Concurrent merges of different keys all land.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (store, id) = (store.clone(), c.id.clone());
        tasks.push(tokio::spawn(async move {
            let changes = ConversationChanges {
                metadata: Some(object(json!({ format!("k{i}"): i }))),
                merge_metadata: true,
                ..Default::default()
            };
            store.update_conversation(Scope::AnyCompany, &id, &changes, at(500)).await.unwrap().unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let u = store.get_conversation(Scope::AnyCompany, &c.id).await.unwrap().unwrap();
    assert_eq!(u.metadata.len(), 21, "{:?}", u.metadata);
}

async fn conversation_list_filters_order_and_paging(store: Arc<dyn Store>) {
    let mut ids = Vec::new();
    for i in 0..12 {
        let mut c = conversation("acme", i * 1000);
        c.channel = if i % 2 == 0 { Channel::Chat } else { Channel::Voice };
        c.status = if i < 4 { Status::Ended } else { Status::Active };
        c.contact_id = Some(format!("contact-{}", i % 3));
        c.agent_id = format!("agent-{}", i % 2);
        c.tags = if i % 4 == 0 { vec!["vip".into(), "billing".into()] } else { vec!["billing".into()] };
        c.participants = if i == 7 { vec!["alice".into(), "bob".into()] } else { vec!["alice".into()] };
        store.insert_conversation(&c).await.unwrap();
        ids.push(c.id);
    }
    store.insert_conversation(&conversation("globex", 500)).await.unwrap();

    let base = ConversationFilter { company_id: "acme".into(), limit: 50, ..Default::default() };
    let all = store.list_conversations(&base).await.unwrap();
    assert_eq!(all.total, 12);
    let listed: Vec<&str> = all.items.iter().map(|c| c.id.as_str()).collect();
    let newest_first: Vec<&str> = ids.iter().rev().map(String::as_str).collect();
    assert_eq!(listed, newest_first, "newest started_at first");

    let count = |f: ConversationFilter| {
        let store = store.clone();
        async move { store.list_conversations(&f).await.unwrap() }
    };
    assert_eq!(count(ConversationFilter { status: Some(Status::Ended), ..base.clone() }).await.total, 4);
    assert_eq!(count(ConversationFilter { channel: Some(Channel::Voice), ..base.clone() }).await.total, 6);
    assert_eq!(count(ConversationFilter { contact_id: Some("contact-1".into()), ..base.clone() }).await.total, 4);
    assert_eq!(count(ConversationFilter { agent_id: Some("agent-0".into()), ..base.clone() }).await.total, 6);
    assert_eq!(count(ConversationFilter { tag: Some("vip".into()), ..base.clone() }).await.total, 3);
    assert_eq!(count(ConversationFilter { participant: Some("bob".into()), ..base.clone() }).await.total, 1);
    assert_eq!(
        count(ConversationFilter { status: Some(Status::Active), channel: Some(Channel::Chat), ..base.clone() }).await.total,
        4
    );
    // Date bounds are inclusive on both ends.
    let ranged = count(ConversationFilter { started_from: Some(at(3000)), started_to: Some(at(5000)), ..base.clone() }).await;
    assert_eq!(ranged.total, 3);
    assert_eq!(ranged.items[0].started_at, at(5000));

    // Paging edges: a middle page, the last partial page, past the end.
    let page = count(ConversationFilter { limit: 5, offset: 5, ..base.clone() }).await;
    assert_eq!((page.total, page.items.len()), (12, 5));
    assert_eq!(page.items[0].id, ids[6]);
    let last = count(ConversationFilter { limit: 5, offset: 10, ..base.clone() }).await;
    assert_eq!(last.items.len(), 2);
    let past = count(ConversationFilter { limit: 5, offset: 50, ..base.clone() }).await;
    assert_eq!((past.total, past.items.len()), (12, 0));
    let one = count(ConversationFilter { limit: 1, ..base.clone() }).await;
    assert_eq!(one.items.len(), 1);
}

async fn search_is_literal_and_case_insensitive(store: Arc<dyn Store>) {
    let mut a = conversation("acme", 0);
    a.title = Some("Billing question (urgent)".into());
    let mut b = conversation("acme", 1);
    b.title = Some("Other".into());
    b.tags = vec!["Refund.Request".into()];
    let mut c = conversation("acme", 2);
    c.title = Some("RefundXRequest".into());
    for x in [&a, &b, &c] {
        store.insert_conversation(x).await.unwrap();
    }
    let q = |q: &str| {
        let store = store.clone();
        let f = ConversationFilter { company_id: "acme".into(), q: Some(q.into()), limit: 50, ..Default::default() };
        async move { store.list_conversations(&f).await.unwrap().items.into_iter().map(|c| c.id).collect::<Vec<_>>() }
    };
    assert_eq!(q("BILLING").await, vec![a.id.clone()]);
    assert_eq!(q("(urgent)").await, vec![a.id.clone()], "parentheses are text");
    assert_eq!(q("refund.request").await, vec![b.id.clone()], "a dot is a dot, and tags are searched");
    assert!(q(".*").await.is_empty(), "no pattern syntax");
    store.set_summary(&c.id, "Customer wants a refund", at(3)).await.unwrap();
    assert_eq!(q("wants a").await, vec![c.id.clone()], "the summary is searched");
}

async fn participants_are_a_set(store: Arc<dyn Store>) {
    let c = conversation("acme", 0);
    store.insert_conversation(&c).await.unwrap();
    let scope = Scope::Company("acme");
    let u = store.set_participant(scope, &c.id, "bob", true, at(10)).await.unwrap().unwrap();
    assert_eq!(u.participants, vec!["alice", "bob"]);
    assert_eq!(u.updated_at, at(10));
    let u = store.set_participant(scope, &c.id, "bob", true, at(11)).await.unwrap().unwrap();
    assert_eq!(u.participants, vec!["alice", "bob"], "adding twice keeps one");
    let u = store.set_participant(scope, &c.id, "alice", false, at(12)).await.unwrap().unwrap();
    assert_eq!(u.participants, vec!["bob"]);
    let u = store.set_participant(scope, &c.id, "nobody", false, at(13)).await.unwrap().unwrap();
    assert_eq!(u.participants, vec!["bob"]);
    assert_eq!(store.set_participant(Scope::Company("globex"), &c.id, "eve", true, at(14)).await.unwrap(), None);

    let mut tasks = Vec::new();
    for i in 0..30 {
        let (store, id) = (store.clone(), c.id.clone());
        tasks.push(tokio::spawn(async move {
            store.set_participant(Scope::AnyCompany, &id, &format!("user-{i}"), true, at(20)).await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let u = store.get_conversation(scope, &c.id).await.unwrap().unwrap();
    assert_eq!(u.participants.len(), 31, "concurrent adds all land");
}

async fn threads_and_concurrent_counts(store: Arc<dyn Store>) {
    let c = conversation("acme", 0);
    store.insert_conversation(&c).await.unwrap();
    let t1 = thread("Billing");
    let t2 = thread("Shipping");
    let u = store.add_thread(Scope::Company("acme"), &c.id, &t1).await.unwrap().unwrap();
    assert_eq!(u.threads, vec![t1.clone()]);
    store.add_thread(Scope::Company("acme"), &c.id, &t2).await.unwrap().unwrap();
    assert_eq!(store.add_thread(Scope::Company("globex"), &c.id, &thread("x")).await.unwrap(), None);

    assert_eq!(store.insert_message(&message(&c.id, None, "main", 0)).await.unwrap(), None);
    assert_eq!(store.insert_message(&message(&c.id, Some(&t2.id), "first", 1)).await.unwrap(), Some(1));

    let mut tasks = Vec::new();
    for i in 0..100 {
        let (store, m) = (store.clone(), message(&c.id, Some(&t1.id), &format!("m{i}"), 10 + i));
        tasks.push(tokio::spawn(async move { store.insert_message(&m).await.unwrap().unwrap() }));
    }
    let mut seen = Vec::new();
    for t in tasks {
        seen.push(t.await.unwrap());
    }
    assert!(seen.iter().all(|n| (1..=100).contains(n)), "{seen:?}");
    assert!(seen.contains(&100));
    let u = store.get_conversation(Scope::Company("acme"), &c.id).await.unwrap().unwrap();
    assert_eq!(u.thread(&t1.id).unwrap().message_count, 100, "100 concurrent sends count 100");
    assert_eq!(u.thread(&t2.id).unwrap().message_count, 1);
    let page = store.list_messages(&c.id, &ThreadScope::Thread(t1.id.clone()), 100, 0).await.unwrap();
    assert_eq!(page.total, 100);
}

async fn message_pages_and_threads(store: Arc<dyn Store>) {
    let c = conversation("acme", 0);
    store.insert_conversation(&c).await.unwrap();
    let t = thread("T");
    store.add_thread(Scope::AnyCompany, &c.id, &t).await.unwrap();
    for i in 0..7 {
        store.insert_message(&message(&c.id, None, &format!("m{i}"), i * 10)).await.unwrap();
    }
    store.insert_message(&message(&c.id, Some(&t.id), "in thread", 5)).await.unwrap();

    let main = store.list_messages(&c.id, &ThreadScope::Main, 3, 0).await.unwrap();
    assert_eq!(main.total, 7, "thread messages are not in the main thread");
    assert_eq!(contents(&main.items), ["m4", "m5", "m6"], "newest page, oldest first");
    let older = store.list_messages(&c.id, &ThreadScope::Main, 3, 3).await.unwrap();
    assert_eq!(contents(&older.items), ["m1", "m2", "m3"]);
    let oldest = store.list_messages(&c.id, &ThreadScope::Main, 3, 6).await.unwrap();
    assert_eq!(contents(&oldest.items), ["m0"]);
    let past = store.list_messages(&c.id, &ThreadScope::Main, 3, 7).await.unwrap();
    assert!(past.items.is_empty());
    assert_eq!(past.total, 7);

    let in_thread = store.list_messages(&c.id, &ThreadScope::Thread(t.id.clone()), 50, 0).await.unwrap();
    assert_eq!(contents(&in_thread.items), ["in thread"]);
    let unknown = store.list_messages(&c.id, &ThreadScope::Thread(uuid_like()), 50, 0).await.unwrap();
    assert_eq!(unknown.total, 0);

    // Same timestamp: the order is still stable (by id, which grows).
    let a = message(&c.id, None, "same-a", 1000);
    let b = message(&c.id, None, "same-b", 1000);
    store.insert_message(&a).await.unwrap();
    store.insert_message(&b).await.unwrap();
    let newest = store.list_messages(&c.id, &ThreadScope::Main, 2, 0).await.unwrap();
    assert_eq!(contents(&newest.items), ["same-a", "same-b"]);

    let recent = store.recent_messages(&c.id, 3).await.unwrap();
    assert_eq!(contents(&recent), ["m6", "same-a", "same-b"], "recent spans every thread");
    assert_eq!(store.count_messages(&c.id).await.unwrap(), 10);

    let got = store.get_message(&c.id, &a.id).await.unwrap().unwrap();
    assert_eq!(got, a);
    let other = conversation("acme", 1);
    assert_eq!(store.get_message(&other.id, &a.id).await.unwrap(), None, "a message belongs to its conversation");
}

async fn messages_after_continue_the_listing_order(store: Arc<dyn Store>) {
    let c = conversation("acme", 0);
    store.insert_conversation(&c).await.unwrap();
    let t = thread("T");
    store.add_thread(Scope::AnyCompany, &c.id, &t).await.unwrap();
    let m0 = message(&c.id, None, "m0", 0);
    store.insert_message(&m0).await.unwrap();
    store.insert_message(&message(&c.id, None, "m1", 10)).await.unwrap();
    store.insert_message(&message(&c.id, Some(&t.id), "t1", 15)).await.unwrap();
    // Five in the same millisecond, stored out of id order: the id decides among them.
    let same: Vec<Message> = (0..5).map(|i| message(&c.id, None, &format!("same-{i}"), 20)).collect();
    for i in [3, 0, 4, 1, 2] {
        store.insert_message(&same[i]).await.unwrap();
    }
    store.insert_message(&message(&c.id, Some(&t.id), "t2", 25)).await.unwrap();
    store.insert_message(&message(&c.id, None, "m2", 30)).await.unwrap();

    let everything = store.messages_after(&c.id, None, &m0.id, 100).await.unwrap().unwrap();
    assert_eq!(
        contents(&everything.items),
        ["m1", "t1", "same-0", "same-1", "same-2", "same-3", "same-4", "t2", "m2"],
        "every thread, oldest first"
    );
    assert_eq!(everything.total, 9);

    // Page by page from the oldest main-thread message, always asking after the last one
    // received: the same sequence as the listing, nothing skipped or repeated.
    let listed = store.list_messages(&c.id, &ThreadScope::Main, 100, 0).await.unwrap();
    let mut walked = vec![listed.items[0].clone()];
    loop {
        let last = &walked.last().unwrap().id;
        let page = store.messages_after(&c.id, Some(&ThreadScope::Main), last, 2).await.unwrap().unwrap();
        assert!(page.items.len() <= 2);
        assert_eq!(page.total as usize, listed.items.len() - walked.len(), "total counts what is left");
        if page.items.is_empty() {
            break;
        }
        walked.extend(page.items);
    }
    assert_eq!(walked, listed.items, "catching up by pages yields the listing");

    // Inside the run of equal timestamps.
    let page = store.messages_after(&c.id, Some(&ThreadScope::Main), &same[1].id, 2).await.unwrap().unwrap();
    assert_eq!((contents(&page.items), page.total), (vec!["same-2", "same-3"], 4));

    // A thread's messages after a main-thread anchor: the anchor is a position in the conversation.
    let in_thread = store.messages_after(&c.id, Some(&ThreadScope::Thread(t.id.clone())), &same[0].id, 50).await.unwrap().unwrap();
    assert_eq!((contents(&in_thread.items), in_thread.total), (vec!["t2"], 1));

    let newest = walked.last().unwrap();
    let none = store.messages_after(&c.id, None, &newest.id, 50).await.unwrap().unwrap();
    assert_eq!((none.items.len(), none.total), (0, 0), "nothing after the newest");
}

async fn messages_after_an_anchor_that_is_gone_or_foreign(store: Arc<dyn Store>) {
    let c = conversation("acme", 0);
    let other = conversation("acme", 1);
    store.insert_conversation(&c).await.unwrap();
    store.insert_conversation(&other).await.unwrap();
    let seen = message(&c.id, None, "seen, then deleted", 0);
    let hidden = message(&c.id, None, "deleted", 10);
    let kept = message(&c.id, None, "kept", 20);
    for m in [&seen, &hidden, &kept] {
        store.insert_message(m).await.unwrap();
    }
    let elsewhere = message(&other.id, None, "elsewhere", 5);
    store.insert_message(&elsewhere).await.unwrap();
    store.soft_delete_message(&c.id, &seen.id, at(30)).await.unwrap();
    store.soft_delete_message(&c.id, &hidden.id, at(31)).await.unwrap();

    let page = store.messages_after(&c.id, None, &seen.id, 50).await.unwrap().expect("a deleted anchor still anchors");
    assert_eq!((contents(&page.items), page.total), (vec!["kept"], 1), "deleted messages never appear");
    assert!(store.messages_after(&c.id, None, &new_object_id(), 50).await.unwrap().is_none(), "unknown anchor");
    assert!(store.messages_after(&c.id, None, &elsewhere.id, 50).await.unwrap().is_none(), "another conversation's message");
    assert!(store.messages_after(&other.id, None, &kept.id, 50).await.unwrap().is_none());
}

async fn message_changes(store: Arc<dyn Store>) {
    let c = conversation("acme", 0);
    store.insert_conversation(&c).await.unwrap();
    let mut m = message(&c.id, None, "hello", 0);
    m.ai_metadata = Some(object(json!({ "model": "m-1", "tokens_used": 42, "response_time_ms": 1500 })));
    m.attachments = vec![chat_service::domain::Attachment {
        url: "https://files.example.com/a.pdf".into(),
        kind: "application/pdf".into(),
        name: "a.pdf".into(),
        size: Some(1234),
    }];
    store.insert_message(&m).await.unwrap();
    assert_eq!(store.get_message(&c.id, &m.id).await.unwrap().as_ref(), Some(&m));

    let edited = store
        .update_message(&c.id, &m.id, &MessageChange::Content { content: "hello again".into(), edited_at: at(10) })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(edited.content, "hello again");
    assert_eq!(edited.metadata["edited_at"], "2023-11-14T22:13:20.010Z");

    let read = store.update_message(&c.id, &m.id, &MessageChange::MarkRead { at: at(20) }).await.unwrap().unwrap();
    assert_eq!(read.metadata["read_at"], "2023-11-14T22:13:20.020Z");
    let again = store.update_message(&c.id, &m.id, &MessageChange::MarkRead { at: at(30) }).await.unwrap().unwrap();
    assert_eq!(again.metadata["read_at"], "2023-11-14T22:13:20.020Z", "the first read counts");

    let react = |user: &str, emoji: Option<&str>| MessageChange::Reaction {
        user_id: user.into(),
        emoji: emoji.map(str::to_string),
        at: at(40),
    };
    let r = store.update_message(&c.id, &m.id, &react("bob", Some("👍"))).await.unwrap().unwrap();
    assert_eq!(r.metadata["reactions"], json!([{ "emoji": "👍", "user_id": "bob", "created_at": "2023-11-14T22:13:20.040Z" }]));
    store.update_message(&c.id, &m.id, &react("bob", Some("🎉"))).await.unwrap();
    store.update_message(&c.id, &m.id, &react("carol", Some("👍"))).await.unwrap();
    let r = store.update_message(&c.id, &m.id, &react("bob", Some("👍"))).await.unwrap().unwrap();
    let pairs: Vec<(String, String)> = r.metadata["reactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["user_id"].as_str().unwrap().into(), x["emoji"].as_str().unwrap().into()))
        .collect();
    assert_eq!(pairs, [("bob".into(), "🎉".into()), ("carol".into(), "👍".into())], "same emoji again toggles it off");
    let r = store.update_message(&c.id, &m.id, &react("bob", None)).await.unwrap().unwrap();
    assert_eq!(r.metadata["reactions"].as_array().unwrap().len(), 1, "null removes all of the user's reactions");

    let merged = store
        .update_message(&c.id, &m.id, &MessageChange::MergeMetadata(object(json!({ "intent": "refund", "sentiment": { "score": -0.5 } }))))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(merged.metadata["intent"], "refund");
    assert_eq!(merged.metadata["sentiment"]["score"], -0.5);
    assert_eq!(merged.metadata["read_at"], "2023-11-14T22:13:20.020Z", "merging keeps other keys");
    assert_eq!(merged.ai_metadata, m.ai_metadata);
    assert_eq!(merged.attachments, m.attachments);

    let missing = store.update_message(&c.id, &new_object_id(), &MessageChange::MarkRead { at: at(1) }).await.unwrap();
    assert_eq!(missing, None);
}

async fn concurrent_reactions_all_survive(store: Arc<dyn Store>) {
    let c = conversation("acme", 0);
    store.insert_conversation(&c).await.unwrap();
    let m = message(&c.id, None, "react to me", 0);
    store.insert_message(&m).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..25 {
        let (store, cid, mid) = (store.clone(), c.id.clone(), m.id.clone());
        tasks.push(tokio::spawn(async move {
            let change = MessageChange::Reaction { user_id: format!("user-{i}"), emoji: Some("❤️".into()), at: at(i) };
            store.update_message(&cid, &mid, &change).await.unwrap().unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let got = store.get_message(&c.id, &m.id).await.unwrap().unwrap();
    assert_eq!(got.metadata["reactions"].as_array().unwrap().len(), 25);
}

async fn soft_delete_hides_but_keeps(store: Arc<dyn Store>) {
    let c = conversation("acme", 0);
    store.insert_conversation(&c).await.unwrap();
    let keep = message(&c.id, None, "keep", 0);
    let gone = message(&c.id, None, "gone", 1);
    store.insert_message(&keep).await.unwrap();
    store.insert_message(&gone).await.unwrap();
    assert!(store.soft_delete_message(&c.id, &gone.id, at(5)).await.unwrap());
    assert!(!store.soft_delete_message(&c.id, &gone.id, at(6)).await.unwrap(), "already deleted");
    assert!(!store.soft_delete_message(&c.id, &new_object_id(), at(6)).await.unwrap());
    assert_eq!(store.get_message(&c.id, &gone.id).await.unwrap(), None);
    let page = store.list_messages(&c.id, &ThreadScope::Main, 50, 0).await.unwrap();
    assert_eq!((page.total, contents(&page.items)), (1, vec!["keep"]));
    assert_eq!(store.count_messages(&c.id).await.unwrap(), 1);
    assert_eq!(contents(&store.recent_messages(&c.id, 10).await.unwrap()), ["keep"]);
    let edit = MessageChange::Content { content: "x".into(), edited_at: at(7) };
    assert_eq!(store.update_message(&c.id, &gone.id, &edit).await.unwrap(), None, "a deleted message cannot be edited");
}

async fn delete_conversation_takes_its_messages(store: Arc<dyn Store>) {
    let c = conversation("acme", 0);
    let other = conversation("acme", 1);
    store.insert_conversation(&c).await.unwrap();
    store.insert_conversation(&other).await.unwrap();
    let m = message(&c.id, None, "bye", 0);
    store.insert_message(&m).await.unwrap();
    store.insert_message(&message(&other.id, None, "stays", 0)).await.unwrap();
    assert!(!store.delete_conversation(Scope::Company("globex"), &c.id).await.unwrap());
    assert!(store.delete_conversation(Scope::Company("acme"), &c.id).await.unwrap());
    assert!(!store.delete_conversation(Scope::Company("acme"), &c.id).await.unwrap());
    assert_eq!(store.get_conversation(Scope::AnyCompany, &c.id).await.unwrap(), None);
    assert_eq!(store.get_message(&c.id, &m.id).await.unwrap(), None);
    assert_eq!(store.count_messages(&c.id).await.unwrap(), 0);
    assert_eq!(store.count_messages(&other.id).await.unwrap(), 1);
}

async fn company_messages_newest_first_within_dates(store: Arc<dyn Store>) {
    let a1 = conversation("acme", 0);
    let a2 = conversation("acme", 1);
    let g = conversation("globex", 2);
    for c in [&a1, &a2, &g] {
        store.insert_conversation(c).await.unwrap();
    }
    for i in 0..5 {
        store.insert_message(&message(&a1.id, None, &format!("a1-{i}"), i * 100)).await.unwrap();
        store.insert_message(&message(&a2.id, None, &format!("a2-{i}"), i * 100 + 50)).await.unwrap();
        store.insert_message(&message(&g.id, None, &format!("g-{i}"), i * 100 + 25)).await.unwrap();
    }
    let all = store.list_company_messages("acme", 100, None, None).await.unwrap();
    assert_eq!(all.total, 10);
    assert_eq!(contents(&all.items)[..3], ["a2-4", "a1-4", "a2-3"]);
    assert!(all.items.iter().all(|m| m.conversation_id != g.id), "never another company's messages");
    let limited = store.list_company_messages("acme", 2, None, None).await.unwrap();
    assert_eq!((limited.total, limited.items.len()), (10, 2));
    let ranged = store.list_company_messages("acme", 100, Some(at(100)), Some(at(250))).await.unwrap();
    assert_eq!(contents(&ranged.items), ["a2-2", "a1-2", "a2-1", "a1-1"], "both bounds inclusive");
    let none = store.list_company_messages("initech", 100, None, None).await.unwrap();
    assert_eq!((none.total, none.items.len()), (0, 0));
}

async fn summary_is_stored(store: Arc<dyn Store>) {
    let c = conversation("acme", 0);
    store.insert_conversation(&c).await.unwrap();
    store.set_summary(&c.id, "The customer asked about billing.", at(99)).await.unwrap();
    let u = store.get_conversation(Scope::Company("acme"), &c.id).await.unwrap().unwrap();
    assert_eq!(u.summary.as_deref(), Some("The customer asked about billing."));
    assert_eq!(u.updated_at, at(99));
}

/// Runs the archive scan to the end, `limit` conversations per call, and returns what it
/// archived.
async fn archive_all(store: &Arc<dyn Store>, cutoff: Timestamp, now: Timestamp, limit: u32) -> Vec<Conversation> {
    let mut archived = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..100 {
        let batch = store.archive_inactive(cutoff, now, after.as_deref(), limit).await.unwrap();
        archived.extend(batch.archived);
        match batch.next {
            Some(next) => after = Some(next),
            None => return archived,
        }
    }
    panic!("the archive scan did not end");
}

async fn archives_conversations_without_recent_activity(store: Arc<dyn Store>) {
    let (cutoff, now) = (at(10_000), at(20_000));
    let idle = conversation("acme", 0);
    let mut idle_elsewhere = conversation("globex", 0);
    idle_elsewhere.status = Status::Ended;
    let with_old_message = conversation("acme", 0);
    let with_new_message = conversation("acme", 0);
    let with_new_thread_message = conversation("acme", 0);
    let updated_lately = conversation("acme", 0);
    let mut archived_before = conversation("acme", 0);
    archived_before.status = Status::Archived;
    for c in [&idle, &idle_elsewhere, &with_old_message, &with_new_message, &with_new_thread_message, &updated_lately, &archived_before] {
        store.insert_conversation(c).await.unwrap();
    }
    store.insert_message(&message(&with_old_message.id, None, "long ago", 5_000)).await.unwrap();
    store.insert_message(&message(&with_new_message.id, None, "just now", 15_000)).await.unwrap();
    let t = thread("Billing");
    store.add_thread(Scope::AnyCompany, &with_new_thread_message.id, &t).await.unwrap();
    store.insert_message(&message(&with_new_thread_message.id, Some(&t.id), "in a thread", 12_000)).await.unwrap();
    let retitled = ConversationChanges { title: Some("Renamed".into()), ..Default::default() };
    store.update_conversation(Scope::AnyCompany, &updated_lately.id, &retitled, at(11_000)).await.unwrap().unwrap();

    // Two per call: the scan goes on where the previous call stopped.
    let archived = archive_all(&store, cutoff, now, 2).await;
    let mut ids: Vec<&str> = archived.iter().map(|c| c.id.as_str()).collect();
    ids.sort();
    let mut expected = vec![idle.id.as_str(), idle_elsewhere.id.as_str(), with_old_message.id.as_str()];
    expected.sort();
    assert_eq!(ids, expected, "every company, any status but archived");
    for c in &archived {
        assert_eq!((c.status, c.updated_at), (Status::Archived, now), "{}", c.id);
        assert_eq!(store.get_conversation(Scope::AnyCompany, &c.id).await.unwrap().as_ref(), Some(c));
    }
    // (A thread message moves `updated_at` on SQLite only; its creation time counts anyway.)
    let untouched = [
        (&with_new_message, Status::Active),
        (&with_new_thread_message, Status::Active),
        (&updated_lately, Status::Active),
        (&archived_before, Status::Archived),
    ];
    for (c, status) in untouched {
        let read = store.get_conversation(Scope::AnyCompany, &c.id).await.unwrap().unwrap();
        assert_eq!(read.status, status, "{}", c.id);
        assert_ne!(read.updated_at, now, "{} was not written", c.id);
    }
    let ended = store.get_conversation(Scope::AnyCompany, &idle_elsewhere.id).await.unwrap().unwrap();
    assert_eq!(ended.ended_at, idle_elsewhere.ended_at, "only the status and updated_at change");

    // Idempotent: a second pass, as another node's, finds nothing more.
    assert!(archive_all(&store, cutoff, at(30_000), 500).await.is_empty());
}

async fn archiving_concurrently_archives_each_conversation_once(store: Arc<dyn Store>) {
    let mut ids = Vec::new();
    for _ in 0..30 {
        let c = conversation("acme", 0);
        store.insert_conversation(&c).await.unwrap();
        ids.push(c.id);
    }
    // Two nodes' rounds at once, each with its own time.
    let (a, b) = tokio::join!(archive_all(&store, at(10_000), at(20_000), 7), archive_all(&store, at(10_000), at(20_001), 7));
    let mut archived: Vec<String> = a.into_iter().chain(b).map(|c| c.id).collect();
    archived.sort();
    ids.sort();
    assert_eq!(archived, ids, "each archived and returned exactly once");
}

// ---- Message search ----

fn search(company: &str, q: &str) -> MessageSearch {
    MessageSearch {
        query: SearchQuery::parse(q).unwrap(),
        company_id: company.into(),
        conversation_id: None,
        thread_id: None,
        from: None,
        to: None,
        after: None,
        limit: 50,
    }
}

async fn found(store: &Arc<dyn Store>, s: &MessageSearch) -> Vec<String> {
    let hits = store.search_messages(s).await.unwrap();
    for pair in hits.windows(2) {
        assert!(pair[0].score >= pair[1].score, "best first");
    }
    let mut ids: Vec<String> = hits.into_iter().map(|h| h.message.id).collect();
    ids.sort();
    ids
}

fn ids(messages: &[&Message]) -> Vec<String> {
    let mut ids: Vec<String> = messages.iter().map(|m| m.id.clone()).collect();
    ids.sort();
    ids
}

async fn message_search_words_phrases_and_scope(store: Arc<dyn Store>) {
    let method = store.search_method();
    match store.kind() {
        "sqlite" => assert_eq!(method, SearchMethod::Fts5),
        _ => assert!([SearchMethod::Text, SearchMethod::Regex].contains(&method)),
    }
    let a = conversation("acme", 0);
    let mut a_with_thread = a.clone();
    let t = thread("Billing");
    a_with_thread.threads.push(t.clone());
    let b = conversation("acme", 1);
    let elsewhere = conversation("globex", 2);
    for c in [&a, &b, &elsewhere] {
        store.insert_conversation(c).await.unwrap();
    }
    store.add_thread(Scope::Company("acme"), &a.id, &t).await.unwrap();
    let card = message(&a.id, None, "Refund to my credit card, please", 10);
    let swapped = message(&a.id, None, "card credit swap", 11);
    let plural = message(&a.id, None, "the refunds are late", 12);
    let in_thread = message(&a.id, Some(&t.id), "REFUND requested &amp; logged", 13);
    let in_b = message(&b.id, None, "<b>refund</b> for order 42", 20);
    let foreign = message(&elsewhere.id, None, "refund elsewhere", 21);
    for m in [&card, &swapped, &plural, &in_thread, &in_b, &foreign] {
        store.insert_message(m).await.unwrap();
    }

    assert_eq!(found(&store, &search("acme", "refund")).await, ids(&[&card, &in_thread, &in_b]), "whole words, any case, one company");
    assert_eq!(found(&store, &search("acme", "\"credit card\"")).await, ids(&[&card]), "a phrase keeps its order");
    assert_eq!(found(&store, &search("acme", "credit card")).await, ids(&[&card, &swapped]), "words in any order");
    assert_eq!(found(&store, &search("acme", "refund card")).await, ids(&[&card]), "every word is required");
    assert!(found(&store, &search("acme", "amp")).await.is_empty(), "character references are not words");
    assert!(found(&store, &search("acme", "b")).await.is_empty(), "markup is not text");
    assert!(found(&store, &search("acme", "nothing")).await.is_empty());
    assert_eq!(found(&store, &search("globex", "refund")).await, ids(&[&foreign]));

    let mut only_a = search("acme", "refund");
    only_a.conversation_id = Some(a.id.clone());
    assert_eq!(found(&store, &only_a).await, ids(&[&card, &in_thread]));
    only_a.conversation_id = Some(elsewhere.id.clone());
    assert!(found(&store, &only_a).await.is_empty(), "another company's conversation finds nothing");
    let mut only_thread = search("acme", "refund");
    only_thread.thread_id = Some(t.id.clone());
    assert_eq!(found(&store, &only_thread).await, ids(&[&in_thread]));
    let mut dated = search("acme", "refund");
    dated.from = Some(at(11));
    dated.to = Some(at(13));
    assert_eq!(found(&store, &dated).await, ids(&[&in_thread]), "from and to bound created_at, inclusive");

    let hits: Vec<SearchHit> = store.search_messages(&search("acme", "refund")).await.unwrap();
    let hit = hits.iter().find(|h| h.message.id == card.id).unwrap();
    assert_eq!(hit.message, card, "a hit is the stored message");
}

/// Two conversations and four messages about shipping: one to edit, one to delete, one to
/// keep, and one in the conversation to delete.
struct Shipping {
    a: Conversation,
    b: Conversation,
    edited: Message,
    deleted: Message,
    kept: Message,
    gone_with_b: Message,
}

async fn shipping(store: &Arc<dyn Store>) -> Shipping {
    let a = conversation("acme", 0);
    let b = conversation("acme", 1);
    store.insert_conversation(&a).await.unwrap();
    store.insert_conversation(&b).await.unwrap();
    let edited = message(&a.id, None, "old words about shipping", 1);
    let deleted = message(&a.id, None, "shipping was late", 2);
    let kept = message(&a.id, None, "shipping today", 3);
    let gone_with_b = message(&b.id, None, "shipping in b", 4);
    for m in [&edited, &deleted, &kept, &gone_with_b] {
        store.insert_message(m).await.unwrap();
    }
    Shipping { a, b, edited, deleted, kept, gone_with_b }
}

async fn message_search_follows_edits_and_deletes(store: Arc<dyn Store>) {
    let Shipping { a, b, edited, deleted, kept, gone_with_b } = shipping(&store).await;
    assert_eq!(found(&store, &search("acme", "shipping")).await.len(), 4);

    let change = MessageChange::Content { content: "new text about invoices".into(), edited_at: at(5) };
    store.update_message(&a.id, &edited.id, &change).await.unwrap().unwrap();
    // A reaction rewrites the row on SQLite: the index must not lose or double the message.
    let react = MessageChange::Reaction { user_id: "bob".into(), emoji: Some("👍".into()), at: at(6) };
    store.update_message(&a.id, &edited.id, &react).await.unwrap().unwrap();
    assert!(!found(&store, &search("acme", "old")).await.contains(&edited.id), "old content is no longer found");
    assert_eq!(found(&store, &search("acme", "invoices")).await, vec![edited.id.clone()], "new content is found, once");

    assert!(store.soft_delete_message(&a.id, &deleted.id, at(7)).await.unwrap());
    assert_eq!(found(&store, &search("acme", "shipping")).await, ids(&[&kept, &gone_with_b]), "deleted messages never appear");
    assert!(store.delete_conversation(Scope::Company("acme"), &b.id).await.unwrap());
    assert_eq!(found(&store, &search("acme", "shipping")).await, ids(&[&kept]));
    assert!(store.delete_conversation(Scope::Company("acme"), &a.id).await.unwrap());
    assert!(found(&store, &search("acme", "shipping invoices")).await.is_empty());
}

/// Edits and deletes made before any search looked at the messages (on SQLite, before the
/// search index caught up with them), then a message stored under a rowid SQLite handed out
/// again after the highest ones were deleted.
async fn message_search_follows_changes_made_before_it(store: Arc<dyn Store>) {
    let Shipping { a, b, edited, deleted, kept, gone_with_b: _ } = shipping(&store).await;
    let change = MessageChange::Content { content: "new text about invoices".into(), edited_at: at(5) };
    store.update_message(&a.id, &edited.id, &change).await.unwrap().unwrap();
    assert!(store.soft_delete_message(&a.id, &deleted.id, at(6)).await.unwrap());
    assert!(store.delete_conversation(Scope::Company("acme"), &b.id).await.unwrap());

    assert_eq!(found(&store, &search("acme", "shipping")).await, ids(&[&kept]), "deleted messages never appear");
    assert_eq!(found(&store, &search("acme", "invoices")).await, ids(&[&edited]), "an edit is found");
    assert!(found(&store, &search("acme", "old")).await.is_empty(), "the text before the edit is not");

    // The newest message goes with its conversation once searched; the next one stored takes
    // its rowid on SQLite, and must still be found.
    let c = conversation("acme", 2);
    store.insert_conversation(&c).await.unwrap();
    store.insert_message(&message(&c.id, None, "shipping from c", 7)).await.unwrap();
    assert_eq!(found(&store, &search("acme", "shipping")).await.len(), 2);
    assert!(store.delete_conversation(Scope::Company("acme"), &c.id).await.unwrap());
    let d = conversation("acme", 3);
    store.insert_conversation(&d).await.unwrap();
    let newest = message(&d.id, None, "shipping soon", 8);
    store.insert_message(&newest).await.unwrap();
    assert_eq!(found(&store, &search("acme", "shipping")).await, ids(&[&newest, &kept]));
}

/// Messages stored by a process that stopped before the search index caught up with them are
/// found by the next process's first search.
#[tokio::test]
async fn sqlite_indexes_what_a_stopped_process_left_unindexed() {
    let dir = tempfile::tempdir().unwrap();
    let a = conversation("acme", 0);
    let stored = message(&a.id, None, "the parcel arrived", 1);
    {
        let store = SqliteStore::open(dir.path()).unwrap();
        store.insert_conversation(&a).await.unwrap();
        store.insert_message(&stored).await.unwrap();
    }
    let indexed = || {
        let conn = rusqlite::Connection::open(dir.path().join("chat.db")).unwrap();
        conn.query_row("SELECT COUNT(*) FROM messages_fts", [], |r| r.get::<_, i64>(0)).unwrap()
    };
    assert_eq!(indexed(), 0, "a stored message waits for the catch-up");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).unwrap());
    assert_eq!(found(&store, &search("acme", "parcel")).await, ids(&[&stored]));
    assert_eq!(indexed(), 1);
}

async fn message_search_pages_continue_without_repeats(store: Arc<dyn Store>) {
    let a = conversation("acme", 0);
    store.insert_conversation(&a).await.unwrap();
    let mut all = Vec::new();
    for i in 0..7 {
        // Differing lengths and repeats give differing scores, and some ties.
        let content = format!("{} ticket{}", "ticket ".repeat(1 + i % 3), " filler".repeat(i));
        let m = message(&a.id, None, &content, i as i64);
        store.insert_message(&m).await.unwrap();
        all.push(m.id);
    }
    let whole: Vec<String> =
        store.search_messages(&search("acme", "ticket")).await.unwrap().into_iter().map(|h| h.message.id).collect();
    assert_eq!(whole.len(), 7);
    let mut paged: Vec<String> = Vec::new();
    let mut s = search("acme", "ticket");
    s.limit = 3;
    loop {
        let hits = store.search_messages(&s).await.unwrap();
        let Some(last) = hits.last() else { break };
        paged.extend(hits.iter().map(|h| h.message.id.clone()));
        s.after = Some(SearchPosition { score: last.score, id: last.message.id.clone(), seen: paged.len() as u64 });
    }
    assert_eq!(paged, whole, "pages continue the single ranking exactly");
}

async fn conversation_search_matches_message_words(store: Arc<dyn Store>) {
    let mut a = conversation("acme", 0);
    a.title = Some("Other".into());
    let b = conversation("acme", 1);
    let foreign = conversation("globex", 2);
    for c in [&a, &b, &foreign] {
        store.insert_conversation(c).await.unwrap();
    }
    store.insert_message(&message(&a.id, None, "The invoice is wrong", 1)).await.unwrap();
    let deleted = message(&b.id, None, "an invoice, then deleted", 2);
    store.insert_message(&deleted).await.unwrap();
    store.soft_delete_message(&b.id, &deleted.id, at(3)).await.unwrap();
    store.insert_message(&message(&foreign.id, None, "invoice", 4)).await.unwrap();
    let q = |q: &str| {
        let store = store.clone();
        let f = ConversationFilter { company_id: "acme".into(), q: Some(q.into()), limit: 50, ..Default::default() };
        async move { store.list_conversations(&f).await.unwrap().items.into_iter().map(|c| c.id).collect::<Vec<_>>() }
    };
    assert_eq!(q("INVOICE").await, vec![a.id.clone()], "a live message's words match; deleted ones and other companies' do not");
    assert_eq!(q("\"invoice is\"").await, vec![a.id.clone()]);
    assert!(q("invoices").await.is_empty(), "whole words in messages");
    assert_eq!(q("Othe").await, vec![a.id.clone()], "titles still match as substrings");
}
