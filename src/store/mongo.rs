//! The production store: MongoDB, sharing the `conversations` and `messages` collections with
//! the sibling services that use them through Mongoose.
//!
//! Documents are written the way those Mongoose models write them (ObjectId `_id`, BSON dates,
//! `createdAt`/`updatedAt`/`__v` on conversations, `created_at` on messages, thread
//! subdocuments with their own `_id`) and read tolerantly (either timestamp spelling, ids
//! stored as strings or ObjectIds, `thread_id: null` as the main thread). Every change that
//! races between writers is one server-side update (`$inc`, `$addToSet`, `$pull`, dotted
//! `$set`), never a read-modify-write. The driver reconnects on its own; while the server is
//! away, calls fail with `StoreError::Unavailable` and the service answers 503.
//!
//! Message search (`search`) uses `$text` when start-up finds the server supports it, and
//! escaped regular expressions otherwise; `search_method` says which.

mod convert;
mod records;
mod search;

use std::sync::atomic::{AtomicBool, Ordering};

use std::time::Duration;

use async_trait::async_trait;
use bson::oid::ObjectId;
use bson::{doc, Bson, Document};
use futures_util::TryStreamExt;
use mongodb::error::ErrorKind;
use mongodb::options::{ClientOptions, FindOptions, IndexOptions, ReturnDocument};
use mongodb::{Client, Collection, Database, IndexModel};

use super::{ArchiveBatch, MessageChange, Page, Scope, SearchMethod, Store, StoreError, StoreResult};
use crate::domain::attachment::StoredAttachment;
use crate::domain::audit::{AuditFilter, AuditRecord};
use crate::domain::time::Timestamp;
use crate::domain::{
    Conversation, ConversationChanges, ConversationFilter, Message, MessageSearch, SearchHit, SearchQuery, Thread, ThreadScope,
};
use convert::{
    bson_date, conversation_from_doc, conversation_to_doc, json_to_bson, message_from_doc, message_to_doc, object_id, thread_to_doc,
};

/// The database the deployed services use when the URI names none.
pub const DEFAULT_DATABASE: &str = "syntera";

pub struct MongoStore {
    db: Database,
    conversations: Collection<Document>,
    messages: Collection<Document>,
    /// Start-up found that the text index and `$text` work; until then, and when they do not,
    /// search uses the regex fallback.
    text_search: AtomicBool,
    /// Attachment records and the audit trail.
    records: records::Records,
}

/// Connection settings, from configuration.
pub struct MongoSettings<'a> {
    pub uri: &'a str,
    /// The database when the URI names none.
    pub database: Option<&'a str>,
    pub pool_size: u32,
    pub timeout: Duration,
}

impl MongoStore {
    /// Parses the URI and builds the client. No round trip happens here: the driver connects
    /// lazily, so the service starts even while the database is still coming up.
    pub async fn connect(settings: &MongoSettings<'_>) -> StoreResult<Self> {
        let mut options = ClientOptions::parse(settings.uri)
            .await
            .map_err(|e| StoreError::Other(format!("MONGODB_URI: {e}")))?;
        options.app_name.get_or_insert_with(|| "chat-service".to_string());
        options.max_pool_size = Some(settings.pool_size);
        options.connect_timeout = Some(settings.timeout);
        options.server_selection_timeout = Some(settings.timeout);
        let database = options
            .default_database
            .clone()
            .or_else(|| settings.database.map(str::to_string))
            .unwrap_or_else(|| DEFAULT_DATABASE.to_string());
        let client = Client::with_options(options).map_err(map_err)?;
        let db = client.database(&database);
        Ok(MongoStore {
            conversations: db.collection("conversations"),
            messages: db.collection("messages"),
            records: records::Records::new(&db),
            db,
            text_search: AtomicBool::new(false),
        })
    }

