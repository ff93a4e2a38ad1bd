//! MongoDB collections of uploaded files' records (`attachments`) and of the audit trail
//! (`audit_log`). Both belong to this service alone; ids are ObjectIds, times BSON dates.

use bson::oid::ObjectId;
use bson::{doc, Bson, Document};
use futures_util::TryStreamExt;
use mongodb::{Collection, Database, IndexModel};

use super::convert::{bson_date, object_id};
use super::map_err;
use crate::domain::attachment::StoredAttachment;
use crate::domain::audit::{ActorKind, AuditAction, AuditFilter, AuditRecord, Transport};
use crate::domain::time::{from_millis, Timestamp};
use crate::store::{StoreError, StoreResult};

pub(super) struct Records {
    attachments: Collection<Document>,
    audit: Collection<Document>,
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("audit or attachment document: {what}"))
}

fn string(d: &Document, key: &str) -> StoreResult<String> {
    d.get_str(key).map(str::to_string).map_err(|_| corrupt(key))
}

fn optional_string(d: &Document, key: &str) -> Option<String> {
    d.get_str(key).ok().map(str::to_string)
}

fn date(d: &Document, key: &str) -> StoreResult<Timestamp> {
    d.get_datetime(key).map(|t| from_millis(t.timestamp_millis())).map_err(|_| corrupt(key))
}

fn id_of(d: &Document) -> StoreResult<String> {
    d.get_object_id("_id").map(|o| o.to_hex()).map_err(|_| corrupt("_id"))
}

fn or_null(v: &Option<String>) -> Bson {
    v.as_ref().map_or(Bson::Null, |s| Bson::String(s.clone()))
}

impl Records {
    pub(super) fn new(db: &Database) -> Self {
        Records { attachments: db.collection("attachments"), audit: db.collection("audit_log") }
    }

    pub(super) async fn ensure_indexes(&self) -> StoreResult<()> {
        let index = |keys: Document| IndexModel::builder().keys(keys).build();
        self.attachments.create_index(index(doc! { "conversation_id": 1 })).await.map_err(map_err)?;
        self.audit
            .create_indexes([index(doc! { "company_id": 1, "at": -1, "_id": -1 }), index(doc! { "at": 1 })])
            .await
            .map_err(map_err)?;
        Ok(())
    }

    pub(super) async fn insert_attachment(&self, a: &StoredAttachment) -> StoreResult<()> {
        let d = doc! {
            "_id": object_id(&a.id)?,
            "company_id": &a.company_id,
            "conversation_id": &a.conversation_id,
            "uploader_id": &a.uploader_id,
            "media_type": &a.media_type,
            "name": &a.name,
            "size": a.size as i64,
            "storage_key": &a.key,
            "created_at": bson_date(&a.created_at),
        };
        self.attachments.insert_one(d).await.map_err(map_err)?;
        Ok(())
    }

    pub(super) async fn get_attachment(&self, id: &str) -> StoreResult<Option<StoredAttachment>> {
        let Some(d) = self.attachments.find_one(doc! { "_id": object_id(id)? }).await.map_err(map_err)? else {
            return Ok(None);
        };
        Ok(Some(StoredAttachment {
            id: id_of(&d)?,
            company_id: string(&d, "company_id")?,
            conversation_id: string(&d, "conversation_id")?,
            uploader_id: string(&d, "uploader_id")?,
            media_type: string(&d, "media_type")?,
            name: string(&d, "name")?,
            size: d.get_i64("size").map_err(|_| corrupt("size"))?.max(0) as u64,
            key: string(&d, "storage_key")?,
            created_at: date(&d, "created_at")?,
        }))
    }

    pub(super) async fn delete_attachment(&self, id: &str) -> StoreResult<bool> {
        let r = self.attachments.delete_one(doc! { "_id": object_id(id)? }).await.map_err(map_err)?;
        Ok(r.deleted_count > 0)
    }

    pub(super) async fn delete_conversation_attachments(&self, conversation_id: &str) -> StoreResult<u64> {
        let r = self.attachments.delete_many(doc! { "conversation_id": conversation_id }).await.map_err(map_err)?;
        Ok(r.deleted_count)
    }

