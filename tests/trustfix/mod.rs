//! Builds Notary-style TUF metadata with keys the test holds, and serves it from memory. The
//! hostile tests sign *modified* metadata with these keys, as an attacker who stole (or is) a
//! server would, and check each is refused with its own error.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING,
};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256, Sha512};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};
use trustgate::trust::canonical;
use trustgate::trust::source::{BoxFuture, FetchError, MetadataSource};

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

const P256_SPKI_PREFIX: &str = "3059301306072a8648ce3d020106082a8648ce3d030107034200";

enum Kind {
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
    /// `None` for keys ring will not sign with (below 2048 bits): signatures are zeros.
    RsaPss(Option<ring::signature::RsaKeyPair>),
}

/// A key the test holds: its TUF form, its keyid, and the private half to sign with.
pub struct Signer {
    pub keytype: String,
    pub public_b64: String,
    kind: Kind,
    /// PKCS#8 of ECDSA keys, so the same key can be wrapped in a certificate too.
    pub pkcs8: Vec<u8>,
}

impl Signer {
    pub fn ecdsa() -> Signer {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        Self::ecdsa_from_pkcs8(pkcs8.as_ref())
    }

    pub fn ecdsa_from_pkcs8(pkcs8: &[u8]) -> Signer {
        let rng = SystemRandom::new();
        let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng).unwrap();
        let mut spki = hex::decode(P256_SPKI_PREFIX).unwrap();
        spki.extend_from_slice(kp.public_key().as_ref());
        Signer {
            keytype: "ecdsa".into(),
            public_b64: b64(&spki),
            kind: Kind::Ecdsa(kp),
            pkcs8: pkcs8.to_vec(),
        }
    }

    /// An RSA key from tests/fixtures/keys (ring cannot generate RSA keys), as `rsa` with its
    /// SubjectPublicKeyInfo or as `rsa-x509` with a certificate file; signs with `rsapss`.
    pub fn rsa_fixture(stem: &str, cert: Option<&str>) -> Signer {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keys");
        let der = std::fs::read(dir.join(format!("{stem}.key.der"))).unwrap();
        let kp = ring::signature::RsaKeyPair::from_der(&der).ok();
        let (keytype, public) = match cert {
            None => (
                "rsa",
                std::fs::read(dir.join(format!("{stem}.spki"))).unwrap(),
            ),
            Some(file) => ("rsa-x509", std::fs::read(dir.join(file)).unwrap()),
        };
        Signer {
            keytype: keytype.into(),
            public_b64: b64(&public),
            kind: Kind::RsaPss(kp),
            pkcs8: der,
        }
    }

    pub fn ed25519() -> Signer {
        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let kp = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        Signer {
            keytype: "ed25519".into(),
            public_b64: b64(kp.public_key().as_ref()),
            kind: Kind::Ed25519(kp),
            pkcs8: pkcs8.as_ref().to_vec(),
        }
    }

    /// An `ecdsa-x509` root key: a self-signed certificate with CN = `cn`.
    pub fn root_cert(cn: &str, not_before: OffsetDateTime, not_after: OffsetDateTime) -> Signer {
        Self::ecdsa().as_cert(cn, not_before, not_after, None)
    }

    /// The same key material wrapped in a certificate (self-signed, or issued by `issuer`).
    pub fn as_cert(
        &self,
        cn: &str,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
        issuer: Option<&TestIssuer>,
    ) -> Signer {
        self.as_cert_with(cn, not_before, not_after, issuer, false)
    }

    pub fn as_cert_with(
        &self,
        cn: &str,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
        issuer: Option<&TestIssuer>,
        is_ca: bool,
    ) -> Signer {
        let key = KeyPair::try_from(self.pkcs8.as_slice()).unwrap();
        let mut params = CertificateParams::default();
        if is_ca {
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        }
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        params.not_before = not_before;
        params.not_after = not_after;
        let cert = match issuer {
            None => params.self_signed(&key).unwrap(),
            Some(ca) => params.signed_by(&key, &ca.cert, &ca.key).unwrap(),
        };
        let mut s = Self::ecdsa_from_pkcs8(&self.pkcs8);
        s.keytype = "ecdsa-x509".into();
        s.public_b64 = b64(cert.pem().as_bytes());
        s
    }

    pub fn cert_der(&self) -> Vec<u8> {
        let pem = base64::engine::general_purpose::STANDARD
            .decode(&self.public_b64)
            .unwrap();
        let block = x509_parser::pem::Pem::iter_from_buffer(&pem)
            .next()
            .unwrap()
            .unwrap();
        block.contents
    }

    pub fn tuf(&self) -> Value {
        json!({"keytype": self.keytype, "keyval": {"private": null, "public": self.public_b64}})
    }

    pub fn id(&self) -> String {
        trustgate::trust::keys::key_id(&self.keytype, &self.public_b64)
    }

    pub fn method(&self) -> &'static str {
        match self.kind {
            Kind::Ecdsa(_) => "ecdsa",
            Kind::Ed25519(_) => "eddsa",
            Kind::RsaPss(_) => "rsapss",
        }
    }

    pub fn sign_raw(&self, msg: &[u8]) -> Vec<u8> {
        match &self.kind {
            Kind::Ecdsa(kp) => kp
                .sign(&SystemRandom::new(), msg)
                .unwrap()
                .as_ref()
                .to_vec(),
            Kind::Ed25519(kp) => kp.sign(msg).as_ref().to_vec(),
            Kind::RsaPss(None) => vec![0; 128],
            Kind::RsaPss(Some(kp)) => {
                let mut sig = vec![0; kp.public().modulus_len()];
                kp.sign(
                    &ring::signature::RSA_PSS_SHA256,
                    &SystemRandom::new(),
                    msg,
                    &mut sig,
                )
                .unwrap();
                sig
            }
        }
    }

    pub fn signature(&self, msg: &[u8]) -> Value {
        json!({"keyid": self.id(), "method": self.method(), "sig": b64(&self.sign_raw(msg))})
    }
}

