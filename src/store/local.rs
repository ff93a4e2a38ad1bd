//! Conversation lookups served from this process's memory for a short while.
//!
//! Every send, join and REST call looks its conversation up first. On SQLite that read is a
//! hop to a blocking thread and back on every message; on MongoDB a round trip. Held here for
//! `CONVERSATION_CACHE_TTL_MS`, the check on the send path costs a map lookup.
//!
//! Invalidation: every write made through this store that changes a conversation (update,
//! delete, participants, threads, summary, archiving, a message in a thread) drops the entry
//! once the write has returned, so this node never serves its own stale data. A lookup that
//! raced such a write does not store what it read: it keeps its result only if no write
//! happened between its start and its insert, checked under the entry's lock. Writes made
//! elsewhere (another node, a sibling service writing MongoDB) are seen once the entry
//! expires; `app` uses this cache only when the node runs alone (no Redis), since nodes that
//! share Redis share its cache and its invalidation instead.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use dashmap::DashMap;

use super::{ArchiveBatch, MessageChange, Page, Scope, SearchMethod, Store, StoreResult};
use crate::domain::attachment::StoredAttachment;
use crate::domain::audit::{AuditFilter, AuditRecord};
use crate::domain::time::Timestamp;
use crate::domain::{
    Conversation, ConversationChanges, ConversationFilter, Message, MessageSearch, SearchHit, Thread, ThreadScope,
};

/// Past this many entries, expired ones are swept out when another is added (at most once per TTL).
const SWEEP_ABOVE: usize = 50_000;

pub struct LocalConversationCache {
    inner: Arc<dyn Store>,
    ttl: Duration,
    entries: DashMap<String, (Conversation, Instant)>,
    /// Bumped by every write that invalidates; see the module docs.
    writes: AtomicU64,
    /// When expired entries were last swept out (ms since `created`): at most once per TTL, so
    /// that many live entries do not turn every insert into a walk of the whole map.
    last_sweep_ms: AtomicU64,
    created: Instant,
}

impl LocalConversationCache {
    pub fn new(inner: Arc<dyn Store>, ttl: Duration) -> Self {
        LocalConversationCache {
            inner,
            ttl,
            entries: DashMap::new(),
            writes: AtomicU64::new(0),
            last_sweep_ms: AtomicU64::new(0),
            created: Instant::now(),
        }
    }

    fn invalidate(&self, id: &str) {
        // Bumped before the removal: a lookup that inserts after this removal has seen the bump.
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.entries.remove(id);
    }

    fn cached(&self, id: &str) -> Option<Conversation> {
        let entry = self.entries.get(id)?;
        (entry.1.elapsed() < self.ttl).then(|| entry.0.clone())
    }

    fn remember(&self, conversation: &Conversation, writes_before: u64) {
        if self.entries.len() > SWEEP_ABOVE {
            let now_ms = self.created.elapsed().as_millis() as u64;
            let last = self.last_sweep_ms.load(Ordering::Relaxed);
            let due = now_ms.saturating_sub(last) >= self.ttl.as_millis() as u64;
            // One caller sweeps; the others go on.
            if due && self.last_sweep_ms.compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
                self.entries.retain(|_, (_, at)| at.elapsed() < self.ttl);
            }
        }
        // The check runs under the entry's lock, which `invalidate`'s removal also takes.
        let entry = self.entries.entry(conversation.id.clone());
        if self.writes.load(Ordering::SeqCst) == writes_before {
            entry.insert((conversation.clone(), Instant::now()));
        }
    }
}

fn in_scope(conversation: &Conversation, scope: Scope<'_>) -> bool {
    match scope {
        Scope::Company(company) => conversation.company_id == company,
        Scope::AnyCompany => true,
    }
}

