//! Notary's rules for a single certificate (`tuf/utils/x509.go` `ValidateCertificate`,
//! x509.go:308-332) and for the shape of a root key's PEM bundle (`trustpinning/certs.go`
//! `parseAllCerts`, certs.go:262-300, and `validRootIntCerts`, certs.go:227-241).

use std::fmt;

use time::{Duration, OffsetDateTime};

use super::keys::CertInfo;

/// Notary accepts a certificate whose notBefore is up to one day ahead of the local clock
/// (x509.go:327-330: "Give one day leeway on creation 'before' time"). Root certificates are
/// minted with NotBefore = the publisher's now, so a proxy whose clock lags behind would
/// otherwise refuse a freshly initialised or rotated repository.
pub const NOT_BEFORE_LEEWAY: Duration = Duration::days(1);

/// Notary's minimum RSA modulus (`notary.MinRSABitSize`).
pub const MIN_RSA_BITS: usize = 2048;

/// Why `ValidateCertificate` refuses a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertFault {
    /// notBefore is after notAfter.
    BadWindow,
    Sha1,
    SmallRsa(usize),
    /// Outside `notBefore - 1 day ..= notAfter` (only when expiry is checked).
    NotValidNow,
}

impl fmt::Display for CertFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertFault::BadWindow => {
                f.write_str("validity window is invalid (notBefore > notAfter)")
            }
            CertFault::Sha1 => f.write_str("signed with SHA-1"),
            CertFault::SmallRsa(bits) => write!(f, "RSA key of {bits} bits (< {MIN_RSA_BITS})"),
            CertFault::NotValidNow => f.write_str("not valid now"),
        }
    }
}

/// `ValidateCertificate(c, checkExpiry)`, in Go's order: a sane validity window, no SHA-1
/// signature, RSA ≥ 2048 bits, then — if `now` is given — valid now with the notBefore
/// leeway.
pub fn validate_certificate(c: &CertInfo, now: Option<OffsetDateTime>) -> Result<(), CertFault> {
    if c.not_before > c.not_after {
        return Err(CertFault::BadWindow);
    }
    if c.sha1_signed {
        return Err(CertFault::Sha1);
    }
    if c.rsa_bits != 0 && c.rsa_bits < MIN_RSA_BITS {
        return Err(CertFault::SmallRsa(c.rsa_bits));
    }
    if let Some(now) = now {
        if now + NOT_BEFORE_LEEWAY < c.not_before || now > c.not_after {
            return Err(CertFault::NotValidNow);
        }
    }
    Ok(())
}

/// `parseAllCerts`: a root key's bundle must hold exactly one non-CA certificate, and it must
/// come first. Anything else drops the key (certs.go:281-290).
pub fn check_bundle(c: &CertInfo) -> Result<(), String> {
    if c.is_ca {
        return Err("the first certificate is a CA, not a leaf".into());
    }
    match c.bundle_leaves {
        Some(1) => Ok(()),
        Some(n) => Err(format!(
            "the bundle holds {n} non-CA certificates; exactly one leaf is allowed"
        )),
        None => Err("a certificate of the bundle does not parse".into()),
    }
}

/// The certificates after the leaf that may serve as intermediates: marked CA
/// (`GetIntermediateCerts`) and passing `ValidateCertificate(c, true)` (`validRootIntCerts`).
/// Non-CA certificates never do, whatever they signed.
pub fn valid_intermediates(c: &CertInfo, now: OffsetDateTime) -> Vec<&[u8]> {
    c.chain_der
        .iter()
        .skip(1)
        .filter(|der| {
            CertInfo::from_der(der)
                .is_ok_and(|i| i.is_ca && validate_certificate(&i, Some(now)).is_ok())
        })
        .map(Vec::as_slice)
        .collect()
}
