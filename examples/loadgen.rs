//! Load generator for the send path: N Socket.IO clients over WebSocket in rooms of R. It
//! speaks Engine.IO v4 / Socket.IO v5 frames directly so the generator stays far cheaper than
//! the server it loads, and it drives any server that offers `POST /api/conversations`,
//! `conversation:join` and `message:send` (chat-service, `examples/bare_socketioxide.rs`,
//! `bench/node-reference`). `scripts/bench.sh` runs it against all three.
//!
//! ```text
//! loadgen --url http://127.0.0.1:4004 --secret <JWT_SECRET> --server-pid PID [--mode MODE] ...
//! ```
//! Modes:
//! - `open` (a chat's load): each room's sender sends at a fixed rate whatever the server does,
//!   so `--rate` deliveries/s are offered in total. Latency is taken from each message's
//!   scheduled send time (carried in its content) to its `message:new` at every member, so
//!   a server that falls behind shows it as latency instead of slowing the generator down.
//!   Reports deliveries/s, latency percentiles, deliveries lost, server CPU per delivery
//!   (from `/proc/PID/stat`), context switches and peak RSS.
//! - `closed`: each room's senders keep `--in-flight` sends outstanding, the next sent when an
//!   acknowledgement arrives; measures send→ack latency and the most the server delivers.
//! - `memory`: connects `--clients` and reports the server's resident memory per idle
//!   connection, then joins them into rooms, chats in open loop at `--rate` for `--duration`
//!   and reports the peak.
//! - `churn`: `--cycles` connect/authenticate/join/disconnect cycles, `--concurrency` at a time;
//!   reports the server's RSS before (after `--warmup-cycles`, default 200) and `--settle`
//!   seconds after (default 15: the service gives freed heap back every
//!   `HEAP_TRIM_INTERVAL_MS`, 10 s by default); with `--late S`, once more S seconds later
//!   (past the recovery window of the sessions the cycles left behind, if it is short enough).
//!
//! Every line of results is also printed as one `RESULT key=value ...` line for scripts.
//! Many connections: the generator raises its own open-file limit, and spreads its connections
//! over the source addresses 127.0.0.1..=127.0.0.N (`--source-addresses`) so that a loopback
//! server is not short of ephemeral ports.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;

type Ws = WebSocketStream<TcpStream>;
type WsTx = SplitSink<Ws, WsMessage>;
type WsRx = SplitStream<Ws>;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Open,
    Closed,
    Memory,
    Churn,
}

struct Args {
    url: String,
    secret: String,
    mode: Mode,
    clients: usize,
    room_size: usize,
    duration: u64,
    warmup: u64,
    rate: f64,
    senders_per_room: usize,
    in_flight: usize,
    cycles: usize,
    concurrency: usize,
    settle: u64,
    warmup_cycles: usize,
    late: u64,
    source_addresses: u8,
    server_pid: Option<u32>,
    drain: u64,
}

