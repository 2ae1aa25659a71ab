//! RFC 3161 countersignatures this test makes itself: a P-256 TSA (rcgen) under a test TSA
//! root, TSTInfo and CMS SignedData built with the RustCrypto types and signed with ring, so
//! each rule of the timestamp check can be broken on its own: the timestamp inside every
//! certificate's validity, signingCertificateV2, the TSA's extended key usage, the TSA chain
//! at genTime.
mod notation_common;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use der::asn1::{GeneralizedTime, Int, ObjectIdentifier as Oid, OctetString, SetOfVec};
use der::{Any, Decode, Encode};
use notation_common::*;
use rcgen::{CertificateParams, CustomExtension, IsCa, KeyPair, KeyUsagePurpose};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use sha2::Digest as _;
use time::{Duration, OffsetDateTime};
use trustgate::notation::policy::{StoreRef, StoreType};
use trustgate::notation::{envelope, Check};
use x509_cert::attr::Attribute;
use x509_cert::spki::AlgorithmIdentifierOwned;

const SHA256: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.1");
const ECDSA_SHA256: Oid = Oid::new_unwrap("1.2.840.10045.4.3.2");
const ID_CT_TST_INFO: Oid = Oid::new_unwrap("1.2.840.113549.1.9.16.1.4");

#[derive(der::Sequence)]
struct EssCertIdV2 {
    cert_hash: OctetString,
}

#[derive(der::Sequence)]
struct SigningCertificateV2 {
    certs: Vec<EssCertIdV2>,
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn sha256(b: &[u8]) -> Vec<u8> {
    sha2::Sha256::digest(b).to_vec()
}

fn alg(oid: Oid) -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid,
        parameters: None,
    }
}

struct Tsa {
    cert: Vec<u8>,
    key: EcdsaKeyPair,
}

/// How to make the TSA certificate; `Default` is a valid one.
struct TsaSpec {
    /// The EKU extension's content (DER) and criticality; `None`: no EKU.
    eku: Option<(Vec<u8>, bool)>,
    not_before: OffsetDateTime,
}

/// SEQUENCE { id-kp-timeStamping }
const EKU_TIMESTAMPING: &[u8] = &[
    0x30, 0x0a, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x08,
];
/// SEQUENCE { id-kp-timeStamping, id-kp-codeSigning }
const EKU_TIMESTAMPING_AND_CODESIGNING: &[u8] = &[
    0x30, 0x14, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x08, 0x06, 0x08, 0x2b, 0x06,
    0x01, 0x05, 0x05, 0x07, 0x03, 0x03,
];

impl Default for TsaSpec {
    fn default() -> Self {
        TsaSpec {
            eku: Some((EKU_TIMESTAMPING.to_vec(), true)),
            not_before: now() - Duration::days(30),
        }
    }
}

fn tsa(root: &Ca, spec: TsaSpec) -> Tsa {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = CertificateParams::new(Vec::new()).unwrap();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "trustgate test TSA");
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if let Some((content, critical)) = spec.eku {
        let mut ext = CustomExtension::from_oid_content(&[2, 5, 29, 37], content);
        ext.set_criticality(critical);
        p.custom_extensions.push(ext);
    }
    p.not_before = spec.not_before;
    p.not_after = now() + Duration::days(3650);
    let cert = p.signed_by(&key, &root.cert, &root.key).unwrap();
    let key = EcdsaKeyPair::from_pkcs8(
        &ECDSA_P256_SHA256_ASN1_SIGNING,
        &key.serialize_der(),
        &SystemRandom::new(),
    )
    .unwrap();
    Tsa {
        cert: cert.der().to_vec(),
        key,
    }
}

/// What to put in the token; `Default` follows RFC 3161 and RFC 5816.
struct TokenSpec {
    gen_time: OffsetDateTime,
    signing_certificate_v2: bool,
    /// certHash of another certificate.
    wrong_cert_hash: bool,
}

impl Default for TokenSpec {
    fn default() -> Self {
        TokenSpec {
            gen_time: now() - Duration::minutes(1),
            signing_certificate_v2: true,
            wrong_cert_hash: false,
        }
    }
}

fn attr(oid: &str, value: Any) -> Attribute {
    Attribute {
        oid: Oid::new_unwrap(oid),
        values: SetOfVec::try_from(vec![value]).unwrap(),
    }
}

