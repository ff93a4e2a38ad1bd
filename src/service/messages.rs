//! Message operations: send, list, edit (content, read receipt, reaction), delete.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::events::{self, raw, MessageDeleted, MessageEdited, MessageNew, ThreadUpdated};
use super::{ChatService, On, ServiceError, ServiceResult};
use crate::domain::audit::{ActorKind, AuditAction};
use crate::auth::Principal;
use crate::domain::time::now;
use crate::domain::{
    clean_content, clean_emoji, new_object_id, parse_object_id, Conversation, Message, SenderType, ThreadScope,
    ValidMessage, ValidationError, DEFAULT_MESSAGE_LIMIT, MAX_MESSAGE_LIMIT,
};
use crate::store::{MessageChange, Page};

/// PATCH /api/conversations/:id/messages/:mid, checked. `reaction: Some(None)` removes the
/// caller's reactions (the client sent `null`).
#[derive(Debug, Default)]
pub struct MessagePatch {
    pub content: Option<String>,
    pub mark_as_read: bool,
    pub reaction: Option<Option<String>>,
}

impl MessagePatch {
    pub fn from_value(v: &Value) -> Result<Self, ValidationError> {
        let Some(obj) = v.as_object() else {
            return Err(ValidationError::field("Validation failed", "body", "must be an object"));
        };
        let content = match obj.get("content") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(clean_content(s)?),
            Some(_) => return Err(ValidationError::field("Validation failed", "content", "must be a string")),
        };
        let mark_as_read = match obj.get("markAsRead") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(ValidationError::field("Validation failed", "markAsRead", "must be a boolean")),
        };
        let reaction = match obj.get("reaction") {
            None => None,
            Some(Value::Null) => Some(None),
            Some(Value::String(s)) => Some(Some(clean_emoji(s)?)),
            Some(_) => return Err(ValidationError::field("Validation failed", "reaction", "must be a string or null")),
        };
        if content.is_none() && !mark_as_read && reaction.is_none() {
            return Err(ValidationError::new("Validation failed").with("body", "nothing to change: send content, markAsRead or reaction"));
        }
        Ok(MessagePatch { content, mark_as_read, reaction })
    }
}

// Documents the body that `MessagePatch::from_value` reads; a struct could not tell an absent
// `reaction` from a null one.
/// Any of these; at least one.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct MessageEdit {
    /// New content (the sender only); sets `metadata.edited_at`.
    content: Option<String>,
    /// Sets `metadata.read_at`.
    mark_as_read: Option<bool>,
    /// Toggles the caller's reaction with this emoji; null removes the caller's reactions.
    reaction: Option<String>,
}

/// A catch-up read: what a client that has a message has not seen since, oldest first.
#[derive(Debug)]
pub struct MessagesAfter {
    pub messages: Vec<Message>,
    /// How many there are after the anchor, returned or not.
    pub total: u64,
    /// More follow the last one returned: ask again after it.
    pub has_more: bool,
}

/// Who a message is from, as stored, and who sent it for the audit trail.
pub(super) struct Sender {
    pub sender_type: SenderType,
    pub sender_id: String,
    pub actor: ActorKind,
    pub actor_id: String,
}

impl Sender {
    /// A user's or widget's own message.
    fn principal(p: &Principal) -> Self {
        let actor = if p.widget_conversation().is_some() { ActorKind::Widget } else { ActorKind::User };
        Sender { sender_type: SenderType::User, sender_id: p.user_id.clone(), actor, actor_id: p.user_id.clone() }
    }
}

impl ChatService {
    /// Persists a user's message and broadcasts it (`message:new`, and `message` unless legacy
    /// events are off; `thread:updated` when in a thread). Then, in the background, the
    /// conversation's agent answers it (see `agent`).
    pub async fn send_message(
        self: &Arc<Self>,
        p: &Principal,
        conversation_id: &str,
        input: ValidMessage,
    ) -> ServiceResult<Message> {
        let conversation = self.conversation_for(p, conversation_id).await?;
        let mut input = input;
        self.check_attachments(&conversation, &mut input.attachments).await?;
        let message = self.post_message(&conversation, Sender::principal(p), input, Map::new(), None).await?;
        self.start_agent(p, &conversation, &message);
        Ok(message)
    }

