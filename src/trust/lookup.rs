//! Docker Content Trust lookup over a verified repository (REAL-COMPONENTS "Docker Content
//! Trust semantics"; notary `client/reader.go` `GetTargetByName`, `tuf/tuf.go` `WalkTargets`,
//! docker/cli `getTrustedPullTargets`).
//!
//! For each role in priority order (default `targets/releases`, then `targets`), the role's
//! subtree is walked breadth first, skipping the other listed roles; the first role holding the
//! tag within its (parent-restricted) paths wins. Docker then accepts the result only if that
//! role is itself one of the listed roles — a tag found only in, say, `targets/ci` is refused.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use time::OffsetDateTime;

use super::errors::TrustError;
use super::roles::{LoadedRoot, LoadedSnapshot, LoadedTargets, LoadedTimestamp, TARGETS};
use super::wire::{self, FileMeta};

/// A tag's signed target. Only this module can build one: holding a `VerifiedTarget` is proof
/// that the metadata chain verified and the tag was found in an accepted role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedTarget {
    gun: String,
    tag: String,
    digest: String,
    length: u64,
    role: String,
    keyids: Vec<String>,
    expires: OffsetDateTime,
    offline: bool,
}

impl VerifiedTarget {
    pub fn gun(&self) -> &str {
        &self.gun
    }
    pub fn tag(&self) -> &str {
        &self.tag
    }
    /// `sha256:<hex of the target's sha256>`: the manifest digest to pull.
    pub fn digest(&self) -> &str {
        &self.digest
    }
    pub fn length(&self) -> u64 {
        self.length
    }
    /// The role whose metadata lists the tag.
    pub fn role(&self) -> &str {
        &self.role
    }
    /// The keyids whose signatures on that role counted toward its threshold.
    pub fn keyids(&self) -> &[String] {
        &self.keyids
    }
    /// The earliest expiry among the metadata this verdict rests on (root, timestamp,
    /// snapshot, targets and every delegation down to the signing role).
    pub fn expires(&self) -> OffsetDateTime {
        self.expires
    }
    /// True when the trust server could not be asked and this verdict rests on stored,
    /// re-verified, unexpired metadata (the proxy announces that with `Warning: 299`).
    pub fn from_stored_metadata(&self) -> bool {
        self.offline
    }
}

/// A repository's metadata, verified by one update.
#[derive(Debug, Clone)]
pub struct TrustedRepo {
    pub(crate) gun: String,
    pub(crate) root: LoadedRoot,
    pub(crate) timestamp: LoadedTimestamp,
    pub(crate) snapshot: LoadedSnapshot,
    /// `targets` and every delegation that loaded.
    pub(crate) targets: BTreeMap<String, LoadedTargets>,
    /// Delegations skipped because they expired or lacked a threshold (Notary skips them).
    pub(crate) skipped: BTreeMap<String, TrustError>,
    /// True when the trust server was unreachable and stored metadata was used.
    pub(crate) offline: bool,
    /// Per role, tags it signed before and has since dropped.
    pub(crate) revoked: BTreeMap<String, BTreeSet<String>>,
}

/// A role on the walk, with the paths its ancestors allow and the earliest expiry so far.
struct Visit<'a> {
    name: &'a str,
    paths: Vec<String>,
    expires: (OffsetDateTime, &'a str),
}

struct Found<'a> {
    role: &'a LoadedTargets,
    meta: &'a FileMeta,
    expires: (OffsetDateTime, &'a str),
}

