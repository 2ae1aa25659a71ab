//! The whole real stack for end-to-end tests: a real docker-registry, a real notary-server
//! (local ed25519 or signer-backed ecdsa), trust data published by the real notary CLI, and
//! trustgate in-process in front of them with a policy file the test writes (and may rewrite).
//!
//! The upstream is named [`CLOSED_REGISTRY`] (`127.0.0.1:1`, where nothing listens): that is
//! the registry clients *mean* (containerd's `ns=`, podman's prefix), so GUNs are
//! `127.0.0.1:1/<repo>`, and a client that ever fell back past trustgate would fail.

use std::path::PathBuf;
use std::sync::Arc;

use trustgate::policy::PolicyHandle;

use super::clients::CLOSED_REGISTRY;
use super::notary::{Flavour, NotaryCli, NotaryServer};
use super::registry::{proxy_config, Pushed, Pusher, Registry, TestProxy};
use super::tempdir;

pub struct Stack {
    pub registry: Registry,
    pub notary: NotaryServer,
    pub cli: NotaryCli,
    pub pusher: Pusher,
    pub proxy: TestProxy,
    pub policy: Arc<PolicyHandle>,
    pub policy_file: PathBuf,
    pub dir: tempfile::TempDir,
    initialised: std::sync::Mutex<Vec<String>>,
}

/// A policy requiring Docker Content Trust for everything, against the stack's notary.
pub const SIGNED_DEFAULT: &str = r#"
[default]
require = "signed"
trust_server = "test"
"#;

impl Stack {
    /// Starts everything. `policy_body` is TOML after `version` and the `[trust_servers.test]`
    /// table, which the stack writes (pointing at its notary-server and CA).
    pub async fn start(flavour: Flavour, policy_body: &str) -> Stack {
        Stack::start_opts(flavour, policy_body, false).await
    }

