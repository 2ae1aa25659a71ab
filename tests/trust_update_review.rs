//! Issue 7, TUF-update half (TRUST-REVIEW.md D3, D4, D5, slow retrieval, rows 6/31/32/33/36):
//! each test is an attack or a Notary rule, turned from the review's reproduction into the
//! behaviour Go's notary client has (or the documented, fail-closed difference).

mod trustfix;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::Ordering;
use std::time::{Duration as StdDuration, Instant};

use serde_json::{json, Value};
use time::Duration;
use trustfix::harness::*;
use trustfix::{b64, envelope, target, Delegation, MemSource, Published, Repo, Signer};
use trustgate::trust::canonical;
use trustgate::trust::fetch::{settings_for, HttpMetadataSource};
use trustgate::trust::keys::PublicKey;
use trustgate::trust::source::{FetchError, MetadataSource};
use trustgate::trust::wire::TufKey;
use trustgate::trust::{RefusalReason, TrustClient, TrustError, TrustSettings};

// ---------------------------------------------------------------------------------------------
// D3: fast-forward recovery
// ---------------------------------------------------------------------------------------------

/// An attacker holding the timestamp key published version 1000; the publisher recovers with a
/// new root whose timestamp key is new. The stale floor goes (TUF 5.3.11, Go tufclient.go
/// 303-308), in the same update and for good (restart included); the snapshot floor stays.
#[tokio::test]
async fn d3_fast_forward_recovery_after_timestamp_key_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let src = MemSource::new();
    let mut repo = repo_with_releases();
    repo.snapshot_version = 7;
    repo.publish(&src);
    let c = client(&src, dir.path(), repo.now);
    resolve(&c, "v1").await.unwrap();
    repo.timestamp_version = 1000;
    repo.publish(&src);
    resolve(&c, "v1").await.unwrap();

    repo.timestamp_key = Signer::ed25519();
    repo.root_version = 2;
    repo.timestamp_version = 2;
    repo.publish(&src);
    for attempt in 0..2 {
        let c = client(&src, dir.path(), repo.now);
        let got = resolve(&c, "v1").await;
        assert!(got.is_ok(), "attempt {attempt}: {got:?}");
        let state = c.update(GUN).await.unwrap();
        assert_eq!(state.root_version(), 2);
    }
    // The new floor is the new timestamp's version: an older file by the new key is refused.
    let older = envelope(
        &Repo {
            timestamp_version: 1,
            ..Repo::new(GUN)
        }
        .timestamp_signed(&repo.build().snapshot),
        &[&repo.timestamp_key],
    );
    src.put("timestamp.json", &older);
    let err = resolve(&client(&src, dir.path(), repo.now), "v1")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TrustError::Rollback { role, trusted: 2, got: 1 } if role == "timestamp"),
        "{err:?}"
    );
    // The snapshot's keys did not change: its floor (7) survived the rotation.
    repo.timestamp_version = 3;
    repo.snapshot_version = 6;
    repo.publish(&src);
    let err = resolve(&client(&src, dir.path(), repo.now), "v1")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TrustError::Rollback { role, trusted: 7, got: 6 } if role == "snapshot"),
        "{err:?}"
    );
}

/// A root rotation that only *adds* a timestamp key keeps the floor: the stored timestamp
/// still verifies under the new root, so an old, still unexpired timestamp signed by the old
/// key cannot be replayed (Go: the cached copy loads, minVersion stays).
#[tokio::test]
async fn d3_added_key_keeps_the_floor_and_replay_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let src = MemSource::new();
    let mut repo = repo_with_releases();
    repo.publish(&src);
    let replay = repo.build().timestamp;
    repo.timestamp_version = 5;
    repo.publish(&src);
    resolve(&client(&src, dir.path(), repo.now), "v1")
        .await
        .unwrap();

    // Root v2 lists the old timestamp key and a new one, threshold 1.
    let extra = Signer::ed25519();
    repo.root_version = 2;
    let mut signed = repo.root_signed();
    signed["keys"][extra.id()] = extra.tuf();
    signed["roles"]["timestamp"]["keyids"]
        .as_array_mut()
        .unwrap()
        .push(json!(extra.id()));
    let root2 = envelope(&signed, &[&repo.root_keys[0]]);
    let mut p = repo.build();
    p.root = root2.clone();
    serve_rebuilt(&repo, &src, p);
    src.put("2.root.json", &root2);
    src.put("timestamp.json", &replay);
    let err = resolve(&client(&src, dir.path(), repo.now), "v1")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TrustError::Rollback { role, trusted: 5, got: 1 } if role == "timestamp"),
        "{err:?}"
    );
}

