//! A third client ecosystem beside socket.io-client (Node) and python-socketio: the Rust client
//! `rust_socketio` (async), unchanged, against the real binary. Clients on each of its
//! transports (WebSocket, long-polling, polling upgraded to WebSocket) connect with
//! `auth: { token }`, join with an acknowledgement, send with an acknowledgement, and receive
//! what the others sent as `message:new`.

mod common;

use std::time::Duration;

use common::*;
use futures_util::FutureExt;
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::{Event, Payload, TransportType};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::timeout;

/// How long any one wait (connection, acknowledgement, event) may take.
const WAIT: Duration = Duration::from_secs(20);

/// The events a client listens for, besides its own connection.
const EVENTS: [&str; 2] = ["message:new", "conversation:joined"];

/// A connected `rust_socketio` client and the events it received, in order.
struct RustClient {
    client: Client,
    events: mpsc::UnboundedReceiver<(String, Value)>,
}

/// The first argument of an acknowledgement. rust_socketio hands an acknowledgement's
/// arguments over as one JSON array (`43<id>[...]` as received), where it spreads an event's.
fn first_ack_argument(payload: Payload) -> Value {
    match payload {
        Payload::Text(values) => match values.into_iter().next() {
            Some(Value::Array(args)) => args.into_iter().next().unwrap_or(Value::Null),
            other => panic!("expected the arguments array, got {other:?}"),
        },
        other => panic!("expected JSON arguments, got {other:?}"),
    }
}

impl RustClient {
    /// Connects with `auth: { token }` and waits for the server's CONNECT.
    async fn connect(app: &TestApp, token: &str, transport: TransportType) -> RustClient {
        let mut client = Self::start(app, token, transport).await;
        client.next_event("connect").await;
        client
    }

    /// Opens the transport and sends the namespace CONNECT with `auth: { token }`.
    async fn start(app: &TestApp, token: &str, transport: TransportType) -> RustClient {
        let (tx, events) = mpsc::unbounded_channel();
        let mut builder = ClientBuilder::new(app.base_url.clone())
            .namespace("/")
            .transport_type(transport)
            .auth(json!({ "token": token }))
            .reconnect(false);
        for name in EVENTS.into_iter().chain(["connect", "error"]) {
            let tx = tx.clone();
            // `connect` and `error` are the client's own events: the namespace CONNECT, and a
            // CONNECT_ERROR (or an `error` event) from the server.
            let event = match name {
                "connect" => Event::Connect,
                "error" => Event::Error,
                _ => Event::from(name),
            };
            builder = builder.on(event, move |payload, _| {
                let tx = tx.clone();
                async move {
                    let data = match payload {
                        Payload::Text(values) => values.into_iter().next().unwrap_or(Value::Null),
                        _ => Value::Null,
                    };
                    let _ = tx.send((name.to_string(), data));
                }
                .boxed()
            });
        }
        let client = timeout(WAIT, builder.connect()).await.expect("connected in time").expect("connected");
        RustClient { client, events }
    }

    /// Emits `event` and returns the acknowledgement's first argument.
    async fn emit_with_ack(&self, event: &str, data: Value) -> Value {
        let (tx, mut acks) = mpsc::unbounded_channel();
        self.client
            .emit_with_ack(event, data, WAIT, move |payload, _| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(payload);
                }
                .boxed()
            })
            .await
            .expect("emitted");
        first_ack_argument(timeout(WAIT, acks.recv()).await.expect("acknowledged in time").expect("an acknowledgement"))
    }

    /// The next event named `name`, skipping others.
    async fn next_event(&mut self, name: &str) -> Value {
        loop {
            let (event, data) = timeout(WAIT, self.events.recv()).await.unwrap_or_else(|_| panic!("no {name} in time")).expect("open");
            if event == name {
                return data;
            }
        }
    }
}

#[tokio::test]
async fn rust_socketio_clients_join_send_and_receive_on_every_transport() {
    let app = spawn_app(&[]);
    let alice = user("alice", "acme");
    let conversation = app.conversation(&alice).await;

    let mut clients = Vec::new();
    for (name, transport) in [
        ("alice", TransportType::Websocket),
        ("bob", TransportType::Polling),
        ("carol", TransportType::Any),
    ] {
        let mut client = RustClient::connect(&app, &user(name, "acme"), transport).await;
        let ack = client.emit_with_ack("conversation:join", json!(conversation)).await;
        assert_eq!(ack["ok"], true, "{name}: {ack}");
        assert_eq!(ack["conversation"]["id"], conversation.as_str());
        let joined = client.next_event("conversation:joined").await;
        assert_eq!(joined["id"], conversation.as_str());
        clients.push((name, client));
    }

    // Each client sends once; every client, the sender included, receives each message once,
    // as `message:new` with the id its acknowledgement gave.
    for sender in 0..clients.len() {
        let (name, client) = &clients[sender];
        let content = format!("hello from {name}");
        let ack = client
            .emit_with_ack("message:send", json!({ "conversationId": conversation, "content": content, "tempId": "t-1" }))
            .await;
        assert_eq!(ack["ok"], true, "{name}: {ack}");
        assert_eq!(ack["message"]["content"], content.as_str());
        let id = ack["message"]["id"].as_str().expect("message id").to_string();
        for (receiver, client) in clients.iter_mut() {
            let event = client.next_event("message:new").await;
            assert_eq!(event["conversationId"], conversation.as_str(), "{receiver}");
            assert_eq!(event["message"]["id"], id.as_str(), "{receiver} got another message");
            assert_eq!(event["message"]["content"], content.as_str(), "{receiver}");
        }
    }

    // Refusals come back through the acknowledgement too.
    let (_, alice_client) = &clients[0];
    let refused = alice_client.emit_with_ack("message:send", json!({ "conversationId": conversation, "content": "  " })).await;
    assert_eq!(refused["ok"], false);
    assert_eq!(refused["error"], "Invalid message data");

    for (_, client) in &clients {
        client.client.disconnect().await.expect("disconnected");
    }
}

#[tokio::test]
async fn rust_socketio_sees_the_handshake_refusal() {
    let app = spawn_app(&[]);
    for (token, message) in [(expired("alice", "acme"), "Invalid or expired token"), (String::new(), "Authentication required")] {
        let mut client = RustClient::start(&app, &token, TransportType::Websocket).await;
        let error = client.next_event("error").await;
        assert!(error.as_str().is_some_and(|e| e.contains(message)), "{error}");
    }
}
