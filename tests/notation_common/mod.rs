//! Shared by the tests/notation_*.rs suites: keys the tests hold, certificates made with
//! rcgen (or the vendored openssl ones for RSA and P-521, which rcgen cannot generate with
//! ring), and JWS / COSE Notation envelopes signed with them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use coset::cbor::value::Value;
use coset::{iana, CoseSign1Builder, HeaderBuilder, Label, TaggedCborSerializable};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, RsaKeyPair};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};
use trustgate::notation::policy::{self, StoreRef, StoreType, TrustPolicy};
use trustgate::notation::truststore::{read_certificates, TrustStore};
use trustgate::notation::verify::{verify_signature, Refusal, Request, Verified};
use trustgate::notation::TargetDescriptor;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/notation")
}

pub fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

pub fn pem_cert(rel: &str) -> Vec<u8> {
    read_certificates(&fixture(rel)).unwrap().remove(0)
}

pub enum Key {
    Rsa(RsaKeyPair, &'static dyn ring::signature::RsaEncoding),
    Ec(EcdsaKeyPair),
    P521(p521::ecdsa::SigningKey),
}

pub struct Signer {
    pub key: Key,
    pub jws_alg: &'static str,
    pub cose_alg: iana::Algorithm,
    /// Leaf first, root last.
    pub chain: Vec<Vec<u8>>,
}

impl Signer {
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.key {
            Key::Rsa(k, enc) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(*enc, &rng, msg, &mut sig).unwrap();
                sig
            }
            Key::Ec(k) => k.sign(&rng, msg).unwrap().as_ref().to_vec(),
            Key::P521(k) => {
                use p521::ecdsa::signature::Signer as _;
                let sig: p521::ecdsa::Signature = k.sign(msg);
                sig.to_bytes().to_vec()
            }
        }
    }

    pub fn leaf_thumbprint(&self) -> String {
        trustgate::notation::truststore::thumbprint(&self.chain[0])
    }
}

/// The vendored openssl-made leaves (RSA 2048/3072/4096, P-521) under the vendored P-256 CA.
pub fn vendored_signer(name: &str) -> Signer {
    let chain = vec![
        pem_cert(&format!("selfmade/{name}.crt")),
        pem_cert("selfmade/ca.crt"),
    ];
    let (key, jws_alg, cose_alg) = match name {
        "p521" => {
            let hex_scalar = String::from_utf8(fixture("selfmade/p521.scalar.hex")).unwrap();
            let k = p521::ecdsa::SigningKey::from_slice(&hex::decode(hex_scalar.trim()).unwrap())
                .unwrap();
            (Key::P521(k), "ES512", iana::Algorithm::ES512)
        }
        rsa => {
            let pk8 = fixture(&format!("selfmade/{rsa}.pk8"));
            let k = RsaKeyPair::from_pkcs8(&pk8).unwrap();
            let (enc, jws, cose): (&'static dyn ring::signature::RsaEncoding, _, _) = match rsa {
                "rsa2048" => (
                    &ring::signature::RSA_PSS_SHA256,
                    "PS256",
                    iana::Algorithm::PS256,
                ),
                "rsa3072" => (
                    &ring::signature::RSA_PSS_SHA384,
                    "PS384",
                    iana::Algorithm::PS384,
                ),
                "rsa4096" => (
                    &ring::signature::RSA_PSS_SHA512,
                    "PS512",
                    iana::Algorithm::PS512,
                ),
                other => panic!("no vendored key {other}"),
            };
            (Key::Rsa(k, enc), jws, cose)
        }
    };
    Signer {
        key,
        jws_alg,
        cose_alg,
        chain,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
}

pub struct Ca {
    pub cert: rcgen::Certificate,
    pub key: KeyPair,
}

fn dn(cn: &str, org: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "US");
    dn.push(DnType::StateOrProvinceName, "WA");
    dn.push(DnType::LocalityName, "Seattle");
    dn.push(DnType::OrganizationName, org);
    dn.push(DnType::CommonName, cn);
    dn
}

pub fn ca(cn: &str) -> Ca {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(cn, "trustgate-test");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = OffsetDateTime::now_utc() - Duration::days(30);
    p.not_after = OffsetDateTime::now_utc() + Duration::days(3650);
    Ca {
        cert: p.self_signed(&key).unwrap(),
        key,
    }
}

/// An intermediate CA under `parent`.
pub fn intermediate(parent: &Ca, cn: &str) -> Ca {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(cn, "trustgate-test");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = OffsetDateTime::now_utc() - Duration::days(30);
    p.not_after = OffsetDateTime::now_utc() + Duration::days(3650);
    p.serial_number = Some(rcgen::SerialNumber::from(rand_serial()));
    Ca {
        cert: p.signed_by(&key, &parent.cert, &parent.key).unwrap(),
        key,
    }
}

