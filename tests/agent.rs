//! The agent service flow on the real binary. The agent service is not ours, so it is a fake
//! here: a small axum server inside the test that records every request (path, body,
//! `Authorization`) and answers as the scenario says. What the chat service broadcasts is
//! watched through a real Socket.IO connection; what it stores, through the REST API.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::{Notify, Semaphore};
use tokio::time::{timeout_at, Instant};

use common::socket::{Ack, Event, SocketClient, DEADLINE};
use common::{spawn_app, user, TestApp, INTERNAL_TOKEN};

const GENERATE: &str = "/api/responses/generate";
const INTENT: &str = "/api/responses/detect-intent";
const SENTIMENT: &str = "/api/responses/sentiment";
const SUMMARIZE: &str = "/api/responses/summarize";
const CONTACTS: &str = "/api/internal/contacts/extract";
const REPLY_FAILED: &str = "Sorry, I encountered an error. Please try again.";
const COMPANY: &str = "acme";

/// How the fake agent service answers.
#[derive(Clone, Copy)]
enum Scenario {
    Normal,
    /// Every answer comes this late.
    Slow(Duration),
    /// HTTP 500 on every path.
    ServerError,
    /// HTTP 200 with a body that is not JSON.
    Garbage,
    /// Reply requests wait until the test opens the gate (`FakeAgent::release_reply`).
    GatedReplies,
}

#[derive(Debug, Clone)]
struct Recorded {
    path: String,
    authorization: Option<String>,
    body: Value,
}

struct FakeState {
    scenario: Scenario,
    requests: Mutex<Vec<Recorded>>,
    arrived: Notify,
    summaries: AtomicUsize,
    reply_gate: Semaphore,
}

struct FakeAgent {
    url: String,
    state: Arc<FakeState>,
}

impl FakeAgent {
    async fn start(scenario: Scenario) -> FakeAgent {
        let state = Arc::new(FakeState {
            scenario,
            requests: Mutex::new(Vec::new()),
            arrived: Notify::new(),
            summaries: AtomicUsize::new(0),
            reply_gate: Semaphore::new(0),
        });
        let router = Router::new().fallback(answer).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind fake agent");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, router).await.expect("fake agent serves") });
        FakeAgent { url, state }
    }

    /// Requests received on `path` so far, in arrival order.
    fn requests(&self, path: &str) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().iter().filter(|r| r.path == path).cloned().collect()
    }

    fn total_requests(&self) -> usize {
        self.state.requests.lock().unwrap().len()
    }

    /// Waits for a request on `path` whose body satisfies `pred`.
    async fn wait_request(&self, path: &str, pred: impl Fn(&Value) -> bool) -> Recorded {
        let deadline = Instant::now() + DEADLINE;
        loop {
            // Registered before looking, so a request arriving in between still wakes us.
            let arrived = self.state.arrived.notified();
            if let Some(r) = self.requests(path).into_iter().find(|r| pred(&r.body)) {
                return r;
            }
            if timeout_at(deadline, arrived).await.is_err() {
                panic!("the agent service got no matching {path} request within {DEADLINE:?}");
            }
        }
    }

    fn release_reply(&self) {
        self.state.reply_gate.add_permits(1);
    }
}

async fn answer(State(state): State<Arc<FakeState>>, uri: Uri, headers: HeaderMap, body: String) -> Response {
    let path = uri.path().to_string();
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_string);
    state.requests.lock().unwrap().push(Recorded { path: path.clone(), authorization, body: body.clone() });
    state.arrived.notify_waiters();
    match state.scenario {
        Scenario::Slow(delay) => tokio::time::sleep(delay).await,
        Scenario::ServerError => {
            return (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({ "error": "model overloaded" }))).into_response();
        }
        Scenario::Garbage => return ([(header::CONTENT_TYPE, "application/json")], "<html>oops").into_response(),
        Scenario::GatedReplies if path == GENERATE => state.reply_gate.acquire().await.expect("gate open").forget(),
        _ => {}
    }
    let answer = match path.as_str() {
        GENERATE => json!({
            "response": format!("Echo: {}", body["message"].as_str().unwrap_or_default()),
            "metadata": { "model": "fake-model", "tokensUsed": 42 }
        }),
        INTENT => json!({ "intent": "order_status", "confidence": 0.9 }),
        SENTIMENT => json!({ "sentiment": "neutral", "score": 0.1 }),
        SUMMARIZE => json!({ "summary": format!("Summary #{}", state.summaries.fetch_add(1, Ordering::SeqCst) + 1) }),
        CONTACTS => json!({ "contacts": [] }),
        _ => return (StatusCode::NOT_FOUND, "unknown path").into_response(),
    };
    Json(answer).into_response()
}

