//! /api/conversations/:id/messages: list (the newest page, or what came after a message), post,
//! edit, delete.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::conversations::ConversationPath;
use super::error::{ApiErrors, ApiResult, ErrorBody};
use super::extract::{Body, Caller, PathParams, QueryParams};
use super::{ApiContext, Success};
use crate::domain::{Message, MessageType, SendMessageInput};
use crate::service::{MessageEdit, MessagePatch};

const TAG: &str = "messages";

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct MessagePath {
    /// Conversation id: 24 hex characters.
    pub id: String,
    /// Message id: 24 hex characters.
    pub mid: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Messages per page: 50 by default, at most 100.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// Messages to skip from the newest; not with `after`.
    #[param(value_type = Option<u64>)]
    pub offset: Option<String>,
    /// List this thread instead of the main thread.
    pub thread_id: Option<String>,
    /// A message id: list what came after it, oldest first, instead of the newest page.
    pub after: Option<String>,
}

/// A page of messages in chronological order. After `after=`, the messages that came after
/// that one, with `hasMore`.
#[derive(Serialize, ToSchema)]
pub struct MessagePage {
    pub messages: Vec<Message>,
    /// How many there are (after the given message, with `after`).
    pub total: u64,
    pub limit: u32,
    pub offset: u64,
    /// Only with `after`: more follow the last one returned; ask again after it.
    #[serde(rename = "hasMore", skip_serializing_if = "Option::is_none")]
    pub has_more: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct MessageBody {
    pub message: Message,
}

/// List messages
///
/// The newest page of the main thread's messages (or of `thread_id`'s), in chronological
/// order. With `after=<messageId>`: the messages that came after that one, oldest first, with
/// `hasMore` (how a client that was away catches up); an id that is not a message of the
/// conversation is a 404, and `offset` cannot be combined with it.
#[utoipa::path(
    get, path = "/conversations/{id}/messages", tag = TAG, operation_id = "listMessages", security(("bearer" = [])),
    params(ConversationPath, PageQuery),
    responses((status = 200, description = "A page of messages", body = MessagePage), ApiErrors),
)]
pub async fn list(
    State(ctx): State<ApiContext>,
    Caller(p): Caller,
    PathParams(ConversationPath { id }): PathParams<ConversationPath>,
    QueryParams(q): QueryParams<PageQuery>,
) -> ApiResult<Json<MessagePage>> {
    if let Some(after) = q.after.as_deref() {
        let (newer, limit) = ctx
            .service
            .list_messages_after(&p, &id, after, q.thread_id.as_deref(), q.limit.as_deref(), q.offset.as_deref())
            .await?;
        return Ok(Json(MessagePage {
            messages: newer.messages,
            total: newer.total,
            limit,
            offset: 0,
            has_more: Some(newer.has_more),
        }));
    }
    let (page, limit, offset) =
        ctx.service.list_messages(&p, &id, q.thread_id.as_deref(), q.limit.as_deref(), q.offset.as_deref()).await?;
    Ok(Json(MessagePage { messages: page.items, total: page.total, limit, offset, has_more: None }))
}

/// Post a message
///
/// As `message:send` does: stored, then broadcast to the room.
#[utoipa::path(
    post, path = "/conversations/{id}/messages", tag = TAG, operation_id = "postMessage", security(("bearer" = [])),
    params(ConversationPath),
    request_body = SendMessageInput,
    responses((status = 201, description = "Stored and broadcast", body = MessageBody), ApiErrors),
)]
pub async fn create(
    State(ctx): State<ApiContext>,
    Caller(p): Caller,
    PathParams(ConversationPath { id }): PathParams<ConversationPath>,
    Body(body): Body<Value>,
) -> ApiResult<(StatusCode, Json<MessageBody>)> {
    let input = SendMessageInput::from_value(body)?.validate(MessageType::Text)?;
    let message = ctx.service.send_message(&p, &id, input).await?;
    Ok((StatusCode::CREATED, Json(MessageBody { message })))
}

/// Edit, mark as read, react
///
/// Edits the content (the sender only), marks the message read, or toggles the caller's
/// reaction. The room gets `message:edited`.
#[utoipa::path(
    patch, path = "/conversations/{id}/messages/{mid}", tag = TAG, operation_id = "editMessage", security(("bearer" = [])),
    params(MessagePath),
    request_body = MessageEdit,
    responses(
        (status = 200, description = "The message", body = MessageBody),
        (status = 403, description = "Editing another sender's content", body = ErrorBody),
        ApiErrors,
    ),
)]
pub async fn edit(
    State(ctx): State<ApiContext>,
    Caller(p): Caller,
    PathParams(MessagePath { id, mid }): PathParams<MessagePath>,
    Body(body): Body<Value>,
) -> ApiResult<Json<MessageBody>> {
    let patch = MessagePatch::from_value(&body)?;
    let message = ctx.service.edit_message(&p, &id, &mid, patch).await?;
    Ok(Json(MessageBody { message }))
}

/// Delete a message
///
/// Its sender or a service only. Kept in storage with `metadata.deleted_at` for the audit
/// trail, never listed or returned again. The room gets `message:deleted`.
#[utoipa::path(
    delete, path = "/conversations/{id}/messages/{mid}", tag = TAG, operation_id = "deleteMessage", security(("bearer" = [])),
    params(MessagePath),
    responses(
        (status = 200, description = "Deleted", body = Success),
        (status = 403, description = "Deleting another sender's message", body = ErrorBody),
        ApiErrors,
    ),
)]
pub async fn delete(
    State(ctx): State<ApiContext>,
    Caller(p): Caller,
    PathParams(MessagePath { id, mid }): PathParams<MessagePath>,
) -> ApiResult<Json<Success>> {
    ctx.service.delete_message(&p, &id, &mid).await?;
    Ok(Json(Success::yes()))
}
