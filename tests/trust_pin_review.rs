//! The root-certificate and trust-pinning findings of the trust review
//! (notes/review/TRUST-REVIEW.md D1, D2, D6, D7, D8; rows 8, 10, 11, 13, 16, 17, 21), each as
//! the attack or the divergence, asserting Notary's behaviour. CA-pinned chains are built with
//! rcgen: a pinned CA, optional intermediate CAs, and the root key's PEM bundle
//! `[leaf, intermediates...]` as `notary` publishes it.

mod trustfix;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use time::{Duration, OffsetDateTime};
use trustfix::harness::*;
use trustfix::{b64, envelope, MemSource, Signer, TestIssuer};
use trustgate::trust::{CertPin, RefusalReason, TrustError, TrustPinning, TrustSettings};

fn params(cn: &str, nb: OffsetDateTime, na: OffsetDateTime) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.not_before = nb;
    p.not_after = na;
    p
}

/// A CA certificate: self-signed (the pinned one) or issued by `parent` (an intermediate).
fn ca(
    cn: &str,
    parent: Option<&TestIssuer>,
    path_len: Option<u8>,
    ekus: Vec<ExtendedKeyUsagePurpose>,
    (nb, na): (OffsetDateTime, OffsetDateTime),
) -> TestIssuer {
    let key = KeyPair::generate().unwrap();
    let mut p = params(cn, nb, na);
    p.is_ca = IsCa::Ca(match path_len {
        Some(n) => BasicConstraints::Constrained(n),
        None => BasicConstraints::Unconstrained,
    });
    p.extended_key_usages = ekus;
    let cert = match parent {
        None => p.self_signed(&key).unwrap(),
        Some(parent) => p.signed_by(&key, &parent.cert, &parent.key).unwrap(),
    };
    TestIssuer { cert, key }
}

fn pem(issuer: &TestIssuer) -> String {
    issuer.cert.pem()
}

/// An `ecdsa-x509` root key for GUN issued by `issuer`, its bundle followed by `chain`.
fn root_key(
    issuer: &TestIssuer,
    chain: &[String],
    window: (OffsetDateTime, OffsetDateTime),
) -> Signer {
    let key = Signer::ecdsa();
    let kp = KeyPair::try_from(key.pkcs8.as_slice()).unwrap();
    let leaf = params(GUN, window.0, window.1)
        .signed_by(&kp, &issuer.cert, &issuer.key)
        .unwrap();
    let mut s = Signer::ecdsa_from_pkcs8(&key.pkcs8);
    s.keytype = "ecdsa-x509".into();
    s.public_b64 = b64(format!("{}{}", leaf.pem(), chain.concat()).as_bytes());
    s
}

fn month(now: OffsetDateTime) -> (OffsetDateTime, OffsetDateTime) {
    (now - Duration::days(1), now + Duration::days(30))
}

/// First contact with `root_keys` as the only root key, under a CA pin for the GUN's prefix
/// with TOFU disabled (so only the CA can vouch).
async fn first_contact_ca_pinned(root: Signer, ca_der: Vec<u8>) -> Result<(), TrustError> {
    let mut repo = repo_with_releases();
    repo.root_keys = vec![root];
    let src = MemSource::new();
    repo.publish(&src);
    let dir = tempfile::tempdir().unwrap();
    let mut pinning = TrustPinning {
        disable_tofu: true,
        ..Default::default()
    };
    pinning.ca.insert("registry.example/".into(), vec![ca_der]);
    let s = TrustSettings {
        pinning,
        ..settings(dir.path())
    };
    resolve(&client_at(&src, s, repo.now), "latest")
        .await
        .map(|_| ())
}

fn assert_pin_mismatch(got: Result<(), TrustError>, why: &str, needle: &str) {
    match got {
        Err(TrustError::PinMismatch { ref reason, .. }) if reason.contains(needle) => {}
        other => panic!("{why}: expected PinMismatch mentioning {needle:?}, got {other:?}"),
    }
}