/// The chat service, a user of it, a conversation with an agent, and the user's socket in it.
struct Chat {
    app: TestApp,
    token: String,
    conversation: String,
    socket: SocketClient,
}

async fn start_chat(env: &[(&str, &str)]) -> Chat {
    let app = spawn_app(env);
    let token = user("alice", COMPANY);
    let conversation = app.conversation(&token).await;
    let mut socket = SocketClient::connect(&app.base_url, &token).await.expect("socket connects");
    socket.join(&conversation).await;
    Chat { app, token, conversation, socket }
}

impl Chat {
    /// `message:send` over the socket; returns the stored message from the acknowledgement.
    async fn send(&self, content: &str) -> Value {
        self.send_ack(content).await.data["message"].clone()
    }

    /// `message:send` over the socket; returns its (successful) acknowledgement.
    async fn send_ack(&self, content: &str) -> Ack {
        let ack = self.socket.emit_ack("message:send", json!({ "conversationId": self.conversation, "content": content })).await;
        assert_eq!(ack.data["ok"], true, "{}", ack.data);
        ack
    }

    /// A message created by a sibling service through the internal API.
    async fn internal_create(&self, content: &str, sender_type: &str) {
        let body = json!({ "conversationId": self.conversation, "content": content, "senderType": sender_type, "messageType": "text" });
        let (status, body) = self.app.post(INTERNAL_TOKEN, "/api/internal/messages/create", body).await;
        assert_eq!(status, 200, "{body}");
    }

    /// The `message:new` broadcast of the agent's reply to `content`.
    async fn wait_reply(&mut self, content: &str) -> Event {
        let expected = format!("Echo: {content}");
        self.socket.wait_for("message:new", |d| d["message"]["sender_type"] == "agent" && d["message"]["content"] == expected).await
    }

    /// The `message:new` broadcast of `message`.
    async fn wait_broadcast_of(&mut self, message: &Value) -> Event {
        let id = message["id"].clone();
        self.socket.wait_for("message:new", |d| d["message"]["id"] == id).await
    }

    /// The stored messages of the main thread, oldest first.
    async fn stored(&self) -> Vec<Value> {
        let (status, body) = self.app.get(&self.token, &format!("/api/conversations/{}/messages?limit=100", self.conversation)).await;
        assert_eq!(status, 200, "{body}");
        body["messages"].as_array().expect("messages").clone()
    }
}

fn turn(m: &Value) -> Value {
    json!({ "role": m["role"], "content": m["content"] })
}

fn turns(ms: &[Value]) -> Vec<Value> {
    ms.iter().map(turn).collect()
}

fn summary_turn(summary: &str) -> Value {
    json!({ "role": "system", "content": format!("Summary of the conversation so far: {summary}") })
}

