//! Messages: the document, its enums, and the rules for what a client may send.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::time::{to_iso, Timestamp};
use super::{parse_thread_id, sanitize_text, ValidationError};

/// Longest message content, in characters, after trimming.
pub const MAX_CONTENT_CHARS: usize = 10_000;
/// More attachments than this on one message are dropped.
pub const MAX_ATTACHMENTS: usize = 20;

macro_rules! string_enum {
    ($(#[doc = $doc:literal])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name { $(#[serde(rename = $text)] $variant),+ }

        impl $name {
            pub const ALL: &'static [&'static str] = &[$($text),+];

            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some(Self::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        // Written out rather than derived: the derive cannot read the variants' serde names
        // when they come from this macro's arguments, and would document the Rust names.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                let description: &str = concat!($($doc, "\n",)* "");
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some(Self::ALL.iter().copied()))
                    .description((!description.trim().is_empty()).then(|| description.trim().to_string()))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}
pub(crate) use string_enum;

string_enum!(
    /// Who wrote a message.
    SenderType { User => "user", Agent => "agent", System => "system" }
);
string_enum!(
    /// The chat-completion role of a message, derived from its sender.
    Role { User => "user", Assistant => "assistant", System => "system" }
);
string_enum!(
    /// What a message holds; `system` is reserved for the service itself.
    MessageType {
        Text => "text", Audio => "audio", Video => "video", File => "file", Image => "image",
        System => "system",
    }
);

impl SenderType {
    pub fn role(self) -> Role {
        match self {
            SenderType::User => Role::User,
            SenderType::Agent => Role::Assistant,
            SenderType::System => Role::System,
        }
    }
}

impl MessageType {
    /// Message types a client may choose; `system` is reserved for the service itself.
    pub fn parse_client(s: &str) -> Result<Self, ValidationError> {
        match Self::parse(s) {
            Some(t) if t != MessageType::System => Ok(t),
            _ => Err(ValidationError::field(
                "Invalid message data",
                "messageType",
                "must be one of text, audio, video, file, image",
            )),
        }
    }
}

/// A file attached to a message. Built from client input only through `lenient_attachments`,
/// which checks and cleans every field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Attachment {
    /// An http or https URL, stored percent-encoded.
    pub url: String,
    /// A media type (`image/png`) or only its top-level type (`image`, `file`).
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    /// Bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// Longest attachment URL, as stored (percent-encoded).
const MAX_ATTACHMENT_URL_BYTES: usize = 2048;
const MAX_ATTACHMENT_TYPE_CHARS: usize = 100;
const MAX_ATTACHMENT_NAME_CHARS: usize = 255;

/// A stored message. Serialized with both `_id` and `id` (the widget de-duplicates by `id`).
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub id: String,
    pub conversation_id: String,
    pub thread_id: Option<String>,
    pub sender_type: SenderType,
    pub sender_id: String,
    pub role: Role,
    pub content: String,
    pub message_type: MessageType,
    pub attachments: Vec<Attachment>,
    pub ai_metadata: Option<Map<String, Value>>,
    pub metadata: Map<String, Value>,
    pub created_at: Timestamp,
}

impl Message {
    pub fn is_deleted(&self) -> bool {
        self.metadata.get("deleted_at").is_some_and(|v| !v.is_null())
    }
}

// The serialization and the documented schema are both this one struct, so they cannot differ.
/// A message, as REST answers, socket events and the internal API carry it.
#[derive(Serialize, ToSchema)]
struct MessageDocument<'a> {
    /// The same as `id`, under MongoDB's name.
    #[serde(rename = "_id")]
    mongo_id: &'a str,
    /// 24 hex characters; clients de-duplicate by it.
    id: &'a str,
    conversation_id: &'a str,
    /// Null for the main thread.
    thread_id: Option<&'a str>,
    sender_type: SenderType,
    sender_id: &'a str,
    role: Role,
    content: &'a str,
    message_type: MessageType,
    attachments: &'a [Attachment],
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<AiMetadata>)]
    ai_metadata: Option<&'a Map<String, Value>>,
    #[schema(value_type = MessageMetadata)]
    metadata: &'a Map<String, Value>,
    /// ISO-8601 UTC with milliseconds.
    #[schema(format = DateTime)]
    created_at: String,
}

