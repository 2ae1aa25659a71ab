//! Who may pull through trustgate (`[client_auth]`).
//!
//! Without it, anyone who reaches the listener pulls, and lists, everything trustgate's
//! upstream credentials can read. Three ways to authenticate, any one of which suffices, as in
//! docker/distribution and zot:
//! - mutual TLS: a client certificate issued by `client_ca` (verified by rustls-webpki in the
//!   handshake; with no other method configured, a connection without one is refused there);
//! - HTTP Basic against an htpasswd file (bcrypt only; [`htpasswd`]);
//! - static bearer tokens, stored as SHA-256 hashes ([`tokens`]).
//!
//! Only `/healthz` and `/readyz` are answered without authentication (probes); `/metrics` and
//! every registry endpoint, `/v2/` included, need it. The answer to an unauthenticated request
//! is 401 `UNAUTHORIZED` with a `Basic` challenge, which docker, containerd, podman and skopeo
//! answer with the credentials configured for this host.

pub mod access;
pub mod htpasswd;
pub mod tokens;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use http::header::AUTHORIZATION;
use http::HeaderMap;
use sha2::{Digest as _, Sha256};

pub use htpasswd::Htpasswd;
pub use tokens::TokenSet;

/// Validated `[client_auth]`.
#[derive(Clone)]
pub struct ClientAuth {
    /// PEM CA(s) that issue client certificates (requires `[tls]`).
    pub client_ca: Option<PathBuf>,
    pub htpasswd: Option<Arc<Htpasswd>>,
    pub tokens: Option<Arc<TokenSet>>,
    /// `anonymous = true`: the operator knows anyone may pull (no method configured).
    pub anonymous: bool,
    /// `[[client_auth.access]]`: empty means every authenticated identity reaches everything.
    pub access: Arc<Vec<access::AccessRule>>,
    /// Basic credentials that verified recently, by SHA-256 of `user \0 password`: a bcrypt
    /// check costs milliseconds of CPU and clients send the header on every blob request.
    verified: moka::sync::Cache<[u8; 32], String>,
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientAuth")
            .field("client_ca", &self.client_ca)
            .field("htpasswd_users", &self.htpasswd.as_ref().map(|h| h.len()))
            .field("tokens", &self.tokens.as_ref().map(|_| "<redacted>"))
            .field("anonymous", &self.anonymous)
            .finish()
    }
}

/// The verified client certificate of a connection (set by the server after the handshake).
#[derive(Debug, Clone)]
pub struct TlsClient {
    /// The certificate's subject, for logs.
    pub subject: String,
}

/// Who a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Anonymous,
    Certificate(String),
    User(String),
    Token(String),
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Anonymous => f.write_str("-"),
            Identity::Certificate(s) => write!(f, "cert:{s}"),
            Identity::User(u) => write!(f, "user:{u}"),
            Identity::Token(t) => write!(f, "token:{t}"),
        }
    }
}

/// Why a request was not authenticated; the message goes to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    Missing,
    Rejected,
    Malformed,
}

impl fmt::Display for AuthFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthFailure::Missing => "authentication required: log in to this trustgate",
            AuthFailure::Rejected => "authentication failed: wrong user name, password or token",
            AuthFailure::Malformed => "authentication failed: malformed Authorization header",
        })
    }
}

const VERIFIED_TTL: Duration = Duration::from_secs(300);
const VERIFIED_MAX: u64 = 10_000;

impl ClientAuth {
    pub fn new(
        client_ca: Option<PathBuf>,
        htpasswd: Option<Htpasswd>,
        tokens: Option<TokenSet>,
        anonymous: bool,
    ) -> ClientAuth {
        ClientAuth {
            client_ca,
            htpasswd: htpasswd.map(Arc::new),
            tokens: tokens.map(Arc::new),
            anonymous,
            access: Arc::default(),
            verified: moka::sync::Cache::builder()
                .max_capacity(VERIFIED_MAX)
                .time_to_live(VERIFIED_TTL)
                .build(),
        }
    }

    /// Restricts identities to the repositories `rules` grant them ([`access`]).
    pub fn with_access(mut self, rules: Vec<access::AccessRule>) -> ClientAuth {
        self.access = Arc::new(rules);
        self
    }

    /// Whether `id` may use `registry/repository` ([`access::allows`]).
    pub fn may_use(&self, id: &Identity, registry: &str, repository: &str) -> bool {
        access::allows(&self.access, id, registry, repository)
    }

