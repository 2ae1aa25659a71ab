//! Enforcement: joins the policy and the trust client for one pull.
//!
//! For a tag: `policy.decide` names the rule; for a `signed` rule the tag is resolved through
//! verified trust data (cached per tag, single-flight, never past the metadata's expiry) to
//! the digest its publisher signed; `policy::judge_tag` turns that into a verdict. For a
//! digest: `policy::judge_digest`, which for `digest_pulls = "signed-only"` asks whether the
//! digest was reached through a verified tag — recorded here when signed manifests are served
//! (the manifest itself, the child manifests of an index, its config and layers).

mod reached;
mod trust_pool;

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use crate::cache::{TagCache, TagCacheSettings, TagKey};
use crate::metrics::Metrics;
use crate::policy::{
    judge_digest, judge_tag, signed_requirement, Decision, PolicyHandle, RoleRequirement,
    SignedRequirement, TagVerdict, TrustOutcome,
};
use crate::trust::{TrustClient, TrustError, VerifiedTarget};
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
    pub metrics: Arc<Metrics>,
}

/// How long content reached through a signed tag stays servable under `signed-only`
/// without the tag being pulled again.
const REACHED_TTL: Duration = Duration::from_secs(24 * 3600);

impl Enforcer {
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

    /// [`Enforcer::trust_expiry`] in the Prometheus text format: two gauges, the minimum over
    /// every GUN and the minimum per trust server (labels bounded by the policy's servers).
    pub fn trust_expiry_exposition(&self) -> String {
        use std::fmt::Write as _;
        let e = self.trust_expiry();
        let mut out = String::new();
        out.push_str("# HELP trustgate_trust_expiry_seconds Seconds until the earliest expiry of held trust data (timestamp, snapshot, targets, delegations, root, root certificates) over every GUN.\n# TYPE trustgate_trust_expiry_seconds gauge\n");
        if let Some(s) = e.earliest {
            let _ = writeln!(out, "trustgate_trust_expiry_seconds {s}");
        }
        out.push_str("# HELP trustgate_trust_server_expiry_seconds As trustgate_trust_expiry_seconds, per trust server.\n# TYPE trustgate_trust_server_expiry_seconds gauge\n");
        for (server, s) in &e.per_server {
            let _ = writeln!(
                out,
                "trustgate_trust_server_expiry_seconds{{trust_server=\"{}\"}} {s}",
                server.replace(['\\', '"', '\n'], "_")
            );
        }
        out
    }

    pub fn decide(&self, registry: &str, repository: &str) -> Decision {
        self.policy.current().decide(registry, repository)
    }

