//! Trust verification against liars: every hostile case of issue 3 is built here by signing
//! modified metadata with keys the test holds, served from memory, and must be refused with its
//! own error variant.

mod trustfix;

use serde_json::{json, Value};
use time::Duration;
use trustfix::harness::*;
use trustfix::{digest_of, envelope, target, MemSource, Repo, Signer};
use trustgate::trust::{RefusalReason, TrustError};

#[tokio::test]
async fn expired_top_level_roles_are_refused() {
    for role in ["timestamp", "snapshot", "targets", "root"] {
        let src = MemSource::new();
        let mut repo = repo_with_releases();
        let past = repo.now - Duration::seconds(1);
        match role {
            "timestamp" => repo.timestamp_expires = past,
            "snapshot" => repo.snapshot_expires = past,
            "targets" => repo.targets_expires = past,
            _ => repo.root_expires = past,
        }
        repo.publish(&src);
        let err = expect_err(&src, repo.now, "latest").await;
        assert!(
            matches!(&err, TrustError::Expired { role: r, .. } if r == role),
            "{role}: {err:?}"
        );
        assert_eq!(err.reason(), RefusalReason::Expired);
        // The update itself refuses it, not only the lookup.
        let dir = tempfile::tempdir().unwrap();
        let err = client(&src, dir.path(), repo.now)
            .update(GUN)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, TrustError::Expired { role: r, .. } if r == role),
            "{role}: {err:?}"
        );
    }
}

/// A verified repository kept in memory (e.g. with `fresh_for`) must not answer past the
/// expiry of the metadata it rests on.
#[tokio::test]
async fn lookup_rechecks_expiry_of_a_kept_repository() {
    let dir = tempfile::tempdir().unwrap();
    let src = MemSource::new();
    let repo = repo_with_releases();
    repo.publish(&src);
    let state = client(&src, dir.path(), repo.now)
        .update(GUN)
        .await
        .unwrap();
    let roles = trustgate::trust::default_roles();
    assert!(state.lookup("v1", &roles, repo.now).is_ok());
    let err = state
        .lookup("v1", &roles, repo.timestamp_expires)
        .unwrap_err();
    assert!(
        matches!(&err, TrustError::Expired { role, .. } if role == "timestamp"),
        "{err:?}"
    );
}

#[tokio::test]
async fn timestamp_rollback_is_refused_also_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let src = MemSource::new();
    let mut repo = repo_with_releases();
    repo.timestamp_version = 2;
    repo.publish(&src);
    resolve(&client(&src, dir.path(), repo.now), "v1")
        .await
        .unwrap();

    // The server now offers an older (validly signed) timestamp.
    repo.timestamp_version = 1;
    repo.publish(&src);
    let same = client(&src, dir.path(), repo.now);
    let err = resolve(&same, "v1").await.unwrap_err();
    assert_eq!(
        err,
        TrustError::Rollback {
            role: "timestamp".into(),
            trusted: 2,
            got: 1
        }
    );
    assert_eq!(err.reason(), RefusalReason::SignatureInvalid);
    // A new process on the same state directory remembers.
    drop(same);
    let restarted = client(&src, dir.path(), repo.now);
    let err = resolve(&restarted, "v1").await.unwrap_err();
    assert_eq!(
        err,
        TrustError::Rollback {
            role: "timestamp".into(),
            trusted: 2,
            got: 1
        }
    );
}

#[tokio::test]
async fn snapshot_targets_and_delegation_rollback_are_refused() {
    for role in ["snapshot", "targets", "targets/releases"] {
        let dir = tempfile::tempdir().unwrap();
        let src = MemSource::new();
        let mut repo = repo_with_releases();
        let set = |repo: &mut Repo, v: u64| match role {
            "snapshot" => repo.snapshot_version = v,
            "targets" => repo.targets_version = v,
            _ => repo.delegations[0].version = v,
        };
        set(&mut repo, 5);
        repo.publish(&src);
        resolve(&client(&src, dir.path(), repo.now), "v1")
            .await
            .unwrap();
        set(&mut repo, 4);
        repo.timestamp_version = 2; // a fresh timestamp vouching for the old file
        repo.publish(&src);
        let err = resolve(&client(&src, dir.path(), repo.now), "v1")
            .await
            .unwrap_err();
        assert_eq!(
            err,
            TrustError::Rollback {
                role: role.into(),
                trusted: 5,
                got: 4
            },
            "{role}"
        );
    }
}

