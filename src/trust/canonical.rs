//! Canonical JSON exactly as Notary signs it: docker/go's `canonical/json` (`MarshalCanonical`)
//! applied to the generic value `json.Unmarshal` produced.
//!
//! Rules (REAL-COMPONENTS "The Notary client's verification rules"):
//! - object keys sorted bytewise, no insignificant whitespace;
//! - in strings only `"` and `\` are escaped; control characters, `<`, `>`, `&` and non-ASCII
//!   are written raw (serde_json escapes control characters, so its output differs);
//! - numbers went through Go's `float64`: integers print as integers (losing precision above
//!   2^53 exactly as Go does), non-integers are an error in canonical form.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    #[error("number {0} is not an integer; canonical JSON cannot encode it")]
    NonInteger(String),
    #[error("number {0} is out of range for canonical JSON")]
    OutOfRange(String),
}

/// Encodes `value` in Notary's canonical form.
pub fn encode(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(256);
    write_value(value, &mut out)?;
    Ok(out)
}

fn write_value(value: &Value, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(n, out)?,
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            // Sort explicitly: serde_json's map order depends on a crate feature
            // (`preserve_order`) that any dependency could switch on.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(k, out);
                out.push(b':');
                write_value(v, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for &b in s.as_bytes() {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

fn write_number(n: &serde_json::Number, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    // Go decodes every JSON number into float64 before re-encoding: mirror that.
    let f = n
        .as_f64()
        .ok_or_else(|| CanonicalError::OutOfRange(n.to_string()))?;
    if !f.is_finite() {
        return Err(CanonicalError::OutOfRange(n.to_string()));
    }
    if f.fract() != 0.0 {
        return Err(CanonicalError::NonInteger(n.to_string()));
    }
    // 2^63 bounds the integers an i64 holds; TUF metadata never comes near it.
    if f.abs() >= 9_223_372_036_854_775_808.0 {
        return Err(CanonicalError::OutOfRange(n.to_string()));
    }
    let i = f as i64;
    out.extend_from_slice(i.to_string().as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sorts_keys_and_strips_whitespace() {
        let v: Value =
            serde_json::from_str(r#"{ "b" : 1, "a" : [true, null, "x"], "B": {} }"#).unwrap();
        assert_eq!(
            encode(&v).unwrap(),
            br#"{"B":{},"a":[true,null,"x"],"b":1}"#
        );
    }

    #[test]
    fn escapes_only_quote_and_backslash() {
        let v = json!({"s": "a\"b\\c<>&\u{e9}\u{1}\n\u{2028}"});
        let got = encode(&v).unwrap();
        let mut want = b"{\"s\":\"a\\\"b\\\\c<>&".to_vec();
        want.extend_from_slice("\u{e9}\u{1}\n\u{2028}\"}".as_bytes());
        assert_eq!(got, want);
        // serde_json's compact output differs (it escapes control characters).
        assert_ne!(serde_json::to_vec(&v).unwrap(), got);
    }

    #[test]
    fn numbers_follow_float64() {
        let v: Value = serde_json::from_str(r#"[1, 1.0, -5, 9007199254740993]"#).unwrap();
        assert_eq!(encode(&v).unwrap(), b"[1,1,-5,9007199254740992]");
        let v: Value = serde_json::from_str("[1.5]").unwrap();
        assert!(matches!(encode(&v), Err(CanonicalError::NonInteger(_))));
    }
}
