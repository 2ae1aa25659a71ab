//! Blobs stream straight through, never buffered whole. A full (200) body is hashed on the
//! way and the last chunk is held back until the hash is known: on a mismatch the body ends
//! with an error instead of that chunk, so the client sees a cut connection and never a
//! complete, clean wrong blob (distribution spec: content must match its digest).
//!
//! With the on-disk content store (`[cache]`), a held blob is answered from disk without the
//! upstream ([`super::cached`]), and a GET that misses — a whole blob or a range — joins or
//! starts the single fill of that blob ([`super::fill`]): one upstream GET of the whole blob,
//! written once, verified, and followed by every client as it arrives. A range is then cut
//! from verified bytes, never passed through from the upstream.
//!
//! Without the store (`[cache] enabled = false`) each request is its own upstream request,
//! and a Range answer (206) passes through unverified, as partial content cannot be hashed;
//! the client verifies the assembled blob, as it must anyway. The same direct path serves a
//! miss that cannot be cached: no `Content-Length` from the upstream, no room in the budget
//! or above the free-space floor, or a leader that failed before its fill started.

use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt};
use http::header::{
    HeaderValue, ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, IF_RANGE, RANGE,
};
use http::{HeaderMap, Method, Response, StatusCode};
use sha2::{Digest as _, Sha256};
use std::time::Duration;

use super::body::{self, BodyError};
use super::fill::Claim;
use super::{
    copy_headers, send_upstream, upstream_failure, AppState, ProxyBody, RequestCtx, DIGEST_HEADER,
};
use crate::metrics::ContentKind;
use crate::policy::Permit;
use crate::registry::{Digest, RegistryError, RepoName};
use crate::upstream::body_stream_with_idle_timeout;

const PASSED_HEADERS: &[&str] = &["content-type", "content-length", "accept-ranges", "etag"];

pub async fn serve_blob(
    state: &AppState,
    ctx: &RequestCtx,
    repo: &RepoName,
    digest: &Digest,
    _permit: &Permit,
) -> Result<Response<ProxyBody>, RegistryError> {
    let scope = format!("{}/{}", ctx.upstream_name(), repo);
    if let Some(store) = &state.content {
        // Only under a repository the upstream confirmed holds it (see DiskStore::link).
        let held = if store.is_linked(&scope, digest).await {
            store.open_blob(digest).await
        } else {
            None
        };
        state
            .metrics
            .record_content_cache(ContentKind::Blob, held.is_some());
        if let Some(blob) = held {
            tracing::debug!(request_id = %ctx.id, %digest, "blob served from the content cache");
            match super::cached::serve(ctx, store, digest, blob).await {
                Ok(r) => return Ok(r),
                Err(e) => {
                    tracing::warn!(request_id = %ctx.id, error = %e, "content cache: read failed, asking the upstream")
                }
            }
        }
    }
    if let (Some(store), false) = (&state.content, ctx.head()) {
        if let Some(r) = serve_by_fill(state, ctx, repo, digest, store, &scope).await {
            return r;
        }
    }
    serve_direct(state, ctx, repo, digest, &scope, true).await
}

