//! A minimal Socket.IO v5 client over an Engine.IO v4 WebSocket, so that the integration tests
//! can watch the server the way socket.io-client does: handshake with `auth.token`, answer
//! pings, emit events (with or without acknowledgement), join conversations and wait for the
//! events the server sends. Every event and acknowledgement is numbered in arrival order, so
//! tests can assert the order things happened in. Waiting is always on a packet, with a
//! deadline, never a sleep.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{timeout_at, Instant};
use tokio_tungstenite::tungstenite::Message as Ws;

/// How long any single wait (connect, acknowledgement, event) may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// An event the server sent: `42["name", data]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Position among everything this socket received, events and acknowledgements alike.
    pub seq: u64,
    pub name: String,
    pub data: Value,
}

/// The acknowledgement of an emitted event: `43<id>[data]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Ack {
    /// Position among everything this socket received, events and acknowledgements alike.
    pub seq: u64,
    /// The acknowledgement's first argument.
    pub data: Value,
}

type AckWaiters = Arc<Mutex<HashMap<u64, oneshot::Sender<Ack>>>>;

pub struct SocketClient {
    out: mpsc::UnboundedSender<String>,
    incoming: mpsc::UnboundedReceiver<Event>,
    /// Received but not yet taken by a `wait_for`, in arrival order.
    pending: Vec<Event>,
    acks: AckWaiters,
    next_ack: AtomicU64,
    reader: tokio::task::JoinHandle<()>,
    /// Set once the connection is gone.
    closed: Arc<AtomicBool>,
    /// The session id of the server's CONNECT answer (connection state recovery).
    pub pid: Option<String>,
    /// The offset of the last room event received that carried one.
    last_offset: Arc<Mutex<Option<String>>>,
}

impl Drop for SocketClient {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl SocketClient {
    /// Connects to `base_url` (`http://host:port`) with `token` and completes the Engine.IO and
    /// Socket.IO handshakes; `Err` carries the server's connect error message.
    pub async fn connect(base_url: &str, token: &str) -> Result<SocketClient, String> {
        Self::connect_with(base_url, json!({ "token": token })).await
    }

    /// Connects as a returning socket.io-client 4.6+ does: with the session id it was given
    /// and the last offset it received. `pid` of the result says whether it was recovered.
    pub async fn reconnect(base_url: &str, token: &str, previous: &SocketClient) -> Result<SocketClient, String> {
        let mut auth = json!({ "token": token });
        if let (Some(pid), Some(offset)) = (&previous.pid, previous.last_offset()) {
            auth["pid"] = json!(pid);
            auth["offset"] = json!(offset);
        }
        Self::connect_with(base_url, auth).await
    }

    pub fn last_offset(&self) -> Option<String> {
        self.last_offset.lock().unwrap().clone()
    }

    /// Connects with `auth` as the CONNECT payload.
    pub async fn connect_with(base_url: &str, auth: Value) -> Result<SocketClient, String> {
        let deadline = Instant::now() + DEADLINE;
        let ws_url = format!("{}/socket.io/?EIO=4&transport=websocket", base_url.replacen("http", "ws", 1));
        let (ws, _) = timeout_at(deadline, tokio_tungstenite::connect_async(&ws_url))
            .await
            .map_err(|_| format!("websocket connect took over {DEADLINE:?}"))?
            .map_err(|e| e.to_string())?;
        let (mut sink, mut stream) = ws.split();

        let handshake = async {
            let open = next_text(&mut stream).await.ok_or("no Engine.IO open packet")?;
            if !open.starts_with('0') {
                return Err(format!("unexpected first packet {open}"));
            }
            sink.send(Ws::text(format!("40{auth}"))).await.map_err(|e| e.to_string())?;
            loop {
                let packet = next_text(&mut stream).await.ok_or("closed during the handshake")?;
                if packet == "2" {
                    sink.send(Ws::text("3")).await.map_err(|e| e.to_string())?;
                } else if let Some(answer) = packet.strip_prefix("40") {
                    let answer: Value = serde_json::from_str(answer).unwrap_or(Value::Null);
                    return Ok(answer["pid"].as_str().map(str::to_string));
                } else if let Some(err) = packet.strip_prefix("44") {
                    let v: Value = serde_json::from_str(err).unwrap_or(Value::Null);
                    return Err(v["message"].as_str().unwrap_or(err).to_string());
                }
            }
        };
        let pid = timeout_at(deadline, handshake).await.map_err(|_| format!("socket.io handshake took over {DEADLINE:?}"))??;
        let last_offset = Arc::new(Mutex::new(None));
        let offsets = last_offset.clone();

        let (out, mut outgoing) = mpsc::unbounded_channel::<String>();
        let (events, incoming) = mpsc::unbounded_channel();
        let acks: AckWaiters = Arc::default();
        let ack_waiters = acks.clone();
        let pong = out.clone();
        let closed = Arc::new(AtomicBool::new(false));
        let reader_closed = closed.clone();
        let reader = tokio::spawn(async move {
            let mut seq = 0;
            let read = async {
                loop {
                    tokio::select! {
                        next = outgoing.recv() => match next {
                            Some(text) => if sink.send(Ws::text(text)).await.is_err() { return },
                            None => { let _ = sink.close().await; return }
                        },
                        next = next_text(&mut stream) => {
                            let Some(text) = next else { return };
                            if text == "2" {
                                let _ = pong.send("3".into());
                                continue;
                            }
                            match parse(&text) {
                                Some(Packet::Event { name, data, offset }) => {
                                    if offset.is_some() {
                                        *offsets.lock().unwrap() = offset;
                                    }
                                    let _ = events.send(Event { seq, name, data });
                                }
                                Some(Packet::Ack { id, data }) => {
                                    if let Some(waiter) = ack_waiters.lock().unwrap().remove(&id) {
                                        let _ = waiter.send(Ack { seq, data });
                                    }
                                }
                                None => continue,
                            }
                            seq += 1;
                        }
                    }
                }
            };
            read.await;
            // Closed: nobody waits any more for an acknowledgement that cannot come. Flagged
            // first, so a waiter registered after the clearing sees the flag instead.
            reader_closed.store(true, Ordering::Release);
            ack_waiters.lock().unwrap().clear();
        });
        Ok(SocketClient { out, incoming, pending: Vec::new(), acks, next_ack: AtomicU64::new(0), reader, closed, pid, last_offset })
    }

