//! The service's `Broadcaster` on top of socketioxide: one room emit per event. The payload
//! is already JSON, so the packet is encoded once and shared by every socket in the room.
//! With connection state recovery on, recorded events are appended to the event log first and
//! carry their offset as a last argument (see `recovery`).

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use serde_json::value::RawValue;
use socketioxide::adapter::Adapter;
use socketioxide::SocketIo;

use super::recovery::{self, Recovery};
use crate::metrics::Metrics;
use crate::service::events::room;
use crate::service::Broadcaster;

pub struct SocketBroadcaster<A: Adapter> {
    /// Set once the Socket.IO layer is built: the service is created first because the socket
    /// handlers' state holds it.
    io: OnceLock<SocketIo<A>>,
    metrics: Arc<Metrics>,
    recovery: Option<Arc<Recovery>>,
}

impl<A: Adapter> SocketBroadcaster<A> {
    pub fn new(metrics: Arc<Metrics>, recovery: Option<Arc<Recovery>>) -> Self {
        SocketBroadcaster { io: OnceLock::new(), metrics, recovery }
    }

    pub fn attach(&self, io: SocketIo<A>) {
        let _ = self.io.set(io);
    }
}

#[async_trait]
impl<A: Adapter> Broadcaster for SocketBroadcaster<A> {
    async fn to_room(&self, conversation_id: &str, event: &'static str, payload: &RawValue) {
        // `of` rather than `to`: once shutdown has closed the namespace (sockets still
        // disconnecting announce it), `to` would panic; there is no one left to tell.
        let Some(sockets) = self.io.get().and_then(|io| io.of("/")) else { return };
        self.metrics.room_broadcast(conversation_id, event);
        let sent = match self.recovery.as_ref().filter(|_| recovery::is_recorded(event)) {
            None => sockets.to(room(conversation_id)).emit(event, payload).await,
            Some(recovery) => {
                let _in_order = recovery.in_order().await;
                let offset = recovery.record(conversation_id, event, payload).await;
                sockets.to(room(conversation_id)).emit(event, &(payload, offset)).await
            }
        };
        if let Err(e) = sent {
            // Sockets that closed mid-broadcast are normal churn, not a failure worth a warning.
            tracing::debug!(event, conversation = conversation_id, error = %e, "broadcast reached closed sockets");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use socketioxide::extract::SocketRef;

    /// A stopping node closes the namespace before its sockets' disconnect handlers have
    /// announced their users offline; those announcements must find no one, not panic.
    #[tokio::test]
    async fn a_broadcast_after_the_namespace_closed_reaches_no_one_and_does_not_panic() {
        let (_layer, io) = SocketIo::new_layer();
        io.ns("/", |_: SocketRef<socketioxide::adapter::LocalAdapter>| async {});
        let broadcaster = SocketBroadcaster::new(Arc::new(Metrics::new(false)), None);
        broadcaster.attach(io.clone());
        let payload = RawValue::from_string("{}".to_string()).unwrap();
        broadcaster.to_room("c1", "presence:update", &payload).await;
        io.close().await;
        broadcaster.to_room("c1", "presence:update", &payload).await;
    }
}
