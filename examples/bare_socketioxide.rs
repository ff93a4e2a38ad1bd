//! The floor chat-service's send path is measured against: socketioxide alone, built against
//! the same patched engineioxide, doing what the load generator asks of the service in memory,
//! with no authentication, validation, store or metrics. `conversation:join` puts the socket
//! in `conversation:<id>` and answers `conversation:joined`; `message:send` builds the message
//! once, broadcasts it as `message` and `message:new` to the room, and acknowledges it.
//! `POST /api/conversations` hands out fresh ids so `examples/loadgen.rs` can create rooms.
//!
//! ```text
//! cargo build --release --example bare_socketioxide
//! PORT=4300 target/release/examples/bare_socketioxide
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::routing::post;
use axum::Json;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use socketioxide::extract::{AckSender, Data, SocketRef};
use socketioxide::SocketIo;

/// Same shape as the service's message, so the bytes on the wire match.
#[derive(Serialize)]
struct Message<'a> {
    _id: &'a str,
    id: &'a str,
    conversation_id: &'a str,
    thread_id: Option<&'a str>,
    sender_type: &'static str,
    sender_id: &'a str,
    role: &'static str,
    content: &'a str,
    message_type: &'static str,
    attachments: [(); 0],
    metadata: Value,
    created_at: String,
}

#[derive(Serialize)]
struct MessageNew<'a> {
    #[serde(rename = "conversationId")]
    conversation_id: &'a str,
    message: &'a RawValue,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn object_id() -> String {
    format!("{:024x}", NEXT_ID.fetch_add(1, Ordering::Relaxed))
}

fn now_iso() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

async fn on_connect(s: SocketRef) {
    s.on("conversation:join", async |s: SocketRef, Data(id): Data<String>| {
        s.join(format!("conversation:{id}"));
        let _ = s.emit("conversation:joined", &json!({ "id": id }));
    });
    s.on("message:send", async |s: SocketRef, Data(input): Data<Value>, ack: AckSender| {
        let conversation_id = input["conversationId"].as_str().unwrap_or_default().to_string();
        let id = object_id();
        let sender = s.id.to_string();
        let message = Message {
            _id: &id,
            id: &id,
            conversation_id: &conversation_id,
            thread_id: None,
            sender_type: "user",
            sender_id: &sender,
            role: "user",
            content: input["content"].as_str().unwrap_or_default(),
            message_type: "text",
            attachments: [],
            metadata: json!({}),
            created_at: now_iso(),
        };
        let raw = serde_json::value::to_raw_value(&message).expect("serializable");
        let room = format!("conversation:{conversation_id}");
        let _ = s.within(room.clone()).emit("message", &raw).await;
        let new = MessageNew { conversation_id: &conversation_id, message: &raw };
        let _ = s.within(room).emit("message:new", &new).await;
        let _ = ack.send(&json!({ "ok": true, "message": raw }));
    });
}

#[tokio::main]
async fn main() {
    let port: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(4300);
    // The service's engine settings (src/app.rs), so both hold the same buffers per socket.
    let (layer, io) = SocketIo::builder()
        .ping_interval(Duration::from_secs(25))
        .ping_timeout(Duration::from_secs(20))
        .max_buffer_size(1024)
        .ws_read_buffer_size(1024)
        .build_layer();
    io.ns("/", on_connect);
    let app = axum::Router::new()
        .route("/api/conversations", post(|| async { Json(json!({ "conversation": { "id": object_id() } })) }))
        .layer(layer);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
    println!("bare socketioxide listening on http://127.0.0.1:{port}");
    axum::serve(listener, app).await.expect("serve");
}
