//! What the fuzz test watches and judges: findings grouped by check and distinct cause, status
//! counts per route, throughput counters, what every fuzzing task is sending right now (to
//! name the input when the server dies), and the monitor that keeps checking the process is
//! alive, its memory, and `GET /health` while the fuzzers run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::Ctx;

/// The checks the test fails on, in the order the report lists them.
pub const EXITED: &str = "the server process kept running";
pub const PANICKED: &str = "the server wrote no panic to stderr";
pub const HEALTH: &str = "GET /health answered 200 throughout";
pub const SERVER_ERROR: &str = "no answer had a status of 500 or more other than 503";
pub const NOT_JSON: &str = "every /api answer of 400 or more had a JSON body with an `error` string";
pub const UNANSWERED: &str = "every request and CONNECT was answered and every frame read (bounded waits)";
pub const CONNECT_REFUSED: &str = "socket CONNECTs with a valid token were accepted";
pub const OVERSIZED: &str = "frames over the 1 MB max payload were refused";
pub const RSS: &str = "the server's RSS stayed under the bound";
pub const NORMAL_FLOW: &str = "a normal join / send / receive worked after fuzzing";

pub const CHECKS: [&str; 10] =
    [EXITED, PANICKED, HEALTH, SERVER_ERROR, NOT_JSON, UNANSWERED, CONNECT_REFUSED, OVERSIZED, RSS, NORMAL_FLOW];

/// Examples kept per distinct cause; the count covers all of them.
const EXAMPLES_PER_CAUSE: usize = 3;
/// Distinct causes kept per check before the rest are only counted.
const CAUSES_PER_CHECK: usize = 40;

#[derive(Default)]
struct Cause {
    count: u64,
    /// The first few, in the order they happened.
    examples: Vec<String>,
    /// The shortest of all, when it is not among the first: the easiest to reproduce.
    shortest: Option<String>,
}

#[derive(Default)]
pub struct Findings {
    failed: Mutex<BTreeMap<&'static str, BTreeMap<String, Cause>>>,
    statuses: Mutex<BTreeMap<String, BTreeMap<u16, u64>>>,
}

impl Findings {
    /// Records one failure of `check`; `cause` groups failures that are one defect (for
    /// example `GET /api/conversations → 500`), `example` says exactly what was sent and
    /// what came back. Every example is built, to keep the shortest.
    pub fn fail(&self, check: &'static str, cause: String, example: impl FnOnce() -> String) {
        let mut failed = self.failed.lock().unwrap();
        let causes = failed.entry(check).or_default();
        if !causes.contains_key(&cause) && causes.len() >= CAUSES_PER_CHECK {
            causes.entry("(further causes not kept)".into()).or_default().count += 1;
            return;
        }
        let entry = causes.entry(cause).or_default();
        entry.count += 1;
        let example = example();
        if entry.examples.len() < EXAMPLES_PER_CAUSE {
            entry.examples.push(example);
        } else if entry.examples.iter().chain(&entry.shortest).all(|e| e.len() > example.len()) {
            entry.shortest = Some(example);
        }
    }

    /// Counts one HTTP answer of `route`.
    pub fn status(&self, route: &str, status: u16) {
        let mut statuses = self.statuses.lock().unwrap();
        if let Some(by_status) = statuses.get_mut(route) {
            *by_status.entry(status).or_default() += 1;
        } else {
            statuses.entry(route.to_string()).or_default().insert(status, 1);
        }
    }

    pub fn failed_checks(&self) -> Vec<&'static str> {
        let failed = self.failed.lock().unwrap();
        CHECKS.into_iter().filter(|c| failed.contains_key(c)).collect()
    }

    /// Status counts per route, one line each.
    pub fn status_table(&self) -> String {
        let mut out = String::new();
        for (route, by_status) in self.statuses.lock().unwrap().iter() {
            let counts: Vec<String> = by_status.iter().map(|(s, n)| format!("{s}×{n}")).collect();
            let _ = writeln!(out, "  {route:<58} {}", counts.join(" "));
        }
        out
    }

    /// Every failed check with its distinct causes and examples.
    pub fn failure_report(&self) -> String {
        let failed = self.failed.lock().unwrap();
        let mut out = String::new();
        for check in CHECKS {
            let Some(causes) = failed.get(check) else { continue };
            let total: u64 = causes.values().map(|c| c.count).sum();
            let _ = writeln!(out, "FAILED: {check} ({total} failures, {} distinct)", causes.len());
            for (cause, c) in causes {
                let _ = writeln!(out, "  - {cause}  [{}×]", c.count);
                for example in &c.examples {
                    let _ = writeln!(out, "      e.g. {example}");
                }
                if let Some(shortest) = &c.shortest {
                    let _ = writeln!(out, "      shortest: {shortest}");
                }
            }
        }
        out
    }
}

/// Throughput of the run, printed at the end.
#[derive(Default)]
pub struct Counts {
    pub rest_requests: AtomicU64,
    pub rest_retries: AtomicU64,
    pub rest_raw_requests: AtomicU64,
    pub rest_bytes_sent: AtomicU64,
    pub ws_sessions: AtomicU64,
    pub ws_handshakes_refused: AtomicU64,
    pub ws_connects_sent: AtomicU64,
    pub ws_connects_accepted: AtomicU64,
    pub ws_frames_sent: AtomicU64,
    pub ws_bytes_sent: AtomicU64,
    pub ws_frames_not_sent: AtomicU64,
    pub ws_closed_by_server: AtomicU64,
    pub ws_frames_received: AtomicU64,
    pub ws_oversized_probes: AtomicU64,
    pub ws_oversized_refused: AtomicU64,
    pub polling_sessions: AtomicU64,
    pub polling_requests: AtomicU64,
    pub upgrades_attempted: AtomicU64,
    pub health_checks: AtomicU64,
}

