//! Key changes made with the REAL notary CLI, followed by a client that already trusts the
//! repository: targets / timestamp / snapshot key rotations, and delegation keys replaced or
//! removed. Every answer is compared with `notary lookup`.
mod support;

use support::notary::{
    assert_same_as_notary, both_flavours, resolve, root_version_on_server, trust_client,
    DelegationKey, DelegationKeyKind, Flavour, NotaryCli, NotaryServer,
};

async fn key_rotations(flavour: Flavour) {
    let gun = "example.com/keys";
    let server = NotaryServer::start(flavour);
    let cli = NotaryCli::new(&server);
    cli.init(gun);
    cli.add(gun, "v1", b"v1", &[]);
    cli.publish(gun);
    let state = support::tempdir();
    resolve(&server, state.path(), gun, "v1").await.unwrap();

    let steps: [(&str, &[&str]); 4] = [
        ("targets", &["key", "rotate", gun, "targets"]),
        ("timestamp -r", &["key", "rotate", gun, "timestamp", "-r"]),
        ("snapshot -r", &["key", "rotate", gun, "snapshot", "-r"]),
        (
            "snapshot back to the client",
            &["key", "rotate", gun, "snapshot"],
        ),
    ];
    for (i, (what, args)) in steps.iter().enumerate() {
        let root_before = root_version_on_server(&server, gun);
        cli.run(args);
        assert!(
            root_version_on_server(&server, gun) > root_before,
            "{what}: rotating a key publishes a new root"
        );
        let tag = format!("after-{i}");
        cli.add(gun, &tag, tag.as_bytes(), &[]);
        cli.publish(gun);
        // The client that trusted the repository before the rotation follows it ...
        for t in ["v1", tag.as_str()] {
            let got = resolve(&server, state.path(), gun, t)
                .await
                .unwrap_or_else(|e| panic!("after rotating {what}: {t}: {e:?}"));
            assert_same_as_notary(&cli, gun, t, &got);
        }
        // ... and so does one meeting it for the first time.
        let fresh = support::tempdir();
        let got = resolve(&server, fresh.path(), gun, &tag).await.unwrap();
        assert_same_as_notary(&cli, gun, &tag, &got);
    }
    let repo = trust_client(&server, state.path()).repo(gun).await.unwrap();
    assert_eq!(repo.root_version(), root_version_on_server(&server, gun));
}
both_flavours!(key_rotations, key_rotations_local, key_rotations_remote);

