//! The admin console: the page and every asset it loads are served from the binary to anyone,
//! the recent errors only to admins, and they hold what the node logged as warnings.

mod common;

use common::socket::SocketClient;
use common::{now, sign, spawn_app, user};
use serde_json::{json, Value};

const COMPANY: &str = "admin-co";

fn admin() -> String {
    sign(json!({ "sub": "operator", "company_id": COMPANY, "app_metadata": { "role": "admin" }, "exp": now() + 3600 }))
}

#[tokio::test]
async fn the_page_and_its_assets_come_from_the_binary() {
    let app = spawn_app(&[]);
    let res = app.http.get(app.url("/admin")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/html; charset=utf-8");
    let csp = res.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("script-src 'self'") && csp.contains("connect-src 'self'"), "{csp}");
    let page = res.text().await.unwrap();

    // Everything the page refers to is served here; nothing comes from elsewhere.
    let referenced: Vec<&str> = page.split(['"', '\'']).filter(|s| s.starts_with('/') || s.contains("://")).collect();
    assert!(referenced.len() >= 4, "{referenced:?}");
    for path in referenced {
        assert!(path.starts_with("/admin/assets/"), "the page loads {path}");
        let res = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let expected = match path.rsplit('.').next() {
            Some("js") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            Some("svg") => "image/svg+xml",
            other => panic!("unexpected asset type {other:?}"),
        };
        assert_eq!(res.headers()["content-type"], expected, "{path}");
    }
    let bundle = app.http.get(app.url("/admin/assets/socket.io.min.js")).send().await.unwrap().text().await.unwrap();
    assert!(bundle.starts_with("/*!\n * Socket.IO v4.8.1\n"), "license header of the vendored client");

    let (status, body) = common::send(app.http.get(app.url("/admin/assets/secrets.txt"))).await;
    assert_eq!((status, body), (404, json!({ "error": "Not found" })));
}

#[tokio::test]
async fn recent_errors_are_for_admins_and_list_what_was_logged() {
    // Kept whatever the log filter lets through.
    let app = spawn_app(&[("MAX_CONNECTIONS", "1"), ("RUST_LOG", "error")]);
    let errors = |token: Option<String>| {
        let mut req = app.http.get(app.url("/admin/api/errors"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        common::send(req)
    };
    for (token, error) in [
        (None, "Missing or invalid authorization header"),
        (Some(user("someone", COMPANY)), "Admin access required"),
        (Some("not-a-token".to_string()), "Invalid or expired token"),
    ] {
        assert_eq!(errors(token).await, (401, json!({ "error": error })));
    }

    // A second socket over MAX_CONNECTIONS is refused with a warning.
    let _first = SocketClient::connect(&app.base_url, &user("first", COMPANY)).await.expect("connect");
    let refused = SocketClient::connect(&app.base_url, &user("second", COMPANY)).await.err();
    assert_eq!(refused.as_deref(), Some("Server is at capacity"));

    let (status, body) = errors(Some(admin())).await;
    assert_eq!(status, 200, "{body}");
    let logged = body["errors"].as_array().expect("errors");
    let warning = logged.iter().find(|e| e["message"] == "connection refused: at capacity").unwrap_or_else(|| panic!("{body}"));
    assert_eq!(warning["level"], "WARN");
    assert_eq!(warning["target"], "chat_service::realtime");
    assert_eq!(warning["fields"], json!({ "max": "1" }));
    assert!(warning["at"].as_str().is_some_and(|t| t.ends_with('Z')), "{warning}");
}

#[tokio::test]
async fn health_shows_the_agent_only_when_one_is_configured() {
    let app = spawn_app(&[]);
    let (status, body) = common::send(app.http.get(app.url("/health"))).await;
    assert_eq!(status, 200);
    assert_eq!(body["checks"].get("agent"), None::<&Value>);
}
