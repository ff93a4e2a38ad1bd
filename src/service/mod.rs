//! The chat operations. REST handlers, socket handlers and the internal API all call these;
//! this layer validates, enforces tenancy, writes through the `Store`, and is the only place
//! that decides what gets broadcast (through a `Broadcaster`). It knows nothing of HTTP or
//! Socket.IO.

mod agent;
mod archive;
mod attachments;
pub mod audit;
mod conversations;
pub mod error;
pub mod events;
mod internal;
mod messages;
mod search;
mod threads;

use std::sync::Arc;

use serde_json::value::RawValue;

pub use conversations::ConversationQuery;
pub use error::{ServiceError, ServiceResult};
pub use events::{Broadcaster, NoBroadcast};
pub use internal::{InternalCreateInput, InternalListInput};
pub use attachments::{Download, Upload};
pub use audit::{with_origin, Auditor, On, Origin};
pub use messages::{MessageEdit, MessagePatch, MessagesAfter};
pub use search::{FoundMessage, MessageSearchQuery, SearchResults};

use crate::agent::{AgentClient, AgentHealth};
use crate::auth::{Principal, PrincipalKind};
use crate::domain::audit::{AuditAction, AuditFilter, AuditRecord};
use crate::domain::{parse_object_id, Conversation, ConversationFilter};
use crate::files::FileStorage;
use crate::metrics::Metrics;
use crate::store::{Scope, Store};

/// What a principal is told when it may not do something. A widget is told that the
/// conversation is not there, exactly as for one it cannot see (the contract's "not found,
/// never forbidden"): it learns nothing about what exists or what others may do.
fn refused(p: &Principal, reason: &'static str) -> ServiceError {
    if p.widget_conversation().is_some() {
        ServiceError::NotFound(CONVERSATION_NOT_FOUND)
    } else {
        ServiceError::Forbidden(reason)
    }
}

const CONVERSATION_NOT_FOUND: &str = "Conversation not found";

pub struct ChatService {
    store: Arc<dyn Store>,
    broadcaster: Arc<dyn Broadcaster>,
    /// Emit `message` beside `message:new` (and the typing aliases) for older clients.
    legacy_events: bool,
    /// The agent service's work on users' messages; `None`: no agent calls at all.
    agent: Option<Arc<agent::AgentWork>>,
    metrics: Arc<Metrics>,
    /// Where uploaded files' bytes go; `None`: uploads answer 503.
    files: Option<FileStorage>,
    auditor: Arc<Auditor>,
}

impl ChatService {
    /// A service that stores no files and records no audit trail until given them
    /// (`with_files`, `with_auditor`).
    pub fn new(store: Arc<dyn Store>, broadcaster: Arc<dyn Broadcaster>, legacy_events: bool, metrics: Arc<Metrics>) -> Self {
        let auditor = Arc::new(Auditor::off(metrics.clone()));
        ChatService { store, broadcaster, legacy_events, agent: None, metrics, files: None, auditor }
    }

    pub fn with_files(mut self, files: FileStorage) -> Self {
        self.files = Some(files);
        self
    }

    pub fn with_auditor(mut self, auditor: Arc<Auditor>) -> Self {
        self.auditor = auditor;
        self
    }

    pub fn auditor(&self) -> &Arc<Auditor> {
        &self.auditor
    }

