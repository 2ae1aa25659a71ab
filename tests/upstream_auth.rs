//! UpstreamClient against the real docker-registry: Docker token auth (with a token issuer
//! written here) and htpasswd Basic auth over TLS.
mod support;

use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method};
use support::tokenissuer::{
    push_image, start_registry, IssuerOptions, Pushed, Registry, RegistryAuth, TokenIssuer,
    OCI_MANIFEST,
};
use trustgate::upstream::{
    read_body_limited, ClientSettings, Credentials, UpstreamClient, UpstreamError, UpstreamRequest,
};

const REPO: &str = "team/app";

fn settings(base: &str, creds: Option<(&str, &str)>) -> ClientSettings {
    ClientSettings {
        name: "test-registry".to_string(),
        base_url: base.parse().unwrap(),
        ca_file: None,
        credentials: creds.map(|(u, p)| Credentials {
            username: u.to_string(),
            password: p.to_string(),
        }),
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(20),
        allowed_realms: Vec::new(),
    }
}

fn get(path: String, scope: Option<String>) -> UpstreamRequest {
    let mut headers = HeaderMap::new();
    headers.insert("accept", HeaderValue::from_static(OCI_MANIFEST));
    UpstreamRequest {
        method: Method::GET,
        path_and_query: path,
        headers,
        scope,
    }
}

fn pull_scope(repo: &str) -> Option<String> {
    Some(format!("repository:{repo}:pull"))
}

async fn pull_manifest(
    client: &UpstreamClient,
    repo: &str,
) -> Result<reqwest::Response, UpstreamError> {
    client
        .send(get(format!("/v2/{repo}/manifests/v1"), pull_scope(repo)))
        .await
}

struct TokenSetup {
    _dir: tempfile::TempDir,
    issuer: TokenIssuer,
    registry: Registry,
    pushed: Pushed,
}

/// A registry with token auth whose realm is the issuer on `realm_host`, holding one image.
async fn token_setup(opts: IssuerOptions, realm_host: &str) -> TokenSetup {
    let dir = support::tempdir();
    let issuer = TokenIssuer::start(dir.path(), opts).await;
    let realm = issuer.realm(realm_host);
    let registry = start_registry(
        dir.path(),
        RegistryAuth::Token {
            realm: &realm,
            bundle: &issuer.cert_pem_path,
        },
        None,
    );
    let token = issuer.mint(&format!("repository:{REPO}:pull,push"));
    let pushed = push_image(
        &reqwest::Client::new(),
        &registry.base_url,
        REPO,
        "v1",
        &format!("Bearer {token}"),
    )
    .await;
    TokenSetup {
        _dir: dir,
        issuer,
        registry,
        pushed,
    }
}

/// How many of our requests the registry answered 401 (from its access log).
fn challenged(registry: &Registry) -> usize {
    registry
        .guard
        .log_text()
        .lines()
        .filter(|l| l.contains("\" 401 ") && l.contains("trustgate/"))
        .count()
}

fn basic(user: &str, pass: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

#[tokio::test]
async fn token_auth_pull_with_credentials_and_token_cached_per_scope() {
    let s = token_setup(
        IssuerOptions {
            require: Some(("alice".into(), "s3cret".into())),
            ..Default::default()
        },
        "127.0.0.1",
    )
    .await;
    let client =
        UpstreamClient::new(settings(&s.registry.base_url, Some(("alice", "s3cret")))).unwrap();

    let resp = pull_manifest(&client, REPO).await.unwrap();
    assert_eq!(resp.status(), 200, "log: {}", s.registry.guard.log_text());
    let body = read_body_limited(resp, 4 << 20).await.unwrap();
    assert_eq!(body.as_ref(), s.pushed.manifest.as_slice());

    let seen = s.issuer.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some(basic("alice", "s3cret").as_str())
    );
    assert_eq!(
        seen[0].service.as_deref(),
        Some(support::tokenissuer::SERVICE)
    );
    assert_eq!(seen[0].scope, pull_scope(REPO));

    // Same scope: the manifest again and a blob reuse the cached token.
    let resp = pull_manifest(&client, REPO).await.unwrap();
    assert_eq!(resp.status(), 200);
    let resp = client
        .send(get(
            format!("/v2/{REPO}/blobs/{}", s.pushed.layer_digest),
            pull_scope(REPO),
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let blob = read_body_limited(resp, 1 << 20).await.unwrap();
    assert_eq!(blob.as_ref(), s.pushed.layer.as_slice());
    assert_eq!(s.issuer.requests().len(), 1, "token was not cached");
    // The cached token went out with the request: only the very first one met a 401.
    assert_eq!(challenged(&s.registry), 1, "cached token not sent up front");

    // Another scope needs its own token.
    let resp = pull_manifest(&client, "team/other").await.unwrap();
    assert_eq!(resp.status(), 404);
    let seen = s.issuer.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].scope, pull_scope("team/other"));
}

