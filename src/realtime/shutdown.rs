//! How a stopping node lets go of its sockets without losing what it acknowledged.
//!
//! Every acknowledged message is already stored (the store answers after its commit), so what
//! is at stake is the sends in between: accepted, not yet answered. A stopping node refuses new
//! sends, lets the accepted ones finish (stored, broadcast, acknowledged), then closes every
//! transport. socket.io-client sees a transport close, not a server disconnect, so it
//! reconnects on its own, to another node behind the load balancer.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use socketioxide::adapter::Adapter;
use socketioxide::SocketIo;

use super::Realtime;

type CloseAll = Box<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// The Socket.IO side of a node's shutdown, whichever adapter it runs on.
pub struct SocketShutdown {
    realtime: Arc<Realtime>,
    close_all: CloseAll,
}

impl SocketShutdown {
    pub fn new<A: Adapter>(realtime: Arc<Realtime>, io: SocketIo<A>) -> Self {
        let close_all: CloseAll = Box::new(move || {
            let io = io.clone();
            Box::pin(async move { io.close().await })
        });
        SocketShutdown { realtime, close_all }
    }

    /// Refuses new sends, waits up to `grace` for the accepted ones, then closes every socket
    /// (waiting up to `grace` again for their transports to finish).
    pub async fn run(&self, grace: Duration) {
        self.realtime.closing.store(true, Ordering::Release);
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let pending = self.realtime.queue_limits.pending();
            if pending == 0 {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(pending, "shutdown: sends still unanswered after the grace period");
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if tokio::time::timeout(grace, (self.close_all)()).await.is_err() {
            tracing::warn!("shutdown: sockets still closing after the grace period");
        }
    }
}
