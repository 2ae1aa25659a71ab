//! cosign keyed verification, pure: real cosign-made signatures (tests/fixtures/cosign,
//! see PROVENANCE.md) and the attacks on them; then the fetch flow over an in-memory
//! registry that lies, hides and floods.
mod support;

use std::collections::HashMap;
use std::path::PathBuf;

use bytes::Bytes;
use trustgate::cosign::fetch::{verify_digest, FetchError, Registry};
use trustgate::cosign::referrers::ReferrersPage;
use trustgate::cosign::{
    parse_signature_manifest, verify, CosignLimits, CosignRefusal, PublicKey, SignatureLayer,
};
use trustgate::policy::CosignKey;
use trustgate::registry::Digest;

use support::cosign::{payload, payload_typed, sha256, sig_manifest, sig_tag, Signer};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/cosign")
            .join(name),
    )
    .unwrap()
}

fn key(name: &str) -> CosignKey {
    let k = PublicKey::from_pem(&fixture(name)).unwrap().remove(0);
    CosignKey::new(PathBuf::from(name), k)
}

fn layer(payload: &[u8], sig: Option<&str>) -> (SignatureLayer, Bytes) {
    (
        SignatureLayer {
            index: 0,
            digest: Digest::sha256_of(payload),
            size: payload.len() as u64,
            signature: sig.map(str::to_string),
            annotations: Default::default(),
        },
        Bytes::copy_from_slice(payload),
    )
}

struct Vector {
    payload: Vec<u8>,
    sig: String,
    digest: Digest,
    key: CosignKey,
}

fn vector(name: &str, digest: &str) -> Vector {
    Vector {
        payload: fixture(&format!("{name}.payload.json")),
        sig: String::from_utf8(fixture(&format!("{name}.sig.b64")))
            .unwrap()
            .trim()
            .to_string(),
        digest: Digest::parse(digest).unwrap(),
        key: key(&format!("{name}.pub")),
    }
}

fn busybox() -> Vector {
    vector(
        "busybox",
        "sha256:f3cfc9d0dbf931d3db4685ec659b7ac68e2a578219da4aae65427886e649b06b",
    )
}

fn kubewarden() -> Vector {
    vector(
        "kubewarden",
        "sha256:5f481572d088dc4023afb35fced9530ced3d9b03bf7299c6f492163cb9f0452e",
    )
}

#[test]
fn real_cosign_signatures_verify() {
    for v in [busybox(), kubewarden()] {
        let ok = verify(
            &v.digest,
            &[layer(&v.payload, Some(&v.sig))],
            &[key("other.pub"), v.key.clone()],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ok.digest(), &v.digest);
        assert_eq!(ok.key_fingerprint(), v.key.key().fingerprint());
    }
}

#[test]
fn a_signature_for_another_digest_is_refused_and_says_so() {
    let v = busybox();
    // kubewarden's digest, busybox's (valid) signature: signed, but not for this image.
    let other = kubewarden().digest;
    let e = verify(
        &other,
        &[layer(&v.payload, Some(&v.sig))],
        std::slice::from_ref(&v.key),
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, CosignRefusal::NoValidSignature { .. }), "{e:?}");
    assert!(
        msg.contains(&format!("no cosign signature for {other} verifies")),
        "{msg}"
    );
    assert!(msg.contains("signed payload is for sha256:f3cfc9d0dbf931d3db4685ec659b7ac68e2a578219da4aae65427886e649b06b"), "{msg}");
}

#[test]
fn a_tampered_payload_is_refused() {
    let v = busybox();
    let tampered = String::from_utf8(v.payload.clone())
        .unwrap()
        .replace(
            "registry-testing.svc.lan/busybox",
            "registry-testing.svc.lan/busybax",
        )
        .into_bytes();
    let e = verify(
        &v.digest,
        &[layer(&tampered, Some(&v.sig))],
        std::slice::from_ref(&v.key),
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("the signature verifies with none of the configured keys"),
        "{e}"
    );
    // A payload that is not the blob its descriptor names is refused before any key is tried.
    let (mut l, _) = layer(&v.payload, Some(&v.sig));
    l.digest = Digest::sha256_of(b"something else");
    let e = verify(
        &v.digest,
        &[(l, Bytes::from(v.payload.clone()))],
        std::slice::from_ref(&v.key),
    )
    .unwrap_err();
    assert!(e.to_string().contains("payload blob hashes to"), "{e}");
}

#[test]
fn the_wrong_key_is_refused_naming_the_expected_key() {
    let v = busybox();
    let other = key("other.pub");
    let e = verify(
        &v.digest,
        &[layer(&v.payload, Some(&v.sig))],
        std::slice::from_ref(&other),
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains(other.key().fingerprint()), "{msg}");
    assert!(msg.contains("ecdsa-p256"), "{msg}");
    assert!(msg.contains("other.pub"), "{msg}");
    assert!(
        msg.contains("signature layer 0: the signature verifies with none of the configured keys"),
        "{msg}"
    );
}

