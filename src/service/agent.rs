//! What a user's text message sets off in a conversation that has an agent: the agent's
//! reply, the enrichment of the user's message (intent, sentiment), the running summary the
//! reply history is built on, and contact extraction. All of it starts only after the user's
//! message is stored and broadcast, in a task of its own: the agent service being slow, down
//! or wrong can delay, fail or lose nothing the user sent.

use crate::domain::audit::ActorKind;
use std::sync::Arc;

use dashmap::DashSet;
use serde_json::{Map, Value};

use super::messages::Sender;
use super::ChatService;
use crate::agent::{Admission, AgentClient, AgentError, ContactsRequest, Reply, ReplyRequest, Turn};
use crate::auth::{BearerToken, Principal};
use crate::domain::time::now;
use crate::domain::{
    clean_content, sanitize_json_strings, Conversation, ConversationChanges, Message, MessageType, Role, SenderType,
    ValidMessage, MAX_CONTENT_CHARS,
};
use crate::store::{MessageChange, Scope};

/// Reply history: the last messages as they are, until a summary exists; then the summary
/// and fewer of them.
const HISTORY_WITHOUT_SUMMARY: usize = 30;
const HISTORY_WITH_SUMMARY: usize = 10;
/// A summary is due once the conversation has this many messages, this many of them new
/// since the last summary.
const SUMMARY_MIN_MESSAGES: u64 = 30;
const SUMMARY_MIN_NEW: u64 = 20;
/// Most messages sent in one summary request (with the previous summary, when one exists).
const SUMMARY_MAX_MESSAGES: u64 = 200;
/// Messages of context sent with a contact extraction.
const CONTACT_CONTEXT: usize = 10;

/// Conversation metadata key holding the message count at the last summary.
const SUMMARIZED_COUNT_KEY: &str = "summary_message_count";
/// What the conversation shows when the agent could not answer.
const REPLY_FAILED: &str = "Sorry, I encountered an error. Please try again.";

/// The agent client and the state of the work in progress.
pub(super) struct AgentWork {
    client: AgentClient,
    /// Conversations with a summary request in flight: two messages arriving together must
    /// not summarize the same conversation twice.
    summarizing: DashSet<String>,
}

impl AgentWork {
    pub(super) fn new(client: AgentClient) -> Self {
        AgentWork { client, summarizing: DashSet::new() }
    }

    pub(super) fn client(&self) -> &AgentClient {
        &self.client
    }
}

/// Removes its conversation from `AgentWork::summarizing` when the summary attempt ends.
struct SummaryClaim<'a> {
    work: &'a AgentWork,
    conversation_id: &'a str,
}

impl<'a> SummaryClaim<'a> {
    fn take(work: &'a AgentWork, conversation_id: &'a str) -> Option<Self> {
        work.summarizing.insert(conversation_id.to_string()).then_some(SummaryClaim { work, conversation_id })
    }
}

impl Drop for SummaryClaim<'_> {
    fn drop(&mut self) {
        self.work.summarizing.remove(self.conversation_id);
    }
}

/// Whose message the agent answers and with whose token.
struct Job {
    conversation: Conversation,
    message: Message,
    token: Option<BearerToken>,
}

impl ChatService {
    /// Starts the agent's work on a message `p` has just posted (stored and broadcast), when
    /// an agent service is configured, the message is a user's text and the conversation has
    /// an agent. Returns at once; the work runs in its own task.
    pub(super) fn start_agent(self: &Arc<Self>, p: &Principal, conversation: &Conversation, message: &Message) {
        let Some(work) = &self.agent else { return };
        if p.is_service()
            || message.sender_type != SenderType::User
            || message.message_type != MessageType::Text
            || conversation.agent_id.trim().is_empty()
        {
            return;
        }
        let admission = work.client.admit();
        let job = Job { conversation: conversation.clone(), message: message.clone(), token: p.token.clone() };
        let (service, work) = (Arc::clone(self), Arc::clone(work));
        tokio::spawn(async move {
            match admission {
                Ok(admission) => service.run_agent(&work, job, admission).await,
                Err(e) => {
                    tracing::warn!(conversation = %job.conversation.id, message_id = %job.message.id, error = %e, "agent reply skipped");
                    service.post_reply_failure(&job).await;
                }
            }
        });
    }

