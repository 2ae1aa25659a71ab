//! Trust-server operations (PROXY-REVIEW D8, D9): trusted state survives edits of the pins and
//! of the server URL's spelling, pins made stricter bite without resetting rollback
//! protection, and trustgate does not amplify load onto a trust server — failures are cached
//! briefly per GUN, the per-GUN map is bounded, 429/503 let held data answer, and updates in
//! flight are capped. Against an in-process HTTP trust server that counts what it is asked.
mod trustfix;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use base64::Engine as _;
use trustfix::harness::{repo_with_releases, settings, GUN};
use trustfix::http::HttpTrust;
use trustfix::{digest_of, MemSource, Signer};
use trustgate::enforce::TrustPool;
use trustgate::policy::{signed_requirement, Policy};
use trustgate::trust::fetch::{settings_for, HttpMetadataSource};
use trustgate::trust::{default_roles, TrustClient, TrustError, VerifiedTarget, MAX_SLOTS};

/// A policy with one trust server at `url` and one signed rule for `registry.example/**`,
/// followed by `pinning` (TOML for `[rules.pinning]`, or nothing).
fn policy(url: &str, pinning: &str) -> Policy {
    let text = format!(
        "[trust_servers.n]\nurl = \"{url}\"\n\n[[rules]]\nscope = \"registry.example/**\"\nrequire = \"signed\"\n{pinning}\n[default]\nrequire = \"reject\"\n"
    );
    Policy::from_str(&text, "p.toml").unwrap_or_else(|e| panic!("{e}"))
}

/// `[rules.pinning] root_certs = { GUN = [PEM of signer's certificate] }`.
fn pin(dir: &std::path::Path, gun: &str, cert: &Signer) -> String {
    let path = dir.join(format!("{}.pem", hex::encode(gun)));
    let pem = base64::engine::general_purpose::STANDARD
        .decode(&cert.public_b64)
        .unwrap();
    std::fs::write(&path, pem).unwrap();
    format!(
        "[rules.pinning]\nroot_certs = {{ \"{gun}\" = [\"{}\"] }}\n",
        path.display()
    )
}

async fn resolve_in(
    pool: &TrustPool,
    policy: &Policy,
    repository: &str,
    tag: &str,
) -> Result<VerifiedTarget, TrustError> {
    let decision = policy.decide("registry.example", repository);
    let req = signed_requirement(&decision).unwrap().notary().unwrap();
    let gun = req.gun("registry.example", repository);
    pool.client(req)
        .unwrap()
        .1
        .resolve(&gun, tag, &default_roles())
        .await
}

async fn resolve(
    pool: &TrustPool,
    policy: &Policy,
    tag: &str,
) -> Result<VerifiedTarget, TrustError> {
    resolve_in(pool, policy, "team/app", tag).await
}

fn http_client(server: &HttpTrust, dir: &std::path::Path) -> TrustClient {
    let source =
        HttpMetadataSource::from_settings(settings_for(&server.url(), None).unwrap()).unwrap();
    TrustClient::new(settings(dir), Arc::new(source)).unwrap()
}

/// D8: adding a pin for an unrelated GUN and writing the server URL differently (trailing
/// slash, upper-case scheme) must not start trust again: an attacker who swapped the root
/// meanwhile is still refused, because the trusted root is still the pin.
#[tokio::test]
async fn editing_other_pins_or_the_url_spelling_keeps_the_trusted_root() {
    let server = HttpTrust::start();
    let state = tempfile::tempdir().unwrap();
    let pems = tempfile::tempdir().unwrap();
    repo_with_releases().publish(&server.repo(GUN));
    let before = policy(&server.url(), "");
    let pool = TrustPool::new(state.path().to_path_buf());
    let good = resolve(&pool, &before, "v1").await.unwrap();
    assert_eq!(good.digest(), digest_of(b"manifest-v1"));

    // The trust server is taken over: a whole new repository under new root keys.
    let mut evil = repo_with_releases();
    evil.delegations[0]
        .targets
        .insert("v1".into(), trustfix::target(b"evil"));
    evil.publish(&server.repo(GUN));

    let unrelated = Signer::root_cert(
        "registry.example/other",
        time::OffsetDateTime::now_utc() - time::Duration::days(1),
        time::OffsetDateTime::now_utc() + time::Duration::days(300),
    );
    let url = server.url().replace("http://", "HTTP://") + "/";
    let after = policy(
        &url,
        &pin(pems.path(), "registry.example/other", &unrelated),
    );
    // A new pool on the same state directory: as after a reload or a restart.
    let pool = TrustPool::new(state.path().to_path_buf());
    let err = resolve(&pool, &after, "v1").await.unwrap_err();
    assert!(
        matches!(err, TrustError::RootNotSignedByPrevious { .. }),
        "the swapped root must be refused, got {err:?}"
    );
}