#[test]
fn a_wrong_critical_type_is_refused_even_when_signed() {
    let s = Signer::generate();
    let k = CosignKey::new(
        "t.pub".into(),
        PublicKey::from_pem(s.public_pem().as_bytes())
            .unwrap()
            .remove(0),
    );
    let d = "sha256:".to_string() + &"ab".repeat(32);
    let p = payload_typed("r.io/x", &d, "atomic container signature");
    let e = verify(
        &Digest::parse(&d).unwrap(),
        &[layer(&p, Some(&s.sign(&p)))],
        std::slice::from_ref(&k),
    )
    .unwrap_err();
    assert!(e.to_string().contains("critical.type \"atomic container signature\", expected \"cosign container image signature\""), "{e}");
    // Unknown critical fields are rejected (containers-signature(5)).
    let p = String::from_utf8(payload("r.io/x", &d))
        .unwrap()
        .replace("\"type\"", "\"extra\":1,\"type\"")
        .into_bytes();
    let e = verify(
        &Digest::parse(&d).unwrap(),
        &[layer(&p, Some(&s.sign(&p)))],
        std::slice::from_ref(&k),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("not a SimpleSigning document"),
        "{e}"
    );
    // Missing or non-base64 signature annotations.
    let p = payload("r.io/x", &d);
    let e = verify(
        &Digest::parse(&d).unwrap(),
        &[layer(&p, None), layer(&p, Some("%%%"))],
        &[k],
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("no dev.cosignproject.cosign/signature annotation"),
        "{e}"
    );
    assert!(e.to_string().contains("the signature is not base64"), "{e}");
}

#[test]
fn keys_of_every_supported_type_parse_and_others_are_refused() {
    let pem = |der: &[u8]| {
        use base64::Engine as _;
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(der)
        )
    };
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keys");
    let rsa2048 = std::fs::read(fixtures.join("rsa2048.spki")).unwrap();
    let rsa1024 = std::fs::read(fixtures.join("rsa1024.spki")).unwrap();
    let k = PublicKey::from_pem(pem(&rsa2048).as_bytes()).unwrap();
    assert_eq!(k[0].algorithm().to_string(), "rsa");
    let e = PublicKey::from_pem(pem(&rsa1024).as_bytes()).unwrap_err();
    assert!(e.to_string().contains("1024 bits"), "{e}");
    for alg in [
        &rcgen::PKCS_ED25519,
        &rcgen::PKCS_ECDSA_P384_SHA384,
        &rcgen::PKCS_ECDSA_P256_SHA256,
    ] {
        let kp = rcgen::KeyPair::generate_for(alg).unwrap();
        let k =
            PublicKey::from_pem(kp.public_key_pem().as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert!(["ed25519", "ecdsa-p384", "ecdsa-p256"]
            .contains(&k[0].algorithm().to_string().as_str()));
    }
    assert!(PublicKey::from_pem(b"")
        .unwrap_err()
        .to_string()
        .contains("no PEM public key"));
}

/// An in-memory registry: manifests by tag, blobs by digest, optionally lying.
#[derive(Default)]
struct Mem {
    manifests: HashMap<String, Vec<u8>>,
    blobs: HashMap<String, Vec<u8>>,
    down: bool,
}

impl Registry for Mem {
    async fn resolve_tag(&self, tag: &str) -> Result<Digest, FetchError> {
        self.manifests
            .get(tag)
            .map(|m| Digest::sha256_of(m))
            .ok_or(FetchError::NotFound)
    }
    async fn manifest(&self, reference: &str, limit: u64) -> Result<Bytes, FetchError> {
        if self.down {
            return Err(FetchError::Unavailable {
                reason: "connection refused".into(),
            });
        }
        let m = self.manifests.get(reference).ok_or(FetchError::NotFound)?;
        if m.len() as u64 > limit {
            return Err(FetchError::TooLarge { limit });
        }
        Ok(Bytes::from(m.clone()))
    }
    async fn blob(&self, digest: &Digest, limit: u64) -> Result<Bytes, FetchError> {
        let b = self
            .blobs
            .get(&digest.to_string())
            .ok_or(FetchError::NotFound)?;
        if b.len() as u64 > limit {
            return Err(FetchError::TooLarge { limit });
        }
        Ok(Bytes::from(b.clone()))
    }
    /// A registry without the referrers API (nor the tag schema's index): `.sig` only.
    async fn referrers(
        &self,
        _: &Digest,
        _: Option<&str>,
        _: u64,
    ) -> Result<ReferrersPage, FetchError> {
        if self.down {
            return Err(FetchError::Unavailable {
                reason: "connection refused".into(),
            });
        }
        Err(FetchError::NotFound)
    }
}

