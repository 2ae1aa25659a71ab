//! A real `docker-registry` on an ephemeral loopback port, filled with deterministic images
//! pushed over the HTTP API; and trustgate itself started in-process in front of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use super::proc::ChildGuard;
use super::{free_port, require_tool, tempdir, wait_for_tcp};

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// How to start the registry.
#[derive(Default, Clone)]
pub struct RegistryOptions {
    /// Serve HTTPS with this certificate and key (PEM paths).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Extra top-level YAML appended to the config (e.g. an `auth:` section).
    pub extra_yaml: String,
}

pub struct Registry {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT` (or https).
    pub url: String,
    guard: ChildGuard,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> Registry {
        Registry::start_with(RegistryOptions::default())
    }

    pub fn start_with(opts: RegistryOptions) -> Registry {
        let bin = require_tool("docker-registry");
        let dir = tempdir();
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let storage = dir.path().join("storage");
        let mut yaml = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            storage.display()
        );
        let scheme = if let Some((cert, key)) = &opts.tls {
            yaml.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ));
            "https"
        } else {
            "http"
        };
        yaml.push_str(&opts.extra_yaml);
        let cfg = dir.path().join("config.yml");
        std::fs::write(&cfg, yaml).unwrap();
        let mut cmd = Command::new(bin);
        cmd.arg("serve").arg(&cfg);
        let mut guard = ChildGuard::spawn("docker-registry", cmd, &dir.path().join("registry.log"));
        wait_for_tcp(addr, Duration::from_secs(20));
        guard.assert_running();
        Registry {
            addr,
            url: format!("{scheme}://{addr}"),
            guard,
            _dir: dir,
        }
    }

    /// `127.0.0.1:PORT`, the name clients use for this registry.
    /// Stops the registry now (an upstream gone away, as at an air-gapped site).
    pub fn stop(&mut self) {
        self.guard.stop();
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn log(&self) -> String {
        self.guard.log_text()
    }
}

/// A blob and its digest.
#[derive(Clone, Debug)]
pub struct Blob {
    pub digest: String,
    pub bytes: Vec<u8>,
    pub media_type: &'static str,
}

impl Blob {
    pub fn new(bytes: Vec<u8>, media_type: &'static str) -> Blob {
        Blob {
            digest: sha256(&bytes),
            bytes,
            media_type,
        }
    }

    pub fn descriptor(&self) -> serde_json::Value {
        serde_json::json!({"mediaType": self.media_type, "size": self.bytes.len(), "digest": self.digest})
    }
}

/// A pushed manifest (image or index) with everything it references.
#[derive(Clone, Debug)]
pub struct Pushed {
    pub repo: String,
    pub tag: String,
    pub media_type: &'static str,
    pub manifest: Vec<u8>,
    pub digest: String,
    /// Config and layers (for an index: those of all children).
    pub blobs: Vec<Blob>,
    /// For an index or list: the child manifests.
    pub children: Vec<Pushed>,
}

/// The deterministic test images.
pub struct Images {
    pub docker: Pushed,
    pub oci: Pushed,
    pub oci_index: Pushed,
    pub docker_list: Pushed,
    pub big: Pushed,
}

pub fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

/// Deterministic pseudo-random bytes (xorshift), so digests are stable across runs.
pub fn det_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub struct Pusher {
    http: reqwest::Client,
    base: String,
}

impl Pusher {
    pub fn new(reg: &Registry) -> Pusher {
        Pusher::with_client(reg.url.clone(), reqwest::Client::new())
    }

    pub fn with_client(base: String, http: reqwest::Client) -> Pusher {
        Pusher { http, base }
    }

    pub async fn blob(&self, repo: &str, blob: &Blob) {
        let r = self
            .http
            .post(format!("{}/v2/{repo}/blobs/uploads/", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            202,
            "start upload: {}",
            r.text().await.unwrap_or_default()
        );
        let loc = r.headers()["location"].to_str().unwrap().to_string();
        let loc = if loc.starts_with("http") {
            loc
        } else {
            format!("{}{loc}", self.base)
        };
        let sep = if loc.contains('?') { '&' } else { '?' };
        let r = self
            .http
            .put(format!("{loc}{sep}digest={}", blob.digest))
            .header("content-type", "application/octet-stream")
            .body(blob.bytes.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            201,
            "finish upload: {}",
            r.text().await.unwrap_or_default()
        );
    }

    pub async fn manifest(&self, repo: &str, reference: &str, media_type: &str, bytes: &[u8]) {
        let r = self
            .http
            .put(format!("{}/v2/{repo}/manifests/{reference}", self.base))
            .header("content-type", media_type)
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            201,
            "put manifest: {}",
            r.text().await.unwrap_or_default()
        );
    }

    /// Pushes a single-platform image: a config and one layer of `layer_len` bytes.
    pub async fn image(
        &self,
        repo: &str,
        tag: &str,
        oci: bool,
        seed: u64,
        layer_len: usize,
        arch: &str,
    ) -> Pushed {
        let (mt, cmt, lmt) = if oci {
            (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER)
        } else {
            (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER)
        };
        let layer = Blob::new(det_bytes(seed, layer_len), lmt);
        let config = serde_json::json!({
            "architecture": arch, "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [layer.digest]},
            "config": {"Labels": {"seed": seed.to_string()}}
        });
        let config = Blob::new(serde_json::to_vec(&config).unwrap(), cmt);
        let manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": mt,
            "config": config.descriptor(), "layers": [layer.descriptor()]
        });
        let manifest = serde_json::to_vec_pretty(&manifest).unwrap();
        self.blob(repo, &config).await;
        self.blob(repo, &layer).await;
        self.manifest(repo, tag, mt, &manifest).await;
        Pushed {
            repo: repo.into(),
            tag: tag.into(),
            media_type: mt,
            digest: sha256(&manifest),
            manifest,
            blobs: vec![config, layer],
            children: vec![],
        }
    }

    /// Pushes two single-platform children by digest and an index/list naming them by tag.
    pub async fn index(&self, repo: &str, tag: &str, oci: bool, seed: u64) -> Pushed {
        let mut children = Vec::new();
        for (i, arch) in ["amd64", "arm64"].iter().enumerate() {
            let child = self
                .image(
                    repo,
                    &format!("{tag}-{arch}"),
                    oci,
                    seed + i as u64,
                    1024,
                    arch,
                )
                .await;
            children.push(child);
        }
        let mt = if oci { OCI_INDEX } else { DOCKER_LIST };
        let entries: Vec<_> = children
            .iter()
            .zip(["amd64", "arm64"])
            .map(|(c, arch)| {
                serde_json::json!({"mediaType": c.media_type, "size": c.manifest.len(),
                "digest": c.digest, "platform": {"architecture": arch, "os": "linux"}})
            })
            .collect();
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": mt, "manifests": entries
        }))
        .unwrap();
        self.manifest(repo, tag, mt, &manifest).await;
        Pushed {
            repo: repo.into(),
            tag: tag.into(),
            media_type: mt,
            digest: sha256(&manifest),
            manifest,
            blobs: children.iter().flat_map(|c| c.blobs.clone()).collect(),
            children,
        }
    }

    /// The standard set: Docker schema2, OCI image, OCI index (2 platforms), Docker
    /// manifest list, and an image with a 5 MiB layer.
    pub async fn standard_images(&self) -> Images {
        Images {
            docker: self
                .image("test/docker", "v1", false, 1, 4096, "amd64")
                .await,
            oci: self.image("test/oci", "v1", true, 2, 4096, "amd64").await,
            oci_index: self.index("test/ociindex", "v1", true, 10).await,
            docker_list: self.index("test/dockerlist", "v1", false, 20).await,
            big: self
                .image("test/big", "v1", false, 3, 5 * 1024 * 1024 + 123, "amd64")
                .await,
        }
    }
}

/// trustgate running in-process on 127.0.0.1:0.
pub struct TestProxy {
    pub addr: SocketAddr,
    pub url: String,
    pub state: Arc<trustgate::proxy::AppState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// A private state directory, for configs that leave `state_dir` at the system default:
    /// tests must not share trust state or the content cache through /var/lib/trustgate.
    _state_dir: Option<tempfile::TempDir>,
    pub task: Option<tokio::task::JoinHandle<()>>,
}

impl TestProxy {
    /// Starts the proxy with a TOML configuration (the `listen` field is ignored).
    pub async fn start(config_toml: &str) -> TestProxy {
        let cfg = trustgate::config::Config::from_toml_str(config_toml, "test.toml")
            .unwrap_or_else(|e| panic!("test config invalid:\n{e}"));
        TestProxy::start_config(cfg).await
    }

    /// Starts the proxy. A config that names no policy file gets an allow-all policy here:
    /// the protocol tests are about the registry API, and the enforcement tests pass their
    /// own policy (see [`TestProxy::start_with_policy`]).
    pub async fn start_config(cfg: trustgate::config::Config) -> TestProxy {
        let (cfg, dir) = private_state_dir(cfg);
        let state = if cfg.policy.is_some() {
            trustgate::proxy::AppState::new(cfg).expect("build proxy state")
        } else {
            let allow = trustgate::policy::Policy::from_str(
                "version = 1\n[default]\nrequire = \"allow\"\n",
                "allow-all test policy",
            )
            .expect("allow-all policy");
            let handle = std::sync::Arc::new(trustgate::policy::PolicyHandle::fixed(allow));
            trustgate::proxy::AppState::with_policy(cfg, handle).expect("build proxy state")
        };
        let mut p = TestProxy::start_state(state).await;
        p._state_dir = dir;
        p
    }

    /// Starts the proxy with `cfg` and the policy in `policy` (a handle the test may reload).
    pub async fn start_with_policy(
        cfg: trustgate::config::Config,
        policy: std::sync::Arc<trustgate::policy::PolicyHandle>,
    ) -> TestProxy {
        let (cfg, dir) = private_state_dir(cfg);
        let state =
            trustgate::proxy::AppState::with_policy(cfg, policy).expect("build proxy state");
        let mut p = TestProxy::start_state(state).await;
        p._state_dir = dir;
        p
    }

    pub async fn start_state(state: std::sync::Arc<trustgate::proxy::AppState>) -> TestProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let st = state.clone();
        let task = tokio::spawn(async move {
            trustgate::server::run(st, listener, async {
                let _ = rx.await;
            })
            .await
            .expect("proxy server");
        });
        let scheme = if state.config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        TestProxy {
            addr,
            url: format!("{scheme}://{addr}"),
            state,
            stop: Some(tx),
            task: Some(task),
            _state_dir: None,
        }
    }

    /// Requests shutdown and waits for the server loop to return.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

fn private_state_dir(
    mut cfg: trustgate::config::Config,
) -> (trustgate::config::Config, Option<tempfile::TempDir>) {
    if cfg.state_dir != std::path::Path::new(trustgate::config::DEFAULT_STATE_DIR) {
        return (cfg, None);
    }
    let dir = tempdir();
    cfg.state_dir = dir.path().join("state");
    (cfg, Some(dir))
}

/// A config with one upstream per `(name, url)`, the first being the default.
pub fn proxy_config(upstreams: &[(&str, &str)], extra_upstream_toml: &str) -> String {
    let mut s = format!("default_upstream = {:?}\n", upstreams[0].0);
    for (name, url) in upstreams {
        s.push_str(&format!(
            "[[upstream]]\nname = {name:?}\nurl = {url:?}\n{extra_upstream_toml}\n"
        ));
    }
    s
}

/// Runs `skopeo copy` from the proxy into a `dir:` layout and returns the output directory.
pub fn skopeo_copy(src: &str, out: &std::path::Path) {
    let skopeo = require_tool("skopeo");
    let o = Command::new(skopeo)
        .args(["copy", "--src-tls-verify=false", "--retry-times=0"])
        .arg(src)
        .arg(format!("dir:{}", out.display()))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "skopeo copy {src} failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

impl TestProxy {
    /// Requests shutdown without waiting for the server loop.
    pub fn shutdown_in_background(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::spawn(async move {
                let _ = t.await;
            });
        }
    }
}
