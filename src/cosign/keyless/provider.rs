//! `sigstore-crypto`'s cryptography, on `ring`.
//!
//! sigstore-rust routes every hash and signature check through a pluggable
//! [`CryptoProvider`]; its default backend is `aws-lc-rs`, which trustgate does not build
//! (ring is the one provider of the whole tree, as for rustls). This provider is what
//! `sigstore-crypto`'s own `provider.rs` documents for such consumers: verification only, with
//! the raw-key conventions it states (SEC1 point for ECDSA, the 32-byte Ed25519 key, the
//! PKCS#1 `RSAPublicKey` for RSA; ASN.1 DER ECDSA signatures).
//!
//! Prehashed verification (a signature checked against a digest rather than the message):
//! sigstore-verify checks every ECDSA/RSA message signature (hashedrekord, the `.sig`
//! layers) that way, and ring verifies messages only, so ECDSA P-256/P-384 go to RustCrypto's
//! `p256`/`p384` (`PrehashVerifier`, the same `ecdsa` crate as the `p521` Notation uses).
//! Prehashed RSA is refused: Fulcio issues keyless certificates for the ephemeral ECDSA (or
//! Ed25519) keys cosign makes, and DSSE signatures are always verified over the message.

use ring::signature::{self as sig, UnparsedPublicKey, VerificationAlgorithm};
use sigstore_crypto::provider::{CryptoProvider, HashContext};
use sigstore_crypto::{Error, Result, SigningScheme};
use sigstore_types::HashAlgorithm;

#[derive(Debug)]
pub(crate) struct RingProvider;

pub(crate) static RING_PROVIDER: RingProvider = RingProvider;

/// Installs [`RING_PROVIDER`] as sigstore-crypto's process-wide provider, once. Called before
/// any trusted root is loaded, so every check sigstore-rust makes in this process is ring's.
pub(crate) fn install() {
    // `Err` means a provider is installed already: ours (the only caller), so nothing to do.
    let _ = sigstore_crypto::install_default_provider(&RING_PROVIDER);
}

struct RingHash(ring::digest::Context);

impl HashContext for RingHash {
    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    fn finalize(self: Box<Self>) -> Vec<u8> {
        self.0.finish().as_ref().to_vec()
    }
}

fn algorithm(scheme: SigningScheme) -> Result<&'static dyn VerificationAlgorithm> {
    Ok(match scheme {
        SigningScheme::EcdsaP256Sha256 => &sig::ECDSA_P256_SHA256_ASN1,
        SigningScheme::EcdsaP256Sha384 => &sig::ECDSA_P256_SHA384_ASN1,
        SigningScheme::EcdsaP384Sha256 => &sig::ECDSA_P384_SHA256_ASN1,
        SigningScheme::EcdsaP384Sha384 => &sig::ECDSA_P384_SHA384_ASN1,
        SigningScheme::Ed25519 => &sig::ED25519,
        SigningScheme::RsaPssSha256 => &sig::RSA_PSS_2048_8192_SHA256,
        SigningScheme::RsaPssSha384 => &sig::RSA_PSS_2048_8192_SHA384,
        SigningScheme::RsaPssSha512 => &sig::RSA_PSS_2048_8192_SHA512,
        SigningScheme::RsaPkcs1Sha256 => &sig::RSA_PKCS1_2048_8192_SHA256,
        SigningScheme::RsaPkcs1Sha384 => &sig::RSA_PKCS1_2048_8192_SHA384,
        SigningScheme::RsaPkcs1Sha512 => &sig::RSA_PKCS1_2048_8192_SHA512,
        other => {
            return Err(Error::UnsupportedAlgorithm(format!(
                "{other:?} is not supported by trustgate's ring provider"
            )))
        }
    })
}