#[tokio::test]
async fn bytes_not_matching_recorded_hash_or_length_are_refused() {
    // Snapshot served under its by-hash name with different (validly signed) content.
    let src = MemSource::new();
    let repo = repo_with_releases();
    let p = repo.publish(&src);
    let name = format!(
        "snapshot.{}.json",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&p.snapshot))
    );
    // Same length, still validly signed, different bytes (a tab for a space): only the hash
    // can tell.
    let text = String::from_utf8(p.snapshot.clone()).unwrap();
    let same_len = text.replacen("\n  ", "\n\t ", 1);
    assert_eq!(same_len.len(), text.len());
    assert_ne!(same_len, text);
    src.put(&name, same_len.as_bytes());
    let err = expect_err(&src, repo.now, "v1").await;
    assert!(
        matches!(&err, TrustError::HashMismatch { role, .. } if role == "snapshot"),
        "{err:?}"
    );
    // Different length.
    let mut longer = p.snapshot.clone();
    longer.extend_from_slice(b"\n\n");
    src.put(&name, &longer);
    let err = expect_err(&src, repo.now, "v1").await;
    assert!(
        matches!(&err, TrustError::LengthMismatch { role, .. } if role == "snapshot"),
        "{err:?}"
    );
    let mut shorter = p.snapshot.clone();
    shorter.pop();
    src.put(&name, &shorter);
    let err = expect_err(&src, repo.now, "v1").await;
    assert!(
        matches!(&err, TrustError::LengthMismatch { role, .. } if role == "snapshot"),
        "{err:?}"
    );

    // Targets whose bytes differ from what the snapshot records (same length, re-signed).
    let src = MemSource::new();
    let repo = repo_with_releases();
    let p = repo.publish(&src);
    let tname = format!(
        "targets.{}.json",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&p.targets))
    );
    let mut evil: Value = serde_json::from_slice(&p.targets).unwrap();
    evil["signed"]["targets"]["latest"] = target(b"manifest-evil!!");
    let mut evil = envelope(&evil["signed"], &[&repo.targets_keys[0]]);
    evil.resize(p.targets.len(), b' ');
    src.put(&tname, &evil);
    let err = expect_err(&src, repo.now, "latest").await;
    assert!(
        matches!(&err, TrustError::HashMismatch { role, .. } if role == "targets"),
        "{err:?}"
    );
}

#[tokio::test]
async fn threshold_not_met_and_duplicates_never_count_twice() {
    // Targets needs 2 of 2 keys; only one signs.
    let src = MemSource::new();
    let mut repo = repo_with_releases();
    repo.targets_keys.push(Signer::ecdsa());
    repo.targets_threshold = 2;
    let mut p = repo.build();
    p.targets = envelope(&repo.targets_signed(), &[&repo.targets_keys[0]]);
    serve_rebuilt(&repo, &src, p);
    let err = expect_err(&src, repo.now, "latest").await;
    assert_eq!(
        err,
        TrustError::ThresholdNotMet {
            role: "targets".into(),
            valid: 1,
            threshold: 2
        }
    );

    // One key's signature duplicated to fake a threshold of 2.
    let src = MemSource::new();
    let mut p = repo.build();
    p.targets = envelope(
        &repo.targets_signed(),
        &[&repo.targets_keys[0], &repo.targets_keys[0]],
    );
    serve_rebuilt(&repo, &src, p);
    let err = expect_err(&src, repo.now, "latest").await;
    assert_eq!(
        err,
        TrustError::ThresholdNotMet {
            role: "targets".into(),
            valid: 1,
            threshold: 2
        }
    );

    // One key listed twice under two keyids (as `ecdsa` and as a certificate of the same key).
    let src = MemSource::new();
    let mut repo = repo_with_releases();
    let k = Signer::ecdsa();
    let same_key_cert = k.as_cert(
        "whoever",
        repo.now - Duration::days(1),
        repo.now + Duration::days(9),
        None,
    );
    assert_ne!(k.id(), same_key_cert.id());
    repo.targets_keys = vec![k, same_key_cert];
    repo.targets_threshold = 2;
    repo.publish(&src);
    let err = expect_err(&src, repo.now, "latest").await;
    assert_eq!(
        err,
        TrustError::ThresholdNotMet {
            role: "targets".into(),
            valid: 1,
            threshold: 2
        }
    );
}

