//! One HTTP client per remote: TLS with system roots plus an optional CA file, pooling,
//! HTTP/2 via ALPN, bounded redirects, and the 401 → token/Basic → retry-once dance.

use std::error::Error as StdError;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderValue, StatusCode};
use url::Url;

use super::auth::{self, BearerChallenge, Challenge};
use super::body::read_body_limited;
use super::realm;
use super::token::{self, BearerToken, ParsedToken, TokenCache};
use super::{ClientSettings, Credentials, UpstreamError, UpstreamRequest};

/// Redirects followed per request. Registries redirect blobs once (to object storage); a
/// longer chain is a loop or an attack.
pub const MAX_REDIRECTS: usize = 5;
/// A token endpoint's answer is a small JSON object; anything bigger is refused.
pub const MAX_TOKEN_RESPONSE: u64 = 1 << 20;

/// The client for one remote. Cheap to share behind an `Arc`; the underlying connection pool
/// and the token cache are per client, so build one per remote and reuse it.
pub struct UpstreamClient {
    name: String,
    base_url: Url,
    http: reqwest::Client,
    credentials: Option<Credentials>,
    request_timeout: Duration,
    allowed_realms: Vec<String>,
    tokens: TokenCache,
    /// Set once the remote asked for Basic: later requests send it up front instead of
    /// paying a 401 round trip each time.
    basic_seen: AtomicBool,
}

impl fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Credentials has a redacted Debug; tokens are only counted.
        f.debug_struct("UpstreamClient")
            .field("name", &self.name)
            .field("base_url", &self.base_url.as_str())
            .field("credentials", &self.credentials)
            .field("request_timeout", &self.request_timeout)
            .field("allowed_realms", &self.allowed_realms)
            .field("tokens", &self.tokens)
            .finish()
    }
}

/// Which `Authorization` we attached to an attempt, so a 401 can tell a rejected token.
enum Sent {
    Nothing,
    Bearer(BearerToken),
    Basic,
}

