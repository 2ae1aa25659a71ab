//! Which authenticated identities may use which repositories (`[[client_auth.access]]`).
//!
//! Without any entry, every authenticated identity pulls everything trustgate's upstream
//! credentials can read, as distribution's htpasswd mode does. With entries, access is
//! denied unless an entry names the identity *and* a scope covering the repository — the
//! allow-list model of zot's `accessControl` and Harbor's project membership: an identity
//! added to the htpasswd file reaches nothing until an entry says what.
//!
//! ```toml
//! [[client_auth.access]]
//! identities = ["user:alice", "token:ci", "cert:CN=node-1"]
//! scopes = ["registry.corp/team-a/**", "docker.io/library/*"]
//! ```
//!
//! Identities are written as the request log prints them (`user:NAME`, `token:NAME`,
//! `cert:SUBJECT`), exactly, or `user:*` / `token:*` / `cert:*` for any identity of that
//! kind. Scopes use the policy's pattern grammar (`*` one segment, `**` any number).

use std::fmt;

use crate::policy::ScopePattern;

use super::Identity;

/// One `[[client_auth.access]]` entry.
#[derive(Debug, Clone)]
pub struct AccessRule {
    pub identities: Vec<IdentityPattern>,
    pub scopes: Vec<ScopePattern>,
}

/// An identity as written in an access entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityPattern {
    Exact(Identity),
    AnyOfKind(Kind),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    User,
    Token,
    Certificate,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Kind::User => "user",
            Kind::Token => "token",
            Kind::Certificate => "cert",
        }
    }

    fn of(id: &Identity) -> Option<Kind> {
        match id {
            Identity::Anonymous => None,
            Identity::User(_) => Some(Kind::User),
            Identity::Token(_) => Some(Kind::Token),
            Identity::Certificate(_) => Some(Kind::Certificate),
        }
    }
}

impl IdentityPattern {
    /// Parses `user:NAME`, `token:NAME`, `cert:SUBJECT` or `KIND:*`; the error says what was
    /// expected.
    pub fn parse(text: &str) -> Result<IdentityPattern, String> {
        let (kind, name) = text.split_once(':').ok_or_else(|| {
            format!("user:NAME, token:NAME or cert:SUBJECT (found {text:?}, with no kind)")
        })?;
        let kind = match kind {
            "user" => Kind::User,
            "token" => Kind::Token,
            "cert" => Kind::Certificate,
            other => {
                return Err(format!(
                    "an identity kind of user, token or cert (found {other:?} in {text:?})"
                ))
            }
        };
        if name.is_empty() {
            return Err(format!("a name after {:?}", format!("{}:", kind.prefix())));
        }
        if name == "*" {
            return Ok(IdentityPattern::AnyOfKind(kind));
        }
        if name.contains('*') {
            return Err(format!(
                "an exact name, or `*` alone for any {} (found {text:?})",
                kind.prefix()
            ));
        }
        let name = name.to_string();
        Ok(IdentityPattern::Exact(match kind {
            Kind::User => Identity::User(name),
            Kind::Token => Identity::Token(name),
            Kind::Certificate => Identity::Certificate(name),
        }))
    }

    pub fn matches(&self, id: &Identity) -> bool {
        match self {
            IdentityPattern::Exact(want) => want == id,
            IdentityPattern::AnyOfKind(k) => Kind::of(id) == Some(*k),
        }
    }
}

impl fmt::Display for IdentityPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentityPattern::Exact(id) => id.fmt(f),
            IdentityPattern::AnyOfKind(k) => write!(f, "{}:*", k.prefix()),
        }
    }
}

/// Whether `rules` let `id` use `registry/repository`: always with no rules, otherwise only
/// when one rule names both.
pub fn allows(rules: &[AccessRule], id: &Identity, registry: &str, repository: &str) -> bool {
    rules.is_empty()
        || rules.iter().any(|r| {
            r.identities.iter().any(|p| p.matches(id))
                && r.scopes.iter().any(|s| s.matches(registry, repository))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(ids: &[&str], scopes: &[&str]) -> AccessRule {
        AccessRule {
            identities: ids
                .iter()
                .map(|i| IdentityPattern::parse(i).unwrap())
                .collect(),
            scopes: scopes
                .iter()
                .map(|s| ScopePattern::parse(s).unwrap())
                .collect(),
        }
    }

    #[test]
    fn an_identity_reaches_only_the_scopes_an_entry_grants_it() {
        let rules = [
            rule(&["user:alice", "token:ci"], &["reg.corp/team-a/**"]),
            rule(&["cert:*"], &["docker.io/library/*"]),
        ];
        let alice = Identity::User("alice".into());
        let bob = Identity::User("bob".into());
        let node = Identity::Certificate("CN=node-1".into());
        assert!(allows(&rules, &alice, "reg.corp", "team-a/app"));
        assert!(allows(&rules, &alice, "REG.corp", "team-a/deep/app"));
        assert!(!allows(&rules, &alice, "reg.corp", "team-b/app"));
        assert!(!allows(&rules, &alice, "docker.io", "library/alpine"));
        assert!(
            !allows(&rules, &bob, "reg.corp", "team-a/app"),
            "not listed"
        );
        assert!(allows(
            &rules,
            &Identity::Token("ci".into()),
            "reg.corp",
            "team-a/x"
        ));
        // A token named alice is not the user alice.
        assert!(!allows(
            &rules,
            &Identity::Token("alice".into()),
            "reg.corp",
            "team-a/x"
        ));
        assert!(allows(&rules, &node, "docker.io", "library/alpine"));
        assert!(!allows(&rules, &node, "docker.io", "library/x/y"));
        assert!(!allows(
            &rules,
            &Identity::Anonymous,
            "docker.io",
            "library/alpine"
        ));
        assert!(
            allows(&[], &bob, "any", "thing"),
            "no entries: no restriction"
        );
    }

    #[test]
    fn identity_patterns_say_what_is_wrong() {
        for (bad, says) in [
            ("alice", "with no kind"),
            ("group:x", "user, token or cert"),
            ("user:", "a name after"),
            ("user:al*", "`*` alone"),
        ] {
            let e = IdentityPattern::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        assert_eq!(
            IdentityPattern::parse("cert:CN=a,O=b").unwrap().to_string(),
            "cert:CN=a,O=b"
        );
    }
}
