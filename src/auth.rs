//! Who is calling. Tokens are verified locally (no round trip to the identity provider):
//! Supabase-style user JWTs, signed widget JWTs, and — only when explicitly allowed — the
//! deployed widget's unsigned base64 token. The result is a `Principal` that every service
//! call is scoped by.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::is_object_id;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalKind {
    User,
    /// The embeddable widget: confined to one conversation.
    Widget { conversation_id: String },
    /// Another back-end service holding the internal token.
    Service,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: String,
    pub company_id: Option<String>,
    pub email: Option<String>,
    pub kind: PrincipalKind,
    /// The token the caller authenticated with: calls made on the caller's behalf (the agent
    /// service) carry it. `None` for the internal service principal.
    pub token: Option<BearerToken>,
    /// An operator of this deployment (see `Claims::is_admin`): may read its metrics and
    /// recent errors, which cover every company. Grants nothing inside a company.
    pub admin: bool,
}

/// A raw bearer token, shared cheaply between a socket's events. Never printed: `Debug`
/// shows only that a token is there.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(Arc<str>);

impl BearerToken {
    pub fn new(token: &str) -> Self {
        BearerToken(Arc::from(token))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(..)")
    }
}

impl Principal {
    pub fn service() -> Self {
        Principal {
            user_id: "service".into(),
            company_id: None,
            email: None,
            kind: PrincipalKind::Service,
            token: None,
            admin: false,
        }
    }

    fn with_token(mut self, token: &str) -> Self {
        self.token = Some(BearerToken::new(token));
        self
    }

    pub fn is_service(&self) -> bool {
        self.kind == PrincipalKind::Service
    }

    /// A user whose token makes them an operator of the deployment.
    pub fn is_admin(&self) -> bool {
        self.admin && self.kind == PrincipalKind::User
    }

    /// The one conversation a widget may touch; `None` for users and services.
    pub fn widget_conversation(&self) -> Option<&str> {
        match &self.kind {
            PrincipalKind::Widget { conversation_id } => Some(conversation_id),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("Authentication required")]
    Missing,
    #[error("Invalid or expired token")]
    Invalid,
}

/// The claims we read. Unknown claims are ignored; Supabase puts the tenant in one of three places.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Claims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_metadata: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_metadata: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typ: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
}

impl Claims {
    fn company(&self) -> Option<String> {
        let nested = |v: &Option<Value>| v.as_ref()?.get("company_id")?.as_str().map(str::to_string);
        self.company_id
            .clone()
            .or_else(|| nested(&self.app_metadata))
            .or_else(|| nested(&self.user_metadata))
            .filter(|c| !c.is_empty())
    }

    /// `app_metadata.role` is `admin`, or `app_metadata.roles` lists it. Only `app_metadata`
    /// counts: Supabase lets users edit their own `user_metadata`, and the top-level `role` is
    /// the database role (`authenticated` for every signed-in user).
    fn is_admin(&self) -> bool {
        let Some(app) = &self.app_metadata else { return false };
        let is_admin = |v: &Value| v.as_str() == Some(ADMIN_ROLE);
        app.get("role").is_some_and(is_admin) || app.get("roles").and_then(Value::as_array).is_some_and(|r| r.iter().any(is_admin))
    }
}

/// The `app_metadata` role of an operator of the deployment. Not `owner`: a company's owner
/// administers a tenant, while what admins see spans every tenant.
const ADMIN_ROLE: &str = "admin";

/// The legacy widget token: base64 of this JSON, unsigned.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LegacyWidgetToken {
    conversation_id: String,
    company_id: String,
}

pub struct Authenticator {
    decoding: DecodingKey,
    encoding: EncodingKey,
    validation: Validation,
    allow_legacy_widget_tokens: bool,
    internal_token: Option<String>,
    metrics_token: Option<String>,
}

impl Authenticator {
    pub fn new(secret: &str, allow_legacy_widget_tokens: bool, internal_token: Option<String>) -> Self {
        // Exactly one algorithm: a token whose header names another (or `none`) is refused.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        // A token is refused before its `nbf` as after its `exp`, with the same leeway.
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp"]);
        Authenticator {
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            validation,
            allow_legacy_widget_tokens,
            internal_token,
            metrics_token: None,
        }
    }

    /// `/metrics` then needs this bearer token or an admin's; without one it is open.
    pub fn with_metrics_token(mut self, token: Option<String>) -> Self {
        self.metrics_token = token;
        self
    }

