//! Client of the AI agent service (`AGENT_SERVICE_URL`): replies, intent and sentiment
//! detection, summaries and contact extraction, as the contract's "agent service" section
//! describes them. What to ask and when is decided in `service`; this module only makes the
//! calls, within limits:
//!
//! - every call has a connect timeout and a total timeout (queueing and retries included);
//! - at most `AGENT_MAX_IN_FLIGHT` calls are open at once, the rest wait for a slot;
//! - at most `AGENT_MAX_PENDING` user messages have agent work queued or running
//!   (`admit`), so a burst of messages cannot pile up unbounded work behind a slow agent;
//! - only the calls that are safe to repeat (detection, summaries) are retried, and only when
//!   no connection could be made, so a request the agent may have acted on is never sent twice.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use prometheus_client::metrics::gauge::Gauge;
use serde_json::{Map, Value};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::auth::BearerToken;
use crate::config::Config;
use crate::domain::{Attachment, Role};
use crate::metrics::{AgentCall, Metrics};

/// Largest answer body read from the agent service; a bigger one is an invalid answer.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// Retries of a repeatable call whose connection failed, and the pause before the first one
/// (doubled each time).
const CONNECT_RETRIES: u32 = 2;
const RETRY_PAUSE: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("agent service unreachable: {0}")]
    Unreachable(String),
    #[error("agent service did not answer in time")]
    Timeout,
    #[error("agent service answered HTTP {0}")]
    Status(u16),
    #[error("agent service answered an unreadable body: {0}")]
    InvalidResponse(String),
    #[error("agent service request failed: {0}")]
    Request(String),
    #[error("too many messages are waiting for the agent service")]
    Overloaded,
}

impl AgentError {
    /// The failure's label in the metrics (one of `metrics::AGENT_FAILURE_KINDS`).
    pub fn kind(&self) -> &'static str {
        match self {
            AgentError::Unreachable(_) => "unreachable",
            AgentError::Timeout => "timeout",
            AgentError::Status(_) => "status",
            AgentError::InvalidResponse(_) => "invalid_response",
            AgentError::Request(_) => "request",
            AgentError::Overloaded => "overloaded",
        }
    }
}

/// One turn of a conversation as the agent service reads it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Turn {
    pub role: Role,
    pub content: String,
}

/// POST /api/responses/generate.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplyRequest<'a> {
    pub agent_id: &'a str,
    pub conversation_id: &'a str,
    pub message: &'a str,
    pub conversation_history: &'a [Turn],
    pub include_knowledge_base: bool,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub attachments: &'a [Attachment],
}

/// The agent's answer to a reply request.
#[derive(Debug, Deserialize)]
pub struct Reply {
    pub response: String,
    /// Read leniently: a field of an unexpected type is left out, never a failed reply.
    #[serde(default)]
    pub metadata: Map<String, Value>,
}

impl Reply {
    /// The stored `ai_metadata` of the reply: what the agent reported, in the document's
    /// snake_case, plus the measured time it took.
    pub fn ai_metadata(&self, elapsed: Duration) -> Map<String, Value> {
        let mut ai = Map::new();
        let m = &self.metadata;
        if let Some(model) = m.get("model").filter(|v| v.is_string()) {
            ai.insert("model".into(), model.clone());
        }
        if let Some(tokens) = m.get("tokensUsed").filter(|v| v.is_number()) {
            ai.insert("tokens_used".into(), tokens.clone());
        }
        if let Some(t) = m.get("temperature").filter(|v| v.is_number()) {
            ai.insert("temperature".into(), t.clone());
        }
        if let Some(f) = m.get("finishReason").filter(|v| v.is_string()) {
            ai.insert("finish_reason".into(), f.clone());
        }
        ai.insert("response_time_ms".into(), Value::from(elapsed.as_millis() as u64));
        ai
    }
}

/// POST /api/internal/contacts/extract.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContactsRequest<'a> {
    pub conversation_id: &'a str,
    pub message_content: &'a str,
    pub company_id: &'a str,
    pub conversation_context: &'a [Turn],
}

#[derive(Serialize)]
struct TextRequest<'a> {
    message: &'a str,
}

#[derive(Serialize)]
struct SummaryRequest<'a> {
    messages: &'a [Turn],
}

#[derive(Deserialize)]
struct SummaryAnswer {
    summary: String,
}

/// A user message's place among those with agent work queued or running; released on drop.
pub struct Admission {
    _place: OwnedSemaphorePermit,
    pending: Gauge,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.pending.dec();
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Retry {
    OnConnectFailure,
    Never,
}

pub struct AgentClient {
    http: reqwest::Client,
    base_url: String,
    internal_token: Option<BearerToken>,
    timeout: Duration,
    in_flight: Arc<Semaphore>,
    pending: Arc<Semaphore>,
    metrics: Arc<Metrics>,
    /// Messages holding an `Admission`.
    pending_gauge: Gauge,
    /// How the last call that finished failed; `None` once one succeeds.
    last_failure: Mutex<Option<String>>,
}

/// The agent service as the last call found it, for `/health`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentHealth {
    /// Why the last finished call failed; `None` when it succeeded (or none was made yet).
    pub last_failure: Option<String>,
    /// User messages whose agent work is queued or running.
    pub pending: u64,
}

