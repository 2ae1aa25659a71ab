//! `application/jose+json`: the flattened JWS JSON serialization only
//! (signature-envelope-jws.md; notation-core-go `signature/jws/envelope.go`, `jws.go`,
//! `types.go`). Unprotected header: `x5c` (standard base64 DER, leaf first),
//! `io.cncf.notary.timestampSignature`, `io.cncf.notary.signingAgent`.

use std::collections::BTreeSet;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{
    check_protected, Protected, SignerInfo, H_AUTHENTIC_SIGNING_TIME, H_EXPIRY, H_SIGNING_SCHEME,
    H_SIGNING_TIME,
};
use crate::notation::sigalg::Alg;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Flattened {
    payload: String,
    protected: String,
    header: Unprotected,
    signature: String,
}

#[derive(Deserialize)]
struct Unprotected {
    #[serde(default)]
    x5c: Vec<String>,
    #[serde(rename = "io.cncf.notary.timestampSignature")]
    timestamp_signature: Option<String>,
    #[serde(rename = "io.cncf.notary.signingAgent")]
    signing_agent: Option<String>,
}

fn b64url(field: &str, s: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|e| format!("JWS {field} is not unpadded base64url: {e}"))
}

fn time_field(obj: &Map<String, Value>, name: &str) -> Result<Option<OffsetDateTime>, String> {
    match obj.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => OffsetDateTime::parse(s, &Rfc3339)
            .map(Some)
            .map_err(|e| format!("{name} {s:?} is not an RFC 3339 time: {e}")),
        Some(_) => Err(format!("{name} is not a string")),
    }
}

fn string_field(obj: &Map<String, Value>, name: &str) -> Result<Option<String>, String> {
    match obj.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{name} is not a string")),
    }
}

/// The standard header names; everything else in the protected header is an extended
/// attribute (jws.go `headerKeys`).
const KNOWN: [&str; 7] = [
    "alg",
    "cty",
    "crit",
    H_SIGNING_SCHEME,
    H_SIGNING_TIME,
    H_AUTHENTIC_SIGNING_TIME,
    H_EXPIRY,
];

