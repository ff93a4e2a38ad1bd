//! /api/conversations/:id/threads: create, read with messages, post into.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::error::ApiResult;
use super::extract::{Body, Caller, PathParams, QueryParams};
use super::messages::PageQuery;
use super::ApiContext;
use crate::domain::{MessageType, SendMessageInput, ValidationError};

pub async fn create(
    State(ctx): State<ApiContext>,
    Caller(p): Caller,
    PathParams(id): PathParams<String>,
    Body(body): Body<Value>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let Some(Value::String(title)) = body.get("title") else {
        return Err(ValidationError::field("Validation failed", "title", "must be a string").into());
    };
    let thread = ctx.service.create_thread(&p, &id, title).await?;
    Ok((StatusCode::CREATED, Json(json!({ "thread": thread }))))
}

pub async fn get(
    State(ctx): State<ApiContext>,
    Caller(p): Caller,
    PathParams((id, tid)): PathParams<(String, String)>,
    QueryParams(q): QueryParams<PageQuery>,
) -> ApiResult<Json<Value>> {
    let (thread, page, limit, offset) =
        ctx.service.get_thread(&p, &id, &tid, q.limit.as_deref(), q.offset.as_deref()).await?;
    Ok(Json(json!({ "thread": thread, "messages": page.items, "total": page.total, "limit": limit, "offset": offset })))
}

pub async fn post_message(
    State(ctx): State<ApiContext>,
    Caller(p): Caller,
    PathParams((id, tid)): PathParams<(String, String)>,
    Body(body): Body<Value>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let mut input = SendMessageInput::from_value(body)?;
    input.thread_id = Some(Value::String(tid));
    let message = ctx.service.send_message(&p, &id, input.validate(MessageType::Text)?).await?;
    Ok((StatusCode::CREATED, Json(json!({ "message": message }))))
}
