//! End to end with the cluster runtimes: containerd (`ctr`, hosts.toml with trustgate as the
//! `server`, so it resolves with `HEAD ...?ns=127.0.0.1:1` then GETs by digest) and podman
//! (registries.conf `location` remap), over TLS, against the real registry and notary-server.
//! The primary registry in every image reference is a closed loopback port, so a refusal is
//! final and nothing leaves loopback.
mod support;

use support::clients::{Containerd, Podman, Transport, CLOSED_REGISTRY};
use support::notary::Flavour;
use support::stack::{push_runnable, push_runnable_list, Stack};
use tokio::task::block_in_place;

/// Signed-only digests too: the runtimes' by-digest requests for child manifests, configs and
/// layers must be recognised as reached through the signed tag.
const POLICY: &str = r#"
[default]
require = "signed"
trust_server = "test"
digest_pulls = "signed-only"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_pulls_a_signed_multi_platform_image_and_fails_on_an_unsigned_one() {
    let stack = Stack::start_opts(Flavour::Remote, POLICY, true).await;
    let signed = push_runnable_list(&stack.pusher, "e2e/multi", "1.0").await;
    let unsigned = push_runnable_list(&stack.pusher, "e2e/multi", "edge").await;
    block_in_place(|| stack.sign("e2e/multi", "1.0", &signed.manifest, &[]));
    let t = Transport::Tls {
        ca_file: stack.proxy_ca(),
    };
    let proxy = stack.proxy.addr.to_string();

    let ctd = block_in_place(Containerd::start);
    let image = format!("{CLOSED_REGISTRY}/e2e/multi:1.0");
    let pulled = block_in_place(|| ctd.pull(&image, &proxy, &t));
    pulled.run.assert_success();
    assert_eq!(
        pulled.digest.as_deref(),
        Some(signed.digest.as_str()),
        "ctr records the signed list"
    );
    assert_eq!(pulled.manifest.as_deref(), Some(&signed.manifest[..]));

    let refused =
        block_in_place(|| ctd.pull(&format!("{CLOSED_REGISTRY}/e2e/multi:edge"), &proxy, &t));
    refused.run.assert_failure();
    assert!(refused.digest.is_none());
    assert_ne!(unsigned.digest, signed.digest);
    let m = stack.proxy.state.metrics.render();
    assert!(m.contains("outcome=\"deny\""), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_pulls_a_signed_tag_through_a_location_remap_and_is_refused_an_unsigned_one() {
    let stack = Stack::start_opts(Flavour::Local, POLICY, true).await;
    let signed = push_runnable(&stack.pusher, "e2e/pod", "1.0", "amd64").await;
    let _unsigned = push_runnable(&stack.pusher, "e2e/pod", "edge", "amd64").await;
    block_in_place(|| stack.sign("e2e/pod", "1.0", &signed.manifest, &[]));
    let t = Transport::Tls {
        ca_file: stack.proxy_ca(),
    };
    let proxy = stack.proxy.addr.to_string();

    let podman = Podman::new();
    let pulled =
        block_in_place(|| podman.pull(&format!("{CLOSED_REGISTRY}/e2e/pod:1.0"), &proxy, &t));
    pulled.run.assert_success();
    assert_eq!(pulled.digest.as_deref(), Some(signed.digest.as_str()));

    let refused =
        block_in_place(|| podman.pull(&format!("{CLOSED_REGISTRY}/e2e/pod:edge"), &proxy, &t));
    refused.run.assert_failure();
    let out = refused.run.output();
    assert!(
        out.contains("not signed"),
        "podman shows trustgate's reason:\n{out}"
    );
}
