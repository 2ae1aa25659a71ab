//! Notation signatures stored as `notation sign` stores them in a registry without the
//! referrers API: a signature manifest pushed by digest, listed in the `sha256-<hex>` index.

use trustgate::notation::discover::{
    ANNOTATION_THUMBPRINTS, ARTIFACT_TYPE_SIGNATURE, MEDIA_TYPE_EMPTY,
};
use trustgate::notation::TargetDescriptor;

use super::registry::{Blob, Pusher, OCI_MANIFEST};

/// A Notation signature artifact in memory: its manifest (empty config, one envelope layer,
/// `subject`), the blobs it names, and its entry as a referrers index lists it.
pub struct SignatureArtifact {
    pub manifest: Vec<u8>,
    pub digest: String,
    pub blobs: Vec<Blob>,
    pub entry: serde_json::Value,
}

pub fn signature_artifact(
    subject: &TargetDescriptor,
    envelope: Vec<u8>,
    media_type: &'static str,
    thumbprint: &str,
) -> SignatureArtifact {
    let empty = Blob::new(b"{}".to_vec(), MEDIA_TYPE_EMPTY);
    let env = Blob::new(envelope, media_type);
    let annotations = serde_json::json!({
        ANNOTATION_THUMBPRINTS: serde_json::to_string(&[thumbprint]).unwrap(),
    });
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE_SIGNATURE,
        "config": empty.descriptor(),
        "layers": [env.descriptor()],
        "subject": {"mediaType": subject.media_type, "digest": subject.digest, "size": subject.size},
        "annotations": annotations,
    }))
    .unwrap();
    let digest = super::registry::sha256(&manifest);
    let entry = serde_json::json!({
        "mediaType": OCI_MANIFEST, "digest": digest, "size": manifest.len(),
        "artifactType": ARTIFACT_TYPE_SIGNATURE, "annotations": annotations,
    });
    SignatureArtifact {
        manifest,
        digest,
        blobs: vec![empty, env],
        entry,
    }
}

/// Pushes a signature artifact by digest; returns its index descriptor, as the referrers API
/// would list it.
pub async fn push_signature(
    pusher: &Pusher,
    repo: &str,
    subject: &TargetDescriptor,
    envelope: Vec<u8>,
    media_type: &'static str,
    thumbprint: &str,
) -> serde_json::Value {
    let a = signature_artifact(subject, envelope, media_type, thumbprint);
    for b in &a.blobs {
        pusher.blob(repo, b).await;
    }
    pusher
        .manifest(repo, &a.digest, OCI_MANIFEST, &a.manifest)
        .await;
    a.entry
}
