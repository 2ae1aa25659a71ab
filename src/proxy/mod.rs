//! The one orchestrator of a request: route → upstream → verify → respond.
//!
//! Seams for enforcement (issue 4):
//! - every manifest request by **tag** goes through [`manifest::serve_tag_manifest`];
//! - every manifest fetch by **digest** goes through [`manifest::fetch_manifest_by_digest`]
//!   (served by [`manifest::serve_manifest_by_digest`]), which takes the expected digest and
//!   an optional expected length and never serves bytes that do not match them. Enforcement
//!   resolves a tag to its signed digest and calls that function instead.
//!
//! Content (`AppState::content`, the on-disk store of `[cache]`) plugs in *below* the policy:
//! [`enforced`] judges every request first, then [`enforced`]'s by-digest manifest fetch and
//! [`blob::serve_blob`] answer from disk when the digest is held, without the upstream.
//!
//! [`AppState`] holds everything a request needs; add policy, trust clients, caches and
//! metrics as fields there.

pub mod blob;
pub mod body;
mod cached;
pub mod coalesce;
pub mod enforced;
pub mod fill;
pub mod listing;
pub mod maintenance;
pub mod manifest;
pub mod ops;
mod signature_io;
mod signature_tags;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, Method, Request, Response, StatusCode};

use crate::cache::{DiskError, DiskStore, ManifestCache, TagCacheSettings};
use crate::clientauth::{Identity, TlsClient};
use crate::config::Config;
use crate::enforce::Enforcer;
use crate::metrics::{Metrics, Upstream as MetricsUpstream, UpstreamFailure};
use crate::policy::{Policy, PolicyErrors, PolicyHandle};
use crate::registry::errors::OciCode;
use crate::registry::routes::{Endpoint, Route, RouteTable, RoutedBy};
use crate::registry::{Reference, RegistryError, RepoName};
use crate::upstream::{UpstreamClient, UpstreamError, UpstreamRequest};
pub use body::{BodyError, LoggedBody, ProxyBody};

pub const API_VERSION_HEADER: &str = "docker-distribution-api-version";
pub const DIGEST_HEADER: &str = "docker-content-digest";

/// Largest upstream error body read to learn its OCI error code.
/// How long an upstream error body may take to arrive (it only refines the error code).
const ERROR_BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
const ERROR_BODY_LIMIT: u64 = 64 * 1024;

/// Shared state of the proxy; cheap to clone behind an `Arc`.
pub struct AppState {
    pub config: Config,
    pub routes: RouteTable,
    /// One client per configured upstream, in `config.upstreams` order (the route table's
    /// indices point here).
    pub upstreams: Vec<UpstreamClient>,
    /// Policy + trust: every manifest and blob request is judged here.
    pub enforcer: Enforcer,
    /// Verified manifests by `registry/repository` and digest, in memory: the hot layer
    /// above `content`.
    pub manifests: ManifestCache,
    /// Verified manifests and blobs on disk by digest, linked to the repositories that hold
    /// them (`[cache]`; `None` when disabled).
    pub content: Option<DiskStore>,
    pub metrics: Arc<Metrics>,
    /// Blob sizes that verified manifests name, to refuse lying lengths early.
    pub blob_sizes: blob::BlobSizes,
    /// Bytes of manifests being read from upstreams, in KiB permits (`limits.max_buffered_bytes`).
    pub buffered: Arc<tokio::sync::Semaphore>,
    /// Blob fills in progress: one upstream GET per blob however many clients miss it.
    pub fills: std::sync::Arc<fill::Fills>,
    /// Manifest-by-digest fetches in progress: one upstream GET however many clients ask.
    pub manifest_fetches: std::sync::Arc<coalesce::Coalesce<manifest::FetchedManifest>>,
    /// Request ids are `<per-process random prefix><counter>`, unique across restarts.
    id_prefix: u32,
    next_id: AtomicU64,
}

impl AppState {
    /// Builds the upstream clients for `config`, enforcing the policy `config` names (or the
    /// embedded default policy). A policy that does not load is an error: never a silent allow.
    pub fn new(config: Config) -> Result<Arc<AppState>, StartError> {
        let policy = match &config.policy {
            Some(path) => PolicyHandle::load(path.clone())?,
            None => PolicyHandle::fixed(Policy::embedded_default()),
        };
        AppState::with_policy(config, Arc::new(policy))
    }

