//! Persistence. `Store` is the one interface the service layer talks to; `sqlite` (the
//! embedded default) and `mongo` (production, shared with sibling services) implement it;
//! `cached` puts a Redis read cache in front of either, `local` keeps conversations in a
//! lone node's memory, `metered` times what reaches them.
//!
//! The trait is shaped for both: ids are 24-hex strings, every conversation read is scoped by
//! company (or explicitly unscoped for the internal API), and the operations that race between
//! writers (thread counts, reactions, participants, metadata merges) are single store calls so
//! each backend can make them atomic.

pub mod cached;
pub mod local;
pub mod metered;
pub mod mongo;
pub mod sqlite;

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::domain::attachment::StoredAttachment;
use crate::domain::audit::{AuditFilter, AuditRecord};
use crate::domain::time::Timestamp;
use crate::domain::{
    Conversation, ConversationChanges, ConversationFilter, Message, MessageSearch, SearchHit, ThreadScope, Thread,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached right now; callers answer 503 and retry later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A stored document could not be read as the contract says it should be.
    #[error("corrupt document: {0}")]
    Corrupt(String),
    #[error("store error: {0}")]
    Other(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Which company a conversation lookup is confined to. Only the internal API (authenticated
/// by the service token) looks conversations up across companies.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    Company(&'a str),
    AnyCompany,
}

/// A page of results and the total number matching.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
}

/// One step of the archive scan (`Store::archive_inactive`).
#[derive(Debug, Clone, Default)]
pub struct ArchiveBatch {
    /// The conversations this step archived, as they are now.
    pub archived: Vec<Conversation>,
    /// Where the next step continues (the last conversation this one looked at); `None` when
    /// the scan is complete.
    pub next: Option<String>,
}

/// How a store carries out message search, as `/health` reports it (README "Search").
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SearchMethod {
    /// SQLite's FTS5 index, ranked by BM25.
    Fts5,
    /// MongoDB's text index and `$text`, ranked by text score.
    Text,
    /// MongoDB without `$text`: case-insensitive regular expressions of the escaped words,
    /// checked word for word, newest first.
    Regex,
}

/// How a message's metadata changes in one atomic store call.
#[derive(Debug, Clone)]
pub enum MessageChange {
    /// New content (already validated and sanitized), stamping `metadata.edited_at`.
    Content { content: String, edited_at: Timestamp },
    /// Sets `metadata.read_at` unless already set.
    MarkRead { at: Timestamp },
    /// Toggles `user_id`'s `emoji` in `metadata.reactions`; `None` removes all of theirs.
    Reaction { user_id: String, emoji: Option<String>, at: Timestamp },
    /// Sets each key under `metadata` (enrichment such as intent and sentiment).
    MergeMetadata(Map<String, Value>),
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Name of the backend for `/health` and logs.
    fn kind(&self) -> &'static str;
    /// Cheap round trip proving the store answers.
    async fn ping(&self) -> StoreResult<()>;

    async fn insert_conversation(&self, conversation: &Conversation) -> StoreResult<()>;
    async fn get_conversation(&self, scope: Scope<'_>, id: &str) -> StoreResult<Option<Conversation>>;
    /// Newest `started_at` first.
    async fn list_conversations(&self, filter: &ConversationFilter) -> StoreResult<Page<Conversation>>;
    /// Applies the changes and bumps `updated_at`; `None` when no such conversation in scope.
    async fn update_conversation(
        &self,
        scope: Scope<'_>,
        id: &str,
        changes: &ConversationChanges,
        at: Timestamp,
    ) -> StoreResult<Option<Conversation>>;
    /// Deletes the conversation and all its messages; false when not found in scope.
    async fn delete_conversation(&self, scope: Scope<'_>, id: &str) -> StoreResult<bool>;
    /// Adds (or with `add == false` removes) a participant; idempotent.
    async fn set_participant(
        &self,
        scope: Scope<'_>,
        id: &str,
        user_id: &str,
        add: bool,
        at: Timestamp,
    ) -> StoreResult<Option<Conversation>>;
    async fn add_thread(&self, scope: Scope<'_>, id: &str, thread: &Thread) -> StoreResult<Option<Conversation>>;
    async fn set_summary(&self, id: &str, summary: &str, at: Timestamp) -> StoreResult<()>;
    /// One step of archiving, across companies: looks at up to `limit` conversations that are
    /// not archived and were last updated before `cutoff`, in id order after `after`, and sets
    /// those without a message created since `cutoff` to `archived` with `updated_at = at`.
    /// Idempotent, so nodes that overlap do no harm: a conversation is archived (and
    /// returned) by one call only.
    async fn archive_inactive(
        &self,
        cutoff: Timestamp,
        at: Timestamp,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<ArchiveBatch>;

    /// Stores a message; when it belongs to a thread, that thread's `message_count` goes up by
    /// one in the same call and the new count is returned.
    async fn insert_message(&self, message: &Message) -> StoreResult<Option<u64>>;
    /// A message that is not deleted.
    async fn get_message(&self, conversation_id: &str, id: &str) -> StoreResult<Option<Message>>;
    /// The newest `limit` messages after skipping `offset` newer ones, returned oldest first.
    async fn list_messages(
        &self,
        conversation_id: &str,
        scope: &ThreadScope,
        limit: u32,
        offset: u64,
    ) -> StoreResult<Page<Message>>;
    /// Catch-up: the messages that come after message `after` in listing order (`created_at`,
    /// then id), oldest first, at most `limit`; `total` counts every one after it. `thread`
    /// narrows them like `list_messages`; `None` takes every thread, as a member of the room
    /// receives them. The anchor may be any message of the conversation, also a deleted one (a
    /// client may have seen it before it went); `None` when the conversation has no such
    /// message. Deleted messages are never returned.
    async fn messages_after(
        &self,
        conversation_id: &str,
        thread: Option<&ThreadScope>,
        after: &str,
        limit: u32,
    ) -> StoreResult<Option<Page<Message>>>;
    /// The newest `limit` messages of a conversation (any thread), oldest first.
    async fn recent_messages(&self, conversation_id: &str, limit: u32) -> StoreResult<Vec<Message>>;
    async fn count_messages(&self, conversation_id: &str) -> StoreResult<u64>;
    async fn update_message(
        &self,
        conversation_id: &str,
        id: &str,
        change: &MessageChange,
    ) -> StoreResult<Option<Message>>;
    /// Marks a message deleted (`metadata.deleted_at`); it stays stored for the audit trail.
    async fn soft_delete_message(&self, conversation_id: &str, id: &str, at: Timestamp) -> StoreResult<bool>;
    /// Messages of every conversation of a company, newest first, within optional dates.
    async fn list_company_messages(
        &self,
        company_id: &str,
        limit: u32,
        from: Option<Timestamp>,
        to: Option<Timestamp>,
    ) -> StoreResult<Page<Message>>;

    // ---- Message search (README "Search") ----

    /// How `search_messages` works on this store right now.
    fn search_method(&self) -> SearchMethod;
    /// Messages matching the search, best first (a higher score, then a higher id), at most
    /// `limit`, never a deleted one, all within the search's company.
    async fn search_messages(&self, search: &MessageSearch) -> StoreResult<Vec<SearchHit>>;

    // Uploaded files' records (the bytes are in `crate::files`), in their own table or
    // collection `attachments`.

    async fn insert_attachment(&self, attachment: &StoredAttachment) -> StoreResult<()>;
    /// Any company's: the caller checks that the principal may read its conversation.
    async fn get_attachment(&self, id: &str) -> StoreResult<Option<StoredAttachment>>;
    /// False when there was no such record.
    async fn delete_attachment(&self, id: &str) -> StoreResult<bool>;
    /// Removes the records of a conversation's files; returns how many there were.
    async fn delete_conversation_attachments(&self, conversation_id: &str) -> StoreResult<u64>;

    // The audit trail (`audit_log`): appended in batches, read per company, pruned by age.

    /// Appends records, in one write.
    async fn insert_audit_records(&self, records: &[AuditRecord]) -> StoreResult<()>;
    /// Newest first (`at`, then id), at most `filter.limit`.
    async fn list_audit_records(&self, filter: &AuditFilter) -> StoreResult<Vec<AuditRecord>>;
    /// Deletes up to `limit` records older than `cutoff`; returns how many.
    async fn delete_audit_records_before(&self, cutoff: Timestamp, limit: u32) -> StoreResult<u64>;
}
