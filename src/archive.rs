//! The archive job (`ARCHIVE_AFTER_DAYS`, `ARCHIVE_INTERVAL_MS`): once per interval,
//! conversations without an update or a message for longer than the threshold are archived.
//!
//! Time is cut into slots of one interval since the Unix epoch, and every node wakes at the
//! start of each slot. With Redis, the nodes sharing a prefix take turns: the first to claim
//! the slot's key (`SET NX PX`) runs that round and the others skip it, so each round runs
//! once however many nodes there are. Without Redis (or while it is unreachable) each node
//! runs every round itself; that is harmless, since archiving is idempotent and a
//! conversation is archived and announced by one node only, just repeated work (several
//! SQLite nodes on one machine, say, each scan the same file).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::distr::{Alphanumeric, SampleString};

use crate::cluster::Cluster;
use crate::domain::time::now;
use crate::service::ChatService;

pub struct ArchiveJob {
    pub service: Arc<ChatService>,
    pub cluster: Option<Arc<Cluster>>,
    /// Inactivity after which a conversation is archived.
    pub after: Duration,
    pub interval: Duration,
}

/// Who runs a slot's round.
enum Turn {
    /// This node claimed the slot.
    Claimed,
    /// Another node claimed it first.
    Taken,
    /// No Redis to agree through (none configured, or unreachable): this node runs it.
    Alone,
}

impl ArchiveJob {
    /// Runs the job for the life of the process.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.run())
    }

    async fn run(self) {
        // Names this node in the slot keys: which node ran a round can be read in Redis.
        let node = Alphanumeric.sample_string(&mut rand::rng(), 12);
        tracing::info!(
            after_days = self.after.as_secs() / 86_400,
            interval_ms = self.interval.as_millis() as u64,
            "archive job scheduled"
        );
        loop {
            let slot = next_slot(self.interval).await;
            match self.turn(slot, &node).await {
                Turn::Taken => tracing::debug!(slot, "archive round run by another node"),
                Turn::Claimed | Turn::Alone => self.round(slot).await,
            }
        }
    }

    async fn turn(&self, slot: u64, node: &str) -> Turn {
        let Some(cluster) = &self.cluster else { return Turn::Alone };
        let key = cluster.key(&format!("archive:slot:{slot}"));
        // Outlives the slot, so a node whose clock is a little behind cannot claim it again.
        let ttl_ms = 2 * self.interval.as_millis() as u64;
        let claimed: Option<Option<String>> = cluster
            .run(|mut c| async move {
                redis::cmd("SET").arg(key).arg(node).arg("NX").arg("PX").arg(ttl_ms).query_async(&mut c).await
            })
            .await;
        match claimed {
            Some(Some(_)) => Turn::Claimed,
            Some(None) => Turn::Taken,
            None => Turn::Alone,
        }
    }

    async fn round(&self, slot: u64) {
        let started = Instant::now();
        let Ok(after) = chrono::Duration::from_std(self.after) else { return };
        match self.service.archive_inactive(now() - after).await {
            Ok(archived) => {
                tracing::info!(slot, archived, took_ms = started.elapsed().as_millis() as u64, "archive round")
            }
            Err(e) => tracing::warn!(slot, error = %e, "archive round failed; the next one tries again"),
        }
    }
}

/// Sleeps until the next slot starts and returns its number.
async fn next_slot(interval: Duration) -> u64 {
    let interval_ms = (interval.as_millis() as u64).max(1);
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
    let slot = now_ms / interval_ms + 1;
    tokio::time::sleep(Duration::from_millis(slot * interval_ms - now_ms)).await;
    slot
}
