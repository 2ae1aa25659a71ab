//! Single-flight blob fills (issue 9): concurrent misses of one blob are one upstream GET,
//! written once and followed by every client as it arrives; ranges come from the fill; the
//! disk budget counts fills in progress; a lying upstream fails every follower and caches
//! nothing. Against the scripted in-process upstream, which counts requests and can lie.
mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use support::fake_upstream::{response, slow_chunks, FakeUpstream};
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

/// An upstream serving `served` (announced with its length) for any blob, in `parts` chunks
/// `delay` apart, counting GETs.
async fn upstream(
    served: Vec<u8>,
    parts: usize,
    delay: Duration,
) -> (FakeUpstream, Arc<AtomicUsize>) {
    let gets = Arc::new(AtomicUsize::new(0));
    let g = gets.clone();
    let up = FakeUpstream::start(move |seen| {
        let body = served.clone();
        let g = g.clone();
        async move {
            if seen.method == "GET" {
                g.fetch_add(1, Ordering::SeqCst);
            }
            let len = body.len().to_string();
            let size = body.len().div_ceil(parts).max(1);
            let chunks: Vec<Bytes> = body.chunks(size).map(Bytes::copy_from_slice).collect();
            response(
                200,
                &[
                    ("content-type", "application/octet-stream"),
                    ("content-length", &len),
                ],
                slow_chunks(chunks, delay),
            )
        }
    })
    .await;
    (up, gets)
}

