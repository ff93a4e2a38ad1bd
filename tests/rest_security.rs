//! Authentication, tenant isolation on every route, widget confinement, rate limits,
//! security headers, body size limit, CORS and /health.

mod common;

use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn auth_failures() {
    let app = spawn_app(&[]);
    let res = app.http.get(app.url("/api/conversations")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(res.json::<Value>().await.unwrap(), json!({ "error": "Missing or invalid authorization header" }));
    let res = app.http.get(app.url("/api/conversations")).header("authorization", "Basic abc").send().await.unwrap();
    assert_eq!(res.status(), 401);

    for token in [expired("a", "acme"), wrong_signature("a", "acme"), alg_none("a", "acme"), "garbage".to_string()] {
        let (status, body) = app.get(&token, "/api/conversations").await;
        assert_eq!((status, body), (401, json!({ "error": "Invalid or expired token" })), "{token}");
    }
    let (status, body) = app.get(&no_company("a"), "/api/conversations").await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = app.post(&no_company("a"), "/api/conversations", json!({ "agent_id": "x" })).await;
    assert_eq!(status, 400);

    // Supabase tokens carry the company under app_metadata.
    let (status, _) = app.get(&supabase_user("a", "acme"), "/api/conversations").await;
    assert_eq!(status, 200);
}

/// A token that is not valid yet (`nbf` an hour ahead) is refused like an expired one, over
/// REST and in the Socket.IO handshake; an `nbf` inside the leeway is accepted.
#[tokio::test]
async fn tokens_are_refused_before_their_not_before_time() {
    let app = spawn_app(&[]);
    let early = sign(json!({ "sub": "a", "company_id": "acme", "exp": now() + 7200, "nbf": now() + 3600 }));
    let (status, body) = app.get(&early, "/api/conversations").await;
    assert_eq!((status, body), (401, json!({ "error": "Invalid or expired token" })));
    let refused = common::socket::SocketClient::connect(&app.base_url, &early).await.err();
    assert_eq!(refused.as_deref(), Some("Invalid or expired token"));

    let now_valid = sign(json!({ "sub": "a", "company_id": "acme", "exp": now() + 7200, "nbf": now() + 2 }));
    let (status, body) = app.get(&now_valid, "/api/conversations").await;
    assert_eq!(status, 200, "{body}");
    assert!(common::socket::SocketClient::connect(&app.base_url, &now_valid).await.is_ok());
}

#[tokio::test]
async fn another_company_gets_404_on_every_route() {
    let app = spawn_app(&[]);
    let alice = user("alice", "acme");
    let mallory = user("mallory", "evil-co");
    let id = app.conversation(&alice).await;
    let m = app.message(&alice, &id, "secret").await;
    let mid = m["id"].as_str().unwrap();
    let (_, t) = app.post(&alice, &format!("/api/conversations/{id}/threads"), json!({ "title": "T" })).await;
    let tid = t["thread"]["id"].as_str().unwrap();
    let c = format!("/api/conversations/{id}");

    let checks = vec![
        app.get(&mallory, &c).await,
        app.put(&mallory, &c, json!({ "status": "ended" })).await,
        app.patch(&mallory, &c, json!({ "status": "ended" })).await,
        app.delete(&mallory, &c).await,
        app.get(&mallory, &format!("{c}/messages")).await,
        app.post(&mallory, &format!("{c}/messages"), json!({ "content": "x" })).await,
        app.patch(&mallory, &format!("{c}/messages/{mid}"), json!({ "markAsRead": true })).await,
        app.delete(&mallory, &format!("{c}/messages/{mid}")).await,
        app.post(&mallory, &format!("{c}/threads"), json!({ "title": "x" })).await,
        app.get(&mallory, &format!("{c}/threads/{tid}")).await,
        app.post(&mallory, &format!("{c}/threads/{tid}"), json!({ "content": "x" })).await,
        app.post(&mallory, &format!("{c}/participants"), json!({ "userId": "mallory" })).await,
        app.delete(&mallory, &format!("{c}/participants/alice")).await,
        app.get(&mallory, &format!("{c}/presence")).await,
    ];
    for (i, (status, body)) in checks.into_iter().enumerate() {
        assert_eq!((status, body), (404, json!({ "error": "Conversation not found" })), "route #{i}");
    }
    let (_, body) = app.get(&mallory, "/api/conversations").await;
    assert_eq!(body["total"], 0);

    // Nothing changed for the owner.
    let (_, body) = app.get(&alice, &c).await;
    assert_eq!(body["conversation"]["status"], "active");
    assert_eq!(body["conversation"]["participants"], json!(["alice"]));
    let (_, body) = app.get(&alice, &format!("{c}/messages")).await;
    assert_eq!(body["total"], 1);
}

#[tokio::test]
async fn widget_tokens_are_confined_to_their_conversation() {
    let app = spawn_app(&[]);
    let alice = user("alice", "acme");
    let own = app.conversation(&alice).await;
    let other = app.conversation(&alice).await;
    let w = widget(&own, "acme");

    let (status, body) = app.post(&w, &format!("/api/conversations/{own}/messages"), json!({ "content": "from widget" })).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["message"]["sender_id"], format!("widget:{own}"));
    let (status, _) = app.get(&w, &format!("/api/conversations/{other}")).await;
    assert_eq!(status, 404);
    let (_, body) = app.get(&w, "/api/conversations").await;
    assert_eq!(body["total"], 1);
    // What a widget may not do is, for it, not there: the same 404 as another conversation.
    let not_found = (404, json!({ "error": "Conversation not found" }));
    let alices = app.message(&alice, &own, "from alice").await;
    let alices = alices["id"].as_str().unwrap();
    let refused = vec![
        app.post(&w, "/api/conversations", json!({ "agent_id": "a" })).await,
        app.delete(&w, &format!("/api/conversations/{own}")).await,
        app.post(&w, &format!("/api/conversations/{own}/participants"), json!({ "userId": "mallory" })).await,
        app.delete(&w, &format!("/api/conversations/{own}/participants/alice")).await,
        app.patch(&w, &format!("/api/conversations/{own}/messages/{alices}"), json!({ "content": "changed" })).await,
        app.delete(&w, &format!("/api/conversations/{own}/messages/{alices}")).await,
    ];
    for (i, answer) in refused.into_iter().enumerate() {
        assert_eq!(answer, not_found, "widget request #{i}");
    }
    let (_, body) = app.get(&alice, &format!("/api/conversations/{own}")).await;
    assert_eq!(body["conversation"]["participants"], json!(["alice"]));
    let (_, body) = app.get(&alice, &format!("/api/conversations/{own}/messages")).await;
    assert_eq!(body["total"], 2);
    assert_eq!(body["messages"][1]["content"], "from alice");
    // Users still get 403 for someone else's message: they can see who may do what.
    let bob = user("bob", "acme");
    let (status, _) = app.delete(&bob, &format!("/api/conversations/{own}/messages/{alices}")).await;
    assert_eq!(status, 403);
    // A widget token for the right conversation but another company sees nothing.
    let (status, _) = app.get(&widget(&own, "evil-co"), &format!("/api/conversations/{own}")).await;
    assert_eq!(status, 404);

    // The unsigned legacy widget token only when explicitly allowed.
    use base64::Engine;
    let legacy = base64::engine::general_purpose::STANDARD.encode(json!({ "conversationId": own, "companyId": "acme" }).to_string());
    let (status, _) = app.get(&legacy, &format!("/api/conversations/{own}")).await;
    assert_eq!(status, 401);
    let allowing = spawn_app(&[("ALLOW_LEGACY_WIDGET_TOKENS", "true")]);
    let own2 = allowing.conversation(&alice).await;
    let legacy2 = base64::engine::general_purpose::STANDARD.encode(json!({ "conversationId": own2, "companyId": "acme" }).to_string());
    let (status, _) = allowing.get(&legacy2, &format!("/api/conversations/{own2}")).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn rate_limit_headers_and_429() {
    let app = spawn_app(&[("RATE_LIMIT_MAX", "3"), ("RATE_LIMIT_WINDOW_MS", "60000")]);
    let alice = user("alice", "acme");
    for expected_remaining in [2, 1, 0] {
        let res = app.http.get(app.url("/api/conversations")).bearer_auth(&alice).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let h = res.headers();
        assert_eq!(h["ratelimit-limit"], "3");
        assert_eq!(h["ratelimit-remaining"], expected_remaining.to_string().as_str());
        let reset: u64 = h["ratelimit-reset"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&reset), "{reset}");
    }
    let res = app.http.get(app.url("/api/conversations")).bearer_auth(&alice).send().await.unwrap();
    assert_eq!(res.status(), 429);
    assert_eq!(res.headers()["ratelimit-remaining"], "0");
    assert_eq!(res.json::<Value>().await.unwrap(), json!({ "error": "Too many requests", "message": "Please try again later" }));
    // Unauthenticated requests count too, and /health is never limited.
    let res = app.http.get(app.url("/api/conversations")).send().await.unwrap();
    assert_eq!(res.status(), 429);
    for _ in 0..5 {
        let res = app.http.get(app.url("/health")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert!(res.headers().get("ratelimit-limit").is_none());
    }
}

/// A REST call from the test (127.0.0.1) with `X-Forwarded-For: forwarded`; its status.
async fn call_forwarded_for(app: &TestApp, token: &str, forwarded: &str) -> u16 {
    let req = app.http.get(app.url("/api/conversations")).bearer_auth(token).header("x-forwarded-for", forwarded);
    req.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_rate_limit_counts_the_forwarded_client() {
    let app = spawn_app(&[("RATE_LIMIT_MAX", "2"), ("RATE_LIMIT_WINDOW_MS", "60000"), ("TRUSTED_PROXIES", "127.0.0.1")]);
    let alice = user("alice", "acme");
    let answers = [
        call_forwarded_for(&app, &alice, "203.0.113.1").await,
        call_forwarded_for(&app, &alice, "203.0.113.1").await,
        call_forwarded_for(&app, &alice, "203.0.113.1").await,
    ];
    assert_eq!(answers, [200, 200, 429]);
    assert_eq!(call_forwarded_for(&app, &alice, "203.0.113.2").await, 200, "another client has its own count");
    // An address the client put in front of the one the proxy appended changes nothing.
    assert_eq!(call_forwarded_for(&app, &alice, "198.51.100.9, 203.0.113.1").await, 429);
}

#[tokio::test]
async fn forwarded_for_from_anyone_else_is_ignored() {
    let app = spawn_app(&[("RATE_LIMIT_MAX", "2"), ("RATE_LIMIT_WINDOW_MS", "60000")]);
    let alice = user("alice", "acme");
    assert_eq!(call_forwarded_for(&app, &alice, "203.0.113.1").await, 200);
    assert_eq!(call_forwarded_for(&app, &alice, "203.0.113.2").await, 200);
    assert_eq!(call_forwarded_for(&app, &alice, "203.0.113.3").await, 429, "all counted against 127.0.0.1");
}

#[tokio::test]
async fn security_headers_body_limit_cors_and_health() {
    let app = spawn_app(&[("SOCKET_CORS_ORIGINS", "https://app.example.com")]);
    let alice = user("alice", "acme");
    let res = app.http.get(app.url("/api/conversations")).bearer_auth(&alice).send().await.unwrap();
    let h = res.headers();
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert!(h["content-security-policy"].to_str().unwrap().contains("default-src 'none'"));

    let big = format!("{{\"agent_id\":\"a\",\"title\":\"{}\"}}", "x".repeat(11 * 1024 * 1024));
    // On a connection of its own: the server answers before reading the whole body and then
    // closes that connection, which must not fail the requests that follow.
    let res = reqwest::Client::new()
        .post(app.url("/api/conversations"))
        .bearer_auth(&alice)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);

    let res = app
        .http
        .request(reqwest::Method::OPTIONS, app.url("/api/conversations"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(res.headers()["access-control-allow-credentials"], "true");
    let res = app
        .http
        .get(app.url("/health"))
        .header("origin", "https://evil.example.com")
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none());

    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["service"], "chat-service");
    assert_eq!(body["checks"]["store"]["status"], "ok");
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));

    let (status, body) = app.get(&alice, "/api/nope").await;
    assert_eq!((status, body), (404, json!({ "error": "Not found" })));
}

