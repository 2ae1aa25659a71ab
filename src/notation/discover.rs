//! Finding Notation signatures for a manifest, as pure functions over what the enforce layer
//! fetched (signature-specification.md "OCI Signatures", "OCI Signature Discovery", "OCI
//! Signature Filtering"): the referrers index (`GET /v2/<repo>/referrers/<digest>`) or, where
//! a registry has no referrers API, the image index tagged `sha256-<hex>` (distribution-spec
//! "Referrers Tag Schema"); then each signature manifest and its one envelope layer, each
//! checked against the digest it was fetched by.

use std::collections::BTreeMap;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::envelope::{MEDIA_TYPE_COSE, MEDIA_TYPE_JWS};
use super::{TargetDescriptor, MAX_ENVELOPE_BYTES, MAX_MANIFEST_BYTES};

pub const ARTIFACT_TYPE_SIGNATURE: &str = "application/vnd.cncf.notary.signature";
pub const MEDIA_TYPE_EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub const MEDIA_TYPE_IMAGE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const ANNOTATION_THUMBPRINTS: &str = "io.cncf.notary.x509chain.thumbprint#S256";
/// Most signature manifests considered for one image (the Notation CLI's `--max-signatures`
/// default is 100).
pub const MAX_SIGNATURES: usize = 100;

#[derive(Deserialize)]
struct RawDescriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    size: u64,
    #[serde(rename = "artifactType")]
    artifact_type: Option<String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct RawIndex {
    #[serde(default)]
    manifests: Vec<RawDescriptor>,
}

#[derive(Deserialize)]
struct RawManifest {
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    #[serde(rename = "artifactType")]
    artifact_type: Option<String>,
    config: RawDescriptor,
    #[serde(default)]
    layers: Vec<RawDescriptor>,
    subject: Option<RawDescriptor>,
}

/// A signature manifest worth fetching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
}

/// The envelope blob a signature manifest points to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeLayer {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

/// The tag-schema fallback tag for `sha256:<hex>`: `sha256-<hex>`.
pub fn fallback_tag(digest: &str) -> Result<String, String> {
    let (alg, hex) = digest
        .split_once(':')
        .ok_or_else(|| format!("{digest:?} is not a digest"))?;
    let ok = match alg {
        "sha256" => hex.len() == 64,
        "sha512" => hex.len() == 128,
        _ => false,
    } && hex
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !ok {
        return Err(format!("{digest:?} is not a sha256/sha512 digest"));
    }
    Ok(format!("{alg}-{hex}"))
}

fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The Notation signature manifests in a referrers (or tag-schema) index, skipping those whose
/// `io.cncf.notary.x509chain.thumbprint#S256` annotation names no certificate in `trusted`
/// (lowercase hex SHA-256 of the applicable trust stores' certificates). A signature without
/// the annotation is kept: verification, not the filter, decides about it.
pub fn candidates(index: &[u8], trusted: &[String]) -> Result<Vec<Candidate>, String> {
    if index.len() > MAX_MANIFEST_BYTES {
        return Err(format!(
            "the referrers index is {} bytes, more than the {MAX_MANIFEST_BYTES} accepted",
            index.len()
        ));
    }
    let idx: RawIndex = serde_json::from_slice(index)
        .map_err(|e| format!("the referrers index is not an OCI image index: {e}"))?;
    let mut out = Vec::new();
    for d in idx.manifests {
        if d.artifact_type.as_deref() != Some(ARTIFACT_TYPE_SIGNATURE) {
            continue;
        }
        if let Some(raw) = d.annotations.get(ANNOTATION_THUMBPRINTS) {
            let prints: Vec<String> = serde_json::from_str(raw).map_err(|e| {
                format!("signature {}: annotation {ANNOTATION_THUMBPRINTS} is not a JSON array of strings: {e}", d.digest)
            })?;
            if !prints
                .iter()
                .any(|p| trusted.iter().any(|t| t.eq_ignore_ascii_case(p)))
            {
                continue;
            }
        }
        if d.size > MAX_MANIFEST_BYTES as u64 {
            return Err(format!(
                "signature manifest {} claims {} bytes, more than the {MAX_MANIFEST_BYTES} accepted",
                d.digest, d.size
            ));
        }
        out.push(Candidate {
            digest: d.digest,
            media_type: d.media_type,
            size: d.size,
        });
        if out.len() > MAX_SIGNATURES {
            return Err(format!(
                "more than {MAX_SIGNATURES} Notation signatures could match; refusing to try them all"
            ));
        }
    }
    Ok(out)
}

