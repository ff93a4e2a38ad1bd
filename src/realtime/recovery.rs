//! Socket.IO connection state recovery (socket.io-client 4.6+): a client that reconnects within
//! `RECOVERY_WINDOW_MS` gets its rooms back and every recorded room event it missed, in order,
//! on whichever node it reconnects to.
//!
//! Two records make that possible. The event log: each recorded room broadcast is appended and
//! sent with its offset as last argument, which the client remembers. The sessions: a private
//! session id (`pid`, sent in the CONNECT answer) names the user, company and rooms of a socket,
//! kept current on every join and leave. With Redis both live there (`cluster::recovery`), so
//! any node can replay, also for a node killed without a word; without Redis, or while it does
//! not answer, they live in the process, bounded by the window and `LOCAL_LOG_CAP`.
//!
//! Every Redis call here is boxed: a Redis command's future is about 7 KB, and each socket's
//! connect and disconnect tasks await these methods. Inline, it made every such task 7-8 KB
//! with or without Redis; boxed, the task holds it only while the call is in flight.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::cluster::recovery::{stream_id_cmp, stream_id_ms, RecoveryRedis, StreamEvent};
use crate::cluster::Cluster;
use crate::service::events;

/// Most events the in-process log keeps, whatever the window: its memory bound.
const LOCAL_LOG_CAP: usize = 100_000;
/// How often the sessions of this node's sockets have their expiry pushed back in Redis, and
/// expired in-process sessions are dropped. A live session's record outlives its last push by
/// the window plus this, so it survives the node's death for at least the window.
const LEASE: Duration = Duration::from_secs(30);
/// How far before a client's offset the replay looks for events of other nodes (see
/// `Recovery::missed`).
const CROSS_NODE_MARGIN: Duration = Duration::from_secs(5);
/// Room events the log records: every state change a member must not miss. `presence:update`
/// is not among them (it describes now, not a change to catch up on; `GET .../presence`
/// answers it), nor are the relays the socket handlers emit (typing, `user:joined`/`left`).
pub fn is_recorded(event: &str) -> bool {
    event != events::PRESENCE_UPDATE
}

/// What a session id stands for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SessionRecord {
    #[serde(rename = "u")]
    pub user_id: String,
    #[serde(rename = "c")]
    pub company_id: Option<String>,
    /// Conversation ids of the rooms the socket was in.
    #[serde(rename = "r")]
    pub rooms: Vec<String>,
}

/// A recorded event to replay.
pub type LoggedEvent = StreamEvent;

/// What a returning client missed, as far as the log has been read.
pub struct Missed {
    pub events: Vec<LoggedEvent>,
    /// Where the read stopped: events appended after it are read with `Recovery::since`.
    pub read_to: String,
}

struct LocalEntry {
    seq: u64,
    at: Instant,
    conversation_id: String,
    event: &'static str,
    payload: Box<RawValue>,
}

/// The in-process event log. Offsets are `{node}:{seq}`, never taken for a Redis stream id.
#[derive(Default)]
struct LocalLog {
    entries: VecDeque<LocalEntry>,
    next_seq: u64,
    /// The highest sequence number dropped so far: an offset below it may have lost events.
    dropped_through: u64,
}

/// A session kept in the process, compact: one allocation (the record as JSON) beside its map
/// slot. Thousands of them outlive their sockets for the window, each created as its
/// connection's memory is freed, so each small allocation pins a page of that freed memory.
struct LocalSession {
    record: Box<str>,
    /// `None` while its socket is connected to this node.
    expires: Option<Instant>,
}

/// A session id as a map key: ids are UUIDs in hex (`Recovery::new_pid`), so 16 bytes inline
/// instead of a 32-byte string of its own. Anything else cannot name a session.
type PidKey = u128;

fn pid_key(pid: &str) -> Option<PidKey> {
    // Checked first: `from_str_radix` would also take a leading `+`.
    if pid.len() != 32 || !pid.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    PidKey::from_str_radix(pid, 16).ok()
}

pub struct Recovery {
    window: Duration,
    redis: Option<RecoveryRedis>,
    /// Prefix of this process's local offsets.
    node: String,
    log: Mutex<LocalLog>,
    sessions: Mutex<HashMap<PidKey, LocalSession>>,
    /// Session ids of the sockets connected to this node.
    live: DashMap<PidKey, ()>,
    /// Taken from an event's append to its emit: sockets of this node receive the recorded
    /// events in offset order, so the last offset a client saw covers everything before it.
    order: tokio::sync::Mutex<()>,
}

