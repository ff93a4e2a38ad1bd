//! The pub/sub driver under the Socket.IO Redis adapter (socketioxide-redis), built on a
//! reconnecting connection so that cross-node delivery resumes by itself after Redis returns:
//! the connection manager reconnects and re-subscribes every channel.
//!
//! While Redis is down a publish is skipped and reported as done: the adapter broadcasts to
//! local sockets only after its publish succeeds, and this node's clients must keep getting
//! their events when the other nodes cannot be reached.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock, Weak};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, PushInfo, PushKind, RedisResult};
use socketioxide_redis::drivers::{ChanItem, Driver, MessageStream};
use tokio::sync::mpsc;

use super::{Cluster, OP_TIMEOUT};

type Handlers = Arc<RwLock<HashMap<String, mpsc::Sender<ChanItem>>>>;

#[derive(Clone)]
pub struct PubSub {
    conn: ConnectionManager,
    handlers: Handlers,
    cluster: Arc<OnceLock<Weak<Cluster>>>,
}

impl PubSub {
    pub(super) async fn connect(client: &redis::Client) -> RedisResult<Self> {
        let handlers: Handlers = Arc::default();
        let routes = handlers.clone();
        let config = ConnectionManagerConfig::new()
            .set_push_sender(move |msg: PushInfo| {
                route(msg, &routes);
                Ok::<(), std::convert::Infallible>(())
            })
            .set_automatic_resubscription()
            .set_connection_timeout(Some(OP_TIMEOUT))
            .set_response_timeout(Some(OP_TIMEOUT))
            // Few retries per attempt: the cluster monitor pings every second and each ping
            // starts a new reconnection, so requests never queue behind a long backoff.
            .set_number_of_retries(1);
        let conn = client.get_connection_manager_with_config(config).await?;
        Ok(PubSub { conn, handlers, cluster: Arc::default() })
    }

    pub(super) fn attach(&self, cluster: Weak<Cluster>) {
        let _ = self.cluster.set(cluster);
    }

    fn cluster(&self) -> Option<Arc<Cluster>> {
        self.cluster.get().and_then(Weak::upgrade)
    }

    fn redis_up(&self) -> bool {
        self.cluster().is_none_or(|c| c.is_up())
    }

    pub(super) async fn ping(&self) -> Result<(), String> {
        let mut conn = self.conn.clone();
        let cmd = redis::cmd("PING");
        match tokio::time::timeout(OP_TIMEOUT, cmd.query_async::<()>(&mut conn)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("pub/sub ping timed out".into()),
        }
    }
}

/// Hands a received message to the adapter stream subscribed to its channel.
fn route(msg: PushInfo, handlers: &Handlers) {
    if !matches!(msg.kind, PushKind::Message) || msg.data.len() < 2 {
        return;
    }
    let mut data = msg.data.into_iter();
    let (Some(chan), Some(payload)) = (data.next(), data.next()) else { return };
    let (Ok(chan), Ok(payload)) = (String::from_redis_value(chan), Vec::<u8>::from_redis_value(payload)) else {
        tracing::warn!("unreadable pub/sub message from redis");
        return;
    };
    let handlers = handlers.read().unwrap_or_else(|p| p.into_inner());
    if let Some(tx) = handlers.get(&chan)
        && let Err(e) = tx.try_send((chan, payload))
    {
        tracing::warn!(error = %e, "cross-node message dropped: adapter queue full");
    }
}

impl Driver for PubSub {
    type Error = redis::RedisError;

    async fn publish(&self, chan: String, val: Vec<u8>) -> Result<(), Self::Error> {
        if !self.redis_up() {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(chan).arg(val);
        let failure = match tokio::time::timeout(OP_TIMEOUT, cmd.query_async::<()>(&mut conn)).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "publish timed out".to_string(),
        };
        if let Some(cluster) = self.cluster() {
            cluster.mark_down(&failure);
        }
        Ok(())
    }

    async fn subscribe(&self, chan: String, size: usize) -> Result<MessageStream<ChanItem>, Self::Error> {
        let (tx, rx) = mpsc::channel(size);
        self.handlers.write().unwrap_or_else(|p| p.into_inner()).insert(chan.clone(), tx);
        if let Err(e) = self.conn.clone().subscribe(&chan).await {
            self.handlers.write().unwrap_or_else(|p| p.into_inner()).remove(&chan);
            return Err(e);
        }
        Ok(MessageStream::new(rx))
    }

    async fn unsubscribe(&self, chan: String) -> Result<(), Self::Error> {
        self.handlers.write().unwrap_or_else(|p| p.into_inner()).remove(&chan);
        self.conn.clone().unsubscribe(&chan).await
    }

    async fn num_serv(&self, chan: &str) -> Result<u16, Self::Error> {
        if !self.redis_up() {
            return Ok(1);
        }
        let mut conn = self.conn.clone();
        let (_, count): (String, u16) = redis::cmd("PUBSUB").arg("NUMSUB").arg(chan).query_async(&mut conn).await?;
        Ok(count)
    }
}
