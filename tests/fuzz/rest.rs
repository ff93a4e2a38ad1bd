//! The REST fuzzer: random and mutated requests over every route of the router (methods,
//! ids, query strings, bodies, content types, identities, oversized heads and bodies), plus a
//! few hand-written raw HTTP/1.1 requests that no client library would send. Each answer is
//! judged: never 5xx other than 503, and errors under /api are JSON `{ error }`.

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::input::{self, Known};
use crate::watch::{error_chain, preview, preview_bytes, Counts, NOT_JSON, SERVER_ERROR, UNANSWERED};
use crate::Ctx;

/// One route of `src/http/mod.rs`, as written there, and what its handler reads.
pub struct Route {
    pub path: &'static str,
    pub methods: &'static [&'static str],
    pub query_keys: &'static [&'static str],
    pub body_keys: &'static [&'static str],
    /// Behind the internal service token.
    pub internal: bool,
}

const MESSAGE_KEYS: &[&str] = &["content", "messageType", "threadId", "attachments", "tempId", "conversationId"];
const PAGE_KEYS: &[&str] = &["limit", "offset", "thread_id", "after"];

pub const ROUTES: &[Route] = &[
    Route { path: "/health", methods: &["GET"], query_keys: &[], body_keys: &[], internal: false },
    Route { path: "/openapi.json", methods: &["GET"], query_keys: &[], body_keys: &[], internal: false },
    Route { path: "/docs", methods: &["GET"], query_keys: &[], body_keys: &[], internal: false },
    Route {
        path: "/conversations",
        methods: &["GET", "POST"],
        query_keys: &["status", "channel", "contact_id", "agent_id", "tag", "q", "startDate", "endDate", "limit", "offset"],
        body_keys: &["agent_id", "agentId", "channel", "contact_id", "title", "participants", "tags", "metadata"],
        internal: false,
    },
    Route {
        path: "/conversations/{id}",
        methods: &["GET", "PUT", "PATCH", "DELETE"],
        query_keys: &[],
        body_keys: &["status", "tags", "metadata", "ended_at", "title"],
        internal: false,
    },
    Route {
        path: "/conversations/{id}/messages",
        methods: &["GET", "POST"],
        query_keys: PAGE_KEYS,
        body_keys: MESSAGE_KEYS,
        internal: false,
    },
    Route {
        path: "/conversations/{id}/messages/{mid}",
        methods: &["PATCH", "DELETE"],
        query_keys: &[],
        body_keys: &["content", "markAsRead", "reaction"],
        internal: false,
    },
    Route { path: "/conversations/{id}/threads", methods: &["POST"], query_keys: &[], body_keys: &["title"], internal: false },
    Route {
        path: "/conversations/{id}/threads/{tid}",
        methods: &["GET", "POST"],
        query_keys: PAGE_KEYS,
        body_keys: MESSAGE_KEYS,
        internal: false,
    },
    Route {
        path: "/conversations/{id}/participants",
        methods: &["POST"],
        query_keys: &[],
        body_keys: &["userId", "user_id"],
        internal: false,
    },
    Route {
        path: "/conversations/{id}/participants/{user_id}",
        methods: &["DELETE"],
        query_keys: &[],
        body_keys: &[],
        internal: false,
    },
    Route { path: "/conversations/{id}/presence", methods: &["GET"], query_keys: &[], body_keys: &[], internal: false },
    Route { path: "/conversations/{id}/attachments", methods: &["POST"], query_keys: &[], body_keys: &["file"], internal: false },
    Route { path: "/attachments/{id}", methods: &["GET", "DELETE"], query_keys: &[], body_keys: &[], internal: false },
    Route {
        path: "/search/messages",
        methods: &["GET"],
        query_keys: &["q", "conversationId", "threadId", "from", "to", "limit", "cursor"],
        body_keys: &[],
        internal: false,
    },
    Route {
        path: "/audit",
        methods: &["GET"],
        query_keys: &["conversationId", "actor", "action", "from", "to", "cursor", "limit"],
        body_keys: &[],
        internal: false,
    },
    Route {
        path: "/internal/messages/emit",
        methods: &["POST"],
        query_keys: &[],
        body_keys: &["conversationId", "message"],
        internal: true,
    },
    Route {
        path: "/internal/messages/create",
        methods: &["POST"],
        query_keys: &[],
        body_keys: &["conversationId", "content", "senderType", "messageType", "threadId", "metadata"],
        internal: true,
    },
    Route {
        path: "/internal/messages/list",
        methods: &["POST"],
        query_keys: &[],
        body_keys: &["companyId", "limit", "startDate", "endDate"],
        internal: true,
    },
    Route {
        path: "/internal/conversations/{id}",
        methods: &["PATCH", "PUT"],
        query_keys: &[],
        body_keys: &["status", "ended_at", "metadata"],
        internal: true,
    },
    Route {
        path: "/internal/conversations/{id}/update",
        methods: &["PATCH", "POST", "PUT"],
        query_keys: &[],
        body_keys: &["status", "ended_at", "metadata"],
        internal: true,
    },
];

