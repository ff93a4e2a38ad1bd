//! The Socket.IO fuzzer over WebSocket: sessions on `/socket.io/?EIO=4&transport=websocket`,
//! most authenticated in the CONNECT packet, sending random and mutated Engine.IO and
//! Socket.IO frames. Closing the connection is an allowed answer to anything; the session then
//! ends and the next one connects. Some sessions probe the 1 MB max payload: a frame just over
//! it must be refused, never answered.
//!
//! A session is drawn from its own generator (seed, worker, session number), so its frames do
//! not depend on how the sessions before it ended.

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame as WsFrame;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::input::{self, quoted, Known};
use crate::watch::{preview, preview_bytes, Counts, CONNECT_REFUSED, OVERSIZED, SERVER_ERROR, UNANSWERED};
use crate::Ctx;

pub const WS_PATH: &str = "/socket.io/?EIO=4&transport=websocket";
/// Longest wait for an answer the server owes: the open packet, a CONNECT answer, the
/// acknowledgement (or refusal) of a probe, taking a frame off the wire.
pub const DEADLINE: Duration = Duration::from_secs(30);
/// The max payload of the contract (Engine.IO `maxHttpBufferSize`).
pub const MAX_PAYLOAD: usize = 1_000_000;

/// The client events of the contract.
pub const EVENTS: &[&str] =
    &["conversation:join", "conversation:leave", "message:send", "typing", "message:typing", "thread:create", "thread:switch"];
/// Names with a meaning elsewhere: server events, socket.io reserved events.
const OTHER_EVENTS: &[&str] = &[
    "connect", "disconnect", "disconnecting", "newListener", "removeListener", "error", "message", "message:new",
    "conversation:joined", "", "__proto__", "constructor",
];

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

enum Frame {
    Text(String),
    Binary(Vec<u8>),
    /// A text frame whose payload is not UTF-8.
    InvalidUtf8(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(u16, String),
}

impl Frame {
    fn len(&self) -> usize {
        match self {
            Frame::Text(t) => t.len(),
            Frame::Binary(b) | Frame::InvalidUtf8(b) | Frame::Ping(b) | Frame::Pong(b) => b.len(),
            Frame::Close(_, r) => r.len() + 2,
        }
    }

    fn describe(&self) -> String {
        match self {
            Frame::Text(t) => format!("text {}", preview(t)),
            Frame::Binary(b) => format!("binary {}", preview_bytes(b)),
            Frame::InvalidUtf8(b) => format!("text frame of non-UTF-8 bytes {}", preview_bytes(b)),
            Frame::Ping(b) => format!("websocket ping of {} bytes", b.len()),
            Frame::Pong(b) => format!("websocket pong of {} bytes", b.len()),
            Frame::Close(code, reason) => format!("websocket close {code} {}", preview(reason)),
        }
    }