/// D8, pins made stricter: a pin for this GUN that the stored (attacker-supplied, trusted on
/// first use) root does not satisfy sets it aside; the root the server serves must satisfy
/// the pin, as at first contact. While the server still serves the unpinned root, refused.
#[tokio::test]
async fn a_new_pin_the_stored_root_fails_makes_the_server_root_face_the_pin() {
    let server = HttpTrust::start();
    let state = tempfile::tempdir().unwrap();
    let pems = tempfile::tempdir().unwrap();
    let legit = repo_with_releases();
    let mut evil = repo_with_releases();
    evil.delegations[0]
        .targets
        .insert("v1".into(), trustfix::target(b"evil"));
    // First contact happened while the attacker served the repository.
    evil.publish(&server.repo(GUN));
    let pool = TrustPool::new(state.path().to_path_buf());
    let tofu = policy(&server.url(), "");
    assert_eq!(
        resolve(&pool, &tofu, "v1").await.unwrap().digest(),
        digest_of(b"evil")
    );

    // The operator pins the publisher's root certificate.
    let pinned = policy(&server.url(), &pin(pems.path(), GUN, &legit.root_keys[0]));
    let pool = TrustPool::new(state.path().to_path_buf());
    let err = resolve(&pool, &pinned, "v1").await.unwrap_err();
    assert!(
        !matches!(err, TrustError::Unreachable { .. }),
        "the attacker's root is refused under the pin: {err:?}"
    );
    // The legitimate repository is served again: accepted under the pin.
    legit.publish(&server.repo(GUN));
    assert_eq!(
        resolve(&pool, &pinned, "v1").await.unwrap().digest(),
        digest_of(b"manifest-v1")
    );
    // And from now on the pinned root is the trusted one: TOFU again changes nothing.
    evil.publish(&server.repo(GUN));
    let pool = TrustPool::new(state.path().to_path_buf());
    assert!(resolve(&pool, &tofu, "v1").await.is_err());
}

/// D8: a pin change the stored root satisfies keeps every version floor: a rolled-back
/// timestamp is still refused afterwards.
#[tokio::test]
async fn a_pin_change_keeps_rollback_protection() {
    let server = HttpTrust::start();
    let state = tempfile::tempdir().unwrap();
    let pems = tempfile::tempdir().unwrap();
    let mut repo = repo_with_releases();
    repo.timestamp_version = 5;
    repo.publish(&server.repo(GUN));
    let pool = TrustPool::new(state.path().to_path_buf());
    resolve(&pool, &policy(&server.url(), ""), "v1")
        .await
        .unwrap();

    repo.timestamp_version = 2;
    repo.publish(&server.repo(GUN));
    let pinned = policy(&server.url(), &pin(pems.path(), GUN, &repo.root_keys[0]));
    let pool = TrustPool::new(state.path().to_path_buf());
    let err = resolve(&pool, &pinned, "v1").await.unwrap_err();
    assert!(
        matches!(&err, TrustError::Rollback { role, trusted: 5, got: 2 } if role == "timestamp"),
        "{err:?}"
    );
}