fn rand_serial() -> u64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    SystemRandom::new().fill(&mut b).unwrap();
    u64::from_be_bytes(b) >> 2 | 1
}

/// The serial number of a DER certificate, as rcgen takes it for a CRL entry.
pub fn serial_of(der: &[u8]) -> rcgen::SerialNumber {
    use x509_parser::prelude::FromDer;
    let (_, c) = x509_parser::certificate::X509Certificate::from_der(der).unwrap();
    rcgen::SerialNumber::from_slice(c.raw_serial())
}

/// How to make a leaf; `Default` is a valid Notation code-signing leaf.
pub struct LeafSpec {
    pub curve: Curve,
    pub org: String,
    pub eku: Vec<ExtendedKeyUsagePurpose>,
    pub key_usages: Vec<KeyUsagePurpose>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl Default for LeafSpec {
    fn default() -> Self {
        LeafSpec {
            curve: Curve::P256,
            org: "trustgate-test".into(),
            eku: vec![ExtendedKeyUsagePurpose::CodeSigning],
            key_usages: vec![KeyUsagePurpose::DigitalSignature],
            not_before: OffsetDateTime::now_utc() - Duration::days(1),
            not_after: OffsetDateTime::now_utc() + Duration::days(365),
        }
    }
}

pub fn leaf(ca: &Ca, spec: LeafSpec) -> Signer {
    let (alg, ring_alg, jws_alg, cose_alg) = match spec.curve {
        Curve::P256 => (
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            "ES256",
            iana::Algorithm::ES256,
        ),
        Curve::P384 => (
            &rcgen::PKCS_ECDSA_P384_SHA384,
            &ring::signature::ECDSA_P384_SHA384_FIXED_SIGNING,
            "ES384",
            iana::Algorithm::ES384,
        ),
    };
    let key = KeyPair::generate_for(alg).unwrap();
    let mut p = CertificateParams::default();
    p.distinguished_name = dn("signer", &spec.org);
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = spec.key_usages;
    p.extended_key_usages = spec.eku;
    p.not_before = spec.not_before;
    p.not_after = spec.not_after;
    let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
    let ec =
        EcdsaKeyPair::from_pkcs8(ring_alg, &key.serialize_der(), &SystemRandom::new()).unwrap();
    Signer {
        key: Key::Ec(ec),
        jws_alg,
        cose_alg,
        chain: vec![cert.der().to_vec(), ca.cert.der().to_vec()],
    }
}

pub fn target() -> TargetDescriptor {
    TargetDescriptor {
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        digest: format!("sha256:{}", "ab".repeat(32)),
        size: 1234,
    }
}

pub fn payload_for(t: &TargetDescriptor) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "targetArtifact": {"mediaType": t.media_type, "digest": t.digest, "size": t.size}
    }))
    .unwrap()
}

/// What goes into the protected header, beyond alg.
#[derive(Clone)]
pub struct Headers {
    pub scheme: &'static str,
    pub signing_time: OffsetDateTime,
    pub expiry: Option<OffsetDateTime>,
    /// Extra protected headers (name, JSON string value), and whether each is critical.
    pub extra: Vec<(String, String, bool)>,
}

impl Default for Headers {
    fn default() -> Self {
        Headers {
            scheme: "notary.x509",
            signing_time: OffsetDateTime::now_utc() - Duration::minutes(5),
            expiry: None,
            extra: Vec::new(),
        }
    }
}

pub fn jws(s: &Signer, payload: &[u8], h: &Headers) -> Vec<u8> {
    let time_key = if h.scheme == "notary.x509" {
        "io.cncf.notary.signingTime"
    } else {
        "io.cncf.notary.authenticSigningTime"
    };
    let mut crit = vec!["io.cncf.notary.signingScheme".to_string()];
    if h.scheme != "notary.x509" {
        crit.push(time_key.into());
    }
    let mut prot = serde_json::json!({
        "alg": s.jws_alg,
        "cty": "application/vnd.cncf.notary.payload.v1+json",
        "io.cncf.notary.signingScheme": h.scheme,
        time_key: h.signing_time.format(&Rfc3339).unwrap(),
    });
    if let Some(e) = h.expiry {
        prot["io.cncf.notary.expiry"] = e.format(&Rfc3339).unwrap().into();
        crit.push("io.cncf.notary.expiry".into());
    }
    for (k, v, critical) in &h.extra {
        prot[k] = v.clone().into();
        if *critical {
            crit.push(k.clone());
        }
    }
    prot["crit"] = crit.into();
    let p64 = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&prot).unwrap());
    let pl64 = URL_SAFE_NO_PAD.encode(payload);
    let sig = s.sign(format!("{p64}.{pl64}").as_bytes());
    serde_json::to_vec(&serde_json::json!({
        "payload": pl64,
        "protected": p64,
        "header": {
            "x5c": s.chain.iter().map(|c| STANDARD.encode(c)).collect::<Vec<_>>(),
            "io.cncf.notary.signingAgent": "trustgate-tests"
        },
        "signature": URL_SAFE_NO_PAD.encode(sig),
    }))
    .unwrap()
}

