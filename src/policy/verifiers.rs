//! `[verifiers.<name>]` tables and a rule's `signed_by`: which signature systems vouch for an
//! image, and how their answers combine.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::cosign_keyless::KEYLESS_KEYS;
use super::error::PolicyErrorKind;
use super::load::{at_line, expected_words, Builder, NOTARY_KEYS};
use super::model::{
    Combine, CosignKey, CosignVerifier, NotationVerifier, SignedRequirement, TrustServer, Verifier,
    VerifierKind,
};
use super::raw::{Field, TableReader};
use crate::cosign::PublicKey;

const TYPES: &[&str] = &["notary", "cosign", "notation"];
const NOTATION_KEYS: &[&str] = &["type", "config_dir", "crl_dir"];
const COSIGN_KEYS: &[&str] = &["type", "keys", "tlog"];
/// Keyless-only settings: in a keyed verifier (one with `keys`) they are refused with a
/// pointer to `trusted_root`, never ignored (a policy meaning "this identity" must not load
/// as "any holder of these keys").
const COSIGN_LATER: &[&str] = &[
    "identity",
    "identity_regex",
    "issuer",
    "issuer_regex",
    "github_workflow_repository",
    "github_workflow_ref",
    "github_workflow_sha",
    "github_workflow_name",
    "github_workflow_trigger",
    "sct",
];
const SIGNED_BY_KEYS: &[&str] = &["any_of", "all_of"];

