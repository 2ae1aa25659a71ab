//! A Docker token issuer for tests, and the real docker-registry configured to trust it (or an
//! htpasswd file).
//!
//! The issuer is an in-process HTTP server on 127.0.0.1:0 that answers
//! `GET /token?service=..&scope=..` with an ES256 JWT. docker-registry 2.8 verifies it as
//! distribution `registry/auth/token/token.go` does: `iss` and `aud` must match its config,
//! `exp`/`nbf` within a 60 s leeway, and the signing key comes from the `x5c` header, whose
//! first certificate must chain to `rootcertbundle`. We put the self-signed signing
//! certificate itself in both places.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

use super::proc::ChildGuard;

pub const ISSUER: &str = "trustgate-test-issuer";
pub const SERVICE: &str = "trustgate-test-registry";

/// What one token request looked like, as the issuer saw it.
#[derive(Debug, Clone)]
pub struct TokenRequestSeen {
    pub authorization: Option<String>,
    pub service: Option<String>,
    pub scope: Option<String>,
}

struct IssuerState {
    key: EcdsaKeyPair,
    cert_der_b64: String,
    /// Username and password required for a token; `None` admits anonymous requests.
    require: Option<(String, String)>,
    expires_in: i64,
    seen: Mutex<Vec<TokenRequestSeen>>,
    /// Delays the answer, so concurrent requests overlap.
    delay: Duration,
    /// Canned answers (status, body) served before issuing real tokens.
    canned: Mutex<VecDeque<(u16, String)>>,
}

pub struct TokenIssuer {
    state: Arc<IssuerState>,
    pub addr: SocketAddr,
    pub cert_pem_path: PathBuf,
}

pub struct IssuerOptions {
    pub require: Option<(String, String)>,
    pub expires_in: i64,
    pub delay: Duration,
}

impl Default for IssuerOptions {
    fn default() -> Self {
        IssuerOptions {
            require: None,
            expires_in: 300,
            delay: Duration::ZERO,
        }
    }
}

