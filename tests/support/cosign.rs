//! Makes cosign signatures exactly as `cosign sign --key` stores them (SIGNATURE_SPEC.md):
//! a SimpleSigning payload, signed with an ECDSA P-256 key the test holds (ASN.1 DER, SHA-256),
//! in a `sha256-<hex>.sig` image manifest with one simple-signing layer per signature.

use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};

pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";

pub struct Signer {
    key: EcdsaKeyPair,
}

impl Signer {
    pub fn generate() -> Signer {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        Signer { key }
    }

    /// `cosign.pub`: the SubjectPublicKeyInfo (id-ecPublicKey, prime256v1) as PEM.
    pub fn public_pem(&self) -> String {
        let mut der = hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap();
        der.extend_from_slice(self.key.public_key().as_ref());
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            lines.join("\n")
        )
    }

    /// base64 of the signature over `payload`.
    pub fn sign(&self, payload: &[u8]) -> String {
        let sig = self.key.sign(&SystemRandom::new(), payload).unwrap();
        base64::engine::general_purpose::STANDARD.encode(sig.as_ref())
    }
}

/// The payload `cosign sign` makes for `digest` (Go `encoding/json` order, compact).
pub fn payload(docker_reference: &str, digest: &str) -> Vec<u8> {
    payload_typed(docker_reference, digest, "cosign container image signature")
}

pub fn payload_typed(docker_reference: &str, digest: &str, kind: &str) -> Vec<u8> {
    format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"{docker_reference}"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"{kind}"}},"optional":null}}"#
    )
    .into_bytes()
}

pub fn sha256(b: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)))
}

/// A `.sig` manifest: one simple-signing layer per (payload, base64 signature).
pub fn sig_manifest(config_digest: &str, config_size: usize, layers: &[(&[u8], &str)]) -> Vec<u8> {
    let layers: Vec<serde_json::Value> = layers
        .iter()
        .map(|(p, sig)| {
            serde_json::json!({
                "mediaType": SIMPLE_SIGNING,
                "size": p.len(),
                "digest": sha256(p),
                "annotations": { "dev.cosignproject.cosign/signature": sig },
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "size": config_size,
            "digest": config_digest,
        },
        "layers": layers,
    }))
    .unwrap()
}

/// The tag cosign stores the signatures of `digest` under.
pub fn sig_tag(digest: &str) -> String {
    format!("{}.sig", digest.replacen(':', "-", 1))
}

pub const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
pub const INTOTO: &str = "application/vnd.in-toto+json";
pub const COSIGN_SIGN: &str = "https://sigstore.dev/cosign/sign/v1";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// The in-toto statement `cosign sign` 3 makes for `digest` (`sha256:<hex>`).
pub fn statement(digest: &str, predicate_type: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").unwrap();
    serde_json::to_vec(&serde_json::json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "r.example/app", "digest": {"sha256": hex}}],
        "predicateType": predicate_type,
        "predicate": {},
    }))
    .unwrap()
}

/// DSSE protocol.md PAE, written out again here so the tests do not borrow the code under test.
fn pae(t: &str, body: &[u8]) -> Vec<u8> {
    let mut v = format!("DSSEv1 {} {} {} ", t.len(), t, body.len()).into_bytes();
    v.extend_from_slice(body);
    v
}

/// A keyed v0.3 bundle as `cosign sign --key` 3 writes it: DSSE over `statement`, signed by
/// `signer` over PAE(payload_type, statement).
pub fn bundle_typed(signer: &Signer, statement: &[u8], payload_type: &str) -> Vec<u8> {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    serde_json::to_vec(&serde_json::json!({
        "mediaType": BUNDLE,
        "verificationMaterial": {"publicKey": {"hint": "not trusted"}, "tlogEntries": []},
        "dsseEnvelope": {
            "payload": b64(statement),
            "payloadType": payload_type,
            "signatures": [{"sig": signer.sign(&pae(payload_type, statement)), "keyid": ""}],
        },
    }))
    .unwrap()
}

pub fn bundle(signer: &Signer, statement: &[u8]) -> Vec<u8> {
    bundle_typed(signer, statement, INTOTO)
}

/// cosign 3's referrer manifest (BUNDLE_SPEC.md): artifactType the bundle type, empty config,
/// one layer of `layer_type` holding `bundle`, `subject` the signed manifest.
pub fn referrer_manifest(subject: &str, bundle: &[u8], layer_type: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": BUNDLE,
        "config": {"mediaType": EMPTY, "size": 2, "digest": sha256(b"{}")},
        "layers": [{"mediaType": layer_type, "size": bundle.len(), "digest": sha256(bundle),
            "annotations": {"dev.sigstore.bundle.content": "dsse-envelope",
                "dev.sigstore.bundle.predicateType": COSIGN_SIGN}}],
        "subject": {"mediaType": OCI_MANIFEST, "size": 100, "digest": subject},
    }))
    .unwrap()
}

/// A referrers index (distribution-spec 1.1) listing `manifests` with the given artifact types.
pub fn referrers_index(manifests: &[(&[u8], &str)]) -> Vec<u8> {
    let entries: Vec<serde_json::Value> = manifests
        .iter()
        .map(|(m, at)| {
            serde_json::json!({"mediaType": OCI_MANIFEST, "size": m.len(), "digest": sha256(m),
                "artifactType": at})
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    }))
    .unwrap()
}

/// `cosign sign --key`: `signer`'s signature of `signed_digest`, stored in the real registry
/// under the `.sig` tag of `image_digest` (the same digest, unless a test forges a signature
/// for another image). The payload's `docker-reference` names the closed registry; cosign
/// and trustgate ignore it (the digest binds the signature).
pub async fn push_sig(
    pusher: &super::registry::Pusher,
    signer: &Signer,
    repo: &str,
    image_digest: &str,
    signed_digest: &str,
) {
    use super::registry::Blob;
    let p = payload(&format!("127.0.0.1:1/{repo}"), signed_digest);
    let layer = Blob::new(p.clone(), SIMPLE_SIGNING);
    let config = Blob::new(
        format!(
            r#"{{"architecture":"","created":"0001-01-01T00:00:00Z","history":[{{"created":"0001-01-01T00:00:00Z"}}],"os":"","rootfs":{{"type":"layers","diff_ids":["{}"]}},"config":{{}}}}"#,
            layer.digest
        )
        .into_bytes(),
        "application/vnd.oci.image.config.v1+json",
    );
    pusher.blob(repo, &layer).await;
    pusher.blob(repo, &config).await;
    let sig = signer.sign(&p);
    let m = sig_manifest(
        &config.digest,
        config.bytes.len(),
        &[(p.as_slice(), sig.as_str())],
    );
    pusher
        .manifest(
            repo,
            &sig_tag(image_digest),
            "application/vnd.oci.image.manifest.v1+json",
            &m,
        )
        .await;
}
