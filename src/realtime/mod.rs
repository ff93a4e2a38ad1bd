//! Socket.IO (socketioxide): handshake authentication, the client → server events of the
//! contract, presence, and per-user event limits. Handlers parse the payload, call the
//! service and answer; errors go back to the one socket that caused them (acknowledgement
//! or `error` event) and never disconnect it.
//!
//! Room broadcasts caused by state changes go through the service's `Broadcaster`. Relays
//! that exclude the sending socket (typing, `user:joined`/`user:left`) are emitted here with
//! the service's payload types, since only the socket knows whom to exclude.
//!
//! Connection state recovery (`recovery`) hooks in at the handshake (a returning `pid` gets
//! its rooms and missed events back), on join and leave (the session's rooms are recorded)
//! and on disconnect (the session is kept for the window, unless the client left on purpose).

mod broadcaster;
mod ordering;
mod recovery;
mod shutdown;

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use serde::Serialize;
use serde_json::{json, Value};
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, Event, Extension, SocketRef, State, TryData};
use socketioxide::handler::{ConnectHandler, FromMessageParts, MessageHandler};
use socketioxide::socket::{DisconnectReason, Socket};
use socketioxide::SocketIo;

pub use broadcaster::SocketBroadcaster;
pub use ordering::QueueLimits;
pub use recovery::Recovery;
pub use shutdown::SocketShutdown;

use tracing::Instrument;

use crate::auth::{bearer, AuthError, Authenticator, Principal};
use crate::domain::audit::{ActorKind, AuditAction, Transport};
use crate::http::client_address::TrustedProxies;
use crate::domain::{id_from_value, optional_thread_id, MessageType, SendMessageInput, ValidMessage, ValidationError};
use crate::metrics::{EventIn, Metrics};
use crate::presence::Presence;
use crate::ratelimit::RateLimiter;
use crate::service::events::{self, room, ConversationJoined, ErrorEvent, MessageErrorEvent, ThreadSwitched, Typing, UserInRoom};
use crate::service::{with_origin, ChatService, On, Origin, ServiceError};

/// Everything the socket handlers share.
pub struct Realtime {
    pub service: Arc<ChatService>,
    pub auth: Arc<Authenticator>,
    pub presence: Arc<Presence>,
    pub message_limiter: RateLimiter,
    pub typing_limiter: RateLimiter,
    pub max_connections: usize,
    pub connections: AtomicUsize,
    /// Bounds on store-backed events waiting, per socket and in the process.
    pub queue_limits: ordering::QueueLimits,
    /// Set when the node is stopping: new events are refused, accepted ones finish.
    pub closing: AtomicBool,
    pub metrics: Arc<Metrics>,
    /// Connection state recovery; `None` when `RECOVERY_WINDOW_MS=0`.
    pub recovery: Option<Arc<Recovery>>,
    /// Broadcasts held for a recovering socket before it is closed as unable to keep up.
    pub hold_limit: usize,
    /// Whose `X-Forwarded-For` names the client in audit records.
    pub trusted_proxies: Arc<TrustedProxies>,
}

/// Per-socket state, kept in the socket's extensions.
pub struct Session {
    pub principal: Principal,
    state: Mutex<SocketState>,
    /// This socket's place under `MAX_CONNECTIONS`.
    slot: ConnectionSlot,
    /// Keeps this socket's store-backed events in arrival order.
    events: ordering::EventQueue,
    /// The socket id and the client's address, for audit records and logs.
    socket_id: String,
    client_address: Option<String>,
    /// Events seen so far: the `n` of each event's request id `<socket id>:<n>`.
    events_seen: AtomicU64,
    /// The private session id given in the CONNECT answer (connection state recovery on).
    pid: OnceLock<String>,
    /// What a recovered socket is still owed once its CONNECT is sent (boxed: most sockets
    /// never have one, and every session would carry its size).
    replay: Mutex<Option<Box<Replay>>>,
    /// Taken for each write of the session's record, so they land in order.
    record_writes: tokio::sync::Mutex<()>,
}

/// The missed events of a recovered session, and the rooms it was put back in.
struct Replay {
    events: Vec<recovery::LoggedEvent>,
    rooms: Vec<String>,
    /// Where the log was read to: events appended after it are read once the socket can
    /// receive broadcasts (see `replay`).
    read_to: String,
}

/// What this socket holds in `Presence` and in rooms. Changed only under the session's lock
/// and never after `closed`: handlers run concurrently, and a disconnect that overtakes a
/// connect or a join still in flight must not leave a ghost user online or in a room.
#[derive(Default)]
struct SocketState {
    /// Counted as one of the user's sockets in `Presence`.
    online: bool,
    /// Conversations this socket has joined.
    rooms: HashSet<String>,
    closed: bool,
}