    /// As [`AppState::new`], with the policy handle supplied (tests; `serve` shares the
    /// handle with its reload watcher).
    pub fn with_policy(
        config: Config,
        policy: Arc<PolicyHandle>,
    ) -> Result<Arc<AppState>, StartError> {
        let content = if config.cache.enabled {
            Some(DiskStore::open_with_floor(
                config.state_dir.join("content"),
                config.cache.max_bytes,
                config.cache.min_free_bytes,
            )?)
        } else {
            None
        };
        let upstreams = config
            .upstreams
            .iter()
            .map(|u| UpstreamClient::new(u.client_settings()))
            .collect::<Result<Vec<_>, _>>()?;
        let routes = RouteTable::new(
            config.upstreams.iter().map(|u| u.name.clone()).collect(),
            config.default_upstream,
        )
        .with_paths(config.upstreams.iter().map(|u| u.path.clone()).collect());
        let metrics = Arc::new(Metrics::new());
        policy.count_reloads_in(metrics.clone());
        let enforcer = Enforcer::new(
            policy,
            config.state_dir.clone(),
            TagCacheSettings::default(),
            metrics.clone(),
        )
        .with_max_trust_updates(config.limits.max_trust_updates);
        let manifests = ManifestCache::new(config.cache.memory_max_bytes);
        let buffered = Arc::new(tokio::sync::Semaphore::new(buffer_permits(
            config.limits.max_buffered_bytes,
        )));
        Ok(Arc::new(AppState {
            config,
            routes,
            upstreams,
            enforcer,
            manifests,
            buffered,
            content,
            metrics,
            blob_sizes: blob::BlobSizes::new(BLOB_SIZE_ENTRIES),
            fills: fill::Fills::new(),
            manifest_fetches: coalesce::Coalesce::new(),
            id_prefix: rand::random(),
            next_id: AtomicU64::new(1),
        }))
    }
}

/// The proxy as shared by every connection.
pub type Proxy = Arc<AppState>;

/// Why the proxy state could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Policy(#[from] PolicyErrors),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error(transparent)]
    Cache(#[from] DiskError),
}

/// Blob sizes remembered from verified manifests (a few dozen bytes each).
const BLOB_SIZE_ENTRIES: u64 = 100_000;

/// What one request is about, for messages and logs.
pub struct RequestCtx {
    pub id: String,
    /// The client's address, for audit events.
    pub peer: SocketAddr,
    pub method: Method,
    pub route: Route,
    /// The client's request headers (`Accept`, `Range`).
    pub headers: HeaderMap,
}

impl RequestCtx {
    pub fn head(&self) -> bool {
        self.method == Method::HEAD
    }

    pub fn upstream_name(&self) -> &str {
        self.route.upstream_name.as_deref().unwrap_or("-")
    }

    pub fn repo_name(&self) -> String {
        self.route
            .endpoint
            .repo()
            .map(|r| r.to_string())
            .unwrap_or_default()
    }
}

/// Handles one client request; never fails (errors become OCI error responses).
pub async fn handle<B>(
    state: Arc<AppState>,
    req: Request<B>,
    peer: SocketAddr,
) -> Response<LoggedBody> {
    let start = Instant::now();
    // Counted from arrival until the response body is dropped (sent or abandoned).
    let in_flight = state.metrics.request_in_flight();
    let id = format!(
        "{:08x}{:08x}",
        state.id_prefix,
        state.next_id.fetch_add(1, Ordering::Relaxed)
    );
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let logged_path = match &query {
        Some(q) => format!("{path}?{q}"),
        None => path.clone(),
    };
    let mut upstream = "-".to_string();
    let identity = authenticate(&state, &req, &path);
    let user = match &identity {
        Ok(id) => id.to_string(),
        Err(_) => "-".to_string(),
    };
    let resp = match identity {
        Err(refusal) => *refusal,
        Ok(who) => match local_endpoint(&state, &method, &path) {
            Some(r) => r,
            None => {
                let req_parts = RequestParts {
                    id: &id,
                    method: &method,
                    path: &path,
                    query: query.as_deref(),
                    headers: req.headers().clone(),
                    peer,
                    identity: &who,
                };
                registry_request(&state, req_parts, &mut upstream).await
            }
        },
    };
    state.metrics.record_request(resp.status().as_u16());
    state
        .metrics
        .observe_request(resp.status().as_u16(), start.elapsed());
    let (mut parts, body) = resp.into_parts();
    parts.headers.insert(
        HeaderName::from_static(API_VERSION_HEADER),
        HeaderValue::from_static("registry/2.0"),
    );
    let fields = body::LogFields {
        id,
        peer: peer.to_string(),
        user,
        method: method.to_string(),
        path: logged_path,
        upstream,
        status: parts.status.as_u16(),
    };
    Response::from_parts(parts, LoggedBody::new(body, fields, start, in_flight))
}

