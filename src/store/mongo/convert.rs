//! Domain types ↔ BSON documents in the layout the shared Mongoose models use.
//!
//! Writing follows Mongoose: dates as BSON dates, small integers as int32, `__v` on new
//! conversations. Reading is tolerant of what other services may have written: either
//! timestamp spelling, references as strings or ObjectIds, missing optional fields, dates as
//! BSON dates or ISO strings. A document missing what cannot be defaulted (its `_id`) is
//! reported as corrupt.

use bson::oid::ObjectId;
use bson::{doc, Bson, Document};
use serde_json::{Map, Number, Value};

use crate::domain::time::{from_millis, parse_client_date, to_iso, Timestamp};
use crate::domain::{lenient_attachments, Attachment, Channel, Conversation, Message, MessageType, Role, SenderType, Status, Thread};
use crate::store::{StoreError, StoreResult};

/// Message metadata keys that hold dates: stored as BSON dates, as the shared model declares.
const METADATA_DATE_KEYS: [&str; 4] = ["read_at", "delivered_at", "edited_at", "deleted_at"];

pub fn bson_date(t: &Timestamp) -> Bson {
    Bson::DateTime(bson::DateTime::from_millis(t.timestamp_millis()))
}

/// Ids arrive validated as 24 hex; anything else here is a bug upstream, not client input.
pub fn object_id(id: &str) -> StoreResult<ObjectId> {
    ObjectId::parse_str(id).map_err(|_| StoreError::Other(format!("not an ObjectId: {id}")))
}

