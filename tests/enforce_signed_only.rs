//! `digest_pulls = "signed-only"` end to end (real docker-registry, real notary-server, trust
//! data from the real notary CLI): what a signed manifest *describes* is not vouched for.
mod support;

use support::notary::Flavour;
use support::registry::{det_bytes, Blob, OCI_MANIFEST};
use support::stack::Stack;
use tokio::task::block_in_place;

const SIGNED_ONLY: &str = r#"
[default]
require = "signed"
trust_server = "test"
digest_pulls = "signed-only"
"#;

const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";
const REPORT: &str = "application/vnd.example.scan-report+json";

async fn get(stack: &Stack, path: &str, accept: &str) -> reqwest::Response {
    stack
        .http()
        .get(stack.url(path))
        .header("accept", accept)
        .send()
        .await
        .unwrap()
}

/// The attack: anyone may publish an artifact (a scan report, an SBOM) whose `subject` is an
/// image they did not sign, and sign a tag for *that artifact*. Pulling the signed tag must
/// not make the described image (or its layers) pullable by digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_artifact_does_not_vouch_for_its_subject() {
    let stack = Stack::start(Flavour::Local, SIGNED_ONLY).await;
    let repo = "e2e/subject";
    let unsigned = stack.push(repo, "dev", 80).await;

    // An OCI artifact manifest describing the unsigned image.
    let config = Blob::new(b"{}".to_vec(), EMPTY_CONFIG);
    let report = Blob::new(det_bytes(81, 300), REPORT);
    stack.pusher.blob(repo, &config).await;
    stack.pusher.blob(repo, &report).await;
    let artifact = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": REPORT,
        "config": config.descriptor(),
        "layers": [report.descriptor()],
        "subject": {"mediaType": unsigned.media_type, "size": unsigned.manifest.len(), "digest": unsigned.digest},
    }))
    .unwrap();
    stack
        .pusher
        .manifest(repo, "report", OCI_MANIFEST, &artifact)
        .await;
    block_in_place(|| stack.sign(repo, "report", &artifact, &[]));

    // The signed artifact is served, and what it contains becomes pullable by digest.
    let r = get(
        &stack,
        &format!("/v2/{repo}/manifests/report"),
        OCI_MANIFEST,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), artifact.as_slice());
    let r = get(
        &stack,
        &format!("/v2/{repo}/blobs/{}", report.digest),
        "*/*",
    )
    .await;
    assert_eq!(r.status(), 200, "a layer of the signed artifact is reached");

    // What it describes is not: the unsigned image and its layers stay refused by digest.
    let r = get(
        &stack,
        &format!("/v2/{repo}/manifests/{}", unsigned.digest),
        unsigned.media_type,
    )
    .await;
    assert_eq!(
        r.status(),
        403,
        "the subject of a signed artifact was served"
    );
    let text = r.text().await.unwrap();
    assert!(text.contains("not reached through a signed tag"), "{text}");
    for b in &unsigned.blobs {
        let r = get(&stack, &format!("/v2/{repo}/blobs/{}", b.digest), "*/*").await;
        assert_eq!(r.status(), 403, "blob {} of the unsigned subject", b.digest);
    }
}
