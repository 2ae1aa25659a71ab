//! Scope patterns over `<registry>/<repository>`.
//!
//! A pattern is a `/`-separated list of segments. Each segment is a literal, `*` (exactly one
//! segment) or `**` (zero or more segments). The first segment of the image is its registry
//! (`docker.io`, `registry.example.com:5000`), compared case-insensitively because host names
//! are; repository segments are compared exactly (the distribution grammar makes them
//! lowercase). Partial wildcards such as `team-*` are refused at load time so that what a rule
//! covers is always visible at a glance.

use std::cmp::Ordering;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    One,
    Any,
}

/// A parsed scope pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopePattern {
    text: String,
    segments: Vec<Segment>,
}

/// How specific a pattern is; larger is more specific. Compared field by field, in this order:
/// more literal segments, then fewer `**`, then fewer `*`. (A segment count would add nothing:
/// it is the sum of the three.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Specificity {
    pub literals: usize,
    /// Stored negated so that the derived `Ord` prefers fewer.
    neg_any: isize,
    neg_one: isize,
}

impl Specificity {
    pub fn any_wildcards(&self) -> usize {
        self.neg_any.unsigned_abs()
    }
    pub fn one_wildcards(&self) -> usize {
        self.neg_one.unsigned_abs()
    }

    /// Names the first criterion on which `self` beats `other` (for `explain`).
    pub fn reason_over(&self, other: &Specificity) -> &'static str {
        if self.literals != other.literals {
            "more literal segments"
        } else if self.neg_any != other.neg_any {
            "fewer `**` wildcards"
        } else if self.neg_one != other.neg_one {
            "fewer `*` wildcards"
        } else {
            "equally specific, and earlier in the file"
        }
    }
}

impl fmt::Display for Specificity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} literal, {} `**`, {} `*`",
            self.literals,
            self.any_wildcards(),
            self.one_wildcards()
        )
    }
}

impl ScopePattern {
    /// Parses a pattern; the error text says what was expected.
    pub fn parse(text: &str) -> Result<ScopePattern, String> {
        if text.is_empty() {
            return Err("a non-empty pattern".into());
        }
        let mut segments = Vec::new();
        for (i, seg) in text.split('/').enumerate() {
            let parsed = match seg {
                "" => return Err("no empty segments (leading, trailing or doubled `/`)".into()),
                "*" => Segment::One,
                "**" => Segment::Any,
                s if s.contains('*') => {
                    return Err(format!(
                        "`*` or `**` only as a whole segment (segment {s:?})"
                    ))
                }
                s if i == 0 => {
                    if !s.chars().all(|c| {
                        c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']' | '_')
                    }) {
                        return Err(format!(
                            "a registry host[:port] as the first segment (found {s:?})"
                        ));
                    }
                    Segment::Literal(s.to_ascii_lowercase())
                }
                s => {
                    if !s.chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
                    }) {
                        return Err(format!(
                            "repository segments of lowercase letters, digits, `.`, `_`, `-` (found {s:?})"
                        ));
                    }
                    Segment::Literal(s.to_string())
                }
            };
            segments.push(parsed);
        }
        let fixed = segments.iter().filter(|s| **s != Segment::Any).count();
        if fixed < 2 && !segments.contains(&Segment::Any) {
            return Err("`<registry>/<repository>` (at least two segments, or a `**`)".into());
        }
        Ok(ScopePattern {
            text: text.to_string(),
            segments,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn specificity(&self) -> Specificity {
        let count = |want: &Segment| self.segments.iter().filter(|s| *s == want).count();
        Specificity {
            literals: self
                .segments
                .iter()
                .filter(|s| matches!(s, Segment::Literal(_)))
                .count(),
            neg_any: -(count(&Segment::Any) as isize),
            neg_one: -(count(&Segment::One) as isize),
        }
    }

    /// Whether the pattern matches `registry/repository`.
    pub fn matches(&self, registry: &str, repository: &str) -> bool {
        let registry = registry.to_ascii_lowercase();
        let mut input: Vec<&str> = vec![registry.as_str()];
        input.extend(repository.split('/'));
        matches_segments(&self.segments, &input)
    }
}

impl fmt::Display for ScopePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Glob matching over segments with `**` as zero-or-more, by dynamic programming over
/// (pattern prefix, input prefix) so that no pattern can cause exponential backtracking.
fn matches_segments(pattern: &[Segment], input: &[&str]) -> bool {
    // reach[j]: the first i pattern segments can consume exactly the first j input segments.
    let mut reach = vec![false; input.len() + 1];
    reach[0] = true;
    for seg in pattern {
        let mut next = vec![false; input.len() + 1];
        match seg {
            Segment::Any => {
                let mut seen = false;
                for j in 0..=input.len() {
                    seen |= reach[j];
                    next[j] = seen;
                }
            }
            Segment::One => {
                next[1..].copy_from_slice(&reach[..input.len()]);
            }
            Segment::Literal(l) => {
                for j in 1..=input.len() {
                    next[j] = reach[j - 1] && input[j - 1] == l;
                }
            }
        }
        reach = next;
    }
    reach[input.len()]
}

/// Orders candidates: the most specific first; equal specificity goes to the earlier rule.
pub(crate) fn compare(a: (Specificity, usize), b: (Specificity, usize)) -> Ordering {
    b.0.cmp(&a.0).then(a.1.cmp(&b.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, reg: &str, repo: &str) -> bool {
        ScopePattern::parse(p).unwrap().matches(reg, repo)
    }

    #[test]
    fn star_is_one_segment_and_double_star_any_depth() {
        assert!(m("r.io/*", "r.io", "app"));
        assert!(!m("r.io/*", "r.io", "org/app"));
        assert!(m("r.io/**", "r.io", "org/team/app"));
        assert!(m("r.io/org/**", "r.io", "org"));
        assert!(m("**/app", "r.io", "a/b/app"));
        assert!(!m("**/app", "r.io", "a/b/app2"));
        assert!(m("R.IO/app", "r.io", "app"));
        assert!(!m("r.io/app", "r.io", "app/x"));
    }

    #[test]
    fn rejects_bad_patterns() {
        for p in ["", "r.io", "r.io//a", "/r.io/a", "r.io/team-*", "r.io/App"] {
            assert!(ScopePattern::parse(p).is_err(), "{p}");
        }
    }
}
