//! The API document, OpenAPI 3.1 generated from the routes and the types they exchange, and a
//! page that renders it. The page is self-contained: its script and style are compiled into
//! the binary and it loads nothing but `/api/openapi.json`.

use std::sync::LazyLock;

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::body::Bytes;
use axum::Extension;
use base64::Engine;
use sha2::{Digest, Sha256};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::error::ErrorBody;
use crate::domain::FieldError;
use crate::service::events;

const TAG: &str = "docs";

/// The parts of the document that are not read off the routes: the description (with the
/// Socket.IO events), the security schemes, the tags, and the event payload schemas.
#[derive(OpenApi)]
#[openapi(
    info(title = "chat-service", description = include_str!("docs/api.md")),
    modifiers(&SecuritySchemes),
    components(schemas(
        ErrorBody,
        FieldError,
        events::ConversationJoined,
        events::MessageNew,
        events::MessageEdited,
        events::MessageDeleted,
        events::Typing,
        events::UserInRoom,
        events::Presence,
        events::ThreadCreated,
        events::ThreadSwitched,
        events::ThreadUpdated,
        events::ConversationUpdated,
        events::ErrorEvent,
        events::MessageErrorEvent,
    )),
    tags(
        (name = "conversations", description = "Conversations of the caller's company, their participants and presence"),
        (name = "messages", description = "Messages of a conversation's main thread or of one thread"),
        (name = "threads", description = "Side threads of a conversation"),
        (name = "search", description = "Full-text search over the messages the caller may read"),
        (name = "internal", description = "For sibling services holding `INTERNAL_SERVICE_TOKEN`; not confined to one company"),
        (name = "health", description = "Liveness and dependencies"),
        (name = "docs", description = "This document"),
    ),
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        let mut user = Http::new(HttpAuthScheme::Bearer);
        user.bearer_format = Some("JWT".into());
        user.description = Some("A user or widget token: HS256 JWT signed with `JWT_SECRET`.".into());
        components.add_security_scheme("bearer", SecurityScheme::Http(user));
        let mut internal = Http::new(HttpAuthScheme::Bearer);
        internal.description = Some("`INTERNAL_SERVICE_TOKEN`, shared with the sibling services.".into());
        components.add_security_scheme("internal", SecurityScheme::Http(internal));
    }
}

/// The finished document as JSON, handed to its route by the router that it describes.
#[derive(Clone)]
pub struct ApiDocument(pub Bytes);

/// This document
///
/// OpenAPI 3.1, generated from the service's code.
#[utoipa::path(
    get, path = "/openapi.json", tag = TAG, operation_id = "getApiDocument",
    responses((status = 200, description = "This document", content_type = "application/json", body = Object)),
)]
pub async fn openapi_json(Extension(doc): Extension<ApiDocument>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], doc.0).into_response()
}

/// This document as a page
///
/// Self-contained: it loads nothing but `/api/openapi.json`.
#[utoipa::path(
    get, path = "/docs", tag = TAG, operation_id = "getApiDocs",
    responses((status = 200, description = "HTML", content_type = "text/html", body = String)),
)]
pub async fn page() -> Response {
    let page = &*PAGE;
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")), (header::CONTENT_SECURITY_POLICY, page.csp.clone())],
        page.html.as_str(),
    )
        .into_response()
}

struct Page {
    html: String,
    /// Allows exactly the page's own script and style, and fetching the document.
    csp: HeaderValue,
}

static PAGE: LazyLock<Page> = LazyLock::new(|| {
    const STYLE: &str = include_str!("docs/page.css");
    const SCRIPT: &str = include_str!("docs/page.js");
    let hash = |text: &str| base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text.as_bytes()));
    let csp = format!(
        "default-src 'none'; script-src 'sha256-{}'; style-src 'sha256-{}'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        hash(SCRIPT),
        hash(STYLE)
    );
    let html = include_str!("docs/page.html").replace("/*style*/", STYLE).replace("/*script*/", SCRIPT);
    Page { html, csp: HeaderValue::from_str(&csp).expect("a CSP of ASCII characters") }
});