#[async_trait]
impl Store for LocalConversationCache {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    async fn ping(&self) -> StoreResult<()> {
        self.inner.ping().await
    }
    async fn insert_conversation(&self, conversation: &Conversation) -> StoreResult<()> {
        self.inner.insert_conversation(conversation).await
    }
    async fn get_conversation(&self, scope: Scope<'_>, id: &str) -> StoreResult<Option<Conversation>> {
        if let Some(c) = self.cached(id) {
            return Ok(in_scope(&c, scope).then_some(c));
        }
        let writes_before = self.writes.load(Ordering::SeqCst);
        let found = self.inner.get_conversation(scope, id).await?;
        if let Some(c) = &found {
            self.remember(c, writes_before);
        }
        Ok(found)
    }
    async fn list_conversations(&self, filter: &ConversationFilter) -> StoreResult<Page<Conversation>> {
        self.inner.list_conversations(filter).await
    }
    async fn update_conversation(
        &self,
        scope: Scope<'_>,
        id: &str,
        changes: &ConversationChanges,
        at: Timestamp,
    ) -> StoreResult<Option<Conversation>> {
        let result = self.inner.update_conversation(scope, id, changes, at).await;
        self.invalidate(id);
        result
    }
    async fn delete_conversation(&self, scope: Scope<'_>, id: &str) -> StoreResult<bool> {
        let result = self.inner.delete_conversation(scope, id).await;
        self.invalidate(id);
        result
    }
    async fn set_participant(
        &self,
        scope: Scope<'_>,
        id: &str,
        user_id: &str,
        add: bool,
        at: Timestamp,
    ) -> StoreResult<Option<Conversation>> {
        let result = self.inner.set_participant(scope, id, user_id, add, at).await;
        self.invalidate(id);
        result
    }
    async fn add_thread(&self, scope: Scope<'_>, id: &str, thread: &Thread) -> StoreResult<Option<Conversation>> {
        let result = self.inner.add_thread(scope, id, thread).await;
        self.invalidate(id);
        result
    }
    async fn set_summary(&self, id: &str, summary: &str, at: Timestamp) -> StoreResult<()> {
        let result = self.inner.set_summary(id, summary, at).await;
        self.invalidate(id);
        result
    }
    async fn archive_inactive(
        &self,
        cutoff: Timestamp,
        at: Timestamp,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<ArchiveBatch> {
        let result = self.inner.archive_inactive(cutoff, at, after, limit).await;
        match &result {
            Ok(batch) => batch.archived.iter().for_each(|c| self.invalidate(&c.id)),
            // Which ones changed before the failure is unknown: forget them all.
            Err(_) => {
                self.writes.fetch_add(1, Ordering::SeqCst);
                self.entries.clear();
            }
        }
        result
    }
    async fn insert_message(&self, message: &Message) -> StoreResult<Option<u64>> {
        let result = self.inner.insert_message(message).await;
        // A thread's message count is part of its conversation.
        if message.thread_id.is_some() {
            self.invalidate(&message.conversation_id);
        }
        result
    }
    async fn get_message(&self, conversation_id: &str, id: &str) -> StoreResult<Option<Message>> {
        self.inner.get_message(conversation_id, id).await
    }
    async fn list_messages(
        &self,
        conversation_id: &str,
        scope: &ThreadScope,
        limit: u32,
        offset: u64,
    ) -> StoreResult<Page<Message>> {
        self.inner.list_messages(conversation_id, scope, limit, offset).await
    }
    async fn messages_after(
        &self,
        conversation_id: &str,
        thread: Option<&ThreadScope>,
        after: &str,
        limit: u32,
    ) -> StoreResult<Option<Page<Message>>> {
        self.inner.messages_after(conversation_id, thread, after, limit).await
    }
    async fn recent_messages(&self, conversation_id: &str, limit: u32) -> StoreResult<Vec<Message>> {
        self.inner.recent_messages(conversation_id, limit).await
    }
    async fn count_messages(&self, conversation_id: &str) -> StoreResult<u64> {
        self.inner.count_messages(conversation_id).await
    }
    async fn update_message(&self, conversation_id: &str, id: &str, change: &MessageChange) -> StoreResult<Option<Message>> {
        self.inner.update_message(conversation_id, id, change).await
    }
    async fn soft_delete_message(&self, conversation_id: &str, id: &str, at: Timestamp) -> StoreResult<bool> {
        self.inner.soft_delete_message(conversation_id, id, at).await
    }
    async fn list_company_messages(
        &self,
        company_id: &str,
        limit: u32,
        from: Option<Timestamp>,
        to: Option<Timestamp>,
    ) -> StoreResult<Page<Message>> {
        self.inner.list_company_messages(company_id, limit, from, to).await
    }

    // Search, attachment records and the audit trail touch no conversation: passed through.

    fn search_method(&self) -> SearchMethod {
        self.inner.search_method()
    }

    async fn search_messages(&self, search: &MessageSearch) -> StoreResult<Vec<SearchHit>> {
        self.inner.search_messages(search).await
    }

    async fn insert_attachment(&self, attachment: &StoredAttachment) -> StoreResult<()> {
        self.inner.insert_attachment(attachment).await
    }

    async fn get_attachment(&self, id: &str) -> StoreResult<Option<StoredAttachment>> {
        self.inner.get_attachment(id).await
    }

    async fn delete_attachment(&self, id: &str) -> StoreResult<bool> {
        self.inner.delete_attachment(id).await
    }

    async fn delete_conversation_attachments(&self, conversation_id: &str) -> StoreResult<u64> {
        self.inner.delete_conversation_attachments(conversation_id).await
    }

    async fn insert_audit_records(&self, records: &[AuditRecord]) -> StoreResult<()> {
        self.inner.insert_audit_records(records).await
    }

    async fn list_audit_records(&self, filter: &AuditFilter) -> StoreResult<Vec<AuditRecord>> {
        self.inner.list_audit_records(filter).await
    }

    async fn delete_audit_records_before(&self, cutoff: Timestamp, limit: u32) -> StoreResult<u64> {
        self.inner.delete_audit_records_before(cutoff, limit).await
    }
}
