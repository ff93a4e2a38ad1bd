//! Bounded, seeded fuzzing of the whole server: random and mutated REST requests on every
//! route, Engine.IO/Socket.IO frames over WebSocket and HTTP long-polling, all at once against
//! one server process. The server may refuse anything and may close any connection, but it
//! must keep running, never answer 5xx (503 aside), keep `/health` at 200, answer /api
//! errors as JSON, refuse frames over the 1 MB max payload, stay under a memory bound, and
//! still serve a normal conversation afterwards.
//!
//! `FUZZ_SEED` (decimal or 0x-hex) picks the inputs: the same seed draws the same requests and
//! frames (only how many frames of a session leave before the server's close is noticed can
//! differ). `FUZZ_SCALE` multiplies how many (default 1). `FUZZ_SERVER_LOG` is the server's
//! `RUST_LOG` (default `warn`). The seed and every count are printed at the end
//! (`cargo test --test fuzz -- --nocapture`); a failure lists each distinct defect with the
//! requests or frames that showed it.

mod common;
#[path = "fuzz/input.rs"]
mod input;
#[path = "fuzz/polling.rs"]
mod polling;
#[path = "fuzz/rest.rs"]
mod rest;
#[path = "fuzz/socket.rs"]
mod socket;
#[path = "fuzz/watch.rs"]
mod watch;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use common::{spawn_app, TestApp};
use input::Known;
use watch::{Activity, Counts, Findings, MemoryReport};

const DEFAULT_SEED: u64 = 0x5EED_C4A7;

/// Sizes at `FUZZ_SCALE=1`, chosen so that the run takes about a minute against the debug
/// binary on two cores with the SQLite store.
const REST_REQUESTS: f64 = 24_000.0;
/// Steps of the WebSocket sessions (a step is one frame, or a binary header and its
/// attachments); steps of a session cut short by the server are not sent.
const SOCKET_STEPS: f64 = 320_000.0;
const POLLING_SESSIONS: f64 = 1_200.0;

const REST_WORKERS: u64 = 6;
const SOCKET_WORKERS: u64 = 6;
const POLLING_WORKERS: u64 = 2;

/// Conversations no request deletes, and those that `DELETE /api/conversations/:id` may.
const KEPT_CONVERSATIONS: usize = 24;
const DISPOSABLE_CONVERSATIONS: usize = 120;

/// Upper bound of the server's resident memory during the run. Idle, the debug binary holds
/// about 20 MB. What the fuzzers can have in flight at once is bounded: six WebSocket
/// sessions each with at most one frame of 1.2 MB (held as the frame, its text and its parsed
/// value) or up to 10 MB of pending binary attachments, one REST body of up to 10 MB, and the
/// store's caches. That is at most about 100 MB even if every copy were alive at the same
/// moment; 300 MB leaves room for allocator slack and is still far below what memory growing
/// with the number of requests or frames (hundreds of thousands of them) would reach.
const RSS_BOUND_KB: u64 = 300 * 1024;

/// Independent generator streams, so that adding inputs to one fuzzer does not change the
/// others'.
pub const REST_STREAM: u64 = 1 << 32;
pub const SOCKET_STREAM: u64 = 2 << 32;
pub const POLLING_STREAM: u64 = 3 << 32;

/// The seed of one stream's `index`-th generator.
pub fn stream_seed(seed: u64, stream: u64, index: u64) -> u64 {
    splitmix64(seed ^ splitmix64(stream ^ splitmix64(index)))
}