    /// Answers users' text messages through the agent service (see `agent`).
    pub fn with_agent(mut self, client: AgentClient) -> Self {
        self.agent = Some(Arc::new(agent::AgentWork::new(client)));
        self
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn legacy_events(&self) -> bool {
        self.legacy_events
    }

    async fn emit(&self, conversation_id: &str, event: &'static str, payload: &RawValue) {
        // A socket's sends overlap (see `sequence`): this one's broadcasts follow the earlier ones'.
        crate::sequence::earlier_events_done().await;
        self.broadcaster.to_room(conversation_id, event, payload).await;
    }

    /// The company a principal's reads and writes are confined to.
    fn scope<'p>(&self, p: &'p Principal) -> ServiceResult<Scope<'p>> {
        if p.is_service() {
            return Ok(Scope::AnyCompany);
        }
        p.company_id.as_deref().map(Scope::Company).ok_or(ServiceError::NoCompany)
    }

    /// Loads a conversation the principal may see. Another tenant's conversation, or for a
    /// widget any conversation but its own, is "not found".
    pub async fn conversation_for(&self, p: &Principal, id: &str) -> ServiceResult<Conversation> {
        let scope = self.scope(p)?;
        let id = parse_object_id("conversationId", id)?;
        if p.widget_conversation().is_some_and(|own| own != id) {
            return Err(ServiceError::NotFound(CONVERSATION_NOT_FOUND));
        }
        match self.store.get_conversation(scope, &id).await? {
            Some(c) => Ok(c),
            None => {
                self.note_cross_tenant(p, scope, &id).await;
                Err(ServiceError::NotFound(CONVERSATION_NOT_FOUND))
            }
        }
    }

    /// A conversation missing from the caller's company may exist in another: that is an
    /// attempt across tenants, recorded in the trail of the company it belongs to (whose
    /// admins should know). Costs a lookup only when a conversation was not found.
    async fn note_cross_tenant(&self, p: &Principal, scope: Scope<'_>, id: &str) {
        let Scope::Company(own) = scope else { return };
        if !self.auditor.enabled() {
            return;
        }
        if let Ok(Some(c)) = self.store.get_conversation(Scope::AnyCompany, id).await
            && c.company_id != own
        {
            tracing::warn!(actor = %p.user_id, company = %own, conversation = %id, "conversation of another company asked for");
            let detail = format!("actor's company: {own}");
            self.auditor.record(p, AuditAction::CrossTenant, Some(&c.company_id), On::conversation(id).detail(detail));
        }
    }

    /// A page of the caller's company's audit trail, newest first: admins only.
    pub async fn audit_records(&self, p: &Principal, mut filter: AuditFilter) -> ServiceResult<Vec<AuditRecord>> {
        if !p.is_admin() {
            return Err(ServiceError::Forbidden("Admin access required"));
        }
        filter.company_id = p.company_id.clone().ok_or(ServiceError::NoCompany)?;
        Ok(self.store.list_audit_records(&filter).await?)
    }

    /// `presence:update` to the rooms where the user's status matters: the conversations they
    /// take part in, plus `rooms` (those their socket was in).
    pub async fn announce_presence(&self, p: &Principal, online: bool, rooms: &[String]) {
        let mut targets: Vec<String> = rooms.to_vec();
        targets.extend(p.widget_conversation().map(str::to_string));
        if let (Some(company_id), PrincipalKind::User) = (&p.company_id, &p.kind) {
            let filter = ConversationFilter {
                company_id: company_id.clone(),
                participant: Some(p.user_id.clone()),
                limit: 200,
                ..Default::default()
            };
            match self.store.list_conversations(&filter).await {
                Ok(page) => targets.extend(page.items.into_iter().map(|c| c.id)),
                Err(e) => tracing::warn!(error = %e, "presence: could not list the user's conversations"),
            }
        }
        targets.sort();
        targets.dedup();
        let status = if online { "online" } else { "offline" };
        let payload = events::raw(&events::Presence { user_id: &p.user_id, status });
        for conversation_id in &targets {
            self.emit(conversation_id, events::PRESENCE_UPDATE, &payload).await;
        }
    }

    /// How the agent service is doing; `None` when none is configured.
    pub fn agent_health(&self) -> Option<AgentHealth> {
        self.agent.as_ref().map(|work| work.client().health())
    }

    /// `Ok` with the store's name when it answers.
    pub async fn health(&self) -> Result<&'static str, String> {
        match self.store.ping().await {
            Ok(()) => Ok(self.store.kind()),
            Err(e) => Err(e.to_string()),
        }
    }
}
