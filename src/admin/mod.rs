//! The admin console at `/admin`: one page and its assets, built into the binary, and the
//! recent warnings and errors it shows. The page loads without a token; everything it shows
//! comes from calls made with an admin's token (`http::admin` serves them).

pub mod recent_errors;

/// A file of the console: its bytes and media type.
pub struct Asset {
    pub content: &'static str,
    pub content_type: &'static str,
}

pub const PAGE: Asset = Asset { content: include_str!("assets/index.html"), content_type: "text/html; charset=utf-8" };

/// The files under `/admin/assets/`, by name.
pub fn asset(name: &str) -> Option<Asset> {
    let (content, content_type) = match name {
        "admin.js" => (include_str!("assets/admin.js"), JAVASCRIPT),
        "admin.css" => (include_str!("assets/admin.css"), "text/css; charset=utf-8"),
        "favicon.svg" => (include_str!("assets/favicon.svg"), "image/svg+xml"),
        // socket.io-client's browser bundle, for the playground (see assets/README.md).
        "socket.io.min.js" => (include_str!("assets/socket.io.min.js"), JAVASCRIPT),
        _ => return None,
    };
    Some(Asset { content, content_type })
}

const JAVASCRIPT: &str = "text/javascript; charset=utf-8";

/// What the page may load and connect to: its own origin only (the Socket.IO playground
/// included), no inline script or style, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
