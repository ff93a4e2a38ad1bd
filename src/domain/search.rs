//! Message search: what a query means (words and "quoted phrases", every one required), how it
//! is handed to each store without any of its syntax reaching them, which text of a message
//! is searched, and the highlighted snippet a hit carries. Both stores and both MongoDB paths
//! share these rules, so a query means the same wherever it runs.

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::time::Timestamp;
use super::{clean_filter_text, Message, ValidationError};

/// Default and largest page of search hits.
pub const DEFAULT_SEARCH_LIMIT: u32 = 20;
pub const MAX_SEARCH_LIMIT: u32 = 100;
/// More distinct terms than this in one query are refused.
pub const MAX_SEARCH_TERMS: usize = 16;
/// About how many characters of text a snippet shows around the first hit.
const SNIPPET_CHARS: usize = 160;

/// A parsed query: each term is one word or the words of a phrase, lowercased. A message
/// matches when it contains every term (a phrase's words next to each other, in order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    terms: Vec<Vec<String>>,
}

impl SearchQuery {
    /// The terms of `raw`; `None` when it holds no word at all (only punctuation, say).
    /// Words are runs of letters and digits, as the SQLite tokenizer sees them; anything
    /// else separates them. An unclosed quote runs to the end.
    pub fn parse(raw: &str) -> Option<SearchQuery> {
        let mut terms: Vec<Vec<String>> = Vec::new();
        let push = |words: Vec<String>, terms: &mut Vec<Vec<String>>| {
            if !words.is_empty() && !terms.contains(&words) {
                terms.push(words);
            }
        };
        for (i, part) in raw.split('"').enumerate() {
            let words = words_of(part).map(|(_, w)| w).collect::<Vec<_>>();
            if i % 2 == 1 {
                push(words, &mut terms);
            } else {
                for w in words {
                    push(vec![w], &mut terms);
                }
            }
        }
        (!terms.is_empty()).then_some(SearchQuery { terms })
    }

    /// A checked `q`: trimmed, at most 200 characters, no control characters, at least one
    /// word, at most `MAX_SEARCH_TERMS` terms.
    pub fn from_param(raw: Option<&str>) -> Result<SearchQuery, ValidationError> {
        let q = clean_filter_text("q", raw)?
            .ok_or_else(|| ValidationError::field("Validation failed", "q", "is required"))?;
        let query = SearchQuery::parse(&q)
            .ok_or_else(|| ValidationError::field("Validation failed", "q", "must contain a word"))?;
        if query.terms.len() > MAX_SEARCH_TERMS {
            return Err(ValidationError::field(
                "Validation failed",
                "q",
                format!("must have at most {MAX_SEARCH_TERMS} words or phrases"),
            ));
        }
        Ok(query)
    }

    pub fn terms(&self) -> &[Vec<String>] {
        &self.terms
    }

    /// Every distinct word of every term.
    pub fn words(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for w in self.terms.iter().flatten() {
            if !out.contains(&w.as_str()) {
                out.push(w);
            }
        }
        out
    }

    /// An FTS5 MATCH expression: each term a quoted string (`"a" "b c"`), which FTS5 reads as
    /// a phrase and never as syntax, joined by the implicit AND. Words hold only letters and
    /// digits, and a quote would be doubled anyway.
    pub fn fts5_match(&self) -> String {
        self.terms.iter().map(|t| quoted(&t.join(" "), "\"\"")).collect::<Vec<_>>().join(" ")
    }

    /// A MongoDB `$text` `$search` string: every term quoted, so each is a required phrase
    /// (several phrases are ANDed) and no `-` negation can arise.
    pub fn mongo_text_search(&self) -> String {
        self.terms.iter().map(|t| quoted(&t.join(" "), "")).collect::<Vec<_>>().join(" ")
    }

    /// Whether a message's content contains every term, word for word as `parse` splits
    /// words, ignoring case. The regex fallback on MongoDB uses this to turn its substring
    /// candidates into the same whole-word matches FTS5 finds.
    pub fn matches(&self, content: &str) -> bool {
        let words: Vec<String> = words_of(&searchable_text(content)).map(|(_, w)| w).collect();
        self.terms.iter().all(|term| words.windows(term.len()).any(|window| window == term.as_slice()))
    }

