//! Why a repository's trust data was refused. Every hostile case has its own variant with
//! structured fields, so a test (and an operator) can tell a rollback from an expiry from a
//! forged signature; [`TrustError::reason`] folds them into the coarse [`RefusalReason`] the
//! proxy shows to whoever pulled.

use time::OffsetDateTime;

/// The coarse verdict the proxy reports (shared contract with `proxy`/`policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalReason {
    /// The trust server holds no data for this repository.
    NoTrustData,
    /// The repository has trust data, but no accepted role signed this tag.
    TagNotSigned,
    /// The tag was signed once and has since been removed by its publisher.
    TagRevoked,
    /// The tag is signed, but only by a role the policy does not accept.
    SignedByUnacceptedRole,
    /// Metadata the verdict rests on has expired.
    Expired,
    /// Metadata failed verification: bad or missing signatures, rollback, hash mismatch,
    /// pinning failure, malformed or oversized data.
    SignatureInvalid,
    /// The trust server could not be asked and nothing verified is stored.
    Unreachable,
    /// Anything else (local state I/O, invalid input).
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    #[error("no trust data for {gun}")]
    NoTrustData { gun: String },
    #[error("tag {tag} of {gun} is not signed")]
    TagNotSigned { gun: String, tag: String },
    #[error("tag {tag} of {gun} was signed by {role} and has been revoked")]
    TagRevoked {
        gun: String,
        tag: String,
        role: String,
    },
    #[error("tag {tag} is signed only by {roles:?}, which is not an accepted role")]
    SignedOnlyByOtherRole { tag: String, roles: Vec<String> },
    #[error("trust server unreachable for {file}: {reason}")]
    Unreachable { file: String, reason: String },
    #[error("trust server refused {file}: {reason}")]
    Refused { file: String, reason: String },
    #[error("{role} metadata expired at {}", rfc3339(expires))]
    Expired {
        role: String,
        expires: OffsetDateTime,
    },
    #[error("{role} rolled back: trusted version {trusted}, server offered {got}")]
    Rollback {
        role: String,
        trusted: u64,
        got: u64,
    },
    #[error("{role} bytes do not match the {algorithm} hash recorded by {recorded_by}")]
    HashMismatch {
        role: String,
        algorithm: String,
        recorded_by: String,
    },
    /// `got` is the number of bytes read, which stops one past `expected` for longer files.
    #[error("{role} length does not match: {recorded_by} records {expected} bytes, read {got}")]
    LengthMismatch {
        role: String,
        expected: u64,
        got: u64,
        recorded_by: String,
    },
    #[error(
        "{role} has {valid} valid signatures from distinct authorised keys, needs {threshold}"
    )]
    ThresholdNotMet {
        role: String,
        valid: usize,
        threshold: u64,
    },
    #[error("{role} carries no signatures")]
    Unsigned { role: String },
    #[error("{role} has an invalid threshold {threshold}")]
    InvalidThreshold { role: String, threshold: i64 },
    #[error("{role} lists key {listed} whose content hashes to {computed}")]
    KeyIdMismatch {
        role: String,
        listed: String,
        computed: String,
    },
    #[error("{role} authorises key {keyid}, which is not defined")]
    UnknownKey { role: String, keyid: String },
    #[error("{role} lists target {target} outside its delegated paths")]
    DelegationPathViolation { role: String, target: String },
    #[error("invalid delegation {name} under {parent}: {reason}")]
    InvalidDelegation {
        parent: String,
        name: String,
        reason: String,
    },
    #[error("root version {version} is not signed by a threshold of the previous root's keys")]
    RootNotSignedByPrevious { version: u64 },
    #[error("root certificate {keyid} has CN {got:?}, expected the GUN {expected}")]
    RootCertWrongCn {
        keyid: String,
        expected: String,
        got: String,
    },
    /// Also for a trusted (cached) root whose certificates have expired since: Notary then
    /// fails hard (`bootstrapClient`, tufclient.go:362-366).
    #[error(
        "root certificate {keyid} (CN {cn:?}) is not valid now: notBefore {}, notAfter {}",
        rfc3339(not_before),
        rfc3339(not_after)
    )]
    RootCertExpired {
        keyid: String,
        cn: String,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    },
    #[error("root certificate {keyid} is unacceptable: {reason}")]
    RootCertRejected { keyid: String, reason: String },
    #[error("root of {gun} does not match the pinned trust ({pin}): {reason}")]
    PinMismatch {
        gun: String,
        pin: String,
        reason: String,
    },
    #[error("{gun} has no pinned trust and trust on first use is disabled")]
    TofuDisabled { gun: String },
    #[error("{role} exceeds its size limit of {limit} bytes")]
    TooLarge { role: String, limit: u64 },
    #[error("{role} metadata is malformed: {reason}")]
    Malformed { role: String, reason: String },
    #[error("{role} metadata has _type {got:?}, expected {expected:?}")]
    WrongType {
        role: String,
        expected: String,
        got: String,
    },
    #[error("invalid GUN {gun:?}: {reason}")]
    InvalidGun { gun: String, reason: String },
    #[error("trust state for {gun} at {path}: {reason}")]
    Store {
        gun: String,
        path: String,
        reason: String,
    },
}

fn rfc3339(t: &OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

impl TrustError {
    /// The coarse verdict. Exhaustive on purpose: a new variant must choose its reason.
    pub fn reason(&self) -> RefusalReason {
        match self {
            TrustError::NoTrustData { .. } => RefusalReason::NoTrustData,
            TrustError::TagNotSigned { .. } => RefusalReason::TagNotSigned,
            TrustError::TagRevoked { .. } => RefusalReason::TagRevoked,
            TrustError::SignedOnlyByOtherRole { .. } => RefusalReason::SignedByUnacceptedRole,
            TrustError::Unreachable { .. } | TrustError::Refused { .. } => {
                RefusalReason::Unreachable
            }
            TrustError::Expired { .. } | TrustError::RootCertExpired { .. } => {
                RefusalReason::Expired
            }
            TrustError::Rollback { .. }
            | TrustError::HashMismatch { .. }
            | TrustError::LengthMismatch { .. }
            | TrustError::ThresholdNotMet { .. }
            | TrustError::Unsigned { .. }
            | TrustError::InvalidThreshold { .. }
            | TrustError::KeyIdMismatch { .. }
            | TrustError::UnknownKey { .. }
            | TrustError::DelegationPathViolation { .. }
            | TrustError::InvalidDelegation { .. }
            | TrustError::RootNotSignedByPrevious { .. }
            | TrustError::RootCertWrongCn { .. }
            | TrustError::RootCertRejected { .. }
            | TrustError::PinMismatch { .. }
            | TrustError::TofuDisabled { .. }
            | TrustError::TooLarge { .. }
            | TrustError::Malformed { .. }
            | TrustError::WrongType { .. } => RefusalReason::SignatureInvalid,
            TrustError::InvalidGun { .. } | TrustError::Store { .. } => RefusalReason::Other,
        }
    }

    pub(crate) fn malformed(role: &str, reason: impl Into<String>) -> Self {
        TrustError::Malformed {
            role: role.to_owned(),
            reason: reason.into(),
        }
    }
}
