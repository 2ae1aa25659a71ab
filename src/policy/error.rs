//! Load errors. Every error names the file, the line, the field (as a path such as
//! `rules[2].mode`) and what was expected, so `trustgate policy check` output can be acted on
//! without opening the source.

use std::fmt;

/// What is wrong with one field of a policy file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyErrorKind {
    #[error("cannot read the file: {reason}")]
    Read { reason: String },
    #[error("invalid TOML: {message}")]
    Syntax { message: String },
    #[error("unknown key; expected one of {expected}")]
    UnknownKey { expected: String },
    #[error("missing; expected {expected}")]
    Missing { expected: String },
    #[error("expected {expected}, found {found}")]
    Invalid { expected: String, found: String },
    #[error("{reason}")]
    Conflict { reason: String },
    #[error("file {path}: {reason}")]
    ReferencedFile { path: String, reason: String },
}

/// One problem in a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// The file path, or the origin name given to `Policy::from_str`.
    pub origin: String,
    /// 1-based line; `None` only when the file could not be read at all.
    pub line: Option<usize>,
    /// Dotted path of the field, e.g. `rules[2].mode`; empty for whole-file problems.
    pub field: String,
    pub kind: PolicyErrorKind,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.kind)
    }
}

impl std::error::Error for PolicyError {}

/// All problems found in one policy file, in file order. Never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyErrors {
    pub errors: Vec<PolicyError>,
}

impl PolicyErrors {
    pub fn iter(&self) -> impl Iterator<Item = &PolicyError> {
        self.errors.iter()
    }

    pub fn len(&self) -> usize {
        self.errors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }
}

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}
