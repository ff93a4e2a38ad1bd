//! Document ids. Every store hands out 24-hex ObjectId strings so documents move between the
//! SQLite and MongoDB stores, and so ids from the deployed service keep working.

use serde_json::Value;

use super::ValidationError;

/// A fresh ObjectId as 24 lowercase hex characters (timestamp, random, counter).
pub fn new_object_id() -> String {
    bson::oid::ObjectId::new().to_hex()
}

/// True for a well-formed ObjectId hex string.
pub fn is_object_id(s: &str) -> bool {
    s.len() == 24 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Checks a conversation or message id taken from a path or payload.
pub fn parse_object_id(field: &str, s: &str) -> Result<String, ValidationError> {
    if is_object_id(s) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(ValidationError::field("Invalid id", field, "must be a 24-character hex id"))
    }
}

/// Ids arrive inside JSON from untrusted clients: anything but a string (for example the
/// operator object `{"$gt": ""}`) is refused here, before it can reach a query.
pub fn id_from_value(field: &str, v: Option<&Value>) -> Result<String, ValidationError> {
    match v {
        Some(Value::String(s)) => parse_object_id(field, s),
        Some(_) => Err(ValidationError::field("Invalid id", field, "must be a string")),
        None => Err(ValidationError::field("Invalid id", field, "is required")),
    }
}

/// Thread ids are UUIDs; they are checked for shape only, existence is the service's job.
pub fn parse_thread_id(field: &str, s: &str) -> Result<String, ValidationError> {
    let ok = !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(s.to_string())
    } else {
        Err(ValidationError::field("Invalid id", field, "is not a valid thread id"))
    }
}

/// A user id named by a client (participants, agent, contact, sender): a bounded string
/// without markup or control characters.
pub fn clean_user_id(field: &str, raw: &str) -> Result<String, ValidationError> {
    let s = raw.trim();
    // Ids are echoed to every socket in the room (`participant:added`): no markup at all, not
    // even the tags the content sanitizer would keep. Control characters would make the id
    // unmatchable by the filters, which refuse them.
    if s.is_empty() || s.chars().count() > 128 || s.contains(['<', '>', '&']) || s.chars().any(char::is_control) {
        return Err(ValidationError::field("Validation failed", field, "must be a user id of 1 to 128 plain characters"));
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn new_ids_are_object_ids_and_unique() {
        let a = new_object_id();
        let b = new_object_id();
        assert!(is_object_id(&a));
        assert_ne!(a, b);
    }

    #[test]
    fn operator_objects_are_refused() {
        let v = json!({"$gt": ""});
        assert!(id_from_value("conversationId", Some(&v)).is_err());
        assert!(id_from_value("conversationId", Some(&json!(12))).is_err());
        assert!(id_from_value("conversationId", None).is_err());
        assert!(parse_object_id("id", "zzzzzzzzzzzzzzzzzzzzzzzz").is_err());
        assert!(parse_object_id("id", "abc").is_err());
        assert_eq!(
            id_from_value("c", Some(&json!("65A1B2C3D4E5F6A7B8C9D0E1"))).unwrap(),
            "65a1b2c3d4e5f6a7b8c9d0e1"
        );
    }

    #[test]
    fn user_ids() {
        assert!(clean_user_id("u", "user-1").is_ok());
        assert!(clean_user_id("u", "<b>x</b>").is_err());
        assert!(clean_user_id("u", "").is_err());
        assert!(clean_user_id("u", "a\u{0}b").is_err());
        assert!(clean_user_id("u", "a\nb").is_err());
    }

    #[test]
    fn thread_ids_are_shape_checked() {
        assert!(parse_thread_id("t", "6f1c0d4e-1b2a-4c3d-8e9f-0a1b2c3d4e5f").is_ok());
        assert!(parse_thread_id("t", "").is_err());
        assert!(parse_thread_id("t", "a b").is_err());
        assert!(parse_thread_id("t", "{\"$ne\":1}").is_err());
    }
}
