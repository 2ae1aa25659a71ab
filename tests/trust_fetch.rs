//! The harness itself (real notary-server in both flavours, real notary CLI publishing) and
//! trustgate's HTTP metadata source against it and against loopback servers that lie.
mod support;

use std::io::{Read, Write};
use std::net::TcpListener;

use support::notary::{digest_of, DelegationKeyKind, Flavour, NotaryCli, NotaryServer};
use trustgate::trust::fetch::{settings_for, HttpMetadataSource};
use trustgate::trust::source::{FetchError, MetadataSource};

fn harness_publishes_and_notary_looks_up(flavour: Flavour) {
    let server = NotaryServer::start(flavour);
    let cli = NotaryCli::new(&server);
    let gun = "example.com/app";
    cli.init(gun);
    let manifest = br#"{"schemaVersion":2}"#;
    cli.add(gun, "v1", manifest, &[]);
    cli.publish(gun);
    let line = cli.lookup(gun, "v1").unwrap();
    assert_eq!(line.digest, digest_of(manifest));
    assert_eq!(line.size, manifest.len() as u64);
    assert_eq!(cli.list_role(gun, "v1").as_deref(), Some("targets"));
    let key = cli.add_delegation(gun, "targets/releases", DelegationKeyKind::X509Cert, None);
    assert!(key.public.exists());
    cli.add(gun, "v2", b"two", &["targets/releases"]);
    cli.publish(gun);
    assert_eq!(
        cli.list_role(gun, "v2").as_deref(),
        Some("targets/releases")
    );
    let (status, body) = server.get_raw(gun, "timestamp.json");
    assert_eq!(status, 200);
    let ts: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let method = ts["signatures"][0]["method"].as_str().unwrap().to_string();
    let expected = match flavour {
        Flavour::Local => "eddsa",
        Flavour::Remote => "ecdsa",
    };
    assert_eq!(method, expected);
    assert_eq!(server.get_raw("example.com/none", "root.json").0, 404);
}

#[test]
fn harness_local_server() {
    harness_publishes_and_notary_looks_up(Flavour::Local);
}

#[test]
fn harness_remote_signer_server() {
    harness_publishes_and_notary_looks_up(Flavour::Remote);
}

fn source_for(server: &NotaryServer) -> HttpMetadataSource {
    server.metadata_source()
}

fn published(flavour: Flavour, gun: &str) -> (NotaryServer, NotaryCli) {
    let server = NotaryServer::start(flavour);
    let cli = NotaryCli::new(&server);
    cli.init(gun);
    cli.add(gun, "v1", b"manifest-v1", &[]);
    cli.publish(gun);
    (server, cli)
}

#[tokio::test]
async fn fetch_returns_the_servers_exact_bytes() {
    let gun = "example.com/fetch";
    let (server, _cli) = published(Flavour::Local, gun);
    let src = source_for(&server);
    for file in [
        "root.json",
        "1.root.json",
        "timestamp.json",
        "targets.json",
        "snapshot.json",
    ] {
        let got = src.fetch(gun, file, 1 << 20).await.unwrap();
        let (status, want) = server.get_raw(gun, file);
        assert_eq!(status, 200, "{file}");
        assert_eq!(&got[..], &want[..], "{file}");
    }
}

#[tokio::test]
async fn fetch_missing_trust_data_is_not_found() {
    let server = NotaryServer::local();
    let src = source_for(&server);
    let err = src
        .fetch("example.com/none", "root.json", 1 << 20)
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::NotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn fetch_aborts_past_max_len() {
    let gun = "example.com/big";
    let (server, _cli) = published(Flavour::Local, gun);
    let src = source_for(&server);
    let (_, root) = server.get_raw(gun, "root.json");
    let len = root.len() as u64;
    assert_eq!(
        src.fetch(gun, "root.json", len).await.unwrap().len() as u64,
        len
    );
    let err = src.fetch(gun, "root.json", len - 1).await.unwrap_err();
    assert!(
        matches!(err, FetchError::TooLarge { limit, .. } if limit == len - 1),
        "{err:?}"
    );
}

#[tokio::test]
async fn fetch_from_stopped_server_is_unreachable() {
    let gun = "example.com/down";
    let (mut server, _cli) = published(Flavour::Local, gun);
    let src = source_for(&server);
    server.stop();
    let err = src.fetch(gun, "timestamp.json", 1 << 20).await.unwrap_err();
    assert!(matches!(err, FetchError::Unreachable { .. }), "{err:?}");
}

#[tokio::test]
async fn fetch_never_requests_key_files() {
    let server = NotaryServer::local();
    let src = source_for(&server);
    let err = src
        .fetch("example.com/app", "snapshot.key", 1 << 20)
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Refused { .. }), "{err:?}");
}

/// A plain-HTTP loopback server that answers every connection with `response` and then, if
/// `endless` is set, keeps streaming chunked data forever.
fn lying_server(response: &'static str, endless: bool) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                if s.write_all(response.as_bytes()).is_err() {
                    return;
                }
                let chunk = format!("1000\r\n{}\r\n", "x".repeat(0x1000));
                while endless && s.write_all(chunk.as_bytes()).is_ok() {}
            });
        }
    });
    format!("http://{addr}")
}

fn plain_source(url: &str) -> HttpMetadataSource {
    HttpMetadataSource::from_settings(settings_for(url, None).unwrap()).unwrap()
}

#[tokio::test]
async fn fetch_5xx_is_unreachable() {
    let url = lying_server(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        false,
    );
    let err = plain_source(&url)
        .fetch("a/b", "timestamp.json", 1024)
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Unreachable { .. }), "{err:?}");
}

#[tokio::test]
async fn fetch_aborts_an_endless_body_without_content_length() {
    let url = lying_server(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n",
        true,
    );
    let err = plain_source(&url)
        .fetch("a/b", "timestamp.json", 64 * 1024)
        .await
        .unwrap_err();
    assert!(
        matches!(err, FetchError::TooLarge { limit: 65536, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn fetch_refuses_a_lying_content_length_up_front() {
    let url = lying_server(
        "HTTP/1.1 200 OK\r\ncontent-length: 999999999\r\nconnection: close\r\n\r\n",
        false,
    );
    let err = plain_source(&url)
        .fetch("a/b", "timestamp.json", 1024)
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::TooLarge { .. }), "{err:?}");
}
