//! What the process is doing, in numbers, for Prometheus at `GET /metrics` (README "Metrics"
//! lists every metric). Each part of the service records into `Metrics`; `render` writes the
//! Prometheus text format when scraped.
//!
//! Built on `prometheus-client`, the Prometheus project's own Rust client: an explicit registry
//! owned by the app (no process-global recorder, so tests and tools can build several apps),
//! typed handles that are plain atomics once created, and the text encoders. The `metrics`
//! facade with its Prometheus exporter was the alternative; it keeps every histogram sample
//! until the exporter aggregates it, and its macros look handles up in a shared map on each
//! call unless they are cached by hand.
//!
//! Cost on the send path: every handle used there is created at start-up (every label value
//! is known in advance), so recording is an atomic addition, two for a histogram (`histogram`
//! explains why prometheus-client's own histogram is not used), plus a clock read where a
//! duration is measured. Nothing is allocated and no lock is taken, with one exception: the
//! fan-out of a room broadcast reads that room's member count from a sharded map, a read lock
//! on one shard. Values that exist anyway (connections, rooms, Redis health, slow connections
//! closed) are read when scraped, not kept up to date. `METRICS=off` records nothing.

pub mod histogram;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use dashmap::DashMap;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::cluster::Cluster;
use crate::domain::SenderType;
use crate::service::events;
use histogram::{Bounds, Histogram, Scale};

/// The `Content-Type` of `render`'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// From a fast local round trip to a slow database under load.
const SEND_ACK_SECONDS: Bounds = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
const STORE_SECONDS: Bounds =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
/// Model calls take seconds; the default timeout is 30 s.
const AGENT_SECONDS: Bounds = &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0];
const RECIPIENTS: Bounds = &[0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 5000.0];

type Labels = Vec<(&'static str, &'static str)>;
type HistogramFamily = Family<Labels, Histogram, DurationBuckets>;

/// The client → server events counted by name; anything else is `other`.
#[derive(Debug, Clone, Copy)]
pub enum EventIn {
    Join,
    Leave,
    Send,
    Typing,
    TypingWidget,
    ThreadCreate,
    ThreadSwitch,
    Other,
}

impl EventIn {
    const ALL: [EventIn; 8] = [
        EventIn::Join,
        EventIn::Leave,
        EventIn::Send,
        EventIn::Typing,
        EventIn::TypingWidget,
        EventIn::ThreadCreate,
        EventIn::ThreadSwitch,
        EventIn::Other,
    ];

    fn name(self) -> &'static str {
        match self {
            EventIn::Join => "conversation:join",
            EventIn::Leave => "conversation:leave",
            EventIn::Send => "message:send",
            EventIn::Typing => "typing",
            EventIn::TypingWidget => "message:typing",
            EventIn::ThreadCreate => "thread:create",
            EventIn::ThreadSwitch => "thread:switch",
            EventIn::Other => "other",
        }
    }
}

/// Every server → client event, counted by name.
const EVENTS_OUT: [&str; 19] = [
    events::CONVERSATION_JOINED,
    events::MESSAGE_LEGACY,
    events::MESSAGE_NEW,
    events::MESSAGE_EDITED,
    events::MESSAGE_DELETED,
    events::MESSAGE_ERROR,
    events::USER_TYPING,
    events::TYPING_LEGACY,
    events::TYPING_WIDGET,
    events::USER_JOINED,
    events::USER_LEFT,
    events::PRESENCE_UPDATE,
    events::THREAD_CREATED,
    events::THREAD_SWITCHED,
    events::THREAD_UPDATED,
    events::CONVERSATION_UPDATED,
    events::PARTICIPANT_ADDED,
    events::PARTICIPANT_REMOVED,
    events::ERROR,
];

