//! Arbitrary request targets through the route parser: names, tags, digests, `ns=`, path
//! prefixes. It must never panic, and whatever it accepts must be canonical (no `..`, no `%`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use trustgate::registry::routes::RouteTable;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let (path, query) = match s.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (s, None),
    };
    let table = RouteTable::new(vec!["docker.io".into(), "r.example:5000".into()], Some(0));
    for method in [http::Method::GET, http::Method::HEAD, http::Method::PUT] {
        if let Ok(route) = table.route(&method, path, query) {
            if let Some(repo) = route.endpoint.repo() {
                let r = repo.to_string();
                assert!(!r.contains("..") && !r.contains('%') && !r.contains("//"));
            }
        }
    }
});
