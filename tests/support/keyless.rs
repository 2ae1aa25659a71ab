//! Self-made keyless material, as Fulcio and Rekor make it: a test Fulcio CA, short-lived leaf
//! certificates with the Fulcio extensions (SAN identity, OIDC issuer 1.3.6.1.4.1.57264.1.8 as
//! a DER UTF8String, GitHub workflow repository .1.5), a test Rekor ECDSA key that signs SETs
//! over `{body, integratedTime, logID, logIndex}` (canonical JSON), the `.sig` layer
//! annotations cosign ≤ 2 writes, and the `trusted_root.json` naming them.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_ASN1_SIGNING};
use time::OffsetDateTime;

/// 2024-01-01T00:00:00Z: when the test certificates are issued (they live ten minutes).
pub const ISSUED: i64 = 1_704_067_200;

fn ecdsa(pkcs8: &[u8]) -> EcdsaKeyPair {
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8, &SystemRandom::new()).unwrap()
}

fn spki(public: &[u8]) -> Vec<u8> {
    let mut der = hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap();
    der.extend_from_slice(public);
    der
}

/// DER UTF8String (Fulcio's v2 issuer extension content).
fn utf8_string(s: &str) -> Vec<u8> {
    assert!(s.len() < 128);
    let mut v = vec![0x0c, s.len() as u8];
    v.extend_from_slice(s.as_bytes());
    v
}

pub struct Fulcio {
    cert: rcgen::Certificate,
    key: KeyPair,
}

pub struct Leaf {
    pub pem: String,
    key: EcdsaKeyPair,
}

impl Leaf {
    pub fn sign(&self, payload: &[u8]) -> String {
        STANDARD.encode(self.key.sign(&SystemRandom::new(), payload).unwrap())
    }
}

impl Fulcio {
    pub fn new() -> Fulcio {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "trustgate-test");
        dn.push(DnType::CommonName, "trustgate test fulcio");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = OffsetDateTime::from_unix_timestamp(ISSUED - 86400 * 365).unwrap();
        params.not_after = OffsetDateTime::from_unix_timestamp(ISSUED + 86400 * 365 * 10).unwrap();
        let cert = params.self_signed(&key).unwrap();
        Fulcio { cert, key }
    }

    pub fn der(&self) -> Vec<u8> {
        self.cert.der().to_vec()
    }

    /// A leaf for `identity` (email, or URI when it has "://") from `issuer`, valid for ten
    /// minutes from [`ISSUED`], optionally with a GitHub workflow repository claim.
    pub fn leaf(&self, identity: &str, issuer: &str, repository: Option<&str>) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = vec![if identity.contains("://") {
            SanType::URI(identity.try_into().unwrap())
        } else {
            SanType::Rfc822Name(identity.try_into().unwrap())
        }];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
        params.not_before = OffsetDateTime::from_unix_timestamp(ISSUED).unwrap();
        params.not_after = OffsetDateTime::from_unix_timestamp(ISSUED + 600).unwrap();
        params.custom_extensions = vec![CustomExtension::from_oid_content(
            &[1, 3, 6, 1, 4, 1, 57264, 1, 8],
            utf8_string(issuer),
        )];
        if let Some(r) = repository {
            // .1.5 (deprecated GitHub claims) is the raw string, not DER-wrapped.
            params
                .custom_extensions
                .push(CustomExtension::from_oid_content(
                    &[1, 3, 6, 1, 4, 1, 57264, 1, 5],
                    r.as_bytes().to_vec(),
                ));
        }
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf {
            pem: cert.pem(),
            key: ecdsa(&key.serialize_der()),
        }
    }
}

pub struct Rekor {
    key: EcdsaKeyPair,
}

impl Rekor {
    pub fn new() -> Rekor {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &SystemRandom::new())
                .unwrap();
        Rekor {
            key: ecdsa(pkcs8.as_ref()),
        }
    }

    pub fn spki(&self) -> Vec<u8> {
        spki(self.key.public_key().as_ref())
    }

    /// RFC 6962 / Rekor log ID: SHA-256 of the DER public key.
    pub fn log_id(&self) -> String {
        hex::encode(ring::digest::digest(&ring::digest::SHA256, &self.spki()))
    }

    /// The `dev.sigstore.cosign/bundle` annotation for a hashedrekord entry of
    /// (`payload`, `signature`, `cert_pem`), integrated at `time`.
    pub fn entry(&self, payload: &[u8], signature: &str, cert_pem: &str, time: i64) -> String {
        let hash = hex::encode(ring::digest::digest(&ring::digest::SHA256, payload));
        let body = serde_json::json!({
            "apiVersion": "0.0.1",
            "kind": "hashedrekord",
            "spec": {
                "data": {"hash": {"algorithm": "sha256", "value": hash}},
                "signature": {"content": signature, "publicKey": {"content": STANDARD.encode(cert_pem)}},
            },
        });
        self.entry_of(&body, time)
    }

    /// The Rekor bundle (SET and entry) of any entry `body`, integrated at `time`.
    pub fn entry_of(&self, body: &serde_json::Value, time: i64) -> String {
        let body = STANDARD.encode(serde_json::to_vec(body).unwrap());
        let log_index = 42;
        // Canonical JSON (RFC 8785): keys sorted, no whitespace.
        let signed = format!(
            r#"{{"body":"{body}","integratedTime":{time},"logID":"{}","logIndex":{log_index}}}"#,
            self.log_id()
        );
        let set = STANDARD.encode(
            self.key
                .sign(&SystemRandom::new(), signed.as_bytes())
                .unwrap(),
        );
        serde_json::json!({
            "SignedEntryTimestamp": set,
            "Payload": {"body": body, "integratedTime": time, "logIndex": log_index, "logID": self.log_id()},
        })
        .to_string()
    }
}

