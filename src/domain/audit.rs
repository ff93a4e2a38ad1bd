//! The audit trail's records: who did what to which ids, when, from where, under which request
//! id. Append-only; the store keeps them in `audit_log` and the service writes them in batches
//! off the request path (`service::audit`).

use serde::Serialize;
use utoipa::ToSchema;

use super::time::{to_iso, Timestamp};

/// What happened. The string form (`message.create`) is what is stored and filtered on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    MessageCreate,
    MessageEdit,
    MessageDelete,
    MessageReaction,
    MessageRead,
    /// A message relayed by the internal API's emit (not stored by this service).
    MessageRelay,
    ConversationCreate,
    ConversationUpdate,
    ConversationDelete,
    ConversationArchive,
    ParticipantAdd,
    ParticipantRemove,
    ThreadCreate,
    AttachmentUpload,
    AttachmentDownload,
    AttachmentDelete,
    /// A request or handshake whose token was missing or invalid.
    AuthRefused,
    RateLimited,
    /// A caller asked for a conversation of another company.
    CrossTenant,
}

impl AuditAction {
    pub const ALL: [AuditAction; 19] = [
        AuditAction::MessageCreate,
        AuditAction::MessageEdit,
        AuditAction::MessageDelete,
        AuditAction::MessageReaction,
        AuditAction::MessageRead,
        AuditAction::MessageRelay,
        AuditAction::ConversationCreate,
        AuditAction::ConversationUpdate,
        AuditAction::ConversationDelete,
        AuditAction::ConversationArchive,
        AuditAction::ParticipantAdd,
        AuditAction::ParticipantRemove,
        AuditAction::ThreadCreate,
        AuditAction::AttachmentUpload,
        AuditAction::AttachmentDownload,
        AuditAction::AttachmentDelete,
        AuditAction::AuthRefused,
        AuditAction::RateLimited,
        AuditAction::CrossTenant,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::MessageCreate => "message.create",
            AuditAction::MessageEdit => "message.edit",
            AuditAction::MessageDelete => "message.delete",
            AuditAction::MessageReaction => "message.reaction",
            AuditAction::MessageRead => "message.read",
            AuditAction::MessageRelay => "message.relay",
            AuditAction::ConversationCreate => "conversation.create",
            AuditAction::ConversationUpdate => "conversation.update",
            AuditAction::ConversationDelete => "conversation.delete",
            AuditAction::ConversationArchive => "conversation.archive",
            AuditAction::ParticipantAdd => "participant.add",
            AuditAction::ParticipantRemove => "participant.remove",
            AuditAction::ThreadCreate => "thread.create",
            AuditAction::AttachmentUpload => "attachment.upload",
            AuditAction::AttachmentDownload => "attachment.download",
            AuditAction::AttachmentDelete => "attachment.delete",
            AuditAction::AuthRefused => "auth.refused",
            AuditAction::RateLimited => "rate_limit.refused",
            AuditAction::CrossTenant => "tenant.cross_attempt",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// Who acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ActorKind {
    User,
    Widget,
    /// A sibling service with the internal token.
    Service,
    /// A job of this service (archiving).
    System,
    /// Not authenticated (refused tokens).
    Anonymous,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::User => "user",
            ActorKind::Widget => "widget",
            ActorKind::Service => "service",
            ActorKind::System => "system",
            ActorKind::Anonymous => "anonymous",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [ActorKind::User, ActorKind::Widget, ActorKind::Service, ActorKind::System, ActorKind::Anonymous]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// How the request came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Rest,
    Socket,
    /// The internal API (`/api/internal/*`).
    Internal,
    /// A job of this service, no request.
    Job,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Rest => "rest",
            Transport::Socket => "socket",
            Transport::Internal => "internal",
            Transport::Job => "job",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Transport::Rest, Transport::Socket, Transport::Internal, Transport::Job].into_iter().find(|t| t.as_str() == s)
    }
}

/// One audit record.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    /// An ObjectId: unique, and ordered by creation within one node.
    pub id: String,
    pub at: Timestamp,
    /// The company whose trail it is in; `None` when no company is known (a refused token).
    pub company_id: Option<String>,
    pub actor_kind: ActorKind,
    /// User id, widget id, `service`, the job's name; `None` when anonymous.
    pub actor_id: Option<String>,
    pub action: AuditAction,
    pub conversation_id: Option<String>,
    /// The id acted on inside the conversation: message, thread, attachment, participant.
    pub subject_id: Option<String>,
    /// What changed or why it was refused, briefly.
    pub detail: Option<String>,
    pub client_address: Option<String>,
    pub transport: Transport,
    /// The id the logs show for the same request (`X-Request-Id`; on sockets `<socket id>:<n>`).
    pub request_id: Option<String>,
}

/// What `GET /api/audit` reads: one company's records, newest first, narrowed by the rest.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub company_id: String,
    pub conversation_id: Option<String>,
    pub actor_id: Option<String>,
    pub action: Option<String>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    /// Records strictly before this one in the listing order (`at`, then id, descending).
    pub before: Option<AuditCursor>,
    pub limit: u32,
}

/// Where a page of the audit trail ended: the last record's time and id.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditCursor {
    pub at_ms: i64,
    pub id: String,
}

impl AuditCursor {
    pub fn of(record: &AuditRecord) -> Self {
        AuditCursor { at_ms: record.at.timestamp_millis(), id: record.id.clone() }
    }

    /// `<epoch ms>_<id>`: opaque to clients, plain to read in a log.
    pub fn encode(&self) -> String {
        format!("{}_{}", self.at_ms, self.id)
    }

    pub fn decode(s: &str) -> Option<Self> {
        let (at, id) = s.split_once('_')?;
        let at_ms = at.parse().ok()?;
        super::is_object_id(id).then(|| AuditCursor { at_ms, id: id.to_string() })
    }
}

/// A record as `GET /api/audit` answers it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub id: String,
    /// ISO 8601.
    pub at: String,
    pub company_id: Option<String>,
    pub actor: AuditActor,
    /// `message.create`, `conversation.delete`, `attachment.download`, `auth.refused`, ...
    pub action: &'static str,
    pub conversation_id: Option<String>,
    pub subject_id: Option<String>,
    pub detail: Option<String>,
    pub client_address: Option<String>,
    pub transport: Transport,
    pub request_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditActor {
    #[serde(rename = "type")]
    pub kind: ActorKind,
    pub id: Option<String>,
}

impl From<&AuditRecord> for AuditEntry {
    fn from(r: &AuditRecord) -> Self {
        AuditEntry {
            id: r.id.clone(),
            at: to_iso(&r.at),
            company_id: r.company_id.clone(),
            actor: AuditActor { kind: r.actor_kind, id: r.actor_id.clone() },
            action: r.action.as_str(),
            conversation_id: r.conversation_id.clone(),
            subject_id: r.subject_id.clone(),
            detail: r.detail.clone(),
            client_address: r.client_address.clone(),
            transport: r.transport,
            request_id: r.request_id.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for a in AuditAction::ALL {
            assert_eq!(AuditAction::parse(a.as_str()), Some(a));
        }
        assert_eq!(AuditAction::parse("message.nuke"), None);
        let c = AuditCursor { at_ms: 1_700_000_000_000, id: "0123456789abcdef01234567".into() };
        assert_eq!(AuditCursor::decode(&c.encode()), Some(c));
        assert_eq!(AuditCursor::decode("x_y"), None);
    }
}
