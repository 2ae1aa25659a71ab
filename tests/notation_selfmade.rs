//! Signatures the tests make with keys they hold: every algorithm in both envelope formats,
//! and the hostile variants (issue 11 "Hostile").

mod notation_common;

use notation_common::*;
use rcgen::{ExtendedKeyUsagePurpose, KeyUsagePurpose};
use time::{Duration, OffsetDateTime};
use trustgate::notation::policy::StoreType;
use trustgate::notation::{Check, MAX_ENVELOPE_BYTES};

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn both(s: &Signer, payload: &[u8], h: &Headers) -> [(Vec<u8>, &'static str); 2] {
    [(jws(s, payload, h), JWS), (cose(s, payload, h), COSE)]
}

#[test]
fn every_algorithm_verifies_in_jws_and_cose() {
    let ca1 = ca("Test CA");
    let vendored_ca = vec![pem_cert("selfmade/ca.crt")];
    let mut signers: Vec<(Signer, Vec<Vec<u8>>)> = vec![
        (
            leaf(&ca1, LeafSpec::default()),
            vec![ca1.cert.der().to_vec()],
        ),
        (
            leaf(
                &ca1,
                LeafSpec {
                    curve: Curve::P384,
                    ..Default::default()
                },
            ),
            vec![ca1.cert.der().to_vec()],
        ),
    ];
    for name in ["rsa2048", "rsa3072", "rsa4096", "p521"] {
        signers.push((vendored_signer(name), vendored_ca.clone()));
    }
    let t = target();
    let mut seen = Vec::new();
    for (s, trusted) in &signers {
        // The vendored leaves are only as old as their last make.sh run.
        let h = Headers {
            signing_time: now() - Duration::seconds(30),
            ..Default::default()
        };
        for (env, mt) in both(s, &payload_for(&t), &h) {
            let v = run(
                &env,
                mt,
                &policy(STRICT),
                &ca_store(trusted.clone()),
                &t,
                now(),
            )
            .unwrap_or_else(|e| panic!("{} {mt}: {e}", s.jws_alg));
            assert_eq!(
                v.signer_thumbprint.as_deref(),
                Some(s.leaf_thumbprint().as_str())
            );
            assert!(v.logged.is_empty(), "{:?}", v.logged);
        }
        seen.push(s.jws_alg);
    }
    assert_eq!(seen, ["ES256", "ES384", "PS256", "PS384", "PS512", "ES512"]);
}

#[test]
fn the_algorithm_must_be_the_one_the_key_implies() {
    let ca1 = ca("Test CA");
    let mut s = leaf(&ca1, LeafSpec::default());
    s.jws_alg = "ES384";
    s.cose_alg = coset::iana::Algorithm::ES384;
    for (env, mt) in both(&s, &payload_for(&target()), &Headers::default()) {
        let e = run(
            &env,
            mt,
            &policy(STRICT),
            &ca_store(vec![ca1.cert.der().to_vec()]),
            &target(),
            now(),
        )
        .unwrap_err();
        assert!(
            e.message
                .contains("says ES384 but the signing certificate's key requires ES256"),
            "{mt}: {e}"
        );
    }
}

#[test]
fn payload_for_another_digest_media_type_or_size_is_refused() {
    let ca1 = ca("Test CA");
    let s = leaf(&ca1, LeafSpec::default());
    let store = ca_store(vec![ca1.cert.der().to_vec()]);
    let signed = target();
    let mut other_digest = signed.clone();
    other_digest.digest = format!("sha256:{}", "cd".repeat(32));
    let mut other_size = signed.clone();
    other_size.size += 1;
    let mut other_type = signed.clone();
    other_type.media_type = "application/vnd.oci.image.index.v1+json".into();
    for (env, mt) in both(&s, &payload_for(&signed), &Headers::default()) {
        for (t, needle) in [
            (&other_digest, "digest"),
            (&other_size, "size"),
            (&other_type, "media type"),
        ] {
            let e = run(&env, mt, &policy(STRICT), &store, t, now()).unwrap_err();
            assert_eq!(e.check, Some(Check::Integrity), "{mt}: {e}");
            assert!(
                e.message.contains(&format!("signature is for {needle}")),
                "{mt}: {e}"
            );
        }
    }
}

#[test]
fn a_leaf_from_an_untrusted_ca_is_refused_and_audit_only_logs_it() {
    let trusted = ca("Trusted CA");
    let rogue = ca("Rogue CA");
    let s = leaf(&rogue, LeafSpec::default());
    let store = ca_store(vec![trusted.cert.der().to_vec()]);
    for (env, mt) in both(&s, &payload_for(&target()), &Headers::default()) {
        let e = run(&env, mt, &policy(STRICT), &store, &target(), now()).unwrap_err();
        assert_eq!(e.check, Some(Check::Authenticity), "{mt}: {e}");
        let audit = policy(&STRICT.replace("strict", "audit"));
        let v = run(&env, mt, &audit, &store, &target(), now()).unwrap();
        assert!(
            v.logged.iter().any(|(c, _)| *c == Check::Authenticity),
            "{mt}"
        );
        assert!(v.trusted_by.is_none());
    }
}

/// A chain whose issuer signature does not verify is an integrity failure even when its root
/// is trusted: swapping in another CA with the same name must not pass.
#[test]
fn a_chain_that_is_not_a_path_is_refused() {
    let real = ca("Test CA");
    let twin = ca("Test CA");
    let mut s = leaf(&twin, LeafSpec::default());
    s.chain[1] = real.cert.der().to_vec();
    let store = ca_store(vec![real.cert.der().to_vec()]);
    for (env, mt) in both(&s, &payload_for(&target()), &Headers::default()) {
        let e = run(&env, mt, &policy(STRICT), &store, &target(), now()).unwrap_err();
        assert_eq!(e.check, Some(Check::Integrity), "{mt}: {e}");
        assert!(e.message.contains("not a valid path"), "{mt}: {e}");
    }
    // The leaf alone, not self-signed, is no chain.
    let mut lone = leaf(&real, LeafSpec::default());
    lone.chain.truncate(1);
    let e = run(
        &jws(&lone, &payload_for(&target()), &Headers::default()),
        JWS,
        &policy(STRICT),
        &store,
        &target(),
        now(),
    )
    .unwrap_err();
    assert!(e.message.contains("not validly self-signed"), "{e}");
}

#[test]
fn leaf_usage_rules() {
    let ca1 = ca("Test CA");
    let store = ca_store(vec![ca1.cert.der().to_vec()]);
    let cases: Vec<(LeafSpec, Option<&str>)> = vec![
        // A TLS server certificate is not a code-signing certificate.
        (
            LeafSpec {
                eku: vec![ExtendedKeyUsagePurpose::ServerAuth],
                ..Default::default()
            },
            Some("must not contain serverAuth"),
        ),
        (
            LeafSpec {
                eku: vec![
                    ExtendedKeyUsagePurpose::CodeSigning,
                    ExtendedKeyUsagePurpose::TimeStamping,
                ],
                ..Default::default()
            },
            Some("must not contain timeStamping"),
        ),
        (
            LeafSpec {
                eku: vec![ExtendedKeyUsagePurpose::Any],
                ..Default::default()
            },
            Some("must not contain anyExtendedKeyUsage"),
        ),
        (
            LeafSpec {
                key_usages: vec![KeyUsagePurpose::KeyEncipherment],
                ..Default::default()
            },
            Some("must include digitalSignature"),
        ),
        (
            LeafSpec {
                key_usages: vec![
                    KeyUsagePurpose::DigitalSignature,
                    KeyUsagePurpose::KeyEncipherment,
                ],
                ..Default::default()
            },
            Some("digitalSignature only, found keyEncipherment"),
        ),
        (
            LeafSpec {
                key_usages: vec![],
                ..Default::default()
            },
            Some("keyUsage extension must be present"),
        ),
        // signature-specification.md "Leaf Certificates" 3: the EKU extension is optional.
        (
            LeafSpec {
                eku: vec![],
                ..Default::default()
            },
            None,
        ),
    ];
    for (spec, want) in cases {
        let s = leaf(&ca1, spec);
        for (env, mt) in both(&s, &payload_for(&target()), &Headers::default()) {
            let r = run(&env, mt, &policy(STRICT), &store, &target(), now());
            match want {
                None => {
                    r.unwrap_or_else(|e| panic!("{mt}: {e}"));
                }
                Some(needle) => {
                    let e = r.unwrap_err();
                    assert_eq!(e.check, Some(Check::Integrity), "{mt}: {e}");
                    assert!(e.message.contains(needle), "{mt}: want {needle:?}, got {e}");
                }
            }
        }
    }
}

#[test]
fn expired_leaf_without_timestamp_is_refused_and_signing_time_must_be_in_validity() {
    let ca1 = ca("Test CA");
    let store = ca_store(vec![ca1.cert.der().to_vec()]);
    let s = leaf(
        &ca1,
        LeafSpec {
            not_before: now() - Duration::days(30),
            not_after: now() - Duration::days(1),
            ..Default::default()
        },
    );
    let h = Headers {
        signing_time: now() - Duration::days(10),
        ..Default::default()
    };
    for (env, mt) in both(&s, &payload_for(&target()), &h) {
        let e = run(&env, mt, &policy(STRICT), &store, &target(), now()).unwrap_err();
        assert_eq!(e.check, Some(Check::AuthenticTimestamp), "{mt}: {e}");
    }
    // A claimed signing time outside the leaf's validity breaks integrity at any level.
    let h = Headers {
        signing_time: now() - Duration::days(60),
        ..Default::default()
    };
    for (env, mt) in both(&s, &payload_for(&target()), &h) {
        let audit = policy(&STRICT.replace("strict", "audit"));
        let e = run(&env, mt, &audit, &store, &target(), now()).unwrap_err();
        assert_eq!(e.check, Some(Check::Integrity), "{mt}: {e}");
        assert!(e.message.contains("signing time"), "{mt}: {e}");
    }
}

#[test]
fn signature_expiry_is_enforced_or_logged_per_level() {
    let ca1 = ca("Test CA");
    let store = ca_store(vec![ca1.cert.der().to_vec()]);
    let s = leaf(&ca1, LeafSpec::default());
    let h = Headers {
        expiry: Some(now() - Duration::minutes(1)),
        ..Default::default()
    };
    for (env, mt) in both(&s, &payload_for(&target()), &h) {
        let e = run(&env, mt, &policy(STRICT), &store, &target(), now()).unwrap_err();
        assert_eq!(e.check, Some(Check::Expiry), "{mt}: {e}");
        let lenient = policy(&STRICT.replace(
            r#""revocation":"skip""#,
            r#""revocation":"skip","expiry":"log""#,
        ));
        let v = run(&env, mt, &lenient, &store, &target(), now()).unwrap();
        assert_eq!(v.logged.len(), 1, "{mt}: {:?}", v.logged);
    }
    let h = Headers {
        expiry: Some(now() + Duration::days(1)),
        ..Default::default()
    };
    for (env, mt) in both(&s, &payload_for(&target()), &h) {
        run(&env, mt, &policy(STRICT), &store, &target(), now()).unwrap();
    }
}

#[test]
fn unknown_and_plugin_critical_headers_fail_and_non_critical_ones_do_not() {
    let ca1 = ca("Test CA");
    let store = ca_store(vec![ca1.cert.der().to_vec()]);
    let s = leaf(&ca1, LeafSpec::default());
    let with = |name: &str, critical: bool| Headers {
        extra: vec![(name.to_string(), "x".to_string(), critical)],
        ..Default::default()
    };
    for (h, want) in [
        (
            with("io.example.mustUnderstand", true),
            Some("unknown critical header \"io.example.mustUnderstand\""),
        ),
        (
            with("io.cncf.notary.verificationPlugin", true),
            Some("requires a verification plugin"),
        ),
        (with("io.example.note", false), None),
    ] {
        for (env, mt) in both(&s, &payload_for(&target()), &h) {
            let r = run(&env, mt, &policy(STRICT), &store, &target(), now());
            match want {
                None => {
                    r.unwrap_or_else(|e| panic!("{mt}: {e}"));
                }
                Some(needle) => {
                    let e = r.unwrap_err();
                    assert_eq!(e.check, Some(Check::Integrity));
                    assert!(e.message.contains(needle), "{mt}: {e}");
                }
            }
        }
    }
}

#[test]
fn signing_authority_scheme_needs_a_signing_authority_store() {
    let ca1 = ca("Test CA");
    let s = leaf(&ca1, LeafSpec::default());
    let h = Headers {
        scheme: "notary.x509.signingAuthority",
        ..Default::default()
    };
    let sa_policy = policy(
        r#""signatureVerification":{"level":"strict","override":{"revocation":"skip"}},"trustStores":["signingAuthority:test"],"trustedIdentities":["*"]"#,
    );
    let sa_store = store(
        StoreType::SigningAuthority,
        "test",
        vec![ca1.cert.der().to_vec()],
    );
    for (env, mt) in both(&s, &payload_for(&target()), &h) {
        let v = run(&env, mt, &sa_policy, &sa_store, &target(), now())
            .unwrap_or_else(|e| panic!("{mt}: {e}"));
        assert_eq!(v.trusted_by.unwrap().0.kind, StoreType::SigningAuthority);
        // The same CA in a ca store does not vouch for signingAuthority signatures.
        let e = run(
            &env,
            mt,
            &policy(STRICT),
            &ca_store(vec![ca1.cert.der().to_vec()]),
            &target(),
            now(),
        )
        .unwrap_err();
        assert_eq!(e.check, Some(Check::Authenticity), "{mt}: {e}");
        assert!(
            e.message.contains("names no signingAuthority trust store"),
            "{mt}: {e}"
        );
    }
}

#[test]
fn oversized_and_truncated_envelopes_are_refused() {
    let ca1 = ca("Test CA");
    let store = ca_store(vec![ca1.cert.der().to_vec()]);
    let s = leaf(&ca1, LeafSpec::default());
    let big = Headers {
        extra: vec![(
            "io.example.pad".into(),
            "x".repeat(MAX_ENVELOPE_BYTES),
            false,
        )],
        ..Default::default()
    };
    for (env, mt) in both(&s, &payload_for(&target()), &big) {
        let e = run(&env, mt, &policy(STRICT), &store, &target(), now()).unwrap_err();
        assert!(
            e.message.contains("more than the 262144 accepted"),
            "{mt}: {e}"
        );
    }
    let cose_env = cose(&s, &payload_for(&target()), &Headers::default());
    for cut in [0, 1, cose_env.len() / 2, cose_env.len() - 1] {
        let e = run(
            &cose_env[..cut],
            COSE,
            &policy(STRICT),
            &store,
            &target(),
            now(),
        )
        .unwrap_err();
        assert_eq!(e.check, Some(Check::Integrity), "{e}");
        assert!(e.message.contains("COSE_Sign1"), "{e}");
    }
    let mut trailing = cose_env.clone();
    trailing.push(0);
    assert!(run(&trailing, COSE, &policy(STRICT), &store, &target(), now()).is_err());
    // The JWS media type for COSE bytes and the reverse.
    assert!(run(&cose_env, JWS, &policy(STRICT), &store, &target(), now()).is_err());
}

#[test]
fn scopes_and_skip() {
    let ca1 = ca("Test CA");
    let s = leaf(&ca1, LeafSpec::default());
    let env = jws(&s, &payload_for(&target()), &Headers::default());
    let store = ca_store(vec![ca1.cert.der().to_vec()]);
    // No statement for the repository: refused before anything else.
    let p = trustgate::notation::policy::parse(
        "p.json",
        br#"{"version":"1.0","trustPolicies":[{"name":"other","registryScopes":["registry.example/other"],"signatureVerification":{"level":"strict","override":{"revocation":"skip"}},"trustStores":["ca:test"],"trustedIdentities":["*"]}]}"#,
    )
    .unwrap();
    let e = run(&env, JWS, &p, &store, &target(), now()).unwrap_err();
    assert_eq!((e.statement, e.check), (None, None));
    assert!(
        e.message.contains("no trust policy statement applies"),
        "{}",
        e.message
    );
    let skip = policy(r#""signatureVerification":{"level":"skip"}"#);
    let v = run(
        b"not even an envelope",
        JWS,
        &skip,
        &store,
        &target(),
        now(),
    )
    .unwrap();
    assert!(v.skipped);
}

/// Notary CA rules webpki does not apply to a chain's root: the root's pathLenConstraint, and
/// keyCertSign on every CA (codesigning_cert_validations.go `validateCodeSigningCACertificate`).
#[test]
fn ca_path_length_and_key_cert_sign_are_checked() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let mk_ca = |cn: &str, bc: BasicConstraints, kus: Vec<KeyUsagePurpose>, issuer: Option<&Ca>| {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.is_ca = IsCa::Ca(bc);
        p.key_usages = kus;
        p.not_before = now() - Duration::days(1);
        p.not_after = now() + Duration::days(100);
        let cert = match issuer {
            None => p.self_signed(&key).unwrap(),
            Some(i) => p.signed_by(&key, &i.cert, &i.key).unwrap(),
        };
        Ca { cert, key }
    };
    let sign_kus = vec![KeyUsagePurpose::KeyCertSign];
    for (root_bc, inter_kus, want) in [
        (BasicConstraints::Unconstrained, sign_kus.clone(), None),
        (
            BasicConstraints::Constrained(0),
            sign_kus.clone(),
            Some("pathLenConstraint 0 but 1 CA certificate(s) below it"),
        ),
        (
            BasicConstraints::Unconstrained,
            vec![KeyUsagePurpose::DigitalSignature],
            Some("keyUsage must include keyCertSign"),
        ),
    ] {
        let root = mk_ca("Root", root_bc, sign_kus.clone(), None);
        let inter = mk_ca(
            "Intermediate",
            BasicConstraints::Unconstrained,
            inter_kus,
            Some(&root),
        );
        let mut s = leaf(&inter, LeafSpec::default());
        s.chain.push(root.cert.der().to_vec());
        let env = cose(&s, &payload_for(&target()), &Headers::default());
        let r = run(
            &env,
            COSE,
            &policy(STRICT),
            &ca_store(vec![root.cert.der().to_vec()]),
            &target(),
            now(),
        );
        match want {
            None => {
                r.unwrap();
            }
            Some(needle) => {
                let e = r.unwrap_err();
                assert!(e.message.contains(needle), "want {needle:?}: {e}");
            }
        }
    }
}

/// verifier.go `verifyTimestamp`: with `afterCertExpiry` a valid chain needs no timestamp;
/// with `always` a missing one fails authenticTimestamp, which `permissive` only logs.
#[test]
fn verify_timestamp_options() {
    let ca1 = ca("Test CA");
    let s = leaf(&ca1, LeafSpec::default());
    let env = jws(&s, &payload_for(&target()), &Headers::default());
    let mut st = ca_store(vec![ca1.cert.der().to_vec()]);
    st.insert(
        trustgate::notation::policy::StoreRef {
            kind: StoreType::Tsa,
            name: "tsa".into(),
        },
        vec![ca1.cert.der().to_vec()],
    );
    let with = |level: &str, vt: &str| {
        policy(&format!(
            r#""signatureVerification":{{"level":"{level}","verifyTimestamp":"{vt}","override":{{"revocation":"skip"}}}},"trustStores":["ca:test","tsa:tsa"],"trustedIdentities":["*"]"#
        ))
    };
    run(
        &env,
        JWS,
        &with("strict", "afterCertExpiry"),
        &st,
        &target(),
        now(),
    )
    .unwrap();
    let e = run(&env, JWS, &with("strict", "always"), &st, &target(), now()).unwrap_err();
    assert_eq!(e.check, Some(Check::AuthenticTimestamp), "{e}");
    let v = run(
        &env,
        JWS,
        &with("permissive", "always"),
        &st,
        &target(),
        now(),
    )
    .unwrap();
    assert_eq!(v.logged[0].0, Check::AuthenticTimestamp);
}
