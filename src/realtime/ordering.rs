//! One socket's store-backed events (`message:send`, `conversation:join` and `:leave`,
//! `thread:create` and `:switch`) run, and are answered, in the order they arrived, as the
//! reference server handles a socket's packets; different sockets still run in parallel.
//!
//! socketioxide spawns a task per event, and tasks may start in any order, so each event takes
//! its turn synchronously, while socketioxide still calls the handlers in arrival order, and
//! then waits for the turn before it. Turns are a chain of one-shot channels: nothing runs per
//! socket when it is idle. The number of turns waiting is bounded per socket and per process;
//! past either bound an event is refused at once ("busy") instead of queueing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// The bounds on waiting events, and the process-wide count they are checked against.
pub struct QueueLimits {
    pub per_socket: usize,
    pub per_process: usize,
    pending: Arc<AtomicUsize>,
}

impl QueueLimits {
    pub fn new(per_socket: usize, per_process: usize) -> Self {
        QueueLimits { per_socket, per_process, pending: Arc::default() }
    }

    /// Events queued or running in the whole process.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// The process-wide count itself, for the metrics to read when scraped.
    pub fn pending_count(&self) -> Arc<AtomicUsize> {
        self.pending.clone()
    }
}

/// One socket's queue of events.
#[derive(Default)]
pub struct EventQueue {
    /// Completion of the latest turn handed out; the next turn waits for it.
    last: Mutex<Option<oneshot::Receiver<()>>>,
    pending: Arc<AtomicUsize>,
}

/// An event's place in its socket's queue and in the process-wide count of pending events.
/// Dropping it (done, refused or abandoned) lets the socket's next event go.
pub struct Turn {
    previous: Option<oneshot::Receiver<()>>,
    _done: oneshot::Sender<()>,
    _socket: Pending,
    _process: Pending,
}

/// One unit of an in-flight count, given back when dropped.
struct Pending(Arc<AtomicUsize>);

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Takes one unit of `count` unless it is already at `max`.
fn take(count: &Arc<AtomicUsize>, max: usize) -> Option<Pending> {
    count
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
        .ok()
        .map(|_| Pending(count.clone()))
}

impl EventQueue {
    /// The next turn, or `None` when this socket or the process is at its bound. Must be
    /// called in arrival order: that order is the order the turns run in.
    pub fn turn(&self, limits: &QueueLimits) -> Option<Turn> {
        let socket = take(&self.pending, limits.per_socket)?;
        let process = take(&limits.pending, limits.per_process)?;
        let (done, finished) = oneshot::channel();
        let previous = self.last.lock().unwrap_or_else(|e| e.into_inner()).replace(finished);
        Some(Turn { previous, _done: done, _socket: socket, _process: process })
    }
}

impl Turn {
    /// Waits until every earlier event of the socket has finished.
    pub async fn wait(&mut self) {
        if let Some(previous) = self.previous.take() {
            // An error only means the earlier turn was dropped: it is finished either way.
            let _ = previous.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn turns_run_in_the_order_they_were_taken() {
        let queue = EventQueue::default();
        let limits = QueueLimits::new(1000, 1000);
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..200 {
            let mut turn = queue.turn(&limits).expect("room in the queue");
            let order = order.clone();
            tasks.push(tokio::spawn(async move {
                turn.wait().await;
                // Later turns are spawned first in real life too: give them every chance.
                tokio::task::yield_now().await;
                order.lock().unwrap().push(i);
            }));
        }
        for t in tasks.into_iter().rev() {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), (0..200).collect::<Vec<_>>());
        assert_eq!(limits.pending(), 0);
    }

    #[test]
    fn bounded_per_socket_and_per_process() {
        let limits = QueueLimits::new(4, 6);
        let (a, b) = (EventQueue::default(), EventQueue::default());
        let held: Vec<_> = (0..4).map(|_| a.turn(&limits).unwrap()).collect();
        assert!(a.turn(&limits).is_none(), "per-socket bound");
        let more: Vec<_> = (0..2).map(|_| b.turn(&limits).unwrap()).collect();
        assert!(b.turn(&limits).is_none(), "process bound");
        drop(held);
        assert!(a.turn(&limits).is_some());
        drop(more);
        assert_eq!((limits.pending(), a.pending.load(Ordering::Acquire)), (0, 0));
    }
}