impl Route {
    /// Where the route is served: everything but `/health` is nested under `/api`.
    pub fn full_path(&self) -> String {
        if self.path == "/health" { self.path.into() } else { format!("/api{}", self.path) }
    }
}

const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "PROPFIND", "FOO"];

const CONTENT_TYPES: &[&str] = &[
    "application/json; charset=utf-8", "application/JSON", "text/plain", "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x", "application/jsonx", "application/vnd.api+json", "application/json; charset=latin1",
    "", "*/*", "application/xml", "json",
];

/// Bodies or heads at least this large may be answered by closing the connection.
const OVERSIZED: usize = 64 * 1024;

/// hyper's own limits: the longest request target it parses, and (a little under) its read
/// buffer, which holds the whole request head.
const PARSER_MAX_URI: usize = 65_534;
const PARSER_MAX_HEAD: usize = 400 * 1024;
/// Longest wait for one answer.
pub const ANSWER_DEADLINE: Duration = Duration::from_secs(60);

pub struct HttpRequest {
    /// `METHOD /route/template`, or the kind of path for paths no route serves.
    route: String,
    method: Method,
    /// Path and query, as generated.
    target: String,
    token: &'static str,
    headers: HeaderMap,
    body: Vec<u8>,
    oversized: bool,
    /// Past the HTTP parser's own limits, where it answers 414 or 431 itself, with no body,
    /// before any handler runs (Node's parser answers its 431 the same way).
    beyond_parser: bool,
}

impl HttpRequest {
    pub fn describe(&self) -> String {
        let content_type = self.headers.get("content-type").map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let others = self.headers.len() - usize::from(content_type.is_some()) - usize::from(self.headers.contains_key("authorization"));
        format!(
            "{} {} | auth: {} | content-type: {} | {} other headers{} | body ({} bytes): {}",
            self.method,
            preview(&self.target),
            self.token,
            content_type.as_deref().unwrap_or("none"),
            others,
            self.headers.keys().filter(|k| !["content-type", "authorization"].contains(&k.as_str())).take(3).map(|k| format!(" {k}")).collect::<String>(),
            self.body.len(),
            preview_bytes(&self.body),
        )
    }
}

impl HttpRequest {
    /// The request as HTTP/1.1 bytes.
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("{} {} HTTP/1.1\r\nhost: localhost\r\n", self.method, self.target).into_bytes();
        for (name, value) in &self.headers {
            out.extend_from_slice(&[name.as_str().as_bytes(), b": ", value.as_bytes(), b"\r\n"].concat());
        }
        out.extend_from_slice(format!("content-length: {}\r\n\r\n", self.body.len()).as_bytes());
        out.extend_from_slice(&self.body);
        out
    }
}

pub struct RawRequest {
    bytes: Vec<u8>,
}

pub enum Request {
    Http(HttpRequest),
    Raw(RawRequest),
}

