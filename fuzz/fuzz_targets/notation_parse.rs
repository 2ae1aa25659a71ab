//! Notation inputs from the network or the operator: JWS and COSE envelopes, referrers
//! indexes, signature manifests and trust policies must give an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trustgate::notation::{discover, envelope, policy, TargetDescriptor};

fuzz_target!(|data: &[u8]| {
    let _ = envelope::parse(envelope::MEDIA_TYPE_JWS, data);
    let _ = envelope::parse(envelope::MEDIA_TYPE_COSE, data);
    let _ = envelope::check_payload(
        data,
        &TargetDescriptor {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            digest: "sha256:00".into(),
            size: 1,
        },
    );
    let _ = discover::candidates(data, &["aa".into()]);
    let _ = policy::parse("fuzz.json", data);
});
