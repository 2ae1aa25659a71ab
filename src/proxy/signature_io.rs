//! The registry reads of signature verifiers ([`crate::cosign::fetch::Registry`]) through
//! trustgate's upstream client: the same TLS, credentials, token scopes and timeouts as the
//! pull itself, and no second HTTP client.

use bytes::Bytes;
use http::header::{HeaderValue, ACCEPT};
use http::{HeaderMap, Method, StatusCode};

use super::{read_limited, send_upstream, AppState, ReadError, RequestCtx, DIGEST_HEADER};
use crate::cosign::fetch::{FetchError, Registry};
use crate::cosign::referrers::ReferrersPage;
use crate::registry::media::DEFAULT_MANIFEST_ACCEPT;
use crate::registry::{Digest, RegistryError, RepoName};

/// The client's upstream repository, for one request.
pub struct UpstreamRepo<'a> {
    pub state: &'a AppState,
    pub ctx: &'a RequestCtx,
    pub repo: &'a RepoName,
}

/// Every manifest type (and cosign's own), so the registry never down-converts.
fn manifest_accept() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(ACCEPT, HeaderValue::from_static(DEFAULT_MANIFEST_ACCEPT));
    h
}

fn unavailable(e: impl std::fmt::Display) -> FetchError {
    FetchError::Unavailable {
        reason: e.to_string(),
    }
}

impl UpstreamRepo<'_> {
    async fn get(
        &self,
        method: Method,
        path: String,
        limit: u64,
    ) -> Result<(HeaderMap, Option<Bytes>), FetchError> {
        let resp = send_upstream(
            self.state,
            self.ctx,
            self.repo,
            method.clone(),
            path,
            manifest_accept(),
        )
        .await
        .map_err(|e: RegistryError| unavailable(e))?;
        match resp.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Err(FetchError::NotFound),
            s => {
                return Err(FetchError::Unavailable {
                    reason: format!("{} answered {s}", self.ctx.upstream_name()),
                })
            }
        }
        let mut headers = HeaderMap::new();
        if let Some(d) = resp.headers().get(DIGEST_HEADER) {
            headers.insert(DIGEST_HEADER, d.clone());
        }
        // Referrers pagination (distribution-spec 1.1); the cosign module checks its target.
        if let Some(l) = resp.headers().get(http::header::LINK) {
            headers.insert(http::header::LINK, l.clone());
        }
        if method == Method::HEAD {
            return Ok((headers, None));
        }
        let timeout = super::client(self.state, self.ctx)
            .map_err(unavailable)?
            .request_timeout();
        match tokio::time::timeout(timeout, read_limited(resp, limit)).await {
            Err(_) => Err(unavailable(format!(
                "no complete answer within {timeout:?}"
            ))),
            Ok(Err(ReadError::TooLarge)) => Err(FetchError::TooLarge { limit }),
            Ok(Err(ReadError::Broken)) => Err(unavailable("the answer broke off")),
            Ok(Ok(b)) => Ok((headers, Some(b))),
        }
    }
}

impl Registry for UpstreamRepo<'_> {
    /// HEAD with every manifest media type; a registry that gives no digest on HEAD has the
    /// manifest fetched (bounded) and hashed instead.
    async fn resolve_tag(&self, tag: &str) -> Result<Digest, FetchError> {
        let path = format!("/v2/{}/manifests/{tag}", self.repo);
        let (headers, _) = self.get(Method::HEAD, path.clone(), 0).await?;
        if let Some(d) = headers
            .get(DIGEST_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| Digest::parse(s).ok())
        {
            return Ok(d);
        }
        let limit = self.state.config.limits.manifest_max_bytes;
        let (_, body) = self.get(Method::GET, path, limit).await?;
        Ok(Digest::sha256_of(&body.unwrap_or_default()))
    }

    async fn manifest(&self, reference: &str, limit: u64) -> Result<Bytes, FetchError> {
        let path = format!("/v2/{}/manifests/{reference}", self.repo);
        let (_, body) = self.get(Method::GET, path, limit).await?;
        Ok(body.unwrap_or_default())
    }

    async fn blob(&self, digest: &Digest, limit: u64) -> Result<Bytes, FetchError> {
        let path = format!("/v2/{}/blobs/{digest}", self.repo);
        let (_, body) = self.get(Method::GET, path, limit).await?;
        Ok(body.unwrap_or_default())
    }

    /// A `next` page must stay in this repository's listing (the cosign module already checked
    /// it names the digest's listing; this keeps it to the client's repository).
    async fn referrers(
        &self,
        digest: &Digest,
        next: Option<&str>,
        limit: u64,
    ) -> Result<ReferrersPage, FetchError> {
        let first = format!("/v2/{}/referrers/{digest}", self.repo);
        let path = match next {
            None => first,
            Some(p) if p.split('?').next() == Some(first.as_str()) => p.to_string(),
            Some(p) => {
                return Err(FetchError::Unavailable {
                    reason: format!("the referrers page {p:?} is outside {first}"),
                })
            }
        };
        let (headers, body) = self.get(Method::GET, path, limit).await?;
        Ok(ReferrersPage {
            body: body.unwrap_or_default(),
            link: headers
                .get(http::header::LINK)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        })
    }
}