/// The operations of `Store`, timed by `store::metered`.
#[derive(Debug, Clone, Copy)]
pub enum StoreOp {
    Ping,
    InsertConversation,
    GetConversation,
    ListConversations,
    UpdateConversation,
    DeleteConversation,
    ArchiveInactive,
    SetParticipant,
    AddThread,
    SetSummary,
    InsertMessage,
    GetMessage,
    ListMessages,
    MessagesAfter,
    RecentMessages,
    CountMessages,
    UpdateMessage,
    SoftDeleteMessage,
    ListCompanyMessages,
    SearchMessages,
    InsertAttachment,
    GetAttachment,
    DeleteAttachment,
    DeleteConversationAttachments,
    InsertAuditRecords,
    ListAuditRecords,
    DeleteAuditRecordsBefore,
}

impl StoreOp {
    pub const COUNT: usize = 27;
    const ALL: [StoreOp; Self::COUNT] = [
        StoreOp::Ping,
        StoreOp::InsertConversation,
        StoreOp::GetConversation,
        StoreOp::ListConversations,
        StoreOp::UpdateConversation,
        StoreOp::DeleteConversation,
        StoreOp::ArchiveInactive,
        StoreOp::SetParticipant,
        StoreOp::AddThread,
        StoreOp::SetSummary,
        StoreOp::InsertMessage,
        StoreOp::GetMessage,
        StoreOp::ListMessages,
        StoreOp::MessagesAfter,
        StoreOp::RecentMessages,
        StoreOp::CountMessages,
        StoreOp::UpdateMessage,
        StoreOp::SoftDeleteMessage,
        StoreOp::ListCompanyMessages,
        StoreOp::SearchMessages,
        StoreOp::InsertAttachment,
        StoreOp::GetAttachment,
        StoreOp::DeleteAttachment,
        StoreOp::DeleteConversationAttachments,
        StoreOp::InsertAuditRecords,
        StoreOp::ListAuditRecords,
        StoreOp::DeleteAuditRecordsBefore,
    ];

    fn name(self) -> &'static str {
        match self {
            StoreOp::Ping => "ping",
            StoreOp::InsertConversation => "insert_conversation",
            StoreOp::GetConversation => "get_conversation",
            StoreOp::ListConversations => "list_conversations",
            StoreOp::UpdateConversation => "update_conversation",
            StoreOp::DeleteConversation => "delete_conversation",
            StoreOp::ArchiveInactive => "archive_inactive",
            StoreOp::SetParticipant => "set_participant",
            StoreOp::AddThread => "add_thread",
            StoreOp::SetSummary => "set_summary",
            StoreOp::InsertMessage => "insert_message",
            StoreOp::GetMessage => "get_message",
            StoreOp::ListMessages => "list_messages",
            StoreOp::MessagesAfter => "messages_after",
            StoreOp::RecentMessages => "recent_messages",
            StoreOp::CountMessages => "count_messages",
            StoreOp::UpdateMessage => "update_message",
            StoreOp::SoftDeleteMessage => "soft_delete_message",
            StoreOp::ListCompanyMessages => "list_company_messages",
            StoreOp::SearchMessages => "search_messages",
            StoreOp::InsertAttachment => "insert_attachment",
            StoreOp::GetAttachment => "get_attachment",
            StoreOp::DeleteAttachment => "delete_attachment",
            StoreOp::DeleteConversationAttachments => "delete_conversation_attachments",
            StoreOp::InsertAuditRecords => "insert_audit_records",
            StoreOp::ListAuditRecords => "list_audit_records",
            StoreOp::DeleteAuditRecordsBefore => "delete_audit_records_before",
        }
    }
}

/// What became of audit records (`chat_audit_records_total`).
#[derive(Debug, Clone, Copy)]
pub enum AuditOutcome {
    Written,
    QueueFull,
    StoreError,
}

/// What the read cache looked up.
#[derive(Debug, Clone, Copy)]
pub enum CacheEntry {
    Conversation,
    MessagePage,
}

