//! A minimal Socket.IO v5 client over an Engine.IO v4 WebSocket, enough to drive the server
//! the way socket.io-client does: handshake with `auth.token`, answer pings, emit events
//! (with or without acknowledgement) and collect every event received. Waiting is always on
//! an event with a deadline, never a sleep.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as Ws;

/// How long a wait for an expected event or acknowledgement may take before the test fails.
pub const EVENT_DEADLINE: Duration = Duration::from_secs(5);

type Acks = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

pub struct SocketClient {
    out: mpsc::UnboundedSender<String>,
    events: mpsc::UnboundedReceiver<(String, Value)>,
    /// Received but not yet taken by a `wait_for`.
    seen: Vec<(String, Value)>,
    acks: Acks,
    next_ack: AtomicU64,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for SocketClient {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl SocketClient {
    /// Connects to `base_url` (http://host:port) with `token`; `Err` carries the server's
    /// connect error message.
    pub async fn connect(base_url: &str, token: &str) -> Result<SocketClient, String> {
        let ws_url = format!("{}/socket.io/?EIO=4&transport=websocket", base_url.replacen("http", "ws", 1));
        let (ws, _) = tokio_tungstenite::connect_async(&ws_url).await.map_err(|e| e.to_string())?;
        let (mut sink, mut stream) = ws.split();

        let open = next_text(&mut stream).await.ok_or("no Engine.IO open packet")?;
        if !open.starts_with('0') {
            return Err(format!("unexpected first packet {open}"));
        }
        sink.send(Ws::text(format!("40{}", json!({ "token": token })))).await.map_err(|e| e.to_string())?;
        loop {
            let packet = next_text(&mut stream).await.ok_or("closed during the handshake")?;
            if packet == "2" {
                sink.send(Ws::text("3")).await.map_err(|e| e.to_string())?;
            } else if packet.starts_with("40") {
                break;
            } else if let Some(err) = packet.strip_prefix("44") {
                let v: Value = serde_json::from_str(err).unwrap_or(Value::Null);
                return Err(v["message"].as_str().unwrap_or(err).to_string());
            }
        }

        let (out, mut out_rx) = mpsc::unbounded_channel::<String>();
        let (events_tx, events) = mpsc::unbounded_channel();
        let acks: Acks = Arc::default();
        let reader_acks = acks.clone();
        let pong = out.clone();
        let reader = tokio::spawn(async move {
            loop {
                tokio::select! {
                    outgoing = out_rx.recv() => match outgoing {
                        Some(text) => if sink.send(Ws::text(text)).await.is_err() { return },
                        None => { let _ = sink.close().await; return }
                    },
                    incoming = next_text(&mut stream) => {
                        let Some(packet) = incoming else { return };
                        if packet == "2" {
                            let _ = pong.send("3".into());
                        } else if let Some(body) = packet.strip_prefix("42") {
                            if let Ok(Value::Array(mut args)) = serde_json::from_str::<Value>(body)
                                && let Some(Value::String(name)) = args.first().cloned()
                            {
                                let data = if args.len() > 1 { args.swap_remove(1) } else { Value::Null };
                                let _ = events_tx.send((name, data));
                            }
                        } else if let Some(body) = packet.strip_prefix("43") {
                            let split = body.find('[').unwrap_or(body.len());
                            if let Ok(id) = body[..split].parse::<u64>() {
                                let data = serde_json::from_str::<Value>(&body[split..])
                                    .ok()
                                    .and_then(|v| v.get(0).cloned())
                                    .unwrap_or(Value::Null);
                                if let Some(tx) = reader_acks.lock().unwrap().remove(&id) {
                                    let _ = tx.send(data);
                                }
                            }
                        }
                    }
                }
            }
        });
        Ok(SocketClient { out, events, seen: Vec::new(), acks, next_ack: AtomicU64::new(1), reader })
    }

    pub fn emit(&self, event: &str, data: Value) {
        let _ = self.out.send(format!("42{}", json!([event, data])));
    }

    /// Emits with an acknowledgement and returns it; panics after the deadline.
    pub async fn emit_ack(&self, event: &str, data: Value) -> Value {
        let id = self.next_ack.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.acks.lock().unwrap().insert(id, tx);
        let _ = self.out.send(format!("42{id}{}", json!([event, data])));
        tokio::time::timeout(EVENT_DEADLINE, rx)
            .await
            .unwrap_or_else(|_| panic!("no acknowledgement for {event} within {EVENT_DEADLINE:?}"))
            .expect("socket closed before the acknowledgement")
    }

    /// Joins a conversation and checks the acknowledgement.
    pub async fn join(&mut self, conversation_id: &str) {
        let ack = self.emit_ack("conversation:join", json!(conversation_id)).await;
        assert_eq!(ack["ok"], true, "join failed: {ack}");
        self.wait_for("conversation:joined", |d| d["id"] == conversation_id).await;
    }

    /// The first received `event` matching `matches` not taken before; panics after the deadline.
    pub async fn wait_for(&mut self, event: &str, matches: impl Fn(&Value) -> bool) -> Value {
        self.wait_until(event, &matches, Instant::now() + EVENT_DEADLINE)
            .await
            .unwrap_or_else(|| panic!("no matching {event} within {EVENT_DEADLINE:?}; received: {:?}", self.seen))
    }

    /// Like `wait_for`, but `None` once `deadline` passes.
    pub async fn wait_until(&mut self, event: &str, matches: &impl Fn(&Value) -> bool, deadline: Instant) -> Option<Value> {
        if let Some(i) = self.seen.iter().position(|(name, data)| name == event && matches(data)) {
            return Some(self.seen.remove(i).1);
        }
        loop {
            let (name, data) = tokio::time::timeout_at(deadline, self.events.recv()).await.ok()??;
            if name == event && matches(&data) {
                return Some(data);
            }
            self.seen.push((name, data));
        }
    }

    /// Moves everything received so far into the buffer and counts `event`s matching `matches`.
    pub fn count_received(&mut self, event: &str, matches: impl Fn(&Value) -> bool) -> usize {
        while let Ok(e) = self.events.try_recv() {
            self.seen.push(e);
        }
        self.seen.iter().filter(|(name, data)| name == event && matches(data)).count()
    }

    /// Forgets everything received so far.
    pub fn clear_received(&mut self) {
        while self.events.try_recv().is_ok() {}
        self.seen.clear();
    }

    /// Closes the connection (the server sees a transport close).
    pub fn close(self) {
        drop(self);
    }
}

async fn next_text<S>(stream: &mut S) -> Option<String>
where
    S: futures_util::Stream<Item = Result<Ws, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match stream.next().await? {
            Ok(Ws::Text(t)) => return Some(t.to_string()),
            Ok(Ws::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}
