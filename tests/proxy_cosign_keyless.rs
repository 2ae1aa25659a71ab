//! Keyless cosign end to end: an in-process upstream holds images, keyless `.sig` tags and a
//! keyless bundle referrer (self-made Fulcio certificates and Rekor SETs,
//! tests/support/keyless.rs), trustgate in front
//! with a policy naming a trusted_root.json, an identity and an issuer.
mod support;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use support::cosign::{
    payload, referrer_manifest, referrers_index, sha256, sig_tag, statement, BUNDLE, COSIGN_SIGN,
};
use support::fake_upstream::{full, response, FakeUpstream};
use support::keyless::{
    annotations, keyless_bundle, keyless_sig_manifest, trusted_root, Fulcio, Rekor, ISSUED,
};
use support::registry::{proxy_config, TestProxy};
use trustgate::policy::PolicyHandle;

const UP: &str = "fake.example";
const OCI: &str = "application/vnd.oci.image.manifest.v1+json";
const ID: &str = "https://github.com/org/repo/.github/workflows/release.yml@refs/heads/main";
const ISSUER: &str = "https://token.actions.githubusercontent.com";

fn image(seed: u64) -> Vec<u8> {
    format!(r#"{{"schemaVersion":2,"mediaType":"{OCI}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","size":2,"digest":"{}"}},"layers":[],"seed":{seed}}}"#, sha256(b"{}")).into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_sig_tags_are_verified_through_trustgate() {
    let fulcio = Fulcio::new();
    let rekor = Rekor::new();
    // tag -> manifest; reference -> bytes (manifests by tag or digest, blobs by digest).
    let mut manifests: HashMap<String, Vec<u8>> = HashMap::new();
    let mut blobs: HashMap<String, Vec<u8>> = HashMap::new();
    let mut sign = |tag: &str, seed: u64, identity: Option<&str>| {
        let img = image(seed);
        let d = sha256(&img);
        if let Some(identity) = identity {
            let leaf = fulcio.leaf(identity, ISSUER, Some("org/repo"));
            let p = payload(&format!("{UP}/app"), &d);
            let sig = leaf.sign(&p);
            let entry = rekor.entry(&p, &sig, &leaf.pem, ISSUED + 30);
            let m = keyless_sig_manifest(&[(&p, annotations(&sig, &leaf.pem, Some(&entry)))]);
            manifests.insert(sig_tag(&d), m);
            blobs.insert(sha256(&p), p);
        }
        manifests.insert(tag.to_string(), img.clone());
        manifests.insert(d.clone(), img);
        d
    };
    let released = sign("v1", 1, Some(ID));
    sign(
        "forged",
        2,
        Some("https://github.com/mallory/fork/.github/workflows/release.yml@refs/heads/main"),
    );
    let unsigned = sign("dev", 3, None);
    // cosign 3's format: a keyless bundle attached as a referrer of the image.
    let bundled = image(4);
    let bd = sha256(&bundled);
    let leaf = fulcio.leaf(ID, ISSUER, Some("org/repo"));
    let b = keyless_bundle(&leaf, &rekor, &statement(&bd, COSIGN_SIGN), ISSUED + 5);
    let referrer = referrer_manifest(&bd, &b, BUNDLE);
    let mut referrers: HashMap<String, Vec<u8>> = HashMap::new();
    referrers.insert(bd.clone(), referrers_index(&[(&referrer, BUNDLE)]));
    manifests.insert(sha256(&referrer), referrer);
    blobs.insert(sha256(&b), b);
    manifests.insert("v3".into(), bundled.clone());
    manifests.insert(bd.clone(), bundled);
    let referrers = Arc::new(referrers);
    let (manifests, blobs) = (Arc::new(manifests), Arc::new(blobs));
    let up = FakeUpstream::start(move |s| {
        let (manifests, blobs, referrers) = (manifests.clone(), blobs.clone(), referrers.clone());
        async move {
            if let Some(d) = s.target.strip_prefix("/v2/app/referrers/") {
                if let Some(index) = referrers.get(d) {
                    return response(
                        200,
                        &[("content-type", "application/vnd.oci.image.index.v1+json")],
                        full(index.clone()),
                    );
                }
            }
            if let Some(r) = s.target.strip_prefix("/v2/app/manifests/") {
                if let Some(m) = manifests.get(r) {
                    let d = sha256(m);
                    let body = if s.method == "HEAD" {
                        Bytes::new()
                    } else {
                        Bytes::from(m.clone())
                    };
                    return response(
                        200,
                        &[("content-type", OCI), ("docker-content-digest", &d)],
                        full(body),
                    );
                }
            }
            if let Some(d) = s.target.strip_prefix("/v2/app/blobs/") {
                if let Some(b) = blobs.get(d) {
                    return response(200, &[], full(b.clone()));
                }
            }
            // Otherwise no referrers (404), no tag-schema index: the `.sig` tags decide.
            response(
                404,
                &[],
                full(r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"no"}]}"#),
            )
        }
    })
    .await;

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("trusted_root.json"),
        trusted_root(&fulcio, &rekor),
    )
    .unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!("version = 1\n[verifiers.release]\ntype = \"cosign\"\ntrusted_root = \"trusted_root.json\"\nidentity_regex = 'https://github\\.com/org/repo/\\.github/workflows/.*'\nissuer = {ISSUER:?}\ngithub_workflow_repository = \"org/repo\"\nsct = false\n[default]\nrequire = \"signed\"\nsigned_by = \"release\"\n"),
    )
    .unwrap();
    let handle = Arc::new(PolicyHandle::load(&policy).unwrap_or_else(|e| panic!("{e:?}")));
    let cfg =
        trustgate::config::Config::from_toml_str(&proxy_config(&[(UP, &up.url)], ""), "t.toml")
            .unwrap();
    let proxy = TestProxy::start_with_policy(cfg, handle).await;
    let http = reqwest::Client::new();
    let get = |tag: &str| {
        http.get(format!("{}/v2/app/manifests/{tag}", proxy.url))
            .header("accept", OCI)
            .send()
    };
    let message = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        let v: serde_json::Value =
            serde_json::from_slice(&r.bytes().await.unwrap()).unwrap_or_default();
        (
            status,
            v["errors"][0]["message"].as_str().unwrap_or("").to_string(),
        )
    };

    let r = get("v1").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["docker-content-digest"], released.as_str());
    let r = get("v3").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["docker-content-digest"], bd.as_str());

    let (s, msg) = message(get("forged").await.unwrap()).await;
    assert_eq!(s, 403, "{msg}");
    assert!(
        msg.contains("certificate is for identity \"https://github.com/mallory/fork/"),
        "{msg}"
    );
    assert!(
        msg.contains(
            r"expected identity matching /https://github\.com/org/repo/\.github/workflows/.*/"
        ),
        "{msg}"
    );

    let (s, msg) = message(get("dev").await.unwrap()).await;
    assert_eq!(s, 403, "{msg}");
    assert!(
        msg.contains(&format!("no cosign signature for {unsigned}")),
        "{msg}"
    );
    assert!(msg.contains("for identity matching"), "{msg}");
    proxy.shutdown().await;
}

