//! Keyless Sigstore bundles (cosign 3's default): the bundle bytes, the image digest and a
//! [`KeylessPolicy`] in; a [`KeylessVerified`] or a [`BundleProblem`] out. Pure; no I/O.
//!
//! The envelope rules are the keyed verifier's (`cosign/bundle.rs`: one DSSE signature over
//! an in-toto statement). sigstore-verify then checks everything the certificate and the log
//! entry prove, with the image digest as the artifact: it binds the digest to a statement
//! subject (sigstore client spec "DSSE": the artifact's digest must match a subject) and
//! checks the DSSE signature with the certificate's key. Only after that are the statement's
//! type and cosign's predicate type read, over verified bytes.

use super::{KeylessPolicy, KeylessProblem, KeylessVerified};
use crate::cosign::bundle::{
    check_statement, parse, statement_subjects, BundleProblem, PredicateRule, BUNDLE_MEDIA_TYPE,
};
use crate::cosign::SignatureFormat;
use crate::registry::Digest;

/// protobuf-specs `Bundle.media_type`, every version sigstore-verify accepts: cosign 3 writes
/// v0.3; v0.1/v0.2 are what earlier Sigstore clients wrote.
const MEDIA_TYPES: [&str; 4] = [
    BUNDLE_MEDIA_TYPE,
    "application/vnd.dev.sigstore.bundle+json;version=0.3",
    "application/vnd.dev.sigstore.bundle+json;version=0.2",
    "application/vnd.dev.sigstore.bundle+json;version=0.1",
];

/// Whether `bundle` is a keyless bundle whose certificate satisfies `policy` and whose DSSE
/// statement names `expected`.
pub fn verify_keyless_bundle(
    expected: &Digest,
    bundle: &[u8],
    policy: &KeylessPolicy,
    predicate: PredicateRule,
) -> Result<KeylessVerified, BundleProblem> {
    let p = parse(bundle, &MEDIA_TYPES)?;
    if p.certificate.is_none() {
        return Err(BundleProblem::Keyless(KeylessProblem::NoCertificate));
    }
    let text = std::str::from_utf8(bundle).map_err(|e| BundleProblem::NotJson {
        reason: e.to_string(),
    })?;
    let parsed = sigstore_types::Bundle::from_json(text).map_err(|e| BundleProblem::NotJson {
        reason: e.to_string(),
    })?;
    let hex = expected.to_string();
    let hex = hex.strip_prefix("sha256:").unwrap_or(&hex);
    let artifact =
        sigstore_types::Sha256Hash::from_hex(hex).map_err(|e| BundleProblem::NotJson {
            reason: format!("digest {expected}: {e}"),
        })?;
    let signer = match policy.verify(artifact.into(), &parsed) {
        Ok(s) => s,
        Err(KeylessProblem::Sigstore { reason }) => {
            // Which subjects the (not yet verified) statement claims, so a bundle for another
            // image reads as such; the verdict stays sigstore-verify's.
            let named = statement_subjects(&p.payload);
            let reason = if named.is_empty() || named.iter().any(|n| n == &expected.to_string()) {
                reason
            } else {
                format!(
                    "{reason} (the bundle's statement names [{}], not {expected})",
                    named.join(", ")
                )
            };
            return Err(BundleProblem::Keyless(KeylessProblem::Sigstore { reason }));
        }
        Err(e) => return Err(BundleProblem::Keyless(e)),
    };
    check_statement(expected, &p.payload, predicate)?;
    Ok(KeylessVerified {
        digest: *expected,
        signer,
        format: SignatureFormat::SigstoreBundle,
    })
}
