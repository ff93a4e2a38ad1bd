//! One socket's store-backed events (`message:send`, `conversation:join` and `:leave`,
//! `thread:create` and `:switch`) run, and are answered, in the order they arrived, as the
//! reference server handles a socket's packets; different sockets still run in parallel.
//!
//! socketioxide spawns a task per event, and tasks may start in any order, so each event takes
//! its turn synchronously, while socketioxide still calls the handlers in arrival order, and
//! then waits for the turn before it. Turns are a chain of one-shot channels: nothing runs per
//! socket when it is idle. A `message:send` waits only for the previous event to have started
//! (its write queued) and runs in a `sequence::Stage`, which keeps its broadcasts and answer
//! after the previous event's (see `sequence`). The number of turns waiting is bounded per socket and per process;
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
    /// The latest turn handed out; the next turn waits for it.
    last: Mutex<Option<Signals>>,
    pending: Arc<AtomicUsize>,
}

/// What a turn tells the next one: that it started (its write is queued) and that it is done.
/// Each sender fires when dropped, so a refused or abandoned turn releases the next as well.
struct Signals {
    started: oneshot::Receiver<()>,
    done: oneshot::Receiver<()>,
}

/// An event's place in its socket's queue and in the process-wide count of pending events.
/// Dropping it (done, refused or abandoned) lets the socket's next event go.
pub struct Turn {
    previous: Option<Signals>,
    started: Option<oneshot::Sender<()>>,
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
        let (started_tx, started) = oneshot::channel();
        let (done_tx, done) = oneshot::channel();
        let previous = self.last.lock().unwrap_or_else(|e| e.into_inner()).replace(Signals { started, done });
        Some(Turn { previous, started: Some(started_tx), _done: done_tx, _socket: socket, _process: process })
    }
}

impl Turn {
    /// Waits until every earlier event of the socket has finished.
    pub async fn wait(&mut self) {
        if let Some(previous) = self.previous.take() {
            // An error only means the earlier turn was dropped: it is finished either way.
            let _ = previous.done.await;
        }
    }

    /// Waits until the previous event has started (queued its write, or finished) and returns
    /// the stage to run this event in: it lets the next event start once this one's write is
    /// queued, and holds this one's broadcasts until the previous event is done. Each event
    /// is done only after the one before it, since its stage waits for that before answering.
    pub async fn wait_to_start(&mut self) -> crate::sequence::Stage {
        let previous = self.previous.take();
        let earlier_done = match previous {
            Some(Signals { started, done }) => {
                let _ = started.await;
                Some(done)
            }
            None => None,
        };
        let started = self.started.take().unwrap_or_else(|| oneshot::channel().0);
        crate::sequence::Stage::new(started, earlier_done)
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

    /// The second send starts while the first is still running (its write queued), and
    /// still emits only after the first is done.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_send_starts_once_the_previous_write_is_queued_and_emits_after_it() {
        let queue = EventQueue::default();
        let limits = QueueLimits::new(10, 10);
        let (mut first, mut second) = (queue.turn(&limits).unwrap(), queue.turn(&limits).unwrap());
        let log = Arc::new(Mutex::new(Vec::new()));
        let (second_started, first_may_finish) = oneshot::channel::<()>();
        let first_log = log.clone();
        let first_task = tokio::spawn(async move {
            let stage = first.wait_to_start().await;
            stage
                .run(async {
                    crate::sequence::write_queued();
                    first_may_finish.await.unwrap();
                    crate::sequence::earlier_events_done().await;
                    first_log.lock().unwrap().push("first");
                })
                .await;
            drop(first);
        });
        let second_log = log.clone();
        let second_task = tokio::spawn(async move {
            let stage = second.wait_to_start().await;
            second_started.send(()).unwrap();
            stage
                .run(async {
                    crate::sequence::earlier_events_done().await;
                    second_log.lock().unwrap().push("second");
                })
                .await;
        });
        let both = async { (first_task.await.unwrap(), second_task.await.unwrap()) };
        tokio::time::timeout(std::time::Duration::from_secs(10), both).await.expect("the second send could not start while the first was running");
        assert_eq!(*log.lock().unwrap(), ["first", "second"]);
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
