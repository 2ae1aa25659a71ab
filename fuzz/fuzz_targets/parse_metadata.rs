//! Feeds arbitrary bytes to everything that reads trust-server metadata before any signature
//! has vouched for it: the envelope parser, canonical JSON, the typed role views, key parsing
//! (DER, PEM certificates), and the per-role loaders with a throwaway root.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    trustgate::trust::wire::exercise_parsers(data);
});