fn parse_args() -> Args {
    let mut a = Args {
        url: "http://127.0.0.1:4004".into(),
        secret: std::env::var("JWT_SECRET").unwrap_or_default(),
        mode: Mode::Closed,
        clients: 2000,
        room_size: 40,
        duration: 20,
        warmup: 2,
        rate: 40_000.0,
        senders_per_room: 1,
        in_flight: 4,
        cycles: 10_000,
        concurrency: 50,
        settle: 15,
        warmup_cycles: 200,
        late: 0,
        source_addresses: 0,
        server_pid: None,
        drain: 10,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => a.url = val(),
            "--secret" => a.secret = val(),
            "--mode" => {
                a.mode = match val().as_str() {
                    "open" => Mode::Open,
                    "closed" => Mode::Closed,
                    "memory" => Mode::Memory,
                    "churn" => Mode::Churn,
                    other => panic!("--mode is open, closed, memory or churn, not {other}"),
                }
            }
            // The mode's former name, kept for existing command lines.
            "--idle" => a.mode = Mode::Memory,
            "--clients" => a.clients = val().parse().expect("--clients"),
            "--room-size" => a.room_size = val().parse().expect("--room-size"),
            "--duration" => a.duration = val().parse().expect("--duration"),
            "--warmup" => a.warmup = val().parse().expect("--warmup"),
            "--rate" => a.rate = val().parse().expect("--rate"),
            "--senders-per-room" => a.senders_per_room = val().parse().expect("--senders-per-room"),
            "--in-flight" => a.in_flight = val().parse().expect("--in-flight"),
            "--cycles" => a.cycles = val().parse().expect("--cycles"),
            "--concurrency" => a.concurrency = val().parse().expect("--concurrency"),
            "--settle" => a.settle = val().parse().expect("--settle"),
            "--warmup-cycles" => a.warmup_cycles = val().parse().expect("--warmup-cycles"),
            "--late" => a.late = val().parse().expect("--late"),
            "--source-addresses" => a.source_addresses = val().parse().expect("--source-addresses (1-250)"),
            "--server-pid" => a.server_pid = Some(val().parse().expect("--server-pid")),
            "--drain" => a.drain = val().parse().expect("--drain"),
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(a.secret.len() >= 16, "--secret (or JWT_SECRET) must be the server's JWT secret");
    assert!(a.room_size > 0 && a.clients > 0, "--clients and --room-size must be positive");
    if a.source_addresses == 0 {
        // About 28k ephemeral ports per source address; keep well under that, TIME_WAIT included.
        a.source_addresses = (a.clients.max(a.cycles) / 8_000 + 1).min(250) as u8;
    }
    a
}

fn token(secret: &str, user: &str) -> String {
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({ "sub": user, "company_id": "bench", "exp": exp }),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

/// What `/proc` says about the server process.
mod server_proc {
    pub fn rss_kib(pid: u32) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// User + system CPU time, in seconds.
    pub fn cpu_seconds(pid: u32) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name, which may hold spaces: state is field 3, utime 14, stime 15.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        Some(ticks as f64 / if hz > 0 { hz as f64 } else { 100.0 })
    }

    /// Voluntary and involuntary context switches, summed over the process's threads.
    pub fn context_switches(pid: u32) -> Option<u64> {
        let mut total = 0;
        for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
            let Ok(status) = std::fs::read_to_string(task.ok()?.path().join("status")) else { continue };
            for line in status.lines() {
                if line.starts_with("voluntary_ctxt_switches:") || line.starts_with("nonvoluntary_ctxt_switches:") {
                    total += line.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                }
            }
        }
        Some(total)
    }
}

/// A latency histogram with ~2 % wide buckets, shared by every client task without a lock.
struct Histogram {
    buckets: Vec<AtomicU64>,
}

impl Histogram {
    const GROWTH: f64 = 1.02;
    fn new() -> Self {
        Histogram { buckets: (0..1200).map(|_| AtomicU64::new(0)).collect() }
    }
    fn record(&self, micros: u64) {
        let i = ((micros.max(1) as f64).ln() / Self::GROWTH.ln()) as usize;
        self.buckets[i.min(self.buckets.len() - 1)].fetch_add(1, Ordering::Relaxed);
    }
    fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }
    /// The `q` quantile in milliseconds (the bucket's upper bound).
    fn quantile_ms(&self, q: f64) -> f64 {
        let total = self.count();
        if total == 0 {
            return 0.0;
        }
        let target = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Ordering::Relaxed);
            if seen >= target {
                return Self::GROWTH.powi(i as i32 + 1) / 1000.0;
            }
        }
        0.0
    }
}

#[derive(Default)]
struct Counters {
    /// Clients authenticated and in their room.
    joined: AtomicUsize,
    /// Clients authenticated (`memory` mode counts these before joining).
    connected: AtomicUsize,
    errors: AtomicU64,
    disconnected: AtomicU64,
    /// Messages sent whose scheduled time falls in the measured window, and the deliveries
    /// they are owed (one per member of their room).
    window_sent: AtomicU64,
    window_owed: AtomicU64,
    /// Deliveries of those messages, whenever they arrive.
    window_delivered: AtomicU64,
    /// Deliveries received while the window is open (whatever they were sent).
    received_in_window: AtomicU64,
    acked: AtomicU64,
    /// Sends the server answered `ok: false` (busy, rate-limited): not stored, owed to nobody.
    refused: AtomicU64,
    join_retries: AtomicU64,
}