impl Session {
    fn state(&self) -> MutexGuard<'_, SocketState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, rooms: Vec<String>) -> recovery::SessionRecord {
        recovery::SessionRecord { user_id: self.principal.user_id.clone(), company_id: self.principal.company_id.clone(), rooms }
    }

    /// Records the socket's current rooms under its session id, where every node can read them.
    /// The rooms are read once the previous write is done: two writes in flight (the connect
    /// handler's and a join's) could otherwise land in the wrong order and leave the record
    /// without a room the socket is in.
    async fn remember_rooms(&self, rt: &Realtime) {
        if let (Some(recovery), Some(pid)) = (&rt.recovery, self.pid.get()) {
            let _turn = self.record_writes.lock().await;
            let rooms = {
                let state = self.state();
                // Disconnected: `on_disconnect` writes the last record.
                if state.closed {
                    return;
                }
                state.rooms.iter().cloned().collect()
            };
            recovery.save_live(pid, &self.record(rooms)).await;
        }
    }
    /// The origin of the next event's audit records: a fresh request id `<socket id>:<n>`.
    fn next_origin(&self) -> Origin {
        let n = self.events_seen.fetch_add(1, Ordering::Relaxed) + 1;
        Origin { transport: Transport::Socket, client_address: self.client_address.clone(), request_id: Some(format!("{}:{n}", self.socket_id)) }
    }
}

/// Runs an event's work with its audit origin and a span naming its request id in the log.
fn traced<F: Future>(origin: Origin, work: F) -> impl Future<Output = F::Output> {
    let span = tracing::info_span!("socket_event", id = origin.request_id.as_deref().unwrap_or("-"));
    with_origin(origin, work.instrument(span))
}

/// The client's address as the handshake request shows it (behind a trusted proxy, the one
/// `X-Forwarded-For` names).
fn handshake_address<A: Adapter>(s: &SocketRef<A>, proxies: &TrustedProxies) -> Option<String> {
    let parts = s.req_parts();
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| proxies.client_address(c.0.ip(), &parts.headers).to_string())
}

/// One counted connection. Released on disconnect, or when the socket is dropped without
/// ever connecting (its CONNECT packet could not be sent), so the count cannot drift upward.
struct ConnectionSlot {
    rt: Arc<Realtime>,
    released: AtomicBool,
}

impl ConnectionSlot {
    /// Takes a slot unless `max_connections` are already counted. One atomic step, so
    /// concurrent handshakes cannot overshoot the cap.
    fn claim(rt: &Arc<Realtime>) -> Option<Self> {
        rt.connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < rt.max_connections).then_some(n + 1))
            .ok()
            .map(|_| ConnectionSlot { rt: rt.clone(), released: AtomicBool::new(false) })
    }

    fn release(&self) {
        if !self.released.swap(true, Ordering::AcqRel) {
            self.rt.connections.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.release();
    }
}

type Rt = State<Arc<Realtime>>;
type Sess = Extension<Arc<Session>>;

/// The `error` message of every refused `message:send` payload.
const INVALID_MESSAGE: &str = "Invalid message data";

/// Registers the `/` namespace with its authentication middleware and event handlers. The
/// result completes once the adapter is ready (a cluster adapter subscribes to its channels).
pub fn attach<A: Adapter + socketioxide_core::adapter::DefinedAdapter>(io: &SocketIo<A>) -> A::InitRes {
    io.ns("/", on_connect::<A>.with(authenticate::<A>))
}

#[derive(Debug, thiserror::Error)]
enum ConnectRefused {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("Server is at capacity")]
    AtCapacity,
}

/// Handshake: token from `auth.token`, else the `Authorization: Bearer` header; then a
/// connection slot under the cap.
async fn authenticate<A: Adapter>(s: SocketRef<A>, State(rt): Rt, TryData(auth): TryData<Value>) -> Result<(), ConnectRefused> {
    let auth = auth.ok();
    let from_auth = auth.as_ref().and_then(|v| v.get("token").and_then(Value::as_str).map(str::to_string));
    let token = from_auth.or_else(|| {
        let header = s.req_parts().headers.get("authorization").and_then(|v| v.to_str().ok());
        bearer(header).map(str::to_string)
    });
    let client_address = handshake_address(&s, &rt.trusted_proxies);
    let verified = token.filter(|t| !t.trim().is_empty()).ok_or(AuthError::Missing).and_then(|t| rt.auth.verify(&t));
    let principal = match verified {
        Ok(p) => p,
        Err(e) => {
            let origin = Origin { transport: Transport::Socket, client_address, request_id: Some(s.id.to_string()) };
            with_origin(origin, async {
                let why = e.to_string();
                tracing::info!(socket = %s.id, reason = %why, "socket authentication refused");
                rt.service.auditor().record_as(ActorKind::Anonymous, None, AuditAction::AuthRefused, None, On::default().detail(why));
            })
            .await;
            return Err(e.into());
        }
    };
    let Some(slot) = ConnectionSlot::claim(&rt) else {
        tracing::warn!(max = rt.max_connections, "connection refused: at capacity");
        return Err(ConnectRefused::AtCapacity);
    };
    let session = Arc::new(Session {
        principal,
        state: Mutex::default(),
        slot,
        events: Default::default(),
        socket_id: s.id.to_string(),
        client_address,
        events_seen: AtomicU64::new(0),
        pid: OnceLock::new(),
        replay: Mutex::new(None),
        record_writes: tokio::sync::Mutex::new(()),
    });
    s.extensions.insert(session.clone());
    // Registered here rather than in `on_connect`: socketioxide sends CONNECT as soon as this
    // middleware succeeds and runs the connect handler later in its own task, so a client that
    // emits the moment it sees `connect` would otherwise hit a socket with no handlers yet and
    // its event would be dropped without an answer.
    register_handlers(&s, rt.service.legacy_events());
    if let Some(recovery) = &rt.recovery {
        let claim = auth.as_ref().and_then(recovery::claim_of);
        let restored = match &claim {
            // Boxed, like `replay` below: only returning sockets pay for its future's size.
            Some((pid, offset)) => Box::pin(restore(&s, &rt, recovery, &session, pid, offset)).await.map(|replay| (pid.clone(), replay)),
            None => None,
        };
        if claim.is_some() {
            rt.metrics.recovery(restored.is_some());
        }
        let pid = match restored {
            Some((pid, replay)) => {
                *session.replay.lock().unwrap_or_else(|p| p.into_inner()) = Some(Box::new(replay));
                pid
            }
            None => Recovery::new_pid(),
        };
        s.set_pid(pid.clone());
        let _ = session.pid.set(pid);
    }
    Ok(())
}