/// D8: clients are rebuilt when the policy generation changes (reloaded credentials and CA
/// files take effect), and reused while it does not.
#[tokio::test]
async fn clients_are_rebuilt_after_a_reload() {
    let state = tempfile::tempdir().unwrap();
    let p = policy("http://127.0.0.1:9", "");
    let decision = p.decide("registry.example", "team/app");
    let req = signed_requirement(&decision).unwrap().notary().unwrap();
    let pool = TrustPool::new(state.path().to_path_buf());
    pool.sync(1);
    let (_, a) = pool.client(req).unwrap();
    pool.sync(1);
    assert!(Arc::ptr_eq(&a, &pool.client(req).unwrap().1));
    pool.sync(2);
    assert!(!Arc::ptr_eq(&a, &pool.client(req).unwrap().1));
}

/// D9: a trust server that throttles (429) or is overloaded (503) is "unreachable" in
/// Notary's sense: the held, still-valid metadata answers (marked as held) instead of every
/// signed pull failing.
#[tokio::test]
async fn throttling_trust_server_lets_held_data_answer() {
    let server = HttpTrust::start();
    let state = tempfile::tempdir().unwrap();
    repo_with_releases().publish(&server.repo(GUN));
    let client = http_client(&server, state.path());
    let fresh = client.resolve(GUN, "v1", &default_roles()).await.unwrap();
    assert!(!fresh.from_stored_metadata());
    for status in [429u16, 503] {
        server.status.store(status, Ordering::SeqCst);
        let held = client
            .resolve(GUN, "v1", &default_roles())
            .await
            .unwrap_or_else(|e| panic!("{status}: {e:?}"));
        assert_eq!(held.digest(), fresh.digest());
        assert!(held.from_stored_metadata(), "{status}");
    }
}

/// D9: a GUN with no trust data is not asked about again for a few seconds (per server and
/// GUN), so a client looping over made-up names cannot turn each request into trust-server
/// traffic; after the negative TTL it is asked again.
#[tokio::test]
async fn failed_resolutions_are_cached_briefly_per_gun() {
    let server = HttpTrust::start();
    let state = tempfile::tempdir().unwrap();
    let p = policy(&server.url(), "");
    let pool = TrustPool::new(state.path().to_path_buf());
    for _ in 0..20 {
        let err = resolve_in(&pool, &p, "team/none", "v1").await.unwrap_err();
        assert!(matches!(err, TrustError::NoTrustData { .. }), "{err:?}");
    }
    assert_eq!(server.requests(), 1, "{:?}", server.log.lock().unwrap());
    // Another GUN is its own entry.
    resolve_in(&pool, &p, "team/other", "v1").await.unwrap_err();
    assert_eq!(server.requests(), 2);

    // The entry lapses.
    let client = TrustClient::new(
        trustgate::trust::TrustSettings {
            negative_ttl: StdDuration::from_millis(200),
            ..settings(state.path())
        },
        Arc::new(
            HttpMetadataSource::from_settings(settings_for(&server.url(), None).unwrap()).unwrap(),
        ),
    )
    .unwrap();
    let before = server.requests();
    client
        .resolve("registry.example/x", "v1", &default_roles())
        .await
        .unwrap_err();
    client
        .resolve("registry.example/x", "v1", &default_roles())
        .await
        .unwrap_err();
    assert_eq!(server.requests(), before + 1);
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    client
        .resolve("registry.example/x", "v1", &default_roles())
        .await
        .unwrap_err();
    assert_eq!(server.requests(), before + 2);
}

/// D9: `limits.max_trust_updates` caps the trust updates in flight across the pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_trust_updates_are_capped() {
    for (cap, expect_one) in [(1usize, true), (8, false)] {
        let server = HttpTrust::start();
        server.delay_ms.store(150, Ordering::SeqCst);
        let state = tempfile::tempdir().unwrap();
        let p = Arc::new(policy(&server.url(), ""));
        let pool = Arc::new(TrustPool::new(state.path().to_path_buf()).with_max_updates(cap));
        let tasks: Vec<_> = (0..6)
            .map(|i| {
                let (pool, p) = (pool.clone(), p.clone());
                tokio::spawn(
                    async move { resolve_in(&pool, &p, &format!("team/n{i}"), "v1").await },
                )
            })
            .collect();
        for t in tasks {
            assert!(t.await.unwrap().is_err());
        }
        let max = server.max_in_flight.load(Ordering::SeqCst);
        assert_eq!(server.requests(), 6);
        if expect_one {
            assert_eq!(max, 1, "cap {cap}");
        } else {
            assert!(
                max > 1,
                "cap {cap}: the test must see concurrency when allowed"
            );
        }
    }
}

