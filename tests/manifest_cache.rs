//! The verified-manifest cache on the request path: a manifest fetched and checked by digest
//! once is served from memory afterwards (content-addressed, so it cannot be stale), without
//! another upstream round trip, and only within the repository it was fetched for.
mod support;

use support::fake_upstream::{full, response, FakeUpstream};
use support::registry::{proxy_config, sha256, TestProxy, DOCKER_MANIFEST};

const FAKE: &str = "fake.test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_by_digest_is_fetched_upstream_once_per_repository() {
    let manifest =
        format!("{{\"schemaVersion\":2,\"mediaType\":\"{DOCKER_MANIFEST}\",\"seed\":7}}")
            .into_bytes();
    let digest = sha256(&manifest);
    let served = manifest.clone();
    let up = FakeUpstream::start(move |_| {
        let body = served.clone();
        async move { response(200, &[("content-type", DOCKER_MANIFEST)], full(body)) }
    })
    .await;
    let proxy = TestProxy::start(&proxy_config(&[(FAKE, &up.url)], "")).await;
    let http = reqwest::Client::new();
    let get = |repo: &'static str| {
        let url = format!("{}/v2/{repo}/manifests/{digest}", proxy.url);
        let http = http.clone();
        async move {
            http.get(url)
                .header("accept", DOCKER_MANIFEST)
                .send()
                .await
                .unwrap()
        }
    };
    let manifest_requests = |repo: &str| {
        up.seen()
            .iter()
            .filter(|s| s.target.starts_with(&format!("/v2/{repo}/manifests/")))
            .count()
    };

    for _ in 0..3 {
        let r = get("app").await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
        assert_eq!(
            r.bytes().await.unwrap(),
            manifest,
            "byte-identical from the cache"
        );
    }
    assert_eq!(
        manifest_requests("app"),
        1,
        "later GETs must come from the cache"
    );

    // Another repository does not get the first one's entry: it asks its upstream.
    assert_eq!(get("other").await.status(), 200);
    assert_eq!(manifest_requests("other"), 1);
}
