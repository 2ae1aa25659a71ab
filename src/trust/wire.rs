//! Notary's TUF wire format (REAL-COMPONENTS "The metadata format"): the signed envelope and
//! the four role types. These typed views are for reading fields only; signatures are always
//! checked over the canonical form of the generic `signed` value ([`Envelope::canonical_signed`]),
//! never over a re-serialisation of these structs, which would drop unknown fields.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::canonical;
use super::errors::TrustError;

pub const SHA256: &str = "sha256";
pub const SHA512: &str = "sha512";

/// One parsed metadata file: the generic `signed` value plus its signatures.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub signed: Value,
    pub signatures: Vec<Signature>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Signature {
    pub keyid: String,
    pub method: String,
    /// Base64 of the raw signature bytes.
    pub sig: String,
}

#[derive(Deserialize)]
struct RawEnvelope {
    signed: Value,
    #[serde(default)]
    signatures: Option<Vec<Signature>>,
}

impl Envelope {
    /// Parses a metadata file. `role` names it in errors.
    pub fn parse(role: &str, bytes: &[u8]) -> Result<Self, TrustError> {
        let raw: RawEnvelope = serde_json::from_slice(bytes)
            .map_err(|e| TrustError::malformed(role, format!("not a signed envelope: {e}")))?;
        if !raw.signed.is_object() {
            return Err(TrustError::malformed(role, "`signed` is not an object"));
        }
        Ok(Envelope {
            signed: raw.signed,
            signatures: raw.signatures.unwrap_or_default(),
        })
    }

    /// The bytes the signatures cover: Notary's canonical JSON of the generic `signed` value
    /// (`tuf/signed/verify.go`: `json.MarshalCanonical(decoded)`).
    pub fn canonical_signed(&self, role: &str) -> Result<Vec<u8>, TrustError> {
        canonical::encode(&self.signed)
            .map_err(|e| TrustError::malformed(role, format!("cannot canonicalise: {e}")))
    }

    /// Decodes `signed` as the typed view `T`, after checking `_type` (`tuf/data/*.go`:
    /// `_type` must be exactly `Root`/`Snapshot`/`Timestamp`/`Targets`).
    pub fn typed<T: for<'de> Deserialize<'de>>(
        &self,
        role: &str,
        expected_type: &str,
    ) -> Result<T, TrustError> {
        let got = self
            .signed
            .get("_type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if got != expected_type {
            return Err(TrustError::WrongType {
                role: role.to_owned(),
                expected: expected_type.to_owned(),
                got: got.to_owned(),
            });
        }
        T::deserialize(&self.signed).map_err(|e| TrustError::malformed(role, e.to_string()))
    }
}