/// A real keyless bundle (sigstore-conformance, public-good Fulcio and Rekor) attached as a
/// cosign 3 referrer: trustgate verifies chain, SCT and log entry offline against the policy's
/// trusted_root.json and the identity; the bundle is an SLSA attestation, not a `cosign sign`
/// signature, so the pull is refused for that, and for the identity under another policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_keyless_bundle_referrer_is_checked_through_trustgate() {
    let keyless = std::path::Path::new("tests/fixtures/cosign/keyless");
    // The bundle's subject is a.txt; served as the "manifest" of tag v1 so its digest matches.
    let subject = std::fs::read(keyless.join("a.txt")).unwrap();
    let bundle = std::fs::read(keyless.join("dsse-v3.bundle.json")).unwrap();
    let d = sha256(&subject);
    let referrer = referrer_manifest(&d, &bundle, BUNDLE);
    let (s2, b2, r2) = (subject.clone(), bundle.clone(), referrer.clone());
    let up = FakeUpstream::start(move |s| {
        let (subject, bundle, referrer) = (s2.clone(), b2.clone(), r2.clone());
        async move {
            let d = sha256(&subject);
            if s.target == "/v2/app/manifests/v1" || s.target == format!("/v2/app/manifests/{d}") {
                let body = if s.method == "HEAD" {
                    Bytes::new()
                } else {
                    Bytes::from(subject)
                };
                return response(
                    200,
                    &[("content-type", OCI), ("docker-content-digest", &d)],
                    full(body),
                );
            }
            if s.target == format!("/v2/app/referrers/{d}") {
                let index = referrers_index(&[(&referrer, BUNDLE)]);
                return response(
                    200,
                    &[("content-type", "application/vnd.oci.image.index.v1+json")],
                    full(index),
                );
            }
            if s.target == format!("/v2/app/manifests/{}", sha256(&referrer)) {
                return response(200, &[("content-type", OCI)], full(referrer));
            }
            if s.target == format!("/v2/app/blobs/{}", sha256(&bundle)) {
                return response(200, &[], full(bundle));
            }
            response(
                404,
                &[],
                full(r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"no"}]}"#),
            )
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        keyless.join("production.trusted_root.json"),
        dir.path().join("trusted_root.json"),
    )
    .unwrap();
    for (identity, expect) in [
        (
            "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main",
            "predicateType \"https://slsa.dev/provenance/v1\" is an attestation, not a signature",
        ),
        (
            "https://github.com/org/repo/.github/workflows/release.yml@refs/heads/main",
            "certificate is for identity \"https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/",
        ),
    ] {
        let policy = dir.path().join("policy.toml");
        std::fs::write(
            &policy,
            format!("version = 1\n[verifiers.ci]\ntype = \"cosign\"\ntrusted_root = \"trusted_root.json\"\nidentity = {identity:?}\nissuer = {ISSUER:?}\n[default]\nrequire = \"signed\"\nsigned_by = \"ci\"\n"),
        )
        .unwrap();
        let handle = Arc::new(PolicyHandle::load(&policy).unwrap_or_else(|e| panic!("{e:?}")));
        let cfg = trustgate::config::Config::from_toml_str(&proxy_config(&[(UP, &up.url)], ""), "t.toml").unwrap();
        let proxy = TestProxy::start_with_policy(cfg, handle).await;
        let r = reqwest::Client::new()
            .get(format!("{}/v2/app/manifests/v1", proxy.url))
            .header("accept", OCI)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        let msg = v["errors"][0]["message"].as_str().unwrap_or("").to_string();
        assert!(msg.contains(&format!("referrer {}: {expect}", sha256(&referrer))), "{msg}");
        proxy.shutdown().await;
    }
    // The bundle was fetched and read through the referrers API.
    assert!(up
        .seen()
        .iter()
        .any(|s| s.target == format!("/v2/app/blobs/{}", sha256(&bundle))));
}