/// Shared by every client task.
struct Run {
    args: Args,
    server: SocketAddr,
    ws_url: String,
    counters: Counters,
    latency: Histogram,
    /// Time zero of the timestamps carried in message content.
    epoch: Instant,
    /// Scheduled send times in `[start, end)` are measured (micros since `epoch`).
    window: OnceLock<(u64, u64)>,
    measuring: AtomicBool,
    stop: AtomicBool,
    /// `memory` mode: clients stay idle until this opens, then join.
    join_gate: Gate,
    /// Senders start once every client is in its room.
    send_gate: Gate,
}

/// Opened once; every task waiting on it then proceeds.
#[derive(Default)]
struct Gate {
    open: AtomicBool,
    notify: tokio::sync::Notify,
}

impl Gate {
    async fn wait(&self) {
        let notified = self.notify.notified();
        if !self.open.load(Ordering::Acquire) {
            notified.await;
        }
    }
    fn open(&self) {
        self.open.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }
}

impl Run {
    fn micros(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }
    fn in_window(&self, t: u64) -> bool {
        self.window.get().is_some_and(|&(a, b)| t >= a && t < b)
    }
}

/// Opens a WebSocket to the server from the `i`th source address.
async fn open_ws(run: &Run, i: usize) -> Result<Ws, String> {
    let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    if run.server.ip().is_loopback() {
        let source = Ipv4Addr::new(127, 0, 0, 1 + (i % run.args.source_addresses as usize) as u8);
        socket.bind(SocketAddr::new(IpAddr::V4(source), 0)).map_err(|e| format!("bind {source}: {e}"))?;
    }
    let stream = socket.connect(run.server).await.map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).ok();
    let (ws, _) = tokio_tungstenite::client_async(run.ws_url.as_str(), stream).await.map_err(|e| format!("websocket: {e}"))?;
    Ok(ws)
}

/// Reads text frames until one satisfies `done`, answering pings on the way.
async fn read_until(tx: &mut WsTx, rx: &mut WsRx, what: &str, done: impl Fn(&str) -> bool) -> Result<(), String> {
    while let Some(frame) = rx.next().await {
        let WsMessage::Text(text) = frame.map_err(|e| format!("{what}: {e}"))? else { continue };
        let t = text.as_str();
        if t == "2" {
            tx.send(WsMessage::text("3")).await.map_err(|e| e.to_string())?;
        } else if t.starts_with("44") {
            return Err(format!("{what}: refused: {t}"));
        } else if done(t) {
            return Ok(());
        }
    }
    Err(format!("{what}: closed"))
}

/// Waits for `gate` while answering the server's pings, as an idle client does.
async fn idle_until(gate: &Gate, tx: &mut WsTx, rx: &mut WsRx) -> Result<(), String> {
    let opened = gate.wait();
    tokio::pin!(opened);
    loop {
        tokio::select! {
            _ = &mut opened => return Ok(()),
            frame = rx.next() => match frame {
                Some(Ok(WsMessage::Text(t))) if t.as_str() == "2" => {
                    tx.send(WsMessage::text("3")).await.map_err(|e| e.to_string())?;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("idle: {e}")),
                None => return Err("idle: closed".into()),
            }
        }
    }
}

/// Engine.IO open, Socket.IO CONNECT with the token.
async fn connect_client(run: &Run, i: usize) -> Result<(WsTx, WsRx), String> {
    let ws = open_ws(run, i).await?;
    let (mut tx, mut rx) = ws.split();
    read_until(&mut tx, &mut rx, "open", |t| t.starts_with('0')).await?;
    let tok = token(&run.args.secret, &format!("bench-user-{i}"));
    tx.send(WsMessage::text(format!("40{}", json!({ "token": tok })))).await.map_err(|e| e.to_string())?;
    read_until(&mut tx, &mut rx, "connect", |t| t.starts_with("40")).await?;
    Ok((tx, rx))
}