/// Puts a returning session back together: the session id must name the same user and
/// company as the token just verified, and each of its rooms must still be one this token may
/// join. The socket's broadcasts are held from before it joins them until its missed events
/// are sent (`on_connect`), so none is lost, repeated or reordered in between. `None`: not
/// recoverable (unknown or expired session, an offset the log no longer reaches), and the
/// client gets a new session and catches up with `lastMessageId`.
async fn restore<A: Adapter>(
    s: &SocketRef<A>,
    rt: &Realtime,
    recovery: &Recovery,
    session: &Session,
    pid: &str,
    offset: &str,
) -> Option<Replay> {
    let p = &session.principal;
    let record = recovery.load(pid).await?;
    if record.user_id != p.user_id || record.company_id != p.company_id {
        return None;
    }
    let mut rooms = Vec::with_capacity(record.rooms.len());
    for id in &record.rooms {
        match rt.service.conversation_for(p, id).await {
            Ok(c) => rooms.push(c.id),
            // No longer this user's to see: not given back, and its events not replayed.
            Err(ServiceError::NotFound(_) | ServiceError::Forbidden(_) | ServiceError::Validation(_) | ServiceError::NoCompany) => {}
            Err(e) => {
                tracing::debug!(error = %e, "session not recovered: its rooms could not be checked");
                return None;
            }
        }
    }
    s.hold_broadcasts(rt.hold_limit);
    let registered: Vec<_> = {
        let mut state = session.state();
        rooms
            .iter()
            .filter(|id| state.rooms.insert((*id).clone()))
            .map(|id| {
                s.join(room(id));
                rt.metrics.room_joined(id);
                rt.presence.join(id, &p.user_id)
            })
            .collect()
    };
    for r in registered {
        r.done().await;
    }
    let wanted: HashSet<String> = rooms.iter().cloned().collect();
    match recovery.missed(offset, &wanted).await {
        Some(missed) => Some(Replay { events: missed.events, rooms, read_to: missed.read_to }),
        None => {
            // Kept in the rooms (the client joins them again anyway), but nothing is held.
            s.release_broadcasts(|_| true);
            None
        }
    }
}

/// Sends a recovered socket the events it missed, then the broadcasts held meanwhile except
/// those among the missed ones, and tells its rooms it is back.
async fn replay<A: Adapter>(s: &SocketRef<A>, rt: &Realtime, recovery: &Recovery, session: &Session, mut replay: Replay) {
    // The log was read during the handshake, before socketioxide lists the socket in its
    // namespace: until then a broadcast to its rooms passes it by, held or not. Whatever was
    // appended since that read is read now that it is listed; a broadcast after this read
    // reaches the hold (events of both reads are dropped from it).
    let rooms: HashSet<String> = replay.rooms.iter().cloned().collect();
    match recovery.since(&replay.read_to, &rooms).await {
        Some(more) => replay.events.extend(more),
        None => tracing::warn!("recovered session: the event log could not be read again; events of the last moments may be missing"),
    }
    let mut sent = HashSet::with_capacity(replay.events.len());
    // At the client's pace: a quarter of the buffer at a time, once half of it is free, so
    // a long replay neither overflows the buffer nor crowds out the socket's other packets.
    let batch = (rt.hold_limit / 4).max(1);
    'replay: for events in replay.events.chunks(batch) {
        if !s.wait_for_room(2 * batch).await {
            return;
        }
        for e in events {
            let Ok(payload) = serde_json::from_str::<&serde_json::value::RawValue>(&e.payload) else { continue };
            rt.metrics.event_emitted(&e.event);
            if s.emit(e.event.as_str(), &(payload, e.offset.as_str())).is_err() {
                break 'replay;
            }
            sent.insert(e.offset.as_str());
        }
    }
    s.release_broadcasts(|packet| match packet {
        socketioxide_core::Value::Str(text, _) => recovery::offset_of_packet(text).is_none_or(|o| !sent.contains(o)),
        socketioxide_core::Value::Bytes(_) => true,
    });
    for conversation_id in &replay.rooms {
        rt.metrics.event_emitted(events::USER_JOINED);
        let payload = UserInRoom { conversation_id, user_id: &session.principal.user_id };
        let _ = s.to(room(conversation_id)).emit(events::USER_JOINED, &payload).await;
    }
}

