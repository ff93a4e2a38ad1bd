//! A read cache in Redis in front of any `Store`, shared by every node: conversation lookups
//! (done on every send, join and REST call) and message pages.
//!
//! Invalidation is by generation: each conversation has a counter in Redis that is part of
//! the key of everything cached about it, and every write that changes the conversation or
//! its messages bumps it, on whichever node the write happened. A reader that fetched the
//! counter before a concurrent write stores its result under the old generation, where no
//! one looks again, so a stale page is never served after a write has returned. Entries also
//! expire on their own (`CACHE_TTL_MS`): sibling services write the same MongoDB collections
//! directly, and their writes show up once the entry expires. While Redis is down the cache
//! is simply skipped.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{ArchiveBatch, MessageChange, Page, Scope, SearchMethod, Store, StoreResult};
use crate::cluster::Cluster;
use crate::metrics::{CacheEntry, Metrics};
use crate::domain::attachment::StoredAttachment;
use crate::domain::audit::{AuditFilter, AuditRecord};
use crate::domain::time::Timestamp;
use crate::domain::{
    Attachment, Channel, Conversation, ConversationChanges, ConversationFilter, Message, MessageSearch, MessageType, Role,
    SearchHit, SenderType, Status, Thread, ThreadScope,
};

/// Generation counters outlive every entry written under them.
const GENERATION_TTL: Duration = Duration::from_secs(86_400);

/// Reads a conversation's generation and the entry cached under it, in one round trip.
/// KEYS: generation key. ARGV: entry key before the generation, entry key after it.
const READ_SCRIPT: &str = r"
local g = redis.call('GET', KEYS[1]) or '0'
return {g, redis.call('GET', ARGV[1] .. g .. ARGV[2])}
";

pub struct CachedStore {
    inner: Arc<dyn Store>,
    cluster: Arc<Cluster>,
    /// How long an entry lives without being invalidated.
    entry_ttl: Duration,
    read_script: redis::Script,
    metrics: Arc<Metrics>,
}

impl CachedStore {
    pub fn new(inner: Arc<dyn Store>, cluster: Arc<Cluster>, entry_ttl: Duration, metrics: Arc<Metrics>) -> Self {
        CachedStore { inner, cluster, entry_ttl, read_script: redis::Script::new(READ_SCRIPT), metrics }
    }

    fn generation_key(&self, conversation_id: &str) -> String {
        self.cluster.key(&format!("cache:gen:{conversation_id}"))
    }

    /// The entry key around its generation: `(before, after)`.
    fn entry_key(&self, conversation_id: &str, what: &str) -> (String, String) {
        let before = self.cluster.key(&format!("cache:{}:{conversation_id}:", self.cluster.cache_epoch()));
        (before, format!(":{what}"))
    }

    /// The cached value and the generation it was read at; `None` when Redis is unavailable.
    async fn read<T: for<'de> Deserialize<'de>>(&self, conversation_id: &str, what: &str) -> Option<(String, Option<T>)> {
        let generation_key = self.generation_key(conversation_id);
        let (before, after) = self.entry_key(conversation_id, what);
        let script = &self.read_script;
        let (generation, raw): (String, Option<Vec<u8>>) = self
            .cluster
            .run(|mut c| async move { script.key(generation_key).arg(before).arg(after).invoke_async(&mut c).await })
            .await?;
        let value = raw.and_then(|bytes| serde_json::from_slice(&bytes).ok());
        Some((generation, value))
    }

    async fn fill<T: Serialize>(&self, conversation_id: &str, what: &str, generation: &str, value: &T) {
        let Ok(bytes) = serde_json::to_vec(value) else { return };
        let (before, after) = self.entry_key(conversation_id, what);
        let key = format!("{before}{generation}{after}");
        let ttl_ms = (self.entry_ttl.as_millis() as u64).max(1);
        let _: Option<()> = self
            .cluster
            .run(|mut c| async move { redis::cmd("SET").arg(key).arg(bytes).arg("PX").arg(ttl_ms).query_async(&mut c).await })
            .await;
    }

