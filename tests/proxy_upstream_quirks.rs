//! Upstream behaviours that cost clients time or quota: an error body that stalls after its
//! headers (PROXY-REVIEW D12), and a HEAD by tag answered from a whole GET whose bytes were
//! then thrown away, so the client's GET by digest was a second upstream pull (D19).
mod support;

use std::time::Duration;

use bytes::Bytes;
use support::fake_upstream::{full, response, slow_chunks, FakeUpstream};
use support::registry::{proxy_config, sha256, TestProxy, DOCKER_MANIFEST};

const FAKE: &str = "fake.test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_error_body_does_not_hold_the_client() {
    let up = FakeUpstream::start(|_| async {
        // 404 headers announcing 100 bytes, then 10 bytes a minute: the body never completes
        // within the test.
        response(
            404,
            &[
                ("content-length", "100"),
                ("content-type", "application/json"),
            ],
            slow_chunks(
                vec![Bytes::from_static(b"{\"errors\":"); 10],
                Duration::from_secs(60),
            ),
        )
    })
    .await;
    let proxy = TestProxy::start(&proxy_config(&[(FAKE, &up.url)], "")).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    // The idle timeout is 90 s: before the fix this hung until the client's own 20 s bound.
    let r = client
        .get(format!("{}/v2/app/manifests/v1", proxy.url))
        .send()
        .await
        .expect("trustgate did not answer while the upstream's error body stalled");
    assert_eq!(r.status(), 404);
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(v["errors"][0]["code"], "MANIFEST_UNKNOWN", "{v}");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_by_tag_then_get_by_digest_is_one_upstream_pull() {
    let manifest =
        format!("{{\"schemaVersion\":2,\"mediaType\":\"{DOCKER_MANIFEST}\",\"seed\":19}}");
    let digest = sha256(manifest.as_bytes());
    let served = manifest.clone();
    let d = digest.clone();
    let up = FakeUpstream::start(move |_| {
        let (m, d) = (served.clone(), d.clone());
        async move {
            response(
                200,
                &[
                    ("content-type", DOCKER_MANIFEST),
                    ("docker-content-digest", &d),
                ],
                full(m),
            )
        }
    })
    .await;
    let proxy = TestProxy::start(&proxy_config(&[(FAKE, &up.url)], "")).await;
    let http = reqwest::Client::new();
    let head = http
        .head(format!("{}/v2/app/manifests/v1", proxy.url))
        .header("accept", DOCKER_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["docker-content-digest"], digest.as_str());
    let get = http
        .get(format!("{}/v2/app/manifests/{digest}", proxy.url))
        .header("accept", DOCKER_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 200);
    assert_eq!(get.bytes().await.unwrap().as_ref(), manifest.as_bytes());
    let manifest_requests = up
        .seen()
        .iter()
        .filter(|s| s.target.contains("/manifests/"))
        .count();
    assert_eq!(
        manifest_requests,
        1,
        "HEAD by tag then GET by digest went upstream {manifest_requests} times: {:?}",
        up.seen()
            .iter()
            .map(|s| format!("{} {}", s.method, s.target))
            .collect::<Vec<_>>()
    );
    proxy.shutdown().await;
}

/// PROXY-REVIEW D10: every in-flight manifest buffered up to 4 MiB with no global bound.
/// With a budget of one manifest, a second read waits, and past its upstream's request
/// timeout is refused with 503 instead of growing memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_manifest_bytes_are_bounded_across_requests() {
    let slow = FakeUpstream::start(|_| async {
        response(
            200,
            &[
                ("content-type", DOCKER_MANIFEST),
                ("content-length", "65536"),
            ],
            slow_chunks(
                vec![Bytes::from(vec![b' '; 32768]); 2],
                Duration::from_secs(4),
            ),
        )
    })
    .await;
    let quick = FakeUpstream::start(|_| async {
        response(200, &[("content-type", DOCKER_MANIFEST)], full("{}"))
    })
    .await;
    let cfg = format!(
        "default_upstream = \"slow.test\"\n\
         [[upstream]]\nname = \"slow.test\"\nurl = \"{}\"\nrequest_timeout = \"20s\"\n\
         [[upstream]]\nname = \"quick.test\"\nurl = \"{}\"\nrequest_timeout = \"1s\"\n\
         [limits]\nmanifest_max_bytes = 65536\nmax_buffered_bytes = 65536\n",
        slow.url, quick.url
    );
    let proxy = TestProxy::start(&cfg).await;
    let url = proxy.url.clone();
    let first = tokio::spawn(async move {
        reqwest::get(format!("{url}/v2/app/manifests/v1"))
            .await
            .unwrap()
            .status()
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = reqwest::get(format!("{}/v2/app/manifests/v1?ns=quick.test", proxy.url))
        .await
        .unwrap();
    assert_eq!(r.status(), 503, "a read beyond the budget was not refused");
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("busy"),
        "{v}"
    );
    assert_eq!(
        first.await.unwrap(),
        200,
        "the read holding the budget completes"
    );
    // Once released, the budget serves again.
    let r = reqwest::get(format!("{}/v2/app/manifests/v1?ns=quick.test", proxy.url))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    proxy.shutdown().await;
}
