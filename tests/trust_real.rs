//! Trust verification against the REAL notary-server (local ed25519 and signer-backed ecdsa
//! server keys), with trust data published by the REAL notary CLI. Every positive result is
//! compared with what `notary lookup` / `notary list` report for the same data.
mod support;

use std::path::Path;
use std::sync::Arc;

use support::notary::{
    digest_of, docker_trust_inspect, DelegationKeyKind, Flavour, ListRow, LookupLine, NotaryCli,
    NotaryServer,
};
use trustgate::trust::{
    default_roles, RefusalReason, TrustClient, TrustError, TrustSettings, VerifiedTarget,
};

fn trust_client(server: &NotaryServer, state: &Path) -> TrustClient {
    let settings = TrustSettings {
        state_dir: Some(state.to_path_buf()),
        ..TrustSettings::default()
    };
    TrustClient::new(settings, Arc::new(server.metadata_source())).unwrap()
}

/// A trustgate verifier for one server with its own persisted state directory.
async fn resolve_with(
    server: &NotaryServer,
    state: &Path,
    gun: &str,
    tag: &str,
    roles: &[String],
) -> Result<VerifiedTarget, TrustError> {
    let client = trust_client(server, state);
    client.resolve(gun, tag, roles).await
}

async fn resolve(
    server: &NotaryServer,
    state: &Path,
    gun: &str,
    tag: &str,
) -> Result<VerifiedTarget, TrustError> {
    resolve_with(server, state, gun, tag, &default_roles()).await
}

/// The verdict equals what the real notary client reports for the same tag: `notary lookup`
/// for digest and size, `notary list` for the signing role.
fn assert_same_as_notary(cli: &NotaryCli, gun: &str, tag: &str, got: &VerifiedTarget) {
    let line: LookupLine = cli.lookup(gun, tag).expect("notary lookup");
    assert_eq!(got.gun(), gun);
    assert_eq!(got.tag(), tag);
    assert_eq!(got.digest(), line.digest, "digest vs notary lookup");
    assert_eq!(got.length(), line.size, "length vs notary lookup");
    let rows: Vec<ListRow> = cli.list(gun);
    let row = rows
        .iter()
        .find(|r| r.name == tag)
        .expect("tag in notary list");
    assert_eq!(got.role(), row.role, "role vs notary list");
    assert!(!got.keyids().is_empty());
}

macro_rules! both_flavours {
    ($scenario:ident, $local:ident, $remote:ident) => {
        #[tokio::test]
        async fn $local() {
            $scenario(Flavour::Local).await
        }
        #[tokio::test]
        async fn $remote() {
            $scenario(Flavour::Remote).await
        }
    };
}

async fn plain_targets_tag(flavour: Flavour) {
    let gun = "example.com/plain";
    let server = NotaryServer::start(flavour);
    let cli = NotaryCli::new(&server);
    cli.init(gun);
    let manifest =
        br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#;
    cli.add(gun, "v1", manifest, &[]);
    cli.add(gun, "latest", b"another manifest", &[]);
    cli.publish(gun);
    let state = support::tempdir();
    for tag in ["v1", "latest"] {
        let got = resolve(&server, state.path(), gun, tag).await.unwrap();
        assert_same_as_notary(&cli, gun, tag, &got);
        assert_eq!(got.role(), "targets");
    }
    assert_eq!(
        resolve(&server, state.path(), gun, "v1")
            .await
            .unwrap()
            .digest(),
        digest_of(manifest)
    );
}
both_flavours!(plain_targets_tag, targets_tag_local, targets_tag_remote);

