//! Verified tag results are reused only by the trust client that verified them: a rule that
//! pins its roots must not be served what a trust-on-first-use rule verified for the same GUN
//! (here: one rule tightened by a reload; two rules sharing a GUN hit the same key).
//! End to end: real docker-registry, real notary-server, trust data from the real notary CLI.
mod support;

use support::notary::Flavour;
use support::stack::Stack;
use tokio::task::block_in_place;

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

const TOFU: &str = r#"
[default]
require = "signed"
trust_server = "test"
"#;

/// The same rule, tightened: roots must now chain to a CA that did not issue this
/// repository's root, so the root trusted on first use no longer passes (a changed pin is
/// checked against the stored root, as a first contact would be).
fn strict(ca_file: &std::path::Path) -> String {
    format!(
        "[default]\nrequire = \"signed\"\ntrust_server = \"test\"\n[default.pinning]\ntofu = false\nca = {:?}\n",
        ca_file.display().to_string()
    )
}

async fn get(stack: &Stack, path: &str) -> (u16, String) {
    let r = stack
        .http()
        .get(stack.url(path))
        .header("accept", DOCKER_MANIFEST)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tightened_pinning_applies_at_once_not_when_cached_results_expire() {
    let stack = Stack::start(Flavour::Local, TOFU).await;
    let img = stack.push("e2e/pin", "1.0", 100).await;
    block_in_place(|| stack.sign("e2e/pin", "1.0", &img.manifest, &[]));

    // Trust on first use verifies the tag (and caches the result for minutes).
    let (status, body) = get(&stack, "/v2/e2e/pin/manifests/1.0").await;
    assert_eq!(status, 200, "{body}");

    // Same server, GUN, tag and roles; only the pinning is stricter.
    let ca_file = stack.dir.path().join("unrelated-ca.pem");
    std::fs::write(&ca_file, support::pki::TestCa::new("Unrelated CA").ca_pem).unwrap();
    stack.write_policy(&strict(&ca_file));
    assert!(matches!(
        stack.policy.reload(),
        trustgate::policy::ReloadOutcome::Replaced { .. }
    ));
    let (status, body) = get(&stack, "/v2/e2e/pin/manifests/1.0").await;
    assert_eq!(
        status, 403,
        "a result verified under trust on first use answered a rule that forbids it: {body}"
    );
    assert!(body.contains("DENIED"), "{body}");

    // Back to the first pinning: its own result (and state) answers again.
    stack.write_policy(TOFU);
    assert!(matches!(
        stack.policy.reload(),
        trustgate::policy::ReloadOutcome::Replaced { .. }
    ));
    let (status, body) = get(&stack, "/v2/e2e/pin/manifests/1.0").await;
    assert_eq!(status, 200, "{body}");
}