/// A GET that missed the store, through the single fill of `(scope, digest)`; `None` when
/// this request must go to the upstream on its own (see the module comment).
async fn serve_by_fill(
    state: &AppState,
    ctx: &RequestCtx,
    repo: &RepoName,
    digest: &Digest,
    store: &crate::cache::DiskStore,
    scope: &str,
) -> Option<Result<Response<ProxyBody>, RegistryError>> {
    let leader = match state.fills.claim(scope, digest).await {
        Claim::Follow(fill) => {
            tracing::debug!(request_id = %ctx.id, %digest, "blob: following a fill in progress");
            return Some(Ok(from_fill(ctx, fill)));
        }
        Claim::Alone => return None,
        Claim::Lead(leader) => leader,
    };
    // A fill may have ended between the store lookup and the claim (and only under a
    // repository the upstream confirmed holds it, as in `serve_blob`).
    let held = if store.is_linked(scope, digest).await {
        store.open_blob(digest).await
    } else {
        None
    };
    if let Some(blob) = held {
        drop(leader);
        return Some(
            super::cached::serve(ctx, store, digest, blob)
                .await
                .map_err(|e| RegistryError::Internal {
                    context: format!("content cache: {e}"),
                }),
        );
    }
    // The whole blob, whatever range the client asked for: only whole blobs can be verified.
    let resp = match send_upstream(
        state,
        ctx,
        repo,
        Method::GET,
        format!("/v2/{repo}/blobs/{digest}"),
        HeaderMap::new(),
    )
    .await
    {
        Ok(r) => r,
        Err(e) => return Some(Err(e)),
    };
    let idle = match super::client(state, ctx) {
        Ok(c) => c.request_timeout(),
        Err(e) => return Some(Err(e)),
    };
    if resp.status() != StatusCode::OK {
        if resp.status() == StatusCode::PARTIAL_CONTENT {
            return Some(Err(protocol(ctx, repo)));
        }
        return Some(Err(upstream_failure(ctx, repo, resp).await));
    }
    let announced = match announced_length(state, ctx, repo, digest, scope, &resp) {
        Ok(a) => a,
        Err(e) => return Some(Err(e)),
    };
    store.link(scope, digest).await;
    // Held already (fetched for another repository): now that the upstream confirmed this
    // one holds it too, it is served from disk.
    if let Some(blob) = store.open_blob(digest).await {
        drop((leader, resp));
        return Some(
            super::cached::serve(ctx, store, digest, blob)
                .await
                .map_err(|e| RegistryError::Internal {
                    context: format!("content cache: {e}"),
                }),
        );
    }
    let file = match announced {
        Some(n) => store.start_fill(digest, n).await,
        None => None,
    };
    let Some(file) = file else {
        // Not cacheable: this request streams it alone (verified); its followers go alone.
        drop(leader);
        return Some(Ok(direct_response(
            ctx, digest, resp, idle, announced, false,
        )));
    };
    let body = body_stream_with_idle_timeout(resp, idle)
        .map(|r| r.map_err(|e| e.to_string()))
        .boxed();
    let fill = leader.start(file, body, idle, &ctx.id);
    Some(Ok(from_fill(ctx, fill)))
}

