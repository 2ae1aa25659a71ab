//! Arbitrary policy files: the loader must report errors, never panic or half-load, and a
//! policy it accepts must answer `decide` for any image.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(p) = trustgate::policy::Policy::from_str(text, "fuzz.toml") {
        let _ = p.decide("docker.io", "library/alpine");
        let _ = p.decide("r.example:5000", "a/b/c");
    }
});
