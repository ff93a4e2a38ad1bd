//! `chat-service healthcheck`: asks the service running in this container (or on this host)
//! for `/health` and exits 0 when it answers 200, 1 otherwise. Container images without a
//! shell or curl run this as their health check.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use crate::config::Config;

/// Longest the whole check may take; an orchestrator's own timeout should be above it.
const TIMEOUT: Duration = Duration::from_secs(3);

/// Where the service configured by `config` listens, as seen from the same machine: the
/// loopback address when it listens on every interface.
pub fn address(config: &Config) -> Result<SocketAddr, String> {
    if config.port == 0 {
        return Err("PORT=0 picks a port at start-up; set the port the service listens on".into());
    }
    let host = match config.host {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    };
    Ok(SocketAddr::new(host, config.port))
}

/// `Ok` when `GET http://{address}/health` answers 200 within the timeout.
pub async fn check(address: SocketAddr) -> Result<(), String> {
    let url = format!("http://{address}/health");
    let client = reqwest::Client::builder().timeout(TIMEOUT).build().map_err(|e| e.to_string())?;
    let response = client.get(&url).send().await.map_err(|e| format!("{url}: {e}"))?;
    let status = response.status();
    if status == reqwest::StatusCode::OK {
        Ok(())
    } else {
        let body = response.text().await.unwrap_or_default();
        Err(format!("{url}: {status} {}", body.chars().take(500).collect::<String>()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Config {
        let m: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| m.get(k).cloned()).unwrap()
    }

    #[test]
    fn checks_loopback_when_listening_everywhere() {
        assert_eq!(address(&config(&[])).unwrap().to_string(), "127.0.0.1:4004");
        assert_eq!(address(&config(&[("HOST", "::"), ("PORT", "80")])).unwrap().to_string(), "[::1]:80");
        assert_eq!(address(&config(&[("HOST", "10.0.0.5")])).unwrap().to_string(), "10.0.0.5:4004");
        assert!(address(&config(&[("PORT", "0")])).is_err());
    }
}
