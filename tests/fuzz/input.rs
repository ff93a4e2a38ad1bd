//! Random inputs shared by the REST and Socket.IO fuzzers: JSON text (well-formed, malformed,
//! deeply nested, huge, odd unicode and escapes), strings, ids, query strings and tokens.
//! JSON is built as text rather than as `serde_json::Value`, so that it can carry what a
//! `Value` cannot: unpaired surrogate escapes, duplicate keys, numbers out of range, nesting
//! past any parser's limit. Everything is drawn from the caller's seeded generator.

use rand::distr::uniform::SampleRange;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, RngCore};
use serde_json::json;

use crate::common;

/// Ids that exist on the server, created before fuzzing starts. Inputs refer to them by
/// position, so a seed picks the same ones on every run whatever ids the server assigned.
pub struct Known {
    pub company: &'static str,
    /// Conversations of `company` no generated request deletes, so that requests keep
    /// reaching the code behind the existence checks for the whole run.
    pub conversations: Vec<String>,
    /// Conversations of `company` that `DELETE /api/conversations/:id` may remove.
    pub disposable: Vec<String>,
    /// A conversation of another company.
    pub foreign: String,
    pub messages: Vec<String>,
    pub threads: Vec<String>,
    pub tokens: Vec<Token>,
}

/// One way of presenting (or not) an identity.
pub struct Token {
    pub name: &'static str,
    /// The whole `Authorization` header value, `None` for no header.
    pub header: Option<Vec<u8>>,
    /// The token itself as a socket handshake would carry it in `auth.token`.
    pub socket: Option<String>,
    /// The server should accept a socket CONNECT with this token.
    pub valid_for_socket: bool,
}

pub const USERS: [&str; 3] = ["alice", "bob", "carol"];

/// Expiry of the tokens that have not expired (2100-01-01), fixed rather than relative to now
/// so that a seed's inputs are the same bytes on every run.
const VALID_UNTIL: u64 = 4_102_444_800;
/// Expiry of the expired token (2020-09-13).
const EXPIRED_AT: u64 = 1_600_000_000;