/// Rotating the snapshot key resets the snapshot floor only: targets versions are guarded by
/// the targets key alone in Notary (no versions in its snapshot meta), so a targets rollback
/// is still refused after the rotation.
#[tokio::test]
async fn d3_snapshot_rotation_does_not_reset_targets() {
    let dir = tempfile::tempdir().unwrap();
    let src = MemSource::new();
    let mut repo = repo_with_releases();
    repo.targets_version = 3;
    repo.snapshot_version = 1000;
    repo.publish(&src);
    resolve(&client(&src, dir.path(), repo.now), "v1")
        .await
        .unwrap();

    repo.snapshot_key = Signer::ecdsa();
    repo.root_version = 2;
    repo.snapshot_version = 1;
    repo.timestamp_version = 2;
    repo.publish(&src);
    // The fast-forwarded snapshot is recovered from ...
    resolve(&client(&src, dir.path(), repo.now), "v1")
        .await
        .unwrap();
    // ... but targets still cannot go back.
    repo.targets_version = 2;
    repo.timestamp_version = 3;
    repo.snapshot_version = 2;
    repo.publish(&src);
    let err = resolve(&client(&src, dir.path(), repo.now), "v1")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TrustError::Rollback { role, trusted: 3, got: 2 } if role == "targets"),
        "{err:?}"
    );
}

/// The same for a delegation: a stolen `targets/releases` key published version 1000; the
/// publisher replaces the delegation's key in `targets`. The new key's version 1 is accepted
/// (Go: the cached delegation no longer verifies under the parent's new listing); the new
/// floor then holds.
#[tokio::test]
async fn d3_fast_forward_recovery_after_delegation_key_replacement() {
    let dir = tempfile::tempdir().unwrap();
    let src = MemSource::new();
    let mut repo = repo_with_releases();
    repo.delegations[0].version = 1000;
    repo.publish(&src);
    resolve(&client(&src, dir.path(), repo.now), "v1")
        .await
        .unwrap();

    repo.delegations[0].keys = vec![Signer::ecdsa()];
    repo.delegations[0].version = 2;
    repo.targets_version = 2;
    repo.snapshot_version = 2;
    repo.timestamp_version = 2;
    repo.publish(&src);
    for _ in 0..2 {
        let got = resolve(&client(&src, dir.path(), repo.now), "v1").await;
        assert_eq!(got.unwrap().role(), "targets/releases");
    }
    repo.delegations[0].version = 1;
    repo.snapshot_version = 3;
    repo.timestamp_version = 3;
    repo.publish(&src);
    let err = client(&src, dir.path(), repo.now)
        .update(GUN)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TrustError::Rollback { role, trusted: 2, got: 1 } if role == "targets/releases"),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// D4: the delegation cap counts skipped roles
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn d4_skipped_delegations_count_toward_max_delegations() {
    let src = MemSource::new();
    let mut repo = repo_with_releases();
    for i in 0..5 {
        repo.delegations.push(Delegation {
            name: format!("targets/d{i}"),
            keys: vec![Signer::ecdsa()],
            threshold: 1,
            paths: vec![String::new()],
            targets: BTreeMap::new(),
            version: 1,
            expires: repo.now + Duration::days(30),
        });
    }
    let mut p = repo.build();
    let stranger = Signer::ecdsa();
    for (i, d) in p.delegations.iter_mut().enumerate() {
        d.1 = envelope(&Repo::delegation_signed(&repo.delegations[i]), &[&stranger]);
    }
    serve_rebuilt(&repo, &src, p);
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path());
    s.limits.max_delegations = 1;
    let before = src.fetches.load(Ordering::SeqCst);
    let err = client_at(&src, s, repo.now).update(GUN).await.unwrap_err();
    let fetched = src.fetches.load(Ordering::SeqCst) - before;
    assert!(
        matches!(&err, TrustError::Malformed { reason, .. } if reason == "too many delegations"),
        "{err:?}"
    );
    // root, timestamp, snapshot, targets, one delegation.
    assert!(fetched <= 5, "{fetched} fetches");
}