/// D1 (high): the bypass. A publisher holding an ordinary CA-issued root certificate (CA:FALSE,
/// for its own GUN) forges a root certificate for the victim GUN, signed with its own leaf key,
/// and ships `[forged, own leaf]` as the bundle. Notary drops the key (two non-CA certificates,
/// `parseAllCerts`), and `x509.Verify` would refuse the non-CA issuer anyway.
#[tokio::test]
async fn d1_ca_pin_refuses_a_root_cert_issued_by_a_non_ca_leaf() {
    let now = repo_now();
    let pinned = TestIssuer::new("Pinned CA");
    let other_key = KeyPair::generate().unwrap();
    let other_leaf = params("registry.example/other/app", month(now).0, month(now).1)
        .signed_by(&other_key, &pinned.cert, &pinned.key)
        .unwrap();
    let attacker = TestIssuer {
        cert: other_leaf,
        key: other_key,
    };
    let forged = root_key(&attacker, &[pem(&attacker)], month(now));
    let err = first_contact_ca_pinned(forged, pinned.der())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TrustError::RootCertRejected { reason, .. } if reason.contains("2 non-CA")),
        "{err:?}"
    );
    assert_eq!(err.reason(), RefusalReason::SignatureInvalid);

    // Without the second certificate in the bundle there is no path at all.
    let forged = root_key(&attacker, &[], month(now));
    let got = first_contact_ca_pinned(forged, pinned.der()).await;
    assert_pin_mismatch(got, "forged leaf alone", "UnknownIssuer");
}

/// Control for the hostile chains below: a root certificate issued through an intermediate CA
/// of its bundle, and directly by the pinned CA, is accepted.
#[tokio::test]
async fn ca_pin_accepts_a_valid_path_through_an_intermediate() {
    let now = repo_now();
    let pinned = TestIssuer::new("Pinned CA");
    let inter = ca("Intermediate", Some(&pinned), None, vec![], month(now));
    first_contact_ca_pinned(root_key(&inter, &[pem(&inter)], month(now)), pinned.der())
        .await
        .unwrap();
    first_contact_ca_pinned(root_key(&pinned, &[], month(now)), pinned.der())
        .await
        .unwrap();
    // anyExtendedKeyUsage satisfies serverAuth, as in Go.
    let any = ca(
        "Any-EKU intermediate",
        Some(&pinned),
        None,
        vec![ExtendedKeyUsagePurpose::Any],
        month(now),
    );
    first_contact_ca_pinned(root_key(&any, &[pem(&any)], month(now)), pinned.der())
        .await
        .unwrap();
}

/// pathLenConstraint: the pinned CA allows no intermediate (Go: TooManyIntermediates, which
/// webpki does not check for anchors), and an intermediate with pathLen 0 cannot issue
/// another CA (webpki's own check).
#[tokio::test]
async fn ca_pin_refuses_a_path_longer_than_path_len_allows() {
    let now = repo_now();
    let pinned = ca("Pinned CA, pathLen 0", None, Some(0), vec![], month(now));
    let inter = ca("Intermediate", Some(&pinned), None, vec![], month(now));
    let got =
        first_contact_ca_pinned(root_key(&inter, &[pem(&inter)], month(now)), pinned.der()).await;
    assert_pin_mismatch(got, "anchor pathLen 0", "PathLenConstraintViolated");
    // The same CA still issues root certificates directly.
    first_contact_ca_pinned(root_key(&pinned, &[], month(now)), pinned.der())
        .await
        .unwrap();

    let pinned = TestIssuer::new("Pinned CA");
    let inter = ca(
        "Intermediate, pathLen 0",
        Some(&pinned),
        Some(0),
        vec![],
        month(now),
    );
    let sub = ca("Sub-intermediate", Some(&inter), None, vec![], month(now));
    let got = first_contact_ca_pinned(
        root_key(&sub, &[pem(&sub), pem(&inter)], month(now)),
        pinned.der(),
    )
    .await;
    assert_pin_mismatch(got, "intermediate pathLen 0", "PathLenConstraintViolated");
}

/// An expired intermediate breaks the path (Go: `validRootIntCerts` drops it; x509.Verify
/// would refuse it). Already refused before the fix; kept as a guard for the new validator.
#[tokio::test]
async fn ca_pin_refuses_an_expired_intermediate() {
    let now = repo_now();
    let pinned = TestIssuer::new("Pinned CA");
    let inter = ca(
        "Expired intermediate",
        Some(&pinned),
        None,
        vec![],
        (now - Duration::days(30), now - Duration::days(1)),
    );
    let got =
        first_contact_ca_pinned(root_key(&inter, &[pem(&inter)], month(now)), pinned.der()).await;
    assert_pin_mismatch(got, "expired intermediate", "UnknownIssuer");
}

