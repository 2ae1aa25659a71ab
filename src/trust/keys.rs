//! Public keys and signature checks (REAL-COMPONENTS "The metadata format" and "Methods";
//! `tuf/signed/verifiers.go`). All cryptography is ring's; all X.509 parsing is x509-parser's.
//!
//! Key types: `ecdsa` (base64 DER SubjectPublicKeyInfo, P-256 or P-384), `ecdsa-x509` /
//! `rsa-x509` (base64 of a PEM certificate, possibly followed by intermediates), `ed25519` (raw
//! 32 bytes), `rsa` (DER SubjectPublicKeyInfo, or a PEM `PUBLIC KEY` for PyCrypto signers).
//! Methods: `ecdsa` (raw r‖s over SHA-256, whatever the curve, as Go's `ECDSAVerifier`),
//! `eddsa`, `rsapss` (SHA-256, salt = 32), `rsapkcs1v15` (SHA-256), `pycrypto-pkcs#1 pss`
//! (`RSAPyCryptoVerifier`: RSASSA-PSS SHA-256, salt = 32, only for an `rsa` key whose public
//! part is PEM). RSA keys must be 2048 to 8192 bits (ring's bounds; Go has no upper bound,
//! a deliberate difference: no real signer makes larger keys). P-521 is refused (ring has no
//! P-521; Notary's own signers make P-256 only).

use base64::Engine as _;
use ring::signature::{self, UnparsedPublicKey};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::SubjectPublicKeyInfo;

use super::canonical;
use super::wire::TufKey;

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_RSA: &str = "1.2.840.113549.1.1.1";
/// Signature algorithms built on SHA-1, which Notary refuses in root certificates
/// (`trustpinning/certs.go`, `validRootLeafCerts`).
const SHA1_SIG_OIDS: &[&str] = &[
    "1.2.840.113549.1.1.5", // sha1WithRSAEncryption
    "1.2.840.10045.4.1",    // ecdsa-with-SHA1
    "1.2.840.10040.4.3",    // dsa-with-sha1
    "1.3.14.3.2.29",        // sha1WithRSASignature (OIW)
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyAlg {
    EcdsaP256,
    EcdsaP384,
    Ed25519,
    Rsa,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("unsupported key type {0:?}")]
    UnsupportedType(String),
    #[error("public key is not base64: {0}")]
    Base64(String),
    #[error("malformed key: {0}")]
    Malformed(String),
}

/// Facts about the certificate behind an `*-x509` key, for root-certificate checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub common_name: Option<String>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub sha1_signed: bool,
    /// Whether the certificate says it is a CA (basicConstraints cA = true).
    pub is_ca: bool,
    /// Bits of the RSA modulus; 0 for other key types.
    pub rsa_bits: usize,
    /// How many certificates of the PEM bundle are not CAs; `None` if one of them does not
    /// parse. Notary keeps a root key only if exactly one is, and it comes first
    /// (`trustpinning/certs.go` `parseAllCerts`). Signing keys of other roles use only the
    /// first certificate, so this does not make the key itself unusable.
    pub bundle_leaves: Option<usize>,
    /// DER of every certificate of the PEM bundle, in order: the leaf first, then whatever
    /// followed it (only the CA-flagged ones may serve as intermediates).
    pub chain_der: Vec<Vec<u8>>,
}

impl CertInfo {
    /// Facts about one DER certificate on its own (a bundle's intermediate, a pinned CA).
    pub fn from_der(der: &[u8]) -> Result<CertInfo, KeyError> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| KeyError::Malformed(format!("certificate: {e}")))?;
        let leaves = usize::from(!cert.is_ca());
        cert_info(&cert, vec![der.to_vec()], Some(leaves))
    }
}