// ---------------------------------------------------------------------------------------------
// D5 and the other delegation structure rules (targets.go isValidTargetsStructure)
// ---------------------------------------------------------------------------------------------

/// Serves `repo` with its targets file's `signed` value changed by `edit`.
fn serve_with_targets(repo: &Repo, src: &MemSource, edit: impl FnOnce(&mut Value)) {
    let mut p = repo.build();
    let mut signed = repo.targets_signed();
    edit(&mut signed);
    p.targets = envelope(&signed, &[&repo.targets_keys[0]]);
    serve_rebuilt(repo, src, p);
}

fn assert_invalid_delegation(err: &TrustError, child: &str, needle: &str) {
    assert!(
        matches!(err, TrustError::InvalidDelegation { parent, name, reason }
            if parent == "targets" && name == child && reason.contains(needle)),
        "{err:?}"
    );
    assert_eq!(err.reason(), RefusalReason::SignatureInvalid);
}

#[tokio::test]
async fn d5_delegation_with_undefined_keyid_fails_the_update() {
    let src = MemSource::new();
    let repo = repo_with_releases();
    serve_with_targets(&repo, &src, |s| {
        s["delegations"]["roles"][0]["keyids"]
            .as_array_mut()
            .unwrap()
            .push(json!("00".repeat(32)));
    });
    let err = expect_err(&src, repo.now, "v1").await;
    assert_invalid_delegation(&err, "targets/releases", "does not define");
}

/// Threshold < 1 fails the parent even for a child the snapshot does not list (before, it
/// surfaced only when the child was fetched).
#[tokio::test]
async fn delegation_threshold_below_one_fails_the_parent() {
    let src = MemSource::new();
    let repo = repo_with_releases();
    serve_with_targets(&repo, &src, |s| {
        let k = Signer::ecdsa();
        s["delegations"]["keys"][k.id()] = k.tuf();
        s["delegations"]["roles"].as_array_mut().unwrap().push(
            json!({"name": "targets/unlisted", "keyids": [k.id()], "threshold": 0, "paths": [""]}),
        );
    });
    let err = expect_err(&src, repo.now, "latest").await;
    assert_invalid_delegation(&err, "targets/unlisted", "threshold 0");
}

/// Row 36: a child listed twice (the second listing with other keys and paths) is refused,
/// instead of one listing silently shadowing the other.
#[tokio::test]
async fn duplicate_delegation_listing_is_refused() {
    let src = MemSource::new();
    let repo = repo_with_releases();
    serve_with_targets(&repo, &src, |s| {
        let k = Signer::ecdsa();
        s["delegations"]["keys"][k.id()] = k.tuf();
        s["delegations"]["roles"].as_array_mut().unwrap().push(
            json!({"name": "targets/releases", "keyids": [k.id()], "threshold": 1, "paths": ["x"]}),
        );
    });
    let err = expect_err(&src, repo.now, "v1").await;
    assert_invalid_delegation(&err, "targets/releases", "more than once");
}

/// Row 33 (`GetDelegationRole`, tuf.go:250-260): a delegation's x509 key must pass
/// `ValidateCertificate(cert, false)`: no SHA-1 signature, RSA ≥ 2048 bits, a sane window;
/// the certificate's expiry is not checked.
#[tokio::test]
async fn delegation_certificates_are_validated_but_not_for_expiry() {
    let now = repo_now();
    let expired = Signer::ecdsa().as_cert(
        "releases",
        now - Duration::days(30),
        now - Duration::days(1),
        None,
    );
    let inverted = Signer::ecdsa().as_cert(
        "releases",
        now + Duration::days(30),
        now - Duration::days(1),
        None,
    );
    let cases: Vec<(Signer, Option<&str>)> = vec![
        (expired, None),
        (
            Signer::rsa_fixture("rsa2048", Some("rsa2048-sha1.crt")),
            Some("SHA-1"),
        ),
        (
            Signer::rsa_fixture("rsa1024", Some("rsa1024.crt")),
            Some("shorter than 2048"),
        ),
        (inverted, Some("validity window")),
    ];
    for (key, refusal) in cases {
        let src = MemSource::new();
        let mut repo = repo_with_releases();
        repo.delegations[0].keys = vec![key];
        repo.publish(&src);
        let got = resolve(
            &client(&src, tempfile::tempdir().unwrap().path(), repo.now),
            "v1",
        )
        .await;
        match refusal {
            None => assert_eq!(got.unwrap().role(), "targets/releases"),
            Some(needle) => {
                assert_invalid_delegation(&got.unwrap_err(), "targets/releases", needle)
            }
        }
    }
}

