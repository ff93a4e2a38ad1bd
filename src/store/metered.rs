//! Times every operation of a store (`chat_store_operation_duration_seconds`). It wraps the
//! database itself, under the read cache, so the figures are the database's: a cache hit never
//! reaches it, and a miss shows up as the operation it falls through to.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::{ArchiveBatch, MessageChange, Page, Scope, SearchMethod, Store, StoreResult};
use crate::domain::attachment::StoredAttachment;
use crate::domain::audit::{AuditFilter, AuditRecord};
use crate::domain::time::Timestamp;
use crate::domain::{
    Conversation, ConversationChanges, ConversationFilter, Message, MessageSearch, SearchHit, Thread, ThreadScope,
};
use crate::metrics::histogram::Histogram;
use crate::metrics::{Metrics, StoreOp};

pub struct MeteredStore {
    inner: Arc<dyn Store>,
    /// In `StoreOp` order.
    timings: [Histogram; StoreOp::COUNT],
}

impl MeteredStore {
    pub fn new(inner: Arc<dyn Store>, metrics: &Metrics) -> Self {
        let timings = metrics.store_operations(inner.kind());
        MeteredStore { inner, timings }
    }

    fn done(&self, op: StoreOp, started: Instant) {
        self.timings[op as usize].record_since(started);
    }
}

/// Runs one call of the inner store and records how long it took, whatever it answered.
macro_rules! timed {
    ($self:ident, $op:ident, $call:expr) => {{
        let started = Instant::now();
        let result = $call.await;
        $self.done(StoreOp::$op, started);
        result
    }};
}

#[async_trait]
impl Store for MeteredStore {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    async fn ping(&self) -> StoreResult<()> {
        timed!(self, Ping, self.inner.ping())
    }

    async fn insert_conversation(&self, conversation: &Conversation) -> StoreResult<()> {
        timed!(self, InsertConversation, self.inner.insert_conversation(conversation))
    }

    async fn get_conversation(&self, scope: Scope<'_>, id: &str) -> StoreResult<Option<Conversation>> {
        timed!(self, GetConversation, self.inner.get_conversation(scope, id))
    }

    async fn list_conversations(&self, filter: &ConversationFilter) -> StoreResult<Page<Conversation>> {
        timed!(self, ListConversations, self.inner.list_conversations(filter))
    }

    async fn update_conversation(
        &self,
        scope: Scope<'_>,
        id: &str,
        changes: &ConversationChanges,
        at: Timestamp,
    ) -> StoreResult<Option<Conversation>> {
        timed!(self, UpdateConversation, self.inner.update_conversation(scope, id, changes, at))
    }

    async fn delete_conversation(&self, scope: Scope<'_>, id: &str) -> StoreResult<bool> {
        timed!(self, DeleteConversation, self.inner.delete_conversation(scope, id))
    }

    async fn set_participant(
        &self,
        scope: Scope<'_>,
        id: &str,
        user_id: &str,
        add: bool,
        at: Timestamp,
    ) -> StoreResult<Option<Conversation>> {
        timed!(self, SetParticipant, self.inner.set_participant(scope, id, user_id, add, at))
    }

    async fn add_thread(&self, scope: Scope<'_>, id: &str, thread: &Thread) -> StoreResult<Option<Conversation>> {
        timed!(self, AddThread, self.inner.add_thread(scope, id, thread))
    }

    async fn set_summary(&self, id: &str, summary: &str, at: Timestamp) -> StoreResult<()> {
        timed!(self, SetSummary, self.inner.set_summary(id, summary, at))
    }

    async fn insert_message(&self, message: &Message) -> StoreResult<Option<u64>> {
        timed!(self, InsertMessage, self.inner.insert_message(message))
    }

    async fn get_message(&self, conversation_id: &str, id: &str) -> StoreResult<Option<Message>> {
        timed!(self, GetMessage, self.inner.get_message(conversation_id, id))
    }

    async fn list_messages(
        &self,
        conversation_id: &str,
        scope: &ThreadScope,
        limit: u32,
        offset: u64,
    ) -> StoreResult<Page<Message>> {
        timed!(self, ListMessages, self.inner.list_messages(conversation_id, scope, limit, offset))
    }

    async fn messages_after(
        &self,
        conversation_id: &str,
        thread: Option<&ThreadScope>,
        after: &str,
        limit: u32,
    ) -> StoreResult<Option<Page<Message>>> {
        timed!(self, MessagesAfter, self.inner.messages_after(conversation_id, thread, after, limit))
    }

    async fn archive_inactive(
        &self,
        cutoff: Timestamp,
        at: Timestamp,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<ArchiveBatch> {
        timed!(self, ArchiveInactive, self.inner.archive_inactive(cutoff, at, after, limit))
    }

    async fn recent_messages(&self, conversation_id: &str, limit: u32) -> StoreResult<Vec<Message>> {
        timed!(self, RecentMessages, self.inner.recent_messages(conversation_id, limit))
    }

    async fn count_messages(&self, conversation_id: &str) -> StoreResult<u64> {
        timed!(self, CountMessages, self.inner.count_messages(conversation_id))
    }

    async fn update_message(&self, conversation_id: &str, id: &str, change: &MessageChange) -> StoreResult<Option<Message>> {
        timed!(self, UpdateMessage, self.inner.update_message(conversation_id, id, change))
    }

    async fn soft_delete_message(&self, conversation_id: &str, id: &str, at: Timestamp) -> StoreResult<bool> {
        timed!(self, SoftDeleteMessage, self.inner.soft_delete_message(conversation_id, id, at))
    }

    async fn list_company_messages(
        &self,
        company_id: &str,
        limit: u32,
        from: Option<Timestamp>,
        to: Option<Timestamp>,
    ) -> StoreResult<Page<Message>> {
        timed!(self, ListCompanyMessages, self.inner.list_company_messages(company_id, limit, from, to))
    }

    fn search_method(&self) -> SearchMethod {
        self.inner.search_method()
    }

    async fn search_messages(&self, search: &MessageSearch) -> StoreResult<Vec<SearchHit>> {
        timed!(self, SearchMessages, self.inner.search_messages(search))
    }

    async fn insert_attachment(&self, attachment: &StoredAttachment) -> StoreResult<()> {
        timed!(self, InsertAttachment, self.inner.insert_attachment(attachment))
    }

    async fn get_attachment(&self, id: &str) -> StoreResult<Option<StoredAttachment>> {
        timed!(self, GetAttachment, self.inner.get_attachment(id))
    }

    async fn delete_attachment(&self, id: &str) -> StoreResult<bool> {
        timed!(self, DeleteAttachment, self.inner.delete_attachment(id))
    }

    async fn delete_conversation_attachments(&self, conversation_id: &str) -> StoreResult<u64> {
        timed!(self, DeleteConversationAttachments, self.inner.delete_conversation_attachments(conversation_id))
    }

    async fn insert_audit_records(&self, records: &[AuditRecord]) -> StoreResult<()> {
        timed!(self, InsertAuditRecords, self.inner.insert_audit_records(records))
    }

    async fn list_audit_records(&self, filter: &AuditFilter) -> StoreResult<Vec<AuditRecord>> {
        timed!(self, ListAuditRecords, self.inner.list_audit_records(filter))
    }

    async fn delete_audit_records_before(&self, cutoff: Timestamp, limit: u32) -> StoreResult<u64> {
        timed!(self, DeleteAuditRecordsBefore, self.inner.delete_audit_records_before(cutoff, limit))
    }
}
