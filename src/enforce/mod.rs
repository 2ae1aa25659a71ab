//! Enforcement: joins the policy and the verifiers for one pull.
//!
//! For a tag: `policy.decide` names the rule; for a `signed` rule each of its verifiers is
//! asked — Notary v1 resolves the tag through verified trust data (`notary.rs`), cosign checks
//! the signatures of the digest the tag resolves to at the upstream (`cosign.rs`) — and their
//! answers are combined as the rule says (`signatures::none_vouched` / `all_agree`) into one
//! [`crate::signatures::Verified`]; `policy::judge_tag` turns that into a verdict. For a
//! digest: `policy::judge_digest`, which for `digest_pulls = "signed-only"` asks whether the
//! digest was reached through a verified tag — recorded here when signed manifests are served
//! (the manifest itself, the child manifests of an index, its config and layers).

mod cosign;
mod notary;
mod notation;
mod reached;
mod trust_pool;

use std::sync::Arc;
use std::time::Duration;

use crate::cache::{TagCache, TagCacheSettings};
use crate::cosign::fetch::Registry;
use crate::metrics::{Metrics, VerificationResult, VerifierSystem};
use crate::policy::{
    judge_digest, judge_listing, judge_tag, signed_requirement, Combine, Decision, PolicyHandle,
    SignatureOutcome, SignedRequirement, TagVerdict, VerifierKind,
};
use crate::signatures;
use crate::trust::{TrustError, VerifiedTarget};
pub use trust_pool::{
    server_identity, server_key, PoolError, TrustExpiry, TrustPool, DEFAULT_MAX_TRUST_UPDATES,
};

/// Why a resolution failed, shared between the callers that waited on it.
#[derive(Debug, Clone)]
enum ResolveError {
    Trust(TrustError),
    RolesDisagree(String),
}

pub struct Enforcer {
    pub policy: Arc<PolicyHandle>,
    pool: TrustPool,
    tags: TagCache<VerifiedTarget>,
    /// `registry/repository@digest` of everything reached through a verified tag.
    reached: reached::ReachedSet,
    cosign: cosign::CosignResults,
    pub metrics: Arc<Metrics>,
}

/// How long content reached through a signed tag stays servable under `signed-only`
/// without the tag being pulled again.
const REACHED_TTL: Duration = Duration::from_secs(24 * 3600);

impl Enforcer {
    /// Verified tag results held in memory (for the cache-size gauge).
    pub fn tag_entries(&self) -> u64 {
        self.tags.entry_count()
    }

    pub fn new(
        policy: Arc<PolicyHandle>,
        state_dir: std::path::PathBuf,
        cache: TagCacheSettings,
        metrics: Arc<Metrics>,
    ) -> Enforcer {
        Enforcer {
            policy,
            pool: TrustPool::new(state_dir.clone()),
            tags: TagCache::new(cache, |t: &VerifiedTarget| t.expires()),
            reached: reached::ReachedSet::new(state_dir.join("reached"), REACHED_TTL),
            cosign: cosign::CosignResults::new(),
            metrics,
        }
    }

    /// At most `n` trust updates in flight at once (`limits.max_trust_updates`).
    pub fn with_max_trust_updates(mut self, n: usize) -> Enforcer {
        self.pool = self.pool.with_max_updates(n);
        self
    }

    /// Expiry early warning over the held trust data ([`TrustPool::expiry`]).
    pub fn trust_expiry(&self) -> TrustExpiry {
        self.pool.expiry()
    }

    pub fn decide(&self, registry: &str, repository: &str) -> Decision {
        self.policy.current().decide(registry, repository)
    }