    /// Whether a connection without a client certificate may still authenticate per request.
    pub fn has_request_methods(&self) -> bool {
        self.htpasswd.is_some() || self.tokens.is_some()
    }

    /// The `WWW-Authenticate` value of a 401.
    pub fn challenge(&self) -> &'static str {
        if self.htpasswd.is_some() || self.tokens.is_none() {
            "Basic realm=\"trustgate\""
        } else {
            "Bearer realm=\"trustgate\""
        }
    }

    /// Authenticates one request from its headers and its connection's client certificate.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        tls: Option<&TlsClient>,
    ) -> Result<Identity, AuthFailure> {
        if self.anonymous {
            return Ok(Identity::Anonymous);
        }
        if let (Some(_), Some(c)) = (&self.client_ca, tls) {
            return Ok(Identity::Certificate(c.subject.clone()));
        }
        let Some(value) = headers.get(AUTHORIZATION) else {
            return Err(AuthFailure::Missing);
        };
        let value = value.to_str().map_err(|_| AuthFailure::Malformed)?;
        let (scheme, rest) = value.split_once(' ').ok_or(AuthFailure::Malformed)?;
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("basic") {
            let Some(users) = &self.htpasswd else {
                return Err(AuthFailure::Rejected);
            };
            let raw = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .map_err(|_| AuthFailure::Malformed)?;
            let text = String::from_utf8(raw).map_err(|_| AuthFailure::Malformed)?;
            let (user, password) = text.split_once(':').ok_or(AuthFailure::Malformed)?;
            let mut h = Sha256::new();
            h.update(user.as_bytes());
            h.update([0]);
            h.update(password.as_bytes());
            let key: [u8; 32] = h.finalize().into();
            if let Some(u) = self.verified.get(&key) {
                return Ok(Identity::User(u));
            }
            if users.verify(user, password) {
                self.verified.insert(key, user.to_string());
                return Ok(Identity::User(user.to_string()));
            }
            Err(AuthFailure::Rejected)
        } else if scheme.eq_ignore_ascii_case("bearer") {
            match self.tokens.as_ref().and_then(|t| t.name_of(rest)) {
                Some(name) => Ok(Identity::Token(name.to_string())),
                None => Err(AuthFailure::Rejected),
            }
        } else {
            Err(AuthFailure::Malformed)
        }
    }
}

/// Paths answered without authentication: liveness and readiness probes.
pub fn is_probe(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn basic(user: &str, pw: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let v = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {v}")).unwrap(),
        );
        h
    }

    #[test]
    fn each_method_and_its_failures() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let tok = hex::encode(Sha256::digest(b"tok"));
        let auth = ClientAuth::new(
            None,
            Some(Htpasswd::parse(&format!("alice:{hash}\n")).unwrap()),
            Some(TokenSet::parse(&format!("ci sha256:{tok}\n")).unwrap()),
            false,
        );
        assert_eq!(
            auth.authenticate(&basic("alice", "pw"), None),
            Ok(Identity::User("alice".into()))
        );
        // Second time from the cache, same answer.
        assert_eq!(
            auth.authenticate(&basic("alice", "pw"), None),
            Ok(Identity::User("alice".into()))
        );
        assert_eq!(
            auth.authenticate(&basic("alice", "nope"), None),
            Err(AuthFailure::Rejected)
        );
        assert_eq!(
            auth.authenticate(&HeaderMap::new(), None),
            Err(AuthFailure::Missing)
        );
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer tok"));
        assert_eq!(
            auth.authenticate(&h, None),
            Ok(Identity::Token("ci".into()))
        );
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer other"));
        assert_eq!(auth.authenticate(&h, None), Err(AuthFailure::Rejected));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        assert_eq!(auth.authenticate(&h, None), Err(AuthFailure::Malformed));
        // A certificate counts only when client_ca is configured.
        let cert = TlsClient {
            subject: "CN=node-1".into(),
        };
        assert_eq!(
            auth.authenticate(&HeaderMap::new(), Some(&cert)),
            Err(AuthFailure::Missing)
        );
        let mtls = ClientAuth::new(Some("ca.pem".into()), None, None, false);
        assert_eq!(
            mtls.authenticate(&HeaderMap::new(), Some(&cert)),
            Ok(Identity::Certificate("CN=node-1".into()))
        );
        assert_eq!(
            mtls.authenticate(&HeaderMap::new(), None),
            Err(AuthFailure::Missing)
        );
    }
}