/// The agent service's endpoints, as the contract names them.
#[derive(Debug, Clone, Copy)]
pub enum AgentCall {
    Reply,
    Intent,
    Sentiment,
    Summary,
    Contacts,
}

impl AgentCall {
    const ALL: [AgentCall; 5] = [AgentCall::Reply, AgentCall::Intent, AgentCall::Sentiment, AgentCall::Summary, AgentCall::Contacts];

    fn name(self) -> &'static str {
        match self {
            AgentCall::Reply => "reply",
            AgentCall::Intent => "intent",
            AgentCall::Sentiment => "sentiment",
            AgentCall::Summary => "summary",
            AgentCall::Contacts => "contacts",
        }
    }
}

/// Why an agent call failed (`AgentError`'s variants).
pub const AGENT_FAILURE_KINDS: [&str; 6] = ["unreachable", "timeout", "status", "invalid_response", "request", "overloaded"];

/// The limits whose refusals are counted (`RateLimiter`s by what they limit).
#[derive(Debug, Clone, Copy)]
pub enum Limit {
    Rest,
    SocketMessage,
    SocketTyping,
}

impl Limit {
    fn name(self) -> &'static str {
        match self {
            Limit::Rest => "rest",
            Limit::SocketMessage => "socket_message",
            Limit::SocketTyping => "socket_typing",
        }
    }
}

const HTTP_STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

pub struct Metrics {
    enabled: bool,
    registry: Registry,
    live: Arc<Live>,
    events_received: [Counter; EventIn::ALL.len()],
    events_emitted: [Counter; EVENTS_OUT.len()],
    messages_sent: [Counter; 3],
    broadcast_recipients: Histogram,
    /// `[ok, refused or failed]`.
    send_ack: [Histogram; 2],
    busy_refusals: Counter,
    /// Reconnects that asked for connection state recovery: `[recovered, not_recovered]`.
    recoveries: [Counter; 2],
    store_operations: HistogramFamily,
    cache_hits: [Counter; 2],
    cache_misses: [Counter; 2],
    agent_calls: [Histogram; AgentCall::ALL.len()],
    agent_failures: [[Counter; AGENT_FAILURE_KINDS.len()]; AgentCall::ALL.len()],
    agent_pending: Gauge,
    rate_limit_refusals: Family<Labels, Counter>,
    http_requests: [Counter; HTTP_STATUS_CLASSES.len()],
    /// In `AuditOutcome` order.
    audit_records: [Counter; 3],
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").field("enabled", &self.enabled).finish_non_exhaustive()
    }
}

