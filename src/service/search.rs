//! Message search: checks the query and filters, confines it to what the caller may read
//! (its company; a widget, its one conversation), pages with an opaque cursor, and cuts each
//! hit's highlighted snippet.

use serde::Deserialize;
use utoipa::IntoParams;

use super::conversations::page_params;
use super::{ChatService, ServiceError, ServiceResult};
use crate::auth::Principal;
use crate::domain::time::{now, parse_client_date, Timestamp};
use crate::domain::{
    parse_thread_id, refuse_control_chars, Message, MessageSearch, SearchCursor, SearchQuery, ValidationError,
    DEFAULT_SEARCH_LIMIT, MAX_SEARCH_LIMIT,
};

/// The query string of GET /api/search/messages, as received.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MessageSearchQuery {
    /// Words and "quoted phrases"; a message must contain every one (whole words, any case).
    /// At most 200 characters and 16 terms.
    pub q: Option<String>,
    /// Only this conversation (a widget token searches its own whatever this says, and any
    /// other is not found).
    #[serde(rename = "conversationId")]
    pub conversation_id: Option<String>,
    /// Only this thread.
    #[serde(rename = "threadId")]
    pub thread_id: Option<String>,
    /// Earliest `created_at`, inclusive: ISO-8601, `YYYY-MM-DD` or epoch milliseconds.
    pub from: Option<String>,
    /// Latest `created_at`, inclusive; a bare date includes that whole day.
    pub to: Option<String>,
    /// Hits per page: 20 by default, at most 100.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// `nextCursor` of the previous page, with the same other parameters.
    pub cursor: Option<String>,
}

/// One message found.
pub struct FoundMessage {
    pub message: Message,
    /// The message's text around the first hit, HTML-escaped, hits in `<mark>`.
    pub snippet: String,
}

/// A page of hits, best first, and where the next page starts.
pub struct SearchResults {
    pub hits: Vec<FoundMessage>,
    pub limit: u32,
    pub next_cursor: Option<String>,
}

fn parse_date(field: &str, raw: Option<&str>, end_of_day: bool) -> Result<Option<Timestamp>, ValidationError> {
    let Some(raw) = raw.map(str::trim).filter(|s| !s.is_empty()) else { return Ok(None) };
    let mut t = parse_client_date(raw).ok_or_else(|| ValidationError::field("Validation failed", field, "must be a date"))?;
    if end_of_day && raw.len() == 10 {
        t += chrono::Duration::milliseconds(86_400_000 - 1);
    }
    Ok(Some(t))
}

impl ChatService {
    pub async fn search_messages(&self, p: &Principal, params: MessageSearchQuery) -> ServiceResult<SearchResults> {
        let company_id = p.company_id.clone().ok_or(ServiceError::NoCompany)?;
        let query = SearchQuery::from_param(params.q.as_deref())?;
        let (limit, _) = page_params(params.limit.as_deref(), None, DEFAULT_SEARCH_LIMIT, MAX_SEARCH_LIMIT)?;
        let thread_id = match params.thread_id.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            Some(t) => Some(parse_thread_id("threadId", refuse_control_chars("Validation failed", "threadId", t)?)?),
            None => None,
        };
        let from = parse_date("from", params.from.as_deref(), false)?;
        let to = parse_date("to", params.to.as_deref(), true)?;
        let cursor = params.cursor.as_deref().filter(|c| !c.trim().is_empty()).map(SearchCursor::decode).transpose()?;
        // A widget searches its own conversation only; naming another is "not found".
        let named = params.conversation_id.as_deref().map(str::trim).filter(|s| !s.is_empty());
        let conversation = match named.or(p.widget_conversation()) {
            Some(id) => Some(self.conversation_for(p, id).await?.id),
            None => None,
        };
        // Pages after the first see the messages as they were when the first was asked for.
        let until = cursor.as_ref().map(|c| c.until).unwrap_or_else(|| now().timestamp_millis());
        let to = Some(crate::domain::time::from_millis(to.map_or(until, |t| t.timestamp_millis().min(until))));
        let search = MessageSearch {
            query,
            company_id,
            conversation_id: conversation,
            thread_id,
            from,
            to,
            after: cursor.map(|c| c.after),
            limit: limit + 1,
        };
        let mut found = self.store.search_messages(&search).await?;
        let seen_before = search.after.as_ref().map_or(0, |a| a.seen);
        let next_cursor = (found.len() > limit as usize).then(|| {
            found.truncate(limit as usize);
            let last = found.last().expect("limit is at least 1");
            SearchCursor {
                after: crate::domain::SearchPosition {
                    score: last.score,
                    id: last.message.id.clone(),
                    seen: seen_before + u64::from(limit),
                },
                until,
            }
            .encode()
        });
        let hits = found
            .into_iter()
            .map(|hit| FoundMessage { snippet: search.query.snippet(&hit.message.content), message: hit.message })
            .collect();
        Ok(SearchResults { hits, limit, next_cursor })
    }
}
