//! `decide`: which rule governs an image. Pure: no I/O, no clock.
//!
//! Decision order: every rule whose scope matches `<registry>/<repository>` is a candidate;
//! the most specific candidate wins (more literal segments, then fewer `**`, then fewer `*`); equal specificity goes to the rule written first. With no candidate,
//! the `[default]` rule applies.

use std::fmt::Write as _;
use std::sync::Arc;

use super::matcher::compare;
use super::model::{DigestPulls, Mode, Requirement, Rule, RuleId};
use super::Policy;

/// The outcome of `Policy::decide`. Only the policy module can build one.
#[derive(Debug, Clone)]
pub struct Decision {
    rule: Arc<Rule>,
    why: String,
}

impl Decision {
    pub fn rule(&self) -> &Rule {
        &self.rule
    }
    pub fn rule_id(&self) -> RuleId {
        self.rule.id()
    }
    /// The rule's `name`, else its scope, else `default`: what messages show.
    pub fn rule_name(&self) -> &str {
        self.rule.name()
    }
    /// The scope pattern that matched; `None` when the default applied.
    pub fn pattern(&self) -> Option<&str> {
        self.rule.scope().map(|s| s.as_str())
    }
    pub fn requirement(&self) -> &Requirement {
        self.rule.requirement()
    }
    pub fn mode(&self) -> Mode {
        self.rule.mode()
    }
    pub fn digest_pulls(&self) -> DigestPulls {
        self.rule.digest_pulls()
    }
    /// How messages and audit events name the rule, e.g.
    /// `rule "org images" (rules[0], scope registry.example.com/org/**)` or `the default rule`.
    pub fn label(&self) -> String {
        match self.pattern() {
            None => "the default rule".to_string(),
            Some(p) => format!(
                "rule {:?} ({}, scope {p})",
                self.rule_name(),
                self.rule_id()
            ),
        }
    }

    /// Which patterns matched and why this rule won, in one line.
    pub fn why(&self) -> &str {
        &self.why
    }
}

pub(crate) fn decide(policy: &Policy, registry: &str, repository: &str) -> Decision {
    let mut candidates: Vec<(&Arc<Rule>, _)> = policy
        .rules
        .iter()
        .filter_map(|r| {
            let scope = r.scope()?;
            scope
                .matches(registry, repository)
                .then(|| (r, scope.specificity()))
        })
        .collect();
    let index = |r: &Rule| match r.id() {
        RuleId::Rule(i) => i,
        RuleId::Default => usize::MAX,
    };
    candidates.sort_by(|a, b| compare((a.1, index(a.0)), (b.1, index(b.0))));
    let image = format!("{}/{}", registry.to_ascii_lowercase(), repository);
    let Some(((winner, spec), rest)) = candidates.split_first() else {
        return Decision {
            rule: policy.default.clone(),
            why: format!("no rule's scope matches {image}; the default applies"),
        };
    };
    let mut why = format!("{} matches {image}", describe(winner));
    match rest.first() {
        None => why.push_str("; it is the only matching rule"),
        Some((runner_up, rspec)) => {
            let _ = write!(
                why,
                "; it wins over {} by {} ({spec} vs {rspec})",
                describe(runner_up),
                spec.reason_over(rspec)
            );
            if rest.len() > 1 {
                let others: Vec<String> = rest[1..].iter().map(|(r, _)| describe(r)).collect();
                let _ = write!(why, "; also matched: {}", others.join(", "));
            }
        }
    }
    Decision {
        rule: (*winner).clone(),
        why,
    }
}

fn describe(r: &Rule) -> String {
    let scope = r.scope().map(|s| s.as_str()).unwrap_or("");
    if r.name() == scope {
        format!("{} (scope {scope})", r.id())
    } else {
        format!("{} {:?} (scope {scope})", r.id(), r.name())
    }
}