impl AgentClient {
    /// `None` when no `AGENT_SERVICE_URL` is configured: no agent calls at all.
    pub fn from_config(config: &Config, metrics: Arc<Metrics>) -> Result<Option<Self>, AgentError> {
        let Some(base_url) = &config.agent_service_url else { return Ok(None) };
        let http = reqwest::Client::builder()
            .connect_timeout(config.agent_connect_timeout)
            .timeout(config.agent_timeout)
            .build()
            .map_err(|e| AgentError::Request(e.to_string()))?;
        if config.internal_service_token.is_none() {
            tracing::warn!("INTERNAL_SERVICE_TOKEN is not set: contact extraction calls are skipped");
        }
        Ok(Some(AgentClient {
            http,
            base_url: base_url.clone(),
            internal_token: config.internal_service_token.as_deref().map(BearerToken::new),
            timeout: config.agent_timeout,
            in_flight: Arc::new(Semaphore::new(config.agent_max_in_flight)),
            pending: Arc::new(Semaphore::new(config.agent_max_pending)),
            pending_gauge: metrics.agent_pending(),
            metrics,
            last_failure: Mutex::new(None),
        }))
    }

    pub fn health(&self) -> AgentHealth {
        let last_failure = self.last_failure.lock().unwrap_or_else(|p| p.into_inner()).clone();
        AgentHealth { last_failure, pending: self.pending_gauge.get().max(0) as u64 }
    }

    /// Takes a place for one user message's agent work, unless `AGENT_MAX_PENDING` messages
    /// already hold one.
    pub fn admit(&self) -> Result<Admission, AgentError> {
        match self.pending.clone().try_acquire_owned() {
            Ok(_place) => {
                self.pending_gauge.inc();
                Ok(Admission { _place, pending: self.pending_gauge.clone() })
            }
            Err(_) => {
                // The message's reply is the first thing it loses.
                self.metrics.agent_failure(AgentCall::Reply, Some(AgentError::Overloaded.kind()));
                Err(AgentError::Overloaded)
            }
        }
    }

    /// The agent's reply to a user's message. Never retried: the agent may have acted on it.
    pub async fn generate(&self, request: &ReplyRequest<'_>, token: Option<&BearerToken>) -> Result<Reply, AgentError> {
        let reply: Reply = self.post(AgentCall::Reply, request, token, Retry::Never).await?;
        if reply.response.trim().is_empty() {
            return Err(AgentError::InvalidResponse("empty response".into()));
        }
        Ok(reply)
    }

    /// The intent of a message, as the agent service reports it.
    pub async fn detect_intent(&self, message: &str, token: Option<&BearerToken>) -> Result<Value, AgentError> {
        let answer: Value =
            self.post(AgentCall::Intent, &TextRequest { message }, token, Retry::OnConnectFailure).await?;
        field_or_whole(answer, "intent")
    }

    /// The sentiment of a message, as the agent service reports it.
    pub async fn sentiment(&self, message: &str, token: Option<&BearerToken>) -> Result<Value, AgentError> {
        let answer: Value =
            self.post(AgentCall::Sentiment, &TextRequest { message }, token, Retry::OnConnectFailure).await?;
        field_or_whole(answer, "sentiment")
    }

    pub async fn summarize(&self, messages: &[Turn], token: Option<&BearerToken>) -> Result<String, AgentError> {
        let answer: SummaryAnswer =
            self.post(AgentCall::Summary, &SummaryRequest { messages }, token, Retry::OnConnectFailure).await?;
        let summary = answer.summary.trim();
        if summary.is_empty() {
            return Err(AgentError::InvalidResponse("empty summary".into()));
        }
        Ok(summary.to_string())
    }

    /// Asks for the contacts mentioned in a message, with the internal token. Nothing is read
    /// from the answer; without an internal token nothing is sent.
    pub async fn extract_contacts(&self, request: &ContactsRequest<'_>) -> Result<(), AgentError> {
        let Some(token) = &self.internal_token else { return Ok(()) };
        let _: serde::de::IgnoredAny =
            self.post(AgentCall::Contacts, request, Some(token), Retry::Never).await?;
        Ok(())
    }