    /// The reply, the enrichment and the contact extraction, concurrently. The admission is
    /// held until all three are done.
    async fn run_agent(&self, work: &AgentWork, job: Job, _admission: Admission) {
        // The messages before this one: the reply history and the contacts' context.
        let limit = HISTORY_WITHOUT_SUMMARY + 1;
        let (earlier, count) = match self.store.recent_messages(&job.conversation.id, limit as u32).await {
            Ok(recent) => {
                // Fewer than asked for: that is the whole conversation, no need to count it.
                let count = (recent.len() < limit).then_some(recent.len() as u64);
                let earlier = recent.into_iter().filter(|m| m.id != job.message.id && m.created_at <= job.message.created_at);
                (Some(earlier.collect::<Vec<_>>()), count)
            }
            Err(e) => {
                tracing::warn!(conversation = %job.conversation.id, error = %e, "agent: could not read the history");
                (None, None)
            }
        };
        let context = earlier.as_deref().map(|e| turns(last(e, CONTACT_CONTEXT))).unwrap_or_default();
        tokio::join!(
            self.reply(work, &job, earlier.as_deref(), count),
            self.enrich(work, &job),
            self.extract_contacts(work, &job, &context)
        );
    }

    /// Asks for the reply (with a summary first when one is due) and posts it, or posts the
    /// failure message. `earlier`: the messages before the user's, `None` if unreadable;
    /// `count`: the conversation's message count when already known.
    async fn reply(&self, work: &AgentWork, job: &Job, earlier: Option<&[Message]>, count: Option<u64>) {
        let Some(earlier) = earlier else { return self.post_reply_failure(job).await };
        let result = async {
            let summary = self.summary_for_reply(work, job, count).await;
            let history = history(summary.as_deref(), earlier);
            let request = ReplyRequest {
                agent_id: &job.conversation.agent_id,
                conversation_id: &job.conversation.id,
                message: &job.message.content,
                conversation_history: &history,
                include_knowledge_base: true,
                attachments: &job.message.attachments,
            };
            let started = tokio::time::Instant::now();
            let reply = work.client.generate(&request, job.token.as_ref()).await?;
            Ok::<_, AgentError>((reply, started.elapsed()))
        }
        .await;
        let (reply, elapsed) = match result {
            Ok(answer) => answer,
            Err(e) => {
                tracing::warn!(conversation = %job.conversation.id, message_id = %job.message.id, error = %e, "agent reply failed");
                return self.post_reply_failure(job).await;
            }
        };
        if let Err(e) = self.post_reply(job, &reply, elapsed).await {
            tracing::warn!(conversation = %job.conversation.id, message_id = %job.message.id, error = %e, "agent reply not stored");
            self.post_reply_failure(job).await;
        }
    }

