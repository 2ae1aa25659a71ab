//! The validated policy model. Values of these types exist only after the whole file has
//! been checked, so the proxy never sees a half-valid policy.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::upstream::{ClientSettings, Credentials};

use super::matcher::ScopePattern;

/// Enforce refuses; audit serves but logs the violation and sends `Warning: 299`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    Audit,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Enforce => "enforce",
            Mode::Audit => "audit",
        })
    }
}

/// What a pull *by digest* needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestPulls {
    /// Docker's semantics: a digest names its content, no signature needed.
    Allow,
    /// Served only if the digest is, or is referenced by, a manifest reached through a
    /// verified tag.
    SignedOnly,
}

impl fmt::Display for DigestPulls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DigestPulls::Allow => "allow",
            DigestPulls::SignedOnly => "signed-only",
        })
    }
}

/// Identifies the rule that applied: its index in `[[rules]]`, or the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleId {
    Rule(usize),
    Default,
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleId::Rule(i) => write!(f, "rules[{i}]"),
            RuleId::Default => f.write_str("default"),
        }
    }
}

/// One rule, or the default.
#[derive(Debug, Clone)]
pub struct Rule {
    pub(crate) id: RuleId,
    pub(crate) name: String,
    pub(crate) scope: Option<ScopePattern>,
    pub(crate) requirement: Requirement,
    pub(crate) mode: Mode,
    pub(crate) digest_pulls: DigestPulls,
}

impl Rule {
    pub fn id(&self) -> RuleId {
        self.id
    }
    /// The `name` given in the file, else the scope string, else `default`.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// `None` for the default rule.
    pub fn scope(&self) -> Option<&ScopePattern> {
        self.scope.as_ref()
    }
    pub fn requirement(&self) -> &Requirement {
        &self.requirement
    }
    pub fn mode(&self) -> Mode {
        self.mode
    }
    pub fn digest_pulls(&self) -> DigestPulls {
        self.digest_pulls
    }
}

#[derive(Debug, Clone)]
pub enum Requirement {
    /// No check.
    Allow,
    /// Always refused; the message, if any, is shown to the person who pulled.
    Reject { message: Option<String> },
    /// The tag must resolve to a digest that the rule's verifiers vouch for, combined as
    /// the rule says (`signed_by`); a rule without `signed_by` has one Notary v1 verifier.
    Signed(SignedRequirement),
}

impl Requirement {
    pub fn kind(&self) -> &'static str {
        match self {
            Requirement::Allow => "allow",
            Requirement::Reject { .. } => "reject",
            Requirement::Signed(_) => "signed",
        }
    }
}

/// `require = "signed"`: which verifiers vouch for a tag, and how their answers combine.
#[derive(Debug, Clone)]
pub struct SignedRequirement {
    pub(crate) combine: Combine,
    /// Never empty; in the order the policy lists them (`any_of` asks them in this order).
    pub(crate) verifiers: Vec<Arc<Verifier>>,
}

impl SignedRequirement {
    pub fn combine(&self) -> Combine {
        self.combine
    }
    pub fn verifiers(&self) -> &[Arc<Verifier>] {
        &self.verifiers
    }
    /// The first Notary verifier of the rule (a rule without `signed_by` has exactly one).
    pub fn notary(&self) -> Option<&NotaryVerifier> {
        self.verifiers.iter().find_map(|v| match &v.kind {
            VerifierKind::Notary(n) => Some(n),
            VerifierKind::Cosign(_) | VerifierKind::Notation(_) => None,
        })
    }
}

/// How the verifiers of a rule combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Combine {
    /// One verifier vouching is enough (migration: DCT or cosign). Asked in order; the first
    /// that verifies decides the digest.
    AnyOf,
    /// Every verifier must vouch, all for the same digest.
    AllOf,
}

impl fmt::Display for Combine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Combine::AnyOf => "any of",
            Combine::AllOf => "all of",
        })
    }
}

/// One signature system with its trust roots: a `[verifiers.<name>]` table, or the Notary
/// verifier a rule's own `trust_server`/`gun`/`roles`/`pinning` fields define.
#[derive(Debug, Clone)]
pub struct Verifier {
    /// The table name, or for a rule's inline Notary verifier the rule's id (`rules[2]`,
    /// `default`). Unique within a policy; the key of cached verification results.
    pub(crate) name: String,
    pub(crate) kind: VerifierKind,
}

impl Verifier {
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn kind(&self) -> &VerifierKind {
        &self.kind
    }
    /// `notary`, `cosign` or `notation`.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            VerifierKind::Notary(_) => "notary",
            VerifierKind::Cosign(_) => "cosign",
            VerifierKind::Notation(_) => "notation",
        }
    }
}