/// D9: the per-GUN update state of a client stays bounded however many names are tried.
#[tokio::test]
async fn per_gun_state_is_bounded() {
    let src = MemSource::new();
    let client = TrustClient::new(Default::default(), src.clone()).unwrap();
    for i in 0..MAX_SLOTS + 500 {
        let gun = format!("registry.example/r{i}");
        client
            .resolve(&gun, "v1", &default_roles())
            .await
            .unwrap_err();
    }
    assert!(client.slot_count() <= MAX_SLOTS, "{}", client.slot_count());
}

/// D8, upgrade: state kept where earlier versions put it (a directory named after the URL as
/// written and the pinning) is still read, so the new layout does not reset trust either.
#[tokio::test]
async fn state_in_the_earlier_layout_is_still_trusted() {
    use sha2::{Digest as _, Sha256};
    let server = HttpTrust::start();
    let state = tempfile::tempdir().unwrap();
    repo_with_releases().publish(&server.repo(GUN));
    let p = policy(&server.url(), "");
    resolve(&TrustPool::new(state.path().to_path_buf()), &p, "v1")
        .await
        .unwrap();
    // Move the state to the earlier layout's directory name.
    let trust = state.path().join("trust");
    let dirs: Vec<_> = std::fs::read_dir(&trust)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1);
    let decision = p.decide("registry.example", "team/app");
    let url = signed_requirement(&decision)
        .unwrap()
        .notary()
        .unwrap()
        .trust_server()
        .url()
        .to_string();
    let mut h = Sha256::new();
    h.update(url.as_bytes());
    h.update([0]);
    h.update(format!("{:?}", trustgate::trust::TrustPinning::default()).as_bytes());
    std::fs::rename(&dirs[0], trust.join(hex::encode(&h.finalize()[..12]))).unwrap();

    let mut evil = repo_with_releases();
    evil.delegations[0]
        .targets
        .insert("v1".into(), trustfix::target(b"evil"));
    evil.publish(&server.repo(GUN));
    let err = resolve(&TrustPool::new(state.path().to_path_buf()), &p, "v1")
        .await
        .unwrap_err();
    assert!(
        matches!(err, TrustError::RootNotSignedByPrevious { .. }),
        "{err:?}"
    );
}

