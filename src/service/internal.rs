//! Operations of the internal API, called by sibling services (voice agent, workflows) with
//! the service token. They are not confined to one company; the caller is trusted.

use serde::Deserialize;
use utoipa::ToSchema;
use serde_json::{Map, Value};

use super::events::raw;
use super::messages::Sender;
use super::{ChatService, On, ServiceResult};
use crate::domain::audit::{ActorKind, AuditAction};
use crate::auth::Principal;
use crate::domain::time::parse_client_date;
use crate::domain::{
    clamp_limit, clean_content, clean_user_id, id_from_value, refuse_control_chars, optional_thread_id, ConversationChanges, Message, MessageType, SenderType,
    ValidMessage, ValidationError,
};
use crate::store::Page;

/// POST /api/internal/messages/create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InternalCreateInput {
    #[schema(value_type = String)]
    pub conversation_id: Option<Value>,
    /// 1 to 10 000 characters once trimmed; sanitized.
    #[schema(value_type = String)]
    pub content: Option<Value>,
    #[schema(value_type = SenderType)]
    pub sender_type: Option<String>,
    /// Defaults to the conversation's agent for `agent`, its contact (else `service`) for
    /// `user`, and `system` for `system`.
    pub sender_id: Option<String>,
    /// Defaults to `audio`.
    #[schema(value_type = Option<MessageType>)]
    pub message_type: Option<String>,
    /// Null or absent: the main thread.
    #[schema(value_type = Option<String>)]
    pub thread_id: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
}

/// POST /api/internal/messages/list.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InternalListInput {
    #[schema(value_type = String)]
    pub company_id: Option<Value>,
    /// 100 by default, at most 1000.
    pub limit: Option<i64>,
    /// Bounds `created_at`, inclusive: ISO-8601, `YYYY-MM-DD` or epoch milliseconds.
    pub start_date: Option<String>,
    pub end_date: Option<String>,
}

impl ChatService {
    /// Re-broadcasts a message another service built. `_id` and `id` are both set on the way
    /// out, so widgets de-duplicate it.
    pub async fn internal_emit(&self, conversation_id: &Value, message: Value) -> ServiceResult<String> {
        let id = id_from_value("conversationId", Some(conversation_id))?;
        let Value::Object(mut message) = message else {
            return Err(ValidationError::field("Validation failed", "message", "must be an object").into());
        };
        let c = self.conversation_for(&Principal::service(), &id).await?;
        let message_id = ["id", "_id"]
            .iter()
            .find_map(|k| message.get(*k).and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(crate::domain::new_object_id);
        message.insert("_id".into(), Value::String(message_id.clone()));
        message.insert("id".into(), Value::String(message_id.clone()));
        message.entry("conversation_id").or_insert_with(|| Value::String(c.id.clone()));
        self.broadcast_message(&c.id, &raw(&message)).await;
        let on = On::conversation(&c.id).subject(&message_id);
        self.auditor.record(&Principal::service(), AuditAction::MessageRelay, Some(&c.company_id), on);
        Ok(message_id)
    }

    pub async fn internal_create(&self, input: InternalCreateInput) -> ServiceResult<Message> {
        let id = id_from_value("conversationId", input.conversation_id.as_ref())?;
        let c = self.conversation_for(&Principal::service(), &id).await?;
        let content = match &input.content {
            Some(Value::String(s)) => clean_content(s)?,
            _ => return Err(ValidationError::field("Invalid message data", "content", "must be a non-empty string").into()),
        };
        let sender_type = match input.sender_type.as_deref() {
            Some(s) => SenderType::parse(s)
                .ok_or_else(|| ValidationError::field("Invalid message data", "senderType", "must be user, agent or system"))?,
            None => return Err(ValidationError::field("Invalid message data", "senderType", "is required").into()),
        };
        let message_type = match input.message_type.as_deref() {
            None => MessageType::Audio,
            Some(s) => MessageType::parse(s)
                .ok_or_else(|| ValidationError::field("Invalid message data", "messageType", "is not a message type"))?,
        };
        let sender_id = match input.sender_id.as_deref() {
            Some(s) => clean_user_id("senderId", s)?,
            None => match sender_type {
                SenderType::Agent => c.agent_id.clone(),
                SenderType::User => c.contact_id.clone().unwrap_or_else(|| "service".into()),
                SenderType::System => "system".into(),
            },
        };
        let thread_id = optional_thread_id(input.thread_id.as_ref(), "threadId")?;
        let metadata = crate::domain::clean_metadata("metadata", input.metadata.unwrap_or_default())?;
        let valid = ValidMessage { content, message_type, thread_id, attachments: Vec::new() };
        let sender = Sender { sender_type, sender_id, actor: ActorKind::Service, actor_id: "service".into() };
        self.post_message(&c, sender, valid, metadata, None).await
    }

    pub async fn internal_list(&self, input: InternalListInput) -> ServiceResult<Page<Message>> {
        let company = match &input.company_id {
            Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 128 => s.trim().to_string(),
            _ => return Err(ValidationError::field("Validation failed", "companyId", "must be a non-empty string").into()),
        };
        refuse_control_chars("Validation failed", "companyId", &company)?;
        let date = |field: &str, v: &Option<String>| {
            v.as_deref()
                .map(|s| parse_client_date(s).ok_or_else(|| ValidationError::field("Validation failed", field, "must be a date")))
                .transpose()
        };
        let limit = clamp_limit(input.limit, 100, 1000);
        let from = date("startDate", &input.start_date)?;
        let to = date("endDate", &input.end_date)?;
        Ok(self.store.list_company_messages(&company, limit, from, to).await?)
    }

    pub async fn internal_update_conversation(&self, id: &str, changes: ConversationChanges) -> ServiceResult<()> {
        self.update_conversation(&Principal::service(), id, changes).await.map(|_| ())
    }
}