#[tokio::test]
async fn token_auth_without_or_with_wrong_credentials_fails_as_auth() {
    let s = token_setup(
        IssuerOptions {
            require: Some(("alice".into(), "s3cret".into())),
            ..Default::default()
        },
        "127.0.0.1",
    )
    .await;
    for creds in [None, Some(("alice", "wrong"))] {
        let client = UpstreamClient::new(settings(&s.registry.base_url, creds)).unwrap();
        let err = pull_manifest(&client, REPO).await.unwrap_err();
        match &err {
            UpstreamError::Auth { upstream, reason } => {
                assert_eq!(upstream, "test-registry");
                assert!(reason.contains("401"), "{reason}");
                assert!(!reason.contains("wrong"), "{reason}");
            }
            other => panic!("expected Auth, got {other:?}"),
        }
    }
    assert_eq!(s.issuer.requests().len(), 2);
}

#[tokio::test]
async fn anonymous_token_auth_and_concurrent_requests_share_one_fetch() {
    let s = token_setup(
        IssuerOptions {
            delay: Duration::from_millis(200),
            ..Default::default()
        },
        "127.0.0.1",
    )
    .await;
    let client =
        std::sync::Arc::new(UpstreamClient::new(settings(&s.registry.base_url, None)).unwrap());
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let resp = pull_manifest(&client, REPO).await.unwrap();
            assert_eq!(resp.status(), 200);
            read_body_limited(resp, 1 << 20).await.unwrap()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().as_ref(), s.pushed.manifest.as_slice());
    }
    let seen = s.issuer.requests();
    assert_eq!(
        seen.len(),
        1,
        "concurrent requests each fetched a token: {seen:?}"
    );
    assert_eq!(seen[0].authorization, None);
}

