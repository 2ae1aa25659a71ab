//! Revocation of the signing chain, checked against CRL files the operator provides (the
//! verifier's `crl_dir`), never fetched: trustgate makes no request a registry did not ask
//! for, and an air-gapped proxy has no CRL distribution point to reach. The trust policy's
//! `revocation` check (trust-store-trust-policy.md "Signature Verification details") is then
//! judged as notation-go `verifier/verifier.go` `verifyRevocation` judges it: a revoked
//! certificate anywhere in the chain fails the check, and so does a certificate whose status
//! is unknown (no CRL for its issuer, an expired CRL, a CRL that does not verify); the
//! check's action (enforce/log) then decides, so `enforce` fails closed.
//!
//! What a CRL is and whether it vouches for a certificate is rustls-webpki's
//! (`OwnedCertRevocationList`, `RevocationOptions` with `UnknownStatusPolicy::Deny` over the
//! whole chain): the CRL's issuer is the certificate's issuer, its signature verifies with
//! that issuer's key, the issuer may sign CRLs (keyUsage cRLSign), and the serial is not
//! listed. Delta CRLs and unknown critical extensions are refused by webpki at load. The
//! freshness rule is notation-core-go `revocation/internal/crl/crl.go` `validate`: a CRL whose
//! nextUpdate has passed is expired, at verification time (webpki would compare it with the
//! time it validates the path at, which is the signing time).
//!
//! Deliberately stricter than notation-go, and documented in the README: every certificate
//! of the chain below the root needs a CRL here, even one without a CRL distribution point
//! (notation-go calls such a certificate "non-revokable"); a listed serial is revoked whatever
//! its invalidity date (notation-go lets a signature with an authentic signing time before
//! the invalidity date pass); certificates that announce a delta CRL (freshestCRL) are of
//! unknown status, since only base CRLs are read.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::{CertificateDer, UnixTime};
use time::OffsetDateTime;
use webpki::{
    CertRevocationList, EndEntityCert, ExpirationPolicy, OwnedCertRevocationList,
    RevocationCheckDepth, RevocationOptionsBuilder, UnknownStatusPolicy,
};
use x509_parser::oid_registry::Oid;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

/// Largest CRL file read. Public CAs' CRLs reach a few MiB; notation-core-go bounds a CRL
/// download at 64 MiB.
const MAX_CRL_FILE_BYTES: u64 = 64 * 1024 * 1024;
/// Most files in a CRL directory.
const MAX_CRL_FILES: usize = 1000;
/// RFC 5280 §5.2.6 freshestCRL (the delta CRL distribution point).
const OID_FRESHEST_CRL: &[u64] = &[2, 5, 29, 46];

struct LoadedCrl {
    file: PathBuf,
    /// The issuer Name as DER, compared with a certificate's issuer.
    issuer_der: Vec<u8>,
    issuer: String,
    next_update: OffsetDateTime,
    crl: CertRevocationList<'static>,
}

/// The CRLs of one verifier's `crl_dir`, read and parsed at policy load.
pub struct CrlSet {
    dir: PathBuf,
    crls: Vec<LoadedCrl>,
}

impl std::fmt::Debug for CrlSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrlSet")
            .field("dir", &self.dir)
            .field(
                "crls",
                &self
                    .crls
                    .iter()
                    .map(|c| (&c.file, &c.issuer, c.next_update))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn at(t: OffsetDateTime) -> UnixTime {
    UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        u64::try_from(t.unix_timestamp()).unwrap_or(0),
    ))
}