/// A key as TUF lists it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct TufKey {
    pub keytype: String,
    pub keyval: KeyVal,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct KeyVal {
    /// Base64 of the public key (DER SPKI, raw ed25519, or a PEM certificate).
    pub public: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RoleKeys {
    #[serde(default, deserialize_with = "nullable")]
    pub keyids: Vec<String>,
    pub threshold: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Root {
    pub version: i64,
    pub expires: Expires,
    #[serde(default, deserialize_with = "nullable")]
    pub keys: BTreeMap<String, TufKey>,
    #[serde(default, deserialize_with = "nullable")]
    pub roles: BTreeMap<String, RoleKeys>,
    #[serde(default)]
    pub consistent_snapshot: bool,
}

/// Length and hashes of a file (snapshot/timestamp `meta`, and targets).
#[derive(Debug, Clone, Deserialize)]
pub struct FileMeta {
    pub length: i64,
    #[serde(default, deserialize_with = "nullable")]
    pub hashes: BTreeMap<String, String>,
    /// Kept as raw JSON: its content is the publisher's business.
    #[serde(default)]
    pub custom: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Snapshot {
    pub version: i64,
    pub expires: Expires,
    #[serde(default, deserialize_with = "nullable")]
    pub meta: BTreeMap<String, FileMeta>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Timestamp {
    pub version: i64,
    pub expires: Expires,
    #[serde(default, deserialize_with = "nullable")]
    pub meta: BTreeMap<String, FileMeta>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Targets {
    pub version: i64,
    pub expires: Expires,
    #[serde(default, deserialize_with = "nullable")]
    pub targets: BTreeMap<String, FileMeta>,
    #[serde(default)]
    pub delegations: Option<Delegations>,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct Delegations {
    #[serde(default, deserialize_with = "nullable")]
    pub keys: BTreeMap<String, TufKey>,
    #[serde(default, deserialize_with = "nullable")]
    pub roles: Vec<DelegationRole>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DelegationRole {
    pub name: String,
    #[serde(default, deserialize_with = "nullable")]
    pub keyids: Vec<String>,
    pub threshold: i64,
    #[serde(default, deserialize_with = "nullable")]
    pub paths: Vec<String>,
}

/// Go marshals a nil slice or map as `null` (notary writes `"roles":null` once the last
/// delegation is removed) and reads `null` back as empty: do the same for every collection.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// An RFC 3339 instant, as Go's `time.Time` writes it (0–9 fractional digits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Expires(pub OffsetDateTime);

impl<'de> Deserialize<'de> for Expires {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        OffsetDateTime::parse(&s, &Rfc3339)
            .map(Expires)
            .map_err(|e| serde::de::Error::custom(format!("expires {s:?}: {e}")))
    }
}

/// Checks a version field (`tuf/data`: version ≥ 1).
pub fn version(role: &str, v: i64) -> Result<u64, TrustError> {
    u64::try_from(v)
        .ok()
        .filter(|v| *v >= 1)
        .ok_or_else(|| TrustError::malformed(role, format!("version {v} is below 1")))
}

/// Decoded hashes of a [`FileMeta`], checked for structure (`tuf/data/types.go`
/// `CheckValidHashStructures`: sha256 is 32 bytes, sha512 64; at least one supported).
pub fn decoded_hashes(
    role: &str,
    meta: &FileMeta,
) -> Result<Vec<(&'static str, Vec<u8>)>, TrustError> {
    let mut out = Vec::new();
    for (alg, b64) in &meta.hashes {
        let (name, len) = match alg.as_str() {
            SHA256 => (SHA256, 32),
            SHA512 => (SHA512, 64),
            _ => continue,
        };
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| TrustError::malformed(role, format!("{alg} hash is not base64: {e}")))?;
        if raw.len() != len {
            return Err(TrustError::malformed(
                role,
                format!("{alg} hash has {} bytes", raw.len()),
            ));
        }
        out.push((name, raw));
    }
    if out.is_empty() {
        return Err(TrustError::malformed(
            role,
            "no supported hash (sha256 or sha512)",
        ));
    }
    Ok(out)
}

/// The file's length as recorded, checked non-negative.
pub fn meta_length(role: &str, meta: &FileMeta) -> Result<u64, TrustError> {
    u64::try_from(meta.length)
        .map_err(|_| TrustError::malformed(role, format!("negative length {}", meta.length)))
}

/// Runs every parser that sees unverified metadata over `data`, discarding results: the fuzz
/// target's body (fuzz/fuzz_targets/parse_metadata.rs), also run by the tests below.
pub fn exercise_parsers(data: &[u8]) {
    let Ok(env) = Envelope::parse("fuzz", data) else {
        return;
    };
    let _ = env.canonical_signed("fuzz");
    if let Ok(root) = env.typed::<Root>("root", "Root") {
        for key in root.keys.values() {
            let _ = super::keys::PublicKey::from_tuf(key);
        }
    }
    if let Ok(t) = env.typed::<Targets>("targets", "Targets") {
        for meta in t.targets.values() {
            let _ = decoded_hashes("targets", meta);
            let _ = meta_length("targets", meta);
        }
        for role in t.delegations.iter().flat_map(|d| &d.roles) {
            let _ = super::delegation::check_delegation_name("targets", &role.name);
        }
    }
    let _ = env.typed::<Snapshot>("snapshot", "Snapshot");
    let _ = env.typed::<Timestamp>("timestamp", "Timestamp");
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{"signed":{"_type":"Root","consistent_snapshot":false,
        "expires":"2036-11-23T11:30:00.123456789Z","version":1,
        "keys":{"k1":{"keytype":"ed25519","keyval":{"private":null,
            "public":"11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="}}},
        "roles":{"root":{"keyids":["k1"],"threshold":1},"targets":{"keyids":["k1"],"threshold":1},
            "snapshot":{"keyids":["k1"],"threshold":1},"timestamp":{"keyids":["k1"],"threshold":1}}},
        "signatures":[{"keyid":"k1","method":"eddsa","sig":"AAAA"}]}"#;

    #[test]
    fn parses_fractional_expiry_and_capitalised_type() {
        let env = Envelope::parse("root", SAMPLE.as_bytes()).unwrap();
        let root: Root = env.typed("root", "Root").unwrap();
        assert_eq!(root.expires.0.nanosecond(), 123_456_789);
        assert!(matches!(
            env.typed::<Root>("root", "root"),
            Err(TrustError::WrongType { .. })
        ));
    }

    #[test]
    fn null_collections_read_as_empty_like_go() {
        let t = br#"{"signed":{"_type":"Targets","expires":"2030-01-01T00:00:00Z","version":3,
            "targets":null,"delegations":{"keys":{},"roles":null}},"signatures":null}"#;
        let env = Envelope::parse("targets", t).unwrap();
        assert!(env.signatures.is_empty());
        let targets: Targets = env.typed("targets", "Targets").unwrap();
        assert!(targets.targets.is_empty());
        assert!(targets.delegations.unwrap().roles.is_empty());
    }

    #[test]
    fn parsers_survive_truncation_and_byte_flips() {
        let bytes = SAMPLE.as_bytes();
        for end in 0..bytes.len() {
            exercise_parsers(&bytes[..end]);
        }
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..2000 {
            let mut b = bytes.to_vec();
            for _ in 0..3 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let i = (state as usize) % b.len();
                b[i] = (state >> 32) as u8;
            }
            exercise_parsers(&b);
        }
    }
}
