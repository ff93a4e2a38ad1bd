//! Rounds of a periodic job that must run on one node at a time (archiving, audit retention).
//!
//! Time is cut into slots of one interval since the Unix epoch, and every node wakes at the
//! start of each slot. With Redis, the nodes sharing a prefix take turns: the first to claim
//! the slot's key (`SET NX PX`) runs that round and the others skip it, so each round runs
//! once however many nodes there are. Without Redis (or while it is unreachable) each node
//! runs every round itself, so the jobs are written to be harmless when repeated.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::distr::{Alphanumeric, SampleString};

use crate::cluster::Cluster;

pub struct Rounds {
    /// Names the job in its Redis keys: `{REDIS_PREFIX}:<job>:slot:<n>`.
    pub job: &'static str,
    pub cluster: Option<Arc<Cluster>>,
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

impl Rounds {
    /// Runs `round(slot)` at the start of every slot this node gets, for the life of the process.
    pub fn spawn<F, Fut>(self, mut round: F) -> tokio::task::JoinHandle<()>
    where
        F: FnMut(u64) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        tokio::spawn(async move {
            // Names this node in the slot keys: which node ran a round can be read in Redis.
            let node = Alphanumeric.sample_string(&mut rand::rng(), 12);
            loop {
                let slot = next_slot(self.interval).await;
                match self.turn(slot, &node).await {
                    Turn::Taken => tracing::debug!(job = self.job, slot, "round run by another node"),
                    Turn::Claimed | Turn::Alone => round(slot).await,
                }
            }
        })
    }

    async fn turn(&self, slot: u64, node: &str) -> Turn {
        let Some(cluster) = &self.cluster else { return Turn::Alone };
        let key = cluster.key(&format!("{}:slot:{slot}", self.job));
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
}

/// Sleeps until the next slot starts and returns its number.
async fn next_slot(interval: Duration) -> u64 {
    let interval_ms = (interval.as_millis() as u64).max(1);
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
    let slot = now_ms / interval_ms + 1;
    tokio::time::sleep(Duration::from_millis(slot * interval_ms - now_ms)).await;
    slot
}