fn register_handlers<A: Adapter>(s: &SocketRef<A>, legacy_events: bool) {
    s.on_fallback(ClientEvents { legacy_events });
    s.on_disconnect(on_disconnect::<A>);
}

/// The handler of every client event, by name. One per socket instead of one `on` per event:
/// socketioxide keeps a socket's `on` handlers in a map of its own, about 700 bytes per socket
/// for the same nine entries everywhere.
struct ClientEvents {
    legacy_events: bool,
}

impl<A: Adapter> MessageHandler<A, ClientEvents> for ClientEvents {
    fn call(&self, s: Arc<Socket<A>>, mut v: socketioxide::handler::Value, ack_id: Option<i64>) {
        let Ok(Event(event)) = Event::from_message_parts(&s, &mut v, &ack_id) else {
            return MessageHandler::call(&on_other_event, s, v, ack_id);
        };
        match event.as_str() {
            "conversation:join" => MessageHandler::call(&on_join::<A>, s, v, ack_id),
            "conversation:leave" => MessageHandler::call(&on_leave::<A>, s, v, ack_id),
            "message:send" => MessageHandler::call(&on_send::<A>, s, v, ack_id),
            "typing" => MessageHandler::call(&on_typing::<A>, s, v, ack_id),
            "message:typing" if self.legacy_events => MessageHandler::call(&on_widget_typing::<A>, s, v, ack_id),
            "thread:create" => MessageHandler::call(&on_thread_create::<A>, s, v, ack_id),
            "thread:switch" => MessageHandler::call(&on_thread_switch::<A>, s, v, ack_id),
            _ => MessageHandler::call(&on_other_event, s, v, ack_id),
        }
    }
}

/// An event no handler takes: ignored, as before, but counted.
async fn on_other_event(State(rt): Rt) {
    rt.metrics.event_received(EventIn::Other);
}

async fn on_connect<A: Adapter>(s: SocketRef<A>, State(rt): Rt, Extension(session): Sess) {
    let user = &session.principal.user_id;
    tracing::debug!(socket = %s.id, user = %user, "socket connected");
    let first_socket = {
        let mut state = session.state();
        if state.closed {
            // Disconnected before this task ran: there is nothing to announce.
            return;
        }
        state.online = true;
        rt.presence.connect(user)
    };
    let owed = session.replay.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let (Some(owed), Some(recovery)) = (owed, &rt.recovery) {
        Box::pin(replay(&s, &rt, recovery, &session, *owed)).await;
    }
    session.remember_rooms(&rt).await;
    if first_socket.everywhere().await {
        rt.service.announce_presence(&session.principal, true, &[]).await;
    }
}

async fn on_disconnect<A: Adapter>(s: SocketRef<A>, State(rt): Rt, Extension(session): Sess, reason: DisconnectReason) {
    session.slot.release();
    let user = &session.principal.user_id;
    let (joined, left, was_online) = {
        let mut state = session.state();
        state.closed = true;
        let joined: Vec<String> = state.rooms.drain().collect();
        let left: Vec<_> = joined
            .iter()
            .map(|conversation_id| {
                rt.metrics.room_left(conversation_id);
                rt.presence.leave(conversation_id, user)
            })
            .collect();
        (joined, left, std::mem::take(&mut state.online))
    };
    if let (Some(recovery), Some(pid)) = (&rt.recovery, session.pid.get()) {
        let _turn = session.record_writes.lock().await;
        match reason {
            // The client (or the server, on purpose) ended the session: nothing to come back to.
            DisconnectReason::ClientNSDisconnect | DisconnectReason::ServerNSDisconnect => recovery.forget(pid).await,
            _ => recovery.save_disconnected(pid, &session.record(joined.clone())).await,
        }
    }
    for registered in left {
        registered.done().await;
    }
    for conversation_id in &joined {
        rt.metrics.event_emitted(events::USER_LEFT);
        let _ = s.to(room(conversation_id)).emit(events::USER_LEFT, &UserInRoom { conversation_id, user_id: user }).await;
    }
    if was_online && rt.presence.disconnect(user).everywhere().await {
        rt.service.announce_presence(&session.principal, false, &joined).await;
    }
}

