//! Conversations and their threads, and the rules for creating, updating and listing them.

use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use validator::Validate;

use super::message::string_enum;
use super::time::{to_iso, Timestamp};
use super::{refuse_control_chars, sanitize_text, ValidationError};

/// Default and largest page of the conversation list.
pub const DEFAULT_CONVERSATION_LIMIT: u32 = 50;
pub const MAX_CONVERSATION_LIMIT: u32 = 1000;
/// Default and largest page of a message list.
pub const DEFAULT_MESSAGE_LIMIT: u32 = 50;
pub const MAX_MESSAGE_LIMIT: u32 = 100;
pub const MAX_TITLE_CHARS: usize = 200;

string_enum!(
    Channel { Chat => "chat", Voice => "voice", Video => "video", Email => "email", Sms => "sms" }
);
string_enum!(
    Status { Active => "active", Ended => "ended", Completed => "completed", Archived => "archived" }
);

/// A side thread of a conversation; messages name it in `thread_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Thread {
    /// A UUID.
    pub id: String,
    pub title: String,
    #[serde(with = "super::time::iso")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// Messages posted in the thread.
    #[serde(default)]
    pub message_count: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    pub id: String,
    pub agent_id: String,
    pub company_id: String,
    pub contact_id: Option<String>,
    pub user_id: Option<String>,
    pub participants: Vec<String>,
    pub title: Option<String>,
    pub channel: Channel,
    pub status: Status,
    pub started_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    pub tags: Vec<String>,
    pub metadata: Map<String, Value>,
    pub threads: Vec<Thread>,
    pub summary: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Conversation {
    pub fn thread(&self, id: &str) -> Option<&Thread> {
        self.threads.iter().find(|t| t.id == id)
    }
}

// The serialization and the documented schema are both this one struct, so they cannot differ.
/// A conversation, as REST answers and socket events carry it.
#[derive(Serialize, ToSchema)]
struct ConversationDocument<'a> {
    /// The same as `id`, under MongoDB's name.
    #[serde(rename = "_id")]
    mongo_id: &'a str,
    /// 24 hex characters.
    id: &'a str,
    agent_id: &'a str,
    /// The tenant: every read and write is scoped to it.
    company_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    contact_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
    /// User ids.
    participants: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<&'a str>,
    channel: Channel,
    status: Status,
    #[schema(format = DateTime)]
    started_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    ended_at: Option<String>,
    tags: &'a [String],
    /// Free-form; other services keep their own keys here.
    #[schema(value_type = Object)]
    metadata: &'a Map<String, Value>,
    threads: &'a [Thread],
    /// The running summary the agent service wrote once the conversation grew long.
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<&'a str>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

impl Serialize for Conversation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ConversationDocument {
            mongo_id: &self.id,
            id: &self.id,
            agent_id: &self.agent_id,
            company_id: &self.company_id,
            contact_id: self.contact_id.as_deref(),
            user_id: self.user_id.as_deref(),
            participants: &self.participants,
            title: self.title.as_deref(),
            channel: self.channel,
            status: self.status,
            started_at: to_iso(&self.started_at),
            ended_at: self.ended_at.as_ref().map(to_iso),
            tags: &self.tags,
            metadata: &self.metadata,
            threads: &self.threads,
            summary: self.summary.as_deref(),
            created_at: to_iso(&self.created_at),
            updated_at: to_iso(&self.updated_at),
        }
        .serialize(s)
    }
}

impl utoipa::PartialSchema for Conversation {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        ConversationDocument::schema()
    }
}

impl ToSchema for Conversation {
    fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>) {
        ConversationDocument::schemas(schemas)
    }
}

/// POST /api/conversations. `agent_id` is also accepted as `agentId`.
#[derive(Debug, Clone, Deserialize, Validate, ToSchema)]
pub struct CreateConversationInput {
    /// Also accepted as `agentId`.
    #[serde(alias = "agentId")]
    #[validate(length(min = 1, max = 128))]
    pub agent_id: String,
    /// `chat` by default.
    #[serde(default)]
    #[schema(value_type = Option<Channel>)]
    pub channel: Option<String>,
    /// Also accepted as `contactId`.
    #[serde(default, alias = "contactId")]
    #[validate(length(min = 1, max = 128))]
    pub contact_id: Option<String>,
    #[serde(default)]
    #[validate(length(max = 200))]
    pub title: Option<String>,
    /// User ids besides the caller, at most 500.
    #[serde(default)]
    #[validate(length(max = 500))]
    pub participants: Vec<String>,
    /// At most 50.
    #[serde(default)]
    #[validate(length(max = 50))]
    pub tags: Vec<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
}

