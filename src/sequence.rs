//! Lets one socket's message sends overlap without changing the order of what they do.
//!
//! A socket's store-backed events run one after another (`realtime::ordering`). For a send
//! that means waiting for the previous message's commit before even validating the next one,
//! so one busy sender could not have two messages in one store batch and, when commits queue
//! up, a sender's rate was bounded by the commit latency rather than by the CPU. What must stay
//! ordered is narrower: the order the messages take in the store, and the order their
//! broadcasts and answers leave in. So a send runs in a `Stage`, and the layers below mark the
//! two points:
//!
//! - the store calls [`write_queued`] once the message's write holds its place in the commit
//!   order (the SQLite writer's queue is first in, first out); from then on the socket's next
//!   send may start;
//! - the service awaits [`earlier_events_done`] before its first broadcast, so nothing is
//!   emitted before every earlier event of the socket has been broadcast and answered.
//!
//! Outside a stage (REST calls, the agent's replies, every other event) both are no-ops. A
//! store that never calls `write_queued` (MongoDB) keeps the sends fully serial: the stage
//! signals the next send when it ends.

use std::future::Future;
use std::sync::Mutex;

use tokio::sync::oneshot;

tokio::task_local! {
    static STAGE: Stage;
}

/// The signals between one event and its neighbours in the socket's order.
pub struct Stage {
    /// Fired (or dropped) once this event's write is queued: the next event may start.
    queued: Mutex<Option<oneshot::Sender<()>>>,
    /// Completes (or errs) once the previous event has been broadcast and answered.
    earlier_done: Mutex<Option<oneshot::Receiver<()>>>,
}

impl Stage {
    pub fn new(queued: oneshot::Sender<()>, earlier_done: Option<oneshot::Receiver<()>>) -> Self {
        Stage { queued: Mutex::new(Some(queued)), earlier_done: Mutex::new(earlier_done) }
    }

    /// Runs `f` in this stage; the next event may start when `f` queues its write or ends.
    pub async fn run<F: Future>(self, f: F) -> F::Output {
        STAGE.scope(self, f).await
    }
}

/// Called by a store once the current event's write holds its place in the commit order.
pub fn write_queued() {
    let _ = STAGE.try_with(|stage| {
        if let Some(next) = stage.queued.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = next.send(());
        }
    });
}

/// Waits until every earlier event of the current stage's socket has been broadcast and
/// answered; returns at once outside a stage or once it has waited.
pub async fn earlier_events_done() {
    let earlier = STAGE
        .try_with(|stage| stage.earlier_done.lock().unwrap_or_else(|e| e.into_inner()).take())
        .ok()
        .flatten();
    if let Some(earlier) = earlier {
        // An error only means the earlier event's turn was dropped: it is finished either way.
        let _ = earlier.await;
    }
}
