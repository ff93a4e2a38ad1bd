//! Redis, shared by every node serving one set of rooms: a connection pool for the read cache,
//! rate-limit counters and presence, the pub/sub driver behind the Socket.IO adapter, and the
//! one place that knows whether Redis is answering right now.
//!
//! Redis is an accelerator and a meeting point, never a single point of failure: when it stops
//! answering, every user of this module falls back to its in-process equivalent (no cache,
//! local limits, local presence, room broadcasts to this node's sockets), the outage is logged
//! once, and a monitor notices when Redis is back.

pub mod pubsub;
pub mod recovery;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deadpool_redis::{Pool, Runtime};
use redis::RedisResult;
use tokio::sync::watch;

/// Longest a single Redis operation may take before Redis counts as unavailable; a request
/// never waits on Redis longer than this.
pub const OP_TIMEOUT: Duration = Duration::from_millis(1500);
/// How often the monitor checks Redis (and, while it is down, tries to reconnect).
const CHECK_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis pool: {0}")]
    Pool(String),
}

/// Why a Redis operation gave no answer.
enum Failure {
    /// No connection, a dropped one, or no answer in time: Redis counts as down.
    Unreachable(String),
    /// Redis answered with an error.
    Refused(String),
}

impl From<redis::RedisError> for Failure {
    fn from(e: redis::RedisError) -> Self {
        if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout() || e.is_unrecoverable_error() {
            Failure::Unreachable(e.to_string())
        } else {
            Failure::Refused(e.to_string())
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Unreachable(e) | Failure::Refused(e) => f.write_str(e),
        }
    }
}

/// The Redis connection of this node and its health.
pub struct Cluster {
    pool: Pool,
    /// Namespaces every key and channel, so several deployments (or test runs) can share one
    /// Redis without seeing each other.
    prefix: String,
    up: AtomicBool,
    /// Bumped (in Redis, then copied here) each time Redis comes back after an outage. Part of
    /// every cache key: writes made while Redis was unreachable could not invalidate anything,
    /// so entries from before the outage are never read again.
    cache_epoch: AtomicU64,
    /// Counts recoveries; presence re-registers this node's sockets on each change.
    recovered: watch::Sender<u64>,
    /// The pub/sub connection, pinged by the monitor so it reconnects after an outage.
    pubsub: pubsub::PubSub,
}

impl Cluster {
    /// Connects to `url`; fails when Redis does not answer at start-up, since a node that
    /// silently starts alone would split the cluster without anyone noticing.
    pub async fn connect(url: &str, prefix: &str) -> Result<Arc<Self>, ClusterError> {
        let url = with_resp3(url);
        let mut config = deadpool_redis::Config::from_url(url.clone());
        config.pool = Some(deadpool_redis::PoolConfig {
            max_size: 32,
            timeouts: deadpool_redis::Timeouts {
                wait: Some(OP_TIMEOUT),
                create: Some(OP_TIMEOUT),
                recycle: Some(OP_TIMEOUT),
            },
            ..Default::default()
        });
        let pool = config.create_pool(Some(Runtime::Tokio1)).map_err(|e| ClusterError::Pool(e.to_string()))?;
        let client = redis::Client::open(url.as_str())?;
        let pubsub = pubsub::PubSub::connect(&client).await?;
        let cluster = Arc::new(Cluster {
            pool,
            prefix: prefix.to_string(),
            up: AtomicBool::new(true),
            cache_epoch: AtomicU64::new(0),
            recovered: watch::Sender::new(0),
            pubsub,
        });
        cluster.pubsub.attach(Arc::downgrade(&cluster));
        let epoch = cluster.read_cache_epoch().await?;
        cluster.cache_epoch.store(epoch, Ordering::Release);
        tokio::spawn(monitor(Arc::downgrade(&cluster)));
        Ok(cluster)
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `{prefix}:{rest}`.
    pub fn key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.prefix)
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    pub fn cache_epoch(&self) -> u64 {
        self.cache_epoch.load(Ordering::Acquire)
    }

    pub fn pubsub(&self) -> pubsub::PubSub {
        self.pubsub.clone()
    }

    /// Changes each time Redis comes back after an outage.
    pub fn recoveries(&self) -> watch::Receiver<u64> {
        self.recovered.subscribe()
    }

