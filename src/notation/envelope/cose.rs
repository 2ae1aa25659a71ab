//! `application/cose`: a tagged `COSE_Sign1` (signature-envelope-cose.md; notation-core-go
//! `signature/cose/envelope.go`), decoded by `coset`. Protected: `alg` (1), `crit` (2),
//! `cty` (3), and the `io.cncf.notary.*` text labels with times as tag-1 epoch seconds.
//! Unprotected: `x5chain` (33), `io.cncf.notary.timestampSignature`,
//! `io.cncf.notary.signingAgent`. The payload is attached, never detached.

use std::collections::BTreeSet;

use coset::cbor::value::Value;
use coset::{
    iana, CoseSign1, Label, RegisteredLabel, RegisteredLabelWithPrivate, TaggedCborSerializable,
};
use time::OffsetDateTime;

use super::{
    check_protected, Protected, SignerInfo, H_AUTHENTIC_SIGNING_TIME, H_EXPIRY, H_SIGNING_SCHEME,
    H_SIGNING_TIME,
};
use crate::notation::sigalg::Alg;

const X5CHAIN: i64 = 33;
const H_TIMESTAMP_SIGNATURE: &str = "io.cncf.notary.timestampSignature";
const H_SIGNING_AGENT: &str = "io.cncf.notary.signingAgent";

fn label_name(l: &Label) -> String {
    match l {
        Label::Text(t) => t.clone(),
        Label::Int(i) => format!("label {i}"),
    }
}

fn find<'a>(rest: &'a [(Label, Value)], name: &str) -> Option<&'a Value> {
    rest.iter()
        .find(|(l, _)| matches!(l, Label::Text(t) if t == name))
        .map(|(_, v)| v)
}

/// signature-envelope-cose.md: times are CBOR tag 1 (epoch-based date/time) integers.
fn epoch(rest: &[(Label, Value)], name: &str) -> Result<Option<OffsetDateTime>, String> {
    let Some(v) = find(rest, name) else {
        return Ok(None);
    };
    let secs = match v {
        Value::Tag(1, inner) => match inner.as_ref() {
            Value::Integer(i) => i64::try_from(i128::from(*i)).ok(),
            _ => None,
        },
        _ => None,
    }
    .ok_or_else(|| format!("{name} is not a tag-1 integer time"))?;
    OffsetDateTime::from_unix_timestamp(secs)
        .map(Some)
        .map_err(|e| format!("{name}: {e}"))
}

