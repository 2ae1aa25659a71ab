//! Gathering what [`super::verify`] needs: the `sha256-<hex>.sig` manifest and its payload
//! blobs, through the small [`Registry`] trait (the proxy implements it with its upstream
//! client; tests with an in-memory registry). Every read is bounded by [`CosignLimits`].

use std::future::Future;

use bytes::Bytes;

use super::{
    parse_signature_manifest, signature_tag, verify, CosignLimits, CosignRefusal, KeyVerified,
};
use crate::policy::CosignKey;
use crate::registry::Digest;

/// A registry read failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// 404: the reference does not exist.
    NotFound,
    /// More than the limit.
    TooLarge { limit: u64 },
    /// The registry could not be asked, or answered unusably (transient: fail closed, 503).
    Unavailable { reason: String },
}

/// The registry reads one repository's signature check needs.
pub trait Registry: Sync {
    /// The digest the tag names now (HEAD with every manifest media type accepted).
    fn resolve_tag(&self, tag: &str) -> impl Future<Output = Result<Digest, FetchError>> + Send;
    /// The manifest at `reference` (a tag), at most `limit` bytes.
    fn manifest(
        &self,
        reference: &str,
        limit: u64,
    ) -> impl Future<Output = Result<Bytes, FetchError>> + Send;
    /// The blob `digest`, at most `limit` bytes (the verifier re-hashes it).
    fn blob(
        &self,
        digest: &Digest,
        limit: u64,
    ) -> impl Future<Output = Result<Bytes, FetchError>> + Send;
}

/// Whether `digest` carries a simple-signing signature by one of `keys`.
pub async fn verify_digest<R: Registry>(
    registry: &R,
    digest: &Digest,
    keys: &[CosignKey],
    limits: &CosignLimits,
) -> Result<KeyVerified, CosignRefusal> {
    let tag = signature_tag(digest);
    let unavailable = |reason: String| CosignRefusal::Unavailable {
        digest: *digest,
        reason,
    };
    let manifest = match registry
        .manifest(&tag, limits.signature_manifest_max_bytes)
        .await
    {
        Ok(m) => m,
        Err(FetchError::NotFound) => {
            return Err(CosignRefusal::NotSigned {
                digest: *digest,
                tag,
            })
        }
        Err(FetchError::TooLarge { limit }) => {
            return Err(CosignRefusal::BadArtifact {
                tag,
                reason: format!("the manifest is over the {limit}-byte limit"),
            })
        }
        Err(FetchError::Unavailable { reason }) => return Err(unavailable(reason)),
    };
    let layers = parse_signature_manifest(&tag, &manifest, limits)?;
    let mut with_payloads = Vec::with_capacity(layers.len());
    for layer in layers {
        // The descriptor's size bounds the read (already checked against the limit).
        let payload = match registry.blob(&layer.digest, layer.size).await {
            Ok(p) => p,
            Err(FetchError::NotFound) => {
                return Err(CosignRefusal::BadArtifact {
                    tag,
                    reason: format!(
                        "payload blob {} of layer {} is missing",
                        layer.digest, layer.index
                    ),
                })
            }
            Err(FetchError::TooLarge { limit }) => {
                return Err(CosignRefusal::BadArtifact {
                    tag,
                    reason: format!(
                        "payload blob {} of layer {} is larger than its descriptor's {limit} bytes",
                        layer.digest, layer.index
                    ),
                })
            }
            Err(FetchError::Unavailable { reason }) => return Err(unavailable(reason)),
        };
        with_payloads.push((layer, payload));
    }
    verify(digest, &with_payloads, keys)
}
