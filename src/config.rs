//! Configuration from the environment (and an optional `.env`). Every variable is listed in
//! `.env.example` with its default. A bad value stops start-up with one line naming it,
//! rather than surfacing later as a confusing runtime failure.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::http::client_address::AddressRange;

#[derive(Debug, Clone)]
pub struct Config {
    pub host: IpAddr,
    pub port: u16,
    pub data_dir: PathBuf,
    pub mongodb_uri: Option<String>,
    pub mongodb_database: Option<String>,
    pub mongodb_pool_size: u32,
    pub mongodb_timeout: Duration,
    pub redis_url: Option<String>,
    /// Namespace of every Redis key and channel; nodes serving one set of rooms share it.
    pub redis_prefix: String,
    /// How long a node that stopped sending heartbeats keeps its users online.
    pub presence_ttl: Duration,
    /// Lifetime of a read-cache entry; zero turns the cache off. Bounds how late a write made
    /// directly in the database by another service shows up.
    pub cache_ttl: Duration,
    /// How long a node without Redis keeps a conversation in memory (`store::local`); zero: not at all.
    pub conversation_cache_ttl: Duration,
    /// How often freed heap is given back to the system after connections closed (`heap`); zero: never.
    pub heap_trim_interval: Duration,
    /// `None`: no secret configured; start-up generates a random one and says so loudly.
    pub jwt_secret: Option<String>,
    /// Allowed origins; `["*"]` allows any.
    pub cors_origins: Vec<String>,
    pub agent_service_url: Option<String>,
    /// Whole-call limit of one agent service call (connect, send, answer), queueing included.
    pub agent_timeout: Duration,
    pub agent_connect_timeout: Duration,
    /// Agent service calls in flight at once; more wait for a free slot.
    pub agent_max_in_flight: usize,
    /// User messages whose agent work may be queued or running at once; past that, a
    /// message's reply fails at once instead of piling up.
    pub agent_max_pending: usize,
    pub internal_service_token: Option<String>,
    pub allow_legacy_widget_tokens: bool,
    pub legacy_events: bool,
    pub rate_limit_max: u64,
    pub rate_limit_window: Duration,
    pub socket_message_limit: u64,
    pub socket_typing_limit: u64,
    pub socket_limit_window: Duration,
    pub max_connections: usize,
    /// Packets queued for one socket before it counts as unable to keep up and is closed.
    pub socket_buffer_size: usize,
    /// How long a disconnected client's Socket.IO session and the packets it missed are kept
    /// for connection state recovery; `None` (`RECOVERY_WINDOW_MS=0`): no recovery.
    pub recovery_window: Option<Duration>,
    /// Store-backed socket events (sends, joins, leaves, threads) queued or running across all
    /// sockets, and per socket; more are refused as busy.
    pub max_pending_events: usize,
    pub max_pending_events_per_socket: usize,
    /// Open TCP connections one client address may hold; zero: no cap.
    pub max_connections_per_ip: usize,
    /// Time a client has to send a complete request head; also how long an idle keep-alive
    /// connection stays open.
    pub http_header_timeout: Duration,
    /// Reverse proxies whose `X-Forwarded-For` names the client (for the REST rate limit).
    pub trusted_proxies: Vec<AddressRange>,
    /// Conversations without activity (an update or a message) for this long are archived;
    /// `None`: never.
    pub archive_after: Option<Duration>,
    /// How often the archive job runs (once per interval across all nodes sharing Redis).
    pub archive_interval: Duration,
    pub log_json: bool,
    /// Record metrics and serve them at `/metrics`; off, nothing is recorded.
    pub metrics: bool,
    /// Bearer token of `/metrics` (an admin's JWT works too); `None`: `/metrics` is open.
    pub metrics_token: Option<String>,
    /// Where uploaded files go: this bucket when set, else a directory under `data_dir`.
    pub s3: Option<S3Settings>,
    /// The service's address as clients reach it (`https://chat.example.com`), for the URLs of
    /// uploaded files; `None`: taken from each upload request's `Host`.
    pub public_url: Option<String>,
    /// Record the audit trail (`AUDIT`); off, nothing is written.
    pub audit: bool,
    /// Audit records older than this are deleted; `None`: kept forever.
    pub audit_retention: Option<Duration>,
    /// How often expired audit records are deleted (once per interval across nodes sharing Redis).
    pub audit_retention_interval: Duration,
}

