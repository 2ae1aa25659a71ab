//! Trust lookup semantics on well-formed repositories (DCT role priority, delegations and
//! their paths, pinning that accepts, offline use of stored metadata), with the refusals that
//! belong to each.

mod trustfix;

use std::collections::BTreeMap;

use serde_json::json;
use time::{Duration, OffsetDateTime};
use trustfix::harness::*;
use trustfix::{digest_of, envelope, target, Delegation, MemSource, Repo, Signer, TestIssuer};
use trustgate::trust::{
    default_roles, CertPin, RefusalReason, TrustError, TrustPinning, TrustSettings,
};

#[tokio::test]
async fn good_path_prefers_releases_then_targets() {
    let dir = tempfile::tempdir().unwrap();
    let src = MemSource::new();
    let repo = repo_with_releases();
    repo.publish(&src);
    let c = client(&src, dir.path(), repo.now);

    let v1 = resolve(&c, "v1").await.unwrap();
    assert_eq!(v1.digest(), digest_of(b"manifest-v1"));
    assert_eq!(v1.role(), "targets/releases");
    assert!(!v1.from_stored_metadata());
    assert_eq!(v1.length(), b"manifest-v1".len() as u64);
    assert_eq!(v1.gun(), GUN);
    assert_eq!(v1.tag(), "v1");
    assert_eq!(v1.keyids(), [repo.delegations[0].keys[0].id()]);
    // The earliest expiry among root, timestamp, snapshot, targets, releases: the timestamp.
    assert_eq!(
        v1.expires().unix_timestamp(),
        repo.timestamp_expires.unix_timestamp()
    );

    let latest = resolve(&c, "latest").await.unwrap();
    assert_eq!(latest.digest(), digest_of(b"manifest-latest"));
    assert_eq!(latest.role(), "targets");
    assert_eq!(latest.keyids(), [repo.targets_keys[0].id()]);

    let err = resolve(&c, "nope").await.unwrap_err();
    assert!(matches!(err, TrustError::TagNotSigned { .. }), "{err:?}");
    assert_eq!(err.reason(), RefusalReason::TagNotSigned);

    let listed = c.list(GUN, &default_roles()).await.unwrap();
    let tags: Vec<(&str, &str)> = listed.iter().map(|t| (t.tag(), t.role())).collect();
    assert_eq!(tags, [("latest", "targets"), ("v1", "targets/releases")]);
}

#[tokio::test]
async fn tag_only_in_other_delegation_is_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let src = MemSource::new();
    let mut repo = Repo::new(GUN);
    repo.delegations.push(Delegation {
        name: "targets/ci".into(),
        keys: vec![Signer::ed25519()],
        threshold: 1,
        paths: vec![String::new()],
        targets: BTreeMap::from([("nightly".to_string(), target(b"nightly"))]),
        version: 1,
        expires: repo.now + Duration::days(30),
    });
    repo.publish(&src);
    let c = client(&src, dir.path(), repo.now);
    let err = resolve(&c, "nightly").await.unwrap_err();
    match &err {
        TrustError::SignedOnlyByOtherRole { roles, .. } => assert_eq!(roles, &["targets/ci"]),
        other => panic!("{other:?}"),
    }
    assert_eq!(err.reason(), RefusalReason::SignedByUnacceptedRole);
    // Configured to accept targets/ci, it is trusted; per-role lookup sees it too.
    let ok = c
        .resolve(GUN, "nightly", &["targets/ci".to_string()])
        .await
        .unwrap();
    assert_eq!(ok.role(), "targets/ci");
    let repo_state = c.update(GUN).await.unwrap();
    assert_eq!(
        repo_state
            .lookup_in_role("nightly", "targets/ci", repo.now)
            .unwrap()
            .digest(),
        digest_of(b"nightly")
    );
    assert!(repo_state
        .lookup_in_role("nightly", "targets", repo.now)
        .is_err());
}