pub fn parse(bytes: &[u8]) -> Result<SignerInfo, String> {
    if bytes.trim_ascii_start().starts_with(b"{")
        && serde_json::from_slice::<Map<String, Value>>(bytes)
            .map(|m| m.contains_key("signatures"))
            .unwrap_or(false)
    {
        return Err("JWS general serialization (\"signatures\") is not accepted; Notation uses the flattened form".into());
    }
    let env: Flattened = serde_json::from_slice(bytes)
        .map_err(|e| format!("not a flattened JWS JSON envelope: {e}"))?;
    let raw_protected = b64url("protected", &env.protected)?;
    let obj: Map<String, Value> = serde_json::from_slice(&raw_protected)
        .map_err(|e| format!("the JWS protected header is not a JSON object: {e}"))?;
    let alg_name = string_field(&obj, "alg")?.ok_or("the JWS protected header has no alg")?;
    let alg = Alg::from_jws(&alg_name).ok_or_else(|| {
        format!("JWS alg {alg_name:?} is not one Notation accepts (PS256/384/512, ES256/384/512)")
    })?;
    let crit = match obj.get("crit") {
        None => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or("crit holds a non-string")
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("crit is not an array".into()),
    };
    let extended: BTreeSet<String> = obj
        .keys()
        .filter(|k| !KNOWN.contains(&k.as_str()))
        .cloned()
        .collect();
    let protected = Protected {
        alg,
        cty: string_field(&obj, "cty")?,
        crit,
        scheme: string_field(&obj, H_SIGNING_SCHEME)?,
        signing_time: time_field(&obj, H_SIGNING_TIME)?,
        authentic_signing_time: time_field(&obj, H_AUTHENTIC_SIGNING_TIME)?,
        expiry: time_field(&obj, H_EXPIRY)?,
        extended,
    };
    let checked = check_protected(&protected)?;
    let chain = env
        .header
        .x5c
        .iter()
        .enumerate()
        .map(|(i, c)| {
            STANDARD
                .decode(c)
                .map_err(|e| format!("x5c[{i}] is not base64: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let timestamp_signature = env
        .header
        .timestamp_signature
        .as_deref()
        .map(|t| {
            STANDARD
                .decode(t)
                .map_err(|e| format!("io.cncf.notary.timestampSignature is not base64: {e}"))
        })
        .transpose()?;
    let payload = b64url("payload", &env.payload)?;
    let signature = b64url("signature", &env.signature)?;
    // RFC 7515 §5.2: the signature covers ASCII(protected "." payload) as transmitted.
    let signed_bytes = format!("{}.{}", env.protected, env.payload).into_bytes();
    Ok(SignerInfo {
        alg: protected.alg,
        scheme: checked.scheme,
        signing_time: checked.signing_time,
        expiry: checked.expiry,
        chain,
        timestamp_signature,
        signing_agent: env.header.signing_agent,
        payload,
        signed_bytes,
        signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env(protected: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "payload": URL_SAFE_NO_PAD.encode(b"{}"),
            "protected": URL_SAFE_NO_PAD.encode(serde_json::to_vec(&protected).unwrap()),
            "header": {"x5c": ["AAAA"]},
            "signature": URL_SAFE_NO_PAD.encode([1u8; 64]),
        }))
        .unwrap()
    }

    fn base() -> serde_json::Value {
        json!({
            "alg": "ES256",
            "cty": "application/vnd.cncf.notary.payload.v1+json",
            "crit": ["io.cncf.notary.signingScheme"],
            "io.cncf.notary.signingScheme": "notary.x509",
            "io.cncf.notary.signingTime": "2024-06-18T17:08:35+08:00",
        })
    }

    fn err(edit: impl FnOnce(&mut serde_json::Value)) -> String {
        let mut p = base();
        edit(&mut p);
        parse(&env(p)).unwrap_err()
    }

    #[test]
    fn protected_header_rules() {
        let ok = parse(&env(base())).unwrap();
        assert_eq!(ok.signing_time.unix_timestamp(), 1718701715);
        assert_eq!(ok.signed_bytes.iter().filter(|b| **b == b'.').count(), 1);
        assert!(err(|p| p["alg"] = "RS256".into()).contains("not one Notation accepts"));
        assert!(err(|p| p["alg"] = "none".into()).contains("not one Notation accepts"));
        assert!(err(|p| p["cty"] = "application/json".into()).contains("content type"));
        assert!(err(|p| {
            p.as_object_mut().unwrap().remove("cty");
        })
        .contains("no content type"));
        assert!(
            err(|p| p["io.cncf.notary.signingScheme"] = "notary.default.x509".into())
                .contains("unsupported signing scheme")
        );
        assert!(err(|p| {
            p.as_object_mut()
                .unwrap()
                .remove("io.cncf.notary.signingTime");
        })
        .contains("signingTime is missing"));
        assert!(
            err(|p| p["io.cncf.notary.authenticSigningTime"] = "2024-06-18T17:08:35Z".into())
                .contains("must not be present")
        );
        assert!(err(|p| p["crit"] = json!([])).contains("no crit"));
        assert!(
            err(|p| p["io.cncf.notary.expiry"] = "2099-01-01T00:00:00Z".into())
                .contains("not marked critical: io.cncf.notary.expiry")
        );
        assert!(
            err(|p| p["crit"] = json!(["io.cncf.notary.signingScheme", "io.example.absent"]))
                .contains("marked critical but not present")
        );
        assert!(err(|p| p["io.cncf.notary.signingTime"] = "yesterday".into()).contains("RFC 3339"));
        // signingAuthority needs authenticSigningTime, critical, and no signingTime.
        assert!(
            err(|p| p["io.cncf.notary.signingScheme"] = "notary.x509.signingAuthority".into())
                .contains("must not be present for notary.x509.signingAuthority")
        );
        let mut sa = base();
        sa["io.cncf.notary.signingScheme"] = "notary.x509.signingAuthority".into();
        sa.as_object_mut()
            .unwrap()
            .remove("io.cncf.notary.signingTime");
        sa["io.cncf.notary.authenticSigningTime"] = "2024-06-18T17:08:35Z".into();
        assert!(parse(&env(sa.clone()))
            .unwrap_err()
            .contains("not marked critical: io.cncf.notary.authenticSigningTime"));
        sa["crit"] = json!([
            "io.cncf.notary.signingScheme",
            "io.cncf.notary.authenticSigningTime"
        ]);
        parse(&env(sa)).unwrap();
    }

    #[test]
    fn only_the_flattened_serialization_with_unpadded_base64url() {
        let general = serde_json::to_vec(&json!({"payload": "e30", "signatures": []})).unwrap();
        assert!(parse(&general)
            .unwrap_err()
            .contains("general serialization"));
        let mut v: serde_json::Value = serde_json::from_slice(&env(base())).unwrap();
        v["signature"] = format!("{}==", v["signature"].as_str().unwrap()).into();
        assert!(parse(&serde_json::to_vec(&v).unwrap())
            .unwrap_err()
            .contains("unpadded base64url"));
        let mut v: serde_json::Value = serde_json::from_slice(&env(base())).unwrap();
        v["extra"] = 1.into();
        assert!(parse(&serde_json::to_vec(&v).unwrap())
            .unwrap_err()
            .contains("unknown field"));
    }
}