    fn into_message(self) -> Message {
        match self {
            Frame::Text(t) => Message::text(t),
            Frame::Binary(b) => Message::binary(b),
            Frame::InvalidUtf8(b) => Message::Frame(WsFrame::message(b, OpCode::Data(Data::Text), true)),
            Frame::Ping(b) if b.len() <= 125 => Message::Ping(b.into()),
            // Control frames over 125 bytes break the protocol; only a raw frame carries one.
            Frame::Ping(b) => Message::Frame(WsFrame::ping(b)),
            Frame::Pong(b) => Message::Pong(b.into()),
            Frame::Close(code, reason) => Message::Close(Some(CloseFrame { code: CloseCode::from(code), reason: reason.into() })),
        }
    }
}

/// How a session starts, drawn before it connects.
struct Session {
    target: String,
    token: &'static str,
    /// Token also sent as an `Authorization` header of the upgrade request.
    header: Option<Vec<u8>>,
    connect: Option<String>,
    /// The CONNECT is on `/` with a token the server must accept.
    must_connect: bool,
    /// Draws from every kind of frame, including those that make the server close; otherwise
    /// only from frames a well-behaved connection survives, so that it stays up long enough
    /// to reach the event handlers many times.
    chaotic: bool,
    steps: u32,
    join_first: Option<String>,
    probe: Option<Probe>,
}

#[derive(Clone, Copy, Debug)]
enum Probe {
    /// One text frame just over the max payload.
    Text,
    /// A binary attachment just over the max payload.
    Attachment,
}

impl Session {
    fn generate(rng: &mut StdRng, known: &Known) -> Session {
        let target = if rng.random_bool(0.95) {
            WS_PATH.to_string()
        } else {
            [
                "/socket.io/?EIO=3&transport=websocket", "/socket.io/?EIO=5&transport=websocket", "/socket.io/?transport=websocket",
                "/socket.io/?EIO=4&transport=websocket&sid=AAAAAAAAAAAAAAAAAAAA", "/socket.io/?EIO=4&transport=polling",
                "/socket.io/?EIO=4&transport=websocket&b64=1", "/socket.io?EIO=4&transport=websocket",
                "/socket.io/?EIO=4&transport=websocket&EIO=3", "/socket.io/x?EIO=4&transport=websocket", "/api/conversations",
                "/socket.io/?EIO=4&transport=websocket&sid=%00",
            ]
            .choose(rng)
            .unwrap()
            .to_string()
        };
        let token = if rng.random_bool(0.7) {
            known.tokens.iter().filter(|t| t.valid_for_socket).collect::<Vec<_>>().choose(rng).copied().unwrap()
        } else {
            known.tokens.choose(rng).unwrap()
        };
        let header = token.header.clone().filter(|_| rng.random_ratio(1, 10));
        let auth = token.socket.as_deref().map(quoted).unwrap_or_else(|| "null".into());
        let (connect, must_connect) = match rng.random_range(0..100) {
            0..85 => (Some(format!("40{{\"token\":{auth}}}")), token.valid_for_socket),
            85..89 => (Some("40".into()), header.is_some() && token.valid_for_socket),
            89..93 => {
                let weird = ["40{\"token\":123}", "40{\"token\":{\"$gt\":\"\"}}", "40[]", "40\"token\"", "40{", "40null", "40{\"token\":null}"];
                (Some(weird.choose(rng).unwrap().to_string()), false)
            }
            93..96 => (Some(format!("40/admin,{{\"token\":{auth}}}")), false),
            _ => (None, false),
        };
        let chaotic = rng.random_ratio(3, 10);
        let steps = if chaotic { rng.random_range(1..60) } else { rng.random_range(20..600) };
        let join_first = (!chaotic && rng.random_bool(0.5)).then(|| known.conversations.choose(rng).unwrap().clone());
        let probe = if must_connect && rng.random_ratio(1, 60) {
            Some(if rng.random_bool(0.5) { Probe::Text } else { Probe::Attachment })
        } else {
            None
        };
        Session { target, token: token.name, header, connect, must_connect, chaotic, steps, join_first, probe }
    }
}

/// What the reading half tells the writing half.
enum Heard {
    /// An Engine.IO ping: the client owes a pong.
    Ping,
    /// The Engine.IO open packet or a CONNECT answer (`0…`, `40…`, `44…`).
    Handshake(String),
    /// The acknowledgement of an event the writer waits for (ids from `WAITED_ACKS`).
    Ack(u64),
    Closed,
}

/// Acknowledgement ids at or above this are the writer's own (probes, pacing); generated
/// events use smaller ones.
const WAITED_ACKS: u64 = 900_000_000;
/// Acknowledgement id of the max payload probes.
const PROBE_ACK: u64 = 987_654_321;
/// Acknowledgement id of the pacing event.
const PACING_ACK: u64 = 900_000_001;
/// Steps between two pacing events of a connected session. The server runs every event in
/// its own task, so a client that never waits could queue unbounded work behind a slow store;
/// the fuzzer waits for one store-backed acknowledgement every so often instead (the test is
/// about malformed input, not about flooding).
const PACING_STEPS: u32 = 40;

/// One WebSocket session's writing half and what its reader passes on.
struct Connection<'a> {
    ctx: &'a Ctx,
    name: &'a str,
    task: usize,
    sink: SplitSink<Ws, Message>,
    heard: mpsc::UnboundedReceiver<Heard>,
    closed: bool,
}