/// A `trusted_root.json` with `fulcio` as the one CA and `rekor` as the one log.
pub fn trusted_root(fulcio: &Fulcio, rekor: &Rekor) -> String {
    let key_id = STANDARD.encode(hex::decode(rekor.log_id()).unwrap());
    serde_json::json!({
        "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
        "tlogs": [{
            "baseUrl": "https://rekor.test",
            "hashAlgorithm": "SHA2_256",
            "publicKey": {
                "rawBytes": STANDARD.encode(rekor.spki()),
                "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                "validFor": {"start": "2020-01-01T00:00:00Z"},
            },
            "logId": {"keyId": key_id},
        }],
        "certificateAuthorities": [{
            "subject": {"organization": "trustgate-test", "commonName": "trustgate test fulcio"},
            "uri": "https://fulcio.test",
            "certChain": {"certificates": [{"rawBytes": STANDARD.encode(fulcio.der())}]},
            "validFor": {"start": "2020-01-01T00:00:00Z"},
        }],
        "ctlogs": [],
        "timestampAuthorities": [],
    })
    .to_string()
}

/// A `.sig` manifest with one keyless simple-signing layer per (payload, annotations).
pub fn keyless_sig_manifest(layers: &[(&[u8], serde_json::Value)]) -> Vec<u8> {
    let layers: Vec<serde_json::Value> = layers
        .iter()
        .map(|(p, annotations)| {
            serde_json::json!({
                "mediaType": super::cosign::SIMPLE_SIGNING,
                "size": p.len(),
                "digest": super::cosign::sha256(p),
                "annotations": annotations,
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 2,
                   "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},
        "layers": layers,
    }))
    .unwrap()
}

/// What cosign ≤ 2 annotates a keyless layer with.
pub fn annotations(
    signature: &str,
    cert_pem: &str,
    rekor_bundle: Option<&str>,
) -> serde_json::Value {
    let mut a = serde_json::json!({
        "dev.cosignproject.cosign/signature": signature,
        "dev.sigstore.cosign/certificate": cert_pem,
        "dev.sigstore.cosign/chain": "",
    });
    if let Some(b) = rekor_bundle {
        a["dev.sigstore.cosign/bundle"] = b.into();
    }
    a
}

/// DSSE protocol.md PAE.
fn pae(t: &str, body: &[u8]) -> Vec<u8> {
    let mut v = format!("DSSEv1 {} {} {} ", t.len(), t, body.len()).into_bytes();
    v.extend_from_slice(body);
    v
}

/// A keyless DSSE bundle over `statement`: signed by `leaf`, logged by `rekor` as a `dsse`
/// v0.0.1 entry at `time` with an inclusion promise (SET). Bundle v0.1, the version whose
/// rules admit a promise without an inclusion proof.
pub fn keyless_bundle(leaf: &Leaf, rekor: &Rekor, statement: &[u8], time: i64) -> Vec<u8> {
    let payload_type = super::cosign::INTOTO;
    let sig = leaf.sign(&pae(payload_type, statement));
    let body = serde_json::json!({
        "apiVersion": "0.0.1",
        "kind": "dsse",
        "spec": {
            "envelopeHash": {"algorithm": "sha256", "value": "00".repeat(32)},
            "payloadHash": {"algorithm": "sha256",
                "value": hex::encode(ring::digest::digest(&ring::digest::SHA256, statement))},
            "signatures": [{"signature": sig, "verifier": STANDARD.encode(&leaf.pem)}],
        },
    });
    let entry: serde_json::Value = serde_json::from_str(&rekor.entry_of(&body, time)).unwrap();
    let der = x509_parser::pem::parse_x509_pem(leaf.pem.as_bytes())
        .unwrap()
        .1
        .contents;
    serde_json::to_vec(&serde_json::json!({
        "mediaType": "application/vnd.dev.sigstore.bundle+json;version=0.1",
        "verificationMaterial": {
            "x509CertificateChain": {"certificates": [{"rawBytes": STANDARD.encode(der)}]},
            "tlogEntries": [{
                "logIndex": entry["Payload"]["logIndex"].to_string(),
                "logId": {"keyId": STANDARD.encode(hex::decode(rekor.log_id()).unwrap())},
                "kindVersion": {"kind": "dsse", "version": "0.0.1"},
                "integratedTime": entry["Payload"]["integratedTime"].to_string(),
                "inclusionPromise": {"signedEntryTimestamp": entry["SignedEntryTimestamp"]},
                "canonicalizedBody": entry["Payload"]["body"],
            }],
        },
        "dsseEnvelope": {
            "payload": STANDARD.encode(statement),
            "payloadType": payload_type,
            "signatures": [{"sig": sig, "keyid": ""}],
        },
    }))
    .unwrap()
}