impl Known {
    /// The identities the fuzzers present; the widget tokens name `conversation`.
    pub fn tokens(company: &str, conversation: &str) -> Vec<Token> {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let bearer = |t: &str| Some(format!("Bearer {t}").into_bytes());
        let valid = |name, token: String| Token { name, header: bearer(&token), socket: Some(token), valid_for_socket: true };
        let invalid = |name, token: String| Token { name, header: bearer(&token), socket: Some(token), valid_for_socket: false };
        let exp = VALID_UNTIL;
        let user = |id: &str, company: &str| common::sign(json!({ "sub": id, "company_id": company, "exp": exp }));
        let widget = |conversation: &str| {
            common::sign(json!({ "typ": "widget", "conversation_id": conversation, "company_id": company, "exp": exp }))
        };
        let alice = user("alice", company);
        let mut flipped = alice.clone().into_bytes();
        let middle = flipped.len() / 2;
        flipped[middle] = if flipped[middle] == b'A' { b'B' } else { b'A' };
        let legacy_widget = b64.encode(json!({ "conversationId": conversation, "companyId": company }).to_string());
        let legacy_widget_bad = b64.encode(json!({ "conversationId": { "$gt": "" }, "companyId": 7 }).to_string());
        let alg_none = format!(
            "{}.{}.",
            b64url.encode(r#"{"alg":"none","typ":"JWT"}"#),
            b64url.encode(json!({ "sub": "alice", "company_id": company, "exp": exp }).to_string())
        );
        vec![
            valid("user alice", alice.clone()),
            valid("user bob", user("bob", company)),
            valid(
                "supabase user carol",
                common::sign(json!({ "sub": "carol", "app_metadata": { "company_id": company }, "aud": "authenticated", "exp": exp })),
            ),
            valid("user of another company", user("mallory", "globex")),
            valid("user without company", common::sign(json!({ "sub": "nobody", "exp": exp }))),
            valid("signed widget", widget(conversation)),
            valid("legacy unsigned widget", legacy_widget),
            // Existence is checked per event, not at the handshake.
            valid("signed widget of a missing conversation", widget("0123456789abcdef01234567")),
            invalid("legacy widget with operator ids", legacy_widget_bad),
            invalid("expired", common::sign(json!({ "sub": "alice", "company_id": company, "exp": EXPIRED_AT }))),
            invalid(
                "wrong signature",
                common::sign_with(json!({ "sub": "alice", "company_id": company, "exp": exp }), "not-the-server-secret-0123456789"),
            ),
            invalid("alg none", alg_none),
            invalid("one character changed", String::from_utf8(flipped).unwrap()),
            invalid("garbage", "garbage".into()),
            invalid("three dots", "..".into()),
            invalid("exp as string, sub as number", common::sign(json!({ "sub": 42, "company_id": company, "exp": "tomorrow" }))),
            invalid(
                "claims with operators and NUL",
                common::sign(json!({ "sub": "a\u{0}b", "company_id": { "$gt": "" }, "exp": exp })),
            ),
            invalid("empty subject and company", common::sign(json!({ "sub": "", "company_id": "", "exp": exp }))),
            invalid(
                "widget claims of another type",
                common::sign(json!({ "typ": "widget", "conversation_id": 12, "company_id": [company], "exp": exp })),
            ),
            invalid("header only", format!("{}.", b64url.encode(r#"{"alg":"HS256"}"#))),
            invalid("internal token", common::INTERNAL_TOKEN.into()),
            invalid("internal token with a suffix", format!("{}x", common::INTERNAL_TOKEN)),
            invalid("64 KiB token", "a".repeat(64 * 1024)),
            Token { name: "empty bearer", header: Some(b"Bearer ".to_vec()), socket: Some(String::new()), valid_for_socket: false },
            Token { name: "basic auth", header: Some(b"Basic YWxpY2U6cHc=".to_vec()), socket: None, valid_for_socket: false },
            Token { name: "lowercase bearer", header: Some(format!("bearer {alice}").into_bytes()), socket: None, valid_for_socket: false },
            Token { name: "bearer twice", header: Some(format!("Bearer Bearer {alice}").into_bytes()), socket: None, valid_for_socket: false },
            Token {
                name: "non-ASCII bytes",
                header: Some([b"Bearer ".as_slice(), &[0xC3, 0xA9, 0xFF, 0x80], alice.as_bytes()].concat()),
                socket: Some(format!("é{alice}")),
                valid_for_socket: false,
            },
            Token { name: "no header", header: None, socket: None, valid_for_socket: false },
        ]
    }

    pub fn token(&self, name: &str) -> &Token {
        self.tokens.iter().find(|t| t.name == name).expect("token in the table")
    }

    /// A conversation id: mostly one that exists, else one that looks like one, else anything.
    pub fn conversation_id(&self, rng: &mut StdRng) -> String {
        match rng.random_range(0..100) {
            0..55 => self.conversations.choose(rng).unwrap().clone(),
            55..60 => self.disposable.choose(rng).unwrap().clone(),
            60..64 => self.foreign.clone(),
            64..70 => self.conversations.choose(rng).unwrap().to_ascii_uppercase(),
            70..78 => hex(rng, 24),
            78..82 => uuid(rng),
            82..86 => {
                let id = self.conversations.choose(rng).unwrap();
                let cut = rng.random_range(0..id.len());
                format!("{}{}", &id[..cut], &id[cut + 1..])
            }
            86..89 => format!("{}{}", self.conversations.choose(rng).unwrap(), rng.random_range(0..10)),
            _ => string(rng),
        }
    }

    pub fn message_id(&self, rng: &mut StdRng) -> String {
        match rng.random_range(0..100) {
            0..65 => self.messages.choose(rng).unwrap().clone(),
            65..80 => hex(rng, 24),
            80..85 => self.conversations.choose(rng).unwrap().clone(),
            _ => string(rng),
        }
    }

    pub fn thread_id(&self, rng: &mut StdRng) -> String {
        match rng.random_range(0..100) {
            0..60 => self.threads.choose(rng).unwrap().clone(),
            60..75 => uuid(rng),
            75..80 => self.threads.choose(rng).unwrap().to_ascii_uppercase(),
            80..85 => "x".repeat(rng.random_range(60..70)),
            _ => string(rng),
        }
    }

    pub fn user_id(&self, rng: &mut StdRng) -> String {
        if rng.random_bool(0.7) { USERS.choose(rng).unwrap().to_string() } else { string(rng) }
    }

    /// A JSON value for a field the server knows, mostly of the right shape.
    pub fn field_value(&self, rng: &mut StdRng, key: &str) -> String {
        if rng.random_bool(0.25) {
            return json_value(rng, 1);
        }
        let pick = |rng: &mut StdRng, options: &[&str]| quoted(options.choose(rng).unwrap());
        match key {
            "conversationId" | "conversation_id" => quoted(&self.conversation_id(rng)),
            "threadId" | "thread_id" => {
                if rng.random_bool(0.2) { "null".into() } else { quoted(&self.thread_id(rng)) }
            }
            "content" | "title" => quoted(&string(rng)),
            "messageType" | "message_type" => pick(rng, &["text", "audio", "video", "file", "image", "system", "TEXT", ""]),
            "senderType" => pick(rng, &["user", "agent", "system", "admin", ""]),
            "channel" => pick(rng, &["chat", "voice", "video", "email", "sms", "fax"]),
            "status" => pick(rng, &["active", "ended", "completed", "archived", "deleted", ""]),
            "agent_id" | "agentId" | "contact_id" | "userId" | "user_id" | "tempId" => quoted(&self.user_id(rng)),
            "companyId" => {
                if rng.random_bool(0.6) { quoted(self.company) } else { quoted(&string(rng)) }
            }
            "participants" | "tags" => {
                let n = rng.random_range(0..4);
                format!("[{}]", (0..n).map(|_| quoted(&self.user_id(rng))).collect::<Vec<_>>().join(","))
            }
            "attachments" => attachments(rng),
            "metadata" => object(rng, &["intent", "sentiment", "source", "$set", "nested", "__proto__"], 2, |rng, _| json_value(rng, 2)),
            "ended_at" | "startDate" | "endDate" => quoted(&date(rng)),
            "markAsRead" | "isTyping" => ["true", "false"].choose(rng).unwrap().to_string(),
            "reaction" => {
                if rng.random_bool(0.2) { "null".into() } else { pick(rng, &["👍", "❤️", "<b>", "", "a&b", "😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀"]) }
            }
            "limit" | "offset" => number(rng),
            "message" => object(rng, &["content", "_id", "id", "sender_type", "role", "created_at"], 3, |rng, _| json_value(rng, 2)),
            _ => json_value(rng, 1),
        }
    }

    /// A JSON object with some of `keys` (plausible values) and now and then a stray key.
    pub fn object_of(&self, rng: &mut StdRng, keys: &[&str]) -> String {
        let mut fields = Vec::new();
        for key in keys {
            if rng.random_bool(0.7) {
                fields.push(format!("{}:{}", quoted(key), self.field_value(rng, key)));
            }
        }
        if rng.random_bool(0.15) {
            let key = if rng.random_bool(0.5) { KEYS.choose(rng).unwrap().to_string() } else { string(rng) };
            fields.push(format!("{}:{}", quoted(&key), json_value(rng, 1)));
        }
        if rng.random_bool(0.03) && !fields.is_empty() {
            // The same key twice: parsers disagree on which one wins.
            let again = fields[0].clone();
            fields.push(again);
        }
        format!("{{{}}}", fields.join(","))
    }
}

/// Field names the server reads somewhere, and a few that attack prototype-based servers.
pub const KEYS: &[&str] = &[
    "conversationId", "content", "messageType", "threadId", "attachments", "tempId", "title", "isTyping", "status",
    "tags", "metadata", "ended_at", "agent_id", "agentId", "channel", "contact_id", "participants", "userId",
    "markAsRead", "reaction", "companyId", "limit", "startDate", "endDate", "senderType", "message", "token",
    "$gt", "$where", "__proto__", "constructor", "_id", "id",
];

/// `s` as a JSON string literal.
pub fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

pub fn hex(rng: &mut StdRng, len: usize) -> String {
    (0..len).map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap()).collect()
}

pub fn uuid(rng: &mut StdRng) -> String {
    format!("{}-{}-4{}-{}-{}", hex(rng, 8), hex(rng, 4), hex(rng, 3), hex(rng, 4), hex(rng, 12))
}

pub fn date(rng: &mut StdRng) -> String {
    const DATES: &[&str] = &[
        "2024-01-01T00:00:00.000Z", "2030-12-31T23:59:59Z", "1970-01-01", "2024-02-30T00:00:00Z", "2024-13-45",
        "0000-00-00T00:00:00Z", "+275760-09-13T00:00:00.000Z", "-000001-01-01T00:00:00Z", "9999-12-31T23:59:59.999Z",
        "1700000000000", "-1", "yesterday", "2024-01-01T00:00:00+25:00", "2024-01-01 00:00:00", "",
    ];
    DATES.choose(rng).unwrap().to_string()
}

pub fn number(rng: &mut StdRng) -> String {
    const NUMBERS: &[&str] = &[
        "0", "-0", "1", "-1", "50", "100", "101", "1000", "1001", "1.5", "1e3", "1e308", "1e999", "-1e999",
        "9223372036854775807", "9223372036854775808", "-9223372036854775809", "18446744073709551616",
        "123456789012345678901234567890", "0.0000001", "4294967296", "2147483648",
    ];
    if rng.random_bool(0.3) { rng.random_range(-5i64..2000).to_string() } else { NUMBERS.choose(rng).unwrap().to_string() }
}

/// A string as a user, a careless client or an attacker might send it.
pub fn string(rng: &mut StdRng) -> String {
    const SAMPLES: &[&str] = &[
        "", " ", "hello", "Hello, world!", "  padded  ", "héllo wörld", "日本語のテキスト", "🙂🙃👍🏽👨‍👩‍👧", "\u{202E}txet lrt",
        "a\u{0301}\u{0301}\u{0301}", "\u{FEFF}bom", "\u{10FFFF}\u{FFFD}\u{FFFF}", "a\u{0}b", "\u{0}", "\u{1}\u{1b}[31mred",
        "line\r\nbreak", "\t", "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "javascript:alert(1)",
        "<a href=\"javascript:x\">y</a>", "<svg/onload=alert(1)>", "<<>>&&\"\"''", "' OR '1'='1", "\"; DROP TABLE messages; --",
        "$where", "{\"$gt\":\"\"}", ".*", "(a+)+$", "\\", "%00", "%s%n%x", "../../etc/passwd", "null", "undefined",
        "NaN", "[object Object]", "true", "0", "-1", "1e999", "__proto__", "constructor", "💩\u{0}💩",
    ];
    match rng.random_range(0..100) {
        0..55 => SAMPLES.choose(rng).unwrap().to_string(),
        55..75 => random_chars(rng, 1..40),
        75..82 => hex(rng, 24),
        82..86 => uuid(rng),
        86..90 => date(rng),
        90..99 => {
            let unit = SAMPLES.choose(rng).unwrap();
            let unit = if unit.is_empty() { "x" } else { unit };
            unit.repeat(rng.random_range(2..300))
        }
        // Around the 10 000 character content limit, now and then far over.
        _ => "y".repeat(*[9_999, 10_000, 10_001, 10_001, 20_000, 100_000].choose(rng).unwrap()),
    }
}

/// Characters from all over Unicode (ASCII, controls, BMP, astral planes), as many as `len`
/// draws.
pub fn random_chars(rng: &mut StdRng, len: impl SampleRange<usize>) -> String {
    let len = rng.random_range(len);
    (0..len)
        .map(|_| match rng.random_range(0..10) {
            0..5 => rng.random_range(0x20u32..0x7f),
            5 => rng.random_range(0u32..0x20),
            6..8 => rng.random_range(0x80u32..0xD800),
            8 => rng.random_range(0xE000u32..0x10000),
            _ => rng.random_range(0x10000u32..0x110000),
        })
        .filter_map(char::from_u32)
        .collect()
}

/// `len` random bytes. Long runs come from a cheap generator seeded from `rng`: the debug
/// build's ChaCha would otherwise cost more than everything else the test sends.
pub fn random_bytes(rng: &mut StdRng, len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    if len <= 256 {
        rng.fill_bytes(&mut bytes);
        return bytes;
    }
    let mut state = rng.next_u64();
    for chunk in bytes.chunks_mut(8) {
        state = crate::splitmix64(state);
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    bytes
}

/// A random JSON value as text; `depth` bounds ordinary nesting (deep nesting is its own case).
pub fn json_value(rng: &mut StdRng, depth: u32) -> String {
    match rng.random_range(0..100) {
        0..10 => ["null", "true", "false"].choose(rng).unwrap().to_string(),
        10..25 => number(rng),
        25..55 => quoted(&string(rng)),
        55..60 => raw_string_literal(rng),
        60..73 if depth < 4 => {
            let n = rng.random_range(0..5);
            format!("[{}]", (0..n).map(|_| json_value(rng, depth + 1)).collect::<Vec<_>>().join(","))
        }
        73..90 if depth < 4 => {
            let fields = rng.random_range(0..5);
            object(rng, KEYS, fields, |rng, d| json_value(rng, d + depth))
        }
        90..94 => deep_nesting(rng),
        94 if rng.random_ratio(1, 4) => quoted(&"z".repeat(rng.random_range(10_001..100_000))),
        95..100 => malformed(rng),
        _ => quoted(&string(rng)),
    }
}

/// An object of up to `max_fields` fields named from `keys` (or at random).
fn object(rng: &mut StdRng, keys: &[&str], max_fields: usize, mut value: impl FnMut(&mut StdRng, u32) -> String) -> String {
    let n = rng.random_range(0..=max_fields);
    let fields: Vec<String> = (0..n)
        .map(|_| {
            let key = if rng.random_bool(0.8) { keys.choose(rng).unwrap().to_string() } else { string(rng) };
            format!("{}:{}", quoted(&key), value(rng, 1))
        })
        .collect();
    format!("{{{}}}", fields.join(","))
}

/// String literals a `Value` cannot hold or that stress unescaping.
fn raw_string_literal(rng: &mut StdRng) -> String {
    const LITERALS: &[&str] = &[
        r#""\ud800""#, r#""\udfff\ud800""#, r#""\u0000\u0000""#, r#""\uD83D\uDE00""#, r#""\/\b\f\n\r\t""#,
        r#""\x41""#, r#""\u12""#, r#""\""#, "\"tab\there\"", "\"raw\u{1}control\"", r#""\uFFFF""#,
    ];
    LITERALS.choose(rng).unwrap().to_string()
}

/// Arrays or objects nested around and past the usual parser recursion limit (128).
fn deep_nesting(rng: &mut StdRng) -> String {
    let depth = *[64, 127, 128, 129, 1_000, 20_000].choose(rng).unwrap();
    if rng.random_bool(0.5) {
        format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
    } else {
        format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth))
    }
}

/// Text that is not JSON, or JSON that parsers treat differently.
pub fn malformed(rng: &mut StdRng) -> String {
    const BROKEN: &[&str] = &[
        "", "{", "}", "[", "[1,]", "{\"a\":}", "{\"a\" 1}", "NaN", "Infinity", "undefined", "'single'", "{a:1}",
        "\"unterminated", "[1 2]", "tru", "nul", "0x10", "+1", ".5", "1.", "--1", "01", "/* comment */ 1",
        "{\"a\":1,\"a\":2}", "[\"a\"]]", "{}{}", "\u{0}", "\u{FEFF}{}", "[,]", "{\"\":\"\"}", "-",
    ];
    BROKEN.choose(rng).unwrap().to_string()
}

/// Attachments as the contract allows (array of entries, or that array as a JSON string) and not.
fn attachments(rng: &mut StdRng) -> String {
    let entry = |rng: &mut StdRng| {
        let url = ["https://cdn.example.com/a.png", "javascript:alert(1)", "", "data:text/html,<script>x</script>"]
            .choose(rng)
            .unwrap()
            .to_string();
        format!(
            r#"{{"url":{},"type":{},"name":{},"size":{}}}"#,
            quoted(&url),
            quoted(["image", "file", "audio", ""].choose(rng).unwrap()),
            quoted(&string(rng)),
            number(rng)
        )
    };
    let n = rng.random_range(0..4);
    let list = format!("[{}]", (0..n).map(|_| entry(rng)).collect::<Vec<_>>().join(","));
    match rng.random_range(0..10) {
        0..6 => list,
        6..8 => quoted(&list),
        8 => quoted(&malformed(rng)),
        _ => json_value(rng, 2),
    }
}

/// Percent-encodes everything but unreserved characters.
pub fn percent_encode(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.extend(['%', HEX[usize::from(b >> 4)] as char, HEX[usize::from(b & 15)] as char]);
        }
    }
    out
}

