//! /api/internal: the service-to-service API (voice agent, workflows), behind the internal token.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::conversations::ConversationPath;
use super::error::{ApiErrors, ApiResult};
use super::extract::{Body, InternalCaller, PathParams};
use super::{ApiContext, Success};
use crate::domain::{Message, UpdateConversationInput};
use crate::service::{InternalCreateInput, InternalListInput};

const TAG: &str = "internal";

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmitBody {
    #[schema(value_type = String)]
    conversation_id: Option<Value>,
    /// A message document, relayed as it is; `_id` and `id` are both set on the way out.
    #[schema(value_type = Object)]
    message: Option<Value>,
}

#[derive(Serialize, ToSchema)]
pub struct EmittedMessage {
    pub success: bool,
    #[serde(rename = "messageId")]
    pub message_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedMessage {
    pub success: bool,
    pub message: Message,
}

/// A company's messages, newest first.
#[derive(Serialize, ToSchema)]
pub struct CompanyMessages {
    pub messages: Vec<Message>,
    pub total: u64,
}

/// Broadcast a message
///
/// Relays a message another service built to the conversation's room, as it is; nothing is
/// stored.
#[utoipa::path(
    post, path = "/internal/messages/emit", tag = TAG, operation_id = "internalEmitMessage", security(("internal" = [])),
    request_body = EmitBody,
    responses((status = 200, description = "Broadcast", body = EmittedMessage), ApiErrors),
)]
pub async fn emit(State(ctx): State<ApiContext>, _: InternalCaller, Body(body): Body<EmitBody>) -> ApiResult<Json<EmittedMessage>> {
    let id = body.conversation_id.unwrap_or(Value::Null);
    let message_id = ctx.service.internal_emit(&id, body.message.unwrap_or(Value::Null)).await?;
    Ok(Json(EmittedMessage { success: true, message_id }))
}

/// Create a message
///
/// Stores a message for a service (a voice transcript, a workflow note) and broadcasts it.
#[utoipa::path(
    post, path = "/internal/messages/create", tag = TAG, operation_id = "internalCreateMessage", security(("internal" = [])),
    request_body = InternalCreateInput,
    responses((status = 200, description = "Stored and broadcast", body = CreatedMessage), ApiErrors),
)]
pub async fn create(
    State(ctx): State<ApiContext>,
    _: InternalCaller,
    Body(input): Body<InternalCreateInput>,
) -> ApiResult<Json<CreatedMessage>> {
    let message = ctx.service.internal_create(input).await?;
    Ok(Json(CreatedMessage { success: true, message }))
}

/// List a company's messages
///
/// Across all its conversations, newest first.
#[utoipa::path(
    post, path = "/internal/messages/list", tag = TAG, operation_id = "internalListMessages", security(("internal" = [])),
    request_body = InternalListInput,
    responses((status = 200, description = "The messages", body = CompanyMessages), ApiErrors),
)]
pub async fn list(
    State(ctx): State<ApiContext>,
    _: InternalCaller,
    Body(input): Body<InternalListInput>,
) -> ApiResult<Json<CompanyMessages>> {
    let page = ctx.service.internal_list(input).await?;
    Ok(Json(CompanyMessages { messages: page.items, total: page.total }))
}

/// Update a conversation
///
/// Of any company; `metadata` is merged key by key. The room gets `conversation:updated`.
#[utoipa::path(
    method(patch, put), path = "/internal/conversations/{id}", tag = TAG, operation_id = "internalUpdateConversation", security(("internal" = [])),
    params(ConversationPath),
    request_body = UpdateConversationInput,
    responses((status = 200, description = "Updated", body = Success), ApiErrors),
)]
pub async fn update_conversation(
    State(ctx): State<ApiContext>,
    _: InternalCaller,
    PathParams(ConversationPath { id }): PathParams<ConversationPath>,
    Body(input): Body<UpdateConversationInput>,
) -> ApiResult<Json<Success>> {
    ctx.service.internal_update_conversation(&id, input.into_changes(true)?).await?;
    Ok(Json(Success::yes()))
}

/// Update a conversation (alternative path)
///
/// The same as `PATCH /api/internal/conversations/{id}`, under the path the deployed services
/// call.
#[utoipa::path(
    method(patch, post, put), path = "/internal/conversations/{id}/update", tag = TAG, operation_id = "internalUpdateConversationAtUpdate", security(("internal" = [])),
    params(ConversationPath),
    request_body = UpdateConversationInput,
    responses((status = 200, description = "Updated", body = Success), ApiErrors),
)]
pub async fn update_conversation_at_update(
    ctx: State<ApiContext>,
    caller: InternalCaller,
    path: PathParams<ConversationPath>,
    body: Body<UpdateConversationInput>,
) -> ApiResult<Json<Success>> {
    update_conversation(ctx, caller, path, body).await
}
