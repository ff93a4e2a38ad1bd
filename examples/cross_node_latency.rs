//! Cross-node delivery latency: starts two `chat-service` nodes on one Redis and one database,
//! puts a receiving client on node A, and measures, one message at a time, from the moment a
//! client on node B emits `message:send` to the moment the client on node A receives its
//! `message:new`. The same measurement with the sender on node A gives the single-node
//! baseline; the difference is what the trip through Redis costs.
//!
//! ```text
//! cargo build --release
//! cargo run --release --example cross_node_latency -- --redis redis://127.0.0.1:6379 \
//!     [--messages 2000] [--bin target/release/chat-service]
//! ```

#[path = "../tests/common/socket.rs"]
mod socket;

#[path = "support/nodes.rs"]
mod nodes;

use std::time::{Duration, Instant};

use nodes::{server_binary, start_node};
use serde_json::{json, Value};
use socket::SocketClient;

const WARMUP: usize = 100;

fn token(user: &str) -> String {
    nodes::token(user, "latency")
}

/// Sends `count` messages from `sender`, one at a time, and returns each delivery latency to
/// `receiver`.
async fn measure(sender: &SocketClient, receiver: &mut SocketClient, conversation: &str, tag: &str, count: usize) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(count);
    for i in 0..count {
        let content = format!("{tag}-{i}");
        let started = Instant::now();
        sender.emit("message:send", json!({ "conversationId": conversation, "content": content }));
        receiver.wait_for("message:new", |e: &Value| e["message"]["content"] == content.as_str()).await;
        latencies.push(started.elapsed());
    }
    latencies
}

fn report(label: &str, mut latencies: Vec<Duration>) {
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1];
    println!(
        "{label}: n={} median={:.2} ms p99={:.2} ms max={:.2} ms",
        latencies.len(),
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        latencies.last().unwrap().as_secs_f64() * 1e3
    );
}

#[tokio::main]
async fn main() {
    let mut redis = std::env::var("REDIS_URL").unwrap_or_default();
    let mut messages = 2000usize;
    let mut bin = "target/release/chat-service".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--redis" => redis = value(),
            "--messages" => messages = value().parse().expect("--messages"),
            "--bin" => bin = value(),
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(!redis.is_empty(), "--redis (or REDIS_URL) is required");
    let bin = server_binary(&bin);

    let data = tempfile::tempdir().unwrap();
    let prefix = format!("latency-{}", std::process::id());
    let a = start_node(&bin, data.path(), &redis, &prefix, &[]);
    let b = start_node(&bin, data.path(), &redis, &prefix, &[]);

    let reader = token("reader");
    let res: Value = reqwest::Client::new()
        .post(format!("{}/api/conversations", a.url))
        .bearer_auth(&reader)
        .json(&json!({ "agent_id": "agent", "title": "latency" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let conversation = res["conversation"]["id"].as_str().expect("conversation created").to_string();

    let mut on_a = SocketClient::connect(&a.url, &reader).await.unwrap();
    on_a.join(&conversation).await;
    let mut sender_on_b = SocketClient::connect(&b.url, &token("writer-b")).await.unwrap();
    sender_on_b.join(&conversation).await;
    let mut sender_on_a = SocketClient::connect(&a.url, &token("writer-a")).await.unwrap();
    sender_on_a.join(&conversation).await;

    measure(&sender_on_b, &mut on_a, &conversation, "warmup-b", WARMUP).await;
    measure(&sender_on_a, &mut on_a, &conversation, "warmup-a", WARMUP).await;
    // Interleaved runs so both see the same machine load.
    let (mut cross, mut local) = (Vec::new(), Vec::new());
    for round in 0..10 {
        cross.extend(measure(&sender_on_b, &mut on_a, &conversation, &format!("b{round}"), messages / 10).await);
        local.extend(measure(&sender_on_a, &mut on_a, &conversation, &format!("a{round}"), messages / 10).await);
        // The senders receive their own broadcasts too; drop them as we go.
        sender_on_a.clear_received();
        sender_on_b.clear_received();
    }
    report("cross-node (send on B, receive on A)", cross);
    report("same node  (send on A, receive on A)", local);
    drop((on_a, sender_on_a, sender_on_b));
    drop((a, b));
}