/// Joins the room, asking again if no answer comes within 3 s: socketioxide runs a
/// namespace's connect handler in a task of its own after it has answered the CONNECT, so an
/// event sent right after the answer can arrive before the handler has registered its events
/// (and is dropped). A real client would be stuck the same way; the generator retries and
/// counts it.
async fn join(run: &Run, tx: &mut WsTx, rx: &mut WsRx, conversation_id: &str) -> Result<(), String> {
    for attempt in 0..5 {
        if attempt > 0 {
            run.counters.join_retries.fetch_add(1, Ordering::Relaxed);
        }
        tx.send(WsMessage::text(format!("42{}", json!(["conversation:join", conversation_id])))).await.map_err(|e| e.to_string())?;
        let joined = read_until(tx, rx, "join", |t| t.starts_with("42[\"conversation:joined\""));
        match tokio::time::timeout(Duration::from_secs(3), joined).await {
            Ok(result) => return result,
            Err(_) => continue,
        }
    }
    Err("join: no answer after 5 attempts".into())
}

fn send_frame(conversation_id: &str, ack: Option<u64>, stamp: u64) -> WsMessage {
    let ack = ack.map(|a| a.to_string()).unwrap_or_default();
    WsMessage::text(format!(
        "42{ack}{}",
        json!(["message:send", { "conversationId": conversation_id, "content": format!("t{stamp} benchmark message with a little text in it") }])
    ))
}

/// The scheduled send time a `message:new` frame carries in its content.
fn stamp_of(frame: &str) -> Option<u64> {
    let at = frame.find("\"content\":\"t")? + "\"content\":\"t".len();
    let digits = frame[at..].bytes().take_while(u8::is_ascii_digit).count();
    frame[at..at + digits].parse().ok()
}

/// Members of room `r` (the last room may be short).
fn room_members(args: &Args, r: usize) -> usize {
    (args.clients - r * args.room_size).min(args.room_size)
}

