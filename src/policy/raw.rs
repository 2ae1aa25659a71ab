//! Reading the TOML parse tree with positions.
//!
//! serde's `deny_unknown_fields` stops at the first problem; a policy check must list every
//! problem with its line. So the loader walks `toml_edit`'s spanned tree itself: each table is
//! opened with the list of keys it accepts (anything else is reported at once, which is what
//! `deny_unknown_fields` would do), and every typed read records a precise error on mismatch and
//! carries on.

use std::ops::Range;

use toml_edit::{ImDocument, Item, Key, Table, Value};

use super::error::{PolicyError, PolicyErrorKind};

/// A value with the line it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Spanned<T> {
    pub value: T,
    pub line: Option<usize>,
    pub field: String,
}

/// Error collector and position mapper for one file.
pub(crate) struct Ctx {
    origin: String,
    line_starts: Vec<usize>,
    pub errors: Vec<PolicyError>,
}

impl Ctx {
    pub fn new(origin: &str, text: &str) -> Ctx {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Ctx {
            origin: origin.to_string(),
            line_starts,
            errors: Vec::new(),
        }
    }

    pub fn line_of(&self, span: Option<Range<usize>>) -> Option<usize> {
        let start = span?.start;
        Some(match self.line_starts.binary_search(&start) {
            Ok(i) => i + 1,
            Err(i) => i,
        })
    }

    pub fn push(&mut self, line: Option<usize>, field: &str, kind: PolicyErrorKind) {
        self.errors.push(PolicyError {
            origin: self.origin.clone(),
            line,
            field: field.to_string(),
            kind,
        });
    }

    pub fn invalid(&mut self, at: &Field<'_>, expected: &str, found: impl Into<String>) {
        self.push(
            at.line,
            &at.path,
            PolicyErrorKind::Invalid {
                expected: expected.to_string(),
                found: found.into(),
            },
        );
    }

    /// Parses the document; a syntax error is the only error reported for the file, because
    /// nothing after it can be trusted.
    pub fn parse<'t>(&mut self, text: &'t str) -> Option<ImDocument<&'t str>> {
        match ImDocument::parse(text) {
            Ok(doc) => Some(doc),
            Err(e) => {
                let line = self.line_of(e.span());
                let message = e
                    .message()
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect::<Vec<_>>()
                    .join("; ");
                self.push(line, "", PolicyErrorKind::Syntax { message });
                None
            }
        }
    }

    pub fn string(&mut self, f: &Field<'_>) -> Option<Spanned<String>> {
        match f.item.as_str() {
            Some(s) => Some(f.spanned(s.to_string())),
            None => {
                self.invalid(f, "a string", describe(f.item));
                None
            }
        }
    }

    pub fn bool(&mut self, f: &Field<'_>) -> Option<Spanned<bool>> {
        match f.item.as_bool() {
            Some(b) => Some(f.spanned(b)),
            None => {
                self.invalid(f, "true or false", describe(f.item));
                None
            }
        }
    }

    pub fn integer(&mut self, f: &Field<'_>) -> Option<Spanned<i64>> {
        match f.item.as_integer() {
            Some(i) => Some(f.spanned(i)),
            None => {
                self.invalid(f, "an integer", describe(f.item));
                None
            }
        }
    }

    /// An array of strings; elements of the wrong type are reported one by one and left out,
    /// so that the rest can still be checked (the load fails on any recorded error).
    pub fn strings(&mut self, f: &Field<'_>) -> Option<Vec<Spanned<String>>> {
        let Some(array) = f.item.as_array() else {
            self.invalid(f, "an array of strings", describe(f.item));
            return None;
        };
        let mut out = Vec::new();
        for (i, v) in array.iter().enumerate() {
            let line = self.line_of(v.span()).or(f.line);
            let path = format!("{}[{i}]", f.path);
            match v.as_str() {
                Some(s) => out.push(Spanned {
                    value: s.to_string(),
                    line,
                    field: path,
                }),
                None => {
                    self.push(
                        line,
                        &path,
                        PolicyErrorKind::Invalid {
                            expected: "a string".into(),
                            found: describe_value(v),
                        },
                    );
                }
            }
        }
        Some(out)
    }

    /// Opens a table (`[x]` or `x = { ... }`) accepting only `allowed` keys; `allowed = None`
    /// accepts any key (maps such as `trust_servers` or `root_certs`).
    pub fn table<'t>(
        &mut self,
        f: &Field<'t>,
        allowed: Option<&'static [&'static str]>,
    ) -> Option<TableReader<'t>> {
        let entries: Vec<(&'t Key, &'t Item)> = if let Some(t) = f.item.as_table() {
            t.iter().filter_map(|(k, _)| t.get_key_value(k)).collect()
        } else if let Some(t) = f.item.as_inline_table() {
            t.iter().filter_map(|(k, _)| t.get_key_value(k)).collect()
        } else {
            self.invalid(f, "a table", describe(f.item));
            return None;
        };
        let mut fields = Vec::new();
        for (key, item) in entries {
            let path = if f.path.is_empty() {
                key.get().to_string()
            } else if allowed.is_some() {
                format!("{}.{}", f.path, key.get())
            } else {
                format!("{}.{}", f.path, quote_key(key.get()))
            };
            let line = self.line_of(key.span()).or(f.line);
            if let Some(allowed) = allowed {
                if !allowed.contains(&key.get()) {
                    let expected = allowed.join(", ");
                    self.push(line, &path, PolicyErrorKind::UnknownKey { expected });
                    continue;
                }
            }
            fields.push(Field {
                key: key.get(),
                item: Node::Item(item),
                path,
                line,
            });
        }
        Some(TableReader {
            path: f.path.clone(),
            line: f.line,
            fields,
        })
    }

    /// An array of tables (`[[rules]]`), each element opened like `table`.
    pub fn tables<'t>(
        &mut self,
        f: &Field<'t>,
        allowed: &'static [&'static str],
    ) -> Option<Vec<TableReader<'t>>> {
        let elements: Vec<&'t Table> = match f.item {
            Node::Item(Item::ArrayOfTables(a)) => a.iter().collect(),
            _ => {
                self.invalid(f, "an array of tables ([[rules]])", describe(f.item));
                return None;
            }
        };
        let mut out = Vec::new();
        for (i, table) in elements.into_iter().enumerate() {
            let line = self.line_of(table.span()).or(f.line);
            let elem = Field {
                key: f.key,
                item: Node::Table(table),
                path: format!("{}[{i}]", f.path),
                line,
            };
            if let Some(t) = self.table(&elem, Some(allowed)) {
                out.push(t);
            }
        }
        Some(out)
    }
}