/// PUT/PATCH /api/conversations/:id, and the internal update (which merges metadata).
#[derive(Debug, Clone, Default, Deserialize, Validate, ToSchema)]
pub struct UpdateConversationInput {
    #[serde(default)]
    #[schema(value_type = Option<Status>)]
    pub status: Option<String>,
    /// Replaces the tags; at most 50.
    #[serde(default)]
    #[validate(length(max = 50))]
    pub tags: Option<Vec<String>>,
    /// Replaces the metadata; the internal API merges it key by key instead.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
    /// An ISO-8601 date; null clears it. Also accepted as `endedAt`.
    #[serde(default, alias = "endedAt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ended_at: Option<Value>,
    #[serde(default)]
    #[validate(length(max = 200))]
    pub title: Option<String>,
}

/// A checked conversation change, as the store applies it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConversationChanges {
    pub status: Option<Status>,
    pub tags: Option<Vec<String>>,
    /// Replaces the metadata object, or (with `merge_metadata`) sets each key in it.
    pub metadata: Option<Map<String, Value>>,
    pub merge_metadata: bool,
    /// `Some(None)` clears `ended_at`.
    pub ended_at: Option<Option<Timestamp>>,
    pub title: Option<String>,
}

impl ConversationChanges {
    pub fn is_empty(&self) -> bool {
        self.status.is_none()
            && self.tags.is_none()
            && self.metadata.is_none()
            && self.ended_at.is_none()
            && self.title.is_none()
    }
}

pub fn parse_channel(s: Option<&str>) -> Result<Channel, ValidationError> {
    match s {
        None => Ok(Channel::Chat),
        Some(s) => Channel::parse(s).ok_or_else(|| {
            ValidationError::field("Validation failed", "channel", "must be one of chat, voice, video, email, sms")
        }),
    }
}

pub fn parse_status(s: &str) -> Result<Status, ValidationError> {
    Status::parse(s).ok_or_else(|| {
        ValidationError::field("Validation failed", "status", "must be one of active, ended, completed, archived")
    })
}

/// Trims and sanitizes a title; empty after cleaning is refused.
pub fn clean_title(raw: &str) -> Result<String, ValidationError> {
    let t = sanitize_text(raw.trim());
    let n = t.trim().chars().count();
    if n == 0 || n > MAX_TITLE_CHARS {
        return Err(ValidationError::field(
            "Validation failed",
            "title",
            format!("must be 1 to {MAX_TITLE_CHARS} characters"),
        ));
    }
    Ok(t.trim().to_string())
}

/// Tags: trimmed, sanitized, non-empty, at most 100 characters each, without control
/// characters (the `tag` filter refuses them), duplicates removed.
pub fn clean_tags(tags: &[String]) -> Result<Vec<String>, ValidationError> {
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for t in tags {
        let t = sanitize_text(refuse_control_chars("Validation failed", "tags", t.trim())?);
        if t.is_empty() || t.chars().count() > 100 {
            return Err(ValidationError::field("Validation failed", "tags", "each tag must be 1 to 100 characters"));
        }
        if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(out)
}

pub fn validation_failed(e: validator::ValidationErrors) -> ValidationError {
    let mut err = ValidationError::new("Validation failed");
    for (field, problems) in e.field_errors() {
        for p in problems {
            let msg = p.message.as_ref().map(|m| m.to_string()).unwrap_or_else(|| p.code.to_string());
            err = err.with(&field, msg);
        }
    }
    err
}

impl UpdateConversationInput {
    pub fn into_changes(self, merge_metadata: bool) -> Result<ConversationChanges, ValidationError> {
        self.validate().map_err(validation_failed)?;
        let ended_at = match self.ended_at {
            None => None,
            Some(Value::Null) => Some(None),
            Some(Value::String(s)) => Some(Some(super::time::parse_client_date(&s).ok_or_else(|| {
                ValidationError::field("Validation failed", "ended_at", "must be an ISO-8601 date")
            })?)),
            Some(_) => return Err(ValidationError::field("Validation failed", "ended_at", "must be a date string")),
        };
        Ok(ConversationChanges {
            status: self.status.as_deref().map(parse_status).transpose()?,
            tags: self.tags.as_deref().map(clean_tags).transpose()?,
            metadata: self.metadata.map(|m| super::clean_metadata("metadata", m)).transpose()?,
            merge_metadata,
            ended_at,
            title: self.title.as_deref().map(clean_title).transpose()?,
        })
    }
}

/// Filters of GET /api/conversations, already checked. Tenant scoping is not optional: the
/// company is part of every query.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConversationFilter {
    pub company_id: String,
    pub status: Option<Status>,
    pub channel: Option<Channel>,
    pub contact_id: Option<String>,
    pub agent_id: Option<String>,
    pub tag: Option<String>,
    /// Case-insensitive substring of title, summary or tags.
    pub q: Option<String>,
    pub started_from: Option<Timestamp>,
    pub started_to: Option<Timestamp>,
    /// Only conversations this user takes part in (None: every conversation of the company).
    pub participant: Option<String>,
    pub limit: u32,
    pub offset: u64,
}

