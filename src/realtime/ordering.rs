//! One socket's `message:send`s are stored, broadcast and acknowledged in the order they
//! arrived, as the reference server handles a socket's packets; different sockets still run in
//! parallel.
//!
//! socketioxide spawns a task per event, and tasks may start in any order, so each send takes
//! its turn synchronously, while socketioxide still calls the handlers in arrival order, and
//! then waits for the turn before it. Turns are a chain of one-shot channels: nothing runs per
//! socket when it is not sending. The number of turns waiting is bounded per socket and per
//! process; past either bound a send is refused at once ("busy") instead of queueing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// Sends a socket has queued (waiting or running) at most.
pub const MAX_PENDING_SENDS_PER_SOCKET: usize = 256;

/// The per-socket queue of sends.
#[derive(Default)]
pub struct SendQueue {
    /// Completion of the latest turn handed out; the next turn waits for it.
    last: Mutex<Option<oneshot::Receiver<()>>>,
    pending: Arc<AtomicUsize>,
}

/// A send's place in its socket's queue and in the process-wide count of pending sends.
/// Dropping it (done, refused or abandoned) lets the next send of the socket go.
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

impl SendQueue {
    /// The next turn, or `None` when this socket already has `MAX_PENDING_SENDS_PER_SOCKET`
    /// sends queued or the process has `process_max` (counted in `process`). Must be called in
    /// arrival order: that order is the order the turns run in.
    pub fn turn(&self, process: &Arc<AtomicUsize>, process_max: usize) -> Option<Turn> {
        let socket = take(&self.pending, MAX_PENDING_SENDS_PER_SOCKET)?;
        let process = take(process, process_max)?;
        let (done, finished) = oneshot::channel();
        let previous = self.last.lock().unwrap_or_else(|e| e.into_inner()).replace(finished);
        Some(Turn { previous, _done: done, _socket: socket, _process: process })
    }
}

impl Turn {
    /// Waits until every earlier send of the socket has finished.
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
        let queue = SendQueue::default();
        let process = Arc::new(AtomicUsize::new(0));
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..200 {
            let mut turn = queue.turn(&process, 1000).expect("room in the queue");
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
        assert_eq!(process.load(Ordering::Acquire), 0);
    }

    #[test]
    fn bounded_per_socket_and_per_process() {
        let process = Arc::new(AtomicUsize::new(0));
        let a = SendQueue::default();
        let held: Vec<_> = (0..MAX_PENDING_SENDS_PER_SOCKET).map(|_| a.turn(&process, 10_000).unwrap()).collect();
        assert!(a.turn(&process, 10_000).is_none(), "per-socket bound");
        let b = SendQueue::default();
        assert!(b.turn(&process, MAX_PENDING_SENDS_PER_SOCKET).is_none(), "process bound");
        drop(held);
        assert!(a.turn(&process, 10_000).is_some());
        assert_eq!(a.pending.load(Ordering::Acquire), 0);
    }
}