impl CryptoProvider for RingProvider {
    fn hash(&self, algorithm: HashAlgorithm) -> Result<Box<dyn HashContext>> {
        let alg = match algorithm {
            HashAlgorithm::Sha2256 => &ring::digest::SHA256,
            HashAlgorithm::Sha2384 => &ring::digest::SHA384,
            HashAlgorithm::Sha2512 => &ring::digest::SHA512,
            other => {
                return Err(Error::UnsupportedAlgorithm(format!(
                    "hash {other:?} is not supported by trustgate's ring provider"
                )))
            }
        };
        Ok(Box::new(RingHash(ring::digest::Context::new(alg))))
    }

    fn verify_raw(
        &self,
        scheme: SigningScheme,
        spki_pubkey_bytes: &[u8],
        data: &[u8],
        signature: &[u8],
    ) -> Result<()> {
        UnparsedPublicKey::new(algorithm(scheme)?, spki_pubkey_bytes)
            .verify(data, signature)
            .map_err(|_| Error::Verification("signature does not verify".into()))
    }

    fn verify_prehashed(
        &self,
        scheme: SigningScheme,
        spki_pubkey_bytes: &[u8],
        digest: &[u8],
        signature: &[u8],
    ) -> Result<()> {
        use p256::ecdsa::signature::hazmat::PrehashVerifier;
        let bad = |_| Error::Verification("signature does not verify".into());
        match scheme {
            SigningScheme::EcdsaP256Sha256 | SigningScheme::EcdsaP256Sha384 => {
                let key =
                    p256::ecdsa::VerifyingKey::from_sec1_bytes(spki_pubkey_bytes).map_err(bad)?;
                let sig = p256::ecdsa::Signature::from_der(signature).map_err(bad)?;
                key.verify_prehash(digest, &sig).map_err(bad)
            }
            SigningScheme::EcdsaP384Sha256 | SigningScheme::EcdsaP384Sha384 => {
                let key =
                    p384::ecdsa::VerifyingKey::from_sec1_bytes(spki_pubkey_bytes).map_err(bad)?;
                let sig = p384::ecdsa::Signature::from_der(signature).map_err(bad)?;
                key.verify_prehash(digest, &sig).map_err(bad)
            }
            other => Err(Error::UnsupportedAlgorithm(format!(
                "prehashed {other:?} verification is not supported by trustgate's provider"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair};

    /// Both paths sigstore-verify takes (message and digest) accept a good ECDSA signature
    /// and refuse a flipped one, on P-256 and P-384.
    #[test]
    fn ecdsa_verifies_over_messages_and_digests_and_refuses_flips() {
        let rng = SystemRandom::new();
        for (signing, scheme, hash) in [
            (
                &sig::ECDSA_P256_SHA256_ASN1_SIGNING,
                SigningScheme::EcdsaP256Sha256,
                &ring::digest::SHA256,
            ),
            (
                &sig::ECDSA_P384_SHA384_ASN1_SIGNING,
                SigningScheme::EcdsaP384Sha384,
                &ring::digest::SHA384,
            ),
        ] {
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(signing, &rng).unwrap();
            let key = EcdsaKeyPair::from_pkcs8(signing, pkcs8.as_ref(), &rng).unwrap();
            let public = key.public_key().as_ref();
            let msg = b"cosign container image signature";
            let good = key.sign(&rng, msg).unwrap().as_ref().to_vec();
            let digest = ring::digest::digest(hash, msg);
            let p = &RING_PROVIDER;
            assert!(p.verify_raw(scheme, public, msg, &good).is_ok());
            assert!(p
                .verify_prehashed(scheme, public, digest.as_ref(), &good)
                .is_ok());
            let mut bad = good.clone();
            let last = bad.len() - 1;
            bad[last] ^= 1;
            assert!(p.verify_raw(scheme, public, msg, &bad).is_err());
            assert!(p
                .verify_prehashed(scheme, public, digest.as_ref(), &bad)
                .is_err());
            let other = ring::digest::digest(hash, b"another payload");
            assert!(p
                .verify_prehashed(scheme, public, other.as_ref(), &good)
                .is_err());
        }
        assert!(RING_PROVIDER
            .verify_prehashed(SigningScheme::RsaPkcs1Sha256, &[], &[0; 32], &[])
            .is_err());
    }
}