enum Waited {
    Got(Heard),
    Closed,
    TimedOut,
}

/// How the server answered a CONNECT.
#[derive(PartialEq)]
enum Connected {
    Yes,
    No,
    Closed,
}

impl Connection<'_> {
    /// Sends one frame; false when the connection is gone. A frame the server does not take
    /// off the wire within the deadline is a finding.
    async fn send(&mut self, frame: Frame) -> bool {
        if self.closed {
            return false;
        }
        let len = frame.len() as u64;
        match tokio::time::timeout(DEADLINE, self.sink.send(frame.into_message())).await {
            Ok(Ok(())) => {
                Counts::add(&self.ctx.counts.ws_frames_sent, 1);
                Counts::add(&self.ctx.counts.ws_bytes_sent, len);
            }
            Ok(Err(_)) => self.closed = true,
            Err(_) => {
                self.ctx.findings.fail(UNANSWERED, "websocket: a frame not read within the deadline".into(), || {
                    self.ctx.activity.current(self.task)
                });
                self.closed = true;
            }
        }
        !self.closed
    }

    /// Answers the pings and notes a close the reader reported, without waiting.
    async fn keep_up(&mut self) {
        while let Ok(h) = self.heard.try_recv() {
            match h {
                Heard::Ping => {
                    self.send(Frame::Text("3".into())).await;
                }
                Heard::Closed => self.closed = true,
                Heard::Handshake(_) | Heard::Ack(_) => {}
            }
        }
    }

    /// Waits for the first report `wanted` picks, answering pings meanwhile.
    async fn wait_for(&mut self, wanted: impl Fn(&Heard) -> bool) -> Waited {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while !self.closed {
            match tokio::time::timeout_at(deadline, self.heard.recv()).await {
                Err(_) => return Waited::TimedOut,
                Ok(None | Some(Heard::Closed)) => self.closed = true,
                Ok(Some(Heard::Ping)) => {
                    self.send(Frame::Text("3".into())).await;
                }
                Ok(Some(h)) if wanted(&h) => return Waited::Got(h),
                Ok(Some(_)) => {}
            }
        }
        Waited::Closed
    }

    /// The Engine.IO open packet must come first on the standard path.
    async fn opened(&mut self, standard: bool) {
        let waited = self.wait_for(|h| matches!(h, Heard::Handshake(_))).await;
        let problem = match waited {
            Waited::Got(Heard::Handshake(open)) if open.starts_with('0') || !standard => return,
            Waited::Closed if !standard => return,
            Waited::Got(Heard::Handshake(other)) => format!("got {}", preview(&other)),
            Waited::Got(_) => unreachable!("only handshake packets are waited for"),
            Waited::Closed => "closed".into(),
            Waited::TimedOut => format!("nothing in {DEADLINE:?}"),
        };
        self.ctx.findings.fail(UNANSWERED, "websocket: no Engine.IO open packet first".into(), || format!("{}: {problem}", self.name));
        self.closed = true;
    }

    /// Sends the session's CONNECT and judges the answer.
    async fn connect(&mut self, session: &Session, connect: &str) -> Connected {
        Counts::add(&self.ctx.counts.ws_connects_sent, 1);
        if !self.send(Frame::Text(connect.to_string())).await {
            return Connected::Closed;
        }
        let ctx = self.ctx;
        match self.wait_for(|h| matches!(h, Heard::Handshake(_))).await {
            Waited::Got(Heard::Handshake(answer)) => {
                if answer.starts_with("40") && !answer.starts_with("40/") {
                    Counts::add(&ctx.counts.ws_connects_accepted, 1);
                    return Connected::Yes;
                }
                if session.must_connect {
                    ctx.findings.fail(CONNECT_REFUSED, format!("token {:?} refused", session.token), || {
                        format!("{}: {} → {}", self.name, preview(connect), preview(&answer))
                    });
                }
                Connected::No
            }
            Waited::Got(_) => unreachable!("only handshake packets are waited for"),
            Waited::Closed => {
                if session.must_connect {
                    ctx.findings.fail(CONNECT_REFUSED, format!("token {:?}: closed instead of answering", session.token), || {
                        format!("{}: {}", self.name, preview(connect))
                    });
                }
                Connected::Closed
            }
            Waited::TimedOut => {
                ctx.findings.fail(UNANSWERED, "websocket: CONNECT unanswered".into(), || {
                    format!("{}: {} got nothing in {DEADLINE:?}", self.name, preview(connect))
                });
                self.closed = true;
                Connected::Closed
            }
        }
    }

    /// Sends a packet just over the max payload that the server would acknowledge if it took
    /// it, and waits for the acknowledgement (a finding) or the close (the right answer).
    async fn probe_max_payload(&mut self, probe: Probe, rng: &mut StdRng) {
        let ctx = self.ctx;
        Counts::add(&ctx.counts.ws_oversized_probes, 1);
        let size = MAX_PAYLOAD + rng.random_range(1..200_000);
        let frames = match probe {
            Probe::Text => {
                let head = format!("42{PROBE_ACK}[\"conversation:leave\",\"");
                let filler = "p".repeat(size - head.len() - 2);
                vec![Frame::Text(format!("{head}{filler}\"]"))]
            }
            Probe::Attachment => vec![
                Frame::Text(format!("451-{PROBE_ACK}[\"conversation:leave\",{{\"_placeholder\":true,\"num\":0}}]")),
                Frame::Binary(vec![0x5a; size]),
            ],
        };
        let described = frames.iter().map(Frame::describe).collect::<Vec<_>>().join(" then ");
        for frame in frames {
            self.send(frame).await;
        }
        match self.wait_for(|h| matches!(h, Heard::Ack(PROBE_ACK))).await {
            Waited::Got(_) => ctx.findings.fail(OVERSIZED, format!("{probe:?} of over {MAX_PAYLOAD} bytes acknowledged"), || {
                format!("{}: {described}", self.name)
            }),
            Waited::Closed => Counts::add(&ctx.counts.ws_oversized_refused, 1),
            Waited::TimedOut => ctx.findings.fail(UNANSWERED, format!("{probe:?} probe neither acknowledged nor refused"), || {
                format!("{}: {described}: nothing in {DEADLINE:?}", self.name)
            }),
        }
    }

    /// Sends an event the server answers after a store read, and waits for the answer.
    async fn pace(&mut self, conversation_id: &str) {
        let event = format!("42{PACING_ACK}[\"thread:switch\",{{\"conversationId\":{},\"threadId\":null}}]", quoted(conversation_id));
        if !self.send(Frame::Text(event.clone())).await {
            return;
        }
        if let Waited::TimedOut = self.wait_for(|h| matches!(h, Heard::Ack(PACING_ACK))).await {
            self.ctx.findings.fail(UNANSWERED, "websocket: an event acknowledgement not received".into(), || {
                format!("{}: {} got nothing in {DEADLINE:?}", self.name, preview(&event))
            });
            self.closed = true;
        }
    }
}

