//! Hostile roots: rotations not signed by the previous root, rollback of the root, root
//! certificates with the wrong CN, expired, CA or wrong key type, and pins that bind a root
//! trusted earlier. Same method as trust_hostile.rs: modified metadata signed with test keys.

mod trustfix;

use time::Duration;
use trustfix::harness::*;
use trustfix::{envelope, MemSource, Signer};
use trustgate::trust::{CertPin, RefusalReason, TrustError, TrustPinning, TrustSettings};

#[tokio::test]
async fn root_rotation_walks_versions_and_needs_the_old_root() {
    let dir = tempfile::tempdir().unwrap();
    let src = MemSource::new();
    let mut repo = repo_with_releases();
    repo.publish(&src);
    let c = client(&src, dir.path(), repo.now);
    resolve(&c, "v1").await.unwrap();

    // v2: new root key, signed by old and new (as `notary key rotate root` does); v3 likewise.
    for v in [2, 3] {
        let old = repo.root_keys.remove(0);
        repo.root_keys = vec![Signer::root_cert(
            GUN,
            repo.now - Duration::days(1),
            repo.now + Duration::days(900),
        )];
        repo.root_version = v;
        let root = envelope(&repo.root_signed(), &[&old, &repo.root_keys[0]]);
        src.put(&format!("{v}.root.json"), &root);
        src.put_role("root", &root);
    }
    repo.targets_version = 2;
    repo.snapshot_version = 2;
    repo.timestamp_version = 2;
    let p = repo.build();
    serve_rebuilt(
        &repo,
        &src,
        trustfix::Published {
            root: src_root(&src),
            ..p
        },
    );
    let state = c.update(GUN).await.unwrap();
    assert_eq!(state.root_version(), 3);

    // v4 signed only by a new key, not by v3's: refused.
    repo.root_keys = vec![Signer::root_cert(
        GUN,
        repo.now - Duration::days(1),
        repo.now + Duration::days(900),
    )];
    repo.root_version = 4;
    let root = envelope(&repo.root_signed(), &[&repo.root_keys[0]]);
    src.put("4.root.json", &root);
    src.put_role("root", &root);
    let err = c.update(GUN).await.unwrap_err();
    assert_eq!(err, TrustError::RootNotSignedByPrevious { version: 4 });
    // Serving an older root than trusted is a rollback.
    let dir2 = tempfile::tempdir().unwrap();
    std::fs::copy(
        state_file(dir.path()),
        dir2.path()
            .join(state_file(dir.path()).file_name().unwrap()),
    )
    .unwrap();
    let mut old_repo = repo_with_releases();
    old_repo.root_version = 1;
    src.put_role("root", &old_repo.root_bytes());
    let err = client(&src, dir2.path(), repo.now)
        .update(GUN)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        TrustError::Rollback {
            role: "root".into(),
            trusted: 3,
            got: 1
        }
    );
}

#[tokio::test]
async fn root_cert_wrong_cn_or_expired_is_refused() {
    let src = MemSource::new();
    let mut repo = repo_with_releases();
    repo.root_keys = vec![Signer::root_cert(
        "registry.example/other",
        repo.now - Duration::days(1),
        repo.now + Duration::days(9),
    )];
    repo.publish(&src);
    let err = expect_err(&src, repo.now, "latest").await;
    assert!(
        matches!(&err, TrustError::RootCertWrongCn { expected, got, .. } if expected == GUN && got == "registry.example/other"),
        "{err:?}"
    );

    let src = MemSource::new();
    let mut repo = repo_with_releases();
    repo.root_keys = vec![Signer::root_cert(
        GUN,
        repo.now - Duration::days(10),
        repo.now - Duration::days(1),
    )];
    repo.publish(&src);
    let err = expect_err(&src, repo.now, "latest").await;
    assert!(matches!(err, TrustError::RootCertExpired { .. }), "{err:?}");
    assert_eq!(err.reason(), RefusalReason::Expired);

    // A CA certificate is not a leaf root certificate.
    let src = MemSource::new();
    let mut repo = repo_with_releases();
    let (nb, na) = (repo.now - Duration::days(1), repo.now + Duration::days(9));
    repo.root_keys = vec![Signer::ecdsa().as_cert_with(GUN, nb, na, None, true)];
    repo.publish(&src);
    let err = expect_err(&src, repo.now, "latest").await;
    assert!(
        matches!(err, TrustError::RootCertRejected { .. }),
        "{err:?}"
    );

    // A wildcard CN covers the GUN by prefix (`MatchCNToGun`); a non-matching one does not.
    for (cn, ok) in [
        ("registry.example/*", true),
        ("registry.example/other*", false),
    ] {
        let src = MemSource::new();
        let mut repo = repo_with_releases();
        repo.root_keys = vec![Signer::ecdsa().as_cert(cn, nb, na, None)];
        repo.publish(&src);
        let dir = tempfile::tempdir().unwrap();
        let got = resolve(&client(&src, dir.path(), repo.now), "latest").await;
        assert_eq!(got.is_ok(), ok, "{cn}: {got:?}");
    }

    // A plain (non-certificate) root key is not a root certificate.
    let src = MemSource::new();
    let mut repo = repo_with_releases();
    repo.root_keys = vec![Signer::ecdsa()];
    repo.publish(&src);
    let err = expect_err(&src, repo.now, "latest").await;
    assert!(
        matches!(err, TrustError::RootCertRejected { .. }),
        "{err:?}"
    );
}

