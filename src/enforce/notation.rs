//! The Notation verifier of a rule: the tag's digest as the upstream resolves it now, vouched
//! for by a Notation signature that the verifier's trust policy and trust store accept
//! ([`crate::notation`], which is pure; this file only gathers its inputs).
//!
//! Discovery is the OCI 1.1 referrers API (`GET /v2/<repo>/referrers/<digest>`, every page,
//! bounded, through the client cosign uses), and where a
//! registry has none (404), the distribution spec's tag-schema fallback: the index under the
//! tag `sha256-<hex>` (what `notation sign` pushes to a registry without the referrers API,
//! docker-registry among them). Candidates are
//! filtered by artifact type and by the `io.cncf.notary.x509chain.thumbprint#S256`
//! annotation (a signature no trust store can match is not fetched), then each is checked in
//! turn: its manifest hashes to the digest the index names, its `subject` is the resolved
//! manifest, its one envelope layer is fetched within its descriptor's size, and the envelope
//! is verified. The first that verifies vouches; a trust policy statement at level `skip`
//! never does (trustgate serves a signed scope only as a verified digest; a scope that needs
//! no signature is a `require = "allow"` rule).

use time::OffsetDateTime;

use super::Enforcer;
use crate::cosign::fetch::{FetchError, Registry};
use crate::cosign::referrers::{self, ListingError, ListingSource, PageLimits};
use crate::metrics::DecisionReason;
use crate::notation::discover::{candidates, check_envelope_blob, signature_layer, MAX_SIGNATURES};
use crate::notation::TargetDescriptor;
use crate::policy::NotationVerifier;
use crate::registry::Digest;
use crate::signatures::{Refusal, Verified};

/// Largest manifest read while looking for signatures (the index and each signature manifest).
const MANIFEST_LIMIT: u64 = 4 * 1024 * 1024;
/// One referrers listing: pages of at most 1 MiB (a hundred Notation entries with their
/// thumbprint annotations are ~50 KiB), at most 8 pages and 512 entries; more is refused.
const PAGES: PageLimits = PageLimits {
    page_max_bytes: 1024 * 1024,
    max_pages: 8,
    max_entries: 512,
};
/// Signatures checked per pull, at most: a repository cannot make one pull verify forever.
const MAX_CANDIDATES: usize = 16;

