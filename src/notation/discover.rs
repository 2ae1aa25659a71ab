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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn target() -> TargetDescriptor {
        TargetDescriptor {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            digest: format!("sha256:{}", "ab".repeat(32)),
            size: 1234,
        }
    }

    fn sig_manifest(subject: &TargetDescriptor, legacy: bool) -> Vec<u8> {
        let mut m = json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_IMAGE_MANIFEST,
            "artifactType": ARTIFACT_TYPE_SIGNATURE,
            "config": {"mediaType": MEDIA_TYPE_EMPTY, "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", "size": 2},
            "layers": [{"mediaType": MEDIA_TYPE_JWS, "digest": format!("sha256:{}", "11".repeat(32)), "size": 2000}],
            "subject": {"mediaType": subject.media_type, "digest": subject.digest, "size": subject.size},
            "annotations": {ANNOTATION_THUMBPRINTS: "[\"aa\"]"}
        });
        if legacy {
            m.as_object_mut().unwrap().remove("artifactType");
            m["config"]["mediaType"] = ARTIFACT_TYPE_SIGNATURE.into();
        }
        serde_json::to_vec(&m).unwrap()
    }

    #[test]
    fn fallback_tag_is_the_tag_schema() {
        let d = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(
            fallback_tag(&d).unwrap(),
            format!("sha256-{}", "ab".repeat(32))
        );
        assert!(fallback_tag("sha256:AB").is_err());
        assert!(fallback_tag("md5:00").is_err());
    }

    #[test]
    fn candidates_keep_notation_signatures_a_trust_store_can_match() {
        let desc = |digest: &str, at: &str, prints: Option<&str>| {
            let mut d = json!({"mediaType": MEDIA_TYPE_IMAGE_MANIFEST, "digest": digest, "size": 700, "artifactType": at});
            if let Some(p) = prints {
                d["annotations"] = json!({ANNOTATION_THUMBPRINTS: p});
            }
            d
        };
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                desc("sha256:01", ARTIFACT_TYPE_SIGNATURE, Some("[\"AA\",\"bb\"]")),
                desc("sha256:02", ARTIFACT_TYPE_SIGNATURE, Some("[\"cc\"]")),
                desc("sha256:03", "application/vnd.dev.cosign.artifact.sig.v1+json", None),
                desc("sha256:04", ARTIFACT_TYPE_SIGNATURE, None),
            ]
        }))
        .unwrap();
        let got: Vec<String> = candidates(&index, &["aa".into()])
            .unwrap()
            .into_iter()
            .map(|c| c.digest)
            .collect();
        assert_eq!(got, ["sha256:01", "sha256:04"]);
        let bad = serde_json::to_vec(
            &json!({"manifests": [desc("sha256:05", ARTIFACT_TYPE_SIGNATURE, Some("aa"))]}),
        )
        .unwrap();
        assert!(candidates(&bad, &[])
            .unwrap_err()
            .contains("not a JSON array"));
        assert!(candidates(&vec![b' '; MAX_MANIFEST_BYTES + 1], &[])
            .unwrap_err()
            .contains("more than"));
        let huge = serde_json::to_vec(&json!({"manifests": [{"mediaType": MEDIA_TYPE_IMAGE_MANIFEST, "digest": "sha256:06", "size": 1u64 << 40, "artifactType": ARTIFACT_TYPE_SIGNATURE}]})).unwrap();
        assert!(candidates(&huge, &[]).unwrap_err().contains("claims"));
    }

    #[test]
    fn signature_manifest_must_be_about_the_signed_manifest() {
        let t = target();
        for legacy in [false, true] {
            let m = sig_manifest(&t, legacy);
            let layer = signature_layer(&m, &sha256_digest(&m), &t).unwrap();
            assert_eq!(layer.media_type, MEDIA_TYPE_JWS);
        }
        // A signature manifest whose subject is another image.
        let mut other = t.clone();
        other.digest = format!("sha256:{}", "cd".repeat(32));
        let m = sig_manifest(&other, false);
        let e = signature_layer(&m, &sha256_digest(&m), &t).unwrap_err();
        assert!(e.contains("is about sha256:cdcd"), "{e}");
        // Bytes that do not hash to the digest they were fetched by.
        let m = sig_manifest(&t, false);
        let e = signature_layer(&m, &format!("sha256:{}", "00".repeat(32)), &t).unwrap_err();
        assert!(e.contains("hashes to"), "{e}");
        // Two layers, a foreign layer type, an oversized envelope, a cosign artifact.
        let mut v: serde_json::Value = serde_json::from_slice(&m).unwrap();
        let layer0 = v["layers"][0].clone();
        for (edit, needle) in [
            (json!([layer0.clone(), layer0.clone()]), "has 2 layers"),
            (
                json!([{"mediaType": "application/octet-stream", "digest": "sha256:11", "size": 5}]),
                "neither",
            ),
            (
                json!([{"mediaType": MEDIA_TYPE_COSE, "digest": "sha256:11", "size": MAX_ENVELOPE_BYTES + 1}]),
                "more than",
            ),
        ] {
            v["layers"] = edit;
            let b = serde_json::to_vec(&v).unwrap();
            let e = signature_layer(&b, &sha256_digest(&b), &t).unwrap_err();
            assert!(e.contains(needle), "{needle}: {e}");
        }
        let mut v: serde_json::Value = serde_json::from_slice(&m).unwrap();
        v["artifactType"] = "application/vnd.dev.cosign.artifact.sig.v1+json".into();
        let b = serde_json::to_vec(&v).unwrap();
        assert!(signature_layer(&b, &sha256_digest(&b), &t)
            .unwrap_err()
            .contains("not a Notation signature"));
    }

    #[test]
    fn envelope_blob_must_match_its_descriptor() {
        let blob = b"{\"payload\":\"\"}".to_vec();
        let layer = EnvelopeLayer {
            media_type: MEDIA_TYPE_JWS.into(),
            digest: sha256_digest(&blob),
            size: blob.len() as u64,
        };
        check_envelope_blob(&layer, &blob).unwrap();
        let mut other = blob.clone();
        other[0] = b'[';
        assert!(check_envelope_blob(&layer, &other)
            .unwrap_err()
            .contains("hashes to"));
        assert!(check_envelope_blob(&layer, &blob[1..])
            .unwrap_err()
            .contains("bytes"));
    }
}
