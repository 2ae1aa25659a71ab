//! Notation signatures stored as `notation sign` stores them in a registry without the
//! referrers API: a signature manifest pushed by digest, listed in the `sha256-<hex>` index.

use trustgate::notation::discover::{
    ANNOTATION_THUMBPRINTS, ARTIFACT_TYPE_SIGNATURE, MEDIA_TYPE_EMPTY,
};
use trustgate::notation::TargetDescriptor;

use super::registry::{Blob, Pusher, OCI_MANIFEST};

/// Pushes a signature manifest (empty config, one envelope layer, `subject`) by digest;
/// returns its index descriptor, as the referrers API would list it.
pub async fn push_signature(
    pusher: &Pusher,
    repo: &str,
    subject: &TargetDescriptor,
    envelope: Vec<u8>,
    media_type: &'static str,
    thumbprint: &str,
) -> serde_json::Value {
    let empty = Blob::new(b"{}".to_vec(), MEDIA_TYPE_EMPTY);
    let env = Blob::new(envelope, media_type);
    pusher.blob(repo, &empty).await;
    pusher.blob(repo, &env).await;
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
    pusher
        .manifest(repo, &digest, OCI_MANIFEST, &manifest)
        .await;
    serde_json::json!({
        "mediaType": OCI_MANIFEST, "digest": digest, "size": manifest.len(),
        "artifactType": ARTIFACT_TYPE_SIGNATURE, "annotations": annotations,
    })
}
