//! The pure half of cosign keyed verification: a `.sig` manifest, its payload blobs and the
//! policy's keys in; a [`KeyVerified`] proof or a [`CosignRefusal`] that says what was
//! expected and what was found, out.

use std::fmt;

use base64::Engine as _;
use serde::Deserialize;

use super::CosignLimits;
use crate::policy::CosignKey;
use crate::registry::Digest;

/// SIGNATURE_SPEC.md "Payload": the layer media type of a simple-signing signature.
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// SIGNATURE_SPEC.md "Signature": the base64 signature over the payload blob.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// SIGNATURE_SPEC.md "Payload": the value of `critical.type`.
pub const SIMPLE_SIGNING_TYPE: &str = "cosign container image signature";

/// One simple-signing layer of a `.sig` manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureLayer {
    pub index: usize,
    pub digest: Digest,
    pub size: u64,
    /// The annotation's value; `None` when the layer has none (refused when verified).
    pub signature: Option<String>,
    /// Every annotation of the layer's descriptor: a keyless signature keeps its certificate
    /// and Rekor bundle there (`keyless::simple`).
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// Which cosign signature format vouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureFormat {
    /// cosign ≤ 2: a simple-signing layer of the `sha256-<hex>.sig` tag.
    SimpleSigning,
    /// cosign 3's default: a Sigstore bundle v0.3 referrer (DSSE over an in-toto statement).
    SigstoreBundle,
}

impl fmt::Display for SignatureFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SignatureFormat::SimpleSigning => "simple-signing",
            SignatureFormat::SigstoreBundle => "sigstore-bundle-v0.3",
        })
    }
}

/// Proof that one configured key signed a payload naming `digest`. Only [`verify`] and
/// [`super::bundle::verify_bundle`] build one.
#[derive(Debug, Clone)]
pub struct KeyVerified {
    digest: Digest,
    key_fingerprint: String,
    key_path: String,
    format: SignatureFormat,
}

impl KeyVerified {
    pub(super) fn new(digest: Digest, key: &CosignKey, format: SignatureFormat) -> KeyVerified {
        KeyVerified {
            digest,
            key_fingerprint: key.key().fingerprint().to_string(),
            key_path: key.path().display().to_string(),
            format,
        }
    }
    pub fn format(&self) -> SignatureFormat {
        self.format
    }
    pub fn digest(&self) -> &Digest {
        &self.digest
    }
    /// `SHA256:<hex>` of the key's SubjectPublicKeyInfo.
    pub fn key_fingerprint(&self) -> &str {
        &self.key_fingerprint
    }
    pub fn key_path(&self) -> &str {
        &self.key_path
    }
}

/// Why one layer did not vouch for the digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerProblem {
    NoSignatureAnnotation,
    SignatureNotBase64,
    PayloadDigestMismatch {
        expected: Digest,
        actual: Digest,
    },
    /// Verifies with none of the configured keys.
    NoKeyVerifies,
    PayloadNotJson {
        reason: String,
    },
    WrongType {
        found: String,
    },
    OtherDigest {
        found: String,
    },
    /// A keyless annotation (certificate, Rekor bundle, timestamp) that does not parse.
    BadAnnotation {
        name: &'static str,
        reason: String,
    },
    /// The keyless verifier's refusal.
    Keyless(super::keyless::KeylessProblem),
}

impl fmt::Display for LayerProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayerProblem::NoSignatureAnnotation => {
                write!(f, "no {SIGNATURE_ANNOTATION} annotation")
            }
            LayerProblem::SignatureNotBase64 => write!(f, "the signature is not base64"),
            LayerProblem::PayloadDigestMismatch { expected, actual } => {
                write!(
                    f,
                    "payload blob hashes to {actual}, its descriptor says {expected}"
                )
            }
            LayerProblem::NoKeyVerifies => {
                write!(f, "the signature verifies with none of the configured keys")
            }
            LayerProblem::PayloadNotJson { reason } => {
                write!(
                    f,
                    "signed payload is not a SimpleSigning document: {reason}"
                )
            }
            LayerProblem::WrongType { found } => write!(
                f,
                "signed payload has critical.type {found:?}, expected {SIMPLE_SIGNING_TYPE:?}"
            ),
            LayerProblem::OtherDigest { found } => {
                write!(f, "signed payload is for {found}")
            }
            LayerProblem::BadAnnotation { name, reason } => {
                write!(f, "annotation {name}: {reason}")
            }
            LayerProblem::Keyless(p) => write!(f, "{p}"),
        }
    }
}

/// Why cosign does not vouch for a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CosignRefusal {
    #[error("no cosign signature for {digest}: no Sigstore bundle among its referrers, and the tag {tag} does not exist")]
    NotSigned { digest: Digest, tag: String },
    #[error("the cosign signature artifact {tag} is unusable: {reason}")]
    BadArtifact { tag: String, reason: String },
    #[error("no cosign signature for {digest} verifies with the configured keys [{keys}]: {}", found.join("; "))]
    NoValidSignature {
        digest: Digest,
        /// `SHA256:<hex> (path)` of each configured key.
        keys: String,
        /// One line per examined layer: what it held instead.
        found: Vec<String>,
    },
    #[error("no cosign signature for {digest} is {expected}: {}", found.join("; "))]
    NoValidKeyless {
        digest: Digest,
        /// [`super::keyless::KeylessPolicy::describe`].
        expected: String,
        /// One line per examined signature: what it held instead.
        found: Vec<String>,
    },
    /// The registry could not be asked (transient; fail closed with 503).
    #[error("the signatures of {digest} could not be fetched: {reason}")]
    Unavailable { digest: Digest, reason: String },
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType")]
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
}