/// One client of `open`/`closed`/`memory`: connects, joins, then sends if it is a sender and
/// counts what it receives until told to stop.
async fn client(run: Arc<Run>, i: usize, conversation_id: Arc<str>, connecting: Arc<Semaphore>) {
    let args = &run.args;
    let room = i / args.room_size;
    let sender = (i % args.room_size) < args.senders_per_room;
    let permit = connecting.acquire().await.expect("semaphore");
    let (mut tx, mut rx) = match connect_client(&run, i).await {
        Ok(pair) => pair,
        Err(e) => {
            if run.counters.errors.fetch_add(1, Ordering::Relaxed) < 3 {
                eprintln!("client {i}: {e}");
            }
            return;
        }
    };
    run.counters.connected.fetch_add(1, Ordering::Relaxed);
    drop(permit);
    let permit = if args.mode == Mode::Memory {
        // Idle first; everyone joins once the idle figure is taken, as many at a time as connect.
        if let Err(e) = idle_until(&run.join_gate, &mut tx, &mut rx).await {
            if run.counters.errors.fetch_add(1, Ordering::Relaxed) < 3 {
                eprintln!("client {i}: {e}");
            }
            return;
        }
        Some(connecting.acquire().await.expect("semaphore"))
    } else {
        None
    };
    let joined = join(&run, &mut tx, &mut rx, &conversation_id).await;
    drop(permit);
    if let Err(e) = joined {
        if run.counters.errors.fetch_add(1, Ordering::Relaxed) < 3 {
            eprintln!("client {i}: {e}");
        }
        return;
    }
    run.counters.joined.fetch_add(1, Ordering::Relaxed);
    if let Err(e) = idle_until(&run.send_gate, &mut tx, &mut rx).await {
        if run.counters.errors.fetch_add(1, Ordering::Relaxed) < 3 {
            eprintln!("client {i}: {e}");
        }
        return;
    }
    let members = room_members(args, room) as u64;

    let closed_loop = args.mode == Mode::Closed;
    let mut ticker = if sender && !closed_loop {
        let rooms = args.clients.div_ceil(args.room_size);
        let per_sender = args.rate / (args.clients as f64) / args.senders_per_room as f64;
        let period = Duration::from_secs_f64(1.0 / per_sender.max(0.001));
        // Senders spread their phases over one period so the offered load is smooth.
        let slot = room * args.senders_per_room + i % args.room_size;
        let phase = period.mul_f64(slot as f64 / (rooms * args.senders_per_room) as f64);
        let mut t = tokio::time::interval_at(tokio::time::Instant::now() + phase, period);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        Some(t)
    } else {
        None
    };
    let mut next_ack: u64 = 1;
    let mut pending: std::collections::HashMap<u64, Instant> = std::collections::HashMap::new();
    // Open loop: the scheduled time of each send awaiting its ack, so a refused send in the
    // window is taken off what the room is owed.
    let mut open_stamps: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
    if sender && closed_loop {
        for _ in 0..args.in_flight {
            let stamp = run.micros();
            if tx.send(send_frame(&conversation_id, Some(next_ack), stamp)).await.is_ok() {
                pending.insert(next_ack, Instant::now());
            }
            next_ack += 1;
        }
    }
    loop {
        tokio::select! {
            frame = rx.next() => {
                let Some(Ok(frame)) = frame else {
                    if !run.stop.load(Ordering::Relaxed) {
                        run.counters.disconnected.fetch_add(1, Ordering::Relaxed);
                    }
                    break;
                };
                let WsMessage::Text(text) = frame else { continue };
                let t = text.as_str();
                if t == "2" {
                    let _ = tx.send(WsMessage::text("3")).await;
                } else if t.starts_with("42[\"message:new\"") {
                    if run.measuring.load(Ordering::Relaxed) {
                        run.counters.received_in_window.fetch_add(1, Ordering::Relaxed);
                    }
                    if let Some(stamp) = stamp_of(t)
                        && run.in_window(stamp)
                    {
                        run.counters.window_delivered.fetch_add(1, Ordering::Relaxed);
                        run.latency.record(run.micros().saturating_sub(stamp));
                    }
                } else if let Some(rest) = t.strip_prefix("43") {
                    run.counters.acked.fetch_add(1, Ordering::Relaxed);
                    let id: u64 = rest.split('[').next().and_then(|s| s.parse().ok()).unwrap_or(0);
                    let stamp = open_stamps.remove(&id);
                    if rest.contains("\"ok\":false") {
                        run.counters.refused.fetch_add(1, Ordering::Relaxed);
                        if let Some(stamp) = stamp
                            && run.in_window(stamp)
                        {
                            run.counters.window_owed.fetch_sub(members, Ordering::Relaxed);
                        }
                    }
                    if closed_loop {
                        let id: u64 = rest.split('[').next().and_then(|s| s.parse().ok()).unwrap_or(0);
                        pending.remove(&id);
                        if !run.stop.load(Ordering::Relaxed) {
                            let stamp = run.micros();
                            if run.in_window(stamp) {
                                run.counters.window_sent.fetch_add(1, Ordering::Relaxed);
                                run.counters.window_owed.fetch_add(members, Ordering::Relaxed);
                            }
                            if tx.send(send_frame(&conversation_id, Some(next_ack), stamp)).await.is_ok() {
                                pending.insert(next_ack, Instant::now());
                            }
                            next_ack += 1;
                        }
                    }
                } else if t.starts_with("44") {
                    run.counters.errors.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
            scheduled = async { ticker.as_mut().expect("guarded").tick().await }, if ticker.is_some() && !run.stop.load(Ordering::Relaxed) => {
                let stamp = scheduled.into_std().saturating_duration_since(run.epoch).as_micros() as u64;
                if run.in_window(stamp) {
                    run.counters.window_sent.fetch_add(1, Ordering::Relaxed);
                    run.counters.window_owed.fetch_add(members, Ordering::Relaxed);
                }
                // Acknowledged like a real client's send; the ack only tells a refusal.
                if tx.send(send_frame(&conversation_id, Some(next_ack), stamp)).await.is_ok() {
                    open_stamps.insert(next_ack, stamp);
                }
                next_ack += 1;
            }
        }
    }
}

async fn create_conversations(args: &Args, rooms: usize) -> Vec<Arc<str>> {
    let http = reqwest::Client::new();
    let admin = token(&args.secret, "bench-admin");
    let mut ids = Vec::with_capacity(rooms);
    for r in 0..rooms {
        let res: serde_json::Value = http
            .post(format!("{}/api/conversations", args.url))
            .bearer_auth(&admin)
            .json(&json!({ "agentId": "bench-agent", "title": format!("room {r}") }))
            .send()
            .await
            .expect("create conversation")
            .json()
            .await
            .expect("conversation json");
        ids.push(Arc::from(res["conversation"]["id"].as_str().expect("conversation id")));
    }
    ids
}

fn result_line(pairs: &[(&str, String)]) {
    let body: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("RESULT {}", body.join(" "));
}

/// Samples the server's RSS every 100 ms until `stop`, keeping the peak.
fn watch_peak_rss(pid: Option<u32>, stop: Arc<AtomicBool>) -> Arc<AtomicU64> {
    let peak = Arc::new(AtomicU64::new(0));
    if let Some(pid) = pid {
        let peak = peak.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Some(rss) = server_proc::rss_kib(pid) {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }
    peak
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // Each client is one descriptor.
    chat_service::connections::raise_open_file_limit();
    let args = parse_args();
    let parsed = url::Url::parse(&args.url).expect("--url");
    let server = tokio::net::lookup_host((parsed.host_str().expect("--url host"), parsed.port_or_known_default().unwrap_or(80)))
        .await
        .expect("resolve --url")
        .find(SocketAddr::is_ipv4)
        .expect("an IPv4 address for --url");
    let rooms = if args.mode == Mode::Churn { 1 } else { args.clients.div_ceil(args.room_size) };
    let conversation_ids = create_conversations(&args, rooms).await;
    let ws_url = format!("{}/socket.io/?EIO=4&transport=websocket", args.url.replacen("http", "ws", 1));
    let run = Arc::new(Run {
        args,
        server,
        ws_url,
        counters: Counters::default(),
        latency: Histogram::new(),
        epoch: Instant::now(),
        window: OnceLock::new(),
        measuring: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        join_gate: Gate::default(),
        send_gate: Gate::default(),
    });
    if run.args.mode == Mode::Churn {
        churn(run, conversation_ids[0].clone()).await;
        return;
    }
    let pid = run.args.server_pid;
    let rss_before = pid.and_then(server_proc::rss_kib);
    let stop_watch = Arc::new(AtomicBool::new(false));
    let peak_rss = watch_peak_rss(pid, stop_watch.clone());

    let connecting = Arc::new(Semaphore::new(200));
    let mut tasks = Vec::new();
    for i in 0..run.args.clients {
        let conversation_id = conversation_ids[i / run.args.room_size].clone();
        tasks.push(tokio::spawn(client(run.clone(), i, conversation_id, connecting.clone())));
    }

    let c = &run.counters;
    let connect_start = Instant::now();
    let target = |c: &Counters| if run.args.mode == Mode::Memory { c.connected.load(Ordering::Relaxed) } else { c.joined.load(Ordering::Relaxed) };
    while target(c) + (c.errors.load(Ordering::Relaxed) as usize) < run.args.clients && connect_start.elapsed() < Duration::from_secs(180) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "connected {} of {} clients ({} rooms of {}) in {:.1}s, {} errors",
        target(c),
        run.args.clients,
        rooms,
        run.args.room_size,
        connect_start.elapsed().as_secs_f64(),
        c.errors.load(Ordering::Relaxed)
    );

    let mut idle_per_conn_kb = None;
    if run.args.mode == Mode::Memory {
        tokio::time::sleep(Duration::from_secs(3)).await;
        if let (Some(pid), Some(before)) = (pid, rss_before) {
            let after = server_proc::rss_kib(pid).unwrap_or(0);
            let connected = c.connected.load(Ordering::Relaxed).max(1);
            let per = after.saturating_sub(before) as f64 * 1.024 / connected as f64;
            println!("server RSS {before} KiB -> {after} KiB with {connected} idle connections: {per:.1} KB per connection");
            idle_per_conn_kb = Some(per);
        }
        let join_start = Instant::now();
        run.join_gate.open();
        while c.joined.load(Ordering::Relaxed) + (c.errors.load(Ordering::Relaxed) as usize) < c.connected.load(Ordering::Relaxed)
            && join_start.elapsed() < Duration::from_secs(300)
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!("{} joined in {:.1}s", c.joined.load(Ordering::Relaxed), join_start.elapsed().as_secs_f64());
    }

    // Senders start now; the window opens after the warm-up.
    let cpu0_ctx0 = |pid: Option<u32>| pid.map(|p| (server_proc::cpu_seconds(p).unwrap_or(0.0), server_proc::context_switches(p).unwrap_or(0)));
    let start_at = run.micros() + run.args.warmup * 1_000_000;
    let end_at = start_at + run.args.duration * 1_000_000;
    run.window.set((start_at, end_at)).expect("window set once");
    run.send_gate.open();
    tokio::time::sleep(Duration::from_secs(run.args.warmup)).await;
    let before = cpu0_ctx0(pid);
    run.measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(run.args.duration)).await;
    run.measuring.store(false, Ordering::Relaxed);
    let secs = started.elapsed().as_secs_f64();
    let after = cpu0_ctx0(pid);
    run.stop.store(true, Ordering::Relaxed);
    let received = c.received_in_window.load(Ordering::Relaxed);

    // Whatever was sent in the window gets `--drain` seconds to arrive before it counts as lost.
    let drain_start = Instant::now();
    while c.window_delivered.load(Ordering::Relaxed) < c.window_owed.load(Ordering::Relaxed)
        && drain_start.elapsed() < Duration::from_secs(run.args.drain)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_watch.store(true, Ordering::Relaxed);
    let owed = c.window_owed.load(Ordering::Relaxed);
    let delivered = c.window_delivered.load(Ordering::Relaxed);
    let lost = owed.saturating_sub(delivered);
    let rate = received as f64 / secs;
    let (p50, p99, p999) = (run.latency.quantile_ms(0.5), run.latency.quantile_ms(0.99), run.latency.quantile_ms(0.999));
    let offered = if run.args.mode == Mode::Closed { "closed".to_string() } else { format!("{:.0}", run.args.rate) };
    println!("offered {offered} deliveries/s; delivered {rate:.0}/s (message:new received in {secs:.1}s)");
    println!("latency from send time: p50 {p50:.1} ms, p99 {p99:.1} ms, p99.9 {p999:.1} ms");
    println!(
        "sent in window {}, deliveries owed {owed}, lost {lost} (after {:.1}s drain); acks {}, refused {}; join retries {}; disconnects {}; errors {}",
        c.window_sent.load(Ordering::Relaxed),
        drain_start.elapsed().as_secs_f64(),
        c.acked.load(Ordering::Relaxed),
        c.refused.load(Ordering::Relaxed),
        c.join_retries.load(Ordering::Relaxed),
        c.disconnected.load(Ordering::Relaxed),
        c.errors.load(Ordering::Relaxed)
    );
    let mut pairs = vec![
        ("mode", format!("{:?}", run.args.mode).to_lowercase()),
        ("clients", run.args.clients.to_string()),
        ("offered", offered),
        ("delivered_per_s", format!("{rate:.0}")),
        ("p50_ms", format!("{p50:.1}")),
        ("p99_ms", format!("{p99:.1}")),
        ("lost", lost.to_string()),
        ("refused", c.refused.load(Ordering::Relaxed).to_string()),
        ("errors", c.errors.load(Ordering::Relaxed).to_string()),
    ];
    if let (Some((cpu0, ctx0)), Some((cpu1, ctx1))) = (before, after) {
        let us_per_delivery = (cpu1 - cpu0) * 1e6 / (received.max(1) as f64);
        let cpu_pct = (cpu1 - cpu0) / secs * 100.0;
        println!(
            "server CPU {cpu_pct:.0} %, {us_per_delivery:.1} us per delivery; {} context switches ({:.0}/s)",
            ctx1 - ctx0,
            (ctx1 - ctx0) as f64 / secs
        );
        pairs.push(("cpu_pct", format!("{cpu_pct:.0}")));
        pairs.push(("us_per_delivery", format!("{us_per_delivery:.1}")));
        pairs.push(("ctx_switches_per_s", format!("{:.0}", (ctx1 - ctx0) as f64 / secs)));
    }
    if pid.is_some() {
        let peak = peak_rss.load(Ordering::Relaxed);
        println!("server RSS peak {:.1} MB", peak as f64 * 1.024 / 1000.0);
        pairs.push(("rss_peak_mb", format!("{:.1}", peak as f64 * 1.024 / 1000.0)));
    }
    if let Some(per) = idle_per_conn_kb {
        pairs.push(("idle_kb_per_conn", format!("{per:.1}")));
    }
    result_line(&pairs);
    for t in tasks {
        t.abort();
    }
}

/// `--cycles` clients connect, authenticate, join and disconnect, `--concurrency` at a time.
/// The RSS before is read after `--warmup-cycles` cycles (and `--settle`): a process that has
/// not yet served a connection has not touched the code, thread stacks and allocator arenas
/// that serving takes, which is not what churn is about. The cold figure is printed as well.
async fn churn(run: Arc<Run>, conversation_id: Arc<str>) {
    let pid = run.args.server_pid;
    let cold = pid.and_then(server_proc::rss_kib);
    if run.args.warmup_cycles > 0 {
        churn_cycles(&run, &conversation_id, 0..run.args.warmup_cycles).await;
        tokio::time::sleep(Duration::from_secs(run.args.settle)).await;
        run.counters.connected.store(0, Ordering::Relaxed);
    }
    let before = pid.and_then(server_proc::rss_kib);
    let started = Instant::now();
    let first = run.args.warmup_cycles;
    churn_cycles(&run, &conversation_id, first..first + run.args.cycles).await;
    let cycle_secs = started.elapsed().as_secs_f64();
    // Time for the server to finish closing the last sessions and give back what they freed.
    tokio::time::sleep(Duration::from_secs(run.args.settle)).await;
    let done = run.counters.connected.load(Ordering::Relaxed);
    let errors = run.counters.errors.load(Ordering::Relaxed);
    println!("{done} connect/join/disconnect cycles in {cycle_secs:.1}s ({:.0}/s), {errors} errors", done as f64 / cycle_secs);
    let mut pairs = vec![("mode", "churn".to_string()), ("cycles", done.to_string()), ("errors", errors.to_string())];
    if let (Some(pid), Some(before)) = (pid, before) {
        let after = server_proc::rss_kib(pid).unwrap_or(0);
        let change = (after as f64 - before as f64) / before as f64 * 100.0;
        println!("server RSS {before} KiB before, {after} KiB after ({change:+.1} %); {} KiB before the warm-up", cold.unwrap_or(0));
        pairs.push(("rss_before_mb", format!("{:.1}", before as f64 * 1.024 / 1000.0)));
        pairs.push(("rss_after_mb", format!("{:.1}", after as f64 * 1.024 / 1000.0)));
        pairs.push(("rss_change_pct", format!("{change:+.1}")));
        if let Some(cold) = cold {
            pairs.push(("rss_cold_mb", format!("{:.1}", cold as f64 * 1.024 / 1000.0)));
        }
        if run.args.late > 0 {
            tokio::time::sleep(Duration::from_secs(run.args.late)).await;
            let late = server_proc::rss_kib(pid).unwrap_or(0);
            let change = (late as f64 - before as f64) / before as f64 * 100.0;
            println!("server RSS {late} KiB another {} s later ({change:+.1} %)", run.args.late);
            pairs.push(("rss_late_mb", format!("{:.1}", late as f64 * 1.024 / 1000.0)));
            pairs.push(("rss_late_change_pct", format!("{change:+.1}")));
        }
    }
    result_line(&pairs);
}

/// Runs the cycles numbered `ids` (each its own user), `--concurrency` at a time.
async fn churn_cycles(run: &Arc<Run>, conversation_id: &Arc<str>, ids: std::ops::Range<usize>) {
    let next = Arc::new(AtomicUsize::new(ids.start));
    let mut workers = Vec::new();
    for _ in 0..run.args.concurrency {
        let (run, next, conversation_id, end) = (run.clone(), next.clone(), conversation_id.clone(), ids.end);
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    break;
                }
                let result = async {
                    let (mut tx, mut rx) = connect_client(&run, i).await?;
                    join(&run, &mut tx, &mut rx, &conversation_id).await?;
                    let mut ws = tx.reunite(rx).map_err(|e| e.to_string())?;
                    ws.close(None).await.map_err(|e| e.to_string())?;
                    // Read until the server's close so the server has seen the whole cycle.
                    while let Some(Ok(_)) = ws.next().await {}
                    Ok::<(), String>(())
                }
                .await;
                match result {
                    Ok(()) => run.counters.connected.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        if run.counters.errors.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("cycle {i}: {e}");
                        }
                        0
                    }
                };
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
}

