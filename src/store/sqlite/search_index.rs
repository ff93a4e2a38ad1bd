//! Keeping the FTS5 search index (`messages_fts`) in step with `messages`, in batches.
//!
//! FTS5 writes a new index segment at every commit that touched it. Indexing each message in
//! the writer transaction that stores it therefore doubled the pages every message commit
//! wrote (the per-message WAL frames went from about 9 to 18) and cost a fifth of a core at a
//! few thousand messages per second. So messages are stored unindexed and indexed in bulk:
//!
//! - `search_index_state.indexed_upto` is the highest `messages` rowid the index has caught up
//!   with. Everything above it is indexed by `catch_up`, which the writer runs once a second
//!   while it has work, and which every search runs first (through `SqliteStore::search_ready`)
//!   so a search always sees every message stored before it began.
//! - An edit or delete of a message at or below the mark changes the index in its own job, as
//!   before; above the mark there is nothing in the index yet, and the catch-up reads the
//!   message as it then is (deleted ones are skipped).
//! - A rowid can be handed out again after the highest rows were deleted (a conversation
//!   delete), so an insert that lands at or below the mark is indexed at once.

use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::{params, Connection};

use super::other;
use crate::domain::searchable_text;
use crate::store::StoreResult;

/// Schema version 3: the mark, starting where version 2 (which indexed every insert, or has
/// just rebuilt the index) left it. Rerunnable, for a rebuild after a manual `VACUUM` (README
/// "Search").
pub(super) const SCHEMA_V3: &str = r#"
CREATE TABLE IF NOT EXISTS search_index_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    indexed_upto INTEGER NOT NULL
);
INSERT OR REPLACE INTO search_index_state (id, indexed_upto) SELECT 1, COALESCE(MAX(rowid), 0) FROM messages;
"#;

/// How often the writer folds newly stored messages into the index while it is busy.
pub(super) const CATCH_UP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Highest `messages` rowid the index has caught up with.
pub(super) fn indexed_upto(conn: &Connection) -> StoreResult<i64> {
    conn.prepare_cached("SELECT indexed_upto FROM search_index_state WHERE id = 1")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(other)
}

/// Indexes every live message above the mark and moves the mark to the highest rowid stored.
/// Returns how many messages were indexed.
pub(super) fn catch_up(conn: &Connection) -> StoreResult<u64> {
    let from = indexed_upto(conn)?;
    let indexed = index_live_after(conn, from).map_err(other)?;
    conn.prepare_cached(
        "UPDATE search_index_state SET indexed_upto = MAX(indexed_upto, (SELECT COALESCE(MAX(rowid), 0) FROM messages)) \
         WHERE id = 1",
    )
    .and_then(|mut s| s.execute([]))
    .map_err(other)?;
    Ok(indexed)
}

/// Adds a newly inserted message to the index if the catch-up has already passed its rowid.
pub(super) fn on_insert(conn: &Connection, rowid: i64, content: &str) -> StoreResult<()> {
    if rowid <= indexed_upto(conn)? {
        index(conn, rowid, content)?;
    }
    Ok(())
}

/// Takes a message out of the index if it is in it; returns its rowid and whether it was.
pub(super) fn remove(conn: &Connection, id: &str) -> StoreResult<(i64, bool)> {
    let rowid: i64 = conn
        .prepare_cached("SELECT rowid FROM messages WHERE id = ?1")
        .and_then(|mut s| s.query_row(params![id], |r| r.get(0)))
        .map_err(other)?;
    if rowid > indexed_upto(conn)? {
        return Ok((rowid, false));
    }
    conn.prepare_cached("DELETE FROM messages_fts WHERE rowid = ?1")
        .and_then(|mut s| s.execute(params![rowid]))
        .map_err(other)?;
    Ok((rowid, true))
}

/// Takes a conversation's indexed messages out of the index (before the messages go).
pub(super) fn remove_conversation(conn: &Connection, conversation_id: &str) -> StoreResult<()> {
    conn.prepare_cached(
        "DELETE FROM messages_fts WHERE rowid IN (SELECT rowid FROM messages WHERE conversation_id = ?1 \
         AND rowid <= (SELECT indexed_upto FROM search_index_state WHERE id = 1))",
    )
    .and_then(|mut s| s.execute(params![conversation_id]))
    .map(|_| ())
    .map_err(other)
}

/// Adds every live message above rowid `after` to the index; returns how many. Also the
/// backfill of schema version 2, from rowid 0.
pub(super) fn index_live_after(conn: &Connection, after: i64) -> rusqlite::Result<u64> {
    let mut read =
        conn.prepare_cached("SELECT rowid, content FROM messages WHERE rowid > ?1 AND deleted = 0 ORDER BY rowid")?;
    let mut rows = read.query(params![after])?;
    let mut indexed = 0;
    while let Some(row) = rows.next()? {
        insert(conn, row.get(0)?, &row.get::<_, String>(1)?)?;
        indexed += 1;
    }
    Ok(indexed)
}

/// Adds a message's searchable text to the index under its rowid.
pub(super) fn index(conn: &Connection, rowid: i64, content: &str) -> StoreResult<()> {
    insert(conn, rowid, content).map_err(other)
}

fn insert(conn: &Connection, rowid: i64, content: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT INTO messages_fts (rowid, text) VALUES (?1, ?2)")
        .and_then(|mut s| s.execute(params![rowid, searchable_text(content)]))
        .map(|_| ())
}

/// What the async side knows about the catch-up, so that a search only waits for one when a
/// message may have been stored since the last.
pub(super) struct Progress {
    /// Messages stored (acknowledged) by this process, plus one so that the first search
    /// catches up with whatever an earlier process left unindexed.
    stored: AtomicU64,
    /// The `stored` count the latest completed catch-up covered.
    covered: AtomicU64,
}

impl Progress {
    pub(super) fn new() -> Self {
        Progress { stored: AtomicU64::new(1), covered: AtomicU64::new(0) }
    }

    pub(super) fn message_stored(&self) {
        self.stored.fetch_add(1, Ordering::AcqRel);
    }

    /// `Some(count)` when a catch-up is needed: run it, then pass the count to `caught_up`.
    /// Every message acknowledged before this call is in `count`, and its commit came before
    /// the catch-up job that follows is even queued, so that job indexes it.
    pub(super) fn needs_catch_up(&self) -> Option<u64> {
        let stored = self.stored.load(Ordering::Acquire);
        (self.covered.load(Ordering::Acquire) < stored).then_some(stored)
    }

    pub(super) fn caught_up(&self, count: u64) {
        self.covered.fetch_max(count, Ordering::AcqRel);
    }
}