    /// Makes everything cached about the conversation unreachable, on every node.
    async fn invalidate(&self, conversation_id: &str) {
        let key = self.generation_key(conversation_id);
        let ttl_ms = GENERATION_TTL.as_millis() as u64;
        let _: Option<()> = self
            .cluster
            .run(|mut c| async move { redis::pipe().incr(&key, 1).ignore().pexpire(&key, ttl_ms as i64).ignore().query_async(&mut c).await })
            .await;
    }
}

fn scope_allows(scope: Scope<'_>, c: &Conversation) -> bool {
    match scope {
        Scope::Company(company) => c.company_id == company,
        Scope::AnyCompany => true,
    }
}

fn page_key(scope: &ThreadScope, limit: u32, offset: u64) -> String {
    match scope {
        ThreadScope::Main => format!("msgs:main:{limit}:{offset}"),
        ThreadScope::Thread(t) => format!("msgs:t:{t}:{limit}:{offset}"),
    }
}

#[async_trait]
impl Store for CachedStore {
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
        let Some((generation, cached)) = self.read::<CachedConversation>(id, "conv").await else {
            return self.inner.get_conversation(scope, id).await;
        };
        self.metrics.cache_lookup(CacheEntry::Conversation, cached.is_some());
        let conversation = match cached {
            Some(CachedConversation(c)) => c,
            None => {
                // Cached whatever the caller's scope, then checked against it like a store read.
                let Some(c) = self.inner.get_conversation(Scope::AnyCompany, id).await? else { return Ok(None) };
                self.fill(id, "conv", &generation, &CachedConversation(c.clone())).await;
                c
            }
        };
        Ok(scope_allows(scope, &conversation).then_some(conversation))
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
        let result = self.inner.update_conversation(scope, id, changes, at).await?;
        self.invalidate(id).await;
        Ok(result)
    }

    async fn delete_conversation(&self, scope: Scope<'_>, id: &str) -> StoreResult<bool> {
        let result = self.inner.delete_conversation(scope, id).await?;
        self.invalidate(id).await;
        Ok(result)
    }

    async fn set_participant(
        &self,
        scope: Scope<'_>,
        id: &str,
        user_id: &str,
        add: bool,
        at: Timestamp,
    ) -> StoreResult<Option<Conversation>> {
        let result = self.inner.set_participant(scope, id, user_id, add, at).await?;
        self.invalidate(id).await;
        Ok(result)
    }

    async fn add_thread(&self, scope: Scope<'_>, id: &str, thread: &Thread) -> StoreResult<Option<Conversation>> {
        let result = self.inner.add_thread(scope, id, thread).await?;
        self.invalidate(id).await;
        Ok(result)
    }

    async fn set_summary(&self, id: &str, summary: &str, at: Timestamp) -> StoreResult<()> {
        self.inner.set_summary(id, summary, at).await?;
        self.invalidate(id).await;
        Ok(())
    }

    async fn archive_inactive(
        &self,
        cutoff: Timestamp,
        at: Timestamp,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<ArchiveBatch> {
        let batch = self.inner.archive_inactive(cutoff, at, after, limit).await?;
        for c in &batch.archived {
            self.invalidate(&c.id).await;
        }
        Ok(batch)
    }

    async fn insert_message(&self, message: &Message) -> StoreResult<Option<u64>> {
        let result = self.inner.insert_message(message).await?;
        // Thread counts live on the conversation, pages list the message: both change.
        self.invalidate(&message.conversation_id).await;
        Ok(result)
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
        let what = page_key(scope, limit, offset);
        let Some((generation, cached)) = self.read::<CachedPage>(conversation_id, &what).await else {
            return self.inner.list_messages(conversation_id, scope, limit, offset).await;
        };
        self.metrics.cache_lookup(CacheEntry::MessagePage, cached.is_some());
        if let Some(page) = cached {
            return Ok(page.into());
        }
        let page = self.inner.list_messages(conversation_id, scope, limit, offset).await?;
        self.fill(conversation_id, &what, &generation, &CachedPage::from(&page)).await;
        Ok(page)
    }

    /// Not cached. Each client asks from its own last message, so entries would seldom be
    /// read twice, and a catch-up must also see messages other services wrote straight into
    /// MongoDB, which no generation bump announces.
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
        let result = self.inner.update_message(conversation_id, id, change).await?;
        self.invalidate(conversation_id).await;
        Ok(result)
    }

    async fn soft_delete_message(&self, conversation_id: &str, id: &str, at: Timestamp) -> StoreResult<bool> {
        let result = self.inner.soft_delete_message(conversation_id, id, at).await?;
        self.invalidate(conversation_id).await;
        Ok(result)
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

    // Search results are not cached: every write anywhere in the company could change them.
    fn search_method(&self) -> SearchMethod {
        self.inner.search_method()
    }

    async fn search_messages(&self, search: &MessageSearch) -> StoreResult<Vec<SearchHit>> {
        self.inner.search_messages(search).await
    }

    // Attachment records and the audit trail are not cached: each is read rarely, and by one caller.

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

// The cache's own encoding of the domain types: every field, exactly, so a cached value
// reads back equal to what the store returned (the contract JSON drops absent fields and
// renames some, so it is not used here).

#[derive(Serialize, Deserialize)]
#[serde(remote = "Conversation")]
struct ConversationFields {
    id: String,
    agent_id: String,
    company_id: String,
    contact_id: Option<String>,
    user_id: Option<String>,
    participants: Vec<String>,
    title: Option<String>,
    channel: Channel,
    status: Status,
    started_at: Timestamp,
    ended_at: Option<Timestamp>,
    tags: Vec<String>,
    metadata: Map<String, Value>,
    threads: Vec<Thread>,
    summary: Option<String>,
    created_at: Timestamp,
    updated_at: Timestamp,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "Message")]