/// Row 32 (`loadDelegation`, builder.go:578-616: version before signatures): a delegation that
/// is rolled back *and* mis-signed fails the update with the rollback, as in Go, instead of
/// being skipped for its signature.
#[tokio::test]
async fn rolled_back_and_mis_signed_delegation_fails_with_the_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let src = MemSource::new();
    let mut repo = repo_with_releases();
    repo.delegations[0].version = 4;
    repo.publish(&src);
    resolve(&client(&src, dir.path(), repo.now), "v1")
        .await
        .unwrap();
    repo.delegations[0].version = 3;
    repo.snapshot_version = 2;
    repo.timestamp_version = 2;
    let mut p = repo.build();
    p.delegations[0].1 = envelope(
        &Repo::delegation_signed(&repo.delegations[0]),
        &[&Signer::ecdsa()],
    );
    serve_rebuilt(&repo, &src, p);
    let err = client(&src, dir.path(), repo.now)
        .update(GUN)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TrustError::Rollback { role, trusted: 4, got: 3 } if role == "targets/releases"),
        "{err:?}"
    );
}

/// Row 31 (`tufclient.go` downloadTargets:223-227, `ChecksumKnown`): a snapshot entry with
/// neither hashes nor a length makes the delegation unknown, not the update invalid; lookups
/// fall through to `targets`.
#[tokio::test]
async fn snapshot_entry_without_checksum_skips_the_delegation() {
    let src = MemSource::new();
    let repo = repo_with_releases();
    let p = repo.build();
    let mut snap = repo.snapshot_signed(&p.root, &p.targets, &p.delegations);
    snap["meta"]["targets/releases"] = json!({"length": 0, "hashes": {}});
    let snapshot = envelope(&snap, &[&repo.snapshot_key]);
    let timestamp = envelope(&repo.timestamp_signed(&snapshot), &[&repo.timestamp_key]);
    src.put_role("root", &p.root);
    src.put_role("targets", &p.targets);
    src.put_role("targets/releases", &p.delegations[0].1);
    src.put_role("snapshot", &snapshot);
    src.put("timestamp.json", &timestamp);
    let dir = tempfile::tempdir().unwrap();
    let c = client(&src, dir.path(), repo.now);
    let got = resolve(&c, "v1").await.unwrap();
    assert_eq!(got.role(), "targets");
    assert!(!src.fetched("targets/releases.json"));
}

// ---------------------------------------------------------------------------------------------
// Slow retrieval
// ---------------------------------------------------------------------------------------------

/// A loopback HTTP server that answers every request with a 200 announcing `len` bytes and
/// then sends one byte per `every`. It stops by itself after `lifetime` (threads end when
/// their client hangs up or the lifetime is over).
fn trickling_server(len: usize, every: StdDuration, lifetime: StdDuration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let end = Instant::now() + lifetime;
    std::thread::spawn(move || {
        while Instant::now() < end {
            match listener.accept() {
                Ok((mut conn, _)) => {
                    std::thread::spawn(move || {
                        conn.set_nonblocking(false).unwrap();
                        conn.set_read_timeout(Some(StdDuration::from_secs(5)))
                            .unwrap();
                        let mut req = Vec::new();
                        let mut buf = [0u8; 1024];
                        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                            match conn.read(&mut buf) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => req.extend_from_slice(&buf[..n]),
                            }
                        }
                        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n");
                        if conn.write_all(head.as_bytes()).is_err() {
                            return;
                        }
                        for _ in 0..len {
                            if Instant::now() >= end || conn.write_all(b"{").is_err() {
                                return;
                            }
                            std::thread::sleep(every);
                        }
                    });
                }
                Err(_) => std::thread::sleep(StdDuration::from_millis(10)),
            }
        }
    });
    format!("http://{addr}")
}