#[derive(Debug, Clone)]
pub enum VerifierKind {
    /// Docker Content Trust: the tag resolves through verified Notary v1 metadata.
    Notary(NotaryVerifier),
    /// Sigstore cosign, keyed: a simple-signing signature (`sha256-<hex>.sig` tag) over the
    /// tag's digest by one of these keys. No transparency log (`cosign verify --key
    /// --insecure-ignore-tlog`); keyless identities come later.
    Cosign(CosignVerifier),
    /// Notation (Notary Project): a JWS or COSE signature whose subject is the tag's digest,
    /// judged by a Notation CLI configuration directory (`trustpolicy.oci.json` +
    /// `truststore/`), exactly as `notation verify` would with it.
    Notation(NotationVerifier),
}

/// `type = "notation"`.
#[derive(Debug, Clone)]
pub struct NotationVerifier {
    pub(crate) dir: std::path::PathBuf,
    pub(crate) config: Arc<crate::notation::config::NotationConfig>,
}

impl NotationVerifier {
    /// The configuration directory, as resolved at load time.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }
    pub fn config(&self) -> &crate::notation::config::NotationConfig {
        &self.config
    }
}

/// `type = "cosign"`.
#[derive(Debug, Clone)]
pub struct CosignVerifier {
    /// Keyed: the trusted keys (empty for a keyless verifier).
    pub(crate) keys: Vec<CosignKey>,
    /// Keyless: the trusted root and the identity it must certify.
    pub(crate) keyless: Option<Arc<crate::cosign::keyless::KeylessPolicy>>,
}

impl CosignVerifier {
    pub fn keys(&self) -> &[CosignKey] {
        &self.keys
    }
    pub fn keyless(&self) -> Option<&Arc<crate::cosign::keyless::KeylessPolicy>> {
        self.keyless.as_ref()
    }
}

/// A public key read from a PEM file at load time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignKey {
    pub(crate) path: PathBuf,
    pub(crate) key: crate::cosign::PublicKey,
}

impl CosignKey {
    /// A trusted key and the file it came from (the loader builds these from `keys`).
    pub fn new(path: PathBuf, key: crate::cosign::PublicKey) -> CosignKey {
        CosignKey { path, key }
    }
    pub fn path(&self) -> &PathBuf {
        &self.path
    }
    pub fn key(&self) -> &crate::cosign::PublicKey {
        &self.key
    }
}

/// `type = "notary"` (or a rule's inline fields): Docker Content Trust.
#[derive(Debug, Clone)]
pub struct NotaryVerifier {
    pub(crate) trust_server: Arc<TrustServer>,
    pub(crate) gun: GunTemplate,
    pub(crate) roles: RoleRequirement,
    pub(crate) pinning: TrustPinning,
}

impl NotaryVerifier {
    pub fn trust_server(&self) -> &Arc<TrustServer> {
        &self.trust_server
    }
    pub fn gun_template(&self) -> &GunTemplate {
        &self.gun
    }
    /// The GUN (Notary repository name) for an image.
    pub fn gun(&self, registry: &str, repository: &str) -> String {
        self.gun.render(registry, repository)
    }
    pub fn roles(&self) -> &RoleRequirement {
        &self.roles
    }
    pub fn pinning(&self) -> &TrustPinning {
        &self.pinning
    }
}

/// Which signer roles count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleRequirement {
    /// The first role (in this order) that has the tag decides, as Docker does with
    /// `["targets/releases", "targets"]`.
    FirstOf(Vec<String>),
    /// Every role listed must have signed the tag, all with the same digest and length.
    AllOf(Vec<String>),
}

impl RoleRequirement {
    pub fn docker_default() -> RoleRequirement {
        RoleRequirement::FirstOf(vec!["targets/releases".into(), "targets".into()])
    }
    pub fn roles(&self) -> &[String] {
        match self {
            RoleRequirement::FirstOf(r) | RoleRequirement::AllOf(r) => r,
        }
    }
}

impl fmt::Display for RoleRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RoleRequirement::FirstOf(r) => write!(f, "first of [{}]", r.join(", ")),
            RoleRequirement::AllOf(r) => write!(f, "all of [{}]", r.join(", ")),
        }
    }
}

/// A Notary server. Shared by every rule that names it.
#[derive(Debug, Clone)]
pub struct TrustServer {
    pub(crate) name: String,
    pub(crate) url: url::Url,
    pub(crate) ca_file: Option<PathBuf>,
    /// Resolved at load time (from the environment or a file); `Credentials` has a redacted
    /// `Debug`.
    pub(crate) credentials: Option<Credentials>,
    /// `trust_timeout`: deadline for one whole trust update (default 30 s).
    pub(crate) trust_timeout: std::time::Duration,
}