impl Builder<'_> {
    /// Every `[verifiers.<name>]`, by name. A verifier with errors is left out (and the load
    /// fails), so rules naming it do not report a second, misleading error.
    pub(super) fn verifiers(
        &mut self,
        top: &TableReader<'_>,
        servers: &BTreeMap<String, Arc<TrustServer>>,
    ) -> BTreeMap<String, Arc<Verifier>> {
        let mut out = BTreeMap::new();
        let Some(f) = top.get("verifiers") else {
            return out;
        };
        let Some(table) = self.ctx.table(f, None) else {
            return out;
        };
        for v in &table.fields {
            let valid_name = !v.key.is_empty()
                && v.key != "default"
                && v.key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !valid_name {
                self.ctx.invalid(
                    v,
                    "a verifier name of letters, digits, '-' and '_' (not \"default\")",
                    format!("{:?}", v.key),
                );
                continue;
            }
            if let Some(verifier) = self.verifier(v, servers) {
                out.insert(v.key.to_string(), Arc::new(verifier));
            }
        }
        out
    }

    fn verifier(
        &mut self,
        f: &Field<'_>,
        servers: &BTreeMap<String, Arc<TrustServer>>,
    ) -> Option<Verifier> {
        let t = self.ctx.table(f, None)?;
        let kind = match t.get("type") {
            None => {
                let expected = expected_words(TYPES.iter().copied());
                self.ctx.push(
                    t.line,
                    &t.child_path("type"),
                    PolicyErrorKind::Missing { expected },
                );
                return None;
            }
            Some(tf) => {
                let s = self.ctx.string(tf)?;
                if !TYPES.contains(&s.value.as_str()) {
                    let expected = expected_words(TYPES.iter().copied());
                    self.ctx.invalid(tf, &expected, format!("{:?}", s.value));
                    return None;
                }
                s.value
            }
        };
        let kind = if kind == "notary" {
            let mut allowed = vec!["type"];
            allowed.extend_from_slice(NOTARY_KEYS);
            let ok = self.only_keys(&t, &allowed, &[]);
            let notary = self.notary(&t, servers);
            VerifierKind::Notary(notary.filter(|_| ok)?)
        } else if kind == "notation" {
            let ok = self.only_keys(&t, NOTATION_KEYS, &[]);
            let notation = self.notation(&t);
            VerifierKind::Notation(notation.filter(|_| ok)?)
        } else if t.get("trusted_root").is_some() {
            let ok = self.only_keys(&t, KEYLESS_KEYS, &["keys"]);
            let keyless = self.cosign_keyless(&t);
            VerifierKind::Cosign(CosignVerifier {
                keys: Vec::new(),
                keyless: Some(Arc::new(keyless.filter(|_| ok)?)),
            })
        } else {
            let ok = self.only_keys(&t, COSIGN_KEYS, COSIGN_LATER);
            let cosign = self.cosign(&t);
            VerifierKind::Cosign(cosign.filter(|_| ok)?)
        };
        Some(Verifier {
            name: f.key.to_string(),
            kind,
        })
    }

    /// Reports keys outside `allowed`; those in `later` as "not supported yet".
    fn only_keys(&mut self, t: &TableReader<'_>, allowed: &[&str], later: &[&str]) -> bool {
        let mut ok = true;
        for f in &t.fields {
            // `keys` beside `trusted_root` is reported by the keyless parser.
            if allowed.contains(&f.key) || (f.key == "keys" && later.contains(&"keys")) {
                continue;
            }
            ok = false;
            let kind = if later.contains(&f.key) {
                PolicyErrorKind::Conflict {
                    reason: "is a keyless setting: a keyless verifier names `trusted_root = \"<trusted_root.json>\"` (with identity and issuer) instead of `keys`".into(),
                }
            } else {
                PolicyErrorKind::UnknownKey {
                    expected: allowed.join(", "),
                }
            };
            self.ctx.push(f.line, &f.path, kind);
        }
        ok
    }

    /// `config_dir`: a Notation CLI configuration directory, loaded (and every trust store it
    /// names read) now, so a bad file fails the policy load and names itself.
    fn notation(&mut self, t: &TableReader<'_>) -> Option<NotationVerifier> {
        let Some(f) = t.get("config_dir") else {
            self.ctx.push(
                t.line,
                &t.child_path("config_dir"),
                PolicyErrorKind::Missing {
                    expected:
                        "config_dir = \"<directory with trustpolicy.oci.json and truststore/>\""
                            .into(),
                },
            );
            return None;
        };
        let s = self.ctx.string(f)?;
        let dir = self.resolve(&s.value);
        // `crl_dir`: the CRL files revocation is checked against (see notation::revocation).
        let crls = match t.get("crl_dir") {
            None => None,
            Some(c) => {
                let value = self.ctx.string(c)?.value;
                let crl_dir = self.resolve(&value);
                match crate::notation::revocation::CrlSet::load(&crl_dir) {
                    Ok(set) => Some(set),
                    Err(reason) => {
                        self.file_error(c, &crl_dir, reason);
                        return None;
                    }
                }
            }
        };
        match crate::notation::config::NotationConfig::load(&dir, crls) {
            Ok(config) => Some(NotationVerifier {
                dir,
                config: Arc::new(config),
            }),
            Err(reason) => {
                self.file_error(f, &dir, reason);
                None
            }
        }
    }

    fn cosign(&mut self, t: &TableReader<'_>) -> Option<CosignVerifier> {
        let tlog = match t.get("tlog") {
            None => {
                self.ctx.push(
                    t.line,
                    &t.child_path("tlog"),
                    PolicyErrorKind::Missing {
                        expected: "tlog = false (keyed verification does not check Rekor entries, so the policy must say it does without them, as `cosign verify --insecure-ignore-tlog` does; keyless verifiers with a trusted_root check the log)".into(),
                    },
                );
                None
            }
            Some(f) => match self.ctx.bool(f) {
                Some(b) if b.value => {
                    let reason = "tlog = true is not supported with keys yet (Rekor entries are verified for keyless verifiers, with a trusted_root); set tlog = false to verify with keys alone".into();
                    self.ctx
                        .push(f.line, &f.path, PolicyErrorKind::Conflict { reason });
                    None
                }
                Some(_) => Some(()),
                None => None,
            },
        };
        let keys = match t.get("keys") {
            None => {
                self.ctx.push(
                    t.line,
                    &t.child_path("keys"),
                    PolicyErrorKind::Missing {
                        expected: "keys = [\"<PEM public key file>\", ...]".into(),
                    },
                );
                None
            }
            Some(f) => self.cosign_keys(f),
        };
        tlog?;
        Some(CosignVerifier {
            keys: keys?,
            keyless: None,
        })
    }

    fn cosign_keys(&mut self, f: &Field<'_>) -> Option<Vec<CosignKey>> {
        let paths = self.ctx.strings(f)?;
        if paths.is_empty() {
            self.ctx
                .invalid(f, "at least one PEM public key file", "an empty array");
            return None;
        }
        let mut out: Option<Vec<CosignKey>> = Some(Vec::new());
        for p in paths {
            let elem = Field {
                key: f.key,
                item: f.item,
                path: p.field.clone(),
                line: p.line,
            };
            let path = self.resolve(&p.value);
            let parsed = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| PublicKey::from_pem(&b).map_err(|e| e.to_string()));
            match (parsed, out.as_mut()) {
                (Ok(keys), Some(o)) => {
                    for key in keys {
                        // The same key twice (two files, or one file listed twice) is one key.
                        if !o.iter().any(|k| k.key == key) {
                            o.push(CosignKey {
                                path: path.clone(),
                                key,
                            });
                        }
                    }
                }
                (Ok(_), None) => {}
                (Err(reason), _) => {
                    self.file_error(&elem, &path, reason);
                    out = None;
                }
            }
        }
        out
    }

    /// `signed_by = "<name>"`, `{ any_of = [...] }` or `{ all_of = [...] }`.
    pub(super) fn signed_by(
        &mut self,
        f: &Field<'_>,
        verifiers: &BTreeMap<String, Arc<Verifier>>,
    ) -> Option<SignedRequirement> {
        let known = || {
            let names: Vec<&str> = verifiers.keys().map(String::as_str).collect();
            if names.is_empty() {
                "the name of a [verifiers.<name>] table (none are defined)".to_string()
            } else {
                format!("one of the [verifiers] names: {}", names.join(", "))
            }
        };
        if f.item_is_str() {
            let s = self.ctx.string(f)?;
            return match verifiers.get(&s.value) {
                Some(v) => Some(SignedRequirement {
                    combine: Combine::AnyOf,
                    verifiers: vec![v.clone()],
                }),
                None => {
                    self.ctx.invalid(f, &known(), format!("{:?}", s.value));
                    None
                }
            };
        }
        let t = self.ctx.table(f, Some(SIGNED_BY_KEYS))?;
        let (combine, list) = match (t.get("any_of"), t.get("all_of")) {
            (Some(a), None) => (Combine::AnyOf, a),
            (None, Some(a)) => (Combine::AllOf, a),
            (Some(_), Some(b)) => {
                let reason = "give `any_of` or `all_of`, not both".into();
                self.ctx
                    .push(b.line, &b.path, PolicyErrorKind::Conflict { reason });
                return None;
            }
            (None, None) => {
                self.ctx.push(
                    f.line,
                    &f.path,
                    PolicyErrorKind::Missing {
                        expected: "any_of = [\"<verifier>\", ...] or all_of = [...]".into(),
                    },
                );
                return None;
            }
        };
        let names = self.ctx.strings(list)?;
        if names.is_empty() {
            self.ctx
                .invalid(list, "at least one verifier name", "an empty array");
            return None;
        }
        let mut out: Vec<Arc<Verifier>> = Vec::new();
        let mut first_line: BTreeMap<String, Option<usize>> = BTreeMap::new();
        let mut ok = true;
        for n in names {
            let kind = match (verifiers.get(&n.value), first_line.get(&n.value)) {
                (_, Some(l)) => PolicyErrorKind::Conflict {
                    reason: format!("{:?} is listed twice{}", n.value, at_line(*l)),
                },
                (None, None) => PolicyErrorKind::Invalid {
                    expected: known(),
                    found: format!("{:?}", n.value),
                },
                (Some(v), None) => {
                    first_line.insert(n.value.clone(), n.line);
                    out.push(v.clone());
                    continue;
                }
            };
            ok = false;
            self.ctx.push(n.line, &n.field, kind);
        }
        ok.then_some(SignedRequirement {
            combine,
            verifiers: out,
        })
    }
}
