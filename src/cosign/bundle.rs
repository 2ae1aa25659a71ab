//! Sigstore bundle v0.3 (cosign 3's default signature format), keyed: a bundle's bytes and the
//! policy's keys in, a [`KeyVerified`] proof or a [`BundleProblem`] out. Pure; no I/O.
//!
//! Rules, each with its source:
//! - sigstore/protobuf-specs `protos/sigstore_bundle.proto` (`Bundle`): the media type
//!   `application/vnd.dev.sigstore.bundle.v0.3+json`; `verificationMaterial` is one of
//!   `publicKey` / `x509CertificateChain` / `certificate`; `content` is one of
//!   `messageSignature` / `dsseEnvelope`; "DSSE envelopes in a bundle MUST have exactly one
//!   signature"; `publicKey.hint` is an *unauthenticated* hint (`PublicKeyIdentifier`), so it
//!   never selects or excludes a key here: every configured key is tried.
//! - secure-systems-lab/dsse `protocol.md`: the signature is over
//!   `PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body` (LEN = ASCII
//!   decimal byte count), and the payload is only parsed after the signature verified
//!   ("reject if the signature does not verify ... only then parse").
//! - in-toto attestation `spec/v1/statement.md`: `_type` is
//!   `https://in-toto.io/Statement/v1` (v0.1 is still what older cosign wrote); unknown types are
//!   refused (sigstore-conformance `dsse-statement-unknown-type_fail`). A subject's
//!   `digest.sha256` is lowercase hex.
//! - sigstore/cosign `specs/BUNDLE_SPEC.md` (OCI image signatures): `payloadType`
//!   `application/vnd.in-toto+json`, predicate type `https://sigstore.dev/cosign/sign/v1`, and
//!   the statement's subject is the signed manifest digest. A bundle with another predicate type
//!   is an attestation (`cosign attest`), which says something *about* the image rather than
//!   vouching for it, so it does not count as a signature (as `cosign verify` ignores them).

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use serde::Deserialize;

use super::simple_signing::{KeyVerified, SignatureFormat};
use crate::policy::CosignKey;
use crate::registry::Digest;

/// protobuf-specs `Bundle.media_type` for v0.3 (also the OCI layer media type cosign uses).
pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// BUNDLE_SPEC.md: the DSSE payload type of an image signature.
pub const INTOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// BUNDLE_SPEC.md: the predicate type of `cosign sign` (as opposed to `cosign attest`).
pub const COSIGN_SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";
/// in-toto Statement types accepted (statement.md v1, and v0.1 which it supersedes).
pub const STATEMENT_TYPES: [&str; 2] = [
    "https://in-toto.io/Statement/v1",
    "https://in-toto.io/Statement/v0.1",
];

/// Which predicate types count as a signature of the subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PredicateRule {
    /// Only [`COSIGN_SIGN_PREDICATE`]: what enforcement uses.
    CosignSign,
    /// Any predicate type (for checking the DSSE/in-toto rules on vectors from other tools).
    Any,
}

/// Why one bundle did not vouch for the digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BundleProblem {
    NotJson {
        reason: String,
    },
    WrongMediaType {
        found: String,
    },
    /// A certificate or chain: keyless, which the keyed verifier does not accept.
    NotKeyed {
        found: &'static str,
    },
    /// The keyless verifier's refusal.
    Keyless(super::keyless::KeylessProblem),
    NoDsseEnvelope,
    WrongPayloadType {
        found: String,
    },
    SignatureCount {
        found: usize,
    },
    NotBase64 {
        field: &'static str,
    },
    NoKeyVerifies {
        hint: Option<String>,
    },
    StatementNotJson {
        reason: String,
    },
    WrongStatementType {
        found: String,
    },
    WrongPredicateType {
        found: String,
    },
    /// No subject names the expected digest; `found` lists what they name.
    OtherSubject {
        found: Vec<String>,
    },
}

