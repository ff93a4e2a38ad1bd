//! /api/conversations: list, create, read, update, delete; participants; presence.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiErrors, ApiResult};
use super::extract::{Body, Caller, PathParams, QueryParams};
use super::{ApiContext, Success};
use crate::domain::{Conversation, CreateConversationInput, UpdateConversationInput, ValidationError};
use crate::service::ConversationQuery;

const TAG: &str = "conversations";

/// The conversation named in the path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ConversationPath {
    /// Conversation id: 24 hex characters.
    pub id: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ParticipantPath {
    /// Conversation id: 24 hex characters.
    pub id: String,
    pub user_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct ConversationBody {
    pub conversation: Conversation,
}

/// A page of conversations, newest `started_at` first.
#[derive(Serialize, ToSchema)]
pub struct ConversationList {
    pub conversations: Vec<Conversation>,
    /// How many match the filters.
    pub total: u64,
    pub limit: u32,
    pub offset: u64,
}

/// Who is online in a conversation.
#[derive(Serialize, ToSchema)]
pub struct PresenceBody {
    /// User ids with a socket in the conversation's room, on any node.
    pub online: Vec<String>,
}

/// List conversations
///
/// The caller's company's conversations, filtered, newest `started_at` first. A widget token
/// sees its one conversation.
#[utoipa::path(
    get, path = "/conversations", tag = TAG, operation_id = "listConversations", security(("bearer" = [])),
    params(ConversationQuery),
    responses((status = 200, description = "A page of conversations", body = ConversationList), ApiErrors),
)]
pub async fn list(
    State(ctx): State<ApiContext>,
    Caller(p): Caller,
    QueryParams(q): QueryParams<ConversationQuery>,
) -> ApiResult<Json<ConversationList>> {
    let (page, limit, offset) = ctx.service.list_conversations(&p, q).await?;
    Ok(Json(ConversationList { conversations: page.items, total: page.total, limit, offset }))
}

/// Create a conversation
///
/// In the caller's company; the caller becomes a participant.
#[utoipa::path(
    post, path = "/conversations", tag = TAG, operation_id = "createConversation", security(("bearer" = [])),
    request_body = CreateConversationInput,
    responses((status = 201, description = "Created", body = ConversationBody), ApiErrors),
)]
pub async fn create(
    State(ctx): State<ApiContext>,
    Caller(p): Caller,
    Body(input): Body<CreateConversationInput>,
) -> ApiResult<(StatusCode, Json<ConversationBody>)> {
    let conversation = ctx.service.create_conversation(&p, input).await?;
    Ok((StatusCode::CREATED, Json(ConversationBody { conversation })))
}

/// Read a conversation
#[utoipa::path(
    get, path = "/conversations/{id}", tag = TAG, operation_id = "getConversation", security(("bearer" = [])),
    params(ConversationPath),
    responses((status = 200, description = "The conversation", body = ConversationBody), ApiErrors),
)]
pub async fn get(
    State(ctx): State<ApiContext>,
    Caller(p): Caller,
    PathParams(ConversationPath { id }): PathParams<ConversationPath>,
) -> ApiResult<Json<ConversationBody>> {
    let conversation = ctx.service.get_conversation(&p, &id).await?;
    Ok(Json(ConversationBody { conversation }))
}

/// Update a conversation
///
/// PUT and PATCH are both partial: only the fields given change. The room gets
/// `conversation:updated`.
#[utoipa::path(
    method(put, patch), path = "/conversations/{id}", tag = TAG, operation_id = "updateConversation", security(("bearer" = [])),
    params(ConversationPath),
    request_body = UpdateConversationInput,
    responses((status = 200, description = "The updated conversation", body = ConversationBody), ApiErrors),
)]
pub async fn update(
    State(ctx): State<ApiContext>,
    Caller(p): Caller,
    PathParams(ConversationPath { id }): PathParams<ConversationPath>,
    Body(input): Body<UpdateConversationInput>,
) -> ApiResult<Json<ConversationBody>> {
    let conversation = ctx.service.update_conversation(&p, &id, input.into_changes(false)?).await?;
    Ok(Json(ConversationBody { conversation }))
}

/// Delete a conversation
///
/// Its messages go with it.
#[utoipa::path(
    delete, path = "/conversations/{id}", tag = TAG, operation_id = "deleteConversation", security(("bearer" = [])),
    params(ConversationPath),
    responses((status = 200, description = "Deleted", body = Success), ApiErrors),
)]
pub async fn delete(
    State(ctx): State<ApiContext>,
    Caller(p): Caller,
    PathParams(ConversationPath { id }): PathParams<ConversationPath>,
) -> ApiResult<Json<Success>> {
    ctx.service.delete_conversation(&p, &id).await?;
    Ok(Json(Success::yes()))
}

#[derive(Deserialize, ToSchema)]
pub struct ParticipantBody {
    /// Also accepted as `user_id`.
    #[serde(rename = "userId", alias = "user_id")]
    #[schema(value_type = String)]
    user_id: Option<Value>,
}

/// Add a participant
///
/// The room gets `participant:added`.
#[utoipa::path(
    post, path = "/conversations/{id}/participants", tag = TAG, operation_id = "addParticipant", security(("bearer" = [])),
    params(ConversationPath),
    request_body = ParticipantBody,
    responses((status = 200, description = "The conversation", body = ConversationBody), ApiErrors),
)]
pub async fn add_participant(
    State(ctx): State<ApiContext>,
    Caller(p): Caller,
    PathParams(ConversationPath { id }): PathParams<ConversationPath>,
    Body(body): Body<ParticipantBody>,
) -> ApiResult<Json<ConversationBody>> {
    let Some(Value::String(user_id)) = body.user_id else {
        return Err(ValidationError::field("Validation failed", "userId", "must be a string").into());
    };
    let conversation = ctx.service.set_participant(&p, &id, &user_id, true).await?;
    Ok(Json(ConversationBody { conversation }))
}

/// Remove a participant
///
/// The room gets `participant:removed`.
#[utoipa::path(
    delete, path = "/conversations/{id}/participants/{user_id}", tag = TAG, operation_id = "removeParticipant", security(("bearer" = [])),
    params(ParticipantPath),
    responses((status = 200, description = "The conversation", body = ConversationBody), ApiErrors),
)]
pub async fn remove_participant(
    State(ctx): State<ApiContext>,
    Caller(p): Caller,
    PathParams(ParticipantPath { id, user_id }): PathParams<ParticipantPath>,
) -> ApiResult<Json<ConversationBody>> {
    let conversation = ctx.service.set_participant(&p, &id, &user_id, false).await?;
    Ok(Json(ConversationBody { conversation }))
}

/// Who is online
///
/// The users with a socket in the conversation's room, on any node.
#[utoipa::path(
    get, path = "/conversations/{id}/presence", tag = TAG, operation_id = "getPresence", security(("bearer" = [])),
    params(ConversationPath),
    responses((status = 200, description = "The users online", body = PresenceBody), ApiErrors),
)]
pub async fn presence(
    State(ctx): State<ApiContext>,
    Caller(p): Caller,
    PathParams(ConversationPath { id }): PathParams<ConversationPath>,
) -> ApiResult<Json<PresenceBody>> {
    let c = ctx.service.get_conversation(&p, &id).await?;
    Ok(Json(PresenceBody { online: ctx.presence.online_in(&c.id).await }))
}