/// While the trusted root is unexpired, pins are not consulted again (Notary's
/// `bootstrapClient` then validates newer roots with an empty pinning config): a client pinned
/// to the old root certificate follows a rotation the old root signed, while a fresh client
/// with that pin refuses the rotated root. (Rotating away from an *expired* trusted root
/// applies the pins: trust_pin_review.rs `d8_...`.)
#[tokio::test]
async fn pin_decides_first_contact_and_the_trusted_root_follows_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let src = MemSource::new();
    let mut repo = repo_with_releases();
    repo.publish(&src);
    let mut pinning = TrustPinning::default();
    pinning
        .certs
        .insert(GUN.into(), vec![CertPin::KeyId(repo.root_keys[0].id())]);
    let pinned = |dir: &std::path::Path| TrustSettings {
        pinning: pinning.clone(),
        ..settings(dir)
    };
    resolve(&client_at(&src, pinned(dir.path()), repo.now), "v1")
        .await
        .unwrap();

    // Rotate to a new root key, signed by old and new.
    let old = repo.root_keys.remove(0);
    repo.root_keys = vec![Signer::root_cert(
        GUN,
        repo.now - Duration::days(1),
        repo.now + Duration::days(900),
    )];
    repo.root_version = 2;
    let root = envelope(&repo.root_signed(), &[&old, &repo.root_keys[0]]);
    src.put("2.root.json", &root);
    repo.snapshot_version = 2;
    repo.timestamp_version = 2;
    let p = repo.build();
    serve_rebuilt(&repo, &src, trustfix::Published { root, ..p });

    let state = client_at(&src, pinned(dir.path()), repo.now)
        .update(GUN)
        .await
        .unwrap();
    assert_eq!(state.root_version(), 2);
    let fresh = tempfile::tempdir().unwrap();
    let err = client_at(&src, pinned(fresh.path()), repo.now)
        .update(GUN)
        .await
        .unwrap_err();
    assert!(matches!(err, TrustError::PinMismatch { .. }), "{err:?}");
}

/// The snapshot records the root's hash: a root.json that verifies on its own but is not the
/// one the snapshot was made under is refused (Notary's `validateChecksumsFromSnapshot`).
#[tokio::test]
async fn root_must_match_the_snapshots_record() {
    let src = MemSource::new();
    let repo = repo_with_releases();
    let p = repo.publish(&src);
    // Same content and version, validly signed, different bytes (compact instead of pretty).
    let compact =
        serde_json::to_vec(&serde_json::from_slice::<serde_json::Value>(&p.root).unwrap()).unwrap();
    assert_ne!(compact, p.root);
    src.put_role("root", &compact);
    let err = expect_err(&src, repo.now, "latest").await;
    assert!(
        matches!(&err, TrustError::LengthMismatch { role, .. } | TrustError::HashMismatch { role, .. } if role == "root"),
        "{err:?}"
    );
}