fn tag1(t: OffsetDateTime) -> Value {
    Value::Tag(1, Box::new(Value::Integer(t.unix_timestamp().into())))
}

pub fn cose(s: &Signer, payload: &[u8], h: &Headers) -> Vec<u8> {
    let time_key = if h.scheme == "notary.x509" {
        "io.cncf.notary.signingTime"
    } else {
        "io.cncf.notary.authenticSigningTime"
    };
    let mut crit = vec!["io.cncf.notary.signingScheme".to_string()];
    if h.scheme != "notary.x509" {
        crit.push(time_key.into());
    }
    let mut b = HeaderBuilder::new()
        .algorithm(s.cose_alg)
        .content_type("application/vnd.cncf.notary.payload.v1+json".into())
        .text_value(
            "io.cncf.notary.signingScheme".into(),
            Value::Text(h.scheme.into()),
        )
        .text_value(time_key.into(), tag1(h.signing_time));
    if let Some(e) = h.expiry {
        b = b.text_value("io.cncf.notary.expiry".into(), tag1(e));
        crit.push("io.cncf.notary.expiry".into());
    }
    for (k, v, critical) in &h.extra {
        b = b.text_value(k.clone(), Value::Text(v.clone()));
        if *critical {
            crit.push(k.clone());
        }
    }
    for c in crit {
        b = b.add_critical_label(coset::RegisteredLabelWithPrivate::Text(c));
    }
    let mut unprotected = coset::Header::default();
    unprotected.rest.push((
        Label::Int(33),
        Value::Array(s.chain.iter().map(|c| Value::Bytes(c.clone())).collect()),
    ));
    let sign1 = CoseSign1Builder::new()
        .protected(b.build())
        .unprotected(unprotected)
        .payload(payload.to_vec())
        .create_signature(b"", |tbs| s.sign(tbs))
        .build();
    sign1.to_tagged_vec().unwrap()
}

pub const SCOPE: &str = "registry.example/team/app";

/// A policy over the given statement body (JSON object text without registryScopes).
pub fn policy(statement: &str) -> TrustPolicy {
    let doc = format!(
        r#"{{"version":"1.0","trustPolicies":[{{"name":"p","registryScopes":["{SCOPE}"],{statement}}}]}}"#
    );
    policy::parse("test-policy.json", doc.as_bytes()).unwrap()
}

pub const STRICT: &str = r#""signatureVerification":{"level":"strict","override":{"revocation":"skip"}},"trustStores":["ca:test"],"trustedIdentities":["*"]"#;

pub fn store(kind: StoreType, name: &str, certs: Vec<Vec<u8>>) -> TrustStore {
    let mut s = TrustStore::default();
    s.insert(
        StoreRef {
            kind,
            name: name.into(),
        },
        certs,
    );
    s
}

pub fn ca_store(certs: Vec<Vec<u8>>) -> TrustStore {
    store(StoreType::Ca, "test", certs)
}

pub fn run(
    envelope: &[u8],
    media_type: &str,
    p: &TrustPolicy,
    s: &TrustStore,
    t: &TargetDescriptor,
    now: OffsetDateTime,
) -> Result<Verified, Refusal> {
    run_with_crls(envelope, media_type, p, s, t, now, None)
}

pub fn run_with_crls(
    envelope: &[u8],
    media_type: &str,
    p: &TrustPolicy,
    s: &TrustStore,
    t: &TargetDescriptor,
    now: OffsetDateTime,
    crls: Option<&trustgate::notation::revocation::CrlSet>,
) -> Result<Verified, Refusal> {
    verify_signature(&Request {
        target: t,
        envelope,
        envelope_media_type: media_type,
        policy: p,
        store: s,
        scope: SCOPE,
        now,
        crls,
    })
}

/// A CRL by `issuer` listing `revoked` serials, valid from `this_update` to `next_update`.
pub fn crl(
    issuer: &Ca,
    revoked: &[rcgen::SerialNumber],
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
) -> Vec<u8> {
    let params = rcgen::CertificateRevocationListParams {
        this_update,
        next_update,
        crl_number: rcgen::SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|s| rcgen::RevokedCertParams {
                serial_number: s.clone(),
                revocation_time: this_update,
                reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    };
    params
        .signed_by(&issuer.cert, &issuer.key)
        .unwrap()
        .der()
        .to_vec()
}

pub const JWS: &str = "application/jose+json";
pub const COSE: &str = "application/cose";