#[tokio::test]
async fn signature_by_unauthorised_key_is_refused() {
    let src = MemSource::new();
    let repo = repo_with_releases();
    let mut p = repo.build();
    // Signed by the snapshot key, which the root does not authorise for targets.
    p.targets = envelope(&repo.targets_signed(), &[&repo.snapshot_key]);
    serve_rebuilt(&repo, &src, p);
    let err = expect_err(&src, repo.now, "latest").await;
    assert_eq!(
        err,
        TrustError::ThresholdNotMet {
            role: "targets".into(),
            valid: 0,
            threshold: 1
        }
    );

    // A delegation signed by a key its parent does not name.
    let src = MemSource::new();
    let mut p = repo.build();
    let stranger = Signer::ecdsa();
    p.delegations[0].1 = envelope(&Repo::delegation_signed(&repo.delegations[0]), &[&stranger]);
    serve_rebuilt(&repo, &src, p);
    let dir = tempfile::tempdir().unwrap();
    let c = client(&src, dir.path(), repo.now);
    let state = c.update(GUN).await.unwrap();
    assert!(matches!(
        state.skipped().get("targets/releases"),
        Some(TrustError::ThresholdNotMet { valid: 0, .. })
    ));
    // v1 then comes from `targets`, never from the forged releases file.
    assert_eq!(
        resolve(&c, "v1").await.unwrap().digest(),
        digest_of(b"manifest-v1-from-targets")
    );
}

#[tokio::test]
async fn key_listed_under_a_wrong_id_is_a_hard_error() {
    let src = MemSource::new();
    let repo = repo_with_releases();
    let mut p = repo.build();
    let mut signed = repo.targets_signed();
    let k = Signer::ecdsa();
    let fake_id = repo.delegations[0].keys[0].id();
    // The releases role authorises `fake_id`, but the key listed under it is another key.
    signed["delegations"]["keys"][&fake_id] = k.tuf();
    p.targets = envelope(&signed, &[&repo.targets_keys[0]]);
    let mut dsig = Repo::delegation_signed(&repo.delegations[0]);
    dsig["version"] = json!(1);
    let msg = trustgate::trust::canonical::encode(&dsig).unwrap();
    let mut sig = k.signature(&msg);
    sig["keyid"] = json!(fake_id);
    p.delegations[0].1 = serde_json::to_vec(&json!({"signed": dsig, "signatures": [sig]})).unwrap();
    serve_rebuilt(&repo, &src, p);
    let err = expect_err(&src, repo.now, "v1").await;
    assert!(
        matches!(&err, TrustError::KeyIdMismatch { listed, .. } if *listed == fake_id),
        "{err:?}"
    );
}

#[tokio::test]
async fn delegation_signing_outside_its_paths_is_refused() {
    let src = MemSource::new();
    let mut repo = repo_with_releases();
    repo.delegations[0].paths = vec!["v".into()];
    repo.delegations[0]
        .targets
        .insert("prod".into(), target(b"sneaky"));
    repo.publish(&src);
    let dir = tempfile::tempdir().unwrap();
    let c = client(&src, dir.path(), repo.now);
    assert_eq!(resolve(&c, "v1").await.unwrap().role(), "targets/releases");
    let err = resolve(&c, "prod").await.unwrap_err();
    assert_eq!(
        err,
        TrustError::DelegationPathViolation {
            role: "targets/releases".into(),
            target: "prod".into()
        }
    );
}

#[tokio::test]
async fn invalid_delegation_names_fail_the_update() {
    for name in ["targets/Releases", "targets/a/b", "other/x", "targets/"] {
        let src = MemSource::new();
        let mut repo = repo_with_releases();
        repo.delegations[0].name = name.into();
        repo.publish(&src);
        let err = expect_err(&src, repo.now, "latest").await;
        assert!(
            matches!(err, TrustError::InvalidDelegation { .. }),
            "{name}: {err:?}"
        );
    }
}

#[tokio::test]
async fn oversized_metadata_is_refused() {
    let src = MemSource::new();
    let repo = repo_with_releases();
    let p = repo.publish(&src);
    let mut ts = repo.timestamp_signed(&p.snapshot);
    ts["padding"] = json!("x".repeat(1 << 20));
    src.put("timestamp.json", &envelope(&ts, &[&repo.timestamp_key]));
    let err = expect_err(&src, repo.now, "latest").await;
    assert_eq!(
        err,
        TrustError::TooLarge {
            role: "timestamp".into(),
            limit: 1 << 20
        }
    );

    let src = MemSource::new();
    repo.publish(&src);
    src.put_role("root", &vec![b' '; (2 << 20) + 1]);
    let err = expect_err(&src, repo.now, "latest").await;
    assert!(
        matches!(&err, TrustError::TooLarge { role, .. } if role == "root"),
        "{err:?}"
    );
}

