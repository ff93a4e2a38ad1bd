//! The client's address behind a reverse proxy. A request that arrives from a trusted proxy
//! (`TRUSTED_PROXIES`) is counted against the address the proxy put in `X-Forwarded-For`;
//! from anywhere else that header is ignored, since any client can send one.

use std::net::IpAddr;

use axum::http::HeaderMap;

/// An address range: `10.0.0.0/8`, `::1/128`, or a bare address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressRange {
    network: IpAddr,
    prefix: u8,
}

impl AddressRange {
    pub fn parse(text: &str) -> Option<AddressRange> {
        let (address, prefix) = match text.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (text.parse::<IpAddr>().ok()?, None),
        };
        let bits = if address.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(bits);
        (prefix <= bits).then_some(AddressRange { network: address, prefix })
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        match (self.network, canonical(address)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => masked(u32::from(n).into(), 32, self.prefix) == masked(u32::from(a).into(), 32, self.prefix),
            (IpAddr::V6(n), IpAddr::V6(a)) => masked(u128::from(n), 128, self.prefix) == masked(u128::from(a), 128, self.prefix),
            _ => false,
        }
    }
}

fn masked(bits: u128, width: u8, prefix: u8) -> u128 {
    if prefix == 0 { 0 } else { bits >> (width - prefix) }
}

/// An IPv4 client seen through an IPv6 socket (`::ffff:a.b.c.d`) is that IPv4 address.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

/// The proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<AddressRange>);

impl TrustedProxies {
    pub fn new(ranges: Vec<AddressRange>) -> Self {
        TrustedProxies(ranges)
    }

    fn trusts(&self, address: IpAddr) -> bool {
        self.0.iter().any(|r| r.contains(address))
    }

    /// The address a request counts against: the peer, or, when the peer is a trusted proxy,
    /// the nearest address in `X-Forwarded-For` that is not one (each proxy appends the address
    /// it received the request from, so entries left of it may be made up by the client).
    pub fn client_address(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return peer;
        }
        let mut forwarded: Vec<&str> = Vec::new();
        for value in headers.get_all("x-forwarded-for") {
            let Ok(text) = value.to_str() else { return peer };
            forwarded.extend(text.split(',').map(str::trim));
        }
        let mut client = peer;
        for entry in forwarded.iter().rev() {
            let Ok(address) = entry.parse::<IpAddr>() else { break };
            client = canonical(address);
            if !self.trusts(client) {
                break;
            }
        }
        client
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::new(list.iter().map(|r| AddressRange::parse(r).unwrap()).collect())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn ranges() {
        let r = AddressRange::parse("10.1.0.0/16").unwrap();
        assert!(r.contains(ip("10.1.255.3")) && !r.contains(ip("10.2.0.1")));
        assert!(r.contains(ip("::ffff:10.1.0.9")));
        assert!(AddressRange::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(AddressRange::parse("fd00::/8").unwrap().contains(ip("fd12::1")));
        assert!(AddressRange::parse("127.0.0.1").unwrap().contains(ip("127.0.0.1")));
        assert!(!AddressRange::parse("127.0.0.1").unwrap().contains(ip("127.0.0.2")));
        for bad in ["10.0.0.0/33", "nginx", "10.0.0.0/x", ""] {
            assert_eq!(AddressRange::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn forwarded_for_is_believed_from_trusted_proxies_only() {
        let trusted = proxies(&["10.0.0.0/8"]);
        let h = forwarded(&["203.0.113.7"]);
        assert_eq!(trusted.client_address(ip("10.0.0.2"), &h), ip("203.0.113.7"));
        assert_eq!(trusted.client_address(ip("198.51.100.1"), &h), ip("198.51.100.1"), "not from a proxy");
        assert_eq!(TrustedProxies::default().client_address(ip("10.0.0.2"), &h), ip("10.0.0.2"), "none trusted");
        assert_eq!(trusted.client_address(ip("10.0.0.2"), &HeaderMap::new()), ip("10.0.0.2"), "no header");
    }

    #[test]
    fn the_nearest_untrusted_entry_counts() {
        let trusted = proxies(&["10.0.0.0/8"]);
        // The client wrote "1.1.1.1" itself; nginx appended the address it saw.
        let h = forwarded(&["1.1.1.1, 203.0.113.7"]);
        assert_eq!(trusted.client_address(ip("10.0.0.2"), &h), ip("203.0.113.7"));
        // Two proxies in a row, also as separate header fields.
        let h = forwarded(&["203.0.113.7", "10.0.0.9"]);
        assert_eq!(trusted.client_address(ip("10.0.0.2"), &h), ip("203.0.113.7"));
        // Garbage stops the walk at the last good address.
        let h = forwarded(&["203.0.113.7, nonsense, 10.0.0.9"]);
        assert_eq!(trusted.client_address(ip("10.0.0.2"), &h), ip("10.0.0.9"));
    }
}
