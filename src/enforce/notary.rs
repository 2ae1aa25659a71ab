//! The Notary v1 (Docker Content Trust) verifier of a rule: `trust` resolves the tag through
//! verified metadata (cached per tag, single-flight, never past the metadata's expiry); the
//! result becomes one verifier's [`Verified`] or [`Refusal`].

use time::OffsetDateTime;

use super::trust_pool::PoolError;
use super::{Enforcer, ResolveError};
use crate::cache::TagKey;
use crate::metrics::DecisionReason;
use crate::policy::{NotaryVerifier, RoleRequirement};
use crate::signatures::{Refusal, Verified};
use crate::trust::{RefusalReason, TrustClient, TrustError, VerifiedTarget};

impl Enforcer {
    pub(super) async fn notary(
        &self,
        name: &str,
        req: &NotaryVerifier,
        registry: &str,
        repository: &str,
        tag: &str,
    ) -> Result<Verified, Refusal> {
        let refuse = |reason, message, unavailable| Refusal {
            verifier: name.to_string(),
            reason,
            message,
            unavailable,
        };
        // Clients built before a policy reload are rebuilt (credentials, CA file contents).
        self.pool.sync(self.policy.generation());
        let (fingerprint, client) = match self.pool.client(req) {
            Ok(c) => c,
            Err(PoolError::State(e)) => {
                // The detail (path, errno) is for the operator, not the client (D13).
                tracing::error!(error = %e, "trust state directory unusable");
                return Err(trust_refusal(name, tag, req.roles(), &e));
            }
            Err(e) => {
                let e = TrustError::Refused {
                    file: "-".to_string(),
                    reason: e.to_string(),
                };
                return Err(trust_refusal(name, tag, req.roles(), &e));
            }
        };
        let gun = req.gun(registry, repository);
        let key = TagKey {
            trust_server: req.trust_server().url().to_string(),
            verifier: fingerprint,
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
            Ok(t) => Ok(Verified::from_notary(name, &t)),
            Err(e) => match e.as_ref() {
                ResolveError::Trust(t) => {
                    if let TrustError::Store { .. } = t {
                        tracing::error!(error = %t, "trust state could not be read or written");
                    }
                    if t.reason() == RefusalReason::Unreachable {
                        self.metrics.record_upstream_error(
                            crate::metrics::Upstream::TrustServer,
                            crate::metrics::UpstreamFailure::Connect,
                        );
                    }
                    Err(trust_refusal(name, tag, req.roles(), t))
                }
                ResolveError::RolesDisagree(d) => Err(refuse(
                    DecisionReason::SignedByUnacceptedRole,
                    d.clone(),
                    false,
                )),
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

/// A trust failure in words for the person who pulled.
fn trust_refusal(verifier: &str, tag: &str, roles: &RoleRequirement, e: &TrustError) -> Refusal {
    let (reason, unavailable) = match e.reason() {
        RefusalReason::NoTrustData => (DecisionReason::NoTrustData, false),
        RefusalReason::TagNotSigned => (DecisionReason::TagNotSigned, false),
        RefusalReason::TagRevoked => (DecisionReason::TagRevoked, false),
        RefusalReason::SignedByUnacceptedRole => (DecisionReason::SignedByUnacceptedRole, false),
        RefusalReason::Expired => (DecisionReason::Expired, false),
        RefusalReason::SignatureInvalid => (DecisionReason::SignatureInvalid, false),
        RefusalReason::Unreachable => (DecisionReason::TrustUnreachable, true),
        // trustgate's own state could not be read or written (full disk, damaged file): a
        // fault on this host, never a verdict on the image, and its detail (a local path,
        // an errno) is for the log only (PROXY-REVIEW D13).
        RefusalReason::Other if matches!(e, TrustError::Store { .. }) => {
            return Refusal {
                verifier: verifier.to_string(),
                reason: DecisionReason::TrustStateError,
                message: "trustgate could not read or write its stored trust data (a fault on the trustgate host, not a verdict on the image; see its log)".to_string(),
                unavailable: true,
            };
        }
        RefusalReason::Other => (DecisionReason::Other, false),
    };
    let what = match reason {
        DecisionReason::NoTrustData => "the repository has no trust data (it was never signed)".to_string(),
        DecisionReason::TagNotSigned => format!("tag {tag} is not signed by any accepted role ({roles})"),
        DecisionReason::TagRevoked => format!("tag {tag} was revoked by its publisher"),
        DecisionReason::SignedByUnacceptedRole => {
            format!("tag {tag} is signed only by a role the policy does not accept (accepted: {roles})")
        }
        DecisionReason::Expired => "the trust data has expired".to_string(),
        DecisionReason::SignatureInvalid => "the trust data failed verification".to_string(),
        DecisionReason::TrustUnreachable => {
            "the trust server is unreachable and no still-valid verified trust data is held (fail closed)".to_string()
        }
        DecisionReason::Ok
        | DecisionReason::PolicyReject
        | DecisionReason::DigestNotTrusted
        | DecisionReason::ContentMismatch
        | DecisionReason::TrustStateError
        | DecisionReason::Other => "trust could not be established".to_string(),
    };
    Refusal {
        verifier: verifier.to_string(),
        reason,
        message: format!("{what}: {e}"),
        unavailable,
    }
}
