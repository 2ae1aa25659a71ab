//! Who may pull (`[client_auth]`): HTTP Basic against an htpasswd file, static bearer tokens
//! and mutual TLS, in front of the real docker-registry, pulled with skopeo (a real client)
//! and with reqwest. Without authentication only the probes answer; `/metrics` and every
//! registry endpoint, `/v2/` included, are 401 with a challenge the clients answer.
mod support;

use std::process::Command;

use sha2::{Digest as _, Sha256};
use support::registry::{proxy_config, Pushed, Pusher, Registry, TestProxy};

const REPO: &str = "team/app";

async fn upstream() -> (Registry, Pushed) {
    let reg = Registry::start();
    let img = Pusher::new(&reg)
        .image(REPO, "v1", true, 7, 4096, "amd64")
        .await;
    (reg, img)
}

fn skopeo(args: &[&str]) -> std::process::Output {
    Command::new(support::require_tool("skopeo"))
        .args(["copy", "--retry-times=0"])
        .args(args)
        .output()
        .unwrap()
}

async fn skopeo_async(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        skopeo(&a)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn htpasswd_basic_auth_guards_every_endpoint_but_the_probes() {
    let (reg, img) = upstream().await;
    let dir = support::tempdir();
    let htpasswd = dir.path().join("htpasswd");
    let hash = bcrypt::hash("pw-alice", 5).unwrap();
    std::fs::write(&htpasswd, format!("alice:{hash}\n")).unwrap();
    let cfg = format!(
        "{}[client_auth]\nhtpasswd = {:?}\n",
        proxy_config(&[(&reg.host(), &reg.url)], ""),
        htpasswd.display().to_string()
    );
    let proxy = TestProxy::start(&cfg).await;
    let http = reqwest::Client::new();
    let manifest = format!("{}/v2/{REPO}/manifests/v1", proxy.url);

    for path in [
        "/v2/",
        &format!("/v2/{REPO}/manifests/v1"),
        &format!("/v2/{REPO}/tags/list"),
        "/metrics",
    ] {
        let r = http
            .get(format!("{}{path}", proxy.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path} answered without authentication");
        assert_eq!(
            r.headers()["www-authenticate"],
            "Basic realm=\"trustgate\"",
            "{path}"
        );
        let body: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        assert_eq!(body["errors"][0]["code"], "UNAUTHORIZED", "{path}");
    }
    for probe in ["/healthz", "/readyz"] {
        let r = http
            .get(format!("{}{probe}", proxy.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{probe}");
    }
    let r = http
        .get(&manifest)
        .basic_auth("alice", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .get(&manifest)
        .basic_auth("mallory", Some("pw-alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .get(&manifest)
        .header("accept", img.media_type)
        .basic_auth("alice", Some("pw-alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), img.manifest.as_slice());

    // skopeo: refused without credentials, served with them.
    let src = format!("docker://{}/{REPO}:v1", proxy.addr);
    let out = dir.path().join("anon");
    let o = skopeo_async(vec![
        "--src-tls-verify=false".into(),
        src.clone(),
        format!("dir:{}", out.display()),
    ])
    .await;
    assert!(!o.status.success(), "skopeo pulled without credentials");
    let err = String::from_utf8_lossy(&o.stderr).to_lowercase();
    assert!(
        err.contains("unauthorized") || err.contains("authentication required"),
        "{err}"
    );
    let out = dir.path().join("alice");
    let o = skopeo_async(vec![
        "--src-tls-verify=false".into(),
        "--src-creds".into(),
        "alice:pw-alice".into(),
        src,
        format!("dir:{}", out.display()),
    ])
    .await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read(out.join("manifest.json")).unwrap(),
        img.manifest
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_are_matched_by_their_hash() {
    let (reg, img) = upstream().await;
    let dir = support::tempdir();
    let tokens = dir.path().join("tokens");
    std::fs::write(
        &tokens,
        format!(
            "ci-runner sha256:{}\n",
            hex::encode(Sha256::digest(b"tok-ci-1"))
        ),
    )
    .unwrap();
    let cfg = format!(
        "{}[client_auth]\ntokens = {:?}\n",
        proxy_config(&[(&reg.host(), &reg.url)], ""),
        tokens.display().to_string()
    );
    let proxy = TestProxy::start(&cfg).await;
    let http = reqwest::Client::new();
    let url = format!("{}/v2/{REPO}/manifests/{}", proxy.url, img.digest);
    let r = http.get(&url).bearer_auth("tok-ci-1").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), img.manifest.as_slice());
    for bad in ["tok-ci-2", "", "sha256:00"] {
        let r = http.get(&url).bearer_auth(bad).send().await.unwrap();
        assert_eq!(r.status(), 401, "token {bad:?}");
    }
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Bearer realm=\"trustgate\""
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_requires_a_certificate_from_the_client_ca() {
    let (reg, img) = upstream().await;
    let dir = support::tempdir();
    let server_ca = support::pki::TestCa::new("server CA");
    let server = server_ca.issue(&dir.path().join("server"), "proxy");
    let client_ca = support::pki::TestCa::new("clients CA");
    let client = client_ca.issue(&dir.path().join("client"), "node");
    let stranger =
        support::pki::TestCa::new("other CA").issue(&dir.path().join("stranger"), "node");
    let client_ca_file = dir.path().join("clients-ca.pem");
    std::fs::write(&client_ca_file, &client_ca.ca_pem).unwrap();
    let cfg = format!(
        "{}[tls]\ncert = {:?}\nkey = {:?}\n[client_auth]\nclient_ca = {:?}\n",
        proxy_config(&[(&reg.host(), &reg.url)], ""),
        server.cert_path.display().to_string(),
        server.key_path.display().to_string(),
        client_ca_file.display().to_string()
    );
    let proxy = TestProxy::start(&cfg).await;
    let url = format!(
        "https://localhost:{}/v2/{REPO}/manifests/{}",
        proxy.addr.port(),
        img.digest
    );
    let root = reqwest::Certificate::from_pem(server_ca.ca_pem.as_bytes()).unwrap();
    let identity = |c: &support::pki::IssuedCert| {
        let mut pem = std::fs::read(&c.cert_path).unwrap();
        pem.extend(std::fs::read(&c.key_path).unwrap());
        reqwest::Identity::from_pem(&pem).unwrap()
    };
    let with = |id: Option<reqwest::Identity>| {
        let b = reqwest::Client::builder()
            .use_rustls_tls()
            .add_root_certificate(root.clone());
        match id {
            Some(id) => b.identity(id),
            None => b,
        }
        .build()
        .unwrap()
    };
    assert!(
        with(None).get(&url).send().await.is_err(),
        "a client without a certificate got through the handshake"
    );
    assert!(
        with(Some(identity(&stranger)))
            .get(&url)
            .send()
            .await
            .is_err(),
        "a certificate from another CA was accepted"
    );
    let r = with(Some(identity(&client)))
        .get(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), img.manifest.as_slice());

    // skopeo with a client certificate: *.cert + *.key + ca.crt in the cert dir.
    let certs = dir.path().join("skopeo-certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::write(certs.join("ca.crt"), &server_ca.ca_pem).unwrap();
    std::fs::copy(&client.cert_path, certs.join("node.cert")).unwrap();
    std::fs::copy(&client.key_path, certs.join("node.key")).unwrap();
    let out = dir.path().join("out");
    let o = skopeo_async(vec![
        "--src-cert-dir".into(),
        certs.display().to_string(),
        format!("docker://localhost:{}/{REPO}:v1", proxy.addr.port()),
        format!("dir:{}", out.display()),
    ])
    .await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read(out.join("manifest.json")).unwrap(),
        img.manifest
    );
    proxy.shutdown().await;
}

/// `[[client_auth.access]]`: an authenticated identity uses only the repositories an entry
/// grants it — manifests, blobs and listings alike, refused before the upstream is asked —
/// and skopeo, a real client, is told who was refused what.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_entries_limit_identities_to_their_scopes() {
    let reg = Registry::start();
    let pusher = Pusher::new(&reg);
    let team = pusher.image(REPO, "v1", true, 7, 4096, "amd64").await;
    let other = pusher
        .image("other/app", "v1", true, 8, 4096, "amd64")
        .await;
    let dir = support::tempdir();
    let htpasswd = dir.path().join("htpasswd");
    let mut lines = String::new();
    for (user, pw) in [("alice", "pw-a"), ("bob", "pw-b")] {
        lines += &format!("{user}:{}\n", bcrypt::hash(pw, 5).unwrap());
    }
    std::fs::write(&htpasswd, lines).unwrap();
    let host = reg.host();
    let cfg = format!(
        "{}[client_auth]\nhtpasswd = {:?}\n\
         [[client_auth.access]]\nidentities = [\"user:alice\"]\nscopes = [\"{host}/team/**\"]\n\
         [[client_auth.access]]\nidentities = [\"user:*\"]\nscopes = [\"{host}/other/app\"]\n",
        proxy_config(&[(&host, &reg.url)], ""),
        htpasswd.display().to_string()
    );
    let proxy = TestProxy::start(&cfg).await;
    let http = reqwest::Client::new();
    let get = |path: String, user: &'static str, pw: &'static str| {
        let req = http
            .get(format!("{}{path}", proxy.url))
            .header("accept", team.media_type)
            .basic_auth(user, Some(pw));
        async move { req.send().await.unwrap() }
    };

    // alice: her team's repository and the shared one.
    let r = get(format!("/v2/{REPO}/manifests/v1"), "alice", "pw-a").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), team.manifest.as_slice());
    let r = get("/v2/other/app/manifests/v1".into(), "alice", "pw-a").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), other.manifest.as_slice());

    // bob: only the shared one; every endpoint of the team's repository is refused, and the
    // refusal names him and the repository.
    let r = get("/v2/other/app/manifests/v1".into(), "bob", "pw-b").await;
    assert_eq!(r.status(), 200);
    let upstream_requests = || {
        let text = proxy.state.metrics.render();
        text.lines()
            .find_map(|l| l.strip_prefix("trustgate_upstream_request_duration_seconds_count "))
            .map(|n| n.trim().parse::<u64>().unwrap())
            .unwrap_or(0)
    };
    let before = upstream_requests();
    assert!(before > 0, "the allowed pulls were counted");
    for path in [
        format!("/v2/{REPO}/manifests/v1"),
        format!("/v2/{REPO}/manifests/{}", team.digest),
        format!("/v2/{REPO}/blobs/{}", team.blobs[0].digest),
        format!("/v2/{REPO}/tags/list"),
        format!("/v2/{REPO}/referrers/{}", team.digest),
    ] {
        let r = get(path.clone(), "bob", "pw-b").await;
        assert_eq!(r.status(), 403, "{path}");
        let body: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        assert_eq!(body["errors"][0]["code"], "DENIED", "{path}");
        let msg = body["errors"][0]["message"].as_str().unwrap();
        assert!(
            msg.contains("user:bob") && msg.contains(&format!("{host}/{REPO}")),
            "{path}: {msg}"
        );
    }
    assert_eq!(
        upstream_requests(),
        before,
        "a refused identity's requests never reach the upstream"
    );
    // /v2/ itself names no repository: any authenticated identity may ask.
    assert_eq!(get("/v2/".into(), "bob", "pw-b").await.status(), 200);

    let src = format!("docker://{}/{REPO}:v1", proxy.addr);
    let o = skopeo_async(vec![
        "--src-tls-verify=false".into(),
        "--src-creds".into(),
        "bob:pw-b".into(),
        src.clone(),
        format!("dir:{}", dir.path().join("bob").display()),
    ])
    .await;
    assert!(!o.status.success(), "skopeo pulled as bob");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("user:bob may not use"), "{err}");
    let o = skopeo_async(vec![
        "--src-tls-verify=false".into(),
        "--src-creds".into(),
        "alice:pw-a".into(),
        src,
        format!("dir:{}", dir.path().join("alice").display()),
    ])
    .await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    proxy.shutdown().await;
}