/// A parsed, usable public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    keyid: String,
    keytype: String,
    alg: KeyAlg,
    /// The exact bytes ring verifies with (EC point, raw ed25519 key, RSAPublicKey DER). Two
    /// keyids with equal `(alg, material)` are one key for threshold counting.
    material: Vec<u8>,
    rsa_bits: usize,
    /// An `rsa` key whose public part is PEM rather than DER: Go's `rsapss`/`rsapkcs1v15`
    /// verifiers cannot read it (`x509.ParsePKIXPublicKey` of the raw bytes), its
    /// `pycrypto-pkcs#1 pss` verifier reads only that (`pem.Decode` first,
    /// verifiers.go:183-202).
    rsa_pem: bool,
    cert: Option<CertInfo>,
}

/// The TUF keyid: hex sha256 of the canonical JSON of
/// `{"keytype":..,"keyval":{"private":null,"public":..}}` (`tuf/data/keys.go`, `ID()`).
pub fn key_id(keytype: &str, public_b64: &str) -> String {
    let value = json!({"keytype": keytype, "keyval": {"private": null, "public": public_b64}});
    // Only strings and null: canonical encoding cannot fail.
    let bytes = canonical::encode(&value).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}

impl PublicKey {
    /// Parses a key as listed in metadata. The keyid is computed from its content, after
    /// re-encoding the public bytes as Go would (`[]byte` marshals as standard base64).
    pub fn from_tuf(key: &TufKey) -> Result<Self, KeyError> {
        let public = base64::engine::general_purpose::STANDARD
            .decode(key.keyval.public.as_bytes())
            .map_err(|e| KeyError::Base64(e.to_string()))?;
        let reencoded = base64::engine::general_purpose::STANDARD.encode(&public);
        let keyid = key_id(&key.keytype, &reencoded);
        let keytype = key.keytype.clone();
        match key.keytype.as_str() {
            "ecdsa" | "rsa" => {
                let rsa_pem = key.keytype == "rsa" && public.starts_with(b"-----BEGIN");
                let (alg, material, rsa_bits) = if rsa_pem {
                    // Go's `pem.Decode` takes the first block, whatever its label.
                    let (_, pem) = x509_parser::pem::parse_x509_pem(&public)
                        .map_err(|e| KeyError::Malformed(format!("PEM: {e}")))?;
                    parse_spki_der(&pem.contents)?
                } else {
                    parse_spki_der(&public)?
                };
                let ok = if key.keytype == "ecdsa" {
                    matches!(alg, KeyAlg::EcdsaP256 | KeyAlg::EcdsaP384)
                } else {
                    alg == KeyAlg::Rsa
                };
                if !ok {
                    return Err(KeyError::Malformed(format!(
                        "{} key holds {alg:?}",
                        key.keytype
                    )));
                }
                Ok(PublicKey {
                    keyid,
                    keytype,
                    alg,
                    material,
                    rsa_bits,
                    rsa_pem,
                    cert: None,
                })
            }
            "ed25519" => {
                if public.len() != 32 {
                    return Err(KeyError::Malformed(format!(
                        "ed25519 key has {} bytes",
                        public.len()
                    )));
                }
                let alg = KeyAlg::Ed25519;
                Ok(PublicKey {
                    keyid,
                    keytype,
                    alg,
                    material: public,
                    rsa_bits: 0,
                    rsa_pem: false,
                    cert: None,
                })
            }
            "ecdsa-x509" | "rsa-x509" => {
                let (alg, material, rsa_bits, cert) = parse_cert_pem(&public)?;
                let ok = if key.keytype == "ecdsa-x509" {
                    matches!(alg, KeyAlg::EcdsaP256 | KeyAlg::EcdsaP384)
                } else {
                    alg == KeyAlg::Rsa
                };
                if !ok {
                    return Err(KeyError::Malformed(format!(
                        "{} cert holds {alg:?}",
                        key.keytype
                    )));
                }
                Ok(PublicKey {
                    keyid,
                    keytype,
                    alg,
                    material,
                    rsa_bits,
                    rsa_pem: false,
                    cert: Some(cert),
                })
            }
            other => Err(KeyError::UnsupportedType(other.to_owned())),
        }
    }

