//! Server → client events: their names, their payloads, and the `Broadcaster` that delivers
//! them to a conversation's room. Each payload is serialized once per broadcast (to a
//! `RawValue`) however many sockets receive it; a message's JSON is serialized once and
//! reused inside both its `message` and `message:new` events.

use async_trait::async_trait;
use serde::Serialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::domain::{Conversation, Message, Thread};

pub const CONVERSATION_JOINED: &str = "conversation:joined";
pub const MESSAGE_LEGACY: &str = "message";
pub const MESSAGE_NEW: &str = "message:new";
pub const MESSAGE_EDITED: &str = "message:edited";
pub const MESSAGE_DELETED: &str = "message:deleted";
pub const MESSAGE_ERROR: &str = "message:error";
pub const USER_TYPING: &str = "user:typing";
pub const TYPING_LEGACY: &str = "typing";
pub const TYPING_WIDGET: &str = "message:typing";
pub const USER_JOINED: &str = "user:joined";
pub const USER_LEFT: &str = "user:left";
pub const PRESENCE_UPDATE: &str = "presence:update";
pub const THREAD_CREATED: &str = "thread:created";
pub const THREAD_SWITCHED: &str = "thread:switched";
pub const THREAD_UPDATED: &str = "thread:updated";
pub const CONVERSATION_UPDATED: &str = "conversation:updated";
pub const PARTICIPANT_ADDED: &str = "participant:added";
pub const PARTICIPANT_REMOVED: &str = "participant:removed";
pub const ERROR: &str = "error";

pub fn room(conversation_id: &str) -> String {
    format!("conversation:{conversation_id}")
}

/// Delivers an already-serialized event to every socket in a conversation's room, on this
/// node and (with a cluster adapter) on every other.
#[async_trait]
pub trait Broadcaster: Send + Sync + 'static {
    async fn to_room(&self, conversation_id: &str, event: &'static str, payload: &RawValue);
}

/// Used when no realtime layer is attached (tools, some tests).
pub struct NoBroadcast;

#[async_trait]
impl Broadcaster for NoBroadcast {
    async fn to_room(&self, _: &str, _: &'static str, _: &RawValue) {}
}

pub fn raw<T: Serialize + ?Sized>(v: &T) -> Box<RawValue> {
    serde_json::value::to_raw_value(v).unwrap_or_else(|_| RawValue::from_string("null".into()).expect("null is JSON"))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageNew<'a> {
    pub conversation_id: &'a str,
    #[schema(value_type = Message)]
    pub message: &'a RawValue,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageEdited<'a> {
    pub conversation_id: &'a str,
    pub message_id: &'a str,
    pub message: &'a Message,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageDeleted<'a> {
    pub conversation_id: &'a str,
    pub message_id: &'a str,
    pub thread_id: Option<&'a str>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Typing<'a> {
    pub conversation_id: &'a str,
    pub user_id: &'a str,
    pub is_typing: bool,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserInRoom<'a> {
    pub conversation_id: &'a str,
    pub user_id: &'a str,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = PresenceUpdate)]
pub struct Presence<'a> {
    pub user_id: &'a str,
    /// `online` or `offline`.
    pub status: &'static str,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThreadCreated<'a> {
    pub conversation_id: &'a str,
    pub thread: &'a Thread,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThreadSwitched<'a> {
    pub conversation_id: &'a str,
    /// Null: the main thread.
    pub thread_id: Option<&'a str>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThreadUpdated<'a> {
    pub conversation_id: &'a str,
    pub thread_id: &'a str,
    #[serde(rename = "message_count")]
    pub message_count: u64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConversationUpdated<'a> {
    pub conversation_id: &'a str,
    pub conversation: &'a Conversation,
}

/// `conversation:joined`, to the joining socket only.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConversationJoined<'a> {
    pub id: &'a str,
    pub agent_id: &'a str,
    pub channel: &'a str,
    pub status: &'a str,
    pub started_at: String,
}

impl<'a> ConversationJoined<'a> {
    pub fn of(c: &'a Conversation) -> Self {
        ConversationJoined {
            id: &c.id,
            agent_id: &c.agent_id,
            channel: c.channel.as_str(),
            status: c.status.as_str(),
            started_at: crate::domain::time::to_iso(&c.started_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ErrorEvent<'a> {
    pub message: &'a str,
    /// For invalid input: each offending field.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<crate::domain::FieldError>>)]
    pub details: Option<&'a serde_json::Value>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageErrorEvent<'a> {
    /// The `tempId` of the refused `message:send`.
    pub message_id: &'a str,
    pub error: &'a str,
}