/// One step of splitmix64: nearby inputs give unrelated outputs.
pub fn splitmix64(z: u64) -> u64 {
    let mut z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// What every fuzzing task shares.
pub struct Ctx {
    pub base_url: String,
    /// `ws://host:port`
    pub ws_base: String,
    /// `host:port`
    pub addr: String,
    pub seed: u64,
    pub known: Known,
    pub findings: Findings,
    pub counts: Counts,
    pub activity: Activity,
    /// Set when the server process is gone: the fuzzers stop.
    pub abort: AtomicBool,
    pub pid: u32,
    /// A client that opens a new connection for every request.
    pub unpooled: reqwest::Client,
}

impl Ctx {
    pub fn aborted(&self) -> bool {
        self.abort.load(Ordering::Relaxed)
    }

    /// The server has exited: a failed connection says nothing more than that.
    pub fn server_gone(&self) -> bool {
        self.aborted() || !watch::process_state(self.pid).alive
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_survives_random_and_mutated_input() {
    let seed = std::env::var("FUZZ_SEED").map(|s| parse_seed(&s)).unwrap_or(DEFAULT_SEED);
    let scale: f64 = std::env::var("FUZZ_SCALE")
        .map(|s| s.trim().parse().unwrap_or_else(|_| panic!("FUZZ_SCALE must be a number, got {s:?}")))
        .unwrap_or(1.0);
    let sized = |n: f64| (n * scale).round().max(1.0) as u64;

    let app = spawn_app(&[
        // The limits would refuse almost everything after the first few hundred inputs.
        ("RATE_LIMIT_MAX", "4294967295"),
        ("SOCKET_MESSAGE_LIMIT", "1000000"),
        ("SOCKET_TYPING_LIMIT", "1000000"),
        // The unsigned widget tokens are off by default; fuzz their parser too.
        ("ALLOW_LEGACY_WIDGET_TOKENS", "true"),
        ("RUST_LOG", &std::env::var("FUZZ_SERVER_LOG").unwrap_or("warn".into())),
    ]);
    assert_every_route_is_fuzzed(&app).await;
    let store = if std::env::var("CHAT_TEST_STORE").as_deref() == Ok("mongo") { "mongo" } else { "sqlite" };
    let known = seed_data(&app).await;
    let tasks = (REST_WORKERS + SOCKET_WORKERS + POLLING_WORKERS) as usize;
    let ctx = Arc::new(Ctx {
        base_url: app.base_url.clone(),
        ws_base: app.base_url.replacen("http", "ws", 1),
        addr: app.base_url.trim_start_matches("http://").to_string(),
        seed,
        known,
        findings: Findings::default(),
        counts: Counts::default(),
        activity: Activity::new(tasks),
        abort: AtomicBool::new(false),
        pid: app.pid(),
        unpooled: reqwest::Client::builder().timeout(rest::ANSWER_DEADLINE).pool_max_idle_per_host(0).build().unwrap(),
    });

    let started = Instant::now();
    let stop_monitor = Arc::new(AtomicBool::new(false));
    let monitor = {
        let (ctx, stop, url) = (ctx.clone(), stop_monitor.clone(), app.url("/health"));
        tokio::spawn(async move { watch::monitor(&ctx, url, &stop, started).await })
    };

    let mut fuzzers = Vec::new();
    let rest_client = reqwest::Client::builder().timeout(rest::ANSWER_DEADLINE).build().unwrap();
    let polling_client = reqwest::Client::builder().timeout(socket::DEADLINE).build().unwrap();
    let mut task = 0;
    for worker in 0..REST_WORKERS {
        let count = share(sized(REST_REQUESTS), REST_WORKERS, worker);
        fuzzers.push(tokio::spawn(timed(Fuzzer::Rest, rest::run(ctx.clone(), rest_client.clone(), worker, task, count))));
        task += 1;
    }
    for worker in 0..SOCKET_WORKERS {
        let steps = share(sized(SOCKET_STEPS), SOCKET_WORKERS, worker);
        fuzzers.push(tokio::spawn(timed(Fuzzer::WebSocket, socket::run(ctx.clone(), worker, task, steps))));
        task += 1;
    }
    for worker in 0..POLLING_WORKERS {
        let sessions = share(sized(POLLING_SESSIONS), POLLING_WORKERS, worker);
        fuzzers.push(tokio::spawn(timed(Fuzzer::Polling, polling::run(ctx.clone(), polling_client.clone(), worker, task, sessions))));
        task += 1;
    }
    let mut fuzzer_panics = Vec::new();
    let mut took = [Duration::ZERO; 3];
    for fuzzer in fuzzers {
        match fuzzer.await {
            Ok((kind, time)) => took[kind as usize] = took[kind as usize].max(time),
            Err(e) => fuzzer_panics.push(panic_message(e)),
        }
    }
    let fuzzing_time = started.elapsed();
    let cpu = Cpu { server: watch::cpu_seconds(&app.pid().to_string()), test: watch::cpu_seconds("self") };
    stop_monitor.store(true, Ordering::Relaxed);
    let memory = monitor.await.expect("monitor");

    let findings = &ctx.findings;
    if !ctx.aborted()
        && let Err(e) = tokio::spawn(normal_flow(app.base_url.clone())).await
    {
        findings.fail(watch::NORMAL_FLOW, "failed".into(), || panic_message(e));
    }
    for panic in app.panics() {
        // One cause per place in the code.
        let place = panic.split(" panicked at ").nth(1).and_then(|p| p.split_whitespace().next()).unwrap_or("panic");
        findings.fail(watch::PANICKED, place.to_string(), || panic.clone());
    }
    if memory.peak_rss_kb > RSS_BOUND_KB {
        findings.fail(watch::RSS, format!("peak {} MB", memory.peak_rss_kb / 1024), || {
            format!("first {} MB, last {} MB", memory.first_rss_kb / 1024, memory.last_rss_kb / 1024)
        });
    }

    print_report(&ctx, &Run { seed, scale, store, fuzzing_time, took, cpu, memory });
    if !findings.failed_checks().is_empty() {
        // What the server said about a 500 is in its error lines.
        for line in app.log_lines().iter().filter(|l| l.contains("ERROR")).take(20) {
            println!("server: {line}");
        }
    }
    assert!(fuzzer_panics.is_empty(), "the fuzz test itself failed: {fuzzer_panics:#?}");
    let failed = findings.failed_checks();
    assert!(
        failed.is_empty(),
        "fuzzing with FUZZ_SEED={seed:#x} FUZZ_SCALE={scale} on {store} failed {} checks (details printed above):\n  - {}",
        failed.len(),
        failed.join("\n  - ")
    );
}

#[derive(Clone, Copy)]
enum Fuzzer {
    Rest,
    WebSocket,
    Polling,
}

/// Runs one fuzzer task and says how long it took.
async fn timed(kind: Fuzzer, fuzz: impl std::future::Future<Output = ()>) -> (Fuzzer, Duration) {
    let start = Instant::now();
    fuzz.await;
    (kind, start.elapsed())
}

/// CPU time used while fuzzing: the test's own generators and clients are debug builds too.
struct Cpu {
    server: f64,
    test: f64,
}

/// How the run went, for the report.
struct Run<'a> {
    seed: u64,
    scale: f64,
    store: &'a str,
    fuzzing_time: Duration,
    /// Longest task of each fuzzer, by `Fuzzer`.
    took: [Duration; 3],
    cpu: Cpu,
    memory: MemoryReport,
}

fn parse_seed(s: &str) -> u64 {
    let s = s.trim();
    let parsed = match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    parsed.unwrap_or_else(|_| panic!("FUZZ_SEED must be a decimal or 0x-hex number, got {s:?}"))
}

/// `worker`'s part of `total` split over `workers`.
fn share(total: u64, workers: u64, worker: u64) -> u64 {
    total / workers + u64::from(worker < total % workers)
}

fn panic_message(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(p) => p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into()),
        Err(e) => e.to_string(),
    }
}

