//! End to end: real docker-registry, real notary-server (+ notary-signer), trust data from the
//! real notary CLI, trustgate in between, and skopeo pulling through it.
mod support;

use support::clients::{skopeo_copy, skopeo_list_tags, Transport};
use support::notary::{DelegationKeyKind, Flavour};
use support::stack::{Stack, SIGNED_DEFAULT};
use tokio::task::block_in_place;

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// `GET` a manifest from trustgate as a registry client would (schema2 accepted).
async fn get_manifest(stack: &Stack, path: &str) -> reqwest::Response {
    stack
        .http()
        .get(stack.url(path))
        .header("accept", DOCKER_MANIFEST)
        .send()
        .await
        .unwrap()
}

fn pull(stack: &Stack, repo: &str, reference: &str) -> support::clients::PullResult {
    let image = stack.via_proxy(repo, reference);
    block_in_place(|| skopeo_copy(&image, &Transport::PlainHttp))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_tag_is_served_as_its_signed_digest_and_unsigned_ones_are_refused() {
    let stack = Stack::start(Flavour::Local, SIGNED_DEFAULT).await;
    let signed = stack.push("e2e/app", "1.0", 1).await;
    let _unsigned = stack.push("e2e/app", "dev", 2).await;
    let _nodata = stack.push("e2e/never-signed", "1.0", 3).await;
    block_in_place(|| stack.sign("e2e/app", "1.0", &signed.manifest, &[]));

    let ok = pull(&stack, "e2e/app", ":1.0");
    ok.run.assert_success();
    assert_eq!(
        ok.manifest.as_deref(),
        Some(&signed.manifest[..]),
        "byte-identical manifest"
    );
    assert_eq!(ok.digest.as_deref(), Some(signed.digest.as_str()));

    let unsigned = pull(&stack, "e2e/app", ":dev");
    unsigned.run.assert_failure();
    let out = unsigned.run.output();
    assert!(out.contains("tag dev is not signed"), "{out}");
    assert!(out.contains("policy rule default"), "{out}");

    let nodata = pull(&stack, "e2e/never-signed", ":1.0");
    nodata.run.assert_failure();
    let out = nodata.run.output();
    assert!(out.contains("no trust data"), "{out}");

    // The status and envelope behind those messages.
    let r = get_manifest(&stack, "/v2/e2e/app/manifests/dev").await;
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(body["errors"][0]["code"], "DENIED");
    let m = stack.proxy.state.metrics.render();
    assert!(m.contains("outcome=\"deny\""), "{m}");
    assert!(m.contains("outcome=\"rewrite\""), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_moved_after_signing_still_yields_the_signed_content() {
    // ecdsa server keys via notary-signer, as Docker Hub has.
    let stack = Stack::start(Flavour::Remote, SIGNED_DEFAULT).await;
    let signed = stack.push("e2e/moved", "latest", 10).await;
    block_in_place(|| stack.sign("e2e/moved", "latest", &signed.manifest, &[]));
    // The registry's `latest` now points at other, unsigned content.
    let moved = stack.push("e2e/moved", "latest", 11).await;
    assert_ne!(moved.digest, signed.digest);

    let got = pull(&stack, "e2e/moved", ":latest");
    got.run.assert_success();
    assert_eq!(got.digest.as_deref(), Some(signed.digest.as_str()));

    // HEAD (containerd's resolve) answers the same digest and length as GET.
    let head = stack
        .http()
        .head(stack.url("/v2/e2e/moved/manifests/latest"))
        .header("accept", DOCKER_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["docker-content-digest"].to_str().unwrap(),
        signed.digest
    );
    assert_eq!(
        head.headers()["content-length"].to_str().unwrap(),
        signed.manifest.len().to_string()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_and_wrong_role_tags_are_refused_with_their_reason() {
    let stack = Stack::start(Flavour::Local, SIGNED_DEFAULT).await;
    let gun = stack.gun("e2e/roles");
    let a = stack.push("e2e/roles", "revoked", 20).await;
    let b = stack.push("e2e/roles", "ci-only", 21).await;
    let c = stack.push("e2e/roles", "release", 22).await;
    block_in_place(|| {
        stack.sign("e2e/roles", "revoked", &a.manifest, &[]);
        stack.cli.remove(&gun, "revoked", &[]);
        stack.cli.publish(&gun);
        stack
            .cli
            .add_delegation(&gun, "targets/ci", DelegationKeyKind::PublicKey, None);
        stack.sign("e2e/roles", "ci-only", &b.manifest, &["targets/ci"]);
        stack
            .cli
            .add_delegation(&gun, "targets/releases", DelegationKeyKind::X509Cert, None);
        stack.sign("e2e/roles", "release", &c.manifest, &["targets/releases"]);
    });

    let revoked = pull(&stack, "e2e/roles", ":revoked");
    revoked.run.assert_failure();
    assert!(
        revoked.run.output().contains("tag revoked is not signed"),
        "{}",
        revoked.run.output()
    );

    let ci = pull(&stack, "e2e/roles", ":ci-only");
    ci.run.assert_failure();
    let out = ci.run.output();
    assert!(
        out.contains("signed only by a role the policy does not accept"),
        "{out}"
    );
    assert!(out.contains("targets/ci"), "{out}");

    let rel = pull(&stack, "e2e/roles", ":release");
    rel.run.assert_success();
    assert_eq!(rel.digest.as_deref(), Some(c.digest.as_str()));

    // A policy that accepts targets/ci serves it.
    stack.write_policy(
        r#"
[default]
require = "signed"
trust_server = "test"
roles = ["targets/releases", "targets/ci", "targets"]
"#,
    );
    assert!(matches!(
        stack.policy.reload(),
        trustgate::policy::ReloadOutcome::Replaced { .. }
    ));
    let ci = pull(&stack, "e2e/roles", ":ci-only");
    ci.run.assert_success();
    assert_eq!(ci.digest.as_deref(), Some(b.digest.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_pulls_follow_allow_and_signed_only() {
    let stack = Stack::start(Flavour::Local, SIGNED_DEFAULT).await;
    let signed = stack.push("e2e/dig", "1.0", 30).await;
    let unsigned = stack.push("e2e/dig", "dev", 31).await;
    block_in_place(|| stack.sign("e2e/dig", "1.0", &signed.manifest, &[]));

    // allow (Docker's semantics): a digest needs no signature.
    let by_digest = pull(&stack, "e2e/dig", &format!("@{}", unsigned.digest));
    by_digest.run.assert_success();

    stack.write_policy(
        r#"
[default]
require = "signed"
trust_server = "test"
digest_pulls = "signed-only"
"#,
    );
    assert!(matches!(
        stack.policy.reload(),
        trustgate::policy::ReloadOutcome::Replaced { .. }
    ));
    let refused = pull(&stack, "e2e/dig", &format!("@{}", unsigned.digest));
    refused.run.assert_failure();
    assert!(
        refused
            .run
            .output()
            .contains("not reached through a signed tag"),
        "{}",
        refused.run.output()
    );
    let layer = &unsigned.blobs[1].digest;
    let r = stack
        .http()
        .get(stack.url(&format!("/v2/e2e/dig/blobs/{layer}")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        403,
        "a layer of unsigned content is refused too"
    );

    // Pulling the signed tag makes its digest, config and layers servable by digest.
    pull(&stack, "e2e/dig", ":1.0").run.assert_success();
    let again = pull(&stack, "e2e/dig", &format!("@{}", signed.digest));
    again.run.assert_success();
    assert_eq!(again.digest.as_deref(), Some(signed.digest.as_str()));

    // After a restart (same state directory), a pod pinned by digest still pulls: what was
    // reached through the signed tag is persisted; the unsigned digest is still refused.
    let restarted = stack.restart_proxy().await;
    let by_digest = format!("{}/e2e/dig@{}", restarted.addr, signed.digest);
    let after = block_in_place(|| skopeo_copy(&by_digest, &Transport::PlainHttp));
    after.run.assert_success();
    let by_digest = format!("{}/e2e/dig@{}", restarted.addr, unsigned.digest);
    let refused = block_in_place(|| skopeo_copy(&by_digest, &Transport::PlainHttp));
    refused.run.assert_failure();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn most_specific_rule_wins_and_audit_mode_serves_with_a_warning() {
    let body = r#"
[[rules]]
name = "e2e signed"
scope = "127.0.0.1:1/e2e/**"
require = "signed"

[[rules]]
name = "public"
scope = "127.0.0.1:1/e2e/public/*"
require = "allow"

[[rules]]
name = "banned"
scope = "127.0.0.1:1/e2e/banned"
require = "reject"
message = "this image is banned by the security team"

[[rules]]
name = "rollout"
scope = "127.0.0.1:1/e2e/rollout/*"
require = "signed"
mode = "audit"

[default]
require = "reject"
"#;
    let stack = Stack::start(Flavour::Local, body).await;
    stack.push("e2e/public/tool", "1", 40).await;
    stack.push("e2e/banned", "1", 41).await;
    let rollout = stack.push("e2e/rollout/svc", "1", 42).await;
    stack.push("e2e/other", "1", 43).await;
    stack.push("outside/thing", "1", 44).await;

    pull(&stack, "e2e/public/tool", ":1").run.assert_success();

    let banned = pull(&stack, "e2e/banned", ":1");
    banned.run.assert_failure();
    assert!(
        banned.run.output().contains("banned by the security team"),
        "{}",
        banned.run.output()
    );

    let other = pull(&stack, "e2e/other", ":1");
    other.run.assert_failure();
    assert!(
        other.run.output().contains("policy rule e2e signed"),
        "{}",
        other.run.output()
    );

    let outside = pull(&stack, "outside/thing", ":1");
    outside.run.assert_failure();
    assert!(
        outside.run.output().contains("policy rule default"),
        "{}",
        outside.run.output()
    );

    // Audit: unsigned, served anyway, with a Warning and an audit-violation count.
    let r = get_manifest(&stack, "/v2/e2e/rollout/svc/manifests/1").await;
    assert_eq!(r.status(), 200);
    let warning = r.headers()["warning"].to_str().unwrap().to_string();
    assert!(
        warning.starts_with("299 trustgate \"audit: policy rule rollout would refuse"),
        "{warning}"
    );
    assert_eq!(r.bytes().await.unwrap(), rollout.manifest);
    let m = stack.proxy.state.metrics.render();
    assert!(m.contains("outcome=\"audit_violation\""), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_policy_reload_keeps_the_old_policy() {
    let stack = Stack::start(Flavour::Local, SIGNED_DEFAULT).await;
    stack.push("e2e/reload", "1", 50).await;
    pull(&stack, "e2e/reload", ":1").run.assert_failure();

    std::fs::write(
        &stack.policy_file,
        "version = 1\n[default]\nrequire = \"alow\"\n",
    )
    .unwrap();
    assert!(matches!(
        stack.policy.reload(),
        trustgate::policy::ReloadOutcome::Rejected(_)
    ));
    pull(&stack, "e2e/reload", ":1").run.assert_failure();

    stack.write_policy("[default]\nrequire = \"allow\"\n");
    assert!(matches!(
        stack.policy.reload(),
        trustgate::policy::ReloadOutcome::Replaced { .. }
    ));
    pull(&stack, "e2e/reload", ":1").run.assert_success();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_server_down_fails_closed_unless_verified_data_is_held() {
    let mut stack = Stack::start(Flavour::Local, SIGNED_DEFAULT).await;
    let signed = stack.push("e2e/down", "1.0", 60).await;
    let other = stack.push("e2e/down-cold", "1.0", 61).await;
    block_in_place(|| {
        stack.sign("e2e/down", "1.0", &signed.manifest, &[]);
        stack.sign("e2e/down-cold", "1.0", &other.manifest, &[]);
    });
    pull(&stack, "e2e/down", ":1.0").run.assert_success();

    block_in_place(|| stack.notary.stop());

    // Never verified: refused, and the message says why.
    let r = get_manifest(&stack, "/v2/e2e/down-cold/manifests/1.0").await;
    assert_eq!(r.status(), 503);
    let text = r.text().await.unwrap();
    assert!(text.contains("unreachable"), "{text}");

    // Verified and unexpired: still served.
    let warm = pull(&stack, "e2e/down", ":1.0");
    warm.run.assert_success();
    assert_eq!(warm.digest.as_deref(), Some(signed.digest.as_str()));

    // And after a restart (a new proxy on the same state directory): the persisted, still
    // valid trust data answers while the trust server is down.
    let restarted = stack.restart_proxy().await;
    // The held data is announced: staleness is never silent.
    let r = stack
        .http()
        .get(format!("{}/v2/e2e/down/manifests/1.0", restarted.url))
        .header("accept", DOCKER_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let warning = r.headers()["warning"].to_str().unwrap().to_string();
    assert!(warning.contains("trust server unreachable"), "{warning}");
    let image = format!("{}/e2e/down:1.0", restarted.addr);
    let again = block_in_place(|| skopeo_copy(&image, &Transport::PlainHttp));
    again.run.assert_success();
    assert_eq!(again.digest.as_deref(), Some(signed.digest.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_listings_follow_the_policy_like_pulls() {
    let body = r#"
[[rules]]
name = "banned"
scope = "127.0.0.1:1/e2e/banned"
require = "reject"
message = "this image is banned by the security team"

[default]
require = "signed"
trust_server = "test"
"#;
    let stack = Stack::start(Flavour::Local, body).await;
    stack.push("e2e/banned", "secret-1", 70).await;
    stack.push("e2e/banned", "secret-2", 71).await;
    let signed = stack.push("e2e/listed", "1.0", 72).await;
    stack.push("e2e/listed", "dev", 73).await;
    block_in_place(|| stack.sign("e2e/listed", "1.0", &signed.manifest, &[]));

    // The registry lists the banned repository to anyone who asks it directly; trustgate,
    // which asks with its own credentials, must not.
    let (run, tags) = block_in_place(|| {
        skopeo_list_tags(&stack.via_proxy("e2e/banned", ""), &Transport::PlainHttp)
    });
    run.assert_failure();
    let out = run.output();
    // skopeo reports only the status of a failed listing; the message is checked below.
    assert!(out.contains("403"), "{out}");
    assert!(!out.contains("secret-1"), "{out}");
    assert!(tags.is_empty());
    let r = stack
        .http()
        .get(stack.url("/v2/e2e/banned/tags/list"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(v["errors"][0]["code"], "DENIED");
    let msg = v["errors"][0]["message"].as_str().unwrap();
    assert!(msg.contains("banned by the security team"), "{msg}");

    // Under `signed`, the listing is served whole (tag names are not content); pulling the
    // unsigned tag it names is still refused.
    let (run, mut tags) = block_in_place(|| {
        skopeo_list_tags(&stack.via_proxy("e2e/listed", ""), &Transport::PlainHttp)
    });
    run.assert_success();
    tags.sort();
    assert_eq!(tags, ["1.0", "dev"]);
    pull(&stack, "e2e/listed", ":dev").run.assert_failure();

    let m = stack.proxy.state.metrics.render();
    assert!(
        m.contains("outcome=\"deny\",reason=\"policy_reject\""),
        "{m}"
    );
}