/// An RFC 3161 TimeStampToken by `tsa` over `signature`.
fn token(tsa: &Tsa, signature: &[u8], spec: &TokenSpec) -> Vec<u8> {
    let gen = GeneralizedTime::from_unix_duration(std::time::Duration::from_secs(
        spec.gen_time.unix_timestamp() as u64,
    ))
    .unwrap();
    let tst = x509_tsp::TstInfo {
        version: x509_tsp::TspVersion::V1,
        policy: Oid::new_unwrap("1.3.6.1.4.1.99999.1"),
        message_imprint: x509_tsp::MessageImprint {
            hash_algorithm: x509_cert::spki::AlgorithmIdentifier {
                oid: SHA256,
                parameters: None,
            },
            hashed_message: OctetString::new(sha256(signature)).unwrap(),
        },
        serial_number: Int::new(&[0x01, 0x02]).unwrap(),
        gen_time: gen,
        accuracy: None,
        ordering: false,
        nonce: None,
        tsa: None,
        extensions: None,
    }
    .to_der()
    .unwrap();
    let tsa_cert = x509_cert::Certificate::from_der(&tsa.cert).unwrap();
    let mut attrs = vec![
        attr(
            "1.2.840.113549.1.9.3",
            Any::encode_from(&ID_CT_TST_INFO).unwrap(),
        ),
        attr(
            "1.2.840.113549.1.9.4",
            Any::encode_from(&OctetString::new(sha256(&tst)).unwrap()).unwrap(),
        ),
    ];
    if spec.signing_certificate_v2 {
        let hashed = if spec.wrong_cert_hash {
            b"another certificate".to_vec()
        } else {
            tsa.cert.clone()
        };
        let v2 = SigningCertificateV2 {
            certs: vec![EssCertIdV2 {
                cert_hash: OctetString::new(sha256(&hashed)).unwrap(),
            }],
        };
        attrs.push(attr(
            "1.2.840.113549.1.9.16.2.47",
            Any::encode_from(&v2).unwrap(),
        ));
    }
    let signed_attrs = SetOfVec::try_from(attrs).unwrap();
    let sig = tsa
        .key
        .sign(&SystemRandom::new(), &signed_attrs.to_der().unwrap())
        .unwrap();
    let si = SignerInfo {
        version: CmsVersion::V1,
        sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: tsa_cert.tbs_certificate.issuer.clone(),
            serial_number: tsa_cert.tbs_certificate.serial_number.clone(),
        }),
        digest_alg: alg(SHA256),
        signed_attrs: Some(signed_attrs),
        signature_algorithm: alg(ECDSA_SHA256),
        signature: OctetString::new(sig.as_ref()).unwrap(),
        unsigned_attrs: None,
    };
    let sd = SignedData {
        version: CmsVersion::V3,
        digest_algorithms: SetOfVec::try_from(vec![alg(SHA256)]).unwrap(),
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: ID_CT_TST_INFO,
            econtent: Some(Any::encode_from(&OctetString::new(tst).unwrap()).unwrap()),
        },
        certificates: Some(CertificateSet(
            SetOfVec::try_from(vec![CertificateChoices::Certificate(tsa_cert)]).unwrap(),
        )),
        crls: None,
        signer_infos: SignerInfos(SetOfVec::try_from(vec![si]).unwrap()),
    };
    ContentInfo {
        content_type: Oid::new_unwrap("1.2.840.113549.1.7.2"),
        content: Any::encode_from(&sd).unwrap(),
    }
    .to_der()
    .unwrap()
}

struct Case {
    root: Ca,
    tsa_root: Ca,
    signer: Signer,
}

fn case(leaf_spec: LeafSpec) -> Case {
    let root = ca("Code Signing Root");
    let signer = leaf(&root, leaf_spec);
    Case {
        root,
        tsa_root: ca("TSA Root"),
        signer,
    }
}

/// Signs the test target with a JWS countersigned by `tsa`, and verifies it.
fn verify(
    c: &Case,
    tsa: &Tsa,
    spec: &TokenSpec,
    verify_timestamp: &str,
) -> Result<trustgate::notation::verify::Verified, trustgate::notation::verify::Refusal> {
    let env = jws(&c.signer, &payload_for(&target()), &Headers::default());
    let info = envelope::parse(JWS, &env).unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(&env).unwrap();
    v["header"]["io.cncf.notary.timestampSignature"] =
        STANDARD.encode(token(tsa, &info.signature, spec)).into();
    let env = serde_json::to_vec(&v).unwrap();
    let mut s = ca_store(vec![c.root.cert.der().to_vec()]);
    s.insert(
        StoreRef {
            kind: StoreType::Tsa,
            name: "tsa".into(),
        },
        vec![c.tsa_root.cert.der().to_vec()],
    );
    let p = policy(&format!(
        r#""signatureVerification":{{"level":"strict","verifyTimestamp":"{verify_timestamp}","override":{{"revocation":"skip"}}}},"trustStores":["ca:test","tsa:tsa"],"trustedIdentities":["*"]"#
    ));
    run(&env, JWS, &p, &s, &target(), now())
}

fn refused(
    r: Result<trustgate::notation::verify::Verified, trustgate::notation::verify::Refusal>,
) -> String {
    let e = r.expect_err("must be refused");
    assert_eq!(e.check, Some(Check::AuthenticTimestamp), "{e}");
    e.message
}

#[test]
fn a_selfmade_countersignature_verifies() {
    let c = case(LeafSpec::default());
    let t = tsa(&c.tsa_root, TsaSpec::default());
    let spec = TokenSpec::default();
    let v = verify(&c, &t, &spec, "always").unwrap();
    assert!(v.timestamp_used);
    assert_eq!(
        v.timestamp.unwrap().unix_timestamp(),
        spec.gen_time.unix_timestamp()
    );
}