/// Answers one client event: through the acknowledgement callback when the client passed
/// one, otherwise (for errors) as an `error` event. The connection stays up either way.
struct Responder<A: Adapter> {
    socket: Arc<Socket<A>>,
    ack: AckSender<A>,
    wants_ack: bool,
    metrics: Option<Arc<Metrics>>,
}

impl<A: Adapter> FromMessageParts<A> for Responder<A> {
    type Error = std::convert::Infallible;

    fn from_message_parts(
        s: &Arc<Socket<A>>,
        v: &mut socketioxide::handler::Value,
        ack_id: &Option<i64>,
    ) -> Result<Self, Self::Error> {
        let Ok(ack) = AckSender::from_message_parts(s, v, ack_id);
        let metrics = Rt::from_message_parts(s, v, ack_id).ok().map(|State(rt)| rt.metrics.clone());
        Ok(Responder { socket: s.clone(), ack, wants_ack: ack_id.is_some(), metrics })
    }
}

impl<A: Adapter> Responder<A> {
    fn ok<T: Serialize>(self, body: &T) {
        let _ = self.ack.send(body);
    }

    fn error(self, err: &ServiceError) {
        let (message, details) = socket_error(err);
        if self.wants_ack {
            let _ = self.ack.send(&json!({ "ok": false, "error": message, "details": details }));
        } else {
            if let Some(m) = &self.metrics {
                m.event_emitted(events::ERROR);
            }
            let _ = self.socket.emit(events::ERROR, &ErrorEvent { message: &message, details: details.as_ref() });
        }
    }
}

/// The one mapping of service errors to what a socket client sees.
fn socket_error(err: &ServiceError) -> (String, Option<Value>) {
    match err {
        ServiceError::Validation(v) => (v.message.clone(), serde_json::to_value(&v.details).ok()),
        other => (other.to_string(), None),
    }
}

fn invalid(message: &str, field: &str, problem: &str) -> ServiceError {
    ValidationError::field(message, field, problem).into()
}

/// The conversation id of a payload that is either the id itself or `{ conversationId }`.
fn conversation_id_of<E>(payload: &Result<Value, E>) -> Result<String, ServiceError> {
    let v = match payload {
        Ok(Value::Object(o)) => o.get("conversationId"),
        Ok(other) => Some(other),
        Err(_) => None,
    };
    match v {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(invalid("Invalid conversation id", "conversationId", "must be a string")),
    }
}

/// The `lastMessageId` of a `{ conversationId, lastMessageId }` join: the newest message the
/// client already has, when it asks for what it missed since.
fn last_message_id_of<E>(payload: &Result<Value, E>) -> Result<Option<String>, ServiceError> {
    match payload.as_ref().ok().and_then(|v| v.get("lastMessageId")) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid("Invalid id", "lastMessageId", "must be a string")),
    }
}

fn on_join<A: Adapter>(
    s: SocketRef<A>,
    State(rt): Rt,
    Extension(session): Sess,
    TryData(data): TryData<Value>,
    r: Responder<A>,
) -> impl Future<Output = ()> + Send + 'static {
    rt.metrics.event_received(EventIn::Join);
    in_turn(rt, session, r, move |rt, session, r| join(s, rt, session, data, r))
}

async fn join<A: Adapter, E>(s: SocketRef<A>, rt: Arc<Realtime>, session: Arc<Session>, data: Result<Value, E>, r: Responder<A>) {
    let p = &session.principal;
    let looked_up = async {
        let last_message_id = last_message_id_of(&data)?;
        let c = rt.service.conversation_for(p, &conversation_id_of(&data)?).await?;
        Ok::<_, ServiceError>((c, last_message_id))
    };
    let (c, last_message_id) = match looked_up.await {
        Ok(found) => found,
        Err(e) => return r.error(&e),
    };
    let missed = match last_message_id {
        None => None,
        Some(last) => {
            // In the room before reading: a message stored meanwhile is then in `missed`, or
            // arrives as an event, or both, but never neither.
            {
                let state = session.state();
                if state.closed {
                    return;
                }
                s.join(room(&c.id));
            }
            match rt.service.missed_messages(&c, &last).await {
                Ok(missed) => Some(missed),
                Err(e) => {
                    // Refused: out of the room again, unless an earlier join had put it there.
                    if !session.state().rooms.contains(&c.id) {
                        s.leave(room(&c.id));
                    }
                    return r.error(&e);
                }
            }
        }
    };
    let registered = {
        let mut state = session.state();
        if state.closed {
            // The socket went away while the conversation was being looked up.
            return;
        }
        let first_time = state.rooms.insert(c.id.clone());
        if first_time {
            s.join(room(&c.id));
            rt.metrics.room_joined(&c.id);
        }
        first_time.then(|| rt.presence.join(&c.id, &p.user_id))
    };
    if registered.is_some() {
        session.remember_rooms(&rt).await;
    }
    if let Some(registered) = registered {
        // Listed in the room's presence on every node before anyone is told.
        registered.done().await;
        let payload = UserInRoom { conversation_id: &c.id, user_id: &p.user_id };
        rt.metrics.event_emitted(events::USER_JOINED);
        let _ = s.to(room(&c.id)).emit(events::USER_JOINED, &payload).await;
    }
    rt.metrics.event_emitted(events::CONVERSATION_JOINED);
    let _ = s.emit(events::CONVERSATION_JOINED, &ConversationJoined::of(&c));
    match missed {
        None => r.ok(&json!({ "ok": true, "conversation": c })),
        Some(m) => r.ok(&json!({ "ok": true, "conversation": c, "missed": m.messages, "hasMore": m.has_more })),
    }
}

