//! Sigstore cosign, keyed and keyless ([`keyless`]), in both formats: cosign 3's default Sigstore bundle v0.3 referrers
//! ([`bundle`], found by [`referrers`]) and cosign ≤ 2's simple-signing `.sig` tags.
//!
//! Flow (sigstore/cosign `specs/SIGNATURE_SPEC.md`): the image digest `sha256:<hex>` has its
//! signatures in the same repository under the tag `sha256-<hex>.sig`, an image manifest with
//! one layer of media type `application/vnd.dev.cosign.simplesigning.v1+json` per signature;
//! the layer's blob is the signed payload and its annotation `dev.cosignproject.cosign/signature`
//! the base64 signature over exactly those bytes. A digest is vouched for when one layer's
//! signature verifies with a configured key *and* that payload names the digest.
//!
//! [`verify`] is pure (manifest and payload bytes and keys in, a [`KeyVerified`] proof or a
//! precise refusal out); [`fetch::verify_digest`] gathers the bytes through a small
//! [`fetch::Registry`] trait, which the proxy implements with its upstream client.

pub mod bundle;
pub mod fetch;
pub mod keyless;
mod keys;
pub mod referrers;
mod simple_signing;

pub use keys::{KeyAlgorithm, KeyError, PublicKey};
pub use simple_signing::{
    describe_keys, parse_signature_manifest, verify, CosignRefusal, KeyVerified, LayerProblem,
    SignatureFormat, SignatureLayer, SIGNATURE_ANNOTATION, SIMPLE_SIGNING_MEDIA_TYPE,
    SIMPLE_SIGNING_TYPE,
};

/// Bounds on what a signature artifact may make trustgate read. A `.sig` manifest is small
/// (one layer descriptor per signature, ~1 KiB each); these leave ample room and stop an
/// endless or huge artifact long before it costs memory.
#[derive(Debug, Clone, Copy)]
pub struct CosignLimits {
    /// Bytes of the `sha256-<hex>.sig` manifest, enforced while it is read.
    pub signature_manifest_max_bytes: u64,
    /// Simple-signing layers examined per manifest; more is refused, not truncated.
    pub max_signatures: usize,
    /// Bytes of one payload blob (a SimpleSigning payload is a few hundred bytes).
    pub payload_max_bytes: u64,
    /// Bytes of one referrers page, or of the `sha256-<hex>` tag schema's index.
    pub referrers_page_max_bytes: u64,
    /// Pages of one referrers listing followed (`Link: rel="next"`); more is refused.
    pub max_referrer_pages: usize,
    /// Entries over all pages of one listing; more is refused.
    pub max_referrer_entries: usize,
    /// Bytes of one Sigstore bundle (keyed: ~2 KiB; with a certificate chain and log
    /// entries: ~10 KiB).
    pub bundle_max_bytes: u64,
}

impl Default for CosignLimits {
    fn default() -> CosignLimits {
        CosignLimits {
            signature_manifest_max_bytes: 256 * 1024,
            max_signatures: 64,
            payload_max_bytes: 64 * 1024,
            referrers_page_max_bytes: 256 * 1024,
            max_referrer_pages: 8,
            max_referrer_entries: 512,
            bundle_max_bytes: 128 * 1024,
        }
    }
}

/// The tag holding the simple-signing signatures of `digest` (`sha256:<hex>` →
/// `sha256-<hex>.sig`), SIGNATURE_SPEC.md "Tag Target".
pub fn signature_tag(digest: &crate::registry::Digest) -> String {
    format!("{}.sig", digest.to_string().replacen(':', "-", 1))
}

/// The digest a `sha256-<hex>.sig` tag names, if `tag` is one.
pub fn signed_digest_of_tag(tag: &str) -> Option<crate::registry::Digest> {
    let hex = tag.strip_prefix("sha256-")?.strip_suffix(".sig")?;
    crate::registry::Digest::parse(&format!("sha256:{hex}")).ok()
}

/// Runs the cosign parsers over arbitrary bytes (the `parse_cosign` fuzz target, and a stable
/// test over truncations and byte flips): each must refuse, never panic.
#[doc(hidden)]
pub fn exercise_parsers(data: &[u8]) {
    let _ = PublicKey::from_pem(data);
    let _ = PublicKey::from_spki_der(data);
    let limits = CosignLimits::default();
    if let Ok(layers) = parse_signature_manifest("sha256-0.sig", data, &limits) {
        let digest = crate::registry::Digest::sha256_of(data);
        let with: Vec<_> = layers
            .into_iter()
            .map(|l| (l, bytes::Bytes::copy_from_slice(data)))
            .collect();
        let _ = verify(&digest, &with, &[]);
    }
    let digest = crate::registry::Digest::sha256_of(data);
    let _ = bundle::verify_bundle(&digest, data, &[], bundle::PredicateRule::Any);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = referrers::next_page(s, &digest);
        let _ = keyless::TrustedRoot::from_json(std::path::Path::new("fuzz.json"), s);
    }
}

#[cfg(test)]
mod tests {
    /// A `.sig` manifest as cosign writes it, and a SPKI PEM, cut and flipped everywhere.
    #[test]
    fn parsers_refuse_truncated_and_flipped_input_without_panicking() {
        let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","size":233,"digest":"sha256:00b8d2ba3a80cf8b6c2b0cb2cbb0e2f6c3d0cd4c0ee6b5e7a3b2b0e4b6d5f0a1"},"layers":[{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","size":246,"digest":"sha256:e7801de935512e22b237c7b57e42ca4d20e2134bdf1b98f976c8f55d9cfe4067","annotations":{"dev.cosignproject.cosign/signature":"MEUCIGqWScz7s9aP2sGXNFKeqivw3B6kPRs56AITIHnvd5igAiEA1kzbaV2Y5yPE81EN92NUFOl31LLJSvwsjFQ07m2XqaA="}}]}"#;
        let pem = include_bytes!("../../tests/fixtures/cosign/busybox.pub");
        for input in [&manifest[..], &pem[..]] {
            for cut in 0..input.len() {
                super::exercise_parsers(&input[..cut]);
            }
            for i in 0..input.len() {
                let mut flipped = input.to_vec();
                flipped[i] ^= 0x41;
                super::exercise_parsers(&flipped);
            }
        }
        assert_eq!(
            super::parse_signature_manifest("t", manifest, &super::CosignLimits::default())
                .map(|l| l.len()),
            Ok(1)
        );
    }
}