/// The whole update has one deadline (`trust_timeout` from the policy file): a trust server
/// trickling a byte a second is cut off at it, and the pull gets 503 (trust unavailable, fail
/// closed), long before the per-request body timeout (30 s) would fire.
#[tokio::test]
async fn trickling_trust_server_hits_the_update_deadline_and_fails_closed() {
    use trustgate::enforce::TrustPool;
    use trustgate::policy::{signed_requirement, Policy};
    use trustgate::trust::RefusalReason;

    let url = trickling_server(
        100_000,
        StdDuration::from_secs(1),
        StdDuration::from_secs(40),
    );
    let text = format!(
        "[trust_servers.slow]\nurl = \"{url}\"\ntrust_timeout = \"2s\"\n\n[[rules]]\nscope = \"registry.example/**\"\nrequire = \"signed\"\n\n[default]\nrequire = \"reject\"\n"
    );
    let policy = Policy::from_str(&text, "slow.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        policy.trust_servers()[0].trust_timeout(),
        StdDuration::from_secs(2)
    );
    let decision = policy.decide("registry.example", "team/app");
    let req = signed_requirement(&decision).unwrap().notary().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pool = TrustPool::new(dir.path().to_path_buf());
    let (_, client) = pool.client(req).unwrap();
    let gun = req.gun("registry.example", "team/app");
    let started = Instant::now();
    let err = client
        .resolve(&gun, "v1", &trustgate::trust::default_roles())
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        took >= StdDuration::from_secs(2) && took < StdDuration::from_secs(8),
        "took {took:?}: {err:?}"
    );
    assert!(
        matches!(&err, TrustError::Unreachable { file, reason } if file == "root.json" && reason.contains("trust_timeout")),
        "{err:?}"
    );
    // Unreachable is what the enforcer answers with 503 (fail closed, transient).
    assert_eq!(err.reason(), RefusalReason::Unreachable, "{err:?}");
}

/// The same deadline with stored, still-valid trust data: it answers (Notary's rule for an
/// unreachable server), marked offline; the deadline bounds the wait.
#[tokio::test]
async fn deadline_falls_back_to_stored_data_like_any_network_error() {
    let dir = tempfile::tempdir().unwrap();
    let src = MemSource::new();
    let repo = repo_with_releases();
    repo.publish(&src);
    resolve(&client(&src, dir.path(), repo.now), "v1")
        .await
        .unwrap();

    /// A source that never answers.
    struct Stalled;
    impl MetadataSource for Stalled {
        fn fetch<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
            _: u64,
        ) -> trustgate::trust::source::BoxFuture<'a, Result<bytes::Bytes, FetchError>> {
            Box::pin(std::future::pending())
        }
    }
    let mut s = settings(dir.path());
    s.limits.update_deadline = StdDuration::from_millis(300);
    let now = repo.now;
    let c = TrustClient::new(s, std::sync::Arc::new(Stalled))
        .unwrap()
        .with_clock(std::sync::Arc::new(move || now));
    let started = Instant::now();
    // Bounded here too, so that a missing deadline fails the test instead of hanging it.
    let state = tokio::time::timeout(StdDuration::from_secs(10), c.update(GUN))
        .await
        .expect("the update deadline must end the update")
        .unwrap();
    assert!(started.elapsed() < StdDuration::from_secs(3));
    assert!(state.offline());
    assert_eq!(resolve(&c, "v1").await.unwrap().role(), "targets/releases");
}

