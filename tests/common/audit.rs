//! A delivery audit: members of one conversation spread over several nodes, senders sending at
//! a fixed rate, and per member the acknowledged message ids set against the ids it received.
//! A member whose connection drops reconnects to the next node that answers with its session id
//! and last offset (connection state recovery, as socket.io-client 4.6+ does); only when the
//! session is not recovered does it catch up with `conversation:join` and `lastMessageId`, as
//! a client without recovery does. Used by the node-loss test and by
//! `examples/delivery_audit.rs`.
#![allow(dead_code)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

use super::socket::SocketClient;

pub struct AuditPlan {
    /// Base URLs of the nodes; members and senders are spread over them in turn.
    pub nodes: Vec<String>,
    pub conversation: String,
    /// Token of member `i` (and of sender `i`, with `sender` set).
    pub token: Arc<dyn Fn(usize, bool) -> String + Send + Sync>,
    /// The first message of the conversation: every member has it, so a member that received
    /// nothing since can still name a message to catch up from.
    pub first_message: String,
    pub members: usize,
    pub senders: usize,
    /// Messages per second of each sender.
    pub rate: u32,
    pub duration: Duration,
}

#[derive(Debug, Default)]
pub struct AuditReport {
    pub acknowledged: usize,
    /// Sends refused (busy, unavailable) or cut off by a connection that went away.
    pub unacknowledged: usize,
    pub members: usize,
    /// Acknowledged messages some member never received, summed over members.
    pub missing: usize,
    /// Members' reconnections to another node.
    pub reconnects: usize,
    /// Of those, the ones whose session was recovered (no catch-up needed).
    pub recovered: usize,
    /// Of `missing`, those of members that reconnected.
    pub missing_after_reconnect: usize,
    /// Messages a member received live or replayed more than once (a recovery replays other
    /// nodes' events of the last few seconds before its offset; see the README).
    pub duplicates: usize,
}

/// Catching up starts this many received messages before the newest one: messages stored on
/// different nodes in the same few milliseconds may be listed in another order than they were
/// received in, and an anchor a little further back (with duplicates dropped) covers that.
const CATCH_UP_MARGIN: usize = 50;

/// How long members may take, after the last send, to have received everything.
const SETTLE: Duration = Duration::from_secs(20);

/// Runs the plan; `during` runs halfway through (for instance, a node is killed).
pub async fn run(plan: AuditPlan, during: impl FnOnce() + Send + 'static) -> AuditReport {
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let sending_done = Arc::new(tokio::sync::Notify::new());
    let plan = Arc::new(plan);

    let mut members = Vec::new();
    for i in 0..plan.members {
        let mut member = Member::join(&plan, i).await;
        let (plan, acknowledged, sending_done) = (plan.clone(), acknowledged.clone(), sending_done.clone());
        members.push(tokio::spawn(async move {
            member.listen(&plan, &acknowledged, &sending_done).await;
            member
        }));
    }

    let mut senders = Vec::new();
    for i in 0..plan.senders {
        let (plan, acknowledged) = (plan.clone(), acknowledged.clone());
        senders.push(tokio::spawn(async move { send(&plan, i, &acknowledged).await }));
    }
    tokio::time::sleep(plan.duration / 2).await;
    during();
    let mut unacknowledged = 0;
    for sender in senders {
        unacknowledged += sender.await.expect("sender task");
    }
    sending_done.notify_waiters();

    let acked: Vec<String> = acknowledged.lock().unwrap().clone();
    let mut report = AuditReport { acknowledged: acked.len(), unacknowledged, members: plan.members, ..Default::default() };
    for member in members {
        let member = member.await.expect("member task");
        report.reconnects += member.reconnects;
        report.recovered += member.recovered;
        report.duplicates += member.duplicates;
        let missing = acked.iter().filter(|id| !member.seen.contains(*id)).count();
        report.missing += missing;
        if member.reconnects > 0 {
            report.missing_after_reconnect += missing;
        }
    }
    report
}

/// Sends at the plan's rate until its duration is over, moving to the next node when the
/// connection goes; returns how many sends were not acknowledged.
async fn send(plan: &AuditPlan, i: usize, acknowledged: &Mutex<Vec<String>>) -> usize {
    let token = (plan.token)(i, true);
    let mut node = i % plan.nodes.len();
    let mut client = connect_any(plan, &mut node, &token).await;
    let end = Instant::now() + plan.duration;
    let mut tick = tokio::time::interval(Duration::from_secs(1) / plan.rate.max(1));
    let (mut n, mut unacknowledged) = (0, 0);
    while Instant::now() < end {
        tick.tick().await;
        let payload = json!({ "conversationId": plan.conversation, "content": format!("audit {i}-{n}") });
        n += 1;
        match client.try_emit_ack("message:send", payload).await {
            Some(ack) if ack.data["ok"] == true => {
                acknowledged.lock().unwrap().push(ack.data["message"]["id"].as_str().unwrap().to_string());
            }
            Some(_) => unacknowledged += 1,
            None => {
                unacknowledged += 1;
                node += 1;
                client = connect_any(plan, &mut node, &token).await;
            }
        }
    }
    unacknowledged
}