#[tokio::test]
async fn no_trust_data_and_unreachable_are_distinct() {
    let dir = tempfile::tempdir().unwrap();
    let src = MemSource::new();
    let c = client(&src, dir.path(), OffsetDateTime::now_utc());
    let err = resolve(&c, "latest").await.unwrap_err();
    assert!(matches!(err, TrustError::NoTrustData { .. }), "{err:?}");
    assert_eq!(err.reason(), RefusalReason::NoTrustData);
    src.set_offline(true);
    let err = resolve(&c, "latest").await.unwrap_err();
    assert!(matches!(err, TrustError::Unreachable { .. }), "{err:?}");
    assert_eq!(err.reason(), RefusalReason::Unreachable);
}

#[tokio::test]
async fn offline_uses_stored_metadata_until_it_expires() {
    let dir = tempfile::tempdir().unwrap();
    let src = MemSource::new();
    let repo = repo_with_releases();
    repo.publish(&src);
    resolve(&client(&src, dir.path(), repo.now), "v1")
        .await
        .unwrap();

    src.set_offline(true);
    // A restarted proxy, server down: stored, re-verified metadata still answers.
    let c = client(&src, dir.path(), repo.now + Duration::days(1));
    assert!(c.update(GUN).await.unwrap().offline());
    let v1 = resolve(&c, "v1").await.unwrap();
    assert_eq!(v1.digest(), digest_of(b"manifest-v1"));
    assert!(v1.from_stored_metadata());
    // Once the stored timestamp expires, it fails closed.
    let late = client(&src, dir.path(), repo.now + Duration::days(15));
    let err = resolve(&late, "v1").await.unwrap_err();
    assert!(
        matches!(&err, TrustError::Expired { role, .. } if role == "timestamp"),
        "{err:?}"
    );
}

#[tokio::test]
async fn expired_delegation_is_skipped_and_named() {
    let src = MemSource::new();
    let mut repo = repo_with_releases();
    repo.delegations[0].expires = repo.now - Duration::seconds(1);
    repo.delegations[0]
        .targets
        .insert("only-in-releases".into(), target(b"x"));
    repo.publish(&src);
    let dir = tempfile::tempdir().unwrap();
    let c = client(&src, dir.path(), repo.now);
    // Docker falls through to `targets` for a tag it also signs...
    assert_eq!(resolve(&c, "v1").await.unwrap().role(), "targets");
    // ...and a tag only the expired delegation signed is refused as expired.
    let err = resolve(&c, "only-in-releases").await.unwrap_err();
    assert!(
        matches!(&err, TrustError::Expired { role, .. } if role == "targets/releases"),
        "{err:?}"
    );
}