/// The per-request body timeout of the HTTP metadata source (TRUST-REVIEW §3: nothing
/// exercised it): a trickled body is abandoned as unreachable once it passes.
#[tokio::test]
async fn http_source_body_timeout_cuts_a_trickled_body() {
    let url = trickling_server(
        10_000,
        StdDuration::from_millis(500),
        StdDuration::from_secs(20),
    );
    let src = HttpMetadataSource::from_settings(settings_for(&url, None).unwrap())
        .unwrap()
        .with_body_timeout(StdDuration::from_secs(1));
    let started = Instant::now();
    let err = src.fetch(GUN, "timestamp.json", 1 << 20).await.unwrap_err();
    let took = started.elapsed();
    assert!(took < StdDuration::from_secs(5), "took {took:?}");
    assert!(
        matches!(&err, FetchError::Unreachable { file, reason } if file == "timestamp.json" && reason.contains("body not complete")),
        "{err:?}"
    );
}

#[test]
fn trust_timeout_errors_name_file_line_and_field() {
    use trustgate::policy::Policy;
    for (value, found) in [
        ("\"0s\"", "\"0s\""),
        ("\"11m\"", "\"11m\""),
        ("\"soon\"", "\"soon\""),
        ("30", "30"),
    ] {
        let text = format!("[trust_servers.a]\nurl = \"https://n.example\"\ntrust_timeout = {value}\n\n[default]\nrequire = \"allow\"\n");
        let err = Policy::from_str(&text, "p.toml").unwrap_err().to_string();
        assert!(
            err.contains("p.toml:3: trust_servers.a.trust_timeout"),
            "{err}"
        );
        assert!(err.contains(found), "{err}");
    }
    let ok = Policy::from_str(
        "[trust_servers.a]\nurl = \"https://n.example\"\n\n[default]\nrequire = \"allow\"\n",
        "p.toml",
    )
    .unwrap();
    assert_eq!(
        ok.trust_servers()[0].trust_timeout(),
        StdDuration::from_secs(30)
    );
}

// ---------------------------------------------------------------------------------------------
// Row 6: algorithms real signers produce
// ---------------------------------------------------------------------------------------------