impl fmt::Display for BundleProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BundleProblem::NotJson { reason } => write!(f, "not a Sigstore bundle: {reason}"),
            BundleProblem::WrongMediaType { found } => {
                write!(f, "bundle mediaType {found:?}, expected {BUNDLE_MEDIA_TYPE:?}")
            }
            BundleProblem::NotKeyed { found } => write!(
                f,
                "bundle is keyless ({found}), and this verifier trusts keys only (a keyless verifier names a trusted_root, identity and issuer)"
            ),
            BundleProblem::Keyless(p) => write!(f, "{p}"),
            BundleProblem::NoDsseEnvelope => {
                write!(f, "bundle has no dsseEnvelope (cosign signs images with DSSE)")
            }
            BundleProblem::WrongPayloadType { found } => {
                write!(f, "DSSE payloadType {found:?}, expected {INTOTO_PAYLOAD_TYPE:?}")
            }
            BundleProblem::SignatureCount { found } => write!(
                f,
                "DSSE envelope has {found} signatures; a bundle's envelope must have exactly one"
            ),
            BundleProblem::NotBase64 { field } => write!(f, "{field} is not base64"),
            BundleProblem::NoKeyVerifies { hint } => write!(
                f,
                "the DSSE signature verifies with none of the configured keys (bundle key hint {})",
                hint.as_deref().unwrap_or("none")
            ),
            BundleProblem::StatementNotJson { reason } => {
                write!(f, "signed payload is not an in-toto statement: {reason}")
            }
            BundleProblem::WrongStatementType { found } => {
                write!(f, "in-toto statement _type {found:?} is not a known Statement type")
            }
            BundleProblem::WrongPredicateType { found } => write!(
                f,
                "predicateType {found:?} is an attestation, not a signature (expected {COSIGN_SIGN_PREDICATE:?})"
            ),
            BundleProblem::OtherSubject { found } => {
                write!(f, "signed statement is for [{}]", found.join(", "))
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bundle {
    media_type: String,
    verification_material: Material,
    dsse_envelope: Option<Envelope>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Material {
    public_key: Option<KeyId>,
    certificate: Option<serde_json::Value>,
    x509_certificate_chain: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct KeyId {
    hint: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    payload: String,
    payload_type: String,
    signatures: Vec<EnvelopeSignature>,
}

#[derive(Deserialize)]
struct EnvelopeSignature {
    sig: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Statement {
    #[serde(rename = "_type")]
    kind: String,
    subject: Vec<Subject>,
    predicate_type: String,
}

#[derive(Deserialize)]
struct Subject {
    #[serde(default)]
    digest: BTreeMap<String, String>,
}

/// DSSE protocol.md "Signature definition": the pre-authentication encoding.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + payload_type.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

/// protobuf JSON `bytes` (which a bundle's payload and sig are): standard or URL-safe base64,
/// padded or not (protobuf JSON mapping).
fn b64(s: &str, field: &'static str) -> Result<Vec<u8>, BundleProblem> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let s = s.trim();
    [STANDARD, URL_SAFE, STANDARD_NO_PAD, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|e| e.decode(s).ok())
        .ok_or(BundleProblem::NotBase64 { field })
}

/// The parts of a bundle both verifiers read, before any signature is checked.
pub(super) struct Parsed {
    /// `Some(what)` when the bundle carries a certificate (keyless).
    pub certificate: Option<&'static str>,
    pub hint: Option<String>,
    pub payload_type: String,
    pub payload: Vec<u8>,
    pub signature: Vec<u8>,
}

/// Media type, one DSSE envelope with exactly one signature over an in-toto payload.
pub(super) fn parse(bundle: &[u8], media_types: &[&str]) -> Result<Parsed, BundleProblem> {
    let b: Bundle = serde_json::from_slice(bundle).map_err(|e| BundleProblem::NotJson {
        reason: e.to_string(),
    })?;
    if !media_types.contains(&b.media_type.as_str()) {
        return Err(BundleProblem::WrongMediaType {
            found: b.media_type,
        });
    }
    let m = b.verification_material;
    let certificate = if m.certificate.is_some() {
        Some("a certificate")
    } else if m.x509_certificate_chain.is_some() {
        Some("an x509CertificateChain")
    } else {
        None
    };
    let hint = m.public_key.and_then(|k| k.hint);
    let env = b.dsse_envelope.ok_or(BundleProblem::NoDsseEnvelope)?;
    if env.payload_type != INTOTO_PAYLOAD_TYPE {
        return Err(BundleProblem::WrongPayloadType {
            found: env.payload_type,
        });
    }
    if env.signatures.len() != 1 {
        return Err(BundleProblem::SignatureCount {
            found: env.signatures.len(),
        });
    }
    Ok(Parsed {
        certificate,
        hint,
        payload: b64(&env.payload, "dsseEnvelope.payload")?,
        signature: b64(&env.signatures[0].sig, "dsseEnvelope.signatures[0].sig")?,
        payload_type: env.payload_type,
    })
}

/// Whether `bundle` is a v0.3 bundle whose DSSE signature verifies with one of `keys` over an
/// in-toto statement with a subject whose sha256 is `expected`.
pub fn verify_bundle(
    expected: &Digest,
    bundle: &[u8],
    keys: &[CosignKey],
    predicate: PredicateRule,
) -> Result<KeyVerified, BundleProblem> {
    let p = parse(bundle, &[BUNDLE_MEDIA_TYPE])?;
    if let Some(found) = p.certificate {
        return Err(BundleProblem::NotKeyed { found });
    }
    let signed = pae(&p.payload_type, &p.payload);
    let key = keys
        .iter()
        .find(|k| k.key().verify(&signed, &p.signature))
        .ok_or(BundleProblem::NoKeyVerifies { hint: p.hint })?;
    // Only now, over signed bytes: what the statement says.
    check_statement(expected, &p.payload, predicate)?;
    Ok(KeyVerified::new(
        *expected,
        key,
        SignatureFormat::SigstoreBundle,
    ))
}

/// The in-toto rules over a *verified* payload: a known Statement type, cosign's predicate
/// type (under [`PredicateRule::CosignSign`]), and a subject naming `expected`.
pub(super) fn check_statement(
    expected: &Digest,
    payload: &[u8],
    predicate: PredicateRule,
) -> Result<(), BundleProblem> {
    let st: Statement =
        serde_json::from_slice(payload).map_err(|e| BundleProblem::StatementNotJson {
            reason: e.to_string(),
        })?;
    if !STATEMENT_TYPES.contains(&st.kind.as_str()) {
        return Err(BundleProblem::WrongStatementType { found: st.kind });
    }
    if predicate == PredicateRule::CosignSign && st.predicate_type != COSIGN_SIGN_PREDICATE {
        return Err(BundleProblem::WrongPredicateType {
            found: st.predicate_type,
        });
    }
    // Digests are canonical lowercase hex: another spelling is another subject.
    let want = expected.to_string();
    let want_hex = want.strip_prefix("sha256:").unwrap_or(&want);
    if !st
        .subject
        .iter()
        .any(|s| s.digest.get("sha256").map(String::as_str) == Some(want_hex))
    {
        return Err(BundleProblem::OtherSubject {
            found: subjects(&st),
        });
    }
    Ok(())
}

/// What a statement's subjects name, for refusals (`[]` when it does not parse).
pub(super) fn statement_subjects(payload: &[u8]) -> Vec<String> {
    serde_json::from_slice::<Statement>(payload)
        .map(|st| subjects(&st))
        .unwrap_or_default()
}

fn subjects(st: &Statement) -> Vec<String> {
    st.subject
        .iter()
        .map(|s| match s.digest.get("sha256") {
            Some(h) => format!("sha256:{h}"),
            None => "a subject without a sha256 digest".to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::pae;

    /// DSSE protocol.md's own test vector.
    #[test]
    fn pae_matches_the_dsse_spec_example() {
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
    }
}
