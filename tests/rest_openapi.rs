//! The API document (`GET /api/openapi.json`) against the router and the answers:
//!
//! - every path the router serves is a path of the document and the other way round, and
//!   each path answers exactly the methods the document lists (the paths are read off the
//!   assembled router itself, not from a list kept here);
//! - a sample request per documented operation gets an answer that validates against the
//!   documented schema for its status, every operation has a sample, and every route the
//!   server matched while answering them is documented;
//! - every server → client Socket.IO event the description's table lists arrives with a
//!   payload that validates against the schema the table names.
//!
//! The app runs in this process (on SQLite, or MongoDB with `CHAT_TEST_STORE=mongo`) so the
//! test can read its router and record the route each request matched.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use chat_service::config::Config;
use common::{user, INTERNAL_TOKEN, JWT_SECRET};
use serde_json::{json, Value};

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// Method and route template, as the document and the router spell them.
type Route = (String, String);

struct InProcessApp {
    base_url: String,
    /// The paths of the assembled router.
    router_paths: BTreeSet<String>,
    /// The route each request matched, recorded by the router.
    matched: Arc<Mutex<BTreeSet<Route>>>,
    http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _data: tempfile::TempDir,
}

impl Drop for InProcessApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn start() -> InProcessApp {
    let data = tempfile::tempdir().expect("temp dir");
    let mut vars: BTreeMap<&str, String> = BTreeMap::from([
        ("HOST", "127.0.0.1".to_string()),
        ("PORT", "0".to_string()),
        ("DATA_DIR", data.path().display().to_string()),
        ("JWT_SECRET", JWT_SECRET.to_string()),
        ("INTERNAL_SERVICE_TOKEN", INTERNAL_TOKEN.to_string()),
        ("RATE_LIMIT_MAX", "100000".to_string()),
    ]);
    if std::env::var("CHAT_TEST_STORE").as_deref() == Ok("mongo") {
        let uri = std::env::var("CHAT_TEST_MONGODB_URI").expect("CHAT_TEST_STORE=mongo needs CHAT_TEST_MONGODB_URI");
        let name = data.path().file_name().and_then(|n| n.to_str()).unwrap_or("x").replace(['.', '-'], "_");
        vars.insert("MONGODB_URI", format!("{}/chat_openapi_{name}", uri.trim_end_matches('/')));
    }
    let config = Config::from_lookup(|k| vars.get(k).cloned()).expect("configuration");
    let mut app = chat_service::app::build(&config, Default::default()).await.expect("app");

    let mut router_paths = router_paths(&format!("{:?}", app.router));
    for page in OPERATIONAL_PAGES {
        assert!(router_paths.remove(*page), "{page} is no longer routed: update OPERATIONAL_PAGES");
    }
    let matched: Arc<Mutex<BTreeSet<Route>>> = Arc::default();
    let record = matched.clone();
    app.router = app.router.route_layer(axum::middleware::from_fn(move |req: Request, next: Next| {
        let route = req.extensions().get::<MatchedPath>().map(|p| (req.method().to_string(), p.as_str().to_string()));
        if let Some(route) = route {
            record.lock().unwrap().insert(route);
        }
        next.run(req)
    }));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("listen");
    let base_url = format!("http://{}", listener.local_addr().expect("address"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(chat_service::app::serve(app, listener, async move {
        let _ = stopped.await;
    }));
    InProcessApp { base_url, router_paths, matched, http: reqwest::Client::new(), stop: Some(stop), _data: data }
}

/// Routes that are not part of the REST API and so not in its document: the Prometheus
/// scrape and the admin console (README "Metrics" and "Admin console").
const OPERATIONAL_PAGES: &[&str] = &["/metrics", "/admin", "/admin/assets/{name}", "/admin/api/errors"];

/// The paths of an axum router, read from its `Debug` form: `path_router`'s node lists them
/// as `RouteId(n): "/path"`; the fallback router's (after it) are not routes.
fn router_paths(debug: &str) -> BTreeSet<String> {
    let start = debug.find("path_router:").expect("axum's Router Debug names its path_router");
    let end = debug.find("fallback_router:").expect("axum's Router Debug names its fallback_router");
    let mut paths = BTreeSet::new();
    let mut rest = &debug[start..end];
    while let Some(at) = rest.find("RouteId(") {
        rest = &rest[at..];
        let Some(quote) = rest.find("): \"") else { break };
        let after = &rest[quote + 4..];
        let close = after.find('"').expect("a closing quote");
        paths.insert(after[..close].to_string());
        rest = &after[close..];
    }
    assert!(paths.contains("/health"), "no routes read from the router's Debug form (has axum changed it?): {debug:.400}");
    paths
}

impl InProcessApp {
    async fn document(&self) -> Value {
        let res = self.http.get(format!("{}/api/openapi.json", self.base_url)).send().await.expect("request");
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], "application/json");
        res.json().await.expect("JSON document")
    }

