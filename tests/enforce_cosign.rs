//! End to end under cosign policies: the real docker-registry holds images and `.sig` tags
//! made exactly as `cosign sign --key` makes them (with a key the test holds), the real
//! notary-server holds DCT trust data, trustgate sits in between, and skopeo pulls through it.
mod support;

use support::clients::{skopeo_copy, skopeo_inspect_raw, Transport};
use support::cosign::{sig_tag, Signer};
use support::notary::Flavour;
use support::registry::{Blob, Pushed};
use support::stack::Stack;
use tokio::task::block_in_place;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

struct Keys {
    _dir: tempfile::TempDir,
    release: Signer,
    release_pub: String,
    rogue: Signer,
}

fn keys() -> Keys {
    let dir = tempfile::tempdir().unwrap();
    let release = Signer::generate();
    let path = dir.path().join("release.pub");
    std::fs::write(&path, release.public_pem()).unwrap();
    Keys {
        release_pub: path.display().to_string(),
        _dir: dir,
        release,
        rogue: Signer::generate(),
    }
}

/// `cosign sign --key` ([`support::cosign::push_sig`]).
async fn cosign_sign(
    stack: &Stack,
    signer: &Signer,
    repo: &str,
    image_digest: &str,
    signed_digest: &str,
) {
    support::cosign::push_sig(&stack.pusher, signer, repo, image_digest, signed_digest).await;
}

fn pull(stack: &Stack, repo: &str, reference: &str) -> support::clients::PullResult {
    let image = stack.via_proxy(repo, reference);
    block_in_place(|| skopeo_copy(&image, &Transport::PlainHttp))
}