impl TrustServer {
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn url(&self) -> &url::Url {
        &self.url
    }
    pub fn ca_file(&self) -> Option<&PathBuf> {
        self.ca_file.as_ref()
    }
    pub fn credentials(&self) -> Option<&Credentials> {
        self.credentials.as_ref()
    }
    /// Deadline for one whole trust update against this server (`trust_timeout`).
    pub fn trust_timeout(&self) -> std::time::Duration {
        self.trust_timeout
    }

    /// Settings for an `UpstreamClient` that talks to this server.
    pub fn client_settings(
        &self,
        connect_timeout: std::time::Duration,
        request_timeout: std::time::Duration,
    ) -> ClientSettings {
        ClientSettings {
            name: format!("trust server {} ({})", self.name, self.url),
            base_url: self.url.clone(),
            ca_file: self.ca_file.clone(),
            credentials: self.credentials.clone(),
            connect_timeout,
            request_timeout,
            allowed_realms: Vec::new(),
        }
    }
}

/// Maps an image to its GUN. Placeholders: `{registry}` and `{repository}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GunTemplate(pub(crate) String);

impl GunTemplate {
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn render(&self, registry: &str, repository: &str) -> String {
        self.0
            .replace("{registry}", &registry.to_ascii_lowercase())
            .replace("{repository}", repository)
    }
}

/// A certificate read from a PEM file at load time.
#[derive(Clone, PartialEq, Eq)]
pub struct PinnedCert {
    pub(crate) path: PathBuf,
    pub(crate) der: Vec<u8>,
}

impl PinnedCert {
    pub fn path(&self) -> &PathBuf {
        &self.path
    }
    pub fn der(&self) -> &[u8] {
        &self.der
    }
}

impl fmt::Debug for PinnedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinnedCert")
            .field("path", &self.path)
            .field("der_len", &self.der.len())
            .finish()
    }
}

/// Notary's trust pinning (`trustpinning/trustpin.go`), per rule.
#[derive(Debug, Clone, Default)]
pub struct TrustPinning {
    /// Keys are a GUN, or a prefix ending in `*`.
    pub(crate) root_certs: Vec<(String, Vec<PinnedCert>)>,
    pub(crate) ca: Option<Vec<PinnedCert>>,
    pub(crate) tofu: bool,
}

/// How the root of one GUN must be anchored.
#[derive(Debug, Clone, Copy)]
pub enum Pin<'a> {
    /// The root must use one of these certificates.
    Certs(&'a [PinnedCert]),
    /// The root certificate must chain to one of these CA certificates.
    Ca(&'a [PinnedCert]),
    /// Trust the first root seen, then require rotations to be signed by it.
    Tofu,
    /// No pin applies and trust on first use is off: refuse.
    Forbidden,
}

impl TrustPinning {
    pub fn tofu(&self) -> bool {
        self.tofu
    }
    pub fn root_certs(&self) -> &[(String, Vec<PinnedCert>)] {
        &self.root_certs
    }
    pub fn ca(&self) -> Option<&[PinnedCert]> {
        self.ca.as_deref()
    }

    /// Notary's order: an exact `certs[GUN]`, then the longest `prefix*` entry, then the CA,
    /// then trust on first use unless it is disabled.
    pub fn pin_for(&self, gun: &str) -> Pin<'_> {
        if let Some((_, certs)) = self.root_certs.iter().find(|(k, _)| k == gun) {
            return Pin::Certs(certs);
        }
        let wildcard = self
            .root_certs
            .iter()
            .filter_map(|(k, c)| k.strip_suffix('*').map(|p| (p, c)))
            .filter(|(p, _)| gun.starts_with(p))
            .max_by_key(|(p, _)| p.len());
        if let Some((_, certs)) = wildcard {
            return Pin::Certs(certs);
        }
        if let Some(ca) = &self.ca {
            return Pin::Ca(ca);
        }
        if self.tofu {
            Pin::Tofu
        } else {
            Pin::Forbidden
        }
    }
}

impl fmt::Display for Pin<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pin::Certs(c) => write!(f, "pinned root certificate(s) {}", paths(c)),
            Pin::Ca(c) => write!(f, "root must chain to CA {}", paths(c)),
            Pin::Tofu => f.write_str("trust on first use"),
            Pin::Forbidden => f.write_str("no pin and TOFU disabled (refused)"),
        }
    }
}

fn paths(c: &[PinnedCert]) -> String {
    let mut seen: Vec<String> = Vec::new();
    for p in c {
        let s = p.path.display().to_string();
        if !seen.contains(&s) {
            seen.push(s);
        }
    }
    seen.join(", ")
}