/// A URL on which nothing listens.
fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_flow_sends_the_contract_request_and_broadcasts_the_stored_reply() {
    let fake = FakeAgent::start(Scenario::Normal).await;
    let mut chat = start_chat(&[("AGENT_SERVICE_URL", &fake.url)]).await;
    // Sent by a sibling service: part of the history, and never answered by the agent.
    chat.internal_create("How can I help?", "agent").await;
    let sent = chat.send("Where is my order?").await;
    assert_eq!(sent["content"], "Where is my order?");

    let reply_event = chat.wait_reply("Where is my order?").await;
    let sent_event = chat.wait_broadcast_of(&sent).await;
    assert!(sent_event.seq < reply_event.seq, "the user's message is broadcast before the reply");

    let generate = fake.requests(GENERATE);
    assert_eq!(generate.len(), 1, "one reply request, none for the internal message: {generate:?}");
    assert_eq!(generate[0].authorization.as_deref(), Some(format!("Bearer {}", chat.token).as_str()));
    assert_eq!(
        generate[0].body,
        json!({
            "agentId": "agent-1",
            "conversationId": chat.conversation,
            "message": "Where is my order?",
            "conversationHistory": [{ "role": "assistant", "content": "How can I help?" }],
            "includeKnowledgeBase": true
        })
    );

    let reply = reply_event.data["message"].clone();
    assert_eq!(reply_event.data["conversationId"], chat.conversation);
    assert_eq!(reply["_id"], reply["id"]);
    assert_eq!(reply["conversation_id"], chat.conversation);
    assert_eq!(reply["sender_type"], "agent");
    assert_eq!(reply["sender_id"], "agent-1");
    assert_eq!(reply["role"], "assistant");
    assert_eq!(reply["message_type"], "text");
    assert!(reply["thread_id"].is_null());
    assert_eq!(reply["ai_metadata"]["model"], "fake-model");
    assert_eq!(reply["ai_metadata"]["tokens_used"], 42);
    assert!(reply["ai_metadata"]["response_time_ms"].is_u64(), "{reply}");
    // The legacy `message` event carries the same document.
    let reply_id = reply["id"].clone();
    let legacy = chat.socket.wait_for("message", |m| m["id"] == reply_id).await;
    assert_eq!(legacy.data, reply);

    let stored = chat.stored().await;
    let contents: Vec<&str> = stored.iter().map(|m| m["content"].as_str().unwrap()).collect();
    assert_eq!(contents, ["How can I help?", "Where is my order?", "Echo: Where is my order?"]);
    assert_eq!(stored[2], reply, "the broadcast reply is the stored one");
    let (_, health) = common::send(chat.app.http.get(chat.app.url("/health"))).await;
    assert_eq!(health["checks"]["agent"]["status"], "ok", "{health}");
    let metrics = chat.app.scrape(None).await;
    assert_eq!(metrics.value(r#"chat_agent_call_duration_seconds_count{call="reply"}"#), 1.0);
    assert_eq!(metrics.value(r#"chat_messages_sent_total{sender_type="agent"}"#), 2.0, "the reply and the internal create");

    // Contacts: the internal token, the message and its context.
    let contacts = fake.wait_request(CONTACTS, |_| true).await;
    assert_eq!(contacts.authorization.as_deref(), Some(format!("Bearer {INTERNAL_TOKEN}").as_str()));
    assert_eq!(
        contacts.body,
        json!({
            "conversationId": chat.conversation,
            "messageContent": "Where is my order?",
            "companyId": COMPANY,
            "conversationContext": [{ "role": "assistant", "content": "How can I help?" }]
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_to_a_thread_message_stays_in_the_thread() {
    let fake = FakeAgent::start(Scenario::Normal).await;
    let mut chat = start_chat(&[("AGENT_SERVICE_URL", &fake.url)]).await;
    let (status, body) =
        chat.app.post(&chat.token, &format!("/api/conversations/{}/threads", chat.conversation), json!({ "title": "Refund" })).await;
    assert_eq!(status, 201, "{body}");
    let thread = body["thread"]["id"].as_str().unwrap().to_string();
    // Over REST this time: the same flow as `message:send`.
    let path = format!("/api/conversations/{}/threads/{thread}", chat.conversation);
    let (status, body) = chat.app.post(&chat.token, &path, json!({ "content": "I want a refund" })).await;
    assert_eq!(status, 201, "{body}");

    let reply = chat.wait_reply("I want a refund").await;
    assert_eq!(reply.data["message"]["thread_id"], thread);
    let updated = chat.socket.wait_for("thread:updated", |d| d["threadId"] == thread.as_str() && d["message_count"] == 2).await;
    assert!(updated.seq > reply.seq);
    let (_, body) = chat.app.get(&chat.token, &path).await;
    let contents: Vec<&str> = body["messages"].as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap()).collect();
    assert_eq!(contents, ["I want a refund", "Echo: I want a refund"]);
    assert_eq!(body["thread"]["message_count"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intent_and_sentiment_arrive_as_message_edited() {
    let fake = FakeAgent::start(Scenario::Normal).await;
    let mut chat = start_chat(&[("AGENT_SERVICE_URL", &fake.url)]).await;
    let sent = chat.send("Where is my parcel?").await;
    let id = sent["id"].clone();

    let sent_event = chat.wait_broadcast_of(&sent).await;
    let edited_event = chat
        .socket
        .wait_for("message:edited", |d| {
            d["messageId"] == id && d["message"]["metadata"]["intent"].is_string() && d["message"]["metadata"]["sentiment"].is_string()
        })
        .await;
    assert!(sent_event.seq < edited_event.seq);
    let edited = edited_event.data;
    assert_eq!(edited["conversationId"], chat.conversation);
    assert_eq!(edited["message"]["metadata"]["intent"], "order_status");
    assert_eq!(edited["message"]["metadata"]["sentiment"], "neutral");
    assert_eq!(edited["message"]["content"], "Where is my parcel?");

    for path in [INTENT, SENTIMENT] {
        let requests = fake.requests(path);
        assert_eq!(requests.len(), 1, "{path}");
        assert_eq!(requests[0].body, json!({ "message": "Where is my parcel?" }), "{path}");
        assert_eq!(requests[0].authorization.as_deref(), Some(format!("Bearer {}", chat.token).as_str()), "{path}");
    }
    let stored = chat.stored().await;
    let user_message = stored.iter().find(|m| m["id"] == id).expect("stored");
    assert_eq!(user_message["metadata"]["intent"], "order_status");
    assert_eq!(user_message["metadata"]["sentiment"], "neutral");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summary_at_30_messages_and_again_after_20_more_then_history_is_summary_and_last_10() {
    let fake = FakeAgent::start(Scenario::Normal).await;
    let mut chat = start_chat(&[("AGENT_SERVICE_URL", &fake.url)]).await;
    let seed = |from: usize, to: usize| (from..to).map(|i| (format!("seed {i}"), if i % 2 == 0 { "user" } else { "agent" }));
    for (content, sender) in seed(1, 30) {
        chat.internal_create(&content, sender).await;
    }

    // The 30th message: a summary is due (30 messages, 30 new), then the reply.
    chat.send("first question").await;
    chat.wait_reply("first question").await;
    let stored = chat.stored().await;
    assert_eq!(stored.len(), 31);
    let summaries = fake.requests(SUMMARIZE);
    assert_eq!(summaries.len(), 1);
    assert_eq!(summaries[0].authorization.as_deref(), Some(format!("Bearer {}", chat.token).as_str()));
    assert_eq!(summaries[0].body, json!({ "messages": turns(&stored[..30]) }));
    let mut expected_history = vec![summary_turn("Summary #1")];
    expected_history.extend(turns(&stored[19..29]));
    assert_eq!(fake.requests(GENERATE)[0].body["conversationHistory"], json!(expected_history));

    // Two new messages since the summary: not due; the stored summary leads the history.
    chat.send("second question").await;
    chat.wait_reply("second question").await;
    assert_eq!(fake.requests(SUMMARIZE).len(), 1);
    let stored = chat.stored().await;
    let mut expected_history = vec![summary_turn("Summary #1")];
    expected_history.extend(turns(&stored[21..31]));
    assert_eq!(fake.requests(GENERATE)[1].body["conversationHistory"], json!(expected_history));

    // 33 stored + 16 + this one = 50: 20 new since the summary at 30.
    for (content, sender) in seed(30, 46) {
        chat.internal_create(&content, sender).await;
    }
    chat.send("third question").await;
    chat.wait_reply("third question").await;
    let stored = chat.stored().await;
    assert_eq!(stored.len(), 51);
    let summaries = fake.requests(SUMMARIZE);
    assert_eq!(summaries.len(), 2);
    let mut expected_request = vec![summary_turn("Summary #1")];
    expected_request.extend(turns(&stored[30..50]));
    assert_eq!(summaries[1].body, json!({ "messages": expected_request }));
    let mut expected_history = vec![summary_turn("Summary #2")];
    expected_history.extend(turns(&stored[39..49]));
    assert_eq!(fake.requests(GENERATE)[2].body["conversationHistory"], json!(expected_history));

    let (_, body) = chat.app.get(&chat.token, &format!("/api/conversations/{}", chat.conversation)).await;
    assert_eq!(body["conversation"]["summary"], "Summary #2");
    assert_eq!(body["conversation"]["metadata"]["summary_message_count"], 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_agent_answers_after_the_users_message_is_acknowledged_and_broadcast() {
    let fake = FakeAgent::start(Scenario::Slow(Duration::from_secs(2))).await;
    let mut chat = start_chat(&[("AGENT_SERVICE_URL", &fake.url)]).await;
    let ack = chat.send_ack("Are you there?").await;
    let sent = ack.data["message"].clone();
    let sent_event = chat.wait_broadcast_of(&sent).await;
    let reply_event = chat.wait_reply("Are you there?").await;
    let id = sent["id"].clone();
    let edited_event = chat.socket.wait_for("message:edited", |d| d["messageId"] == id).await;

    assert!(sent_event.seq < ack.seq, "broadcast, then acknowledged: {sent_event:#?} {ack:#?}");
    assert!(ack.seq < reply_event.seq, "acknowledged before the agent answered: {ack:#?} {reply_event:#?}");
    assert!(sent_event.seq < edited_event.seq);
    let reply = &reply_event.data["message"];
    let elapsed = reply["ai_metadata"]["response_time_ms"].as_u64().expect("response_time_ms");
    assert!(elapsed >= 2000, "the measured time includes the agent's 2 s: {elapsed}");
}

/// The reply failed: a stored, broadcast system message; the user's message is intact.
async fn reply_fails_with_a_system_message(agent_url: &str, extra_env: &[(&str, &str)]) -> Chat {
    let mut env = vec![("AGENT_SERVICE_URL", agent_url)];
    env.extend_from_slice(extra_env);
    let mut chat = start_chat(&env).await;
    let sent = chat.send("Hello?").await;
    let sent_event = chat.wait_broadcast_of(&sent).await;
    let failure_event = chat.socket.wait_for("message:new", |d| d["message"]["sender_type"] == "system").await;
    assert!(sent_event.seq < failure_event.seq);
    let failure = failure_event.data["message"].clone();
    assert_eq!(failure["content"], REPLY_FAILED);
    assert_eq!(failure["role"], "system");
    assert_eq!(failure["message_type"], "system");
    assert!(failure["thread_id"].is_null());

    let stored = chat.stored().await;
    assert_eq!(stored.len(), 2, "{stored:#?}");
    assert_eq!(stored[0]["id"], sent["id"]);
    assert_eq!(stored[0]["content"], "Hello?");
    assert_eq!(stored[0]["sender_type"], "user");
    assert_eq!(stored[1], failure);
    assert_eq!(chat.socket.count_received("message:edited", |_| true), 0, "failed enrichment is dropped");
    chat
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_answering_500_gives_the_system_message() {
    let fake = FakeAgent::start(Scenario::ServerError).await;
    let chat = reply_fails_with_a_system_message(&fake.url, &[]).await;
    assert_eq!(fake.requests(GENERATE).len(), 1);
    let metrics = chat.app.scrape(None).await;
    assert_eq!(metrics.value(r#"chat_agent_call_failures_total{call="reply",kind="status"}"#), 1.0);
    assert_eq!(metrics.value(r#"chat_messages_sent_total{sender_type="system"}"#), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_answering_garbage_gives_the_system_message() {
    let fake = FakeAgent::start(Scenario::Garbage).await;
    reply_fails_with_a_system_message(&fake.url, &[]).await;
    assert_eq!(fake.requests(GENERATE).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_slower_than_the_timeout_gives_the_system_message() {
    let fake = FakeAgent::start(Scenario::Slow(Duration::from_secs(2))).await;
    reply_fails_with_a_system_message(&fake.url, &[("AGENT_TIMEOUT_MS", "300")]).await;
    assert_eq!(fake.requests(GENERATE).len(), 1, "a reply is never retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_agent_gives_the_system_message() {
    let mut chat = reply_fails_with_a_system_message(&closed_port_url(), &[]).await;
    let (status, health) = common::send(chat.app.http.get(chat.app.url("/health"))).await;
    assert_eq!((status, &health["status"]), (200, &json!("ok")), "the agent never fails the node: {health}");
    assert_eq!(health["checks"]["agent"]["status"], "failing", "{health}");
    assert!(health["checks"]["agent"]["error"].as_str().unwrap().contains("unreachable"), "{health}");
    // The service carries on: the next message is stored and broadcast as usual.
    let sent = chat.send("Still there?").await;
    chat.wait_broadcast_of(&sent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_agent_service_url_no_calls_are_made() {
    let fake = FakeAgent::start(Scenario::Normal).await;
    let mut chat = start_chat(&[]).await;
    let sent = chat.send("Hello?").await;
    chat.wait_broadcast_of(&sent).await;
    let message = chat.app.message(&chat.token, &chat.conversation, "Anyone?").await;
    chat.wait_broadcast_of(&message).await;
    let stored = chat.stored().await;
    let contents: Vec<&str> = stored.iter().map(|m| m["content"].as_str().unwrap()).collect();
    assert_eq!(contents, ["Hello?", "Anyone?"]);
    assert_eq!(fake.total_requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_system_and_service_messages_never_call_the_agent() {
    let fake = FakeAgent::start(Scenario::Normal).await;
    let mut chat = start_chat(&[("AGENT_SERVICE_URL", &fake.url)]).await;
    chat.internal_create("agent speaking", "agent").await;
    chat.internal_create("call transcript", "user").await;
    chat.internal_create("call ended", "system").await;
    // Not text: no reply either.
    let ack = chat
        .socket
        .emit_ack("message:send", json!({ "conversationId": chat.conversation, "content": "photo", "messageType": "image" }))
        .await
        .data;
    assert_eq!(ack["ok"], true, "{ack}");
    // The only message the agent answers; the ones above were all handled before it.
    chat.send("a real question").await;
    chat.wait_reply("a real question").await;
    let generate = fake.requests(GENERATE);
    assert_eq!(generate.len(), 1, "{generate:?}");
    assert_eq!(generate[0].body["message"], "a real question");
    let intents = fake.requests(INTENT);
    assert!(intents.iter().all(|r| r.body["message"] == "a real question"), "{intents:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_beyond_the_pending_limit_fails_fast_instead_of_queueing() {
    let fake = FakeAgent::start(Scenario::GatedReplies).await;
    let mut chat = start_chat(&[("AGENT_SERVICE_URL", &fake.url), ("AGENT_MAX_PENDING", "1")]).await;
    chat.send("first").await;
    // The first message's work now holds the only place, until its reply is let through.
    fake.wait_request(GENERATE, |b| b["message"] == "first").await;
    let second = chat.send("second").await;
    let third = chat.send("third").await;
    for _ in 0..2 {
        chat.socket.wait_for("message:new", |d| d["message"]["content"] == REPLY_FAILED).await;
    }
    assert_eq!(fake.requests(GENERATE).len(), 1);

    fake.release_reply();
    chat.wait_reply("first").await;
    let generate = fake.requests(GENERATE);
    assert_eq!(generate.len(), 1, "{generate:?}");
    let stored = chat.stored().await;
    for m in [&second, &third] {
        assert!(stored.iter().any(|s| s["id"] == m["id"] && s["content"] == m["content"]), "user message kept");
    }
    assert_eq!(stored.iter().filter(|s| s["content"] == REPLY_FAILED).count(), 2);
    let metrics = chat.app.scrape(None).await;
    assert_eq!(metrics.value(r#"chat_agent_call_failures_total{call="reply",kind="overloaded"}"#), 2.0);
    assert!(metrics.value("chat_agent_pending") <= 1.0);
}
