//! Connection state recovery's shared records in Redis, so that a client can recover on any
//! node: one stream of the recorded room events (the stream id is the event's offset: one
//! order for the whole deployment, and it carries the time it was written, which is how the
//! stream is trimmed to the recovery window), and one key per session with a time to live.
//!
//! Every call goes through `Cluster::run`: `None` when Redis does not answer, and the caller
//! falls back to the process (see `realtime::recovery`).

use std::sync::Arc;
use std::time::Duration;

use super::Cluster;

/// One recorded room event, as read back from the stream.
#[derive(Debug, Clone)]
pub struct StreamEvent {
    pub offset: String,
    pub conversation_id: String,
    pub event: String,
    pub payload: String,
    /// The node that appended (and emitted) it.
    pub node: String,
}

/// Stream entries read per round trip when replaying.
const READ_BATCH: usize = 500;

pub struct RecoveryRedis {
    cluster: Arc<Cluster>,
    stream: String,
    session_prefix: String,
}

impl RecoveryRedis {
    pub fn new(cluster: Arc<Cluster>) -> Self {
        let stream = cluster.key("recovery:log");
        let session_prefix = cluster.key("recovery:session:");
        RecoveryRedis { cluster, stream, session_prefix }
    }

    pub fn is_up(&self) -> bool {
        self.cluster.is_up()
    }

    /// Appends an event; its stream id is the offset. Entries older than `keep_since_ms`
    /// (Unix milliseconds) are trimmed on the way (approximately: whole nodes of the stream,
    /// so a few older ones may stay, never a newer one go).
    pub async fn append(&self, node: &str, conversation_id: &str, event: &str, payload: &str, keep_since_ms: u64) -> Option<String> {
        let stream = &self.stream;
        self.cluster
            .run(|mut c| async move {
                redis::cmd("XADD")
                    .arg(stream)
                    .arg("MINID")
                    .arg("~")
                    .arg(keep_since_ms)
                    .arg("*")
                    .arg("c")
                    .arg(conversation_id)
                    .arg("e")
                    .arg(event)
                    .arg("p")
                    .arg(payload)
                    .arg("n")
                    .arg(node)
                    .query_async(&mut c)
                    .await
            })
            .await
    }

    /// The id of the oldest entry still in the stream; `Some(None)` when it is empty.
    pub async fn oldest(&self) -> Option<Option<String>> {
        let stream = &self.stream;
        let first: Vec<(String, Vec<String>)> = self
            .cluster
            .run(|mut c| async move { redis::cmd("XRANGE").arg(stream).arg("-").arg("+").arg("COUNT").arg(1).query_async(&mut c).await })
            .await?;
        Some(first.into_iter().next().map(|(id, _)| id))
    }

    /// The events after `offset` (exclusive) for which `wanted` says yes, oldest first, and the
    /// id of the last entry read (`offset` when there was none): what comes after it was
    /// appended after the read. `None` when Redis stopped answering part way.
    pub async fn read_after(&self, offset: &str, wanted: impl Fn(&StreamEvent) -> bool) -> Option<(Vec<StreamEvent>, String)> {
        let mut from = offset.to_string();
        let mut found = Vec::new();
        loop {
            let stream = &self.stream;
            let start = format!("({from}");
            let batch: Vec<(String, Vec<String>)> = self
                .cluster
                .run(|mut c| async move {
                    redis::cmd("XRANGE").arg(stream).arg(&start).arg("+").arg("COUNT").arg(READ_BATCH).query_async(&mut c).await
                })
                .await?;
            let full = batch.len() == READ_BATCH;
            for (id, fields) in batch {
                from.clone_from(&id);
                if let Some(e) = event_of(id, fields).filter(&wanted) {
                    found.push(e);
                }
            }
            if !full {
                return Some((found, from));
            }
        }
    }

    fn session_key(&self, pid: &str) -> String {
        format!("{}{pid}", self.session_prefix)
    }

    /// Writes a session's record, to expire after `ttl`.
    pub async fn save_session(&self, pid: &str, record: &str, ttl: Duration) -> Option<()> {
        let key = self.session_key(pid);
        let ms = ttl.as_millis() as u64;
        self.cluster
            .run(|mut c| async move { redis::cmd("SET").arg(&key).arg(record).arg("PX").arg(ms).query_async(&mut c).await })
            .await
    }

    pub async fn load_session(&self, pid: &str) -> Option<Option<String>> {
        let key = self.session_key(pid);
        self.cluster.run(|mut c| async move { redis::cmd("GET").arg(&key).query_async(&mut c).await }).await
    }

    pub async fn forget_session(&self, pid: &str) -> Option<()> {
        let key = self.session_key(pid);
        self.cluster.run(|mut c| async move { redis::cmd("DEL").arg(&key).query_async(&mut c).await }).await
    }

    /// Pushes back the expiry of the sessions of sockets connected to this node, so that they
    /// outlive the node by `ttl` if it dies without a word.
    pub async fn extend_sessions(&self, pids: &[String], ttl: Duration) -> Option<()> {
        if pids.is_empty() {
            return Some(());
        }
        let ms = ttl.as_millis() as u64;
        let mut pipe = redis::pipe();
        for pid in pids {
            pipe.cmd("PEXPIRE").arg(self.session_key(pid)).arg(ms).ignore();
        }
        self.cluster.run(|mut c| async move { pipe.query_async(&mut c).await }).await
    }
}

fn event_of(offset: String, fields: Vec<String>) -> Option<StreamEvent> {
    let (mut conversation_id, mut event, mut payload, mut node) = (None, None, None, String::new());
    let mut it = fields.into_iter();
    while let (Some(name), Some(value)) = (it.next(), it.next()) {
        match name.as_str() {
            "c" => conversation_id = Some(value),
            "e" => event = Some(value),
            "p" => payload = Some(value),
            "n" => node = value,
            _ => {}
        }
    }
    Some(StreamEvent { offset, conversation_id: conversation_id?, event: event?, payload: payload?, node })
}

/// The time part of a stream id (`<ms>-<seq>`), or `None` for anything else.
pub fn stream_id_ms(offset: &str) -> Option<u64> {
    let (ms, seq) = offset.split_once('-')?;
    seq.parse::<u64>().ok()?;
    ms.parse().ok()
}

/// Orders two stream ids; `None` when either is not one.
pub fn stream_id_cmp(a: &str, b: &str) -> Option<std::cmp::Ordering> {
    let parse = |id: &str| {
        let (ms, seq) = id.split_once('-')?;
        Some((ms.parse::<u64>().ok()?, seq.parse::<u64>().ok()?))
    };
    Some(parse(a)?.cmp(&parse(b)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_are_read_and_ordered_numerically() {
        assert_eq!(stream_id_ms("1700000000000-3"), Some(1_700_000_000_000));
        assert_eq!(stream_id_ms("abc:3"), None);
        assert_eq!(stream_id_ms("17-x"), None);
        assert_eq!(stream_id_cmp("9-5", "10-0"), Some(std::cmp::Ordering::Less));
        assert_eq!(stream_id_cmp("10-2", "10-10"), Some(std::cmp::Ordering::Less));
        assert_eq!(stream_id_cmp("10-2", "x"), None);
    }
}