pub struct TestIssuer {
    pub cert: rcgen::Certificate,
    pub key: KeyPair,
}

impl TestIssuer {
    pub fn new(name: &str) -> TestIssuer {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        TestIssuer { cert, key }
    }
    pub fn der(&self) -> Vec<u8> {
        self.cert.der().to_vec()
    }
}

/// Signs `signed` (over Notary's canonical JSON) and wraps it in an envelope.
pub fn envelope(signed: &Value, signers: &[&Signer]) -> Vec<u8> {
    let msg = canonical::encode(signed).unwrap();
    let sigs: Vec<Value> = signers.iter().map(|s| s.signature(&msg)).collect();
    serde_json::to_vec_pretty(&json!({"signed": signed, "signatures": sigs})).unwrap()
}

pub fn file_meta(bytes: &[u8]) -> Value {
    json!({"length": bytes.len(), "hashes": {
        "sha256": b64(&Sha256::digest(bytes)),
        "sha512": b64(&Sha512::digest(bytes)),
    }})
}

/// A target entry for a manifest with the given bytes.
pub fn target(manifest: &[u8]) -> Value {
    json!({"length": manifest.len(), "hashes": {"sha256": b64(&Sha256::digest(manifest))}})
}

pub fn digest_of(manifest: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(manifest)))
}

/// A delegation under `targets`.
pub struct Delegation {
    pub name: String,
    pub keys: Vec<Signer>,
    pub threshold: i64,
    pub paths: Vec<String>,
    pub targets: BTreeMap<String, Value>,
    pub version: u64,
    pub expires: OffsetDateTime,
}

/// A whole repository the test controls.
pub struct Repo {
    pub gun: String,
    pub now: OffsetDateTime,
    pub root_keys: Vec<Signer>,
    pub root_threshold: i64,
    pub targets_keys: Vec<Signer>,
    pub targets_threshold: i64,
    pub snapshot_key: Signer,
    pub timestamp_key: Signer,
    pub root_version: u64,
    pub targets_version: u64,
    pub snapshot_version: u64,
    pub timestamp_version: u64,
    pub root_expires: OffsetDateTime,
    pub targets_expires: OffsetDateTime,
    pub snapshot_expires: OffsetDateTime,
    pub timestamp_expires: OffsetDateTime,
    pub targets: BTreeMap<String, Value>,
    pub delegations: Vec<Delegation>,
}

