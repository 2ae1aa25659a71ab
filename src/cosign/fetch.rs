//! Gathering what the verifiers need, through the small [`Registry`] trait (the proxy
//! implements it with its upstream client; tests with in-memory registries). Order, as
//! `cosign verify` 3 looks: Sigstore bundles among the digest's OCI 1.1 referrers (or the
//! `sha256-<hex>` tag schema; [`super::referrers`]), then the legacy `sha256-<hex>.sig`
//! simple-signing manifest and its payload blobs. Every read is bounded by [`CosignLimits`].

use std::future::Future;

use bytes::Bytes;

use super::bundle::PredicateRule;
use super::keyless::{
    verify_keyless_bundle, verify_keyless_layers, KeylessPolicy, KeylessVerified,
};
use super::referrers::{check_referrers, verify_referrers, ReferrersPage};
use super::simple_signing::describe_keys;
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
    /// OCI distribution-spec 1.1 "Listing Referrers": `GET /v2/<repo>/referrers/<digest>`, or
    /// when `next` is given that path and query (the previous page's `Link`, already checked
    /// to be this digest's listing), at most `limit` bytes. `NotFound` when the registry has
    /// no referrers API.
    fn referrers(
        &self,
        digest: &Digest,
        next: Option<&str>,
        limit: u64,
    ) -> impl Future<Output = Result<ReferrersPage, FetchError>> + Send;
}

/// Whether `digest` carries a cosign signature by one of `keys`, in either format: a v0.3
/// bundle referrer first, then the legacy `.sig` tag. A hostile or unreachable referrers
/// listing refuses outright (fail closed); otherwise what every candidate held is reported.
pub async fn verify_digest<R: Registry>(
    registry: &R,
    digest: &Digest,
    keys: &[CosignKey],
    limits: &CosignLimits,
) -> Result<KeyVerified, CosignRefusal> {
    let mut found = match verify_referrers(registry, digest, keys, limits).await? {
        Ok(k) => return Ok(k),
        Err(problems) => problems,
    };
    match verify_simple_signing(registry, digest, keys, limits).await {
        Ok(k) => Ok(k),
        Err(CosignRefusal::NotSigned { .. }) if !found.is_empty() => {
            Err(CosignRefusal::NoValidSignature {
                digest: *digest,
                keys: describe_keys(keys),
                found,
            })
        }
        Err(CosignRefusal::NoValidSignature {
            digest,
            keys,
            found: legacy,
        }) => {
            found.extend(legacy);
            Err(CosignRefusal::NoValidSignature {
                digest,
                keys,
                found,
            })
        }
        Err(e) => Err(e),
    }
}

/// Whether `digest` carries a keyless cosign signature satisfying `policy`, found as
/// [`verify_digest`] finds keyed ones (bundle referrers first, then the `.sig` tag).
pub async fn verify_digest_keyless<R: Registry>(
    registry: &R,
    digest: &Digest,
    policy: &KeylessPolicy,
    limits: &CosignLimits,
) -> Result<KeylessVerified, CosignRefusal> {
    let refused = |found| CosignRefusal::NoValidKeyless {
        digest: *digest,
        expected: policy.describe(),
        found,
    };
    let check = |b: &[u8]| verify_keyless_bundle(digest, b, policy, PredicateRule::CosignSign);
    let mut found = match check_referrers(registry, digest, limits, check).await? {
        Ok(k) => return Ok(k),
        Err(problems) => problems,
    };
    match fetch_simple_signing(registry, digest, limits).await {
        Ok(layers) => match verify_keyless_layers(digest, &layers, policy) {
            Ok(k) => Ok(k),
            Err(legacy) => {
                found.extend(legacy);
                Err(refused(found))
            }
        },
        Err(CosignRefusal::NotSigned { .. }) if !found.is_empty() => Err(refused(found)),
        Err(e) => Err(e),
    }
}

/// Whether `digest` carries a simple-signing signature by one of `keys`.
pub async fn verify_simple_signing<R: Registry>(
    registry: &R,
    digest: &Digest,
    keys: &[CosignKey],
    limits: &CosignLimits,
) -> Result<KeyVerified, CosignRefusal> {
    let layers = fetch_simple_signing(registry, digest, limits).await?;
    verify(digest, &layers, keys)
}

/// The `sha256-<hex>.sig` manifest of `digest` and its simple-signing layers with their
/// payload blobs, every read bounded.
async fn fetch_simple_signing<R: Registry>(
    registry: &R,
    digest: &Digest,
    limits: &CosignLimits,
) -> Result<Vec<(super::SignatureLayer, Bytes)>, CosignRefusal> {
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
    Ok(with_payloads)
}
