//! The last warnings and errors the process logged, for the admin console: a tracing layer
//! that copies each WARN and ERROR event into a ring buffer of `CAPACITY` entries. Logging
//! goes on as configured (`RUST_LOG`); this keeps a copy whatever the filter lets through.
//! Warnings are rare, so a mutex around the buffer costs nothing that matters.

use std::collections::VecDeque;
use std::fmt::Write;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// Entries kept; older ones are dropped.
pub const CAPACITY: usize = 100;
/// Longest text kept of one field, so a huge error cannot make the buffer large.
const MAX_FIELD_CHARS: usize = 2000;

#[derive(Debug, Clone, Serialize)]
pub struct LoggedEvent {
    /// ISO-8601 UTC, milliseconds.
    pub at: String,
    /// `WARN` or `ERROR`.
    pub level: &'static str,
    /// The module that logged it.
    pub target: String,
    pub message: String,
    /// The event's other fields, as text.
    pub fields: Map<String, Value>,
}

#[derive(Debug, Default)]
pub struct RecentErrors {
    entries: Mutex<VecDeque<LoggedEvent>>,
}

impl RecentErrors {
    /// The layer that fills `self`; give it a `WARN` filter.
    pub fn layer(self: &Arc<Self>) -> RecentErrorsLayer {
        RecentErrorsLayer(self.clone())
    }

    /// Newest first.
    pub fn list(&self) -> Vec<LoggedEvent> {
        self.lock().iter().rev().cloned().collect()
    }

    fn push(&self, event: LoggedEvent) {
        let mut entries = self.lock();
        if entries.len() == CAPACITY {
            entries.pop_front();
        }
        entries.push_back(event);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<LoggedEvent>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct RecentErrorsLayer(Arc<RecentErrors>);

impl<S: Subscriber> Layer<S> for RecentErrorsLayer {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let level = match *event.metadata().level() {
            Level::ERROR => "ERROR",
            Level::WARN => "WARN",
            _ => return,
        };
        let mut fields = Fields::default();
        event.record(&mut fields);
        self.0.push(LoggedEvent {
            at: crate::domain::time::to_iso(&crate::domain::time::now()),
            level,
            target: event.metadata().target().to_string(),
            message: fields.message,
            fields: fields.others,
        });
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    others: Map<String, Value>,
}

impl Fields {
    fn put(&mut self, field: &Field, mut text: String) {
        if let Some((cut, _)) = text.char_indices().nth(MAX_FIELD_CHARS) {
            text.truncate(cut);
            text.push('…');
        }
        if field.name() == "message" {
            self.message = text;
        } else {
            self.others.insert(field.name().to_string(), Value::String(text));
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        self.put(field, text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn keeps_the_last_warnings_and_errors_newest_first() {
        let recent = Arc::new(RecentErrors::default());
        let subscriber = tracing_subscriber::registry().with(recent.layer());
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("not kept");
            for i in 0..CAPACITY + 5 {
                tracing::warn!(attempt = i, "warning {i}");
            }
            tracing::error!(error = %"x".repeat(5000), "store down");
        });
        let list = recent.list();
        assert_eq!(list.len(), CAPACITY);
        assert_eq!((list[0].level, list[0].message.as_str()), ("ERROR", "store down"));
        assert_eq!(list[0].fields["error"].as_str().unwrap().chars().count(), MAX_FIELD_CHARS + 1);
        assert_eq!(list[1].message, format!("warning {}", CAPACITY + 4));
        assert_eq!(list[1].fields["attempt"], Value::String((CAPACITY + 4).to_string()));
        assert_eq!(list.last().unwrap().message, "warning 6");
    }
}