    /// One call within the total timeout, retried as `retry` allows, timed and counted.
    async fn post<T: DeserializeOwned>(
        &self,
        call: AgentCall,
        body: &impl Serialize,
        token: Option<&BearerToken>,
        retry: Retry,
    ) -> Result<T, AgentError> {
        let started = self.metrics.clock();
        let path = path_of(call);
        let deadline = Instant::now() + self.timeout;
        let attempts = async {
            let mut retries_left = if retry == Retry::OnConnectFailure { CONNECT_RETRIES } else { 0 };
            let mut pause = RETRY_PAUSE;
            loop {
                match self.post_once(path, body, token).await {
                    Err(AgentError::Unreachable(e)) if retries_left > 0 => {
                        tracing::debug!(path, error = %e, "agent service unreachable, retrying");
                        retries_left -= 1;
                        tokio::time::sleep(pause).await;
                        pause *= 2;
                    }
                    result => return result,
                }
            }
        };
        let result = tokio::time::timeout_at(deadline, attempts).await.unwrap_or(Err(AgentError::Timeout));
        self.metrics.agent_call(call, started, result.as_ref().err().map(AgentError::kind));
        *self.last_failure.lock().unwrap_or_else(|p| p.into_inner()) = result.as_ref().err().map(|e| e.to_string());
        result
    }

    async fn post_once<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
        token: Option<&BearerToken>,
    ) -> Result<T, AgentError> {
        // The slot is held until the answer is read: it bounds open connections, not requests sent.
        let _slot = self.in_flight.acquire().await.map_err(|_| AgentError::Overloaded)?;
        let mut request = self.http.post(format!("{}{path}", self.base_url)).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token.as_str());
        }
        let mut response = request.send().await.map_err(classify)?;
        let status = response.status();
        if !status.is_success() {
            return Err(AgentError::Status(status.as_u16()));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(classify)? {
            if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(AgentError::InvalidResponse(format!("body over {MAX_RESPONSE_BYTES} bytes")));
            }
            bytes.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&bytes).map_err(|e| AgentError::InvalidResponse(e.to_string()))
    }
}

/// Where each call goes on the agent service.
fn path_of(call: AgentCall) -> &'static str {
    match call {
        AgentCall::Reply => "/api/responses/generate",
        AgentCall::Intent => "/api/responses/detect-intent",
        AgentCall::Sentiment => "/api/responses/sentiment",
        AgentCall::Summary => "/api/responses/summarize",
        AgentCall::Contacts => "/api/internal/contacts/extract",
    }
}

fn classify(e: reqwest::Error) -> AgentError {
    if e.is_timeout() {
        AgentError::Timeout
    } else if e.is_connect() {
        AgentError::Unreachable(e.to_string())
    } else if e.is_decode() || e.is_body() {
        AgentError::InvalidResponse(e.to_string())
    } else {
        AgentError::Request(e.to_string())
    }
}

/// `answer[key]` when the answer is an object carrying it (`{ "intent": ... }`), else the whole
/// answer (an agent that returns the bare value or a richer object). `null` is no answer.
fn field_or_whole(answer: Value, key: &str) -> Result<Value, AgentError> {
    let value = match answer {
        Value::Object(mut o) if o.contains_key(key) => o.remove(key).unwrap_or(Value::Null),
        other => other,
    };
    if value.is_null() {
        return Err(AgentError::InvalidResponse(format!("no {key}")));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn detection_answers() {
        assert_eq!(field_or_whole(json!({"intent": "billing", "confidence": 0.9}), "intent").unwrap(), json!("billing"));
        assert_eq!(field_or_whole(json!({"label": "positive", "score": 0.8}), "sentiment").unwrap(), json!({"label": "positive", "score": 0.8}));
        assert_eq!(field_or_whole(json!("question"), "intent").unwrap(), json!("question"));
        assert!(field_or_whole(json!({"intent": null}), "intent").is_err());
        assert!(field_or_whole(Value::Null, "intent").is_err());
    }

    #[test]
    fn reply_metadata_is_snake_case_and_lenient() {
        let reply: Reply = serde_json::from_value(json!({
            "response": "hi",
            "metadata": {"model": "m1", "tokensUsed": 12, "temperature": "hot", "finishReason": "stop"}
        }))
        .unwrap();
        let ai = reply.ai_metadata(Duration::from_millis(1500));
        assert_eq!(Value::Object(ai), json!({"model": "m1", "tokens_used": 12, "finish_reason": "stop", "response_time_ms": 1500}));
        assert!(serde_json::from_value::<Reply>(json!({"metadata": {}})).is_err());
    }

    #[test]
    fn reply_request_wire_names() {
        let history = [Turn { role: Role::User, content: "hello".into() }];
        let v = serde_json::to_value(ReplyRequest {
            agent_id: "a1",
            conversation_id: "c1",
            message: "hi",
            conversation_history: &history,
            include_knowledge_base: true,
            attachments: &[],
        })
        .unwrap();
        assert_eq!(
            v,
            json!({"agentId": "a1", "conversationId": "c1", "message": "hi",
                   "conversationHistory": [{"role": "user", "content": "hello"}], "includeKnowledgeBase": true})
        );
    }
}
