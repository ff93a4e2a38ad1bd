//! Caps the TCP connections one client address may hold open at once.
//!
//! Every connection costs a file descriptor and a task whether or not it ever authenticates,
//! so without a cap a single host can exhaust the process's descriptors and take the service
//! down for everyone (`accept` then fails for `/health` too). The count covers every kind of
//! connection on the port: HTTP keep-alive, long-polling and WebSocket.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

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
        let mut open = self.owner.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.address);
            }
        }
    }
}

/// An IPv4 client seen through an IPv6 socket counts as the same address as over IPv4.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(address),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
