//! Sigstore cosign, keyed, in the simple-signing format (cosign ≤ 2's `.sig` tags).
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

pub mod fetch;
mod keys;
mod simple_signing;

pub use keys::{KeyAlgorithm, KeyError, PublicKey};
pub use simple_signing::{
    parse_signature_manifest, verify, CosignRefusal, KeyVerified, LayerProblem, SignatureLayer,
    SIGNATURE_ANNOTATION, SIMPLE_SIGNING_MEDIA_TYPE, SIMPLE_SIGNING_TYPE,
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
}

impl Default for CosignLimits {
    fn default() -> CosignLimits {
        CosignLimits {
            signature_manifest_max_bytes: 256 * 1024,
            max_signatures: 64,
            payload_max_bytes: 64 * 1024,
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