/// Runs sessions until `steps` have been sent: a session the server closes early (a refused
/// frame closes the connection) is followed by more, so the volume does not depend on how
/// often the server closes.
pub async fn run(ctx: Arc<Ctx>, worker: u64, task: usize, steps: u64) {
    let mut sent = 0;
    let mut session_number = 0;
    while sent < steps && !ctx.aborted() {
        let mut rng = StdRng::seed_from_u64(crate::stream_seed(ctx.seed, crate::SOCKET_STREAM + worker, session_number));
        let session = Session::generate(&mut rng, &ctx.known);
        let name = format!("socket worker {worker} session {session_number} ({}, token: {})", session.target, session.token);
        // A session that could not even start still counts one step, so the loop ends.
        sent += run_session(&ctx, task, &name, &session, &mut rng).await.max(1);
        session_number += 1;
    }
}

/// Runs one session; returns how many of its steps were sent.
async fn run_session(ctx: &Arc<Ctx>, task: usize, name: &str, session: &Session, rng: &mut StdRng) -> u64 {
    Counts::add(&ctx.counts.ws_sessions, 1);
    ctx.activity.set(task, format!("{name}: websocket upgrade"));
    let Some(ws) = open(ctx, name, &session.target, session.header.as_deref()).await else { return 0 };
    let (sink, stream) = ws.split();
    let (heard_tx, heard) = mpsc::unbounded_channel();
    let reader = tokio::spawn(read_frames(stream, heard_tx, ctx.clone()));
    let mut c = Connection { ctx, name, task, sink, heard, closed: false };

    c.opened(session.target == WS_PATH).await;
    let mut connected = Connected::No;
    if let (false, Some(connect)) = (c.closed, &session.connect) {
        ctx.activity.set(task, format!("{name}: CONNECT {}", preview(connect)));
        connected = c.connect(session, connect).await;
    }
    if let (Connected::Yes, Some(probe)) = (&connected, session.probe) {
        ctx.activity.set(task, format!("{name}: max payload probe {probe:?}"));
        c.probe_max_payload(probe, rng).await;
    }
    if let Some(id) = &session.join_first {
        c.send(Frame::Text(format!("42[\"conversation:join\",{}]", quoted(id)))).await;
    }

    let mut frames = Vec::new();
    let pacing = connected == Connected::Yes && !session.chaotic;
    let mut sent = 0;
    for step in 0..session.steps {
        c.keep_up().await;
        if c.closed || ctx.aborted() {
            Counts::add(&ctx.counts.ws_frames_not_sent, u64::from(session.steps - step));
            break;
        }
        sent += 1;
        if pacing && step % PACING_STEPS == PACING_STEPS - 1 {
            ctx.activity.set(task, format!("{name} step {step}: pacing"));
            c.pace(&ctx.known.conversations[step as usize % ctx.known.conversations.len()]).await;
        }
        generate_step(rng, &ctx.known, session.chaotic, &mut frames);
        for frame in frames.drain(..) {
            ctx.activity.set(task, format!("{name} step {step}: {}", frame.describe()));
            if !c.send(frame).await {
                break;
            }
        }
    }
    if c.closed {
        Counts::add(&ctx.counts.ws_closed_by_server, 1);
    } else if rng.random_bool(0.5) {
        let _ = tokio::time::timeout(DEADLINE, c.sink.close()).await;
    }
    reader.abort();
    sent
}