    /// Sends a request and returns its status, content type and body (JSON, or the text as a
    /// JSON string).
    async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> (u16, String, Value) {
        let mut req = self.http.request(method.parse().unwrap(), format!("{}{path}", self.base_url));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        let content_type = res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let text = res.text().await.expect("body");
        (status, content_type, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
}

/// The documented operations: method and path template.
fn operations(doc: &Value) -> BTreeSet<Route> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if item.get(method.to_lowercase()).is_some() {
                ops.insert((method.to_string(), path.clone()));
            }
        }
    }
    ops
}

/// A concrete path for a template: every `{parameter}` gets a well-formed value.
fn concrete(template: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').expect("closing brace") + open;
        out.push_str(match &rest[open + 1..close] {
            "id" | "mid" => "0123456789abcdef01234567",
            _ => "x",
        });
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

#[tokio::test]
async fn every_route_of_the_router_is_documented_with_its_methods() {
    let app = start().await;
    let doc = app.document().await;
    assert_eq!(doc["openapi"], "3.1.0");
    let documented = operations(&doc);
    let documented_paths: BTreeSet<String> = documented.iter().map(|(_, p)| p.clone()).collect();

    let undocumented: Vec<_> = app.router_paths.difference(&documented_paths).collect();
    let unrouted: Vec<_> = documented_paths.difference(&app.router_paths).collect();
    assert!(undocumented.is_empty(), "routes missing from the document: {undocumented:?}");
    assert!(unrouted.is_empty(), "documented paths the router does not serve: {unrouted:?}");

    // Each method either is documented for the path or is refused as not allowed. HEAD and
    // OPTIONS are left out: axum answers HEAD wherever GET is routed, and the CORS layer
    // answers OPTIONS (preflight) on every path.
    for path in &app.router_paths {
        for method in METHODS {
            let (status, _, body) = app.call(method, &concrete(path), None, Some(&json!({}))).await;
            let is_documented = documented.contains(&(method.to_string(), path.clone()));
            if is_documented {
                assert_ne!(status, 405, "{method} {path} is documented but not routed: {body}");
                assert_ne!(body, json!({ "error": "Not found" }), "{method} {path} is documented but not routed");
            } else {
                assert_eq!(status, 405, "{method} {path} answers {status} but is not documented: {body}");
            }
        }
    }

    // Every operation names what it needs: an operation id, a summary, a described answer.
    for (method, path) in &documented {
        let op = &doc["paths"][path][method.to_lowercase()];
        assert!(op["operationId"].is_string() && op["summary"].is_string(), "{method} {path}: {op}");
        for (status, answer) in op["responses"].as_object().expect("responses") {
            assert!(answer["description"].is_string(), "{method} {path} {status} has no description");
        }
        let needs_token = path.starts_with("/api/") && !path.starts_with("/api/openapi.json") && path != "/api/docs";
        let scheme = if path.starts_with("/api/internal/") { "internal" } else { "bearer" };
        if needs_token {
            assert_eq!(op["security"], json!([{ scheme: [] }]), "{method} {path}");
        }
    }
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["bearer"]["bearerFormat"], "JWT");
    assert_eq!(schemes["internal"]["scheme"], "bearer");
}

/// `schema` with every `$ref` resolvable: the document's components travel along, so
/// `#/components/schemas/...` points into them. With `strict`, every object schema that lists
/// its properties and says nothing else about others gets `additionalProperties: false`, so an
/// answer carrying a field the document does not describe fails too.
fn resolvable(doc: &Value, schema: &Value, strict: bool) -> Value {
    fn close_objects(v: &mut Value) {
        match v {
            Value::Object(map) => {
                if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                    map.insert("additionalProperties".into(), Value::Bool(false));
                }
                map.values_mut().for_each(close_objects);
            }
            Value::Array(items) => items.iter_mut().for_each(close_objects),
            _ => {}
        }
    }
    let mut components = doc["components"].clone();
    let mut schema = schema.clone();
    if strict {
        close_objects(&mut components);
        close_objects(&mut schema);
    }
    let mut root = json!({ "$schema": "https://json-schema.org/draft/2020-12/schema", "components": components });
    root.as_object_mut().unwrap().extend(schema.as_object().expect("a schema object").clone());
    root
}