impl Recovery {
    pub fn new(window: Duration, cluster: Option<Arc<Cluster>>) -> Arc<Self> {
        let recovery = Arc::new(Recovery {
            window,
            redis: cluster.map(RecoveryRedis::new),
            node: uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
            log: Mutex::default(),
            sessions: Mutex::default(),
            live: DashMap::new(),
            order: tokio::sync::Mutex::new(()),
        });
        tokio::spawn(keep_sessions(Arc::downgrade(&recovery)));
        recovery
    }

    /// A new, unguessable session id.
    pub fn new_pid() -> String {
        uuid::Uuid::new_v4().simple().to_string()
    }

    /// Holds the emit order of recorded events on this node (see `order`).
    pub async fn in_order(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.order.lock().await
    }

    /// Appends a room event to the log; its offset.
    pub async fn record(&self, conversation_id: &str, event: &'static str, payload: &RawValue) -> String {
        if let Some(redis) = self.redis.as_ref().filter(|r| r.is_up()) {
            let keep_since = unix_ms().saturating_sub(self.window.as_millis() as u64);
            if let Some(offset) = Box::pin(redis.append(&self.node, conversation_id, event, payload.get(), keep_since)).await {
                return offset;
            }
        }
        let mut log = self.local_log();
        let now = Instant::now();
        log.next_seq += 1;
        let seq = log.next_seq;
        log.entries.push_back(LocalEntry {
            seq,
            at: now,
            conversation_id: conversation_id.to_string(),
            event,
            payload: payload.to_owned(),
        });
        log.trim(now, self.window);
        format!("{}:{seq}", self.node)
    }

    /// The recorded events after `offset` in `rooms`, oldest first; `None` when the log cannot
    /// tell (an offset it never gave, one older than what it still holds, Redis not answering).
    ///
    /// A socket receives the events of each node in that node's offset order, but those of two
    /// nodes interleave as they come: the event of the client's offset came from one node (its
    /// origin), and an earlier event of another node, still on its way when the connection
    /// went, may have been lost after it. So besides everything after the offset, events of
    /// every other node from up to `CROSS_NODE_MARGIN` before it are replayed: a client may get
    /// one of them twice (it de-duplicates by id), never miss one. Events of the origin before
    /// the offset all came before it and are not replayed.
    pub async fn missed(&self, offset: &str, rooms: &HashSet<String>) -> Option<Missed> {
        if let Some(seq) = self.local_seq(offset) {
            let mut log = self.local_log();
            log.trim(Instant::now(), self.window);
            if seq < log.dropped_through || seq > log.next_seq {
                return None;
            }
            // One node: every event came in offset order.
            let events = self.local_after(&log, seq, rooms);
            let read_to = format!("{}:{}", self.node, log.next_seq);
            return Some(Missed { events, read_to });
        }
        let redis = self.redis.as_ref().filter(|r| r.is_up())?;
        let offset_ms = stream_id_ms(offset)?;
        // Trimming keeps every entry newer than the window (by the trimming node's clock, hence
        // the margin); an older offset is safe only while the stream still reaches back to it.
        let margin = (self.window / 2).min(Duration::from_secs(10));
        let safe_since = unix_ms().saturating_sub((self.window - margin).as_millis() as u64);
        if offset_ms < safe_since {
            let oldest = Box::pin(redis.oldest()).await?;
            if !oldest.is_some_and(|o| stream_id_cmp(&o, offset).is_some_and(|c| c.is_le())) {
                return None;
            }
        }
        let from = format!("{}-0", offset_ms.saturating_sub(CROSS_NODE_MARGIN.as_millis() as u64));
        let (events, read_to) = Box::pin(redis.read_after(&from, |e| e.offset == offset || rooms.contains(&e.conversation_id))).await?;
        // Unknown (e.g. an event of a room left since): every node's events in the margin.
        let origin = events.iter().find(|e| e.offset == offset).map(|e| e.node.clone());
        let events = events
            .into_iter()
            .filter(|e| rooms.contains(&e.conversation_id))
            .filter(|e| match stream_id_cmp(&e.offset, offset) {
                Some(std::cmp::Ordering::Greater) => true,
                Some(_) => e.offset != offset && origin.as_ref().is_none_or(|o| &e.node != o),
                None => false,
            })
            .collect();
        Some(Missed { events, read_to })
    }