/// Opens the WebSocket; `None` when the server refused the upgrade (judged here).
async fn open(ctx: &Ctx, name: &str, target: &str, header: Option<&[u8]>) -> Option<Ws> {
    let mut request = format!("{}{target}", ctx.ws_base).into_client_request().expect("websocket request");
    if let Some(h) = header {
        request.headers_mut().insert("authorization", tungstenite::http::HeaderValue::from_bytes(h).unwrap());
    }
    match tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(request)).await {
        Ok(Ok((ws, response))) => {
            ctx.findings.status("websocket upgrade", response.status().as_u16());
            Some(ws)
        }
        Ok(Err(tungstenite::Error::Http(response))) => {
            let status = response.status().as_u16();
            ctx.findings.status("websocket upgrade", status);
            Counts::add(&ctx.counts.ws_handshakes_refused, 1);
            if status >= 500 && status != 503 {
                let body = response.body().as_deref().map(preview_bytes).unwrap_or_default();
                ctx.findings.fail(SERVER_ERROR, format!("websocket upgrade → {status}"), || format!("{name} → {status} {body}"));
            }
            None
        }
        Ok(Err(e)) => {
            if !ctx.server_gone() {
                ctx.findings.fail(UNANSWERED, "websocket upgrade failed".into(), || format!("{name}: {e}"));
            }
            None
        }
        Err(_) => {
            ctx.findings.fail(UNANSWERED, "websocket upgrade unanswered".into(), || format!("{name}: nothing in {DEADLINE:?}"));
            None
        }
    }
}