impl UpstreamClient {
    pub fn new(settings: ClientSettings) -> Result<Self, UpstreamError> {
        let settings_err = |reason: String| UpstreamError::Settings {
            upstream: settings.name.clone(),
            reason,
        };
        match settings.base_url.scheme() {
            "http" | "https" => {}
            other => {
                return Err(settings_err(format!(
                    "base URL scheme must be http or https, not {other}"
                )))
            }
        }
        if settings.base_url.host().is_none() {
            return Err(settings_err("base URL has no host".to_string()));
        }
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_native_certs(true)
            .connect_timeout(settings.connect_timeout)
            .redirect(super::redirect::policy(MAX_REDIRECTS))
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_keepalive(Duration::from_secs(60))
            .user_agent(concat!("trustgate/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &settings.ca_file {
            for cert in load_ca_file(path).map_err(settings_err)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| settings_err(format!("cannot build the HTTP client: {}", describe(&e))))?;
        Ok(UpstreamClient {
            name: settings.name,
            base_url: settings.base_url,
            http,
            credentials: settings.credentials,
            request_timeout: settings.request_timeout,
            allowed_realms: settings.allowed_realms,
            tokens: TokenCache::default(),
            basic_seen: AtomicBool::new(false),
        })
    }

    /// The remote's name, as used in messages and logs.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    /// Time allowed until response headers arrive (see [`UpstreamClient::send`]).
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// Sends `req` to `base_url + path_and_query`. A cached token for `req.scope` is attached
    /// up front. On a 401 with a Bearer challenge a token is fetched (for `req.scope` and, when
    /// it differs, the challenge's scope too: the upstream knows what it wants) and the request
    /// retried once; on a 401 with a Basic challenge and configured credentials it is retried
    /// once with Basic. Any other answer, a 401 after the retry included, is returned as is for
    /// the caller to map. An `Authorization` header in `req.headers` is replaced whenever the
    /// client attaches its own.
    ///
    /// The request timeout bounds the time until response headers (redirects included); the
    /// body is the caller's to read, e.g. with [`super::body::read_body_limited`] or
    /// [`super::body::body_stream_with_idle_timeout`].
    pub async fn send(&self, req: UpstreamRequest) -> Result<reqwest::Response, UpstreamError> {
        let url = self.url_for(&req.path_and_query)?;
        let first_auth = self.preemptive_auth(req.scope.as_deref()).await;
        let resp = self.attempt(&req, &url, &first_auth).await?;
        // A challenge from a redirect target (object storage, say) is not our upstream's to
        // make: answering it could send our credentials or tokens somewhere else.
        if resp.status() != StatusCode::UNAUTHORIZED || resp.url().origin() != url.origin() {
            return Ok(resp);
        }
        let challenges = challenges_of(&resp);
        let bearer = challenges.iter().find_map(|c| match c {
            Challenge::Bearer(b) => Some(b.clone()),
            _ => None,
        });
        let basic = challenges
            .iter()
            .any(|c| matches!(c, Challenge::Basic { .. }));
        let retry_auth = if let Some(ch) = bearer {
            let mut scopes: Vec<String> = req.scope.iter().cloned().collect();
            if let Some(s) = &ch.scope {
                if !scopes.contains(s) {
                    scopes.push(s.clone());
                }
            }
            let key = scopes.join(" ");
            let rejected = match &first_auth {
                Sent::Bearer(t) => Some(t),
                _ => None,
            };
            let token = self
                .tokens
                .get_or_fetch(&key, rejected, || self.fetch_token(&ch, &scopes))
                .await?;
            Sent::Bearer(token)
        } else if basic && self.credentials.is_some() && !matches!(first_auth, Sent::Basic) {
            self.basic_seen.store(true, Ordering::Relaxed);
            Sent::Basic
        } else {
            return Ok(resp);
        };
        // Reading the small 401 body to its end lets the connection go back to the pool; a
        // large or slow one is simply dropped with its connection.
        let drain = self.request_timeout.min(Duration::from_secs(2));
        let _ = tokio::time::timeout(drain, read_body_limited(resp, 64 << 10)).await;
        self.attempt(&req, &url, &retry_auth).await
    }

    fn url_for(&self, path_and_query: &str) -> Result<Url, UpstreamError> {
        let invalid = |reason: &str| UpstreamError::InvalidRequest {
            upstream: self.name.clone(),
            reason: reason.to_string(),
        };
        if !path_and_query.starts_with('/') || path_and_query.starts_with("//") {
            return Err(invalid("request path must start with a single '/'"));
        }
        let base = self.base_url.as_str().trim_end_matches('/');
        let url = Url::parse(&format!("{base}{path_and_query}"))
            .map_err(|e| invalid(&format!("request URL does not parse: {e}")))?;
        // The path is appended textually; make sure it cannot move us to another origin.
        if url.origin() != self.base_url.origin() {
            return Err(invalid("request path changes the origin"));
        }
        Ok(url)
    }

    async fn preemptive_auth(&self, scope: Option<&str>) -> Sent {
        if let Some(t) = self.tokens.get(scope.unwrap_or_default()).await {
            return Sent::Bearer(t);
        }
        if self.credentials.is_some() && self.basic_seen.load(Ordering::Relaxed) {
            return Sent::Basic;
        }
        Sent::Nothing
    }

    async fn attempt(
        &self,
        req: &UpstreamRequest,
        url: &Url,
        auth: &Sent,
    ) -> Result<reqwest::Response, UpstreamError> {
        let mut headers = req.headers.clone();
        match auth {
            Sent::Nothing => {}
            Sent::Bearer(t) => {
                let v = HeaderValue::from_str(&format!("Bearer {}", t.expose())).map_err(|_| {
                    UpstreamError::Auth {
                        upstream: self.name.clone(),
                        reason: "the token realm issued a token that is not a valid header value"
                            .to_string(),
                    }
                })?;
                headers.insert(AUTHORIZATION, sensitive(v));
            }
            Sent::Basic => {
                if let Some(v) = self.basic_header() {
                    headers.insert(AUTHORIZATION, v);
                }
            }
        }
        let request = self
            .http
            .request(req.method.clone(), url.clone())
            .headers(headers);
        self.with_timeout(request.send()).await
    }

    fn basic_header(&self) -> Option<HeaderValue> {
        use base64::Engine as _;
        let c = self.credentials.as_ref()?;
        let raw = format!("{}:{}", c.username, c.password);
        let enc = base64::engine::general_purpose::STANDARD.encode(raw.as_bytes());
        HeaderValue::from_str(&format!("Basic {enc}"))
            .ok()
            .map(sensitive)
    }

    async fn with_timeout(
        &self,
        fut: impl std::future::Future<Output = Result<reqwest::Response, reqwest::Error>>,
    ) -> Result<reqwest::Response, UpstreamError> {
        match tokio::time::timeout(self.request_timeout, fut).await {
            Err(_) => Err(UpstreamError::Timeout {
                upstream: self.name.clone(),
                timeout: self.request_timeout,
            }),
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(self.map_reqwest(e)),
        }
    }

    fn map_reqwest(&self, e: reqwest::Error) -> UpstreamError {
        let upstream = self.name.clone();
        if e.is_connect() {
            UpstreamError::Unreachable {
                upstream,
                reason: describe(&e.without_url()),
            }
        } else if e.is_timeout() {
            UpstreamError::Timeout {
                upstream,
                timeout: self.request_timeout,
            }
        } else if e.is_redirect() {
            UpstreamError::Protocol {
                upstream,
                reason: describe(&e.without_url()),
            }
        } else {
            // Resets, TLS failures after connect, malformed responses: the remote is not
            // answering usefully.
            UpstreamError::Unreachable {
                upstream,
                reason: describe(&e.without_url()),
            }
        }
    }

    /// GET realm?service=..&scope=.. (distribution token spec), with Basic credentials only if
    /// [`realm::may_send_credentials`] allows this realm, else anonymously.
    async fn fetch_token(
        &self,
        ch: &BearerChallenge,
        scopes: &[String],
    ) -> Result<ParsedToken, UpstreamError> {
        let auth_err = |reason: String| UpstreamError::Auth {
            upstream: self.name.clone(),
            reason,
        };
        let mut realm = Url::parse(&ch.realm)
            .map_err(|e| auth_err(format!("token realm is not a URL: {e}")))?;
        if !matches!(realm.scheme(), "http" | "https") {
            return Err(auth_err(format!(
                "token realm scheme {} is not http(s)",
                realm.scheme()
            )));
        }
        {
            let mut q = realm.query_pairs_mut();
            if let Some(s) = &ch.service {
                q.append_pair("service", s);
            }
            for s in scopes {
                q.append_pair("scope", s);
            }
        }
        let realm_host = realm.host_str().unwrap_or_default().to_string();
        let mut request = self.http.get(realm.clone());
        let mut with_credentials = false;
        if let Some(c) = &self.credentials {
            match realm::may_send_credentials(&self.base_url, &realm, &self.allowed_realms) {
                Ok(()) => {
                    request = request.basic_auth(&c.username, Some(&c.password));
                    with_credentials = true;
                }
                Err(why) => {
                    tracing::warn!(
                        upstream = %self.name,
                        realm_host = %realm_host,
                        reason = %why,
                        "withholding credentials from the token realm; fetching a token anonymously"
                    );
                }
            }
        }
        let fetch = async {
            let resp = request.send().await.map_err(|e| {
                auth_err(format!(
                    "token realm {realm_host}: {}",
                    describe(&e.without_url())
                ))
            })?;
            let status = resp.status();
            if !status.is_success() {
                return Err(auth_err(format!(
                    "token realm {realm_host} answered {status}"
                )));
            }
            let body = read_body_limited(resp, MAX_TOKEN_RESPONSE)
                .await
                .map_err(|e| auth_err(format!("token realm {realm_host}: {e}")))?;
            token::parse_token_response(&body, SystemTime::now())
                .map_err(|e| auth_err(format!("token realm {realm_host}: {e}")))
        };
        let result = match tokio::time::timeout(self.request_timeout, fetch).await {
            Ok(r) => r,
            Err(_) => Err(auth_err(format!(
                "token realm {realm_host} did not answer within {:?}",
                self.request_timeout
            ))),
        };
        match &result {
            Ok(t) => tracing::debug!(
                upstream = %self.name,
                realm_host = %realm_host,
                scopes = ?scopes,
                with_credentials,
                valid_for = ?t.use_for,
                "fetched a registry token"
            ),
            Err(e) => tracing::warn!(upstream = %self.name, error = %e, "token fetch failed"),
        }
        result
    }
}

fn sensitive(mut v: HeaderValue) -> HeaderValue {
    // Keeps the value out of hyper's and h2's debug output and HPACK tables.
    v.set_sensitive(true);
    v
}

fn challenges_of(resp: &reqwest::Response) -> Vec<Challenge> {
    resp.headers()
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| auth::parse_challenges(v).ok())
        .flatten()
        .collect()
}

