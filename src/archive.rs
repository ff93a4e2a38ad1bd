//! The periodic sweeps over stored data, each run in rounds by `periodic` (one node per round
//! with Redis). Both are harmless when repeated, so without Redis every node runs every round:
//! just repeated work (several SQLite nodes on one machine, say, each scan the same file).
//! - Archiving (`ARCHIVE_AFTER_DAYS`, `ARCHIVE_INTERVAL_MS`): conversations without an update
//!   or a message for longer than the age are archived; a conversation is archived and
//!   announced by one node only.
//! - Audit retention (`AUDIT_RETENTION_DAYS`, `AUDIT_RETENTION_INTERVAL_MS`): audit records
//!   older than the age are deleted; deleting what is already deleted does nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cluster::Cluster;
use crate::domain::time::now;
use crate::periodic::Rounds;
use crate::service::ChatService;

/// What a sweep does to the data older than its age.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sweep {
    ArchiveInactiveConversations,
    DeleteExpiredAuditRecords,
}

impl Sweep {
    /// Names the job in the Redis round keys (`periodic::Rounds::job`).
    fn job(self) -> &'static str {
        match self {
            Sweep::ArchiveInactiveConversations => "archive",
            Sweep::DeleteExpiredAuditRecords => "audit-retention",
        }
    }

    /// Names it in its log lines (`archive round`, `audit retention round`).
    fn label(self) -> &'static str {
        match self {
            Sweep::ArchiveInactiveConversations => "archive",
            Sweep::DeleteExpiredAuditRecords => "audit retention",
        }
    }
}

pub struct SweepJob {
    pub sweep: Sweep,
    pub service: Arc<ChatService>,
    pub cluster: Option<Arc<Cluster>>,
    /// What is older than this is swept.
    pub age: Duration,
    pub interval: Duration,
}

impl SweepJob {
    /// Runs the job for the life of the process.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tracing::info!(
            age_days = self.age.as_secs() / 86_400,
            interval_ms = self.interval.as_millis() as u64,
            "{} job scheduled",
            self.sweep.label()
        );
        let rounds = Rounds { job: self.sweep.job(), cluster: self.cluster.clone(), interval: self.interval };
        let job = Arc::new(self);
        rounds.spawn(move |slot| {
            let job = job.clone();
            async move { job.round(slot).await }
        })
    }

    async fn round(&self, slot: u64) {
        let started = Instant::now();
        let Ok(age) = chrono::Duration::from_std(self.age) else { return };
        let cutoff = now() - age;
        let swept = match self.sweep {
            Sweep::ArchiveInactiveConversations => self.service.archive_inactive(cutoff).await.map(|n| n as u64),
            Sweep::DeleteExpiredAuditRecords => self.service.delete_expired_audit_records(cutoff).await,
        };
        let label = self.sweep.label();
        match swept {
            Ok(swept) => {
                tracing::info!(slot, swept, took_ms = started.elapsed().as_millis() as u64, "{label} round")
            }
            Err(e) => tracing::warn!(slot, error = %e, "{label} round failed; the next one tries again"),
        }
    }
}