struct MessageFields {
    id: String,
    conversation_id: String,
    thread_id: Option<String>,
    sender_type: SenderType,
    sender_id: String,
    role: Role,
    content: String,
    message_type: MessageType,
    attachments: Vec<Attachment>,
    ai_metadata: Option<Map<String, Value>>,
    metadata: Map<String, Value>,
    created_at: Timestamp,
}

#[derive(Serialize, Deserialize)]
struct CachedConversation(#[serde(with = "ConversationFields")] Conversation);

#[derive(Serialize, Deserialize)]
struct CachedMessage(#[serde(with = "MessageFields")] Message);

#[derive(Serialize, Deserialize)]
struct CachedPage {
    items: Vec<CachedMessage>,
    total: u64,
}

impl From<&Page<Message>> for CachedPage {
    fn from(page: &Page<Message>) -> Self {
        CachedPage { items: page.items.iter().cloned().map(CachedMessage).collect(), total: page.total }
    }
}

impl From<CachedPage> for Page<Message> {
    fn from(page: CachedPage) -> Self {
        Page { items: page.items.into_iter().map(|m| m.0).collect(), total: page.total }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::time::from_millis;

    #[test]
    fn cached_values_read_back_equal() {
        let t = from_millis(1_700_000_000_123);
        let c = Conversation {
            id: "a".repeat(24),
            agent_id: "agent".into(),
            company_id: "co".into(),
            contact_id: None,
            user_id: Some("u".into()),
            participants: vec!["u".into()],
            title: Some("T".into()),
            channel: Channel::Chat,
            status: Status::Active,
            started_at: t,
            ended_at: None,
            tags: vec!["x".into()],
            metadata: Map::new(),
            threads: vec![Thread { id: "t1".into(), title: "th".into(), created_at: t, message_count: 3 }],
            summary: None,
            created_at: t,
            updated_at: t,
        };
        let json = serde_json::to_vec(&CachedConversation(c.clone())).unwrap();
        let back: CachedConversation = serde_json::from_slice(&json).unwrap();
        assert_eq!(back.0, c);
        assert!(scope_allows(Scope::Company("co"), &c));
        assert!(!scope_allows(Scope::Company("other"), &c));
    }

    #[test]
    fn page_keys_differ_by_scope_and_window() {
        assert_ne!(page_key(&ThreadScope::Main, 50, 0), page_key(&ThreadScope::Thread("main".into()), 50, 0));
        assert_ne!(page_key(&ThreadScope::Main, 50, 0), page_key(&ThreadScope::Main, 50, 1));
    }
}
