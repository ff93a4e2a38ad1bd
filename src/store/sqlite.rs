//! The embedded store: one SQLite file under `DATA_DIR`, WAL mode, so a fresh checkout runs
//! with no database server.
//!
//! All writes go through one writer thread. It drains whatever jobs are queued and commits
//! them in a single transaction (each job in its own savepoint, so one failing job does not
//! undo the others); callers get their answer only after the commit. Under load this turns
//! thousands of message inserts into a handful of fsyncs. Reads run on a small pool of
//! read-only connections, which WAL lets proceed while the writer works. Because there is one
//! writer, read-modify-write inside a job (thread counters, reactions) is atomic.
//!
//! Message search uses an FTS5 index (`messages_fts`, schema version 2) holding each live
//! message's searchable text under the message's rowid. New messages reach it in batches, and
//! every search first waits for the batch that covers what was stored before it (see
//! `search_index`); edits and deletes of indexed messages change it in the message's own job.

mod records;
mod search_index;

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{params, params_from_iter, Connection, OpenFlags, OptionalExtension, Row};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::{ArchiveBatch, MessageChange, Page, Scope, SearchMethod, Store, StoreError, StoreResult};
use crate::domain::attachment::StoredAttachment;
use crate::domain::audit::{AuditFilter, AuditRecord};
use crate::domain::time::{from_millis, Timestamp};
use crate::domain::{
    toggle_reaction, Channel, Conversation, ConversationChanges, ConversationFilter, Message,
    MessageSearch, MessageType, Reaction, Role, SearchHit, SearchQuery, SenderType, Status, Thread, ThreadScope,
};

/// Most jobs committed in one transaction; bounds the latency a large batch adds.
const MAX_BATCH: usize = 512;
const READERS: usize = 4;

type Reply = Box<dyn FnOnce(StoreResult<()>) + Send>;
type Job = Box<dyn FnOnce(&Connection) -> Reply + Send>;

pub struct SqliteStore {
    writer: mpsc::Sender<Job>,
    readers: Arc<ReaderPool>,
    search_index: search_index::Progress,
}

struct ReaderPool {
    connections: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

const SCHEMA_V1: &str = r#"
CREATE TABLE conversations (
    id TEXT PRIMARY KEY,
    company_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    contact_id TEXT,
    user_id TEXT,
    participants TEXT NOT NULL DEFAULT '[]',
    title TEXT,
    channel TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    ended_at INTEGER,
    tags TEXT NOT NULL DEFAULT '[]',
    metadata TEXT NOT NULL DEFAULT '{}',
    threads TEXT NOT NULL DEFAULT '[]',
    summary TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX conversations_company_started ON conversations (company_id, started_at DESC);
CREATE INDEX conversations_company_status ON conversations (company_id, status, started_at DESC);
CREATE INDEX conversations_company_channel ON conversations (company_id, channel, started_at DESC);
CREATE INDEX conversations_contact ON conversations (contact_id, started_at DESC);
CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    thread_id TEXT,
    sender_type TEXT NOT NULL,
    sender_id TEXT NOT NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    message_type TEXT NOT NULL,
    attachments TEXT NOT NULL DEFAULT '[]',
    ai_metadata TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX messages_conversation_created ON messages (conversation_id, created_at);
CREATE INDEX messages_conversation_thread_created ON messages (conversation_id, thread_id, created_at);
"#;

/// The search index. Contentless (the text lives in `messages`), with deletes by rowid; the
/// tokenizer keeps diacritics so that matching agrees with `SearchQuery::matches`.
const SCHEMA_V2: &str = r#"
CREATE VIRTUAL TABLE messages_fts USING fts5(
    text, content = '', contentless_delete = 1, tokenize = 'unicode61 remove_diacritics 0'
);
"#;

impl SqliteStore {
    /// Opens (creating and migrating if needed) `chat.db` under `data_dir`.
    pub fn open(data_dir: &Path) -> StoreResult<Self> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", data_dir.display())))?;
        let path = data_dir.join("chat.db");
        let writer_conn = Connection::open(&path).map_err(unavailable)?;
        writer_conn
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;",
            )
            .map_err(unavailable)?;
        migrate(&writer_conn)?;
        records::create_tables(&writer_conn)?;

        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let c = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .map_err(unavailable)?;
            c.execute_batch("PRAGMA busy_timeout = 5000;").map_err(unavailable)?;
            readers.push(c);
        }

