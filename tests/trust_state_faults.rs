//! A fault in trustgate's own trust state (a full disk, a damaged or unreadable state
//! directory) is a 503 with a generic message, never a 403 that tells the person pulling
//! their image is unsigned, and never a message carrying a local path or errno. End to end:
//! real docker-registry, real notary-server, trust data from the real notary CLI. Tests run as
//! root, so the state is made unusable with a file where a directory belongs (and the
//! reverse), not with permissions.
mod support;

use sha2::{Digest as _, Sha256};
use support::notary::Flavour;
use support::stack::{Stack, SIGNED_DEFAULT};
use tokio::task::block_in_place;
use trustgate::metrics::{DecisionReason, Outcome};

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

async fn get_tag(stack: &Stack, repo: &str, tag: &str) -> (u16, String, String) {
    let r = stack
        .http()
        .get(stack.url(&format!("/v2/{repo}/manifests/{tag}")))
        .header("accept", DOCKER_MANIFEST)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body = r.text().await.unwrap();
    let code = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["errors"][0]["code"].as_str().map(str::to_string))
        .unwrap_or_default();
    (status, code, body)
}

fn assert_local_fault(stack: &Stack, what: &str, (status, code, body): (u16, String, String)) {
    assert_eq!(
        (status, code.as_str()),
        (503, "UNAVAILABLE"),
        "{what}: {body}"
    );
    assert!(body.contains("stored trust data"), "{what}: {body}");
    let state = stack.dir.path().display().to_string();
    for leak in [state.as_str(), "/trust/", "os error", "directory", ".json"] {
        assert!(!body.contains(leak), "{what}: body leaks {leak:?}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_trust_state_is_a_503_without_local_detail() {
    let stack = Stack::start(Flavour::Local, SIGNED_DEFAULT).await;
    let a = stack.push("e2e/state-a", "1.0", 90).await;
    let b = stack.push("e2e/state-b", "1.0", 91).await;
    block_in_place(|| {
        stack.sign("e2e/state-a", "1.0", &a.manifest, &[]);
        stack.sign("e2e/state-b", "1.0", &b.manifest, &[]);
    });
    let state = stack.dir.path().join("state");

    // The trust state directory cannot be created: a file stands where it belongs.
    let trust_dir = state.join("trust");
    std::fs::write(&trust_dir, b"not a directory").unwrap();
    assert_local_fault(
        &stack,
        "state dir is a file",
        get_tag(&stack, "e2e/state-a", "1.0").await,
    );
    // Counted as what it is (the label, so this test also builds against older code).
    let metrics = &stack.proxy.state.metrics;
    let m = metrics.render();
    assert!(
        m.contains("outcome=\"deny\",reason=\"trust_state_error\"} 1"),
        "{m}"
    );
    assert_eq!(
        metrics.decision_count(Outcome::Deny, DecisionReason::Other),
        0
    );

    // Repaired, the same pull is served (the fault was not remembered as a verdict).
    std::fs::remove_file(&trust_dir).unwrap();
    let (status, _, body) = get_tag(&stack, "e2e/state-a", "1.0").await;
    assert_eq!(status, 200, "{body}");

    // One GUN's state file cannot be read: a directory stands where it belongs.
    let client_dir = std::fs::read_dir(&trust_dir)
        .unwrap()
        .next()
        .expect("the trust client's state directory")
        .unwrap()
        .path();
    let gun = stack.gun("e2e/state-b");
    let state_file = client_dir.join(format!(
        "{}.json",
        hex::encode(Sha256::digest(gun.as_bytes()))
    ));
    std::fs::create_dir(&state_file).unwrap();
    assert_local_fault(
        &stack,
        "state file unreadable",
        get_tag(&stack, "e2e/state-b", "1.0").await,
    );
    std::fs::remove_dir(&state_file).unwrap();
    let (status, _, body) = get_tag(&stack, "e2e/state-b", "1.0").await;
    assert_eq!(status, 200, "{body}");
}
