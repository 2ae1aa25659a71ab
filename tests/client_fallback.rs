//! Why deploy/ configures trustgate as containerd's `server` and as podman's `location`, not as
//! a mirror: a stand-in proxy refuses every manifest with 403 DENIED, and a listener stands in
//! for the real registry (the image's primary host), counting every connection it gets.
//! With the shipped shape the refusal is final and the primary is never contacted; with a
//! mirror-only shape containerd goes on to the primary — the bypass the configuration avoids.
mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::clients::{hosts_toml, registries_conf, skopeo_copy, Containerd, Podman, Transport};

const DENIAL: &str = "trustgate refused demo/app:1.0: tag not signed (rule default)";

/// A plain-HTTP registry stand-in that answers `/v2/` and refuses everything else with the
/// OCI error envelope, recording each request line.
struct Refuser {
    addr: String,
    requests: Arc<Mutex<Vec<String>>>,
}

fn start_refuser() -> Refuser {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let seen = seen.clone();
            std::thread::spawn(move || serve_refusals(stream, seen));
        }
    });
    Refuser { addr, requests }
}

fn serve_refusals(stream: TcpStream, seen: Arc<Mutex<Vec<String>>>) {
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let request_line = line.trim_end().to_string();
        // Skip the headers; these clients send no bodies on GET/HEAD.
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" || h == "\n" {
                break;
            }
        }
        seen.lock().unwrap().push(request_line.clone());
        let path = request_line.split(' ').nth(1).unwrap_or("");
        let head = request_line.starts_with("HEAD ");
        let (status, body) = if path == "/v2/" || path.starts_with("/v2/?") {
            ("200 OK", "{}".to_string())
        } else {
            (
                "403 Forbidden",
                format!(r#"{{"errors":[{{"code":"DENIED","message":"{DENIAL}"}}]}}"#),
            )
        };
        let resp = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n\
             Docker-Distribution-Api-Version: registry/2.0\r\nContent-Length: {}\r\n\r\n{}",
            body.len(),
            if head { "" } else { body.as_str() }
        );
        if out.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

/// A listener standing in for the real registry: counts connections and closes them.
struct Primary {
    host: String,
    connections: Arc<AtomicUsize>,
}

fn start_primary() -> Primary {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let connections = Arc::new(AtomicUsize::new(0));
    let n = connections.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            n.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    Primary { host, connections }
}

#[test]
fn containerd_with_the_proxy_as_server_takes_a_refusal_as_final() {
    let proxy = start_refuser();
    let primary = start_primary();
    let image = format!("{}/demo/app:1.0", primary.host);
    let ctd = Containerd::start();
    let pulled = ctd.pull(&image, &proxy.addr, &Transport::PlainHttp);
    pulled.run.assert_failure();
    assert_eq!(
        primary.connections.load(Ordering::SeqCst),
        0,
        "the registry was contacted"
    );
    let requests = proxy.requests.lock().unwrap().clone();
    // containerd resolves a tag with HEAD and names the registry it meant in `ns`.
    let ns = format!("ns={}", primary.host.replace(':', "%3A"));
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("HEAD /v2/demo/app/manifests/1.0?") && r.contains(&ns)),
        "{requests:?}"
    );
    assert!(
        pulled.run.output().contains("403") || pulled.run.output().contains("DENIED"),
        "{}",
        pulled.run.output()
    );
}

#[test]
fn containerd_with_the_proxy_only_as_a_mirror_falls_back_to_the_registry() {
    let proxy = start_refuser();
    let primary = start_primary();
    let image = format!("{}/demo/app:1.0", primary.host);
    let mirror_only = format!(
        "server = \"http://{}\"\n\n[host.\"http://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
        primary.host, proxy.addr
    );
    let ctd = Containerd::start();
    let pulled = ctd.pull_with_hosts_toml(&image, &mirror_only, &[]);
    pulled.run.assert_failure();
    assert!(
        !proxy.requests.lock().unwrap().is_empty(),
        "the mirror was tried"
    );
    assert!(
        primary.connections.load(Ordering::SeqCst) > 0,
        "containerd did not fall back to the registry after the mirror's 403: {}",
        pulled.run.output()
    );
}

#[test]
fn podman_with_a_location_remap_takes_a_refusal_as_final() {
    let proxy = start_refuser();
    let primary = start_primary();
    let image = format!("{}/demo/app:1.0", primary.host);
    let t = Transport::PlainHttp;
    let pulled = Podman::new().pull(&image, &proxy.addr, &t);
    pulled.run.assert_failure();
    assert_eq!(
        primary.connections.load(Ordering::SeqCst),
        0,
        "the registry was contacted"
    );
    assert!(
        pulled.run.output().contains(DENIAL),
        "podman should show the proxy's message: {}",
        pulled.run.output()
    );
    assert!(registries_conf(&primary.host, &proxy.addr, &t).contains("location"));
}

#[test]
fn podman_with_the_proxy_only_as_a_mirror_falls_back_to_the_registry() {
    let proxy = start_refuser();
    let primary = start_primary();
    let image = format!("{}/demo/app:1.0", primary.host);
    let mirror_only = format!(
        "[[registry]]\nprefix = \"{p}\"\nlocation = \"{p}\"\ninsecure = true\n\n\
         [[registry.mirror]]\nlocation = \"{m}\"\ninsecure = true\n",
        p = primary.host,
        m = proxy.addr
    );
    let pulled = Podman::new().pull_with_registries_conf(&image, &mirror_only, None);
    pulled.run.assert_failure();
    assert!(
        !proxy.requests.lock().unwrap().is_empty(),
        "the mirror was tried"
    );
    assert!(
        primary.connections.load(Ordering::SeqCst) > 0,
        "podman did not fall back to the registry after the mirror's 403: {}",
        pulled.run.output()
    );
}

#[test]
fn skopeo_shows_the_proxy_s_refusal_message() {
    let proxy = start_refuser();
    let copied = skopeo_copy(
        &format!("{}/demo/app:1.0", proxy.addr),
        &Transport::PlainHttp,
    );
    copied.run.assert_failure();
    assert!(
        copied.run.output().contains(DENIAL),
        "{}",
        copied.run.output()
    );
    let _ = hosts_toml(&proxy.addr, &Transport::PlainHttp);
}
