//! The service's `Broadcaster` on top of socketioxide: one room emit per event. The payload
//! is already JSON, so the packet is encoded once and shared by every socket in the room.

use std::sync::OnceLock;

use async_trait::async_trait;
use serde_json::value::RawValue;
use socketioxide::adapter::Adapter;
use socketioxide::SocketIo;

use crate::service::events::room;
use crate::service::Broadcaster;

/// Set once the Socket.IO layer is built: the service is created first because the socket
/// handlers' state holds it.
pub struct SocketBroadcaster<A: Adapter> {
    io: OnceLock<SocketIo<A>>,
}

impl<A: Adapter> Default for SocketBroadcaster<A> {
    fn default() -> Self {
        SocketBroadcaster { io: OnceLock::new() }
    }
}

impl<A: Adapter> SocketBroadcaster<A> {
    pub fn attach(&self, io: SocketIo<A>) {
        let _ = self.io.set(io);
    }
}

#[async_trait]
impl<A: Adapter> Broadcaster for SocketBroadcaster<A> {
    async fn to_room(&self, conversation_id: &str, event: &'static str, payload: &RawValue) {
        let Some(io) = self.io.get() else { return };
        if let Err(e) = io.to(room(conversation_id)).emit(event, payload).await {
            // Sockets that closed mid-broadcast are normal churn, not a failure worth a warning.
            tracing::debug!(event, conversation = conversation_id, error = %e, "broadcast reached closed sockets");
        }
    }
}