/// Who sent `req` (`[client_auth]`), or the 401 to answer it with. Probes need no login.
fn authenticate<B>(
    state: &AppState,
    req: &Request<B>,
    path: &str,
) -> Result<Identity, Box<Response<ProxyBody>>> {
    let Some(auth) = &state.config.client_auth else {
        return Ok(Identity::Anonymous);
    };
    if crate::clientauth::is_probe(path) {
        return Ok(Identity::Anonymous);
    }
    auth.authenticate(req.headers(), req.extensions().get::<TlsClient>())
        .map_err(|failure| {
            let e = RegistryError::Unauthenticated { failure };
            let mut r = error_response(&e, req.method() == Method::HEAD);
            r.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static(auth.challenge()),
            );
            Box::new(r)
        })
}

/// `[[client_auth.access]]`: an authenticated identity uses only the repositories an entry
/// grants it. Checked on the routed request, before any policy or upstream work, so a
/// refused identity learns nothing about the repository (not even whether it exists).
fn check_access(
    state: &AppState,
    identity: &Identity,
    route: &crate::registry::routes::Route,
) -> Result<(), RegistryError> {
    let (Some(auth), Some(repo)) = (&state.config.client_auth, route.endpoint.repo()) else {
        return Ok(());
    };
    let registry = route.upstream_name.as_deref().unwrap_or_default();
    if auth.may_use(identity, registry, repo.as_str()) {
        return Ok(());
    }
    Err(RegistryError::AccessDenied {
        identity: identity.to_string(),
        image: format!("{registry}/{repo}"),
    })
}

/// Endpoints the proxy answers itself, outside the registry API ([`ops`]).
fn local_endpoint(state: &AppState, method: &Method, path: &str) -> Option<Response<ProxyBody>> {
    ops::serve(state, method, path)
}

/// One registry API request as it arrived, with who sent it.
struct RequestParts<'a> {
    id: &'a str,
    method: &'a Method,
    path: &'a str,
    query: Option<&'a str>,
    headers: HeaderMap,
    peer: SocketAddr,
    identity: &'a Identity,
}

async fn registry_request(
    state: &AppState,
    req: RequestParts<'_>,
    upstream: &mut String,
) -> Response<ProxyBody> {
    let RequestParts {
        id,
        method,
        path,
        query,
        headers,
        peer,
        identity,
    } = req;
    match state.routes.route(method, path, query) {
        Err(e) => error_response(&e, method == Method::HEAD),
        Ok(route) => {
            if let Some(u) = &route.upstream_name {
                *upstream = u.clone();
            }
            if let Err(e) = check_access(state, identity, &route) {
                tracing::warn!(request_id = %id, error = %e, "request refused by client_auth.access");
                return error_response(&e, method == Method::HEAD);
            }
            let ns = (route.routed_by == RoutedBy::Namespace)
                .then(|| route.upstream_name.clone())
                .flatten();
            let ctx = RequestCtx {
                id: id.to_string(),
                peer,
                method: method.clone(),
                route,
                headers,
            };
            let mut resp = match dispatch(state, &ctx).await {
                Ok(r) => r,
                Err(e) => {
                    log_error(&ctx, &e);
                    error_response(&e, ctx.head())
                }
            };
            if let Some(ns) = ns.and_then(|n| HeaderValue::from_str(&n).ok()) {
                resp.headers_mut().insert("oci-namespace", ns);
            }
            resp
        }
    }
}