    /// The recorded events in `rooms` after `read_to` of an earlier `missed`, that is appended
    /// since that read; `None` when the log cannot tell.
    pub async fn since(&self, read_to: &str, rooms: &HashSet<String>) -> Option<Vec<LoggedEvent>> {
        if let Some(seq) = self.local_seq(read_to) {
            let log = self.local_log();
            return (seq >= log.dropped_through).then(|| self.local_after(&log, seq, rooms));
        }
        let redis = self.redis.as_ref().filter(|r| r.is_up())?;
        stream_id_ms(read_to)?;
        Some(Box::pin(redis.read_after(read_to, |e| rooms.contains(&e.conversation_id))).await?.0)
    }

    fn local_after(&self, log: &LocalLog, seq: u64, rooms: &HashSet<String>) -> Vec<LoggedEvent> {
        log.entries
            .iter()
            .filter(|e| e.seq > seq && rooms.contains(&e.conversation_id))
            .map(|e| LoggedEvent {
                offset: format!("{}:{}", self.node, e.seq),
                conversation_id: e.conversation_id.clone(),
                event: e.event.to_string(),
                payload: e.payload.get().to_string(),
                node: self.node.clone(),
            })
            .collect()
    }

    fn local_seq(&self, offset: &str) -> Option<u64> {
        let (node, seq) = offset.split_once(':')?;
        (node == self.node).then(|| seq.parse().ok()).flatten()
    }

    fn local_log(&self) -> MutexGuard<'_, LocalLog> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn local_sessions(&self) -> MutexGuard<'_, HashMap<PidKey, LocalSession>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records what `pid` stands for while its socket is connected to this node.
    pub async fn save_live(&self, pid: &str, record: &SessionRecord) {
        let Some(key) = pid_key(pid) else { return };
        self.live.insert(key, ());
        self.save(pid, key, record, None).await;
    }

    /// Keeps a disconnected socket's session for the window.
    pub async fn save_disconnected(&self, pid: &str, record: &SessionRecord) {
        let Some(key) = pid_key(pid) else { return };
        self.live.remove(&key);
        self.save(pid, key, record, Some(self.window)).await;
    }

    async fn save(&self, pid: &str, key: PidKey, record: &SessionRecord, ttl: Option<Duration>) {
        let Ok(json) = serde_json::to_string(record) else { return };
        if let Some(redis) = self.redis.as_ref().filter(|r| r.is_up())
            && Box::pin(redis.save_session(pid, &json, ttl.unwrap_or(self.window + LEASE))).await.is_some()
        {
            self.local_sessions().remove(&key);
            return;
        }
        let expires = ttl.map(|t| Instant::now() + t);
        self.local_sessions().insert(key, LocalSession { record: json.into_boxed_str(), expires });
    }

    /// A session ended by its client (or by the server on purpose): nothing to recover.
    pub async fn forget(&self, pid: &str) {
        if let Some(key) = pid_key(pid) {
            self.live.remove(&key);
            self.local_sessions().remove(&key);
        }
        if let Some(redis) = self.redis.as_ref().filter(|r| r.is_up()) {
            Box::pin(redis.forget_session(pid)).await;
        }
    }

    /// What `pid` stands for, if it is known and not expired.
    pub async fn load(&self, pid: &str) -> Option<SessionRecord> {
        let key = pid_key(pid)?;
        let local = {
            let sessions = self.local_sessions();
            sessions.get(&key).filter(|s| s.expires.is_none_or(|e| e > Instant::now())).map(|s| s.record.clone())
        };
        if let Some(json) = local {
            return serde_json::from_str(&json).ok();
        }
        let redis = self.redis.as_ref().filter(|r| r.is_up())?;
        let json = Box::pin(redis.load_session(pid)).await??;
        serde_json::from_str(&json).ok()
    }

    /// Extends the live sessions in Redis; drops expired local sessions and old log entries.
    async fn tend(&self) {
        let now = Instant::now();
        {
            let mut sessions = self.local_sessions();
            let before = sessions.len();
            sessions.retain(|_, s| s.expires.is_none_or(|e| e > now));
            if sessions.len() < before {
                crate::heap::note_freed();
            }
            // After a burst of disconnects the map would keep its largest size for good.
            if sessions.capacity() > 4 * sessions.len().max(1024) {
                sessions.shrink_to_fit();
            }
        }
        self.local_log().trim(now, self.window);
        if let Some(redis) = self.redis.as_ref().filter(|r| r.is_up()) {
            let pids: Vec<String> = self.live.iter().map(|e| format!("{:032x}", e.key())).collect();
            for chunk in pids.chunks(1000) {
                Box::pin(redis.extend_sessions(chunk, self.window + LEASE)).await;
            }
        }
    }
}

