//! /api/conversations/:id/messages: list (the newest page, or what came after a message), post,
//! edit, delete.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiResult;
use super::extract::{Body, Caller, PathParams, QueryParams};
use super::ApiContext;
use crate::domain::{MessageType, SendMessageInput};
use crate::service::MessagePatch;

#[derive(Deserialize)]
pub struct PageQuery {
    pub limit: Option<String>,
    pub offset: Option<String>,
    pub thread_id: Option<String>,
    /// A message id: list what came after it instead of the newest page.
    pub after: Option<String>,
}

pub async fn list(
    State(ctx): State<ApiContext>,
    Caller(p): Caller,
    PathParams(id): PathParams<String>,
    QueryParams(q): QueryParams<PageQuery>,
) -> ApiResult<Json<Value>> {
    if let Some(after) = q.after.as_deref() {
        let (newer, limit) = ctx
            .service
            .list_messages_after(&p, &id, after, q.thread_id.as_deref(), q.limit.as_deref(), q.offset.as_deref())
            .await?;
        return Ok(Json(json!({
            "messages": newer.messages, "total": newer.total, "limit": limit, "offset": 0, "hasMore": newer.has_more
        })));
    }
    let (page, limit, offset) =
        ctx.service.list_messages(&p, &id, q.thread_id.as_deref(), q.limit.as_deref(), q.offset.as_deref()).await?;
    Ok(Json(json!({ "messages": page.items, "total": page.total, "limit": limit, "offset": offset })))
}

pub async fn create(
    State(ctx): State<ApiContext>,
    Caller(p): Caller,
    PathParams(id): PathParams<String>,
    Body(body): Body<Value>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let input = SendMessageInput::from_value(body)?.validate(MessageType::Text)?;
    let message = ctx.service.send_message(&p, &id, input).await?;
    Ok((StatusCode::CREATED, Json(json!({ "message": message }))))
}

pub async fn edit(
    State(ctx): State<ApiContext>,
    Caller(p): Caller,
    PathParams((id, mid)): PathParams<(String, String)>,
    Body(body): Body<Value>,
) -> ApiResult<Json<Value>> {
    let patch = MessagePatch::from_value(&body)?;
    let message = ctx.service.edit_message(&p, &id, &mid, patch).await?;
    Ok(Json(json!({ "message": message })))
}

pub async fn delete(
    State(ctx): State<ApiContext>,
    Caller(p): Caller,
    PathParams((id, mid)): PathParams<(String, String)>,
) -> ApiResult<Json<Value>> {
    ctx.service.delete_message(&p, &id, &mid).await?;
    Ok(Json(json!({ "success": true })))
}
