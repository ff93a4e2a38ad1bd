//! Who is online. A user is online while any of their sockets is connected (two tabs: still
//! online when one closes), and "in" a conversation while any of their sockets is in its room.
//! Counts are per socket so joins and leaves from several tabs balance out.
//!
//! Each node counts its own sockets here. With Redis, each node also registers in Redis which
//! users it has online and in which rooms, under a node id kept alive by a heartbeat: "online"
//! and "in the room" then mean "on any live node", the same answer on every node, and a node
//! that dies without cleaning up stops counting once its heartbeat expires. Registrations go
//! through one writer task per node, in the order the local changes happened.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::cluster::Cluster;

#[derive(Default)]
pub struct Presence {
    inner: Arc<Mutex<State>>,
    shared: Option<Shared>,
}

#[derive(Default)]
struct State {
    /// user id → number of connected sockets
    users: HashMap<String, usize>,
    /// conversation id → user id → number of that user's sockets in the room
    rooms: HashMap<String, HashMap<String, usize>>,
}

struct Shared {
    cluster: Arc<Cluster>,
    writes: mpsc::UnboundedSender<Write>,
    ttl: Duration,
    nodes_key: String,
    room_script: redis::Script,
}

/// A change of this node's registration in Redis. Each is idempotent (set, not count), so
/// replaying one after a full re-registration changes nothing.
enum Write {
    /// The user's first (`online`) or last socket on this node; answers how many other live
    /// nodes have the user online.
    User { user_id: String, online: bool, reply: oneshot::Sender<Option<u64>> },
    Room { conversation_id: String, user_id: String, present: bool, done: oneshot::Sender<()> },
    /// This node is stopping: its users stop counting at once rather than after the ttl.
    Leave { done: oneshot::Sender<()> },
}

/// Registers (ARGV[3] = 1) or unregisters this node's copy of a user and counts the other live
/// nodes that have the user online, dropping entries of dead nodes on the way.
/// KEYS: user hash, nodes zset. ARGV: node id, heartbeat ttl ms, 1|0.
const USER_SCRIPT: &str = r"
local t = redis.call('TIME')
local cutoff = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[2])
local others = 0
for _, node in ipairs(redis.call('HKEYS', KEYS[1])) do
  if node ~= ARGV[1] then
    local beat = redis.call('ZSCORE', KEYS[2], node)
    if beat and tonumber(beat) >= cutoff then others = others + 1 else redis.call('HDEL', KEYS[1], node) end
  end
end
if ARGV[3] == '1' then
  redis.call('HSET', KEYS[1], ARGV[1], 1)
  redis.call('PEXPIRE', KEYS[1], 86400000)
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return others
";

/// Users in a room on any live node; entries of dead nodes are removed.
/// KEYS: room set (members `node|user`), nodes zset. ARGV: heartbeat ttl ms.
const ROOM_SCRIPT: &str = r"
local t = redis.call('TIME')
local cutoff = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[1])
local users = {}
local seen = {}
for _, member in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local bar = string.find(member, '|', 1, true)
  local node = string.sub(member, 1, bar - 1)
  local user = string.sub(member, bar + 1)
  local beat = redis.call('ZSCORE', KEYS[2], node)
  if beat and tonumber(beat) >= cutoff then
    if not seen[user] then
      seen[user] = true
      users[#users + 1] = user
    end
  else
    redis.call('SREM', KEYS[1], member)
  end
end
return users
";

/// Records this node as alive now (Redis clock) and forgets nodes silent for a long time.
/// KEYS: nodes zset. ARGV: node id, ttl ms.
const HEARTBEAT_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 100 * tonumber(ARGV[2]))
return 1
";