/// Connects to `nodes[*node]` or, failing that, the next ones in turn.
async fn connect_any(plan: &AuditPlan, node: &mut usize, token: &str) -> SocketClient {
    let deadline = Instant::now() + SETTLE;
    loop {
        let url = &plan.nodes[*node % plan.nodes.len()];
        match SocketClient::connect(url, token).await {
            Ok(client) => return client,
            Err(e) if Instant::now() > deadline => panic!("no node answers; last error from {url}: {e}"),
            Err(_) => *node += 1,
        }
    }
}

struct Member {
    client: SocketClient,
    node: usize,
    token: String,
    /// Received message ids in arrival order, and the same as a set.
    received: Vec<String>,
    seen: HashSet<String>,
    reconnects: usize,
    recovered: usize,
    /// Messages received live (not caught up) a second time.
    duplicates: usize,
}

impl Member {
    async fn join(plan: &AuditPlan, i: usize) -> Member {
        let token = (plan.token)(i, false);
        let mut node = i % plan.nodes.len();
        let mut client = connect_any(plan, &mut node, &token).await;
        client.join(&plan.conversation).await;
        let first = plan.first_message.clone();
        Member { client, node, token, received: vec![first.clone()], seen: HashSet::from([first]), reconnects: 0, recovered: 0, duplicates: 0 }
    }

    fn take(&mut self, id: &str) {
        if self.seen.insert(id.to_string()) {
            self.received.push(id.to_string());
        }
    }

    /// Receives until sending is over and every acknowledged message is in, or `SETTLE` has
    /// passed since sending ended; reconnects and catches up whenever the connection goes.
    async fn listen(&mut self, plan: &AuditPlan, acknowledged: &Mutex<Vec<String>>, sending_done: &tokio::sync::Notify) {
        let done = sending_done.notified();
        tokio::pin!(done);
        let mut settle_by: Option<Instant> = None;
        loop {
            if let Some(by) = settle_by {
                let complete = acknowledged.lock().unwrap().iter().all(|id| self.seen.contains(id));
                if complete || Instant::now() > by {
                    return;
                }
            }
            tokio::select! {
                _ = &mut done, if settle_by.is_none() => settle_by = Some(Instant::now() + SETTLE),
                next = self.client.next_event(Duration::from_millis(200)) => match next {
                    Ok(Some(event)) if event.name == "message:new" => {
                        if let Some(id) = event.data["message"]["id"].as_str() {
                            if self.seen.contains(id) {
                                self.duplicates += 1;
                            }
                            self.take(id);
                        }
                    }
                    Ok(Some(_)) | Err(()) => {}
                    Ok(None) => self.reconnect(plan).await,
                },
            }
        }
    }

    /// Moves to the next node that answers, asking for its session back; when it is not
    /// recovered, asks for what came after a message received a little before the newest,
    /// page by page.
    async fn reconnect(&mut self, plan: &AuditPlan) {
        self.reconnects += 1;
        self.node += 1;
        let deadline = Instant::now() + SETTLE;
        let client = loop {
            let url = &plan.nodes[self.node % plan.nodes.len()];
            match SocketClient::reconnect(url, &self.token, &self.client).await {
                Ok(client) => break client,
                Err(e) if Instant::now() > deadline => panic!("no node answers; last error from {url}: {e}"),
                Err(_) => self.node += 1,
            }
        };
        let recovered = client.pid.is_some() && client.pid == self.client.pid && self.client.last_offset().is_some();
        self.client = client;
        if recovered {
            self.recovered += 1;
            return;
        }
        let mut anchor = self.received[self.received.len().saturating_sub(CATCH_UP_MARGIN + 1)].clone();
        loop {
            let payload = json!({ "conversationId": plan.conversation, "lastMessageId": anchor });
            let Some(ack) = self.client.try_emit_ack("conversation:join", payload).await else { return };
            assert_eq!(ack.data["ok"], true, "catch-up join refused: {}", ack.data);
            let missed: Vec<Value> = ack.data["missed"].as_array().cloned().unwrap_or_default();
            for m in &missed {
                self.take(m["id"].as_str().expect("message id"));
            }
            match missed.last() {
                Some(last) if ack.data["hasMore"] == true => anchor = last["id"].as_str().unwrap().to_string(),
                _ => return,
            }
        }
    }
}
