//! Manifests. Always fetched whole (bounded by `limits.manifest_max_bytes`, enforced while the
//! bytes arrive), hashed, and served byte-for-byte with `Docker-Content-Digest` set to the
//! digest of exactly those bytes. HEAD is answered from the same GET, so HEAD and GET agree.

use bytes::Bytes;
use http::header::{HeaderValue, ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, Method, Response, StatusCode};

use super::{
    body, read_limited, send_upstream, upstream_failure, AppState, ProxyBody, ReadError,
    RequestCtx, DIGEST_HEADER,
};
use crate::policy::Permit;
use crate::registry::media::{DEFAULT_MANIFEST_ACCEPT, DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED};
use crate::registry::{Digest, RegistryError, RepoName, Tag};

/// A manifest whose bytes have been checked against `digest`.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub bytes: Bytes,
    pub digest: Digest,
    pub media_type: Option<HeaderValue>,
}

/// The client's `Accept`, or the full modern list when it sent none (otherwise the registry
/// down-converts schema2 to schema1 and 404s an index).
///
/// An `Accept` that names no manifest type at all (`*/*`, as generic HTTP clients send) counts
/// as none: forwarding it would get the schema1 down-conversion.
fn accept_headers(ctx: &RequestCtx) -> HeaderMap {
    let mut h = HeaderMap::new();
    let mut names_a_manifest_type = false;
    for v in ctx.headers.get_all(ACCEPT) {
        h.append(ACCEPT, v.clone());
        let s = v.to_str().unwrap_or("");
        names_a_manifest_type |= s.contains("application/vnd.");
    }
    if !names_a_manifest_type {
        h.remove(ACCEPT);
        h.insert(ACCEPT, HeaderValue::from_static(DEFAULT_MANIFEST_ACCEPT));
    }
    h
}

/// GETs `/v2/<repo>/manifests/<reference>` and reads it within the size limit.
async fn fetch(
    state: &AppState,
    ctx: &RequestCtx,
    repo: &RepoName,
    reference: &str,
) -> Result<(Bytes, Option<HeaderValue>, Option<HeaderValue>), RegistryError> {
    let resp = send_upstream(
        state,
        ctx,
        repo,
        Method::GET,
        format!("/v2/{repo}/manifests/{reference}"),
        accept_headers(ctx),
    )
    .await?;
    if resp.status() != StatusCode::OK {
        return Err(upstream_failure(ctx, repo, resp).await);
    }
    let media_type = resp.headers().get(CONTENT_TYPE).cloned();
    if media_type.as_ref().is_some_and(|t| {
        let t = t.to_str().unwrap_or("");
        t.starts_with(DOCKER_SCHEMA1_SIGNED) || t.starts_with(DOCKER_SCHEMA1)
    }) {
        return Err(RegistryError::ManifestSchema1 {
            upstream: ctx.upstream_name().to_string(),
            repo: repo.to_string(),
        });
    }
    let claimed = resp.headers().get(DIGEST_HEADER).cloned();
    let limit = state.config.limits.manifest_max_bytes;
    let timeout = super::client(state, ctx)?.request_timeout();
    // Reserve the bytes this read may buffer against the process-wide budget, so memory
    // stays bounded however many manifests are asked for at once (PROXY-REVIEW D10).
    let reserve = resp
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .map_or(limit, |n| n.min(limit));
    let permits = u32::try_from(super::buffer_permits(reserve.max(1))).unwrap_or(u32::MAX);
    let _reserved =
        match tokio::time::timeout(timeout, state.buffered.clone().acquire_many_owned(permits))
            .await
        {
            Ok(Ok(p)) => p,
            Ok(Err(_)) | Err(_) => {
                return Err(RegistryError::Busy {
                    what: "too many manifest bytes are being read from upstreams at once",
                })
            }
        };
    let bytes = match tokio::time::timeout(timeout, read_limited(resp, limit)).await {
        Err(_) => {
            return Err(RegistryError::UpstreamTimeout {
                upstream: ctx.upstream_name().to_string(),
                repo: repo.to_string(),
                timeout,
            })
        }
        Ok(Err(ReadError::TooLarge)) => {
            return Err(RegistryError::ManifestTooLarge {
                upstream: ctx.upstream_name().to_string(),
                repo: repo.to_string(),
                limit,
            })
        }
        Ok(Err(ReadError::Broken)) => {
            return Err(RegistryError::UpstreamProtocol {
                upstream: ctx.upstream_name().to_string(),
                repo: repo.to_string(),
            })
        }
        Ok(Ok(b)) => b,
    };
    Ok((bytes, media_type, claimed))
}

