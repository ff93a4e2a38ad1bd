//! Assembles the service: configuration → store → service → REST router and Socket.IO layer
//! on one axum router, served on one port, and the archive job when it is on. With
//! `REDIS_URL` the same pieces get their Redis-backed versions (cache, shared limits and
//! presence, the cross-node adapter, turns of the archive job).

use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use rand::distr::{Alphanumeric, SampleString};
use socketioxide::adapter::Adapter;
use socketioxide::{ParserConfig, SocketIo, SocketIoBuilder};
use socketioxide_core::adapter::DefinedAdapter;
use socketioxide_redis::{CustomRedisAdapter, RedisAdapterConfig, RedisAdapterCtr};
use tokio::net::TcpListener;

use crate::admin::recent_errors::RecentErrors;
use crate::agent::AgentClient;
use crate::archive::{Sweep, SweepJob};
use crate::auth::Authenticator;
use crate::cluster::pubsub::PubSub;
use crate::cluster::{Cluster, ClusterError};
use crate::config::Config;
use crate::connections::{ConnectionsPerAddress, CountedStream};
use crate::http::client_address::TrustedProxies;
use crate::http::{self, ApiContext};
use crate::metrics::{Limit, Metrics};
use crate::presence::Presence;
use crate::ratelimit::RateLimiter;
use crate::files::FileStorage;
use crate::realtime::{self, QueueLimits, Realtime, Recovery, SocketBroadcaster, SocketShutdown};
use crate::service::{Auditor, ChatService};
use crate::store::mongo::{MongoSettings, MongoStore};
use crate::store::cached::CachedStore;
use crate::store::local::LocalConversationCache;
use crate::store::metered::MeteredStore;
use crate::store::sqlite::SqliteStore;
use crate::store::Store;

/// Socket.IO defaults of the reference server.
const PING_INTERVAL: Duration = Duration::from_secs(25);
const PING_TIMEOUT: Duration = Duration::from_secs(20);
/// Largest Engine.IO payload: a polling body, and a WebSocket message or frame alike.
const MAX_SOCKET_PAYLOAD: u64 = 1_000_000;
/// Initial WebSocket read buffer per socket (engineioxide's default is 4 KiB). Each open
/// socket holds one for its whole life, mostly idle, while chat frames are small; a larger
/// frame grows the buffer to its length, only the per-read chunk stays at this size.
const WS_READ_BUFFER: usize = 1024;