    /// As [`Stack::start`]; with `tls`, trustgate listens with a certificate from a test CA
    /// whose file is [`Stack::proxy_ca`].
    pub async fn start_opts(flavour: Flavour, policy_body: &str, tls: bool) -> Stack {
        let registry = Registry::start();
        let notary = NotaryServer::start(flavour);
        let cli = NotaryCli::new(&notary);
        let pusher = Pusher::new(&registry);
        let dir = tempdir();
        let policy_file = dir.path().join("policy.toml");
        std::fs::write(&policy_file, Stack::policy_text(&notary, policy_body)).unwrap();
        let policy = Arc::new(PolicyHandle::load(&policy_file).expect("test policy loads"));
        let tls_files = tls.then(|| {
            let ca = super::pki::TestCa::new("trustgate listener CA");
            ca.issue(&dir.path().join("listener"), "trustgate")
        });
        let cfg = proxy_cfg(&registry, dir.path(), tls_files.as_ref());
        let proxy = TestProxy::start_with_policy(cfg, policy.clone()).await;
        Stack {
            registry,
            notary,
            cli,
            pusher,
            proxy,
            policy,
            policy_file,
            dir,
            initialised: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The full policy file for `body` against `notary`.
    pub fn policy_text(notary: &NotaryServer, body: &str) -> String {
        format!(
            "version = 1\n[trust_servers.test]\nurl = {:?}\nca_file = {:?}\n{body}",
            notary.url,
            notary.ca_path.display().to_string()
        )
    }

    /// Rewrites the policy file (a reload picks it up).
    pub fn write_policy(&self, body: &str) {
        std::fs::write(&self.policy_file, Stack::policy_text(&self.notary, body)).unwrap();
    }

    /// A new trustgate (fresh process state: caches, single-flight, reached digests in memory)
    /// on the same state directory and policy, as after a restart. Plain HTTP.
    pub async fn restart_proxy(&self) -> TestProxy {
        let cfg = proxy_cfg(&self.registry, self.dir.path(), None);
        TestProxy::start_with_policy(cfg, self.policy.clone()).await
    }

    /// The CA of trustgate's listener certificate (with `tls`).
    pub fn proxy_ca(&self) -> PathBuf {
        self.dir.path().join("listener").join("ca.crt")
    }

    pub fn gun(&self, repo: &str) -> String {
        format!("{CLOSED_REGISTRY}/{repo}")
    }

    /// `127.0.0.1:<proxy port>/<repo><reference>` (reference like `:tag` or `@sha256:..`).
    pub fn via_proxy(&self, repo: &str, reference: &str) -> String {
        format!("{}/{repo}{reference}", self.proxy.addr)
    }

    pub async fn push(&self, repo: &str, tag: &str, seed: u64) -> Pushed {
        self.pusher
            .image(repo, tag, false, seed, 2048, "amd64")
            .await
    }

    /// Signs `tag` → `manifest` in `roles` (empty: `targets`) and publishes, initialising the
    /// GUN on first use. Blocking (runs the notary CLI).
    pub fn sign(&self, repo: &str, tag: &str, manifest: &[u8], roles: &[&str]) {
        let gun = self.gun(repo);
        self.init(repo);
        self.cli.add(&gun, tag, manifest, roles);
        self.cli.publish(&gun);
    }

    pub fn init(&self, repo: &str) {
        let gun = self.gun(repo);
        let mut done = self.initialised.lock().unwrap();
        if !done.contains(&gun) {
            self.cli.init(&gun);
            self.cli.publish(&gun);
            done.push(gun);
        }
    }

    /// A plain HTTP client for asserting on trustgate's responses.
    pub fn http(&self) -> reqwest::Client {
        reqwest::Client::builder().build().unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.proxy.url)
    }
}

/// trustgate's config for the stack: the registry as upstream [`CLOSED_REGISTRY`], state under
/// `dir/state`, and optionally a TLS listener.
fn proxy_cfg(
    registry: &Registry,
    dir: &std::path::Path,
    tls: Option<&super::pki::IssuedCert>,
) -> trustgate::config::Config {
    let mut toml = proxy_config(&[(CLOSED_REGISTRY, &registry.url)], "");
    if let Some(issued) = tls {
        toml.push_str(&format!(
            "[tls]\ncert = {:?}\nkey = {:?}\n",
            issued.cert_path.display().to_string(),
            issued.key_path.display().to_string()
        ));
    }
    let mut cfg = trustgate::config::Config::from_toml_str(&toml, "e2e.toml").unwrap();
    cfg.state_dir = dir.join("state");
    cfg
}

/// A one-layer image that runtimes can unpack: a real gzip'd tar (sorted, mtime 0, numeric
/// owners, `gzip -n`) holding one file, so digests are stable across runs.
pub async fn push_runnable(pusher: &Pusher, repo: &str, reference: &str, arch: &str) -> Pushed {
    use super::registry::{Blob, DOCKER_CONFIG, DOCKER_LAYER, DOCKER_MANIFEST};
    let work = tempdir();
    let rootfs = work.path().join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    std::fs::write(
        rootfs.join("hello.txt"),
        format!("hello from {repo}:{reference} on {arch}\n"),
    )
    .unwrap();
    let tar = work.path().join("layer.tar");
    let st = std::process::Command::new("tar")
        .args([
            "--sort=name",
            "--mtime=@0",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "-C",
        ])
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success(), "tar");
    let tar_bytes = std::fs::read(&tar).unwrap();
    let gz = std::process::Command::new("gzip")
        .args(["-n", "-c"])
        .arg(&tar)
        .output()
        .unwrap();
    assert!(gz.status.success(), "gzip");
    let layer = Blob::new(gz.stdout, DOCKER_LAYER);
    let config = serde_json::json!({
        "architecture": arch, "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [super::registry::sha256(&tar_bytes)]}
    });
    let config = Blob::new(serde_json::to_vec(&config).unwrap(), DOCKER_CONFIG);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": config.descriptor(), "layers": [layer.descriptor()]
    }))
    .unwrap();
    pusher.blob(repo, &config).await;
    pusher.blob(repo, &layer).await;
    pusher
        .manifest(repo, reference, DOCKER_MANIFEST, &manifest)
        .await;
    Pushed {
        repo: repo.into(),
        tag: reference.into(),
        media_type: DOCKER_MANIFEST,
        digest: super::registry::sha256(&manifest),
        manifest,
        blobs: vec![config, layer],
        children: vec![],
    }
}

/// A two-platform (amd64, arm64) Docker manifest list of runnable images at `repo:tag`.
pub async fn push_runnable_list(pusher: &Pusher, repo: &str, tag: &str) -> Pushed {
    use super::registry::DOCKER_LIST;
    let mut children = Vec::new();
    for arch in ["amd64", "arm64"] {
        children.push(push_runnable(pusher, repo, &format!("{tag}-{arch}"), arch).await);
    }
    let entries: Vec<_> = children
        .iter()
        .zip(["amd64", "arm64"])
        .map(|(c, arch)| {
            serde_json::json!({"mediaType": c.media_type, "size": c.manifest.len(),
                "digest": c.digest, "platform": {"architecture": arch, "os": "linux"}})
        })
        .collect();
    let list = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": entries
    }))
    .unwrap();
    pusher.manifest(repo, tag, DOCKER_LIST, &list).await;
    Pushed {
        repo: repo.into(),
        tag: tag.into(),
        media_type: DOCKER_LIST,
        digest: super::registry::sha256(&list),
        manifest: list,
        blobs: children.iter().flat_map(|c| c.blobs.clone()).collect(),
        children,
    }
}
