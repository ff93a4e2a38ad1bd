//! SQLite tables of uploaded files' records and of the audit trail. Created with
//! `IF NOT EXISTS` on every start, beside the versioned schema of conversations and messages,
//! so they need no migration step of their own.

use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};

use super::{corrupt, other, unavailable};
use crate::domain::attachment::StoredAttachment;
use crate::domain::audit::{ActorKind, AuditAction, AuditFilter, AuditRecord, Transport};
use crate::domain::time::{from_millis, Timestamp};
use crate::store::{StoreError, StoreResult};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS attachments (
    id TEXT PRIMARY KEY,
    company_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    uploader_id TEXT NOT NULL,
    media_type TEXT NOT NULL,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    storage_key TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS attachments_conversation ON attachments (conversation_id);
CREATE TABLE IF NOT EXISTS audit_log (
    id TEXT PRIMARY KEY,
    at INTEGER NOT NULL,
    company_id TEXT,
    actor_kind TEXT NOT NULL,
    actor_id TEXT,
    action TEXT NOT NULL,
    conversation_id TEXT,
    subject_id TEXT,
    detail TEXT,
    client_address TEXT,
    transport TEXT NOT NULL,
    request_id TEXT
);
CREATE INDEX IF NOT EXISTS audit_log_company_at ON audit_log (company_id, at DESC, id DESC);
CREATE INDEX IF NOT EXISTS audit_log_at ON audit_log (at);
"#;

pub(super) fn create_tables(conn: &Connection) -> StoreResult<()> {
    conn.execute_batch(SCHEMA).map_err(unavailable)
}

pub(super) fn insert_attachment(conn: &Connection, a: &StoredAttachment) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO attachments (id, company_id, conversation_id, uploader_id, media_type, name, size, storage_key, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .and_then(|mut s| {
        s.execute(params![
            a.id,
            a.company_id,
            a.conversation_id,
            a.uploader_id,
            a.media_type,
            a.name,
            a.size as i64,
            a.key,
            a.created_at.timestamp_millis()
        ])
    })
    .map_err(other)?;
    Ok(())
}

fn attachment_from_row(row: &Row) -> rusqlite::Result<StoredAttachment> {
    Ok(StoredAttachment {
        id: row.get("id")?,
        company_id: row.get("company_id")?,
        conversation_id: row.get("conversation_id")?,
        uploader_id: row.get("uploader_id")?,
        media_type: row.get("media_type")?,
        name: row.get("name")?,
        size: row.get::<_, i64>("size")?.max(0) as u64,
        key: row.get("storage_key")?,
        created_at: from_millis(row.get("created_at")?),
    })
}

pub(super) fn get_attachment(conn: &Connection, id: &str) -> StoreResult<Option<StoredAttachment>> {
    conn.prepare_cached("SELECT * FROM attachments WHERE id = ?1")
        .and_then(|mut s| s.query_row(params![id], attachment_from_row).optional())
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(super) fn delete_attachment(conn: &Connection, id: &str) -> StoreResult<bool> {
    Ok(conn.execute("DELETE FROM attachments WHERE id = ?1", params![id]).map_err(other)? > 0)
}

pub(super) fn delete_conversation_attachments(conn: &Connection, conversation_id: &str) -> StoreResult<u64> {
    Ok(conn.execute("DELETE FROM attachments WHERE conversation_id = ?1", params![conversation_id]).map_err(other)? as u64)
}

pub(super) fn insert_audit_records(conn: &Connection, records: &[AuditRecord]) -> StoreResult<()> {
    let mut insert = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO audit_log (id, at, company_id, actor_kind, actor_id, action, conversation_id, subject_id, \
             detail, client_address, transport, request_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )
        .map_err(other)?;
    for r in records {
        insert
            .execute(params![
                r.id,
                r.at.timestamp_millis(),
                r.company_id,
                r.actor_kind.as_str(),
                r.actor_id,
                r.action.as_str(),
                r.conversation_id,
                r.subject_id,
                r.detail,
                r.client_address,
                r.transport.as_str(),
                r.request_id
            ])
            .map_err(other)?;
    }
    Ok(())
}

fn audit_from_row(row: &Row) -> rusqlite::Result<AuditRecord> {
    let kind: String = row.get("actor_kind")?;
    let action: String = row.get("action")?;
    let transport: String = row.get("transport")?;
    Ok(AuditRecord {
        id: row.get("id")?,
        at: from_millis(row.get("at")?),
        company_id: row.get("company_id")?,
        actor_kind: ActorKind::parse(&kind).ok_or_else(|| corrupt("actor_kind"))?,
        actor_id: row.get("actor_id")?,
        action: AuditAction::parse(&action).ok_or_else(|| corrupt("action"))?,
        conversation_id: row.get("conversation_id")?,
        subject_id: row.get("subject_id")?,
        detail: row.get("detail")?,
        client_address: row.get("client_address")?,
        transport: Transport::parse(&transport).ok_or_else(|| corrupt("transport"))?,
        request_id: row.get("request_id")?,
    })
}

pub(super) fn list_audit_records(conn: &Connection, f: &AuditFilter) -> StoreResult<Vec<AuditRecord>> {
    let mut wher = vec!["company_id = ?".to_string()];
    let mut args: Vec<rusqlite::types::Value> = vec![f.company_id.clone().into()];
    let mut text = |column: &str, value: &Option<String>, wher: &mut Vec<String>| {
        if let Some(v) = value {
            wher.push(format!("{column} = ?"));
            args.push(v.clone().into());
        }
    };
    text("conversation_id", &f.conversation_id, &mut wher);
    text("actor_id", &f.actor_id, &mut wher);
    text("action", &f.action, &mut wher);
    if let Some(from) = f.from {
        wher.push("at >= ?".into());
        args.push(from.timestamp_millis().into());
    }
    if let Some(to) = f.to {
        wher.push("at <= ?".into());
        args.push(to.timestamp_millis().into());
    }
    if let Some(c) = &f.before {
        wher.push("(at < ? OR (at = ? AND id < ?))".into());
        args.extend([c.at_ms.into(), c.at_ms.into(), c.id.clone().into()]);
    }
    args.push((f.limit as i64).into());
    let sql = format!("SELECT * FROM audit_log WHERE {} ORDER BY at DESC, id DESC LIMIT ?", wher.join(" AND "));
    conn.prepare_cached(&sql)
        .and_then(|mut s| s.query_map(params_from_iter(args), audit_from_row)?.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(super) fn delete_audit_records_before(conn: &Connection, cutoff: Timestamp, limit: u32) -> StoreResult<u64> {
    Ok(conn
        .execute(
            "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE at < ?1 ORDER BY at LIMIT ?2)",
            params![cutoff.timestamp_millis(), limit],
        )
        .map_err(other)? as u64)
}
