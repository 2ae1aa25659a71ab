//! Operating against the REAL notary-server: the server down (fail closed, or answer from
//! verified state), data deleted on the server, token authentication, and the Docker CLI's
//! own view (`docker trust inspect`) as a second oracle.
mod support;

use std::sync::Arc;

use support::notary::{
    assert_same_as_notary, digest_of, docker_trust_inspect, docker_trust_inspect_all, resolve,
    DelegationKeyKind, Flavour, NotaryCli, NotaryServer,
};
use trustgate::trust::{default_roles, RefusalReason, TrustClient, TrustError, TrustSettings};

#[tokio::test]
async fn server_down_with_nothing_cached_fails_closed() {
    let gun = "example.com/down";
    let mut server = NotaryServer::local();
    let cli = NotaryCli::new(&server);
    cli.init(gun);
    cli.add(gun, "v1", b"v1", &[]);
    cli.publish(gun);
    server.stop();
    let state = support::tempdir();
    let err = resolve(&server, state.path(), gun, "v1").await.unwrap_err();
    assert_eq!(err.reason(), RefusalReason::Unreachable, "{err:?}");
}

#[tokio::test]
async fn server_down_with_verified_cache_still_resolves() {
    let gun = "example.com/airgap";
    let mut server = NotaryServer::remote();
    let cli = NotaryCli::new(&server);
    cli.init(gun);
    cli.add(gun, "v1", b"cached v1", &[]);
    cli.publish(gun);
    let state = support::tempdir();
    let online = resolve(&server, state.path(), gun, "v1").await.unwrap();
    assert_same_as_notary(&cli, gun, "v1", &online);
    server.stop();
    let offline = resolve(&server, state.path(), gun, "v1").await.unwrap();
    assert_eq!(offline.digest(), online.digest());
    assert_eq!(offline.length(), online.length());
    assert_eq!(offline.role(), online.role());
    let err = resolve(&server, state.path(), gun, "never-signed")
        .await
        .unwrap_err();
    assert_eq!(err.reason(), RefusalReason::TagNotSigned, "{err:?}");
}

