//! The cosign verifier of a rule: the tag's digest as the upstream resolves it now, vouched
//! for by a simple-signing signature with one of the verifier's keys. Results are cached by
//! (policy generation, verifier, its keys, digest), bounded, single-flight; refusals are not
//! cached, so a signature pushed a moment later is seen at the next pull.

use std::sync::Arc;
use std::time::Duration;

use super::Enforcer;
use crate::cosign::fetch::{verify_digest, FetchError, Registry};
use crate::cosign::{CosignLimits, CosignRefusal, KeyVerified};
use crate::metrics::DecisionReason;
use crate::policy::CosignVerifier;
use crate::registry::Digest;
use crate::signatures::{Refusal, Verified};

/// The tag's digest as the upstream resolved it, or the refusal of a verifier that needs it
/// (cosign and Notation sign digests, so both start from the upstream's answer).
pub(super) fn resolved_digest(
    name: &str,
    tag: &str,
    resolved: &Result<Digest, FetchError>,
) -> Result<Digest, Refusal> {
    let refuse = |reason, message: String, unavailable| Refusal {
        verifier: name.to_string(),
        reason,
        message,
        unavailable,
    };
    match resolved {
        Ok(d) => Ok(*d),
        Err(FetchError::NotFound) => Err(refuse(
            DecisionReason::TagNotSigned,
            format!("tag {tag} does not exist at the upstream"),
            false,
        )),
        Err(FetchError::TooLarge { limit }) => Err(refuse(
            DecisionReason::Other,
            format!("tag {tag}: the manifest is over the {limit}-byte limit"),
            false,
        )),
        Err(FetchError::Unavailable { reason }) => Err(refuse(
            DecisionReason::TrustUnreachable,
            format!("tag {tag} could not be resolved at the upstream: {reason}"),
            true,
        )),
    }
}

/// (policy generation, verifier name, key fingerprints, digest).
pub(super) type ResultKey = (u64, String, String, String);

pub(super) struct CosignResults {
    cache: moka::future::Cache<ResultKey, KeyVerified>,
    limits: CosignLimits,
}

impl CosignResults {
    pub(super) fn new() -> CosignResults {
        CosignResults {
            // A verified (digest, key) pair stays true; the bound is memory and the TTL lets
            // a removed signature stop counting within minutes.
            cache: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(600))
                .build(),
            limits: CosignLimits::default(),
        }
    }
}

impl Enforcer {
    /// `resolved` is the tag's digest at the upstream (resolved once per pull, shared by every
    /// cosign verifier of the rule).
    pub(super) async fn cosign<R: Registry>(
        &self,
        name: &str,
        generation: u64,
        v: &CosignVerifier,
        tag: &str,
        resolved: &Result<Digest, FetchError>,
        registry: &R,
    ) -> Result<Verified, Refusal> {
        let expected = crate::cosign::describe_keys(v.keys());
        let refuse = |reason, message: String, unavailable| Refusal {
            verifier: name.to_string(),
            reason,
            message,
            unavailable,
        };
        let digest = resolved_digest(name, tag, resolved)?;
        let fingerprints: Vec<&str> = v.keys().iter().map(|k| k.key().fingerprint()).collect();
        let key: ResultKey = (
            generation,
            name.to_string(),
            fingerprints.join(","),
            digest.to_string(),
        );
        let limits = self.cosign.limits;
        let result = self
            .cosign
            .cache
            .try_get_with(key, async move {
                verify_digest(registry, &digest, v.keys(), &limits).await
            })
            .await;
        match result {
            Ok(k) => Ok(Verified::from_cosign(name, &k)),
            Err(e) => {
                let e: Arc<CosignRefusal> = e;
                let (reason, unavailable) = match e.as_ref() {
                    CosignRefusal::NotSigned { .. } => (DecisionReason::TagNotSigned, false),
                    CosignRefusal::BadArtifact { .. } | CosignRefusal::NoValidSignature { .. } => {
                        (DecisionReason::SignatureInvalid, false)
                    }
                    CosignRefusal::Unavailable { .. } => (DecisionReason::TrustUnreachable, true),
                };
                let message = match e.as_ref() {
                    // Already names the keys it expected.
                    CosignRefusal::NoValidSignature { .. } => format!("tag {tag}: {e}"),
                    _ => format!("tag {tag}: {e} (expected a signature by [{expected}])"),
                };
                Err(refuse(reason, message, unavailable))
            }
        }
    }
}
