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
        let registry = Registry::start();
        let notary = NotaryServer::start(flavour);
        let cli = NotaryCli::new(&notary);
        let pusher = Pusher::new(&registry);
        let dir = tempdir();
        let policy_file = dir.path().join("policy.toml");
        std::fs::write(&policy_file, Stack::policy_text(&notary, policy_body)).unwrap();
        let policy = Arc::new(PolicyHandle::load(&policy_file).expect("test policy loads"));
        let toml = proxy_config(&[(CLOSED_REGISTRY, &registry.url)], "");
        let mut cfg = trustgate::config::Config::from_toml_str(&toml, "e2e.toml").unwrap();
        cfg.state_dir = dir.path().join("state");
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

    pub fn gun(&self, repo: &str) -> String {
        format!("{CLOSED_REGISTRY}/{repo}")
    }

    /// `127.0.0.1:<proxy port>/<repo><reference>` (reference like `:tag` or `@sha256:..`).
    pub fn via_proxy(&self, repo: &str, reference: &str) -> String {
        format!("{}/{repo}{reference}", self.proxy.addr)
    }

    pub async fn push(&self, repo: &str, tag: &str, seed: u64) -> Pushed {
        self.pusher.image(repo, tag, false, seed, 2048, "amd64").await
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