pub struct App {
    pub router: Router,
    pub service: Arc<ChatService>,
    /// Withdrawn from the cluster's presence when the node stops.
    pub presence: Arc<Presence>,
    /// Set when no `JWT_SECRET` was configured: a token signed with the random secret.
    pub demo_token: Option<String>,
    /// Open connections per client address, capped by `MAX_CONNECTIONS_PER_IP`.
    pub connections: Arc<ConnectionsPerAddress>,
    /// `HTTP_HEADER_TIMEOUT_MS`: time to send a request head, and idle keep-alive lifetime.
    pub header_timeout: Duration,
    /// Lets the sockets go on shutdown, after their accepted sends are answered.
    pub sockets: SocketShutdown,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Redis(String),
    #[error("agent service client: {0}")]
    Agent(#[from] crate::agent::AgentError),
    #[error("{0}")]
    Files(#[from] crate::files::FileError),
}

impl From<ClusterError> for StartError {
    fn from(e: ClusterError) -> Self {
        StartError::Redis(e.to_string())
    }
}

/// MongoDB when a URI is configured (production, shared with the sibling services), else
/// the embedded SQLite store under `DATA_DIR`.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, StartError> {
    let Some(uri) = &config.mongodb_uri else {
        return Ok(Arc::new(SqliteStore::open(&config.data_dir)?));
    };
    let settings = MongoSettings {
        uri,
        database: config.mongodb_database.as_deref(),
        pool_size: config.mongodb_pool_size,
        timeout: config.mongodb_timeout,
    };
    let store = Arc::new(MongoStore::connect(&settings).await?);
    // Indexes are created in the background: a database still starting up (or briefly away)
    // must not keep the service from starting; requests answer 503 until it is reachable.
    store.ensure_indexes_in_background();
    Ok(store)
}

/// The service as `config` describes it. `recent_errors` is what the admin console lists: the
/// binary fills it from its log (see `main`).
pub async fn build(config: &Config, recent_errors: Arc<RecentErrors>) -> Result<App, StartError> {
    let cluster = match &config.redis_url {
        Some(url) => Some(Cluster::connect(url, &config.redis_prefix).await?),
        None => None,
    };
    let metrics = Arc::new(Metrics::new(config.metrics));
    if let Some(cluster) = &cluster {
        metrics.watch_redis(cluster.clone());
    }
    let mut store = open_store(config).await?;
    if metrics.enabled() {
        store = Arc::new(MeteredStore::new(store, &metrics));
    }
    if let Some(cluster) = cluster.as_ref().filter(|_| !config.cache_ttl.is_zero()) {
        store = Arc::new(CachedStore::new(store, cluster.clone(), config.cache_ttl, metrics.clone()));
    }
    // A node alone keeps conversations in memory for the access check on every send; nodes
    // that share Redis share its cache (and its invalidation across nodes) instead.
    if cluster.is_none() && !config.conversation_cache_ttl.is_zero() {
        store = Arc::new(LocalConversationCache::new(store, config.conversation_cache_ttl));
    }

    let (secret, generated) = match &config.jwt_secret {
        Some(s) => (s.clone(), false),
        None => (Alphanumeric.sample_string(&mut rand::rng(), 48), true),
    };
    let auth = Arc::new(
        Authenticator::new(&secret, config.allow_legacy_widget_tokens, config.internal_service_token.clone())
            .with_metrics_token(config.metrics_token.clone()),
    );
    let demo_token = generated.then(|| auth.issue_demo_token("demo-user", "demo-company", 24 * 3600));

    let limiter = |max, window, name, limit| {
        let limiter = match &cluster {
            Some(c) => RateLimiter::shared(max, window, name, c.clone()),
            None => RateLimiter::new(max, window),
        };
        limiter.counting_refusals(metrics.rate_limit_refusals(limit))
    };
    let files = FileStorage::from_config(config)?;
    tracing::info!(storage = files.kind(), "uploaded files storage");
    let auditor = Arc::new(if config.audit { Auditor::start(store.clone(), metrics.clone()) } else { Auditor::off(metrics.clone()) });
    let parts = Parts {
        store,
        files,
        auditor,
        auth,
        presence: Arc::new(match &cluster {
            Some(c) => Presence::shared(c.clone(), config.presence_ttl),
            None => Presence::default(),
        }),
        message_limiter: limiter(config.socket_message_limit, config.socket_limit_window, "socket-message", Limit::SocketMessage),
        typing_limiter: limiter(config.socket_typing_limit, config.socket_limit_window, "socket-typing", Limit::SocketTyping),
        rest_limiter: Arc::new(limiter(config.rate_limit_max, config.rate_limit_window, "rest", Limit::Rest)),
        cluster: cluster.clone(),
        agent: AgentClient::from_config(config, metrics.clone())?,
        metrics,
        recent_errors,
    };
    let presence = parts.presence.clone();
    let builder = SocketIo::builder()
        .ping_interval(PING_INTERVAL)
        .ping_timeout(PING_TIMEOUT)
        .max_payload(MAX_SOCKET_PAYLOAD)
        // Past this many queued packets a socket is closed (patched engineioxide) so that its
        // client reconnects and catches up, rather than kept with packets silently dropped.
        .max_buffer_size(config.socket_buffer_size)
        .ws_max_message_size(MAX_SOCKET_PAYLOAD as usize)
        .ws_max_frame_size(MAX_SOCKET_PAYLOAD as usize)
        .ws_read_buffer_size(WS_READ_BUFFER)
        // What the socket handshake reads (`realtime::authenticate`): the bearer token and the
        // proxies' client address. The rest of a browser's headers (cookies, user agent,
        // accept lists, often over a kilobyte) would otherwise stay with every socket.
        .req_headers([axum::http::header::AUTHORIZATION, axum::http::HeaderName::from_static("x-forwarded-for")])
        // No client of the contract sends binary attachments. Refusing them means no socket,
        // authenticated or not, can make the server hold attachment data: a binary packet
        // closes the connection at once instead of being buffered until it completes.
        .with_parser(ParserConfig::common().max_incoming_binaries(0).max_incoming_binary_buf_size(0));
    let Assembled { router, service, sockets } = match &cluster {
        None => assemble(builder, parts, config).0,
        Some(cluster) => {
            // Rooms span every node whose adapter shares the prefix.
            let adapter_config = RedisAdapterConfig::new().with_prefix(cluster.key("socket.io"));
            let adapter = RedisAdapterCtr::new_with_driver(cluster.pubsub(), adapter_config);
            let builder = builder.with_adapter::<CustomRedisAdapter<_, PubSub>>(adapter);
            let (assembled, ready) = assemble(builder, parts, config);
            ready.await.map_err(|e| StartError::Redis(format!("socket.io adapter: {e}")))?;
            assembled
        }
    };
    crate::heap::spawn_trimmer(config.heap_trim_interval);
    if let Some(after) = config.archive_after {
        let sweep = Sweep::ArchiveInactiveConversations;
        SweepJob { sweep, service: service.clone(), cluster: cluster.clone(), age: after, interval: config.archive_interval }.spawn();
    }
    if let (true, Some(keep)) = (config.audit, config.audit_retention) {
        let sweep = Sweep::DeleteExpiredAuditRecords;
        SweepJob { sweep, service: service.clone(), cluster, age: keep, interval: config.audit_retention_interval }.spawn();
    }
    Ok(App {
        router,
        service,
        presence,
        demo_token,
        sockets,
        connections: ConnectionsPerAddress::new(config.max_connections_per_ip),
        header_timeout: config.http_header_timeout,
    })
}

/// What `assemble` wires together, whichever Socket.IO adapter it uses.
struct Parts {
    store: Arc<dyn Store>,
    files: FileStorage,
    auditor: Arc<Auditor>,
    auth: Arc<Authenticator>,
    presence: Arc<Presence>,
    message_limiter: RateLimiter,
    typing_limiter: RateLimiter,
    rest_limiter: Arc<RateLimiter>,
    cluster: Option<Arc<Cluster>>,
    agent: Option<AgentClient>,
    metrics: Arc<Metrics>,
    recent_errors: Arc<RecentErrors>,
}

/// What `assemble` returns, whichever Socket.IO adapter it used.
struct Assembled {
    router: Router,
    service: Arc<ChatService>,
    sockets: SocketShutdown,
}

/// The service, Socket.IO handlers and REST routes on adapter `A`. Returns them with the
/// adapter's initialisation, which the caller awaits (or not) as the adapter requires.
fn assemble<A: Adapter + DefinedAdapter>(
    builder: SocketIoBuilder<A>,
    parts: Parts,
    config: &Config,
) -> (Assembled, A::InitRes) {
    let metrics = parts.metrics;
    let recovery = config.recovery_window.map(|window| Recovery::new(window, parts.cluster.clone()));
    let broadcaster = Arc::new(SocketBroadcaster::<A>::new(metrics.clone(), recovery.clone()));
    let mut service = ChatService::new(parts.store, broadcaster.clone(), config.legacy_events, metrics.clone())
        .with_files(parts.files)
        .with_auditor(parts.auditor);
    if let Some(agent) = parts.agent {
        service = service.with_agent(agent);
    }
    let service = Arc::new(service);
    let trusted_proxies = Arc::new(TrustedProxies::new(config.trusted_proxies.clone()));
    let realtime = Arc::new(Realtime {
        service: service.clone(),
        auth: parts.auth.clone(),
        presence: parts.presence.clone(),
        message_limiter: parts.message_limiter,
        typing_limiter: parts.typing_limiter,
        max_connections: config.max_connections,
        connections: AtomicUsize::new(0),
        queue_limits: QueueLimits::new(config.max_pending_events_per_socket, config.max_pending_events),
        closing: AtomicBool::new(false),
        metrics: metrics.clone(),
        recovery,
        hold_limit: config.socket_buffer_size,
        trusted_proxies: trusted_proxies.clone(),
    });
    metrics.watch_pending_events(realtime.queue_limits.pending_count());
    let (socket_layer, io) = builder.with_state(realtime.clone()).build_layer();
    let sockets_of = io.clone();
    metrics.watch_transports(move || {
        let sockets = sockets_of.sockets();
        let websocket = sockets.iter().filter(|s| s.transport_type() == socketioxide::TransportType::Websocket).count();
        (websocket as u64, (sockets.len() - websocket) as u64)
    });
    let ready = realtime::attach(&io);
    let sockets = SocketShutdown::new(realtime, io.clone());
    broadcaster.attach(io);

    let ctx = ApiContext {
        service: service.clone(),
        auth: parts.auth,
        rest_limiter: parts.rest_limiter,
        presence: parts.presence,
        cluster: parts.cluster,
        trusted_proxies,
        metrics,
        recent_errors: parts.recent_errors,
        public_url: config.public_url.clone(),
    };
    // Request heads are bounded outside the Socket.IO layer, so handshakes and polling
    // requests are held to the same limits as REST.
    let router = http::router(ctx)
        .layer(socket_layer)
        .layer(tower::util::MapRequestLayer::new(keep_handshake_extensions))
        .layer(axum::middleware::from_fn(http::middleware::limit_request_head))
        .layer(http::middleware::cors(config));
    (Assembled { router, service, sockets }, ready)
}

/// Where socketioxide serves Socket.IO (its default path).
const SOCKET_IO_PATH: &str = "/socket.io";

/// Gives the request's URI and header values their own allocations.
///
/// hyper parses them as slices of the connection's read buffer (8 KiB), and a slice keeps the
/// whole buffer alive. engineioxide keeps the handshake request's head for the life of each
/// Socket.IO session, which would pin that buffer for as long as the socket stays open: about
/// 5 KB of resident memory per idle WebSocket. Copied, the buffer is freed once the connection
/// is upgraded.
fn detach_head<B>(req: &mut axum::extract::Request<B>) {
    if let Ok(uri) = req.uri().to_string().parse() {
        *req.uri_mut() = uri;
    }
    for value in req.headers_mut().values_mut() {
        if let Ok(mut copy) = axum::http::HeaderValue::from_bytes(value.as_bytes()) {
            copy.set_sensitive(value.is_sensitive());
            *value = copy;
        }
    }
}

/// Leaves a Socket.IO request only the extensions its session uses: the peer address (read at
/// the handshake) and hyper's pending upgrade (taken by the WebSocket transport).
///
/// engineioxide keeps a copy of the handshake request for the life of the session, and by the
/// time the request reaches it axum has added the route's match and URL parameters: about
/// 0.3 KB per idle connection of maps and boxes no one reads again.
fn keep_handshake_extensions<B>(mut req: axum::extract::Request<B>) -> axum::extract::Request<B> {
    if req.uri().path().starts_with(SOCKET_IO_PATH) {
        let all = std::mem::take(req.extensions_mut());
        if let Some(peer) = all.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>() {
            req.extensions_mut().insert(*peer);
        }
        if let Some(upgrade) = all.get::<hyper::upgrade::OnUpgrade>() {
            req.extensions_mut().insert(upgrade.clone());
        }
    }
    req
}

/// Headers hyper parses before giving up on a request head (its default is 100).
const MAX_REQUEST_HEADERS: usize = 200;

/// Answers a connection over the per-address cap with a 429 and closes it, without waiting
/// for (or reading) its request, and without letting a client that does not read hold it.
async fn refuse_connection(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    const BODY: &str = r#"{"error":"Too many connections from this address"}"#;
    let response = format!(
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let write = async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
}

/// How long each shutdown step waits: accepted sends, closing sockets, HTTP requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting, lets the
/// sockets go once their accepted sends are answered (their clients reconnect elsewhere), and
/// lets HTTP requests in flight finish, waiting at most `SHUTDOWN_GRACE` for each step.
///
/// HTTP/1.1 only, on hyper directly rather than `axum::serve`: Socket.IO clients speak
/// HTTP/1.1 (long-polling and the WebSocket upgrade), and skipping the HTTP/2 sniffing layer
/// keeps less memory per long-lived connection.
pub async fn serve(
    app: App,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::TokioIo;
    use hyper_util::service::TowerToHyperService;
    use tower::ServiceExt;

    // Each connection task watches this; on shutdown it stops taking new requests.
    let (closing_tx, closing_rx) = tokio::sync::watch::channel(false);
    let open = std::sync::Arc::new(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = app.connections.admit(peer.ip()) else {
            tokio::spawn(refuse_connection(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = app.router.clone().map_request(move |mut req: axum::extract::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            if req.uri().path().starts_with(SOCKET_IO_PATH) {
                detach_head(&mut req);
            }
            req
        });
        let mut closing = closing_rx.clone();
        let open = open.clone();
        let header_timeout = app.header_timeout;
        tokio::spawn(async move {
            let _open = open;
            let connection = hyper::server::conn::http1::Builder::new()
                // Slow or silent clients (a header byte every few seconds, an idle keep-alive)
                // give their connection back instead of holding it forever.
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout)
                // Past hyper's own header count limit it answers 431 with no body; the REST
                // middleware refuses more than 100 headers with a JSON error first.
                .max_headers(MAX_REQUEST_HEADERS)
                .serve_connection(TokioIo::new(CountedStream::new(stream, slot)), TowerToHyperService::new(service))
                .with_upgrades();
            let mut connection = std::pin::pin!(connection);
            let result = tokio::select! {
                r = connection.as_mut() => r,
                _ = closing.changed() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    app.sockets.run(SHUTDOWN_GRACE).await;
    let _ = closing_tx.send(true);
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    while std::sync::Arc::strong_count(&open) > 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Audit records of the last requests are still queued: write them before exiting.
    app.service.auditor().flush(SHUTDOWN_GRACE).await;
    Ok(())
}