impl Serialize for Message {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        MessageDocument {
            mongo_id: &self.id,
            id: &self.id,
            conversation_id: &self.conversation_id,
            thread_id: self.thread_id.as_deref(),
            sender_type: self.sender_type,
            sender_id: &self.sender_id,
            role: self.role,
            content: &self.content,
            message_type: self.message_type,
            attachments: &self.attachments,
            ai_metadata: self.ai_metadata.as_ref(),
            metadata: &self.metadata,
            created_at: to_iso(&self.created_at),
        }
        .serialize(s)
    }
}

impl utoipa::PartialSchema for Message {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        MessageDocument::schema()
    }
}

impl ToSchema for Message {
    fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>) {
        MessageDocument::schemas(schemas)
    }
}

/// The known keys of a message's `metadata`; other services may add their own.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
struct MessageMetadata {
    #[schema(format = DateTime)]
    read_at: Option<String>,
    #[schema(format = DateTime)]
    delivered_at: Option<String>,
    /// Set when the content was edited.
    #[schema(format = DateTime)]
    edited_at: Option<String>,
    /// Set when the message was deleted; deleted messages are never listed or returned.
    #[schema(format = DateTime)]
    deleted_at: Option<String>,
    reactions: Option<Vec<Reaction>>,
    /// From the agent service's intent detection.
    intent: Option<Value>,
    /// From the agent service's sentiment analysis.
    sentiment: Option<Value>,
    #[serde(flatten)]
    other: std::collections::HashMap<String, Value>,
}

/// How the agent service produced a reply.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
struct AiMetadata {
    model: Option<String>,
    tokens_used: Option<u64>,
    /// Measured by this service: request to answer.
    response_time_ms: Option<u64>,
    temperature: Option<f64>,
    finish_reason: Option<String>,
    #[serde(flatten)]
    other: std::collections::HashMap<String, Value>,
}

/// A reaction kept under `metadata.reactions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Reaction {
    pub emoji: String,
    pub user_id: String,
    pub created_at: String,
}

/// Trims, length-checks and sanitizes message content.
pub fn clean_content(raw: &str) -> Result<String, ValidationError> {
    let trimmed = raw.trim();
    let chars = trimmed.chars().count();
    if chars == 0 {
        return Err(ValidationError::field("Invalid message data", "content", "must not be empty"));
    }
    if chars > MAX_CONTENT_CHARS {
        return Err(ValidationError::field(
            "Invalid message data",
            "content",
            format!("must be at most {MAX_CONTENT_CHARS} characters"),
        ));
    }
    let clean = sanitize_text(trimmed);
    // Removed markup can leave whitespace at either end; trim again.
    let clean = clean.trim();
    if clean.is_empty() {
        return Err(ValidationError::field(
            "Invalid message data",
            "content",
            "is empty once unsafe markup is removed",
        ));
    }
    Ok(clean.to_string())
}

/// Keeps the valid attachments of whatever the client sent: an array, or the same array as a
/// JSON string (the deployed clients do both). Invalid entries are dropped, not fatal; the
/// ones kept are cleaned (see `clean_attachment`).
pub fn lenient_attachments(v: &Value) -> Vec<Attachment> {
    let parsed;
    let items = match v {
        Value::Array(items) => items,
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Array(items)) => {
                parsed = items;
                &parsed
            }
            _ => return Vec::new(),
        },
        _ => return Vec::new(),
    };
    items
        .iter()
        .filter_map(|item| serde_json::from_value::<Attachment>(item.clone()).ok())
        .filter_map(clean_attachment)
        .take(MAX_ATTACHMENTS)
        .collect()
}

