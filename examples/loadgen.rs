//! Load generator for the send path: N Socket.IO clients over WebSocket in rooms of R, a few
//! senders per room, counting every `message:new` delivered. It speaks Engine.IO v4 /
//! Socket.IO v5 frames directly so the generator stays far cheaper than the server it loads.
//!
//! ```text
//! cargo run --release --example loadgen -- --url http://127.0.0.1:4004 --secret <JWT_SECRET> \
//!     --clients 2000 --room-size 40 --duration 20 [--senders-per-room 1] [--in-flight 4] \
//!     [--server-pid PID] [--idle]
//! ```
//! `--idle` connects and joins, then reports the server's resident memory per connection
//! (needs `--server-pid`). Otherwise it reports deliveries/s and send→ack latency.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message as WsMessage;

struct Args {
    url: String,
    secret: String,
    clients: usize,
    room_size: usize,
    duration: u64,
    senders_per_room: usize,
    in_flight: usize,
    server_pid: Option<u32>,
    idle: bool,
}

fn parse_args() -> Args {
    let mut a = Args {
        url: "http://127.0.0.1:4004".into(),
        secret: std::env::var("JWT_SECRET").unwrap_or_default(),
        clients: 2000,
        room_size: 40,
        duration: 20,
        senders_per_room: 1,
        in_flight: 4,
        server_pid: None,
        idle: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => a.url = val(),
            "--secret" => a.secret = val(),
            "--clients" => a.clients = val().parse().expect("--clients"),
            "--room-size" => a.room_size = val().parse().expect("--room-size"),
            "--duration" => a.duration = val().parse().expect("--duration"),
            "--senders-per-room" => a.senders_per_room = val().parse().expect("--senders-per-room"),
            "--in-flight" => a.in_flight = val().parse().expect("--in-flight"),
            "--server-pid" => a.server_pid = Some(val().parse().expect("--server-pid")),
            "--idle" => a.idle = true,
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(a.secret.len() >= 16, "--secret (or JWT_SECRET) must be the server's JWT secret");
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

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[derive(Default)]
struct Counters {
    connected: AtomicUsize,
    deliveries: AtomicU64,
    sent: AtomicU64,
    acked: AtomicU64,
    errors: AtomicU64,
}

#[tokio::main]
async fn main() {
    let args = Arc::new(parse_args());
    let http = reqwest::Client::new();
    let rooms = args.clients.div_ceil(args.room_size);
    let admin = token(&args.secret, "bench-admin");
    let mut conversation_ids = Vec::with_capacity(rooms);
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
        conversation_ids.push(res["conversation"]["id"].as_str().expect("conversation id").to_string());
    }
    let rss_before = args.server_pid.and_then(rss_kib);

    let counters = Arc::new(Counters::default());
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let latencies = Arc::new(Mutex::new(Vec::<u32>::new()));
    let ws_url = format!("{}/socket.io/?EIO=4&transport=websocket", args.url.replacen("http", "ws", 1));

    let mut tasks = Vec::new();
    for i in 0..args.clients {
        let room = i / args.room_size;
        let sender = !args.idle && (i % args.room_size) < args.senders_per_room;
        let conversation_id = conversation_ids[room].clone();
        let (args, counters, measuring, stop, latencies, ws_url) =
            (args.clone(), counters.clone(), measuring.clone(), stop.clone(), latencies.clone(), ws_url.clone());
        tasks.push(tokio::spawn(async move {
            let Ok((ws, _)) = tokio_tungstenite::connect_async(&ws_url).await else {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                return;
            };
            let (mut tx, mut rx) = ws.split();
            let tok = token(&args.secret, &format!("bench-user-{i}"));
            let mut joined = false;
            let mut next_ack: u64 = 1;
            let mut pending: HashMap<u64, Instant> = HashMap::new();
            while let Some(Ok(frame)) = rx.next().await {
                let WsMessage::Text(text) = frame else { continue };
                let t = text.as_str();
                if t == "2" {
                    let _ = tx.send(WsMessage::text("3")).await;
                } else if t.starts_with('0') {
                    let _ = tx.send(WsMessage::text(format!("40{}", json!({ "token": tok })))).await;
                } else if t.starts_with("40") && !joined {
                    joined = true;
                    let _ = tx.send(WsMessage::text(format!("42{}", json!(["conversation:join", conversation_id])))).await;
                } else if t.starts_with("42[\"conversation:joined\"") {
                    counters.connected.fetch_add(1, Ordering::Relaxed);
                    if sender {
                        // Wait for everyone, then keep `in_flight` sends outstanding.
                        while counters.connected.load(Ordering::Relaxed) < args.clients && !stop.load(Ordering::Relaxed) {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        for _ in 0..args.in_flight {
                            send_one(&mut tx, &conversation_id, &mut next_ack, &mut pending, &counters).await;
                        }
                    }
                } else if t.starts_with("42[\"message:new\"") {
                    if measuring.load(Ordering::Relaxed) {
                        counters.deliveries.fetch_add(1, Ordering::Relaxed);
                    }
                } else if let Some(rest) = t.strip_prefix("43") {
                    let id: u64 = rest.split('[').next().and_then(|s| s.parse().ok()).unwrap_or(0);
                    if let Some(at) = pending.remove(&id) {
                        counters.acked.fetch_add(1, Ordering::Relaxed);
                        if measuring.load(Ordering::Relaxed) {
                            latencies.lock().await.push(at.elapsed().as_micros() as u32);
                        }
                    }
                    if !stop.load(Ordering::Relaxed) {
                        send_one(&mut tx, &conversation_id, &mut next_ack, &mut pending, &counters).await;
                    }
                } else if t.starts_with("44") {
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                if stop.load(Ordering::Relaxed) && pending.is_empty() && !args.idle {
                    break;
                }
            }
        }));
    }

    let connect_start = Instant::now();
    while counters.connected.load(Ordering::Relaxed) + (counters.errors.load(Ordering::Relaxed) as usize) < args.clients {
        if connect_start.elapsed() > Duration::from_secs(120) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "connected {} of {} clients in {} rooms in {:.1}s ({} errors)",
        counters.connected.load(Ordering::Relaxed),
        args.clients,
        rooms,
        connect_start.elapsed().as_secs_f64(),
        counters.errors.load(Ordering::Relaxed)
    );

    if args.idle {
        tokio::time::sleep(Duration::from_secs(3)).await;
        if let (Some(pid), Some(before)) = (args.server_pid, rss_before) {
            let after = rss_kib(pid).unwrap_or(0);
            let per = (after.saturating_sub(before) as f64) * 1024.0 / args.clients as f64;
            println!("server RSS {before} KiB -> {after} KiB: {:.1} KB per idle connection", per / 1000.0);
        }
        stop.store(true, Ordering::Relaxed);
        return;
    }

    tokio::time::sleep(Duration::from_secs(2)).await; // warm-up
    let (d0, s0) = (counters.deliveries.load(Ordering::Relaxed), counters.acked.load(Ordering::Relaxed));
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.duration)).await;
    measuring.store(false, Ordering::Relaxed);
    let secs = started.elapsed().as_secs_f64();
    let deliveries = counters.deliveries.load(Ordering::Relaxed) - d0;
    let acked = counters.acked.load(Ordering::Relaxed) - s0;
    stop.store(true, Ordering::Relaxed);
    let mut lat = latencies.lock().await.clone();
    lat.sort_unstable();
    let pct = |p: f64| lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1))).copied().unwrap_or(0);
    println!("messages sent and acknowledged: {:.0}/s", acked as f64 / secs);
    println!("deliveries (message:new received): {:.0}/s", deliveries as f64 / secs);
    println!("send -> ack latency: p50 {:.1} ms, p99 {:.1} ms", pct(0.5) as f64 / 1000.0, pct(0.99) as f64 / 1000.0);
    if let Some(pid) = args.server_pid {
        println!("server RSS: {} KiB", rss_kib(pid).unwrap_or(0));
    }
    println!("errors: {}", counters.errors.load(Ordering::Relaxed));
    for t in tasks {
        t.abort();
    }
}

async fn send_one<S>(tx: &mut S, conversation_id: &str, next_ack: &mut u64, pending: &mut HashMap<u64, Instant>, counters: &Counters)
where
    S: futures_util::Sink<WsMessage> + Unpin,
{
    let id = *next_ack;
    *next_ack += 1;
    let frame = format!("42{id}{}", json!(["message:send", { "conversationId": conversation_id, "content": "benchmark message with a little text in it" }]));
    if tx.send(WsMessage::text(frame)).await.is_ok() {
        pending.insert(id, Instant::now());
        counters.sent.fetch_add(1, Ordering::Relaxed);
    }
}