/// THE by-digest fetch: the manifest for `repo@expected`, refused unless its bytes hash to
/// `expected` (and, when given, are exactly `expected_len` long). Distribution spec,
/// "Pulling manifests": a client must verify content against the digest it asked for; the
/// proxy does it first so no client ever sees unverified bytes.
///
/// Concurrent fetches of one manifest (same upstream, repository, digest and `Accept`) share
/// one upstream GET (issue 9; PROXY-REVIEW D10): followers get the leader's verified bytes
/// and check their own expected length against them.
pub async fn fetch_manifest_by_digest(
    state: &AppState,
    ctx: &RequestCtx,
    repo: &RepoName,
    expected: &Digest,
    expected_len: Option<u64>,
) -> Result<FetchedManifest, RegistryError> {
    use super::coalesce::Turn;
    let accept: Vec<&[u8]> = ctx
        .headers
        .get_all(ACCEPT)
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    let key = format!("{}/{repo}@{expected}\n{accept:?}", ctx.upstream_name());
    match state.manifest_fetches.turn(key).await {
        Turn::Got(m) => {
            if let Some(len) = expected_len.filter(|&l| l != m.bytes.len() as u64) {
                return Err(RegistryError::ManifestLengthMismatch {
                    upstream: ctx.upstream_name().to_string(),
                    repo: repo.to_string(),
                    expected: len,
                    actual: m.bytes.len() as u64,
                });
            }
            Ok(m)
        }
        Turn::Alone => fetch_alone(state, ctx, repo, expected, expected_len).await,
        Turn::Lead(lead) => {
            let r = fetch_alone(state, ctx, repo, expected, expected_len).await;
            lead.finish(r.as_ref().ok().cloned());
            r
        }
    }
}

async fn fetch_alone(
    state: &AppState,
    ctx: &RequestCtx,
    repo: &RepoName,
    expected: &Digest,
    expected_len: Option<u64>,
) -> Result<FetchedManifest, RegistryError> {
    let (bytes, media_type, _claimed) = fetch(state, ctx, repo, &expected.to_string()).await?;
    if let Some(len) = expected_len {
        if bytes.len() as u64 != len {
            return Err(RegistryError::ManifestLengthMismatch {
                upstream: ctx.upstream_name().to_string(),
                repo: repo.to_string(),
                expected: len,
                actual: bytes.len() as u64,
            });
        }
    }
    let actual = Digest::sha256_of(&bytes);
    if actual != *expected {
        tracing::warn!(request_id = %ctx.id, upstream = ctx.upstream_name(), %repo, %expected, %actual, "manifest digest mismatch");
        return Err(RegistryError::ManifestDigestMismatch {
            upstream: ctx.upstream_name().to_string(),
            repo: repo.to_string(),
            expected: *expected,
            actual,
        });
    }
    Ok(FetchedManifest {
        bytes,
        digest: actual,
        media_type,
    })
}

/// Serves `repo@expected` (GET or HEAD per `ctx`) after [`fetch_manifest_by_digest`].
pub async fn serve_manifest_by_digest(
    state: &AppState,
    ctx: &RequestCtx,
    repo: &RepoName,
    expected: &Digest,
    expected_len: Option<u64>,
) -> Result<Response<ProxyBody>, RegistryError> {
    let m = fetch_manifest_by_digest(state, ctx, repo, expected, expected_len).await?;
    Ok(manifest_response(&m, ctx.head()))
}

/// THE tag path: every manifest request by tag arrives here. Today it proxies the tag;
/// enforcement replaces the body with "resolve the signed digest, then
/// [`serve_manifest_by_digest`]".
pub async fn serve_tag_manifest(
    state: &AppState,
    ctx: &RequestCtx,
    repo: &RepoName,
    tag: &Tag,
    _permit: &Permit,
) -> Result<Response<ProxyBody>, RegistryError> {
    let (bytes, media_type, claimed) = fetch(state, ctx, repo, tag.as_str()).await?;
    let actual = Digest::sha256_of(&bytes);
    // An upstream that names one digest and sends other bytes is lying about one of them.
    if let Some(claimed) = claimed
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .and_then(|s| Digest::parse(s).ok())
    {
        if claimed != actual {
            return Err(RegistryError::ManifestDigestMismatch {
                upstream: ctx.upstream_name().to_string(),
                repo: repo.to_string(),
                expected: claimed,
                actual,
            });
        }
    }
    let m = FetchedManifest {
        bytes,
        digest: actual,
        media_type,
    };
    // A HEAD by tag was answered from a whole GET (HEAD carries no digest we could trust
    // without the bytes). Keep those hashed bytes under their digest, so the client's next
    // step, a GET by that digest, is answered without a second (on Docker Hub: counted)
    // upstream pull (PROXY-REVIEW D19).
    let scope = format!("{}/{}", ctx.upstream_name(), repo);
    let cached = crate::cache::CachedManifest {
        media_type: m
            .media_type
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        bytes: m.bytes.clone(),
    };
    if let Err(e) = state
        .manifests
        .insert(&scope, &actual.to_string(), cached)
        .await
    {
        tracing::error!(request_id = %ctx.id, error = %e, "manifest cache refused hashed bytes");
    }
    Ok(manifest_response(&m, ctx.head()))
}

/// The exact bytes, their digest, type and length; no body for HEAD.
pub fn manifest_response(m: &FetchedManifest, head: bool) -> Response<ProxyBody> {
    let len = m.bytes.len();
    let body = if head {
        body::empty()
    } else {
        body::full(m.bytes.clone())
    };
    let mut r = Response::new(body);
    let h = r.headers_mut();
    match &m.media_type {
        Some(t) => {
            h.insert(CONTENT_TYPE, t.clone());
        }
        None => {
            // An upstream that omits Content-Type: the manifest names its own type.
            if let Some(v) = media_type_of(&m.bytes).and_then(|t| HeaderValue::from_str(&t).ok()) {
                h.insert(CONTENT_TYPE, v);
            }
        }
    }
    h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(v) = HeaderValue::from_str(&m.digest.to_string()) {
        h.insert(DIGEST_HEADER, v);
    }
    r
}

fn media_type_of(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Typed {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
    }
    serde_json::from_slice::<Typed>(bytes).ok()?.media_type
}
