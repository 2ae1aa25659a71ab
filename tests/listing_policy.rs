//! Listings (`tags/list`, `referrers`) are judged by the policy like pulls: the upstream is
//! asked with trustgate's own credentials, so a repository a rule rejects must not be listed
//! through it. Against a scripted in-process upstream that lists anything it is asked for.
mod support;

use std::sync::Arc;

use support::fake_upstream::{full, response, FakeUpstream};
use support::registry::{proxy_config, sha256, TestProxy};
use trustgate::metrics::{DecisionReason, Outcome};

const FAKE: &str = "fake.test";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// Rejected, audit-rejected, signed and allowed repositories. The signed rule's trust server
/// is a closed port: a listing must not need it.
const POLICY: &str = r#"
version = 1
[trust_servers.closed]
url = "http://127.0.0.1:1"

[[rules]]
name = "banned"
scope = "fake.test/rej/**"
require = "reject"
message = "this repository is banned"

[[rules]]
name = "soon banned"
scope = "fake.test/audit/**"
require = "reject"
mode = "audit"

[[rules]]
name = "signed"
scope = "fake.test/signed/**"
require = "signed"
trust_server = "closed"

[default]
require = "allow"
"#;

/// An upstream that lists every repository and answers every referrers request.
async fn lister() -> FakeUpstream {
    FakeUpstream::start(|seen| async move {
        if seen.target.contains("/referrers/") {
            response(
                200,
                &[("content-type", INDEX)],
                full(r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":1,"artifactType":"application/vnd.example.sbom"}]}"#),
            )
        } else {
            response(
                200,
                &[("content-type", "application/json")],
                full(r#"{"name":"x","tags":["secret-1","secret-2"]}"#),
            )
        }
    })
    .await
}

async fn proxy(up: &FakeUpstream) -> TestProxy {
    let cfg = trustgate::config::Config::from_toml_str(
        &proxy_config(&[(FAKE, &up.url)], ""),
        "test.toml",
    )
    .unwrap();
    let policy = trustgate::policy::Policy::from_str(POLICY, "listing policy").unwrap();
    let handle = Arc::new(trustgate::policy::PolicyHandle::fixed(policy));
    TestProxy::start_with_policy(cfg, handle).await
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_of_a_rejected_repository_are_refused_audited_and_never_asked_upstream() {
    let up = lister().await;
    let proxy = proxy(&up).await;
    let http = reqwest::Client::new();
    let d = sha256(b"subject");
    for path in [
        "/v2/rej/app/tags/list".to_string(),
        "/v2/rej/app/tags/list?n=1&last=a".to_string(),
        format!("/v2/rej/app/referrers/{d}"),
        format!("/v2/rej/app/referrers/{d}?artifactType=application%2Fvnd.example.sbom"),
        format!("/v2/{FAKE}/rej/app/tags/list"),
        format!("/v2/rej/app/tags/list?ns={FAKE}"),
    ] {
        let r = http
            .get(format!("{}{path}", proxy.url))
            .send()
            .await
            .unwrap();
        let (s, code, msg) = envelope(r).await;
        assert_eq!((s, code.as_str()), (403, "DENIED"), "{path}: {msg}");
        assert!(
            msg.contains("policy rule banned") && msg.contains("this repository is banned"),
            "{path}: {msg}"
        );
        assert!(msg.contains(&format!("{FAKE}/rej/app")), "{path}: {msg}");
        assert!(!msg.contains("secret"), "{path}: {msg}");
        // HEAD is refused alike.
        let r = http
            .head(format!("{}{path}", proxy.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "HEAD {path}");
    }
    assert!(
        up.seen().is_empty(),
        "a refused listing must not reach the upstream (with trustgate's credentials): {:?}",
        up.seen()
    );
    assert_eq!(
        proxy
            .state
            .metrics
            .decision_count(Outcome::Deny, DecisionReason::PolicyReject),
        12,
        "each refused listing is one counted decision"
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_under_signed_allow_and_audit_rules_are_served() {
    let up = lister().await;
    let proxy = proxy(&up).await;
    let http = reqwest::Client::new();
    let d = sha256(b"subject");

    // signed: tag names are not content; the trust server (a closed port) is not asked.
    for repo in ["signed/app", "open/app"] {
        let r = http
            .get(format!("{}/v2/{repo}/tags/list", proxy.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{repo}");
        assert!(r.headers().get("warning").is_none());
        assert!(r.text().await.unwrap().contains("secret-1"));
        let r = http
            .get(format!("{}/v2/{repo}/referrers/{d}", proxy.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{repo}");
        assert!(r.text().await.unwrap().contains("vnd.example.sbom"));
    }
    assert_eq!(
        proxy
            .state
            .metrics
            .decision_count(Outcome::Allow, DecisionReason::Ok),
        4
    );

    // audit: served, with the Warning a pull would get, counted as a violation.
    let r = http
        .get(format!("{}/v2/audit/app/tags/list", proxy.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let w = r.headers()["warning"].to_str().unwrap().to_string();
    assert!(
        w.starts_with("299 trustgate \"audit: policy rule soon banned would refuse"),
        "{w}"
    );
    assert_eq!(
        proxy
            .state
            .metrics
            .decision_count(Outcome::AuditViolation, DecisionReason::PolicyReject),
        1
    );
    proxy.shutdown().await;
}