/// Extended key usage across the chain: Notary's `x509.Verify` wants serverAuth (or any) on
/// every certificate that restricts its usage, the pinned CA included (Go
/// `checkChainForKeyUsage` walks the whole chain; webpki ignores the anchor's extensions).
#[tokio::test]
async fn ca_pin_refuses_a_code_signing_only_chain() {
    let now = repo_now();
    let code_signing = || vec![ExtendedKeyUsagePurpose::CodeSigning];
    // The pinned CA itself is restricted to codeSigning.
    let pinned = ca("Code-signing CA", None, None, code_signing(), month(now));
    let got = first_contact_ca_pinned(root_key(&pinned, &[], month(now)), pinned.der()).await;
    assert_pin_mismatch(got, "codeSigning CA", "excludes serverAuth");
    // An intermediate restricted to codeSigning.
    let pinned = TestIssuer::new("Pinned CA");
    let inter = ca(
        "Code-signing intermediate",
        Some(&pinned),
        None,
        code_signing(),
        month(now),
    );
    let got =
        first_contact_ca_pinned(root_key(&inter, &[pem(&inter)], month(now)), pinned.der()).await;
    assert_pin_mismatch(got, "codeSigning intermediate", "RequiredEkuNotFound");
}

/// Row 8: a bundle holds exactly one non-CA certificate (`parseAllCerts`). A valid,
/// CA-issued leaf followed by a second leaf is dropped — under a CA pin and under TOFU alike.
#[tokio::test]
async fn bundle_with_two_leaves_is_refused() {
    let now = repo_now();
    let pinned = TestIssuer::new("Pinned CA");
    let stray_key = KeyPair::generate().unwrap();
    let stray = params("stray leaf", month(now).0, month(now).1)
        .self_signed(&stray_key)
        .unwrap()
        .pem();
    let err = first_contact_ca_pinned(
        root_key(&pinned, std::slice::from_ref(&stray), month(now)),
        pinned.der(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, TrustError::RootCertRejected { reason, .. } if reason.contains("2 non-CA")),
        "{err:?}"
    );

    let mut repo = repo_with_releases();
    let self_signed = Signer::root_cert(GUN, month(now).0, month(now).1);
    let mut two = Signer::ecdsa_from_pkcs8(&self_signed.pkcs8);
    two.keytype = "ecdsa-x509".into();
    let leaf_pem = String::from_utf8(
        base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            &self_signed.public_b64,
        )
        .unwrap(),
    )
    .unwrap();
    two.public_b64 = b64(format!("{leaf_pem}{stray}").as_bytes());
    repo.root_keys = vec![two];
    let src = MemSource::new();
    repo.publish(&src);
    let err = expect_err(&src, repo.now, "latest").await;
    assert!(
        matches!(&err, TrustError::RootCertRejected { reason, .. } if reason.contains("2 non-CA")),
        "{err:?}"
    );
}

/// D2 (row 10): a root certificate's notBefore may be up to a day ahead (x509.go:327-330), as
/// when the publisher's clock runs ahead of the proxy's; more than a day is refused.
#[tokio::test]
async fn d2_root_cert_not_before_has_a_day_of_leeway() {
    let mut repo = repo_with_releases();
    repo.root_keys = vec![Signer::root_cert(
        GUN,
        repo.now + Duration::minutes(1),
        repo.now + Duration::days(3650),
    )];
    let src = MemSource::new();
    repo.publish(&src);
    let dir = tempfile::tempdir().unwrap();
    resolve(&client(&src, dir.path(), repo.now), "latest")
        .await
        .unwrap();

    let mut repo = repo_with_releases();
    repo.root_keys = vec![Signer::root_cert(
        GUN,
        repo.now + Duration::hours(25),
        repo.now + Duration::days(3650),
    )];
    let src = MemSource::new();
    repo.publish(&src);
    let err = expect_err(&src, repo.now, "latest").await;
    assert!(matches!(err, TrustError::RootCertExpired { .. }), "{err:?}");
}