    /// Stores and broadcasts a message in a conversation the caller has already been allowed into.
    pub(super) async fn post_message(
        &self,
        conversation: &Conversation,
        sender: Sender,
        input: ValidMessage,
        metadata: Map<String, Value>,
        ai_metadata: Option<Map<String, Value>>,
    ) -> ServiceResult<Message> {
        if let Some(t) = &input.thread_id
            && conversation.thread(t).is_none()
        {
            return Err(ServiceError::NotFound("Thread not found"));
        }
        let message = Message {
            id: new_object_id(),
            conversation_id: conversation.id.clone(),
            thread_id: input.thread_id,
            role: sender.sender_type.role(),
            sender_type: sender.sender_type,
            sender_id: sender.sender_id.clone(),
            content: input.content,
            message_type: input.message_type,
            attachments: input.attachments,
            ai_metadata,
            metadata,
            created_at: now(),
        };
        let thread_count = self.store.insert_message(&message).await?;
        self.metrics.message_sent(message.sender_type);
        self.auditor.record_as(
            sender.actor,
            Some(sender.actor_id),
            AuditAction::MessageCreate,
            Some(&conversation.company_id),
            On::conversation(&message.conversation_id).subject(&message.id),
        );
        self.broadcast_message(&message.conversation_id, &raw(&message)).await;
        if let (Some(thread_id), Some(count)) = (&message.thread_id, thread_count) {
            let payload = raw(&ThreadUpdated { conversation_id: &message.conversation_id, thread_id, message_count: count });
            self.emit(&message.conversation_id, events::THREAD_UPDATED, &payload).await;
        }
        Ok(message)
    }

    /// `message:new` (and the legacy `message`) for a message already serialized once.
    pub(super) async fn broadcast_message(&self, conversation_id: &str, message: &serde_json::value::RawValue) {
        if self.legacy_events {
            self.emit(conversation_id, events::MESSAGE_LEGACY, message).await;
        }
        let payload = raw(&MessageNew { conversation_id, message });
        self.emit(conversation_id, events::MESSAGE_NEW, &payload).await;
    }

    /// The newest page of a thread (or the main thread), in chronological order.
    pub async fn list_messages(
        &self,
        p: &Principal,
        conversation_id: &str,
        thread_id: Option<&str>,
        limit: Option<&str>,
        offset: Option<&str>,
    ) -> ServiceResult<(Page<Message>, u32, u64)> {
        let c = self.conversation_for(p, conversation_id).await?;
        let (limit, offset) = super::conversations::page_params(limit, offset, DEFAULT_MESSAGE_LIMIT, MAX_MESSAGE_LIMIT)?;
        let scope = thread_scope(thread_id)?;
        let page = self.store.list_messages(&c.id, &scope, limit, offset).await?;
        Ok((page, limit, offset))
    }

    /// The messages of a thread (or the main thread) after `after`, oldest first: how a
    /// client catches up from the last message it has, asking again while `has_more`.
    pub async fn list_messages_after(
        &self,
        p: &Principal,
        conversation_id: &str,
        after: &str,
        thread_id: Option<&str>,
        limit: Option<&str>,
        offset: Option<&str>,
    ) -> ServiceResult<(MessagesAfter, u32)> {
        let c = self.conversation_for(p, conversation_id).await?;
        let (limit, offset) = super::conversations::page_params(limit, offset, DEFAULT_MESSAGE_LIMIT, MAX_MESSAGE_LIMIT)?;
        if offset != 0 {
            return Err(ValidationError::field("Validation failed", "offset", "cannot be combined with after; ask after the last message instead").into());
        }
        let after = parse_object_id("after", after)?;
        let scope = thread_scope(thread_id)?;
        Ok((self.messages_after(&c.id, Some(&scope), &after, limit).await?, limit))
    }

    /// The messages after `last_message_id`, the newest a joining socket has: every thread,
    /// as the room delivers them, at most `MAX_MESSAGE_LIMIT`.
    pub async fn missed_messages(&self, c: &Conversation, last_message_id: &str) -> ServiceResult<MessagesAfter> {
        let after = parse_object_id("lastMessageId", last_message_id)?;
        self.messages_after(&c.id, None, &after, MAX_MESSAGE_LIMIT).await
    }

    async fn messages_after(&self, conversation_id: &str, scope: Option<&ThreadScope>, after: &str, limit: u32) -> ServiceResult<MessagesAfter> {
        // One more than asked for tells, within the same read, whether more follow.
        let page = self
            .store
            .messages_after(conversation_id, scope, after, limit + 1)
            .await?
            .ok_or(ServiceError::NotFound("Message not found"))?;
        let mut messages = page.items;
        let has_more = messages.len() > limit as usize;
        messages.truncate(limit as usize);
        Ok(MessagesAfter { messages, total: page.total, has_more })
    }

