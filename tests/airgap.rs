//! The on-disk content cache and air-gapped operation: what trustgate has pulled and verified
//! it serves again after a restart with the registry and the trust server gone; what it never
//! held fails cleanly, naming what is unreachable; a damaged cache file is never served as a
//! clean wrong answer; and only verified bytes are ever cached.
mod support;

use bytes::Bytes;
use support::clients::{skopeo_copy, Transport, CLOSED_REGISTRY};
use support::fake_upstream::{chunks, response, FakeUpstream};
use support::notary::Flavour;
use support::registry::{det_bytes, proxy_config, sha256, Pusher, Registry, TestProxy};
use support::stack::{Stack, SIGNED_DEFAULT};
use tokio::task::block_in_place;
use trustgate::metrics::ContentKind;
use trustgate::registry::Digest;

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

fn digest(s: &str) -> Digest {
    Digest::parse(s).unwrap()
}

/// Reads a body to its end: the bytes received and whether it ended cleanly.
async fn drain(mut r: reqwest::Response) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    loop {
        match r.chunk().await {
            Ok(Some(c)) => got.extend_from_slice(&c),
            Ok(None) => return (got, true),
            Err(_) => return (got, false),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_air_gapped_restart_serves_what_was_pulled_and_fails_cleanly_on_the_rest() {
    let mut stack = Stack::start(Flavour::Local, SIGNED_DEFAULT).await;
    // A multi-megabyte layer: the write-through spans many chunks.
    let signed = stack
        .pusher
        .image("air/app", "1.0", false, 80, 3 * 1024 * 1024 + 7, "amd64")
        .await;
    let cold = stack.push("air/cold", "1.0", 81).await;
    block_in_place(|| {
        stack.sign("air/app", "1.0", &signed.manifest, &[]);
        stack.sign("air/cold", "1.0", &cold.manifest, &[]);
    });
    let image = stack.via_proxy("air/app", ":1.0");
    let first = block_in_place(|| skopeo_copy(&image, &Transport::PlainHttp));
    first.run.assert_success();
    assert_eq!(first.manifest.as_deref(), Some(&signed.manifest[..]));

    // The site loses its uplink: registry and trust server are gone.
    block_in_place(|| {
        stack.registry.stop();
        stack.notary.stop();
    });

    // A new trustgate (fresh process state) on the same state directory.
    let offline = stack.restart_proxy().await;

    let image = format!("{}/air/app:1.0", offline.addr);
    let again = block_in_place(|| skopeo_copy(&image, &Transport::PlainHttp));
    again.run.assert_success();
    assert_eq!(
        again.manifest.as_deref(),
        Some(&signed.manifest[..]),
        "byte-identical manifest from disk"
    );
    assert_eq!(again.digest.as_deref(), Some(signed.digest.as_str()));

    let http = reqwest::Client::new();
    for blob in &signed.blobs {
        let url = format!("{}/v2/air/app/blobs/{}", offline.url, blob.digest);
        let r = http.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200, "{}", blob.digest);
        assert_eq!(r.headers()["docker-content-digest"], blob.digest.as_str());
        let (got, clean) = drain(r).await;
        assert!(clean && got == blob.bytes, "blob {} differs", blob.digest);

        let r = http.head(&url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["content-length"],
            blob.bytes.len().to_string().as_str()
        );

        let total = blob.bytes.len();
        let last = (total - 1).min(1004);
        let r = http
            .get(&url)
            .header("range", "bytes=5-1004")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 206);
        assert_eq!(
            r.headers()["content-range"],
            format!("bytes 5-{last}/{total}").as_str()
        );
        assert_eq!(&r.bytes().await.unwrap()[..], &blob.bytes[5..=last]);

        let r = http
            .get(&url)
            .header("range", format!("bytes={total}-"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 416);
        assert_eq!(
            r.headers()["content-range"],
            format!("bytes */{total}").as_str()
        );
    }
    let m = &offline.state.metrics;
    assert!(m.content_cache_count(ContentKind::Blob, true) >= 2);
    assert!(m.content_cache_count(ContentKind::Manifest, true) >= 1);

    // Never pulled: the tag cannot be verified (trust server unreachable) ...
    let r = http
        .get(format!("{}/v2/air/cold/manifests/1.0", offline.url))
        .header("accept", DOCKER_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let text = r.text().await.unwrap();
    assert!(text.contains("unreachable"), "{text}");
    // ... and its content by digest is not held: 502 naming the upstream.
    for path in [
        format!("/v2/air/cold/manifests/{}", cold.digest),
        format!("/v2/air/cold/blobs/{}", cold.blobs[1].digest),
    ] {
        let r = http
            .get(format!("{}{path}", offline.url))
            .header("accept", DOCKER_MANIFEST)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 502, "{path}");
        let text = r.text().await.unwrap();
        assert!(text.contains(CLOSED_REGISTRY), "{path}: {text}");
    }
    let image = format!("{}/air/cold:1.0", offline.addr);
    block_in_place(|| skopeo_copy(&image, &Transport::PlainHttp))
        .run
        .assert_failure();
    offline.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_cached_blob_is_refetched_or_refused_never_served_short() {
    let mut reg = Registry::start();
    let pushed = Pusher::new(&reg)
        .image("cut/app", "1", true, 90, 1024 * 1024, "amd64")
        .await;
    let proxy = TestProxy::start(&proxy_config(&[("reg.test", &reg.url)], "")).await;
    let store = proxy.state.content.clone().expect("cache on by default");
    let layer = &pushed.blobs[1];
    let url = format!("{}/v2/cut/app/blobs/{}", proxy.url, layer.digest);
    let (got, clean) = drain(reqwest::get(&url).await.unwrap()).await;
    assert!(clean && got == layer.bytes);
    let path = store.data_path(&digest(&layer.digest));
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        layer.bytes.len() as u64
    );

    let truncate = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(layer.bytes.len() as u64 / 2)
            .unwrap();
    };
    // Upstream reachable: the damaged copy is dropped and the blob refetched (and re-cached).
    truncate();
    let (got, clean) = drain(reqwest::get(&url).await.unwrap()).await;
    assert!(clean && got == layer.bytes, "refetched whole");
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        layer.bytes.len() as u64
    );

    // Upstream gone: refused, not half a blob with a clean end.
    truncate();
    block_in_place(|| reg.stop());
    let r = reqwest::get(&url).await.unwrap();
    assert_eq!(r.status(), 502);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_verified_blobs_are_cached() {
    let real = det_bytes(91, 512 * 1024);
    let mut lie = real.clone();
    lie[1000] ^= 0x01;
    let d = sha256(&real);
    let up = FakeUpstream::start(move |_| {
        let body = lie.clone();
        async move {
            let parts: Vec<Bytes> = body.chunks(16 * 1024).map(Bytes::copy_from_slice).collect();
            response(
                200,
                &[("content-type", "application/octet-stream")],
                chunks(parts),
            )
        }
    })
    .await;
    let proxy = TestProxy::start(&proxy_config(&[("liar.test", &up.url)], "")).await;
    let store = proxy.state.content.clone().unwrap();
    let url = format!("{}/v2/lie/blobs/{d}", proxy.url);
    for round in 1..=2 {
        let (_, clean) = drain(reqwest::get(&url).await.unwrap()).await;
        assert!(!clean, "round {round}: a wrong blob ended cleanly");
        assert!(!store.contains(&digest(&d)));
        assert!(!store.data_path(&digest(&d)).exists());
        let tmp = std::fs::read_dir(store.root().join("tmp")).unwrap().count();
        assert_eq!(tmp, 0, "temp file left behind");
        // Nothing was cached, so the second round asks the upstream again.
        assert_eq!(up.seen.lock().unwrap().len(), round);
    }
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_cache_disabled_nothing_is_kept() {
    let mut reg = Registry::start();
    let pushed = Pusher::new(&reg)
        .image("off/app", "1", true, 92, 4096, "amd64")
        .await;
    let toml = format!(
        "{}[cache]\nenabled = false\n",
        proxy_config(&[("reg.test", &reg.url)], "")
    );
    let proxy = TestProxy::start(&toml).await;
    assert!(proxy.state.content.is_none());
    let url = format!("{}/v2/off/app/blobs/{}", proxy.url, pushed.blobs[1].digest);
    let (got, clean) = drain(reqwest::get(&url).await.unwrap()).await;
    assert!(clean && got == pushed.blobs[1].bytes);
    assert!(!proxy.state.config.state_dir.join("content").exists());
    block_in_place(|| reg.stop());
    assert_eq!(reqwest::get(&url).await.unwrap().status(), 502);
    proxy.shutdown().await;
}

/// Cached content is served only under a repository the upstream confirmed holds it: content
/// pulled for one repository (one policy rule) never answers for another repository's name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_content_never_crosses_into_another_repository() {
    let body = r#"
[[rules]]
name = "banned"
scope = "127.0.0.1:1/air/banned"
require = "reject"

[default]
require = "allow"
"#;
    let stack = Stack::start(Flavour::Local, body).await;
    // Allowed for now: pull it so its manifest and blobs are cached.
    stack.write_policy("[default]\nrequire = \"allow\"\n");
    assert!(matches!(
        stack.policy.reload(),
        trustgate::policy::ReloadOutcome::Replaced { .. }
    ));
    let banned = stack.push("air/banned", "1", 90).await;
    stack.push("air/other", "1", 91).await;
    let image = stack.via_proxy("air/banned", ":1");
    block_in_place(|| skopeo_copy(&image, &Transport::PlainHttp))
        .run
        .assert_success();

    // Now the image is banned; its digests asked for under an allowed repository name
    // (where the registry does not hold them) must not come from the cache.
    stack.write_policy(body);
    assert!(matches!(
        stack.policy.reload(),
        trustgate::policy::ReloadOutcome::Replaced { .. }
    ));
    let http = stack.http();
    let r = http
        .get(stack.url(&format!("/v2/air/banned/manifests/{}", banned.digest)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "the banned repository itself is refused");
    let r = http
        .get(stack.url(&format!("/v2/air/other/manifests/{}", banned.digest)))
        .header("accept", DOCKER_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "manifest must not cross repositories");
    let layer = &banned.blobs[1].digest;
    let r = http
        .get(stack.url(&format!("/v2/air/other/blobs/{layer}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "blob must not cross repositories");
}