fn openssl(args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
    let mut child = std::process::Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("openssl runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.unwrap_or_default())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A P-384 key made by openssl (ring signs P-384 only with SHA-384; Go's verifier hashes
/// with SHA-256 on every curve, so the signature is made as a real Notary signer would).
struct P384 {
    dir: tempfile::TempDir,
    spki_der: Vec<u8>,
}

impl P384 {
    fn new() -> P384 {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k.pem");
        let key = key.to_str().unwrap();
        openssl(
            &[
                "ecparam",
                "-name",
                "secp384r1",
                "-genkey",
                "-noout",
                "-out",
                key,
            ],
            None,
        );
        let spki_der = openssl(&["ec", "-in", key, "-pubout", "-outform", "DER"], None);
        P384 { dir, spki_der }
    }
    fn key_path(&self) -> String {
        self.dir.path().join("k.pem").to_str().unwrap().to_owned()
    }
    fn tuf(&self) -> TufKey {
        serde_json::from_value(
            json!({"keytype": "ecdsa", "keyval": {"public": b64(&self.spki_der)}}),
        )
        .unwrap()
    }
    fn cert_tuf(&self) -> TufKey {
        let pem = openssl(
            &[
                "req",
                "-new",
                "-x509",
                "-key",
                &self.key_path(),
                "-subj",
                "/CN=p384",
                "-days",
                "30",
                "-sha256",
            ],
            None,
        );
        serde_json::from_value(json!({"keytype": "ecdsa-x509", "keyval": {"public": b64(&pem)}}))
            .unwrap()
    }
    /// DER ECDSA-Sig-Value over SHA-256(msg).
    fn sign_der(&self, msg: &[u8]) -> Vec<u8> {
        openssl(&["dgst", "-sha256", "-sign", &self.key_path()], Some(msg))
    }
    /// Raw r‖s, 48 bytes each, as Notary writes ECDSA signatures.
    fn sign_raw(&self, msg: &[u8]) -> Vec<u8> {
        der_to_raw(&self.sign_der(msg), 48)
    }
}

/// Minimal DER SEQUENCE{INTEGER, INTEGER} → fixed-width r‖s (test helper only).
fn der_to_raw(der: &[u8], width: usize) -> Vec<u8> {
    assert_eq!(der[0], 0x30);
    let mut i = 2;
    let mut out = Vec::new();
    for _ in 0..2 {
        assert_eq!(der[i], 0x02);
        let len = der[i + 1] as usize;
        let mut v = &der[i + 2..i + 2 + len];
        while v.len() > width && v[0] == 0 {
            v = &v[1..];
        }
        out.extend(std::iter::repeat_n(0, width - v.len()));
        out.extend_from_slice(v);
        i += 2 + len;
    }
    out
}

/// A P-384 `ecdsa` delegation key, signing with the `ecdsa` method as Notary does: the tag
/// resolves from `targets/releases` through the whole update.
#[tokio::test]
async fn p384_delegation_key_verifies_end_to_end() {
    let p384 = P384::new();
    let tuf =
        json!({"keytype": "ecdsa", "keyval": {"private": null, "public": b64(&p384.spki_der)}});
    let id = trustgate::trust::keys::key_id("ecdsa", &b64(&p384.spki_der));
    let src = MemSource::new();
    let repo = repo_with_releases();
    let mut p: Published = repo.build();
    let mut signed = repo.targets_signed();
    signed["delegations"]["keys"] = json!({ id.clone(): tuf });
    signed["delegations"]["roles"][0]["keyids"] = json!([id.clone()]);
    p.targets = envelope(&signed, &[&repo.targets_keys[0]]);
    let releases = Repo::delegation_signed(&repo.delegations[0]);
    let msg = canonical::encode(&releases).unwrap();
    p.delegations[0].1 = serde_json::to_vec(&json!({
        "signed": releases,
        "signatures": [{"keyid": id, "method": "ecdsa", "sig": b64(&p384.sign_raw(&msg))}],
    }))
    .unwrap();
    serve_rebuilt(&repo, &src, p);
    let dir = tempfile::tempdir().unwrap();
    let got = resolve(&client(&src, dir.path(), repo.now), "v1")
        .await
        .unwrap();
    assert_eq!(got.role(), "targets/releases");
}

#[test]
fn p384_keys_verify_raw_signatures_only_with_the_ecdsa_method() {
    let p384 = P384::new();
    let msg = b"canonical bytes";
    for tuf in [p384.tuf(), p384.cert_tuf()] {
        let key = PublicKey::from_tuf(&tuf).unwrap_or_else(|e| panic!("{}: {e}", tuf.keytype));
        let raw = p384.sign_raw(msg);
        assert!(key.verify("ecdsa", msg, &raw), "{}", tuf.keytype);
        assert!(key.verify("ECDSA", msg, &raw), "{}", tuf.keytype);
        assert!(!key.verify("ecdsa", b"other bytes", &raw));
        // Wrong methods, DER instead of raw, wrong width (a P-256-sized signature).
        for method in ["eddsa", "rsapss", "rsapkcs1v15", "pycrypto-pkcs#1 pss"] {
            assert!(!key.verify(method, msg, &raw), "{method}");
        }
        assert!(!key.verify("ecdsa", msg, &p384.sign_der(msg)));
        assert!(!key.verify("ecdsa", msg, &raw[16..80]));
        let mut flipped = raw.clone();
        flipped[95] ^= 1;
        assert!(!key.verify("ecdsa", msg, &flipped));
    }
    // A P-256 signature never verifies under the P-384 key (wrong curve), nor the reverse.
    let p256 = Signer::ecdsa();
    let p384_key = PublicKey::from_tuf(&p384.tuf()).unwrap();
    assert!(!p384_key.verify("ecdsa", msg, &p256.sign_raw(msg)));
    let p256_key = PublicKey::from_tuf(&serde_json::from_value(p256.tuf()).unwrap()).unwrap();
    assert!(!p256_key.verify("ecdsa", msg, &p384.sign_raw(msg)));
    // P-521 stays refused (ring has no P-521; documented).
    let dir = tempfile::tempdir().unwrap();
    let k = dir.path().join("k521.pem");
    let k = k.to_str().unwrap();
    openssl(
        &[
            "ecparam",
            "-name",
            "secp521r1",
            "-genkey",
            "-noout",
            "-out",
            k,
        ],
        None,
    );
    let spki = openssl(&["ec", "-in", k, "-pubout", "-outform", "DER"], None);
    let tuf: TufKey =
        serde_json::from_value(json!({"keytype": "ecdsa", "keyval": {"public": b64(&spki)}}))
            .unwrap();
    assert!(PublicKey::from_tuf(&tuf).is_err());
}

/// `pycrypto-pkcs#1 pss` (verifiers.go:178-202): an `rsa` key whose public part is PEM,
/// RSASSA-PSS with SHA-256 and a 32-byte salt. Refused with a DER `rsa` key or an `rsa-x509`
/// key, and the PEM key refuses `rsapss`/`rsapkcs1v15` (Go cannot parse it there).
#[test]
fn pycrypto_pss_verifies_with_a_pem_rsa_key_only() {
    let msg = b"canonical bytes";
    let der_signer = Signer::rsa_fixture("rsa2048", None);
    let sig = der_signer.sign_raw(msg); // ring RSA_PSS_SHA256: salt = 32
    let spki = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        &der_signer.public_b64,
    )
    .unwrap();
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        b64(&spki)
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join("\n")
    );
    let pem_tuf: TufKey = serde_json::from_value(
        json!({"keytype": "rsa", "keyval": {"public": b64(pem.as_bytes())}}),
    )
    .unwrap();
    let pem_key = PublicKey::from_tuf(&pem_tuf).unwrap();
    assert_eq!(
        pem_key.keyid(),
        trustgate::trust::keys::key_id("rsa", &b64(pem.as_bytes()))
    );
    assert!(pem_key.verify("pycrypto-pkcs#1 pss", msg, &sig));
    assert!(pem_key.verify("PyCrypto-PKCS#1 PSS", msg, &sig));
    assert!(!pem_key.verify("pycrypto-pkcs#1 pss", b"other bytes", &sig));
    assert!(!pem_key.verify("rsapss", msg, &sig));
    assert!(!pem_key.verify("rsapkcs1v15", msg, &sig));

    let der_key = PublicKey::from_tuf(&serde_json::from_value(der_signer.tuf()).unwrap()).unwrap();
    assert!(der_key.verify("rsapss", msg, &sig));
    assert!(!der_key.verify("pycrypto-pkcs#1 pss", msg, &sig));
    let x509 = Signer::rsa_fixture("rsa2048", Some("rsa2048.crt"));
    let x509_key = PublicKey::from_tuf(&serde_json::from_value(x509.tuf()).unwrap()).unwrap();
    assert!(x509_key.verify("rsapss", msg, &sig));
    assert!(!x509_key.verify("pycrypto-pkcs#1 pss", msg, &sig));
}