/// Counts what arrives and passes on what the writer needs: pings, the handshake packets,
/// the acknowledgements it waits for, the end of the connection.
async fn read_frames(mut stream: SplitStream<Ws>, heard: mpsc::UnboundedSender<Heard>, ctx: Arc<Ctx>) {
    while let Some(Ok(message)) = stream.next().await {
        Counts::add(&ctx.counts.ws_frames_received, 1);
        let text = match &message {
            Message::Text(text) => text.as_str(),
            Message::Close(_) => break,
            _ => continue,
        };
        let h = if text == "2" {
            Heard::Ping
        } else if text.starts_with('0') || text.starts_with("40") || text.starts_with("44") {
            Heard::Handshake(text.chars().take(400).collect())
        } else if let Some(id) = waited_ack(text) {
            Heard::Ack(id)
        } else {
            continue;
        };
        if heard.send(h).is_err() {
            return;
        }
    }
    let _ = heard.send(Heard::Closed);
}

/// The id of `43<id>[…]` when it is one the writer waits for.
fn waited_ack(text: &str) -> Option<u64> {
    let rest = text.strip_prefix("43")?;
    let digits = rest.find('[')?;
    rest[..digits].parse().ok().filter(|&id| id >= WAITED_ACKS)
}

/// Draws the frames of one step. Outside chaotic sessions, a step whose text the server
/// could not parse is drawn again (that closes the connection, which chaotic sessions do often
/// enough), so that the session lives on to reach the event handlers.
fn generate_step(rng: &mut StdRng, known: &Known, chaotic: bool, out: &mut Vec<Frame>) {
    for _ in 0..20 {
        out.clear();
        generate(rng, known, chaotic, out);
        if chaotic || out.iter().all(parsable) {
            return;
        }
    }
}

/// Whether the server's Socket.IO parser takes the frame: event and acknowledgement packets
/// must carry a JSON array within the usual nesting limit, an event's starting with its name
/// written without escapes (socketioxide reads the name in place and refuses escapes), an
/// acknowledgement's preceded by its id.
fn parsable(frame: &Frame) -> bool {
    let Frame::Text(text) = frame else { return true };
    let Some(rest) = text.strip_prefix("42").or_else(|| text.strip_prefix("43")) else { return true };
    let json = rest.trim_start_matches(|c: char| c.is_ascii_digit());
    if serde_json::from_str::<serde_json::Value>(json).map_or(true, |v| !v.is_array()) {
        return false;
    }
    if text.starts_with("43") {
        // An acknowledgement needs the id it answers.
        return rest[..rest.len() - json.len()].parse::<i64>().is_ok();
    }
    json.strip_prefix("[\"").and_then(|r| r.split('"').next()).is_some_and(|name| !name.contains('\\'))
}

fn generate(rng: &mut StdRng, known: &Known, chaotic: bool, out: &mut Vec<Frame>) {
    if rng.random_ratio(1, 4000) {
        return out.push(oversized(rng, known));
    }
    let roll = rng.random_range(0..1000);
    match roll {
        0..520 => out.push(Frame::Text(event_packet(rng, known, chaotic))),
        520..620 => out.push(Frame::Text(well_formed_flow(rng, known))),
        620..660 => out.push(Frame::Text(ack_packet(rng))),
        660..720 => binary_packet(rng, known, chaotic, out),
        720..770 => {
            let whole = event_packet(rng, known, false);
            let shortest = if chaotic { 0 } else { 3 };
            let cut = rng.random_range(shortest.min(whole.len())..=whole.len());
            let cut = (0..=cut).rev().find(|&i| whole.is_char_boundary(i)).unwrap_or(0);
            out.push(Frame::Text(whole[..cut].to_string()));
        }
        770..830 => out.push(Frame::Text(["2", "3"].choose(rng).unwrap().to_string())),
        830..870 => out.push(Frame::Text(format!("42{}", input::random_chars(rng, 0..60)))),
        870..890 => {
            let len = rng.random_range(0..126);
            let payload = input::random_bytes(rng, len);
            out.push(if rng.random_bool(0.5) { Frame::Ping(payload) } else { Frame::Pong(payload) });
        }
        890..910 => out.push(Frame::Text(format!("40/admin,{{\"token\":{}}}", quoted(&input::string(rng))))),
        // Everything below may make the server close the connection.
        _ if !chaotic => out.push(Frame::Text(event_packet(rng, known, false))),
        910..930 => out.push(Frame::Text(
            ["47", "48", "49", "4a", "4", "4 ", "4-", "7", "9x", "", "0", "0{}", "1", "5", "6", "2probe", "3probe", "bAAAA", "b!!", "41", "41/admin,"]
                .choose(rng)
                .unwrap()
                .to_string(),
        )),
        930..950 => out.push(Frame::Text(namespace_packet(rng))),
        950..965 => out.push(Frame::Text(input::random_chars(rng, 0..200))),
        965..980 => {
            let len = rng.random_range(0..3000);
            out.push(Frame::Binary(input::random_bytes(rng, len)));
        }
        980..990 => {
            let len = rng.random_range(1..200);
            let mut bytes = input::random_bytes(rng, len);
            bytes[0] = 0xff;
            out.push(Frame::InvalidUtf8(bytes));
        }
        990..995 => {
            let len = rng.random_range(126..1000);
            out.push(Frame::Ping(input::random_bytes(rng, len)));
        }
        _ => {
            let code = *[1000, 1001, 1005, 1006, 0, 999, 4999, 65535].choose(rng).unwrap();
            out.push(Frame::Close(code, input::random_chars(rng, 0..40)));
        }
    }
}

