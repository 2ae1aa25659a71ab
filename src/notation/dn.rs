//! `x509.subject` trusted identities: parsing the policy's RFC 4514 string and reading the
//! leaf's subject into the same shape, as notation-go `internal/pkix/pkix.go` does
//! (`ParseDistinguishedName`, `IsSubsetDN`) and `verifier.go` `verifyX509TrustedIdentities`
//! applies them: every attribute of the identity must appear with the same value in the
//! leaf's subject.

use std::collections::BTreeMap;

use x509_parser::prelude::X509Certificate;

/// Attribute type (as written: `C`, `ST`, `O`, …) → value.
pub type Dn = BTreeMap<String, String>;

/// pkix.go: C, ST (or S) and O are mandatory in both the identity and the leaf subject.
const MANDATORY: [&str; 3] = ["C", "ST", "O"];

/// Parses an RFC 4514 distinguished name the way go-ldap's `ParseDN` reads it (escapes
/// `\,` `\+` `\\` `\"` `\;` `\<` `\>` `\=` `\ ` `\#` and `\HH`; spaces around types and
/// values dropped), then applies pkix.go's rules: no `=#` hex values, no multi-valued RDNs,
/// no repeated attribute, `S` means `ST`, and C, ST, O present.
pub fn parse_dn(s: &str) -> Result<Dn, String> {
    if s.contains("=#") {
        return Err(format!(
            "{s:?}: \"=#\" (hex-encoded) values are not supported"
        ));
    }
    let mut out = Dn::new();
    for rdn in split_unescaped(s, &[',', ';']) {
        if rdn.trim().is_empty() {
            return Err(format!("{s:?}: empty relative distinguished name"));
        }
        if split_unescaped(&rdn, &['+']).len() > 1 {
            return Err(format!("{s:?}: multi-valued RDNs are not supported"));
        }
        let (ty, value) = rdn
            .split_once('=')
            .ok_or_else(|| format!("{s:?}: {:?} is not type=value", rdn.trim()))?;
        let ty = ty.trim();
        if ty.is_empty()
            || !ty
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        {
            return Err(format!("{s:?}: bad attribute type {ty:?}"));
        }
        let value = unescape(value).map_err(|e| format!("{s:?}: {e}"))?;
        insert(&mut out, ty, value).map_err(|e| format!("{s:?}: {e}"))?;
    }
    mandatory(&out).map_err(|e| format!("{s:?}: {e}"))?;
    Ok(out)
}

fn insert(out: &mut Dn, ty: &str, value: String) -> Result<(), String> {
    let ty = if ty == "S" { "ST" } else { ty };
    if out.contains_key(ty) {
        return Err(format!("attribute {ty} appears more than once"));
    }
    out.insert(ty.to_string(), value);
    Ok(())
}

fn mandatory(dn: &Dn) -> Result<(), String> {
    for f in MANDATORY {
        if !matches!(dn.get(f), Some(v) if !v.is_empty()) {
            return Err(format!(
                "mandatory attribute {f} is missing (C, ST or S, and O are required)"
            ));
        }
    }
    Ok(())
}

/// Splits on separators not preceded by a backslash (escapes are kept for `unescape`).
fn split_unescaped(s: &str, seps: &[char]) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let last = parts.last_mut().expect("non-empty");
            last.push(c);
            if let Some(n) = chars.next() {
                last.push(n);
            }
        } else if seps.contains(&c) {
            parts.push(String::new());
        } else {
            parts.last_mut().expect("non-empty").push(c);
        }
    }
    parts
}