    /// Verifies any client token: a user or widget JWT, or a legacy widget token when allowed.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.matches('.').count() != 2 {
            return self.verify_legacy_widget(token).map(|p| p.with_token(token));
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| AuthError::Invalid)?;
        let claims = data.claims;
        let company_id = claims.company();
        if claims.typ.as_deref() == Some("widget") {
            let conversation_id = claims.conversation_id.filter(|c| is_object_id(c)).ok_or(AuthError::Invalid)?;
            let p = widget_principal(conversation_id.to_ascii_lowercase(), company_id.ok_or(AuthError::Invalid)?);
            return Ok(p.with_token(token));
        }
        let admin = claims.is_admin();
        let user_id = claims.sub.filter(|s| !s.is_empty()).ok_or(AuthError::Invalid)?;
        Ok(Principal {
            user_id,
            company_id,
            email: claims.email,
            kind: PrincipalKind::User,
            token: Some(BearerToken::new(token)),
            admin,
        })
    }

    fn verify_legacy_widget(&self, token: &str) -> Result<Principal, AuthError> {
        if !self.allow_legacy_widget_tokens {
            return Err(AuthError::Invalid);
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(token)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.trim_end_matches('=')))
            .map_err(|_| AuthError::Invalid)?;
        let legacy: LegacyWidgetToken = serde_json::from_slice(&bytes).map_err(|_| AuthError::Invalid)?;
        if !is_object_id(&legacy.conversation_id) || legacy.company_id.is_empty() {
            return Err(AuthError::Invalid);
        }
        Ok(widget_principal(legacy.conversation_id.to_ascii_lowercase(), legacy.company_id))
    }

    /// Checks the bearer token of an internal call. `Ok(false)`: the internal API is disabled.
    pub fn internal_enabled(&self) -> bool {
        self.internal_token.is_some()
    }

    pub fn verify_internal(&self, token: &str) -> bool {
        match &self.internal_token {
            Some(expected) => constant_time_eq(expected.as_bytes(), token.trim().as_bytes()),
            None => false,
        }
    }

    /// Whether `/metrics` needs a token at all.
    pub fn metrics_protected(&self) -> bool {
        self.metrics_token.is_some()
    }

    pub fn verify_metrics_token(&self, token: &str) -> bool {
        match &self.metrics_token {
            Some(expected) => constant_time_eq(expected.as_bytes(), token.trim().as_bytes()),
            None => false,
        }
    }

    /// Signs a user token (the examples use it).
    pub fn issue_user_token(&self, user_id: &str, company_id: &str, ttl_secs: u64) -> String {
        self.issue(Claims {
            sub: Some(user_id.into()),
            exp: unix_now() + ttl_secs,
            company_id: Some(company_id.into()),
            ..Default::default()
        })
    }

    /// Signs the demo token printed at start-up when no `JWT_SECRET` is configured: an admin,
    /// so that `/admin` and `/metrics` can be tried at once on a development machine.
    pub fn issue_demo_token(&self, user_id: &str, company_id: &str, ttl_secs: u64) -> String {
        self.issue(Claims {
            sub: Some(user_id.into()),
            exp: unix_now() + ttl_secs,
            company_id: Some(company_id.into()),
            app_metadata: Some(serde_json::json!({ "role": ADMIN_ROLE })),
            ..Default::default()
        })
    }

    fn issue(&self, claims: Claims) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).unwrap_or_default()
    }
}

fn widget_principal(conversation_id: String, company_id: String) -> Principal {
    Principal {
        user_id: format!("widget:{conversation_id}"),
        company_id: Some(company_id),
        email: None,
        kind: PrincipalKind::Widget { conversation_id },
        token: None,
        admin: false,
    }
}

/// Extracts the token from an `Authorization: Bearer <token>` header value.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let h = header?.trim();
    let (scheme, token) = h.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| token.trim())
}

pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &str = "unit-test-secret-0123456789";
    const CONV: &str = "65a1b2c3d4e5f6a7b8c9d0e1";

    fn sign(claims: Value, secret: &str) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
    }

    fn auth() -> Authenticator {
        Authenticator::new(SECRET, false, Some("internal-token".into()))
    }

    #[test]
    fn supabase_company_locations() {
        let exp = unix_now() + 60;
        let a = auth();
        let p = a.verify(&sign(json!({"sub": "u1", "exp": exp, "company_id": "c1"}), SECRET)).unwrap();
        assert_eq!((p.user_id.as_str(), p.company_id.as_deref()), ("u1", Some("c1")));
        let p = a.verify(&sign(json!({"sub": "u1", "exp": exp, "app_metadata": {"company_id": "c2"}}), SECRET)).unwrap();
        assert_eq!(p.company_id.as_deref(), Some("c2"));
        let p = a.verify(&sign(json!({"sub": "u1", "exp": exp, "user_metadata": {"company_id": "c3"}, "aud": "authenticated"}), SECRET)).unwrap();
        assert_eq!(p.company_id.as_deref(), Some("c3"));
        let p = a.verify(&sign(json!({"sub": "u1", "exp": exp}), SECRET)).unwrap();
        assert_eq!(p.company_id, None);
    }

    #[test]
    fn keeps_the_token_without_printing_it() {
        let token = sign(json!({"sub": "u1", "exp": unix_now() + 60, "company_id": "c1"}), SECRET);
        let p = auth().verify(&format!("  {token} ")).unwrap();
        assert_eq!(p.token.as_ref().map(BearerToken::as_str), Some(token.as_str()));
        assert!(!format!("{p:?}").contains(&token));
        assert_eq!(Principal::service().token, None);
    }

    #[test]
    fn rejects_bad_tokens() {
        let a = auth();
        let exp = unix_now() + 60;
        assert_eq!(a.verify(""), Err(AuthError::Missing));
        assert_eq!(a.verify(&sign(json!({"sub": "u", "exp": unix_now() - 120}), SECRET)), Err(AuthError::Invalid));
        assert_eq!(a.verify(&sign(json!({"sub": "u", "exp": exp}), "another-secret-0123456789")), Err(AuthError::Invalid));
        assert_eq!(a.verify(&sign(json!({"sub": "u"}), SECRET)), Err(AuthError::Invalid));
        assert_eq!(a.verify(&sign(json!({"sub": "u", "exp": exp, "nbf": unix_now() + 3600}), SECRET)), Err(AuthError::Invalid));
        assert!(a.verify(&sign(json!({"sub": "u", "exp": exp, "nbf": unix_now() + 2}), SECRET)).is_ok(), "within the leeway");
        // alg: none, unsigned.
        let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let none = format!("{}.{}.", b64(json!({"alg": "none", "typ": "JWT"})), b64(json!({"sub": "u", "exp": exp})));
        assert_eq!(a.verify(&none), Err(AuthError::Invalid));
        // HS512 with the right secret is still another algorithm.
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &json!({"sub": "u", "exp": exp}),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        assert_eq!(a.verify(&hs512), Err(AuthError::Invalid));
    }

    #[test]
    fn widget_tokens() {
        let exp = unix_now() + 60;
        let a = auth();
        let p = a.verify(&sign(json!({"typ": "widget", "conversation_id": CONV, "company_id": "c1", "exp": exp}), SECRET)).unwrap();
        assert_eq!(p.user_id, format!("widget:{CONV}"));
        assert_eq!(p.widget_conversation(), Some(CONV));
        assert!(p.token.is_some());
        let legacy = base64::engine::general_purpose::STANDARD.encode(json!({"conversationId": CONV, "companyId": "c1"}).to_string());
        assert_eq!(a.verify(&legacy), Err(AuthError::Invalid));
        let allowing = Authenticator::new(SECRET, true, None);
        assert_eq!(allowing.verify(&legacy).unwrap().widget_conversation(), Some(CONV));
        let bad = base64::engine::general_purpose::STANDARD.encode(json!({"conversationId": {"$gt": ""}, "companyId": "c1"}).to_string());
        assert!(allowing.verify(&bad).is_err());
    }

    #[test]
    fn admins_are_named_by_app_metadata_only() {
        let exp = unix_now() + 60;
        let a = auth();
        let verify = |claims: Value| a.verify(&sign(claims, SECRET)).unwrap().is_admin();
        assert!(verify(json!({"sub": "u", "exp": exp, "app_metadata": {"role": "admin"}})));
        assert!(verify(json!({"sub": "u", "exp": exp, "app_metadata": {"roles": ["support", "admin"]}})));
        assert!(!verify(json!({"sub": "u", "exp": exp, "app_metadata": {"role": "owner"}})));
        assert!(!verify(json!({"sub": "u", "exp": exp, "user_metadata": {"role": "admin"}})), "users edit their own user_metadata");
        assert!(!verify(json!({"sub": "u", "exp": exp, "role": "admin"})), "the database role");
        assert!(!verify(json!({"sub": "u", "exp": exp})));
        let widget = json!({"typ": "widget", "conversation_id": CONV, "company_id": "c", "exp": exp, "app_metadata": {"role": "admin"}});
        assert!(!verify(widget));
        assert!(!Principal::service().is_admin());
        // The demo token printed without JWT_SECRET opens the admin console; test tokens do not.
        assert!(a.verify(&a.issue_demo_token("demo", "c", 60)).unwrap().is_admin());
        assert!(!a.verify(&a.issue_user_token("u", "c", 60)).unwrap().is_admin());
    }

    #[test]
    fn metrics_token() {
        let open = auth();
        assert!(!open.metrics_protected());
        assert!(!open.verify_metrics_token(""));
        let closed = auth().with_metrics_token(Some("scrape-token".into()));
        assert!(closed.metrics_protected());
        assert!(closed.verify_metrics_token("scrape-token"));
        assert!(!closed.verify_metrics_token("scrape-tokem"));
    }

    #[test]
    fn internal_and_bearer() {
        let a = auth();
        assert!(a.verify_internal("internal-token"));
        assert!(!a.verify_internal("internal-tokeN"));
        assert!(!Authenticator::new(SECRET, false, None).verify_internal(""));
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
    }
}
