//! The real [`MetadataSource`]: TUF files from a notary-server over HTTPS, through
//! [`UpstreamClient`] (TLS with an optional CA file, Docker token auth, timeouts).
//!
//! Notary's HTTP store (`storage/httpstore.go`) is the model: `GET /v2/<gun>/_trust/tuf/<file>`,
//! a 404 means the server holds no such file (for `root.json`: no trust data at all), and any
//! other failure means the server could not be asked — a distinct verdict, because only then may
//! a client fall back to cached, still-valid metadata.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};

use super::source::{BoxFuture, FetchError, MetadataSource};
use crate::upstream::{
    read_body_limited, BodyError, ClientSettings, UpstreamClient, UpstreamError, UpstreamRequest,
};

/// Time allowed to read a whole metadata body once headers have arrived. The client's own
/// timeouts end at the headers; without this a server trickling bytes could hold a pull forever.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Connect timeout used by [`settings_for`].
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time until response headers, used by [`settings_for`].
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("trust server URL {url:?} is invalid: {reason}")]
    BadUrl { url: String, reason: String },
}

/// Client settings for a trust server at `server_url` (`https://host[:port]`), trusting the
/// system roots plus `ca_file`, without credentials, with the default timeouts.
pub fn settings_for(
    server_url: &str,
    ca_file: Option<PathBuf>,
) -> Result<ClientSettings, SettingsError> {
    let bad = |reason: &str| SettingsError::BadUrl {
        url: server_url.to_string(),
        reason: reason.to_string(),
    };
    let base_url = url::Url::parse(server_url).map_err(|e| bad(&e.to_string()))?;
    if !matches!(base_url.scheme(), "https" | "http") {
        return Err(bad(
            "scheme must be https (or http for a local test server)",
        ));
    }
    if base_url.host_str().is_none() {
        return Err(bad("no host"));
    }
    if base_url.query().is_some() || base_url.fragment().is_some() {
        return Err(bad("no query or fragment allowed"));
    }
    Ok(ClientSettings {
        name: server_url.trim_end_matches('/').to_string(),
        base_url,
        ca_file,
        credentials: None,
        connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        request_timeout: DEFAULT_REQUEST_TIMEOUT,
        allowed_realms: Vec::new(),
    })
}

/// Fetches trust metadata from one notary-server.
pub struct HttpMetadataSource {
    client: UpstreamClient,
    body_timeout: Duration,
    /// Until when the server asked not to be asked (429/503 with `Retry-After`): fetches
    /// fail as unreachable at once, so held, still-valid metadata answers without adding to
    /// the load of a server that is shedding it.
    backoff_until: std::sync::Mutex<Option<std::time::Instant>>,
}

/// Longest `Retry-After` honoured: a server that asks for longer is asked again after this,
/// so a recovered server is used again soon.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

impl std::fmt::Debug for HttpMetadataSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpMetadataSource")
            .field("server", &self.client.name())
            .field("body_timeout", &self.body_timeout)
            .finish()
    }
}

impl HttpMetadataSource {
    pub fn new(client: UpstreamClient) -> HttpMetadataSource {
        HttpMetadataSource {
            client,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            backoff_until: std::sync::Mutex::new(None),
        }
    }

    pub fn from_settings(settings: ClientSettings) -> Result<HttpMetadataSource, UpstreamError> {
        Ok(HttpMetadataSource::new(UpstreamClient::new(settings)?))
    }

    pub fn with_body_timeout(mut self, timeout: Duration) -> HttpMetadataSource {
        self.body_timeout = timeout;
        self
    }

    /// The server's name as used in messages.
    pub fn server(&self) -> &str {
        self.client.name()
    }

    fn backoff(&self) -> std::sync::MutexGuard<'_, Option<std::time::Instant>> {
        match self.backoff_until.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    async fn fetch_inner(&self, gun: &str, file: &str, max_len: u64) -> Result<Bytes, FetchError> {
        check_path(gun, file)?;
        if let Some(until) = *self.backoff() {
            let now = std::time::Instant::now();
            if now < until {
                return Err(FetchError::Unreachable {
                    file: file.to_string(),
                    reason: format!(
                        "the trust server asked to retry after {}s (Retry-After)",
                        (until - now).as_secs() + 1
                    ),
                });
            }
        }
        let req = UpstreamRequest {
            method: Method::GET,
            path_and_query: format!("/v2/{gun}/_trust/tuf/{file}"),
            headers: HeaderMap::new(),
            // Notary's token scope: pulling trust data needs only pull on the GUN.
            scope: Some(format!("repository:{gun}:pull")),
        };
        let resp = self.client.send(req).await.map_err(|e| match e {
            UpstreamError::Unreachable { reason, .. } => FetchError::Unreachable {
                file: file.to_string(),
                reason,
            },
            UpstreamError::Timeout { timeout, .. } => FetchError::Unreachable {
                file: file.to_string(),
                reason: format!("no answer within {timeout:?}"),
            },
            UpstreamError::Auth { reason, .. } => FetchError::Refused {
                file: file.to_string(),
                reason: format!("authentication failed: {reason}"),
            },
            UpstreamError::Settings { reason, .. } => FetchError::Refused {
                file: file.to_string(),
                reason: format!("invalid client settings: {reason}"),
            },
            UpstreamError::Protocol { reason, .. } => FetchError::Refused {
                file: file.to_string(),
                reason: format!("unusable answer: {reason}"),
            },
            UpstreamError::InvalidRequest { reason, .. } => FetchError::Refused {
                file: file.to_string(),
                reason: format!("invalid request: {reason}"),
            },
        })?;
        let status = resp.status();
        if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
            if let Some(wait) = retry_after(resp.headers()) {
                *self.backoff() = Some(std::time::Instant::now() + wait);
            }
        }
        classify_status(status, file)?;
        // read_body_limited refuses an announced Content-Length above the bound and aborts
        // the stream as soon as it crosses it, so a hostile server never makes us buffer more.
        match tokio::time::timeout(self.body_timeout, read_body_limited(resp, max_len)).await {
            Ok(Ok(bytes)) => Ok(bytes),
            Ok(Err(BodyError::TooLarge { limit })) => Err(FetchError::TooLarge {
                file: file.to_string(),
                limit,
            }),
            Ok(Err(e @ (BodyError::Idle { .. } | BodyError::Read { .. }))) => {
                Err(FetchError::Unreachable {
                    file: file.to_string(),
                    reason: e.to_string(),
                })
            }
            Err(_) => Err(FetchError::Unreachable {
                file: file.to_string(),
                reason: format!("body not complete within {:?}", self.body_timeout),
            }),
        }
    }
}

