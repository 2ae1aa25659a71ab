//! From the spanned TOML tree to the validated model, collecting every error.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::error::{PolicyErrorKind, PolicyErrors};
use super::matcher::ScopePattern;
use super::model::{
    Combine, DigestPulls, GunTemplate, Mode, NotaryVerifier, Requirement, RoleRequirement, Rule,
    RuleId, SignedRequirement, TrustPinning, TrustServer, Verifier, VerifierKind,
};
use super::raw::{Ctx, Field, Node, TableReader};
use super::Policy;

const TOP_KEYS: &[&str] = &["version", "trust_servers", "verifiers", "default", "rules"];
pub(super) const SERVER_KEYS: &[&str] = &[
    "url",
    "ca_file",
    "username",
    "password_env",
    "password_file",
    "trust_timeout",
];
const RULE_KEYS: &[&str] = &[
    "name",
    "scope",
    "require",
    "message",
    "mode",
    "digest_pulls",
    "trust_server",
    "gun",
    "roles",
    "require_all",
    "pinning",
    "signed_by",
];
const DEFAULT_KEYS: &[&str] = &[
    "require",
    "message",
    "mode",
    "digest_pulls",
    "trust_server",
    "gun",
    "roles",
    "require_all",
    "pinning",
    "signed_by",
];
pub(super) const PINNING_KEYS: &[&str] = &["tofu", "ca", "root_certs"];
const SIGNED_ONLY_KEYS: &[&str] = &[
    "trust_server",
    "gun",
    "roles",
    "require_all",
    "pinning",
    "signed_by",
];
/// A rule's inline Notary fields: they define the rule's own Notary verifier, so they cannot
/// be combined with `signed_by` (which names `[verifiers]`).
pub(super) const NOTARY_KEYS: &[&str] = &["trust_server", "gun", "roles", "require_all", "pinning"];

pub(crate) const DEFAULT_GUN: &str = "{registry}/{repository}";

/// Loads `text`; relative file references resolve against `base_dir`.
pub(crate) fn load(text: &str, origin: &str, base_dir: &Path) -> Result<Policy, PolicyErrors> {
    let mut ctx = Ctx::new(origin, text);
    let policy = ctx.parse(text).and_then(|doc| {
        let root = Field {
            key: "",
            item: Node::Table(doc.as_table()),
            path: String::new(),
            line: Some(1),
        };
        let mut b = Builder {
            ctx: &mut ctx,
            base_dir,
        };
        b.policy(&root, origin)
    });
    match policy {
        Some(p) if ctx.errors.is_empty() => Ok(p),
        _ => {
            let mut errors = ctx.errors;
            // Stable, file-ordered output; errors without a line (none today) go last.
            errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
            Err(PolicyErrors { errors })
        }
    }
}

pub(super) struct Builder<'c> {
    pub(super) ctx: &'c mut Ctx,
    pub(super) base_dir: &'c Path,
}