    /// Creates the contract's indexes. Idempotent; names are left to the server so they match
    /// the ones Mongoose creates for the same keys.
    pub async fn ensure_indexes(&self) -> StoreResult<()> {
        let index = |keys: Document| IndexModel::builder().keys(keys).build();
        self.messages
            .create_indexes([
                index(doc! { "conversation_id": 1, "created_at": 1 }),
                index(doc! { "conversation_id": 1, "thread_id": 1, "created_at": 1 }),
            ])
            .await
            .map_err(map_err)?;
        self.conversations
            .create_indexes([
                index(doc! { "company_id": 1, "status": 1, "started_at": -1 }),
                index(doc! { "company_id": 1, "channel": 1, "started_at": -1 }),
                index(doc! { "company_id": 1, "started_at": -1 }),
                index(doc! { "contact_id": 1, "started_at": -1 }),
                index(doc! { "tags": 1 }),
            ])
            .await
            .map_err(map_err)?;
        self.records.ensure_indexes().await?;
        self.detect_text_search().await;
        Ok(())
    }

    /// Creates the text index on message content and proves `$text` answers; if either
    /// fails (a server without text search, or another text index already on the collection,
    /// which MongoDB allows only one of), search keeps the regex fallback.
    pub async fn detect_text_search(&self) -> SearchMethod {
        let index = IndexModel::builder()
            .keys(doc! { "content": "text" })
            .options(IndexOptions::builder().default_language(search::TEXT_INDEX_LANGUAGE.to_string()).build())
            .build();
        let probe = SearchQuery::parse("probe").expect("a word");
        let works = match self.messages.create_index(index).await {
            Err(e) => Err(format!("text index not created: {e}")),
            Ok(_) => self
                .messages
                .find_one(doc! { "$text": search::text_condition(&probe) })
                .await
                .map(|_| ())
                .map_err(|e| format!("$text query failed: {e}")),
        };
        if let Err(why) = &works {
            tracing::warn!(reason = %why, "MongoDB message search uses the regex fallback");
        }
        self.text_search.store(works.is_ok(), Ordering::Relaxed);
        self.search_method()
    }

    /// Every reference to the company's conversations a message may hold (hex string and
    /// ObjectId): messages carry no company, so this is how they are confined to one.
    async fn company_conversation_refs(&self, company_id: &str) -> StoreResult<Vec<Bson>> {
        let ids: Vec<Document> = self
            .conversations
            .find(doc! { "company_id": company_id })
            .projection(doc! { "_id": 1 })
            .await
            .map_err(map_err)?
            .try_collect()
            .await
            .map_err(map_err)?;
        Ok(ids
            .iter()
            .filter_map(|d| d.get_object_id("_id").ok())
            .flat_map(|oid| [Bson::String(oid.to_hex()), Bson::ObjectId(oid)])
            .collect())
    }

    /// The company's conversations with a live message that matches `query`.
    async fn conversations_with_matching_messages(&self, company_id: &str, query: &SearchQuery) -> StoreResult<Vec<ObjectId>> {
        let refs = self.company_conversation_refs(company_id).await?;
        if refs.is_empty() {
            return Ok(Vec::new());
        }
        let base = doc! { "conversation_id": { "$in": refs }, "metadata.deleted_at": Bson::Null };
        let mut found: Vec<ObjectId> = if self.text_search.load(Ordering::Relaxed) {
            let mut filter = base;
            filter.insert("$text", search::text_condition(query));
            let ids = self.messages.distinct("conversation_id", filter).await.map_err(map_err)?;
            ids.iter().filter_map(search::conversation_object_id).collect()
        } else {
            let filter = search::regex_candidates_filter(query, base, None)?;
            let mut cursor = self
                .messages
                .find(filter)
                .projection(doc! { "conversation_id": 1, "content": 1 })
                .await
                .map_err(map_err)?;
            let mut ids = Vec::new();
            while let Some(d) = cursor.try_next().await.map_err(map_err)? {
                if d.get_str("content").is_ok_and(|c| query.matches(c))
                    && let Some(oid) = d.get("conversation_id").and_then(search::conversation_object_id)
                {
                    ids.push(oid);
                }
            }
            ids
        };
        found.sort();
        found.dedup();
        Ok(found)
    }