    pub fn keyid(&self) -> &str {
        &self.keyid
    }

    pub fn keytype(&self) -> &str {
        &self.keytype
    }

    pub fn alg(&self) -> KeyAlg {
        self.alg
    }

    pub fn rsa_bits(&self) -> usize {
        self.rsa_bits
    }

    pub fn cert(&self) -> Option<&CertInfo> {
        self.cert.as_ref()
    }

    /// Identity of the key material, for counting distinct keys.
    pub fn material_id(&self) -> (KeyAlg, &[u8]) {
        (self.alg, &self.material)
    }

    /// Checks `sig` over `msg` with `method`. A method that does not belong to the key's type
    /// never verifies (`tuf/signed/verifiers.go` dispatches by method, then each verifier
    /// rejects foreign key types).
    pub fn verify(&self, method: &str, msg: &[u8], sig: &[u8]) -> bool {
        let method = method.to_ascii_lowercase();
        let alg: &'static dyn signature::VerificationAlgorithm = match (method.as_str(), self.alg) {
            // Raw r‖s of exactly 2·⌈256/8⌉ bytes; ring's FIXED form enforces the length.
            ("ecdsa", KeyAlg::EcdsaP256) => &signature::ECDSA_P256_SHA256_FIXED,
            // Go hashes with SHA-256 whatever the curve (verifiers.go:245-258). ring has no
            // fixed-width P-384/SHA-256 verifier, so the raw r‖s (exactly 2·48 bytes, as Go
            // demands) is re-encoded as the DER ring's ASN.1 form reads.
            ("ecdsa", KeyAlg::EcdsaP384) => {
                return raw_ecdsa_to_der(sig, 48).is_some_and(|der| {
                    UnparsedPublicKey::new(&signature::ECDSA_P384_SHA256_ASN1, &self.material)
                        .verify(msg, &der)
                        .is_ok()
                });
            }
            ("eddsa", KeyAlg::Ed25519) => &signature::ED25519,
            ("rsapss", KeyAlg::Rsa) if !self.rsa_pem => &signature::RSA_PSS_2048_8192_SHA256,
            ("rsapkcs1v15", KeyAlg::Rsa) if !self.rsa_pem => &signature::RSA_PKCS1_2048_8192_SHA256,
            // `RSAPyCryptoVerifier`: keytype `rsa` only, PEM public key, then `verifyPSS`
            // (PSSOptions{SaltLength: sha256.Size, Hash: SHA256}); ring's PSS verifier
            // requires exactly that salt length.
            ("pycrypto-pkcs#1 pss", KeyAlg::Rsa) if self.rsa_pem && self.keytype == "rsa" => {
                &signature::RSA_PSS_2048_8192_SHA256
            }
            _ => return false,
        };
        UnparsedPublicKey::new(alg, &self.material)
            .verify(msg, sig)
            .is_ok()
    }
}

/// DER `SEQUENCE { INTEGER r, INTEGER s }` from a raw `r‖s` of `2 * width` bytes; `None` for
/// any other length. Both halves are unsigned big-endian: leading zeros are dropped and a
/// 0x00 is prepended when the top bit is set (DER's minimal two's complement). With
/// width ≤ 48 every length fits DER's one-byte short form.
fn raw_ecdsa_to_der(sig: &[u8], width: usize) -> Option<Vec<u8>> {
    if sig.len() != 2 * width || width > 60 {
        return None;
    }
    let integer = |half: &[u8]| {
        let start = half.iter().position(|b| *b != 0).unwrap_or(half.len() - 1);
        let digits = &half[start..];
        let pad = digits[0] & 0x80 != 0;
        let mut out = vec![0x02, (digits.len() + usize::from(pad)) as u8];
        if pad {
            out.push(0);
        }
        out.extend_from_slice(digits);
        out
    };
    let (r, s) = sig.split_at(width);
    let body = [integer(r), integer(s)].concat();
    let mut der = vec![0x30, body.len() as u8];
    der.extend(body);
    Some(der)
}

