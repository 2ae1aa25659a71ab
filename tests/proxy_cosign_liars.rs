//! cosign enforcement against a scripted upstream that does what a real registry will not:
//! an endless signature manifest, a failing one, by-digest bytes that differ from what was
//! signed; and the verification cache (one signature fetch per digest per policy generation).
mod support;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use support::cosign::{payload, sha256, sig_manifest, sig_tag, Signer};
use support::fake_upstream::{full, response, FakeUpstream};
use support::registry::{proxy_config, TestProxy};
use trustgate::policy::{PolicyHandle, ReloadOutcome};

const UP: &str = "fake.example";
const OCI: &str = "application/vnd.oci.image.manifest.v1+json";

fn image(seed: u64) -> Vec<u8> {
    format!(r#"{{"schemaVersion":2,"mediaType":"{OCI}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","size":2,"digest":"{}"}},"layers":[],"seed":{seed}}}"#, sha256(b"{}")).into_bytes()
}

struct Scene {
    signer: Signer,
    good: Vec<u8>,
    endless: Vec<u8>,
    down: Vec<u8>,
    liar: Vec<u8>,
}

fn policy_text(key_path: &str) -> String {
    format!("version = 1\n[verifiers.release]\ntype = \"cosign\"\nkeys = [{key_path:?}]\ntlog = false\n[default]\nrequire = \"signed\"\nsigned_by = \"release\"\n")
}

async fn upstream(scene: Arc<Scene>) -> FakeUpstream {
    FakeUpstream::start(move |s| {
        let sc = scene.clone();
        async move {
            let by_tag = [
                ("good", &sc.good),
                ("endless", &sc.endless),
                ("down", &sc.down),
                ("liar", &sc.liar),
            ];
            for (tag, m) in by_tag {
                let d = sha256(m);
                if s.target == format!("/v2/app/manifests/{tag}") {
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
                if s.target == format!("/v2/app/manifests/{d}") {
                    let bytes = if tag == "liar" { image(99) } else { m.clone() };
                    return response(200, &[("content-type", OCI)], full(bytes));
                }
                if s.target == format!("/v2/app/manifests/{}", sig_tag(&d)) {
                    match tag {
                        "endless" => {
                            let chunks = futures_util::stream::repeat_with(|| {
                                Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b' '; 64 * 1024])))
                            });
                            return response(
                                200,
                                &[("content-type", OCI)],
                                StreamBody::new(chunks).boxed(),
                            );
                        }
                        "down" => return response(500, &[], full("")),
                        _ => {}
                    }
                    let p = payload(&format!("{UP}/app"), &d);
                    let sig = sc.signer.sign(&p);
                    let m = sig_manifest(&sha256(b"{}"), 2, &[(p.as_slice(), sig.as_str())]);
                    return response(200, &[("content-type", OCI)], full(m));
                }
                let p = payload(&format!("{UP}/app"), &d);
                if s.target == format!("/v2/app/blobs/{}", sha256(&p)) {
                    return response(200, &[], full(p));
                }
            }
            response(
                404,
                &[],
                full(r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"no"}]}"#),
            )
        }
    })
    .await
}

async fn status_and_message(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let v: serde_json::Value =
        serde_json::from_slice(&r.bytes().await.unwrap()).unwrap_or_default();
    (
        status,
        v["errors"][0]["message"].as_str().unwrap_or("").to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cosign_against_a_lying_upstream_and_the_result_cache() {
    let scene = Arc::new(Scene {
        signer: Signer::generate(),
        good: image(1),
        endless: image(2),
        down: image(3),
        liar: image(4),
    });
    let up = upstream(scene.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("release.pub");
    std::fs::write(&key, scene.signer.public_pem()).unwrap();
    let policy_file = dir.path().join("policy.toml");
    std::fs::write(&policy_file, policy_text(&key.display().to_string())).unwrap();
    let handle = Arc::new(PolicyHandle::load(&policy_file).unwrap());
    let cfg =
        trustgate::config::Config::from_toml_str(&proxy_config(&[(UP, &up.url)], ""), "t.toml")
            .unwrap();
    let proxy = TestProxy::start_with_policy(cfg, handle.clone()).await;
    let http = reqwest::Client::new();
    let get = |tag: &str| {
        http.get(format!("{}/v2/app/manifests/{tag}", proxy.url))
            .header("accept", OCI)
            .send()
    };

    let good = sha256(&scene.good);
    let sig_fetches = || {
        up.seen()
            .iter()
            .filter(|s| s.target == format!("/v2/app/manifests/{}", sig_tag(&good)))
            .count()
    };
    for _ in 0..2 {
        let r = get("good").await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["docker-content-digest"], good.as_str());
        assert_eq!(&r.bytes().await.unwrap()[..], &scene.good[..]);
    }
    assert_eq!(
        sig_fetches(),
        1,
        "the second pull is answered from the verification cache"
    );

    // An endless signature manifest is cut off at the limit and refused.
    let (s, msg) = status_and_message(get("endless").await.unwrap()).await;
    assert_eq!(s, 403, "{msg}");
    assert!(
        msg.contains("is unusable: the manifest is over the 262144-byte limit"),
        "{msg}"
    );
    // A registry that cannot answer for the signatures: transient, fail closed.
    let (s, msg) = status_and_message(get("down").await.unwrap()).await;
    assert_eq!(s, 503, "{msg}");
    assert!(msg.contains("could not be fetched"), "{msg}");
    // Signed digest, but other bytes served for it: the by-digest check refuses them.
    let (s, msg) = status_and_message(get("liar").await.unwrap()).await;
    assert_eq!(s, 502, "{msg}");
    assert!(
        msg.contains(&sha256(&scene.liar)) && msg.contains(&sha256(&image(99))),
        "{msg}"
    );

    // A new policy generation with another key: verified again, and now refused.
    std::fs::write(&key, Signer::generate().public_pem()).unwrap();
    std::fs::write(&policy_file, policy_text(&key.display().to_string()) + "\n").unwrap();
    assert!(matches!(handle.reload(), ReloadOutcome::Replaced { .. }));
    let (s, msg) = status_and_message(get("good").await.unwrap()).await;
    assert_eq!(s, 403, "{msg}");
    assert!(
        msg.contains("verifies with none of the configured keys"),
        "{msg}"
    );
    assert_eq!(sig_fetches(), 2);
    proxy.shutdown().await;
}
