//! GET /api/audit: a company's audit trail, for its admins.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiErrors, ApiResult, ErrorBody};
use super::extract::{Caller, QueryParams};
use super::ApiContext;
use crate::domain::audit::{AuditAction, AuditCursor, AuditEntry, AuditFilter};
use crate::domain::time::parse_client_date;
use crate::domain::{clamp_limit, clean_filter_text, parse_object_id, ValidationError};

const TAG: &str = "audit";
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct AuditQuery {
    /// Records about this conversation.
    pub conversation_id: Option<String>,
    /// Records of this actor (user id, widget id, `service`, a job's name).
    pub actor: Option<String>,
    /// One action, e.g. `message.create`, `attachment.download`, `auth.refused`.
    pub action: Option<String>,
    /// Earliest time, inclusive: ISO 8601, `YYYY-MM-DD` or epoch milliseconds.
    pub from: Option<String>,
    /// Latest time, inclusive.
    pub to: Option<String>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
    /// 100 by default, at most 1000.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
}

/// A page of the audit trail, newest first.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    pub records: Vec<AuditEntry>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

impl AuditQuery {
    fn into_filter(self) -> Result<AuditFilter, ValidationError> {
        let invalid = |field: &str, problem: &str| ValidationError::field("Validation failed", field, problem);
        let date = |field: &str, v: Option<String>| {
            v.filter(|s| !s.trim().is_empty())
                .map(|s| parse_client_date(&s).ok_or_else(|| invalid(field, "must be a date")))
                .transpose()
        };
        let limit = match self.limit.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => Some(s.parse::<i64>().map_err(|_| invalid("limit", "must be an integer"))?),
        };
        let action = match clean_filter_text("action", self.action.as_deref())? {
            None => None,
            Some(a) => Some(AuditAction::parse(&a).ok_or_else(|| invalid("action", "is not an audit action"))?.as_str().to_string()),
        };
        Ok(AuditFilter {
            company_id: String::new(),
            conversation_id: match self.conversation_id.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
                None => None,
                Some(id) => Some(parse_object_id("conversationId", id)?),
            },
            actor_id: clean_filter_text("actor", self.actor.as_deref())?,
            action,
            from: date("from", self.from)?,
            to: date("to", self.to)?,
            before: match self.cursor.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
                None => None,
                Some(c) => Some(AuditCursor::decode(c).ok_or_else(|| invalid("cursor", "is not a cursor this API gave"))?),
            },
            limit: clamp_limit(limit, DEFAULT_LIMIT, MAX_LIMIT),
        })
    }
}

/// Read the audit trail
///
/// The caller's company's records, newest first: who (user, widget, service, the service's
/// own jobs), what, on which ids, when, from where, and the request id the logs show. Only
/// for the company's admins (`app_metadata.role: "admin"`, see README "Admins"); any other
/// caller gets 403.
#[utoipa::path(
    get, path = "/audit", tag = TAG, operation_id = "listAuditRecords", security(("bearer" = [])),
    params(AuditQuery),
    responses(
        (status = 200, description = "A page of records", body = AuditPage),
        (status = 403, description = "Not an admin", body = ErrorBody),
        ApiErrors,
    ),
)]
pub async fn list(
    State(ctx): State<ApiContext>,
    Caller(p): Caller,
    QueryParams(q): QueryParams<AuditQuery>,
) -> ApiResult<Json<AuditPage>> {
    if !p.is_admin() {
        return Err(crate::service::ServiceError::Forbidden("Admin access required").into());
    }
    let filter = q.into_filter()?;
    let limit = filter.limit as usize;
    let records = ctx.service.audit_records(&p, filter).await?;
    let next_cursor = (records.len() == limit).then(|| records.last().map(|r| AuditCursor::of(r).encode())).flatten();
    Ok(Json(AuditPage { records: records.iter().map(AuditEntry::from).collect(), next_cursor }))
}
