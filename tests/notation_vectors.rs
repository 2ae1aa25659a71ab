//! Envelopes made by the real Notation tools (vendored from notation-go and notation-core-go
//! test data; see tests/fixtures/notation/PROVENANCE.md) through the verifier.

mod notation_common;

use notation_common::*;
use time::OffsetDateTime;
use trustgate::notation::envelope;
use trustgate::notation::policy;
use trustgate::notation::Check;
use trustgate::notation::TargetDescriptor;

/// What notation-go's `withoutTimestamp.sig` / `*WithTimestamp.sig` were signed over.
fn vector_target() -> TargetDescriptor {
    TargetDescriptor {
        media_type: "application/vnd.docker.distribution.manifest.v2+json".into(),
        digest: "sha256:c0669ef34cdc14332c0f1ab0c2c01acb91d96014b172f1a76f3a39e63d1f0bda".into(),
        size: 528,
    }
}

fn alpine_store() -> trustgate::notation::truststore::TrustStore {
    ca_store(vec![pem_cert("notation-go/TestTimestamp.crt")])
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn vector(name: &str) -> Vec<u8> {
    fixture(&format!("notation-go/{name}.sig"))
}

const IDENTITY_NOTARY: &str = r#""signatureVerification":{"level":"strict","override":{"revocation":"skip"}},"trustStores":["ca:test"],"trustedIdentities":["x509.subject: C=US, ST=WA, O=Notary"]"#;

#[test]
fn real_jws_verifies_under_strict_policy() {
    let v = run(
        &vector("withoutTimestamp"),
        JWS,
        &policy(IDENTITY_NOTARY),
        &alpine_store(),
        &vector_target(),
        now(),
    )
    .unwrap();
    assert_eq!(v.statement, "p");
    assert!(!v.skipped && !v.timestamp_used);
    assert!(v.signer_subject.unwrap().contains("CN=alpine"));
    assert_eq!(
        v.signer_thumbprint.as_deref(),
        Some("01937612e3e24e6496b325fb899fdb3b7045350ab2d91141c6310a917d5cebe2")
    );
    assert_eq!(v.trusted_by.unwrap().0.name, "test");
    assert_eq!(v.signing_scheme, Some(envelope::SigningScheme::X509));
}

#[test]
fn real_jws_with_a_wrong_identity_is_refused() {
    let p = policy(&IDENTITY_NOTARY.replace("O=Notary", "O=Wabbit Networks"));
    let e = run(
        &vector("withoutTimestamp"),
        JWS,
        &p,
        &alpine_store(),
        &vector_target(),
        now(),
    )
    .unwrap_err();
    assert_eq!(e.check, Some(Check::Authenticity), "{e}");
    assert!(
        e.message.contains("matches none of the trusted identities"),
        "{e}"
    );
}

#[test]
fn real_jws_from_a_certificate_no_store_holds_is_refused() {
    let s = ca_store(vec![pem_cert("notation-go/wabbit-networks.io.crt")]);
    let e = run(
        &vector("withoutTimestamp"),
        JWS,
        &policy(STRICT),
        &s,
        &vector_target(),
        now(),
    )
    .unwrap_err();
    assert_eq!(e.check, Some(Check::Authenticity), "{e}");
}

#[test]
fn real_jws_for_another_digest_or_size_is_refused() {
    let mut t = vector_target();
    t.digest = format!("sha256:{}", "00".repeat(32));
    let e = run(
        &vector("withoutTimestamp"),
        JWS,
        &policy(STRICT),
        &alpine_store(),
        &t,
        now(),
    )
    .unwrap_err();
    assert_eq!(e.check, Some(Check::Integrity));
    assert!(e.message.contains("not sha256:0000"), "{e}");
    let mut t = vector_target();
    t.size = 529;
    let e = run(
        &vector("withoutTimestamp"),
        JWS,
        &policy(STRICT),
        &alpine_store(),
        &t,
        now(),
    )
    .unwrap_err();
    assert!(e.message.contains("size 528, not 529"), "{e}");
}

#[test]
fn real_jws_truncated_or_tampered_is_refused() {
    let env = vector("withoutTimestamp");
    for cut in [1, env.len() / 2, env.len() - 1] {
        let e = run(
            &env[..cut],
            JWS,
            &policy(STRICT),
            &alpine_store(),
            &vector_target(),
            now(),
        )
        .unwrap_err();
        assert_eq!(e.check, Some(Check::Integrity), "{e}");
    }
    // One flipped character of the signature.
    let text = String::from_utf8(env).unwrap();
    let at = text.rfind("\"signature\":\"").unwrap() + 20;
    let mut bytes = text.into_bytes();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    let e = run(
        &bytes,
        JWS,
        &policy(STRICT),
        &alpine_store(),
        &vector_target(),
        now(),
    )
    .unwrap_err();
    assert!(e.message.contains("does not verify"), "{e}");
}

#[test]
fn a_tsa_store_requires_a_timestamp_the_vector_lacks() {
    let p = policy(
        r#""signatureVerification":{"level":"strict","override":{"revocation":"skip"}},"trustStores":["ca:test","tsa:tsa"],"trustedIdentities":["*"]"#,
    );
    let mut s = alpine_store();
    s.insert(
        policy::StoreRef {
            kind: policy::StoreType::Tsa,
            name: "tsa".into(),
        },
        vec![pem_cert("notation-go/TestTimestamp.crt")],
    );
    let e = run(
        &vector("withoutTimestamp"),
        JWS,
        &p,
        &s,
        &vector_target(),
        now(),
    )
    .unwrap_err();
    assert_eq!(e.check, Some(Check::AuthenticTimestamp), "{e}");
    assert!(e.message.contains("no timestamp countersignature"), "{e}");
    // A countersigned envelope whose TSA does not chain to the tsa store (it holds the alpine
    // leaf, not GlobalSign's root) is refused too (tests/notation_timestamp.rs has the rest).
    let e = run(
        &vector("jwsWithTimestamp"),
        JWS,
        &p,
        &s,
        &vector_target(),
        now(),
    )
    .unwrap_err();
    assert!(
        e.message
            .contains("does not chain to the statement's tsa trust stores"),
        "{e}"
    );
    let e = run(
        &vector("coseWithTimestamp"),
        COSE,
        &p,
        &s,
        &vector_target(),
        now(),
    )
    .unwrap_err();
    assert!(
        e.message
            .contains("does not chain to the statement's tsa trust stores"),
        "{e}"
    );
}

#[test]
fn countersigned_vectors_verify_when_no_timestamp_is_required() {
    for (name, mt) in [("jwsWithTimestamp", JWS), ("coseWithTimestamp", COSE)] {
        let v = run(
            &vector(name),
            mt,
            &policy(STRICT),
            &alpine_store(),
            &vector_target(),
            now(),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!v.timestamp_used, "{name}");
    }
}

/// `*ExpiredWithTimestamp.sig` are signed by a leaf valid for ten minutes in 2024. Trusting
/// that leaf itself isolates the rule under test: without a verified timestamp, an expired
/// certificate fails authenticTimestamp (spec "Other requirements" 4).
#[test]
fn expired_certificate_without_a_verified_timestamp_is_refused() {
    for (name, mt) in [
        ("jwsExpiredWithTimestamp", JWS),
        ("coseExpiredWithTimestamp", COSE),
    ] {
        let env = vector(name);
        let info = envelope::parse(mt, &env).unwrap();
        let s = ca_store(vec![info.chain[0].clone()]);
        let e = run(&env, mt, &policy(STRICT), &s, &vector_target(), now()).unwrap_err();
        assert_eq!(e.check, Some(Check::AuthenticTimestamp), "{name}: {e}");
        assert!(e.message.contains("verification time"), "{name}: {e}");
        // permissive logs authenticTimestamp (level matrix), so the same signature passes,
        // with the failure recorded.
        let p = policy(&STRICT.replace("strict", "permissive"));
        let v = run(&env, mt, &p, &s, &vector_target(), now()).unwrap();
        assert!(
            v.logged
                .iter()
                .any(|(c, _)| *c == Check::AuthenticTimestamp),
            "{name}"
        );
        // With a tsa store and afterCertExpiry a verified timestamp rescues it; this store's
        // root did not issue the TSA's certificate, so it is refused.
        let p = policy(
            r#""signatureVerification":{"level":"strict","verifyTimestamp":"afterCertExpiry","override":{"revocation":"skip"}},"trustStores":["ca:test","tsa:tsa"],"trustedIdentities":["*"]"#,
        );
        let mut s2 = s.clone();
        s2.insert(
            policy::StoreRef {
                kind: policy::StoreType::Tsa,
                name: "tsa".into(),
            },
            vec![pem_cert("notation-go/TestTimestamp.crt")],
        );
        let e = run(&env, mt, &p, &s2, &vector_target(), now()).unwrap_err();
        assert!(e.message.contains("does not chain"), "{name}: {e}");
    }
}

/// notation-core-go's JWS conformance envelope marks `signedCritKey1` critical.
#[test]
fn unknown_critical_header_from_the_conformance_vector_fails() {
    let e = envelope::parse(JWS, &fixture("notation-core-go/jws-conformance.json")).unwrap_err();
    assert!(
        e.contains("unknown critical header \"signedCritKey1\""),
        "{e}"
    );
}

#[test]
fn the_specification_example_policy_loads_and_enforces_revocation() {
    let bytes = fixture("specifications/trustpolicy.example.oci.json");
    // Its first statement is plain strict, which enforces revocation: the policy parses (as
    // notation-go parses it); a verifier without crl_dir refuses it at load
    // (tests/notation_revocation.rs `enforced_revocation_needs_crls_at_load`).
    let p = policy::parse("trustpolicy.oci.json", &bytes).unwrap();
    assert_eq!(
        p.statements[0].action(trustgate::notation::Check::Revocation),
        policy::Action::Enforce
    );
    let text = String::from_utf8(bytes).unwrap();
    let p = policy::parse("trustpolicy.oci.json", text.as_bytes()).unwrap();
    assert_eq!(p.statements.len(), 4);
    assert_eq!(
        p.applicable("registry.acme-rockets.io/software/net-monitor")
            .unwrap()
            .name,
        "wabbit-networks-images"
    );
    assert_eq!(
        p.applicable("registry.wabbit-networks.io/software/unsigned/net-utils")
            .unwrap()
            .level,
        policy::Level::Skip
    );
    assert_eq!(
        p.applicable("other.example/x").unwrap().name,
        "global-policy-for-all-other-images"
    );
}

/// Randomly corrupted real envelopes (bytes flipped, cut, spliced) give an error, never a
/// panic, and never verify (the fuzz target `notation_parse` does the same without bounds).
#[test]
fn corrupted_real_envelopes_never_panic_or_verify() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let p = policy(STRICT);
    let s = alpine_store();
    for (name, mt) in [("withoutTimestamp", JWS), ("coseWithTimestamp", COSE)] {
        let good = vector(name);
        for _ in 0..1500 {
            let mut b = good.clone();
            match rng.gen_range(0..3) {
                0 => {
                    for _ in 0..rng.gen_range(1..4) {
                        let i = rng.gen_range(0..b.len());
                        b[i] ^= 1 << rng.gen_range(0..8);
                    }
                }
                1 => b.truncate(rng.gen_range(0..b.len())),
                _ => {
                    let i = rng.gen_range(0..b.len());
                    let j = rng.gen_range(0..b.len());
                    b.insert(i, good[j]);
                }
            }
            if b == good {
                continue;
            }
            let r = std::panic::catch_unwind(|| run(&b, mt, &p, &s, &vector_target(), now()));
            let r = r.unwrap_or_else(|_| panic!("{name}: panicked on {}", hex::encode(&b)));
            // A flip inside base64 padding bits or unsigned fields can leave the signature
            // intact; anything else must be refused.
            if let Ok(v) = r {
                assert_eq!(
                    v.signer_thumbprint,
                    run(&good, mt, &p, &s, &vector_target(), now())
                        .unwrap()
                        .signer_thumbprint
                );
            }
        }
    }
}
