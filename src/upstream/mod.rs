//! HTTP client to upstream registries and trust servers: TLS (system roots plus an optional
//! CA file), pooling, HTTP/2 where offered, Docker token auth, size-bounded reads.
//!
//! - [`UpstreamClient`]: one per remote; `send` answers Bearer/Basic challenges and retries once.
//! - [`auth`]: the `WWW-Authenticate` parser; [`realm`]: which token realms may see credentials.
//! - [`token`]: token responses and the per-scope cache (one fetch shared by concurrent callers).
//! - [`body`]: [`read_body_limited`] for manifests and metadata, an idle timeout for streams.
//!
//! Authorization never crosses hosts: reqwest drops it on a redirect to another host or port,
//! and a 401 from a redirect target is returned, not answered. [`redirect`] refuses https → http
//! downgrades and remote-to-loopback/link-local hops.

pub mod auth;
pub mod body;
pub mod client;
pub mod realm;
pub mod redirect;
pub mod token;

pub use body::{body_stream_with_idle_timeout, read_body_limited, BodyError};
pub use client::UpstreamClient;
pub use redirect::is_loopback;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderMap, Method};

/// Credentials for an upstream or trust server. Never printed.
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Everything needed to build a client for one remote (a registry or a trust server).
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Name used in messages and logs (e.g. `docker.io`, or the trust server URL).
    pub name: String,
    /// Base URL, e.g. `https://registry-1.docker.io`; request paths are appended to it.
    pub base_url: url::Url,
    pub ca_file: Option<PathBuf>,
    pub credentials: Option<Credentials>,
    pub connect_timeout: Duration,
    /// Time allowed until response headers arrive.
    pub request_timeout: Duration,
    /// Token realms on other hosts that may receive credentials (besides the base URL's host
    /// and its parent domain).
    pub allowed_realms: Vec<String>,
}

/// One request to a remote. `path_and_query` is appended to the base URL.
#[derive(Debug, Clone)]
pub struct UpstreamRequest {
    pub method: Method,
    pub path_and_query: String,
    pub headers: HeaderMap,
    /// Token scope to ask for on a Bearer challenge, e.g. `repository:library/alpine:pull`.
    pub scope: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("{upstream} is unreachable: {reason}")]
    Unreachable { upstream: String, reason: String },
    #[error("{upstream} did not answer within {timeout:?}")]
    Timeout { upstream: String, timeout: Duration },
    #[error("{upstream} refused authentication: {reason}")]
    Auth { upstream: String, reason: String },
    #[error("invalid settings for {upstream}: {reason}")]
    Settings { upstream: String, reason: String },
    /// The remote answered, but not in a way we can use (e.g. a redirect loop).
    #[error("{upstream} answered in a way that cannot be used: {reason}")]
    Protocol { upstream: String, reason: String },
    /// The request itself could not be formed (a caller bug, not the remote's fault).
    #[error("invalid request for {upstream}: {reason}")]
    InvalidRequest { upstream: String, reason: String },
}