fn on_leave<A: Adapter>(
    s: SocketRef<A>,
    State(rt): Rt,
    Extension(session): Sess,
    TryData(data): TryData<Value>,
    r: Responder<A>,
) -> impl Future<Output = ()> + Send + 'static {
    rt.metrics.event_received(EventIn::Leave);
    in_turn(rt, session, r, move |rt, session, r| leave(s, rt, session, data, r))
}

async fn leave<A: Adapter, E>(s: SocketRef<A>, rt: Arc<Realtime>, session: Arc<Session>, data: Result<Value, E>, r: Responder<A>) {
    let id = match conversation_id_of(&data) {
        Ok(id) => id.to_ascii_lowercase(),
        Err(e) => return r.error(&e),
    };
    let user = &session.principal.user_id;
    let registered = {
        let mut state = session.state();
        let was_in = state.rooms.remove(&id);
        if was_in {
            s.leave(room(&id));
            rt.metrics.room_left(&id);
        }
        was_in.then(|| rt.presence.leave(&id, user))
    };
    if registered.is_some() {
        session.remember_rooms(&rt).await;
    }
    if let Some(registered) = registered {
        registered.done().await;
        rt.metrics.event_emitted(events::USER_LEFT);
        let _ = s.to(room(&id)).emit(events::USER_LEFT, &UserInRoom { conversation_id: &id, user_id: user }).await;
    }
    r.ok(&json!({ "ok": true }));
}

/// The socket's next turn for a store-backed event, or why it is refused at once: the node is
/// stopping, or too many events are already waiting.
fn take_turn(rt: &Realtime, session: &Session) -> Result<ordering::Turn, ServiceError> {
    if rt.closing.load(Ordering::Acquire) {
        return Err(ServiceError::Unavailable("node stopping".into()));
    }
    session.events.turn(&rt.queue_limits).ok_or_else(|| {
        rt.metrics.busy_refusal();
        ServiceError::Busy
    })
}

/// Runs a store-backed event in its socket's turn. Called synchronously by the handlers below,
/// which socketioxide calls in arrival order; refusals are answered at once.
/// The work is boxed only once its turn has come, so a waiting event costs little.
fn in_turn<A, W, F>(rt: Arc<Realtime>, session: Arc<Session>, r: Responder<A>, work: W) -> impl Future<Output = ()> + Send
where
    A: Adapter,
    W: FnOnce(Arc<Realtime>, Arc<Session>, Responder<A>) -> F + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let turn = take_turn(&rt, &session);
    let origin = session.next_origin();
    traced(origin, async move {
        match turn {
            Ok(mut turn) => {
                turn.wait().await;
                Box::pin(work(rt, session, r)).await;
            }
            Err(refusal) => r.error(&refusal),
        }
    })
}

/// Not `async`: the body before the returned future runs when socketioxide calls the handler,
/// which it does in arrival order, so that is where the send takes its turn. The payload is
/// checked there too, so a queued send holds only what will be stored (or the answer to give),
/// never the raw payload, and a waiting send costs little: the work itself is boxed and only
/// allocated once its turn has come.
fn on_send<A: Adapter>(
    s: SocketRef<A>,
    State(rt): Rt,
    Extension(session): Sess,
    TryData(data): TryData<Value>,
    r: Responder<A>,
) -> impl Future<Output = ()> + Send + 'static {
    let received = rt.metrics.clock();
    rt.metrics.event_received(EventIn::Send);
    let data = data.unwrap_or(Value::Null);
    // Read the client's temp id first, so even a malformed payload can be matched to its bubble.
    let temp_id = temp_id_of(&data);
    let queued = take_turn(&rt, &session).map(|turn| (turn, checked_send(data)));
    let origin = session.next_origin();
    traced(origin, async move {
        let (mut turn, checked) = match queued {
            Ok(queued) => queued,
            Err(refusal) => {
                // Counted before the answer leaves: a client that reads the metrics once it
                // has every answer must find each one counted.
                rt.metrics.send_answered(received, false);
                return send_failed(&s, temp_id.as_deref(), &refusal, r);
            }
        };
        // Overlaps with the previous send's commit; see `sequence`.
        let stage = turn.wait_to_start().await;
        stage.run(Box::pin(send(s, rt, session, received, temp_id, checked, r))).await;
    })
}

