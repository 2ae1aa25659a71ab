//! One signature against the trust policy, in the order and with the outcomes of notation-go
//! `verifier/verifier.go` `processSignature`: integrity (always enforced), authenticity and
//! trusted identity, expiry, authentic timestamp, revocation — each enforced, logged or skipped
//! as the statement's level and overrides say (trust-store-trust-policy.md "Signature
//! Verification details").

use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::certs::{all_valid_at, trusted_member, validate_chain};
use super::dn::{display, is_subset, subject_dn};
use super::envelope::{self, SigningScheme};
use super::policy::{
    Action, Identities, Level, Statement, StoreRef, StoreType, TrustPolicy, VerifyTimestamp,
};
use super::revocation::{self, CrlSet};
use super::sigalg::{alg_for_key, verify as verify_sig};
use super::timestamp::{self, Timestamp};
use super::truststore::{thumbprint, TrustStore};
use super::{Check, TargetDescriptor};

pub struct Request<'a> {
    /// The manifest trustgate resolved and will serve.
    pub target: &'a TargetDescriptor,
    pub envelope: &'a [u8],
    /// The signature manifest's layer media type: `application/jose+json` or `application/cose`.
    pub envelope_media_type: &'a str,
    pub policy: &'a TrustPolicy,
    pub store: &'a TrustStore,
    /// `registry/repository`, as the policy's `registryScopes` name it.
    pub scope: &'a str,
    pub now: OffsetDateTime,
    /// The verifier's CRLs (`crl_dir`); `None`: revocation status is unknown.
    pub crls: Option<&'a CrlSet>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub statement: String,
    pub level: Level,
    /// Level `skip`: nothing was verified. The caller decides what that means for a pull.
    pub skipped: bool,
    pub signing_scheme: Option<SigningScheme>,
    /// The leaf's subject (RFC 4514-ish display) and SHA-256 thumbprint.
    pub signer_subject: Option<String>,
    pub signer_thumbprint: Option<String>,
    /// Which trust store vouched, and the thumbprint of its certificate in the chain.
    pub trusted_by: Option<(StoreRef, String)>,
    pub signing_time: Option<OffsetDateTime>,
    /// Whether an RFC 3161 timestamp countersignature was verified and used, and its genTime.
    pub timestamp_used: bool,
    pub timestamp: Option<OffsetDateTime>,
    /// Checks that failed but that the level only logs, with why.
    pub logged: Vec<(Check, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Notation signature refused{}{}: {message}", statement.as_ref().map(|s| format!(" by trust policy statement {s:?}")).unwrap_or_default(), check.map(|c| format!(" ({c})")).unwrap_or_default())]
pub struct Refusal {
    pub statement: Option<String>,
    /// `None`: no statement applied, or the policy and stores could not be used.
    pub check: Option<Check>,
    pub message: String,
}

struct Outcome<'s> {
    st: &'s Statement,
    logged: Vec<(Check, String)>,
}

impl Outcome<'_> {
    /// verifier.go `isCriticalFailure`: an enforced check refuses, a logged one is noted.
    fn judge(&mut self, check: Check, result: Result<(), String>) -> Result<(), Refusal> {
        let Err(message) = result else { return Ok(()) };
        match self.st.action(check) {
            Action::Enforce => Err(Refusal {
                statement: Some(self.st.name.clone()),
                check: Some(check),
                message,
            }),
            Action::Log => {
                tracing::warn!(statement = %self.st.name, check = %check, "notation: {message}");
                self.logged.push((check, message));
                Ok(())
            }
            Action::Skip => Ok(()),
        }
    }

    fn refuse(&self, check: Check, message: String) -> Refusal {
        Refusal {
            statement: Some(self.st.name.clone()),
            check: Some(check),
            message,
        }
    }
}