    /// Sends an event without asking for an acknowledgement.
    pub fn emit(&self, event: &str, data: Value) {
        let _ = self.out.send(format!("42{}", json!([event, data])));
    }

    /// Sends an event and waits for its acknowledgement: `None` if the connection closed
    /// first; panics after the deadline.
    pub async fn try_emit_ack(&self, event: &str, data: Value) -> Option<Ack> {
        let id = self.next_ack.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.acks.lock().unwrap().insert(id, tx);
        if self.out.send(format!("42{id}{}", json!([event, data]))).is_err() || self.closed.load(Ordering::Acquire) {
            return None;
        }
        tokio::time::timeout(DEADLINE, rx)
            .await
            .unwrap_or_else(|_| panic!("no acknowledgement of {event} within {DEADLINE:?}"))
            .ok()
    }

    /// Sends an event and waits for its acknowledgement; panics after the deadline.
    pub async fn emit_ack(&self, event: &str, data: Value) -> Ack {
        let id = self.next_ack.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.acks.lock().unwrap().insert(id, tx);
        let _ = self.out.send(format!("42{id}{}", json!([event, data])));
        tokio::time::timeout(DEADLINE, rx)
            .await
            .unwrap_or_else(|_| panic!("no acknowledgement of {event} within {DEADLINE:?}"))
            .expect("socket closed before the acknowledgement")
    }

    /// Joins a conversation's room: checks the acknowledgement and takes the
    /// `conversation:joined` event.
    pub async fn join(&mut self, conversation_id: &str) {
        let ack = self.emit_ack("conversation:join", json!({ "conversationId": conversation_id })).await;
        assert_eq!(ack.data["ok"], true, "join refused: {}", ack.data);
        self.wait_for("conversation:joined", |d| d["id"] == conversation_id).await;
    }

    /// The next event not yet taken, waiting up to `within`: `Ok(None)` once the connection
    /// is closed and everything received has been taken, `Err(())` if nothing came in time.
    pub async fn next_event(&mut self, within: Duration) -> Result<Option<Event>, ()> {
        if !self.pending.is_empty() {
            return Ok(Some(self.pending.remove(0)));
        }
        tokio::time::timeout(within, self.incoming.recv()).await.map_err(|_| ())
    }

    /// Takes the earliest received `event` whose data satisfies `matches` that no earlier
    /// `wait_for` took, waiting for it if need be; panics after the deadline.
    pub async fn wait_for(&mut self, event: &str, matches: impl Fn(&Value) -> bool) -> Event {
        if let Some(i) = self.pending.iter().position(|e| e.name == event && matches(&e.data)) {
            return self.pending.remove(i);
        }
        let deadline = Instant::now() + DEADLINE;
        loop {
            match timeout_at(deadline, self.incoming.recv()).await {
                Ok(Some(e)) if e.name == event && matches(&e.data) => return e,
                Ok(Some(e)) => self.pending.push(e),
                Ok(None) => panic!("connection closed while waiting for {event}; received: {:#?}", self.pending),
                Err(_) => panic!("no matching {event} within {DEADLINE:?}; received: {:#?}", self.pending),
            }
        }
    }

    /// Without waiting: how many `event`s whose data satisfies `matches` have been received
    /// and not taken by a `wait_for`.
    pub fn count_received(&mut self, event: &str, matches: impl Fn(&Value) -> bool) -> usize {
        while let Ok(e) = self.incoming.try_recv() {
            self.pending.push(e);
        }
        self.pending.iter().filter(|e| e.name == event && matches(&e.data)).count()
    }

    /// Forgets every event received so far.
    pub fn clear_received(&mut self) {
        while self.incoming.try_recv().is_ok() {}
        self.pending.clear();
    }

    /// Closes the connection (the server sees a transport close).
    pub fn close(self) {
        drop(self);
    }
}

enum Packet {
    /// `offset`: the last argument, when it is a string after the data (a recorded room event).
    Event { name: String, data: Value, offset: Option<String> },
    Ack { id: u64, data: Value },
}

/// `42["name", data]` and `43<id>[data]` on the default namespace; anything else is not for
/// the tests.
fn parse(text: &str) -> Option<Packet> {
    if let Some(body) = text.strip_prefix("42") {
        let Value::Array(mut args) = serde_json::from_str(body).ok()? else { return None };
        let name = args.first()?.as_str()?.to_string();
        let offset = if args.len() > 2 { args.last().and_then(Value::as_str).map(str::to_string) } else { None };
        let data = if args.len() > 1 { args.swap_remove(1) } else { Value::Null };
        return Some(Packet::Event { name, data, offset });
    }
    let body = text.strip_prefix("43")?;
    let split = body.find('[')?;
    let id = body[..split].parse().ok()?;
    let data = serde_json::from_str::<Value>(&body[split..]).ok()?.get(0).cloned().unwrap_or(Value::Null);
    Some(Packet::Ack { id, data })
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