        let (tx, rx) = mpsc::channel::<Job>(8192);
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run_writer(writer_conn, rx))
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(SqliteStore {
            writer: tx,
            readers: Arc::new(ReaderPool { connections: Mutex::new(readers), permits: Semaphore::new(READERS) }),
            search_index: search_index::Progress::new(),
        })
    }

    /// Brings the search index up to every message stored before this call (read-your-writes
    /// for search); a no-op when nothing was stored since the last catch-up.
    async fn search_ready(&self) -> StoreResult<()> {
        if let Some(count) = self.search_index.needs_catch_up() {
            self.write(search_index::catch_up).await?;
            self.search_index.caught_up(count);
        }
        Ok(())
    }

    /// Runs `f` inside the writer's current batch transaction and answers after the commit.
    async fn write<R, F>(&self, f: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
    {
        self.queue_write(f).await?.await
    }

    /// Queues `f` for the writer; the returned future answers after the commit. Jobs commit in
    /// the order they were queued.
    async fn queue_write<R, F>(&self, f: F) -> StoreResult<impl Future<Output = StoreResult<R>> + use<R, F>>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<StoreResult<R>>();
        let job: Job = Box::new(move |conn| {
            let result = in_savepoint(conn, f);
            Box::new(move |commit: StoreResult<()>| {
                let _ = tx.send(commit.and(result));
            })
        });
        self.writer.send(job).await.map_err(|_| StoreError::Unavailable("sqlite writer stopped".into()))?;
        Ok(async { rx.await.map_err(|_| StoreError::Unavailable("sqlite writer stopped".into()))? })
    }

    async fn read<R, F>(&self, f: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
    {
        let _permit = self.readers.permits.acquire().await.map_err(|_| StoreError::Unavailable("closed".into()))?;
        let pool = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let conn = pool.connections.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let conn = conn.ok_or_else(|| StoreError::Other("no reader connection".into()))?;
            let result = f(&conn);
            pool.connections.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
            result
        })
        .await
        .map_err(|e| StoreError::Other(format!("reader task failed: {e}")))?
    }
}

fn migrate(conn: &Connection) -> StoreResult<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(unavailable)?;
    if version < 1 {
        conn.execute_batch(&format!("BEGIN; {SCHEMA_V1} PRAGMA user_version = 1; COMMIT;")).map_err(unavailable)?;
    }
    if version < 2 {
        migrate_to_search_index(conn)?;
    }
    if version < 3 {
        conn.execute_batch(&format!("BEGIN; {} PRAGMA user_version = 3; COMMIT;", search_index::SCHEMA_V3))
            .map_err(unavailable)?;
    }
    Ok(())
}

/// Schema version 2: creates the search index and fills it with every live message, in one
/// transaction (README "Search" gives the time this takes for a million messages).
fn migrate_to_search_index(conn: &Connection) -> StoreResult<()> {
    let started = std::time::Instant::now();
    conn.execute_batch("BEGIN").map_err(unavailable)?;
    let filled = (|| -> rusqlite::Result<u64> {
        conn.execute_batch(SCHEMA_V2)?;
        let n = search_index::index_live_after(conn, 0)?;
        conn.execute_batch("PRAGMA user_version = 2")?;
        Ok(n)
    })();
    match filled.and_then(|n| conn.execute_batch("COMMIT").map(|_| n)) {
        Ok(n) => {
            if n > 0 {
                tracing::info!(messages = n, seconds = started.elapsed().as_secs_f64(), "search index built");
            }
            Ok(())
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(unavailable(e))
        }
    }
}

fn run_writer(conn: Connection, mut rx: mpsc::Receiver<Job>) {
    batch_scheduling();
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH + 1);
    let mut last_catch_up = std::time::Instant::now();
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if last_catch_up.elapsed() >= search_index::CATCH_UP_INTERVAL {
            last_catch_up = std::time::Instant::now();
            batch.push(Box::new(|conn| {
                if let Err(e) = in_savepoint(conn, search_index::catch_up) {
                    tracing::error!(error = %e, "sqlite could not index new messages for search");
                }
                Box::new(|_| ())
            }));
        }
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            // Dropping the jobs drops their reply channels: each caller sees `Unavailable`.
            tracing::error!(error = %e, "sqlite could not begin a transaction");
            batch.clear();
            continue;
        }
        let replies: Vec<Reply> = batch.drain(..).map(|job| job(&conn)).collect();
        let committed = conn.execute_batch("COMMIT").map_err(other);
        if let Err(e) = &committed {
            tracing::error!(error = %e, "sqlite batch commit failed");
            let _ = conn.execute_batch("ROLLBACK");
        }
        for reply in replies {
            reply(match &committed {
                Ok(()) => Ok(()),
                Err(e) => Err(StoreError::Other(e.to_string())),
            });
        }
    }
}

/// Marks the writer thread as a batch thread for the Linux scheduler: a new job then does not
/// preempt the runtime thread that queued it; the writer runs when that thread waits or its
/// time slice ends, and finds more jobs to commit together. Where the writer has a core of its
/// own this changes nothing; where it shares one with the runtime (one core, or all busy) it
/// cuts the pages written per message by a third or more and most context switches (README
/// "Performance"). Failure only loses that.
fn batch_scheduling() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: plain system call on the calling thread (pid 0) with a valid parameter.
        let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
        if rc != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "sqlite writer keeps the normal scheduling policy");
        }
    }
}

fn in_savepoint<R>(conn: &Connection, f: impl FnOnce(&Connection) -> StoreResult<R>) -> StoreResult<R> {
    // Prepared once and kept: parsing these twice per job showed in the writer's profile.
    let run = |sql: &str| conn.prepare_cached(sql).and_then(|mut s| s.execute([])).map_err(other);
    run("SAVEPOINT job")?;
    let result = f(conn);
    if result.is_err() {
        run("ROLLBACK TO job")?;
    }
    run("RELEASE job")?;
    result
}