/// Every path of the API document the server serves (generated from the router itself) must
/// be in the fuzzer's list.
async fn assert_every_route_is_fuzzed(app: &TestApp) {
    let (status, document) = common::send(app.http.get(app.url("/api/openapi.json"))).await;
    assert_eq!(status, 200, "the API document: {document}");
    let served: BTreeSet<String> = document["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .map(|p| p.strip_prefix("/api").unwrap_or(p).to_string())
        .collect();
    let fuzzed: BTreeSet<String> = rest::ROUTES.iter().map(|r| r.path.to_string()).collect();
    let missing: Vec<_> = served.difference(&fuzzed).collect();
    assert!(!served.is_empty() && missing.is_empty(), "routes of the API document the fuzzer does not know: {missing:?}");
}

/// Creates what the inputs refer to: conversations (kept and disposable), messages, threads,
/// and a conversation of another company.
async fn seed_data(app: &TestApp) -> Known {
    let company = "acme";
    let alice = common::user("alice", company);
    let mut conversations = Vec::new();
    for _ in 0..KEPT_CONVERSATIONS + DISPOSABLE_CONVERSATIONS {
        conversations.push(app.conversation(&alice).await);
    }
    let disposable = conversations.split_off(KEPT_CONVERSATIONS);
    let mut messages = Vec::new();
    let mut threads = Vec::new();
    for conversation in conversations.iter().take(8) {
        for n in 0..4 {
            let message = app.message(&alice, conversation, &format!("seed message {n}")).await;
            messages.push(message["id"].as_str().expect("message id").to_string());
        }
        let (status, body) = app.post(&alice, &format!("/api/conversations/{conversation}/threads"), json!({ "title": "Seed" })).await;
        assert_eq!(status, 201, "{body}");
        threads.push(body["thread"]["id"].as_str().expect("thread id").to_string());
    }
    let foreign = app.conversation(&common::user("mallory", "globex")).await;
    let tokens = Known::tokens(company, &conversations[0]);
    Known { company, conversations, disposable, foreign, messages, threads, tokens }
}

/// Two users in one conversation: one sends, the other receives.
async fn normal_flow(base_url: String) {
    use common::socket::SocketClient;
    let http = reqwest::Client::new();
    let alice = common::user("alice", "acme");
    let (status, body) = common::send(
        http.post(format!("{base_url}/api/conversations")).bearer_auth(&alice).json(&json!({ "agent_id": "agent-1" })),
    )
    .await;
    assert_eq!(status, 201, "create a conversation: {body}");
    let id = body["conversation"]["id"].as_str().expect("conversation id").to_string();
    let mut sender = SocketClient::connect(&base_url, &alice).await.expect("alice connects");
    let mut receiver = SocketClient::connect(&base_url, &common::user("bob", "acme")).await.expect("bob connects");
    sender.join(&id).await;
    receiver.join(&id).await;
    let ack = sender.emit_ack("message:send", json!({ "conversationId": id, "content": "after the fuzzing" })).await;
    assert_eq!(ack.data["ok"], true, "message:send refused: {}", ack.data);
    receiver.wait_for("message:new", |d| d["conversationId"] == id && d["message"]["content"] == "after the fuzzing").await;
}

fn print_report(ctx: &Ctx, run: &Run) {
    let Run { seed, scale, store, fuzzing_time, took, cpu, memory } = run;
    let c = &ctx.counts;
    let n = Counts::get;
    let mb = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let rest = n(&c.rest_requests) + n(&c.rest_raw_requests);
    let frames = n(&c.ws_frames_sent);
    let polling = n(&c.polling_requests);
    println!(
        "fuzz: FUZZ_SEED={seed:#x} FUZZ_SCALE={scale} store={store}: fuzzing took {:.1} s (REST {:.1} s, WebSocket {:.1} s, \
         long-polling {:.1} s; CPU: server {:.1} s, test {:.1} s)",
        fuzzing_time.as_secs_f64(),
        took[Fuzzer::Rest as usize].as_secs_f64(),
        took[Fuzzer::WebSocket as usize].as_secs_f64(),
        took[Fuzzer::Polling as usize].as_secs_f64(),
        cpu.server,
        cpu.test
    );
    println!(
        "  REST: {rest} requests ({} raw HTTP), {} retried after a closed connection, {:.1} MB of bodies",
        n(&c.rest_raw_requests),
        n(&c.rest_retries),
        mb(n(&c.rest_bytes_sent))
    );
    println!(
        "  WebSocket: {} sessions ({} upgrades refused, {} closed by the server), {frames} frames sent ({:.1} MB), \
         {} steps not sent after a close, {} frames received",
        n(&c.ws_sessions),
        n(&c.ws_handshakes_refused),
        n(&c.ws_closed_by_server),
        mb(n(&c.ws_bytes_sent)),
        n(&c.ws_frames_not_sent),
        n(&c.ws_frames_received),
    );
    println!(
        "  Socket.IO CONNECTs: {} sent, {} accepted; max payload probes: {} sent, {} refused",
        n(&c.ws_connects_sent),
        n(&c.ws_connects_accepted),
        n(&c.ws_oversized_probes),
        n(&c.ws_oversized_refused),
    );
    println!(
        "  long-polling: {} sessions, {polling} requests, {} upgrades to WebSocket",
        n(&c.polling_sessions),
        n(&c.upgrades_attempted)
    );
    println!("  total: {} frames + requests", rest + frames + polling);
    println!(
        "  server: {} health checks; RSS first {:.0} MB, peak {:.0} MB, last {:.0} MB (bound {} MB), {} samples",
        n(&c.health_checks),
        memory.first_rss_kb as f64 / 1024.0,
        memory.peak_rss_kb as f64 / 1024.0,
        memory.last_rss_kb as f64 / 1024.0,
        RSS_BOUND_KB / 1024,
        memory.samples
    );
    println!("  answers by route and status:\n{}", ctx.findings.status_table());
    let failures = ctx.findings.failure_report();
    if failures.is_empty() {
        println!("  every check passed");
    } else {
        println!("{failures}");
    }
}
