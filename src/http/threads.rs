//! /api/conversations/:id/threads: create, read with messages, post into.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::conversations::ConversationPath;
use super::error::{ApiErrors, ApiResult};
use super::extract::{Body, Caller, PathParams, QueryParams};
use super::messages::MessageBody;
use super::ApiContext;
use crate::domain::{Message, MessageType, SendMessageInput, Thread, ValidationError};

const TAG: &str = "threads";

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ThreadPath {
    /// Conversation id: 24 hex characters.
    pub id: String,
    /// Thread id.
    pub tid: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ThreadPageQuery {
    /// Messages per page: 50 by default, at most 100.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// Messages to skip from the newest.
    #[param(value_type = Option<u64>)]
    pub offset: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct NewThread {
    /// 1 to 200 characters once trimmed and sanitized.
    #[schema(value_type = String)]
    title: Option<Value>,
}

#[derive(Serialize, ToSchema)]
pub struct ThreadBody {
    pub thread: Thread,
}

/// A thread with the newest page of its messages, in chronological order.
#[derive(Serialize, ToSchema)]
pub struct ThreadPage {
    pub thread: Thread,
    pub messages: Vec<Message>,
    pub total: u64,
    pub limit: u32,
    pub offset: u64,
}

/// Start a thread
///
/// The room gets `thread:created`.
#[utoipa::path(
    post, path = "/conversations/{id}/threads", tag = TAG, operation_id = "createThread", security(("bearer" = [])),
    params(ConversationPath),
    request_body = NewThread,
    responses((status = 201, description = "Created", body = ThreadBody), ApiErrors),
)]
pub async fn create(
    State(ctx): State<ApiContext>,
    Caller(p): Caller,
    PathParams(ConversationPath { id }): PathParams<ConversationPath>,
    Body(body): Body<NewThread>,
) -> ApiResult<(StatusCode, Json<ThreadBody>)> {
    let Some(Value::String(title)) = body.title else {
        return Err(ValidationError::field("Validation failed", "title", "must be a string").into());
    };
    let thread = ctx.service.create_thread(&p, &id, &title).await?;
    Ok((StatusCode::CREATED, Json(ThreadBody { thread })))
}

/// Read a thread
///
/// The thread and the newest page of its messages, in chronological order.
#[utoipa::path(
    get, path = "/conversations/{id}/threads/{tid}", tag = TAG, operation_id = "getThread", security(("bearer" = [])),
    params(ThreadPath, ThreadPageQuery),
    responses((status = 200, description = "The thread and its messages", body = ThreadPage), ApiErrors),
)]
pub async fn get(
    State(ctx): State<ApiContext>,
    Caller(p): Caller,
    PathParams(ThreadPath { id, tid }): PathParams<ThreadPath>,
    QueryParams(q): QueryParams<ThreadPageQuery>,
) -> ApiResult<Json<ThreadPage>> {
    let (thread, page, limit, offset) =
        ctx.service.get_thread(&p, &id, &tid, q.limit.as_deref(), q.offset.as_deref()).await?;
    Ok(Json(ThreadPage { thread, messages: page.items, total: page.total, limit, offset }))
}

/// Post a message into a thread
///
/// As `POST /api/conversations/{id}/messages`, with the path's thread.
#[utoipa::path(
    post, path = "/conversations/{id}/threads/{tid}", tag = TAG, operation_id = "postThreadMessage", security(("bearer" = [])),
    params(ThreadPath),
    request_body = SendMessageInput,
    responses((status = 201, description = "Stored and broadcast", body = MessageBody), ApiErrors),
)]
pub async fn post_message(
    State(ctx): State<ApiContext>,
    Caller(p): Caller,
    PathParams(ThreadPath { id, tid }): PathParams<ThreadPath>,
    Body(body): Body<Value>,
) -> ApiResult<(StatusCode, Json<MessageBody>)> {
    let mut input = SendMessageInput::from_value(body)?;
    input.thread_id = Some(Value::String(tid));
    let message = ctx.service.send_message(&p, &id, input.validate(MessageType::Text)?).await?;
    Ok((StatusCode::CREATED, Json(MessageBody { message })))
}