impl Counts {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// What each fuzzing task is sending at this moment: if the server dies, the report names the
/// inputs that were in flight.
pub struct Activity {
    slots: Vec<Mutex<String>>,
}

/// How much of an input the activity and the report quote.
pub const PREVIEW_CHARS: usize = 300;

impl Activity {
    pub fn new(tasks: usize) -> Self {
        Activity { slots: (0..tasks).map(|_| Mutex::new(String::new())).collect() }
    }

    pub fn set(&self, task: usize, what: String) {
        *self.slots[task].lock().unwrap() = what;
    }

    pub fn current(&self, task: usize) -> String {
        self.slots[task].lock().unwrap().clone()
    }

    /// Each task's current input, by task number.
    pub fn in_flight(&self) -> Vec<(usize, String)> {
        self.slots.iter().map(|s| s.lock().unwrap().clone()).enumerate().filter(|(_, s)| !s.is_empty()).collect()
    }
}

/// The first `PREVIEW_CHARS` characters of `text`, with its length when cut.
pub fn preview(text: &str) -> String {
    let mut chars = text.char_indices();
    match chars.nth(PREVIEW_CHARS) {
        None => format!("{text:?}"),
        Some((cut, _)) => format!("{:?}… ({} bytes)", &text[..cut], text.len()),
    }
}

pub fn preview_bytes(bytes: &[u8]) -> String {
    preview(&String::from_utf8_lossy(&bytes[..bytes.len().min(PREVIEW_CHARS * 4)]))
        + &if bytes.len() > PREVIEW_CHARS * 4 { format!(" ({} bytes)", bytes.len()) } else { String::new() }
}

/// An error and its causes, one after the other (a client error's own text rarely says what
/// happened on the wire).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = preview(&e.to_string());
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// The server process as /proc sees it.
pub struct ProcessState {
    pub alive: bool,
    pub rss_kb: u64,
}

pub fn process_state(pid: u32) -> ProcessState {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return ProcessState { alive: false, rss_kb: 0 };
    };
    let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).map(str::trim).unwrap_or("");
    // An exited child stays a zombie until it is reaped: it is not running.
    let alive = !field("State:").starts_with('Z') && !field("State:").starts_with('X');
    let rss_kb = field("VmRSS:").trim_end_matches("kB").trim().parse().unwrap_or(0);
    ProcessState { alive, rss_kb }
}

/// User and system CPU time of process `pid` (or `self`) so far.
pub fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may contain spaces.
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: u64 = fields.get(11..13).map_or(0, |f| f.iter().filter_map(|t| t.parse::<u64>().ok()).sum());
    // Clock ticks are 1/100 s on Linux.
    ticks as f64 / 100.0
}

/// What the monitor saw.
#[derive(Debug, Default, Clone)]
pub struct MemoryReport {
    pub first_rss_kb: u64,
    pub peak_rss_kb: u64,
    pub last_rss_kb: u64,
    pub samples: u64,
}

/// How often the monitor looks at the process and asks for `/health`.
const MONITOR_PERIOD: Duration = Duration::from_millis(250);
/// Longest wait for one `/health` answer.
pub const HEALTH_DEADLINE: Duration = Duration::from_secs(30);

/// Until `stop` is set: checks the process is alive, samples its RSS and asks `/health`,
/// each every `MONITOR_PERIOD`. Sets `ctx.abort` when the process is gone, so the fuzzers stop.
pub async fn monitor(ctx: &Ctx, health_url: String, stop: &AtomicBool, started: Instant) -> MemoryReport {
    let client = reqwest::Client::builder().timeout(HEALTH_DEADLINE).build().unwrap();
    let mut report = MemoryReport::default();
    let mut tick = tokio::time::interval(MONITOR_PERIOD);
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let state = process_state(ctx.pid);
        if !state.alive {
            exited(ctx, started);
            break;
        }
        report.samples += 1;
        if report.first_rss_kb == 0 {
            report.first_rss_kb = state.rss_kb;
        }
        report.peak_rss_kb = report.peak_rss_kb.max(state.rss_kb);
        report.last_rss_kb = state.rss_kb;

        Counts::add(&ctx.counts.health_checks, 1);
        let at = started.elapsed().as_secs_f32();
        match client.get(&health_url).send().await {
            Ok(res) if res.status() == 200 => {
                let _ = res.bytes().await;
            }
            Ok(res) => {
                let status = res.status().as_u16();
                let body = res.text().await.unwrap_or_default();
                ctx.findings.fail(HEALTH, format!("status {status}"), || format!("at {at:.1} s: {}", preview(&body)));
            }
            Err(e) => {
                if !process_state(ctx.pid).alive {
                    exited(ctx, started);
                    break;
                }
                let cause = if e.is_timeout() { format!("no answer within {HEALTH_DEADLINE:?}") } else { "connection failed".into() };
                ctx.findings.fail(HEALTH, cause, || format!("at {at:.1} s: {e}"));
            }
        }
    }
    report
}

fn exited(ctx: &Ctx, started: Instant) {
    ctx.abort.store(true, Ordering::Relaxed);
    let at = started.elapsed().as_secs_f32();
    for (task, input) in ctx.activity.in_flight() {
        ctx.findings.fail(EXITED, format!("exited at {at:.1} s while task {task} was sending"), || input);
    }
    ctx.findings.fail(EXITED, format!("exited at {at:.1} s"), || "what each task was sending then is listed beside this".into());
}
