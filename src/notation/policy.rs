//! The Notation CLI's OCI trust policy file (`trustpolicy.oci.json`, or the older
//! `trustpolicy.json` of the same 1.0 shape), loaded and validated as notation-go does
//! (`verifier/trustpolicy/oci.go` `Validate`, `trustpolicy.go` `validatePolicyCore`,
//! `GetVerificationLevel`), then selected by registry scope (`GetApplicableTrustPolicy`).
//! Every error names the file, the statement and the field.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Deserialize;

use super::dn::{is_subset, parse_dn, Dn};
use super::Check;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Enforce,
    Log,
    Skip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Strict,
    Permissive,
    Audit,
    Skip,
}

impl Level {
    /// As the trust policy writes it.
    pub fn name(self) -> &'static str {
        match self {
            Level::Strict => "strict",
            Level::Permissive => "permissive",
            Level::Audit => "audit",
            Level::Skip => "skip",
        }
    }

    /// The level matrix (trust-store-trust-policy.md "Signature Verification details";
    /// notation-go trustpolicy.go `LevelStrict` … `LevelSkip`).
    fn action(self, check: Check) -> Action {
        use Action::*;
        match (self, check) {
            (Level::Skip, _) => Skip,
            (_, Check::Integrity) => Enforce,
            (Level::Strict, _) => Enforce,
            (Level::Permissive, Check::Authenticity) => Enforce,
            (Level::Permissive, _) | (Level::Audit, _) => Log,
        }
    }
}

/// `signatureVerification.verifyTimestamp` (trust-store-trust-policy.md; default `always`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyTimestamp {
    Always,
    AfterCertExpiry,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StoreType {
    Ca,
    SigningAuthority,
    Tsa,
}