pub struct Published {
    pub root: Vec<u8>,
    pub targets: Vec<u8>,
    pub delegations: Vec<(String, Vec<u8>)>,
    pub snapshot: Vec<u8>,
    pub timestamp: Vec<u8>,
}

impl Repo {
    pub fn new(gun: &str) -> Repo {
        let now = OffsetDateTime::now_utc();
        let year = now + Duration::days(365);
        Repo {
            gun: gun.into(),
            now,
            root_keys: vec![Signer::root_cert(
                gun,
                now - Duration::days(1),
                now + Duration::days(3650),
            )],
            root_threshold: 1,
            targets_keys: vec![Signer::ecdsa()],
            targets_threshold: 1,
            snapshot_key: Signer::ecdsa(),
            timestamp_key: Signer::ed25519(),
            root_version: 1,
            targets_version: 1,
            snapshot_version: 1,
            timestamp_version: 1,
            root_expires: now + Duration::days(3650),
            targets_expires: year,
            snapshot_expires: year,
            timestamp_expires: now + Duration::days(14),
            targets: BTreeMap::new(),
            delegations: Vec::new(),
        }
    }

    pub fn root_signed(&self) -> Value {
        let mut keys = serde_json::Map::new();
        let ids = |ks: &[&Signer]| ks.iter().map(|k| k.id()).collect::<Vec<_>>();
        for k in self
            .root_keys
            .iter()
            .chain(&self.targets_keys)
            .chain([&self.snapshot_key, &self.timestamp_key])
        {
            keys.insert(k.id(), k.tuf());
        }
        json!({
            "_type": "Root",
            "consistent_snapshot": false,
            "expires": rfc3339(self.root_expires),
            "keys": keys,
            "roles": {
                "root": {"keyids": ids(&self.root_keys.iter().collect::<Vec<_>>()), "threshold": self.root_threshold},
                "targets": {"keyids": ids(&self.targets_keys.iter().collect::<Vec<_>>()), "threshold": self.targets_threshold},
                "snapshot": {"keyids": [self.snapshot_key.id()], "threshold": 1},
                "timestamp": {"keyids": [self.timestamp_key.id()], "threshold": 1},
            },
            "version": self.root_version,
        })
    }

    pub fn root_bytes(&self) -> Vec<u8> {
        envelope(
            &self.root_signed(),
            &self.root_keys.iter().collect::<Vec<_>>(),
        )
    }

    pub fn targets_signed(&self) -> Value {
        let mut keys = serde_json::Map::new();
        let mut roles = Vec::new();
        for d in &self.delegations {
            for k in &d.keys {
                keys.insert(k.id(), k.tuf());
            }
            roles.push(json!({
                "name": d.name,
                "keyids": d.keys.iter().map(|k| k.id()).collect::<Vec<_>>(),
                "threshold": d.threshold,
                "paths": d.paths,
            }));
        }
        json!({
            "_type": "Targets",
            "delegations": {"keys": keys, "roles": roles},
            "expires": rfc3339(self.targets_expires),
            "targets": self.targets,
            "version": self.targets_version,
        })
    }

    pub fn targets_bytes(&self) -> Vec<u8> {
        envelope(
            &self.targets_signed(),
            &self.targets_keys.iter().collect::<Vec<_>>(),
        )
    }

    pub fn delegation_signed(d: &Delegation) -> Value {
        json!({
            "_type": "Targets",
            "delegations": {"keys": {}, "roles": []},
            "expires": rfc3339(d.expires),
            "targets": d.targets,
            "version": d.version,
        })
    }

    pub fn delegation_bytes(d: &Delegation) -> Vec<u8> {
        envelope(
            &Self::delegation_signed(d),
            &d.keys.iter().collect::<Vec<_>>(),
        )
    }

