//! trustgate against upstreams that lie, hang, rate-limit or paginate: scripted in-process
//! servers. Each test names the property it protects and fails if the property is removed.
mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use support::fake_upstream::{chunks, full, response, slow_chunks, FakeUpstream};
use support::registry::{det_bytes, proxy_config, sha256, TestProxy, DOCKER_MANIFEST};

const FAKE: &str = "fake.test";

async fn proxy_for(up: &FakeUpstream, extra_upstream: &str, top: &str) -> TestProxy {
    // `top` holds whole tables ([limits]), so it goes after the upstream tables.
    let cfg = format!(
        "{}\n{top}",
        proxy_config(&[(FAKE, &up.url)], extra_upstream)
    );
    TestProxy::start(&cfg).await
}

async fn envelope(r: reqwest::Response) -> (u16, String, String) {
    let status = r.status().as_u16();
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    (
        status,
        v["errors"][0]["code"].as_str().unwrap_or("").to_string(),
        v["errors"][0]["message"].as_str().unwrap_or("").to_string(),
    )
}

fn manifest_bytes(seed: u64) -> Vec<u8> {
    format!("{{\"schemaVersion\":2,\"mediaType\":\"{DOCKER_MANIFEST}\",\"seed\":{seed}}}")
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_by_digest_with_wrong_bytes_is_refused_with_502() {
    let good = manifest_bytes(1);
    let served = manifest_bytes(2);
    let good_digest = sha256(&good);
    let served_digest = sha256(&served);
    let served2 = served.clone();
    let up = FakeUpstream::start(move |_| {
        let body = served2.clone();
        async move { response(200, &[("content-type", DOCKER_MANIFEST)], full(body)) }
    })
    .await;
    let proxy = proxy_for(&up, "", "").await;
    let http = reqwest::Client::new();
    let url = format!("{}/v2/lie/manifests/{good_digest}", proxy.url);
    let (s, code, msg) = envelope(http.get(&url).send().await.unwrap()).await;
    assert_eq!((s, code.as_str()), (502, "MANIFEST_INVALID"));
    assert!(msg.contains(FAKE), "{msg}");
    assert!(
        msg.contains(&good_digest) && msg.contains(&served_digest),
        "{msg}"
    );
    // HEAD agrees with GET: also refused.
    let r = http.head(&url).send().await.unwrap();
    assert_eq!(r.status(), 502);
    // Control: asking for the digest of what it serves succeeds, byte-identical.
    let r = http
        .get(format!("{}/v2/lie/manifests/{served_digest}", proxy.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["docker-content-digest"], served_digest.as_str());
    assert_eq!(r.bytes().await.unwrap().as_ref(), served.as_slice());
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_manifest_whose_claimed_digest_differs_is_refused() {
    let served = manifest_bytes(3);
    let claimed = sha256(b"something else");
    let c2 = claimed.clone();
    let up = FakeUpstream::start(move |_| {
        let body = served.clone();
        let claimed = c2.clone();
        async move {
            response(
                200,
                &[
                    ("content-type", DOCKER_MANIFEST),
                    ("docker-content-digest", &claimed),
                ],
                full(body),
            )
        }
    })
    .await;
    let proxy = proxy_for(&up, "", "").await;
    let r = reqwest::get(format!("{}/v2/lie/manifests/latest", proxy.url))
        .await
        .unwrap();
    let (s, _, msg) = envelope(r).await;
    assert_eq!(s, 502);
    assert!(msg.contains(&claimed), "{msg}");
    proxy.shutdown().await;
}

/// Reads a body to its end, returning the bytes received and whether it ended cleanly.
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

/// Serves `lie` whatever blob is asked for.
async fn blob_liar(lie: Vec<u8>, with_length: bool) -> FakeUpstream {
    FakeUpstream::start(move |_| {
        let body = lie.clone();
        async move {
            let parts: Vec<Bytes> = body.chunks(64 * 1024).map(Bytes::copy_from_slice).collect();
            let len = body.len().to_string();
            let mut headers = vec![("content-type", "application/octet-stream")];
            if with_length {
                headers.push(("content-length", len.as_str()));
            }
            response(200, &headers, chunks(parts))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_with_wrong_digest_cuts_the_connection_never_a_clean_end() {
    let real = det_bytes(7, 3 * 1024 * 1024 + 5);
    let mut lie = real.clone();
    // Same length, last byte flipped: only the final hash can tell.
    let n = lie.len();
    lie[n - 1] ^= 0xff;
    let digest = sha256(&real);
    for with_length in [true, false] {
        let up = blob_liar(lie.clone(), with_length).await;
        let proxy = proxy_for(&up, "", "").await;
        let r = reqwest::get(format!("{}/v2/lie/blobs/{digest}", proxy.url))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let (got, clean) = drain(r).await;
        assert!(
            !clean,
            "wrong blob ended cleanly (content-length: {with_length})"
        );
        assert!(
            got.len() < lie.len(),
            "client received the complete wrong blob"
        );
        assert!(got != lie);
        // Control: the same bytes asked for under their true digest pass untouched.
        let other = sha256(&lie);
        let r = reqwest::get(format!("{}/v2/lie/blobs/{other}", proxy.url))
            .await
            .unwrap();
        let (got, clean) = drain(r).await;
        assert!(clean && got == lie, "control blob broken");
        proxy.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correct_blob_streams_through_complete() {
    let real = det_bytes(8, 2 * 1024 * 1024);
    let digest = sha256(&real);
    let r2 = real.clone();
    let up = FakeUpstream::start(move |_| {
        let parts: Vec<Bytes> = r2.chunks(100_000).map(Bytes::copy_from_slice).collect();
        async move { response(200, &[], chunks(parts)) }
    })
    .await;
    let proxy = proxy_for(&up, "", "").await;
    let r = reqwest::get(format!("{}/v2/ok/blobs/{digest}", proxy.url))
        .await
        .unwrap();
    let (got, clean) = drain(r).await;
    assert!(clean && got == real);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_manifests_are_refused_even_without_content_length() {
    let big = {
        let mut m = manifest_bytes(9);
        m.truncate(m.len() - 1);
        m.extend(format!(",\"pad\":\"{}\"}}", "x".repeat(3000)).into_bytes());
        m
    };
    let digest = sha256(&big);
    for with_length in [true, false] {
        let b2 = big.clone();
        let up = FakeUpstream::start(move |_| {
            let b = b2.clone();
            async move {
                let len = b.len().to_string();
                let mut h = vec![("content-type", DOCKER_MANIFEST)];
                if with_length {
                    h.push(("content-length", len.as_str()));
                }
                let parts = b.chunks(500).map(Bytes::copy_from_slice).collect();
                response(200, &h, chunks(parts))
            }
        })
        .await;
        let proxy = proxy_for(&up, "", "[limits]\nmanifest_max_bytes = 2000\n").await;
        let r = reqwest::get(format!("{}/v2/big/manifests/{digest}", proxy.url))
            .await
            .unwrap();
        let (s, code, _) = envelope(r).await;
        assert_eq!(
            (s, code.as_str()),
            (502, "SIZE_INVALID"),
            "content-length: {with_length}"
        );
        proxy.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_upstream_gives_504_within_the_timeout() {
    let up = FakeUpstream::start(|_| async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        response(200, &[], full(Vec::new()))
    })
    .await;
    let proxy = proxy_for(&up, "request_timeout = \"1s\"", "").await;
    let start = Instant::now();
    // Bounded here too, so a proxy without the timeout fails the test instead of hanging it.
    let r = tokio::time::timeout(
        Duration::from_secs(30),
        reqwest::get(format!("{}/v2/slow/manifests/v1", proxy.url)),
    )
    .await
    .expect("no answer: the upstream hang reached the client")
    .unwrap();
    let (s, _, msg) = envelope(r).await;
    let took = start.elapsed();
    assert_eq!(s, 504);
    assert!(msg.contains(FAKE) && msg.contains("slow"), "{msg}");
    assert!(
        took >= Duration::from_millis(900),
        "answered before the timeout: {took:?}"
    );
    // Generous bound: the point is that the timeout, not the hang, decides.
    assert!(took < Duration::from_secs(20), "took {took:?}");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_passes_429_with_retry_after() {
    let up = FakeUpstream::start(|_| async {
        response(
            429,
            &[("retry-after", "17"), ("content-type", "application/json")],
            full(r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#),
        )
    })
    .await;
    let proxy = proxy_for(&up, "", "").await;
    let r = reqwest::get(format!("{}/v2/busy/manifests/v1", proxy.url))
        .await
        .unwrap();
    assert_eq!(r.headers()["retry-after"], "17");
    let (s, code, msg) = envelope(r).await;
    assert_eq!((s, code.as_str()), (429, "TOOMANYREQUESTS"));
    assert!(msg.contains(FAKE) && msg.contains("busy"), "{msg}");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_list_link_is_rewritten_to_the_proxy_in_the_clients_form() {
    let up = FakeUpstream::start(|seen| async move {
        let link = "<http://upstream.invalid/v2/x/tags/list?last=b&n=2&evil=1>; rel=\"next\"";
        assert!(seen.target.starts_with("/v2/x/tags/list"));
        response(
            200,
            &[("content-type", "application/json"), ("link", link)],
            full(r#"{"name":"x","tags":["a","b"]}"#),
        )
    })
    .await;
    let proxy = proxy_for(&up, "", "").await;
    let get_link = |url: String| async move {
        let r = reqwest::get(url).await.unwrap();
        assert_eq!(r.status(), 200);
        r.headers()["link"].to_str().unwrap().to_string()
    };
    let p = &proxy.url;
    assert_eq!(
        get_link(format!("{p}/v2/x/tags/list?n=2")).await,
        "</v2/x/tags/list?last=b&n=2>; rel=\"next\""
    );
    assert_eq!(
        get_link(format!("{p}/v2/x/tags/list?n=2&ns={FAKE}")).await,
        format!("</v2/x/tags/list?last=b&n=2&ns={FAKE}>; rel=\"next\"")
    );
    assert_eq!(
        get_link(format!("{p}/v2/{FAKE}/x/tags/list?n=2")).await,
        format!("</v2/{FAKE}/x/tags/list?last=b&n=2>; rel=\"next\"")
    );
    // Only n and last are forwarded upstream.
    assert!(
        up.seen().iter().all(|s| s.target == "/v2/x/tags/list?n=2"),
        "{:?}",
        up.seen()
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referrers_pass_through_with_artifact_type() {
    let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
    let up = FakeUpstream::start(move |_| async move {
        response(
            200,
            &[
                ("content-type", "application/vnd.oci.image.index.v1+json"),
                ("oci-filters-applied", "artifactType"),
            ],
            full(&index[..]),
        )
    })
    .await;
    let proxy = proxy_for(&up, "", "").await;
    let d = sha256(b"subject");
    let r = reqwest::get(format!(
        "{}/v2/x/referrers/{d}?artifactType=application%2Fvnd.example",
        proxy.url
    ))
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["oci-filters-applied"], "artifactType");
    assert_eq!(r.bytes().await.unwrap().as_ref(), &index[..]);
    assert_eq!(
        up.seen()[0].target,
        format!("/v2/x/referrers/{d}?artifactType=application%2Fvnd.example")
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_accept_is_forwarded_and_a_missing_one_replaced() {
    let m = manifest_bytes(4);
    let up = FakeUpstream::start(move |_| {
        let m = m.clone();
        // No Content-Type: the proxy takes the type the manifest names itself.
        async move { response(200, &[], full(m)) }
    })
    .await;
    let proxy = proxy_for(&up, "", "").await;
    let http = reqwest::Client::new();
    let url = format!("{}/v2/a/manifests/v1", proxy.url);
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.headers()["content-type"], DOCKER_MANIFEST);
    http.get(&url)
        .header("accept", "application/vnd.oci.image.index.v1+json")
        .send()
        .await
        .unwrap();
    let seen = up.seen();
    let accept0 = seen[0].headers["accept"].to_str().unwrap();
    for t in [
        DOCKER_MANIFEST,
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
    ] {
        assert!(accept0.contains(t), "{accept0}");
    }
    assert_eq!(
        seen[1].headers["accept"],
        "application/vnd.oci.image.index.v1+json"
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_an_in_flight_pull_finish() {
    let real = det_bytes(11, 10 * 50_000);
    let digest = sha256(&real);
    let r2 = real.clone();
    let up = FakeUpstream::start(move |_| {
        let parts: Vec<Bytes> = r2.chunks(50_000).map(Bytes::copy_from_slice).collect();
        async move { response(200, &[], slow_chunks(parts, Duration::from_millis(100))) }
    })
    .await;
    let proxy = proxy_for(&up, "", "").await;
    let url = format!("{}/v2/slow/blobs/{digest}", proxy.url);
    let mut r = reqwest::get(&url).await.unwrap();
    assert_eq!(r.status(), 200);
    let first = r.chunk().await.unwrap().unwrap();
    let addr = proxy.addr;
    proxy.shutdown_in_background();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (rest, clean) = drain(r).await;
    assert!(clean, "in-flight pull was cut by shutdown");
    let mut got = first.to_vec();
    got.extend(rest);
    assert!(got == real);
    // And no new connections are accepted.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

/// Sends `path` exactly as written (HTTP clients would normalise `%2e%2e` away) and returns
/// the status code.
async fn raw_get_status(addr: std::net::SocketAddr, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: proxy\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_paths_never_reach_the_upstream() {
    let up = FakeUpstream::start(|_| async { response(200, &[], full("{}")) }).await;
    let proxy = proxy_for(&up, "", "").await;
    let d = sha256(b"x");
    for path in [
        "/v2/a/%2e%2e/b/manifests/v1".to_string(),
        "/v2/a/../b/manifests/v1".to_string(),
        "/v2/a/./b/manifests/v1".to_string(),
        "/v2/a%2Fb/manifests/v1".to_string(),
        "/v2/a//b/manifests/v1".to_string(),
        "/v2/A/manifests/v1".to_string(),
        "/v2/a/manifests/v1%00".to_string(),
        format!("/v2/a/blobs/{}", d.to_uppercase()),
        "/v2/a/blobs/sha512:abcd".to_string(),
        "/v2/a/tags/list?last=..%2F..".to_string(),
    ] {
        let status = raw_get_status(proxy.addr, &path).await;
        assert!((400..500).contains(&status), "{path}: {status}");
    }
    assert!(up.seen().is_empty(), "reached upstream: {:?}", up.seen());
    // Control: a valid path does reach it.
    assert_eq!(raw_get_status(proxy.addr, "/v2/a/tags/list").await, 200);
    assert_eq!(up.seen().len(), 1);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_redirects_are_followed_and_still_verified() {
    let real = det_bytes(12, 200_000);
    let digest = sha256(&real);
    let r2 = real.clone();
    let storage = FakeUpstream::start(move |_| {
        let b = r2.clone();
        async move { response(200, &[], full(b)) }
    })
    .await;
    let target = format!("{}/objects/blob", storage.url);
    let up = FakeUpstream::start(move |_| {
        let t = target.clone();
        async move { response(307, &[("location", &t)], full("")) }
    })
    .await;
    let proxy = proxy_for(&up, "", "").await;
    let r = reqwest::get(format!("{}/v2/x/blobs/{digest}", proxy.url))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (got, clean) = drain(r).await;
    assert!(clean && got == real);
    assert_eq!(storage.seen().len(), 1);
    assert!(!storage.seen()[0].headers.contains_key("authorization"));
    // A redirect to bytes that do not match is cut like any other wrong blob.
    let wrong = sha256(b"not it");
    let r = reqwest::get(format!("{}/v2/x/blobs/{wrong}", proxy.url))
        .await
        .unwrap();
    let (_, clean) = drain(r).await;
    assert!(!clean);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cap_queues_clients_and_header_timeout_frees_slots() {
    let up = FakeUpstream::start(|_| async { response(200, &[], full("{}")) }).await;
    let proxy = proxy_for(
        &up,
        "",
        "[limits]\nmax_connections = 1\nheader_read_timeout = \"1s\"\n",
    )
    .await;
    // A client that connects and sends nothing holds the only slot...
    let mut idle = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let start = Instant::now();
    let url = format!("{}/v2/", proxy.url);
    let second = tokio::spawn(async move { reqwest::get(url).await.map(|r| r.status().as_u16()) });
    // ...until the header read timeout closes it; only then is the next client served.
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(20), idle.read(&mut buf))
        .await
        .expect("idle connection was never closed")
        .unwrap_or(0);
    let _ = n; // hyper may send a 408 before closing; either way the slot is freed.
    assert_eq!(second.await.unwrap().unwrap(), 200);
    assert!(
        start.elapsed() >= Duration::from_millis(700),
        "second client was served while the cap was reached ({:?})",
        start.elapsed()
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrequested_partial_content_is_refused() {
    let lie = det_bytes(13, 1000);
    let up = FakeUpstream::start(move |_| {
        let b = lie.clone();
        async move { response(206, &[("content-range", "bytes 0-999/5000")], full(b)) }
    })
    .await;
    let proxy = proxy_for(&up, "", "").await;
    let d = sha256(b"the real blob");
    let r = reqwest::get(format!("{}/v2/x/blobs/{d}", proxy.url))
        .await
        .unwrap();
    let (s, _, msg) = envelope(r).await;
    assert_eq!(s, 502);
    assert!(msg.contains(FAKE), "{msg}");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_bounded_by_the_grace_period() {
    let real = det_bytes(14, 100 * 1000);
    let digest = sha256(&real);
    let up = FakeUpstream::start(move |_| {
        let parts: Vec<Bytes> = real.chunks(1000).map(Bytes::copy_from_slice).collect();
        // 100 chunks, 200 ms apart: 20 s, far beyond the grace period.
        async move { response(200, &[], slow_chunks(parts, Duration::from_millis(200))) }
    })
    .await;
    let proxy = proxy_for(&up, "", "[limits]\nshutdown_grace = \"1s\"\n").await;
    let mut r = reqwest::get(format!("{}/v2/slow/blobs/{digest}", proxy.url))
        .await
        .unwrap();
    r.chunk().await.unwrap();
    let start = Instant::now();
    proxy.shutdown().await;
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "did not wait for the in-flight pull: {took:?}"
    );
    assert!(
        took < Duration::from_secs(10),
        "shutdown not bounded: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema1_manifests_are_refused_with_a_reason() {
    let up = FakeUpstream::start(|_| async {
        response(
            200,
            &[(
                "content-type",
                "application/vnd.docker.distribution.manifest.v1+prettyjws",
            )],
            full(r#"{"schemaVersion":1,"signatures":[]}"#),
        )
    })
    .await;
    let proxy = proxy_for(&up, "", "").await;
    let r = reqwest::get(format!("{}/v2/old/manifests/v1", proxy.url))
        .await
        .unwrap();
    let (s, code, msg) = envelope(r).await;
    assert_eq!((s, code.as_str()), (502, "MANIFEST_INVALID"));
    assert!(msg.contains("schema1") && msg.contains(FAKE), "{msg}");
    proxy.shutdown().await;
}