async fn dispatch(
    state: &AppState,
    ctx: &RequestCtx,
) -> Result<Response<ProxyBody>, RegistryError> {
    match &ctx.route.endpoint {
        Endpoint::ApiBase => Ok(json_response(
            StatusCode::OK,
            Bytes::from_static(b"{}"),
            ctx.head(),
        )),
        Endpoint::Manifest {
            repo,
            reference: Reference::Tag(tag),
        } => enforced::serve_tag(state, ctx, repo, tag).await,
        Endpoint::Manifest {
            repo,
            reference: Reference::Digest(d),
        } => enforced::serve_manifest_digest(state, ctx, repo, d).await,
        Endpoint::Blob { repo, digest } => enforced::serve_blob(state, ctx, repo, digest).await,
        Endpoint::TagsList { repo, n, last } => {
            enforced::serve_tags_list(state, ctx, repo, *n, last.as_deref()).await
        }
        Endpoint::Referrers {
            repo,
            digest,
            artifact_type,
        } => enforced::serve_referrers(state, ctx, repo, digest, artifact_type.as_deref()).await,
    }
}

fn log_error(ctx: &RequestCtx, e: &RegistryError) {
    let parts = e.parts();
    match e {
        RegistryError::Internal { context } => {
            tracing::error!(request_id = %ctx.id, fault = ?parts.fault, %context, "internal error")
        }
        _ => {
            tracing::warn!(request_id = %ctx.id, fault = ?parts.fault, error = %e, "request failed")
        }
    }
}

pub fn json_response(status: StatusCode, bytes: Bytes, head: bool) -> Response<ProxyBody> {
    let len = bytes.len();
    let body = if head {
        body::empty()
    } else {
        body::full(bytes)
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(len));
    r
}

/// The OCI error envelope for `e`, with `Retry-After` when the upstream gave one.
pub fn error_response(e: &RegistryError, head: bool) -> Response<ProxyBody> {
    let mut r = json_response(e.parts().status, Bytes::from(e.envelope()), head);
    if let Some(ra) = e.retry_after().and_then(|v| HeaderValue::from_str(v).ok()) {
        r.headers_mut().insert(RETRY_AFTER, ra);
    }
    r
}

/// Permits of the buffered-bytes budget: one per KiB.
pub fn buffer_permits(bytes: u64) -> usize {
    usize::try_from(bytes.div_ceil(1024)).unwrap_or(usize::MAX >> 4)
}

/// The client's upstream for this request.
pub fn client<'a>(
    state: &'a AppState,
    ctx: &RequestCtx,
) -> Result<&'a UpstreamClient, RegistryError> {
    ctx.route
        .upstream
        .and_then(|i| state.upstreams.get(i))
        .ok_or_else(|| RegistryError::Internal {
            context: "route points at no upstream client".into(),
        })
}

/// Sends a request for `repo` upstream, asking for a pull token scoped to it.
pub async fn send_upstream(
    state: &AppState,
    ctx: &RequestCtx,
    repo: &RepoName,
    method: Method,
    path_and_query: String,
    headers: HeaderMap,
) -> Result<reqwest::Response, RegistryError> {
    let c = client(state, ctx)?;
    let req = UpstreamRequest {
        method,
        path_and_query,
        headers,
        scope: Some(format!("repository:{repo}:pull")),
    };
    let started = Instant::now();
    let sent = c.send(req).await;
    state.metrics.observe_upstream(started.elapsed());
    sent.map_err(|e| {
        let failure = match &e {
            UpstreamError::Unreachable { .. } => UpstreamFailure::Connect,
            UpstreamError::Timeout { .. } => UpstreamFailure::Timeout,
            UpstreamError::Auth { .. } => UpstreamFailure::Status,
            UpstreamError::Protocol { .. } => UpstreamFailure::Protocol,
            UpstreamError::Settings { .. } | UpstreamError::InvalidRequest { .. } => {
                UpstreamFailure::Other
            }
        };
        state
            .metrics
            .record_upstream_error(MetricsUpstream::Registry, failure);
        upstream_error(e, ctx, repo)
    })
}