async fn releases_delegation(flavour: Flavour, kind: DelegationKeyKind) {
    let gun = "example.com/rel";
    let server = NotaryServer::start(flavour);
    let cli = NotaryCli::new(&server);
    cli.init(gun);
    cli.add(gun, "base", b"base", &[]);
    cli.publish(gun);
    cli.add_delegation(gun, "targets/releases", kind, None);
    cli.add(gun, "v2", b"release two", &["targets/releases"]);
    cli.publish(gun);
    let state = support::tempdir();
    let got = resolve(&server, state.path(), gun, "v2").await.unwrap();
    assert_same_as_notary(&cli, gun, "v2", &got);
    assert_eq!(got.role(), "targets/releases");
    let base = resolve(&server, state.path(), gun, "base").await.unwrap();
    assert_same_as_notary(&cli, gun, "base", &base);
    // The same tag in both roles: Docker takes targets/releases first.
    cli.add(gun, "both", b"from targets", &[]);
    cli.add(gun, "both", b"from releases", &["targets/releases"]);
    cli.publish(gun);
    let both = resolve(&server, state.path(), gun, "both").await.unwrap();
    assert_eq!(both.role(), "targets/releases");
    assert_eq!(both.digest(), digest_of(b"from releases"));
    // Only targets/releases was asked for: a targets-only tag is then not accepted.
    let only = vec!["targets/releases".to_string()];
    let err = resolve_with(&server, state.path(), gun, "base", &only)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.reason(),
            RefusalReason::SignedByUnacceptedRole | RefusalReason::TagNotSigned
        ),
        "{err:?}"
    );
}

async fn releases_x509(flavour: Flavour) {
    releases_delegation(flavour, DelegationKeyKind::X509Cert).await
}
async fn releases_plain_key(flavour: Flavour) {
    releases_delegation(flavour, DelegationKeyKind::PublicKey).await
}
both_flavours!(
    releases_x509,
    releases_x509_cert_local,
    releases_x509_cert_remote
);
both_flavours!(
    releases_plain_key,
    releases_plain_key_local,
    releases_plain_key_remote
);

#[tokio::test]
async fn delegation_restricted_by_paths() {
    let gun = "example.com/paths";
    let server = NotaryServer::local();
    let cli = NotaryCli::new(&server);
    cli.init(gun);
    cli.add(gun, "v1", b"targets v1", &[]);
    cli.publish(gun);
    cli.add_delegation(
        gun,
        "targets/releases",
        DelegationKeyKind::X509Cert,
        Some(&["rel-"]),
    );
    cli.add(gun, "rel-1", b"release one", &["targets/releases"]);
    cli.publish(gun);
    // notary itself refuses to publish a target outside the delegation's paths.
    cli.add(gun, "other", b"outside", &["targets/releases"]);
    assert!(cli.try_run(&["publish", gun], None).is_err());
    cli.run(&["reset", gun, "--all"]);
    let state = support::tempdir();
    let got = resolve(&server, state.path(), gun, "rel-1").await.unwrap();
    assert_same_as_notary(&cli, gun, "rel-1", &got);
    assert_eq!(got.role(), "targets/releases");
    let v1 = resolve(&server, state.path(), gun, "v1").await.unwrap();
    assert_same_as_notary(&cli, gun, "v1", &v1);
    let err = resolve(&server, state.path(), gun, "other")
        .await
        .unwrap_err();
    assert_eq!(err.reason(), RefusalReason::TagNotSigned, "{err:?}");
}

async fn tag_only_in_other_delegation(flavour: Flavour) {
    let gun = "example.com/ci";
    let server = NotaryServer::start(flavour);
    let cli = NotaryCli::new(&server);
    cli.init(gun);
    cli.publish(gun);
    cli.add_delegation(gun, "targets/ci", DelegationKeyKind::PublicKey, None);
    cli.add(gun, "ci-1", b"ci build", &["targets/ci"]);
    cli.publish(gun);
    // notary lookup walks every delegation and finds it ...
    assert_eq!(cli.list_role(gun, "ci-1").as_deref(), Some("targets/ci"));
    let state = support::tempdir();
    // ... but Docker accepts only targets/releases and targets.
    let err = resolve(&server, state.path(), gun, "ci-1")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.reason(),
            RefusalReason::SignedByUnacceptedRole | RefusalReason::TagNotSigned
        ),
        "{err:?}"
    );
    // Configured to accept targets/ci, it resolves to exactly what notary reports.
    let ci = vec!["targets/ci".to_string()];
    let got = resolve_with(&server, state.path(), gun, "ci-1", &ci)
        .await
        .unwrap();
    assert_same_as_notary(&cli, gun, "ci-1", &got);
}
both_flavours!(
    tag_only_in_other_delegation,
    other_delegation_local,
    other_delegation_remote
);