/// JSON → BSON as the Node driver writes JavaScript values: integers that fit in 32 bits as
/// int32, other integers as int64, everything else as double.
pub fn json_to_bson(v: &Value) -> Bson {
    match v {
        Value::Null => Bson::Null,
        Value::Bool(b) => Bson::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i32::try_from(i).map(Bson::Int32).unwrap_or(Bson::Int64(i)),
            None => Bson::Double(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => Bson::String(s.clone()),
        Value::Array(items) => Bson::Array(items.iter().map(json_to_bson).collect()),
        Value::Object(m) => Bson::Document(m.iter().map(|(k, v)| (k.clone(), json_to_bson(v))).collect()),
    }
}

/// BSON → the contract's JSON: dates as ISO strings, ObjectIds as hex.
pub fn bson_to_json(v: &Bson) -> Value {
    match v {
        Bson::Null | Bson::Undefined | Bson::MaxKey | Bson::MinKey => Value::Null,
        Bson::Boolean(b) => Value::Bool(*b),
        Bson::Int32(i) => Value::from(*i),
        Bson::Int64(i) => Value::from(*i),
        Bson::Double(d) => Number::from_f64(*d).map(Value::Number).unwrap_or(Value::Null),
        Bson::String(s) | Bson::Symbol(s) | Bson::JavaScriptCode(s) => Value::String(s.clone()),
        Bson::ObjectId(oid) => Value::String(oid.to_hex()),
        Bson::DateTime(d) => Value::String(to_iso(&from_millis(d.timestamp_millis()))),
        Bson::Decimal128(d) => Value::String(d.to_string()),
        Bson::Array(items) => Value::Array(items.iter().map(bson_to_json).collect()),
        Bson::Document(d) => Value::Object(doc_to_map(d)),
        other => other.clone().into_relaxed_extjson(),
    }
}

fn doc_to_map(d: &Document) -> Map<String, Value> {
    d.iter().map(|(k, v)| (k.clone(), bson_to_json(v))).collect()
}

/// A date stored as a BSON date, an ISO string or epoch milliseconds.
fn date_of(v: Option<&Bson>) -> Option<Timestamp> {
    match v? {
        Bson::DateTime(d) => Some(from_millis(d.timestamp_millis())),
        Bson::String(s) => parse_client_date(s),
        Bson::Int64(ms) => Some(from_millis(*ms)),
        Bson::Double(ms) => Some(from_millis(*ms as i64)),
        _ => None,
    }
}

/// A reference stored as a string or an ObjectId.
fn id_string(v: Option<&Bson>) -> Option<String> {
    match v? {
        Bson::String(s) => Some(s.clone()),
        Bson::ObjectId(oid) => Some(oid.to_hex()),
        _ => None,
    }
}

fn string_of(d: &Document, key: &str) -> Option<String> {
    match d.get(key)? {
        Bson::String(s) => Some(s.clone()),
        _ => None,
    }
}

fn strings_of(d: &Document, key: &str) -> Vec<String> {
    match d.get(key) {
        Some(Bson::Array(items)) => items.iter().filter_map(|v| id_string(Some(v))).collect(),
        _ => Vec::new(),
    }
}

fn count_of(v: Option<&Bson>) -> Option<u64> {
    match v? {
        Bson::Int32(i) => u64::try_from(*i).ok(),
        Bson::Int64(i) => u64::try_from(*i).ok(),
        Bson::Double(d) if *d >= 0.0 => Some(*d as u64),
        _ => None,
    }
}

fn document_id(d: &Document) -> StoreResult<(String, Option<Timestamp>)> {
    match d.get("_id") {
        Some(Bson::ObjectId(oid)) => Ok((oid.to_hex(), Some(from_millis(oid.timestamp().timestamp_millis())))),
        Some(Bson::String(s)) => Ok((s.clone(), None)),
        _ => Err(StoreError::Corrupt("document without a usable _id".into())),
    }
}

pub fn thread_to_doc(t: &Thread) -> Document {
    doc! {
        "_id": ObjectId::new(),
        "id": &t.id,
        "title": &t.title,
        "created_at": bson_date(&t.created_at),
        "message_count": i32::try_from(t.message_count).map(Bson::Int32).unwrap_or(Bson::Int64(t.message_count as i64)),
    }
}

fn thread_from_doc(d: &Document, fallback: Timestamp) -> Option<Thread> {
    let id = string_of(d, "id").or_else(|| id_string(d.get("_id")))?;
    Some(Thread {
        id,
        title: string_of(d, "title").unwrap_or_default(),
        created_at: date_of(d.get("created_at")).or_else(|| date_of(d.get("createdAt"))).unwrap_or(fallback),
        message_count: count_of(d.get("message_count")).unwrap_or(0),
    })
}

/// The stored `message_count` of one thread in a conversation document.
pub fn thread_count(conversation: &Document, thread_id: &str) -> Option<u64> {
    let Ok(threads) = conversation.get_array("threads") else { return None };
    threads
        .iter()
        .filter_map(Bson::as_document)
        .find(|t| t.get_str("id").is_ok_and(|id| id == thread_id))
        .and_then(|t| count_of(t.get("message_count")))
}

pub fn conversation_to_doc(c: &Conversation) -> StoreResult<Document> {
    let mut d = doc! {
        "_id": object_id(&c.id)?,
        "agent_id": &c.agent_id,
        "company_id": &c.company_id,
    };
    if let Some(v) = &c.contact_id {
        d.insert("contact_id", v);
    }
    if let Some(v) = &c.user_id {
        d.insert("user_id", v);
    }
    d.insert("participants", c.participants.clone());
    if let Some(v) = &c.title {
        d.insert("title", v);
    }
    d.insert("channel", c.channel.as_str());
    d.insert("status", c.status.as_str());
    d.insert("started_at", bson_date(&c.started_at));
    if let Some(v) = &c.ended_at {
        d.insert("ended_at", bson_date(v));
    }
    d.insert("tags", c.tags.clone());
    d.insert("metadata", json_to_bson(&Value::Object(c.metadata.clone())));
    d.insert("threads", c.threads.iter().map(|t| Bson::Document(thread_to_doc(t))).collect::<Vec<_>>());
    if let Some(v) = &c.summary {
        d.insert("summary", v);
    }
    d.insert("createdAt", bson_date(&c.created_at));
    d.insert("updatedAt", bson_date(&c.updated_at));
    d.insert("__v", 0_i32);
    Ok(d)
}

pub fn conversation_from_doc(d: &Document) -> StoreResult<Conversation> {
    let (id, id_time) = document_id(d)?;
    let created_at = date_of(d.get("createdAt"))
        .or_else(|| date_of(d.get("created_at")))
        .or_else(|| date_of(d.get("started_at")))
        .or(id_time)
        .unwrap_or_default();
    let started_at = date_of(d.get("started_at")).unwrap_or(created_at);
    let updated_at = date_of(d.get("updatedAt")).or_else(|| date_of(d.get("updated_at"))).unwrap_or(created_at);
    let threads = match d.get("threads") {
        Some(Bson::Array(items)) => {
            items.iter().filter_map(Bson::as_document).filter_map(|t| thread_from_doc(t, created_at)).collect()
        }
        _ => Vec::new(),
    };
    Ok(Conversation {
        id,
        agent_id: id_string(d.get("agent_id")).unwrap_or_default(),
        company_id: id_string(d.get("company_id")).unwrap_or_default(),
        contact_id: id_string(d.get("contact_id")),
        user_id: id_string(d.get("user_id")),
        participants: strings_of(d, "participants"),
        title: string_of(d, "title"),
        // Values outside the contract (from an older writer) read as the defaults rather
        // than making the whole list unreadable.
        channel: string_of(d, "channel").and_then(|s| Channel::parse(&s)).unwrap_or(Channel::Chat),
        status: string_of(d, "status").and_then(|s| Status::parse(&s)).unwrap_or(Status::Active),
        started_at,
        ended_at: date_of(d.get("ended_at")),
        tags: strings_of(d, "tags"),
        metadata: match d.get("metadata") {
            Some(Bson::Document(m)) => doc_to_map(m),
            _ => Map::new(),
        },
        threads,
        summary: string_of(d, "summary"),
        created_at,
        updated_at,
    })
}

fn attachment_to_doc(a: &Attachment) -> Document {
    let mut d = doc! { "url": &a.url, "type": &a.kind, "name": &a.name };
    if let Some(size) = a.size {
        d.insert("size", i64::try_from(size).unwrap_or(i64::MAX));
    }
    d
}

/// Message metadata with its date fields (and reaction times) as BSON dates.
fn message_metadata_to_bson(m: &Map<String, Value>) -> Document {
    let mut d = Document::new();
    for (k, v) in m {
        let stored = match (k.as_str(), v) {
            (key, Value::String(s)) if METADATA_DATE_KEYS.contains(&key) => {
                parse_client_date(s).map(|t| bson_date(&t)).unwrap_or_else(|| json_to_bson(v))
            }
            ("reactions", Value::Array(items)) => Bson::Array(
                items
                    .iter()
                    .map(|r| {
                        let mut r = json_to_bson(r);
                        if let Bson::Document(rd) = &mut r
                            && let Some(t) = rd.get_str("created_at").ok().and_then(parse_client_date)
                        {
                            rd.insert("created_at", bson_date(&t));
                        }
                        r
                    })
                    .collect(),
            ),
            _ => json_to_bson(v),
        };
        d.insert(k.clone(), stored);
    }
    d
}

pub fn message_to_doc(m: &Message) -> StoreResult<Document> {
    let mut d = doc! {
        "_id": object_id(&m.id)?,
        "conversation_id": &m.conversation_id,
        "thread_id": m.thread_id.as_deref().map(Bson::from).unwrap_or(Bson::Null),
        "sender_type": m.sender_type.as_str(),
        "sender_id": &m.sender_id,
        "role": m.role.as_str(),
        "content": &m.content,
        "message_type": m.message_type.as_str(),
        "attachments": m.attachments.iter().map(|a| Bson::Document(attachment_to_doc(a))).collect::<Vec<_>>(),
    };
    if let Some(ai) = &m.ai_metadata {
        d.insert("ai_metadata", json_to_bson(&Value::Object(ai.clone())));
    }
    d.insert("metadata", message_metadata_to_bson(&m.metadata));
    d.insert("created_at", bson_date(&m.created_at));
    Ok(d)
}

pub fn message_from_doc(d: &Document) -> StoreResult<Message> {
    let (id, id_time) = document_id(d)?;
    let sender_type = string_of(d, "sender_type").and_then(|s| SenderType::parse(&s));
    let role = string_of(d, "role").and_then(|s| Role::parse(&s));
    let sender_type = sender_type.unwrap_or(match role {
        Some(Role::Assistant) => SenderType::Agent,
        Some(Role::System) => SenderType::System,
        _ => SenderType::User,
    });
    let metadata = match d.get("metadata") {
        Some(Bson::Document(m)) => doc_to_map(m),
        _ => Map::new(),
    };
    Ok(Message {
        id,
        conversation_id: id_string(d.get("conversation_id")).unwrap_or_default(),
        thread_id: id_string(d.get("thread_id")),
        role: role.unwrap_or(sender_type.role()),
        sender_type,
        sender_id: id_string(d.get("sender_id")).unwrap_or_default(),
        content: string_of(d, "content").unwrap_or_default(),
        message_type: string_of(d, "message_type").and_then(|s| MessageType::parse(&s)).unwrap_or(MessageType::Text),
        attachments: d.get("attachments").map(|a| lenient_attachments(&bson_to_json(a))).unwrap_or_default(),
        ai_metadata: match d.get("ai_metadata") {
            Some(Bson::Document(m)) => Some(doc_to_map(m)),
            _ => None,
        },
        metadata,
        created_at: date_of(d.get("created_at"))
            .or_else(|| date_of(d.get("createdAt")))
            .or(id_time)
            .unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::time::now;
    use serde_json::json;

    fn sample_message() -> Message {
        let mut metadata = Map::new();
        metadata.insert("read_at".into(), json!("2024-05-01T10:00:00.000Z"));
        metadata.insert("reactions".into(), json!([{ "emoji": "👍", "user_id": "u1", "created_at": "2024-05-01T10:00:01.000Z" }]));
        metadata.insert("intent".into(), json!("question"));
        Message {
            id: ObjectId::new().to_hex(),
            conversation_id: ObjectId::new().to_hex(),
            thread_id: None,
            sender_type: SenderType::User,
            sender_id: "u1".into(),
            role: Role::User,
            content: "hello".into(),
            message_type: MessageType::Text,
            attachments: vec![Attachment { url: "https://x.test/a.png".into(), kind: "image/png".into(), name: "a.png".into(), size: Some(3) }],
            ai_metadata: Some(json!({ "model": "m", "tokens_used": 12 }).as_object().unwrap().clone()),
            metadata,
            created_at: now(),
        }
    }

    #[test]
    fn message_round_trips_with_dates_as_bson_dates() {
        let m = sample_message();
        let d = message_to_doc(&m).unwrap();
        assert!(matches!(d.get("created_at"), Some(Bson::DateTime(_))));
        assert_eq!(d.get("thread_id"), Some(&Bson::Null));
        let meta = d.get_document("metadata").unwrap();
        assert!(matches!(meta.get("read_at"), Some(Bson::DateTime(_))));
        let reaction = meta.get_array("reactions").unwrap()[0].as_document().unwrap();
        assert!(matches!(reaction.get("created_at"), Some(Bson::DateTime(_))));
        assert_eq!(message_from_doc(&d).unwrap(), m);
    }

    #[test]
    fn conversation_round_trips_in_mongoose_layout() {
        let t = now();
        let c = Conversation {
            id: ObjectId::new().to_hex(),
            agent_id: "agent-1".into(),
            company_id: "company-1".into(),
            contact_id: None,
            user_id: Some("u1".into()),
            participants: vec!["u1".into()],
            title: Some("Support".into()),
            channel: Channel::Voice,
            status: Status::Active,
            started_at: t,
            ended_at: None,
            tags: vec!["vip".into()],
            metadata: json!({ "source": "web", "n": 1 }).as_object().unwrap().clone(),
            threads: vec![Thread { id: "b1f5a0a2-1111-4222-8333-444455556666".into(), title: "T".into(), created_at: t, message_count: 2 }],
            summary: None,
            created_at: t,
            updated_at: t,
        };
        let d = conversation_to_doc(&c).unwrap();
        assert!(d.contains_key("createdAt") && d.contains_key("updatedAt") && d.contains_key("__v"));
        assert!(!d.contains_key("created_at"));
        assert!(d.get_array("threads").unwrap()[0].as_document().unwrap().get_object_id("_id").is_ok());
        assert_eq!(conversation_from_doc(&d).unwrap(), c);
    }

    #[test]
    fn reads_what_other_writers_wrote() {
        let oid = ObjectId::new();
        let conv = ObjectId::new();
        let d = doc! {
            "_id": oid,
            "conversation_id": conv,
            "thread_id": Bson::Null,
            "role": "assistant",
            "content": "hi",
            "createdAt": "2024-01-02T03:04:05.678Z",
            "__v": 0,
        };
        let m = message_from_doc(&d).unwrap();
        assert_eq!(m.conversation_id, conv.to_hex());
        assert_eq!(m.thread_id, None);
        assert_eq!(m.sender_type, SenderType::Agent);
        assert_eq!(to_iso(&m.created_at), "2024-01-02T03:04:05.678Z");
        let c = conversation_from_doc(&doc! { "_id": oid, "company_id": "c", "created_at": bson_date(&now()) }).unwrap();
        assert_eq!(c.started_at, c.created_at);
        assert_eq!(c.channel, Channel::Chat);
    }
}