/// The entries of one table, each with its path and line.
pub(crate) struct TableReader<'t> {
    pub path: String,
    pub line: Option<usize>,
    pub fields: Vec<Field<'t>>,
}

impl<'t> TableReader<'t> {
    pub fn get(&self, key: &str) -> Option<&Field<'t>> {
        self.fields.iter().find(|f| f.key == key)
    }

    /// Path of a (possibly absent) child, for "missing" messages.
    pub fn child_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }
}

/// A value in the tree: an item under a key, or one element of an array of tables.
#[derive(Clone, Copy)]
pub(crate) enum Node<'t> {
    Item(&'t Item),
    Table(&'t Table),
}

impl<'t> Node<'t> {
    fn item(self) -> Option<&'t Item> {
        match self {
            Node::Item(i) => Some(i),
            Node::Table(_) => None,
        }
    }
    fn as_str(self) -> Option<&'t str> {
        self.item()?.as_str()
    }
    fn as_bool(self) -> Option<bool> {
        self.item()?.as_bool()
    }
    fn as_integer(self) -> Option<i64> {
        self.item()?.as_integer()
    }
    fn as_array(self) -> Option<&'t toml_edit::Array> {
        self.item()?.as_array()
    }
    fn as_table(self) -> Option<&'t Table> {
        match self {
            Node::Item(i) => i.as_table(),
            Node::Table(t) => Some(t),
        }
    }
    fn as_inline_table(self) -> Option<&'t toml_edit::InlineTable> {
        self.item()?.as_inline_table()
    }
}

/// One key of a table and its value.
pub(crate) struct Field<'t> {
    pub key: &'t str,
    pub item: Node<'t>,
    pub path: String,
    pub line: Option<usize>,
}

impl Field<'_> {
    /// Whether the value is a string (as opposed to a table, array, ...).
    pub fn item_is_str(&self) -> bool {
        self.item.as_str().is_some()
    }

    pub fn spanned<T>(&self, value: T) -> Spanned<T> {
        Spanned {
            value,
            line: self.line,
            field: self.path.clone(),
        }
    }
}

fn quote_key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_string()
    } else {
        format!("{k:?}")
    }
}

/// Shows the offending value the way it appears in TOML (strings quoted), or its type.
pub(crate) fn describe(node: Node<'_>) -> String {
    let item = match node {
        Node::Item(i) => i,
        Node::Table(_) => return "a table".into(),
    };
    match item {
        Item::None => "nothing".into(),
        Item::Value(v) => describe_value(v),
        Item::Table(_) => "a table".into(),
        Item::ArrayOfTables(_) => "an array of tables".into(),
    }
}

fn describe_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{:?}", s.value()),
        Value::Integer(i) => i.value().to_string(),
        Value::Float(x) => x.value().to_string(),
        Value::Boolean(b) => b.value().to_string(),
        Value::Datetime(_) => "a date-time".into(),
        Value::Array(_) => "an array".into(),
        Value::InlineTable(_) => "an inline table".into(),
    }
}
