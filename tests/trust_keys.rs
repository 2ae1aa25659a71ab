//! Keys, signature methods and the threshold function, through the public API: every key type
//! Notary writes, every method, method/key mismatches, RSA size and SHA-1 rules.

mod trustfix;

use std::collections::BTreeMap;

use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use serde_json::json;
use time::{Duration, OffsetDateTime};
use trustfix::harness::*;
use trustfix::{b64, MemSource, Signer};
use trustgate::trust::keys::PublicKey;
use trustgate::trust::verify::{verify_threshold, Authority};
use trustgate::trust::wire::{Envelope, TufKey};
use trustgate::trust::TrustError;

fn tuf(s: &Signer) -> TufKey {
    serde_json::from_value(s.tuf()).unwrap()
}

fn key(s: &Signer) -> PublicKey {
    PublicKey::from_tuf(&tuf(s)).unwrap()
}

#[test]
fn every_key_type_verifies_its_own_method_only() {
    let msg = b"canonical bytes";
    let now = OffsetDateTime::now_utc();
    let ecdsa = Signer::ecdsa();
    let ecdsa_x509 = ecdsa.as_cert("x", now - Duration::days(1), now + Duration::days(1), None);
    let ed = Signer::ed25519();
    let rsa = Signer::rsa_fixture("rsa2048", None);
    let rsa_x509 = Signer::rsa_fixture("rsa2048", Some("rsa2048.crt"));
    for s in [&ecdsa, &ecdsa_x509, &ed, &rsa, &rsa_x509] {
        let k = key(s);
        assert_eq!(k.keyid(), s.id(), "{}", s.keytype);
        let sig = s.sign_raw(msg);
        assert!(
            k.verify(s.method(), msg, &sig),
            "{} / {}",
            s.keytype,
            s.method()
        );
        // Method names are compared lowercased.
        assert!(
            k.verify(&s.method().to_uppercase(), msg, &sig),
            "{}",
            s.keytype
        );
        assert!(!k.verify(s.method(), b"other bytes", &sig), "{}", s.keytype);
        for other in ["ecdsa", "eddsa", "rsapss", "rsapkcs1v15", "rsa", ""] {
            let compatible = match s.keytype.as_str() {
                "ecdsa" | "ecdsa-x509" => other == "ecdsa",
                "ed25519" => other == "eddsa",
                _ => other == "rsapss" || other == "rsapkcs1v15",
            };
            if !compatible {
                assert!(
                    !k.verify(other, msg, &sig),
                    "{} accepted method {other}",
                    s.keytype
                );
            }
        }
    }
}

#[test]
fn rsa_pkcs1v15_verifies_and_small_rsa_never_does() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keys");
    let msg = b"m";
    let kp =
        ring::signature::RsaKeyPair::from_der(&std::fs::read(dir.join("rsa2048.key.der")).unwrap())
            .unwrap();
    let mut sig = vec![0; kp.public().modulus_len()];
    kp.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        msg,
        &mut sig,
    )
    .unwrap();
    let k2048 = key(&Signer::rsa_fixture("rsa2048", None));
    assert!(k2048.verify("rsapkcs1v15", msg, &sig));
    // A PKCS#1 v1.5 signature is not a PSS one.
    assert!(!k2048.verify("rsapss", msg, &sig));
    // Keys below 2048 bits never verify (Notary: RSA ≥ 2048).
    let k1024 = key(&Signer::rsa_fixture("rsa1024", None));
    let sig1024 = std::fs::read(dir.join("rsa1024-m.pkcs1.sig")).unwrap();
    assert_eq!(sig1024.len(), 128);
    assert!(!k1024.verify("rsapkcs1v15", msg, &sig1024));
}

#[test]
fn ecdsa_signatures_must_be_raw_r_s_not_der() {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
    let der_signer =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let mut spki = hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap();
    spki.extend_from_slice(ring::signature::KeyPair::public_key(&der_signer).as_ref());
    let tuf: TufKey = serde_json::from_value(
        json!({"keytype": "ecdsa", "keyval": {"private": null, "public": b64(&spki)}}),
    )
    .unwrap();
    let k = PublicKey::from_tuf(&tuf).unwrap();
    let der_sig = der_signer.sign(&rng, b"m").unwrap();
    assert!(!k.verify("ecdsa", b"m", der_sig.as_ref()));
}