/// An event packet `42[ns,][ack][name, args…]` with a mostly plausible payload.
pub fn event_packet(rng: &mut StdRng, known: &Known, chaotic: bool) -> String {
    let ack = match rng.random_range(0..10) {
        0..6 => String::new(),
        6..9 => rng.random_range(0..100_000).to_string(),
        _ => ["99999999999999999999", "0", "007", "-1"].choose(rng).unwrap().to_string(),
    };
    let namespace = if chaotic && rng.random_ratio(1, 20) { "/admin," } else { "" };
    let (name, payload) = match rng.random_range(0..100) {
        0..80 => {
            let event = *EVENTS.choose(rng).unwrap();
            (quoted(event), payload_for(rng, known, event))
        }
        80..90 => (quoted(OTHER_EVENTS.choose(rng).unwrap()), input::json_value(rng, 1)),
        90..95 => (quoted(&input::string(rng)), input::json_value(rng, 1)),
        _ => (input::json_value(rng, 2), input::json_value(rng, 1)),
    };
    let args = match rng.random_range(0..20) {
        0 => format!("[{name}]"),
        1 => format!("[{name},{payload},{}]", input::json_value(rng, 1)),
        2 => "[]".into(),
        3 => payload,
        _ => format!("[{name},{payload}]"),
    };
    format!("42{namespace}{ack}{args}")
}

fn payload_for(rng: &mut StdRng, known: &Known, event: &str) -> String {
    match event {
        "conversation:join" | "conversation:leave" => match rng.random_range(0..10) {
            0..5 => quoted(&known.conversation_id(rng)),
            5..9 => known.object_of(rng, &["conversationId"]),
            _ => input::json_value(rng, 1),
        },
        "message:send" => known.object_of(rng, &["conversationId", "content", "messageType", "threadId", "attachments", "tempId"]),
        "typing" | "message:typing" => known.object_of(rng, &["conversationId", "isTyping"]),
        "thread:create" => known.object_of(rng, &["conversationId", "title"]),
        "thread:switch" => known.object_of(rng, &["conversationId", "threadId"]),
        _ => input::json_value(rng, 1),
    }
}

/// What a real client does: join, send, type, switch threads, all well formed, so that the
/// store and the room broadcasts are busy while the malformed input arrives.
fn well_formed_flow(rng: &mut StdRng, known: &Known) -> String {
    let id = known.conversations.choose(rng).unwrap();
    let ack = if rng.random_bool(0.7) { rng.random_range(0..1000).to_string() } else { String::new() };
    match rng.random_range(0..10) {
        0..2 => format!("42{ack}[\"conversation:join\",{}]", quoted(id)),
        2..7 => format!(
            "42{ack}[\"message:send\",{{\"conversationId\":{},\"content\":{},\"tempId\":\"t{}\"}}]",
            quoted(id),
            quoted(&format!("hello {}", rng.random_range(0..1_000_000))),
            rng.random_range(0..1000)
        ),
        7..9 => format!("42[\"typing\",{{\"conversationId\":{},\"isTyping\":{}}}]", quoted(id), rng.random_bool(0.5)),
        _ => format!(
            "42{ack}[\"thread:switch\",{{\"conversationId\":{},\"threadId\":{}}}]",
            quoted(id),
            quoted(known.threads.choose(rng).unwrap())
        ),
    }
}

