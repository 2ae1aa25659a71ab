//! Shared setup for the trust tests: a client on a state directory with an injected clock,
//! a repository with a `targets/releases` delegation, and re-serving hand-modified files.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use time::{Duration, OffsetDateTime};
use trustgate::trust::{default_roles, TrustClient, TrustError, TrustSettings, VerifiedTarget};

use super::{envelope, target, Delegation, MemSource, Published, Repo, Signer};

pub const GUN: &str = "registry.example/team/app";

pub fn settings(dir: &Path) -> TrustSettings {
    TrustSettings {
        state_dir: Some(dir.to_path_buf()),
        ..Default::default()
    }
}

pub fn client_at(src: &Arc<MemSource>, s: TrustSettings, now: OffsetDateTime) -> TrustClient {
    TrustClient::new(s, src.clone())
        .unwrap()
        .with_clock(Arc::new(move || now))
}

pub fn client(src: &Arc<MemSource>, dir: &Path, now: OffsetDateTime) -> TrustClient {
    client_at(src, settings(dir), now)
}

/// A repo with `latest` in targets and `v1` in targets/releases.
pub fn repo_with_releases() -> Repo {
    let mut repo = Repo::new(GUN);
    repo.targets
        .insert("latest".into(), target(b"manifest-latest"));
    repo.targets
        .insert("v1".into(), target(b"manifest-v1-from-targets"));
    repo.delegations.push(Delegation {
        name: "targets/releases".into(),
        keys: vec![Signer::ecdsa()],
        threshold: 1,
        paths: vec![String::new()],
        targets: BTreeMap::from([("v1".to_string(), target(b"manifest-v1"))]),
        version: 1,
        expires: repo.now + Duration::days(365),
    });
    repo
}

pub async fn resolve(c: &TrustClient, tag: &str) -> Result<VerifiedTarget, TrustError> {
    c.resolve(GUN, tag, &default_roles()).await
}

pub async fn expect_err(src: &Arc<MemSource>, now: OffsetDateTime, tag: &str) -> TrustError {
    let dir = tempfile::tempdir().unwrap();
    resolve(&client(src, dir.path(), now), tag)
        .await
        .unwrap_err()
}

/// Serves files as given, recomputing snapshot and timestamp over them.
pub fn serve_rebuilt(repo: &Repo, src: &MemSource, p: Published) {
    let snapshot = envelope(
        &repo.snapshot_signed(&p.root, &p.targets, &p.delegations),
        &[&repo.snapshot_key],
    );
    let timestamp = envelope(&repo.timestamp_signed(&snapshot), &[&repo.timestamp_key]);
    src.put_role("root", &p.root);
    src.put_role("targets", &p.targets);
    for (name, bytes) in &p.delegations {
        src.put_role(name, bytes);
    }
    src.put_role("snapshot", &snapshot);
    src.put("timestamp.json", &timestamp);
}

pub fn src_root(src: &MemSource) -> Vec<u8> {
    use trustgate::trust::MetadataSource;
    futures_util::FutureExt::now_or_never(src.fetch(GUN, "root.json", u64::MAX))
        .unwrap()
        .unwrap()
        .to_vec()
}

pub fn state_file(dir: &Path) -> std::path::PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .unwrap()
}

pub fn repo_now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}
