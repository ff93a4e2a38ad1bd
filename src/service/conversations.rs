//! Conversation operations: list, create, read, update, delete, participants.

use serde::Deserialize;
use utoipa::IntoParams;

use super::events::{self, raw, ConversationUpdated, UserInRoom};
use super::{ChatService, On, ServiceError, ServiceResult, CONVERSATION_NOT_FOUND};
use crate::domain::audit::AuditAction;
use crate::auth::Principal;
use crate::domain::time::{now, parse_client_date};
use crate::domain::{
    clamp_limit, clean_filter_text, clean_tags, clean_title, clean_user_id, new_object_id, parse_channel, parse_status,
    validation_failed, Channel, Conversation, ConversationChanges, ConversationFilter, CreateConversationInput,
    Status, ValidationError, DEFAULT_CONVERSATION_LIMIT, MAX_CONVERSATION_LIMIT,
};
use crate::store::Page;
use validator::Validate;

/// The query string of GET /api/conversations, as received.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConversationQuery {
    #[param(value_type = Option<Status>)]
    pub status: Option<String>,
    #[param(value_type = Option<Channel>)]
    pub channel: Option<String>,
    pub contact_id: Option<String>,
    pub agent_id: Option<String>,
    /// Conversations carrying this tag.
    pub tag: Option<String>,
    /// A case-insensitive substring of the title, summary or a tag.
    pub q: Option<String>,
    /// Earliest `started_at`, inclusive: ISO-8601, `YYYY-MM-DD` or epoch milliseconds.
    #[serde(rename = "startDate")]
    pub start_date: Option<String>,
    /// Latest `started_at`, inclusive; a bare date includes that whole day.
    #[serde(rename = "endDate")]
    pub end_date: Option<String>,
    /// 50 by default, at most 1000.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    #[param(value_type = Option<u64>)]
    pub offset: Option<String>,
}

fn parse_number(field: &str, v: Option<&str>) -> Result<Option<i64>, ValidationError> {
    v.map(|s| {
        s.trim().parse::<i64>().map_err(|_| ValidationError::field("Validation failed", field, "must be an integer"))
    })
    .transpose()
}

fn parse_date(field: &str, v: Option<&str>) -> Result<Option<crate::domain::time::Timestamp>, ValidationError> {
    v.map(|s| parse_client_date(s).ok_or_else(|| ValidationError::field("Validation failed", field, "must be a date")))
        .transpose()
}

/// Limit and offset from a query string.
pub fn page_params(limit: Option<&str>, offset: Option<&str>, default: u32, max: u32) -> Result<(u32, u64), ValidationError> {
    let limit = clamp_limit(parse_number("limit", limit)?, default, max);
    let offset = parse_number("offset", offset)?.unwrap_or(0).max(0) as u64;
    Ok((limit, offset))
}

impl ConversationQuery {
    pub fn into_filter(self, company_id: String) -> Result<ConversationFilter, ValidationError> {
        let (limit, offset) =
            page_params(self.limit.as_deref(), self.offset.as_deref(), DEFAULT_CONVERSATION_LIMIT, MAX_CONVERSATION_LIMIT)?;
        let started_from = parse_date("startDate", self.start_date.as_deref())?;
        let mut started_to = parse_date("endDate", self.end_date.as_deref())?;
        // A bare end date means "through the end of that day" (the bound is inclusive).
        if let (Some(t), Some(raw)) = (started_to.as_mut(), self.end_date.as_deref())
            && raw.trim().len() == 10
        {
            *t += chrono::Duration::milliseconds(86_400_000 - 1);
        }
        Ok(ConversationFilter {
            company_id,
            status: self.status.as_deref().filter(|s| !s.is_empty()).map(parse_status).transpose()?,
            channel: self.channel.as_deref().filter(|s| !s.is_empty()).map(|s| parse_channel(Some(s))).transpose()?,
            contact_id: clean_filter_text("contact_id", self.contact_id.as_deref())?,
            agent_id: clean_filter_text("agent_id", self.agent_id.as_deref())?,
            tag: clean_filter_text("tag", self.tag.as_deref())?,
            q: clean_filter_text("q", self.q.as_deref())?,
            started_from,
            started_to,
            participant: None,
            limit,
            offset,
        })
    }
}

impl ChatService {
    /// A page of the company's conversations, with the limit and offset actually applied.
    pub async fn list_conversations(
        &self,
        p: &Principal,
        query: ConversationQuery,
    ) -> ServiceResult<(Page<Conversation>, u32, u64)> {
        let company = p.company_id.clone().ok_or(ServiceError::NoCompany)?;
        let filter = query.into_filter(company)?;
        if let Some(own) = p.widget_conversation() {
            // A widget sees its one conversation and nothing else.
            let c = self.conversation_for(p, own).await?;
            return Ok((Page { items: vec![c], total: 1 }, filter.limit, filter.offset));
        }
        let page = self.store.list_conversations(&filter).await?;
        Ok((page, filter.limit, filter.offset))
    }