fn earlier<'a>(
    a: (OffsetDateTime, &'a str),
    b: (OffsetDateTime, &'a str),
) -> (OffsetDateTime, &'a str) {
    if b.0 < a.0 {
        b
    } else {
        a
    }
}

impl TrustedRepo {
    pub fn gun(&self) -> &str {
        &self.gun
    }
    /// Whether this state came from storage because the trust server was unreachable.
    pub fn offline(&self) -> bool {
        self.offline
    }
    pub fn root_version(&self) -> u64 {
        self.root.version
    }
    pub fn timestamp_version(&self) -> u64 {
        self.timestamp.version
    }
    /// Loaded targets roles (`targets` and delegations), sorted.
    pub fn roles(&self) -> Vec<&str> {
        self.targets.keys().map(String::as_str).collect()
    }
    /// Delegations that were skipped, with why.
    pub fn skipped(&self) -> &BTreeMap<String, TrustError> {
        &self.skipped
    }

    fn base_expiry(&self) -> (OffsetDateTime, &str) {
        let r = (self.root.expires, "root");
        // The root's certificates bound it too (a reloaded root is refused past this).
        let c = (self.root.certs_valid_until, "root certificate");
        let t = (self.timestamp.expires, "timestamp");
        let s = (self.snapshot.expires, "snapshot");
        earlier(earlier(earlier(r, c), t), s)
    }

    /// Notary's `WalkTargets`: breadth first from `targets`; roles above `start` only lead the
    /// way down; roles in `start`'s subtree are visited if `name` is within their paths and they
    /// are not in `skip`. `visit` returns true to stop.
    fn walk<'a>(
        &'a self,
        name: Option<&str>,
        start: &str,
        skip: &[&str],
        visit: &mut dyn FnMut(&Visit<'a>, &'a LoadedTargets) -> bool,
    ) {
        let mut queue = VecDeque::from([Visit {
            name: TARGETS,
            paths: vec![String::new()],
            expires: self.base_expiry(),
        }]);
        // A role listed several times is visited once: repeated listings would otherwise
        // multiply the walk at every level.
        let mut visited = std::collections::BTreeSet::new();
        while let Some(role) = queue.pop_front() {
            if !visited.insert(role.name) {
                continue;
            }
            let Some(loaded) = self.targets.get(role.name) else {
                continue;
            };
            let expires = earlier(role.expires, (loaded.expires, loaded.role.as_str()));
            let role = Visit { expires, ..role };
            let leads_down = start
                .strip_prefix(role.name)
                .is_some_and(|r| r.starts_with('/'));
            if leads_down {
                queue.extend(children(loaded, &role));
                continue;
            }
            let in_subtree = role.name == start
                || role
                    .name
                    .strip_prefix(start)
                    .is_some_and(|r| r.starts_with('/'));
            let path_ok = name.is_none_or(|n| role.paths.iter().any(|p| n.starts_with(p.as_str())));
            if in_subtree && path_ok && !skip.contains(&role.name) {
                if visit(&role, loaded) {
                    return;
                }
                queue.extend(children(loaded, &role));
            }
        }
    }

    fn find<'a>(&'a self, tag: &str, start: &str, skip: &[&str]) -> Option<Found<'a>> {
        let mut found = None;
        self.walk(
            Some(tag),
            start,
            skip,
            &mut |visit, loaded| match loaded.targets.targets.get(tag) {
                Some(meta) => {
                    found = Some(Found {
                        role: loaded,
                        meta,
                        expires: visit.expires,
                    });
                    true
                }
                None => false,
            },
        );
        found
    }

    fn verified(
        &self,
        tag: &str,
        found: &Found<'_>,
        now: OffsetDateTime,
    ) -> Result<VerifiedTarget, TrustError> {
        let (expires, expiring_role) = found.expires;
        // A repo kept in memory may outlive its metadata: expiry is checked at every lookup.
        if now >= expires {
            return Err(TrustError::Expired {
                role: expiring_role.to_owned(),
                expires,
            });
        }
        let role = found.role.role.as_str();
        let sha256 = wire::decoded_hashes(role, found.meta)?
            .into_iter()
            .find(|(alg, _)| *alg == wire::SHA256)
            .map(|(_, h)| h)
            .ok_or_else(|| TrustError::malformed(role, format!("target {tag} has no sha256")))?;
        Ok(VerifiedTarget {
            gun: self.gun.clone(),
            tag: tag.to_owned(),
            digest: format!("sha256:{}", hex::encode(sha256)),
            length: wire::meta_length(role, found.meta)?,
            role: role.to_owned(),
            keyids: found.role.signers.clone(),
            expires,
            offline: self.offline,
        })
    }

    /// Docker's lookup: the tag from the first of `roles` (priority order) whose subtree signs
    /// it, accepted only if the signing role is one of `roles`. No roles means Docker's
    /// default, `targets/releases` then `targets`.
    pub fn lookup(
        &self,
        tag: &str,
        roles: &[String],
        now: OffsetDateTime,
    ) -> Result<VerifiedTarget, TrustError> {
        let names = role_names(roles);
        for role in &names {
            let skip: Vec<&str> = names.iter().copied().filter(|r| r != role).collect();
            if let Some(found) = self.find(tag, role, &skip) {
                if !names.contains(&found.role.role.as_str()) {
                    return Err(TrustError::SignedOnlyByOtherRole {
                        tag: tag.to_owned(),
                        roles: vec![found.role.role.clone()],
                    });
                }
                return self.verified(tag, &found, now);
            }
        }
        Err(self.why_not_found(tag, &names))
    }

    /// The tag as signed by exactly `role` (for policies that require several roles to have
    /// signed the same digest).
    pub fn lookup_in_role(
        &self,
        tag: &str,
        role: &str,
        now: OffsetDateTime,
    ) -> Result<VerifiedTarget, TrustError> {
        match self.find(tag, role, &[]) {
            Some(found) if found.role.role == role => self.verified(tag, &found, now),
            _ => Err(self.why_not_found(tag, &[role])),
        }
    }

    /// The most precise reason a tag is not trusted from `roles`.
    fn why_not_found(&self, tag: &str, roles: &[&str]) -> TrustError {
        // A role listing the tag outside its delegated paths: the publisher's delegation
        // forbids it (`DelegationRole.CheckPaths`).
        let holders: Vec<&LoadedTargets> = self
            .targets
            .values()
            .filter(|t| t.targets.targets.contains_key(tag))
            .collect();
        if let Some(violator) = holders.iter().find(|t| roles.contains(&t.role.as_str())) {
            return TrustError::DelegationPathViolation {
                role: violator.role.clone(),
                target: tag.to_owned(),
            };
        }
        for role in roles {
            if let Some(err) = self.skipped.get(*role) {
                return err.clone();
            }
        }
        for role in roles {
            if self
                .revoked
                .get(*role)
                .is_some_and(|tags| tags.contains(tag))
            {
                return TrustError::TagRevoked {
                    gun: self.gun.clone(),
                    tag: tag.to_owned(),
                    role: (*role).to_owned(),
                };
            }
        }
        if !holders.is_empty() {
            return TrustError::SignedOnlyByOtherRole {
                tag: tag.to_owned(),
                roles: holders.iter().map(|t| t.role.clone()).collect(),
            };
        }
        TrustError::TagNotSigned {
            gun: self.gun.clone(),
            tag: tag.to_owned(),
        }
    }

    /// Every tag trusted from `roles`, first role wins (like `notary list` / `docker trust
    /// inspect`, restricted to the accepted roles). Entries whose metadata is unusable (no
    /// sha256) are left out.
    pub fn list(
        &self,
        roles: &[String],
        now: OffsetDateTime,
    ) -> Result<Vec<VerifiedTarget>, TrustError> {
        let names = role_names(roles);
        let mut seen: BTreeMap<&str, VerifiedTarget> = BTreeMap::new();
        for role in &names {
            let skip: Vec<&str> = names.iter().copied().filter(|r| r != role).collect();
            let mut hits: Vec<Found<'_>> = Vec::new();
            let mut tags: Vec<&str> = Vec::new();
            self.walk(None, role, &skip, &mut |visit, loaded| {
                if names.contains(&loaded.role.as_str()) {
                    for (tag, meta) in &loaded.targets.targets {
                        if visit.paths.iter().any(|p| tag.starts_with(p.as_str())) {
                            tags.push(tag.as_str());
                            hits.push(Found {
                                role: loaded,
                                meta,
                                expires: visit.expires,
                            });
                        }
                    }
                }
                false
            });
            for (tag, found) in tags.into_iter().zip(hits) {
                if seen.contains_key(tag) {
                    continue;
                }
                match self.verified(tag, &found, now) {
                    Ok(v) => {
                        seen.insert(tag, v);
                    }
                    Err(e @ TrustError::Expired { .. }) => return Err(e),
                    Err(_) => {}
                }
            }
        }
        Ok(seen.into_values().collect())
    }
}

/// A role's delegations, each limited to the paths its parent allows (`RestrictChild`: a
/// child path survives only if it starts with one of the parent's paths).
fn children<'a>(loaded: &'a LoadedTargets, parent: &Visit<'a>) -> Vec<Visit<'a>> {
    let Some(delegations) = &loaded.targets.delegations else {
        return Vec::new();
    };
    delegations
        .roles
        .iter()
        .map(|child| Visit {
            name: child.name.as_str(),
            paths: child
                .paths
                .iter()
                .filter(|p| parent.paths.iter().any(|pp| p.starts_with(pp.as_str())))
                .cloned()
                .collect(),
            expires: parent.expires,
        })
        .collect()
}

/// The roles to consult; none given means Docker's default.
fn role_names(roles: &[String]) -> Vec<&str> {
    if roles.is_empty() {
        super::client::DEFAULT_ROLES.to_vec()
    } else {
        roles.iter().map(String::as_str).collect()
    }
}
