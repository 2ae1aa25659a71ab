//! The combination rules, with proofs made by verifying real cosign signatures
//! (tests/fixtures/cosign): a `Verified` cannot be made any other way.
use super::*;
use crate::cosign::{verify, PublicKey, SignatureLayer};
use crate::policy::CosignKey;
use crate::registry::Digest;

fn proof(name: &str, payload: &[u8], sig: &[u8], key: &[u8], digest: &str) -> Verified {
    let key = CosignKey::new("k.pub".into(), PublicKey::from_pem(key).unwrap().remove(0));
    let layer = SignatureLayer {
        index: 0,
        digest: Digest::sha256_of(payload),
        size: payload.len() as u64,
        signature: Some(String::from_utf8(sig.to_vec()).unwrap()),
        annotations: Default::default(),
    };
    let digest = Digest::parse(digest).unwrap();
    let k = verify(
        &digest,
        &[(layer, bytes::Bytes::copy_from_slice(payload))],
        &[key],
    )
    .unwrap();
    Verified::from_cosign(name, &k)
}

fn busybox(name: &str) -> Verified {
    proof(
        name,
        include_bytes!("../../tests/fixtures/cosign/busybox.payload.json"),
        include_bytes!("../../tests/fixtures/cosign/busybox.sig.b64"),
        include_bytes!("../../tests/fixtures/cosign/busybox.pub"),
        "sha256:f3cfc9d0dbf931d3db4685ec659b7ac68e2a578219da4aae65427886e649b06b",
    )
}

fn kubewarden(name: &str) -> Verified {
    proof(
        name,
        include_bytes!("../../tests/fixtures/cosign/kubewarden.payload.json"),
        include_bytes!("../../tests/fixtures/cosign/kubewarden.sig.b64"),
        include_bytes!("../../tests/fixtures/cosign/kubewarden.pub"),
        "sha256:5f481572d088dc4023afb35fced9530ced3d9b03bf7299c6f492163cb9f0452e",
    )
}

fn refusal(verifier: &str, unavailable: bool) -> Refusal {
    Refusal {
        verifier: verifier.into(),
        reason: if unavailable {
            DecisionReason::TrustUnreachable
        } else {
            DecisionReason::TagNotSigned
        },
        message: format!("{verifier} says no"),
        unavailable,
    }
}

#[test]
fn all_of_needs_the_same_digest() {
    let both = all_agree(vec![busybox("a"), busybox("b")]).unwrap();
    assert_eq!(both.vouchers().len(), 2);
    assert!(
        both.describe().starts_with("a (cosign: key SHA256:"),
        "{}",
        both.describe()
    );
    let e = all_agree(vec![busybox("a"), kubewarden("b")]).unwrap_err();
    assert!(
        e.message.contains("the verifiers disagree"),
        "{}",
        e.message
    );
    assert!(
        e.message.contains("sha256:f3cfc9d0") && e.message.contains("sha256:5f481572"),
        "{}",
        e.message
    );
}

#[test]
fn any_of_passes_a_single_refusal_on_and_summarises_several() {
    assert_eq!(
        none_vouched(vec![refusal("dct", false)]),
        refusal("dct", false)
    );
    let r = none_vouched(vec![refusal("dct", false), refusal("release", false)]);
    assert_eq!(
        r.message,
        "none of the verifiers [dct, release] vouches for it (any of them would do): dct: dct says no; release: release says no"
    );
    assert!(!r.unavailable);
    // One verifier that could not be asked makes the whole answer transient (503).
    let r = none_vouched(vec![refusal("dct", true), refusal("release", false)]);
    assert!(r.unavailable);
    assert_eq!(r.reason, DecisionReason::TrustUnreachable);
    assert!(!none_vouched(Vec::new()).unavailable);
}

#[test]
fn all_of_names_the_verifier_that_refused() {
    let r = one_refused(2, refusal("release", false));
    assert!(
        r.message.starts_with(
            "verifier release does not vouch for it, and the rule requires all of its 2 verifiers"
        ),
        "{}",
        r.message
    );
    assert_eq!(
        one_refused(1, refusal("release", false)),
        refusal("release", false)
    );
}
