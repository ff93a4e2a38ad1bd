//! Fixed-window request counting, as express-rate-limit did for the deployed service: at most
//! `max` hits per key per window, with the numbers clients see in the `RateLimit-*` headers.
//! The same limiter counts REST requests per client and socket events per user.

use std::time::{Duration, Instant};

use dashmap::DashMap;

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
}

impl RateLimiter {
    pub fn new(max: u64, window: Duration) -> Self {
        RateLimiter { max, window, windows: DashMap::new() }
    }

    /// Counts one hit for `key` and says whether it is within the limit.
    pub fn hit(&self, key: &str) -> Decision {
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
        Decision {
            allowed: *count <= self.max,
            limit: self.max,
            remaining: self.max.saturating_sub(*count),
            reset_secs: reset.as_secs() + u64::from(reset.subsec_nanos() > 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_key_and_resets() {
        let l = RateLimiter::new(2, Duration::from_millis(50));
        assert!(l.hit("a").allowed);
        let d = l.hit("a");
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        assert!(!l.hit("a").allowed);
        assert!(l.hit("b").allowed);
        std::thread::sleep(Duration::from_millis(60));
        assert!(l.hit("a").allowed);
    }
}