fn signed_registry(s: &Signer, image: &Digest, payloads: &[Vec<u8>]) -> Mem {
    let mut m = Mem::default();
    let config = b"{}".to_vec();
    let sigs: Vec<String> = payloads.iter().map(|p| s.sign(p)).collect();
    let layers: Vec<(&[u8], &str)> = payloads
        .iter()
        .zip(&sigs)
        .map(|(p, s)| (p.as_slice(), s.as_str()))
        .collect();
    m.manifests.insert(
        sig_tag(&image.to_string()),
        sig_manifest(&sha256(&config), config.len(), &layers),
    );
    for p in payloads {
        m.blobs.insert(sha256(p), p.clone());
    }
    m.blobs.insert(sha256(&config), config);
    m
}

fn test_key(s: &Signer) -> CosignKey {
    CosignKey::new(
        "t.pub".into(),
        PublicKey::from_pem(s.public_pem().as_bytes())
            .unwrap()
            .remove(0),
    )
}

#[tokio::test]
async fn the_fetch_flow_verifies_and_refuses_precisely() {
    let s = Signer::generate();
    let image = Digest::sha256_of(b"the image manifest");
    let limits = CosignLimits::default();
    // One signature among others (another image's) is enough.
    let other = Digest::sha256_of(b"another image");
    let reg = signed_registry(
        &s,
        &image,
        &[
            payload("r.io/x", &other.to_string()),
            payload("r.io/x", &image.to_string()),
        ],
    );
    let ok = verify_digest(&reg, &image, &[test_key(&s)], &limits)
        .await
        .unwrap();
    assert_eq!(ok.digest(), &image);

    let e = verify_digest(&Mem::default(), &image, &[test_key(&s)], &limits)
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "no cosign signature for {image}: no Sigstore bundle among its referrers, and the tag {} does not exist",
            sig_tag(&image.to_string())
        )
    );

    let down = Mem {
        down: true,
        ..Mem::default()
    };
    let e = verify_digest(&down, &image, &[test_key(&s)], &limits)
        .await
        .unwrap_err();
    assert!(matches!(e, CosignRefusal::Unavailable { .. }), "{e:?}");

    // A payload blob the registry swaps for other bytes.
    let mut lying = signed_registry(&s, &image, &[payload("r.io/x", &image.to_string())]);
    let p = payload("r.io/x", &image.to_string());
    lying
        .blobs
        .insert(sha256(&p), payload("r.io/x", &other.to_string()));
    let e = verify_digest(&lying, &image, &[test_key(&s)], &limits)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("payload blob hashes to"), "{e}");
}

#[tokio::test]
async fn huge_or_endless_signature_artifacts_are_refused() {
    let s = Signer::generate();
    let image = Digest::sha256_of(b"img");
    let limits = CosignLimits::default();
    let tag = sig_tag(&image.to_string());
    // Over the manifest byte limit.
    let mut reg = Mem::default();
    reg.manifests.insert(
        tag.clone(),
        vec![b' '; limits.signature_manifest_max_bytes as usize + 1],
    );
    let e = verify_digest(&reg, &image, &[test_key(&s)], &limits)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("over the 262144-byte limit"), "{e}");
    // More signature layers than the limit: refused, not truncated to the first N.
    let p = payload("r.io/x", &image.to_string());
    let sig = s.sign(&p);
    let many: Vec<(&[u8], &str)> = (0..=limits.max_signatures)
        .map(|_| (p.as_slice(), sig.as_str()))
        .collect();
    let m = sig_manifest(&sha256(b"{}"), 2, &many);
    let e = parse_signature_manifest(&tag, &m, &limits).unwrap_err();
    assert!(
        e.to_string().contains("more than 64 signature layers"),
        "{e}"
    );
    // A layer announcing a huge payload is refused before it is fetched.
    let big = String::from_utf8(sig_manifest(
        &sha256(b"{}"),
        2,
        &[(p.as_slice(), sig.as_str())],
    ))
    .unwrap()
    .replace(&format!("\"size\":{}", p.len()), "\"size\":1099511627776");
    let e = parse_signature_manifest(&tag, big.as_bytes(), &limits).unwrap_err();
    assert!(e.to_string().contains("over the 65536-byte limit"), "{e}");
    // A payload blob longer than its descriptor says is cut off at the descriptor's size.
    let mut reg = signed_registry(&s, &image, std::slice::from_ref(&p));
    let mut longer = p.clone();
    longer.extend(std::iter::repeat_n(b' ', 10_000));
    reg.blobs.insert(sha256(&p), longer);
    let e = verify_digest(&reg, &image, &[test_key(&s)], &limits)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("larger than its descriptor"), "{e}");
    // No simple-signing layers at all.
    let e =
        parse_signature_manifest(&tag, br#"{"schemaVersion":2,"layers":[]}"#, &limits).unwrap_err();
    assert!(
        e.to_string()
            .contains("no application/vnd.dev.cosign.simplesigning.v1+json layers"),
        "{e}"
    );
}