/// A free-text filter value of the conversation list (`q`, `tag`, `contact_id`, `agent_id`):
/// trimmed, at most 200 characters, no control characters; empty means no filter.
pub fn clean_filter_text(field: &str, raw: Option<&str>) -> Result<Option<String>, ValidationError> {
    match raw.map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) if s.chars().count() > 200 => {
            Err(ValidationError::field("Validation failed", field, "must be at most 200 characters"))
        }
        Some(s) => refuse_control_chars("Validation failed", field, s).map(|s| Some(s.to_string())),
    }
}

/// Which messages a page lists: the main thread (thread_id absent or null) or one thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ThreadScope {
    Main,
    Thread(String),
}

/// Clamps a client's `limit`: missing → default, 0 or negative → 1, above max → max.
pub fn clamp_limit(raw: Option<i64>, default: u32, max: u32) -> u32 {
    match raw {
        None => default,
        Some(n) if n < 1 => 1,
        Some(n) => n.min(max as i64) as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn enums_parse_known_values_only() {
        assert_eq!(parse_channel(Some("sms")).unwrap(), Channel::Sms);
        assert_eq!(parse_channel(None).unwrap(), Channel::Chat);
        assert!(parse_channel(Some("fax")).is_err());
        assert!(parse_status("deleted").is_err());
    }

    #[test]
    fn update_changes() {
        let u: UpdateConversationInput =
            serde_json::from_value(json!({"status": "ended", "ended_at": "2024-05-01T10:00:00Z", "tags": [" a ", "a", "b"]})).unwrap();
        let c = u.into_changes(false).unwrap();
        assert_eq!(c.status, Some(Status::Ended));
        assert_eq!(c.tags.unwrap(), vec!["a", "b"]);
        assert!(c.ended_at.unwrap().is_some());
        let u: UpdateConversationInput = serde_json::from_value(json!({"status": "bogus"})).unwrap();
        assert!(u.into_changes(false).is_err());
    }

    #[test]
    fn titles_are_sanitized() {
        assert_eq!(clean_title("  <script>x</script>Plan ").unwrap(), "Plan");
        assert!(clean_title("   ").is_err());
        assert!(clean_title(&"t".repeat(201)).is_err());
    }

    #[test]
    fn filter_text() {
        assert_eq!(clean_filter_text("q", Some("  plan ")).unwrap().as_deref(), Some("plan"));
        assert_eq!(clean_filter_text("q", Some("  ")).unwrap(), None);
        assert!(clean_filter_text("q", Some("\u{0}")).is_err());
        assert!(clean_filter_text("q", Some("a\u{1b}b")).is_err());
        assert!(clean_filter_text("q", Some(&"x".repeat(201))).is_err());
        assert!(clean_tags(&["a\u{0}".to_string()]).is_err());
    }

    #[test]
    fn limits_clamp() {
        assert_eq!(clamp_limit(None, 50, 1000), 50);
        assert_eq!(clamp_limit(Some(5000), 50, 1000), 1000);
        assert_eq!(clamp_limit(Some(0), 50, 100), 1);
    }
}
