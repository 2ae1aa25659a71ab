//! End to end through trustgate against authenticated and TLS upstreams (the real
//! docker-registry): Docker token auth, htpasswd Basic over TLS with a private CA, and the
//! proxy's own TLS listener (HTTP/2 by ALPN), pulled with skopeo.
mod support;

use std::process::Command;

use support::registry::TestProxy;
use support::tokenissuer::{push_image, start_registry, IssuerOptions, RegistryAuth, TokenIssuer};

const REPO: &str = "team/app";

fn write_password(dir: &std::path::Path, pw: &str) -> String {
    let p = dir.join("upstream-password");
    std::fs::write(&p, format!("{pw}\n")).unwrap();
    p.display().to_string()
}

fn skopeo(args: &[&str]) -> std::process::Output {
    Command::new(support::require_tool("skopeo"))
        .args(["copy", "--retry-times=0"])
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_auth_upstream_with_configured_credentials() {
    let dir = support::tempdir();
    let issuer = TokenIssuer::start(
        dir.path(),
        IssuerOptions {
            require: Some(("alice".into(), "s3cret-pw".into())),
            ..IssuerOptions::default()
        },
    )
    .await;
    let realm = issuer.realm("127.0.0.1");
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
    let pw = write_password(dir.path(), "s3cret-pw");
    let with_creds = format!(
        "[[upstream]]\nname = \"tok.test\"\nurl = {:?}\n[upstream.credentials]\nusername = \"alice\"\npassword_file = {pw:?}\n",
        registry.base_url
    );
    let proxy = TestProxy::start(&with_creds).await;
    let out = dir.path().join("out");
    let src = format!("docker://{}/{REPO}:v1", proxy.addr);
    let o = {
        let out = out.clone();
        tokio::task::spawn_blocking(move || {
            skopeo(&[
                "--src-tls-verify=false",
                &src,
                &format!("dir:{}", out.display()),
            ])
        })
        .await
        .unwrap()
    };
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read(out.join("manifest.json")).unwrap(),
        pushed.manifest
    );
    let layer = std::fs::read(out.join(pushed.layer_digest.trim_start_matches("sha256:"))).unwrap();
    assert!(layer == pushed.layer);
    proxy.shutdown().await;

    // Without credentials the issuer refuses: the client hears "denied", naming the upstream,
    // and is not asked to log in to the proxy.
    let anon = format!(
        "[[upstream]]\nname = \"tok.test\"\nurl = {:?}\n",
        registry.base_url
    );
    let proxy = TestProxy::start(&anon).await;
    let r = reqwest::get(format!("{}/v2/{REPO}/manifests/v1", proxy.url))
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = String::from_utf8(r.bytes().await.unwrap().to_vec()).unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("DENIED") && body.contains("tok.test"),
        "{body}"
    );
    assert!(!headers.contains_key("www-authenticate"));
    assert!(!body.contains("s3cret"));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn htpasswd_over_tls_upstream_and_tls_listener_with_http2() {
    let dir = support::tempdir();
    let ca = support::pki::TestCa::new("trustgate proxy test CA");
    let up_tls = ca.issue(&dir.path().join("up-tls"), "registry");
    let htpasswd = dir.path().join("htpasswd");
    let hash = bcrypt::hash("b0b-pass", 4).unwrap();
    std::fs::write(&htpasswd, format!("bob:{hash}\n")).unwrap();
    let registry = start_registry(
        dir.path(),
        RegistryAuth::Htpasswd { path: &htpasswd },
        Some((&up_tls.cert_path, &up_tls.key_path)),
    );
    let ca_cert = reqwest::Certificate::from_pem(ca.ca_pem.as_bytes()).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(ca_cert.clone())
        .build()
        .unwrap();
    use base64::Engine as _;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("bob:b0b-pass")
    );
    let pushed = push_image(&http, &registry.base_url, REPO, "v1", &basic).await;

    let proxy_tls = ca.issue(&dir.path().join("proxy-tls"), "proxy");
    let pw = write_password(dir.path(), "b0b-pass");
    let cfg = format!(
        "[tls]\ncert = {:?}\nkey = {:?}\n[[upstream]]\nname = \"basic.test\"\nurl = {:?}\nca_file = {:?}\n[upstream.credentials]\nusername = \"bob\"\npassword_file = {pw:?}\n",
        proxy_tls.cert_path.display().to_string(),
        proxy_tls.key_path.display().to_string(),
        registry.base_url,
        up_tls.ca_path.display().to_string(),
    );
    let proxy = TestProxy::start(&cfg).await;
    assert!(proxy.url.starts_with("https://"));

    // HTTP/2 negotiated by ALPN on the proxy's TLS listener.
    let client = reqwest::Client::builder()
        .add_root_certificate(ca_cert)
        .build()
        .unwrap();
    let r = client
        .get(format!(
            "{}/v2/{REPO}/manifests/{}",
            proxy.url, pushed.manifest_digest
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.bytes().await.unwrap().as_ref(),
        pushed.manifest.as_slice()
    );

    // skopeo verifying the proxy's certificate against the CA (cert dir holds only ca.crt).
    let certs = dir.path().join("client-certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::write(certs.join("ca.crt"), &ca.ca_pem).unwrap();
    let out = dir.path().join("out");
    let src = format!("docker://localhost:{}/{REPO}:v1", proxy.addr.port());
    let o = {
        let (out, certs) = (out.clone(), certs.clone());
        tokio::task::spawn_blocking(move || {
            skopeo(&[
                "--src-cert-dir",
                &certs.display().to_string(),
                &src,
                &format!("dir:{}", out.display()),
            ])
        })
        .await
        .unwrap()
    };
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read(out.join("manifest.json")).unwrap(),
        pushed.manifest
    );
    proxy.shutdown().await;
}