    /// The verdict on a pull of `registry/repository:tag`; `upstream` reads the repository
    /// for verifiers that look at the registry (cosign).
    pub async fn tag<R: Registry>(
        &self,
        registry: &str,
        repository: &str,
        tag: &str,
        upstream: &R,
    ) -> (Decision, TagVerdict) {
        let generation = self.policy.generation();
        let decision = self.decide(registry, repository);
        let outcome = match signed_requirement(&decision) {
            None => None,
            Some(req) => Some(
                self.signatures(req, generation, registry, repository, tag, upstream)
                    .await,
            ),
        };
        let verdict = judge_tag(&decision, outcome);
        (decision, verdict)
    }

    /// Asks the rule's verifiers in order: `any_of` stops at the first that vouches,
    /// `all_of` at the first that does not.
    async fn signatures<R: Registry>(
        &self,
        req: &SignedRequirement,
        generation: u64,
        registry: &str,
        repository: &str,
        tag: &str,
        upstream: &R,
    ) -> SignatureOutcome {
        // The tag's digest at the upstream, resolved at most once per pull.
        let resolved = tokio::sync::OnceCell::new();
        let total = req.verifiers().len();
        let mut proofs = Vec::new();
        let mut refusals = Vec::new();
        for v in req.verifiers() {
            let asked = std::time::Instant::now();
            let answer = match v.kind() {
                VerifierKind::Notary(n) => {
                    self.notary(v.name(), n, registry, repository, tag).await
                }
                VerifierKind::Cosign(c) => {
                    let digest = resolved.get_or_init(|| upstream.resolve_tag(tag)).await;
                    self.cosign(v.name(), generation, c, tag, digest, upstream)
                        .await
                }
                VerifierKind::Notation(n) => {
                    let digest = resolved.get_or_init(|| upstream.resolve_tag(tag)).await;
                    self.notation(v.name(), n, registry, repository, tag, digest, upstream)
                        .await
                }
            };
            let system = match v.kind() {
                VerifierKind::Notary(_) => VerifierSystem::Notary,
                VerifierKind::Cosign(_) => VerifierSystem::Cosign,
                VerifierKind::Notation(_) => VerifierSystem::Notation,
            };
            let result = match &answer {
                Ok(_) => VerificationResult::Verified,
                Err(r) if r.unavailable => VerificationResult::Unavailable,
                Err(_) => VerificationResult::Refused,
            };
            self.metrics.record_verification(system, result);
            self.metrics.observe_verification(system, asked.elapsed());
            match (req.combine(), answer) {
                (Combine::AnyOf, Ok(p)) => return Ok(p),
                (Combine::AnyOf, Err(r)) => refusals.push(r),
                (Combine::AllOf, Ok(p)) => proofs.push(p),
                (Combine::AllOf, Err(r)) => return Err(signatures::one_refused(total, r)),
            }
        }
        match req.combine() {
            Combine::AnyOf => Err(signatures::none_vouched(refusals)),
            Combine::AllOf => signatures::all_agree(proofs),
        }
    }

    /// The verdict on a pull of `registry/repository@digest` (manifest or blob).
    pub async fn digest(
        &self,
        registry: &str,
        repository: &str,
        digest: &str,
    ) -> (Decision, TagVerdict) {
        let decision = self.decide(registry, repository);
        let reached = self
            .reached
            .contains(&reached_key(registry, repository, digest))
            .await;
        let verdict = judge_digest(&decision, digest, reached);
        (decision, verdict)
    }

    /// The verdict on a listing of `registry/repository` (`tags/list`, `referrers`).
    pub fn listing(&self, registry: &str, repository: &str) -> (Decision, TagVerdict) {
        let decision = self.decide(registry, repository);
        let verdict = judge_listing(&decision);
        (decision, verdict)
    }

    /// Records that `digest` (a manifest served through a verified tag, or served because it
    /// was reached from one) and everything it references may be pulled by digest.
    pub async fn mark_reached(
        &self,
        registry: &str,
        repository: &str,
        digest: &str,
        manifest: &[u8],
    ) {
        self.reached
            .mark(reached_key(registry, repository, digest))
            .await;
        for child in referenced_digests(manifest) {
            self.reached
                .mark(reached_key(registry, repository, &child))
                .await;
        }
    }