pub fn verify_signature(req: &Request<'_>) -> Result<Verified, Refusal> {
    let st = req
        .policy
        .applicable(req.scope)
        .map_err(|message| Refusal {
            statement: None,
            check: None,
            message,
        })?;
    let mut verified = Verified {
        statement: st.name.clone(),
        level: st.level,
        skipped: st.level == Level::Skip,
        signing_scheme: None,
        signer_subject: None,
        signer_thumbprint: None,
        trusted_by: None,
        signing_time: None,
        timestamp_used: false,
        timestamp: None,
        logged: Vec::new(),
    };
    if verified.skipped {
        return Ok(verified);
    }
    let mut out = Outcome {
        st,
        logged: Vec::new(),
    };

    // Integrity: parse, signature by the leaf's key with the algorithm the key implies, the
    // chain as a code-signing path at the signing time, the payload names this manifest.
    let integrity = |m: String| out.refuse(Check::Integrity, m);
    let info = envelope::parse(req.envelope_media_type, req.envelope).map_err(integrity)?;
    let (_, leaf) = X509Certificate::from_der(&info.chain[0])
        .map_err(|e| integrity(format!("signing certificate is not X.509: {e}")))?;
    let key_alg = alg_for_key(&leaf).map_err(|e| integrity(format!("signing certificate: {e}")))?;
    if key_alg != info.alg {
        return Err(integrity(format!(
            "the envelope says {} but the signing certificate's key requires {}",
            info.alg.name(),
            key_alg.name()
        )));
    }
    verify_sig(info.alg, &leaf, &info.signed_bytes, &info.signature).map_err(integrity)?;
    validate_chain(&info.chain, info.signing_time).map_err(integrity)?;
    envelope::check_payload(&info.payload, req.target).map_err(integrity)?;
    verified.signing_scheme = Some(info.scheme);
    verified.signing_time = Some(info.signing_time);
    verified.signer_subject = Some(leaf.subject().to_string());
    verified.signer_thumbprint = Some(thumbprint(&info.chain[0]));

    // Authenticity (verifier.go `loadX509TrustStores`: ca stores for notary.x509,
    // signingAuthority stores for notary.x509.signingAuthority).
    let kind = match info.scheme {
        SigningScheme::X509 => StoreType::Ca,
        SigningScheme::X509SigningAuthority => StoreType::SigningAuthority,
    };
    let authenticity = (|| {
        let mut any_store = false;
        for r in st.stores(kind) {
            let certs = req.store.certificates(r).ok_or_else(|| {
                format!(
                    "trust store {}:{} was not loaded",
                    r.kind.dir_name(),
                    r.name
                )
            })?;
            any_store = true;
            if let Some(t) = trusted_member(&info.chain, certs) {
                verified.trusted_by = Some((r.clone(), thumbprint(t)));
                return Ok(());
            }
        }
        if !any_store {
            return Err(format!(
                "the statement names no {} trust store, which {} signatures need",
                kind.dir_name(),
                info.scheme.name()
            ));
        }
        Err(format!(
            "no certificate of the signing chain (signer {:?}) is in the statement's {} trust stores",
            leaf.subject().to_string(),
            kind.dir_name()
        ))
    })();
    out.judge(Check::Authenticity, authenticity)?;
    // Trusted identity: judged as authenticity (verifier.go `verifyX509TrustedIdentities`).
    let identity = match &st.identities {
        Identities::Any => Ok(()),
        Identities::Subjects(ids) => subject_dn(&leaf)
            .map_err(|e| format!("signing certificate: {e}"))
            .and_then(|leaf_dn| {
                if ids.iter().any(|(_, dn)| is_subset(dn, &leaf_dn)) {
                    Ok(())
                } else {
                    Err(format!(
                        "signing certificate subject {{{}}} matches none of the trusted identities {:?}",
                        display(&leaf_dn),
                        ids.iter().map(|(raw, _)| raw.as_str()).collect::<Vec<_>>()
                    ))
                }
            }),
    };
    out.judge(Check::Authenticity, identity)?;

    // Expiry (verifier.go `verifyExpiry`).
    let expiry = match info.expiry {
        Some(e) if req.now >= e => Err(format!("the signature expired at {e}")),
        _ => Ok(()),
    };
    out.judge(Check::Expiry, expiry)?;

    // Authentic timestamp (verifier.go `verifyAuthenticTimestamp`, `verifyTimestamp`).
    match info.scheme {
        SigningScheme::X509SigningAuthority => {
            // The authentic signing time was checked against every certificate above.
        }
        SigningScheme::X509 => {
            let tsa = st.stores(StoreType::Tsa).next().is_some();
            let chain_valid_now = all_valid_at(&info.chain, req.now, "verification time");
            let want_timestamp = tsa
                && match st.verify_timestamp {
                    VerifyTimestamp::Always => true,
                    VerifyTimestamp::AfterCertExpiry => chain_valid_now.is_err(),
                };
            if want_timestamp {
                // verifier.go `verifyAuthenticTimestamp`: the countersignature must verify
                // against the tsa stores, and its time must lie within every certificate's
                // validity (timestamp.go `BoundedAfter`/`BoundedBefore`).
                let result = match &info.timestamp_signature {
                    None => Err("no timestamp countersignature in the envelope, and the statement's tsa trust store requires one".to_string()),
                    Some(token) => {
                        let roots: Vec<Vec<u8>> = st
                            .stores(StoreType::Tsa)
                            .filter_map(|r| req.store.certificates(r))
                            .flatten()
                            .cloned()
                            .collect();
                        timestamp::verify(token, &info.signature, &roots)
                            .and_then(|ts| timestamp_within_chain(&ts, &info.chain).map(|_| ts))
                    }
                };
                match result {
                    Ok(ts) => {
                        verified.timestamp_used = true;
                        verified.timestamp = Some(ts.gen_time);
                    }
                    Err(m) => out.judge(Check::AuthenticTimestamp, Err(m))?,
                }
            } else {
                // Without a timestamp every certificate must be valid now (spec "Other
                // requirements" 4): an expired certificate without a valid timestamp fails.
                out.judge(Check::AuthenticTimestamp, chain_valid_now)?;
            }
        }
    }

    // Revocation (verifier.go `verifyRevocation`): revoked or unknown both fail the check,
    // which its action then enforces or logs. Without CRLs the status is unknown.
    if st.action(Check::Revocation) != Action::Skip {
        let result = match req.crls {
            Some(crls) => revocation::check(&info.chain, info.signing_time, req.now, crls)
                .map_err(revocation::Problem::message),
            None => Err(
                "revocation status is unknown: the verifier has no crl_dir (CRLs are read from files only, never fetched)"
                    .to_string(),
            ),
        };
        out.judge(Check::Revocation, result)?;
    }
    verified.logged = out.logged;
    Ok(verified)
}

/// Every certificate of the signing chain was valid throughout the timestamp's accuracy.
fn timestamp_within_chain(ts: &Timestamp, chain: &[Vec<u8>]) -> Result<(), String> {
    for der in chain {
        let (_, c) = X509Certificate::from_der(der).map_err(|e| format!("bad certificate: {e}"))?;
        let t = |a: x509_parser::time::ASN1Time| {
            OffsetDateTime::from_unix_timestamp(a.timestamp()).unwrap_or(OffsetDateTime::UNIX_EPOCH)
        };
        let (from, to) = (t(c.validity().not_before), t(c.validity().not_after));
        if !ts.within(from, to) {
            return Err(format!(
                "the timestamp {} (±{}) by {:?} is outside the validity of certificate {:?} ({from} to {to})",
                ts.gen_time,
                ts.accuracy,
                ts.tsa_subject,
                c.subject().to_string()
            ));
        }
    }
    Ok(())
}