/// The temp id a client gave its message, so even a refused payload can be matched to it.
fn temp_id_of(data: &Value) -> Option<String> {
    match data.get("tempId") {
        Some(Value::String(t)) => Some(t.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// A `message:send` payload validated and cleaned: the conversation id and the message.
fn checked_send(data: Value) -> Result<(String, ValidMessage), ServiceError> {
    let input = SendMessageInput::from_value(data)?;
    let conversation_id = id_from_value("conversationId", input.conversation_id.as_ref())?;
    Ok((conversation_id, input.validate(MessageType::Text)?))
}

fn send_failed<A: Adapter>(s: &SocketRef<A>, temp_id: Option<&str>, e: &ServiceError, r: Responder<A>) {
    if let Some(temp_id) = temp_id {
        if let Some(m) = &r.metrics {
            m.event_emitted(events::MESSAGE_ERROR);
        }
        let (text, _) = socket_error(e);
        let _ = s.emit(events::MESSAGE_ERROR, &MessageErrorEvent { message_id: temp_id, error: &text });
    }
    r.error(e);
}

async fn send<A: Adapter>(
    s: SocketRef<A>,
    rt: Arc<Realtime>,
    session: Arc<Session>,
    received: Option<std::time::Instant>,
    temp_id: Option<String>,
    checked: Result<(String, ValidMessage), ServiceError>,
    r: Responder<A>,
) {
    let p = &session.principal;
    let result = async {
        if !rt.message_limiter.hit(&p.user_id).await.allowed {
            rt.service.auditor().record(p, AuditAction::RateLimited, None, On::default().detail("message:send"));
            return Err(ServiceError::RateLimited);
        }
        let (conversation_id, valid) = checked?;
        rt.service.send_message(p, &conversation_id, valid).await
    }
    .await
    .map_err(|e| match e {
        // Whichever rule failed, clients show one sentence; `details` names the field.
        ServiceError::Validation(mut v) => {
            v.message = INVALID_MESSAGE.into();
            ServiceError::Validation(v)
        }
        other => other,
    });
    // Answers leave in the order the sends came, whether or not this one broadcast anything;
    // and this send is done only after the one before it, which the next one relies on.
    crate::sequence::earlier_events_done().await;
    // Counted before the answer leaves, as above.
    rt.metrics.send_answered(received, result.is_ok());
    match result {
        Ok(message) => r.ok(&MessageSent { ok: true, message: &message }),
        Err(e) => send_failed(&s, temp_id.as_deref(), &e, r),
    }
}

/// The answer to a stored `message:send`: `{ ok: true, message }`, serialized straight from
/// the message (a `json!` value would first copy every field into a map, once per send).
#[derive(Serialize)]
struct MessageSent<'a> {
    ok: bool,
    message: &'a crate::domain::Message,
}

async fn on_typing<A: Adapter>(s: SocketRef<A>, State(rt): Rt, Extension(session): Sess, TryData(data): TryData<Value>, r: Responder<A>) {
    rt.metrics.event_received(EventIn::Typing);
    let origin = session.next_origin();
    traced(origin, typing(s, rt, session, data, r)).await;
}

async fn on_widget_typing<A: Adapter>(s: SocketRef<A>, State(rt): Rt, Extension(session): Sess, TryData(data): TryData<Value>, r: Responder<A>) {
    rt.metrics.event_received(EventIn::TypingWidget);
    let origin = session.next_origin();
    traced(origin, typing(s, rt, session, data, r)).await;
}

/// `typing` and the widget's `message:typing`: relayed to the others in the room, and only
/// when the sender is in it.
async fn typing<A: Adapter>(
    s: SocketRef<A>,
    rt: Arc<Realtime>,
    session: Arc<Session>,
    data: Result<Value, socketioxide::ParserError>,
    r: Responder<A>,
) {
    let user = &session.principal.user_id;
    if !rt.typing_limiter.hit(user).await.allowed {
        rt.service.auditor().record(&session.principal, AuditAction::RateLimited, None, On::default().detail("typing"));
        return r.error(&ServiceError::RateLimited);
    }
    let id = match conversation_id_of(&data) {
        Ok(id) => id.to_ascii_lowercase(),
        Err(e) => return r.error(&e),
    };
    let is_typing = match data.as_ref().ok().and_then(|v| v.get("isTyping")) {
        Some(Value::Bool(b)) => *b,
        None | Some(Value::Null) => true,
        Some(_) => return r.error(&invalid("Invalid typing data", "isTyping", "must be a boolean")),
    };
    if !session.state().rooms.contains(&id) {
        return r.error(&ServiceError::Forbidden("Join the conversation before sending typing indicators"));
    }
    let payload = events::raw(&Typing { conversation_id: &id, user_id: user, is_typing });
    rt.metrics.event_emitted(events::USER_TYPING);
    let _ = s.to(room(&id)).emit(events::USER_TYPING, &payload).await;
    if rt.service.legacy_events() {
        rt.metrics.event_emitted(events::TYPING_LEGACY);
        let _ = s.to(room(&id)).emit(events::TYPING_LEGACY, &payload).await;
        rt.metrics.event_emitted(events::TYPING_WIDGET);
        let _ = s.to(room(&id)).emit(events::TYPING_WIDGET, &payload).await;
    }
    r.ok(&json!({ "ok": true }));
}

fn on_thread_create<A: Adapter>(
    State(rt): Rt,
    Extension(session): Sess,
    TryData(data): TryData<Value>,
    r: Responder<A>,
) -> impl Future<Output = ()> + Send + 'static {
    rt.metrics.event_received(EventIn::ThreadCreate);
    in_turn(rt, session, r, move |rt, session, r| create_thread(rt, session, data, r))
}

async fn create_thread<A: Adapter, E>(rt: Arc<Realtime>, session: Arc<Session>, data: Result<Value, E>, r: Responder<A>) {
    let result = async {
        let id = conversation_id_of(&data)?;
        let title = match data.as_ref().ok().and_then(|v| v.get("title")) {
            Some(Value::String(t)) => t.clone(),
            _ => return Err(invalid("Validation failed", "title", "must be a string")),
        };
        rt.service.create_thread(&session.principal, &id, &title).await
    }
    .await;
    match result {
        Ok(thread) => r.ok(&json!({ "ok": true, "thread": thread })),
        Err(e) => r.error(&e),
    }
}

fn on_thread_switch<A: Adapter>(
    s: SocketRef<A>,
    State(rt): Rt,
    Extension(session): Sess,
    TryData(data): TryData<Value>,
    r: Responder<A>,
) -> impl Future<Output = ()> + Send + 'static {
    rt.metrics.event_received(EventIn::ThreadSwitch);
    in_turn(rt, session, r, move |rt, session, r| switch_thread(s, rt, session, data, r))
}

