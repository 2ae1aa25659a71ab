//! cosign public keys: PEM `PUBLIC KEY` blocks (SubjectPublicKeyInfo, RFC 5280 §4.1.2.7), as
//! `cosign generate-key-pair` writes `cosign.pub` and `cosign public-key` prints them.
//!
//! The SPKI is parsed by `x509-parser` and signatures are checked by `ring`; nothing here walks
//! DER by hand. Which signature schemes a key accepts follows sigstore/sigstore
//! `pkg/signature` (`LoadVerifier`): ECDSA keys verify ASN.1 DER signatures, Ed25519 keys verify
//! the message itself, RSA keys verify PKCS#1 v1.5 (cosign's default) or PSS.

use std::fmt;

use ring::signature::{self as sig, UnparsedPublicKey, VerificationAlgorithm};
use sha2::{Digest as _, Sha256};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

/// The key types cosign makes and verifies with keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    EcdsaP256,
    EcdsaP384,
    Ed25519,
    Rsa,
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyAlgorithm::EcdsaP256 => "ecdsa-p256",
            KeyAlgorithm::EcdsaP384 => "ecdsa-p384",
            KeyAlgorithm::Ed25519 => "ed25519",
            KeyAlgorithm::Rsa => "rsa",
        })
    }
}

/// A public key a cosign verifier trusts.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    algorithm: KeyAlgorithm,
    /// What ring takes: the uncompressed EC point, the raw Ed25519 key, or the PKCS#1
    /// `RSAPublicKey` DER (the SPKI's `subjectPublicKey` bit string in every case).
    raw: Vec<u8>,
    fingerprint: String,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({} {})", self.algorithm, self.fingerprint)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("is not valid PEM: {0}")]
    Pem(String),
    #[error("holds a {0:?} block; only PUBLIC KEY blocks (cosign.pub) are accepted")]
    Label(String),
    #[error("holds a public key that does not parse: {0}")]
    Spki(String),
    #[error(
        "holds an unsupported key type ({0}); cosign keys are ECDSA P-256/P-384, Ed25519 or RSA"
    )]
    Unsupported(String),
    #[error("holds an RSA key of {0} bits; at least 2048 are required")]
    RsaTooSmall(usize),
    #[error("holds no PEM public key")]
    Empty,
}

impl PublicKey {
    /// Every `PUBLIC KEY` block of a PEM file; any other block, or none, is an error.
    pub fn from_pem(bytes: &[u8]) -> Result<Vec<PublicKey>, KeyError> {
        let mut out = Vec::new();
        for pem in x509_parser::pem::Pem::iter_from_buffer(bytes) {
            let pem = pem.map_err(|e| KeyError::Pem(e.to_string()))?;
            if pem.label != "PUBLIC KEY" {
                return Err(KeyError::Label(pem.label));
            }
            out.push(PublicKey::from_spki_der(&pem.contents)?);
        }
        if out.is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(out)
    }

    /// A DER SubjectPublicKeyInfo.
    pub fn from_spki_der(der: &[u8]) -> Result<PublicKey, KeyError> {
        let (rest, spki) =
            SubjectPublicKeyInfo::from_der(der).map_err(|e| KeyError::Spki(e.to_string()))?;
        if !rest.is_empty() {
            return Err(KeyError::Spki("trailing bytes after the key".into()));
        }
        let oid = &spki.algorithm.algorithm;
        let raw = spki.subject_public_key.data.to_vec();
        let algorithm = if *oid == OID_KEY_TYPE_EC_PUBLIC_KEY {
            // RFC 5480 §2.1.1: the parameters name the curve.
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .ok_or_else(|| KeyError::Spki("EC key without a named curve".into()))?;
            if curve == OID_EC_P256 {
                KeyAlgorithm::EcdsaP256
            } else if curve == OID_NIST_EC_P384 {
                KeyAlgorithm::EcdsaP384
            } else {
                return Err(KeyError::Unsupported(format!("EC curve {curve}")));
            }
        } else if *oid == OID_SIG_ED25519 {
            KeyAlgorithm::Ed25519
        } else if *oid == OID_PKCS1_RSAENCRYPTION {
            let bits = match spki.parsed() {
                Ok(x509_parser::public_key::PublicKey::RSA(k)) => k.key_size(),
                _ => return Err(KeyError::Spki("RSA key does not parse".into())),
            };
            if bits < 2048 {
                return Err(KeyError::RsaTooSmall(bits));
            }
            KeyAlgorithm::Rsa
        } else {
            return Err(KeyError::Unsupported(format!("algorithm {oid}")));
        };
        let fingerprint = format!("SHA256:{}", hex::encode(Sha256::digest(der)));
        Ok(PublicKey {
            algorithm,
            raw,
            fingerprint,
        })
    }

    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// `SHA256:<hex>` of the DER SubjectPublicKeyInfo: how refusals and audit events name
    /// the key (`openssl pkey -pubin -outform DER | sha256sum` gives the same hex).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Whether `signature` is this key's signature over `message`.
    ///
    /// sigstore/sigstore `pkg/signature`: ECDSA signatures are ASN.1 DER; cosign hashes with
    /// SHA-256 by default and with SHA-384 for P-384 keys made with `--signing-algorithm`, so
    /// both digests are accepted (each is a signature by this key over these exact bytes).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let algs: &[&'static dyn VerificationAlgorithm] = match self.algorithm {
            KeyAlgorithm::EcdsaP256 => {
                &[&sig::ECDSA_P256_SHA256_ASN1, &sig::ECDSA_P256_SHA384_ASN1]
            }
            KeyAlgorithm::EcdsaP384 => {
                &[&sig::ECDSA_P384_SHA384_ASN1, &sig::ECDSA_P384_SHA256_ASN1]
            }
            KeyAlgorithm::Ed25519 => &[&sig::ED25519],
            KeyAlgorithm::Rsa => &[
                &sig::RSA_PKCS1_2048_8192_SHA256,
                &sig::RSA_PKCS1_2048_8192_SHA384,
                &sig::RSA_PKCS1_2048_8192_SHA512,
                &sig::RSA_PSS_2048_8192_SHA256,
                &sig::RSA_PSS_2048_8192_SHA384,
                &sig::RSA_PSS_2048_8192_SHA512,
            ],
        };
        algs.iter().any(|alg| {
            UnparsedPublicKey::new(*alg, &self.raw)
                .verify(message, signature)
                .is_ok()
        })
    }
}