/// Sends `count` generated requests one after another over `client`'s kept-alive connections.
pub async fn run(ctx: Arc<Ctx>, client: reqwest::Client, worker: u64, task: usize, count: u64) {
    let mut rng = StdRng::seed_from_u64(crate::stream_seed(ctx.seed, crate::REST_STREAM, worker));
    for i in 0..count {
        if ctx.aborted() {
            return;
        }
        // The largest bodies come from one worker only, so that at most one is in flight.
        let request = generate(&mut rng, &ctx.known, worker == 0);
        match request {
            Request::Http(r) => {
                ctx.activity.set(task, format!("REST worker {worker} request {i}: {}", r.describe()));
                send_http(&ctx, &client, &r).await;
                Counts::add(&ctx.counts.rest_requests, 1);
                Counts::add(&ctx.counts.rest_bytes_sent, r.body.len() as u64);
            }
            Request::Raw(r) => {
                ctx.activity.set(task, format!("REST worker {worker} request {i}: raw {}", preview_bytes(&r.bytes)));
                send_raw(&ctx, &r).await;
                Counts::add(&ctx.counts.rest_raw_requests, 1);
            }
        }
    }
}

pub fn generate(rng: &mut StdRng, known: &Known, may_be_huge: bool) -> Request {
    if rng.random_ratio(3, 100) {
        return Request::Raw(raw_request(rng, known));
    }
    Request::Http(http_request(rng, known, may_be_huge))
}

/// The longest request target the `http` crate (so reqwest) accepts; longer ones are written
/// to the socket by hand.
const CLIENT_URI_LIMIT: usize = 65_534;

fn http_request(rng: &mut StdRng, known: &Known, may_be_huge: bool) -> HttpRequest {
    let route = ROUTES.choose(rng).unwrap();
    let method = if rng.random_bool(0.82) { route.methods.choose(rng).unwrap() } else { METHODS.choose(rng).unwrap() };
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let (route_name, mut path) = if rng.random_ratio(9, 100) {
        unknown_path(rng, known)
    } else {
        let name = if route.methods.contains(&method.as_str()) {
            format!("{method} {}", route.full_path())
        } else {
            format!("other methods on {}", route.full_path())
        };
        (name, fill_template(rng, known, &route.full_path(), &method))
    };
    if rng.random_ratio(3, 100) {
        path.push('/');
    }
    if rng.random_ratio(2, 100) {
        path = path.replacen('/', "//", rng.random_range(1..3));
    }
    let query = input::query(rng, route.query_keys);
    // What a client really sends: the URL parser resolves dot segments (`%2e%2e` too), and
    // the request is judged and reported as sent.
    let url = reqwest::Url::parse(&format!("http://localhost{path}{query}")).expect("generated URL");
    let target = url.as_str()["http://localhost".len()..].to_string();
    let route_name = if url.path() == path { route_name } else { unknown_kind(url.path()) };

    let token = pick_token(rng, known, route.internal);
    let mut headers = HeaderMap::new();
    if let Some(auth) = &token.header {
        headers.insert("authorization", HeaderValue::from_bytes(auth).unwrap());
    }
    let bodyless = matches!(method.as_str(), "GET" | "HEAD" | "DELETE" | "OPTIONS");
    let body = if bodyless && rng.random_bool(0.85) { Vec::new() } else { body(rng, known, route, may_be_huge) };
    if !body.is_empty() || rng.random_bool(0.3) {
        if rng.random_bool(0.75) {
            headers.insert("content-type", HeaderValue::from_static("application/json"));
        } else if let Some(ct) = CONTENT_TYPES.choose(rng).filter(|_| rng.random_bool(0.8)) {
            headers.insert("content-type", HeaderValue::from_static(ct));
        }
    }
    let head_bytes = extra_headers(rng, &method, &mut headers);
    let oversized = body.len() >= OVERSIZED || head_bytes >= OVERSIZED || target.len() >= OVERSIZED;
    let beyond_parser = target.len() >= PARSER_MAX_URI || head_bytes >= PARSER_MAX_HEAD;
    HttpRequest { route: route_name, method, target, token: token.name, headers, body, oversized, beyond_parser }
}

