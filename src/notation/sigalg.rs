//! Notation's signature algorithms and the key each one requires (signature-specification.md
//! "Signature Algorithm Requirements"; notation-core-go `signature/algorithm.go`
//! `ExtractKeySpec`): RSASSA-PSS with SHA-256/384/512 for RSA 2048/3072/4096, ECDSA with
//! SHA-256/384/512 on P-256/P-384/P-521. The algorithm in the envelope must be the one the
//! leaf's key implies (base envelope `Verify`: "signature algorithm … does not match").
//! RSA and P-256/P-384 are verified with ring; ring has no P-521, so ES512 uses RustCrypto's
//! `p521`.

use x509_parser::prelude::X509Certificate;
use x509_parser::public_key::PublicKey;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    ES512,
}

impl Alg {
    pub fn from_jws(name: &str) -> Option<Alg> {
        Some(match name {
            "PS256" => Alg::PS256,
            "PS384" => Alg::PS384,
            "PS512" => Alg::PS512,
            "ES256" => Alg::ES256,
            "ES384" => Alg::ES384,
            "ES512" => Alg::ES512,
            _ => return None,
        })
    }

    /// COSE algorithm identifiers (signature-envelope-cose.md, IANA COSE Algorithms).
    pub fn from_cose(id: i64) -> Option<Alg> {
        Some(match id {
            -37 => Alg::PS256,
            -38 => Alg::PS384,
            -39 => Alg::PS512,
            -7 => Alg::ES256,
            -35 => Alg::ES384,
            -36 => Alg::ES512,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::ES512 => "ES512",
        }
    }
}

const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_P521: &str = "1.3.132.0.35";

/// The algorithm the leaf's key requires, or why the key is not one Notation accepts.
pub fn alg_for_key(cert: &X509Certificate<'_>) -> Result<Alg, String> {
    let spki = cert.public_key();
    match spki.parsed().map_err(|e| format!("public key: {e}"))? {
        PublicKey::RSA(rsa) => match rsa.key_size() {
            2048 => Ok(Alg::PS256),
            3072 => Ok(Alg::PS384),
            4096 => Ok(Alg::PS512),
            n => Err(format!(
                "RSA key of {n} bits; Notation accepts 2048, 3072 or 4096"
            )),
        },
        PublicKey::EC(_) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string())
                .unwrap_or_default();
            match curve.as_str() {
                OID_P256 => Ok(Alg::ES256),
                OID_P384 => Ok(Alg::ES384),
                OID_P521 => Ok(Alg::ES512),
                other => Err(format!(
                    "EC key on curve {other:?}; Notation accepts P-256, P-384 or P-521"
                )),
            }
        }
        _ => Err(format!(
            "key type {} is not RSA or EC",
            spki.algorithm.algorithm.to_id_string()
        )),
    }
}

/// Verifies `sig` over `message` with the leaf's key. JWS and COSE both carry ECDSA
/// signatures as fixed-size `r || s`.
pub fn verify(
    alg: Alg,
    cert: &X509Certificate<'_>,
    message: &[u8],
    sig: &[u8],
) -> Result<(), String> {
    use ring::signature as rs;
    let key = cert.public_key().subject_public_key.data.as_ref();
    let ring_alg: &dyn rs::VerificationAlgorithm = match alg {
        Alg::PS256 => &rs::RSA_PSS_2048_8192_SHA256,
        Alg::PS384 => &rs::RSA_PSS_2048_8192_SHA384,
        Alg::PS512 => &rs::RSA_PSS_2048_8192_SHA512,
        Alg::ES256 => &rs::ECDSA_P256_SHA256_FIXED,
        Alg::ES384 => &rs::ECDSA_P384_SHA384_FIXED,
        Alg::ES512 => {
            use p521::ecdsa::signature::Verifier;
            let vk = p521::ecdsa::VerifyingKey::from_sec1_bytes(key)
                .map_err(|_| "the P-521 public key is malformed".to_string())?;
            let sig = p521::ecdsa::Signature::from_slice(sig).map_err(|_| {
                format!("an ES512 signature is 132 bytes, this one is {}", sig.len())
            })?;
            return vk.verify(message, &sig).map_err(|_| {
                "the signature does not verify with the signing certificate's key".into()
            });
        }
    };
    rs::UnparsedPublicKey::new(ring_alg, key)
        .verify(message, sig)
        .map_err(|_| "the signature does not verify with the signing certificate's key".into())
}