    /// Runs `op` on a pooled connection. `None` when Redis is known to be down, or when this
    /// call finds it down (which is then logged once); callers fall back to local behaviour.
    pub async fn run<T, F, Fut>(&self, op: F) -> Option<T>
    where
        F: FnOnce(deadpool_redis::Connection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        if !self.is_up() {
            return None;
        }
        match self.try_run(op).await {
            Ok(v) => Some(v),
            Err(Failure::Unreachable(e)) => {
                self.mark_down(&e);
                None
            }
            Err(Failure::Refused(e)) => {
                // Redis answered, so it is up; this one command failed (a bug, or memory full).
                tracing::warn!(error = %e, "redis refused a command; carrying on without it");
                None
            }
        }
    }

    async fn try_run<T, F, Fut>(&self, op: F) -> Result<T, Failure>
    where
        F: FnOnce(deadpool_redis::Connection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let attempt = async {
            let conn = self.pool.get().await.map_err(|e| Failure::Unreachable(e.to_string()))?;
            op(conn).await.map_err(Failure::from)
        };
        tokio::time::timeout(OP_TIMEOUT, attempt).await.map_err(|_| Failure::Unreachable("timed out".into()))?
    }

    /// Records that Redis stopped answering; logs only on the transition.
    pub fn mark_down(&self, error: &dyn std::fmt::Display) {
        if self.up.swap(false, Ordering::AcqRel) {
            tracing::error!(
                error = %error,
                "redis unavailable: serving from this node only (no cache, local rate limits and presence, \
                 broadcasts to local sockets) until it returns"
            );
        }
    }

    async fn read_cache_epoch(&self) -> Result<u64, ClusterError> {
        let key = self.key("cache:epoch");
        let epoch: Option<u64> = self
            .try_run(|mut c| async move { redis::cmd("GET").arg(&key).query_async(&mut c).await })
            .await
            .map_err(|e| ClusterError::Pool(e.to_string()))?;
        Ok(epoch.unwrap_or(0))
    }

    /// One check: both the pool and the pub/sub connection answer a PING.
    async fn check(&self) -> Result<(), String> {
        self.try_run(|mut c| async move { redis::cmd("PING").query_async::<()>(&mut c).await })
            .await
            .map_err(|e| e.to_string())?;
        self.pubsub.ping().await
    }

    /// Redis answered again: fresh cache epoch, then tell presence to re-register.
    async fn recover(&self) -> Result<(), String> {
        let key = self.key("cache:epoch");
        let epoch: u64 = self
            .try_run(|mut c| async move { redis::cmd("INCR").arg(&key).query_async(&mut c).await })
            .await
            .map_err(|e| e.to_string())?;
        self.cache_epoch.store(epoch, Ordering::Release);
        self.up.store(true, Ordering::Release);
        self.recovered.send_modify(|n| *n += 1);
        tracing::warn!("redis is back: cache, shared limits, presence and cross-node broadcasts resume");
        Ok(())
    }
}

/// Watches Redis for the life of the node: notices an outage even when no request does, and
/// a recovery, which nothing else would try.
async fn monitor(cluster: std::sync::Weak<Cluster>) {
    let mut tick = tokio::time::interval(CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(cluster) = cluster.upgrade() else { return };
        let was_up = cluster.is_up();
        match cluster.check().await {
            Err(e) if was_up => cluster.mark_down(&e),
            Ok(()) if !was_up => {
                if let Err(e) = cluster.recover().await {
                    tracing::debug!(error = %e, "redis answered but recovery failed; retrying");
                }
            }
            Ok(()) => {
                // Keep the epoch in step with nodes that saw an outage this one did not.
                if let Ok(epoch) = cluster.read_cache_epoch().await {
                    cluster.cache_epoch.store(epoch, Ordering::Release);
                }
            }
            Err(_) => {}
        }
    }
}

/// The pub/sub driver needs RESP3 (push messages on a multiplexed connection).
fn with_resp3(url: &str) -> String {
    if url.contains("protocol=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&protocol=resp3")
    } else {
        format!("{url}?protocol=resp3")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resp3_is_added_once() {
        assert_eq!(with_resp3("redis://h:1"), "redis://h:1?protocol=resp3");
        assert_eq!(with_resp3("redis://h:1/0?x=1"), "redis://h:1/0?x=1&protocol=resp3");
        assert_eq!(with_resp3("redis://h?protocol=resp3"), "redis://h?protocol=resp3");
    }
}
