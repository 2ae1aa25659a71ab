//! The cluster runtimes under a Notation policy, end to end: the real docker-registry (no
//! referrers API) holds images and Notation signatures this test makes, stored as `notation
//! sign` stores them there (signature manifest by digest, listed in the `sha256-<hex>`
//! tag-schema index); trustgate (TLS listener) judges them with a Notation CLI configuration
//! directory; real containerd (`ctr`, hosts.toml with trustgate as the `server`) and real
//! podman (registries.conf `location` remap) pull through it. The image references name the
//! closed loopback registry, so a refusal is final and nothing leaves loopback. Harness as in
//! tests/enforce_clients.rs.
mod notation_common;
mod support;

use notation_common::{ca, cose, jws, leaf, payload_for, Ca, Headers, LeafSpec};
use support::clients::{Containerd, Podman, Transport, CLOSED_REGISTRY};
use support::notary::Flavour;
use support::registry::{Pushed, OCI_INDEX};
use support::stack::{push_runnable, Stack};
use tokio::task::block_in_place;
use trustgate::notation::{discover, TargetDescriptor};

/// A Notation config directory trusting `corp` for `repo` at the closed registry, strict
/// with revocation skipped (no CRLs here; tests/notation_revocation.rs covers them).
fn notation_config(dir: &std::path::Path, repo: &str, corp: &Ca) -> std::path::PathBuf {
    let cfg = dir.join("notation");
    let store = cfg.join("truststore/x509/ca/corp");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::write(store.join("corp-ca.crt"), corp.cert.pem()).unwrap();
    std::fs::write(
        cfg.join("trustpolicy.oci.json"),
        format!(
            r#"{{"version":"1.0","trustPolicies":[{{"name":"corp-images","registryScopes":["{CLOSED_REGISTRY}/{repo}"],"signatureVerification":{{"level":"strict","override":{{"revocation":"skip"}}}},"trustStores":["ca:corp"],"trustedIdentities":["x509.subject: C=US, ST=WA, O=trustgate-test"]}}]}}"#
        ),
    )
    .unwrap();
    cfg
}

/// Every digest pull must have been reached through a verified tag (the runtimes fetch the
/// config and layers by digest after resolving the tag).
fn policy(cfg: &std::path::Path) -> String {
    format!(
        "[verifiers.corp]\ntype = \"notation\"\nconfig_dir = {:?}\n\
         [default]\nrequire = \"signed\"\nsigned_by = \"corp\"\ndigest_pulls = \"signed-only\"\n",
        cfg.display().to_string()
    )
}

/// Signs `img` with a leaf of `corp` (COSE or JWS) and stores the signature under its
/// tag-schema tag in the real registry.
async fn sign(stack: &Stack, corp: &Ca, img: &Pushed, use_cose: bool) {
    let signer = leaf(corp, LeafSpec::default());
    let target = TargetDescriptor {
        media_type: img.media_type.into(),
        digest: img.digest.clone(),
        size: img.manifest.len() as u64,
    };
    let (envelope, mt) = if use_cose {
        (
            cose(&signer, &payload_for(&target), &Headers::default()),
            "application/cose",
        )
    } else {
        (
            jws(&signer, &payload_for(&target), &Headers::default()),
            "application/jose+json",
        )
    };
    let print = trustgate::notation::truststore::thumbprint(corp.cert.der());
    let entry =
        support::notation::push_signature(&stack.pusher, &img.repo, &target, envelope, mt, &print)
            .await;
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry],
    }))
    .unwrap();
    let tag = discover::fallback_tag(&target.digest).unwrap();
    stack
        .pusher
        .manifest(&img.repo, &tag, OCI_INDEX, &index)
        .await;
}