    /// The verdict on a pull of `registry/repository:tag`.
    pub async fn tag(&self, registry: &str, repository: &str, tag: &str) -> (Decision, TagVerdict) {
        let decision = self.decide(registry, repository);
        let outcome = match signed_requirement(&decision) {
            None => None,
            Some(req) => Some(self.resolve(req, registry, repository, tag).await),
        };
        let verdict = judge_tag(&decision, tag, outcome);
        (decision, verdict)
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

    /// Whether `digest` was reached through a verified tag.
    pub async fn was_reached(&self, registry: &str, repository: &str, digest: &str) -> bool {
        self.reached
            .contains(&reached_key(registry, repository, digest))
            .await
    }

    async fn resolve(
        &self,
        req: &SignedRequirement,
        registry: &str,
        repository: &str,
        tag: &str,
    ) -> TrustOutcome {
        self.pool.sync(self.policy.generation());
        let (client, verifier) = match self.pool.client_and_key(req) {
            Ok(c) => c,
            Err(e) => {
                return TrustOutcome::Failed(TrustError::Refused {
                    file: "-".to_string(),
                    reason: e.to_string(),
                })
            }
        };
        let gun = req.gun(registry, repository);
        let key = TagKey {
            trust_server: req.trust_server().url().to_string(),
            verifier,
            gun: gun.clone(),
            tag: tag.to_string(),
            roles: req.roles().roles().to_vec(),
            all_roles_required: matches!(req.roles(), RoleRequirement::AllOf(_)),
        };
        let roles = req.roles().clone();
        let tag_owned = tag.to_string();
        let resolver = move || {
            let (client, gun, tag, roles) = (
                client.clone(),
                gun.clone(),
                tag_owned.clone(),
                roles.clone(),
            );
            async move { resolve_roles(&client, &gun, &tag, &roles).await }
        };
        let cached_before = self.tags.get(&key).await.is_some();
        self.metrics.record_trust_cache(cached_before);
        match self.tags.get_or_refresh(key, resolver).await {
            Ok(t) => TrustOutcome::Verified(t),
            Err(e) => match e.as_ref() {
                ResolveError::Trust(t) => {
                    if t.reason() == crate::trust::RefusalReason::Unreachable {
                        self.metrics.record_upstream_error(
                            crate::metrics::Upstream::TrustServer,
                            crate::metrics::UpstreamFailure::Connect,
                        );
                    }
                    TrustOutcome::Failed(t.clone())
                }
                ResolveError::RolesDisagree(d) => TrustOutcome::RolesDisagree { detail: d.clone() },
            },
        }
    }
}

async fn resolve_roles(
    client: &TrustClient,
    gun: &str,
    tag: &str,
    roles: &RoleRequirement,
) -> Result<VerifiedTarget, ResolveError> {
    match roles {
        RoleRequirement::FirstOf(roles) => client
            .resolve(gun, tag, roles)
            .await
            .map_err(ResolveError::Trust),
        RoleRequirement::AllOf(roles) => {
            let repo = client.repo(gun).await.map_err(ResolveError::Trust)?;
            let now: OffsetDateTime = client.now();
            let mut first: Option<VerifiedTarget> = None;
            for role in roles {
                let t = repo
                    .lookup_in_role(tag, role, now)
                    .map_err(ResolveError::Trust)?;
                match &first {
                    None => first = Some(t),
                    Some(f) if f.digest() == t.digest() && f.length() == t.length() => {}
                    Some(f) => {
                        return Err(ResolveError::RolesDisagree(format!(
                            "roles disagree on tag {tag}: {} signed {} but {} signed {}; every one of [{}] must sign the same digest",
                            f.role(),
                            f.digest(),
                            t.role(),
                            t.digest(),
                            roles.join(", ")
                        )))
                    }
                }
            }
            first.ok_or_else(|| {
                ResolveError::Trust(TrustError::TagNotSigned {
                    gun: gun.to_string(),
                    tag: tag.to_string(),
                })
            })
        }
    }
}

fn reached_key(registry: &str, repository: &str, digest: &str) -> String {
    format!("{registry}/{repository}@{digest}")
}

/// Digests a manifest references: an index's or manifest list's `manifests`, an image
/// manifest's `config`, `layers` and `subject`. Docker's schema2 manifest and manifest list
/// have the same shape as their OCI counterparts, so oci-spec's types read both. Whatever a
/// signed manifest names by digest is vouched for by the signature over its bytes; what does
/// not parse contributes nothing (fail closed for `signed-only`).
pub fn referenced_digests(manifest: &[u8]) -> Vec<String> {
    use oci_spec::image::{ImageIndex, ImageManifest};
    if let Ok(m) = ImageManifest::from_reader(manifest) {
        let mut out = vec![m.config().digest().to_string()];
        out.extend(m.layers().iter().map(|l| l.digest().to_string()));
        out.extend(m.subject().iter().map(|s| s.digest().to_string()));
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
        assert_eq!(referenced_digests(index.as_bytes()), vec![a, b]);
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{m2}","config":{},"layers":[{}]}}"#,
            desc("application/vnd.docker.container.image.v1+json", &c),
            desc("application/vnd.docker.image.rootfs.diff.tar.gzip", &d)
        );
        assert_eq!(referenced_digests(manifest.as_bytes()), vec![c, d]);
        assert!(referenced_digests(b"not json").is_empty());
    }
}
