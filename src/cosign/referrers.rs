//! Finding cosign 3's signatures: Sigstore bundles attached to a digest as OCI 1.1 referrers.
//!
//! OCI distribution-spec 1.1 "Listing Referrers": `GET /v2/<name>/referrers/<digest>` answers
//! an image index whose `manifests[]` are the manifests whose `subject` is that digest, paged
//! with `Link: <url>; rel="next"`; a registry without the API answers 404, and then the client
//! "MUST" read the index tagged `<alg>-<hex>` (the "referrers tag schema"). cosign 3 stores each
//! signature as such a referrer (sigstore/cosign `specs/BUNDLE_SPEC.md`): an image manifest
//! with `subject` = the signed digest and one layer of media type
//! `application/vnd.dev.sigstore.bundle.v0.3+json` holding the bundle.
//!
//! Nothing the index says is trusted: GHCR reports these entries' `artifactType` as
//! `application/vnd.oci.empty.v1+json` (sigstore-rs `src/cosign/client.rs`), so an entry is
//! only a *candidate*; its manifest is fetched, hashed against the entry's digest, and must
//! itself name the digest as `subject` and carry a bundle layer; the bundle's blob is hashed
//! against its descriptor; and only the bundle's signed statement decides (`bundle.rs`).
//! Every read is bounded, and so are pages, entries and candidates: an endless or huge listing
//! is refused, not truncated (a truncated listing could hide nothing, but would make the
//! verdict depend on the order a hostile registry chose).

use bytes::Bytes;
use serde::Deserialize;

use super::bundle::{verify_bundle, BundleProblem, PredicateRule, BUNDLE_MEDIA_TYPE};
use super::fetch::{FetchError, Registry};
use super::{CosignLimits, CosignRefusal, KeyVerified};
use crate::policy::CosignKey;
use crate::registry::Digest;

/// OCI image-spec: the manifest type a referrer entry must have to be read.
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// image-spec `manifest.md` "Guidelines for an empty descriptor"; what GHCR reports.
const EMPTY_ARTIFACT: &str = "application/vnd.oci.empty.v1+json";

/// One page of a referrers listing: the index and the `Link` header's value.
#[derive(Debug, Clone)]
pub struct ReferrersPage {
    pub body: Bytes,
    pub link: Option<String>,
}

/// One entry of a referrers index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub digest: Digest,
    pub size: u64,
}

#[derive(Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<IndexEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IndexEntry {
    #[serde(default)]
    media_type: String,
    digest: String,
    size: u64,
    artifact_type: Option<String>,
}

#[derive(Deserialize)]
struct Manifest {
    subject: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default)]
    media_type: String,
    digest: String,
    size: u64,
}

/// The `rel="next"` target of a `Link` header (RFC 8288), as a path and query for the same
/// registry. distribution-spec: the next page is "the URL to the next page"; a target that is
/// not the referrers listing of the same digest is a lie, refused rather than followed.
pub fn next_page(link: &str, digest: &Digest) -> Result<Option<String>, String> {
    for part in link.split(',') {
        let part = part.trim();
        let Some(rest) = part.strip_prefix('<') else {
            return Err(format!("unparsable Link header {link:?}"));
        };
        let Some((url, params)) = rest.split_once('>') else {
            return Err(format!("unparsable Link header {link:?}"));
        };
        let is_next = params
            .split(';')
            .any(|p| matches!(p.trim(), "rel=\"next\"" | "rel=next"));
        if !is_next {
            continue;
        }
        // An absolute URL keeps only its path: the request goes to the same upstream anyway.
        let path = match url.split_once("://") {
            Some((_, after)) => match after.find('/') {
                Some(i) => &after[i..],
                None => return Err(format!("Link target {url:?} has no path")),
            },
            None => url,
        };
        let route = path.split('?').next().unwrap_or(path);
        if !route.starts_with("/v2/") || !route.ends_with(&format!("/referrers/{digest}")) {
            return Err(format!(
                "Link target {url:?} is not the referrers listing of {digest}"
            ));
        }
        return Ok(Some(path.to_string()));
    }
    Ok(None)
}