    /// Records exactly `digests` as reached (no children): what a served signature artifact
    /// names, whose own references must not vouch for anything.
    pub async fn mark_reached_exactly(&self, registry: &str, repository: &str, digests: &[String]) {
        for d in digests {
            self.reached
                .mark(reached_key(registry, repository, d))
                .await;
        }
    }

    /// Deletes reached records past their TTL ([`reached::ReachedSet::sweep`]); blocking.
    pub fn sweep_reached(&self) -> usize {
        self.reached.sweep()
    }

    /// Whether `digest` was reached through a verified tag.
    pub async fn was_reached(&self, registry: &str, repository: &str, digest: &str) -> bool {
        self.reached
            .contains(&reached_key(registry, repository, digest))
            .await
    }
}

fn reached_key(registry: &str, repository: &str, digest: &str) -> String {
    format!("{registry}/{repository}@{digest}")
}

/// Digests a manifest *contains*: an index's or manifest list's `manifests`, an image
/// manifest's `config` and `layers`. Docker's schema2 manifest and manifest list have the same
/// shape as their OCI counterparts, so oci-spec's types read both. What a signed manifest
/// contains is vouched for by the signature over its bytes; what does not parse contributes
/// nothing (fail closed for `signed-only`).
///
/// Never `subject` (OCI image-spec, manifest.md "subject"; an index's too): that edge points
/// from an artifact (signature, SBOM, scan report) to the image it *describes*, which anyone
/// may publish about any image. Following it would let a signed report make an unsigned image
/// pullable by digest.
pub fn referenced_digests(manifest: &[u8]) -> Vec<String> {
    use oci_spec::image::{ImageIndex, ImageManifest};
    if let Ok(m) = ImageManifest::from_reader(manifest) {
        let mut out = vec![m.config().digest().to_string()];
        out.extend(m.layers().iter().map(|l| l.digest().to_string()));
        return out;
    }
    if let Ok(i) = ImageIndex::from_reader(manifest) {
        return i
            .manifests()
            .iter()
            .map(|d| d.digest().to_string())
            .collect();
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn referenced_digests_of_index_and_manifest() {
        let [a, b, c, d] = ["a", "b", "c", "d"].map(|x| format!("sha256:{}", x.repeat(64)));
        let desc =
            |mt: &str, dg: &str| format!(r#"{{"mediaType":"{mt}","size":1,"digest":"{dg}"}}"#);
        let m2 = "application/vnd.docker.distribution.manifest.v2+json";
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[{},{}]}}"#,
            desc(m2, &a),
            desc(m2, &b)
        );
        assert_eq!(
            referenced_digests(index.as_bytes()),
            vec![a.clone(), b.clone()]
        );
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{m2}","config":{},"layers":[{}]}}"#,
            desc("application/vnd.docker.container.image.v1+json", &c),
            desc("application/vnd.docker.image.rootfs.diff.tar.gzip", &d)
        );
        assert_eq!(
            referenced_digests(manifest.as_bytes()),
            vec![c.clone(), d.clone()]
        );
        assert!(referenced_digests(b"not json").is_empty());
        // An artifact's subject is what it describes, not what it contains.
        let oci = "application/vnd.oci.image.manifest.v1+json";
        let artifact = format!(
            r#"{{"schemaVersion":2,"mediaType":"{oci}","artifactType":"application/vnd.example.report","config":{},"layers":[{}],"subject":{}}}"#,
            desc("application/vnd.oci.empty.v1+json", &c),
            desc("application/vnd.example.report", &d),
            desc(oci, &a)
        );
        assert_eq!(referenced_digests(artifact.as_bytes()), vec![c.clone(), d]);
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{}],"subject":{}}}"#,
            desc(oci, &b),
            desc(oci, &a)
        );
        assert_eq!(referenced_digests(index.as_bytes()), vec![b]);
    }
}
