//! Who is calling: an API key with a role (kept only as its SHA-256), a customer's
//! session token (signed by the server, naming one customer and one conversation), or
//! nobody. Every `/api` and `/v1` request passes [`guard`], which resolves the caller,
//! applies the rate limits, and hands the caller to the handler.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use shopgraph_core::{ConversationId, UserId};

use crate::AppState;
use crate::error::ApiError;

/// What a key may do. Admin may do everything.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The shop's own frontend and backend: recommendations, search, events, catalog.
    Storefront,
    /// Support agents: the agent API and console.
    Agent,
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "storefront" => Some(Role::Storefront),
            "agent" => Some(Role::Agent),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Storefront => "storefront",
            Role::Agent => "agent",
            Role::Admin => "admin",
        }
    }
}

/// One key as configured: its name (for logs and metrics), role, and the SHA-256 of the
/// key in hex. The key itself is never stored.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ApiKey {
    pub name: String,
    pub role: Role,
    pub sha256: String,
}

impl ApiKey {
    /// The entry for a key given in the clear (it is hashed here and dropped).
    pub fn from_secret(name: &str, role: Role, secret: &str) -> ApiKey {
        ApiKey { name: name.to_owned(), role, sha256: sha256_hex(secret.as_bytes()) }
    }
}

/// A new random key: `sg_` and 40 hex digits.
pub fn new_secret() -> String {
    format!("sg_{}", hex(&rand::random::<[u8; 20]>()))
}

/// The letters of link codes: no 0/O or 1/I to misread.
const LINK_ALPHABET: &[u8; 32] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";

/// A one-time code for linking a chat to an account: 8 characters, 40 random bits.
pub fn new_link_code() -> String {
    (0..8).map(|_| LINK_ALPHABET[rand::random_range(0..32)] as char).collect()
}

/// Whether `typed` could be a link code (what the bot's `start=…` link carries may be
/// something else).
pub fn looks_like_link_code(typed: &str) -> bool {
    let code: Vec<u8> = typed
        .bytes()
        .filter(|b| !b.is_ascii_whitespace() && *b != b'-')
        .map(|b| b.to_ascii_uppercase())
        .collect();
    code.len() == 8 && code.iter().all(|b| LINK_ALPHABET.contains(b))
}

/// The stored form of a link code, as the customer may type it: case, spaces and
/// dashes do not matter.
pub fn link_code_sha256(typed: &str) -> String {
    let code: String = typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_uppercase)
        .collect();
    sha256_hex(code.as_bytes())
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The configured keys, by hash.
pub(crate) struct Keys {
    by_hash: HashMap<String, (String, Role)>,
}

impl Keys {
    pub(crate) fn new(keys: &[ApiKey]) -> Result<Keys, String> {
        let mut by_hash = HashMap::new();
        for k in keys {
            let hash = k.sha256.to_ascii_lowercase();
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("API key {:?}: sha256 must be 64 hex digits", k.name));
            }
            if by_hash.insert(hash, (k.name.clone(), k.role)).is_some() {
                return Err(format!("API key {:?} repeats another key", k.name));
            }
        }
        Ok(Keys { by_hash })
    }

    fn find(&self, secret: &str) -> Option<(String, Role)> {
        self.by_hash.get(&sha256_hex(secret.as_bytes())).cloned()
    }
}

/// Signs and checks customer session tokens: `c1.USER.CONVERSATION.MAC`, the MAC an
/// HMAC-SHA256 under the server's secret. A token names one customer and the one
/// conversation of their chat page; it cannot be forged or changed to name another.
pub(crate) struct Sessions {
    secret: Vec<u8>,
}

impl Sessions {
    pub(crate) fn new(secret: Vec<u8>) -> Sessions {
        Sessions { secret }
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes a key of any length")
    }

    pub(crate) fn token(&self, user: UserId, conversation: ConversationId) -> String {
        let body = format!("c1.{}.{}", user.0, conversation.0);
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        format!("{body}.{}", hex(&mac.finalize().into_bytes()))
    }

    fn check(&self, token: &str) -> Option<(UserId, ConversationId)> {
        let (body, mac_hex) = token.rsplit_once('.')?;
        let mut parts = body.split('.');
        if parts.next()? != "c1" {
            return None;
        }
        let user: i64 = parts.next()?.parse().ok()?;
        let conversation: i64 = parts.next()?.parse().ok()?;
        if parts.next().is_some() || mac_hex.len() != 64 {
            return None;
        }
        let bytes: Vec<u8> = (0..32)
            .map(|i| u8::from_str_radix(mac_hex.get(2 * i..2 * i + 2)?, 16).ok())
            .collect::<Option<_>>()?;
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        mac.verify_slice(&bytes).ok()?;
        Some((UserId(user), ConversationId(conversation)))
    }
}

/// Who made a request.
#[derive(Clone, Debug)]
pub enum Caller {
    Anonymous,
    Key { name: String, role: Role },
    Customer { user: UserId, conversation: ConversationId },
}

