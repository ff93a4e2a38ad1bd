//! Measures what an agent costs a user's `message:send`: the time from sending the event to
//! its acknowledgement, once with no agent service configured and once with an agent service
//! that takes `--agent-delay-ms` to answer every call. The service runs in this process (the
//! same assembly as the binary, SQLite in a temporary directory); the agent service is a
//! local axum server that waits and then answers as the contract says.
//!
//! ```text
//! cargo run --release --example agent_latency -- [--messages 300] [--agent-delay-ms 2000] [--pause-ms 0]
//! ```
//! With `--audit-rounds N` it measures the audit trail instead: no agent, `AUDIT=on` against
//! `AUDIT=off`, N runs of each, alternating.
//! Messages are sent one at a time, each after the previous acknowledgement (and `--pause-ms`
//! later), so with the slow agent the agent work of earlier messages is still pending while
//! later ones are measured.

#[path = "../tests/common/socket.rs"]
mod socket;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::Uri;
use axum::{Json, Router};
use chat_service::app;
use chat_service::auth::Authenticator;
use chat_service::config::Config;
use serde_json::{json, Value};
use socket::SocketClient;

const SECRET: &str = "agent-latency-secret-0123456789";
const WARM_UP: usize = 20;

struct Args {
    messages: usize,
    agent_delay: Duration,
    /// Pause between an acknowledgement and the next send, so the background work a message
    /// sets off can finish before the next one is measured.
    pause: Duration,
    /// Compare `AUDIT=on` with `AUDIT=off` over this many runs each instead of the agent.
    audit_rounds: usize,
}

