//! Fixed-window request counting, as express-rate-limit did for the deployed service: at most
//! `max` hits per key per window, with the numbers clients see in the `RateLimit-*` headers.
//! The same limiter counts REST requests per client and socket events per user.
//!
//! With Redis the counts live there (one atomic script per hit), so a limit holds however
//! many nodes a client's requests are spread over; without Redis, or while it is down, each
//! node counts on its own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use prometheus_client::metrics::counter::Counter;

use crate::cluster::Cluster;

/// Counts a hit in a fixed window: the first hit of a window starts its expiry. Returns the
/// count and the milliseconds left in the window.
const HIT_SCRIPT: &str = r"
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if n == 1 or ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {n, ttl}
";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u64,
    pub remaining: u64,
    /// Seconds until the window resets.
    pub reset_secs: u64,
}

pub struct RateLimiter {
    max: u64,
    window: Duration,
    windows: DashMap<String, (Instant, u64)>,
    shared: Option<Shared>,
    /// Hits refused, for the metrics.
    refused: Counter,
}

/// Where a limiter counts in Redis.
struct Shared {
    cluster: Arc<Cluster>,
    /// Key prefix of this limiter (`{prefix}:rl:{name}:`), so REST and socket counts differ.
    keys: String,
    script: redis::Script,
}

impl RateLimiter {
    pub fn new(max: u64, window: Duration) -> Self {
        RateLimiter { max, window, windows: DashMap::new(), shared: None, refused: Counter::default() }
    }

    /// A limiter counting in Redis under `name`, shared by every node; local while Redis is down.
    pub fn shared(max: u64, window: Duration, name: &str, cluster: Arc<Cluster>) -> Self {
        let keys = cluster.key(&format!("rl:{name}:"));
        RateLimiter { shared: Some(Shared { cluster, keys, script: redis::Script::new(HIT_SCRIPT) }), ..Self::new(max, window) }
    }

    /// Counts the hits it refuses in `refused`.
    pub fn counting_refusals(mut self, refused: Counter) -> Self {
        self.refused = refused;
        self
    }

    /// Counts one hit for `key` and says whether it is within the limit.
    pub async fn hit(&self, key: &str) -> Decision {
        let decision = self.count(key).await;
        if !decision.allowed {
            self.refused.inc();
        }
        decision
    }

    async fn count(&self, key: &str) -> Decision {
        if let Some(shared) = &self.shared {
            let redis_key = format!("{}{key}", shared.keys);
            let window_ms = self.window.as_millis() as u64;
            // Boxed: a Redis call's future is about 7 KB, and every limited event's task
            // would carry it inline, Redis or not.
            let counted: Option<(u64, i64)> =
                Box::pin(shared.cluster.run(|mut c| async move { shared.script.key(redis_key).arg(window_ms).invoke_async(&mut c).await })).await;
            if let Some((count, ttl_ms)) = counted {
                return self.decide(count, Duration::from_millis(ttl_ms.max(0) as u64));
            }
        }
        self.hit_local(key)
    }

    fn decide(&self, count: u64, reset: Duration) -> Decision {
        Decision {
            allowed: count <= self.max,
            limit: self.max,
            remaining: self.max.saturating_sub(count),
            reset_secs: reset.as_secs() + u64::from(reset.subsec_nanos() > 0),
        }
    }

    fn hit_local(&self, key: &str) -> Decision {
        let now = Instant::now();
        if self.windows.len() > 50_000 {
            self.windows.retain(|_, (start, _)| now.duration_since(*start) < self.window);
        }
        let mut entry = self.windows.entry(key.to_string()).or_insert((now, 0));
        let (start, count) = entry.value_mut();
        if now.duration_since(*start) >= self.window {
            *start = now;
            *count = 0;
        }
        *count += 1;
        let reset = self.window.saturating_sub(now.duration_since(*start));
        let count = *count;
        drop(entry);
        self.decide(count, reset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_key_and_resets() {
        let l = RateLimiter::new(2, Duration::from_millis(50));
        assert!(l.hit_local("a").allowed);
        let d = l.hit_local("a");
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        assert!(!l.hit_local("a").allowed);
        assert!(l.hit_local("b").allowed);
        std::thread::sleep(Duration::from_millis(60));
        assert!(l.hit_local("a").allowed);
    }
}