impl TokenIssuer {
    /// Starts the issuer and writes its certificate (the registry's `rootcertbundle`) to `dir`.
    pub async fn start(dir: &Path, opts: IssuerOptions) -> TokenIssuer {
        let key = rcgen::KeyPair::generate().expect("issuer key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "trustgate test token signer");
        let cert = params.self_signed(&key).expect("self-sign");
        let cert_pem_path = dir.join("token-signer.crt");
        std::fs::write(&cert_pem_path, cert.pem()).expect("write signer cert");
        let ring_key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &key.serialize_der(),
            &SystemRandom::new(),
        )
        .expect("ring key");
        let state = Arc::new(IssuerState {
            key: ring_key,
            cert_der_b64: base64::engine::general_purpose::STANDARD.encode(cert.der()),
            require: opts.require,
            expires_in: opts.expires_in,
            seen: Mutex::new(Vec::new()),
            delay: opts.delay,
            canned: Mutex::new(VecDeque::new()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind issuer");
        let addr = listener.local_addr().expect("issuer addr");
        let st = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let st = st.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(&st, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        TokenIssuer {
            state,
            addr,
            cert_pem_path,
        }
    }

    /// The realm URL on `host` (`127.0.0.1` or `localhost`, both reach the issuer).
    pub fn realm(&self, host: &str) -> String {
        format!("http://{host}:{}/token", self.addr.port())
    }

    pub fn requests(&self) -> Vec<TokenRequestSeen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// The next token request gets this answer instead of a token.
    pub fn push_canned(&self, status: u16, body: &str) {
        self.state
            .canned
            .lock()
            .unwrap()
            .push_back((status, body.to_string()));
    }

    /// A token for `scope` (e.g. `repository:a/b:pull,push`), without a request: for pushing
    /// test content straight into the registry.
    pub fn mint(&self, scope: &str) -> String {
        mint(&self.state, Some(scope))
    }
}

async fn handle(st: &IssuerState, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let query: Vec<(String, String)> = req
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let authorization = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // Several `scope` parameters may come; the token covers all of them.
    let scopes: Vec<&str> = query
        .iter()
        .filter(|(n, _)| n == "scope")
        .map(|(_, v)| v.as_str())
        .collect();
    let scope = (!scopes.is_empty()).then(|| scopes.join(" "));
    st.seen.lock().unwrap().push(TokenRequestSeen {
        authorization: authorization.clone(),
        service: get("service"),
        scope: scope.clone(),
    });
    if !st.delay.is_zero() {
        tokio::time::sleep(st.delay).await;
    }
    let canned = st.canned.lock().unwrap().pop_front();
    if let Some((status, body)) = canned {
        return respond(status, body);
    }
    if let Some((user, pass)) = &st.require {
        let want = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        );
        if authorization.as_deref() != Some(want.as_str()) {
            return respond(401, r#"{"details":"bad credentials"}"#.to_string());
        }
    }
    if get("service").as_deref() != Some(SERVICE) {
        return respond(400, r#"{"details":"unknown service"}"#.to_string());
    }
    let token = mint(st, scope.as_deref());
    let body = serde_json::json!({
        "token": token,
        "expires_in": st.expires_in,
        "issued_at": time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap(),
    });
    respond(200, body.to_string())
}

fn respond(status: u16, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

fn b64url(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn mint(st: &IssuerState, scope: Option<&str>) -> String {
    // scope = type:name:actions; the name itself never holds ':' for repositories.
    let access: Vec<serde_json::Value> = scope
        .into_iter()
        .flat_map(|s| s.split(' '))
        .filter_map(|s| {
            let (typ, rest) = s.split_once(':')?;
            let (name, actions) = rest.rsplit_once(':')?;
            Some(serde_json::json!({
                "type": typ,
                "name": name,
                "actions": actions.split(',').collect::<Vec<_>>(),
            }))
        })
        .collect();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "x5c": [st.cert_der_b64]});
    let claims = serde_json::json!({
        "iss": ISSUER,
        "sub": "tester",
        "aud": SERVICE,
        "exp": now + st.expires_in,
        "nbf": now - 1,
        "iat": now,
        "jti": format!("{now}-{}", rand::random::<u64>()),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let sig = st
        .key
        .sign(&SystemRandom::new(), signing_input.as_bytes())
        .expect("sign");
    format!("{signing_input}.{}", b64url(sig.as_ref()))
}

/// A running docker-registry.
pub struct Registry {
    pub guard: ChildGuard,
    pub base_url: String,
    pub addr: SocketAddr,
}

/// How the registry authenticates pulls.
pub enum RegistryAuth<'a> {
    Token { realm: &'a str, bundle: &'a Path },
    Htpasswd { path: &'a Path },
}

/// Starts docker-registry in `dir` with `auth`, and TLS when `tls` = (cert, key) is given.
pub fn start_registry(dir: &Path, auth: RegistryAuth<'_>, tls: Option<(&Path, &Path)>) -> Registry {
    let bin = super::require_tool("docker-registry");
    let port = super::free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let auth_yaml = match auth {
        RegistryAuth::Token { realm, bundle } => format!(
            "auth:\n  token:\n    realm: {realm}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
            bundle.display()
        ),
        RegistryAuth::Htpasswd { path } => format!(
            "auth:\n  htpasswd:\n    realm: trustgate-test\n    path: {}\n",
            path.display()
        ),
    };
    let tls_yaml = match tls {
        Some((cert, key)) => format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            cert.display(),
            key.display()
        ),
        None => String::new(),
    };
    let storage = dir.join("storage");
    std::fs::create_dir_all(&storage).unwrap();
    let config = format!(
        "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n  secret: test-secret\n{tls_yaml}{auth_yaml}",
        storage.display()
    );
    let config_path = dir.join("registry.yml");
    std::fs::write(&config_path, config).unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("serve").arg(&config_path);
    let mut guard = ChildGuard::spawn("docker-registry", cmd, &dir.join("registry.log"));
    super::wait_for_tcp(addr, Duration::from_secs(20));
    guard.assert_running();
    let scheme = if tls.is_some() { "https" } else { "http" };
    Registry {
        guard,
        base_url: format!("{scheme}://127.0.0.1:{port}"),
        addr,
    }
}

/// Content pushed by [`push_image`]: the manifest and one layer, with their digests.
pub struct Pushed {
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
    pub layer: Vec<u8>,
    pub layer_digest: String,
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn sha256_digest(b: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)))
}

/// Pushes a small OCI image (config + one layer) to `repo:tag` over the registry API, with
/// `authorization` as the `Authorization` header value.
pub async fn push_image(
    http: &reqwest::Client,
    base: &str,
    repo: &str,
    tag: &str,
    authorization: &str,
) -> Pushed {
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec();
    let layer: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    for blob in [&config, &layer] {
        let resp = http
            .post(format!("{base}/v2/{repo}/blobs/uploads/"))
            .header("authorization", authorization)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202, "start upload: {:?}", resp.text().await);
        let location = resp.headers()["location"].to_str().unwrap().to_string();
        let location = if location.starts_with('/') {
            format!("{base}{location}")
        } else {
            location
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let resp = http
            .put(format!("{location}{sep}digest={}", sha256_digest(blob)))
            .header("authorization", authorization)
            .header("content-type", "application/octet-stream")
            .body(blob.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "finish upload: {:?}", resp.text().await);
    }
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha256_digest(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": sha256_digest(&layer), "size": layer.len()}],
    }))
    .unwrap();
    let resp = http
        .put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("authorization", authorization)
        .header("content-type", OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "put manifest: {:?}", resp.text().await);
    Pushed {
        manifest_digest: sha256_digest(&manifest),
        manifest,
        layer_digest: sha256_digest(&layer),
        layer,
    }
}
