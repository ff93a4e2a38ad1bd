//! Message search over HTTP: what it finds and for whom, snippets, paging with the cursor,
//! validation; and the conversation list's `q` reaching message words. Runs on SQLite, or
//! MongoDB with `CHAT_TEST_STORE=mongo`.

mod common;

use common::*;
use serde_json::Value;

fn hit_contents(body: &Value) -> Vec<String> {
    let mut v: Vec<String> =
        body["hits"].as_array().unwrap().iter().map(|h| h["message"]["content"].as_str().unwrap().to_string()).collect();
    v.sort();
    v
}

#[tokio::test]
async fn finds_words_and_phrases_within_what_the_caller_may_read() {
    let app = spawn_app(&[]);
    let alice = user("alice", "acme");
    let a = app.conversation(&alice).await;
    let b = app.conversation(&alice).await;
    let foreign = app.conversation(&user("mallory", "globex")).await;
    app.message(&alice, &a, "My <b>credit card</b> was charged twice & I want a refund").await;
    app.message(&alice, &a, "card credit, not the phrase").await;
    let deleted = app.message(&alice, &b, "refund please").await;
    app.message(&alice, &b, "refunds are words too").await;
    app.message(&user("mallory", "globex"), &foreign, "refund elsewhere").await;

    let (status, body) = app.get(&alice, "/api/search/messages?q=REFUND").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(hit_contents(&body), ["My <b>credit card</b> was charged twice &amp; I want a refund", "refund please"]);
    let hit = body["hits"].as_array().unwrap().iter().find(|h| h["conversationId"] == a.as_str()).unwrap();
    assert_eq!(hit["message"]["conversation_id"], a.as_str());
    assert_eq!(
        hit["snippet"], "My credit card was charged twice &amp; I want a <mark>refund</mark>",
        "markup removed, text escaped, hits marked"
    );

    let (_, body) = app.get(&alice, "/api/search/messages?q=%22credit%20card%22").await;
    assert_eq!(body["hits"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["hits"][0]["snippet"], "My <mark>credit</mark> <mark>card</mark> was charged twice &amp; I want a refund");
    let (_, body) = app.get(&alice, "/api/search/messages?q=credit+card").await;
    assert_eq!(body["hits"].as_array().unwrap().len(), 2);

    // Deleted messages never appear.
    let mid = deleted["id"].as_str().unwrap();
    assert_eq!(app.delete(&alice, &format!("/api/conversations/{b}/messages/{mid}")).await.0, 200);
    let (_, body) = app.get(&alice, &format!("/api/search/messages?q=refund&conversationId={b}")).await;
    assert_eq!(body["hits"], serde_json::json!([]));

    // A widget searches its own conversation only.
    let w = widget(&a, "acme");
    let (_, body) = app.get(&w, "/api/search/messages?q=refund").await;
    assert_eq!(body["hits"].as_array().unwrap().len(), 1);
    assert_eq!(body["hits"][0]["conversationId"], a.as_str());
    let (status, _) = app.get(&w, &format!("/api/search/messages?q=refund&conversationId={b}")).await;
    assert_eq!(status, 404);
    // Another company's conversation is not found either.
    let (status, _) = app.get(&alice, &format!("/api/search/messages?q=refund&conversationId={foreign}")).await;
    assert_eq!(status, 404);

    // The conversation list's q reaches message words too.
    let (_, body) = app.get(&alice, "/api/conversations?q=charged").await;
    let ids: Vec<&str> = body["conversations"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [a.as_str()]);
}

#[tokio::test]
async fn pages_follow_the_cursor_and_ignore_later_messages() {
    let app = spawn_app(&[]);
    let alice = user("alice", "acme");
    let a = app.conversation(&alice).await;
    for i in 0..5 {
        app.message(&alice, &a, &format!("ticket number {i}")).await;
    }
    let (_, first) = app.get(&alice, "/api/search/messages?q=ticket&limit=2").await;
    assert_eq!(first["limit"], 2);
    let mut seen = hit_contents(&first);
    let mut cursor = first["nextCursor"].as_str().expect("more pages").to_string();
    app.message(&alice, &a, "ticket stored after the first page").await;
    loop {
        let (status, page) = app.get(&alice, &format!("/api/search/messages?q=ticket&limit=2&cursor={cursor}")).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(hit_contents(&page));
        match page["nextCursor"].as_str() {
            Some(next) => cursor = next.to_string(),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen, (0..5).map(|i| format!("ticket number {i}")).collect::<Vec<_>>());
    let (_, fresh) = app.get(&alice, "/api/search/messages?q=ticket&limit=100").await;
    assert_eq!(fresh["hits"].as_array().unwrap().len(), 6, "a new search sees it");
    assert!(fresh["nextCursor"].is_null());
}

#[tokio::test]
async fn bad_input_is_refused_clearly() {
    let app = spawn_app(&[]);
    let alice = user("alice", "acme");
    for (query, field) in [
        ("", "q"),
        ("q=", "q"),
        ("q=%21%3F", "q"),
        ("q=a%00b", "q"),
        ("q=a%1Bb", "q"),
        ("q=ok&cursor=nonsense", "cursor"),
        ("q=ok&from=yesterday", "from"),
        ("q=ok&threadId=a%2Fb", "threadId"),
        ("q=ok&conversationId=xyz", "conversationId"),
    ] {
        let (status, body) = app.get(&alice, &format!("/api/search/messages?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["details"][0]["field"], field, "{query}: {body}");
    }
    // FTS5 and regex syntax are just text.
    for q in ["NEAR(a%20b)", "a*", "%22unclosed", "-x", "(%5B.*x", "%5E%24y"] {
        let (status, body) = app.get(&alice, &format!("/api/search/messages?q={q}")).await;
        assert_eq!(status, 200, "{q}: {body}");
    }
    assert_eq!(app.get(&no_company("bob"), "/api/search/messages?q=x").await.0, 400);
    assert_eq!(send(reqwest::Client::new().get(app.url("/api/search/messages?q=x"))).await.0, 401);
}