impl Enforcer {
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn notation<R: Registry>(
        &self,
        name: &str,
        v: &NotationVerifier,
        registry: &str,
        repository: &str,
        tag: &str,
        resolved: &Result<Digest, FetchError>,
        upstream: &R,
    ) -> Result<Verified, Refusal> {
        let refuse = |reason, message: String, unavailable| Refusal {
            verifier: name.to_string(),
            reason,
            message,
            unavailable,
        };
        let unavailable = |what: String, reason: &str| {
            refuse(
                DecisionReason::TrustUnreachable,
                format!("{what} could not be read at the upstream: {reason}"),
                true,
            )
        };
        let digest = super::cosign::resolved_digest(name, tag, resolved)?;
        let digest_s = digest.to_string();
        // The signed payload names the manifest's media type and size as well as its digest
        // (signature-specification.md, "Payload"): read the manifest itself.
        let manifest = match upstream.manifest(&digest_s, MANIFEST_LIMIT).await {
            Ok(m) => m,
            Err(FetchError::Unavailable { reason }) => {
                return Err(unavailable(format!("manifest {digest_s}"), &reason))
            }
            Err(e) => {
                return Err(refuse(
                    DecisionReason::Other,
                    format!("manifest {digest_s} could not be read: {e:?}"),
                    false,
                ))
            }
        };
        if Digest::sha256_of(&manifest) != digest {
            return Err(refuse(
                DecisionReason::ContentMismatch,
                format!("the upstream's manifest for {digest_s} does not hash to it"),
                false,
            ));
        }
        let media_type = serde_json::from_slice::<serde_json::Value>(&manifest)
            .ok()
            .and_then(|v| v.get("mediaType")?.as_str().map(str::to_string))
            .unwrap_or_default();
        let target = TargetDescriptor {
            media_type,
            digest: digest_s.clone(),
            size: manifest.len() as u64,
        };
        let scope = format!("{registry}/{repository}");
        let config = v.config();
        // What would have vouched, for every "not signed" message: the statement that
        // applies and its stores (a client shows the refusal text to the person pulling).
        // Without a statement nothing can verify (oci.go `GetApplicableTrustPolicy`): say so
        // rather than list signatures.
        let st = config.policy.applicable(&scope).map_err(|e| {
            refuse(
                DecisionReason::TagNotSigned,
                format!("tag {tag}: no Notation signature can vouch for {digest_s}: {e}"),
                false,
            )
        })?;
        let statement = format!("trust policy statement {:?}", st.name);
        let stores = st
            .trust_stores
            .iter()
            .map(|r| format!("{}:{}", r.kind.dir_name(), r.name))
            .collect::<Vec<_>>()
            .join(", ");
        let not_signed = |detail: String| {
            refuse(
                DecisionReason::TagNotSigned,
                format!(
                    "tag {tag}: no Notation signature for {digest_s} {detail}; expected one that {statement} accepts (trust stores [{stores}])"
                ),
                false,
            )
        };
        // The OCI 1.1 referrers API, every page within PAGES (the shared, bounded client
        // cosign uses); on 404 — no referrers API — the tag-schema index
        // (signature-specification.md "OCI Signature Discovery").
        let listing = match referrers::list(upstream, &digest, &PAGES).await {
            Ok(l) => l,
            Err(ListingError::Refused(reason)) => {
                return Err(refuse(
                    DecisionReason::SignatureInvalid,
                    format!("tag {tag}: the referrers listing of {digest_s} is refused: {reason}"),
                    false,
                ))
            }
            Err(ListingError::Fetch {
                what,
                error: FetchError::Unavailable { reason },
            }) => {
                return Err(unavailable(
                    format!("referrers of {digest_s} ({what})"),
                    &reason,
                ))
            }
            Err(ListingError::Fetch {
                what,
                error: FetchError::TooLarge { limit },
            }) => {
                return Err(not_signed(format!(
                    "(the referrers listing's {what} is over {limit} bytes)"
                )))
            }
            Err(ListingError::Fetch {
                what,
                error: FetchError::NotFound,
            }) => {
                return Err(not_signed(format!(
                    "(the referrers listing's {what} is missing)"
                )))
            }
        };
        if let ListingSource::NoTag { tag: index_tag } = &listing.source {
            return Err(not_signed(format!(
                "(the registry has no referrers API and the referrers tag {index_tag} does not exist)"
            )));
        }
        let trusted = config.thumbprints(&scope);
        let mut found = Vec::new();
        for (i, page) in listing.pages.iter().enumerate() {
            let more = candidates(page, &trusted)
                .map_err(|e| not_signed(format!("(referrers page {i}: {e})")))?;
            found.extend(more);
            if found.len() > MAX_SIGNATURES {
                return Err(not_signed(format!(
                    "(more than {MAX_SIGNATURES} Notation signatures could match; refusing to try them all)"
                )));
            }
        }
        if found.is_empty() {
            return Err(not_signed(
                "(no signature in the referrers index names a certificate of those trust stores)"
                    .into(),
            ));
        }
        let now = OffsetDateTime::now_utc();
        let mut why = Vec::new();
        for c in found.iter().take(MAX_CANDIDATES) {
            let sig_manifest = match upstream.manifest(&c.digest, MANIFEST_LIMIT).await {
                Ok(m) => m,
                Err(FetchError::Unavailable { reason }) => {
                    return Err(unavailable(
                        format!("signature manifest {}", c.digest),
                        &reason,
                    ))
                }
                Err(e) => {
                    why.push(format!("{}: {e:?}", c.digest));
                    continue;
                }
            };
            let layer = match signature_layer(&sig_manifest, &c.digest, &target) {
                Ok(l) => l,
                Err(e) => {
                    why.push(e);
                    continue;
                }
            };
            let Ok(layer_digest) = Digest::parse(&layer.digest) else {
                why.push(format!(
                    "envelope digest {:?} is not canonical",
                    layer.digest
                ));
                continue;
            };
            let envelope = match upstream.blob(&layer_digest, layer.size).await {
                Ok(b) => b,
                Err(FetchError::Unavailable { reason }) => {
                    return Err(unavailable(format!("envelope {}", layer.digest), &reason))
                }
                Err(e) => {
                    why.push(format!("envelope {}: {e:?}", layer.digest));
                    continue;
                }
            };
            if let Err(e) = check_envelope_blob(&layer, &envelope) {
                why.push(e);
                continue;
            }
            match config.verify(&target, &scope, &envelope, &layer.media_type, now) {
                Ok(ok) if ok.skipped => why.push(format!(
                    "trust policy statement {:?} skips verification for {scope}; a signed rule needs a verified signature",
                    ok.statement
                )),
                Ok(ok) => return Ok(Verified::from_notation(name, &target, &ok)),
                Err(e) => why.push(e.to_string()),
            }
        }
        Err(refuse(
            DecisionReason::SignatureInvalid,
            format!(
                "tag {tag}: no Notation signature for {digest_s} verifies under {} ({})",
                v.dir().display(),
                why.join("; ")
            ),
            false,
        ))
    }
}