/// An attachment fit to store and broadcast, or `None` to drop it: a web URL, stored in its
/// parsed, percent-encoded form (so no quote or angle bracket survives in it); a media type;
/// a name without unsafe markup.
fn clean_attachment(a: Attachment) -> Option<Attachment> {
    let url = web_url(&a.url)?;
    let kind = a.kind.trim();
    if kind.chars().count() > MAX_ATTACHMENT_TYPE_CHARS || !is_attachment_type(kind) {
        return None;
    }
    let name = sanitize_text(a.name.trim());
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_ATTACHMENT_NAME_CHARS {
        return None;
    }
    Some(Attachment { url, kind: kind.to_string(), name: name.to_string(), size: a.size })
}

/// Attachments are fetched by browsers: only http and https URLs, never `javascript:` or
/// `data:`. Returns the URL re-serialized by the parser, which percent-encodes what may not
/// appear in a URL.
fn web_url(raw: &str) -> Option<String> {
    let url = url::Url::parse(raw.trim()).ok()?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return None;
    }
    let url = String::from(url);
    (url.len() <= MAX_ATTACHMENT_URL_BYTES).then_some(url)
}

/// A media type (`type/subtype`, then `; name=value` parameters, RFC 9110 section 8.3.1), or
/// only its top-level type (`image`, `file`), which is what the deployed clients send. Names and
/// values are tokens; a quoted value may hold only token characters and spaces, so nothing
/// that could form markup gets through.
fn is_attachment_type(s: &str) -> bool {
    fn is_token(s: &str) -> bool {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    }
    fn is_value(s: &str) -> bool {
        match s.strip_prefix('"').and_then(|rest| rest.strip_suffix('"')) {
            Some(quoted) => quoted.split(' ').all(|part| part.is_empty() || is_token(part)),
            None => is_token(s),
        }
    }
    let mut parts = s.split(';');
    let media = parts.next().unwrap_or_default();
    let media_ok = match media.split_once('/') {
        Some((kind, subtype)) => is_token(kind) && is_token(subtype),
        None => is_token(media),
    };
    media_ok
        && parts.all(|param| {
            let param = param.trim_matches([' ', '\t']);
            // `type/subtype;` with nothing after the semicolon is allowed by the grammar.
            param.is_empty()
                || param.split_once('=').is_some_and(|(name, value)| is_token(name) && is_value(value))
        })
}

fn lenient_attachments_de<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Attachment>, D::Error> {
    Ok(lenient_attachments(&Value::deserialize(d)?))
}

/// A string-or-number field that should end up a string (client temp ids are either).
fn stringish<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

/// What a client sends to post a message (`message:send`, or a REST POST body).
/// Field names follow the socket payload; REST's snake_case spellings are accepted too.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SendMessageInput {
    /// Required on `message:send`; over REST the path names the conversation.
    #[serde(default, alias = "conversation_id")]
    #[schema(value_type = Option<String>)]
    pub conversation_id: Option<Value>,
    /// 1 to 10 000 characters once trimmed; sanitized.
    #[serde(default)]
    #[schema(value_type = String, required = true)]
    pub content: Option<Value>,
    /// `text` by default.
    #[serde(default, alias = "message_type")]
    #[schema(value_type = Option<MessageType>)]
    pub message_type: Option<Value>,
    /// Null or absent: the main thread.
    #[serde(default, alias = "thread_id")]
    #[schema(value_type = Option<String>)]
    pub thread_id: Option<Value>,
    /// Also accepted as the same array in a JSON string; invalid entries are dropped.
    #[serde(default, deserialize_with = "lenient_attachments_de")]
    pub attachments: Vec<Attachment>,
    /// The client's id for its message bubble, echoed in `message:error`.
    #[serde(default, alias = "temp_id", deserialize_with = "stringish")]
    pub temp_id: Option<String>,
}

/// A message ready to store: every field checked and cleaned.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidMessage {
    pub content: String,
    pub message_type: MessageType,
    pub thread_id: Option<String>,
    pub attachments: Vec<Attachment>,
}