async fn revoked_tag(flavour: Flavour) {
    let gun = "example.com/revoke";
    let server = NotaryServer::start(flavour);
    let cli = NotaryCli::new(&server);
    cli.init(gun);
    cli.add(gun, "v1", b"soon revoked", &[]);
    cli.add(gun, "keep", b"kept", &[]);
    cli.publish(gun);
    let state = support::tempdir();
    resolve(&server, state.path(), gun, "v1").await.unwrap();
    cli.remove(gun, "v1", &[]);
    cli.publish(gun);
    assert!(
        cli.lookup(gun, "v1").is_err(),
        "notary itself no longer finds it"
    );
    // Same state dir: the earlier verdict must not linger.
    let err = resolve(&server, state.path(), gun, "v1").await.unwrap_err();
    assert!(
        matches!(
            err.reason(),
            RefusalReason::TagNotSigned | RefusalReason::TagRevoked
        ),
        "{err:?}"
    );
    let keep = resolve(&server, state.path(), gun, "keep").await.unwrap();
    assert_same_as_notary(&cli, gun, "keep", &keep);
}
both_flavours!(revoked_tag, revoked_tag_local, revoked_tag_remote);

#[tokio::test]
async fn addhash_sha256_only_target() {
    let gun = "example.com/hash";
    let server = NotaryServer::remote();
    let cli = NotaryCli::new(&server);
    cli.init(gun);
    let hex = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    cli.addhash(gun, "v1", 1234, hex, &[]);
    cli.publish(gun);
    let state = support::tempdir();
    let got = resolve(&server, state.path(), gun, "v1").await.unwrap();
    assert_same_as_notary(&cli, gun, "v1", &got);
    assert_eq!(got.digest(), format!("sha256:{hex}"));
    assert_eq!(got.length(), 1234);
}

fn root_version_on_server(server: &NotaryServer, gun: &str) -> u64 {
    let (status, body) = server.get_raw(gun, "root.json");
    assert_eq!(status, 200);
    let root: serde_json::Value = serde_json::from_slice(&body).unwrap();
    root["signed"]["version"].as_u64().unwrap()
}

async fn root_rotation(flavour: Flavour) {
    let gun = "example.com/rotate";
    let server = NotaryServer::start(flavour);
    let cli = NotaryCli::new(&server);
    cli.init(gun);
    cli.add(gun, "v1", b"before rotation", &[]);
    cli.publish(gun);
    let old_state = support::tempdir();
    resolve(&server, old_state.path(), gun, "v1").await.unwrap();
    let before = root_version_on_server(&server, gun);
    // Two rotations, so a client holding the first root must walk `<n>.root.json` one by one.
    cli.rotate_root(gun);
    cli.rotate_root(gun);
    cli.add(gun, "v2", b"after rotation", &[]);
    cli.publish(gun);
    let now = root_version_on_server(&server, gun);
    assert!(
        now >= before + 2,
        "the root really rotated twice: {before} -> {now}"
    );
    // A fresh client trusts the new root on first use.
    let fresh = support::tempdir();
    let got = resolve(&server, fresh.path(), gun, "v2").await.unwrap();
    assert_same_as_notary(&cli, gun, "v2", &got);
    // A client that pinned the old root follows the rotation (each step signed by old + new).
    let got = resolve(&server, old_state.path(), gun, "v2").await.unwrap();
    assert_same_as_notary(&cli, gun, "v2", &got);
    let got = resolve(&server, old_state.path(), gun, "v1").await.unwrap();
    assert_same_as_notary(&cli, gun, "v1", &got);
    let repo = trust_client(&server, old_state.path())
        .repo(gun)
        .await
        .unwrap();
    assert_eq!(repo.root_version(), now);
}
both_flavours!(root_rotation, root_rotation_local, root_rotation_remote);