fn check(doc: &Value, schema: &Value, instance: &Value, strict: bool) -> Result<(), String> {
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&resolvable(doc, schema, strict))
        .map_err(|e| format!("unusable schema: {e}"))?;
    let errors: Vec<String> = validator.iter_errors(instance).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    if errors.is_empty() { Ok(()) } else { Err(errors.join("; ")) }
}

/// One sample request and its answer, checked against the operation it matched.
struct Sampled {
    checked: BTreeSet<Route>,
    failures: Vec<String>,
}

impl Sampled {
    /// A request the document describes: its body must match the documented one.
    #[allow(clippy::too_many_arguments)]
    async fn request(
        &mut self,
        app: &InProcessApp,
        doc: &Value,
        method: &str,
        template: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Value {
        self.sample(app, doc, (method, template, path), token, body, true).await
    }

    /// A request made to be refused: only its answer is checked.
    async fn refused(&mut self, app: &InProcessApp, doc: &Value, route: (&str, &str, &str), token: Option<&str>, body: Option<Value>) {
        self.sample(app, doc, route, token, body, false).await;
    }

    async fn sample(
        &mut self,
        app: &InProcessApp,
        doc: &Value,
        (method, template, path): (&str, &str, &str),
        token: Option<&str>,
        body: Option<Value>,
        check_request: bool,
    ) -> Value {
        let (status, content_type, answer) = app.call(method, path, token, body.as_ref()).await;
        let label = format!("{method} {path} ({template}) answered {status}");
        let op = &doc["paths"][template][method.to_lowercase()];
        if op.is_null() {
            self.failures.push(format!("{label}: no such operation in the document"));
            return answer;
        }
        self.checked.insert((method.to_string(), template.to_string()));
        if let Some(body) = body.as_ref().filter(|_| check_request) {
            let schema = &op["requestBody"]["content"]["application/json"]["schema"];
            if let Err(e) = check(doc, schema, body, false) {
                self.failures.push(format!("{label}: the sample request does not match the documented body: {e}"));
            }
        }
        let Some(content) = op["responses"][status.to_string()]["content"].as_object() else {
            self.failures.push(format!("{label}: status not documented: {answer}"));
            return answer;
        };
        let media = content_type.split(';').next().unwrap_or_default().trim();
        let Some(documented) = content.get(media) else {
            self.failures.push(format!("{label}: content type {media} not documented"));
            return answer;
        };
        if let Err(e) = check(doc, &documented["schema"], &answer, true) {
            self.failures.push(format!("{label}: the answer does not match the documented schema: {e}\n  answer: {answer}"));
        }
        answer
    }
}

#[tokio::test]
async fn sample_answers_validate_against_the_documented_schemas() {
    let app = start().await;
    let doc = app.document().await;
    let alice = user("alice", "acme");
    let internal = INTERNAL_TOKEN;
    let mut s = Sampled { checked: BTreeSet::new(), failures: Vec::new() };
    let t = Some(alice.as_str());
    let i = Some(internal);

    let health = s.request(&app, &doc, "GET", "/health", "/health", None, None).await;
    let store = if std::env::var("CHAT_TEST_STORE").as_deref() == Ok("mongo") { "mongodb" } else { "sqlite" };
    assert_eq!(health["checks"]["store"]["kind"], store, "{health}");
    let search = if store == "sqlite" { vec!["fts5"] } else { vec!["text", "regex"] };
    assert!(search.iter().any(|m| health["checks"]["store"]["search"] == *m), "{health}");
    s.request(&app, &doc, "GET", "/api/openapi.json", "/api/openapi.json", None, None).await;
    s.request(&app, &doc, "GET", "/api/docs", "/api/docs", None, None).await;

    let created = s
        .request(&app, &doc, "POST", "/api/conversations", "/api/conversations", t, Some(json!({
            "agent_id": "agent-1", "channel": "chat", "contact_id": "contact-1", "title": "Support",
            "participants": ["bob"], "tags": ["vip"], "metadata": { "source": "web" }
        })))
        .await;
    let id = created["conversation"]["id"].as_str().expect("conversation id").to_string();
    let c = format!("/api/conversations/{id}");
    s.request(&app, &doc, "GET", "/api/conversations", "/api/conversations?status=active&limit=10", t, None).await;
    s.request(&app, &doc, "GET", "/api/conversations/{id}", &c, t, None).await;
    s.request(&app, &doc, "PUT", "/api/conversations/{id}", &c, t, Some(json!({ "title": "Renamed", "tags": ["a"] }))).await;
    s.request(&app, &doc, "PATCH", "/api/conversations/{id}", &c, t, Some(json!({ "status": "ended", "ended_at": "2024-05-01T10:00:00.000Z" }))).await;
    s.request(&app, &doc, "GET", "/api/conversations/{id}/presence", &format!("{c}/presence"), t, None).await;
    s.request(&app, &doc, "POST", "/api/conversations/{id}/participants", &format!("{c}/participants"), t, Some(json!({ "userId": "carol" }))).await;
    s.request(&app, &doc, "DELETE", "/api/conversations/{id}/participants/{user_id}", &format!("{c}/participants/carol"), t, None).await;

    let m = format!("{c}/messages");
    let first = s
        .request(&app, &doc, "POST", "/api/conversations/{id}/messages", &m, t, Some(json!({
            "content": "hello", "messageType": "text",
            "attachments": [{ "url": "https://files.test/a.png", "type": "image/png", "name": "a.png", "size": 3 }]
        })))
        .await;
    let mid = first["message"]["id"].as_str().expect("message id").to_string();
    s.request(&app, &doc, "POST", "/api/conversations/{id}/messages", &m, t, Some(json!({ "content": "second" }))).await;
    s.request(&app, &doc, "GET", "/api/conversations/{id}/messages", &format!("{m}?limit=10"), t, None).await;
    s.request(&app, &doc, "GET", "/api/conversations/{id}/messages", &format!("{m}?after={mid}"), t, None).await;
    let one = format!("{m}/{mid}");
    s.request(&app, &doc, "PATCH", "/api/conversations/{id}/messages/{mid}", &one, t, Some(json!({ "content": "hello again" }))).await;
    s.request(&app, &doc, "PATCH", "/api/conversations/{id}/messages/{mid}", &one, t, Some(json!({ "reaction": "👍", "markAsRead": true }))).await;

    let thread = s.request(&app, &doc, "POST", "/api/conversations/{id}/threads", &format!("{c}/threads"), t, Some(json!({ "title": "Billing" }))).await;
    let tid = thread["thread"]["id"].as_str().expect("thread id").to_string();
    let th = format!("{c}/threads/{tid}");
    s.request(&app, &doc, "POST", "/api/conversations/{id}/threads/{tid}", &th, t, Some(json!({ "content": "in the thread" }))).await;
    s.request(&app, &doc, "GET", "/api/conversations/{id}/threads/{tid}", &format!("{th}?limit=5"), t, None).await;
    let found = s
        .request(&app, &doc, "GET", "/api/search/messages", &format!("/api/search/messages?q=hello&conversationId={id}&limit=1"), t, None)
        .await;
    assert_eq!(found["hits"][0]["snippet"], "<mark>hello</mark> again", "{found}");
    s.refused(&app, &doc, ("GET", "/api/search/messages", "/api/search/messages?q=%22%22"), t, None).await;

    s.request(&app, &doc, "POST", "/api/internal/messages/emit", "/api/internal/messages/emit", i, Some(json!({
        "conversationId": id, "message": { "content": "relayed", "sender_type": "agent" }
    })))
    .await;
    s.request(&app, &doc, "POST", "/api/internal/messages/create", "/api/internal/messages/create", i, Some(json!({
        "conversationId": id, "content": "transcript", "senderType": "agent", "messageType": "audio",
        "threadId": null, "metadata": { "call_id": "c-1" }
    })))
    .await;
    s.request(&app, &doc, "POST", "/api/internal/messages/list", "/api/internal/messages/list", i, Some(json!({
        "companyId": "acme", "limit": 10, "startDate": "2020-01-01"
    })))
    .await;
    let ic = format!("/api/internal/conversations/{id}");
    s.request(&app, &doc, "PATCH", "/api/internal/conversations/{id}", &ic, i, Some(json!({ "metadata": { "score": 3 } }))).await;
    s.request(&app, &doc, "PUT", "/api/internal/conversations/{id}", &ic, i, Some(json!({ "status": "active" }))).await;
    for method in ["PATCH", "POST", "PUT"] {
        s.request(&app, &doc, method, "/api/internal/conversations/{id}/update", &format!("{ic}/update"), i, Some(json!({ "ended_at": null }))).await;
    }

    // Attachments: a multipart upload, a binary download (only its status is documented), a delete.
    let (header, body) = common::multipart_file("file", "a.png", Some("image/png"), b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR");
    let res = app.http.post(format!("{}{c}/attachments", app.base_url)).bearer_auth(&alice).header("content-type", header).body(body).send().await.unwrap();
    assert_eq!(res.status(), 201);
    let uploaded: Value = res.json().await.unwrap();
    let upload_op = &doc["paths"]["/api/conversations/{id}/attachments"]["post"];
    assert!(upload_op["requestBody"]["content"]["multipart/form-data"].is_object(), "{upload_op}");
    if let Err(e) = check(&doc, &upload_op["responses"]["201"]["content"]["application/json"]["schema"], &uploaded, true) {
        s.failures.push(format!("upload answer: {e}"));
    }
    s.checked.insert(("POST".into(), "/api/conversations/{id}/attachments".into()));
    let file = format!("/api/attachments/{}", uploaded["id"].as_str().unwrap());
    let (status, content_type, _) = app.call("GET", &file, t, None).await;
    assert_eq!((status, content_type.as_str()), (200, "image/png"));
    assert!(doc["paths"]["/api/attachments/{id}"]["get"]["responses"]["200"].is_object());
    s.checked.insert(("GET".into(), "/api/attachments/{id}".into()));
    s.request(&app, &doc, "DELETE", "/api/attachments/{id}", &file, t, None).await;
    let boss = common::admin("boss", "acme");
    s.request(&app, &doc, "GET", "/api/audit", "/api/audit?limit=5&action=message.create", Some(boss.as_str()), None).await;
    s.refused(&app, &doc, ("GET", "/api/audit", "/api/audit"), t, None).await;

    // Error answers are documented too.
    s.refused(&app, &doc, ("GET", "/api/conversations/{id}", "/api/conversations/0123456789abcdef01234567"), t, None).await;
    s.refused(&app, &doc, ("GET", "/api/conversations/{id}", &c), None, None).await;
    s.refused(&app, &doc, ("PATCH", "/api/conversations/{id}", &c), t, Some(json!({ "status": "bogus" }))).await;
    s.refused(&app, &doc, ("POST", "/api/internal/messages/list", "/api/internal/messages/list"), Some("wrong"), Some(json!({}))).await;

    s.request(&app, &doc, "DELETE", "/api/conversations/{id}/messages/{mid}", &one, t, None).await;
    s.request(&app, &doc, "DELETE", "/api/conversations/{id}", &c, t, None).await;

    assert!(s.failures.is_empty(), "{} sample(s) failed:\n{}", s.failures.len(), s.failures.join("\n"));

    let documented = operations(&doc);
    let unsampled: Vec<_> = documented.difference(&s.checked).collect();
    assert!(unsampled.is_empty(), "documented operations without a sample request here: {unsampled:?}");
    let matched = app.matched.lock().unwrap().clone();
    let undocumented: Vec<_> = matched.difference(&documented).collect();
    assert!(undocumented.is_empty(), "routes the server matched that the document lacks: {undocumented:?}");
    assert_eq!(matched, documented, "every documented operation was matched by the server");
}

#[tokio::test]
async fn the_docs_page_loads_nothing_from_elsewhere() {
    let app = start().await;
    let res = app.http.get(format!("{}/api/docs", app.base_url)).send().await.expect("request");
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/html; charset=utf-8");
    let csp = res.headers()["content-security-policy"].to_str().unwrap().to_string();
    let html = res.text().await.unwrap();
    // Only the page's own script and style (by hash) and requests to this origin.
    assert!(csp.starts_with("default-src 'none'; script-src 'sha256-"), "{csp}");
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    assert!(!csp.contains("http"), "{csp}");
    for external in ["src=\"http", "href=\"http", "src=\"//", "href=\"//", "@import", "url("] {
        assert!(!html.contains(external), "the page refers elsewhere: {external}");
    }
    assert!(html.contains("fetch(\"openapi.json\""));
}

/// The server → client events of the document's description, each with the name of its payload
/// schema: the rows of the Markdown table under "Server → client".
fn documented_events(doc: &Value) -> Vec<(String, String)> {
    fn backticked(s: &str) -> Vec<String> {
        s.split('`').skip(1).step_by(2).map(str::to_string).collect()
    }
    let description = doc["info"]["description"].as_str().expect("a description");
    let section = description.split("### Server → client").nth(1).expect("a Server → client section");
    let section = section.split("\n#").next().unwrap_or_default();
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    let mut events = Vec::new();
    for row in section.lines().filter(|l| l.starts_with("| `")) {
        let columns: Vec<&str> = row.split('|').collect();
        let schema = backticked(columns[2]).into_iter().find(|name| schemas.contains_key(name));
        let schema = schema.unwrap_or_else(|| panic!("no payload schema named in: {row}"));
        events.extend(backticked(columns[1]).into_iter().map(|event| (event, schema.clone())));
    }
    events
}

#[tokio::test]
async fn socket_event_payloads_validate_against_their_documented_schemas() {
    use common::socket::SocketClient;

    let app = start().await;
    let doc = app.document().await;
    let events = documented_events(&doc);
    assert!(events.len() >= 19, "server → client events read from the description: {events:?}");

    let alice_token = user("alice", "acme");
    let alice_auth = Some(alice_token.as_str());
    let (_, _, created) = app.call("POST", "/api/conversations", alice_auth, Some(&json!({ "agent_id": "agent-1" }))).await;
    let id = created["conversation"]["id"].as_str().expect("conversation id").to_string();
    let c = format!("/api/conversations/{id}");
    let mut bob = SocketClient::connect(&app.base_url, &user("bob", "acme")).await.expect("bob connects");
    let mut alice = SocketClient::connect(&app.base_url, &alice_token).await.expect("alice connects");

    // Something that sets off each event of the table.
    assert_eq!(bob.emit_ack("conversation:join", json!(id)).await.data["ok"], true);
    assert_eq!(alice.emit_ack("conversation:join", json!({ "conversationId": id })).await.data["ok"], true);
    alice.emit_ack("typing", json!({ "conversationId": id, "isTyping": true })).await;
    let sent = alice.emit_ack("message:send", json!({ "conversationId": id, "content": "hi" })).await;
    let mid = sent.data["message"]["id"].as_str().expect("message id").to_string();
    app.call("PATCH", &format!("{c}/messages/{mid}"), alice_auth, Some(&json!({ "content": "hi again" }))).await;
    let thread = alice.emit_ack("thread:create", json!({ "conversationId": id, "title": "Billing" })).await;
    let tid = thread.data["thread"]["id"].as_str().expect("thread id").to_string();
    alice.emit_ack("thread:switch", json!({ "conversationId": id, "threadId": tid })).await;
    app.call("POST", &format!("{c}/threads/{tid}"), alice_auth, Some(&json!({ "content": "in the thread" }))).await;
    app.call("PATCH", &c, alice_auth, Some(&json!({ "title": "Renamed" }))).await;
    app.call("POST", &format!("{c}/participants"), alice_auth, Some(&json!({ "userId": "carol" }))).await;
    app.call("DELETE", &format!("{c}/participants/carol"), alice_auth, None).await;
    app.call("DELETE", &format!("{c}/messages/{mid}"), alice_auth, None).await;
    // Refused without an acknowledgement: `error`, and `message:error` for the temp id.
    alice.emit("message:send", json!({ "conversationId": id, "content": " ", "tempId": "t-1" }));

    // Events only the caller gets, or that need bob gone; the others are read from bob.
    let for_alice = ["thread:switched", "error", "message:error", "user:left", "presence:update"];
    let mut failures = Vec::new();
    let mut check_event = |name: &str, schema: &str, data: &Value| {
        let schema = json!({ "$ref": format!("#/components/schemas/{schema}") });
        if let Err(e) = check(&doc, &schema, data, true) {
            failures.push(format!("{name}: {e}\n  payload: {data}"));
        }
    };
    for (name, schema) in events.iter().filter(|(name, _)| !for_alice.contains(&name.as_str())) {
        let event = bob.wait_for(name, |_| true).await;
        check_event(name, schema, &event.data);
    }
    bob.close();
    for (name, schema) in events.iter().filter(|(name, _)| for_alice.contains(&name.as_str())) {
        let event = alice.wait_for(name, |d| name != "presence:update" || d["userId"] == "bob").await;
        check_event(name, schema, &event.data);
    }
    assert!(failures.is_empty(), "{} payload(s) do not match their documented schema:\n{}", failures.len(), failures.join("\n"));
}