#[tokio::test]
async fn rejected_token_is_fetched_again() {
    // A token the registry rejects must not be reused even though the cache thinks it is
    // fresh.
    let s = token_setup(IssuerOptions::default(), "127.0.0.1").await;
    let client = UpstreamClient::new(settings(&s.registry.base_url, None)).unwrap();
    // First token: valid JSON, but a token the registry cannot verify.
    s.issuer
        .push_canned(200, r#"{"token":"not.a.jwt","expires_in":300}"#);
    let resp = pull_manifest(&client, REPO).await.unwrap();
    assert_eq!(
        resp.status(),
        401,
        "a bad token is answered with the 401, not retried forever"
    );
    // Next request: the cached token is sent, rejected, replaced, and the retry succeeds.
    let resp = pull_manifest(&client, REPO).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(s.issuer.requests().len(), 2);
    let resp = pull_manifest(&client, REPO).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(s.issuer.requests().len(), 2);
}

#[tokio::test]
async fn token_realm_errors_are_auth_errors() {
    let s = token_setup(IssuerOptions::default(), "127.0.0.1").await;
    let client = UpstreamClient::new(settings(&s.registry.base_url, None)).unwrap();
    for (status, body, expect) in [
        (500, "{}", "500"),
        (200, "not json", "JSON"),
        (200, r#"{"expires_in":60}"#, "neither"),
    ] {
        s.issuer.push_canned(status, body);
        match pull_manifest(&client, REPO).await {
            Err(UpstreamError::Auth { reason, .. }) => {
                assert!(reason.contains(expect), "{reason}")
            }
            other => panic!("expected Auth for {status} {body}, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn credentials_are_withheld_from_a_realm_on_another_host_unless_allowed() {
    // The registry is 127.0.0.1; its realm says `localhost`: another host by name.
    let s = token_setup(IssuerOptions::default(), "localhost").await;
    let client =
        UpstreamClient::new(settings(&s.registry.base_url, Some(("alice", "s3cret")))).unwrap();
    let resp = pull_manifest(&client, REPO).await.unwrap();
    assert_eq!(resp.status(), 200);
    let seen = s.issuer.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].authorization, None,
        "credentials leaked to a foreign realm"
    );

    let mut allowed = settings(&s.registry.base_url, Some(("alice", "s3cret")));
    allowed.allowed_realms = vec!["localhost".to_string()];
    let client = UpstreamClient::new(allowed).unwrap();
    let resp = pull_manifest(&client, REPO).await.unwrap();
    assert_eq!(resp.status(), 200);
    let seen = s.issuer.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[1].authorization.as_deref(),
        Some(basic("alice", "s3cret").as_str())
    );
}

#[tokio::test]
async fn unreachable_token_realm_is_an_auth_error() {
    let dir = support::tempdir();
    let issuer = TokenIssuer::start(dir.path(), IssuerOptions::default()).await;
    // A realm nobody listens on (the issuer only signs; the registry sends clients elsewhere).
    let dead_realm = format!("http://127.0.0.1:{}/token", support::free_port());
    let registry = start_registry(
        dir.path(),
        RegistryAuth::Token {
            realm: &dead_realm,
            bundle: &issuer.cert_pem_path,
        },
        None,
    );
    let client = UpstreamClient::new(settings(&registry.base_url, None)).unwrap();
    match pull_manifest(&client, REPO).await {
        Err(UpstreamError::Auth { reason, .. }) => {
            assert!(reason.contains("token realm"), "{reason}")
        }
        other => panic!("expected Auth, got {other:?}"),
    }
}

struct BasicSetup {
    _dir: tempfile::TempDir,
    registry: Registry,
    ca_path: std::path::PathBuf,
    pushed: Pushed,
}

async fn basic_setup() -> BasicSetup {
    let dir = support::tempdir();
    let ca = support::pki::TestCa::new("trustgate upstream test CA");
    let issued = ca.issue(&dir.path().join("tls"), "registry");
    let htpasswd = dir.path().join("htpasswd");
    let hash = bcrypt::hash("b0b-pass", 4).unwrap();
    std::fs::write(&htpasswd, format!("bob:{hash}\n")).unwrap();
    let registry = start_registry(
        dir.path(),
        RegistryAuth::Htpasswd { path: &htpasswd },
        Some((&issued.cert_path, &issued.key_path)),
    );
    let ca_cert = reqwest::Certificate::from_pem(ca.ca_pem.as_bytes()).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(ca_cert)
        .build()
        .unwrap();
    let pushed = push_image(
        &http,
        &registry.base_url,
        REPO,
        "v1",
        &basic("bob", "b0b-pass"),
    )
    .await;
    BasicSetup {
        _dir: dir,
        registry,
        ca_path: issued.ca_path,
        pushed,
    }
}

#[tokio::test]
async fn basic_auth_over_tls_with_ca_file_and_http2() {
    let s = basic_setup().await;
    let mut st = settings(&s.registry.base_url, Some(("bob", "b0b-pass")));
    st.ca_file = Some(s.ca_path.clone());
    let client = UpstreamClient::new(st).unwrap();
    let resp = pull_manifest(&client, REPO).await.unwrap();
    assert_eq!(resp.status(), 200, "log: {}", s.registry.guard.log_text());
    // Go's net/http offers h2 via ALPN on TLS listeners; we must take it.
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let body = read_body_limited(resp, 1 << 20).await.unwrap();
    assert_eq!(body.as_ref(), s.pushed.manifest.as_slice());
    let resp = client
        .send(get(
            format!("/v2/{REPO}/blobs/{}", s.pushed.layer_digest),
            pull_scope(REPO),
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        read_body_limited(resp, 1 << 20).await.unwrap().as_ref(),
        s.pushed.layer.as_slice()
    );
    // Once the registry asked for Basic, later requests carry it up front.
    assert_eq!(challenged(&s.registry), 1, "Basic not sent up front");
}

#[tokio::test]
async fn basic_auth_without_or_with_wrong_credentials_returns_the_401() {
    let s = basic_setup().await;
    for creds in [None, Some(("bob", "nope"))] {
        let mut st = settings(&s.registry.base_url, creds);
        st.ca_file = Some(s.ca_path.clone());
        let client = UpstreamClient::new(st).unwrap();
        let resp = pull_manifest(&client, REPO).await.unwrap();
        assert_eq!(resp.status(), 401, "{creds:?}");
    }
}

#[tokio::test]
async fn tls_upstream_without_its_ca_is_unreachable() {
    let s = basic_setup().await;
    let client =
        UpstreamClient::new(settings(&s.registry.base_url, Some(("bob", "b0b-pass")))).unwrap();
    match pull_manifest(&client, REPO).await {
        Err(UpstreamError::Unreachable { upstream, reason }) => {
            assert_eq!(upstream, "test-registry");
            assert!(reason.to_lowercase().contains("certificate"), "{reason}");
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
}

#[tokio::test]
async fn challenge_scope_is_requested_when_the_caller_gives_none_or_another() {
    let s = token_setup(IssuerOptions::default(), "127.0.0.1").await;
    let client = UpstreamClient::new(settings(&s.registry.base_url, None)).unwrap();
    let path = format!("/v2/{REPO}/manifests/v1");
    let resp = client.send(get(path.clone(), None)).await.unwrap();
    assert_eq!(resp.status(), 200);
    let resp = client
        .send(get(path, pull_scope("team/unrelated")))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = s.issuer.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].scope, pull_scope(REPO));
    assert_eq!(
        seen[1].scope.as_deref(),
        Some("repository:team/unrelated:pull repository:team/app:pull")
    );
}

/// notary-server with token auth: the trust client talks to it through the same client.
#[tokio::test]
async fn notary_server_token_auth() {
    let dir = support::tempdir();
    let issuer = TokenIssuer::start(
        dir.path(),
        IssuerOptions {
            require: Some(("alice".into(), "s3cret".into())),
            ..Default::default()
        },
    )
    .await;
    let port = support::free_port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let config = serde_json::json!({
        "server": {"http_addr": addr.to_string()},
        "trust_service": {"type": "local"},
        "storage": {"backend": "memory"},
        "auth": {"type": "token", "options": {
            "realm": issuer.realm("127.0.0.1"),
            "service": support::tokenissuer::SERVICE,
            "issuer": support::tokenissuer::ISSUER,
            "rootcertbundle": issuer.cert_pem_path,
        }},
    });
    let config_path = dir.path().join("notary-server.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let mut cmd = std::process::Command::new(support::require_tool("notary-server"));
    cmd.arg("-config").arg(&config_path);
    let mut server = support::proc::ChildGuard::spawn(
        "notary-server",
        cmd,
        &dir.path().join("notary-server.log"),
    );
    support::wait_for_tcp(addr, Duration::from_secs(20));
    server.assert_running();

    let gun = "127.0.0.1:5000/team/app";
    let req = || UpstreamRequest {
        method: Method::GET,
        path_and_query: format!("/v2/{gun}/_trust/tuf/root.json"),
        headers: HeaderMap::new(),
        scope: Some(format!("repository:{gun}:pull")),
    };
    let base = format!("http://{addr}");
    let client = UpstreamClient::new(settings(&base, Some(("alice", "s3cret")))).unwrap();
    let resp = client.send(req()).await.unwrap();
    // Authorized, and the GUN has no trust data yet.
    assert_eq!(resp.status(), 404, "log: {}", server.log_text());
    let body = read_body_limited(resp, 1 << 16).await.unwrap();
    assert!(
        String::from_utf8_lossy(&body).contains("METADATA_NOT_FOUND"),
        "{body:?}"
    );
    let resp = client.send(req()).await.unwrap();
    assert_eq!(resp.status(), 404);
    let seen = issuer.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        seen[0].scope.as_deref(),
        Some(format!("repository:{gun}:pull").as_str())
    );

    let anonymous = UpstreamClient::new(settings(&base, None)).unwrap();
    assert!(matches!(
        anonymous.send(req()).await,
        Err(UpstreamError::Auth { .. })
    ));
}
