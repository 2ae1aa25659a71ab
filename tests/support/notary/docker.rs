//! `docker trust inspect`: what the Docker client itself would trust (no engine needed).

use std::process::Command;

use super::cli::run_ok;
use super::NotaryServer;
use crate::support::{require_tool, tempdir};

/// One entry of `docker trust inspect`'s `SignedTags`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerSignedTag {
    pub tag: String,
    /// `sha256:<hex>` (docker prints bare hex; normalised here).
    pub digest: String,
    /// Docker's signer names: `Repo Admin` for `targets`, the delegation's last path element
    /// otherwise (e.g. `releases`).
    pub signers: Vec<String>,
}

/// `docker trust inspect GUN:TAG` against `server` — what the Docker client itself trusts.
/// Needs only the docker CLI (no engine): `DOCKER_CONTENT_TRUST_SERVER` names the server and
/// `DOCKER_CONFIG/tls/<host:port>/ca.crt` its CA. The GUN must be a valid image name.
pub fn docker_trust_inspect(server: &NotaryServer, gun: &str, tag: &str) -> Vec<DockerSignedTag> {
    inspect(server, &format!("{gun}:{tag}"))
}

/// `docker trust inspect GUN`: every tag Docker trusts in the repository.
pub fn docker_trust_inspect_all(server: &NotaryServer, gun: &str) -> Vec<DockerSignedTag> {
    inspect(server, gun)
}

fn inspect(server: &NotaryServer, reference: &str) -> Vec<DockerSignedTag> {
    let docker = require_tool("docker");
    let cfg = tempdir();
    let tls = cfg.path().join("tls").join(server.host_port());
    std::fs::create_dir_all(&tls).unwrap();
    std::fs::copy(&server.ca_path, tls.join("ca.crt")).unwrap();
    let out = run_ok(
        Command::new(docker)
            .env("DOCKER_CONFIG", cfg.path())
            .env("DOCKER_CONTENT_TRUST_SERVER", &server.url)
            .args(["trust", "inspect"])
            .arg(reference),
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v[0]["SignedTags"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|t| DockerSignedTag {
            tag: t["SignedTag"].as_str().unwrap_or_default().to_string(),
            digest: format!("sha256:{}", t["Digest"].as_str().unwrap_or_default()),
            signers: t["Signers"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect(),
        })
        .collect()
}