fn client() -> reqwest::Client {
    // One connection per request: concurrency is real, not queued on a pool.
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_cold_gets_are_one_upstream_get() {
    let blob = det_bytes(300, 2 * 1024 * 1024);
    let d = sha256(&blob);
    let (up, gets) = upstream(blob.clone(), 20, Duration::from_millis(25)).await;
    let proxy = TestProxy::start(&proxy_config(&[("up.test", &up.url)], "")).await;
    let url = format!("{}/v2/app/blobs/{d}", proxy.url);
    let http = client();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (http, url) = (http.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let r = http.get(&url).send().await.unwrap();
            assert_eq!(r.status(), 200);
            drain(r).await
        }));
    }
    for t in tasks {
        let (got, clean) = t.await.unwrap();
        assert!(clean, "a follower was cut");
        assert!(
            got == blob,
            "a follower got other bytes ({} bytes)",
            got.len()
        );
    }
    assert_eq!(
        gets.load(Ordering::SeqCst),
        1,
        "one upstream GET for 20 clients"
    );
    let store = proxy.state.content.clone().unwrap();
    assert!(store.contains(&Digest::parse(&d).unwrap()));
    // And the next one is a hit.
    let (got, clean) = drain(http.get(&url).send().await.unwrap()).await;
    assert!(clean && got == blob);
    assert_eq!(gets.load(Ordering::SeqCst), 1);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_joining_mid_fill_gets_every_byte_and_an_early_leaver_stops_nobody() {
    let blob = det_bytes(301, 1024 * 1024);
    let d = sha256(&blob);
    // 16 chunks 100 ms apart: about 1.6 s of fill.
    let (up, gets) = upstream(blob.clone(), 16, Duration::from_millis(100)).await;
    let proxy = TestProxy::start(&proxy_config(&[("up.test", &up.url)], "")).await;
    let url = format!("{}/v2/app/blobs/{d}", proxy.url);
    let http = client();

    // The first client reads a little and goes away.
    let mut first = http.get(&url).send().await.unwrap();
    assert_eq!(first.status(), 200);
    let _ = first.chunk().await.unwrap();
    drop(first);
    // A second one follows the fill mid-way: it must get the bytes written so far, then
    // the rest, from the same single upstream GET.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let fills = proxy.state.fills.clone();
    assert_eq!(
        fills.in_progress(),
        1,
        "the fill goes on without its first client"
    );
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (got, clean) = drain(r).await;
    assert!(clean && got == blob, "late joiner got {} bytes", got.len());
    assert_eq!(gets.load(Ordering::SeqCst), 1);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_range_is_cut_from_the_verified_fill_not_passed_through() {
    let blob = det_bytes(302, 512 * 1024);
    let d = sha256(&blob);
    let (up, gets) = upstream(blob.clone(), 8, Duration::from_millis(50)).await;
    let proxy = TestProxy::start(&proxy_config(&[("up.test", &up.url)], "")).await;
    let url = format!("{}/v2/app/blobs/{d}", proxy.url);
    let http = client();
    let whole = {
        let (http, url) = (http.clone(), url.clone());
        tokio::spawn(async move { drain(http.get(&url).send().await.unwrap()).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = http
        .get(&url)
        .header("range", "bytes=1000-300999")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 1000-300999/{}", blob.len()).as_str()
    );
    let (got, clean) = drain(r).await;
    assert!(clean && got == blob[1000..301000], "range from the fill");
    let (got, clean) = whole.await.unwrap();
    assert!(clean && got == blob);
    // The upstream never saw a Range: only whole blobs are fetched (and verified).
    let seen = up.seen();
    assert!(seen.iter().all(|s| !s.headers.contains_key("range")));
    assert_eq!(gets.load(Ordering::SeqCst), 1);

    // A cold range alone starts a whole-blob fill (a new repository: its own fill).
    let url2 = format!("{}/v2/other/blobs/{d}", proxy.url);
    let r = http
        .get(&url2)
        .header("range", "bytes=-10")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    let (got, clean) = drain(r).await;
    assert!(clean && got == blob[blob.len() - 10..]);
    assert_eq!(gets.load(Ordering::SeqCst), 2);
    assert!(up.seen().iter().all(|s| !s.headers.contains_key("range")));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_upstream_cuts_every_follower_and_caches_nothing() {
    let blob = det_bytes(303, 1024 * 1024);
    let d = sha256(&blob);
    let mut lie = blob.clone();
    lie[700 * 1024] ^= 1; // same length, one bit off
    let (up, gets) = upstream(lie, 16, Duration::from_millis(30)).await;
    let proxy = TestProxy::start(&proxy_config(&[("up.test", &up.url)], "")).await;
    let url = format!("{}/v2/app/blobs/{d}", proxy.url);
    let http = client();
    let mut tasks = Vec::new();
    for i in 0..5 {
        let (http, url) = (http.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(40 * i)).await;
            let r = http.get(&url).send().await.unwrap();
            assert_eq!(r.status(), 200);
            drain(r).await
        }));
    }
    for t in tasks {
        let (got, clean) = t.await.unwrap();
        assert!(!clean, "a follower of a lying fill ended cleanly");
        assert!(
            got.len() < blob.len(),
            "a follower got the whole wrong blob"
        );
    }
    assert_eq!(
        gets.load(Ordering::SeqCst),
        1,
        "the followers shared the fill"
    );
    let store = proxy.state.content.clone().unwrap();
    assert!(
        !store.contains(&Digest::parse(&d).unwrap()),
        "nothing cached"
    );
    assert_eq!(store.reserved_bytes(), 0, "the reservation was given back");
    let tmp: Vec<_> = std::fs::read_dir(store.root().join("tmp"))
        .unwrap()
        .collect();
    assert!(tmp.is_empty(), "temp files left: {tmp:?}");
    // The next request asks again.
    let (_, clean) = drain(http.get(&url).send().await.unwrap()).await;
    assert!(!clean);
    assert_eq!(gets.load(Ordering::SeqCst), 2);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_fills_stay_inside_the_budget() {
    // A budget of 2.25 MiB and three different cold 1 MiB blobs filling at once: the three
    // reservations cannot all fit, so one blob is streamed (verified) without being cached,
    // and the bytes on disk — published entries plus temp files of fills in progress —
    // never exceed the budget.
    let blobs: Vec<Vec<u8>> = (0..3).map(|i| det_bytes(310 + i, 1024 * 1024)).collect();
    let by_digest: std::collections::HashMap<String, Vec<u8>> =
        blobs.iter().map(|b| (sha256(b), b.clone())).collect();
    let gets = Arc::new(AtomicUsize::new(0));
    let g = gets.clone();
    let up = FakeUpstream::start(move |seen| {
        let body = by_digest
            .iter()
            .find(|(d, _)| seen.target.ends_with(d.as_str()))
            .map(|(_, b)| b.clone())
            .unwrap_or_default();
        g.fetch_add(1, Ordering::SeqCst);
        async move {
            let len = body.len().to_string();
            let chunks: Vec<Bytes> = body.chunks(64 * 1024).map(Bytes::copy_from_slice).collect();
            response(
                200,
                &[("content-length", &len)],
                slow_chunks(chunks, Duration::from_millis(30)),
            )
        }
    })
    .await;
    let max = 9 * 256 * 1024u64;
    let cfg = format!(
        "{}\n[cache]\nmax_bytes = {max}\nmin_free_bytes = 0\n",
        proxy_config(&[("up.test", &up.url)], "")
    );
    let proxy = TestProxy::start(&cfg).await;
    let store = proxy.state.content.clone().unwrap();
    let http = client();
    let mut tasks = Vec::new();
    for b in &blobs {
        let url = format!("{}/v2/app/blobs/{}", proxy.url, sha256(b));
        let http = http.clone();
        tasks.push(tokio::spawn(async move {
            drain(http.get(&url).send().await.unwrap()).await
        }));
    }
    let watch = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut peak = 0;
            for _ in 0..100 {
                let tmp: u64 = std::fs::read_dir(store.root().join("tmp"))
                    .map(|d| {
                        d.filter_map(|e| e.ok()?.metadata().ok())
                            .map(|m| m.len())
                            .sum()
                    })
                    .unwrap_or(0);
                assert!(store.held_bytes() + store.reserved_bytes() <= max);
                peak = peak.max(store.held_bytes() + tmp);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            peak
        })
    };
    for (t, b) in tasks.into_iter().zip(&blobs) {
        let (got, clean) = t.await.unwrap();
        assert!(
            clean && got == *b,
            "every client still gets its verified blob"
        );
    }
    let peak = watch.await.unwrap();
    assert!(peak <= max, "held + temp bytes peaked at {peak} > {max}");
    assert!(peak > 0);
    let held = blobs
        .iter()
        .filter(|b| store.contains(&Digest::parse(&sha256(b)).unwrap()))
        .count();
    assert_eq!(held, 2, "two fit in the budget, the third was not cached");
    assert_eq!(store.reserved_bytes(), 0);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_that_would_cross_the_free_space_floor_is_served_but_not_cached() {
    let blob = det_bytes(320, 256 * 1024);
    let d = sha256(&blob);
    let (up, gets) = upstream(blob.clone(), 4, Duration::from_millis(1)).await;
    // A floor no disk here has free: nothing may be cached, everything is still served.
    let cfg = format!(
        "{}\n[cache]\nmin_free_bytes = {}\n",
        proxy_config(&[("up.test", &up.url)], ""),
        u64::MAX / 2
    );
    let proxy = TestProxy::start(&cfg).await;
    let url = format!("{}/v2/app/blobs/{d}", proxy.url);
    let http = client();
    for n in 1..=2 {
        let (got, clean) = drain(http.get(&url).send().await.unwrap()).await;
        assert!(clean && got == blob);
        assert_eq!(gets.load(Ordering::SeqCst), n, "not cached, so asked again");
    }
    let store = proxy.state.content.clone().unwrap();
    assert!(!store.contains(&Digest::parse(&d).unwrap()));
    assert_eq!(store.reserved_bytes(), 0);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_cold_manifest_gets_are_one_upstream_get() {
    const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 2, "digest": sha256(b"{}")},
        "layers": [],
    }))
    .unwrap();
    let md = sha256(&manifest);
    let gets = Arc::new(AtomicUsize::new(0));
    let (g, m) = (gets.clone(), manifest.clone());
    let up = FakeUpstream::start(move |seen| {
        let (g, m) = (g.clone(), m.clone());
        async move {
            if seen.method == "GET" && seen.target.contains("/manifests/") {
                g.fetch_add(1, Ordering::SeqCst);
            }
            // Slow enough that every client asks while the first fetch is in flight.
            tokio::time::sleep(Duration::from_millis(500)).await;
            response(
                200,
                &[("content-type", OCI_MANIFEST)],
                support::fake_upstream::full(m),
            )
        }
    })
    .await;
    let proxy = TestProxy::start(&proxy_config(&[("up.test", &up.url)], "")).await;
    let url = format!("{}/v2/app/manifests/{md}", proxy.url);
    let http = client();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (http, url) = (http.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let r = http
                .get(&url)
                .header("accept", OCI_MANIFEST)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), manifest);
    }
    assert_eq!(
        gets.load(Ordering::SeqCst),
        1,
        "one upstream GET for 50 clients"
    );
    proxy.shutdown().await;
}