/// SimpleSigning payload (SIGNATURE_SPEC.md "Payload"; containers-signature(5): unknown
/// fields in `critical` must be rejected, so they are).
#[derive(Deserialize)]
struct Payload {
    critical: Critical,
    #[serde(default)]
    #[allow(dead_code)]
    optional: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Critical {
    #[serde(rename = "type")]
    kind: String,
    image: Image,
    /// Ignored by cosign (`docker-reference`); trustgate binds the signature to the digest
    /// the tag resolved to, which is what the payload's digest must equal.
    #[allow(dead_code)]
    identity: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Image {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

/// The simple-signing layers of a `.sig` manifest. Other layers are skipped (cosign ignores
/// them too); more than `limits.max_signatures` signature layers is refused as hostile.
pub fn parse_signature_manifest(
    tag: &str,
    bytes: &[u8],
    limits: &CosignLimits,
) -> Result<Vec<SignatureLayer>, CosignRefusal> {
    let bad = |reason: String| CosignRefusal::BadArtifact {
        tag: tag.to_string(),
        reason,
    };
    let m: Manifest =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("not an image manifest: {e}")))?;
    let mut out = Vec::new();
    for (index, l) in m.layers.into_iter().enumerate() {
        if l.media_type != SIMPLE_SIGNING_MEDIA_TYPE {
            continue;
        }
        if out.len() == limits.max_signatures {
            return Err(bad(format!(
                "more than {} signature layers",
                limits.max_signatures
            )));
        }
        let digest = Digest::parse(&l.digest).map_err(|_| {
            bad(format!(
                "layer {index} has a non-canonical digest {:?}",
                l.digest
            ))
        })?;
        if l.size > limits.payload_max_bytes {
            return Err(bad(format!(
                "layer {index} payload is {} bytes, over the {}-byte limit",
                l.size, limits.payload_max_bytes
            )));
        }
        out.push(SignatureLayer {
            index,
            digest,
            size: l.size,
            signature: l.annotations.get(SIGNATURE_ANNOTATION).cloned(),
            annotations: l.annotations,
        });
    }
    if out.is_empty() {
        return Err(bad(format!("no {SIMPLE_SIGNING_MEDIA_TYPE} layers")));
    }
    Ok(out)
}

/// Whether one of `layers` (with its payload bytes) is a signature by one of `keys` over a
/// payload naming `expected`.
///
/// SIGNATURE_SPEC.md: the signature is checked over the exact payload bytes *before* the
/// payload is parsed, then `critical.type` and `critical.image.docker-manifest-digest` are
/// checked; the digest must equal the digest the tag resolved to, which is what is served.
pub fn verify(
    expected: &Digest,
    layers: &[(SignatureLayer, bytes::Bytes)],
    keys: &[CosignKey],
) -> Result<KeyVerified, CosignRefusal> {
    let mut found = Vec::new();
    for (layer, payload) in layers {
        match verify_layer(expected, layer, payload, keys) {
            Ok(k) => return Ok(k),
            Err(p) => found.push(format!("signature layer {}: {p}", layer.index)),
        }
    }
    Err(CosignRefusal::NoValidSignature {
        digest: *expected,
        keys: describe_keys(keys),
        found,
    })
}

fn verify_layer(
    expected: &Digest,
    layer: &SignatureLayer,
    payload: &[u8],
    keys: &[CosignKey],
) -> Result<KeyVerified, LayerProblem> {
    check_blob(layer, payload)?;
    let b64 = layer
        .signature
        .as_deref()
        .ok_or(LayerProblem::NoSignatureAnnotation)?;
    let signature = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| LayerProblem::SignatureNotBase64)?;
    let key = keys
        .iter()
        .find(|k| k.key().verify(payload, &signature))
        .ok_or(LayerProblem::NoKeyVerifies)?;
    // Only now, over signed bytes: what the signature says.
    check_payload(expected, payload)?;
    Ok(KeyVerified::new(
        *expected,
        key,
        SignatureFormat::SimpleSigning,
    ))
}

/// The payload blob is the one the descriptor names (whatever the fetcher did).
pub(super) fn check_blob(layer: &SignatureLayer, payload: &[u8]) -> Result<(), LayerProblem> {
    let actual = Digest::sha256_of(payload);
    if actual != layer.digest {
        return Err(LayerProblem::PayloadDigestMismatch {
            expected: layer.digest,
            actual,
        });
    }
    Ok(())
}

/// SIGNATURE_SPEC.md over a *verified* payload: `critical.type`, and
/// `critical.image.docker-manifest-digest` equal to the digest served.
pub(super) fn check_payload(expected: &Digest, payload: &[u8]) -> Result<(), LayerProblem> {
    let p: Payload = serde_json::from_slice(payload).map_err(|e| LayerProblem::PayloadNotJson {
        reason: e.to_string(),
    })?;
    if p.critical.kind != SIMPLE_SIGNING_TYPE {
        return Err(LayerProblem::WrongType {
            found: p.critical.kind,
        });
    }
    // Digests are canonical: a payload naming the digest in another spelling is refused.
    let named = p.critical.image.docker_manifest_digest;
    if named != expected.to_string() {
        return Err(LayerProblem::OtherDigest { found: named });
    }
    Ok(())
}

/// The keys as refusals name them: algorithm, fingerprint and the file they came from.
pub fn describe_keys(keys: &[CosignKey]) -> String {
    keys.iter()
        .map(|k| {
            format!(
                "{} {} ({})",
                k.key().algorithm(),
                k.key().fingerprint(),
                k.path().display()
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}