/// D6 (row 16): a trusted root whose only certificate has expired since is refused, as
/// Notary's `bootstrapClient` fails hard on it — online, offline, and even when the server
/// offers a successor — naming the certificate and its notAfter.
#[tokio::test]
async fn d6_trusted_root_whose_certificate_expired_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let src = MemSource::new();
    let mut repo = repo_with_releases();
    let not_after = repo.now + Duration::days(10);
    repo.root_keys = vec![Signer::root_cert(
        GUN,
        repo.now - Duration::days(1),
        not_after,
    )];
    repo.timestamp_expires = repo.now + Duration::days(300);
    repo.publish(&src);
    let first = resolve(&client(&src, dir.path(), repo.now), "v1")
        .await
        .unwrap();
    // The verdict (and so the tag cache) lasts no longer than the root certificate.
    assert_eq!(first.expires().unix_timestamp(), not_after.unix_timestamp());
    let later = repo.now + Duration::days(20);
    let v1_id = repo.root_keys[0].id();
    let check = |err: TrustError| {
        match &err {
            TrustError::RootCertExpired {
                keyid,
                cn,
                not_after: na,
                ..
            } => {
                assert_eq!(keyid, &v1_id);
                assert_eq!(cn, GUN);
                assert_eq!(na.unix_timestamp(), not_after.unix_timestamp());
            }
            other => panic!("{other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains(GUN) && msg.contains("notAfter"), "{msg}");
        assert_eq!(err.reason(), RefusalReason::Expired);
    };
    check(
        resolve(&client(&src, dir.path(), later), "v1")
            .await
            .unwrap_err(),
    );
    src.set_offline(true);
    check(
        resolve(&client(&src, dir.path(), later), "v1")
            .await
            .unwrap_err(),
    );
    src.set_offline(false);
    // A successor with a fresh certificate, signed by the old key: still refused.
    let old = repo.root_keys.remove(0);
    repo.root_keys = vec![Signer::root_cert(
        GUN,
        later - Duration::days(1),
        later + Duration::days(900),
    )];
    repo.root_version = 2;
    let root = envelope(&repo.root_signed(), &[&old, &repo.root_keys[0]]);
    src.put("2.root.json", &root);
    src.put_role("root", &root);
    check(
        resolve(&client(&src, dir.path(), later), "v1")
            .await
            .unwrap_err(),
    );
}

/// D7 (row 13): an intermediate root of a rotation walk (v2) whose only root certificate has
/// expired is refused; Go runs `validRootLeafCerts(..., true)` on every root it loads.
#[tokio::test]
async fn d7_intermediate_root_with_expired_cert_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let src = MemSource::new();
    let mut repo = repo_with_releases();
    repo.publish(&src);
    let c = client(&src, dir.path(), repo.now);
    resolve(&c, "v1").await.unwrap();
    let v1_key = repo.root_keys.remove(0);
    repo.root_keys = vec![Signer::root_cert(
        GUN,
        repo.now - Duration::days(10),
        repo.now - Duration::days(1),
    )];
    repo.root_version = 2;
    let r2 = envelope(&repo.root_signed(), &[&v1_key, &repo.root_keys[0]]);
    src.put("2.root.json", &r2);
    let v2_key = repo.root_keys.remove(0);
    repo.root_keys = vec![Signer::root_cert(
        GUN,
        repo.now - Duration::days(1),
        repo.now + Duration::days(900),
    )];
    repo.root_version = 3;
    let r3 = envelope(&repo.root_signed(), &[&v2_key, &repo.root_keys[0]]);
    src.put("3.root.json", &r3);
    repo.snapshot_version = 2;
    repo.timestamp_version = 2;
    let p = repo.build();
    serve_rebuilt(&repo, &src, trustfix::Published { root: r3, ..p });
    let err = c.update(GUN).await.unwrap_err();
    assert!(
        matches!(&err, TrustError::RootCertExpired { keyid, .. } if *keyid == v2_key.id()),
        "{err:?}"
    );
}

/// Row 11: the previous root's certificates vouch for a successor only if they pass
/// `validRootLeafCerts(..., false)`: a SHA-1-signed certificate of the trusted root (dropped
/// at first contact, the other certificate carried it) cannot sign the next root.
#[tokio::test]
async fn previous_root_sha1_certificate_cannot_vouch_for_a_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let src = MemSource::new();
    let mut repo = repo_with_releases();
    repo.root_keys
        .push(Signer::rsa_fixture("rsa2048", Some("rsa2048-sha1.crt")));
    repo.publish(&src);
    let c = client(&src, dir.path(), repo.now);
    resolve(&c, "v1").await.unwrap();
    let sha1 = repo.root_keys.remove(1);
    repo.root_keys = vec![Signer::root_cert(
        GUN,
        repo.now - Duration::days(1),
        repo.now + Duration::days(900),
    )];
    repo.root_version = 2;
    let root = envelope(&repo.root_signed(), &[&sha1, &repo.root_keys[0]]);
    src.put("2.root.json", &root);
    repo.snapshot_version = 2;
    repo.timestamp_version = 2;
    let p = repo.build();
    serve_rebuilt(&repo, &src, trustfix::Published { root, ..p });
    let err = c.update(GUN).await.unwrap_err();
    assert_eq!(err, TrustError::RootNotSignedByPrevious { version: 2 });
}