    /// A piece of the message's text around the first hit: the text (markup removed,
    /// character references decoded) HTML-escaped, then every matched word wrapped in
    /// `<mark>…</mark>`; `…` marks cut ends. Nothing of the message's own markup survives, so
    /// the snippet is safe to insert as HTML.
    pub fn snippet(&self, content: &str) -> String {
        let text = searchable_text(content);
        let words: Vec<((usize, usize), String)> = words_of(&text).collect();
        let mut marked = vec![false; words.len()];
        for term in &self.terms {
            for start in 0..words.len().saturating_sub(term.len() - 1) {
                if words[start..start + term.len()].iter().map(|(_, w)| w).eq(term.iter()) {
                    marked[start..start + term.len()].iter_mut().for_each(|m| *m = true);
                }
            }
        }
        // A window of about SNIPPET_CHARS characters starting a little before the first hit,
        // on character boundaries.
        let first = marked.iter().position(|m| *m).map(|i| words[i].0.0).unwrap_or(0);
        let chars: Vec<(usize, char)> = text.char_indices().collect();
        let first_char = chars.iter().position(|(b, _)| *b >= first).unwrap_or(0);
        let start_char = first_char.saturating_sub(SNIPPET_CHARS / 4).min(chars.len().saturating_sub(SNIPPET_CHARS));
        let end_char = (start_char + SNIPPET_CHARS).min(chars.len());
        let start = chars.get(start_char).map(|c| c.0).unwrap_or(text.len());
        let end = chars.get(end_char).map(|c| c.0).unwrap_or(text.len());

        let mut out = String::with_capacity(end - start + 32);
        if start > 0 {
            out.push('…');
        }
        let mut at = start;
        for (((from, to), _), mark) in words.iter().zip(&marked) {
            if !*mark || *to <= start || *from >= end {
                continue;
            }
            let (from, to) = ((*from).max(start), (*to).min(end));
            escape_into(&mut out, &text[at..from]);
            out.push_str("<mark>");
            escape_into(&mut out, &text[from..to]);
            out.push_str("</mark>");
            at = to;
        }
        escape_into(&mut out, &text[at..end]);
        if end < text.len() {
            out.push('…');
        }
        out
    }
}

/// What a message search looks for and where: always one company; optionally one
/// conversation, one thread, a range of `created_at`, and the position to continue after.
#[derive(Debug, Clone)]
pub struct MessageSearch {
    pub query: SearchQuery,
    pub company_id: String,
    pub conversation_id: Option<String>,
    pub thread_id: Option<String>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    /// Continue after this hit (the previous page's last).
    pub after: Option<SearchPosition>,
    pub limit: u32,
}

/// Where a hit stands in the ranking: a higher score first, then a higher id. Scores are the
/// store's own (see README "Search"); only their order means anything. MongoDB continues after
/// the score and id (a text score or a creation time does not change as other messages come
/// and go); SQLite skips `seen` hits instead, because BM25 scores all shift a little with
/// every message indexed while their order barely does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchPosition {
    #[serde(rename = "s")]
    pub score: f64,
    #[serde(rename = "i")]
    pub id: String,
    /// Hits on the pages before.
    #[serde(rename = "n")]
    pub seen: u64,
}

/// One message found, with its place in the ranking.
#[derive(Debug, Clone)]
pub struct SearchHit {
    pub message: Message,
    pub score: f64,
}

/// The opaque `cursor` of a search page: where the next page starts, and the moment the first
/// page was asked for, so messages stored since do not shift later pages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchCursor {
    #[serde(flatten)]
    pub after: SearchPosition,
    /// `created_at` bound in epoch milliseconds.
    #[serde(rename = "u")]
    pub until: i64,
}

impl SearchCursor {
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    pub fn decode(raw: &str) -> Result<SearchCursor, ValidationError> {
        let invalid = || ValidationError::field("Validation failed", "cursor", "is not a cursor this search returned");
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(raw.trim()).map_err(|_| invalid())?;
        let cursor: SearchCursor = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
        if !cursor.after.score.is_finite() || super::parse_object_id("cursor", &cursor.after.id).is_err() {
            return Err(invalid());
        }
        Ok(cursor)
    }
}

fn quoted(s: &str, doubled_quote: &str) -> String {
    let inner = if doubled_quote.is_empty() { s.replace('"', " ") } else { s.replace('"', doubled_quote) };
    format!("\"{inner}\"")
}

/// The words of `text` with their byte ranges, lowercased.
fn words_of(text: &str) -> impl Iterator<Item = ((usize, usize), String)> + '_ {
    let mut chars = text.char_indices().peekable();
    std::iter::from_fn(move || {
        while let Some(&(_, c)) = chars.peek() {
            if c.is_alphanumeric() {
                break;
            }
            chars.next();
        }
        let (start, _) = *chars.peek()?;
        let mut end = start;
        while let Some(&(i, c)) = chars.peek() {
            if !c.is_alphanumeric() {
                break;
            }
            end = i + c.len_utf8();
            chars.next();
        }
        Some(((start, end), text[start..end].to_lowercase()))
    })
}