    pub fn snapshot_signed(
        &self,
        root: &[u8],
        targets: &[u8],
        delegations: &[(String, Vec<u8>)],
    ) -> Value {
        let mut meta = serde_json::Map::new();
        meta.insert("root".into(), file_meta(root));
        meta.insert("targets".into(), file_meta(targets));
        for (name, bytes) in delegations {
            meta.insert(name.clone(), file_meta(bytes));
        }
        json!({
            "_type": "Snapshot",
            "expires": rfc3339(self.snapshot_expires),
            "meta": meta,
            "version": self.snapshot_version,
        })
    }

    pub fn timestamp_signed(&self, snapshot: &[u8]) -> Value {
        json!({
            "_type": "Timestamp",
            "expires": rfc3339(self.timestamp_expires),
            "meta": {"snapshot": file_meta(snapshot)},
            "version": self.timestamp_version,
        })
    }

    /// Builds every file, correctly signed.
    pub fn build(&self) -> Published {
        let root = self.root_bytes();
        let targets = self.targets_bytes();
        let delegations: Vec<(String, Vec<u8>)> = self
            .delegations
            .iter()
            .map(|d| (d.name.clone(), Self::delegation_bytes(d)))
            .collect();
        let snapshot = envelope(
            &self.snapshot_signed(&root, &targets, &delegations),
            &[&self.snapshot_key],
        );
        let timestamp = envelope(&self.timestamp_signed(&snapshot), &[&self.timestamp_key]);
        Published {
            root,
            targets,
            delegations,
            snapshot,
            timestamp,
        }
    }

    /// Builds and serves every file (current names and by-hash names).
    pub fn publish(&self, src: &MemSource) -> Published {
        let p = self.build();
        src.put_role("root", &p.root);
        src.put(&format!("{}.root.json", self.root_version), &p.root);
        src.put_role("targets", &p.targets);
        for (name, bytes) in &p.delegations {
            src.put_role(name, bytes);
        }
        src.put_role("snapshot", &p.snapshot);
        src.put("timestamp.json", &p.timestamp);
        p
    }
}

/// An in-memory trust server that can lie, go offline, and enforces `max_len` like a real
/// source must.
#[derive(Default)]
pub struct MemSource {
    files: Mutex<HashMap<String, Bytes>>,
    pub offline: AtomicBool,
    pub fetches: AtomicUsize,
    /// Every file asked for, in order.
    pub log: Mutex<Vec<String>>,
}

impl MemSource {
    pub fn new() -> Arc<MemSource> {
        Arc::new(MemSource::default())
    }
    pub fn put(&self, file: &str, bytes: &[u8]) {
        self.files
            .lock()
            .unwrap()
            .insert(file.to_owned(), Bytes::copy_from_slice(bytes));
    }
    /// Serves `<role>.json` and `<role>.<sha256 hex>.json`.
    pub fn put_role(&self, role: &str, bytes: &[u8]) {
        self.put(&format!("{role}.json"), bytes);
        self.put(
            &format!("{role}.{}.json", hex::encode(Sha256::digest(bytes))),
            bytes,
        );
    }
    pub fn remove(&self, file: &str) {
        self.files.lock().unwrap().remove(file);
    }
    pub fn fetched(&self, file: &str) -> bool {
        self.log.lock().unwrap().iter().any(|f| f == file)
    }
    pub fn set_offline(&self, offline: bool) {
        self.offline.store(offline, Ordering::SeqCst);
    }
}

impl MetadataSource for MemSource {
    fn fetch<'a>(
        &'a self,
        _gun: &'a str,
        file: &'a str,
        max_len: u64,
    ) -> BoxFuture<'a, Result<Bytes, FetchError>> {
        Box::pin(async move {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            self.log.lock().unwrap().push(file.to_owned());
            if self.offline.load(Ordering::SeqCst) {
                return Err(FetchError::Unreachable {
                    file: file.into(),
                    reason: "connection refused".into(),
                });
            }
            let bytes = self.files.lock().unwrap().get(file).cloned();
            match bytes {
                None => Err(FetchError::NotFound { file: file.into() }),
                Some(b) if b.len() as u64 > max_len => Err(FetchError::TooLarge {
                    file: file.into(),
                    limit: max_len,
                }),
                Some(b) => Ok(b),
            }
        })
    }
}
pub mod harness;
pub mod http;