/// Same, through the threshold function and a whole update: a `targets/releases` signed by a
/// PyCrypto signer resolves.
#[tokio::test]
async fn pycrypto_signed_delegation_verifies_end_to_end() {
    let rsa = Signer::rsa_fixture("rsa2048", None);
    let spki = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &rsa.public_b64)
        .unwrap();
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        b64(&spki)
    );
    let public = b64(pem.as_bytes());
    let id = trustgate::trust::keys::key_id("rsa", &public);
    let src = MemSource::new();
    let repo = repo_with_releases();
    let mut p = repo.build();
    let mut signed = repo.targets_signed();
    signed["delegations"]["keys"] =
        json!({ id.clone(): {"keytype": "rsa", "keyval": {"private": null, "public": public}} });
    signed["delegations"]["roles"][0]["keyids"] = json!([id.clone()]);
    p.targets = envelope(&signed, &[&repo.targets_keys[0]]);
    let releases = Repo::delegation_signed(&repo.delegations[0]);
    let msg = canonical::encode(&releases).unwrap();
    p.delegations[0].1 = serde_json::to_vec(&json!({
        "signed": releases,
        "signatures": [{"keyid": id, "method": "pycrypto-pkcs#1 pss", "sig": b64(&rsa.sign_raw(&msg))}],
    }))
    .unwrap();
    serve_rebuilt(&repo, &src, p);
    let dir = tempfile::tempdir().unwrap();
    let got = resolve(&client(&src, dir.path(), repo.now), "v1")
        .await
        .unwrap();
    assert_eq!(got.role(), "targets/releases");
    let _ = (target(b"x"), TrustSettings::default());
}
