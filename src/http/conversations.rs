//! /api/conversations: list, create, read, update, delete; participants; presence.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiResult;
use super::extract::{Body, Caller, PathParams, QueryParams};
use super::ApiContext;
use crate::domain::{CreateConversationInput, UpdateConversationInput, ValidationError};
use crate::service::ConversationQuery;

pub async fn list(
    State(ctx): State<ApiContext>,
    Caller(p): Caller,
    QueryParams(q): QueryParams<ConversationQuery>,
) -> ApiResult<Json<Value>> {
    let (page, limit, offset) = ctx.service.list_conversations(&p, q).await?;
    Ok(Json(json!({ "conversations": page.items, "total": page.total, "limit": limit, "offset": offset })))
}

pub async fn create(
    State(ctx): State<ApiContext>,
    Caller(p): Caller,
    Body(input): Body<CreateConversationInput>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let c = ctx.service.create_conversation(&p, input).await?;
    Ok((StatusCode::CREATED, Json(json!({ "conversation": c }))))
}

pub async fn get(
    State(ctx): State<ApiContext>,
    Caller(p): Caller,
    PathParams(id): PathParams<String>,
) -> ApiResult<Json<Value>> {
    let c = ctx.service.get_conversation(&p, &id).await?;
    Ok(Json(json!({ "conversation": c })))
}

pub async fn update(
    State(ctx): State<ApiContext>,
    Caller(p): Caller,
    PathParams(id): PathParams<String>,
    Body(input): Body<UpdateConversationInput>,
) -> ApiResult<Json<Value>> {
    let c = ctx.service.update_conversation(&p, &id, input.into_changes(false)?).await?;
    Ok(Json(json!({ "conversation": c })))
}

pub async fn delete(
    State(ctx): State<ApiContext>,
    Caller(p): Caller,
    PathParams(id): PathParams<String>,
) -> ApiResult<Json<Value>> {
    ctx.service.delete_conversation(&p, &id).await?;
    Ok(Json(json!({ "success": true })))
}

#[derive(Deserialize)]
pub struct ParticipantBody {
    #[serde(rename = "userId", alias = "user_id")]
    user_id: Option<Value>,
}

pub async fn add_participant(
    State(ctx): State<ApiContext>,
    Caller(p): Caller,
    PathParams(id): PathParams<String>,
    Body(body): Body<ParticipantBody>,
) -> ApiResult<Json<Value>> {
    let Some(Value::String(user_id)) = body.user_id else {
        return Err(ValidationError::field("Validation failed", "userId", "must be a string").into());
    };
    let c = ctx.service.set_participant(&p, &id, &user_id, true).await?;
    Ok(Json(json!({ "conversation": c })))
}

pub async fn remove_participant(
    State(ctx): State<ApiContext>,
    Caller(p): Caller,
    PathParams((id, user_id)): PathParams<(String, String)>,
) -> ApiResult<Json<Value>> {
    let c = ctx.service.set_participant(&p, &id, &user_id, false).await?;
    Ok(Json(json!({ "conversation": c })))
}

pub async fn presence(
    State(ctx): State<ApiContext>,
    Caller(p): Caller,
    PathParams(id): PathParams<String>,
) -> ApiResult<Json<Value>> {
    let c = ctx.service.get_conversation(&p, &id).await?;
    Ok(Json(json!({ "online": ctx.presence.online_in(&c.id).await })))
}
