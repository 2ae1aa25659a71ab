//! A loopback trust server over HTTP serving [`MemSource`]s per GUN, which counts what it is
//! asked, can answer every request with one status (429, 503), and can be slow — the
//! amplification and fallback tests need a server the real notary-server cannot be.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::FutureExt as _;
use trustgate::trust::source::{FetchError, MetadataSource};

use super::MemSource;

#[derive(Default)]
pub struct HttpTrust {
    repos: Mutex<HashMap<String, Arc<MemSource>>>,
    /// Non-zero: every request gets this status (with `Retry-After: 30`).
    pub status: AtomicU16,
    /// Milliseconds to wait before answering.
    pub delay_ms: AtomicU64,
    pub requests: AtomicUsize,
    in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
    /// Every path asked for.
    pub log: Mutex<Vec<String>>,
    pub url: Mutex<String>,
    /// `Some("user:password")`: requests without that Basic authorization get 401.
    pub basic: Mutex<Option<String>>,
}

impl HttpTrust {
    /// Starts the server on 127.0.0.1 (an ephemeral port).
    pub fn start() -> Arc<HttpTrust> {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let me = Arc::new(HttpTrust::default());
        *me.url.lock().unwrap() = format!("http://{}", listener.local_addr().unwrap());
        let server = me.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(s) = stream else { continue };
                let server = server.clone();
                std::thread::spawn(move || server.answer(s));
            }
        });
        me
    }

    pub fn url(&self) -> String {
        self.url.lock().unwrap().clone()
    }

    /// The files of `gun` (published into with `Repo::publish`).
    pub fn repo(&self, gun: &str) -> Arc<MemSource> {
        self.repos
            .lock()
            .unwrap()
            .entry(gun.to_owned())
            .or_default()
            .clone()
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    fn answer(&self, mut s: std::net::TcpStream) {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let path = head.split(' ').nth(1).unwrap_or("").to_owned();
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.log.lock().unwrap().push(path.clone());
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let delay = self.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(std::time::Duration::from_millis(delay));
        }
        let (status, body) = match self.basic.lock().unwrap().clone() {
            Some(cred) if !authorized(&head, &cred) => (401, Vec::new()),
            _ => self.respond(&path),
        };
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let reason = match status {
            200 => "OK",
            401 => "Unauthorized",
            404 => "Not Found",
            429 => "Too Many Requests",
            503 => "Service Unavailable",
            _ => "Other",
        };
        let _ = s.write_all(
            format!(
                "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nRetry-After: 30\r\nWWW-Authenticate: Basic realm=\"notary\"\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        let _ = s.write_all(&body);
    }

    fn respond(&self, path: &str) -> (u16, Vec<u8>) {
        let forced = self.status.load(Ordering::SeqCst);
        if forced != 0 {
            return (
                forced,
                b"{\"errors\":[{\"code\":\"TOOMANYREQUESTS\"}]}".to_vec(),
            );
        }
        let Some((gun, file)) = path
            .strip_prefix("/v2/")
            .and_then(|p| p.split_once("/_trust/tuf/"))
        else {
            return (404, Vec::new());
        };
        let repo = self.repos.lock().unwrap().get(gun).cloned();
        let Some(repo) = repo else {
            return (
                404,
                b"{\"errors\":[{\"code\":\"METADATA_NOT_FOUND\"}]}".to_vec(),
            );
        };
        match repo.fetch(gun, file, u64::MAX).now_or_never() {
            Some(Ok(b)) => (200, b.to_vec()),
            Some(Err(FetchError::NotFound { .. })) | None => (404, Vec::new()),
            Some(Err(_)) => (503, Vec::new()),
        }
    }
}

fn authorized(head: &str, cred: &str) -> bool {
    use base64::Engine as _;
    let want = format!(
        "basic {}",
        base64::engine::general_purpose::STANDARD.encode(cred)
    );
    head.lines().any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.eq_ignore_ascii_case("authorization") && v.trim().eq_ignore_ascii_case(&want)
        })
    })
}