pub(super) fn unavailable(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

pub(super) fn other(e: rusqlite::Error) -> StoreError {
    StoreError::Other(e.to_string())
}

pub(super) fn corrupt(what: &str) -> rusqlite::Error {
    rusqlite::Error::InvalidColumnType(0, what.to_string(), rusqlite::types::Type::Text)
}

fn json_col<T: serde::de::DeserializeOwned>(row: &Row, idx: &str) -> rusqlite::Result<T> {
    let s: String = row.get(idx)?;
    serde_json::from_str(&s).map_err(|_| corrupt(idx))
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

const CONVERSATION_COLUMNS: &str = "id, company_id, agent_id, contact_id, user_id, participants, title, channel, status, \
     started_at, ended_at, tags, metadata, threads, summary, created_at, updated_at";

fn conversation_from_row(row: &Row) -> rusqlite::Result<Conversation> {
    let channel: String = row.get("channel")?;
    let status: String = row.get("status")?;
    Ok(Conversation {
        id: row.get("id")?,
        agent_id: row.get("agent_id")?,
        company_id: row.get("company_id")?,
        contact_id: row.get("contact_id")?,
        user_id: row.get("user_id")?,
        participants: json_col(row, "participants")?,
        title: row.get("title")?,
        channel: Channel::parse(&channel).ok_or_else(|| corrupt("channel"))?,
        status: Status::parse(&status).ok_or_else(|| corrupt("status"))?,
        started_at: from_millis(row.get("started_at")?),
        ended_at: row.get::<_, Option<i64>>("ended_at")?.map(from_millis),
        tags: json_col(row, "tags")?,
        metadata: json_col(row, "metadata")?,
        threads: json_col(row, "threads")?,
        summary: row.get("summary")?,
        created_at: from_millis(row.get("created_at")?),
        updated_at: from_millis(row.get("updated_at")?),
    })
}

const MESSAGE_COLUMNS: &str = "m.id, m.conversation_id, m.thread_id, m.sender_type, m.sender_id, m.role, m.content, \
     m.message_type, m.attachments, m.ai_metadata, m.metadata, m.created_at";

fn message_from_row(row: &Row) -> rusqlite::Result<Message> {
    let sender_type: String = row.get("sender_type")?;
    let role: String = row.get("role")?;
    let message_type: String = row.get("message_type")?;
    let ai: Option<String> = row.get("ai_metadata")?;
    Ok(Message {
        id: row.get("id")?,
        conversation_id: row.get("conversation_id")?,
        thread_id: row.get("thread_id")?,
        sender_type: SenderType::parse(&sender_type).ok_or_else(|| corrupt("sender_type"))?,
        sender_id: row.get("sender_id")?,
        role: Role::parse(&role).ok_or_else(|| corrupt("role"))?,
        content: row.get("content")?,
        message_type: MessageType::parse(&message_type).ok_or_else(|| corrupt("message_type"))?,
        attachments: json_col(row, "attachments")?,
        ai_metadata: ai.map(|s| serde_json::from_str(&s)).transpose().map_err(|_| corrupt("ai_metadata"))?,
        metadata: json_col(row, "metadata")?,
        created_at: from_millis(row.get("created_at")?),
    })
}

/// SQL fragment and parameter confining a conversation query to a scope.
fn scope_clause(scope: Scope<'_>) -> (&'static str, Option<String>) {
    match scope {
        Scope::Company(c) => (" AND company_id = ?2", Some(c.to_string())),
        Scope::AnyCompany => ("", None),
    }
}

fn load_conversation(conn: &Connection, scope: Scope<'_>, id: &str) -> StoreResult<Option<Conversation>> {
    let (clause, company) = scope_clause(scope);
    let sql = format!("SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = ?1{clause}");
    let mut stmt = conn.prepare_cached(&sql).map_err(other)?;
    let row = match company {
        Some(c) => stmt.query_row(params![id, c], conversation_from_row),
        None => stmt.query_row(params![id], conversation_from_row),
    };
    row.optional().map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn save_conversation_fields(conn: &Connection, c: &Conversation) -> StoreResult<()> {
    conn.prepare_cached(
        "UPDATE conversations SET participants = ?2, title = ?3, status = ?4, ended_at = ?5, tags = ?6, \
         metadata = ?7, threads = ?8, summary = ?9, updated_at = ?10 WHERE id = ?1",
    )
    .and_then(|mut s| {
        s.execute(params![
            c.id,
            to_json(&c.participants),
            c.title,
            c.status.as_str(),
            c.ended_at.map(|t| t.timestamp_millis()),
            to_json(&c.tags),
            to_json(&c.metadata),
            to_json(&c.threads),
            c.summary,
            c.updated_at.timestamp_millis(),
        ])
    })
    .map(|_| ())
    .map_err(other)
}

/// Loads, changes and saves a conversation inside one writer job (atomic: one writer).
fn modify_conversation(
    conn: &Connection,
    scope: Scope<'_>,
    id: &str,
    at: Timestamp,
    change: impl FnOnce(&mut Conversation),
) -> StoreResult<Option<Conversation>> {
    let Some(mut c) = load_conversation(conn, scope, id)? else { return Ok(None) };
    change(&mut c);
    c.updated_at = at;
    save_conversation_fields(conn, &c)?;
    Ok(Some(c))
}

fn load_message(conn: &Connection, conversation_id: &str, id: &str) -> StoreResult<Option<Message>> {
    let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.id = ?1 AND m.conversation_id = ?2 AND m.deleted = 0");
    conn.prepare_cached(&sql)
        .and_then(|mut s| s.query_row(params![id, conversation_id], message_from_row).optional())
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn like_pattern(q: &str) -> String {
    let escaped = q.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    format!("%{escaped}%")
}

#[async_trait]
impl Store for SqliteStore {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> StoreResult<()> {
        self.read(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(unavailable)).await
    }

    async fn insert_conversation(&self, conversation: &Conversation) -> StoreResult<()> {
        let c = conversation.clone();
        self.write(move |conn| {
            conn.prepare_cached(&format!(
                "INSERT INTO conversations ({CONVERSATION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
            ))
            .and_then(|mut s| {
                s.execute(params![
                    c.id,
                    c.company_id,
                    c.agent_id,
                    c.contact_id,
                    c.user_id,
                    to_json(&c.participants),
                    c.title,
                    c.channel.as_str(),
                    c.status.as_str(),
                    c.started_at.timestamp_millis(),
                    c.ended_at.map(|t| t.timestamp_millis()),
                    to_json(&c.tags),
                    to_json(&c.metadata),
                    to_json(&c.threads),
                    c.summary,
                    c.created_at.timestamp_millis(),
                    c.updated_at.timestamp_millis(),
                ])
            })
            .map(|_| ())
            .map_err(other)
        })
        .await
    }

    async fn get_conversation(&self, scope: Scope<'_>, id: &str) -> StoreResult<Option<Conversation>> {
        let id = id.to_string();
        let company = match scope {
            Scope::Company(c) => Some(c.to_string()),
            Scope::AnyCompany => None,
        };
        self.read(move |conn| {
            let scope = company.as_deref().map(Scope::Company).unwrap_or(Scope::AnyCompany);
            load_conversation(conn, scope, &id)
        })
        .await
    }

    async fn list_conversations(&self, filter: &ConversationFilter) -> StoreResult<Page<Conversation>> {
        if filter.q.is_some() {
            self.search_ready().await?;
        }
        let f = filter.clone();
        self.read(move |conn| {
            let mut clauses = vec!["company_id = ?".to_string()];
            let mut args: Vec<rusqlite::types::Value> = vec![f.company_id.clone().into()];
            if let Some(s) = f.status {
                clauses.push("status = ?".into());
                args.push(s.as_str().to_string().into());
            }
            if let Some(ch) = f.channel {
                clauses.push("channel = ?".into());
                args.push(ch.as_str().to_string().into());
            }
            if let Some(v) = &f.contact_id {
                clauses.push("contact_id = ?".into());
                args.push(v.clone().into());
            }
            if let Some(v) = &f.agent_id {
                clauses.push("agent_id = ?".into());
                args.push(v.clone().into());
            }
            if let Some(v) = &f.tag {
                clauses.push("EXISTS (SELECT 1 FROM json_each(conversations.tags) WHERE value = ?)".into());
                args.push(v.clone().into());
            }
            if let Some(v) = &f.participant {
                clauses.push("EXISTS (SELECT 1 FROM json_each(conversations.participants) WHERE value = ?)".into());
                args.push(v.clone().into());
            }
            if let Some(q) = &f.q {
                let p = like_pattern(q);
                args.extend([p.clone().into(), p.clone().into(), p.into()]);
                let in_messages = match SearchQuery::parse(q) {
                    Some(words) => {
                        args.push(words.fts5_match().into());
                        " OR id IN (SELECT m.conversation_id FROM messages_fts JOIN messages m \
                         ON m.rowid = messages_fts.rowid WHERE messages_fts MATCH ? AND m.deleted = 0)"
                    }
                    None => "",
                };
                clauses.push(format!(
                    "(title LIKE ? ESCAPE '\\' OR summary LIKE ? ESCAPE '\\' OR EXISTS \
                     (SELECT 1 FROM json_each(conversations.tags) WHERE value LIKE ? ESCAPE '\\'){in_messages})"
                ));
            }
            if let Some(t) = f.started_from {
                clauses.push("started_at >= ?".into());
                args.push(t.timestamp_millis().into());
            }
            if let Some(t) = f.started_to {
                clauses.push("started_at <= ?".into());
                args.push(t.timestamp_millis().into());
            }
            let wher = clauses.join(" AND ");
            let total: i64 = conn
                .prepare_cached(&format!("SELECT COUNT(*) FROM conversations WHERE {wher}"))
                .and_then(|mut s| s.query_row(params_from_iter(args.iter()), |r| r.get(0)))
                .map_err(other)?;
            let mut page_args = args.clone();
            page_args.push((f.limit as i64).into());
            page_args.push((f.offset.min(i64::MAX as u64) as i64).into());
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE {wher} ORDER BY started_at DESC, id DESC LIMIT ? OFFSET ?"
                ))
                .map_err(other)?;
            let items = stmt
                .query_map(params_from_iter(page_args.iter()), conversation_from_row)
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            Ok(Page { items, total: total as u64 })
        })
        .await
    }

    async fn update_conversation(
        &self,
        scope: Scope<'_>,
        id: &str,
        changes: &ConversationChanges,
        at: Timestamp,
    ) -> StoreResult<Option<Conversation>> {
        let (id, changes, company) = (id.to_string(), changes.clone(), company_of(scope));
        self.write(move |conn| {
            modify_conversation(conn, scope_of(&company), &id, at, |c| {
                if let Some(s) = changes.status {
                    c.status = s;
                }
                if let Some(t) = &changes.tags {
                    c.tags = t.clone();
                }
                if let Some(e) = changes.ended_at {
                    c.ended_at = e;
                }
                if let Some(t) = &changes.title {
                    c.title = Some(t.clone());
                }
                if let Some(m) = &changes.metadata {
                    if changes.merge_metadata {
                        c.metadata.extend(m.clone());
                    } else {
                        c.metadata = m.clone();
                    }
                }
            })
        })
        .await
    }

    async fn delete_conversation(&self, scope: Scope<'_>, id: &str) -> StoreResult<bool> {
        let (id, company) = (id.to_string(), company_of(scope));
        self.write(move |conn| {
            let (clause, c) = scope_clause(scope_of(&company));
            let n = match c {
                Some(c) => conn.execute(&format!("DELETE FROM conversations WHERE id = ?1{clause}"), params![id, c]),
                None => conn.execute("DELETE FROM conversations WHERE id = ?1", params![id]),
            }
            .map_err(other)?;
            if n > 0 {
                search_index::remove_conversation(conn, &id)?;
                conn.execute("DELETE FROM messages WHERE conversation_id = ?1", params![id]).map_err(other)?;
            }
            Ok(n > 0)
        })
        .await
    }

    async fn set_participant(
        &self,
        scope: Scope<'_>,
        id: &str,
        user_id: &str,
        add: bool,
        at: Timestamp,
    ) -> StoreResult<Option<Conversation>> {
        let (id, user, company) = (id.to_string(), user_id.to_string(), company_of(scope));
        self.write(move |conn| {
            modify_conversation(conn, scope_of(&company), &id, at, |c| {
                c.participants.retain(|p| p != &user);
                if add {
                    c.participants.push(user);
                }
            })
        })
        .await
    }

    async fn add_thread(&self, scope: Scope<'_>, id: &str, thread: &Thread) -> StoreResult<Option<Conversation>> {
        let (id, thread, company) = (id.to_string(), thread.clone(), company_of(scope));
        let at = thread.created_at;
        self.write(move |conn| modify_conversation(conn, scope_of(&company), &id, at, |c| c.threads.push(thread)))
            .await
    }

    async fn set_summary(&self, id: &str, summary: &str, at: Timestamp) -> StoreResult<()> {
        let (id, summary) = (id.to_string(), summary.to_string());
        self.write(move |conn| {
            modify_conversation(conn, Scope::AnyCompany, &id, at, |c| c.summary = Some(summary)).map(|_| ())
        })
        .await
    }

    async fn archive_inactive(
        &self,
        cutoff: Timestamp,
        at: Timestamp,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<ArchiveBatch> {
        let after = after.unwrap_or_default().to_string();
        // One writer job: nothing can write between the checks and the update.
        self.write(move |conn| {
            let cutoff = cutoff.timestamp_millis();
            let candidates: Vec<String> = conn
                .prepare_cached(
                    "SELECT id FROM conversations WHERE status != 'archived' AND updated_at < ?1 AND id > ?2 \
                     ORDER BY id LIMIT ?3",
                )
                .and_then(|mut s| s.query_map(params![cutoff, after, limit], |r| r.get(0))?.collect())
                .map_err(other)?;
            let mut archived = Vec::new();
            for id in &candidates {
                let recent_message: bool = conn
                    .prepare_cached("SELECT EXISTS (SELECT 1 FROM messages WHERE conversation_id = ?1 AND created_at >= ?2)")
                    .and_then(|mut s| s.query_row(params![id, cutoff], |r| r.get(0)))
                    .map_err(other)?;
                if !recent_message
                    && let Some(c) = modify_conversation(conn, Scope::AnyCompany, id, at, |c| c.status = Status::Archived)?
                {
                    archived.push(c);
                }
            }
            let next = (candidates.len() == limit as usize).then(|| candidates.last().cloned()).flatten();
            Ok(ArchiveBatch { archived, next })
        })
        .await
    }

    async fn insert_message(&self, message: &Message) -> StoreResult<Option<u64>> {
        let m = message.clone();
        let committed = self.queue_write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO messages (id, conversation_id, thread_id, sender_type, sender_id, role, content, \
                 message_type, attachments, ai_metadata, metadata, created_at, deleted) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 0)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    m.id,
                    m.conversation_id,
                    m.thread_id,
                    m.sender_type.as_str(),
                    m.sender_id,
                    m.role.as_str(),
                    m.content,
                    m.message_type.as_str(),
                    to_json(&m.attachments),
                    m.ai_metadata.as_ref().map(to_json),
                    to_json(&m.metadata),
                    m.created_at.timestamp_millis(),
                ])
            })
            .map_err(other)?;
            search_index::on_insert(conn, conn.last_insert_rowid(), &m.content)?;
            let Some(thread_id) = &m.thread_id else { return Ok(None) };
            let mut count = None;
            modify_conversation(conn, Scope::AnyCompany, &m.conversation_id, m.created_at, |c| {
                if let Some(t) = c.threads.iter_mut().find(|t| &t.id == thread_id) {
                    t.message_count += 1;
                    count = Some(t.message_count);
                }
            })?;
            Ok(count)
        })
        .await?;
        // The message has its place in the commit order: the socket's next send may start.
        crate::sequence::write_queued();
        let stored = committed.await;
        if stored.is_ok() {
            self.search_index.message_stored();
        }
        stored
    }

    async fn get_message(&self, conversation_id: &str, id: &str) -> StoreResult<Option<Message>> {
        let (cid, id) = (conversation_id.to_string(), id.to_string());
        self.read(move |conn| load_message(conn, &cid, &id)).await
    }

    async fn list_messages(
        &self,
        conversation_id: &str,
        scope: &ThreadScope,
        limit: u32,
        offset: u64,
    ) -> StoreResult<Page<Message>> {
        let (cid, scope) = (conversation_id.to_string(), scope.clone());
        self.read(move |conn| {
            let (thread_clause, thread_arg) = match &scope {
                ThreadScope::Main => ("m.thread_id IS NULL", None),
                ThreadScope::Thread(t) => ("m.thread_id = ?2", Some(t.clone())),
            };
            let wher = format!("m.conversation_id = ?1 AND {thread_clause} AND m.deleted = 0");
            let total: i64 = conn
                .prepare_cached(&format!("SELECT COUNT(*) FROM messages m WHERE {wher}"))
                .and_then(|mut s| match &thread_arg {
                    Some(t) => s.query_row(params![cid, t], |r| r.get(0)),
                    None => s.query_row(params![cid], |r| r.get(0)),
                })
                .map_err(other)?;
            let sql = format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE {wher} ORDER BY m.created_at DESC, m.id DESC LIMIT ?3 OFFSET ?4"
            );
            let off = offset.min(i64::MAX as u64) as i64;
            let mut stmt = conn.prepare_cached(&sql).map_err(other)?;
            let rows = match &thread_arg {
                Some(t) => stmt.query_map(params![cid, t, limit, off], message_from_row),
                // ?2 is unused on the main thread; bind NULL to keep numbering.
                None => stmt.query_map(params![cid, Option::<String>::None, limit, off], message_from_row),
            };
            let mut items = rows
                .and_then(|r| r.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            items.reverse();
            Ok(Page { items, total: total as u64 })
        })
        .await
    }

    async fn messages_after(
        &self,
        conversation_id: &str,
        thread: Option<&ThreadScope>,
        after: &str,
        limit: u32,
    ) -> StoreResult<Option<Page<Message>>> {
        let (cid, thread, after) = (conversation_id.to_string(), thread.cloned(), after.to_string());
        self.read(move |conn| {
            // Deleted or not: a client may have seen the anchor before it was deleted.
            let anchor: Option<i64> = conn
                .prepare_cached("SELECT created_at FROM messages WHERE id = ?1 AND conversation_id = ?2")
                .and_then(|mut s| s.query_row(params![after, cid], |r| r.get(0)).optional())
                .map_err(other)?;
            let Some(anchor_at) = anchor else { return Ok(None) };
            let (thread_clause, thread_arg) = match &thread {
                None => ("", None),
                Some(ThreadScope::Main) => (" AND m.thread_id IS NULL", None),
                Some(ThreadScope::Thread(t)) => (" AND m.thread_id = ?4", Some(t.clone())),
            };
            // The listing's order, (created_at, id), continued past the anchor.
            let wher = format!(
                "m.conversation_id = ?1 AND (m.created_at, m.id) > (?2, ?3) AND m.deleted = 0{thread_clause}"
            );
            let total: i64 = conn
                .prepare_cached(&format!("SELECT COUNT(*) FROM messages m WHERE {wher}"))
                .and_then(|mut s| match &thread_arg {
                    Some(t) => s.query_row(params![cid, anchor_at, after, t], |r| r.get(0)),
                    None => s.query_row(params![cid, anchor_at, after], |r| r.get(0)),
                })
                .map_err(other)?;
            let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages m WHERE {wher} ORDER BY m.created_at, m.id LIMIT ?5");
            let mut stmt = conn.prepare_cached(&sql).map_err(other)?;
            // ?4 is unused outside a thread; bind NULL to keep the numbering.
            let items = stmt
                .query_map(params![cid, anchor_at, after, thread_arg, limit], message_from_row)
                .and_then(|r| r.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            Ok(Some(Page { items, total: total as u64 }))
        })
        .await
    }

    async fn recent_messages(&self, conversation_id: &str, limit: u32) -> StoreResult<Vec<Message>> {
        let cid = conversation_id.to_string();
        self.read(move |conn| {
            let sql = format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.conversation_id = ?1 AND m.deleted = 0 \
                 ORDER BY m.created_at DESC, m.id DESC LIMIT ?2"
            );
            let mut items = conn
                .prepare_cached(&sql)
                .and_then(|mut s| s.query_map(params![cid, limit], message_from_row)?.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            items.reverse();
            Ok(items)
        })
        .await
    }

    async fn count_messages(&self, conversation_id: &str) -> StoreResult<u64> {
        let cid = conversation_id.to_string();
        self.read(move |conn| {
            conn.query_row(
                "SELECT COUNT(*) FROM messages WHERE conversation_id = ?1 AND deleted = 0",
                params![cid],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(other)
        })
        .await
    }

    async fn update_message(
        &self,
        conversation_id: &str,
        id: &str,
        change: &MessageChange,
    ) -> StoreResult<Option<Message>> {
        let (cid, id, change) = (conversation_id.to_string(), id.to_string(), change.clone());
        self.write(move |conn| {
            let Some(mut m) = load_message(conn, &cid, &id)? else { return Ok(None) };
            let before = m.content.clone();
            apply_message_change(&mut m, change);
            conn.prepare_cached("UPDATE messages SET content = ?2, metadata = ?3 WHERE id = ?1")
                .and_then(|mut s| s.execute(params![m.id, m.content, to_json(&m.metadata)]))
                .map_err(other)?;
            if m.content != before
                && let (rowid, true) = search_index::remove(conn, &m.id)?
            {
                search_index::index(conn, rowid, &m.content)?;
            }
            Ok(Some(m))
        })
        .await
    }

    async fn soft_delete_message(&self, conversation_id: &str, id: &str, at: Timestamp) -> StoreResult<bool> {
        let (cid, id) = (conversation_id.to_string(), id.to_string());
        self.write(move |conn| {
            let Some(mut m) = load_message(conn, &cid, &id)? else { return Ok(false) };
            m.metadata.insert("deleted_at".into(), Value::String(crate::domain::time::to_iso(&at)));
            search_index::remove(conn, &m.id)?;
            conn.execute("UPDATE messages SET deleted = 1, metadata = ?2 WHERE id = ?1", params![m.id, to_json(&m.metadata)])
                .map_err(other)?;
            Ok(true)
        })
        .await
    }

    async fn list_company_messages(
        &self,
        company_id: &str,
        limit: u32,
        from: Option<Timestamp>,
        to: Option<Timestamp>,
    ) -> StoreResult<Page<Message>> {
        let company = company_id.to_string();
        self.read(move |conn| {
            let from = from.map(|t| t.timestamp_millis()).unwrap_or(i64::MIN);
            let to = to.map(|t| t.timestamp_millis()).unwrap_or(i64::MAX);
            let wher = "c.company_id = ?1 AND m.deleted = 0 AND m.created_at >= ?2 AND m.created_at <= ?3";
            let total: i64 = conn
                .prepare_cached(&format!(
                    "SELECT COUNT(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id WHERE {wher}"
                ))
                .and_then(|mut s| s.query_row(params![company, from, to], |r| r.get(0)))
                .map_err(other)?;
            let items = conn
                .prepare_cached(&format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages m JOIN conversations c ON c.id = m.conversation_id \
                     WHERE {wher} ORDER BY m.created_at DESC, m.id DESC LIMIT ?4"
                ))
                .and_then(|mut s| {
                    s.query_map(params![company, from, to, limit], message_from_row)?.collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            Ok(Page { items, total: total as u64 })
        })
        .await
    }

    // ---- Message search (README "Search") ----

    fn search_method(&self) -> SearchMethod {
        SearchMethod::Fts5
    }

    async fn search_messages(&self, search: &MessageSearch) -> StoreResult<Vec<SearchHit>> {
        self.search_ready().await?;
        let search = search.clone();
        self.read(move |conn| {
            // BM25 is lower for a better match; the score handed out is its negation, so that
            // higher is better as on MongoDB.
            let mut clauses = vec!["c.company_id = ?".to_string(), "m.deleted = 0".to_string()];
            let mut args: Vec<rusqlite::types::Value> =
                vec![search.query.fts5_match().into(), search.company_id.clone().into()];
            if let Some(cid) = &search.conversation_id {
                clauses.push("m.conversation_id = ?".into());
                args.push(cid.clone().into());
            }
            if let Some(t) = &search.thread_id {
                clauses.push("m.thread_id = ?".into());
                args.push(t.clone().into());
            }
            if let Some(t) = search.from {
                clauses.push("m.created_at >= ?".into());
                args.push(t.timestamp_millis().into());
            }
            if let Some(t) = search.to {
                clauses.push("m.created_at <= ?".into());
                args.push(t.timestamp_millis().into());
            }
            args.push(i64::from(search.limit).into());
            // By count, not after the last score: see `SearchPosition`.
            let skip = search.after.as_ref().map_or(0, |a| a.seen.min(i64::MAX as u64) as i64);
            args.push(skip.into());
            let sql = format!(
                "SELECT {MESSAGE_COLUMNS}, -s.rank AS score \
                 FROM (SELECT rowid, bm25(messages_fts) AS rank FROM messages_fts WHERE messages_fts MATCH ?) s \
                 JOIN messages m ON m.rowid = s.rowid JOIN conversations c ON c.id = m.conversation_id \
                 WHERE {} ORDER BY s.rank, m.id DESC LIMIT ? OFFSET ?",
                clauses.join(" AND ")
            );
            conn.prepare_cached(&sql)
                .and_then(|mut stmt| {
                    stmt.query_map(params_from_iter(args.iter()), |row| {
                        Ok(SearchHit { message: message_from_row(row)?, score: row.get("score")? })
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(|e| StoreError::Corrupt(e.to_string()))
        })
        .await
    }

    async fn insert_attachment(&self, attachment: &StoredAttachment) -> StoreResult<()> {
        let a = attachment.clone();
        self.write(move |conn| records::insert_attachment(conn, &a)).await
    }

    async fn get_attachment(&self, id: &str) -> StoreResult<Option<StoredAttachment>> {
        let id = id.to_string();
        self.read(move |conn| records::get_attachment(conn, &id)).await
    }

    async fn delete_attachment(&self, id: &str) -> StoreResult<bool> {
        let id = id.to_string();
        self.write(move |conn| records::delete_attachment(conn, &id)).await
    }

    async fn delete_conversation_attachments(&self, conversation_id: &str) -> StoreResult<u64> {
        let id = conversation_id.to_string();
        self.write(move |conn| records::delete_conversation_attachments(conn, &id)).await
    }

    async fn insert_audit_records(&self, records: &[AuditRecord]) -> StoreResult<()> {
        let batch = records.to_vec();
        self.write(move |conn| records::insert_audit_records(conn, &batch)).await
    }

    async fn list_audit_records(&self, filter: &AuditFilter) -> StoreResult<Vec<AuditRecord>> {
        let filter = filter.clone();
        self.read(move |conn| records::list_audit_records(conn, &filter)).await
    }

    async fn delete_audit_records_before(&self, cutoff: Timestamp, limit: u32) -> StoreResult<u64> {
        self.write(move |conn| records::delete_audit_records_before(conn, cutoff, limit)).await
    }
}

/// The in-memory effect of a `MessageChange`; shared by stores that update by rewriting.
pub(crate) fn apply_message_change(m: &mut Message, change: MessageChange) {
    match change {
        MessageChange::Content { content, edited_at } => {
            m.content = content;
            m.metadata.insert("edited_at".into(), Value::String(crate::domain::time::to_iso(&edited_at)));
        }
        MessageChange::MarkRead { at } => {
            if m.metadata.get("read_at").is_none_or(Value::is_null) {
                m.metadata.insert("read_at".into(), Value::String(crate::domain::time::to_iso(&at)));
            }
        }
        MessageChange::Reaction { user_id, emoji, at } => {
            let mut reactions: Vec<Reaction> = m
                .metadata
                .get("reactions")
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .unwrap_or_default();
            toggle_reaction(&mut reactions, &user_id, emoji.as_deref(), &at);
            m.metadata.insert("reactions".into(), serde_json::to_value(reactions).unwrap_or(Value::Array(vec![])));
        }
        MessageChange::MergeMetadata(map) => m.metadata.extend(map),
    }
}

fn company_of(scope: Scope<'_>) -> Option<String> {
    match scope {
        Scope::Company(c) => Some(c.to_string()),
        Scope::AnyCompany => None,
    }
}

fn scope_of(company: &Option<String>) -> Scope<'_> {
    company.as_deref().map(Scope::Company).unwrap_or(Scope::AnyCompany)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::SearchQuery;

    /// A database from before the search index (schema version 1) gets it, filled with its
    /// live messages, when opened.
    #[tokio::test]
    async fn migration_backfills_the_search_index() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(dir.path().join("chat.db")).unwrap();
            conn.execute_batch(&format!("BEGIN; {SCHEMA_V1} PRAGMA user_version = 1; COMMIT;")).unwrap();
            conn.execute(
                "INSERT INTO conversations (id, company_id, agent_id, channel, status, started_at, created_at, updated_at) \
                 VALUES ('65a1b2c3d4e5f6a7b8c9d0e1', 'acme', 'agent', 'chat', 'active', 0, 0, 0)",
                [],
            )
            .unwrap();
            for (id, content, deleted) in [("65a1b2c3d4e5f6a7b8c9d0f1", "an old invoice", 0), ("65a1b2c3d4e5f6a7b8c9d0f2", "a deleted invoice", 1)] {
                conn.execute(
                    "INSERT INTO messages (id, conversation_id, sender_type, sender_id, role, content, message_type, created_at, deleted) \
                     VALUES (?1, '65a1b2c3d4e5f6a7b8c9d0e1', 'user', 'u', 'user', ?2, 'text', 1, ?3)",
                    params![id, content, deleted],
                )
                .unwrap();
            }
        }
        let store = SqliteStore::open(dir.path()).unwrap();
        let search = MessageSearch {
            query: SearchQuery::parse("invoice").unwrap(),
            company_id: "acme".into(),
            conversation_id: None,
            thread_id: None,
            from: None,
            to: None,
            after: None,
            limit: 10,
        };
        let hits = store.search_messages(&search).await.unwrap();
        assert_eq!(hits.iter().map(|h| h.message.id.as_str()).collect::<Vec<_>>(), vec!["65a1b2c3d4e5f6a7b8c9d0f1"]);
        drop(store);
        // Opening again does not index anything twice.
        let store = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(store.search_messages(&search).await.unwrap().len(), 1);
    }
}