    pub async fn create_conversation(&self, p: &Principal, input: CreateConversationInput) -> ServiceResult<Conversation> {
        let company_id = p.company_id.clone().ok_or(ServiceError::NoCompany)?;
        if p.widget_conversation().is_some() {
            // A widget only ever acts on its own conversation.
            return Err(ServiceError::NotFound(CONVERSATION_NOT_FOUND));
        }
        input.validate().map_err(validation_failed)?;
        let mut participants: Vec<String> = Vec::new();
        for id in input.participants.iter().map(String::as_str).chain(std::iter::once(p.user_id.as_str())) {
            let id = clean_user_id("participants", id)?;
            if !participants.contains(&id) {
                participants.push(id);
            }
        }
        let at = now();
        let c = Conversation {
            id: new_object_id(),
            agent_id: clean_user_id("agent_id", &input.agent_id)?,
            company_id,
            contact_id: input.contact_id.as_deref().map(|c| clean_user_id("contact_id", c)).transpose()?,
            user_id: Some(p.user_id.clone()),
            participants,
            title: input.title.as_deref().map(clean_title).transpose()?,
            channel: parse_channel(input.channel.as_deref())?,
            status: Status::Active,
            started_at: at,
            ended_at: None,
            tags: clean_tags(&input.tags)?,
            metadata: crate::domain::clean_metadata("metadata", input.metadata.unwrap_or_default())?,
            threads: Vec::new(),
            summary: None,
            created_at: at,
            updated_at: at,
        };
        debug_assert!(Channel::ALL.contains(&c.channel.as_str()));
        self.store.insert_conversation(&c).await?;
        self.auditor.record(p, AuditAction::ConversationCreate, Some(&c.company_id), On::conversation(&c.id));
        Ok(c)
    }

    pub async fn get_conversation(&self, p: &Principal, id: &str) -> ServiceResult<Conversation> {
        self.conversation_for(p, id).await
    }

    /// Applies `changes` and tells the room. The internal API merges metadata, REST replaces it.
    pub async fn update_conversation(&self, p: &Principal, id: &str, changes: ConversationChanges) -> ServiceResult<Conversation> {
        let current = self.conversation_for(p, id).await?;
        if changes.is_empty() {
            return Ok(current);
        }
        let updated = self
            .store
            .update_conversation(self.scope(p)?, &current.id, &changes, now())
            .await?
            .ok_or(ServiceError::NotFound(CONVERSATION_NOT_FOUND))?;
        self.auditor.record(p, AuditAction::ConversationUpdate, Some(&updated.company_id), On::conversation(&updated.id));
        let payload = raw(&ConversationUpdated { conversation_id: &updated.id, conversation: &updated });
        self.emit(&updated.id, events::CONVERSATION_UPDATED, &payload).await;
        Ok(updated)
    }

    pub async fn delete_conversation(&self, p: &Principal, id: &str) -> ServiceResult<()> {
        if p.widget_conversation().is_some() {
            return Err(ServiceError::NotFound(CONVERSATION_NOT_FOUND));
        }
        let c = self.conversation_for(p, id).await?;
        if !self.store.delete_conversation(self.scope(p)?, &c.id).await? {
            return Err(ServiceError::NotFound(CONVERSATION_NOT_FOUND));
        }
        self.auditor.record(p, AuditAction::ConversationDelete, Some(&c.company_id), On::conversation(&c.id));
        self.delete_conversation_files(&c);
        Ok(())
    }

    pub async fn set_participant(&self, p: &Principal, id: &str, user_id: &str, add: bool) -> ServiceResult<Conversation> {
        if p.widget_conversation().is_some() {
            return Err(ServiceError::NotFound(CONVERSATION_NOT_FOUND));
        }
        let user_id = clean_user_id("userId", user_id)?;
        let c = self.conversation_for(p, id).await?;
        if !add && !c.participants.contains(&user_id) {
            return Err(ServiceError::NotFound("Participant not found"));
        }
        let updated = self
            .store
            .set_participant(self.scope(p)?, &c.id, &user_id, add, now())
            .await?
            .ok_or(ServiceError::NotFound(CONVERSATION_NOT_FOUND))?;
        let action = if add { AuditAction::ParticipantAdd } else { AuditAction::ParticipantRemove };
        self.auditor.record(p, action, Some(&c.company_id), On::conversation(&c.id).subject(&user_id));
        let event = if add { events::PARTICIPANT_ADDED } else { events::PARTICIPANT_REMOVED };
        self.emit(&c.id, event, &raw(&UserInRoom { conversation_id: &c.id, user_id: &user_id })).await;
        Ok(updated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_rules() {
        let q = ConversationQuery { limit: Some("5000".into()), status: Some("active".into()), ..Default::default() };
        let f = q.into_filter("c".into()).unwrap();
        assert_eq!(f.limit, 1000);
        assert_eq!(f.status, Some(Status::Active));
        assert!(ConversationQuery { status: Some("open".into()), ..Default::default() }.into_filter("c".into()).is_err());
        assert!(ConversationQuery { limit: Some("ten".into()), ..Default::default() }.into_filter("c".into()).is_err());
        let f = ConversationQuery { end_date: Some("2024-01-31".into()), ..Default::default() }.into_filter("c".into()).unwrap();
        assert_eq!(crate::domain::time::to_iso(&f.started_to.unwrap()), "2024-01-31T23:59:59.999Z");
    }
}