fn fill_template(rng: &mut StdRng, known: &Known, template: &str, method: &Method) -> String {
    let deletes_conversation = method == Method::DELETE && template == "/api/conversations/{id}";
    let mut path = template.to_string();
    if path.contains("{id}") {
        let id = if deletes_conversation && rng.random_bool(0.8) {
            known.disposable.choose(rng).unwrap().clone()
        } else if deletes_conversation {
            input::hex(rng, 24)
        } else {
            known.conversation_id(rng)
        };
        path = path.replace("{id}", &input::path_segment(rng, &id));
    }
    if path.contains("{mid}") {
        let id = known.message_id(rng);
        path = path.replace("{mid}", &input::path_segment(rng, &id));
    }
    if path.contains("{tid}") {
        let id = known.thread_id(rng);
        path = path.replace("{tid}", &input::path_segment(rng, &id));
    }
    if path.contains("{user_id}") {
        let id = known.user_id(rng);
        path = path.replace("{user_id}", &input::path_segment(rng, &id));
    }
    path
}

/// Paths no route serves, under /api and beside it.
fn unknown_path(rng: &mut StdRng, known: &Known) -> (String, String) {
    let id = known.conversations.choose(rng).unwrap();
    let path = match rng.random_range(0..14) {
        0 => "/api".to_string(),
        1 => "/api/".into(),
        2 => format!("/api/{}", input::percent_encode(&input::string(rng))),
        3 => format!("/api/conversations/{id}/{}", ["unknown", "messages/x/y", "presence/x", "export", "threads"].choose(rng).unwrap()),
        4 => "/API/conversations".into(),
        5 => "/apix".into(),
        6 => "//api/conversations".into(),
        7 => "/api//conversations".into(),
        8 => "/health/extra".into(),
        9 => "/".into(),
        10 => "/api/internal".into(),
        11 => "/api/internal/messages".into(),
        12 => format!("/api/conversations/{id}/messages/{}/reactions", known.messages.choose(rng).unwrap()),
        _ => format!("/{}", input::percent_encode(&input::random_chars(rng, 20..=20))),
    };
    (unknown_kind(&path), path)
}

fn unknown_kind(path: &str) -> String {
    if path == "/api" || path.starts_with("/api/") { "/api/<no route>" } else { "<no route>" }.to_string()
}

fn pick_token<'a>(rng: &mut StdRng, known: &'a Known, internal: bool) -> &'a input::Token {
    if internal && rng.random_bool(0.55) {
        return known.token("internal token");
    }
    match rng.random_range(0..100) {
        0..40 => known.token("user alice"),
        40..50 => known.token("user bob"),
        50..55 => known.token("supabase user carol"),
        _ => known.tokens.choose(rng).unwrap(),
    }
}