#[tokio::test]
async fn malformed_json_and_wrong_type_are_refused() {
    let src = MemSource::new();
    let repo = repo_with_releases();
    let p = repo.publish(&src);
    src.put("timestamp.json", b"{\"signed\": {\"_type\": \"Timestamp\",");
    let err = expect_err(&src, repo.now, "latest").await;
    assert!(
        matches!(&err, TrustError::Malformed { role, .. } if role == "timestamp"),
        "{err:?}"
    );

    // A correctly signed timestamp that claims to be a snapshot.
    let mut ts = repo.timestamp_signed(&p.snapshot);
    ts["_type"] = json!("Snapshot");
    src.put("timestamp.json", &envelope(&ts, &[&repo.timestamp_key]));
    let err = expect_err(&src, repo.now, "latest").await;
    assert_eq!(
        err,
        TrustError::WrongType {
            role: "timestamp".into(),
            expected: "Timestamp".into(),
            got: "Snapshot".into()
        }
    );
    // No signatures at all.
    src.put(
        "timestamp.json",
        &serde_json::to_vec(
            &json!({"signed": repo.timestamp_signed(&p.snapshot), "signatures": []}),
        )
        .unwrap(),
    );
    let err = expect_err(&src, repo.now, "latest").await;
    assert_eq!(
        err,
        TrustError::Unsigned {
            role: "timestamp".into()
        }
    );
}

/// Notary signs docker/go canonical JSON, which writes `<`, `>`, `&`, control characters and
/// non-ASCII raw. A target name with all of them must verify against a signature made over
/// exactly those bytes — and that signature would not match serde_json's encoding.
#[tokio::test]
async fn canonical_json_uses_notary_escaping() {
    let src = MemSource::new();
    let repo = repo_with_releases();
    let p = repo.build();
    let name = "a<b>&c\u{e9}\u{1}\"\\";
    let h = trustfix::b64(&<sha2::Sha256 as sha2::Digest>::digest(b"m"));
    let expires = trustfix::rfc3339(repo.targets_expires);
    // Hand-written canonical form: sorted keys, no whitespace, only `"` and `\` escaped.
    let canonical = format!(
        "{{\"_type\":\"Targets\",\"delegations\":{{\"keys\":{{}},\"roles\":[]}},\"expires\":\"{expires}\",\"targets\":{{\"a<b>&c\u{e9}\u{1}\\\"\\\\\":{{\"hashes\":{{\"sha256\":\"{h}\"}},\"length\":1}}}},\"version\":1}}"
    );
    // JSON text may not carry a raw control character, so the value is built directly.
    let signed = json!({
        "_type": "Targets",
        "delegations": {"keys": {}, "roles": []},
        "expires": expires,
        "targets": {name: {"hashes": {"sha256": h}, "length": 1}},
        "version": 1,
    });
    assert_ne!(
        serde_json::to_vec(&signed).unwrap(),
        canonical.as_bytes(),
        "serde_json would differ"
    );
    let sig = repo.targets_keys[0].signature(canonical.as_bytes());
    // The file itself is pretty-printed (whitespace and escapes differ from what was signed).
    let targets =
        serde_json::to_vec_pretty(&json!({"signed": signed, "signatures": [sig]})).unwrap();
    serve_rebuilt(
        &repo,
        &src,
        trustfix::Published {
            targets,
            delegations: vec![],
            ..p
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let got = resolve(&client(&src, dir.path(), repo.now), name)
        .await
        .unwrap();
    assert_eq!(got.digest(), digest_of(b"m"));
}

#[tokio::test]
async fn corrupt_state_file_is_an_error_not_a_reset() {
    let dir = tempfile::tempdir().unwrap();
    let src = MemSource::new();
    let repo = repo_with_releases();
    repo.publish(&src);
    resolve(&client(&src, dir.path(), repo.now), "v1")
        .await
        .unwrap();
    std::fs::write(state_file(dir.path()), b"{}").unwrap();
    let err = resolve(&client(&src, dir.path(), repo.now), "v1")
        .await
        .unwrap_err();
    assert!(matches!(err, TrustError::Store { .. }), "{err:?}");
}

/// Per-file bounds are not enough: the whole update has a byte budget.
#[tokio::test]
async fn update_byte_budget_is_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let src = MemSource::new();
    let repo = repo_with_releases();
    let p = repo.publish(&src);
    let mut s = settings(dir.path());
    s.limits.max_update_bytes = (p.root.len() + p.timestamp.len() + p.snapshot.len()) as u64;
    let err = resolve(&client_at(&src, s, repo.now), "v1")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TrustError::TooLarge { role, .. } if role == "targets"),
        "{err:?}"
    );
}
