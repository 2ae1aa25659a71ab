//! One [`TrustClient`] per (trust server, pinning) pair that the policy names, built on first
//! use. Each pair keeps its own persisted state directory, so a rule that pins a root never
//! inherits a root that another rule trusted on first use.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use sha2::{Digest as _, Sha256};

use crate::policy::{NotaryVerifier, TrustPinning as PolicyPinning};
use crate::trust::fetch::{settings_for, HttpMetadataSource};
use crate::trust::{CertPin, TrustClient, TrustPinning, TrustSettings};

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("trust server {server}: {reason}")]
    Settings { server: String, reason: String },
    /// The client's state directory could not be opened (a local fault).
    #[error(transparent)]
    State(crate::trust::TrustError),
}

pub struct TrustPool {
    state_dir: PathBuf,
    clients: Mutex<HashMap<String, Arc<TrustClient>>>,
}

impl TrustPool {
    pub fn new(state_dir: PathBuf) -> TrustPool {
        TrustPool {
            state_dir,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The client for `req`'s trust server and pinning, and its fingerprint (which names its
    /// state directory, and keys the results it verifies).
    pub fn client(&self, req: &NotaryVerifier) -> Result<(String, Arc<TrustClient>), PoolError> {
        let server = req.trust_server();
        let pinning = convert_pinning(req.pinning());
        let key = fingerprint(server.url().as_str(), &pinning);
        // The state directory depends on server and pinning only (changing a timeout must not
        // reset trust); the client also on the deadline it enforces.
        let client_key = format!("{key}/{:?}", server.trust_timeout());
        let mut clients = match self.clients.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(c) = clients.get(&client_key) {
            return Ok((key, c.clone()));
        }
        let bad = |reason: String| PoolError::Settings {
            server: server.url().to_string(),
            reason,
        };
        let mut settings = settings_for(server.url().as_str(), server.ca_file().cloned())
            .map_err(|e| bad(e.to_string()))?;
        settings.credentials = server.credentials().cloned();
        let source = HttpMetadataSource::from_settings(settings).map_err(|e| bad(e.to_string()))?;
        let trust = TrustSettings {
            pinning,
            state_dir: Some(self.state_dir.join("trust").join(&key)),
            limits: crate::trust::Limits {
                update_deadline: server.trust_timeout(),
                ..Default::default()
            },
            ..TrustSettings::default()
        };
        let client = Arc::new(
            TrustClient::new(trust, Arc::new(source)).map_err(|e| match e {
                e @ crate::trust::TrustError::Store { .. } => PoolError::State(e),
                e => bad(e.to_string()),
            })?,
        );
        clients.insert(client_key, client.clone());
        Ok((key, client))
    }
}

/// The policy's pins in the trust module's terms. The policy's `ca` applies to every GUN the
/// rule covers, which is Notary's CA pin for the empty prefix.
fn convert_pinning(p: &PolicyPinning) -> TrustPinning {
    let mut out = TrustPinning {
        disable_tofu: !p.tofu(),
        ..TrustPinning::default()
    };
    for (gun, certs) in p.root_certs() {
        out.certs.insert(
            gun.clone(),
            certs
                .iter()
                .map(|c| CertPin::CertDer(c.der().to_vec()))
                .collect(),
        );
    }
    if let Some(ca) = p.ca() {
        out.ca
            .insert(String::new(), ca.iter().map(|c| c.der().to_vec()).collect());
    }
    out
}

fn fingerprint(server: &str, pinning: &TrustPinning) -> String {
    let mut h = Sha256::new();
    h.update(server.as_bytes());
    h.update([0]);
    h.update(format!("{pinning:?}").as_bytes());
    hex::encode(&h.finalize()[..12])
}