#[tokio::test]
async fn child_paths_are_limited_by_the_parent() {
    let src = MemSource::new();
    let mut repo = repo_with_releases();
    repo.delegations[0].paths = vec!["v".into()];
    // targets/releases/team claims everything, but its parent only allows `v*`.
    let child = Delegation {
        name: "targets/releases/team".into(),
        keys: vec![Signer::ecdsa()],
        threshold: 1,
        paths: vec![String::new(), "v2".into()],
        targets: BTreeMap::from([
            ("prod".to_string(), target(b"x")),
            ("v2".to_string(), target(b"v2")),
        ]),
        version: 1,
        expires: repo.now + Duration::days(5),
    };
    // Publish the child by hand: the fixture's delegations all hang off `targets`.
    let p = repo.build();
    let child_bytes = Repo::delegation_bytes(&child);
    let mut rel_signed = Repo::delegation_signed(&repo.delegations[0]);
    rel_signed["delegations"] = json!({
        "keys": {child.keys[0].id(): child.keys[0].tuf()},
        "roles": [{"name": child.name, "keyids": [child.keys[0].id()], "threshold": 1, "paths": child.paths}],
    });
    let rel_bytes = envelope(&rel_signed, &[&repo.delegations[0].keys[0]]);
    let delegations = vec![
        ("targets/releases".to_string(), rel_bytes),
        (child.name.clone(), child_bytes),
    ];
    serve_rebuilt(&repo, &src, trustfix::Published { delegations, ..p });
    let dir = tempfile::tempdir().unwrap();
    let c = client(&src, dir.path(), repo.now);
    let v2 = c
        .resolve(GUN, "v2", &["targets/releases/team".to_string()])
        .await
        .unwrap();
    assert_eq!(v2.role(), "targets/releases/team");
    let err = c
        .resolve(GUN, "prod", &["targets/releases/team".to_string()])
        .await
        .unwrap_err();
    assert!(
        matches!(err, TrustError::DelegationPathViolation { .. }),
        "{err:?}"
    );
    // Docker's default roles: v2 is found under releases' subtree but signed by a child, not
    // by releases itself, so Docker refuses it.
    let err = resolve(&c, "v2").await.unwrap_err();
    assert!(
        matches!(err, TrustError::SignedOnlyByOtherRole { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn pinning_certs_ca_and_tofu() {
    let src = MemSource::new();
    let repo = repo_with_releases();
    repo.publish(&src);
    let run = |pinning: TrustPinning| {
        let src = src.clone();
        async move {
            let dir = tempfile::tempdir().unwrap();
            let s = TrustSettings {
                pinning,
                ..settings(dir.path())
            };
            resolve(&client_at(&src, s, repo_now()), "latest").await
        }
    };
    // Pinned to another certificate: refused.
    let mut p = TrustPinning::default();
    p.certs
        .insert(GUN.into(), vec![CertPin::KeyId("00".repeat(32))]);
    let err = run(p).await.unwrap_err();
    assert!(matches!(err, TrustError::PinMismatch { .. }), "{err:?}");
    // Wildcard pin to the right certificate (by DER), and to its keyid: accepted.
    let mut p = TrustPinning::default();
    p.certs.insert(
        "registry.example/*".into(),
        vec![CertPin::CertDer(repo.root_keys[0].cert_der())],
    );
    run(p).await.unwrap();
    let mut p = TrustPinning::default();
    p.certs
        .insert(GUN.into(), vec![CertPin::KeyId(repo.root_keys[0].id())]);
    run(p).await.unwrap();
    // A CA pin for the prefix: the self-signed root was not issued by it.
    let ca = TestIssuer::new("Pinned CA");
    let mut p = TrustPinning::default();
    p.ca.insert("registry.example/".into(), vec![ca.der()]);
    let err = run(p.clone()).await.unwrap_err();
    assert!(matches!(err, TrustError::PinMismatch { .. }), "{err:?}");
    // TOFU disabled and nothing pinned.
    let err = run(TrustPinning {
        disable_tofu: true,
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert!(matches!(err, TrustError::TofuDisabled { .. }), "{err:?}");

    // A root certificate issued by the pinned CA is accepted.
    let src2 = MemSource::new();
    let mut repo2 = repo_with_releases();
    let key = Signer::ecdsa();
    repo2.root_keys = vec![key.as_cert(
        GUN,
        repo2.now - Duration::days(1),
        repo2.now + Duration::days(9),
        Some(&ca),
    )];
    repo2.publish(&src2);
    let dir = tempfile::tempdir().unwrap();
    let s = TrustSettings {
        pinning: TrustPinning {
            disable_tofu: true,
            ..p
        },
        ..settings(dir.path())
    };
    resolve(&client_at(&src2, s, repo2.now), "latest")
        .await
        .unwrap();
}

/// `notary remove` + publish: a tag the client saw signed and that a later version dropped is
/// reported as revoked (also after a restart), and signing it again clears that.
#[tokio::test]
async fn removed_tag_is_reported_as_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let src = MemSource::new();
    let mut repo = repo_with_releases();
    repo.publish(&src);
    resolve(&client(&src, dir.path(), repo.now), "latest")
        .await
        .unwrap();

    repo.targets.remove("latest");
    repo.targets_version = 2;
    repo.snapshot_version = 2;
    repo.timestamp_version = 2;
    repo.publish(&src);
    let c = client(&src, dir.path(), repo.now);
    let err = resolve(&c, "latest").await.unwrap_err();
    assert_eq!(
        err,
        TrustError::TagRevoked {
            gun: GUN.into(),
            tag: "latest".into(),
            role: "targets".into()
        }
    );
    assert_eq!(err.reason(), RefusalReason::TagRevoked);
    let restarted = client(&src, dir.path(), repo.now);
    assert!(matches!(
        resolve(&restarted, "latest").await,
        Err(TrustError::TagRevoked { .. })
    ));
    // A tag never seen is still simply not signed.
    assert!(matches!(
        resolve(&c, "other").await,
        Err(TrustError::TagNotSigned { .. })
    ));

    repo.targets
        .insert("latest".into(), target(b"manifest-latest-2"));
    repo.targets_version = 3;
    repo.snapshot_version = 3;
    repo.timestamp_version = 3;
    repo.publish(&src);
    let v = resolve(&client(&src, dir.path(), repo.now), "latest")
        .await
        .unwrap();
    assert_eq!(v.digest(), digest_of(b"manifest-latest-2"));
}

#[tokio::test]
async fn no_roles_means_dockers_default() {
    let dir = tempfile::tempdir().unwrap();
    let src = MemSource::new();
    let repo = repo_with_releases();
    repo.publish(&src);
    let c = client(&src, dir.path(), repo.now);
    let v1 = c.resolve(GUN, "v1", &[]).await.unwrap();
    assert_eq!(v1.role(), "targets/releases");
    assert_eq!(c.list(GUN, &[]).await.unwrap().len(), 2);
}

/// Removing the last delegation makes notary write `"roles":null`; the repository still
/// verifies and the tag falls back to `targets`.
#[tokio::test]
async fn null_delegation_roles_as_notary_writes_them() {
    let dir = tempfile::tempdir().unwrap();
    let src = MemSource::new();
    let mut repo = repo_with_releases();
    repo.delegations.clear();
    let mut p = repo.build();
    let mut signed = repo.targets_signed();
    signed["delegations"] = serde_json::json!({"keys": {}, "roles": null});
    p.targets = trustfix::envelope(&signed, &[&repo.targets_keys[0]]);
    serve_rebuilt(&repo, &src, p);
    let v1 = resolve(&client(&src, dir.path(), repo.now), "v1")
        .await
        .unwrap();
    assert_eq!(v1.role(), "targets");
}

/// With `fresh_for`, resolves within the window reuse the verified repository (no fetch);
/// without it, every resolve asks the server for a fresh timestamp.
#[tokio::test]
async fn fresh_for_bounds_reuse() {
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().unwrap();
    let src = MemSource::new();
    let repo = repo_with_releases();
    repo.publish(&src);
    let c = client(&src, dir.path(), repo.now);
    resolve(&c, "v1").await.unwrap();
    let n = src.fetches.load(Ordering::SeqCst);
    resolve(&c, "v1").await.unwrap();
    assert!(
        src.fetches.load(Ordering::SeqCst) > n,
        "fresh_for = 0 fetches every time"
    );

    let s = trustgate::trust::TrustSettings {
        fresh_for: std::time::Duration::from_secs(30),
        ..settings(dir.path())
    };
    let c = client_at(&src, s, repo.now);
    resolve(&c, "v1").await.unwrap();
    let n = src.fetches.load(Ordering::SeqCst);
    resolve(&c, "latest").await.unwrap();
    assert_eq!(
        src.fetches.load(Ordering::SeqCst),
        n,
        "reused within fresh_for"
    );
}