impl StoreType {
    pub fn dir_name(self) -> &'static str {
        match self {
            StoreType::Ca => "ca",
            StoreType::SigningAuthority => "signingAuthority",
            StoreType::Tsa => "tsa",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StoreRef {
    pub kind: StoreType,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identities {
    /// `["*"]`: any leaf the trust stores vouch for.
    Any,
    /// `x509.subject:` entries, raw text and parsed attributes.
    Subjects(Vec<(String, Dn)>),
}

/// One validated trust policy statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub name: String,
    pub level: Level,
    pub enforcement: BTreeMap<Check, Action>,
    pub verify_timestamp: VerifyTimestamp,
    pub trust_stores: Vec<StoreRef>,
    pub identities: Identities,
    /// Fully qualified repositories, or empty for the global `*` statement.
    pub scopes: Vec<String>,
    pub global: bool,
}

impl Statement {
    pub fn action(&self, check: Check) -> Action {
        self.enforcement[&check]
    }

    pub fn stores(&self, kind: StoreType) -> impl Iterator<Item = &StoreRef> {
        self.trust_stores.iter().filter(move |s| s.kind == kind)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustPolicy {
    /// Where it was read from, for messages.
    pub source: String,
    pub statements: Vec<Statement>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{file}: {message}")]
pub struct PolicyError {
    pub file: String,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDoc {
    version: Option<String>,
    #[serde(rename = "trustPolicies")]
    trust_policies: Option<Vec<RawStatement>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStatement {
    name: Option<String>,
    #[serde(rename = "registryScopes", default)]
    registry_scopes: Vec<String>,
    #[serde(rename = "signatureVerification")]
    signature_verification: Option<RawVerification>,
    #[serde(rename = "trustStores", default)]
    trust_stores: Vec<String>,
    #[serde(rename = "trustedIdentities", default)]
    trusted_identities: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVerification {
    level: Option<String>,
    #[serde(rename = "override", default)]
    overrides: BTreeMap<String, String>,
    #[serde(rename = "verifyTimestamp")]
    verify_timestamp: Option<String>,
}

/// Largest trust policy file read.
const MAX_POLICY_BYTES: u64 = 1024 * 1024;

/// Reads `trustpolicy.oci.json` from a Notation configuration directory, or, when absent,
/// the older `trustpolicy.json` (notation-go `LoadOCIDocument`). Symlinks are refused
/// (`getDocument`: "trust policy is not a regular file (symlinks are not supported)").
pub fn load_from_config_dir(dir: &Path) -> Result<TrustPolicy, PolicyError> {
    let oci = dir.join("trustpolicy.oci.json");
    let path = if std::fs::symlink_metadata(&oci).is_ok() {
        oci
    } else {
        dir.join("trustpolicy.json")
    };
    load_file(&path)
}

pub fn load_file(path: &Path) -> Result<TrustPolicy, PolicyError> {
    let source = path.display().to_string();
    let err = |message: String| PolicyError {
        file: source.clone(),
        message,
    };
    let meta = std::fs::symlink_metadata(path).map_err(|e| err(format!("cannot read: {e}")))?;
    if !meta.file_type().is_file() {
        return Err(err(
            "trust policy is not a regular file (symlinks are not supported)".into(),
        ));
    }
    if meta.len() > MAX_POLICY_BYTES {
        return Err(err(format!(
            "trust policy is {} bytes, more than the {MAX_POLICY_BYTES} accepted",
            meta.len()
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| err(format!("cannot read: {e}")))?;
    parse(&source, &bytes)
}

/// Parses and validates a trust policy document. `source` names it in errors.
pub fn parse(source: &str, bytes: &[u8]) -> Result<TrustPolicy, PolicyError> {
    let err = |message: String| PolicyError {
        file: source.to_string(),
        message,
    };
    let raw: RawDoc =
        serde_json::from_slice(bytes).map_err(|e| err(format!("malformed trust policy: {e}")))?;
    // oci.go `Validate`: version required and "1.0".
    match raw.version.as_deref() {
        None | Some("") => return Err(err("`version` is missing; it must be \"1.0\"".into())),
        Some("1.0") => {}
        Some(v) => {
            return Err(err(format!(
                "`version` {v:?} is not supported; it must be \"1.0\""
            )))
        }
    }
    let raws = raw.trust_policies.unwrap_or_default();
    if raws.is_empty() {
        return Err(err("`trustPolicies` has no statement".into()));
    }
    let mut statements = Vec::new();
    let mut names = BTreeSet::new();
    let mut scope_owner: BTreeMap<String, String> = BTreeMap::new();
    for (i, r) in raws.into_iter().enumerate() {
        let at = format!("trustPolicies[{i}]");
        let st = statement(&at, r).map_err(err)?;
        if !names.insert(st.name.clone()) {
            return Err(err(format!(
                "{at}.name: {:?} is used by more than one statement; names must be unique",
                st.name
            )));
        }
        // oci.go `validateRegistryScopes`: one scope value belongs to one statement, so at
        // most one global statement.
        let keys = if st.global {
            vec!["*".to_string()]
        } else {
            st.scopes.clone()
        };
        for scope in keys {
            if let Some(other) = scope_owner.insert(scope.clone(), st.name.clone()) {
                return Err(err(format!(
                    "{at} ({:?}).registryScopes: {scope:?} is also in statement {other:?}; a scope may belong to one statement only",
                    st.name
                )));
            }
        }
        statements.push(st);
    }
    Ok(TrustPolicy {
        source: source.to_string(),
        statements,
    })
}

fn statement(at: &str, r: RawStatement) -> Result<Statement, String> {
    let name = match r.name {
        Some(n) if !n.is_empty() => n,
        _ => return Err(format!("{at}.name: missing; every statement needs a name")),
    };
    let at = format!("{at} ({name:?})");
    let sv = r
        .signature_verification
        .ok_or_else(|| format!("{at}.signatureVerification: missing"))?;
    let level = match sv.level.as_deref() {
        Some("strict") => Level::Strict,
        Some("permissive") => Level::Permissive,
        Some("audit") => Level::Audit,
        Some("skip") => Level::Skip,
        None | Some("") => return Err(format!("{at}.signatureVerification.level: missing")),
        Some(other) => {
            return Err(format!(
            "{at}.signatureVerification.level: {other:?} is not strict, permissive, audit or skip"
        ))
        }
    };
    let mut enforcement: BTreeMap<Check, Action> =
        Check::ALL.iter().map(|c| (*c, level.action(*c))).collect();
    // trustpolicy.go `GetVerificationLevel`: skip cannot be customised, integrity cannot be
    // overridden, only revocation may be skipped.
    if !sv.overrides.is_empty() && level == Level::Skip {
        return Err(format!(
            "{at}.signatureVerification.override: level \"skip\" cannot be customised"
        ));
    }
    for (key, value) in &sv.overrides {
        let field = format!("{at}.signatureVerification.override.{key}");
        let check = Check::ALL
            .into_iter()
            .find(|c| c.name() == key)
            .ok_or_else(|| format!("{field}: unknown verification type; supported are integrity, authenticity, authenticTimestamp, expiry, revocation"))?;
        let action = match value.as_str() {
            "enforce" => Action::Enforce,
            "log" => Action::Log,
            "skip" => Action::Skip,
            other => return Err(format!("{field}: {other:?} is not enforce, log or skip")),
        };
        if check == Check::Integrity {
            return Err(format!("{field}: integrity cannot be overridden"));
        }
        if check != Check::Revocation && action == Action::Skip {
            return Err(format!("{field}: {key} cannot be skipped"));
        }
        enforcement.insert(check, action);
    }
    let verify_timestamp = match sv.verify_timestamp.as_deref() {
        None | Some("") | Some("always") => VerifyTimestamp::Always,
        Some("afterCertExpiry") => VerifyTimestamp::AfterCertExpiry,
        Some(other) => {
            return Err(format!(
                "{at}.signatureVerification.verifyTimestamp: {other:?} is not \"always\" or \"afterCertExpiry\""
            ))
        }
    };
    let (scopes, global) = registry_scopes(&at, &r.registry_scopes)?;
    if level == Level::Skip {
        if global {
            // trust-store-trust-policy.md: "skip" is not allowed for the global scope.
            return Err(format!(
                "{at}.signatureVerification.level: \"skip\" is not allowed with the global scope \"*\""
            ));
        }
        if !r.trust_stores.is_empty() || !r.trusted_identities.is_empty() {
            return Err(format!(
                "{at}: level \"skip\" must not list trustStores or trustedIdentities"
            ));
        }
    } else if r.trust_stores.is_empty() || r.trusted_identities.is_empty() {
        return Err(format!(
            "{at}: both trustStores and trustedIdentities must be given"
        ));
    }
    let trust_stores = r
        .trust_stores
        .iter()
        .enumerate()
        .map(|(i, s)| store_ref(s).map_err(|e| format!("{at}.trustStores[{i}]: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let identities = identities(&at, &r.trusted_identities)?;
    Ok(Statement {
        name,
        level,
        enforcement,
        verify_timestamp,
        trust_stores,
        identities,
        scopes,
        global,
    })
}

fn registry_scopes(at: &str, raw: &[String]) -> Result<(Vec<String>, bool), String> {
    if raw.is_empty() {
        return Err(format!(
            "{at}.registryScopes: empty; give repositories or [\"*\"]"
        ));
    }
    if raw.iter().any(|s| s == "*") {
        if raw.len() > 1 {
            return Err(format!(
                "{at}.registryScopes: \"*\" cannot be combined with other scopes"
            ));
        }
        return Ok((Vec::new(), true));
    }
    for (i, s) in raw.iter().enumerate() {
        validate_scope(s).map_err(|e| format!("{at}.registryScopes[{i}]: {s:?} {e}"))?;
    }
    Ok((raw.to_vec(), false))
}

/// oci.go `validateRegistryScopeFormat`: `domain[:port]/repository`, no wildcard, no tag,
/// no short name.
pub fn validate_scope(scope: &str) -> Result<(), String> {
    const HINT: &str =
        "is not a fully qualified repository without scheme or tag (e.g. registry.example/ns/repo)";
    if scope.contains('*') {
        return Err(format!("uses a wildcard; {HINT}"));
    }
    let (domain, repo) = scope.split_once('/').ok_or_else(|| HINT.to_string())?;
    let (host, port) = match domain.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (domain, None),
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let host_ok = host.split('.').all(label_ok);
    let port_ok = match port {
        None => true,
        Some(p) => !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()),
    };
    let repo_ok = repo.split('/').all(|c| {
        !c.is_empty()
            && c.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
            })
            && c.as_bytes()[0].is_ascii_alphanumeric()
            && c.as_bytes()[c.len() - 1].is_ascii_alphanumeric()
    });
    if host_ok && port_ok && repo_ok {
        Ok(())
    } else {
        Err(HINT.to_string())
    }
}

fn store_ref(s: &str) -> Result<StoreRef, String> {
    let (kind, name) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not <type>:<name>"))?;
    let kind = match kind {
        "ca" => StoreType::Ca,
        "signingAuthority" => StoreType::SigningAuthority,
        "tsa" => StoreType::Tsa,
        other => return Err(format!("{other:?} is not ca, signingAuthority or tsa")),
    };
    // notation-go internal/file `IsValidFileName`: [a-zA-Z0-9_.-]+.
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        || name == "."
        || name == ".."
    {
        return Err(format!("store name {name:?} must match [a-zA-Z0-9_.-]+"));
    }
    Ok(StoreRef {
        kind,
        name: name.to_string(),
    })
}

/// trustpolicy.go `validateTrustedIdentities` and `validateOverlappingDNs`.
fn identities(at: &str, raw: &[String]) -> Result<Identities, String> {
    if raw.iter().any(|s| s == "*") {
        if raw.len() > 1 {
            return Err(format!(
                "{at}.trustedIdentities: \"*\" cannot be combined with other identities"
            ));
        }
        return Ok(Identities::Any);
    }
    let mut subjects = Vec::new();
    for (i, id) in raw.iter().enumerate() {
        let field = format!("{at}.trustedIdentities[{i}]");
        let (prefix, value) = id
            .split_once(':')
            .ok_or_else(|| format!("{field}: {id:?} has no \"x509.subject:\" prefix"))?;
        if prefix != "x509.subject" {
            // Notation hands other prefixes to plugins; without plugins none can match, and
            // an identity that silently matches nothing would hide a typo.
            return Err(format!(
                "{field}: {prefix:?} identities need a verification plugin, which trustgate does not run; use x509.subject"
            ));
        }
        if value.trim().is_empty() {
            return Err(format!("{field}: x509.subject has no value"));
        }
        let dn = parse_dn(value.trim()).map_err(|e| format!("{field}: {e}"))?;
        subjects.push((id.clone(), dn));
    }
    for (i, (a, da)) in subjects.iter().enumerate() {
        for (j, (b, db)) in subjects.iter().enumerate() {
            if i != j && is_subset(da, db) {
                return Err(format!("{at}.trustedIdentities: {a:?} overlaps with {b:?}"));
            }
        }
    }
    Ok(Identities::Subjects(subjects))
}

impl TrustPolicy {
    /// The statement for `registry/repository` (oci.go `GetApplicableTrustPolicy`): the one
    /// naming it, else the global one, else none — and no statement means untrusted.
    pub fn applicable(&self, scope: &str) -> Result<&Statement, String> {
        self.statements
            .iter()
            .find(|s| !s.global && s.scopes.iter().any(|x| x == scope))
            .or_else(|| self.statements.iter().find(|s| s.global))
            .ok_or_else(|| {
                format!(
                    "{}: no trust policy statement applies to {scope:?} (registryScopes names neither it nor \"*\")",
                    self.source
                )
            })
    }

    /// Every store a statement names, for loading them all up front.
    pub fn store_refs(&self) -> BTreeSet<StoreRef> {
        self.statements
            .iter()
            .flat_map(|s| s.trust_stores.iter().cloned())
            .collect()
    }
}