/// The answer to `ctx` from a fill: the whole blob or the range asked for, as it arrives.
fn from_fill(ctx: &RequestCtx, fill: std::sync::Arc<super::fill::Fill>) -> Response<ProxyBody> {
    let (status, headers, first, count) = super::cached::plan(ctx, &fill.digest, fill.len);
    let body = if count == 0 {
        body::empty()
    } else {
        body::sized(super::fill::follow(fill, first, count), count)
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
}

fn protocol(ctx: &RequestCtx, repo: &RepoName) -> RegistryError {
    RegistryError::UpstreamProtocol {
        upstream: ctx.upstream_name().to_string(),
        repo: repo.to_string(),
    }
}

/// The upstream's announced length of a 200, refused (before any header goes out) when it
/// cannot be this blob's: with `Content-Length: 0`, HTTP/1 would end the response at once,
/// before the verifying body is ever polled (a clean, unverified 200). (The header, not
/// `content_length()`: for a HEAD answer reqwest reports the empty body.)
fn announced_length(
    state: &AppState,
    ctx: &RequestCtx,
    repo: &RepoName,
    digest: &Digest,
    scope: &str,
    resp: &reqwest::Response,
) -> Result<Option<u64>, RegistryError> {
    let announced = resp
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = announced {
        let known = state.blob_sizes.get(scope, digest);
        if !length_can_match(digest, n) || known.is_some_and(|k| k != n) {
            tracing::warn!(request_id = %ctx.id, upstream = ctx.upstream_name(), %digest, announced = n, "blob length announced by the upstream cannot match its digest");
            return Err(protocol(ctx, repo));
        }
    }
    Ok(announced)
}

/// Straight from the upstream, uncached: HEAD, any request without the store, and misses
/// that cannot be filled. `pass_range`: forward the client's `Range` (only without a store).
async fn serve_direct(
    state: &AppState,
    ctx: &RequestCtx,
    repo: &RepoName,
    digest: &Digest,
    scope: &str,
    pass_range: bool,
) -> Result<Response<ProxyBody>, RegistryError> {
    let mut headers = HeaderMap::new();
    if pass_range {
        for name in [RANGE, IF_RANGE] {
            if let Some(v) = ctx.headers.get(&name) {
                headers.insert(name, v.clone());
            }
        }
    }
    let method = if ctx.head() {
        Method::HEAD
    } else {
        Method::GET
    };
    let resp = send_upstream(
        state,
        ctx,
        repo,
        method,
        format!("/v2/{repo}/blobs/{digest}"),
        headers,
    )
    .await?;
    // A stalled body is bounded like a stalled answer: by the upstream's request timeout.
    let idle = super::client(state, ctx)?.request_timeout();
    let status = resp.status();
    if !(status == StatusCode::OK
        || status == StatusCode::PARTIAL_CONTENT
        || status == StatusCode::RANGE_NOT_SATISFIABLE)
    {
        return Err(upstream_failure(ctx, repo, resp).await);
    }
    // Partial answers are unverifiable; accept them only when the client asked for a range,
    // so an upstream cannot dodge the digest check by answering 206 to a plain GET.
    if status != StatusCode::OK && !(pass_range && ctx.headers.contains_key(RANGE)) {
        tracing::warn!(request_id = %ctx.id, upstream = ctx.upstream_name(), %status, "partial answer to a request without Range");
        return Err(protocol(ctx, repo));
    }
    let announced = if status == StatusCode::OK {
        announced_length(state, ctx, repo, digest, scope, &resp)?
    } else {
        None
    };
    // The upstream answered for this repository: link the digest to it. The bytes are still
    // verified before anything is published, and a wrong blob is never completed.
    if let Some(store) = &state.content {
        store.link(scope, digest).await;
    }
    if status == StatusCode::OK {
        return Ok(direct_response(
            ctx,
            digest,
            resp,
            idle,
            announced,
            ctx.head(),
        ));
    }
    let mut out = HeaderMap::new();
    copy_headers(resp.headers(), &mut out, PASSED_HEADERS);
    copy_headers(resp.headers(), &mut out, &["content-range"]);
    if let Ok(v) = HeaderValue::from_str(&digest.to_string()) {
        out.insert(DIGEST_HEADER, v);
    }
    let body = if status == StatusCode::RANGE_NOT_SATISFIABLE {
        out.insert(CONTENT_LENGTH, HeaderValue::from(0));
        out.remove(CONTENT_TYPE);
        body::empty()
    } else {
        if !out.contains_key(CONTENT_RANGE) {
            return Err(protocol(ctx, repo));
        }
        body::from_response(resp, idle)
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    *r.headers_mut() = out;
    Ok(r)
}

/// An upstream 200 passed on, hashed on the way with its last chunk held back (or, for a
/// HEAD, just its headers).
fn direct_response(
    ctx: &RequestCtx,
    digest: &Digest,
    resp: reqwest::Response,
    idle: Duration,
    announced: Option<u64>,
    head: bool,
) -> Response<ProxyBody> {
    let mut out = HeaderMap::new();
    copy_headers(resp.headers(), &mut out, PASSED_HEADERS);
    // The digest the client asked for is the blob's name; never echo a different one.
    if let Ok(v) = HeaderValue::from_str(&digest.to_string()) {
        out.insert(DIGEST_HEADER, v);
    }
    out.entry(ACCEPT_RANGES)
        .or_insert(HeaderValue::from_static("bytes"));
    let body = if head {
        body::empty()
    } else {
        let verified = verified_stream(resp, *digest, ctx, idle, announced);
        match announced {
            Some(n) => body::sized(verified, n),
            None => verified,
        }
    };
    let mut r = Response::new(body);
    *r.headers_mut() = out;
    r
}

struct Verify {
    inner: BoxStream<'static, Result<Bytes, crate::upstream::BodyError>>,
    hasher: Sha256,
    held: Option<Bytes>,
    expected: Digest,
    /// The upstream's `Content-Length`, when it sent one: never pass more than that.
    announced: Option<u64>,
    seen: u64,
    done: bool,
    request_id: String,
    upstream: String,
}

fn verified_stream(
    resp: reqwest::Response,
    expected: Digest,
    ctx: &RequestCtx,
    idle: Duration,
    announced: Option<u64>,
) -> ProxyBody {
    let state = Verify {
        inner: body_stream_with_idle_timeout(resp, idle).boxed(),
        hasher: Sha256::new(),
        held: None,
        expected,
        announced,
        seen: 0,
        done: false,
        request_id: ctx.id.clone(),
        upstream: ctx.upstream_name().to_string(),
    };
    body::stream(futures_util::stream::unfold(state, |mut s| async move {
        if s.done {
            return None;
        }
        loop {
            match s.inner.next().await {
                Some(Ok(chunk)) => {
                    if chunk.is_empty() {
                        continue;
                    }
                    s.seen = s.seen.saturating_add(chunk.len() as u64);
                    if let Some(announced) = s.announced.filter(|&n| s.seen > n) {
                        s.done = true;
                        return Some((Err(BodyError::TooLong { announced }), s));
                    }
                    s.hasher.update(&chunk);
                    if let Some(prev) = s.held.replace(chunk) {
                        return Some((Ok(prev), s));
                    }
                }
                Some(Err(e)) => {
                    s.done = true;
                    let reason = e.to_string();
                    return Some((Err(BodyError::Upstream { reason }), s));
                }
                None => {
                    s.done = true;
                    let actual = Digest::from_sha256_bytes(s.hasher.clone().finalize().into());
                    if actual == s.expected {
                        return s.held.take().map(|last| (Ok(last), s));
                    }
                    tracing::error!(
                        request_id = %s.request_id,
                        upstream = %s.upstream,
                        expected = %s.expected,
                        %actual,
                        "blob digest mismatch: cutting the connection"
                    );
                    let err = BodyError::DigestMismatch {
                        expected: s.expected.to_string(),
                        actual: actual.to_string(),
                    };
                    return Some((Err(err), s));
                }
            }
        }
    }))
}

/// Sizes of blobs named by verified manifests (config and layers), per
/// `registry/repository`: a descriptor's `size` is part of the manifest's digested bytes, so an
/// upstream announcing another length for that blob is lying (image-spec descriptor.md:
/// "size ... MUST match the content"). Only ever used to refuse early, never to serve.
pub struct BlobSizes(moka::sync::Cache<String, u64>);

impl BlobSizes {
    pub fn new(max_entries: u64) -> BlobSizes {
        BlobSizes(moka::sync::Cache::new(max_entries))
    }

    pub fn learn(&self, scope: &str, manifest: &[u8]) {
        use oci_spec::image::ImageManifest;
        if let Ok(m) = ImageManifest::from_reader(manifest) {
            for d in std::iter::once(m.config()).chain(m.layers().iter()) {
                self.0.insert(format!("{scope}@{}", d.digest()), d.size());
            }
        }
    }

    pub fn get(&self, scope: &str, digest: &Digest) -> Option<u64> {
        self.0.get(&format!("{scope}@{digest}"))
    }
}

/// Whether a blob of `len` bytes can have `digest`: only the empty blob is empty.
fn length_can_match(digest: &Digest, len: u64) -> bool {
    len != 0 || *digest == Digest::from_sha256_bytes(Sha256::digest(b"").into())
}