/// trustgate's own answer for a tag, as a client would see it: status and error message.
async fn refusal(stack: &Stack, repo: &str, tag: &str) -> (u16, String) {
    let http = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(stack.proxy_ca()).unwrap()).unwrap(),
        )
        .build()
        .unwrap();
    let r = http
        .get(format!(
            "https://{}/v2/{repo}/manifests/{tag}",
            stack.proxy.addr
        ))
        .header("accept", support::registry::DOCKER_MANIFEST)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    (status, message.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_pulls_a_notation_signed_image_and_is_refused_an_unsigned_one() {
    let corp = ca("Corp Signing CA");
    let stranger = ca("Someone Else CA");
    let dir = support::tempdir();
    let cfg = notation_config(dir.path(), "e2e/nota", &corp);
    let stack = Stack::start_opts(Flavour::Local, &policy(&cfg), true).await;
    let signed = push_runnable(&stack.pusher, "e2e/nota", "1.0", "amd64").await;
    let unsigned = push_runnable(&stack.pusher, "e2e/nota", "edge", "amd64").await;
    let foreign = push_runnable(&stack.pusher, "e2e/nota", "foreign", "amd64").await;
    sign(&stack, &corp, &signed, true).await;
    // Signed, but by a CA no trust store holds.
    sign(&stack, &stranger, &foreign, false).await;
    let t = Transport::Tls {
        ca_file: stack.proxy_ca(),
    };
    let proxy = stack.proxy.addr.to_string();

    let ctd = block_in_place(Containerd::start);
    let pulled =
        block_in_place(|| ctd.pull(&format!("{CLOSED_REGISTRY}/e2e/nota:1.0"), &proxy, &t));
    pulled.run.assert_success();
    assert_eq!(
        pulled.digest.as_deref(),
        Some(signed.digest.as_str()),
        "ctr records the signed digest"
    );
    assert_eq!(pulled.manifest.as_deref(), Some(&signed.manifest[..]));

    for tag in ["edge", "foreign"] {
        let refused =
            block_in_place(|| ctd.pull(&format!("{CLOSED_REGISTRY}/e2e/nota:{tag}"), &proxy, &t));
        refused.run.assert_failure();
        assert!(refused.digest.is_none(), "{tag}");
        assert!(
            refused.run.output().contains("403"),
            "ctr was refused, not failing for another reason:\n{}",
            refused.run.output()
        );
    }
    // What containerd was told: the Notation verifier, the digest, and what was missing.
    let (status, body) = refusal(&stack, "e2e/nota", "edge").await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains(&format!("no Notation signature for {}", unsigned.digest))
            && body.contains(&discover::fallback_tag(&unsigned.digest).unwrap())
            && body.contains(
                "expected one that trust policy statement \"corp-images\" accepts (trust stores [ca:corp])"
            ),
        "{body}"
    );
    let (status, body) = refusal(&stack, "e2e/nota", "foreign").await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("names a certificate of those trust stores")
            && body.contains("trust stores [ca:corp]"),
        "names the trust store expected: {body}"
    );
    let m = stack.proxy.state.metrics.render();
    assert!(m.contains("outcome=\"deny\""), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_pulls_a_notation_signed_image_and_is_refused_an_unsigned_one() {
    let corp = ca("Corp Signing CA");
    let dir = support::tempdir();
    let cfg = notation_config(dir.path(), "e2e/npod", &corp);
    let stack = Stack::start_opts(Flavour::Local, &policy(&cfg), true).await;
    let signed = push_runnable(&stack.pusher, "e2e/npod", "1.0", "amd64").await;
    let unsigned = push_runnable(&stack.pusher, "e2e/npod", "edge", "amd64").await;
    sign(&stack, &corp, &signed, false).await;
    let t = Transport::Tls {
        ca_file: stack.proxy_ca(),
    };
    let proxy = stack.proxy.addr.to_string();

    let podman = Podman::new();
    let pulled =
        block_in_place(|| podman.pull(&format!("{CLOSED_REGISTRY}/e2e/npod:1.0"), &proxy, &t));
    pulled.run.assert_success();
    assert_eq!(pulled.digest.as_deref(), Some(signed.digest.as_str()));
    // By digest too, now that the signed tag reached it.
    let by_digest = block_in_place(|| {
        podman.pull(
            &format!("{CLOSED_REGISTRY}/e2e/npod@{}", signed.digest),
            &proxy,
            &t,
        )
    });
    by_digest.run.assert_success();

    let refused =
        block_in_place(|| podman.pull(&format!("{CLOSED_REGISTRY}/e2e/npod:edge"), &proxy, &t));
    refused.run.assert_failure();
    let out = refused.run.output();
    assert!(
        out.contains("no Notation signature")
            && out.contains(&unsigned.digest)
            && out.contains("trust stores [ca:corp]"),
        "podman shows trustgate's reason:\n{out}"
    );
}
