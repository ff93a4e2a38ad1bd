//! Timestamps. The contract's JSON carries ISO-8601 UTC with milliseconds, as JavaScript's
//! `Date.prototype.toISOString` writes them; stores keep millisecond precision too.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};

pub type Timestamp = DateTime<Utc>;

/// Now, truncated to milliseconds so a value read back from any store equals what was written.
pub fn now() -> Timestamp {
    from_millis(Utc::now().timestamp_millis())
}

pub fn from_millis(ms: i64) -> Timestamp {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

pub fn to_iso(t: &Timestamp) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses what clients send as a date: RFC 3339, a bare `YYYY-MM-DD` (start of that day, UTC)
/// or epoch milliseconds.
pub fn parse_client_date(s: &str) -> Option<Timestamp> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(from_millis(t.with_timezone(&Utc).timestamp_millis()));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Some(d.and_hms_opt(0, 0, 0)?.and_utc());
    }
    if let Ok(ms) = s.parse::<i64>() {
        return Some(from_millis(ms));
    }
    None
}

/// serde helpers for `Timestamp` fields written as ISO strings.
pub mod iso {
    use super::*;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&to_iso(t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let s = String::deserialize(d)?;
        parse_client_date(&s).ok_or_else(|| serde::de::Error::custom("invalid date"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_has_milliseconds_and_z() {
        let t = from_millis(1_700_000_000_123);
        assert_eq!(to_iso(&t), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn client_dates() {
        assert_eq!(parse_client_date("2024-01-02").map(|t| to_iso(&t)).unwrap(), "2024-01-02T00:00:00.000Z");
        assert!(parse_client_date("2024-01-02T03:04:05+02:00").is_some());
        assert!(parse_client_date("yesterday").is_none());
    }
}