/// An S3-compatible bucket (`S3_BUCKET`, `S3_ENDPOINT`, `S3_REGION`; credentials from the usual
/// `AWS_*` variables).
#[derive(Debug, Clone)]
pub struct S3Settings {
    pub bucket: String,
    /// Unset: AWS itself.
    pub endpoint: Option<String>,
    pub region: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {name}={value:?}: {reason}")]
pub struct ConfigError {
    pub name: &'static str,
    pub value: String,
    pub reason: String,
}

impl Config {
    /// Reads the process environment, after loading `.env` if one exists.
    pub fn from_env() -> Result<Self, ConfigError> {
        let _ = dotenvy::dotenv();
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Builds a configuration from any key lookup; tests pass a map instead of the environment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |k: &str| get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        Ok(Config {
            host: parse(&var, "HOST", "0.0.0.0")?,
            port: parse(&var, "PORT", "4004")?,
            data_dir: PathBuf::from(var("DATA_DIR").unwrap_or_else(|| "./data".into())),
            mongodb_uri: var("MONGODB_URI").or_else(|| var("MONGO_URL")),
            mongodb_database: var("MONGODB_DATABASE"),
            mongodb_pool_size: parse_range(&var, "MONGODB_POOL_SIZE", "20", 1, 1000)? as u32,
            mongodb_timeout: Duration::from_millis(parse_range(&var, "MONGODB_TIMEOUT_MS", "5000", 100, 120_000)?),
            redis_url: var("REDIS_URL"),
            redis_prefix: var("REDIS_PREFIX").unwrap_or_else(|| "chat".into()),
            presence_ttl: Duration::from_millis(parse_range(&var, "PRESENCE_TTL_MS", "30000", 300, 3_600_000)?),
            cache_ttl: Duration::from_millis(parse_range(&var, "CACHE_TTL_MS", "5000", 0, 86_400_000)?),
            conversation_cache_ttl: Duration::from_millis(parse_range(&var, "CONVERSATION_CACHE_TTL_MS", "1000", 0, 86_400_000)?),
            heap_trim_interval: Duration::from_millis(parse_range(&var, "HEAP_TRIM_INTERVAL_MS", "10000", 0, 86_400_000)?),
            jwt_secret: var("JWT_SECRET"),
            cors_origins: var("SOCKET_CORS_ORIGINS")
                .or_else(|| var("ALLOWED_ORIGINS"))
                .unwrap_or_else(|| "*".into())
                .split(',')
                .map(|s| s.trim().trim_end_matches('/').to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            agent_service_url: var("AGENT_SERVICE_URL").map(|u| u.trim_end_matches('/').to_string()),
            agent_timeout: Duration::from_millis(parse_range(&var, "AGENT_TIMEOUT_MS", "30000", 100, 600_000)?),
            agent_connect_timeout: Duration::from_millis(parse_range(&var, "AGENT_CONNECT_TIMEOUT_MS", "3000", 10, 60_000)?),
            agent_max_in_flight: parse_range(&var, "AGENT_MAX_IN_FLIGHT", "64", 1, 10_000)? as usize,
            agent_max_pending: parse_range(&var, "AGENT_MAX_PENDING", "1000", 1, 1_000_000)? as usize,
            internal_service_token: var("INTERNAL_SERVICE_TOKEN"),
            allow_legacy_widget_tokens: parse_bool(&var, "ALLOW_LEGACY_WIDGET_TOKENS", false)?,
            legacy_events: parse_bool(&var, "LEGACY_EVENTS", true)?,
            rate_limit_max: parse_range(&var, "RATE_LIMIT_MAX", "500", 1, u32::MAX as u64)?,
            rate_limit_window: Duration::from_millis(parse_range(&var, "RATE_LIMIT_WINDOW_MS", "900000", 1, 86_400_000)?),
            socket_message_limit: parse_range(&var, "SOCKET_MESSAGE_LIMIT", "60", 1, 1_000_000)?,
            socket_typing_limit: parse_range(&var, "SOCKET_TYPING_LIMIT", "120", 1, 1_000_000)?,
            socket_limit_window: Duration::from_millis(parse_range(&var, "SOCKET_LIMIT_WINDOW_MS", "60000", 1, 86_400_000)?),
            max_connections: parse_range(&var, "MAX_CONNECTIONS", "100000", 1, 10_000_000)? as usize,
            socket_buffer_size: parse_range(&var, "SOCKET_BUFFER_SIZE", "1024", 16, 1_000_000)? as usize,
            recovery_window: match parse_range(&var, "RECOVERY_WINDOW_MS", "120000", 0, 3_600_000)? {
                0 => None,
                ms => Some(Duration::from_millis(ms)),
            },
            max_pending_events: parse_range(&var, "MAX_PENDING_EVENTS", "10000", 1, 10_000_000)? as usize,
            max_pending_events_per_socket: parse_range(&var, "MAX_PENDING_EVENTS_PER_SOCKET", "256", 1, 100_000)? as usize,
            max_connections_per_ip: parse_range(&var, "MAX_CONNECTIONS_PER_IP", "1000", 0, 10_000_000)? as usize,
            http_header_timeout: Duration::from_millis(parse_range(&var, "HTTP_HEADER_TIMEOUT_MS", "10000", 100, 600_000)?),
            trusted_proxies: parse_ranges(&var, "TRUSTED_PROXIES")?,
            archive_after: match parse_range(&var, "ARCHIVE_AFTER_DAYS", "0", 0, 36_500)? {
                0 => None,
                days => Some(Duration::from_secs(days * 86_400)),
            },
            archive_interval: Duration::from_millis(parse_range(&var, "ARCHIVE_INTERVAL_MS", "3600000", 100, 604_800_000)?),
            log_json: var("LOG_FORMAT").is_some_and(|v| v.eq_ignore_ascii_case("json")),
            metrics: parse_bool(&var, "METRICS", true)?,
            metrics_token: var("METRICS_TOKEN"),
            s3: var("S3_BUCKET").map(|bucket| S3Settings {
                bucket,
                endpoint: var("S3_ENDPOINT").map(|e| e.trim_end_matches('/').to_string()),
                region: var("S3_REGION").or_else(|| var("AWS_REGION")),
            }),
            public_url: var("PUBLIC_URL").map(|u| u.trim_end_matches('/').to_string()),
            audit: parse_bool(&var, "AUDIT", true)?,
            audit_retention: match parse_range(&var, "AUDIT_RETENTION_DAYS", "365", 0, 36_500)? {
                0 => None,
                days => Some(Duration::from_secs(days * 86_400)),
            },
            audit_retention_interval: Duration::from_millis(parse_range(
                &var,
                "AUDIT_RETENTION_INTERVAL_MS",
                "3600000",
                100,
                604_800_000,
            )?),
        })
        .and_then(Config::checked)
    }

    fn checked(self) -> Result<Self, ConfigError> {
        if let Some(secret) = &self.jwt_secret
            && secret.len() < 16
        {
            return Err(ConfigError {
                name: "JWT_SECRET",
                value: "<hidden>".into(),
                reason: "must be at least 16 characters".into(),
            });
        }
        let s3_endpoint = self.s3.as_ref().and_then(|s| s.endpoint.clone());
        for (name, url) in [
            ("AGENT_SERVICE_URL", &self.agent_service_url),
            ("REDIS_URL", &self.redis_url),
            ("S3_ENDPOINT", &s3_endpoint),
            ("PUBLIC_URL", &self.public_url),
        ] {
            if let Some(u) = url
                && !u.contains("://")
            {
                return Err(ConfigError { name, value: u.clone(), reason: "must be a URL".into() });
            }
        }
        if self.redis_prefix.contains(char::is_whitespace) || self.redis_prefix.contains('#') {
            return Err(ConfigError {
                name: "REDIS_PREFIX",
                value: self.redis_prefix.clone(),
                reason: "must not contain spaces or '#'".into(),
            });
        }
        if let Some(u) = &self.mongodb_uri
            && !(u.starts_with("mongodb://") || u.starts_with("mongodb+srv://"))
        {
            return Err(ConfigError {
                name: "MONGODB_URI",
                value: u.clone(),
                reason: "must start with mongodb:// or mongodb+srv://".into(),
            });
        }
        Ok(self)
    }

    pub fn cors_any(&self) -> bool {
        self.cors_origins.iter().any(|o| o == "*")
    }
}

fn parse<T: std::str::FromStr>(
    var: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: &str,
) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    let value = var(name).unwrap_or_else(|| default.to_string());
    value.parse().map_err(|e: T::Err| ConfigError { name, value, reason: e.to_string() })
}

fn parse_range(
    var: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: &str,
    min: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    let n: u64 = parse(var, name, default)?;
    if n < min || n > max {
        return Err(ConfigError { name, value: n.to_string(), reason: format!("must be between {min} and {max}") });
    }
    Ok(n)
}

/// A comma-separated list of addresses and CIDR ranges; empty when unset.
fn parse_ranges(var: &impl Fn(&str) -> Option<String>, name: &'static str) -> Result<Vec<AddressRange>, ConfigError> {
    let Some(list) = var(name) else { return Ok(Vec::new()) };
    list.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            AddressRange::parse(item).ok_or_else(|| ConfigError {
                name,
                value: item.to_string(),
                reason: "must be an IP address or a CIDR range such as 10.0.0.0/8".into(),
            })
        })
        .collect()
}

