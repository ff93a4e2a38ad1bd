//! Types and rules of the chat domain: conversations, messages, threads and the checks
//! every input goes through. Nothing here does I/O, so every rule is unit-testable and the
//! same whether a request came over REST, Socket.IO or the internal API.

pub mod attachment;
pub mod audit;
mod conversation;
mod id;
mod message;
mod sanitize;
mod search;
pub mod time;

pub use conversation::*;
pub use id::*;
pub use message::*;
pub use sanitize::{sanitize_json_strings, sanitize_text};
pub use search::*;

use serde::Serialize;

/// A rule broken by client input. `details` lists each offending field so clients can show
/// it; the message is the short sentence the deployed clients already display.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValidationError {
    pub message: String,
    pub details: Vec<FieldError>,
}

/// One field of invalid input and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl ValidationError {
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into(), details: Vec::new() }
    }

    pub fn field(message: impl Into<String>, field: &str, problem: impl Into<String>) -> Self {
        Self::new(message).with(field, problem)
    }

    pub fn with(mut self, field: &str, problem: impl Into<String>) -> Self {
        self.details.push(FieldError { field: field.to_string(), message: problem.into() });
        self
    }
}

impl std::fmt::Display for ValidationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        for d in &self.details {
            write!(f, "; {}: {}", d.field, d.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationError {}

/// Refuses control characters (NUL, escapes, line breaks...) in ids, labels and search text.
/// They mean nothing there, and the stores would disagree about them: MongoDB refuses a NUL
/// inside a regular expression, SQLite would match it.
pub fn refuse_control_chars<'s>(message: &str, field: &str, s: &'s str) -> Result<&'s str, ValidationError> {
    if s.chars().any(char::is_control) {
        return Err(ValidationError::field(message, field, "must not contain control characters"));
    }
    Ok(s)
}

/// Checks client-supplied metadata: field names must not start with `$` or contain `.`
/// (a document database reads those as operators and paths), nor be empty, at any depth.
fn check_metadata(field: &str, metadata: &serde_json::Map<String, serde_json::Value>) -> Result<(), ValidationError> {
    fn walk(v: &serde_json::Value, depth: usize) -> Result<(), &'static str> {
        if depth > 20 {
            return Err("is nested too deeply");
        }
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    if k.is_empty() || k.starts_with('$') || k.contains('.') || k.contains('\0') {
                        return Err("has a field name that is empty, starts with $ or contains a dot");
                    }
                    walk(v, depth + 1)?;
                }
                Ok(())
            }
            serde_json::Value::Array(items) => items.iter().try_for_each(|v| walk(v, depth + 1)),
            _ => Ok(()),
        }
    }
    let as_value = serde_json::Value::Object(metadata.clone());
    walk(&as_value, 0).map_err(|problem| ValidationError::field("Validation failed", field, problem))
}

/// Client-supplied metadata, checked (`check_metadata`) and with every string value cleaned
/// of unsafe markup, at any depth, as content is.
pub fn clean_metadata(
    field: &str,
    metadata: serde_json::Map<String, serde_json::Value>,
) -> Result<serde_json::Map<String, serde_json::Value>, ValidationError> {
    check_metadata(field, &metadata)?;
    Ok(metadata.into_iter().map(|(k, v)| (k, sanitize_json_strings(v))).collect())
}

#[cfg(test)]
mod metadata_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn metadata_field_names_cannot_be_operators_or_paths() {
        let ok = json!({ "source": "web", "custom": { "a": [1, { "b": 2 }] } });
        assert!(check_metadata("metadata", ok.as_object().unwrap()).is_ok());
        for bad in [json!({ "$set": 1 }), json!({ "a.b": 1 }), json!({ "x": { "$gt": "" } }), json!({ "x": [{ "": 1 }] })] {
            assert!(check_metadata("metadata", bad.as_object().unwrap()).is_err(), "{bad}");
        }
    }

    #[test]
    fn metadata_strings_are_cleaned() {
        let raw = json!({ "note": "<b onclick=x()>hi</b>", "list": ["<script>x</script>", 2] });
        let clean = clean_metadata("metadata", raw.as_object().unwrap().clone()).unwrap();
        assert_eq!(serde_json::Value::Object(clean), json!({ "note": "<b>hi</b>", "list": ["", 2] }));
        assert!(clean_metadata("metadata", json!({ "$set": "x" }).as_object().unwrap().clone()).is_err());
    }
}