/// The keyid `notary delegation list` shows for the (only) key of `role`.
fn delegation_keyids(cli: &NotaryCli, gun: &str, role: &str) -> Vec<String> {
    let out = cli.run(&["delegation", "list", gun]);
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(role))
        .map(|l| {
            l.split_whitespace()
                .filter(|w| w.len() == 64 && w.bytes().all(|b| b.is_ascii_hexdigit()))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn delegation_key_replaced() {
    let gun = "example.com/delegkeys";
    let server = NotaryServer::local();
    let cli = NotaryCli::new(&server);
    cli.init(gun);
    cli.add(gun, "shared", b"shared from targets", &[]);
    cli.publish(gun);
    cli.add_delegation(gun, "targets/releases", DelegationKeyKind::X509Cert, None);
    cli.add(gun, "r1", b"r1 by first key", &["targets/releases"]);
    cli.add(
        gun,
        "shared",
        b"shared from releases",
        &["targets/releases"],
    );
    cli.publish(gun);
    let state = support::tempdir();
    for tag in ["r1", "shared"] {
        let got = resolve(&server, state.path(), gun, tag).await.unwrap();
        assert_eq!(got.role(), "targets/releases");
    }

    // Replace the delegation's key: the new key re-signs releases on the next publish.
    let old = delegation_keyids(&cli, gun, "targets/releases");
    assert_eq!(old.len(), 1, "{old:?}");
    let second = DelegationKey::generate(cli.scratch(), "releases-2", DelegationKeyKind::PublicKey);
    cli.delegation_add(gun, "targets/releases", &second, None);
    cli.key_import(&second.private_key, "targets/releases");
    cli.run(&[
        "delegation",
        "remove",
        gun,
        "targets/releases",
        &old[0],
        "-y",
    ]);
    cli.add(gun, "r2", b"r2 by second key", &["targets/releases"]);
    cli.publish(gun);
    for tag in ["r1", "r2"] {
        let got = resolve(&server, state.path(), gun, tag)
            .await
            .unwrap_or_else(|e| panic!("{tag}: {e:?}"));
        assert_same_as_notary(&cli, gun, tag, &got);
        assert_eq!(got.role(), "targets/releases");
    }
    // In both roles: Docker takes releases (`notary lookup`, walking from targets, would not).
    let got = resolve(&server, state.path(), gun, "shared").await.unwrap();
    assert_eq!(got.role(), "targets/releases");
    assert_eq!(
        got.digest(),
        support::notary::digest_of(b"shared from releases")
    );
}

/// Removing the last delegation makes notary write `"delegations":{"keys":{},"roles":null}`
/// (a Go nil slice); the notary client reads that as "no delegations". The tags the role
/// signed are gone; a tag also in targets falls back to targets.
#[tokio::test]
async fn delegation_role_removed_falls_back_to_targets() {
    let gun = "example.com/delegremoved";
    let server = NotaryServer::local();
    let cli = NotaryCli::new(&server);
    cli.init(gun);
    cli.add(gun, "shared", b"shared from targets", &[]);
    cli.publish(gun);
    cli.add_delegation(gun, "targets/releases", DelegationKeyKind::X509Cert, None);
    cli.add(gun, "r1", b"r1", &["targets/releases"]);
    cli.add(
        gun,
        "shared",
        b"shared from releases",
        &["targets/releases"],
    );
    cli.publish(gun);
    let state = support::tempdir();
    let got = resolve(&server, state.path(), gun, "shared").await.unwrap();
    assert_eq!(got.role(), "targets/releases");

    cli.run(&["delegation", "remove", gun, "targets/releases", "-y"]);
    cli.publish(gun);
    let (_, targets) = server.get_raw(gun, "targets.json");
    let targets: serde_json::Value = serde_json::from_slice(&targets).unwrap();
    assert!(targets["signed"]["delegations"]["roles"].is_null());
    assert!(cli.lookup(gun, "r1").is_err());
    let err = resolve(&server, state.path(), gun, "r1").await.unwrap_err();
    assert_eq!(
        err.reason(),
        trustgate::trust::RefusalReason::TagNotSigned,
        "{err:?}"
    );
    let got = resolve(&server, state.path(), gun, "shared").await.unwrap();
    assert_same_as_notary(&cli, gun, "shared", &got);
    assert_eq!(got.role(), "targets");
    assert_eq!(
        got.digest(),
        support::notary::digest_of(b"shared from targets")
    );
}

/// The delegation's key is replaced but nobody re-signs `targets/releases`: the role no
/// longer meets its threshold, and the notary client skips it (its tags are not trusted, a
/// tag also in targets falls back to targets). `notary witness` re-signs it with the new key.
#[tokio::test]
async fn delegation_under_threshold_is_skipped_until_witnessed() {
    let gun = "example.com/witness";
    let server = NotaryServer::local();
    let cli = NotaryCli::new(&server);
    cli.init(gun);
    cli.add(gun, "shared", b"shared from targets", &[]);
    cli.publish(gun);
    cli.add_delegation(gun, "targets/releases", DelegationKeyKind::X509Cert, None);
    cli.add(gun, "r1", b"r1", &["targets/releases"]);
    cli.add(
        gun,
        "shared",
        b"shared from releases",
        &["targets/releases"],
    );
    cli.publish(gun);
    let old = delegation_keyids(&cli, gun, "targets/releases");
    let second = DelegationKey::generate(cli.scratch(), "rel-2", DelegationKeyKind::PublicKey);
    cli.delegation_add(gun, "targets/releases", &second, None);
    cli.key_import(&second.private_key, "targets/releases");
    cli.run(&[
        "delegation",
        "remove",
        gun,
        "targets/releases",
        &old[0],
        "-y",
    ]);
    cli.publish(gun);
    assert!(cli.lookup(gun, "r1").is_err(), "notary skips the role");
    let state = support::tempdir();
    let err = resolve(&server, state.path(), gun, "r1").await.unwrap_err();
    assert!(
        matches!(&err, trustgate::trust::TrustError::ThresholdNotMet { role, .. } if role == "targets/releases"),
        "{err:?}"
    );
    let got = resolve(&server, state.path(), gun, "shared").await.unwrap();
    assert_same_as_notary(&cli, gun, "shared", &got);
    assert_eq!(got.role(), "targets");

    cli.run(&["witness", gun, "targets/releases"]);
    cli.publish(gun);
    let got = resolve(&server, state.path(), gun, "r1").await.unwrap();
    assert_same_as_notary(&cli, gun, "r1", &got);
    let got = resolve(&server, state.path(), gun, "shared").await.unwrap();
    assert_eq!(got.role(), "targets/releases");
}