impl SendMessageInput {
    pub fn from_value(v: Value) -> Result<Self, ValidationError> {
        if !v.is_object() {
            return Err(ValidationError::field("Invalid message data", "payload", "must be an object"));
        }
        serde_json::from_value(v).map_err(|e| {
            ValidationError::field("Invalid message data", "payload", e.to_string())
        })
    }

    pub fn validate(&self, default_type: MessageType) -> Result<ValidMessage, ValidationError> {
        let content = match &self.content {
            Some(Value::String(s)) => clean_content(s)?,
            Some(_) => {
                return Err(ValidationError::field("Invalid message data", "content", "must be a string"))
            }
            None => return Err(ValidationError::field("Invalid message data", "content", "is required")),
        };
        let message_type = match &self.message_type {
            None | Some(Value::Null) => default_type,
            Some(Value::String(s)) => MessageType::parse_client(s)?,
            Some(_) => {
                return Err(ValidationError::field("Invalid message data", "messageType", "must be a string"))
            }
        };
        let thread_id = optional_thread_id(self.thread_id.as_ref(), "threadId")?;
        Ok(ValidMessage { content, message_type, thread_id, attachments: self.attachments.clone() })
    }
}

/// `threadId` may be absent, null (main thread) or a thread id string; nothing else.
pub fn optional_thread_id(v: Option<&Value>, field: &str) -> Result<Option<String>, ValidationError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => parse_thread_id(field, s).map(Some),
        Some(_) => Err(ValidationError::field("Invalid message data", field, "must be a string or null")),
    }
}

/// Adds or removes `user_id`'s `emoji` in a reactions list: the same emoji again removes it,
/// `None` removes every reaction of that user.
pub fn toggle_reaction(reactions: &mut Vec<Reaction>, user_id: &str, emoji: Option<&str>, at: &Timestamp) {
    match emoji {
        None => reactions.retain(|r| r.user_id != user_id),
        Some(e) => {
            let before = reactions.len();
            reactions.retain(|r| !(r.user_id == user_id && r.emoji == e));
            if reactions.len() == before {
                reactions.push(Reaction {
                    emoji: e.to_string(),
                    user_id: user_id.to_string(),
                    created_at: to_iso(at),
                });
            }
        }
    }
}