/// Values read when scraped, from the parts that hold them anyway. Set once the parts exist.
#[derive(Default)]
struct Live {
    /// Local sockets per conversation room, kept by the socket handlers on join and leave.
    room_members: DashMap<String, usize>,
    /// `(websocket, polling)` sockets connected to this node.
    transports: OnceLock<Box<dyn Fn() -> (u64, u64) + Send + Sync>>,
    pending_events: OnceLock<Arc<AtomicUsize>>,
    cluster: OnceLock<Arc<Cluster>>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Every metric registered, every label value created. `enabled == false`
    /// (`METRICS=off`): nothing is recorded and `render` is never served.
    pub fn new(enabled: bool) -> Self {
        let mut r = Registry::default();
        let events_received = counters(
            &mut r,
            "chat_socket_events_received",
            "Socket.IO events received from clients, by event name",
            "event",
            EventIn::ALL.map(EventIn::name),
        );
        let events_emitted = counters(
            &mut r,
            "chat_socket_events_emitted",
            "Socket.IO events emitted, by event name: one per emit, whatever the number of recipients",
            "event",
            EVENTS_OUT,
        );
        let audit_records = counters(
            &mut r,
            "chat_audit_records",
            "Audit records by what became of them: written to the store, or dropped because the queue was full or the store failed",
            "outcome",
            ["written", "dropped_queue_full", "dropped_store_error"],
        );
        let messages_sent = counters(
            &mut r,
            "chat_messages_sent",
            "Messages stored and broadcast, by sender type",
            "sender_type",
            ["user", "agent", "system"],
        );

        let broadcast_recipients = Histogram::new(RECIPIENTS, Scale::One);
        r.register(
            "chat_broadcast_recipients",
            "Sockets on this node in the room at each room broadcast of the service",
            broadcast_recipients.clone(),
        );

        let send_ack = histogram_family(SEND_ACK_SECONDS);
        r.register_with_unit(
            "chat_send_ack_duration",
            "Time from a message:send received to its acknowledgement sent, by outcome",
            Unit::Seconds,
            send_ack.clone(),
        );
        let send_ack = [send_ack.get_or_create_owned(&vec![("outcome", "ok")]), send_ack.get_or_create_owned(&vec![("outcome", "error")])];

        let busy_refusals = Counter::default();
        r.register("chat_busy_refusals", "socket events refused because too many were queued (MAX_PENDING_EVENTS_PER_SOCKET or MAX_PENDING_EVENTS)", busy_refusals.clone());

        let recoveries = counters(
            &mut r,
            "chat_socket_recoveries",
            "Reconnects that asked for connection state recovery (a pid and an offset), by outcome",
            "outcome",
            ["recovered", "not_recovered"],
        );

        let store_operations = histogram_family(STORE_SECONDS);
        r.register_with_unit(
            "chat_store_operation_duration",
            "Time of each store operation, by operation and store (sqlite, mongodb)",
            Unit::Seconds,
            store_operations.clone(),
        );

        let entries = ["conversation", "message_page"];
        let cache_hits = counters(&mut r, "chat_cache_hits", "Read-cache lookups answered from Redis, by entry", "entry", entries);
        let cache_misses =
            counters(&mut r, "chat_cache_misses", "Read-cache lookups that went to the store, by entry", "entry", entries);

        let agent_calls = histogram_family(AGENT_SECONDS);
        r.register_with_unit(
            "chat_agent_call_duration",
            "Time of each agent service call (queueing and retries included), by call",
            Unit::Seconds,
            agent_calls.clone(),
        );
        let agent_calls = AgentCall::ALL.map(|c| agent_calls.get_or_create_owned(&vec![("call", c.name())]));
        let agent_failures = Family::<Labels, Counter>::default();
        r.register("chat_agent_call_failures", "Agent service calls that failed, by call and kind of failure", agent_failures.clone());
        let agent_failures =
            AgentCall::ALL.map(|c| AGENT_FAILURE_KINDS.map(|k| agent_failures.get_or_create_owned(&vec![("call", c.name()), ("kind", k)])));
        let agent_pending = Gauge::default();
        r.register("chat_agent_pending", "User messages whose agent work is queued or running", agent_pending.clone());

        let rate_limit_refusals = Family::<Labels, Counter>::default();
        r.register("chat_rate_limit_refusals", "Requests and events refused by a rate limit, by limit", rate_limit_refusals.clone());
        for limit in [Limit::Rest, Limit::SocketMessage, Limit::SocketTyping] {
            rate_limit_refusals.get_or_create_owned(&vec![("limit", limit.name())]);
        }

        let http_requests =
            counters(&mut r, "chat_http_requests", "REST and health requests answered, by status class", "status", HTTP_STATUS_CLASSES);

        r.register("chat_build", "Version of the running build", Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]));
        let live = Arc::new(Live::default());
        r.register_collector(Box::new(LiveCollector(live.clone())));

        Metrics {
            enabled,
            registry: r,
            live,
            events_received,
            events_emitted,
            messages_sent,
            broadcast_recipients,
            send_ack,
            busy_refusals,
            recoveries,
            store_operations,
            cache_hits,
            cache_misses,
            agent_calls,
            agent_failures,
            agent_pending,
            rate_limit_refusals,
            http_requests,
            audit_records,
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Everything, in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }

    // Sources read when scraped.

    /// Counts the node's sockets by transport when scraped: `(websocket, polling)`.
    pub fn watch_transports(&self, count: impl Fn() -> (u64, u64) + Send + Sync + 'static) {
        let _ = self.live.transports.set(Box::new(count));
    }

    pub fn watch_pending_events(&self, pending: Arc<AtomicUsize>) {
        let _ = self.live.pending_events.set(pending);
    }

    pub fn watch_redis(&self, cluster: Arc<Cluster>) {
        let _ = self.live.cluster.set(cluster);
    }

    // Recording.

    /// The time now, when anything is recorded; pass it back to a `…_since` method.
    pub fn clock(&self) -> Option<Instant> {
        self.enabled.then(Instant::now)
    }

    pub fn event_received(&self, event: EventIn) {
        if self.enabled {
            self.events_received[event as usize].inc();
        }
    }

    pub fn event_emitted(&self, event: &str) {
        if self.enabled
            && let Some(i) = EVENTS_OUT.iter().position(|e| *e == event)
        {
            self.events_emitted[i].inc();
        }
    }

    /// A room broadcast of `event` from the service: counted, and its recipients on this node.
    pub fn room_broadcast(&self, conversation_id: &str, event: &str) {
        if !self.enabled {
            return;
        }
        self.event_emitted(event);
        let members = self.live.room_members.get(conversation_id).map_or(0, |n| *n);
        self.broadcast_recipients.record(members as u64);
    }

    /// A socket of this node entered a conversation's room.
    pub fn room_joined(&self, conversation_id: &str) {
        if self.enabled {
            *self.live.room_members.entry(conversation_id.to_string()).or_insert(0) += 1;
        }
    }

    /// A socket of this node left a conversation's room (or disconnected from it).
    pub fn room_left(&self, conversation_id: &str) {
        if self.enabled {
            self.live.room_members.remove_if_mut(conversation_id, |_, n| {
                *n = n.saturating_sub(1);
                *n == 0
            });
        }
    }

    pub fn message_sent(&self, sender: SenderType) {
        if self.enabled {
            let i = match sender {
                SenderType::User => 0,
                SenderType::Agent => 1,
                SenderType::System => 2,
            };
            self.messages_sent[i].inc();
        }
    }

    /// A `message:send` received at `received` was acknowledged (`ok`) or refused.
    pub fn send_answered(&self, received: Option<Instant>, ok: bool) {
        if let Some(t) = received {
            self.send_ack[usize::from(!ok)].record_since(t);
        }
    }

    /// `n` audit records written or dropped.
    pub fn audit_records(&self, outcome: AuditOutcome, n: u64) {
        if self.enabled {
            self.audit_records[outcome as usize].inc_by(n);
        }
    }

    pub fn busy_refusal(&self) {
        if self.enabled {
            self.busy_refusals.inc();
        }
    }

    /// A reconnect that gave a pid and an offset: its session recovered, or a new one.
    pub fn recovery(&self, recovered: bool) {
        if self.enabled {
            self.recoveries[usize::from(!recovered)].inc();
        }
    }

    /// One histogram per store operation for a store of `kind`, in `StoreOp` order.
    pub fn store_operations(&self, kind: &'static str) -> [Histogram; StoreOp::COUNT] {
        StoreOp::ALL.map(|op| self.store_operations.get_or_create_owned(&vec![("operation", op.name()), ("store", kind)]))
    }

    pub fn cache_lookup(&self, entry: CacheEntry, hit: bool) {
        if self.enabled {
            let counters = if hit { &self.cache_hits } else { &self.cache_misses };
            counters[entry as usize].inc();
        }
    }

    /// An agent call that started at `started` ended, failed with `failure` (one of
    /// `AGENT_FAILURE_KINDS`) or not.
    pub fn agent_call(&self, call: AgentCall, started: Option<Instant>, failure: Option<&str>) {
        if let Some(t) = started {
            self.agent_calls[call as usize].record_since(t);
        }
        self.agent_failure(call, failure);
    }

    /// An agent call that failed before it was made (`overloaded`), or after.
    pub fn agent_failure(&self, call: AgentCall, failure: Option<&str>) {
        if let Some(kind) = failure.filter(|_| self.enabled)
            && let Some(k) = AGENT_FAILURE_KINDS.iter().position(|known| *known == kind)
        {
            self.agent_failures[call as usize][k].inc();
        }
    }

    /// The gauge of user messages with agent work queued or running.
    pub fn agent_pending(&self) -> Gauge {
        self.agent_pending.clone()
    }

    /// The counter of `limit`'s refusals, for its `RateLimiter`.
    pub fn rate_limit_refusals(&self, limit: Limit) -> Counter {
        self.rate_limit_refusals.get_or_create_owned(&vec![("limit", limit.name())])
    }

    pub fn http_answered(&self, status: u16) {
        if self.enabled {
            let class = usize::from(status / 100).clamp(1, 5) - 1;
            self.http_requests[class].inc();
        }
    }
}