/// D14: two rules that map to the same GUN on the same trust server but pin differently must
/// not share verified tag results: a pull through the TOFU rule must not let the pinned rule
/// answer from the cache with a root its pin refuses.
#[tokio::test]
async fn tag_results_are_not_shared_across_pinnings() {
    use trustgate::cache::TagCacheSettings;
    use trustgate::enforce::Enforcer;
    use trustgate::policy::{PolicyHandle, TagVerdict};
    let server = HttpTrust::start();
    let state = tempfile::tempdir().unwrap();
    let pems = tempfile::tempdir().unwrap();
    repo_with_releases().publish(&server.repo(GUN));
    let stranger = Signer::root_cert(
        GUN,
        time::OffsetDateTime::now_utc() - time::Duration::days(1),
        time::OffsetDateTime::now_utc() + time::Duration::days(300),
    );
    let text = format!(
        "[trust_servers.n]\nurl = \"{}\"\n\n[[rules]]\nscope = \"mirror.example/**\"\nrequire = \"signed\"\ngun = \"registry.example/{{repository}}\"\n\n[[rules]]\nscope = \"registry.example/**\"\nrequire = \"signed\"\n{}\n[default]\nrequire = \"reject\"\n",
        server.url(),
        pin(pems.path(), GUN, &stranger)
    );
    let policy = Policy::from_str(&text, "p.toml").unwrap_or_else(|e| panic!("{e}"));
    let enforcer = Enforcer::new(
        Arc::new(PolicyHandle::fixed(policy)),
        state.path().to_path_buf(),
        TagCacheSettings::default(),
        Arc::new(trustgate::metrics::Metrics::new()),
    );
    let (_, tofu) = enforcer
        .tag("mirror.example", "team/app", "v1", &NoRegistry)
        .await;
    assert!(matches!(tofu, TagVerdict::Signed(..)), "{tofu:?}");
    let (_, pinned) = enforcer
        .tag("registry.example", "team/app", "v1", &NoRegistry)
        .await;
    assert!(
        matches!(pinned, TagVerdict::Refuse(_)),
        "the pinned rule must not be answered from the TOFU rule's cache: {pinned:?}"
    );
    // The expiry gauges cover what was verified: overall and per trust server, no GUN label.
    let e = enforcer.trust_expiry();
    let overall = e.earliest.expect("an expiry for the verified GUN");
    assert!(overall > 86_400, "{e:?}");
    assert_eq!(e.per_server.len(), 1, "{e:?}");
    assert_eq!(
        e.per_server[0].0, "n",
        "labelled by the policy's server name: {e:?}"
    );
    let m = trustgate::metrics::Metrics::new();
    m.set_trust_expiry(e.earliest.map(|s| s as f64), &e.per_server);
    let text = m.render();
    assert!(
        text.contains("trustgate_trust_server_expiry_seconds{trust_server=\"n\"}"),
        "{text}"
    );
    assert!(
        !text.contains("team/app"),
        "no GUN in the exposition: {text}"
    );
}

/// D9: `Retry-After` on a 429 is honoured (up to a minute): until then the server is not asked
/// at all, and held data answers.
#[tokio::test]
async fn retry_after_keeps_trustgate_off_a_throttling_server() {
    let server = HttpTrust::start();
    let state = tempfile::tempdir().unwrap();
    repo_with_releases().publish(&server.repo(GUN));
    let client = http_client(&server, state.path());
    client.resolve(GUN, "v1", &default_roles()).await.unwrap();
    server.status.store(429, Ordering::SeqCst);
    assert!(client
        .resolve(GUN, "v1", &default_roles())
        .await
        .unwrap()
        .from_stored_metadata());
    let asked = server.requests();
    for _ in 0..10 {
        let held = client.resolve(GUN, "v1", &default_roles()).await.unwrap();
        assert!(held.from_stored_metadata());
    }
    assert_eq!(server.requests(), asked, "asked again within Retry-After");
}

/// D8: a policy reload that rotates the trust server's password takes effect at the reload
/// (the clients built for the previous policy are dropped), not only after a restart.
#[tokio::test]
async fn a_reloaded_trust_server_password_takes_effect() {
    use trustgate::cache::TagCacheSettings;
    use trustgate::enforce::Enforcer;
    use trustgate::policy::{PolicyHandle, ReloadOutcome, TagVerdict};
    let server = HttpTrust::start();
    *server.basic.lock().unwrap() = Some("tg:new-secret".into());
    repo_with_releases().publish(&server.repo(GUN));
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("password");
    std::fs::write(&secret, "old-secret\n").unwrap();
    let policy_file = dir.path().join("policy.toml");
    std::fs::write(
        &policy_file,
        format!(
            "[trust_servers.n]\nurl = \"{}\"\nusername = \"tg\"\npassword_file = \"{}\"\n\n[[rules]]\nscope = \"registry.example/**\"\nrequire = \"signed\"\n\n[default]\nrequire = \"reject\"\n",
            server.url(),
            secret.display()
        ),
    )
    .unwrap();
    let handle = Arc::new(PolicyHandle::load(&policy_file).unwrap_or_else(|e| panic!("{e}")));
    let enforcer = Enforcer::new(
        handle.clone(),
        dir.path().join("state"),
        TagCacheSettings::default(),
        Arc::new(trustgate::metrics::Metrics::new()),
    );
    let (_, v) = enforcer
        .tag("registry.example", "team/app", "v1", &NoRegistry)
        .await;
    assert!(
        matches!(v, TagVerdict::Refuse(_)),
        "wrong password accepted: {v:?}"
    );

    std::fs::write(&secret, "new-secret\n").unwrap();
    assert!(matches!(handle.reload(), ReloadOutcome::Replaced { .. }));
    let (_, v) = enforcer
        .tag("registry.example", "team/app", "v1", &NoRegistry)
        .await;
    assert!(
        matches!(v, TagVerdict::Signed(..)),
        "the reloaded password is not used: {v:?}"
    );
}