impl CrlSet {
    /// Every regular file of `dir`: PEM (`X509 CRL` blocks) or one DER CRL. Symlinks and
    /// subdirectories are refused, as in a Notation trust store. Two CRLs of one issuer are
    /// refused too: webpki uses the first that names the issuer, so which one decided would
    /// depend on file names.
    pub fn load(dir: &Path) -> Result<Arc<CrlSet>, String> {
        let err = |p: &Path, m: String| format!("{}: {m}", p.display());
        let files = super::truststore::regular_files(
            dir,
            "CRL directory",
            MAX_CRL_FILES,
            MAX_CRL_FILE_BYTES,
        )
        .map_err(|(path, message)| err(&path, message))?;
        let mut crls: Vec<LoadedCrl> = Vec::new();
        for (path, bytes) in files {
            for der in crl_ders(&bytes).map_err(|e| err(&path, e))? {
                let loaded = parse_crl(&path, &der).map_err(|e| err(&path, e))?;
                if let Some(other) = crls.iter().find(|c| c.issuer_der == loaded.issuer_der) {
                    return Err(err(
                        &path,
                        format!(
                            "a second CRL for issuer {:?} (the first is in {}); keep only the current one",
                            loaded.issuer,
                            other.file.display()
                        ),
                    ));
                }
                crls.push(loaded);
            }
        }
        if crls.is_empty() {
            return Err(err(dir, "no CRL in this directory".into()));
        }
        Ok(Arc::new(CrlSet {
            dir: dir.to_path_buf(),
            crls,
        }))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn for_issuer(&self, issuer_der: &[u8]) -> Option<&LoadedCrl> {
        self.crls.iter().find(|c| c.issuer_der == issuer_der)
    }
}

fn crl_ders(bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    if !bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
        return Ok(vec![bytes.to_vec()]);
    }
    let mut out = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(bytes) {
        let block = block.map_err(|e| format!("bad PEM: {e}"))?;
        if block.label != "X509 CRL" {
            return Err(format!("PEM block {:?} is not an X509 CRL", block.label));
        }
        out.push(block.contents);
    }
    if out.is_empty() {
        return Err("no CRL in the file".into());
    }
    Ok(out)
}

fn parse_crl(path: &Path, der: &[u8]) -> Result<LoadedCrl, String> {
    let owned = OwnedCertRevocationList::from_der(der)
        .map_err(|e| format!("not a CRL trustgate can use: {e}"))?;
    let (rest, parsed) =
        CertificateRevocationList::from_der(der).map_err(|e| format!("not a CRL: {e}"))?;
    if !rest.is_empty() {
        return Err("trailing bytes after the CRL".into());
    }
    // crl.go `validate`: "CRL NextUpdate is not set" makes the status unknown; a CRL that can
    // never be fresh is refused at load instead.
    let next_update = parsed
        .next_update()
        .ok_or("the CRL has no nextUpdate, so its freshness cannot be judged")?;
    let next_update = OffsetDateTime::from_unix_timestamp(next_update.timestamp())
        .map_err(|e| format!("nextUpdate: {e}"))?;
    Ok(LoadedCrl {
        file: path.to_path_buf(),
        issuer_der: parsed.issuer().as_raw().to_vec(),
        issuer: parsed.issuer().to_string(),
        next_update,
        crl: CertRevocationList::Owned(owned),
    })
}

/// Why the revocation check failed; both are failures of the check (verifier.go
/// `verifyRevocation`: "is revoked" / "revocation status is unknown").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    Revoked(String),
    Unknown(String),
}

impl Problem {
    pub fn message(self) -> String {
        match self {
            Problem::Revoked(m) | Problem::Unknown(m) => m,
        }
    }
}

