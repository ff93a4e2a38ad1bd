//! Caps the TCP connections one client address may hold open at once.
//!
//! Every connection costs a file descriptor and a task whether or not it ever authenticates,
//! so without a cap a single host can exhaust the process's descriptors and take the service
//! down for everyone (`accept` then fails for `/health` too). The count covers every kind of
//! connection on the port: HTTP keep-alive, long-polling and WebSocket.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Open connections per client address, shared by the accept loop and the connection tasks.
#[derive(Debug)]
pub struct ConnectionsPerAddress {
    /// Most connections one address may hold; `None`: no cap.
    cap: Option<usize>,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// Held by a connection's task; the slot is given back when it is dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    owner: Arc<ConnectionsPerAddress>,
    address: IpAddr,
}

impl ConnectionsPerAddress {
    /// `cap == 0` disables the cap (behind a proxy, every connection has the proxy's address).
    pub fn new(cap: usize) -> Arc<Self> {
        Arc::new(ConnectionsPerAddress { cap: (cap > 0).then_some(cap), open: Mutex::default() })
    }

    /// Takes a slot for a new connection from `address`, or `None` when it is at the cap.
    pub fn admit(self: &Arc<Self>, address: IpAddr) -> Option<ConnectionSlot> {
        let address = canonical(address);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(address).or_default();
        if self.cap.is_some_and(|cap| *count >= cap) {
            return None;
        }
        *count += 1;
        Some(ConnectionSlot { owner: self.clone(), address })
    }

    /// Connections open from `address` now.
    pub fn open_from(&self, address: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(&canonical(address)).copied().unwrap_or(0)
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        crate::heap::note_freed();
        let mut open = self.owner.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.address);
            }
        }
    }
}

/// A client's TCP stream that holds its connection slot for as long as the stream lives.
///
/// The slot travels with the stream rather than with the HTTP connection task: after a
/// WebSocket upgrade the task ends and engineioxide owns the stream, which still counts.
pub struct CountedStream {
    inner: TcpStream,
    _slot: ConnectionSlot,
}

impl CountedStream {
    pub fn new(inner: TcpStream, slot: ConnectionSlot) -> Self {
        CountedStream { inner, _slot: slot }
    }
}

impl AsyncRead for CountedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// An IPv4 client seen through an IPv6 socket counts as the same address as over IPv4.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(address),
        v4 => v4,
    }
}

/// Raises this process's open-file soft limit to its hard limit, and returns the limit now in
/// force (`None` if it cannot be read).
///
/// Every connection holds one descriptor, and the soft limit is often 1024 while the hard limit
/// allows far more; past the soft limit `accept` fails and new clients (and `/health`) are
/// refused. Raising the soft limit needs no privilege; the hard limit is the operator's to set.
pub fn raise_open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `limit` is a valid, writable rlimit for the duration of each call.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    Some(limit.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_file_limit_is_raised_to_the_hard_limit() {
        let limit = raise_open_file_limit().expect("readable limit");
        let mut now = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: `now` is a valid, writable rlimit for the duration of the call.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut now) }, 0);
        assert_eq!((now.rlim_cur, limit), (now.rlim_max, now.rlim_max));
    }

    #[test]
    fn refuses_past_the_cap_and_frees_slots_on_drop() {
        let limits = ConnectionsPerAddress::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = limits.admit(a).unwrap();
        let _second = limits.admit(a).unwrap();
        assert!(limits.admit(a).is_none());
        assert!(limits.admit("::ffff:10.0.0.1".parse().unwrap()).is_none());
        assert!(limits.admit(b).is_some());
        drop(first);
        assert_eq!(limits.open_from(a), 1);
        assert!(limits.admit(a).is_some());
    }

    #[test]
    fn zero_means_no_cap() {
        let limits = ConnectionsPerAddress::new(0);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let slots: Vec<_> = (0..10_000).map(|_| limits.admit(a).unwrap()).collect();
        assert_eq!(limits.open_from(a), 10_000);
        drop(slots);
        assert_eq!(limits.open_from(a), 0);
    }
}