/// Every refusal of the HTTP layer itself is JSON `{ error }`: unreadable query strings and
/// path parameters, unknown routes, wrong methods, oversized request heads. Socket.IO's own
/// answers under /socket.io stay as socketioxide gives them.
#[tokio::test]
async fn http_layer_refusals_are_json_errors() {
    let app = spawn_app(&[]);
    let alice = user("alice", "acme");
    let id = app.conversation(&alice).await;

    let json_error = |status: u16, body: &Value, expected: u16, error: &str| {
        assert_eq!(status, expected, "{body}");
        assert_eq!(body["error"], error, "{body}");
    };
    let (status, body) = app.get(&alice, "/api/conversations?limit=1&limit=2").await;
    json_error(status, &body, 400, "Invalid query string");
    assert!(body["details"].as_str().unwrap().contains("limit"), "{body}");
    let (status, body) = app.get(&alice, &format!("/api/conversations/{id}/messages?offset=1&offset=2")).await;
    json_error(status, &body, 400, "Invalid query string");
    let (status, body) = app.get(&alice, "/api/conversations/%FF").await;
    json_error(status, &body, 400, "Invalid path");
    let (status, body) = app.delete(&alice, &format!("/api/conversations/{id}/participants/%C3%28")).await;
    json_error(status, &body, 400, "Invalid path");
    let res = app.http.post(app.url("/api/conversations")).bearer_auth(&alice).body("{").send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "Invalid request body");

    for path in ["/api/nope", "/api/", "/api/conversations/x/y/z/w", "/", "/nope"] {
        let (status, body) = app.get(&alice, path).await;
        assert_eq!((status, body), (404, json!({ "error": "Not found" })), "{path}");
    }
    for (method, path) in [
        (reqwest::Method::DELETE, "/api/conversations".to_string()),
        (reqwest::Method::POST, format!("/api/conversations/{id}/presence")),
        (reqwest::Method::GET, "/api/internal/messages/emit".to_string()),
        (reqwest::Method::POST, "/health".to_string()),
    ] {
        let res = app.http.request(method.clone(), app.url(&path)).bearer_auth(&alice).send().await.unwrap();
        assert_eq!(res.status(), 405, "{method} {path}");
        assert!(res.headers().contains_key("allow"), "{method} {path}");
        assert_eq!(res.json::<Value>().await.unwrap(), json!({ "error": "Method not allowed" }), "{method} {path}");
    }

    // A request target of 8 KiB is served; one byte more is 414.
    let padded = |len: usize| {
        let prefix = "/api/conversations?pad=";
        format!("{prefix}{}", "x".repeat(len - prefix.len()))
    };
    let (status, body) = app.get(&alice, &padded(8 * 1024)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app.get(&alice, &padded(8 * 1024 + 1)).await;
    assert_eq!((status, body), (414, json!({ "error": "URI too long" })));

    // 16 KiB of header fields in all are served; more is 431.
    let sized = |value_len: usize| {
        app.http.get(app.url("/api/conversations")).bearer_auth(&alice).header("x-padding", "v".repeat(value_len))
    };
    let (status, body) = send(sized(12 * 1024)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(sized(16 * 1024)).await;
    assert_eq!((status, body), (431, json!({ "error": "Request header fields too large" })));
    // Many small header fields add up the same way.
    let mut many = app.http.get(app.url("/api/conversations")).bearer_auth(&alice);
    for i in 0..60 {
        many = many.header(format!("x-padding-{i}"), "v".repeat(300));
    }
    let (status, body) = send(many).await;
    assert_eq!((status, body), (431, json!({ "error": "Request header fields too large" })));

    // Socket.IO handshakes and polling requests are held to the same head limits.
    let long_handshake = format!("/socket.io/?EIO=4&transport=polling&pad={}", "x".repeat(8 * 1024));
    let (status, body) = send(app.http.get(app.url(&long_handshake))).await;
    assert_eq!((status, body), (414, json!({ "error": "URI too long" })));

    // Socket.IO's own answers are untouched.
    let res = app.http.get(app.url("/socket.io/?EIO=4&transport=bogus")).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap(), json!({ "code": "0", "message": "Transport unknown" }));
    let res = app.http.get(app.url("/socket.io/?EIO=4&transport=polling")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().starts_with("0{\"sid\""));
}

/// More than 100 header fields are refused with a JSON 431, however small they are. Needs
/// hyper to let more than 100 fields through to the middleware (`max_headers` in `serve`);
/// at hyper's default it answers 431 itself, without a body.
#[tokio::test]
async fn more_than_100_header_fields_are_a_json_431() {
    let app = spawn_app(&[]);
    let alice = user("alice", "acme");
    let with_fields = |n: usize| {
        let mut req = app.http.get(app.url("/api/conversations")).bearer_auth(&alice);
        for i in 0..n {
            req = req.header(format!("x-f{i}"), "1");
        }
        req
    };
    // reqwest adds a few of its own (host, accept, authorization).
    let (status, body) = send(with_fields(90)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(with_fields(120)).await;
    assert_eq!((status, body), (431, json!({ "error": "Request header fields too large" })));
}

#[tokio::test]
async fn invalid_configuration_stops_start_up_naming_the_variable() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chat-service"))
        .env("PORT", "eighty")
        .env("DATA_DIR", std::env::temp_dir())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("PORT"), "{stderr}");
}