    pub async fn edit_message(&self, p: &Principal, conversation_id: &str, message_id: &str, patch: MessagePatch) -> ServiceResult<Message> {
        let c = self.conversation_for(p, conversation_id).await?;
        let message_id = parse_object_id("messageId", message_id)?;
        let mut message =
            self.store.get_message(&c.id, &message_id).await?.ok_or(ServiceError::NotFound("Message not found"))?;
        let at = now();
        let mut changes = Vec::new();
        if let Some(content) = patch.content {
            if message.sender_id != p.user_id {
                return Err(super::refused(p, "Only the sender can edit this message"));
            }
            changes.push(MessageChange::Content { content, edited_at: at });
        }
        if patch.mark_as_read {
            changes.push(MessageChange::MarkRead { at });
        }
        if let Some(emoji) = patch.reaction {
            changes.push(MessageChange::Reaction { user_id: p.user_id.clone(), emoji, at });
        }
        for change in &changes {
            message = self
                .store
                .update_message(&c.id, &message_id, change)
                .await?
                .ok_or(ServiceError::NotFound("Message not found"))?;
        }
        // One record per request: an edit with a reaction or a read receipt is an edit.
        let action = match changes.first() {
            Some(MessageChange::Content { .. }) => AuditAction::MessageEdit,
            Some(MessageChange::MarkRead { .. }) if changes.len() == 1 => AuditAction::MessageRead,
            Some(MessageChange::MarkRead { .. }) => AuditAction::MessageReaction,
            _ => AuditAction::MessageReaction,
        };
        let what: Vec<&str> = changes
            .iter()
            .map(|c| match c {
                MessageChange::Content { .. } => "content",
                MessageChange::MarkRead { .. } => "read",
                MessageChange::Reaction { .. } => "reaction",
                MessageChange::MergeMetadata(_) => "metadata",
            })
            .collect();
        self.auditor.record(p, action, Some(&c.company_id), On::conversation(&c.id).subject(&message.id).detail(what.join(",")));
        self.announce_edit(&message).await;
        Ok(message)
    }

    pub(super) async fn announce_edit(&self, message: &Message) {
        let payload = raw(&MessageEdited { conversation_id: &message.conversation_id, message_id: &message.id, message });
        self.emit(&message.conversation_id, events::MESSAGE_EDITED, &payload).await;
    }

    pub async fn delete_message(&self, p: &Principal, conversation_id: &str, message_id: &str) -> ServiceResult<()> {
        let c = self.conversation_for(p, conversation_id).await?;
        let message_id = parse_object_id("messageId", message_id)?;
        let message =
            self.store.get_message(&c.id, &message_id).await?.ok_or(ServiceError::NotFound("Message not found"))?;
        if message.sender_id != p.user_id && !p.is_service() {
            return Err(super::refused(p, "Only the sender can delete this message"));
        }
        let at = now();
        if !self.store.soft_delete_message(&c.id, &message_id, at).await? {
            return Err(ServiceError::NotFound("Message not found"));
        }
        self.auditor.record(p, AuditAction::MessageDelete, Some(&c.company_id), On::conversation(&c.id).subject(&message_id));
        let payload = raw(&MessageDeleted {
            conversation_id: &c.id,
            message_id: &message_id,
            thread_id: message.thread_id.as_deref(),
        });
        self.emit(&c.id, events::MESSAGE_DELETED, &payload).await;
        Ok(())
    }
}

/// `thread_id` of a listing: absent, empty or `null` is the main thread.
fn thread_scope(thread_id: Option<&str>) -> Result<ThreadScope, ValidationError> {
    match thread_id.map(str::trim).filter(|t| !t.is_empty() && *t != "null") {
        None => Ok(ThreadScope::Main),
        Some(t) => Ok(ThreadScope::Thread(crate::domain::parse_thread_id("thread_id", t)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patch_rules() {
        assert!(MessagePatch::from_value(&json!({})).is_err());
        assert!(MessagePatch::from_value(&json!([])).is_err());
        let p = MessagePatch::from_value(&json!({"reaction": null})).unwrap();
        assert_eq!(p.reaction, Some(None));
        let p = MessagePatch::from_value(&json!({"reaction": "👍", "markAsRead": true})).unwrap();
        assert_eq!(p.reaction, Some(Some("👍".into())));
        assert!(p.mark_as_read);
        assert!(MessagePatch::from_value(&json!({"content": ""})).is_err());
        assert!(MessagePatch::from_value(&json!({"markAsRead": "yes"})).is_err());
    }
}
