//! The cosign verifier of a rule: the tag's digest as the upstream resolves it now, vouched
//! for by a simple-signing signature with one of the verifier's keys. Results are cached by
//! (policy generation, verifier, its keys, digest), bounded, single-flight; refusals are not
//! cached, so a signature pushed a moment later is seen at the next pull.

use std::sync::Arc;
use std::time::Duration;

use super::Enforcer;
use crate::cosign::fetch::{verify_digest, verify_digest_keyless, FetchError, Registry};
use crate::cosign::keyless::KeylessVerified;
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

/// (policy generation, verifier name, key fingerprints or keyless requirement, digest).
pub(super) type ResultKey = (u64, String, String, String);

/// What a cosign verifier proved (keyed or keyless), as cached.
#[derive(Debug, Clone)]
pub(super) enum Proof {
    Key(KeyVerified),
    Keyless(KeylessVerified),
}

pub(super) struct CosignResults {
    cache: moka::future::Cache<ResultKey, Proof>,
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
    /// cosign verifier of the rule). A keyless verifier runs the same discovery (bundle
    /// referrers, then the `.sig` tag) and differs only in what decides each signature.
    pub(super) async fn cosign<R: Registry>(
        &self,
        name: &str,
        generation: u64,
        v: &CosignVerifier,
        tag: &str,
        resolved: &Result<Digest, FetchError>,
        registry: &R,
    ) -> Result<Verified, Refusal> {
        let expected = match v.keyless() {
            Some(k) => k.describe(),
            None => format!(
                "a signature by [{}]",
                crate::cosign::describe_keys(v.keys())
            ),
        };
        let refuse = |reason, message: String, unavailable| Refusal {
            verifier: name.to_string(),
            reason,
            message,
            unavailable,
        };
        let digest = resolved_digest(name, tag, resolved)?;
        let trust = match v.keyless() {
            Some(_) => expected.clone(),
            None => {
                let fingerprints: Vec<&str> =
                    v.keys().iter().map(|k| k.key().fingerprint()).collect();
                fingerprints.join(",")
            }
        };
        let key: ResultKey = (generation, name.to_string(), trust, digest.to_string());
        let limits = self.cosign.limits;
        let result = self
            .cosign
            .cache
            .try_get_with(key, async move {
                match v.keyless() {
                    Some(k) => verify_digest_keyless(registry, &digest, k, &limits)
                        .await
                        .map(Proof::Keyless),
                    None => verify_digest(registry, &digest, v.keys(), &limits)
                        .await
                        .map(Proof::Key),
                }
            })
            .await;
        match result {
            Ok(Proof::Key(k)) => Ok(Verified::from_cosign(name, &k)),
            Ok(Proof::Keyless(k)) => Ok(Verified::from_cosign_keyless(name, &k)),
            Err(e) => {
                let e: Arc<CosignRefusal> = e;
                let (reason, unavailable) = match e.as_ref() {
                    CosignRefusal::NotSigned { .. } => (DecisionReason::TagNotSigned, false),
                    CosignRefusal::BadArtifact { .. }
                    | CosignRefusal::NoValidSignature { .. }
                    | CosignRefusal::NoValidKeyless { .. } => {
                        (DecisionReason::SignatureInvalid, false)
                    }
                    CosignRefusal::Unavailable { .. } => (DecisionReason::TrustUnreachable, true),
                };
                let message = match e.as_ref() {
                    // Already name what they expected.
                    CosignRefusal::NoValidSignature { .. }
                    | CosignRefusal::NoValidKeyless { .. } => format!("tag {tag}: {e}"),
                    _ => format!("tag {tag}: {e} (expected {expected})"),
                };
                Err(refuse(reason, message, unavailable))
            }
        }
    }
}