    /// The regex fallback: candidates newest first, in batches, kept when every word and
    /// phrase is there as whole words, until `limit` hits.
    async fn search_by_regex(&self, s: &MessageSearch, base: Document) -> StoreResult<Vec<SearchHit>> {
        let batch = i64::from(s.limit.max(16) * 4);
        let mut after = s.after.clone();
        let mut hits = Vec::new();
        loop {
            let filter = search::regex_candidates_filter(&s.query, base.clone(), after.as_ref())?;
            let options = FindOptions::builder().sort(doc! { "created_at": -1, "_id": -1 }).limit(batch).build();
            let docs: Vec<Document> =
                self.messages.find(filter).with_options(options).await.map_err(map_err)?.try_collect().await.map_err(map_err)?;
            for d in &docs {
                let candidate = convert::message_from_doc(d)?;
                after = Some(crate::domain::SearchPosition {
                    score: candidate.created_at.timestamp_millis() as f64,
                    id: candidate.id.clone(),
                    seen: 0,
                });
                if let Some(hit) = search::hit_from_candidate(&s.query, d)? {
                    hits.push(hit);
                    if hits.len() == s.limit as usize {
                        return Ok(hits);
                    }
                }
            }
            if (docs.len() as i64) < batch {
                return Ok(hits);
            }
        }
    }

    /// Keeps trying to create the indexes until the server answers, so a database that is
    /// down at start-up gets its indexes once it is back.
    pub fn ensure_indexes_in_background(self: &std::sync::Arc<Self>) {
        let store = self.clone();
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(500);
            loop {
                match store.ensure_indexes().await {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "MongoDB indexes not created yet; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(30));
                    }
                }
            }
        });
    }

    /// A conversation by id within `scope`, as a filter.
    fn conversation_filter(scope: Scope<'_>, id: &str) -> StoreResult<Document> {
        let mut filter = doc! { "_id": object_id(id)? };
        if let Scope::Company(company) = scope {
            filter.insert("company_id", company);
        }
        Ok(filter)
    }

    /// Applies `update` to one conversation in scope and returns it as it is afterwards.
    async fn update_and_return(&self, filter: Document, update: Document) -> StoreResult<Option<Conversation>> {
        let updated = self
            .conversations
            .find_one_and_update(filter, update)
            .return_document(ReturnDocument::After)
            .await
            .map_err(map_err)?;
        updated.map(|d| conversation_from_doc(&d)).transpose()
    }

    async fn find_messages(&self, filter: Document, options: FindOptions) -> StoreResult<Vec<Message>> {
        let docs: Vec<Document> =
            self.messages.find(filter).with_options(options).await.map_err(map_err)?.try_collect().await.map_err(map_err)?;
        docs.iter().map(message_from_doc).collect()
    }

    fn message_filter(conversation_id: &str, id: &str) -> StoreResult<Document> {
        Ok(doc! {
            "_id": object_id(id)?,
            "conversation_id": id_either(conversation_id),
            "metadata.deleted_at": Bson::Null,
        })
    }
}

/// Matches a reference stored either as a hex string (what this service and the shared
/// models write) or as an ObjectId (what a model declaring `Schema.Types.ObjectId` writes).
fn id_either(id: &str) -> Bson {
    match ObjectId::parse_str(id) {
        Ok(oid) => Bson::Document(doc! { "$in": [id, oid] }),
        Err(_) => Bson::String(id.to_string()),
    }
}

/// Main thread: `thread_id` missing or null (`null` matches both).
fn thread_filter(scope: &ThreadScope) -> Bson {
    match scope {
        ThreadScope::Main => Bson::Null,
        ThreadScope::Thread(t) => Bson::String(t.clone()),
    }
}

/// Case-insensitive "contains" on user text, with every regex metacharacter escaped. Used
/// instead of `$text` so the search also works on servers without text indexes.
fn contains_regex(q: &str) -> Bson {
    let mut escaped = String::with_capacity(q.len() * 2);
    for ch in q.chars() {
        if "\\^$.|?*+()[]{}/-".contains(ch) {
            escaped.push('\\');
        }
        escaped.push(ch);
    }
    Bson::RegularExpression(bson::Regex { pattern: escaped, options: "i".to_string() })
}