/// The entries of a referrers index that may be bundles: artifact type the bundle's, GHCR's
/// wrong empty type, or none (the tag schema's index need not carry it); an OCI manifest.
fn candidates(bytes: &[u8]) -> Result<(usize, Vec<Entry>), String> {
    let index: Index =
        serde_json::from_slice(bytes).map_err(|e| format!("not an image index: {e}"))?;
    let total = index.manifests.len();
    let mut out = Vec::new();
    for (i, e) in index.manifests.into_iter().enumerate() {
        let maybe = match e.artifact_type.as_deref() {
            None | Some("") | Some(EMPTY_ARTIFACT) | Some(BUNDLE_MEDIA_TYPE) => true,
            Some(_) => false,
        };
        if !maybe || e.media_type != OCI_MANIFEST {
            continue;
        }
        let digest = Digest::parse(&e.digest)
            .map_err(|_| format!("entry {i} has a non-canonical digest {:?}", e.digest))?;
        out.push(Entry {
            digest,
            size: e.size,
        });
    }
    Ok((total, out))
}

fn bad(digest: &Digest, reason: String) -> CosignRefusal {
    CosignRefusal::BadArtifact {
        tag: format!("referrers of {digest}"),
        reason,
    }
}

fn fetch_error(digest: &Digest, what: &str, e: FetchError) -> CosignRefusal {
    match e {
        FetchError::NotFound => bad(digest, format!("{what} is missing")),
        FetchError::TooLarge { limit } => {
            bad(digest, format!("{what} is over the {limit}-byte limit"))
        }
        FetchError::Unavailable { reason } => CosignRefusal::Unavailable {
            digest: *digest,
            reason,
        },
    }
}

/// Bounds on one referrers listing (shared by the cosign and Notation verifiers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimits {
    /// Bytes of one page, or of the `sha256-<hex>` tag schema's index.
    pub page_max_bytes: u64,
    /// Pages followed (`Link: rel="next"`); more is refused, not truncated.
    pub max_pages: usize,
    /// Entries over all pages; more is refused.
    pub max_entries: usize,
}

impl From<&CosignLimits> for PageLimits {
    fn from(l: &CosignLimits) -> PageLimits {
        PageLimits {
            page_max_bytes: l.referrers_page_max_bytes,
            max_pages: l.max_referrer_pages,
            max_entries: l.max_referrer_entries,
        }
    }
}

/// Where a listing came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListingSource {
    /// The referrers API, in this many pages.
    Api { pages: usize },
    /// The registry has no referrers API: the index under this tag (distribution-spec
    /// "Referrers Tag Schema").
    TagSchema { tag: String },
    /// No referrers API, and no index under this tag either.
    NoTag { tag: String },
}

