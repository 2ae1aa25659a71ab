//! Arbitrary bytes as a cosign `.sig` manifest and as a public key file: refused, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    trustgate::cosign::exercise_parsers(data);
});