/// Network trouble and server selection timeouts mean "try again later" (503); anything
/// else is a failed operation.
fn map_err(e: mongodb::error::Error) -> StoreError {
    match e.kind.as_ref() {
        ErrorKind::ServerSelection { .. } | ErrorKind::Io(_) | ErrorKind::ConnectionPoolCleared { .. } => {
            StoreError::Unavailable(e.to_string())
        }
        _ if e.contains_label("RetryableWriteError") || e.contains_label("TransientTransactionError") => {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Other(e.to_string()),
    }
}

#[async_trait]
impl Store for MongoStore {
    fn kind(&self) -> &'static str {
        "mongodb"
    }

    async fn ping(&self) -> StoreResult<()> {
        self.db.run_command(doc! { "ping": 1 }).await.map(|_| ()).map_err(map_err)
    }

    async fn insert_conversation(&self, conversation: &Conversation) -> StoreResult<()> {
        self.conversations.insert_one(conversation_to_doc(conversation)?).await.map(|_| ()).map_err(map_err)
    }

    async fn get_conversation(&self, scope: Scope<'_>, id: &str) -> StoreResult<Option<Conversation>> {
        let filter = Self::conversation_filter(scope, id)?;
        let found = self.conversations.find_one(filter).await.map_err(map_err)?;
        found.map(|d| conversation_from_doc(&d)).transpose()
    }

    async fn list_conversations(&self, f: &ConversationFilter) -> StoreResult<Page<Conversation>> {
        let mut filter = doc! { "company_id": &f.company_id };
        if let Some(s) = f.status {
            filter.insert("status", s.as_str());
        }
        if let Some(c) = f.channel {
            filter.insert("channel", c.as_str());
        }
        if let Some(v) = &f.contact_id {
            filter.insert("contact_id", v);
        }
        if let Some(v) = &f.agent_id {
            filter.insert("agent_id", v);
        }
        if let Some(v) = &f.tag {
            filter.insert("tags", v);
        }
        if let Some(v) = &f.participant {
            filter.insert("participants", v);
        }
        if let Some(q) = &f.q {
            let re = contains_regex(q);
            let mut any = vec![doc! { "title": re.clone() }, doc! { "summary": re.clone() }, doc! { "tags": re }];
            if let Some(words) = SearchQuery::parse(q) {
                let ids = self.conversations_with_matching_messages(&f.company_id, &words).await?;
                if !ids.is_empty() {
                    any.push(doc! { "_id": { "$in": ids } });
                }
            }
            filter.insert("$or", any);
        }
        let mut range = Document::new();
        if let Some(t) = f.started_from {
            range.insert("$gte", bson_date(&t));
        }
        if let Some(t) = f.started_to {
            range.insert("$lte", bson_date(&t));
        }
        if !range.is_empty() {
            filter.insert("started_at", range);
        }
        let total = self.conversations.count_documents(filter.clone()).await.map_err(map_err)?;
        let docs: Vec<Document> = self
            .conversations
            .find(filter)
            .sort(doc! { "started_at": -1, "_id": -1 })
            .skip(f.offset)
            .limit(i64::from(f.limit))
            .await
            .map_err(map_err)?
            .try_collect()
            .await
            .map_err(map_err)?;
        let items = docs.iter().map(conversation_from_doc).collect::<StoreResult<_>>()?;
        Ok(Page { items, total })
    }

    async fn update_conversation(
        &self,
        scope: Scope<'_>,
        id: &str,
        changes: &ConversationChanges,
        at: Timestamp,
    ) -> StoreResult<Option<Conversation>> {
        let mut set = doc! { "updatedAt": bson_date(&at) };
        let mut unset = Document::new();
        if let Some(s) = changes.status {
            set.insert("status", s.as_str());
        }
        if let Some(t) = &changes.tags {
            set.insert("tags", t.clone());
        }
        if let Some(t) = &changes.title {
            set.insert("title", t.clone());
        }
        match changes.ended_at {
            Some(Some(t)) => {
                set.insert("ended_at", bson_date(&t));
            }
            Some(None) => {
                unset.insert("ended_at", "");
            }
            None => {}
        }
        if let Some(m) = &changes.metadata {
            if changes.merge_metadata {
                // One `$set` per key: concurrent merges of different keys all survive.
                for (k, v) in m {
                    set.insert(format!("metadata.{k}"), json_to_bson(v));
                }
            } else {
                set.insert("metadata", json_to_bson(&serde_json::Value::Object(m.clone())));
            }
        }
        let mut update = doc! { "$set": set };
        if !unset.is_empty() {
            update.insert("$unset", unset);
        }
        self.update_and_return(Self::conversation_filter(scope, id)?, update).await
    }

    async fn delete_conversation(&self, scope: Scope<'_>, id: &str) -> StoreResult<bool> {
        let deleted = self.conversations.delete_one(Self::conversation_filter(scope, id)?).await.map_err(map_err)?;
        if deleted.deleted_count == 0 {
            return Ok(false);
        }
        self.messages.delete_many(doc! { "conversation_id": id_either(id) }).await.map_err(map_err)?;
        Ok(true)
    }

    async fn set_participant(
        &self,
        scope: Scope<'_>,
        id: &str,
        user_id: &str,
        add: bool,
        at: Timestamp,
    ) -> StoreResult<Option<Conversation>> {
        let op = if add { "$addToSet" } else { "$pull" };
        let update = doc! { op: { "participants": user_id }, "$set": { "updatedAt": bson_date(&at) } };
        self.update_and_return(Self::conversation_filter(scope, id)?, update).await
    }

    async fn add_thread(&self, scope: Scope<'_>, id: &str, thread: &Thread) -> StoreResult<Option<Conversation>> {
        let update = doc! {
            "$push": { "threads": thread_to_doc(thread) },
            "$set": { "updatedAt": bson_date(&thread.created_at) },
        };
        self.update_and_return(Self::conversation_filter(scope, id)?, update).await
    }

    async fn set_summary(&self, id: &str, summary: &str, at: Timestamp) -> StoreResult<()> {
        let filter = Self::conversation_filter(Scope::AnyCompany, id)?;
        let update = doc! { "$set": { "summary": summary, "updatedAt": bson_date(&at) } };
        self.conversations.update_one(filter, update).await.map(|_| ()).map_err(map_err)
    }

    async fn archive_inactive(
        &self,
        cutoff: Timestamp,
        at: Timestamp,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<ArchiveBatch> {
        let cutoff = bson_date(&cutoff);
        let at = bson_date(&at);
        // Last updated before the cutoff, in either spelling (the Mongoose one wins, as when
        // reading). A date stored other than as a BSON date never matches: such a conversation
        // is left alone rather than archived on a guess.
        let idle = doc! {
            "status": { "$ne": "archived" },
            "$or": [
                { "updatedAt": { "$lt": cutoff.clone() } },
                { "updatedAt": { "$exists": false }, "updated_at": { "$lt": cutoff.clone() } },
            ],
        };
        let mut scan = idle.clone();
        if let Some(after) = after {
            scan.insert("_id", doc! { "$gt": object_id(after)? });
        }
        let candidates: Vec<ObjectId> = self
            .conversations
            .find(scan)
            .projection(doc! { "_id": 1 })
            .sort(doc! { "_id": 1 })
            .limit(i64::from(limit))
            .await
            .map_err(map_err)?
            .try_collect::<Vec<Document>>()
            .await
            .map_err(map_err)?
            .iter()
            .filter_map(|d| d.get_object_id("_id").ok())
            .collect();
        let next = (candidates.len() == limit as usize).then(|| candidates.last().map(|oid| oid.to_hex())).flatten();
        if candidates.is_empty() {
            return Ok(ArchiveBatch { archived: Vec::new(), next });
        }
        // Conversations with a message since the cutoff are active, whichever way the message
        // refers to them and spells its creation time.
        let refs: Vec<Bson> = candidates.iter().flat_map(|oid| [Bson::String(oid.to_hex()), Bson::ObjectId(*oid)]).collect();
        let recent = doc! {
            "conversation_id": { "$in": refs },
            "$or": [{ "created_at": { "$gte": cutoff.clone() } }, { "createdAt": { "$gte": cutoff.clone() } }],
        };
        let active: Vec<Bson> = self.messages.distinct("conversation_id", recent).await.map_err(map_err)?;
        let active: std::collections::HashSet<String> = active
            .iter()
            .filter_map(|v| match v {
                Bson::String(s) => Some(s.clone()),
                Bson::ObjectId(oid) => Some(oid.to_hex()),
                _ => None,
            })
            .collect();
        let stale: Vec<ObjectId> = candidates.into_iter().filter(|oid| !active.contains(&oid.to_hex())).collect();
        if stale.is_empty() {
            return Ok(ArchiveBatch { archived: Vec::new(), next });
        }
        // Checked again in the update, so an update made since the scan keeps its conversation
        // active. A message stored in the moment between the check above and this update does
        // not: that conversation is archived as it receives a message after `cutoff` of quiet.
        let mut filter = idle;
        filter.insert("_id", doc! { "$in": stale.clone() });
        self.conversations
            .update_many(filter, doc! { "$set": { "status": "archived", "updatedAt": at.clone() } })
            .await
            .map_err(map_err)?;
        // This call's `updatedAt` tells its conversations from any other node archived.
        let docs: Vec<Document> = self
            .conversations
            .find(doc! { "_id": { "$in": stale }, "status": "archived", "updatedAt": at })
            .sort(doc! { "_id": 1 })
            .await
            .map_err(map_err)?
            .try_collect()
            .await
            .map_err(map_err)?;
        let archived = docs.iter().map(conversation_from_doc).collect::<StoreResult<_>>()?;
        Ok(ArchiveBatch { archived, next })
    }

    async fn insert_message(&self, message: &Message) -> StoreResult<Option<u64>> {
        self.messages.insert_one(message_to_doc(message)?).await.map_err(map_err)?;
        let Some(thread_id) = &message.thread_id else { return Ok(None) };
        // The positional `$inc` is atomic on the server, so concurrent sends never lose a
        // count. The count is then read back: under concurrency it may already include later
        // sends, which is what the room should see anyway.
        let conversation = object_id(&message.conversation_id)?;
        let filter = doc! { "_id": conversation, "threads.id": thread_id };
        self.conversations
            .update_one(filter.clone(), doc! { "$inc": { "threads.$.message_count": 1_i64 } })
            .await
            .map_err(map_err)?;
        let found = self
            .conversations
            .find_one(filter)
            .projection(doc! { "threads": 1 })
            .await
            .map_err(map_err)?;
        let count = found.as_ref().and_then(|d| convert::thread_count(d, thread_id));
        Ok(count.or(Some(1)))
    }

    async fn get_message(&self, conversation_id: &str, id: &str) -> StoreResult<Option<Message>> {
        let found = self.messages.find_one(Self::message_filter(conversation_id, id)?).await.map_err(map_err)?;
        found.map(|d| message_from_doc(&d)).transpose()
    }

    async fn list_messages(
        &self,
        conversation_id: &str,
        scope: &ThreadScope,
        limit: u32,
        offset: u64,
    ) -> StoreResult<Page<Message>> {
        let filter = doc! {
            "conversation_id": id_either(conversation_id),
            "thread_id": thread_filter(scope),
            "metadata.deleted_at": Bson::Null,
        };
        let total = self.messages.count_documents(filter.clone()).await.map_err(map_err)?;
        let options = FindOptions::builder()
            .sort(doc! { "created_at": -1, "_id": -1 })
            .skip(offset)
            .limit(i64::from(limit))
            .build();
        let mut items = self.find_messages(filter, options).await?;
        items.reverse();
        Ok(Page { items, total })
    }

    async fn messages_after(
        &self,
        conversation_id: &str,
        thread: Option<&ThreadScope>,
        after: &str,
        limit: u32,
    ) -> StoreResult<Option<Page<Message>>> {
        let after = object_id(after)?;
        // Deleted or not: a client may have seen the anchor before it was deleted.
        let anchor = self
            .messages
            .find_one(doc! { "_id": after, "conversation_id": id_either(conversation_id) })
            .projection(doc! { "created_at": 1 })
            .await
            .map_err(map_err)?;
        let Some(anchor) = anchor else { return Ok(None) };
        // The stored value itself, so the comparison is the one the listing's sort makes.
        let anchor_at = anchor.get("created_at").cloned().unwrap_or(Bson::Null);
        let mut filter = doc! {
            "conversation_id": id_either(conversation_id),
            "metadata.deleted_at": Bson::Null,
            // The listing's order, (created_at, _id), continued past the anchor.
            "$or": [
                { "created_at": { "$gt": anchor_at.clone() } },
                { "created_at": anchor_at, "_id": { "$gt": after } },
            ],
        };
        if let Some(scope) = thread {
            filter.insert("thread_id", thread_filter(scope));
        }
        let total = self.messages.count_documents(filter.clone()).await.map_err(map_err)?;
        let options = FindOptions::builder().sort(doc! { "created_at": 1, "_id": 1 }).limit(i64::from(limit)).build();
        let items = self.find_messages(filter, options).await?;
        Ok(Some(Page { items, total }))
    }

    async fn recent_messages(&self, conversation_id: &str, limit: u32) -> StoreResult<Vec<Message>> {
        let filter = doc! { "conversation_id": id_either(conversation_id), "metadata.deleted_at": Bson::Null };
        let options = FindOptions::builder().sort(doc! { "created_at": -1, "_id": -1 }).limit(i64::from(limit)).build();
        let mut items = self.find_messages(filter, options).await?;
        items.reverse();
        Ok(items)
    }

    async fn count_messages(&self, conversation_id: &str) -> StoreResult<u64> {
        let filter = doc! { "conversation_id": id_either(conversation_id), "metadata.deleted_at": Bson::Null };
        self.messages.count_documents(filter).await.map_err(map_err)
    }

    async fn update_message(
        &self,
        conversation_id: &str,
        id: &str,
        change: &MessageChange,
    ) -> StoreResult<Option<Message>> {
        let filter = Self::message_filter(conversation_id, id)?;
        match change {
            MessageChange::Content { content, edited_at } => {
                let update = doc! { "$set": { "content": content, "metadata.edited_at": bson_date(edited_at) } };
                self.messages.update_one(filter.clone(), update).await.map_err(map_err)?;
            }
            MessageChange::MarkRead { at } => {
                // Only the first read counts.
                let mut first_read = filter.clone();
                first_read.insert("metadata.read_at", Bson::Null);
                let update = doc! { "$set": { "metadata.read_at": bson_date(at) } };
                self.messages.update_one(first_read, update).await.map_err(map_err)?;
            }
            MessageChange::Reaction { user_id, emoji: None, .. } => {
                let update = doc! { "$pull": { "metadata.reactions": { "user_id": user_id } } };
                self.messages.update_one(filter.clone(), update).await.map_err(map_err)?;
            }
            MessageChange::Reaction { user_id, emoji: Some(emoji), at } => {
                // A toggle as two conditional single-document updates: remove it if present,
                // otherwise add it. Each is atomic, so concurrent reactors never overwrite
                // each other's entries.
                let mine = doc! { "user_id": user_id, "emoji": emoji };
                let mut has_it = filter.clone();
                has_it.insert("metadata.reactions", doc! { "$elemMatch": mine.clone() });
                let removed = self
                    .messages
                    .update_one(has_it, doc! { "$pull": { "metadata.reactions": mine.clone() } })
                    .await
                    .map_err(map_err)?;
                if removed.matched_count == 0 {
                    let mut lacks_it = filter.clone();
                    lacks_it.insert("metadata.reactions", doc! { "$not": { "$elemMatch": mine } });
                    let entry = doc! { "emoji": emoji, "user_id": user_id, "created_at": bson_date(at) };
                    self.messages
                        .update_one(lacks_it, doc! { "$push": { "metadata.reactions": entry } })
                        .await
                        .map_err(map_err)?;
                }
            }
            MessageChange::MergeMetadata(map) => {
                if !map.is_empty() {
                    let mut set = Document::new();
                    for (k, v) in map {
                        set.insert(format!("metadata.{k}"), json_to_bson(v));
                    }
                    self.messages.update_one(filter.clone(), doc! { "$set": set }).await.map_err(map_err)?;
                }
            }
        }
        let found = self.messages.find_one(filter).await.map_err(map_err)?;
        found.map(|d| message_from_doc(&d)).transpose()
    }

    async fn soft_delete_message(&self, conversation_id: &str, id: &str, at: Timestamp) -> StoreResult<bool> {
        let filter = Self::message_filter(conversation_id, id)?;
        let update = doc! { "$set": { "metadata.deleted_at": bson_date(&at) } };
        let result = self.messages.update_one(filter, update).await.map_err(map_err)?;
        Ok(result.modified_count > 0)
    }

    async fn list_company_messages(
        &self,
        company_id: &str,
        limit: u32,
        from: Option<Timestamp>,
        to: Option<Timestamp>,
    ) -> StoreResult<Page<Message>> {
        // Messages carry no company: find the company's conversations first (an index-only
        // projection), then their messages.
        let refs = self.company_conversation_refs(company_id).await?;
        if refs.is_empty() {
            return Ok(Page { items: Vec::new(), total: 0 });
        }
        let mut filter = doc! { "conversation_id": { "$in": refs }, "metadata.deleted_at": Bson::Null };
        let mut range = Document::new();
        if let Some(t) = from {
            range.insert("$gte", bson_date(&t));
        }
        if let Some(t) = to {
            range.insert("$lte", bson_date(&t));
        }
        if !range.is_empty() {
            filter.insert("created_at", range);
        }
        let total = self.messages.count_documents(filter.clone()).await.map_err(map_err)?;
        let options = FindOptions::builder().sort(doc! { "created_at": -1, "_id": -1 }).limit(i64::from(limit)).build();
        let items = self.find_messages(filter, options).await?;
        Ok(Page { items, total })
    }

    // ---- Message search (README "Search") ----

    fn search_method(&self) -> SearchMethod {
        if self.text_search.load(Ordering::Relaxed) { SearchMethod::Text } else { SearchMethod::Regex }
    }

    async fn search_messages(&self, s: &MessageSearch) -> StoreResult<Vec<SearchHit>> {
        let conversations = match &s.conversation_id {
            Some(cid) => {
                let in_company = doc! { "_id": object_id(cid)?, "company_id": &s.company_id };
                if self.conversations.count_documents(in_company).await.map_err(map_err)? == 0 {
                    return Ok(Vec::new());
                }
                id_either(cid)
            }
            None => {
                let refs = self.company_conversation_refs(&s.company_id).await?;
                if refs.is_empty() {
                    return Ok(Vec::new());
                }
                Bson::Document(doc! { "$in": refs })
            }
        };
        let base = search::base_filter(s, conversations);
        if !self.text_search.load(Ordering::Relaxed) {
            return self.search_by_regex(s, base).await;
        }
        let pipeline = search::text_search_pipeline(s, base)?;
        let docs: Vec<Document> =
            self.messages.aggregate(pipeline).await.map_err(map_err)?.try_collect().await.map_err(map_err)?;
        docs.into_iter().map(search::hit_from_text_result).collect()
    }

    async fn insert_attachment(&self, attachment: &StoredAttachment) -> StoreResult<()> {
        self.records.insert_attachment(attachment).await
    }

    async fn get_attachment(&self, id: &str) -> StoreResult<Option<StoredAttachment>> {
        self.records.get_attachment(id).await
    }

    async fn delete_attachment(&self, id: &str) -> StoreResult<bool> {
        self.records.delete_attachment(id).await
    }

    async fn delete_conversation_attachments(&self, conversation_id: &str) -> StoreResult<u64> {
        self.records.delete_conversation_attachments(conversation_id).await
    }

    async fn insert_audit_records(&self, records: &[AuditRecord]) -> StoreResult<()> {
        self.records.insert_audit_records(records).await
    }

    async fn list_audit_records(&self, filter: &AuditFilter) -> StoreResult<Vec<AuditRecord>> {
        self.records.list_audit_records(filter).await
    }

    async fn delete_audit_records_before(&self, cutoff: Timestamp, limit: u32) -> StoreResult<u64> {
        self.records.delete_audit_records_before(cutoff, limit).await
    }
}