impl Builder<'_> {
    fn policy(&mut self, root: &Field<'_>, origin: &str) -> Option<Policy> {
        let top = self.ctx.table(root, Some(TOP_KEYS))?;
        if let Some(f) = top.get("version") {
            if let Some(v) = self.ctx.integer(f) {
                if v.value != 1 {
                    self.ctx.invalid(f, "1", v.value.to_string());
                }
            }
        }
        let servers = self.trust_servers(&top);
        let verifiers = self.verifiers(&top, &servers);
        let default = match top.get("default") {
            Some(f) => self
                .ctx
                .table(f, Some(DEFAULT_KEYS))
                .and_then(|t| self.rule(&t, RuleId::Default, &servers, &verifiers)),
            // Fail closed: an image no rule covers is refused unless the file says otherwise.
            None => Some(Rule {
                id: RuleId::Default,
                name: "default".into(),
                scope: None,
                requirement: Requirement::Reject {
                    message: Some("no policy rule covers this image".into()),
                },
                mode: Mode::Enforce,
                digest_pulls: DigestPulls::Allow,
            }),
        };
        let mut rules: Vec<(Rule, Option<usize>, Option<usize>)> = Vec::new();
        if let Some(f) = top.get("rules") {
            if let Some(tables) = self.ctx.tables(f, RULE_KEYS) {
                for (i, t) in tables.iter().enumerate() {
                    if let Some(r) = self.rule(t, RuleId::Rule(i), &servers, &verifiers) {
                        let line_of = |k: &str| t.get(k).and_then(|f| f.line).or(t.line);
                        rules.push((r, line_of("scope"), line_of("name")));
                    }
                }
            }
        }
        self.duplicates(&rules);
        Some(Policy {
            origin: origin.to_string(),
            rules: rules.into_iter().map(|(r, _, _)| Arc::new(r)).collect(),
            default: Arc::new(default?),
            servers: servers.into_values().collect(),
        })
    }

    /// A repeated scope makes the later rule dead; a repeated name makes messages ambiguous.
    fn duplicates(&mut self, rules: &[(Rule, Option<usize>, Option<usize>)]) {
        let mut scopes: BTreeMap<&str, (RuleId, Option<usize>)> = BTreeMap::new();
        let mut names: BTreeMap<&str, (RuleId, Option<usize>)> = BTreeMap::new();
        for (r, scope_line, name_line) in rules {
            if let Some(s) = &r.scope {
                if let Some((first, fl)) = scopes.get(s.as_str()) {
                    let reason = format!(
                        "same scope {:?} as {first}{}; only the first could ever apply",
                        s.as_str(),
                        at_line(*fl)
                    );
                    let field = format!("{}.scope", r.id);
                    self.ctx
                        .push(*scope_line, &field, PolicyErrorKind::Conflict { reason });
                } else {
                    scopes.insert(s.as_str(), (r.id, *scope_line));
                }
            }
            if let Some((first, fl)) = names.get(r.name.as_str()) {
                let reason = format!(
                    "rule name {:?} is already used by {first}{}",
                    r.name,
                    at_line(*fl)
                );
                let field = format!("{}.name", r.id);
                self.ctx
                    .push(*name_line, &field, PolicyErrorKind::Conflict { reason });
            } else {
                names.insert(r.name.as_str(), (r.id, *name_line));
            }
        }
    }

    fn rule(
        &mut self,
        t: &TableReader<'_>,
        id: RuleId,
        servers: &BTreeMap<String, Arc<TrustServer>>,
        verifiers: &BTreeMap<String, Arc<Verifier>>,
    ) -> Option<Rule> {
        let mut ok = true;
        let scope = match (id, t.get("scope")) {
            (RuleId::Default, _) => None,
            (RuleId::Rule(_), None) => {
                let expected = "a pattern such as \"registry.example.com/org/**\"".into();
                self.ctx.push(
                    t.line,
                    &t.child_path("scope"),
                    PolicyErrorKind::Missing { expected },
                );
                ok = false;
                None
            }
            (RuleId::Rule(_), Some(f)) => match self.ctx.string(f) {
                Some(s) => match ScopePattern::parse(&s.value) {
                    Ok(p) => Some(p),
                    Err(expected) => {
                        self.ctx.invalid(f, &expected, format!("{:?}", s.value));
                        ok = false;
                        None
                    }
                },
                None => {
                    ok = false;
                    None
                }
            },
        };
        let name = t.get("name").and_then(|f| {
            let s = self.ctx.string(f)?;
            if s.value.trim().is_empty() {
                self.ctx
                    .invalid(f, "a non-empty name", format!("{:?}", s.value));
                return None;
            }
            Some(s.value)
        });
        let name = match (id, name, &scope) {
            (RuleId::Default, _, _) => "default".to_string(),
            (_, Some(n), _) => n,
            (_, None, Some(s)) => s.as_str().to_string(),
            (_, None, None) => id.to_string(),
        };
        let mode = self.choice(
            t,
            "mode",
            &[("enforce", Mode::Enforce), ("audit", Mode::Audit)],
        );
        let digest_pulls = self.choice(
            t,
            "digest_pulls",
            &[
                ("allow", DigestPulls::Allow),
                ("signed-only", DigestPulls::SignedOnly),
            ],
        );
        #[derive(Clone, Copy, PartialEq)]
        enum Kind {
            Allow,
            Reject,
            Signed,
        }
        let kind = match t.get("require") {
            None => {
                let expected = "\"allow\", \"reject\" or \"signed\"".into();
                self.ctx.push(
                    t.line,
                    &t.child_path("require"),
                    PolicyErrorKind::Missing { expected },
                );
                None
            }
            Some(_) => self.choice(
                t,
                "require",
                &[
                    ("allow", Kind::Allow),
                    ("reject", Kind::Reject),
                    ("signed", Kind::Signed),
                ],
            )?,
        };
        let kind = kind?;
        if kind != Kind::Signed {
            for key in SIGNED_ONLY_KEYS {
                if let Some(f) = t.get(key) {
                    let reason = "only valid with require = \"signed\"".to_string();
                    self.ctx
                        .push(f.line, &f.path, PolicyErrorKind::Conflict { reason });
                    ok = false;
                }
            }
            if let (Some(Some(DigestPulls::SignedOnly)), Some(f)) =
                (digest_pulls, t.get("digest_pulls"))
            {
                let reason = "\"signed-only\" needs require = \"signed\"".to_string();
                self.ctx
                    .push(f.line, &f.path, PolicyErrorKind::Conflict { reason });
                ok = false;
            }
        }
        let message = t.get("message").and_then(|f| {
            if kind != Kind::Reject {
                let reason = "only valid with require = \"reject\"".to_string();
                self.ctx
                    .push(f.line, &f.path, PolicyErrorKind::Conflict { reason });
                None
            } else {
                self.ctx.string(f).map(|s| s.value)
            }
        });
        let requirement = match kind {
            Kind::Allow => Some(Requirement::Allow),
            Kind::Reject => Some(Requirement::Reject { message }),
            Kind::Signed => self
                .signed(t, id, servers, verifiers)
                .map(Requirement::Signed),
        };
        if !ok {
            return None;
        }
        Some(Rule {
            id,
            name,
            scope,
            requirement: requirement?,
            mode: mode?.unwrap_or(Mode::Enforce),
            digest_pulls: digest_pulls?.unwrap_or(DigestPulls::Allow),
        })
    }

    /// A string field restricted to fixed words. `Some(None)` = absent, `None` = invalid.
    fn choice<T: Copy>(
        &mut self,
        t: &TableReader<'_>,
        key: &str,
        options: &[(&str, T)],
    ) -> Option<Option<T>> {
        let Some(f) = t.get(key) else {
            return Some(None);
        };
        let expected = expected_words(options.iter().map(|(w, _)| *w));
        match f.item {
            Node::Item(i) if i.is_str() => {}
            other => {
                self.ctx.invalid(f, &expected, super::raw::describe(other));
                return None;
            }
        }
        let s = self.ctx.string(f)?;
        match options.iter().find(|(w, _)| *w == s.value) {
            Some((_, v)) => Some(Some(*v)),
            None => {
                self.ctx.invalid(f, &expected, format!("{:?}", s.value));
                None
            }
        }
    }

    /// `require = "signed"`: the verifiers `signed_by` names, or else the rule's own Notary
    /// verifier from its inline fields (what every policy written before `[verifiers]` means).
    fn signed(
        &mut self,
        t: &TableReader<'_>,
        id: RuleId,
        servers: &BTreeMap<String, Arc<TrustServer>>,
        verifiers: &BTreeMap<String, Arc<Verifier>>,
    ) -> Option<SignedRequirement> {
        let Some(f) = t.get("signed_by") else {
            let notary = self.notary(t, servers)?;
            return Some(SignedRequirement {
                combine: Combine::AnyOf,
                verifiers: vec![Arc::new(Verifier {
                    name: id.to_string(),
                    kind: VerifierKind::Notary(notary),
                })],
            });
        };
        let mut ok = true;
        for key in NOTARY_KEYS {
            if let Some(g) = t.get(key) {
                let reason = "the rule names its verifiers with `signed_by`; put Notary settings in a [verifiers.<name>] table with type = \"notary\"".to_string();
                self.ctx
                    .push(g.line, &g.path, PolicyErrorKind::Conflict { reason });
                ok = false;
            }
        }
        let signed_by = self.signed_by(f, verifiers);
        if !ok {
            return None;
        }
        signed_by
    }

    /// The Notary v1 verifier described by `t`'s `trust_server`, `gun`, `roles` or
    /// `require_all`, and `pinning` (a rule's inline fields or a `type = "notary"` table).
    pub(super) fn notary(
        &mut self,
        t: &TableReader<'_>,
        servers: &BTreeMap<String, Arc<TrustServer>>,
    ) -> Option<NotaryVerifier> {
        let server = match t.get("trust_server") {
            Some(f) => self
                .ctx
                .string(f)
                .and_then(|s| match servers.get(&s.value) {
                    Some(srv) => Some(srv.clone()),
                    None => {
                        let known: Vec<&str> = servers.keys().map(String::as_str).collect();
                        let expected = if known.is_empty() {
                            "the name of a [trust_servers.<name>] table (none are defined)".into()
                        } else {
                            format!("one of the [trust_servers] names: {}", known.join(", "))
                        };
                        self.ctx.invalid(f, &expected, format!("{:?}", s.value));
                        None
                    }
                }),
            // One server is the common case; naming it in every rule would be noise.
            None if servers.len() == 1 => servers.values().next().cloned(),
            None => {
                let expected = if servers.is_empty() {
                    "a [trust_servers.<name>] table and `trust_server = \"<name>\"`".to_string()
                } else {
                    "`trust_server = \"<name>\"` (several trust servers are defined)".to_string()
                };
                self.ctx.push(
                    t.line,
                    &t.child_path("trust_server"),
                    PolicyErrorKind::Missing { expected },
                );
                None
            }
        };
        let gun = match t.get("gun") {
            None => Some(GunTemplate(DEFAULT_GUN.into())),
            Some(f) => self.ctx.string(f).and_then(|s| match check_gun(&s.value) {
                Ok(()) => Some(GunTemplate(s.value)),
                Err(expected) => {
                    self.ctx.invalid(f, expected, format!("{:?}", s.value));
                    None
                }
            }),
        };
        let roles = self.roles(t);
        let pinning = match t.get("pinning") {
            None => Some(TrustPinning {
                tofu: true,
                ..TrustPinning::default()
            }),
            Some(f) => self.pinning(f),
        };
        Some(NotaryVerifier {
            trust_server: server?,
            gun: gun?,
            roles: roles?,
            pinning: pinning?,
        })
    }

    fn roles(&mut self, t: &TableReader<'_>) -> Option<RoleRequirement> {
        match (t.get("roles"), t.get("require_all")) {
            (Some(_), Some(b)) => {
                let reason = "give `roles` (first match wins) or `require_all`, not both".into();
                self.ctx
                    .push(b.line, &b.path, PolicyErrorKind::Conflict { reason });
                None
            }
            (None, None) => Some(RoleRequirement::docker_default()),
            (Some(f), None) => self.role_list(f).map(RoleRequirement::FirstOf),
            (None, Some(f)) => self.role_list(f).map(RoleRequirement::AllOf),
        }
    }

    fn role_list(&mut self, f: &Field<'_>) -> Option<Vec<String>> {
        let list = self.ctx.strings(f)?;
        if list.is_empty() {
            self.ctx.invalid(f, "at least one role", "an empty array");
            return None;
        }
        let mut out: Vec<String> = Vec::new();
        let mut ok = true;
        for r in list {
            // Notary's delegation names: `^[-a-z0-9_/]+$`, under 256 characters, below `targets`.
            let valid = r.value == "targets"
                || r.value.len() < 256
                    && r.value.strip_prefix("targets/").is_some_and(|d| {
                        !d.split('/').any(str::is_empty)
                            && d.chars().all(|c| {
                                c.is_ascii_lowercase() || c.is_ascii_digit() || "-_/".contains(c)
                            })
                    });
            let err = if !valid {
                Some((
                    "\"targets\" or a delegation \"targets/<name>\" ([-a-z0-9_/])",
                    format!("{:?}", r.value),
                ))
            } else if out.contains(&r.value) {
                Some(("each role once", format!("{:?} twice", r.value)))
            } else {
                None
            };
            match err {
                Some((expected, found)) => {
                    ok = false;
                    let kind = PolicyErrorKind::Invalid {
                        expected: expected.into(),
                        found,
                    };
                    self.ctx.push(r.line, &r.field, kind);
                }
                None => out.push(r.value),
            }
        }
        ok.then_some(out)
    }
}

fn check_gun(t: &str) -> Result<(), &'static str> {
    let rest = t.replace("{registry}", "").replace("{repository}", "");
    if !t.contains("{repository}") {
        return Err("a GUN template containing {repository}");
    }
    if rest.contains(['{', '}']) {
        return Err("a GUN template whose only placeholders are {registry} and {repository}");
    }
    Ok(())
}

pub(super) fn expected_words<'a>(words: impl Iterator<Item = &'a str>) -> String {
    let quoted: Vec<String> = words.map(|w| format!("{w:?}")).collect();
    match quoted.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

pub(super) fn at_line(line: Option<usize>) -> String {
    line.map(|l| format!(" (line {l})")).unwrap_or_default()
}