fn parse_spki_der(der: &[u8]) -> Result<(KeyAlg, Vec<u8>, usize), KeyError> {
    let (rest, spki) = SubjectPublicKeyInfo::from_der(der)
        .map_err(|e| KeyError::Malformed(format!("SubjectPublicKeyInfo: {e}")))?;
    if !rest.is_empty() {
        return Err(KeyError::Malformed(
            "trailing bytes after SubjectPublicKeyInfo".into(),
        ));
    }
    spki_material(&spki)
}

fn spki_material(spki: &SubjectPublicKeyInfo) -> Result<(KeyAlg, Vec<u8>, usize), KeyError> {
    let oid = spki.algorithm.algorithm.to_id_string();
    let data = spki.subject_public_key.data.to_vec();
    match oid.as_str() {
        OID_EC_PUBLIC_KEY => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            match curve.as_deref() {
                Some(OID_P256) => Ok((KeyAlg::EcdsaP256, data, 0)),
                Some(OID_P384) => Ok((KeyAlg::EcdsaP384, data, 0)),
                _ => Err(KeyError::Malformed(format!(
                    "unsupported EC curve {curve:?}"
                ))),
            }
        }
        OID_RSA => {
            let bits = match spki.parsed() {
                Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => rsa.key_size(),
                _ => return Err(KeyError::Malformed("bad RSA public key".into())),
            };
            Ok((KeyAlg::Rsa, data, bits))
        }
        other => Err(KeyError::Malformed(format!(
            "unsupported public key algorithm {other}"
        ))),
    }
}

fn parse_cert_pem(pem_bytes: &[u8]) -> Result<(KeyAlg, Vec<u8>, usize, CertInfo), KeyError> {
    let mut ders = Vec::new();
    for pem in x509_parser::pem::Pem::iter_from_buffer(pem_bytes) {
        let pem = pem.map_err(|e| KeyError::Malformed(format!("PEM: {e}")))?;
        if pem.label != "CERTIFICATE" {
            return Err(KeyError::Malformed(format!("PEM block {:?}", pem.label)));
        }
        ders.push(pem.contents);
    }
    let leaf_der = ders
        .first()
        .ok_or_else(|| KeyError::Malformed("no certificate".into()))?;
    let (_, leaf) = X509Certificate::from_der(leaf_der)
        .map_err(|e| KeyError::Malformed(format!("certificate: {e}")))?;
    let (alg, material, bits) = spki_material(leaf.public_key())?;
    let bundle_leaves = ders.iter().try_fold(0, |n, der| {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        Some(n + usize::from(!cert.is_ca()))
    });
    let info = cert_info(&leaf, ders.clone(), bundle_leaves)?;
    Ok((alg, material, bits, info))
}

fn cert_info(
    cert: &X509Certificate,
    chain_der: Vec<Vec<u8>>,
    bundle_leaves: Option<usize>,
) -> Result<CertInfo, KeyError> {
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned);
    let time = |t: i64| {
        OffsetDateTime::from_unix_timestamp(t)
            .map_err(|e| KeyError::Malformed(format!("certificate validity: {e}")))
    };
    let sig_oid = cert.signature_algorithm.algorithm.to_id_string();
    Ok(CertInfo {
        common_name,
        not_before: time(cert.validity().not_before.timestamp())?,
        not_after: time(cert.validity().not_after.timestamp())?,
        sha1_signed: SHA1_SIG_OIDS.contains(&sig_oid.as_str()),
        is_ca: cert.is_ca(),
        rsa_bits: match cert.public_key().parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => rsa.key_size(),
            _ => 0,
        },
        bundle_leaves,
        chain_der,
    })
}