impl Caller {
    /// Refuses a caller without `role` (admin has every role).
    pub(crate) fn require(&self, role: Role) -> Result<(), ApiError> {
        match self {
            Caller::Key { role: r, .. } if *r == role || *r == Role::Admin => Ok(()),
            Caller::Key { role: r, .. } => Err(ApiError::forbidden(format!(
                "this needs a key with the {} role; this key has the {} role",
                role.as_str(),
                r.as_str()
            ))),
            Caller::Customer { .. } => {
                Err(ApiError::forbidden("a customer session cannot use this endpoint"))
            }
            Caller::Anonymous => Err(unauthorized(&format!(
                "this needs an API key with the {} role (Authorization: Bearer KEY)",
                role.as_str()
            ))),
        }
    }

    /// Any API key.
    pub(crate) fn require_key(&self) -> Result<(), ApiError> {
        match self {
            Caller::Key { .. } => Ok(()),
            Caller::Customer { .. } => {
                Err(ApiError::forbidden("a customer session cannot use this endpoint"))
            }
            Caller::Anonymous => {
                Err(unauthorized("this needs an API key (Authorization: Bearer KEY)"))
            }
        }
    }

    /// The customer and their conversation.
    pub(crate) fn customer(&self) -> Result<(UserId, ConversationId), ApiError> {
        match self {
            Caller::Customer { user, conversation } => Ok((*user, *conversation)),
            _ => Err(unauthorized(
                "this needs a customer session token (POST /api/v1/chat/sessions gives one)",
            )),
        }
    }

    /// The name rate limits and logs use.
    fn bucket(&self, ip: &str) -> String {
        match self {
            Caller::Key { name, .. } => format!("key:{name}"),
            _ => format!("ip:{ip}"),
        }
    }
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, message)
}

fn presented(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let v = v.to_str().ok()?;
        return v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")).map(str::trim);
    }
    headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim)
}

/// Resolves the caller (a wrong key or token is refused here, before any handler),
/// applies the rate limit of its key or, without a key, of its address, and passes the
/// caller on as a request extension.
pub(crate) async fn guard(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let caller = match presented(request.headers()) {
        None | Some("") => Caller::Anonymous,
        Some(token) if token.starts_with("c1.") => match state.sessions.check(token) {
            Some((user, conversation)) => Caller::Customer { user, conversation },
            None => return unauthorized("the session token is not valid").into_response(),
        },
        Some(secret) => match state.keys.find(secret) {
            Some((name, role)) => Caller::Key { name, role },
            None => return unauthorized("the API key is not valid").into_response(),
        },
    };
    let ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".to_owned(), |c| c.0.ip().to_string());
    let per_second = match caller {
        Caller::Key { .. } => state.config.rate_limit.per_key,
        _ => state.config.rate_limit.per_ip,
    };
    if let Err(wait) = state.limiter.take(&caller.bucket(&ip), per_second) {
        let mut response = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many requests; try again in {} ms", wait.as_millis().max(1)),
        )
        .into_response();
        let seconds = wait.as_secs().max(1).to_string();
        if let Ok(v) = seconds.parse() {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return response;
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_codes_are_read_as_typed_and_only_codes_look_like_codes() {
        let code = new_link_code();
        assert!(looks_like_link_code(&code), "{code}");
        let typed = format!("{}-{} ", code[..4].to_lowercase(), &code[4..]);
        assert!(looks_like_link_code(&typed));
        assert_eq!(link_code_sha256(&typed), link_code_sha256(&code));
        for other in ["", "ABCDEFG", "ABCDEFGHJ", "ABCDEFG0", "promo-2024", "ABCD EFG1"] {
            assert!(!looks_like_link_code(other), "{other}");
        }
    }

    #[test]
    fn a_session_token_names_one_customer_and_cannot_be_altered() {
        let sessions = Sessions::new(b"secret".to_vec());
        let token = sessions.token(UserId(7), ConversationId(9));
        assert_eq!(sessions.check(&token), Some((UserId(7), ConversationId(9))));
        let forged = token.replacen("c1.7.", "c1.8.", 1);
        assert_eq!(sessions.check(&forged), None);
        let other = Sessions::new(b"another".to_vec());
        assert_eq!(other.check(&token), None);
        assert_eq!(sessions.check("c1.7.9"), None);
        assert_eq!(sessions.check("c1.7.9.zz"), None);
    }

    #[test]
    fn keys_are_found_by_their_hash_and_roles_nest_under_admin() {
        let keys = Keys::new(&[
            ApiKey::from_secret("web", Role::Storefront, "s3cret"),
            ApiKey::from_secret("ops", Role::Admin, "r00t"),
        ])
        .unwrap();
        assert_eq!(keys.find("s3cret"), Some(("web".to_owned(), Role::Storefront)));
        assert_eq!(keys.find("nope"), None);
        let admin = Caller::Key { name: "ops".into(), role: Role::Admin };
        assert!(admin.require(Role::Agent).is_ok());
        let web = Caller::Key { name: "web".into(), role: Role::Storefront };
        assert_eq!(web.require(Role::Agent).unwrap_err().status, StatusCode::FORBIDDEN);
        assert_eq!(
            Caller::Anonymous.require(Role::Agent).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        assert!(
            Keys::new(&[ApiKey { name: "x".into(), role: Role::Admin, sha256: "abc".into() }])
                .is_err()
        );
    }
}
