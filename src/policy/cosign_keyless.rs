//! `[verifiers.<name>] type = "cosign"` with `trusted_root`: keyless verification. The fields
//! follow `cosign verify`'s flags (`--trusted-root`, `--certificate-identity[-regexp]`,
//! `--certificate-oidc-issuer[-regexp]`, `--certificate-github-workflow-*`,
//! `--insecure-ignore-tlog`, `--insecure-ignore-sct`); as there, identity and issuer are both
//! required, and each is exact or a regular expression, not both.

use std::sync::Arc;

use super::error::PolicyErrorKind;
use super::load::Builder;
use super::raw::TableReader;
use crate::cosign::keyless::{GithubClaim, KeylessPolicy, Matcher, TrustedRoot};

/// Every key a keyless cosign verifier accepts.
pub(super) const KEYLESS_KEYS: &[&str] = &[
    "type",
    "trusted_root",
    "identity",
    "identity_regex",
    "issuer",
    "issuer_regex",
    "github_workflow_trigger",
    "github_workflow_sha",
    "github_workflow_name",
    "github_workflow_repository",
    "github_workflow_ref",
    "tlog",
    "sct",
];

impl Builder<'_> {
    pub(super) fn cosign_keyless(&mut self, t: &TableReader<'_>) -> Option<KeylessPolicy> {
        if let Some(k) = t.get("keys") {
            let reason = "give `keys` (keyed verification) or `trusted_root` (keyless), not both; use two verifiers and `signed_by = { any_of = [...] }` to accept either".into();
            self.ctx
                .push(k.line, &k.path, PolicyErrorKind::Conflict { reason });
        }
        let root = self.trusted_root(t);
        let identity = self.matcher(t, "identity", "\"<certificate SAN: email or URI>\"");
        let issuer = self.matcher(t, "issuer", "\"<OIDC issuer URL>\"");
        let mut github = Vec::new();
        let mut ok = true;
        for (claim, field) in GithubClaim::ALL {
            if let Some(f) = t.get(field) {
                match self.ctx.string(f) {
                    Some(s) if !s.value.is_empty() => github.push((claim, s.value)),
                    Some(_) => {
                        self.ctx.invalid(f, "a non-empty string", "\"\"");
                        ok = false;
                    }
                    None => ok = false,
                }
            }
        }
        // Both default on, as in cosign; turning one off is an explicit, visible choice.
        let tlog = self.flag(t, "tlog");
        let sct = self.flag(t, "sct");
        if t.get("keys").is_some() || !ok {
            return None;
        }
        Some(KeylessPolicy {
            root: root?,
            identity: identity?,
            issuer: issuer?,
            github,
            tlog: tlog?,
            sct: sct?,
        })
    }

    fn flag(&mut self, t: &TableReader<'_>, name: &str) -> Option<bool> {
        match t.get(name) {
            None => Some(true),
            Some(f) => self.ctx.bool(f).map(|b| b.value),
        }
    }

    fn trusted_root(&mut self, t: &TableReader<'_>) -> Option<Arc<TrustedRoot>> {
        let f = t.get("trusted_root")?;
        let s = self.ctx.string(f)?;
        let path = self.resolve(&s.value);
        match TrustedRoot::load(&path) {
            Ok(r) => Some(Arc::new(r)),
            Err(reason) => {
                self.file_error(f, &path, reason);
                None
            }
        }
    }

    /// `name = "..."` or `name_regex = "..."`: exactly one.
    fn matcher(&mut self, t: &TableReader<'_>, name: &str, example: &str) -> Option<Matcher> {
        let regex_name = format!("{name}_regex");
        match (t.get(name), t.get(&regex_name)) {
            (Some(_), Some(r)) => {
                let reason = format!("give `{name}` or `{regex_name}`, not both");
                self.ctx
                    .push(r.line, &r.path, PolicyErrorKind::Conflict { reason });
                None
            }
            (None, None) => {
                self.ctx.push(
                    t.line,
                    &t.child_path(name),
                    PolicyErrorKind::Missing {
                        expected: format!("{name} = {example} or {regex_name} = \"<regular expression>\" (keyless verification requires both the identity and its issuer)"),
                    },
                );
                None
            }
            (Some(f), None) => {
                let s = self.ctx.string(f)?;
                if s.value.is_empty() {
                    self.ctx.invalid(f, "a non-empty string", "\"\"");
                    return None;
                }
                Some(Matcher::Exact(s.value))
            }
            (None, Some(f)) => {
                let s = self.ctx.string(f)?;
                match Matcher::regex(&s.value) {
                    Ok(m) => Some(m),
                    Err(e) => {
                        self.ctx.invalid(
                            f,
                            "a regular expression (Rust `regex` syntax, matched against the whole value)",
                            format!("{:?}: {}", s.value, e.lines().last().unwrap_or("invalid")),
                        );
                        None
                    }
                }
            }
        }
    }
}