/// Reads a PEM file that may hold several CA certificates; every error names the file.
fn load_ca_file(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| format!("CA file {shown}: cannot read: {e}"))?;
    let mut out = Vec::new();
    let mut roots = rustls::RootCertStore::empty();
    for (i, der) in CertificateDer::pem_slice_iter(&pem).enumerate() {
        let der = der.map_err(|e| format!("CA file {shown}: invalid PEM: {e}"))?;
        // Parse it now so a broken certificate is reported with the file, not at first use.
        roots
            .add(der.clone())
            .map_err(|e| format!("CA file {shown}: certificate {} is invalid: {e}", i + 1))?;
        let cert = reqwest::Certificate::from_der(&der)
            .map_err(|e| format!("CA file {shown}: certificate {}: {e}", i + 1))?;
        out.push(cert);
    }
    if out.is_empty() {
        return Err(format!("CA file {shown}: no PEM certificates found"));
    }
    Ok(out)
}

/// An error and its sources on one line, for logs and error reasons.
pub(crate) fn describe(e: &dyn StdError) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        let t = src.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = src.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str) -> UpstreamClient {
        UpstreamClient::new(ClientSettings {
            name: "reg".into(),
            base_url: base.parse().unwrap(),
            ca_file: None,
            credentials: Some(Credentials {
                username: "user".into(),
                password: "hunter2".into(),
            }),
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            allowed_realms: vec![],
        })
        .unwrap()
    }

    #[test]
    fn paths_are_appended_and_cannot_leave_the_origin() {
        let c = client("http://127.0.0.1:5000/");
        assert_eq!(
            c.url_for("/v2/a/b/manifests/t?ns=x").unwrap().as_str(),
            "http://127.0.0.1:5000/v2/a/b/manifests/t?ns=x"
        );
        let c = client("https://mirror.example/prefix/");
        assert_eq!(
            c.url_for("/v2/").unwrap().as_str(),
            "https://mirror.example/prefix/v2/"
        );
        for bad in ["v2/", "//evil.example/v2/", ""] {
            assert!(
                matches!(c.url_for(bad), Err(UpstreamError::InvalidRequest { .. })),
                "{bad}"
            );
        }
        // `@` in a path stays in the path; the host does not change.
        let u = c.url_for("/v2/@evil.example/x").unwrap();
        assert_eq!(u.host_str(), Some("mirror.example"));
    }

    #[test]
    fn settings_are_checked() {
        let s = |u: &str| ClientSettings {
            name: "reg".into(),
            base_url: u.parse().unwrap(),
            ca_file: None,
            credentials: None,
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            allowed_realms: vec![],
        };
        assert!(matches!(
            UpstreamClient::new(s("ftp://x/")),
            Err(UpstreamError::Settings { .. })
        ));
        assert_eq!(UpstreamClient::new(s("https://x/")).unwrap().name(), "reg");
    }

    #[test]
    fn debug_never_shows_the_password_or_basic_header() {
        let c = client("https://reg.example");
        let d = format!("{c:?}");
        assert!(!d.contains("hunter2"), "{d}");
        let h = c.basic_header().unwrap();
        assert!(h.is_sensitive());
        assert!(!format!("{h:?}").contains("dXNlcjpodW50ZXIy"));
    }
}