fn upstream_error(e: UpstreamError, ctx: &RequestCtx, repo: &RepoName) -> RegistryError {
    match e {
        UpstreamError::Unreachable { upstream, reason } => {
            tracing::warn!(request_id = %ctx.id, %upstream, %reason, "upstream unreachable");
            RegistryError::UpstreamUnreachable {
                upstream,
                repo: repo.to_string(),
            }
        }
        UpstreamError::Timeout { upstream, timeout } => RegistryError::UpstreamTimeout {
            upstream,
            repo: repo.to_string(),
            timeout,
        },
        UpstreamError::Auth { upstream, reason } => {
            tracing::warn!(request_id = %ctx.id, %upstream, %reason, "upstream auth failed");
            RegistryError::UpstreamAuth {
                upstream,
                repo: repo.to_string(),
            }
        }
        UpstreamError::Protocol { upstream, reason } => {
            tracing::warn!(request_id = %ctx.id, %upstream, %reason, "unusable upstream answer");
            RegistryError::UpstreamProtocol {
                upstream,
                repo: repo.to_string(),
            }
        }
        UpstreamError::Settings { upstream, reason }
        | UpstreamError::InvalidRequest { upstream, reason } => RegistryError::Internal {
            context: format!("upstream {upstream}: {reason}"),
        },
    }
}

/// Turns a non-success upstream answer into the error the client sees: 404 keeps its OCI
/// code, 429 keeps `Retry-After`, 401/403 become "denied" naming the upstream.
pub async fn upstream_failure(
    ctx: &RequestCtx,
    repo: &RepoName,
    resp: reqwest::Response,
) -> RegistryError {
    let status = resp.status();
    let upstream = ctx.upstream_name().to_string();
    let repo = repo.to_string();
    if status == StatusCode::TOO_MANY_REQUESTS {
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        return RegistryError::UpstreamTooManyRequests {
            upstream,
            repo,
            retry_after,
        };
    }
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return RegistryError::UpstreamAuth { upstream, repo };
    }
    let code = if ctx.head() {
        None
    } else {
        // The body only refines the error code, so it gets a short bound of its own: an
        // upstream that sends error headers and then stalls must not hold the client until
        // the idle timeout (PROXY-REVIEW D12).
        tokio::time::timeout(ERROR_BODY_TIMEOUT, read_limited(resp, ERROR_BODY_LIMIT))
            .await
            .ok()
            .and_then(Result::ok)
            .and_then(|b| OciCode::from_error_body(&b))
    };
    // HEAD answers carry no body; keep the meaning of a 404 from what was asked for.
    let code = code.or(match (&ctx.route.endpoint, status) {
        (Endpoint::Manifest { .. }, StatusCode::NOT_FOUND) => Some(OciCode::ManifestUnknown),
        (Endpoint::Blob { .. }, StatusCode::NOT_FOUND) => Some(OciCode::BlobUnknown),
        _ => None,
    });
    RegistryError::UpstreamStatus {
        upstream,
        repo,
        status,
        code,
    }
}

#[derive(Debug)]
pub enum ReadError {
    TooLarge,
    Broken,
}

/// Reads a whole body, failing as soon as it exceeds `limit` (or announces more).
pub async fn read_limited(mut resp: reqwest::Response, limit: u64) -> Result<Bytes, ReadError> {
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(ReadError::TooLarge);
    }
    let mut buf = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                if (buf.len() as u64).saturating_add(c.len() as u64) > limit {
                    return Err(ReadError::TooLarge);
                }
                buf.extend_from_slice(&c);
            }
            Ok(None) => return Ok(Bytes::from(buf)),
            Err(_) => return Err(ReadError::Broken),
        }
    }
}

/// Copies the named headers from an upstream response.
pub fn copy_headers(from: &reqwest::header::HeaderMap, to: &mut HeaderMap, names: &[&str]) {
    for n in names {
        if let Some(v) = from.get(*n) {
            if let Ok(name) = HeaderName::from_bytes(n.as_bytes()) {
                to.insert(name, v.clone());
            }
        }
    }
}
