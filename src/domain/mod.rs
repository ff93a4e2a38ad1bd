//! Types and rules of the chat domain: conversations, messages, threads and the checks
//! every input goes through. Nothing here does I/O, so every rule is unit-testable and the
//! same whether a request came over REST, Socket.IO or the internal API.

mod conversation;
mod id;
mod message;
mod sanitize;
pub mod time;

pub use conversation::*;
pub use id::*;
pub use message::*;
pub use sanitize::sanitize_text;

use serde::Serialize;

/// A rule broken by client input. `details` lists each offending field so clients can show
/// it; the message is the short sentence the deployed clients already display.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValidationError {
    pub message: String,
    pub details: Vec<FieldError>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
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
