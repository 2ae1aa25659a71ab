//! Shared harness for the integration and end-to-end tests.
//!
//! Every external server is a real program started on an ephemeral loopback port and ended
//! by its own process id when its guard drops. A missing program is a test *failure* that
//! names the install step, never a skip.
#![allow(dead_code)]

pub mod clients;
pub mod cosign;
pub mod fake_upstream;
pub mod keyless;
pub mod notary;
pub mod notation;
pub mod pki;
pub mod proc;
pub mod registry;
pub mod stack;
pub mod tokenissuer;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Asks the kernel for a free loopback port. Needed only for external programs that must be
/// told an address up front (the registry, notary); our own servers bind port 0 directly.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// Waits until something accepts TCP connections on `addr`, or panics after `timeout`.
pub fn wait_for_tcp(addr: SocketAddr, timeout: Duration) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listening on {addr} after {timeout:?}");
}

/// Path of a required program. Panics (fails the test) with the install step when it is
/// missing: tests never skip over a missing dependency.
pub fn require_tool(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/sbin", "/usr/local/bin", "/bin", "/sbin"] {
        let p = PathBuf::from(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("required program `{name}` is not installed; run scripts/install-deps.sh (the README's test command does)");
}

/// A fresh temporary directory that lives as long as the returned value.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("trustgate-test-")
        .tempdir()
        .expect("tempdir")
}