/// `limits.max_trust_updates` must be positive; the error names the field.
#[test]
fn max_trust_updates_is_validated() {
    let base = "[[upstream]]\nname = \"a.example\"\nurl = \"https://a.example\"\n";
    let err = trustgate::config::Config::from_toml_str(
        &format!("[limits]\nmax_trust_updates = 0\n{base}"),
        "c.toml",
    )
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(err.contains("limits.max_trust_updates"), "{err}");
    let cfg = trustgate::config::Config::from_toml_str(
        &format!("[limits]\nmax_trust_updates = 3\n{base}"),
        "c.toml",
    )
    .unwrap();
    assert_eq!(cfg.limits.max_trust_updates, 3);
    let cfg = trustgate::config::Config::from_toml_str(base, "c.toml").unwrap();
    assert_eq!(
        cfg.limits.max_trust_updates,
        trustgate::enforce::DEFAULT_MAX_TRUST_UPDATES
    );
}

/// Two rules pinning one GUN differently, both satisfied by its root, share the state file
/// without rewriting it on every alternation (the pin entries checked are remembered).
#[tokio::test]
async fn alternating_pinnings_do_not_rewrite_the_state() {
    let server = HttpTrust::start();
    let state = tempfile::tempdir().unwrap();
    let pems = tempfile::tempdir().unwrap();
    let repo = repo_with_releases();
    repo.publish(&server.repo(GUN));
    let tofu = policy(&server.url(), "");
    let pinned = policy(&server.url(), &pin(pems.path(), GUN, &repo.root_keys[0]));
    let pool = TrustPool::new(state.path().to_path_buf());
    resolve(&pool, &tofu, "v1").await.unwrap();
    resolve(&pool, &pinned, "v1").await.unwrap();
    let dir = std::fs::read_dir(state.path().join("trust"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let file = trustfix::harness::state_file(&dir);
    let before = std::fs::read(&file).unwrap();
    for p in [&tofu, &pinned, &tofu] {
        resolve(&pool, p, "v1").await.unwrap();
        assert!(std::fs::read(&file).unwrap() == before, "state rewritten");
    }
}

/// The Notary-only rules here never read the registry (cosign verifiers would).
struct NoRegistry;

impl trustgate::cosign::fetch::Registry for NoRegistry {
    async fn resolve_tag(
        &self,
        _tag: &str,
    ) -> Result<trustgate::registry::Digest, trustgate::cosign::fetch::FetchError> {
        Err(trustgate::cosign::fetch::FetchError::NotFound)
    }
    async fn manifest(
        &self,
        _reference: &str,
        _limit: u64,
    ) -> Result<bytes::Bytes, trustgate::cosign::fetch::FetchError> {
        Err(trustgate::cosign::fetch::FetchError::NotFound)
    }
    async fn blob(
        &self,
        _digest: &trustgate::registry::Digest,
        _limit: u64,
    ) -> Result<bytes::Bytes, trustgate::cosign::fetch::FetchError> {
        Err(trustgate::cosign::fetch::FetchError::NotFound)
    }
    async fn referrers(
        &self,
        _digest: &trustgate::registry::Digest,
        _page: Option<&str>,
        _limit: u64,
    ) -> Result<trustgate::cosign::referrers::ReferrersPage, trustgate::cosign::fetch::FetchError>
    {
        Err(trustgate::cosign::fetch::FetchError::NotFound)
    }
}
