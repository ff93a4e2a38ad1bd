//! /api/search/messages: full-text search over the messages the caller may read.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiErrors, ApiResult};
use super::extract::{Caller, QueryParams};
use super::ApiContext;
use crate::domain::Message;
use crate::service::MessageSearchQuery;

const TAG: &str = "search";

/// One message found.
#[derive(Serialize, ToSchema)]
pub struct SearchHitBody {
    /// The conversation the message is in.
    #[serde(rename = "conversationId")]
    pub conversation_id: String,
    /// About 160 characters of the message's text around the first hit: the text with markup
    /// removed, HTML-escaped, every matched word wrapped in `<mark>…</mark>`, `…` where cut.
    /// Safe to insert as HTML.
    pub snippet: String,
    pub message: Message,
}

/// A page of hits, best first.
#[derive(Serialize, ToSchema)]
pub struct SearchPage {
    pub hits: Vec<SearchHitBody>,
    pub limit: u32,
    /// Pass as `cursor` (with the same other parameters) for the next page; null on the last.
    #[serde(rename = "nextCursor")]
    pub next_cursor: Option<String>,
}

/// Search messages
///
/// Words and "quoted phrases" in the content of the messages of the caller's company (a
/// widget token: its conversation), ranked best first; deleted messages never appear. Pages
/// continue with `nextCursor`; messages stored after the first page was asked for do not
/// appear in later pages.
#[utoipa::path(
    get, path = "/search/messages", tag = TAG, operation_id = "searchMessages", security(("bearer" = [])),
    params(MessageSearchQuery),
    responses((status = 200, description = "A page of hits", body = SearchPage), ApiErrors),
)]
pub async fn messages(
    State(ctx): State<ApiContext>,
    Caller(p): Caller,
    QueryParams(q): QueryParams<MessageSearchQuery>,
) -> ApiResult<Json<SearchPage>> {
    let results = ctx.service.search_messages(&p, q).await?;
    let hits = results
        .hits
        .into_iter()
        .map(|f| SearchHitBody { conversation_id: f.message.conversation_id.clone(), snippet: f.snippet, message: f.message })
        .collect();
    Ok(Json(SearchPage { hits, limit: results.limit, next_cursor: results.next_cursor }))
}
