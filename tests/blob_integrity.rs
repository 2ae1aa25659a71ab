//! Every blob byte trustgate serves — from the upstream or from its disk cache — is checked
//! against the digest before the client sees a clean end. Against a scripted in-process
//! upstream (lying lengths) and a cache file damaged on disk.
mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use support::fake_upstream::{chunks, full, response, FakeUpstream};
use support::registry::{det_bytes, proxy_config, sha256, TestProxy};
use trustgate::registry::Digest;

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

/// An honest upstream serving `blob` (with its length, in chunks) and counting blob GETs.
async fn honest(blob: Vec<u8>) -> (FakeUpstream, Arc<AtomicUsize>) {
    let gets = Arc::new(AtomicUsize::new(0));
    let g = gets.clone();
    let up = FakeUpstream::start(move |seen| {
        let body = blob.clone();
        let g = g.clone();
        async move {
            if seen.method == "GET" {
                g.fetch_add(1, Ordering::SeqCst);
            }
            let len = body.len().to_string();
            let parts: Vec<Bytes> = body.chunks(16 * 1024).map(Bytes::copy_from_slice).collect();
            response(
                200,
                &[
                    ("content-type", "application/octet-stream"),
                    ("content-length", &len),
                ],
                chunks(parts),
            )
        }
    })
    .await;
    (up, gets)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_same_length_corruption_on_disk_is_cut_dropped_and_refetched() {
    let blob = det_bytes(200, 300 * 1024);
    let d = sha256(&blob);
    let (up, gets) = honest(blob.clone()).await;
    let proxy = TestProxy::start(&proxy_config(&[("up.test", &up.url)], "")).await;
    let store = proxy.state.content.clone().expect("cache on by default");
    let digest = Digest::parse(&d).unwrap();
    let url = format!("{}/v2/app/blobs/{d}", proxy.url);
    let http = reqwest::Client::new();

    let (got, clean) = drain(http.get(&url).send().await.unwrap()).await;
    assert!(clean && got == blob);
    assert!(store.contains(&digest), "cached after a verified fetch");
    assert_eq!(gets.load(Ordering::SeqCst), 1);

    // Bit rot: one byte flipped, the length unchanged (the length check cannot see it).
    let flip = |at: usize| {
        let path = store.data_path(&digest);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[at] ^= 0x40;
        std::fs::write(&path, bytes).unwrap();
    };
    flip(1234);
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (got, clean) = drain(r).await;
    assert!(!clean, "a corrupted cached blob ended cleanly");
    assert!(got.len() < blob.len(), "the whole damaged blob was sent");
    assert_eq!(
        gets.load(Ordering::SeqCst),
        1,
        "served from disk, not upstream"
    );
    assert!(!store.contains(&digest), "the damaged entry is dropped");

    // The next request fetches it again, whole and correct, and caches it again.
    let (got, clean) = drain(http.get(&url).send().await.unwrap()).await;
    assert!(clean && got == blob, "refetched whole");
    assert_eq!(gets.load(Ordering::SeqCst), 2);
    assert!(store.contains(&digest));

    // A byte range of a damaged file (damage outside the range) is never a clean answer: the
    // whole file is hashed while the range streams, so the connection is cut — before the
    // headers when the hash finishes first, after them otherwise (both are fail-closed).
    flip(200 * 1024);
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    match fresh.get(&url).header("range", "bytes=0-99").send().await {
        Err(e) => assert!(e.is_request(), "{e}"),
        Ok(r) => {
            assert_eq!(r.status(), 206);
            assert_eq!(r.headers()["content-length"], "100");
            let (got, clean) = drain(r).await;
            assert!(
                !clean,
                "a range of a corrupted blob ended cleanly ({} bytes)",
                got.len()
            );
        }
    }
    assert!(!store.contains(&digest));
    // An intact file still serves ranges cleanly.
    let (_, clean) = drain(http.get(&url).send().await.unwrap()).await;
    assert!(clean);
    let r = http
        .get(&url)
        .header("range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    let (got, clean) = drain(r).await;
    assert!(clean && got == blob[100..200]);
    proxy.shutdown().await;
}

/// An upstream answering every blob GET with `200, Content-Length: 0` and no bytes.
async fn empty_liar() -> FakeUpstream {
    FakeUpstream::start(|_| async move {
        response(
            200,
            &[
                ("content-type", "application/octet-stream"),
                ("content-length", "0"),
            ],
            full(Bytes::new()),
        )
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_zero_for_a_non_empty_digest_is_a_502_on_http1() {
    let up = empty_liar().await;
    let cfg = format!(
        "{}\n[cache]\nenabled = false\n",
        proxy_config(&[("up.test", &up.url)], "")
    );
    let proxy = TestProxy::start(&cfg).await;
    let d = sha256(b"hello");
    let http = reqwest::Client::builder().http1_only().build().unwrap();
    let r = http
        .get(format!("{}/v2/app/blobs/{d}", proxy.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        502,
        "an unverified clean 200 with Content-Length: 0 for {d}"
    );
    let r = http
        .head(format!("{}/v2/app/blobs/{d}", proxy.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);

    // The empty blob is empty: served.
    let empty = sha256(b"");
    let r = http
        .get(format!("{}/v2/app/blobs/{empty}", proxy.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (got, clean) = drain(r).await;
    assert!(clean && got.is_empty());
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_length_other_than_the_verified_descriptor_size_is_a_502() {
    const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    let layer = det_bytes(210, 1000);
    let config = b"{}".to_vec();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": config.len(), "digest": sha256(&config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "size": layer.len(), "digest": sha256(&layer)}],
    }))
    .unwrap();
    let md = sha256(&manifest);
    let (m2, short) = (manifest.clone(), layer[..999].to_vec());
    // Serves the manifest honestly, and the layer one byte short (with that shorter length).
    let up = FakeUpstream::start(move |seen| {
        let (m, short) = (m2.clone(), short.clone());
        async move {
            if seen.target.contains("/manifests/") {
                response(200, &[("content-type", OCI_MANIFEST)], full(m))
            } else {
                let len = short.len().to_string();
                response(
                    200,
                    &[
                        ("content-type", "application/octet-stream"),
                        ("content-length", &len),
                    ],
                    full(short),
                )
            }
        }
    })
    .await;
    let proxy = TestProxy::start(&proxy_config(&[("up.test", &up.url)], "")).await;
    let http = reqwest::Client::new();
    let r = http
        .get(format!("{}/v2/app/manifests/{md}", proxy.url))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .get(format!("{}/v2/app/blobs/{}", proxy.url, sha256(&layer)))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        502,
        "a length the verified manifest rules out was answered with headers"
    );
    proxy.shutdown().await;
}
