//! Blobs stream straight through, never buffered whole. A full (200) body is hashed on the
//! way and the last chunk is held back until the hash is known: on a mismatch the body ends
//! with an error instead of that chunk, so the client sees a cut connection and never a
//! complete, clean wrong blob (distribution spec: content must match its digest).
//! Range answers (206) are partial and cannot be hashed; they pass through unverified and
//! the client verifies the assembled blob, as it must anyway.
//!
//! With the on-disk content store (`[cache]`), a held blob is answered from disk without the
//! upstream ([`super::cached`]), and a full 200 GET from the upstream is teed into the store
//! while it streams; the store publishes it only if the whole stream hashed to the digest.

use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt};
use http::header::{
    HeaderValue, ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, IF_RANGE, RANGE,
};
use http::{HeaderMap, Method, Response, StatusCode};
use sha2::{Digest as _, Sha256};
use std::time::Duration;

use super::body::{self, BodyError};
use super::{
    copy_headers, send_upstream, upstream_failure, AppState, ProxyBody, RequestCtx, DIGEST_HEADER,
};
use crate::cache::BlobWriter;
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
    let mut headers = HeaderMap::new();
    for name in [RANGE, IF_RANGE] {
        if let Some(v) = ctx.headers.get(&name) {
            headers.insert(name, v.clone());
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
    if status != StatusCode::OK && !ctx.headers.contains_key(RANGE) {
        tracing::warn!(request_id = %ctx.id, upstream = ctx.upstream_name(), %status, "partial answer to a request without Range");
        return Err(RegistryError::UpstreamProtocol {
            upstream: ctx.upstream_name().to_string(),
            repo: repo.to_string(),
        });
    }
    // An announced length that cannot be this blob's is refused before any header goes out:
    // with `Content-Length: 0`, HTTP/1 would end the response at once, before the verifying
    // body is ever polled (a clean, unverified 200).
    // (The header, not `content_length()`: for a HEAD answer reqwest reports the empty body.)
    let announced = resp
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if status == StatusCode::OK {
        if let Some(n) = announced {
            let known = state.blob_sizes.get(&scope, digest);
            if !length_can_match(digest, n) || known.is_some_and(|k| k != n) {
                tracing::warn!(request_id = %ctx.id, upstream = ctx.upstream_name(), %digest, announced = n, "blob length announced by the upstream cannot match its digest");
                return Err(RegistryError::UpstreamProtocol {
                    upstream: ctx.upstream_name().to_string(),
                    repo: repo.to_string(),
                });
            }
        }
    }
    // The upstream answered for this repository: link the digest to it. The bytes are still
    // verified before anything is published, and a wrong blob is never completed.
    if let Some(store) = &state.content {
        store.link(&scope, digest).await;
    }
    let mut out = HeaderMap::new();
    copy_headers(resp.headers(), &mut out, PASSED_HEADERS);
    if status != StatusCode::OK {
        copy_headers(resp.headers(), &mut out, &["content-range"]);
    }
    // The digest the client asked for is the blob's name; never echo a different one.
    if let Ok(v) = HeaderValue::from_str(&digest.to_string()) {
        out.insert(DIGEST_HEADER, v);
    }
    let body = if ctx.head() || status == StatusCode::RANGE_NOT_SATISFIABLE {
        if status == StatusCode::RANGE_NOT_SATISFIABLE {
            out.insert(CONTENT_LENGTH, HeaderValue::from(0));
            out.remove(CONTENT_TYPE);
        }
        body::empty()
    } else if status == StatusCode::PARTIAL_CONTENT {
        if !out.contains_key(CONTENT_RANGE) {
            return Err(RegistryError::UpstreamProtocol {
                upstream: ctx.upstream_name().to_string(),
                repo: repo.to_string(),
            });
        }
        body::from_response(resp, idle)
    } else {
        out.entry(ACCEPT_RANGES)
            .or_insert(HeaderValue::from_static("bytes"));
        let writer = match &state.content {
            Some(store) => store.blob_writer(digest, resp.content_length()).await,
            None => None,
        };
        let verified = verified_stream(resp, *digest, ctx, idle, writer, announced);
        match announced {
            Some(n) => body::sized(verified, n),
            None => verified,
        }
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    *r.headers_mut() = out;
    Ok(r)
}

struct Verify {
    inner: BoxStream<'static, Result<Bytes, crate::upstream::BodyError>>,
    hasher: Sha256,
    /// Tees the body into the content store; when present it does the hashing.
    writer: Option<BlobWriter>,
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
    writer: Option<BlobWriter>,
    announced: Option<u64>,
) -> ProxyBody {
    let state = Verify {
        inner: body_stream_with_idle_timeout(resp, idle).boxed(),
        hasher: Sha256::new(),
        writer,
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
                    match s.writer.as_mut() {
                        Some(w) => w.feed(&chunk).await,
                        None => s.hasher.update(&chunk),
                    }
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
                    // The store publishes only if this digest matches (it checks itself);
                    // that happens before the last chunk goes out, so a client that has the
                    // whole blob can rely on the next request being served from disk.
                    let actual = match s.writer.take() {
                        Some(w) => w.finish().await.actual,
                        None => Digest::from_sha256_bytes(s.hasher.clone().finalize().into()),
                    };
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
