//! cosign 3 bundles found through the OCI 1.1 referrers API, which the real docker-registry
//! lacks: an in-process upstream with the API (paged with `Link`, and GHCR's wrong
//! `artifactType`), trustgate in front, and a listing that never ends.
mod support;

use std::sync::Arc;

use bytes::Bytes;
use support::cosign::{
    bundle, referrer_manifest, referrers_index, sha256, statement, Signer, BUNDLE, COSIGN_SIGN,
};
use support::fake_upstream::{full, response, FakeUpstream};
use support::registry::{proxy_config, TestProxy};
use trustgate::policy::PolicyHandle;

const UP: &str = "fake.example";
const OCI: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn image(seed: u64) -> Vec<u8> {
    format!(r#"{{"schemaVersion":2,"mediaType":"{OCI}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","size":2,"digest":"{}"}},"layers":[],"seed":{seed}}}"#, sha256(b"{}")).into_bytes()
}

struct Scene {
    signed: Vec<u8>,
    unsigned: Vec<u8>,
    endless: Vec<u8>,
    referrer: Vec<u8>,
    bundle: Vec<u8>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_behind_a_paged_referrers_api_are_verified_through_trustgate() {
    let signer = Signer::generate();
    let signed = image(1);
    let b = bundle(&signer, &statement(&sha256(&signed), COSIGN_SIGN));
    let scene = Arc::new(Scene {
        referrer: referrer_manifest(&sha256(&signed), &b, BUNDLE),
        bundle: b,
        signed,
        unsigned: image(2),
        endless: image(3),
    });
    let sc = scene.clone();
    let up = FakeUpstream::start(move |s| {
        let sc = sc.clone();
        async move {
            for (tag, m) in [
                ("v3", &sc.signed),
                ("dev", &sc.unsigned),
                ("endless", &sc.endless),
            ] {
                let d = sha256(m);
                if s.target == format!("/v2/app/manifests/{tag}")
                    || s.target == format!("/v2/app/manifests/{d}")
                {
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
                let listing = format!("/v2/app/referrers/{d}");
                if s.target.starts_with(&listing) {
                    let index = |entries: &[(&[u8], &str)]| full(referrers_index(entries));
                    return match tag {
                        // Page 1 links to page 2, which holds the bundle under GHCR's type.
                        "v3" if s.target == listing => response(
                            200,
                            &[
                                ("content-type", INDEX),
                                ("link", &format!("<{listing}?last=a>; rel=\"next\"")),
                            ],
                            index(&[]),
                        ),
                        "v3" => response(
                            200,
                            &[("content-type", INDEX)],
                            index(&[(&sc.referrer, "application/vnd.oci.empty.v1+json")]),
                        ),
                        "endless" => response(
                            200,
                            &[
                                ("content-type", INDEX),
                                ("link", &format!("<http://{UP}{listing}?n=1>; rel=\"next\"")),
                            ],
                            index(&[]),
                        ),
                        _ => response(200, &[("content-type", INDEX)], index(&[])),
                    };
                }
            }
            if s.target == format!("/v2/app/manifests/{}", sha256(&sc.referrer)) {
                return response(200, &[("content-type", OCI)], full(sc.referrer.clone()));
            }
            if s.target == format!("/v2/app/blobs/{}", sha256(&sc.bundle)) {
                return response(200, &[], full(sc.bundle.clone()));
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
    let key = dir.path().join("release.pub");
    std::fs::write(&key, signer.public_pem()).unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!("version = 1\n[verifiers.release]\ntype = \"cosign\"\nkeys = [{:?}]\ntlog = false\n[default]\nrequire = \"signed\"\nsigned_by = \"release\"\n", key.display().to_string()),
    )
    .unwrap();
    let handle = Arc::new(PolicyHandle::load(&policy).unwrap());
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

    let r = get("v3").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["docker-content-digest"],
        sha256(&scene.signed).as_str()
    );
    assert_eq!(&r.bytes().await.unwrap()[..], &scene.signed[..]);
    // The second page was asked for: the Link was followed.
    assert!(up.seen().iter().any(|s| s.target.ends_with("?last=a")));

    let (s, msg) = message(get("dev").await.unwrap()).await;
    assert_eq!(s, 403, "{msg}");
    assert!(
        msg.contains(&format!(
            "no cosign signature for {}",
            sha256(&scene.unsigned)
        )),
        "{msg}"
    );

    let (s, msg) = message(get("endless").await.unwrap()).await;
    assert_eq!(s, 403, "{msg}");
    assert!(msg.contains("the listing has more than 8 pages"), "{msg}");
    let listing = format!("/v2/app/referrers/{}", sha256(&scene.endless));
    let asked = up
        .seen()
        .iter()
        .filter(|s| s.target.starts_with(&listing))
        .count();
    assert_eq!(asked, 8, "pages read are bounded");
    proxy.shutdown().await;
}