    pub(super) async fn insert_audit_records(&self, records: &[AuditRecord]) -> StoreResult<()> {
        if records.is_empty() {
            return Ok(());
        }
        let docs = records
            .iter()
            .map(|r| {
                Ok(doc! {
                    "_id": object_id(&r.id)?,
                    "at": bson_date(&r.at),
                    "company_id": or_null(&r.company_id),
                    "actor_kind": r.actor_kind.as_str(),
                    "actor_id": or_null(&r.actor_id),
                    "action": r.action.as_str(),
                    "conversation_id": or_null(&r.conversation_id),
                    "subject_id": or_null(&r.subject_id),
                    "detail": or_null(&r.detail),
                    "client_address": or_null(&r.client_address),
                    "transport": r.transport.as_str(),
                    "request_id": or_null(&r.request_id),
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        self.audit.insert_many(docs).ordered(false).await.map_err(map_err)?;
        Ok(())
    }

    pub(super) async fn list_audit_records(&self, f: &AuditFilter) -> StoreResult<Vec<AuditRecord>> {
        let mut filter = doc! { "company_id": &f.company_id };
        for (key, value) in [("conversation_id", &f.conversation_id), ("actor_id", &f.actor_id), ("action", &f.action)] {
            if let Some(v) = value {
                filter.insert(key, v);
            }
        }
        let mut at = Document::new();
        if let Some(from) = f.from {
            at.insert("$gte", bson_date(&from));
        }
        if let Some(to) = f.to {
            at.insert("$lte", bson_date(&to));
        }
        if !at.is_empty() {
            filter.insert("at", at);
        }
        if let Some(c) = &f.before {
            let t = Bson::DateTime(bson::DateTime::from_millis(c.at_ms));
            let id = ObjectId::parse_str(&c.id).map_err(|_| corrupt("cursor"))?;
            filter.insert("$or", vec![doc! { "at": { "$lt": t.clone() } }, doc! { "at": t, "_id": { "$lt": id } }]);
        }
        let docs: Vec<Document> = self
            .audit
            .find(filter)
            .sort(doc! { "at": -1, "_id": -1 })
            .limit(f.limit as i64)
            .await
            .map_err(map_err)?
            .try_collect()
            .await
            .map_err(map_err)?;
        docs.iter().map(audit_from_doc).collect()
    }

    pub(super) async fn delete_audit_records_before(&self, cutoff: Timestamp, limit: u32) -> StoreResult<u64> {
        // Bounded steps: find a batch of ids, delete those, so one call never holds the
        // collection for long however much has expired.
        let ids: Vec<Bson> = self
            .audit
            .find(doc! { "at": { "$lt": bson_date(&cutoff) } })
            .projection(doc! { "_id": 1 })
            .limit(limit as i64)
            .await
            .map_err(map_err)?
            .try_collect::<Vec<Document>>()
            .await
            .map_err(map_err)?
            .into_iter()
            .filter_map(|d| d.get("_id").cloned())
            .collect();
        if ids.is_empty() {
            return Ok(0);
        }
        let r = self.audit.delete_many(doc! { "_id": { "$in": ids } }).await.map_err(map_err)?;
        Ok(r.deleted_count)
    }
}

fn audit_from_doc(d: &Document) -> StoreResult<AuditRecord> {
    Ok(AuditRecord {
        id: id_of(d)?,
        at: date(d, "at")?,
        company_id: optional_string(d, "company_id"),
        actor_kind: ActorKind::parse(&string(d, "actor_kind")?).ok_or_else(|| corrupt("actor_kind"))?,
        actor_id: optional_string(d, "actor_id"),
        action: AuditAction::parse(&string(d, "action")?).ok_or_else(|| corrupt("action"))?,
        conversation_id: optional_string(d, "conversation_id"),
        subject_id: optional_string(d, "subject_id"),
        detail: optional_string(d, "detail"),
        client_address: optional_string(d, "client_address"),
        transport: Transport::parse(&string(d, "transport")?).ok_or_else(|| corrupt("transport"))?,
        request_id: optional_string(d, "request_id"),
    })
}
