//! A minimal Socket.IO v5 client (Engine.IO v4 over WebSocket) for tests that watch what the
//! server broadcasts: connect with a token, emit events with or without acknowledgements, and
//! keep every event and acknowledgement the server sends, in arrival order. Waits have a
//! deadline and end as soon as the awaited frame arrives.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::{timeout_at, Instant};
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// How long any single wait may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Something the server sent on the default namespace.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// `42["name", data]`
    Event { name: String, data: Value },
    /// `43<id>[data]`
    Ack { id: u64, data: Value },
}

impl Frame {
    pub fn is_event(&self, event: &str) -> bool {
        matches!(self, Frame::Event { name, .. } if name == event)
    }

    pub fn data(&self) -> &Value {
        match self {
            Frame::Event { data, .. } | Frame::Ack { data, .. } => data,
        }
    }
}

pub struct SocketClient {
    out: mpsc::UnboundedSender<String>,
    incoming: mpsc::UnboundedReceiver<Frame>,
    /// Every frame received so far, in order.
    pub log: Vec<Frame>,
    next_ack_id: u64,
}

impl SocketClient {
    /// Opens a WebSocket to `base_url` (`http://host:port`), completes the Engine.IO and
    /// Socket.IO handshakes with `token`, and starts reading.
    pub async fn connect(base_url: &str, token: &str) -> SocketClient {
        let ws_url = format!("{}/socket.io/?EIO=4&transport=websocket", base_url.replacen("http://", "ws://", 1));
        let deadline = Instant::now() + DEADLINE;
        let (mut ws, _) = timeout_at(deadline, tokio_tungstenite::connect_async(&ws_url))
            .await
            .expect("websocket connect timed out")
            .expect("websocket connect");
        let mut sent_connect = false;
        loop {
            let frame = timeout_at(deadline, ws.next()).await.expect("socket.io handshake timed out");
            let Some(Ok(WsMessage::Text(text))) = frame else { panic!("handshake: unexpected frame {frame:?}") };
            let text = text.as_str();
            if text.starts_with('0') && !sent_connect {
                // Engine.IO open: now the Socket.IO CONNECT with the auth payload.
                ws.send(WsMessage::text(format!("40{}", json!({ "token": token })))).await.expect("send connect");
                sent_connect = true;
            } else if text.starts_with("40") {
                break;
            } else if text.starts_with("44") {
                panic!("connection refused: {text}");
            } else if text == "2" {
                ws.send(WsMessage::text("3")).await.expect("pong");
            }
        }
        let (out, mut outgoing) = mpsc::unbounded_channel::<String>();
        let (frames, incoming) = mpsc::unbounded_channel();
        let pong = out.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    next = outgoing.recv() => match next {
                        Some(text) => if ws.send(WsMessage::text(text)).await.is_err() { break },
                        None => break,
                    },
                    next = ws.next() => match next {
                        Some(Ok(WsMessage::Text(text))) => {
                            let text = text.as_str();
                            if text == "2" {
                                let _ = pong.send("3".into());
                            } else if let Some(frame) = parse(text)
                                && frames.send(frame).is_err()
                            {
                                break;
                            }
                        }
                        Some(Ok(_)) => {}
                        _ => break,
                    },
                }
            }
            let _ = ws.close(None).await;
        });
        SocketClient { out, incoming, log: Vec::new(), next_ack_id: 0 }
    }

    /// Sends an event without asking for an acknowledgement.
    pub fn emit(&self, event: &str, data: Value) {
        self.out.send(format!("42{}", json!([event, data]))).expect("socket task running");
    }

    /// Sends an event and waits for its acknowledgement's first argument.
    pub async fn emit_ack(&mut self, event: &str, data: Value) -> Value {
        let id = self.next_ack_id;
        self.next_ack_id += 1;
        self.out.send(format!("42{id}{}", json!([event, data]))).expect("socket task running");
        let at = self.wait_for(&format!("ack {id} of {event}"), |f| matches!(f, Frame::Ack { id: i, .. } if *i == id)).await;
        self.log[at].data().clone()
    }

    /// Joins a conversation's room, checking the acknowledgement.
    pub async fn join(&mut self, conversation_id: &str) {
        let ack = self.emit_ack("conversation:join", json!({ "conversationId": conversation_id })).await;
        assert_eq!(ack["ok"], true, "join refused: {ack}");
    }

    /// Waits until a frame satisfying `pred` has been received (earlier frames count too) and
    /// returns its position in `log`.
    pub async fn wait_for(&mut self, what: &str, pred: impl Fn(&Frame) -> bool) -> usize {
        let deadline = Instant::now() + DEADLINE;
        let mut checked = 0;
        loop {
            if let Some(i) = self.log[checked..].iter().position(&pred) {
                return checked + i;
            }
            checked = self.log.len();
            self.next_frame(what, deadline).await;
        }
    }

    /// Waits until `n` events named `event` whose data satisfies `pred` have been received;
    /// returns the position of the `n`th.
    pub async fn wait_events(&mut self, event: &str, n: usize, pred: impl Fn(&Value) -> bool) -> usize {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let found: Vec<usize> =
                (0..self.log.len()).filter(|&i| self.log[i].is_event(event) && pred(self.log[i].data())).collect();
            if found.len() >= n {
                return found[n - 1];
            }
            self.next_frame(&format!("{n} {event} events"), deadline).await;
        }
    }

    /// Reads one more frame into `log`.
    async fn next_frame(&mut self, what: &str, deadline: Instant) {
        match timeout_at(deadline, self.incoming.recv()).await {
            Ok(Some(frame)) => self.log.push(frame),
            Ok(None) => panic!("connection closed while waiting for {what}; received: {:#?}", self.log),
            Err(_) => panic!("no {what} within {DEADLINE:?}; received: {:#?}", self.log),
        }
    }

    /// Waits for an event named `event` whose data satisfies `pred`; returns its position.
    pub async fn wait_event(&mut self, event: &str, pred: impl Fn(&Value) -> bool) -> usize {
        self.wait_for(event, |f| f.is_event(event) && pred(f.data())).await
    }

    /// Moves every frame received so far into `log` without waiting.
    pub fn drain(&mut self) {
        while let Ok(frame) = self.incoming.try_recv() {
            self.log.push(frame);
        }
    }

    /// The data of every `event` in `log`, in order.
    pub fn events(&self, event: &str) -> Vec<&Value> {
        self.log.iter().filter(|f| f.is_event(event)).map(Frame::data).collect()
    }
}

/// `42[...]` and `43<id>[...]` on the default namespace; anything else is not for the tests.
fn parse(text: &str) -> Option<Frame> {
    if let Some(rest) = text.strip_prefix("42") {
        let json_start = rest.find('[')?;
        let Value::Array(mut items) = serde_json::from_str(&rest[json_start..]).ok()? else { return None };
        if items.is_empty() {
            return None;
        }
        let name = items.remove(0).as_str()?.to_string();
        let data = if items.is_empty() { Value::Null } else { items.remove(0) };
        return Some(Frame::Event { name, data });
    }
    if let Some(rest) = text.strip_prefix("43") {
        let json_start = rest.find('[')?;
        let id = rest[..json_start].parse().ok()?;
        let Value::Array(mut items) = serde_json::from_str(&rest[json_start..]).ok()? else { return None };
        let data = if items.is_empty() { Value::Null } else { items.remove(0) };
        return Some(Frame::Ack { id, data });
    }
    None
}