/// The revocation status of every certificate of an already validated chain (leaf first,
/// root last) at `now`. The root is the trust anchor and is not checked (notation-core-go:
/// a self-signed root is non-revokable).
pub fn check(
    chain: &[Vec<u8>],
    signing_time: OffsetDateTime,
    now: OffsetDateTime,
    crls: &CrlSet,
) -> Result<(), Problem> {
    let unknown = |m: String| Problem::Unknown(m);
    let parsed = chain
        .iter()
        .map(|d| X509Certificate::from_der(d).map(|(_, c)| c))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unknown(format!("the chain cannot be parsed: {e}")))?;
    if parsed.len() < 2 {
        return Ok(());
    }
    let freshest = Oid::from(OID_FRESHEST_CRL).expect("static OID");
    let mut used: Vec<&CertRevocationList<'static>> = Vec::new();
    for c in &parsed[..parsed.len() - 1] {
        let subject = c.subject().to_string();
        let crl = crls.for_issuer(c.issuer().as_raw()).ok_or_else(|| {
            unknown(format!(
                "certificate with subject {subject:?}: revocation status is unknown: {} has no CRL issued by {:?}",
                crls.dir.display(),
                c.issuer().to_string()
            ))
        })?;
        if c.get_extension_unique(&freshest).ok().flatten().is_some() {
            return Err(unknown(format!(
                "certificate with subject {subject:?}: revocation status is unknown: it announces a delta CRL (freshestCRL), and only base CRLs are read"
            )));
        }
        if now >= crl.next_update {
            return Err(unknown(format!(
                "certificate with subject {subject:?}: revocation status is unknown: the CRL {} expired at {} (its nextUpdate)",
                crl.file.display(),
                crl.next_update
            )));
        }
        if !used.iter().any(|u| std::ptr::eq(*u, &crl.crl)) {
            used.push(&crl.crl);
        }
    }
    let options = RevocationOptionsBuilder::new(&used)
        .map_err(|_| unknown("no CRL applies to the chain".into()))?
        .with_depth(RevocationCheckDepth::Chain)
        .with_status_policy(UnknownStatusPolicy::Deny)
        // Freshness is judged above, at `now`; webpki would judge it at the signing time.
        .with_expiration_policy(ExpirationPolicy::Ignore)
        .build();
    let anchor_der = CertificateDer::from(chain[chain.len() - 1].as_slice());
    let anchors =
        [webpki::anchor_from_trusted_cert(&anchor_der)
            .map_err(|e| unknown(format!("root: {e}")))?];
    let intermediates: Vec<CertificateDer<'_>> = chain[1..chain.len() - 1]
        .iter()
        .map(|d| CertificateDer::from(d.as_slice()))
        .collect();
    let leaf_der = CertificateDer::from(chain[0].as_slice());
    let ee = EndEntityCert::try_from(&leaf_der)
        .map_err(|e| unknown(format!("signing certificate: {e}")))?;
    let result = ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        &intermediates,
        at(signing_time),
        super::certs::NotaryEkuChecked,
        Some(options),
        None,
    );
    match result {
        Ok(_) => Ok(()),
        Err(webpki::Error::CertRevoked) => Err(revoked(&parsed, crls)),
        Err(e) => {
            // Which certificate webpki stopped at is not reported; name the CRLs consulted.
            let files: Vec<String> = parsed[..parsed.len() - 1]
                .iter()
                .filter_map(|c| crls.for_issuer(c.issuer().as_raw()))
                .map(|c| c.file.display().to_string())
                .collect();
            let why = match e {
                webpki::Error::InvalidCrlSignatureForPublicKey => {
                    "a CRL is not signed by the key of the certificate issuer it names".to_string()
                }
                webpki::Error::IssuerNotCrlSigner => {
                    "an issuer's keyUsage does not allow it to sign CRLs (cRLSign)".to_string()
                }
                webpki::Error::UnknownRevocationStatus => {
                    "no CRL is authoritative for a certificate of the chain (issuing distribution point)".to_string()
                }
                other => format!("{other}"),
            };
            Err(unknown(format!(
                "revocation status of the signing chain is unknown: {why} (CRLs {files:?})"
            )))
        }
    }
}

/// The certificate webpki found revoked, with its CRL entry.
fn revoked(parsed: &[X509Certificate<'_>], crls: &CrlSet) -> Problem {
    for c in &parsed[..parsed.len() - 1] {
        let Some(crl) = crls.for_issuer(c.issuer().as_raw()) else {
            continue;
        };
        if let Ok(Some(entry)) = crl.crl.find_serial(c.raw_serial()) {
            let when = OffsetDateTime::from_unix_timestamp(
                i64::try_from(entry.revocation_date.as_secs()).unwrap_or(i64::MAX),
            )
            .map(|t| t.to_string())
            .unwrap_or_else(|_| "?".into());
            let reason = entry
                .reason_code
                .map(|r| format!(", reason {r:?}"))
                .unwrap_or_default();
            return Problem::Revoked(format!(
                "certificate with subject {:?} (serial {}) is revoked: listed in {} since {when}{reason}",
                c.subject().to_string(),
                c.raw_serial_as_string(),
                crl.file.display()
            ));
        }
    }
    Problem::Revoked("a certificate of the signing chain is revoked".into())
}
