//! The Notation CLI's trust store directory, `truststore/x509/{ca,signingAuthority,tsa}/<name>/`,
//! read as notation-go `verifier/truststore/truststore.go` `GetCertificates` does: the named
//! store must be a real directory (no symlink), every entry a regular file (no directory, no
//! symlink) holding PEM or DER certificates (notation-core-go `x509.ReadCertificateFile`),
//! each a CA or a self-signed signing certificate (`ValidateCertificates`), and `tsa` stores
//! root CAs only (`isRootCACertificate`). A store with no certificate is an error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::policy::{StoreRef, StoreType, TrustPolicy};

/// Largest certificate file read.
const MAX_CERT_FILE_BYTES: u64 = 1024 * 1024;
/// Most files in one named store.
const MAX_FILES_PER_STORE: usize = 1000;

#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    stores: BTreeMap<StoreRef, Vec<Vec<u8>>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{path}: {message}")]
pub struct StoreError {
    pub path: String,
    pub message: String,
}

impl TrustStore {
    /// Loads every store `policy` names from `root` (the `truststore` directory, which holds
    /// `x509/`). A statement naming a store that is missing or unusable fails here, before
    /// any signature is judged against it.
    pub fn load(root: &Path, policy: &TrustPolicy) -> Result<Self, StoreError> {
        let mut stores = BTreeMap::new();
        for r in policy.store_refs() {
            let dir = root.join("x509").join(r.kind.dir_name()).join(&r.name);
            let certs = load_store(&dir, r.kind)?;
            stores.insert(r, certs);
        }
        Ok(TrustStore { stores })
    }

    /// A store built from DER certificates already in memory (tests, TOML forms).
    pub fn insert(&mut self, r: StoreRef, certs: Vec<Vec<u8>>) {
        self.stores.insert(r, certs);
    }

    pub fn certificates(&self, r: &StoreRef) -> Option<&[Vec<u8>]> {
        self.stores.get(r).map(Vec::as_slice)
    }

    /// SHA-256 fingerprints (lowercase hex) of every certificate in the given stores, for
    /// the `io.cncf.notary.x509chain.thumbprint#S256` pre-filter.
    pub fn thumbprints<'a>(&self, refs: impl IntoIterator<Item = &'a StoreRef>) -> Vec<String> {
        refs.into_iter()
            .filter_map(|r| self.stores.get(r))
            .flatten()
            .map(|der| thumbprint(der))
            .collect()
    }
}

pub fn thumbprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

fn load_store(dir: &Path, kind: StoreType) -> Result<Vec<Vec<u8>>, StoreError> {
    let err = |path: &Path, message: String| StoreError {
        path: path.display().to_string(),
        message,
    };
    let files = regular_files(dir, "trust store", MAX_FILES_PER_STORE, MAX_CERT_FILE_BYTES)
        .map_err(|(path, message)| err(&path, message))?;
    let mut certs = Vec::new();
    for (path, bytes) in files {
        let found = read_certificates(&bytes).map_err(|e| err(&path, e))?;
        for (i, der) in found.iter().enumerate() {
            validate_store_cert(der, kind)
                .map_err(|e| err(&path, format!("certificate #{}: {e}", i + 1)))?;
        }
        certs.extend(found);
    }
    if certs.is_empty() {
        return Err(err(dir, "no x509 certificate in this trust store".into()));
    }
    Ok(certs)
}

/// A problem with a file or directory: its path and what is wrong.
pub(super) type PathError = (PathBuf, String);

/// The regular files of `dir`, sorted by name, with their contents: how notation-go reads a
/// trust store (and trustgate a CRL directory). The directory itself and every entry must be
/// real — symlinks and subdirectories are refused, never followed — and both counts and
/// sizes are bounded. An error names the path it is about; `what` names the directory kind in
/// the message ("trust store", "CRL directory").
pub(super) fn regular_files(
    dir: &Path,
    what: &str,
    max_files: usize,
    max_bytes: u64,
) -> Result<Vec<(PathBuf, Vec<u8>)>, PathError> {
    let at = |p: &Path, m: String| (p.to_path_buf(), m);
    let meta = std::fs::symlink_metadata(dir)
        .map_err(|e| at(dir, format!("{what} cannot be read: {e}")))?;
    if !meta.file_type().is_dir() {
        return Err(at(
            dir,
            format!("{what} is not a regular directory (symlinks are not supported)"),
        ));
    }
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| at(dir, format!("{what} cannot be listed: {e}")))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(|e| at(dir, format!("{what} cannot be listed: {e}")))?;
    if paths.len() > max_files {
        return Err(at(dir, format!("more than {max_files} files")));
    }
    paths.sort();
    let mut out = Vec::with_capacity(paths.len());
    for path in paths {
        let meta = std::fs::symlink_metadata(&path).map_err(|e| at(&path, e.to_string()))?;
        if !meta.file_type().is_file() {
            return Err(at(
                &path,
                format!(
                    "not a regular file (directories and symlinks are not supported in a {what})"
                ),
            ));
        }
        if meta.len() > max_bytes {
            return Err(at(&path, format!("larger than {max_bytes} bytes")));
        }
        let bytes = std::fs::read(&path).map_err(|e| at(&path, e.to_string()))?;
        out.push((path, bytes));
    }
    Ok(out)
}

/// PEM (one or more `CERTIFICATE` blocks) or DER (one or more concatenated certificates).
pub fn read_certificates(bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
        for block in x509_parser::pem::Pem::iter_from_buffer(bytes) {
            let block = block.map_err(|e| format!("bad PEM: {e}"))?;
            if block.label != "CERTIFICATE" {
                return Err(format!("PEM block {:?} is not a CERTIFICATE", block.label));
            }
            X509Certificate::from_der(&block.contents)
                .map_err(|e| format!("bad certificate: {e}"))?;
            out.push(block.contents);
        }
    } else {
        let mut rest = bytes;
        while !rest.is_empty() {
            let (next, _) = X509Certificate::from_der(rest)
                .map_err(|e| format!("neither PEM nor DER certificates: {e}"))?;
            out.push(rest[..rest.len() - next.len()].to_vec());
            rest = next;
        }
    }
    if out.is_empty() {
        return Err("no certificate in the file".into());
    }
    Ok(out)
}

fn validate_store_cert(der: &[u8], kind: StoreType) -> Result<(), String> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
    let is_ca = cert.is_ca();
    let self_signed =
        || cert.subject().as_raw() == cert.issuer().as_raw() && cert.verify_signature(None).is_ok();
    if kind == StoreType::Tsa && !self_signed() {
        return Err(
            "a tsa trust store holds root CA certificates only (this one is not self-signed)"
                .into(),
        );
    }
    if !is_ca && !self_signed() {
        return Err("neither a CA certificate nor a self-signed signing certificate".into());
    }
    Ok(())
}