pub fn parse(bytes: &[u8]) -> Result<SignerInfo, String> {
    let sign1 = CoseSign1::from_tagged_slice(bytes)
        .map_err(|e| format!("not a tagged COSE_Sign1 envelope: {e}"))?;
    let ph = &sign1.protected.header;
    let alg = match &ph.alg {
        Some(RegisteredLabelWithPrivate::Assigned(a)) => Alg::from_cose(*a as i64),
        Some(RegisteredLabelWithPrivate::PrivateUse(i)) => Alg::from_cose(*i),
        _ => None,
    }
    .ok_or_else(|| {
        format!(
            "COSE alg {:?} is not one Notation accepts (PS256/384/512, ES256/384/512)",
            ph.alg
        )
    })?;
    let cty = match &ph.content_type {
        None => None,
        Some(RegisteredLabel::Text(t)) => Some(t.clone()),
        Some(other) => Some(format!("{other:?}")),
    };
    let crit = ph
        .crit
        .iter()
        .map(|c| match c {
            RegisteredLabelWithPrivate::Text(t) => t.clone(),
            RegisteredLabelWithPrivate::Assigned(a) => format!("label {}", *a as i64),
            RegisteredLabelWithPrivate::PrivateUse(i) => format!("label {i}"),
        })
        .collect();
    // Every protected label besides the standard ones is an extended attribute; coset keeps
    // the fields it does not model (kid, iv, …) elsewhere, and those count as well.
    let mut extended: BTreeSet<String> = ph
        .rest
        .iter()
        .map(|(l, _)| label_name(l))
        .filter(|n| {
            ![
                H_SIGNING_SCHEME,
                H_SIGNING_TIME,
                H_AUTHENTIC_SIGNING_TIME,
                H_EXPIRY,
            ]
            .contains(&n.as_str())
        })
        .collect();
    if !ph.key_id.is_empty() {
        extended.insert(format!("label {}", iana::HeaderParameter::Kid as i64));
    }
    let scheme = match find(&ph.rest, H_SIGNING_SCHEME) {
        None => None,
        Some(Value::Text(t)) => Some(t.clone()),
        Some(_) => return Err(format!("{H_SIGNING_SCHEME} is not a text string")),
    };
    let protected = Protected {
        alg,
        cty,
        crit,
        scheme,
        signing_time: epoch(&ph.rest, H_SIGNING_TIME)?,
        authentic_signing_time: epoch(&ph.rest, H_AUTHENTIC_SIGNING_TIME)?,
        expiry: epoch(&ph.rest, H_EXPIRY)?,
        extended,
    };
    let checked = check_protected(&protected)?;

    let un = &sign1.unprotected;
    let chain = match un.rest.iter().find(|(l, _)| *l == Label::Int(X5CHAIN)) {
        None => return Err("the COSE unprotected header has no x5chain (33)".into()),
        // RFC 9360 §2: a single certificate may be a bare bstr.
        Some((_, Value::Bytes(b))) => vec![b.clone()],
        Some((_, Value::Array(a))) => a
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::Bytes(b) => Ok(b.clone()),
                _ => Err(format!("x5chain[{i}] is not a byte string")),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("x5chain is neither a byte string nor an array".into()),
    };
    let timestamp_signature = match find(&un.rest, H_TIMESTAMP_SIGNATURE) {
        None => None,
        Some(Value::Bytes(b)) => Some(b.clone()),
        Some(_) => return Err(format!("{H_TIMESTAMP_SIGNATURE} is not a byte string")),
    };
    let signing_agent = match find(&un.rest, H_SIGNING_AGENT) {
        None => None,
        Some(Value::Text(t)) => Some(t.clone()),
        Some(_) => return Err(format!("{H_SIGNING_AGENT} is not a text string")),
    };
    let payload = sign1
        .payload
        .clone()
        .ok_or("the COSE payload is detached; Notation envelopes carry it")?;
    // RFC 9052 §4.4: Sig_structure ["Signature1", protected, external_aad = h'', payload],
    // built by coset from the protected bytes as received.
    let signed_bytes = sign1.tbs_data(b"");
    Ok(SignerInfo {
        alg,
        scheme: checked.scheme,
        signing_time: checked.signing_time,
        expiry: checked.expiry,
        chain,
        timestamp_signature,
        signing_agent,
        payload,
        signed_bytes,
        signature: sign1.signature.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use coset::{CborSerializable, CoseSign1Builder, HeaderBuilder, TaggedCborSerializable};

    fn build(
        edit: impl FnOnce(HeaderBuilder) -> HeaderBuilder,
        x5chain: Option<Value>,
        payload: Option<&[u8]>,
    ) -> Vec<u8> {
        let ph = edit(
            HeaderBuilder::new()
                .algorithm(iana::Algorithm::ES256)
                .content_type("application/vnd.cncf.notary.payload.v1+json".into())
                .text_value(H_SIGNING_SCHEME.into(), Value::Text("notary.x509".into()))
                .add_critical_label(RegisteredLabelWithPrivate::Text(H_SIGNING_SCHEME.into())),
        )
        .build();
        let mut ph = ph;
        if !ph
            .rest
            .iter()
            .any(|(l, _)| *l == Label::Text(H_SIGNING_TIME.into()))
        {
            ph.rest.push((
                Label::Text(H_SIGNING_TIME.into()),
                Value::Tag(1, Box::new(Value::Integer(1_700_000_000.into()))),
            ));
        }
        let mut un = coset::Header::default();
        if let Some(x) = x5chain {
            un.rest.push((Label::Int(X5CHAIN), x));
        }
        let mut b = CoseSign1Builder::new().protected(ph).unprotected(un);
        if let Some(p) = payload {
            b = b.payload(p.to_vec());
        }
        b.signature(vec![0; 64]).build().to_tagged_vec().unwrap()
    }

    fn chain() -> Option<Value> {
        Some(Value::Array(vec![Value::Bytes(vec![1, 2, 3])]))
    }

    #[test]
    fn cose_header_rules() {
        let ok = parse(&build(|h| h, chain(), Some(b"{}"))).unwrap();
        assert_eq!(ok.signing_time.unix_timestamp(), 1_700_000_000);
        assert_eq!(ok.chain, vec![vec![1, 2, 3]]);
        // RFC 9360: one certificate may be a bare bstr.
        let bare = parse(&build(|h| h, Some(Value::Bytes(vec![9])), Some(b"{}"))).unwrap();
        assert_eq!(bare.chain, vec![vec![9]]);
        assert!(parse(&build(|h| h, None, Some(b"{}")))
            .unwrap_err()
            .contains("no x5chain"));
        assert!(parse(&build(|h| h, chain(), None))
            .unwrap_err()
            .contains("detached"));
        let e = parse(&build(
            |h| h.algorithm(iana::Algorithm::EdDSA),
            chain(),
            Some(b"{}"),
        ))
        .unwrap_err();
        assert!(e.contains("not one Notation accepts"), "{e}");
        let e = parse(&build(
            |h| h.text_value(H_SIGNING_TIME.into(), Value::Integer(5.into())),
            chain(),
            Some(b"{}"),
        ))
        .unwrap_err();
        assert!(e.contains("tag-1 integer"), "{e}");
        let e = parse(&build(
            |h| {
                h.add_critical_label(RegisteredLabelWithPrivate::Assigned(
                    iana::HeaderParameter::Kid,
                ))
            },
            chain(),
            Some(b"{}"),
        ))
        .unwrap_err();
        assert!(e.contains("label 4"), "{e}");
        // An untagged COSE_Sign1 is not a Notation envelope.
        let untagged = CoseSign1Builder::new().build().to_vec().unwrap();
        assert!(parse(&untagged).unwrap_err().contains("tagged COSE_Sign1"));
    }
}
