//! Archiving: conversations nobody has touched for a while get the status `archived`, and
//! their rooms hear it as any status change (`conversation:updated`).

use super::events::{self, raw, ConversationUpdated};
use super::{ChatService, On, ServiceResult};
use crate::domain::audit::{ActorKind, AuditAction};
use crate::domain::time::{now, Timestamp};

/// Conversations looked at per store call; bounds how long one call holds the SQLite writer.
const BATCH: u32 = 500;

impl ChatService {
    /// Archives every conversation, in every company, whose last update and last message are
    /// both older than `cutoff`. Returns how many it archived. Idempotent: what another node
    /// archived meanwhile is neither archived nor announced twice.
    pub async fn archive_inactive(&self, cutoff: Timestamp) -> ServiceResult<usize> {
        let at = now();
        let mut after: Option<String> = None;
        let mut archived = 0;
        loop {
            let batch = self.store.archive_inactive(cutoff, at, after.as_deref(), BATCH).await?;
            for c in &batch.archived {
                self.auditor.record_as(
                    ActorKind::System,
                    Some("archive-job".into()),
                    AuditAction::ConversationArchive,
                    Some(&c.company_id),
                    On::conversation(&c.id),
                );
                let payload = raw(&ConversationUpdated { conversation_id: &c.id, conversation: c });
                self.emit(&c.id, events::CONVERSATION_UPDATED, &payload).await;
            }
            archived += batch.archived.len();
            match batch.next {
                Some(next) => after = Some(next),
                None => return Ok(archived),
            }
        }
    }
}

/// Audit records deleted per store call.
const AUDIT_BATCH: u32 = 5_000;

impl ChatService {
    /// Deletes every audit record older than `cutoff`, in bounded steps; returns how many.
    pub async fn delete_expired_audit_records(&self, cutoff: Timestamp) -> ServiceResult<u64> {
        let mut deleted = 0;
        loop {
            let n = self.store.delete_audit_records_before(cutoff, AUDIT_BATCH).await?;
            deleted += n;
            if n < AUDIT_BATCH as u64 {
                return Ok(deleted);
            }
        }
    }
}