impl LocalLog {
    fn trim(&mut self, now: Instant, window: Duration) {
        while let Some(first) = self.entries.front() {
            if self.entries.len() <= LOCAL_LOG_CAP && now.duration_since(first.at) <= window {
                break;
            }
            self.dropped_through = first.seq;
            self.entries.pop_front();
        }
    }
}

async fn keep_sessions(recovery: Weak<Recovery>) {
    let mut tick = tokio::time::interval(LEASE / 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(recovery) = recovery.upgrade() else { return };
        recovery.tend().await;
    }
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The offset a recorded broadcast carries as its last argument: the packet's text ends with
/// `,"<offset>"]`. `None` for packets without one.
pub fn offset_of_packet(text: &str) -> Option<&str> {
    let body = text.strip_suffix("\"]")?;
    let start = body.rfind(",\"")? + 2;
    let offset = &body[start..];
    (!offset.contains('"')).then_some(offset)
}

/// The `pid` and `offset` a reconnecting client puts beside its auth fields.
pub fn claim_of(auth: &serde_json::Value) -> Option<(String, String)> {
    let pid = auth.get("pid")?.as_str()?;
    let offset = auth.get("offset")?.as_str()?;
    // Ids this service gives are short; anything long is not one of them.
    (pid.len() <= 64 && offset.len() <= 64).then(|| (pid.to_string(), offset.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_keys_and_back() {
        let pid = Recovery::new_pid();
        let key = pid_key(&pid).expect("a new session id is a key");
        assert_eq!(format!("{key:032x}"), pid);
        assert_eq!(pid_key("not-a-session"), None);
        assert_eq!(pid_key(&format!("{pid}0")), None);
        assert_eq!(pid_key(&"+".repeat(32)), None);
    }

    #[test]
    fn the_offset_is_read_from_the_end_of_a_packet() {
        assert_eq!(offset_of_packet(r#"2["message:new",{"a":"x\",\"y"},"17-0"]"#), Some("17-0"));
        assert_eq!(offset_of_packet(r#"2["user:typing",{"a":1}]"#), None);
        assert_eq!(offset_of_packet(r#"2["x","ab"]"#), Some("ab"));
    }

    #[test]
    fn a_claim_needs_both_pid_and_offset() {
        let both = serde_json::json!({ "token": "t", "pid": "p", "offset": "1-0" });
        assert_eq!(claim_of(&both), Some(("p".into(), "1-0".into())));
        assert_eq!(claim_of(&serde_json::json!({ "pid": "p" })), None);
        assert_eq!(claim_of(&serde_json::json!({ "pid": "p", "offset": 3 })), None);
    }

    #[tokio::test]
    async fn the_local_log_replays_what_came_after_an_offset_in_the_sessions_rooms() {
        let r = Recovery::new(Duration::from_secs(60), None);
        let raw = |s: &str| RawValue::from_string(s.to_string()).unwrap();
        let first = r.record("a", events::MESSAGE_NEW, &raw("1")).await;
        r.record("b", events::MESSAGE_NEW, &raw("2")).await;
        r.record("a", events::MESSAGE_EDITED, &raw("3")).await;
        let rooms: HashSet<String> = ["a".to_string()].into();
        let missed = r.missed(&first, &rooms).await.unwrap().events;
        assert_eq!(missed.iter().map(|e| (e.event.as_str(), e.payload.as_str())).collect::<Vec<_>>(), [(events::MESSAGE_EDITED, "3")]);
        assert!(r.missed("othernode:1", &rooms).await.is_none());
        assert!(r.missed(&format!("{}:99", r.node), &rooms).await.is_none());
    }

    #[tokio::test]
    async fn an_offset_the_capped_log_no_longer_reaches_is_not_recoverable() {
        let r = Recovery::new(Duration::from_secs(60), None);
        let raw = RawValue::from_string("0".to_string()).unwrap();
        let first = r.record("a", events::MESSAGE_NEW, &raw).await;
        for _ in 0..LOCAL_LOG_CAP + 1 {
            r.record("a", events::MESSAGE_NEW, &raw).await;
        }
        let rooms: HashSet<String> = ["a".to_string()].into();
        assert!(r.missed(&first, &rooms).await.is_none());
    }
}