/// A path segment carrying `id`: mostly encoded, sometimes hostile on purpose.
pub fn path_segment(rng: &mut StdRng, id: &str) -> String {
    match rng.random_range(0..100) {
        0..80 => percent_encode(id),
        80..83 => "%00".into(),
        83..85 => format!("{}%00", percent_encode(id)),
        85..87 => "%2F".into(),
        87..89 => "%2e%2e".into(),
        89..90 => String::new(),
        90..92 => ["%", "%zz", "%C0%AF", "%FF%FE", "%E2%80%AE"].choose(rng).unwrap().to_string(),
        92..94 => "%7B%22%24gt%22%3A%22%22%7D".into(),
        94..96 => "a".repeat(rng.random_range(1_000..20_000)),
        96..98 => percent_encode(&random_chars(rng, 30..=30)),
        _ => ";a=b".into(),
    }
}

/// A query string (with its `?`, or empty) over `keys` and stray keys.
pub fn query(rng: &mut StdRng, keys: &[&str]) -> String {
    match rng.random_range(0..100) {
        0..25 => String::new(),
        25..30 => ["?", "?&&&", "?=", "?a", "?;;", "?%", "?%zz=%zz", "?limit[$gt]=0", "?limit[]=1&limit[]=2"]
            .choose(rng)
            .unwrap()
            .to_string(),
        // Long, but within the 64 KiB an HTTP client library can put in a request line.
        30..31 => format!("?q={}", "q".repeat(rng.random_range(10_000..40_000))),
        _ => {
            let n = rng.random_range(1..6);
            let mut pairs: Vec<String> = Vec::new();
            for _ in 0..n {
                let key = match rng.random_range(0..10) {
                    0..8 if !keys.is_empty() => keys.choose(rng).unwrap().to_string(),
                    8 if !pairs.is_empty() => pairs[0].split('=').next().unwrap().to_string(),
                    _ => percent_encode(&string(rng)),
                };
                let value = match rng.random_range(0..10) {
                    0..3 => number(rng),
                    3..4 => percent_encode(&date(rng)),
                    4..6 => ["%00", "a%00b", "%00%00", "%", "%zz", "%2B", "+", "%u0000", "%C0%80"].choose(rng).unwrap().to_string(),
                    _ => percent_encode(&string(rng)),
                };
                pairs.push(format!("{key}={value}"));
            }
            format!("?{}", pairs.join("&"))
        }
    }
}
