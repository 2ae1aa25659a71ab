//! A Notation configuration directory as the CLI keeps it (`$NOTATION_CONFIG`, by default
//! `~/.config/notation`): `trustpolicy.oci.json` (or `trustpolicy.json`) next to
//! `truststore/`. Loading it validates the policy and every trust store it names, so a bad
//! file fails at start-up, not at the first pull. This is the entry point the enforce layer
//! calls once the shared policy model names a Notation verifier for a scope.

use std::path::Path;
use std::sync::Arc;

use time::OffsetDateTime;

use super::policy::{load_from_config_dir, Action, Level, StoreType, TrustPolicy};
use super::revocation::CrlSet;
use super::truststore::TrustStore;
use super::verify::{verify_signature, Refusal, Request, Verified};
use super::TargetDescriptor;

#[derive(Debug, Clone)]
pub struct NotationConfig {
    pub policy: TrustPolicy,
    pub store: TrustStore,
    /// The CRLs revocation is checked against (the verifier's `crl_dir`, a trustgate setting:
    /// the Notation CLI has no such file, it downloads CRLs).
    pub crls: Option<Arc<CrlSet>>,
}

impl NotationConfig {
    /// Loads `dir`, with the CRLs of the verifier's `crl_dir` ([`CrlSet::load`]). A statement whose level or override
    /// enforces revocation needs CRLs: without them every signature it governs would be of
    /// unknown status and refused, which is a configuration error better reported now.
    pub fn load(dir: &Path, crls: Option<Arc<CrlSet>>) -> Result<Self, String> {
        let policy = load_from_config_dir(dir).map_err(|e| e.to_string())?;
        let store =
            TrustStore::load(&dir.join("truststore"), &policy).map_err(|e| e.to_string())?;
        if crls.is_none() {
            if let Some(st) = policy.statements.iter().find(|st| {
                st.level != Level::Skip && st.action(super::Check::Revocation) == Action::Enforce
            }) {
                return Err(format!(
                    "{}: trust policy statement {:?} (level {}) enforces revocation, and trustgate checks revocation only against CRL files: set crl_dir on the verifier, or override revocation to \"log\" or \"skip\" in the statement",
                    policy.source,
                    st.name,
                    st.level.name()
                ));
            }
        }
        Ok(NotationConfig {
            policy,
            store,
            crls,
        })
    }

    /// The certificate thumbprints that can vouch for a signature in `scope` (its statement's
    /// `ca` and `signingAuthority` stores), for [`super::discover::candidates`]. Empty when no
    /// statement applies or the statement is `skip`.
    pub fn thumbprints(&self, scope: &str) -> Vec<String> {
        match self.policy.applicable(scope) {
            Ok(st) => self
                .store
                .thumbprints(st.trust_stores.iter().filter(|r| r.kind != StoreType::Tsa)),
            Err(_) => Vec::new(),
        }
    }

    pub fn verify(
        &self,
        target: &TargetDescriptor,
        scope: &str,
        envelope: &[u8],
        envelope_media_type: &str,
        now: OffsetDateTime,
    ) -> Result<Verified, Refusal> {
        verify_signature(&Request {
            target,
            envelope,
            envelope_media_type,
            policy: &self.policy,
            store: &self.store,
            scope,
            now,
            crls: self.crls.as_deref(),
        })
    }
}
