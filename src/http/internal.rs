//! /api/internal: the service-to-service API (voice agent, workflows), behind the internal token.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiResult;
use super::extract::{Body, InternalCaller, PathParams};
use super::ApiContext;
use crate::domain::UpdateConversationInput;
use crate::service::{InternalCreateInput, InternalListInput};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmitBody {
    conversation_id: Option<Value>,
    message: Option<Value>,
}

pub async fn emit(State(ctx): State<ApiContext>, _: InternalCaller, Body(body): Body<EmitBody>) -> ApiResult<Json<Value>> {
    let id = body.conversation_id.unwrap_or(Value::Null);
    let message_id = ctx.service.internal_emit(&id, body.message.unwrap_or(Value::Null)).await?;
    Ok(Json(json!({ "success": true, "messageId": message_id })))
}

pub async fn create(
    State(ctx): State<ApiContext>,
    _: InternalCaller,
    Body(input): Body<InternalCreateInput>,
) -> ApiResult<Json<Value>> {
    let message = ctx.service.internal_create(input).await?;
    Ok(Json(json!({ "success": true, "message": message })))
}

pub async fn list(State(ctx): State<ApiContext>, _: InternalCaller, Body(input): Body<InternalListInput>) -> ApiResult<Json<Value>> {
    let page = ctx.service.internal_list(input).await?;
    Ok(Json(json!({ "messages": page.items, "total": page.total })))
}

pub async fn update_conversation(
    State(ctx): State<ApiContext>,
    _: InternalCaller,
    PathParams(id): PathParams<String>,
    Body(input): Body<UpdateConversationInput>,
) -> ApiResult<Json<Value>> {
    ctx.service.internal_update_conversation(&id, input.into_changes(true)?).await?;
    Ok(Json(json!({ "success": true })))
}