    async fn post_reply(&self, job: &Job, reply: &Reply, elapsed: std::time::Duration) -> Result<(), String> {
        // The reply is shown to browsers like any message: bounded and sanitized the same way.
        let bounded: String = reply.response.trim().chars().take(MAX_CONTENT_CHARS).collect();
        let content = clean_content(&bounded).map_err(|e| e.to_string())?;
        let input = ValidMessage {
            content,
            message_type: MessageType::Text,
            thread_id: job.message.thread_id.clone(),
            attachments: Vec::new(),
        };
        let agent_id = job.conversation.agent_id.clone();
        let sender = Sender { sender_type: SenderType::Agent, sender_id: agent_id.clone(), actor: ActorKind::System, actor_id: agent_id };
        // The agent's model name and the like reach browsers too: cleaned like metadata.
        let ai_metadata = reply.ai_metadata(elapsed).into_iter().map(|(k, v)| (k, sanitize_json_strings(v))).collect();
        self.post_message(&job.conversation, sender, input, Map::new(), Some(ai_metadata))
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// The system message that stands in for a reply the agent could not give.
    async fn post_reply_failure(&self, job: &Job) {
        let input = ValidMessage {
            content: REPLY_FAILED.into(),
            message_type: MessageType::System,
            thread_id: job.message.thread_id.clone(),
            attachments: Vec::new(),
        };
        let sender =
            Sender { sender_type: SenderType::System, sender_id: "system".into(), actor: ActorKind::System, actor_id: "system".into() };
        if let Err(e) = self.post_message(&job.conversation, sender, input, Map::new(), None).await {
            tracing::error!(conversation = %job.conversation.id, error = %e, "could not store the agent failure message");
        }
    }

    /// The conversation's summary for the reply history: a new one when due, else the stored
    /// one. A failed summary request leaves the stored one in use.
    async fn summary_for_reply(&self, work: &AgentWork, job: &Job, count: Option<u64>) -> Option<String> {
        let c = &job.conversation;
        let stored = c.summary.clone().filter(|s| !s.trim().is_empty());
        let summarized = c.metadata.get(SUMMARIZED_COUNT_KEY).and_then(Value::as_u64).unwrap_or(0);
        let counted = match count {
            Some(n) => Ok(n),
            None => self.store.count_messages(&c.id).await,
        };
        let count = match counted {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(conversation = %c.id, error = %e, "summary check: could not count messages");
                return stored;
            }
        };
        if count < SUMMARY_MIN_MESSAGES || count.saturating_sub(summarized) < SUMMARY_MIN_NEW {
            return stored;
        }
        let Some(_claim) = SummaryClaim::take(work, &c.id) else { return stored };
        // The previous summary stands for everything before it; only newer messages are sent.
        let new = if stored.is_some() { count.saturating_sub(summarized) } else { count };
        let messages = match self.store.recent_messages(&c.id, new.min(SUMMARY_MAX_MESSAGES) as u32).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(conversation = %c.id, error = %e, "summary: could not read messages");
                return stored;
            }
        };
        let mut request = Vec::with_capacity(messages.len() + 1);
        request.extend(stored.as_deref().map(summary_turn));
        request.extend(turns(&messages));
        let summary = match work.client.summarize(&request, job.token.as_ref()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(conversation = %c.id, error = %e, "summary failed");
                return stored;
            }
        };
        let at = now();
        let mut marker = Map::new();
        marker.insert(SUMMARIZED_COUNT_KEY.into(), Value::from(count));
        let changes = ConversationChanges { metadata: Some(marker), merge_metadata: true, ..Default::default() };
        let saved = async {
            self.store.set_summary(&c.id, &summary, at).await?;
            self.store.update_conversation(Scope::AnyCompany, &c.id, &changes, at).await
        };
        if let Err(e) = saved.await {
            tracing::warn!(conversation = %c.id, error = %e, "summary not stored");
        }
        Some(summary)
    }

    /// Intent and sentiment of the user's message, stored in its metadata in one update and
    /// announced as `message:edited`. Failures are logged and dropped.
    async fn enrich(&self, work: &AgentWork, job: &Job) {
        let token = job.token.as_ref();
        let (intent, sentiment) =
            tokio::join!(work.client.detect_intent(&job.message.content, token), work.client.sentiment(&job.message.content, token));
        let mut found = Map::new();
        for (key, result) in [("intent", intent), ("sentiment", sentiment)] {
            match result {
                Ok(v) => {
                    found.insert(key.into(), sanitize_json_strings(v));
                }
                Err(e) => tracing::info!(message_id = %job.message.id, error = %e, "{key} detection failed"),
            }
        }
        if found.is_empty() {
            return;
        }
        match self.store.update_message(&job.conversation.id, &job.message.id, &MessageChange::MergeMetadata(found)).await {
            Ok(Some(updated)) => self.announce_edit(&updated).await,
            // Deleted in the meantime: nothing to enrich.
            Ok(None) => {}
            Err(e) => tracing::warn!(message_id = %job.message.id, error = %e, "enrichment not stored"),
        }
    }

    /// Fire and forget: the answer is not read and a failure only logged.
    async fn extract_contacts(&self, work: &AgentWork, job: &Job, context: &[Turn]) {
        let request = ContactsRequest {
            conversation_id: &job.conversation.id,
            message_content: &job.message.content,
            company_id: &job.conversation.company_id,
            conversation_context: context,
        };
        if let Err(e) = work.client.extract_contacts(&request).await {
            tracing::info!(conversation = %job.conversation.id, error = %e, "contact extraction failed");
        }
    }
}

/// The last `n` messages of a chronological list.
fn last(messages: &[Message], n: usize) -> &[Message] {
    &messages[messages.len().saturating_sub(n)..]
}

fn turns(messages: &[Message]) -> Vec<Turn> {
    messages.iter().map(|m| Turn { role: m.role, content: m.content.clone() }).collect()
}

fn summary_turn(summary: &str) -> Turn {
    Turn { role: Role::System, content: format!("Summary of the conversation so far: {summary}") }
}

/// The reply history: the last 30 earlier messages, or the summary and the last 10.
fn history(summary: Option<&str>, earlier: &[Message]) -> Vec<Turn> {
    match summary {
        None => turns(last(earlier, HISTORY_WITHOUT_SUMMARY)),
        Some(s) => {
            let mut h = vec![summary_turn(s)];
            h.extend(turns(last(earlier, HISTORY_WITH_SUMMARY)));
            h
        }
    }
}
