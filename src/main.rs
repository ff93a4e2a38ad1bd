//! `chat-service`: reads the configuration, starts the app, serves until Ctrl-C or SIGTERM.
//! Before anything else it executes itself again once with glibc's thread caches limited to
//! small blocks (`heap::use_small_thread_caches`).
//! `chat-service healthcheck` instead asks the running service for `/health` (exit 0 or 1).

use std::sync::Arc;

use chat_service::admin::recent_errors::RecentErrors;
use chat_service::{app, config::Config, healthcheck};
use tokio::net::TcpListener;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

fn main() {
    match std::env::args().nth(1).as_deref() {
        None => {
            chat_service::heap::use_small_thread_caches();
            runtime().block_on(serve());
        }
        Some("healthcheck") => std::process::exit(runtime().block_on(run_healthcheck())),
        Some(other) => {
            eprintln!("chat-service: unknown argument {other:?}; usage: chat-service [healthcheck]");
            std::process::exit(2);
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("start the tokio runtime")
}

async fn serve() {
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("chat-service: {e}");
            std::process::exit(2);
        }
    };
    let recent_errors = Arc::new(RecentErrors::default());
    init_tracing(config.log_json, &recent_errors);
    match chat_service::connections::raise_open_file_limit() {
        // A few dozen descriptors go to the store, logs and outgoing clients.
        Some(limit) => tracing::info!(open_files = limit, "open-file limit: about {} connections", limit.saturating_sub(64)),
        None => tracing::warn!("cannot read the open-file limit"),
    }

    let app = match app::build(&config, recent_errors).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("chat-service: cannot start: {e}");
            std::process::exit(1);
        }
    };
    if let Some(token) = &app.demo_token {
        tracing::warn!("JWT_SECRET is not set: using a random secret; tokens will not survive a restart. Set JWT_SECRET in production.");
        println!("demo token (user demo-user, company demo-company, admin, valid 24h):\n{token}");
    }
    let listener = match TcpListener::bind((config.host, config.port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("chat-service: cannot listen on {}:{}: {e}", config.host, config.port);
            std::process::exit(1);
        }
    };
    let addr = listener.local_addr().expect("bound listener has an address");
    tracing::info!(%addr, store = app.service.store().kind(), "chat-service started");
    // Tests and scripts wait for this exact line to know the port (PORT=0 picks a free one).
    println!("chat-service listening on http://{addr}");

    let presence = app.presence.clone();
    let served = app::serve(app, listener, shutdown_signal()).await;
    // Other nodes stop listing this node's users now rather than when its heartbeat expires.
    presence.leave_cluster().await;
    if let Err(e) = served {
        eprintln!("chat-service: server error: {e}");
        std::process::exit(1);
    }
    // Everything acknowledged is stored and the audit trail is flushed. Exiting here rather
    // than returning skips the runtime's teardown, which cancels the tasks still running
    // (disconnect handlers announcing their users offline through the store); the MongoDB
    // driver panics when a task of its own is cancelled under an operation in flight.
    std::process::exit(0);
}

/// Exit code of `chat-service healthcheck`: 0 when the service answers `/health` with 200,
/// else 1 (Docker reserves 2, so a bad configuration is 1 here too).
async fn run_healthcheck() -> i32 {
    let outcome = match Config::from_env() {
        Ok(config) => match healthcheck::address(&config) {
            Ok(address) => healthcheck::check(address).await,
            Err(e) => Err(e),
        },
        Err(e) => Err(e.to_string()),
    };
    match outcome {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("chat-service healthcheck: {e}");
            1
        }
    }
}

/// Logs to stderr as `RUST_LOG` says, and keeps every warning and error for the admin
/// console whatever `RUST_LOG` says.
fn init_tracing(json: bool, recent_errors: &Arc<RecentErrors>) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes only for a person at a terminal, never into a file, pipe or log collector.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let log = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
    let log = if json { log.json().boxed() } else { log.boxed() };
    tracing_subscriber::registry()
        .with(log.with_filter(filter))
        .with(recent_errors.layer().with_filter(LevelFilter::WARN))
        .init();
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