/// The text a reader sees in sanitized content: tags dropped (as a space, so words on either
/// side stay apart), the character references the sanitizer writes decoded. This is what the
/// SQLite index holds and what snippets are cut from.
pub fn searchable_text(content: &str) -> String {
    if !content.contains(['<', '&']) {
        return content.to_string();
    }
    let mut out = String::with_capacity(content.len());
    let mut rest = content;
    while let Some(i) = rest.find(['<', '&']) {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if rest.starts_with('<') {
            match rest.find('>') {
                Some(end) => {
                    out.push(' ');
                    rest = &rest[end + 1..];
                }
                None => {
                    out.push_str(rest);
                    rest = "";
                }
            }
            continue;
        }
        let decoded = rest.find(';').filter(|end| *end <= 10).and_then(|end| Some((decode_reference(&rest[1..end])?, end)));
        match decoded {
            Some((c, end)) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    // Tags became spaces: runs of white space are one, as a browser shows them.
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn decode_reference(name: &str) -> Option<char> {
    match name {
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        "nbsp" => Some('\u{a0}'),
        _ => {
            let n = name.strip_prefix('#')?;
            let code = match n.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => n.parse().ok()?,
            };
            char::from_u32(code).filter(|c| !c.is_control())
        }
    }
}

fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(q: &str) -> Vec<Vec<String>> {
        SearchQuery::parse(q).map(|q| q.terms).unwrap_or_default()
    }

    #[test]
    fn words_and_phrases() {
        assert_eq!(terms("Refund  please"), vec![vec!["refund"], vec!["please"]]);
        assert_eq!(terms("\"credit card\" refund"), vec![vec!["credit", "card"], vec!["refund"]]);
        assert_eq!(terms("e-mail"), vec![vec!["e"], vec!["mail"]]);
        assert_eq!(terms("\"unclosed phrase"), vec![vec!["unclosed", "phrase"]]);
        assert_eq!(terms("a a \"a\""), vec![vec!["a"]]);
        assert!(SearchQuery::parse("!!! \"\" -").is_none());
    }

    #[test]
    fn query_syntax_never_reaches_the_stores() {
        let q = SearchQuery::parse("NEAR(a b) OR c* -d \"e AND\" f:g ^h $where").unwrap();
        assert_eq!(q.fts5_match(), "\"near\" \"a\" \"b\" \"or\" \"c\" \"d\" \"e and\" \"f\" \"g\" \"h\" \"where\"");
        assert_eq!(q.mongo_text_search(), "\"near\" \"a\" \"b\" \"or\" \"c\" \"d\" \"e and\" \"f\" \"g\" \"h\" \"where\"");
        assert_eq!(quoted("a\"b", "\"\""), "\"a\"\"b\"");
    }

    #[test]
    fn parameter_rules() {
        assert!(SearchQuery::from_param(None).is_err());
        assert!(SearchQuery::from_param(Some("  ")).is_err());
        assert!(SearchQuery::from_param(Some("a\u{0}b")).is_err());
        assert!(SearchQuery::from_param(Some("?!")).is_err());
        let many = (0..17).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ");
        assert!(SearchQuery::from_param(Some(&many)).is_err());
        assert!(SearchQuery::from_param(Some("ok")).is_ok());
    }

    #[test]
    fn matching_is_whole_words_and_adjacent_phrases() {
        let q = SearchQuery::parse("\"credit card\" refund").unwrap();
        assert!(q.matches("Refund to my CREDIT card, please"));
        assert!(!q.matches("card credit refund"));
        assert!(!q.matches("credit card refunds"));
        assert!(SearchQuery::parse("fish").unwrap().matches("fish &amp; chips"));
        assert!(!SearchQuery::parse("amp").unwrap().matches("fish &amp; chips"));
        assert!(SearchQuery::parse("bold").unwrap().matches("<b>bold</b>text"));
        assert!(!SearchQuery::parse("boldtext").unwrap().matches("<b>bold</b>text"));
    }

    #[test]
    fn snippets_escape_then_mark() {
        let q = SearchQuery::parse("script").unwrap();
        assert_eq!(q.snippet("the &lt;script&gt; tag"), "the &lt;<mark>script</mark>&gt; tag");
        let q = SearchQuery::parse("\"new card\" bold").unwrap();
        assert_eq!(
            q.snippet("<b>Bold</b> new card, not card new; new cards"),
            "<mark>Bold</mark> <mark>new</mark> <mark>card</mark>, not card new; new cards"
        );
        let long = format!("{} needle {}", "x ".repeat(200), "y ".repeat(200));
        let s = SearchQuery::parse("needle").unwrap().snippet(&long);
        assert!(s.starts_with('…') && s.ends_with('…') && s.contains("<mark>needle</mark>"), "{s}");
        assert!(s.chars().count() < 200);
        let s = SearchQuery::parse("é").unwrap().snippet(&"é".repeat(400));
        assert!(s.ends_with('…'));
    }

    #[test]
    fn cursor_round_trip_and_tampering() {
        let c = SearchCursor { after: SearchPosition { score: -1.25e-6, id: "65a1b2c3d4e5f6a7b8c9d0e1".into(), seen: 3 }, until: 42 };
        assert_eq!(SearchCursor::decode(&c.encode()).unwrap(), c);
        assert!(SearchCursor::decode("not a cursor").is_err());
        let bad = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"s":1,"i":"x","n":1,"u":1}"#);
        assert!(SearchCursor::decode(&bad).is_err());
    }
}
