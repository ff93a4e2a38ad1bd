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
        let Some(io) = self.io.get() else { return };
        self.metrics.room_broadcast(conversation_id, event);
        let sent = match self.recovery.as_ref().filter(|_| recovery::is_recorded(event)) {
            None => io.to(room(conversation_id)).emit(event, payload).await,
            Some(recovery) => {
                let _in_order = recovery.in_order().await;
                let offset = recovery.record(conversation_id, event, payload).await;
                io.to(room(conversation_id)).emit(event, &(payload, offset)).await
            }
        };
        if let Err(e) = sent {
            // Sockets that closed mid-broadcast are normal churn, not a failure worth a warning.
            tracing::debug!(event, conversation = conversation_id, error = %e, "broadcast reached closed sockets");
        }
    }
}