impl MetadataSource for HttpMetadataSource {
    fn fetch<'a>(
        &'a self,
        gun: &'a str,
        file: &'a str,
        max_len: u64,
    ) -> BoxFuture<'a, Result<Bytes, FetchError>> {
        Box::pin(self.fetch_inner(gun, file, max_len))
    }
}

/// Maps a status to a verdict, after Notary's HTTP store (`storage/httpstore.go`
/// `translateStatusToError`): only 200 is data; 404 is `ErrMetaNotFound`; everything else is
/// `ErrServerUnavailable` there. We keep 5xx and 429 as "unreachable" (cached, still valid
/// data may answer: a throttling or overloaded server must not turn every signed pull into a
/// failure while held metadata is valid) but report other statuses (401/403 after the token
/// dance, 3xx, 2xx other than 200) as a refusal, so an auth or proxy misconfiguration is
/// named as such; its coarse reason is still "unreachable".
fn classify_status(status: StatusCode, file: &str) -> Result<(), FetchError> {
    if status == StatusCode::OK {
        Ok(())
    } else if status == StatusCode::NOT_FOUND {
        Err(FetchError::NotFound {
            file: file.to_string(),
        })
    } else if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        Err(FetchError::Unreachable {
            file: file.to_string(),
            reason: format!("server answered {status}"),
        })
    } else {
        Err(FetchError::Refused {
            file: file.to_string(),
            reason: format!("server answered {status}"),
        })
    }
}

/// `Retry-After` in seconds (RFC 9110 §10.2.3; the HTTP-date form is not used by the servers
/// we talk to and is ignored), at most [`MAX_RETRY_AFTER`].
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

/// Only metadata files under the GUN's TUF path may be requested. In particular no `*.key`
/// file: on notary-server `GET <gun>/_trust/tuf/snapshot.key` *creates* a new server-managed
/// key on every call, so a verifier must never ask for it.
fn check_path(gun: &str, file: &str) -> Result<(), FetchError> {
    let refuse = |reason: &str| {
        Err(FetchError::Refused {
            file: file.to_string(),
            reason: reason.to_string(),
        })
    };
    let gun_ok = !gun.is_empty()
        && gun.len() <= 255
        && gun
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | ':'))
        && gun
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..");
    if !gun_ok {
        return refuse("not a valid GUN");
    }
    let file_ok = file.ends_with(".json")
        && file.len() <= 300
        && file
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
        && file
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..");
    if !file_ok {
        return refuse("only TUF metadata files (*.json) may be fetched");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_asks_for_key_files() {
        for f in ["snapshot.key", "timestamp.key", "root.json/../snapshot.key"] {
            assert!(
                matches!(
                    check_path("example.com/app", f),
                    Err(FetchError::Refused { .. })
                ),
                "{f}"
            );
        }
    }

    #[test]
    fn accepts_metadata_names_notary_uses() {
        for f in [
            "root.json",
            "2.root.json",
            "timestamp.json",
            "snapshot.0123abcd.json",
            "targets/releases.json",
            "targets/releases.9f86d081.json",
        ] {
            assert_eq!(check_path("docker.io/library/alpine", f), Ok(()), "{f}");
        }
        assert_eq!(check_path("127.0.0.1:5000/app", "root.json"), Ok(()));
    }

    #[test]
    fn rejects_path_tricks_in_gun_and_file() {
        for (g, f) in [
            ("", "root.json"),
            ("a/../b", "root.json"),
            ("/abs", "root.json"),
            ("a?b", "root.json"),
            ("a", "x.json?y=1"),
            ("a", "../root.json"),
            ("a", "targets//x.json"),
        ] {
            assert!(check_path(g, f).is_err(), "{g} {f}");
        }
    }

    #[test]
    fn status_verdicts() {
        assert_eq!(classify_status(StatusCode::OK, "f"), Ok(()));
        assert!(matches!(
            classify_status(StatusCode::NOT_FOUND, "f"),
            Err(FetchError::NotFound { .. })
        ));
        for s in [429u16, 500, 502, 503, 504] {
            assert!(matches!(
                classify_status(StatusCode::from_u16(s).unwrap(), "f"),
                Err(FetchError::Unreachable { .. })
            ));
        }
        for s in [204u16, 206, 302, 400, 401, 403, 410] {
            assert!(matches!(
                classify_status(StatusCode::from_u16(s).unwrap(), "f"),
                Err(FetchError::Refused { .. })
            ));
        }
    }
}