fn body(rng: &mut StdRng, known: &Known, route: &Route, may_be_huge: bool) -> Vec<u8> {
    if may_be_huge && rng.random_ratio(1, 3000) {
        // Over the 10 MB body limit.
        return format!(r#"{{"content":"{}"}}"#, "h".repeat(10 * 1024 * 1024 + 1024)).into_bytes();
    }
    let keys = if route.body_keys.is_empty() { input::KEYS } else { route.body_keys };
    match rng.random_range(0..100) {
        0..70 => known.object_of(rng, keys).into_bytes(),
        70..78 => input::json_value(rng, 0).into_bytes(),
        78..85 => {
            let whole = known.object_of(rng, keys);
            let cut = rng.random_range(0..=whole.len());
            let cut = (0..=cut).rev().find(|&i| whole.is_char_boundary(i)).unwrap_or(0);
            whole.as_bytes()[..cut].to_vec()
        }
        85..90 => Vec::new(),
        90..93 => {
            let len = rng.random_range(1..2000);
            input::random_bytes(rng, len)
        }
        93..96 => format!("content={}&conversationId={}", input::percent_encode(&input::string(rng)), known.conversation_id(rng)).into_bytes(),
        96..100 if rng.random_ratio(19, 20) => input::malformed(rng).into_bytes(),
        _ => {
            let len = rng.random_range(1_000_000..2_000_000);
            format!(r#"{{"content":"{}","title":"t","agent_id":"a"}}"#, "w".repeat(len)).into_bytes()
        }
    }
}

/// Adds unusual headers; returns roughly how many bytes of head they make.
fn extra_headers(rng: &mut StdRng, method: &Method, headers: &mut HeaderMap) -> usize {
    let mut bytes = headers.iter().map(|(k, v)| k.as_str().len() + v.len()).sum::<usize>();
    let mut add = |headers: &mut HeaderMap, name: &str, value: Vec<u8>| {
        bytes += name.len() + value.len();
        headers.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_bytes(&value).unwrap());
    };
    if method == Method::OPTIONS && rng.random_bool(0.5) {
        add(headers, "origin", b"http://localhost:3000".to_vec());
        add(headers, "access-control-request-method", METHODS.choose(rng).unwrap().as_bytes().to_vec());
        add(headers, "access-control-request-headers", b"authorization,content-type".to_vec());
    }
    match rng.random_range(0..1000) {
        0..40 => add(headers, "origin", ["http://evil.example", "null", "http://localhost:3000"].choose(rng).unwrap().as_bytes().to_vec()),
        40..60 => {
            // More than the 100 headers hyper reads.
            for i in 0..120 {
                add(headers, &format!("x-fuzz-{i}"), b"v".to_vec());
            }
        }
        60..63 => add(headers, "x-large", vec![b'l'; 500 * 1024]),
        63..80 => add(headers, "content-encoding", b"gzip".to_vec()),
        80..100 => add(headers, "accept", ["text/html", "application/xml", "*/*;q=0", "text/é"].choose(rng).unwrap().as_bytes().to_vec()),
        100..110 => add(headers, "connection", b"close".to_vec()),
        110..120 => add(headers, "x-forwarded-for", b"1.2.3.4, evil, ::1".to_vec()),
        120..130 => add(headers, "authorization", b"Bearer second-header".to_vec()),
        _ => {}
    }
    bytes
}

async fn send_http(ctx: &Ctx, client: &reqwest::Client, r: &HttpRequest) {
    let Ok(url) = reqwest::Url::parse(&format!("{}{}", ctx.base_url, r.target)) else {
        panic!("generated an unparsable URL: {}", r.describe());
    };
    let is_api = url.path() == "/api" || url.path().starts_with("/api/");
    if r.target.len() > CLIENT_URI_LIMIT {
        match exchange(ctx, &r.to_bytes()).await {
            Exchange::Answered(answer) => {
                if let Some((status, body)) = parse_answer(&answer) {
                    judge(ctx, r, is_api, status, &body);
                }
            }
            Exchange::Unanswered(_) if ctx.server_gone() => {}
            Exchange::Unanswered(what) => ctx.findings.fail(UNANSWERED, format!("{}: {what}", r.route), || r.describe()),
        }
        return;
    }
    for attempt in 0..2 {
        // A kept-alive connection the server has closed fails the request; the one retry goes
        // over a new connection, so that only the server can make it fail.
        let client = if attempt == 0 { client } else { &ctx.unpooled };
        let sent = client.request(r.method.clone(), url.clone()).headers(r.headers.clone()).body(r.body.clone()).send().await;
        let answer = match sent {
            Ok(res) => {
                let status = res.status().as_u16();
                res.bytes().await.map(|body| (status, body))
            }
            Err(e) => Err(e),
        };
        match answer {
            Ok((status, body)) => return judge(ctx, r, is_api, status, &body),
            Err(e) if e.is_builder() => {
                panic!("generated a request reqwest cannot send ({}): {}", preview(&e.to_string()), r.describe())
            }
            Err(e) if e.is_timeout() => {
                return ctx.findings.fail(UNANSWERED, format!("{}: no answer within {ANSWER_DEADLINE:?}", r.route), || r.describe());
            }
            Err(_) if attempt == 0 => Counts::add(&ctx.counts.rest_retries, 1),
            // Answering by closing the connection is fine for an oversized request only.
            Err(_) if r.oversized || ctx.server_gone() => return,
            Err(e) => {
                return ctx.findings.fail(UNANSWERED, format!("{}: connection failed, also on a new one", r.route), || {
                    format!("{} → {}", r.describe(), error_chain(&e))
                });
            }
        }
    }
}

fn judge(ctx: &Ctx, r: &HttpRequest, is_api: bool, status: u16, body: &[u8]) {
    ctx.findings.status(&r.route, status);
    if status >= 500 && status != 503 {
        ctx.findings.fail(SERVER_ERROR, format!("{} → {status}", r.route), || {
            format!("{} → {status} {}", r.describe(), preview_bytes(body))
        });
    }
    let parser_refusal = r.beyond_parser && matches!(status, 414 | 431) && body.is_empty();
    if is_api && status >= 400 && r.method != Method::HEAD && !parser_refusal && !is_json_error(body) {
        // One cause per kind of answer, whichever route gave it: the plain text of a
        // framework rejection up to its first colon, or an empty body.
        let text = String::from_utf8_lossy(body);
        let cause = match text.split(':').next().map(str::trim) {
            Some(head) if !head.is_empty() => format!("{status} with a plain text body: {}", preview(head)),
            _ => format!("{status} with an empty body"),
        };
        ctx.findings.fail(NOT_JSON, cause, || {
            format!("{} → {status} {}", r.describe(), preview_bytes(body))
        });
    }
}

fn is_json_error(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|v| v.get("error").is_some_and(|e| e.is_string()))
}

