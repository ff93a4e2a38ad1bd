//! Delivery audit across a node loss: starts two `chat-service` nodes on one Redis and one
//! database, spreads members and senders of one conversation over them, kills node A
//! (SIGKILL) halfway through, and reports, per member, acknowledged messages it never
//! received. Members that lose their node reconnect to the other one and recover their
//! session (connection state recovery), or, when it is not recovered, catch up with
//! `conversation:join` and `lastMessageId`. The same audit runs in `tests/cluster.rs`.
//!
//! ```text
//! cargo build --release
//! cargo run --release --example delivery_audit -- --redis redis://127.0.0.1:6379 \
//!     [--members 200] [--senders 20] [--rate 20] [--duration 20] [--no-kill] [--bin target/release/chat-service]
//! ```

#[path = "../tests/common/socket.rs"]
mod socket;
#[path = "../tests/common/audit.rs"]
mod audit;
#[path = "support/nodes.rs"]
mod nodes;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use nodes::{server_binary, start_node, token};
use serde_json::{json, Value};

const COMPANY: &str = "audit";

#[tokio::main]
async fn main() {
    let mut redis = std::env::var("REDIS_URL").unwrap_or_default();
    let mut bin = "target/release/chat-service".to_string();
    let (mut members, mut senders, mut rate, mut duration, mut kill) = (200, 20, 20, 20, true);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--redis" => redis = value(),
            "--bin" => bin = value(),
            "--members" => members = value().parse().expect("--members"),
            "--senders" => senders = value().parse().expect("--senders"),
            "--rate" => rate = value().parse().expect("--rate"),
            "--duration" => duration = value().parse().expect("--duration"),
            "--no-kill" => kill = false,
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(!redis.is_empty(), "--redis (or REDIS_URL) is required");
    let bin = server_binary(&bin);
    let data = tempfile::tempdir().unwrap();
    let prefix = format!("audit-{}", std::process::id());
    let a = start_node(&bin, data.path(), &redis, &prefix, &[("MAX_CONNECTIONS_PER_IP", "0")]);
    let b = start_node(&bin, data.path(), &redis, &prefix, &[("MAX_CONNECTIONS_PER_IP", "0")]);

    let owner = token("owner", COMPANY);
    let http = reqwest::Client::new();
    let post = |path: String, body: Value| http.post(format!("{}{path}", b.url)).bearer_auth(&owner).json(&body).send();
    let created: Value = post("/api/conversations".into(), json!({ "agent_id": "agent", "title": "audit" })).await.unwrap().json().await.unwrap();
    let conversation = created["conversation"]["id"].as_str().expect("conversation created").to_string();
    let first: Value = post(format!("/api/conversations/{conversation}/messages"), json!({ "content": "audit start" })).await.unwrap().json().await.unwrap();

    let plan = audit::AuditPlan {
        nodes: vec![a.url.clone(), b.url.clone()],
        conversation,
        token: Arc::new(|i, sender| token(&format!("{}-{i}", if sender { "sender" } else { "member" }), COMPANY)),
        first_message: first["message"]["id"].as_str().expect("first message").to_string(),
        members,
        senders,
        rate,
        duration: Duration::from_secs(duration),
    };
    let a = Arc::new(Mutex::new(a));
    let doomed = a.clone();
    let report = audit::run(plan, move || {
        if kill {
            println!("killing node A");
            doomed.lock().unwrap().kill();
        }
    })
    .await;
    println!(
        "acknowledged {} (unacknowledged {}), {} members, reconnects {} (recovered {}), missing {} ({} of reconnected members), duplicates {}",
        report.acknowledged,
        report.unacknowledged,
        report.members,
        report.reconnects,
        report.recovered,
        report.missing,
        report.missing_after_reconnect,
        report.duplicates
    );
    drop((a, b));
    if report.missing > 0 {
        std::process::exit(1);
    }
}