async fn switch_thread<A: Adapter, E>(s: SocketRef<A>, rt: Arc<Realtime>, session: Arc<Session>, data: Result<Value, E>, r: Responder<A>) {
    let result = async {
        let id = conversation_id_of(&data)?;
        let thread_id = optional_thread_id(data.as_ref().ok().and_then(|v| v.get("threadId")), "threadId")?;
        let cid = rt.service.check_thread(&session.principal, &id, thread_id.as_deref()).await?;
        Ok::<_, ServiceError>((cid, thread_id))
    }
    .await;
    match result {
        Ok((cid, thread_id)) => {
            let payload = ThreadSwitched { conversation_id: &cid, thread_id: thread_id.as_deref() };
            rt.metrics.event_emitted(events::THREAD_SWITCHED);
            let _ = s.emit(events::THREAD_SWITCHED, &payload);
            r.ok(&json!({ "ok": true, "conversationId": cid, "threadId": thread_id }));
        }
        Err(e) => r.error(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use socketioxide::adapter::LocalAdapter;

    type Cluster = socketioxide_redis::CustomRedisAdapter<socketioxide::adapter::Emitter, crate::cluster::pubsub::PubSub>;

    fn size3<A, B, C, F: Future>(_: impl Fn(A, B, C) -> F) -> usize {
        std::mem::size_of::<F>()
    }
    fn size4<A, B, C, D, F: Future>(_: impl Fn(A, B, C, D) -> F) -> usize {
        std::mem::size_of::<F>()
    }
    fn size5<A, B, C, D, E, F: Future>(_: impl Fn(A, B, C, D, E) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Every connecting, disconnecting or event-handling socket holds one of these futures in
    /// its task: a Redis call awaited inline once made each of them 7-8 KB, which 5,000
    /// sockets connecting at once turned into 35 MB of heap that stayed resident afterwards.
    #[test]
    fn socket_handler_tasks_stay_small() {
        let sizes = [
            ("authenticate", size3(authenticate::<LocalAdapter>), size3(authenticate::<Cluster>)),
            ("on_connect", size3(on_connect::<LocalAdapter>), size3(on_connect::<Cluster>)),
            ("on_disconnect", size4(on_disconnect::<LocalAdapter>), size4(on_disconnect::<Cluster>)),
            ("on_send", size5(on_send::<LocalAdapter>), size5(on_send::<Cluster>)),
            ("on_join", size5(on_join::<LocalAdapter>), size5(on_join::<Cluster>)),
            ("on_leave", size5(on_leave::<LocalAdapter>), size5(on_leave::<Cluster>)),
            ("on_typing", size5(on_typing::<LocalAdapter>), size5(on_typing::<Cluster>)),
            ("on_thread_create", size4(on_thread_create::<LocalAdapter>), size4(on_thread_create::<Cluster>)),
        ];
        for (name, local, cluster) in sizes {
            assert!(local <= 2048 && cluster <= 4096, "{name}: {local} bytes on one node, {cluster} with the Redis adapter");
        }
    }
}