/// Requests written byte by byte: broken request lines, header lines, lengths and chunking.
fn raw_request(rng: &mut StdRng, known: &Known) -> RawRequest {
    if rng.random_ratio(1, 10) {
        let len = rng.random_range(1..4000);
        return RawRequest { bytes: input::random_bytes(rng, len) };
    }
    let eol: &[u8] = if rng.random_bool(0.85) { b"\r\n" } else { b"\n" };
    let method: Vec<u8> = match rng.random_range(0..10) {
        0..6 => ["GET", "POST", "PATCH", "PUT", "DELETE"].choose(rng).unwrap().as_bytes().to_vec(),
        6 => b"G E T".to_vec(),
        7 => b"GET\0".to_vec(),
        8 => vec![b'A'; rng.random_range(100..10_000)],
        _ => Vec::new(),
    };
    let id = known.conversations.choose(rng).unwrap();
    let target: Vec<u8> = match rng.random_range(0..13) {
        0..3 => b"/api/conversations".to_vec(),
        3..5 => format!("/api/conversations/{id}/messages").into_bytes(),
        5 => b"/health".to_vec(),
        6 => b"*".to_vec(),
        7 => b"http://evil.example/api/conversations".to_vec(),
        8 => format!("/api/conversations/{id}\0/messages").into_bytes(),
        9 => b"/api/con versations".to_vec(),
        10 => b"/api/conversations?q=\0\xff".to_vec(),
        // Longer than any client library sends: over hyper's URI limit (64 KiB).
        11 => format!("/api/conversations?q={}", "u".repeat(70_000)).into_bytes(),
        _ => Vec::new(),
    };
    let version: &[u8] = ["HTTP/1.1", "HTTP/1.1", "HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.1\0", "HTTP/9.9", ""].choose(rng).unwrap().as_bytes();
    let body = known.object_of(rng, MESSAGE_KEYS).into_bytes();

    let mut out = [method.as_slice(), b" ", &target, b" ", version, eol].concat();
    let mut header = |line: &[u8]| {
        out.extend_from_slice(line);
        out.extend_from_slice(eol);
    };
    if rng.random_bool(0.9) {
        header(b"Host: localhost");
    }
    if rng.random_bool(0.7) {
        header(&known.token("user alice").header.clone().map(|h| [b"Authorization: ".as_slice(), &h].concat()).unwrap());
    }
    header(b"Content-Type: application/json");
    header(b"Connection: close");
    let chunked = match rng.random_range(0..10) {
        0..4 => {
            header(format!("Content-Length: {}", body.len()).as_bytes());
            false
        }
        4 => {
            header(["Content-Length: -1", "Content-Length: abc", "Content-Length: 99999999999999999999", "Content-Length: 1, 2"].choose(rng).unwrap().as_bytes());
            false
        }
        5 => {
            header(format!("Content-Length: {}", body.len()).as_bytes());
            header(format!("Content-Length: {}", body.len() + 1).as_bytes());
            false
        }
        6..8 => {
            header(b"Transfer-Encoding: chunked");
            true
        }
        8 => {
            header(b"Transfer-Encoding: chunked");
            header(format!("Content-Length: {}", body.len()).as_bytes());
            true
        }
        _ => false,
    };
    if rng.random_ratio(1, 4) {
        header(["NoColon", ": empty name", "X-Null: a\0b", "X-Fold: a\r\n continued", "Host: second", " Leading: space", "X-Ctl: \x01\x7f"].choose(rng).unwrap().as_bytes());
    }
    out.extend_from_slice(eol);
    if chunked {
        let size: Vec<u8> = match rng.random_range(0..5) {
            0..3 => format!("{:x}", body.len()).into_bytes(),
            3 => b"zz".to_vec(),
            _ => b"FFFFFFFFFFFFFFFFFF".to_vec(),
        };
        out.extend_from_slice(&[size.as_slice(), b"\r\n", &body, b"\r\n0\r\n\r\n"].concat());
    } else {
        out.extend_from_slice(&body);
    }
    RawRequest { bytes: out }
}