/// Every page of a listing, in order: each an image index, already counted against the limits.
#[derive(Debug, Clone)]
pub struct Listing {
    pub pages: Vec<Bytes>,
    pub source: ListingSource,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListingError {
    /// The listing itself is refused (too many pages or entries, a lying `Link`, not an
    /// index): fail closed, whatever the pages held.
    Refused(String),
    /// A read failed; `what` names it (`page 2`, `the index tag sha256-…`).
    Fetch { what: String, error: FetchError },
}

#[derive(Deserialize)]
struct CountedIndex {
    #[serde(default)]
    manifests: Vec<serde::de::IgnoredAny>,
}

/// Every page of `digest`'s referrers: the API, following `Link: rel="next"` within
/// `limits`, or on 404 for the first page the `sha256-<hex>` tag's index.
pub async fn list<R: Registry>(
    registry: &R,
    digest: &Digest,
    limits: &PageLimits,
) -> Result<Listing, ListingError> {
    let mut pages = Vec::new();
    let mut entries = 0usize;
    let mut next: Option<String> = None;
    for page in 0.. {
        if page == limits.max_pages {
            return Err(ListingError::Refused(format!(
                "the listing has more than {} pages",
                limits.max_pages
            )));
        }
        let body = match registry
            .referrers(digest, next.as_deref(), limits.page_max_bytes)
            .await
        {
            Ok(p) => {
                next = match p.link.as_deref() {
                    Some(l) => next_page(l, digest).map_err(ListingError::Refused)?,
                    None => None,
                };
                p.body
            }
            // No referrers API (only meaningful for the first page): the tag schema.
            Err(FetchError::NotFound) if page == 0 => {
                let tag = digest.to_string().replacen(':', "-", 1);
                return match registry.manifest(&tag, limits.page_max_bytes).await {
                    Ok(b) => {
                        count(&b, 0, limits, &format!("the index tag {tag}"))?;
                        Ok(Listing {
                            pages: vec![b],
                            source: ListingSource::TagSchema { tag },
                        })
                    }
                    Err(FetchError::NotFound) => Ok(Listing {
                        pages: Vec::new(),
                        source: ListingSource::NoTag { tag },
                    }),
                    Err(error) => Err(ListingError::Fetch {
                        what: format!("the index tag {tag}"),
                        error,
                    }),
                };
            }
            Err(error) => {
                return Err(ListingError::Fetch {
                    what: format!("page {page}"),
                    error,
                })
            }
        };
        entries = count(&body, entries, limits, &format!("page {page}"))?;
        pages.push(body);
        if next.is_none() {
            break;
        }
    }
    let n = pages.len();
    Ok(Listing {
        pages,
        source: ListingSource::Api { pages: n },
    })
}

/// `so_far` plus the entries of `body` (named `what`), within the limit.
fn count(
    body: &[u8],
    so_far: usize,
    limits: &PageLimits,
    what: &str,
) -> Result<usize, ListingError> {
    let index: CountedIndex = serde_json::from_slice(body)
        .map_err(|e| ListingError::Refused(format!("{what}: not an image index: {e}")))?;
    let total = so_far + index.manifests.len();
    if total > limits.max_entries {
        return Err(ListingError::Refused(format!(
            "the listing has more than {} entries",
            limits.max_entries
        )));
    }
    Ok(total)
}

/// Every bundle candidate attached to `digest`: the referrers API, or on 404 the
/// `sha256-<hex>` tag's index, or on 404 there too, none.
pub async fn discover<R: Registry>(
    registry: &R,
    digest: &Digest,
    limits: &CosignLimits,
) -> Result<Vec<Entry>, CosignRefusal> {
    let listing = match list(registry, digest, &PageLimits::from(limits)).await {
        Ok(l) => l,
        Err(ListingError::Refused(reason)) => return Err(bad(digest, reason)),
        Err(ListingError::Fetch { what, error }) => return Err(fetch_error(digest, &what, error)),
    };
    let mut found = Vec::new();
    for (page, body) in listing.pages.iter().enumerate() {
        let (_, c) = candidates(body).map_err(|e| bad(digest, format!("page {page}: {e}")))?;
        found.extend(c);
    }
    if found.len() > limits.max_signatures {
        return Err(bad(
            digest,
            format!(
                "more than {} bundle candidates among the referrers",
                limits.max_signatures
            ),
        ));
    }
    Ok(found)
}

/// The bundle layers of one referrer manifest, which must name `subject` as its subject.
fn bundle_layers(bytes: &[u8], subject: &Digest) -> Result<Vec<(Digest, u64)>, String> {
    let m: Manifest =
        serde_json::from_slice(bytes).map_err(|e| format!("not an image manifest: {e}"))?;
    match &m.subject {
        Some(s) if s.digest == subject.to_string() => {}
        Some(s) => return Err(format!("its subject is {}, not {subject}", s.digest)),
        None => return Err("it has no subject".into()),
    }
    let mut out = Vec::new();
    for (i, l) in m.layers.iter().enumerate() {
        if l.media_type != BUNDLE_MEDIA_TYPE {
            continue;
        }
        let d = Digest::parse(&l.digest)
            .map_err(|_| format!("layer {i} has a non-canonical digest {:?}", l.digest))?;
        out.push((d, l.size));
    }
    if out.is_empty() {
        let types: Vec<&str> = m.layers.iter().map(|l| l.media_type.as_str()).collect();
        return Err(format!(
            "it has no {BUNDLE_MEDIA_TYPE} layer (layers: {types:?})"
        ));
    }
    Ok(out)
}

/// Whether a bundle among `digest`'s referrers is a signature by one of `keys`. `Ok(Err(_))`
/// lists what each candidate held instead (empty when there is none); `Err` is a refusal of
/// the listing itself (hostile or unavailable), which stops the check: fail closed.
pub async fn verify_referrers<R: Registry>(
    registry: &R,
    digest: &Digest,
    keys: &[CosignKey],
    limits: &CosignLimits,
) -> Result<Result<KeyVerified, Vec<String>>, CosignRefusal> {
    check_referrers(registry, digest, limits, |bundle| {
        verify_bundle(digest, bundle, keys, PredicateRule::CosignSign)
    })
    .await
}

/// As [`verify_referrers`], with `check` deciding each bundle (keyed or keyless).
pub async fn check_referrers<R: Registry, P>(
    registry: &R,
    digest: &Digest,
    limits: &CosignLimits,
    check: impl Fn(&[u8]) -> Result<P, BundleProblem>,
) -> Result<Result<P, Vec<String>>, CosignRefusal> {
    let mut problems = Vec::new();
    for entry in discover(registry, digest, limits).await? {
        let name = format!("referrer {}", entry.digest);
        if entry.size > limits.signature_manifest_max_bytes {
            problems.push(format!(
                "{name}: manifest of {} bytes is over the {}-byte limit",
                entry.size, limits.signature_manifest_max_bytes
            ));
            continue;
        }
        let manifest = match registry
            .manifest(&entry.digest.to_string(), entry.size)
            .await
        {
            Ok(m) => m,
            Err(FetchError::Unavailable { reason }) => {
                return Err(CosignRefusal::Unavailable {
                    digest: *digest,
                    reason,
                })
            }
            Err(e) => {
                problems.push(format!("{name}: manifest unreadable ({e:?})"));
                continue;
            }
        };
        // The index's digest is the registry's word; the bytes must match it.
        let actual = Digest::sha256_of(&manifest);
        if actual != entry.digest {
            problems.push(format!("{name}: its manifest hashes to {actual}"));
            continue;
        }
        let layers = match bundle_layers(&manifest, digest) {
            Ok(l) => l,
            Err(e) => {
                problems.push(format!("{name}: {e}"));
                continue;
            }
        };
        for (layer, size) in layers {
            if size > limits.bundle_max_bytes {
                problems.push(format!(
                    "{name}: bundle {layer} of {size} bytes is over the {}-byte limit",
                    limits.bundle_max_bytes
                ));
                continue;
            }
            let bundle = match registry.blob(&layer, size).await {
                Ok(b) => b,
                Err(FetchError::Unavailable { reason }) => {
                    return Err(CosignRefusal::Unavailable {
                        digest: *digest,
                        reason,
                    })
                }
                Err(e) => {
                    problems.push(format!("{name}: bundle {layer} unreadable ({e:?})"));
                    continue;
                }
            };
            let actual = Digest::sha256_of(&bundle);
            if actual != layer {
                problems.push(format!(
                    "{name}: bundle blob hashes to {actual}, its descriptor says {layer}"
                ));
                continue;
            }
            match check(&bundle) {
                Ok(k) => return Ok(Ok(k)),
                Err(p) => problems.push(format!("{name}: {p}")),
            }
        }
    }
    Ok(Err(problems))
}

#[cfg(test)]
mod tests {
    use super::next_page;
    use crate::registry::Digest;

    #[test]
    fn link_headers_are_followed_only_to_the_same_listing() {
        let d = Digest::sha256_of(b"x");
        let ok = format!("</v2/a/b/referrers/{d}?n=10&last=x>; rel=\"next\"");
        assert_eq!(
            next_page(&ok, &d).unwrap().as_deref(),
            Some(&ok[1..ok.find('>').unwrap()])
        );
        let abs = format!("<https://r.io/v2/a/referrers/{d}?last=y>; rel=\"next\"");
        assert_eq!(
            next_page(&abs, &d).unwrap().unwrap(),
            format!("/v2/a/referrers/{d}?last=y")
        );
        assert_eq!(next_page("</v2/a/tags/list>; rel=\"prev\"", &d), Ok(None));
        let other = Digest::sha256_of(b"y");
        for lie in [
            format!("</v2/a/referrers/{other}>; rel=\"next\""),
            "</v2/a/blobs/uploads/>; rel=\"next\"".to_string(),
            "garbage".to_string(),
        ] {
            assert!(next_page(&lie, &d).is_err(), "{lie}");
        }
    }
}
