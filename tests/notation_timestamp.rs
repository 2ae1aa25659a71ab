//! RFC 3161 timestamp countersignatures: the real notation-go vectors (countersigned by
//! GlobalSign's TSA; see tests/fixtures/notation/PROVENANCE.md) verified against a `tsa`
//! store holding GlobalSign Root R6, and hostile variants of them.
mod notation_common;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use notation_common::*;
use time::OffsetDateTime;
use trustgate::notation::policy::{StoreRef, StoreType};
use trustgate::notation::truststore::TrustStore;
use trustgate::notation::{envelope, Check, TargetDescriptor};

fn vector_target() -> TargetDescriptor {
    TargetDescriptor {
        media_type: "application/vnd.docker.distribution.manifest.v2+json".into(),
        digest: "sha256:c0669ef34cdc14332c0f1ab0c2c01acb91d96014b172f1a76f3a39e63d1f0bda".into(),
        size: 528,
    }
}

fn vector(name: &str) -> Vec<u8> {
    fixture(&format!("notation-go/{name}.sig"))
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn statement(verify_timestamp: &str, level: &str) -> String {
    format!(
        r#""signatureVerification":{{"level":"{level}","verifyTimestamp":"{verify_timestamp}","override":{{"revocation":"skip"}}}},"trustStores":["ca:test","tsa:tsa"],"trustedIdentities":["*"]"#
    )
}

/// `ca:test` holds what signed `env` (its own leaf: the expired vectors' leaf has no CA in
/// the fixtures), `tsa:tsa` holds `tsa_root`.
fn stores(env: &[u8], mt: &str, tsa_root: Vec<u8>) -> TrustStore {
    let info = envelope::parse(mt, env).unwrap();
    let mut s = ca_store(vec![info.chain.last().unwrap().clone()]);
    s.insert(
        StoreRef {
            kind: StoreType::Tsa,
            name: "tsa".into(),
        },
        vec![tsa_root],
    );
    s
}

fn globalsign() -> Vec<u8> {
    pem_cert("notation-go/globalsignTSARoot.crt")
}

const ALL: [(&str, &str); 4] = [
    ("jwsWithTimestamp", JWS),
    ("coseWithTimestamp", COSE),
    ("jwsExpiredWithTimestamp", JWS),
    ("coseExpiredWithTimestamp", COSE),
];

#[test]
fn real_countersignatures_verify_against_the_tsa_root() {
    for (name, mt) in ALL {
        let env = vector(name);
        let s = stores(&env, mt, globalsign());
        for vt in ["always", "afterCertExpiry"] {
            let v = run(
                &env,
                mt,
                &policy(&statement(vt, "strict")),
                &s,
                &vector_target(),
                now(),
            )
            .unwrap_or_else(|e| panic!("{name} {vt}: {e}"));
            let expired = name.contains("Expired");
            // afterCertExpiry looks at the timestamp only once a certificate has expired.
            assert_eq!(v.timestamp_used, vt == "always" || expired, "{name} {vt}");
            if v.timestamp_used {
                let t = v.timestamp.unwrap();
                assert_eq!(t.year(), 2024, "{name}: genTime {t}");
            }
            assert!(v.logged.is_empty(), "{name}: {:?}", v.logged);
        }
    }
}

#[test]
fn an_expired_signing_certificate_needs_a_verified_timestamp() {
    for (name, mt) in &ALL[2..] {
        let env = vector(name);
        // The tsa store holds a root that did not issue the TSA's certificate.
        let s = stores(&env, mt, pem_cert("selfmade/ca.crt"));
        let e = run(
            &env,
            mt,
            &policy(&statement("afterCertExpiry", "strict")),
            &s,
            &vector_target(),
            now(),
        )
        .unwrap_err();
        assert_eq!(e.check, Some(Check::AuthenticTimestamp), "{name}: {e}");
        assert!(
            e.message
                .contains("does not chain to the statement's tsa trust stores"),
            "{name}: {e}"
        );
        // permissive only logs authenticTimestamp: served, with the failure recorded.
        let v = run(
            &env,
            mt,
            &policy(&statement("afterCertExpiry", "permissive")),
            &s,
            &vector_target(),
            now(),
        )
        .unwrap();
        assert!(!v.timestamp_used);
        assert!(
            v.logged
                .iter()
                .any(|(c, m)| *c == Check::AuthenticTimestamp && m.contains("does not chain")),
            "{name}: {:?}",
            v.logged
        );
    }
}

/// The JWS header is unsigned: a countersignature can be moved to another envelope. Its
/// messageImprint then names another signature.
#[test]
fn a_countersignature_of_another_signature_is_refused() {
    let donor: serde_json::Value = serde_json::from_slice(&vector("jwsWithTimestamp")).unwrap();
    let mut env: serde_json::Value =
        serde_json::from_slice(&vector("jwsExpiredWithTimestamp")).unwrap();
    env["header"]["io.cncf.notary.timestampSignature"] =
        donor["header"]["io.cncf.notary.timestampSignature"].clone();
    let env = serde_json::to_vec(&env).unwrap();
    let e = run(
        &env,
        JWS,
        &policy(&statement("always", "strict")),
        &stores(&env, JWS, globalsign()),
        &vector_target(),
        now(),
    )
    .unwrap_err();
    assert_eq!(e.check, Some(Check::AuthenticTimestamp), "{e}");
    assert!(e.message.contains("messageImprint"), "{e}");
}

fn with_token(token: &[u8]) -> Vec<u8> {
    let mut env: serde_json::Value = serde_json::from_slice(&vector("jwsWithTimestamp")).unwrap();
    env["header"]["io.cncf.notary.timestampSignature"] = STANDARD.encode(token).into();
    serde_json::to_vec(&env).unwrap()
}

fn token() -> Vec<u8> {
    let env: serde_json::Value = serde_json::from_slice(&vector("jwsWithTimestamp")).unwrap();
    STANDARD
        .decode(
            env["header"]["io.cncf.notary.timestampSignature"]
                .as_str()
                .unwrap(),
        )
        .unwrap()
}

fn judge(token: &[u8]) -> Result<trustgate::notation::verify::Verified, String> {
    let env = with_token(token);
    run(
        &env,
        JWS,
        &policy(&statement("always", "strict")),
        &stores(&env, JWS, globalsign()),
        &vector_target(),
        now(),
    )
    .map_err(|e| {
        assert_eq!(e.check, Some(Check::AuthenticTimestamp), "{e}");
        e.message
    })
}

#[test]
fn tampered_tokens_are_refused_and_never_panic() {
    let good = token();
    judge(&good).unwrap();
    // The TSA's signature (the token's last bytes: the SignerInfo's signature value).
    let mut b = good.clone();
    let n = b.len();
    b[n - 1] ^= 1;
    let e = judge(&b).unwrap_err();
    assert!(e.contains("does not verify with the key of"), "{e}");
    // genTime, inside the signed TSTInfo: "2024…Z" as GeneralizedTime.
    let at = good
        .windows(4)
        .position(|w| w == b"2024")
        .expect("genTime in the token");
    let mut b = good.clone();
    b[at + 3] = b'5';
    let e = judge(&b).unwrap_err();
    assert!(e.contains("messageDigest"), "{e}");
    // Truncated, empty, not CMS.
    for bad in [&good[..good.len() / 2], &[][..], &b"not a token"[..]] {
        let e = judge(bad).unwrap_err();
        assert!(e.contains("not a DER CMS ContentInfo"), "{e}");
    }
    // Every single-bit flip over the first part of the token: an error or (where the flip
    // hits something unsigned and unused) a pass, never a panic.
    for i in (0..good.len()).step_by(5) {
        let mut b = good.clone();
        b[i] ^= 0x10;
        let r = std::panic::catch_unwind(|| judge(&b));
        assert!(r.is_ok(), "panicked with byte {i} flipped");
    }
}