impl Presence {
    /// Presence shared through Redis; `ttl` is how long a silent node's users stay online.
    pub fn shared(cluster: Arc<Cluster>, ttl: Duration) -> Self {
        let (writes, rx) = mpsc::unbounded_channel();
        let inner: Arc<Mutex<State>> = Arc::default();
        let nodes_key = cluster.key("presence:nodes");
        let writer = Writer {
            cluster: cluster.clone(),
            state: Arc::downgrade(&inner),
            node: format!("{}.0", uuid::Uuid::new_v4().simple()),
            generation: 0,
            ttl,
            nodes_key: nodes_key.clone(),
            user_script: redis::Script::new(USER_SCRIPT),
            heartbeat_script: redis::Script::new(HEARTBEAT_SCRIPT),
        };
        tokio::spawn(writer.run(rx));
        Presence {
            inner,
            shared: Some(Shared { cluster, writes, ttl, nodes_key, room_script: redis::Script::new(ROOM_SCRIPT) }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A socket of `user_id` connected. Counted at once (callers may hold their own lock);
    /// whether it was the user's first on any node is answered by awaiting the result.
    pub fn connect(&self, user_id: &str) -> Transition {
        let mut s = self.state();
        let n = s.users.entry(user_id.to_string()).or_insert(0);
        *n += 1;
        let here = *n == 1;
        Transition { here, others: here.then(|| self.register_user(user_id, true)).flatten() }
    }

    /// A socket of `user_id` went away; the result says whether it was the user's last.
    pub fn disconnect(&self, user_id: &str) -> Transition {
        let mut s = self.state();
        let here = match s.users.get_mut(user_id) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                s.users.remove(user_id);
                true
            }
            None => false,
        };
        Transition { here, others: here.then(|| self.register_user(user_id, false)).flatten() }
    }

    /// Queues this node's (un)registration of a user; called under the state lock so writes
    /// reach Redis in the order of the local changes.
    fn register_user(&self, user_id: &str, online: bool) -> Option<oneshot::Receiver<Option<u64>>> {
        let shared = self.shared.as_ref()?;
        let (reply, rx) = oneshot::channel();
        shared.writes.send(Write::User { user_id: user_id.to_string(), online, reply }).ok()?;
        Some(rx)
    }

    fn register_room(&self, conversation_id: &str, user_id: &str, present: bool) -> Registered {
        let Some(shared) = &self.shared else { return Registered(None) };
        let (done, rx) = oneshot::channel();
        let write = Write::Room { conversation_id: conversation_id.to_string(), user_id: user_id.to_string(), present, done };
        Registered(shared.writes.send(write).ok().map(|_| rx))
    }

    /// Withdraws this node from the shared presence (on shutdown): other nodes stop counting
    /// its users now instead of when its heartbeat expires. Waits at most one Redis timeout.
    pub async fn leave_cluster(&self) {
        let Some(shared) = &self.shared else { return };
        let (done, rx) = oneshot::channel();
        if shared.writes.send(Write::Leave { done }).is_ok() {
            let _ = rx.await;
        }
    }

    /// Whether the user has a socket on this node.
    pub fn is_online_here(&self, user_id: &str) -> bool {
        self.state().users.contains_key(user_id)
    }

    /// A socket of the user entered the room. Counted at once; awaiting the result waits
    /// until every node sees it (so a client told it joined finds itself listed).
    pub fn join(&self, conversation_id: &str, user_id: &str) -> Registered {
        let mut s = self.state();
        let n = s.rooms.entry(conversation_id.to_string()).or_default().entry(user_id.to_string()).or_insert(0);
        *n += 1;
        if *n == 1 { self.register_room(conversation_id, user_id, true) } else { Registered(None) }
    }

    /// A socket of the user left the room; like `join`.
    pub fn leave(&self, conversation_id: &str, user_id: &str) -> Registered {
        let mut s = self.state();
        let mut registered = Registered(None);
        if let Some(room) = s.rooms.get_mut(conversation_id) {
            if let Some(n) = room.get_mut(user_id) {
                *n -= 1;
                if *n == 0 {
                    room.remove(user_id);
                    registered = self.register_room(conversation_id, user_id, false);
                }
            }
            if room.is_empty() {
                s.rooms.remove(conversation_id);
            }
        }
        registered
    }

    /// Users with at least one socket in the conversation's room (on any live node), sorted.
    pub async fn online_in(&self, conversation_id: &str) -> Vec<String> {
        if let Some(shared) = &self.shared {
            let room_key = shared.cluster.key(&format!("presence:room:{conversation_id}"));
            let ttl_ms = shared.ttl.as_millis() as u64;
            let users: Option<Vec<String>> = shared
                .cluster
                .run(|mut c| async move {
                    shared.room_script.key(room_key).key(&shared.nodes_key).arg(ttl_ms).invoke_async(&mut c).await
                })
                .await;
            if let Some(mut users) = users {
                users.sort();
                return users;
            }
        }
        self.online_here_in(conversation_id)
    }

    fn online_here_in(&self, conversation_id: &str) -> Vec<String> {
        let s = self.state();
        let mut v: Vec<String> = s.rooms.get(conversation_id).map(|r| r.keys().cloned().collect()).unwrap_or_default();
        v.sort();
        v
    }
}

/// A room change of this node on its way to Redis.
#[must_use = "await `done` before telling clients, or drop it when nobody waits"]
pub struct Registered(Option<oneshot::Receiver<()>>);

impl Registered {
    /// Returns once the change is visible to every node (or could not be written).
    pub async fn done(self) {
        if let Some(rx) = self.0 {
            let _ = rx.await;
        }
    }
}

/// A user's first socket arriving or last socket leaving on this node, and whether that
/// makes them go online or offline everywhere.
pub struct Transition {
    here: bool,
    /// Answers how many other live nodes have the user online (`None`: Redis unavailable).
    others: Option<oneshot::Receiver<Option<u64>>>,
}

impl Transition {
    /// True when the user's status changes for the whole cluster (without Redis, or while
    /// it is down: for this node).
    pub async fn everywhere(self) -> bool {
        match self.others {
            Some(rx) => rx.await.ok().flatten().map_or(self.here, |others| others == 0),
            None => self.here,
        }
    }
}

/// Applies this node's registrations in order, keeps its heartbeat, and after a Redis outage
/// registers everything again under a fresh node id (Redis may have lost or kept stale
/// entries; the old id simply stops counting).
struct Writer {
    cluster: Arc<Cluster>,
    state: std::sync::Weak<Mutex<State>>,
    /// `{process uuid}.{generation}`; never contains `|`.
    node: String,
    generation: u64,
    ttl: Duration,
    nodes_key: String,
    user_script: redis::Script,
    heartbeat_script: redis::Script,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Write>) {
        let mut heartbeat = tokio::time::interval(self.ttl / 3);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut recoveries = self.cluster.recoveries();
        loop {
            tokio::select! {
                biased;
                _ = heartbeat.tick() => self.heartbeat().await,
                changed = recoveries.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    self.register_again().await;
                }
                write = rx.recv() => match write {
                    Some(Write::Leave { done }) => {
                        self.leave().await;
                        let _ = done.send(());
                        return;
                    }
                    Some(write) => self.apply(write).await,
                    None => return,
                },
            }
        }
    }

    async fn heartbeat(&self) {
        let (key, node, ttl_ms) = (&self.nodes_key, &self.node, self.ttl.as_millis() as u64);
        let script = &self.heartbeat_script;
        let _: Option<i64> =
            self.cluster.run(|mut c| async move { script.key(key).arg(node).arg(ttl_ms).invoke_async(&mut c).await }).await;
    }

    async fn leave(&self) {
        let (key, node) = (&self.nodes_key, &self.node);
        let _: Option<()> = self.cluster.run(|mut c| async move { redis::cmd("ZREM").arg(key).arg(node).query_async(&mut c).await }).await;
    }

    async fn apply(&self, write: Write) {
        match write {
            Write::Leave { done } => {
                self.leave().await;
                let _ = done.send(());
            }
            Write::User { user_id, online, reply } => {
                let user_key = self.cluster.key(&format!("presence:user:{user_id}"));
                let (nodes, node, ttl_ms, script) = (&self.nodes_key, &self.node, self.ttl.as_millis() as u64, &self.user_script);
                let others: Option<u64> = self
                    .cluster
                    .run(|mut c| async move {
                        script.key(user_key).key(nodes).arg(node).arg(ttl_ms).arg(u8::from(online)).invoke_async(&mut c).await
                    })
                    .await;
                let _ = reply.send(others);
            }
            Write::Room { conversation_id, user_id, present, done } => {
                let room_key = self.cluster.key(&format!("presence:room:{conversation_id}"));
                let member = format!("{}|{user_id}", self.node);
                let _: Option<()> = self
                    .cluster
                    .run(|mut c| async move {
                        let mut pipe = redis::pipe();
                        if present {
                            pipe.sadd(&room_key, &member).ignore().pexpire(&room_key, 86_400_000).ignore();
                        } else {
                            pipe.srem(&room_key, &member).ignore();
                        }
                        pipe.query_async(&mut c).await
                    })
                    .await;
                let _ = done.send(());
            }
        }
    }

    /// Re-registers every local user and room membership under a new node id.
    async fn register_again(&mut self) {
        let Some(state) = self.state.upgrade() else { return };
        let (users, rooms): (Vec<String>, Vec<(String, String)>) = {
            let s = state.lock().unwrap_or_else(|p| p.into_inner());
            (
                s.users.keys().cloned().collect(),
                s.rooms.iter().flat_map(|(c, users)| users.keys().map(move |u| (c.clone(), u.clone()))).collect(),
            )
        };
        let old = std::mem::take(&mut self.node);
        self.generation += 1;
        self.node = match old.split_once('.') {
            Some((id, _)) => format!("{id}.{}", self.generation),
            None => format!("{}.{}", uuid::Uuid::new_v4().simple(), self.generation),
        };
        self.heartbeat().await;
        let registered = users.len();
        let (cluster, node, nodes_key) = (&self.cluster, &self.node, &self.nodes_key);
        let done: Option<()> = cluster
            .run(|mut c| async move {
                let mut pipe = redis::pipe();
                pipe.zrem(nodes_key, &old).ignore();
                for user in &users {
                    let key = cluster.key(&format!("presence:user:{user}"));
                    pipe.hset(&key, node, 1).ignore().pexpire(&key, 86_400_000).ignore();
                }
                for (conversation, user) in &rooms {
                    let key = cluster.key(&format!("presence:room:{conversation}"));
                    pipe.sadd(&key, format!("{node}|{user}")).ignore().pexpire(&key, 86_400_000).ignore();
                }
                pipe.query_async(&mut c).await
            })
            .await;
        if done.is_some() {
            tracing::info!(users = registered, "presence registered again after the redis outage");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_tabs_stay_online() {
        let p = Presence::default();
        assert!(futures_now(p.connect("u").everywhere()));
        assert!(!futures_now(p.connect("u").everywhere()));
        assert!(!futures_now(p.disconnect("u").everywhere()));
        assert!(p.is_online_here("u"));
        assert!(futures_now(p.disconnect("u").everywhere()));
        assert!(!p.is_online_here("u"));
    }

    #[test]
    fn rooms_count_sockets() {
        let p = Presence::default();
        let _ = p.join("c", "u");
        let _ = p.join("c", "u");
        let _ = p.join("c", "v");
        let _ = p.leave("c", "u");
        assert_eq!(p.online_here_in("c"), vec!["u", "v"]);
        let _ = p.leave("c", "u");
        let _ = p.leave("c", "v");
        assert!(p.online_here_in("c").is_empty());
    }

    /// Runs a future that never waits (no Redis configured) to completion.
    fn futures_now<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }
}
