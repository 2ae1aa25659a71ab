//! Keyless simple-signing signatures (cosign ≤ 2's `sha256-<hex>.sig` layers).
//!
//! sigstore/cosign `specs/SIGNATURE_SPEC.md`: a keyless layer carries, besides the signature,
//! the Fulcio certificate (`dev.sigstore.cosign/certificate`, PEM), its chain
//! (`dev.sigstore.cosign/chain`), the Rekor "bundle" (`dev.sigstore.cosign/bundle`:
//! `{SignedEntryTimestamp, Payload: {body, integratedTime, logIndex, logID}}`, the SET and the
//! entry it signs) and optionally an RFC 3161 timestamp (`dev.sigstore.cosign/rfc3161timestamp`).
//!
//! These are the same facts a Sigstore bundle v0.1 holds (a message signature, the
//! certificate, a log entry with its inclusion promise), so they are restated as one and
//! verified by sigstore-verify with the payload bytes as the artifact, exactly as a keyless
//! bundle is: sigstore-go and cosign (`pkg/cosign/bundle`) make the same translation. The SET
//! covers `{body, integratedTime, logIndex, logID}`, so no field restated here can be changed
//! without failing it; the log entry's body must also describe this signature, certificate and
//! payload hash (the CVE-2022-36056 consistency check).
//!
//! The chain annotation is not used: the intermediates and roots come only from the trusted
//! root (cosign `--trusted-root` does the same), so a chain in the artifact cannot add trust.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;

use super::{KeylessPolicy, KeylessProblem, KeylessVerified};
use crate::cosign::simple_signing::{check_blob, check_payload, LayerProblem};
use crate::cosign::{SignatureFormat, SignatureLayer};
use crate::registry::Digest;

/// SIGNATURE_SPEC.md: the signing certificate, PEM.
pub const CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
/// SIGNATURE_SPEC.md: the certificate's chain, PEM (not used; see the module docs).
pub const CHAIN_ANNOTATION: &str = "dev.sigstore.cosign/chain";
/// SIGNATURE_SPEC.md: the Rekor SET and the entry it signs.
pub const REKOR_BUNDLE_ANNOTATION: &str = "dev.sigstore.cosign/bundle";
/// cosign `--tsa-server-url`: `{"SignedRFC3161Timestamp": "<base64 DER>"}`.
pub const RFC3161_ANNOTATION: &str = "dev.sigstore.cosign/rfc3161timestamp";

/// cosign `pkg/cosign/bundle.RekorBundle`.
#[derive(Deserialize)]
struct RekorBundle {
    #[serde(rename = "SignedEntryTimestamp")]
    set: String,
    #[serde(rename = "Payload")]
    payload: RekorPayload,
}

#[derive(Deserialize)]
struct RekorPayload {
    body: String,
    #[serde(rename = "integratedTime")]
    integrated_time: i64,
    #[serde(rename = "logIndex")]
    log_index: i64,
    #[serde(rename = "logID")]
    log_id: String,
}

/// The body of a Rekor entry: only its kind and version are read here (sigstore-verify checks
/// the rest against the signature it describes).
#[derive(Deserialize)]
struct EntryBody {
    kind: String,
    #[serde(rename = "apiVersion")]
    api_version: String,
}

#[derive(Deserialize)]
struct Rfc3161 {
    #[serde(rename = "SignedRFC3161Timestamp")]
    signed: String,
}

/// Whether one of `layers` (with its payload) is a keyless signature satisfying `policy` over
/// a payload naming `expected`; each layer's annotations hold its keyless material. `Err`
/// lists each layer's problem.
pub fn verify_keyless_layers(
    expected: &Digest,
    layers: &[(SignatureLayer, bytes::Bytes)],
    policy: &KeylessPolicy,
) -> Result<KeylessVerified, Vec<String>> {
    let mut found = Vec::new();
    for (layer, payload) in layers {
        match verify_layer(expected, layer, payload, &layer.annotations, policy) {
            Ok(v) => return Ok(v),
            Err(p) => found.push(format!("signature layer {}: {p}", layer.index)),
        }
    }
    Err(found)
}