fn unescape(raw: &str) -> Result<String, String> {
    // Unescaped leading/trailing spaces are not part of the value (RFC 4514 §3).
    let raw = raw.trim_start_matches(' ');
    let mut bytes = Vec::new();
    let mut trailing_plain_spaces = 0usize;
    let mut it = raw.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\\' {
            trailing_plain_spaces = 0;
            let a = it.next().ok_or("value ends with a lone backslash")?;
            if a.is_ascii_hexdigit() {
                let b = it
                    .next()
                    .filter(|b| b.is_ascii_hexdigit())
                    .ok_or("bad \\HH escape")?;
                let hex: String = [a, b].iter().collect();
                bytes.push(u8::from_str_radix(&hex, 16).map_err(|e| e.to_string())?);
            } else {
                let mut buf = [0u8; 4];
                bytes.extend_from_slice(a.encode_utf8(&mut buf).as_bytes());
            }
        } else {
            trailing_plain_spaces = if c == ' ' {
                trailing_plain_spaces + 1
            } else {
                0
            };
            let mut buf = [0u8; 4];
            bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    bytes.truncate(bytes.len() - trailing_plain_spaces);
    String::from_utf8(bytes).map_err(|_| "value is not UTF-8".to_string())
}

/// The short names Go's `pkix.Name.String()` prints; any other attribute is printed as
/// `OID=#hex`, which `ParseDistinguishedName` then refuses, so a leaf carrying one can only
/// match the `*` identity in Notation too.
fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.6" => "C",
        "2.5.4.8" => "ST",
        "2.5.4.7" => "L",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.3" => "CN",
        "2.5.4.9" => "STREET",
        "2.5.4.17" => "POSTALCODE",
        "2.5.4.5" => "SERIALNUMBER",
        _ => return None,
    })
}

/// The leaf's subject as a [`Dn`], with the same refusals as for identities.
pub fn subject_dn(cert: &X509Certificate<'_>) -> Result<Dn, String> {
    let mut out = Dn::new();
    for rdn in cert.subject().iter() {
        if rdn.iter().count() != 1 {
            return Err(
                "the subject has a multi-valued RDN, which Notation does not support".into(),
            );
        }
        for attr in rdn.iter() {
            let oid = attr.attr_type().to_id_string();
            let ty = short_name(&oid)
                .ok_or_else(|| format!("the subject has attribute {oid}, which Notation cannot match (it becomes \"=#\")"))?;
            let value = attr
                .as_str()
                .map_err(|_| format!("the subject's {ty} is not a string"))?;
            insert(&mut out, ty, value.to_string()).map_err(|e| format!("the subject: {e}"))?;
        }
    }
    mandatory(&out).map_err(|e| format!("the subject: {e}"))?;
    Ok(out)
}

/// pkix.go `IsSubsetDN`: every attribute of `a` is in `b` with the same value.
pub fn is_subset(a: &Dn, b: &Dn) -> bool {
    a.iter().all(|(k, v)| b.get(k) == Some(v))
}

/// Renders a [`Dn`] for messages.
pub fn display(dn: &Dn) -> String {
    dn.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_as_notation_does() {
        let dn = parse_dn("C=US, S=WA, O=wabbit-networks.io, OU=Finance\\, Ops, CN= a\\ ").unwrap();
        assert_eq!(dn["ST"], "WA");
        assert_eq!(dn["OU"], "Finance, Ops");
        assert_eq!(dn["CN"], "a ");
        assert!(parse_dn("C=US, O=x").unwrap_err().contains("ST"));
        assert!(parse_dn("C=US, ST=WA, O=x, O=y")
            .unwrap_err()
            .contains("more than once"));
        assert!(parse_dn("C=US+ST=WA, O=x")
            .unwrap_err()
            .contains("multi-valued"));
        assert!(parse_dn("C=US, ST=WA, O=#0403").unwrap_err().contains("=#"));
        assert_eq!(parse_dn("C=US, ST=WA, O=\\2C").unwrap()["O"], ",");
    }

    #[test]
    fn subset_is_attribute_wise() {
        let id = parse_dn("C=US, ST=WA, O=Notary").unwrap();
        let leaf = parse_dn("C=US, ST=WA, L=Seattle, O=Notary, CN=alpine").unwrap();
        assert!(is_subset(&id, &leaf));
        assert!(!is_subset(&leaf, &id));
        let other = parse_dn("C=US, ST=WA, O=Notary Inc").unwrap();
        assert!(!is_subset(&other, &leaf));
    }
}
