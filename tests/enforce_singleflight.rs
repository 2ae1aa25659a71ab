//! 50 concurrent pulls of one uncached tag cost one fetch of each metadata file at the real
//! trust server: resolutions are shared (single-flight), not repeated per request.
mod support;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::notary::Flavour;
use support::stack::Stack;
use tokio::task::block_in_place;

type Counts = Arc<Mutex<BTreeMap<String, usize>>>;

/// A counting HTTP forwarder on 127.0.0.1:0 in front of the real notary-server.
async fn counting_forwarder(target: String, ca: std::path::PathBuf) -> (String, Counts) {
    let counts: Counts = Arc::default();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let c = counts.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (client, target, counts) = (client.clone(), target.clone(), c.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (client, target, counts) = (client.clone(), target.clone(), counts.clone());
                    async move {
                        let path = req.uri().path().to_string();
                        *counts.lock().unwrap().entry(path.clone()).or_default() += 1;
                        let resp = client.get(format!("{target}{path}")).send().await.unwrap();
                        let status = resp.status();
                        let body = resp.bytes().await.unwrap();
                        let mut out = hyper::Response::new(Full::new(body));
                        *out.status_mut() = status;
                        Ok::<_, Infallible>(out)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (format!("http://{addr}"), counts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_pulls_of_an_uncached_tag_fetch_each_metadata_file_once() {
    let stack = Stack::start(Flavour::Local, "[default]\nrequire = \"allow\"\n").await;
    let pushed = stack.push("e2e/hot", "1.0", 70).await;
    block_in_place(|| stack.sign("e2e/hot", "1.0", &pushed.manifest, &[]));
    let (fwd, counts) =
        counting_forwarder(stack.notary.url.clone(), stack.notary.ca_path.clone()).await;
    stack.write_policy(&format!(
        "[trust_servers.counted]\nurl = {fwd:?}\n[default]\nrequire = \"signed\"\ntrust_server = \"counted\"\n"
    ));
    assert!(matches!(
        stack.policy.reload(),
        trustgate::policy::ReloadOutcome::Replaced { .. }
    ));

    let http = stack.http();
    let url = stack.url("/v2/e2e/hot/manifests/1.0");
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (http, url) = (http.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let r = http
                .get(url)
                .header(
                    "accept",
                    "application/vnd.docker.distribution.manifest.v2+json",
                )
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.bytes().await.unwrap())
        }));
    }
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(body, Bytes::from(pushed.manifest.clone()));
    }
    let counts = counts.lock().unwrap().clone();
    assert!(
        counts.keys().any(|k| k.ends_with("/timestamp.json")),
        "the trust server was asked at all: {counts:?}"
    );
    for (path, n) in &counts {
        assert_eq!(*n, 1, "{path} fetched {n} times; all fetches: {counts:?}");
    }
}