#[tokio::test]
async fn docker_trust_inspect_agrees() {
    let gun = "registry.example/app";
    let server = NotaryServer::local();
    let cli = NotaryCli::new(&server);
    cli.init(gun);
    cli.add(gun, "v1", b"targets v1", &[]);
    cli.publish(gun);
    cli.add_delegation(gun, "targets/releases", DelegationKeyKind::X509Cert, None);
    cli.add(gun, "v2", b"releases v2", &["targets/releases"]);
    cli.publish(gun);
    cli.add_delegation(gun, "targets/ci", DelegationKeyKind::PublicKey, None);
    cli.add(gun, "ci-1", b"ci build", &["targets/ci"]);
    cli.publish(gun);
    let state = support::tempdir();
    // Docker shows both accepted roles as "Repo Admin" (`notaryRoleToSigner`).
    for tag in ["v1", "v2"] {
        let got = resolve(&server, state.path(), gun, tag).await.unwrap();
        let docker = docker_trust_inspect(&server, gun, tag);
        assert_eq!(docker.len(), 1, "{docker:?}");
        assert_eq!(docker[0].digest, got.digest());
        assert_eq!(
            docker[0].signers,
            vec!["Repo Admin".to_string()],
            "{docker:?}"
        );
    }
    // A tag signed only in another delegation: notary finds it, Docker shows no signed tag,
    // and we refuse it by default.
    assert!(cli.lookup(gun, "ci-1").is_ok());
    let docker = docker_trust_inspect(&server, gun, "ci-1");
    assert!(docker.is_empty(), "{docker:?}");
    // Likewise a child of releases.
    cli.add_delegation(
        gun,
        "targets/releases/team",
        DelegationKeyKind::PublicKey,
        None,
    );
    cli.add(gun, "t1", b"team build", &["targets/releases/team"]);
    cli.publish(gun);
    assert!(cli.lookup(gun, "t1").is_ok());
    assert!(docker_trust_inspect(&server, gun, "t1").is_empty());
    let err = resolve(&server, state.path(), gun, "t1").await.unwrap_err();
    assert_eq!(
        err.reason(),
        RefusalReason::SignedByUnacceptedRole,
        "{err:?}"
    );
    let err = resolve(&server, state.path(), gun, "ci-1")
        .await
        .unwrap_err();
    assert_eq!(
        err.reason(),
        RefusalReason::SignedByUnacceptedRole,
        "{err:?}"
    );
    // The whole repository: the tags Docker lists are exactly the ones we list.
    let docker: Vec<(String, String)> = docker_trust_inspect_all(&server, gun)
        .into_iter()
        .map(|t| (t.tag, t.digest))
        .collect();
    let ours: Vec<(String, String)> = support::notary::trust_client(&server, state.path())
        .list(gun, &default_roles())
        .await
        .unwrap()
        .iter()
        .map(|t| (t.tag().to_string(), t.digest().to_string()))
        .collect();
    assert_eq!(ours, docker);
    assert_eq!(ours.len(), 2, "{ours:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_auth_trust_server() {
    use support::tokenissuer::{IssuerOptions, TokenIssuer, ISSUER, SERVICE};
    use trustgate::trust::fetch::{settings_for, HttpMetadataSource};
    use trustgate::upstream::Credentials;

    let dir = support::tempdir();
    let issuer = TokenIssuer::start(
        dir.path(),
        IssuerOptions {
            require: Some(("alice".into(), "s3cret".into())),
            ..Default::default()
        },
    )
    .await;
    let auth = serde_json::json!({"type": "token", "options": {
        "realm": issuer.realm("127.0.0.1"),
        "service": SERVICE,
        "issuer": ISSUER,
        "rootcertbundle": issuer.cert_pem_path,
    }});
    let gun = "example.com/private";
    let (server, cli) = tokio::task::spawn_blocking(move || {
        let server = NotaryServer::start_with_auth(Flavour::Local, Some(auth), true);
        let cli = NotaryCli::new(&server).with_auth("alice", "s3cret");
        cli.init(gun);
        cli.add(gun, "v1", b"private v1", &[]);
        cli.publish(gun);
        (server, cli)
    })
    .await
    .unwrap();
    let before = issuer.requests().len();

    let mut settings = settings_for(&server.url, Some(server.ca_path.clone())).unwrap();
    settings.credentials = Some(Credentials {
        username: "alice".into(),
        password: "s3cret".into(),
    });
    let source = HttpMetadataSource::from_settings(settings).unwrap();
    let state = support::tempdir();
    let client = TrustClient::new(
        TrustSettings {
            state_dir: Some(state.path().to_path_buf()),
            ..TrustSettings::default()
        },
        Arc::new(source),
    )
    .unwrap();
    let got = client.resolve(gun, "v1", &default_roles()).await.unwrap();
    // `notary lookup` cannot be the oracle here: the notary CLI pulls anonymously (its
    // read-only commands never send credentials), and this issuer requires them.
    assert_eq!(got.digest(), digest_of(b"private v1"));
    assert_eq!(got.length(), b"private v1".len() as u64);
    assert_eq!(got.role(), "targets");
    let ours: Vec<_> = issuer.requests().split_off(before);
    assert!(!ours.is_empty());
    let want = format!("repository:{gun}:pull");
    assert!(
        ours.iter()
            .all(|r| r.scope.as_deref() == Some(want.as_str())),
        "{ours:?}"
    );

    let anonymous = support::tempdir();
    let err = resolve(&server, anonymous.path(), gun, "v1")
        .await
        .unwrap_err();
    // Authentication failed: not "server down", so no cache could answer for it either.
    assert!(matches!(err, TrustError::Refused { .. }), "{err:?}");

    // The CLI logs in the same way (password from a file, never from argv).
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "s3cret\n").unwrap();
    let cli_state = support::tempdir();
    let args = trustgate::trust::cli::LookupArgs {
        gun: gun.to_string(),
        tag: "v1".to_string(),
        server: trustgate::trust::cli::ServerArgs {
            server: server.url.clone(),
            ca: None,
            root_cert: None,
            state_dir: Some(cli_state.path().to_path_buf()),
            username: Some("alice".to_string()),
            password_file: Some(pw),
            roles: Vec::new(),
        },
    };
    let out = trustgate::trust::cli::lookup(&args).await.unwrap();
    assert_eq!(out, format!("v1 {} 10 targets\n", digest_of(b"private v1")));
    drop(cli);
}