/// Checks a fetched signature manifest (it hashes to the digest it was fetched by; it is an
/// OCI image manifest with `artifactType` `application/vnd.cncf.notary.signature` and the
/// empty config, or the legacy config media type; its `subject` is `target`; it has exactly
/// one envelope layer) and returns the envelope layer to fetch.
pub fn signature_layer(
    manifest: &[u8],
    fetched_by: &str,
    target: &TargetDescriptor,
) -> Result<EnvelopeLayer, String> {
    if manifest.len() > MAX_MANIFEST_BYTES {
        return Err(format!(
            "signature manifest {fetched_by} is {} bytes, more than the {MAX_MANIFEST_BYTES} accepted",
            manifest.len()
        ));
    }
    let got = sha256_digest(manifest);
    if got != fetched_by {
        return Err(format!(
            "signature manifest fetched as {fetched_by} hashes to {got}"
        ));
    }
    let m: RawManifest = serde_json::from_slice(manifest).map_err(|e| {
        format!("signature manifest {fetched_by} is not an OCI image manifest: {e}")
    })?;
    if m.media_type.as_deref() != Some(MEDIA_TYPE_IMAGE_MANIFEST) {
        return Err(format!(
            "signature manifest {fetched_by} has mediaType {:?}, not {MEDIA_TYPE_IMAGE_MANIFEST:?}",
            m.media_type
        ));
    }
    let current = m.artifact_type.as_deref() == Some(ARTIFACT_TYPE_SIGNATURE)
        && m.config.media_type == MEDIA_TYPE_EMPTY;
    let legacy = m.artifact_type.is_none() && m.config.media_type == ARTIFACT_TYPE_SIGNATURE;
    if !current && !legacy {
        return Err(format!(
            "signature manifest {fetched_by} is not a Notation signature (artifactType {:?}, config mediaType {:?})",
            m.artifact_type, m.config.media_type
        ));
    }
    let subject = m
        .subject
        .ok_or_else(|| format!("signature manifest {fetched_by} has no subject"))?;
    if subject.digest != target.digest
        || subject.media_type != target.media_type
        || subject.size != target.size
    {
        return Err(format!(
            "signature manifest {fetched_by} is about {} ({:?}, {} bytes), not {} ({:?}, {} bytes)",
            subject.digest,
            subject.media_type,
            subject.size,
            target.digest,
            target.media_type,
            target.size
        ));
    }
    let [layer] = m.layers.as_slice() else {
        return Err(format!(
            "signature manifest {fetched_by} has {} layers; a Notation signature has exactly one",
            m.layers.len()
        ));
    };
    if layer.media_type != MEDIA_TYPE_JWS && layer.media_type != MEDIA_TYPE_COSE {
        return Err(format!(
            "signature manifest {fetched_by}: layer media type {:?} is neither {MEDIA_TYPE_JWS:?} nor {MEDIA_TYPE_COSE:?}",
            layer.media_type
        ));
    }
    if layer.size > MAX_ENVELOPE_BYTES as u64 {
        return Err(format!(
            "signature manifest {fetched_by}: the envelope is {} bytes, more than the {MAX_ENVELOPE_BYTES} accepted",
            layer.size
        ));
    }
    Ok(EnvelopeLayer {
        media_type: layer.media_type.clone(),
        digest: layer.digest.clone(),
        size: layer.size,
    })
}

/// Checks a fetched envelope blob against its layer descriptor (digest and size).
pub fn check_envelope_blob(layer: &EnvelopeLayer, blob: &[u8]) -> Result<(), String> {
    if blob.len() as u64 != layer.size {
        return Err(format!(
            "envelope {} is {} bytes, the manifest says {}",
            layer.digest,
            blob.len(),
            layer.size
        ));
    }
    let got = sha256_digest(blob);
    if got != layer.digest {
        return Err(format!(
            "envelope fetched as {} hashes to {got}",
            layer.digest
        ));
    }
    Ok(())
}
