//! The cluster runtimes under a cosign policy, end to end: the real docker-registry holds
//! images and `cosign sign --key` signatures this test makes (the `sha256-<hex>.sig` tag, as
//! cosign stores them there); trustgate (TLS listener) verifies them with the release key;
//! real containerd (`ctr`, hosts.toml with trustgate as the `server`) and real podman
//! (registries.conf `location` remap) pull through it. Signed is served by digest; unsigned
//! and signed-by-another-key are refused with what was expected. The image references name
//! the closed loopback registry, so a refusal is final and nothing leaves loopback. Harness as
//! in tests/enforce_clients.rs.
mod support;

use support::clients::{Containerd, Podman, Transport, CLOSED_REGISTRY};
use support::cosign::{push_sig, Signer};
use support::notary::Flavour;
use support::stack::{push_runnable, Stack};
use tokio::task::block_in_place;

/// The release key's PEM file, and a policy requiring it for every tag, digests only as
/// reached through a verified tag (the runtimes fetch config and layers by digest).
fn policy(dir: &std::path::Path, release: &Signer) -> String {
    let key = dir.join("release.pub");
    std::fs::write(&key, release.public_pem()).unwrap();
    format!(
        "[verifiers.release]\ntype = \"cosign\"\nkeys = [{:?}]\ntlog = false\n\
         [default]\nrequire = \"signed\"\nsigned_by = \"release\"\ndigest_pulls = \"signed-only\"\n",
        key.display().to_string()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_and_podman_pull_a_cosign_signed_image_and_are_refused_the_others() {
    let (release, rogue) = (Signer::generate(), Signer::generate());
    let dir = support::tempdir();
    let stack = Stack::start_opts(Flavour::Local, &policy(dir.path(), &release), true).await;
    let repo = "e2e/cosign";
    let signed = push_runnable(&stack.pusher, repo, "1.0", "amd64").await;
    let unsigned = push_runnable(&stack.pusher, repo, "edge", "amd64").await;
    let foreign = push_runnable(&stack.pusher, repo, "foreign", "amd64").await;
    push_sig(
        &stack.pusher,
        &release,
        repo,
        &signed.digest,
        &signed.digest,
    )
    .await;
    push_sig(
        &stack.pusher,
        &rogue,
        repo,
        &foreign.digest,
        &foreign.digest,
    )
    .await;
    let t = Transport::Tls {
        ca_file: stack.proxy_ca(),
    };
    let proxy = stack.proxy.addr.to_string();
    let image = |tag: &str| format!("{CLOSED_REGISTRY}/{repo}:{tag}");

    let ctd = block_in_place(Containerd::start);
    let pulled = block_in_place(|| ctd.pull(&image("1.0"), &proxy, &t));
    pulled.run.assert_success();
    assert_eq!(
        pulled.digest.as_deref(),
        Some(signed.digest.as_str()),
        "ctr records the signed digest"
    );
    assert_eq!(pulled.manifest.as_deref(), Some(&signed.manifest[..]));
    for tag in ["edge", "foreign"] {
        let refused = block_in_place(|| ctd.pull(&image(tag), &proxy, &t));
        refused.run.assert_failure();
        assert!(refused.digest.is_none(), "{tag}");
        assert!(
            refused.run.output().contains("403"),
            "ctr was refused, not failing for another reason:\n{}",
            refused.run.output()
        );
    }

    let podman = Podman::new();
    let pulled = block_in_place(|| podman.pull(&image("1.0"), &proxy, &t));
    pulled.run.assert_success();
    assert_eq!(pulled.digest.as_deref(), Some(signed.digest.as_str()));
    // podman shows trustgate's reason: what was expected, and for which digest.
    let refused = block_in_place(|| podman.pull(&image("edge"), &proxy, &t));
    refused.run.assert_failure();
    let out = refused.run.output();
    assert!(
        out.contains(&format!("no cosign signature for {}", unsigned.digest))
            && out.contains("expected a signature by [ecdsa-p256 SHA256:"),
        "{out}"
    );
    let refused = block_in_place(|| podman.pull(&image("foreign"), &proxy, &t));
    refused.run.assert_failure();
    let out = refused.run.output();
    assert!(
        out.contains("verifies with none of the configured keys") && out.contains("release.pub"),
        "names the key expected:\n{out}"
    );
}