async fn server_managed_snapshot(flavour: Flavour) {
    let gun = "example.com/snap";
    let server = NotaryServer::start(flavour);
    let cli = NotaryCli::new(&server);
    cli.init(gun);
    cli.add(gun, "v1", b"client snapshot", &[]);
    cli.publish(gun);
    let state = support::tempdir();
    resolve(&server, state.path(), gun, "v1").await.unwrap();
    cli.rotate_snapshot_to_server(gun);
    cli.add(gun, "v2", b"server snapshot", &[]);
    cli.publish(gun);
    let (_, snap) = server.get_raw(gun, "snapshot.json");
    let snap: serde_json::Value = serde_json::from_slice(&snap).unwrap();
    let want = match flavour {
        Flavour::Local => "eddsa",
        Flavour::Remote => "ecdsa",
    };
    assert_eq!(
        snap["signatures"][0]["method"], want,
        "snapshot now signed by the server key"
    );
    let fresh = support::tempdir();
    for st in [state.path(), fresh.path()] {
        let got = resolve(&server, st, gun, "v2").await.unwrap();
        assert_same_as_notary(&cli, gun, "v2", &got);
    }
}
both_flavours!(
    server_managed_snapshot,
    server_snapshot_local,
    server_snapshot_remote
);

/// The server's data for a GUN is deleted and re-created under a new root key that the old
/// root never signed (a compromised or careless server operator). A client that already
/// trusts the old root must refuse it; a client meeting the GUN for the first time trusts
/// the new data on first use, as `notary lookup` with a fresh trust dir does.
async fn replaced_root(flavour: Flavour) {
    let gun = "example.com/replaced";
    let server = NotaryServer::start(flavour);
    let first = NotaryCli::new(&server);
    first.init(gun);
    first.add(gun, "v1", b"original", &[]);
    first.publish(gun);
    let pinned = support::tempdir();
    resolve(&server, pinned.path(), gun, "v1").await.unwrap();
    first.run(&["delete", gun, "--remote"]);
    assert_eq!(server.get_raw(gun, "root.json").0, 404);
    let second = NotaryCli::new(&server);
    second.init(gun);
    second.add(gun, "v1", b"replacement", &[]);
    second.publish(gun);
    let err = resolve(&server, pinned.path(), gun, "v1")
        .await
        .unwrap_err();
    assert!(
        matches!(err, TrustError::RootNotSignedByPrevious { .. }),
        "{err:?}"
    );
    assert_eq!(err.reason(), RefusalReason::SignatureInvalid);
    let fresh = support::tempdir();
    let got = resolve(&server, fresh.path(), gun, "v1").await.unwrap();
    assert_same_as_notary(&second, gun, "v1", &got);
    assert_eq!(got.digest(), digest_of(b"replacement"));
}
both_flavours!(replaced_root, replaced_root_local, replaced_root_remote);

#[tokio::test]
async fn repository_without_trust_data() {
    let server = NotaryServer::local();
    let cli = NotaryCli::new(&server);
    assert!(cli.lookup("example.com/unsigned", "v1").is_err());
    let state = support::tempdir();
    let err = resolve(&server, state.path(), "example.com/unsigned", "v1")
        .await
        .unwrap_err();
    assert_eq!(err.reason(), RefusalReason::NoTrustData, "{err:?}");
}

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
    let err = resolve(&server, state.path(), gun, "ci-1")
        .await
        .unwrap_err();
    assert_eq!(
        err.reason(),
        RefusalReason::SignedByUnacceptedRole,
        "{err:?}"
    );
}

/// A trust server behind Docker token auth: the notary CLI publishes as alice, trustgate
/// resolves with alice's credentials and asks the issuer for exactly
/// `repository:<GUN>:pull`; without credentials the server cannot be asked.
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
    assert!(
        matches!(
            err,
            TrustError::Refused { .. } | TrustError::Unreachable { .. }
        ),
        "{err:?}"
    );
    drop(cli);
}
