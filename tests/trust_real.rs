//! Trust verification against the REAL notary-server (local ed25519 and signer-backed ecdsa
//! server keys), with trust data published by the REAL notary CLI: Docker Content Trust
//! semantics. Every positive result is compared with what `notary lookup` / `notary list`
//! report for the same data.
mod support;

use support::notary::{
    assert_same_as_notary, both_flavours, digest_of, resolve, resolve_with, root_version_on_server,
    trust_client, DelegationKeyKind, Flavour, NotaryCli, NotaryServer,
};
use trustgate::trust::{RefusalReason, TrustError};
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
    assert!(cli
        .add_and_try_publish(gun, "other", b"outside", &["targets/releases"])
        .is_err());
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
    // Same state dir: the earlier verdict must not linger, and this client saw the tag
    // signed before, so it can tell a revocation ...
    let err = resolve(&server, state.path(), gun, "v1").await.unwrap_err();
    assert_eq!(err.reason(), RefusalReason::TagRevoked, "{err:?}");
    // ... which a client meeting the repository now cannot.
    let fresh = support::tempdir();
    let err = resolve(&server, fresh.path(), gun, "v1").await.unwrap_err();
    assert_eq!(err.reason(), RefusalReason::TagNotSigned, "{err:?}");
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

/// A trust server behind Docker token auth: the notary CLI publishes as alice, trustgate
/// resolves with alice's credentials and asks the issuer for exactly
/// `repository:<GUN>:pull`; without credentials the server cannot be asked.
/// The server loses a GUN's data (`notary delete --remote`). A client that verified it before
/// answers as the notary client with its cache does.
/// Docker accepts a tag only when the signing role is exactly `targets/releases` or
/// `targets`: one signed in a child of releases (`targets/releases/team`) is found by notary's
/// walk but not trusted.
#[tokio::test]
async fn nested_delegation_under_releases_is_not_releases() {
    let gun = "example.com/nested";
    let server = NotaryServer::remote();
    let cli = NotaryCli::new(&server);
    cli.init(gun);
    cli.publish(gun);
    cli.add_delegation(gun, "targets/releases", DelegationKeyKind::X509Cert, None);
    cli.add_delegation(
        gun,
        "targets/releases/team",
        DelegationKeyKind::PublicKey,
        None,
    );
    cli.add(gun, "t1", b"team build", &["targets/releases/team"]);
    cli.publish(gun);
    assert_eq!(
        cli.list_role(gun, "t1").as_deref(),
        Some("targets/releases/team")
    );
    let state = support::tempdir();
    let err = resolve(&server, state.path(), gun, "t1").await.unwrap_err();
    assert!(
        matches!(&err, TrustError::SignedOnlyByOtherRole { roles, .. } if roles == &["targets/releases/team"]),
        "{err:?}"
    );
    let team = vec!["targets/releases/team".to_string()];
    let got = resolve_with(&server, state.path(), gun, "t1", &team)
        .await
        .unwrap();
    assert_same_as_notary(&cli, gun, "t1", &got);
}

/// Revoking a tag in `targets/releases` while `targets` still signs it: Docker then trusts
/// the `targets` digest — removal from one role is not a revocation of the tag.
#[tokio::test]
async fn removed_from_releases_falls_back_to_targets() {
    let gun = "example.com/relremove";
    let server = NotaryServer::remote();
    let cli = NotaryCli::new(&server);
    cli.init(gun);
    cli.add(gun, "v1", b"v1 from targets", &[]);
    cli.publish(gun);
    cli.add_delegation(gun, "targets/releases", DelegationKeyKind::X509Cert, None);
    cli.add(gun, "v1", b"v1 from releases", &["targets/releases"]);
    cli.publish(gun);
    let state = support::tempdir();
    let got = resolve(&server, state.path(), gun, "v1").await.unwrap();
    assert_eq!(got.digest(), digest_of(b"v1 from releases"));
    cli.remove(gun, "v1", &["targets/releases"]);
    cli.publish(gun);
    let got = resolve(&server, state.path(), gun, "v1").await.unwrap();
    assert_same_as_notary(&cli, gun, "v1", &got);
    assert_eq!(got.role(), "targets");
    assert_eq!(got.digest(), digest_of(b"v1 from targets"));
}