/// A counter family with one series per value of `label`, all created now, in `values` order.
fn counters<const N: usize>(
    r: &mut Registry,
    name: &str,
    help: &str,
    label: &'static str,
    values: [&'static str; N],
) -> [Counter; N] {
    let family = Family::<Labels, Counter>::default();
    r.register(name, help, family.clone());
    values.map(|v| family.get_or_create_owned(&vec![(label, v)]))
}

fn histogram_family(bounds: Bounds) -> HistogramFamily {
    Family::new_with_constructor(DurationBuckets(bounds))
}

/// Makes the duration histograms of one family, all with the same buckets.
#[derive(Debug, Clone)]
struct DurationBuckets(Bounds);

impl MetricConstructor<Histogram> for DurationBuckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0, Scale::NanosToSeconds)
    }
}

/// Encodes the values read when scraped.
#[derive(Debug)]
struct LiveCollector(Arc<Live>);

impl Collector for LiveCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let live = &self.0;
        let (websocket, polling) = live.transports.get().map_or((0, 0), |count| count());
        let mut connections =
            encoder.encode_descriptor("chat_connections", "Socket.IO connections open on this node, by transport", None, MetricType::Gauge)?;
        ConstGauge::new(websocket as i64).encode(connections.encode_family(&[("transport", "websocket")])?)?;
        ConstGauge::new(polling as i64).encode(connections.encode_family(&[("transport", "polling")])?)?;

        let rooms = live.room_members.len() as i64;
        let gauge = ConstGauge::new(rooms);
        gauge.encode(encoder.encode_descriptor("chat_rooms", "Conversation rooms with at least one socket on this node", None, gauge.metric_type())?)?;

        let pending = live.pending_events.get().map_or(0, |p| p.load(Ordering::Relaxed)) as i64;
        let gauge = ConstGauge::new(pending);
        gauge.encode(encoder.encode_descriptor("chat_socket_events_pending", "store-backed socket events (sends, joins, leaves, threads) queued or running on this node", None, gauge.metric_type())?)?;

        let closed = ConstCounter::new(engineioxide::socket::slow_connections_closed());
        closed.encode(encoder.encode_descriptor(
            "chat_slow_consumer_disconnects",
            "Sockets closed because their outgoing buffer (SOCKET_BUFFER_SIZE packets) was full",
            None,
            closed.metric_type(),
        )?)?;

        if let Some(cluster) = live.cluster.get() {
            let up = ConstGauge::new(i64::from(cluster.is_up()));
            up.encode(encoder.encode_descriptor("chat_redis_up", "1 while Redis answers, 0 during an outage", None, up.metric_type())?)?;
        }
        Ok(())
    }
}
