//! XSS protection for user text. Content, titles, attachment names and metadata strings are
//! stored and broadcast already clean, so no reader (dashboard, widget, a sibling service)
//! has to remember to escape them.

use std::sync::LazyLock;

use ammonia::Builder;
use serde_json::Value;

static CLEANER: LazyLock<Builder<'static>> = LazyLock::new(|| {
    let mut b = Builder::default();
    // Only links that cannot run code survive; `javascript:` and `data:` URLs are dropped.
    b.url_schemes(["http", "https", "mailto", "tel"].into_iter().collect());
    b.link_rel(Some("noopener noreferrer nofollow"));
    b
});

/// Removes dangerous tags (script, style, iframe...), event-handler attributes and unsafe URLs;
/// the text itself stays. Plain text without markup comes back unchanged except that `<`, `>`
/// and `&` that would form markup are escaped.
pub fn sanitize_text(input: &str) -> String {
    // Fast path: nothing that could be markup, nothing to clean. Most chat text takes it.
    if !input.contains(['<', '>', '&']) {
        return input.to_string();
    }
    CLEANER.clean(input).to_string()
}

/// `sanitize_text` on every string of a JSON value that contains `<` or `>`, at any depth;
/// other strings, keys, numbers, booleans and nulls stay as they are.
pub fn sanitize_json_strings(value: Value) -> Value {
    match value {
        // Only strings that could hold a tag: sibling services keep reading URLs and other
        // values with a bare `&` exactly as they were written.
        Value::String(s) if s.contains(['<', '>']) => Value::String(sanitize_text(&s)),
        Value::Array(items) => Value::Array(items.into_iter().map(sanitize_json_strings).collect()),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, sanitize_json_strings(v))).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_scripts_and_handlers_keeps_text() {
        let out = sanitize_text("hello <script>alert(1)</script><b onclick=\"x()\">bold</b>");
        assert!(!out.contains("script"));
        assert!(!out.contains("onclick"));
        assert!(out.contains("hello"));
        assert!(out.contains("bold"));
    }

    #[test]
    fn removes_javascript_urls() {
        let out = sanitize_text("<a href=\"javascript:alert(1)\">x</a>");
        assert!(!out.contains("javascript"));
        let out = sanitize_text("<img src=x onerror=alert(1)>");
        assert!(!out.contains("onerror"));
    }

    #[test]
    fn json_strings_at_any_depth() {
        let v = serde_json::json!({ "a": "<script>x</script>ok", "b": [1, { "c": "<img src=x onerror=y()>" }], "d": true });
        let clean = sanitize_json_strings(v);
        assert_eq!(clean, serde_json::json!({ "a": "ok", "b": [1, { "c": "<img src=\"x\">" }], "d": true }));
    }

    #[test]
    fn json_strings_without_markup_keep_their_ampersands() {
        let v = serde_json::json!({ "source_url": "https://x.test/?a=1&b=2" });
        assert_eq!(sanitize_json_strings(v.clone()), v);
    }

    #[test]
    fn plain_text_is_untouched() {
        assert_eq!(sanitize_text("just words, 100% plain"), "just words, 100% plain");
    }
}