fn parse_bool(var: &impl Fn(&str) -> Option<String>, name: &'static str, default: bool) -> Result<bool, ConfigError> {
    match var(name).map(|v| v.to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if matches!(v.as_str(), "true" | "1" | "yes" | "on") => Ok(true),
        Some(v) if matches!(v.as_str(), "false" | "0" | "no" | "off") => Ok(false),
        Some(value) => Err(ConfigError { name, value, reason: "must be true or false".into() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let m: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.port, 4004);
        assert_eq!(c.rate_limit_max, 500);
        assert_eq!(c.rate_limit_window, Duration::from_secs(900));
        assert!(c.legacy_events);
        assert!(!c.allow_legacy_widget_tokens);
        assert!(c.cors_any());
        assert_eq!(c.agent_service_url, None);
        assert_eq!(c.agent_timeout, Duration::from_secs(30));
        assert_eq!(c.agent_connect_timeout, Duration::from_secs(3));
        assert_eq!((c.agent_max_in_flight, c.agent_max_pending), (64, 1000));
        assert_eq!((c.max_connections_per_ip, c.http_header_timeout), (1000, Duration::from_secs(10)));
        assert_eq!((c.archive_after, c.archive_interval), (None, Duration::from_secs(3600)));
        assert!(c.metrics);
        assert_eq!(c.metrics_token, None);
        assert!(c.s3.is_none() && c.public_url.is_none() && c.audit);
        assert_eq!(c.audit_retention, Some(Duration::from_secs(365 * 86_400)));
    }

    #[test]
    fn attachment_and_audit_settings() {
        let c = cfg(&[("S3_BUCKET", "files"), ("S3_ENDPOINT", "http://127.0.0.1:9000/"), ("AUDIT_RETENTION_DAYS", "0")]).unwrap();
        let s3 = c.s3.unwrap();
        assert_eq!((s3.bucket.as_str(), s3.endpoint.as_deref()), ("files", Some("http://127.0.0.1:9000")));
        assert_eq!(c.audit_retention, None);
        assert!(!cfg(&[("AUDIT", "off")]).unwrap().audit);
        assert_eq!(cfg(&[("S3_BUCKET", "b"), ("S3_ENDPOINT", "minio:9000")]).unwrap_err().name, "S3_ENDPOINT");
        assert_eq!(cfg(&[("PUBLIC_URL", "chat.example.com")]).unwrap_err().name, "PUBLIC_URL");
    }

    #[test]
    fn trusted_proxies() {
        assert!(cfg(&[]).unwrap().trusted_proxies.is_empty());
        let c = cfg(&[("TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8,")]).unwrap();
        assert_eq!(c.trusted_proxies.len(), 2);
        assert_eq!(cfg(&[("TRUSTED_PROXIES", "10.0.0.0/8,nginx")]).unwrap_err().name, "TRUSTED_PROXIES");
    }

    #[test]
    fn archive_settings() {
        let c = cfg(&[("ARCHIVE_AFTER_DAYS", "90"), ("ARCHIVE_INTERVAL_MS", "60000")]).unwrap();
        assert_eq!(c.archive_after, Some(Duration::from_secs(90 * 86_400)));
        assert_eq!(c.archive_interval, Duration::from_secs(60));
        assert_eq!(cfg(&[("ARCHIVE_AFTER_DAYS", "-1")]).unwrap_err().name, "ARCHIVE_AFTER_DAYS");
        assert_eq!(cfg(&[("ARCHIVE_INTERVAL_MS", "10")]).unwrap_err().name, "ARCHIVE_INTERVAL_MS");
    }

    #[test]
    fn aliases_and_errors_name_the_variable() {
        let c = cfg(&[("MONGO_URL", "mongodb://x/db"), ("ALLOWED_ORIGINS", "http://a, http://b/")]).unwrap();
        assert_eq!(c.mongodb_uri.as_deref(), Some("mongodb://x/db"));
        assert_eq!(c.cors_origins, vec!["http://a", "http://b"]);
        let e = cfg(&[("PORT", "eighty")]).unwrap_err();
        assert_eq!(e.name, "PORT");
        assert_eq!(cfg(&[("LEGACY_EVENTS", "maybe")]).unwrap_err().name, "LEGACY_EVENTS");
        assert_eq!(cfg(&[("RATE_LIMIT_MAX", "0")]).unwrap_err().name, "RATE_LIMIT_MAX");
        assert_eq!(cfg(&[("JWT_SECRET", "short")]).unwrap_err().name, "JWT_SECRET");
        assert_eq!(cfg(&[("AGENT_SERVICE_URL", "agent:4002")]).unwrap_err().name, "AGENT_SERVICE_URL");
        assert_eq!(cfg(&[("AGENT_MAX_IN_FLIGHT", "0")]).unwrap_err().name, "AGENT_MAX_IN_FLIGHT");
        assert!(!cfg(&[("METRICS", "off")]).unwrap().metrics);
        assert_eq!(cfg(&[("METRICS", "sometimes")]).unwrap_err().name, "METRICS");
        let c = cfg(&[("AGENT_SERVICE_URL", "http://agent:4002/")]).unwrap();
        assert_eq!(c.agent_service_url.as_deref(), Some("http://agent:4002"));
    }

    #[test]
    fn redis_settings() {
        let c = cfg(&[]).unwrap();
        assert_eq!((c.redis_url, c.redis_prefix.as_str(), c.presence_ttl), (None, "chat", Duration::from_secs(30)));
        let c = cfg(&[("REDIS_URL", "redis://r:6379"), ("REDIS_PREFIX", "eu-1"), ("PRESENCE_TTL_MS", "5000")]).unwrap();
        assert_eq!((c.redis_url.as_deref(), c.redis_prefix.as_str()), (Some("redis://r:6379"), "eu-1"));
        assert_eq!(cfg(&[("REDIS_URL", "r:6379")]).unwrap_err().name, "REDIS_URL");
        assert_eq!(cfg(&[("REDIS_PREFIX", "a b")]).unwrap_err().name, "REDIS_PREFIX");
        assert_eq!(cfg(&[("PRESENCE_TTL_MS", "10")]).unwrap_err().name, "PRESENCE_TTL_MS");
        assert_eq!(cfg(&[("CACHE_TTL_MS", "0")]).unwrap().cache_ttl, Duration::ZERO);
        assert_eq!(cfg(&[]).unwrap().conversation_cache_ttl, Duration::from_secs(1));
        assert_eq!(cfg(&[("CONVERSATION_CACHE_TTL_MS", "0")]).unwrap().conversation_cache_ttl, Duration::ZERO);
        assert_eq!(cfg(&[]).unwrap().heap_trim_interval, Duration::from_secs(10));
        assert_eq!(cfg(&[("HEAP_TRIM_INTERVAL_MS", "0")]).unwrap().heap_trim_interval, Duration::ZERO);
    }
}