fn envelope_for(signers: &[&Signer]) -> (Envelope, Vec<u8>) {
    let signed = json!({"_type": "Targets", "version": 1});
    let bytes = trustfix::envelope(&signed, signers);
    let env = Envelope::parse("targets", &bytes).unwrap();
    let canonical = env.canonical_signed("targets").unwrap();
    (env, canonical)
}

#[test]
fn threshold_function_rules() {
    let a = Signer::ecdsa();
    let b = Signer::ed25519();
    let stranger = Signer::ecdsa();
    let (ta, tb) = (tuf(&a), tuf(&b));
    let (ida, idb) = (a.id(), b.id());
    let keys = BTreeMap::from([(ida.as_str(), &ta), (idb.as_str(), &tb)]);
    let auth = |threshold| Authority {
        role: "targets",
        keys: keys.clone(),
        threshold,
    };

    let (env, c) = envelope_for(&[&a, &stranger, &b]);
    let mut signers = verify_threshold(&auth(2), &env, &c).unwrap();
    signers.sort();
    let mut want = vec![ida.clone(), idb.clone()];
    want.sort();
    assert_eq!(
        signers, want,
        "unknown keyids are skipped, both authorised keys count"
    );

    assert_eq!(
        verify_threshold(&auth(0), &env, &c).unwrap_err(),
        TrustError::InvalidThreshold {
            role: "targets".into(),
            threshold: 0
        }
    );
    let (unsigned, c0) = envelope_for(&[]);
    assert_eq!(
        verify_threshold(&auth(1), &unsigned, &c0).unwrap_err(),
        TrustError::Unsigned {
            role: "targets".into()
        }
    );
    // A bad signature is skipped, not fatal: b alone meets a threshold of 1.
    let (mut env2, c2) = envelope_for(&[&a, &b]);
    env2.signatures[0].sig = b64(&[0u8; 64]);
    assert_eq!(
        verify_threshold(&auth(1), &env2, &c2).unwrap(),
        vec![idb.to_string()]
    );
    assert_eq!(
        verify_threshold(&auth(2), &env2, &c2).unwrap_err(),
        TrustError::ThresholdNotMet {
            role: "targets".into(),
            valid: 1,
            threshold: 2
        }
    );
    // The right key under a method that is not its own never counts.
    let (mut env3, c3) = envelope_for(&[&a]);
    env3.signatures[0].method = "eddsa".into();
    assert!(matches!(
        verify_threshold(&auth(1), &env3, &c3),
        Err(TrustError::ThresholdNotMet { valid: 0, .. })
    ));
}

#[tokio::test]
async fn rsa_root_certificates_follow_notary_rules() {
    // A 2048-bit rsa-x509 root with a SHA-256 certificate is fine...
    let src = MemSource::new();
    let mut repo = repo_with_releases();
    repo.root_keys = vec![Signer::rsa_fixture("rsa2048", Some("rsa2048.crt"))];
    repo.publish(&src);
    let dir = tempfile::tempdir().unwrap();
    let now = repo.now;
    resolve(&client(&src, dir.path(), now), "latest")
        .await
        .unwrap();
    // ...a SHA-1-signed one is not, nor a 1024-bit one.
    for (stem, cert, why) in [
        ("rsa2048", "rsa2048-sha1.crt", "SHA-1"),
        ("rsa1024", "rsa1024.crt", "1024 bits"),
    ] {
        let src = MemSource::new();
        let mut repo = repo_with_releases();
        repo.root_keys = vec![Signer::rsa_fixture(stem, Some(cert))];
        repo.publish(&src);
        let err = expect_err(&src, now, "latest").await;
        assert!(
            matches!(&err, TrustError::RootCertRejected { reason, .. } if reason.contains(why)),
            "{cert}: {err:?}"
        );
    }
}