fn verify_layer(
    expected: &Digest,
    layer: &SignatureLayer,
    payload: &[u8],
    annotations: &BTreeMap<String, String>,
    policy: &KeylessPolicy,
) -> Result<KeylessVerified, LayerProblem> {
    check_blob(layer, payload)?;
    let signature = layer
        .signature
        .as_deref()
        .ok_or(LayerProblem::NoSignatureAnnotation)?;
    STANDARD
        .decode(signature.trim())
        .map_err(|_| LayerProblem::SignatureNotBase64)?;
    let pem = annotations
        .get(CERTIFICATE_ANNOTATION)
        .ok_or(LayerProblem::Keyless(KeylessProblem::NoCertificate))?;
    let bundle = restate(payload, signature.trim(), pem, annotations)?;
    let bundle = sigstore_types::Bundle::from_json(&bundle.to_string()).map_err(|e| {
        LayerProblem::Keyless(KeylessProblem::Sigstore {
            reason: format!("the layer's keyless material is not a valid bundle: {e}"),
        })
    })?;
    let signer = policy
        .verify(payload.into(), &bundle)
        .map_err(LayerProblem::Keyless)?;
    // Only now, over signed bytes: what the signature says.
    check_payload(expected, payload)?;
    Ok(KeylessVerified {
        digest: *expected,
        signer,
        format: SignatureFormat::SimpleSigning,
    })
}

/// The layer's material as a Sigstore bundle v0.1 (protobuf-specs `sigstore_bundle.proto`,
/// JSON mapping: int64 as strings, bytes as base64).
fn restate(
    payload: &[u8],
    signature: &str,
    pem: &str,
    annotations: &BTreeMap<String, String>,
) -> Result<serde_json::Value, LayerProblem> {
    let bad = |name, reason: String| LayerProblem::BadAnnotation { name, reason };
    let cert = x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
        .next()
        .ok_or_else(|| bad(CERTIFICATE_ANNOTATION, "holds no PEM block".into()))?
        .map_err(|e| bad(CERTIFICATE_ANNOTATION, e.to_string()))?;
    if cert.label != "CERTIFICATE" {
        return Err(bad(
            CERTIFICATE_ANNOTATION,
            format!("holds a {:?} block", cert.label),
        ));
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, payload);
    let mut material = json!({
        "x509CertificateChain": {"certificates": [{"rawBytes": STANDARD.encode(&cert.contents)}]},
        "tlogEntries": [],
    });
    if let Some(text) = annotations.get(REKOR_BUNDLE_ANNOTATION) {
        let rb: RekorBundle =
            serde_json::from_str(text).map_err(|e| bad(REKOR_BUNDLE_ANNOTATION, e.to_string()))?;
        let body = STANDARD
            .decode(rb.payload.body.trim())
            .map_err(|_| bad(REKOR_BUNDLE_ANNOTATION, "Payload.body is not base64".into()))?;
        let kind: EntryBody = serde_json::from_slice(&body)
            .map_err(|e| bad(REKOR_BUNDLE_ANNOTATION, format!("Payload.body: {e}")))?;
        let log_id = hex::decode(&rb.payload.log_id)
            .map_err(|_| bad(REKOR_BUNDLE_ANNOTATION, "Payload.logID is not hex".into()))?;
        material["tlogEntries"] = json!([{
            "logIndex": rb.payload.log_index.to_string(),
            "logId": {"keyId": STANDARD.encode(log_id)},
            "kindVersion": {"kind": kind.kind, "version": kind.api_version},
            "integratedTime": rb.payload.integrated_time.to_string(),
            "inclusionPromise": {"signedEntryTimestamp": rb.set},
            "canonicalizedBody": rb.payload.body.trim(),
        }]);
    }
    if let Some(text) = annotations.get(RFC3161_ANNOTATION) {
        let ts: Rfc3161 =
            serde_json::from_str(text).map_err(|e| bad(RFC3161_ANNOTATION, e.to_string()))?;
        material["timestampVerificationData"] =
            json!({"rfc3161Timestamps": [{"signedTimestamp": ts.signed}]});
    }
    // Without a log entry there is nothing for a v0.1 bundle's mandatory inclusion promise:
    // v0.3's single `certificate` carries the same facts, and sigstore-verify then refuses
    // for want of a verified signing time (unless an RFC 3161 timestamp gives one).
    let media_type = if material["tlogEntries"]
        .as_array()
        .is_some_and(|a| a.is_empty())
    {
        let cert = material["x509CertificateChain"]["certificates"][0].clone();
        material["certificate"] = cert;
        if let Some(m) = material.as_object_mut() {
            m.remove("x509CertificateChain");
        }
        "application/vnd.dev.sigstore.bundle.v0.3+json"
    } else {
        "application/vnd.dev.sigstore.bundle+json;version=0.1"
    };
    Ok(json!({
        "mediaType": media_type,
        "verificationMaterial": material,
        "messageSignature": {
            "messageDigest": {"algorithm": "SHA2_256", "digest": STANDARD.encode(digest.as_ref())},
            "signature": signature,
        },
    }))
}