/// Checks a reaction emoji: a short, markup-free string.
pub fn clean_emoji(raw: &str) -> Result<String, ValidationError> {
    let e = raw.trim();
    if e.is_empty() || e.chars().count() > 32 || e.contains(['<', '>', '&', '"']) || e.chars().any(char::is_control) {
        return Err(ValidationError::field("Invalid message data", "reaction", "must be a short emoji"));
    }
    Ok(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(v: Value) -> Result<ValidMessage, ValidationError> {
        SendMessageInput::from_value(v)?.validate(MessageType::Text)
    }

    #[test]
    fn content_limits() {
        assert!(input(json!({"content": "   "})).is_err());
        assert!(input(json!({"content": "x".repeat(10_001)})).is_err());
        assert!(input(json!({"content": "x".repeat(10_000)})).is_ok());
        assert!(input(json!({"content": 5})).is_err());
        assert!(input(json!({})).is_err());
        assert_eq!(input(json!({"content": "  hi  "})).unwrap().content, "hi");
    }

    #[test]
    fn message_type_rules() {
        assert_eq!(input(json!({"content": "a"})).unwrap().message_type, MessageType::Text);
        assert_eq!(input(json!({"content": "a", "messageType": "image"})).unwrap().message_type, MessageType::Image);
        assert!(input(json!({"content": "a", "messageType": "system"})).is_err());
        assert!(input(json!({"content": "a", "messageType": "gif"})).is_err());
    }

    #[test]
    fn attachments_as_array_or_string_invalid_dropped() {
        let good = json!({"url": "https://x.test/a.png", "type": "image", "name": "a.png", "size": 3});
        let bad = json!({"url": "javascript:alert(1)", "type": "image", "name": "b"});
        let arr = input(json!({"content": "a", "attachments": [good, bad, 7]})).unwrap();
        assert_eq!(arr.attachments.len(), 1);
        let s = serde_json::to_string(&json!([good])).unwrap();
        assert_eq!(input(json!({"content": "a", "attachments": s})).unwrap().attachments.len(), 1);
        assert!(input(json!({"content": "a", "attachments": "not json"})).unwrap().attachments.is_empty());
    }

    fn attachment(url: &str, kind: &str, name: &str) -> Vec<Attachment> {
        lenient_attachments(&json!([{ "url": url, "type": kind, "name": name }]))
    }

    #[test]
    fn attachment_types_are_media_types() {
        for ok in ["image/png", "image", "file", "application/vnd.ms-excel", "text/plain; charset=utf-8", "text/plain;charset=\"utf-8\"", "multipart/mixed; boundary=\"a b\""] {
            assert_eq!(attachment("https://x.test/a", ok, "a").len(), 1, "{ok}");
        }
        for bad in ["<svg onload=alert(1)>", "image/<svg>", "text/plain; x=\"<b>\"", "text/plain; x", "a/b/c", "", " ", "image/", "/png", "text/plain; x=\"a\\\"b\"", "image png"] {
            assert!(attachment("https://x.test/a", bad, "a").is_empty(), "{bad}");
        }
    }

    #[test]
    fn attachment_urls_are_reencoded_web_urls() {
        let kept = attachment("https://x.test/a\"><script>alert(1)</script>?q=\"<x>#\"<y>", "image/png", "a");
        assert_eq!(kept[0].url, "https://x.test/a%22%3E%3Cscript%3Ealert(1)%3C/script%3E?q=%22%3Cx%3E#%22%3Cy%3E");
        for bad in ["javascript:alert(1)", "data:text/html,<script>", "ftp://x.test/a", "https://", "/relative", "x"] {
            assert!(attachment(bad, "image/png", "a").is_empty(), "{bad}");
        }
        assert!(attachment(&format!("https://x.test/{}", "a".repeat(2100)), "image/png", "a").is_empty());
    }

    #[test]
    fn attachment_names_are_sanitized() {
        assert_eq!(attachment("https://x.test/a", "image/png", "<img src=x onerror=alert(1)>a.png")[0].name, "<img src=\"x\">a.png");
        assert!(attachment("https://x.test/a", "image/png", "<script>x</script>").is_empty(), "nothing left");
    }

    #[test]
    fn thread_id_null_is_main() {
        assert_eq!(input(json!({"content": "a", "threadId": null})).unwrap().thread_id, None);
        assert!(input(json!({"content": "a", "threadId": {"$ne": null}})).is_err());
    }

    #[test]
    fn reactions_toggle() {
        let at = crate::domain::time::now();
        let mut r = Vec::new();
        toggle_reaction(&mut r, "u1", Some("👍"), &at);
        toggle_reaction(&mut r, "u2", Some("👍"), &at);
        assert_eq!(r.len(), 2);
        toggle_reaction(&mut r, "u1", Some("👍"), &at);
        assert_eq!(r.len(), 1);
        toggle_reaction(&mut r, "u2", None, &at);
        assert!(r.is_empty());
    }

    #[test]
    fn serializes_both_ids() {
        let m = Message {
            id: "65a1b2c3d4e5f6a7b8c9d0e1".into(),
            conversation_id: "65a1b2c3d4e5f6a7b8c9d0e2".into(),
            thread_id: None,
            sender_type: SenderType::User,
            sender_id: "u".into(),
            role: Role::User,
            content: "hi".into(),
            message_type: MessageType::Text,
            attachments: vec![],
            ai_metadata: None,
            metadata: Map::new(),
            created_at: crate::domain::time::from_millis(0),
        };
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["_id"], v["id"]);
        assert_eq!(v["created_at"], "1970-01-01T00:00:00.000Z");
        assert!(v["thread_id"].is_null());
    }
}