#[test]
fn the_timestamp_must_lie_within_every_certificates_validity() {
    // The leaf became valid yesterday; a timestamp from two days ago is before it.
    let c = case(LeafSpec::default());
    let t = tsa(&c.tsa_root, TsaSpec::default());
    let e = refused(verify(
        &c,
        &t,
        &TokenSpec {
            gen_time: now() - Duration::days(2),
            ..TokenSpec::default()
        },
        "always",
    ));
    assert!(e.contains("is outside the validity of certificate"), "{e}");
    // An expired leaf: a timestamp from while it was valid rescues it under afterCertExpiry,
    // one from after it expired does not.
    let c = case(LeafSpec {
        not_before: now() - Duration::days(10),
        not_after: now() - Duration::days(1),
        ..LeafSpec::default()
    });
    let t = tsa(&c.tsa_root, TsaSpec::default());
    let during = TokenSpec {
        gen_time: now() - Duration::days(5),
        ..TokenSpec::default()
    };
    // The envelope's own signingTime must also be within the leaf's validity.
    let v = verify_signed_at(&c, &t, &during, now() - Duration::days(5)).unwrap();
    assert!(v.timestamp_used);
    let after = TokenSpec {
        gen_time: now() - Duration::hours(1),
        ..TokenSpec::default()
    };
    let e = refused(verify_signed_at(&c, &t, &after, now() - Duration::days(5)));
    assert!(e.contains("is outside the validity of certificate"), "{e}");
}

/// [`verify`] with a chosen signingTime, under afterCertExpiry.
fn verify_signed_at(
    c: &Case,
    tsa: &Tsa,
    spec: &TokenSpec,
    signing_time: OffsetDateTime,
) -> Result<trustgate::notation::verify::Verified, trustgate::notation::verify::Refusal> {
    let h = Headers {
        signing_time,
        ..Headers::default()
    };
    let env = jws(&c.signer, &payload_for(&target()), &h);
    let info = envelope::parse(JWS, &env).unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(&env).unwrap();
    v["header"]["io.cncf.notary.timestampSignature"] =
        STANDARD.encode(token(tsa, &info.signature, spec)).into();
    let env = serde_json::to_vec(&v).unwrap();
    let mut s = ca_store(vec![c.root.cert.der().to_vec()]);
    s.insert(
        StoreRef {
            kind: StoreType::Tsa,
            name: "tsa".into(),
        },
        vec![c.tsa_root.cert.der().to_vec()],
    );
    let p = policy(
        r#""signatureVerification":{"level":"strict","verifyTimestamp":"afterCertExpiry","override":{"revocation":"skip"}},"trustStores":["ca:test","tsa:tsa"],"trustedIdentities":["*"]"#,
    );
    run(&env, JWS, &p, &s, &target(), now())
}

#[test]
fn signing_certificate_v2_must_name_the_tsa_certificate() {
    let c = case(LeafSpec::default());
    let t = tsa(&c.tsa_root, TsaSpec::default());
    let e = refused(verify(
        &c,
        &t,
        &TokenSpec {
            signing_certificate_v2: false,
            ..TokenSpec::default()
        },
        "always",
    ));
    assert!(e.contains("signingCertificateV2 is missing"), "{e}");
    let e = refused(verify(
        &c,
        &t,
        &TokenSpec {
            wrong_cert_hash: true,
            ..TokenSpec::default()
        },
        "always",
    ));
    assert!(
        e.contains("signingCertificateV2 does not name the certificate"),
        "{e}"
    );
}

#[test]
fn the_tsa_certificate_must_be_for_timestamping_only_and_valid_at_gen_time() {
    let c = case(LeafSpec::default());
    for (eku, needle) in [
        (
            Some((EKU_TIMESTAMPING.to_vec(), false)),
            "must be critical and timeStamping only",
        ),
        (
            Some((EKU_TIMESTAMPING_AND_CODESIGNING.to_vec(), true)),
            "must be critical and timeStamping only",
        ),
        (None, "has no extended key usage"),
    ] {
        let t = tsa(
            &c.tsa_root,
            TsaSpec {
                eku,
                ..TsaSpec::default()
            },
        );
        let e = refused(verify(&c, &t, &TokenSpec::default(), "always"));
        assert!(e.contains(needle), "{needle}: {e}");
    }
    // A TSA certificate issued after the time it claims to have stamped.
    let t = tsa(
        &c.tsa_root,
        TsaSpec {
            not_before: now() - Duration::minutes(10),
            ..TsaSpec::default()
        },
    );
    let e = refused(verify(
        &c,
        &t,
        &TokenSpec {
            gen_time: now() - Duration::hours(1),
            ..TokenSpec::default()
        },
        "always",
    ));
    assert!(
        e.contains("does not chain to the statement's tsa trust stores at genTime"),
        "{e}"
    );
    // A TSA under a root the tsa store does not hold.
    let other = ca("Other TSA Root");
    let t = tsa(&other, TsaSpec::default());
    let e = refused(verify(&c, &t, &TokenSpec::default(), "always"));
    assert!(e.contains("does not chain"), "{e}");
}