#[tokio::test]
async fn deleted_on_server_behaves_like_notary_with_its_cache() {
    let gun = "example.com/deleted";
    let server = NotaryServer::local();
    let publisher = NotaryCli::new(&server);
    publisher.init(gun);
    publisher.add(gun, "v1", b"v1 before delete", &[]);
    publisher.publish(gun);
    let observer = NotaryCli::new(&server);
    let before = observer.lookup(gun, "v1").unwrap();
    let state = support::tempdir();
    resolve(&server, state.path(), gun, "v1").await.unwrap();
    publisher.run(&["delete", gun, "--remote"]);
    assert_eq!(server.get_raw(gun, "timestamp.json").0, 404);
    // Notary uses its cached, still valid metadata when the server answers 404 ...
    assert_eq!(observer.lookup(gun, "v1").unwrap(), before);
    let ours = resolve(&server, state.path(), gun, "v1").await.unwrap();
    assert_eq!(ours.digest(), before.digest);
    assert_eq!(ours.length(), before.size);
    // ... and a client that never saw the data finds none.
    let fresh = support::tempdir();
    let err = resolve(&server, fresh.path(), gun, "v1").await.unwrap_err();
    assert_eq!(err.reason(), RefusalReason::NoTrustData, "{err:?}");
}

/// A verifier whose clock runs `ahead` of the real one.
fn client_at(server: &NotaryServer, state: &std::path::Path, ahead: time::Duration) -> TrustClient {
    let settings = TrustSettings {
        state_dir: Some(state.to_path_buf()),
        ..TrustSettings::default()
    };
    TrustClient::new(settings, Arc::new(server.metadata_source()))
        .unwrap()
        .with_clock(Arc::new(move || time::OffsetDateTime::now_utc() + ahead))
}

/// notary-server signs timestamps for 14 days. Fifteen days on, the same real data is
/// expired — whether fetched from the live server or answered from verified state while the
/// server is down: stale trust is never served past its expiry.
#[tokio::test]
async fn real_timestamp_expires_after_fourteen_days() {
    let gun = "example.com/expiry";
    let mut server = NotaryServer::local();
    let cli = NotaryCli::new(&server);
    cli.init(gun);
    cli.add(gun, "v1", b"v1", &[]);
    cli.publish(gun);
    let state = support::tempdir();
    let day13 = client_at(&server, state.path(), time::Duration::days(13));
    let got = day13.resolve(gun, "v1", &default_roles()).await.unwrap();
    assert_same_as_notary(&cli, gun, "v1", &got);
    assert!(got.expires() <= time::OffsetDateTime::now_utc() + time::Duration::days(14));

    let fresh = support::tempdir();
    let day15 = client_at(&server, fresh.path(), time::Duration::days(15));
    let err = day15
        .resolve(gun, "v1", &default_roles())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TrustError::Expired { role, .. } if role == "timestamp"),
        "{err:?}"
    );

    server.stop();
    let offline13 = client_at(&server, state.path(), time::Duration::days(13));
    offline13
        .resolve(gun, "v1", &default_roles())
        .await
        .unwrap();
    let offline15 = client_at(&server, state.path(), time::Duration::days(15));
    let err = offline15
        .resolve(gun, "v1", &default_roles())
        .await
        .unwrap_err();
    assert_eq!(err.reason(), RefusalReason::Expired, "{err:?}");
}

/// One client shared by concurrent pulls (as the proxy shares it): every answer is right and
/// the persisted state stays loadable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_resolves_share_one_client() {
    let gun = "example.com/concurrent";
    let server = NotaryServer::remote();
    let cli = NotaryCli::new(&server);
    cli.init(gun);
    for i in 0..8 {
        cli.add(gun, &format!("t{i}"), format!("m{i}").as_bytes(), &[]);
    }
    cli.publish(gun);
    let state = support::tempdir();
    let client = Arc::new(support::notary::trust_client(&server, state.path()));
    let mut tasks = Vec::new();
    for round in 0..4 {
        for i in 0..8 {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                let tag = format!("t{i}");
                let got = client.resolve(gun, &tag, &default_roles()).await;
                (round, i, got)
            }));
        }
    }
    for t in tasks {
        let (round, i, got) = t.await.unwrap();
        let got = got.unwrap_or_else(|e| panic!("round {round} t{i}: {e:?}"));
        assert_eq!(got.digest(), digest_of(format!("m{i}").as_bytes()));
    }
    drop(client);
    let again = resolve(&server, state.path(), gun, "t3").await.unwrap();
    assert_same_as_notary(&cli, gun, "t3", &again);
}
