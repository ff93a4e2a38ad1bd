//! The periodic jobs over stored data. The archive job (`ARCHIVE_AFTER_DAYS`,
//! `ARCHIVE_INTERVAL_MS`): once per interval, conversations without an update or a message for longer than the threshold are archived.
//! One node per round with Redis (`periodic`); without it every node runs every round, which
//! is harmless, since archiving is idempotent and a conversation is archived and announced by
//! one node only, just repeated work (several SQLite nodes on one machine, say, each scan the
//! same file).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cluster::Cluster;
use crate::domain::time::now;
use crate::periodic::Rounds;
use crate::service::ChatService;

pub struct ArchiveJob {
    pub service: Arc<ChatService>,
    pub cluster: Option<Arc<Cluster>>,
    /// Inactivity after which a conversation is archived.
    pub after: Duration,
    pub interval: Duration,
}

impl ArchiveJob {
    /// Runs the job for the life of the process.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tracing::info!(
            after_days = self.after.as_secs() / 86_400,
            interval_ms = self.interval.as_millis() as u64,
            "archive job scheduled"
        );
        let rounds = Rounds { job: "archive", cluster: self.cluster.clone(), interval: self.interval };
        let job = Arc::new(self);
        rounds.spawn(move |slot| {
            let job = job.clone();
            async move { job.round(slot).await }
        })
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

/// The audit retention job (`AUDIT_RETENTION_DAYS`, `AUDIT_RETENTION_INTERVAL_MS`): once per
/// interval, on one node with Redis, audit records older than the retention are deleted.
/// Deleting what is already deleted does nothing, so rounds on several nodes are harmless too.
pub struct AuditRetentionJob {
    pub service: Arc<ChatService>,
    pub cluster: Option<Arc<Cluster>>,
    pub keep: Duration,
    pub interval: Duration,
}

impl AuditRetentionJob {
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tracing::info!(
            keep_days = self.keep.as_secs() / 86_400,
            interval_ms = self.interval.as_millis() as u64,
            "audit retention job scheduled"
        );
        let rounds = Rounds { job: "audit-retention", cluster: self.cluster.clone(), interval: self.interval };
        let job = Arc::new(self);
        rounds.spawn(move |slot| {
            let job = job.clone();
            async move { job.round(slot).await }
        })
    }

    async fn round(&self, slot: u64) {
        let started = Instant::now();
        let Ok(keep) = chrono::Duration::from_std(self.keep) else { return };
        match self.service.delete_expired_audit_records(now() - keep).await {
            Ok(deleted) => {
                tracing::info!(slot, deleted, took_ms = started.elapsed().as_millis() as u64, "audit retention round")
            }
            Err(e) => tracing::warn!(slot, error = %e, "audit retention round failed; the next one tries again"),
        }
    }
}