fn verifiers(k: &Keys) -> String {
    format!(
        "[verifiers.dct]\ntype = \"notary\"\ntrust_server = \"test\"\n[verifiers.release]\ntype = \"cosign\"\nkeys = [{:?}]\ntlog = false\n",
        k.release_pub
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cosign_signed_tags_are_served_by_digest_and_others_refused_with_the_reason() {
    let k = keys();
    let body = format!("{}[default]\nrequire = \"signed\"\nsigned_by = \"release\"\ndigest_pulls = \"signed-only\"\n", verifiers(&k));
    let stack = Stack::start(Flavour::Local, &body).await;
    let signed = stack.push("cs/app", "1.0", 1).await;
    let unsigned = stack.push("cs/app", "dev", 2).await;
    let rogue = stack.push("cs/app", "rogue", 3).await;
    let replayed = stack.push("cs/app", "replayed", 4).await;
    cosign_sign(&stack, &k.release, "cs/app", &signed.digest, &signed.digest).await;
    cosign_sign(&stack, &k.rogue, "cs/app", &rogue.digest, &rogue.digest).await;
    // A valid signature by the release key, but over 1.0's digest, stored for `replayed`.
    cosign_sign(
        &stack,
        &k.release,
        "cs/app",
        &replayed.digest,
        &signed.digest,
    )
    .await;

    let ok = pull(&stack, "cs/app", ":1.0");
    ok.run.assert_success();
    assert_eq!(
        ok.manifest.as_deref(),
        Some(&signed.manifest[..]),
        "byte-identical manifest"
    );
    assert_eq!(ok.digest.as_deref(), Some(signed.digest.as_str()));
    let r = stack
        .http()
        .head(stack.url("/v2/cs/app/manifests/1.0"))
        .header("accept", OCI_MANIFEST)
        .header(
            "accept",
            "application/vnd.docker.distribution.manifest.v2+json",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["docker-content-digest"], signed.digest.as_str());

    let out = pull(&stack, "cs/app", ":dev");
    out.run.assert_failure();
    let text = out.run.output();
    assert!(
        text.contains(&format!("no cosign signature for {}", unsigned.digest)),
        "{text}"
    );
    assert!(
        text.contains("expected a signature by [ecdsa-p256 SHA256:"),
        "{text}"
    );

    let out = pull(&stack, "cs/app", ":rogue");
    out.run.assert_failure();
    let text = out.run.output();
    assert!(
        text.contains("verifies with none of the configured keys"),
        "{text}"
    );
    assert!(
        text.contains(&k.release_pub),
        "the refusal names the expected key: {text}"
    );

    let out = pull(&stack, "cs/app", ":replayed");
    out.run.assert_failure();
    let text = out.run.output();
    assert!(
        text.contains(&format!("signed payload is for {}", signed.digest)),
        "{text}"
    );

    // The signature artifact of the allowed image passes through for clients to re-check;
    // that of an image never served does not (signed-only).
    let sig = block_in_place(|| {
        skopeo_inspect_raw(
            &stack.via_proxy("cs/app", &format!(":{}", sig_tag(&signed.digest))),
            &Transport::PlainHttp,
        )
    });
    sig.run.assert_success();
    let m: serde_json::Value = serde_json::from_slice(sig.manifest.as_deref().unwrap()).unwrap();
    let layer_digest = m["layers"][0]["digest"].as_str().unwrap();
    let blob = stack
        .http()
        .get(stack.url(&format!("/v2/cs/app/blobs/{layer_digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(blob.status(), 200);
    let payload: serde_json::Value = serde_json::from_slice(&blob.bytes().await.unwrap()).unwrap();
    assert_eq!(
        payload["critical"]["image"]["docker-manifest-digest"],
        signed.digest.as_str()
    );
    // The artifact is unsigned: what else it names (its config) vouches for nothing.
    let config_digest = m["config"]["digest"].as_str().unwrap();
    let config = stack
        .http()
        .get(stack.url(&format!("/v2/cs/app/blobs/{config_digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(config.status(), 403);
    let never = block_in_place(|| {
        skopeo_inspect_raw(
            &stack.via_proxy("cs/app", &format!(":{}", sig_tag(&rogue.digest))),
            &Transport::PlainHttp,
        )
    });
    never.run.assert_failure();
    assert!(
        never
            .run
            .output()
            .contains("was not reached through a signed tag"),
        "{}",
        never.run.output()
    );

    // A runnable image pushed under a `.sig` tag name is not served as a signature artifact.
    stack
        .pusher
        .manifest(
            "cs/app",
            &sig_tag(&signed.digest),
            unsigned.media_type,
            &unsigned.manifest,
        )
        .await;
    let smuggled = block_in_place(|| {
        skopeo_inspect_raw(
            &stack.via_proxy("cs/app", &format!(":{}", sig_tag(&signed.digest))),
            &Transport::PlainHttp,
        )
    });
    smuggled.run.assert_failure();
    assert!(
        smuggled
            .run
            .output()
            .contains("is not a cosign signature artifact"),
        "{}",
        smuggled.run.output()
    );
}

async fn two_images(stack: &Stack, repo: &str) -> (Pushed, Pushed) {
    (
        stack.push(repo, "dct", 21).await,
        stack.push(repo, "cosign", 22).await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_of_needs_one_verifier_and_all_of_needs_every_one_for_the_same_digest() {
    let k = keys();
    let body = format!(
        "{}[[rules]]\nscope = \"127.0.0.1:1/either/**\"\nrequire = \"signed\"\nsigned_by = {{ any_of = [\"dct\", \"release\"] }}\n\
[[rules]]\nscope = \"127.0.0.1:1/both/**\"\nrequire = \"signed\"\nsigned_by = {{ all_of = [\"dct\", \"release\"] }}\n\
[default]\nrequire = \"reject\"\n",
        verifiers(&k)
    );
    let stack = Stack::start(Flavour::Local, &body).await;
    for repo in ["either/app", "both/app"] {
        let (dct, cosign) = two_images(&stack, repo).await;
        block_in_place(|| stack.sign(repo, "dct", &dct.manifest, &[]));
        cosign_sign(&stack, &k.release, repo, &cosign.digest, &cosign.digest).await;
    }
    // any_of: DCT alone, or cosign alone, is enough.
    for tag in ["dct", "cosign"] {
        let got = pull(&stack, "either/app", &format!(":{tag}"));
        got.run.assert_success();
    }
    // all_of: one of the two is not.
    let out = pull(&stack, "both/app", ":dct");
    out.run.assert_failure();
    let text = out.run.output();
    assert!(
        text.contains(
            "verifier release does not vouch for it, and the rule requires all of its 2 verifiers"
        ),
        "{text}"
    );
    let out = pull(&stack, "both/app", ":cosign");
    out.run.assert_failure();
    assert!(
        out.run
            .output()
            .contains("verifier dct does not vouch for it"),
        "{}",
        out.run.output()
    );
    // Both sign the same digest: served.
    let both = stack.push("both/app", "ok", 23).await;
    block_in_place(|| stack.sign("both/app", "ok", &both.manifest, &[]));
    cosign_sign(&stack, &k.release, "both/app", &both.digest, &both.digest).await;
    let got = pull(&stack, "both/app", ":ok");
    got.run.assert_success();
    assert_eq!(got.digest.as_deref(), Some(both.digest.as_str()));
    // DCT signed one digest, the tag now names another that cosign signed: they disagree.
    let moved = stack.push("both/app", "moved", 24).await;
    block_in_place(|| stack.sign("both/app", "moved", &moved.manifest, &[]));
    let moved2 = stack.push("both/app", "moved", 25).await;
    cosign_sign(
        &stack,
        &k.release,
        "both/app",
        &moved2.digest,
        &moved2.digest,
    )
    .await;
    let out = pull(&stack, "both/app", ":moved");
    out.run.assert_failure();
    assert!(
        out.run.output().contains("the verifiers disagree"),
        "{}",
        out.run.output()
    );
    // The metrics name the signature systems that answered, and how.
    let m = stack.proxy.state.metrics.render();
    for (system, result) in [
        ("notary", "verified"),
        ("cosign", "verified"),
        ("notary", "refused"),
        ("cosign", "refused"),
    ] {
        let line =
            format!("trustgate_verifications_total{{system=\"{system}\",result=\"{result}\"}} ");
        let n: u64 = m
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(n > 0, "{line} is 0:\n{m}");
    }
}

/// cosign 3's default: a Sigstore bundle v0.3 referrer. The real docker-registry has no
/// referrers API, so it is stored as cosign does there: the referrer manifest by digest and
/// the distribution-spec tag schema's index under `sha256-<hex>`.
async fn cosign3_sign(stack: &Stack, signer: &Signer, repo: &str, image: &str, signed: &str) {
    use support::cosign::{
        bundle, referrer_manifest, referrers_index, statement, BUNDLE, COSIGN_SIGN,
    };
    let b = bundle(signer, &statement(signed, COSIGN_SIGN));
    stack.pusher.blob(repo, &Blob::new(b.clone(), BUNDLE)).await;
    stack
        .pusher
        .blob(
            repo,
            &Blob::new(b"{}".to_vec(), "application/vnd.oci.empty.v1+json"),
        )
        .await;
    let m = referrer_manifest(image, &b, BUNDLE);
    let d = support::cosign::sha256(&m);
    stack.pusher.manifest(repo, &d, OCI_MANIFEST, &m).await;
    let index = referrers_index(&[(&m, BUNDLE)]);
    let tag = image.replacen(':', "-", 1);
    stack
        .pusher
        .manifest(
            repo,
            &tag,
            "application/vnd.oci.image.index.v1+json",
            &index,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cosign3_bundles_via_the_tag_schema_on_the_real_registry() {
    let k = keys();
    let body = format!(
        "{}[default]\nrequire = \"signed\"\nsigned_by = \"release\"\n",
        verifiers(&k)
    );
    let stack = Stack::start(Flavour::Local, &body).await;
    let signed = stack.push("c3/app", "1.0", 11).await;
    let rogue = stack.push("c3/app", "rogue", 12).await;
    let replayed = stack.push("c3/app", "replayed", 13).await;
    cosign3_sign(&stack, &k.release, "c3/app", &signed.digest, &signed.digest).await;
    cosign3_sign(&stack, &k.rogue, "c3/app", &rogue.digest, &rogue.digest).await;
    // The release key's bundle for 1.0, attached to `replayed`.
    cosign3_sign(
        &stack,
        &k.release,
        "c3/app",
        &replayed.digest,
        &signed.digest,
    )
    .await;

    let ok = pull(&stack, "c3/app", ":1.0");
    ok.run.assert_success();
    assert_eq!(ok.manifest.as_deref(), Some(&signed.manifest[..]));
    assert_eq!(ok.digest.as_deref(), Some(signed.digest.as_str()));

    let out = pull(&stack, "c3/app", ":rogue");
    out.run.assert_failure();
    let text = out.run.output();
    assert!(
        text.contains("the DSSE signature verifies with none of the configured keys"),
        "{text}"
    );
    let out = pull(&stack, "c3/app", ":replayed");
    out.run.assert_failure();
    let text = out.run.output();
    assert!(
        text.contains(&format!("signed statement is for [{}]", signed.digest)),
        "{text}"
    );
}