async fn send_raw(ctx: &Ctx, r: &RawRequest) {
    match exchange(ctx, &r.bytes).await {
        Exchange::Unanswered(_) if ctx.server_gone() => {}
        Exchange::Unanswered(what) => ctx.findings.fail(UNANSWERED, format!("raw HTTP: {what}"), || preview_bytes(&r.bytes)),
        Exchange::Answered(answer) => {
            let Some((status, _)) = parse_answer(&answer) else {
                return ctx.findings.status("raw HTTP (closed without an answer)", 0);
            };
            ctx.findings.status("raw HTTP", status);
            if status >= 500 && status != 503 {
                ctx.findings.fail(SERVER_ERROR, format!("raw HTTP → {status}"), || {
                    format!("{} → {}", preview_bytes(&r.bytes), preview_bytes(&answer))
                });
            }
        }
    }
}

enum Exchange {
    /// What the server wrote before closing (possibly nothing).
    Answered(Vec<u8>),
    Unanswered(&'static str),
}

/// Writes `request` on a new connection and reads until the server closes it.
async fn exchange(ctx: &Ctx, request: &[u8]) -> Exchange {
    let exchange = async {
        let Ok(mut stream) = tokio::net::TcpStream::connect(&ctx.addr).await else { return Exchange::Unanswered("cannot connect") };
        // Written in full, then the write side closed: the server has all of the request and
        // must answer or close; a reset while writing is an answer too.
        if stream.write_all(request).await.is_err() {
            return Exchange::Answered(Vec::new());
        }
        let _ = stream.shutdown().await;
        let mut answer = Vec::new();
        let _ = (&mut stream).take(1 << 20).read_to_end(&mut answer).await;
        Exchange::Answered(answer)
    };
    tokio::time::timeout(ANSWER_DEADLINE, exchange).await.unwrap_or(Exchange::Unanswered("neither answered nor closed"))
}

/// Status and body of an HTTP/1.x answer (chunked bodies decoded), if it is one.
fn parse_answer(answer: &[u8]) -> Option<(u16, Vec<u8>)> {
    let rest = answer.strip_prefix(b"HTTP/1.1 ".as_slice()).or_else(|| answer.strip_prefix(b"HTTP/1.0 ".as_slice()))?;
    let status = std::str::from_utf8(rest.get(..3)?).ok()?.parse().ok()?;
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let (head, body) = (String::from_utf8_lossy(&answer[..split]).to_ascii_lowercase(), &answer[split + 4..]);
    if !head.contains("transfer-encoding: chunked") {
        return Some((status, body.to_vec()));
    }
    let mut decoded = Vec::new();
    let mut rest = body;
    while let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).ok()?.trim(), 16).ok()?;
        let chunk = rest.get(line_end + 2..line_end + 2 + size)?;
        decoded.extend_from_slice(chunk);
        rest = rest.get(line_end + 4 + size..).unwrap_or_default();
        if size == 0 {
            break;
        }
    }
    Some((status, decoded))
}