/// D8 (row 17): configured pins apply to the new root when rotating away from a cached root
/// that has expired (`BootstrapNewBuilderWithNewTrustpin`, tufclient.go:372-378), and not
/// while it is valid. TOFU is then allowed even with `disable_tofu` (not a first bootstrap).
#[tokio::test]
async fn d8_pins_apply_when_rotating_away_from_an_expired_root() {
    let src = MemSource::new();
    let mut repo = repo_with_releases();
    repo.root_expires = repo.now + Duration::days(10);
    repo.timestamp_expires = repo.now + Duration::days(300);
    repo.publish(&src);
    let v1_id = repo.root_keys[0].id();
    let pinned_to = |ids: &[&str], dir: &std::path::Path| {
        let mut pinning = TrustPinning::default();
        pinning.certs.insert(
            GUN.into(),
            ids.iter()
                .map(|id| CertPin::KeyId(id.to_string()))
                .collect(),
        );
        TrustSettings {
            pinning,
            ..settings(dir)
        }
    };
    // Trusted at first contact under the v1 pin, in several state directories.
    let dirs: Vec<_> = (0..5).map(|_| tempfile::tempdir().unwrap()).collect();
    for d in &dirs {
        resolve(
            &client_at(&src, pinned_to(&[v1_id.as_str()], d.path()), repo.now),
            "v1",
        )
        .await
        .unwrap();
    }
    // Rotation to v2 (new key, signed by old and new), valid for long.
    let old = repo.root_keys.remove(0);
    repo.root_keys = vec![Signer::root_cert(
        GUN,
        repo.now - Duration::days(1),
        repo.now + Duration::days(900),
    )];
    let v2_id = repo.root_keys[0].id();
    repo.root_version = 2;
    repo.root_expires = repo.now + Duration::days(900);
    let root = envelope(&repo.root_signed(), &[&old, &repo.root_keys[0]]);
    src.put("2.root.json", &root);
    repo.snapshot_version = 2;
    repo.timestamp_version = 2;
    let p = repo.build();
    serve_rebuilt(&repo, &src, trustfix::Published { root, ..p });

    // Cached root still valid: it is the pin, the configured pin is not consulted.
    let state = client_at(&src, pinned_to(&[v1_id.as_str()], dirs[0].path()), repo.now)
        .update(GUN)
        .await
        .unwrap();
    assert_eq!(state.root_version(), 2);

    let later = repo.now + Duration::days(20);
    // Cached root expired: the v1-only pin refuses v2.
    let err = client_at(&src, pinned_to(&[v1_id.as_str()], dirs[1].path()), later)
        .update(GUN)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TrustError::PinMismatch { pin, .. } if pin == &format!("certs[{GUN}]")),
        "{err:?}"
    );
    // A pin that covers v2 accepts it.
    let state = client_at(
        &src,
        pinned_to(&[v1_id.as_str(), v2_id.as_str()], dirs[2].path()),
        later,
    )
    .update(GUN)
    .await
    .unwrap();
    assert_eq!(state.root_version(), 2);
    // No pin for the GUN: trust on first use is not involved, even when disabled.
    let s = TrustSettings {
        pinning: TrustPinning {
            disable_tofu: true,
            ..Default::default()
        },
        ..settings(dirs[3].path())
    };
    let state = client_at(&src, s, later).update(GUN).await.unwrap();
    assert_eq!(state.root_version(), 2);
    // A CA pin that did not issue v2's certificate refuses it.
    let mut pinning = TrustPinning::default();
    pinning.ca.insert(
        "registry.example/".into(),
        vec![TestIssuer::new("Other CA").der()],
    );
    let s = TrustSettings {
        pinning,
        ..settings(dirs[4].path())
    };
    let err = client_at(&src, s, later).update(GUN).await.unwrap_err();
    assert!(matches!(err, TrustError::PinMismatch { .. }), "{err:?}");
}
