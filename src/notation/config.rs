//! A Notation configuration directory as the CLI keeps it (`$NOTATION_CONFIG`, by default
//! `~/.config/notation`): `trustpolicy.oci.json` (or `trustpolicy.json`) next to
//! `truststore/`. Loading it validates the policy and every trust store it names, so a bad
//! file fails at start-up, not at the first pull. This is the entry point the enforce layer
//! calls once the shared policy model names a Notation verifier for a scope.

use std::path::Path;

use time::OffsetDateTime;

use super::policy::{load_from_config_dir, StoreType, TrustPolicy};
use super::truststore::TrustStore;
use super::verify::{verify_signature, Refusal, Request, Verified};
use super::TargetDescriptor;

#[derive(Debug, Clone)]
pub struct NotationConfig {
    pub policy: TrustPolicy,
    pub store: TrustStore,
}

impl NotationConfig {
    pub fn load(dir: &Path) -> Result<Self, String> {
        let policy = load_from_config_dir(dir).map_err(|e| e.to_string())?;
        let store =
            TrustStore::load(&dir.join("truststore"), &policy).map_err(|e| e.to_string())?;
        Ok(NotationConfig { policy, store })
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
        })
    }
}
