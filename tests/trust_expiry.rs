//! Expiry early warning: per GUN held, the earliest expiry among held metadata and root
//! certificates, from the library, the `trustgate trust status` CLI and the proxy's gauges.
mod trustfix;

use time::{Duration, OffsetDateTime};
use trustfix::harness::{client, repo_with_releases, resolve, GUN};
use trustfix::http::HttpTrust;
use trustfix::{MemSource, Signer};
use trustgate::enforce::TrustPool;
use trustgate::policy::{signed_requirement, Policy};
use trustgate::trust::expiry;

/// A repository whose root certificate ends in 2 days, before the timestamp (14 days).
fn repo_with_cert_ending_soon() -> trustfix::Repo {
    let mut repo = repo_with_releases();
    repo.root_keys = vec![Signer::root_cert(
        GUN,
        repo.now - Duration::days(1),
        repo.now + Duration::days(2),
    )];
    repo.timestamp_expires = repo.now + Duration::days(14);
    repo
}

#[tokio::test]
async fn the_earliest_expiry_is_found_and_named() {
    let src = MemSource::new();
    let repo = repo_with_cert_ending_soon();
    repo.publish(&src);
    let dir = tempfile::tempdir().unwrap();
    resolve(&client(&src, dir.path(), repo.now), "v1")
        .await
        .unwrap();
    let held = expiry::held(dir.path()).unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].gun, GUN);
    let e = held[0].earliest.as_ref().unwrap();
    assert!(e.what.starts_with("root certificate "), "{e:?}");
    assert!(e.what.contains(GUN), "{e:?}");
    let left = held[0].seconds_left(repo.now).unwrap();
    assert!((2 * 86_400 - 5..=2 * 86_400).contains(&left), "{left}");

    // With a long-lived certificate the timestamp is what ends first.
    let src = MemSource::new();
    let mut repo = repo_with_releases();
    repo.timestamp_expires = repo.now + Duration::days(3);
    repo.publish(&src);
    let dir = tempfile::tempdir().unwrap();
    resolve(&client(&src, dir.path(), repo.now), "v1")
        .await
        .unwrap();
    let held = expiry::held(dir.path()).unwrap();
    assert_eq!(held[0].earliest.as_ref().unwrap().what, "timestamp");

    // A corrupt state file is named, never silently left out.
    let file = trustfix::harness::state_file(dir.path());
    std::fs::write(&file, b"{").unwrap();
    let err = expiry::held(dir.path()).unwrap_err();
    assert!(err.contains(&file.display().to_string()), "{err}");
}

#[tokio::test]
async fn trust_status_cli_prints_each_gun() {
    let src = MemSource::new();
    let repo = repo_with_cert_ending_soon();
    repo.publish(&src);
    let dir = tempfile::tempdir().unwrap();
    resolve(&client(&src, dir.path(), repo.now), "v1")
        .await
        .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trustgate"))
        .args(["trust", "status", "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text.lines().next().unwrap();
    let fields: Vec<&str> = line.split(' ').collect();
    assert_eq!(fields[0], GUN, "{text}");
    let secs: i64 = fields[1].strip_suffix('s').unwrap().parse().unwrap();
    assert!((2 * 86_400 - 60..=2 * 86_400).contains(&secs), "{text}");
    assert!(line.contains("root certificate"), "{text}");
}

/// The proxy's layout (`state_dir/trust/<server>/`): the pool reports the minimum over every
/// GUN and per trust server (by the policy's name, never per GUN), and so do the gauges.
#[tokio::test]
async fn the_pool_reports_bounded_gauges() {
    let server = HttpTrust::start();
    let repo = repo_with_cert_ending_soon();
    repo.publish(&server.repo(GUN));
    let mut other = repo_with_releases();
    other.gun = "registry.example/team/other".into();
    other.root_keys = vec![Signer::root_cert(
        &other.gun,
        other.now - Duration::days(1),
        other.now + Duration::days(3000),
    )];
    other.publish(&server.repo("registry.example/team/other"));
    let text = format!(
        "[trust_servers.corp]\nurl = \"{}\"\n\n[[rules]]\nscope = \"registry.example/**\"\nrequire = \"signed\"\n\n[default]\nrequire = \"reject\"\n",
        server.url()
    );
    let policy = Policy::from_str(&text, "p.toml").unwrap();
    let state = tempfile::tempdir().unwrap();
    let pool = TrustPool::new(state.path().to_path_buf());
    for repository in ["team/app", "team/other"] {
        let decision = policy.decide("registry.example", repository);
        let req = signed_requirement(&decision).unwrap().notary().unwrap();
        pool.client(req)
            .unwrap()
            .1
            .resolve(
                &req.gun("registry.example", repository),
                "v1",
                &trustgate::trust::default_roles(),
            )
            .await
            .unwrap();
    }
    let e = pool.expiry();
    let left = e.earliest.unwrap();
    let two_days = (OffsetDateTime::now_utc() - repo.now).whole_seconds();
    assert!(
        (2 * 86_400 - 60 - two_days..=2 * 86_400).contains(&left),
        "{e:?}"
    );
    assert_eq!(e.per_server, vec![("corp".to_string(), left)]);
    // The CLI reads the proxy's state_dir too.
    let held = expiry::held(state.path()).unwrap();
    assert_eq!(held.len(), 2);
    assert_eq!(held[0].gun, GUN);
}