/// An acknowledgement of something the server never asked for.
fn ack_packet(rng: &mut StdRng) -> String {
    let id = match rng.random_range(0..4) {
        0..2 => rng.random_range(0..1000).to_string(),
        2 => "99999999999999999999".into(),
        _ => String::new(),
    };
    format!("43{id}[{}]", input::json_value(rng, 1))
}

/// A binary event or acknowledgement header and its attachments, sometimes the wrong number
/// of them, with placeholders that do and do not match.
fn binary_packet(rng: &mut StdRng, known: &Known, chaotic: bool, out: &mut Vec<Frame>) {
    let count: usize = rng.random_range(1..=3);
    let declared = if chaotic && rng.random_ratio(1, 5) {
        ["0", "10001", "99999999999999999999", "", "1a", "-"].choose(rng).unwrap().to_string()
    } else {
        count.to_string()
    };
    let (kind, ack) = if rng.random_bool(0.85) {
        ("5", if rng.random_bool(0.5) { rng.random_range(0..1000).to_string() } else { String::new() })
    } else {
        ("6", rng.random_range(0..1000).to_string())
    };
    let placeholder = |rng: &mut StdRng, i: usize| match rng.random_range(0..20) {
        0 => r#"{"_placeholder":true,"num":99}"#.to_string(),
        1 => r#"{"_placeholder":true,"num":-1}"#.to_string(),
        2 => r#"{"_placeholder":true,"num":"0"}"#.to_string(),
        3 => r#"{"_placeholder":false,"num":0}"#.to_string(),
        4 => r#"{"_placeholder":true}"#.to_string(),
        _ => format!(r#"{{"_placeholder":true,"num":{i}}}"#),
    };
    let event = *EVENTS.choose(rng).unwrap();
    let mut args = vec![quoted(event)];
    for i in 0..count {
        let p = placeholder(rng, i);
        args.push(if rng.random_bool(0.3) {
            format!(r#"{{"conversationId":{},"content":{p}}}"#, quoted(known.conversations.choose(rng).unwrap()))
        } else {
            p
        });
    }
    let args = if kind == "6" { args[1..].join(",") } else { args.join(",") };
    out.push(Frame::Text(format!("4{kind}{declared}-{ack}[{args}]")));
    let sent = if chaotic { rng.random_range(0..=count + 1) } else { count };
    for _ in 0..sent {
        let len = if rng.random_ratio(1, 50) { rng.random_range(10_000..200_000) } else { rng.random_range(0..2048) };
        out.push(Frame::Binary(input::random_bytes(rng, len)));
    }
}

fn namespace_packet(rng: &mut StdRng) -> String {
    let ns = ["/admin", "/", "/é", "/a,b", &format!("/{}", "n".repeat(5000)), "admin", "//", "/socket.io"].choose(rng).unwrap().to_string();
    match rng.random_range(0..4) {
        0 => format!("40{ns},"),
        1 => format!("41{ns},"),
        2 => format!("42{ns},[\"message:send\",{{}}]"),
        _ => format!("43{ns},1[]"),
    }
}

/// A text or binary frame over the max payload, outside the probes.
fn oversized(rng: &mut StdRng, known: &Known) -> Frame {
    let size = rng.random_range(MAX_PAYLOAD..1_200_000);
    if rng.random_bool(0.7) {
        let head = format!("42[\"message:send\",{{\"conversationId\":{},\"content\":\"", quoted(known.conversations.choose(rng).unwrap()));
        Frame::Text(format!("{head}{}\"}}]", "o".repeat(size - head.len())))
    } else {
        Frame::Binary(vec![0x6f; size])
    }
}