fn parse_args() -> Args {
    let mut a = Args { messages: 300, agent_delay: Duration::from_millis(2000), pause: Duration::ZERO, audit_rounds: 0 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--messages" => a.messages = val().parse().expect("--messages"),
            "--agent-delay-ms" => a.agent_delay = Duration::from_millis(val().parse().expect("--agent-delay-ms")),
            "--pause-ms" => a.pause = Duration::from_millis(val().parse().expect("--pause-ms")),
            "--audit-rounds" => a.audit_rounds = val().parse().expect("--audit-rounds"),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// An agent service that answers every call after `delay`; counts the reply requests received.
async fn slow_agent(delay: Duration, replies: Arc<AtomicUsize>) -> String {
    let router = Router::new().fallback(move |uri: Uri, Json(body): Json<Value>| {
        let replies = replies.clone();
        async move {
            if uri.path() == "/api/responses/generate" {
                replies.fetch_add(1, Ordering::Relaxed);
            }
            tokio::time::sleep(delay).await;
            Json(match uri.path() {
                "/api/responses/generate" => {
                    json!({ "response": format!("Echo: {}", body["message"]), "metadata": { "model": "slow", "tokensUsed": 1 } })
                }
                "/api/responses/summarize" => json!({ "summary": "so far" }),
                "/api/responses/detect-intent" => json!({ "intent": "question" }),
                "/api/responses/sentiment" => json!({ "sentiment": "neutral" }),
                _ => json!({}),
            })
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind agent");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, router).await.expect("agent serves") });
    url
}

/// Starts the chat service on a free port; returns its base URL.
async fn start_service(data_dir: &std::path::Path, agent_url: Option<&str>, audit: bool) -> String {
    let mut env: HashMap<&str, String> = HashMap::from([
        ("HOST", "127.0.0.1".into()),
        ("PORT", "0".into()),
        ("DATA_DIR", data_dir.display().to_string()),
        ("JWT_SECRET", SECRET.into()),
        ("INTERNAL_SERVICE_TOKEN", "agent-latency-internal".into()),
        ("SOCKET_MESSAGE_LIMIT", "1000000".into()),
        ("AUDIT", if audit { "on" } else { "off" }.into()),
    ]);
    if let Some(url) = agent_url {
        env.insert("AGENT_SERVICE_URL", url.into());
    }
    let config = Config::from_lookup(|k| env.get(k).cloned()).expect("config");
    let built = app::build(&config, Default::default()).await.expect("build");
    let listener = tokio::net::TcpListener::bind((config.host, 0)).await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(app::serve(built, listener, std::future::pending()));
    url
}

/// Send → acknowledgement times of `n` sequential `message:send`s, after a warm-up.
async fn measure(base_url: &str, n: usize, pause: Duration) -> Vec<Duration> {
    let token = Authenticator::new(SECRET, false, None).issue_user_token("bench-user", "bench-company", 3600);
    let res = reqwest::Client::new()
        .post(format!("{base_url}/api/conversations"))
        .bearer_auth(&token)
        .json(&json!({ "agent_id": "agent-1" }))
        .send()
        .await
        .expect("create conversation");
    let body: Value = res.json().await.expect("conversation");
    let conversation = body["conversation"]["id"].as_str().expect("conversation id").to_string();
    let mut client = SocketClient::connect(base_url, &token).await.expect("socket connects");
    client.join(&conversation).await;
    let mut times = Vec::with_capacity(n);
    for i in 0..WARM_UP + n {
        let payload = json!({ "conversationId": conversation, "content": format!("question {i}") });
        let started = Instant::now();
        let ack = client.emit_ack("message:send", payload).await.data;
        let elapsed = started.elapsed();
        assert_eq!(ack["ok"], true, "{ack}");
        if i >= WARM_UP {
            times.push(elapsed);
        }
        client.clear_received();
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    times
}

fn report(label: &str, times: &mut [Duration]) -> (f64, f64) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let pct = |p: f64| ms(times[((times.len() as f64 * p).ceil() as usize).clamp(1, times.len()) - 1]);
    let mean = times.iter().map(|d| ms(*d)).sum::<f64>() / times.len() as f64;
    println!(
        "{label:<28} n={:<5} mean {mean:7.3} ms  p50 {:7.3} ms  p99 {:7.3} ms  max {:7.3} ms",
        times.len(),
        pct(0.50),
        pct(0.99),
        ms(times[times.len() - 1])
    );
    (pct(0.50), pct(0.99))
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let replies = Arc::new(AtomicUsize::new(0));
    let agent_url = slow_agent(args.agent_delay, replies.clone()).await;

    let without_dir = tempfile::tempdir().expect("temp dir");
    if args.audit_rounds > 0 {
        return compare_audit(&args).await;
    }
    let without = start_service(without_dir.path(), None, true).await;
    let mut base = measure(&without, args.messages, args.pause).await;

    let with_dir = tempfile::tempdir().expect("temp dir");
    let with = start_service(with_dir.path(), Some(&agent_url), true).await;
    let mut slow = measure(&with, args.messages, args.pause).await;

    println!(
        "message:send → ack, {} messages one after another, {} ms apart ({} warm-up not counted)",
        args.messages,
        args.pause.as_millis(),
        WARM_UP
    );
    let (p50_base, p99_base) = report("no agent", &mut base);
    let (p50_slow, p99_slow) =
        report(&format!("agent answering in {} ms", args.agent_delay.as_millis()), &mut slow);
    println!("added by the agent: p50 {:+.3} ms, p99 {:+.3} ms", p50_slow - p50_base, p99_slow - p99_base);
    println!(
        "reply requests the agent service received while measuring: {} (the agent work ran beside the sends)",
        replies.load(Ordering::Relaxed)
    );
}

/// `message:send` → ack with the audit trail on and off, `audit_rounds` fresh services each,
/// alternating, so drift of the machine's load affects both alike.
async fn compare_audit(args: &Args) {
    println!("message:send → ack, {} messages one after another per run, AUDIT=on vs off, alternating", args.messages);
    let (mut on_all, mut off_all) = (Vec::new(), Vec::new());
    for round in 0..args.audit_rounds {
        for audit in if round % 2 == 0 { [true, false] } else { [false, true] } {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = start_service(dir.path(), None, audit).await;
            let mut times = measure(&url, args.messages, args.pause).await;
            report(&format!("run {} AUDIT={}", round + 1, if audit { "on" } else { "off" }), &mut times);
            if audit { on_all.extend(times) } else { off_all.extend(times) }
        }
    }
    let (p50_on, p99_on) = report("all runs AUDIT=on", &mut on_all);
    let (p50_off, p99_off) = report("all runs AUDIT=off", &mut off_all);
    println!("added by the audit trail: p50 {:+.3} ms, p99 {:+.3} ms", p50_on - p50_off, p99_on - p99_off);
}
