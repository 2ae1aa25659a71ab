//! Reload: a valid new file replaces the policy atomically; an invalid one is refused and the
//! old policy stays in force — called directly, through the file watcher, and on SIGHUP.
//! (Own test binary: the SIGHUP test signals this process.)
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use trustgate::policy::{Policy, PolicyHandle, ReloadOutcome, Requirement};

const ALLOW: &str = "[default]\nrequire = \"allow\"\n";
const REJECT: &str = "[default]\nrequire = \"reject\"\nmessage = \"v2\"\n";
// Valid but for one unknown key: a loader that half-loaded would install an `allow` policy.
const INVALID: &str = "[default]\nrequire = \"allow\"\nmode = \"audit\"\ncolour = \"blue\"\n";

fn is_allow(p: &Policy) -> bool {
    matches!(p.decide("r.io", "x").requirement(), Requirement::Allow)
}

fn is_reject(p: &Policy) -> bool {
    matches!(
        p.decide("r.io", "x").requirement(),
        Requirement::Reject { .. }
    )
}

fn write(path: &Path, text: &str) {
    // Write then rename, as editors and config-map updates do, so a reader never sees half.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The SIGHUP test signals the whole process, which would also reload the other watcher's
/// handle; the two watcher tests therefore take turns.
static SIGNAL_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Polls `cond` until it holds or a generous bound passes (a hang guard, not a timing claim).
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn direct_reload_replaces_valid_and_keeps_old_on_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    write(&path, ALLOW);
    let handle = PolicyHandle::load(&path).unwrap();
    assert_eq!(handle.generation(), 1);
    let before = handle.current();
    assert!(is_allow(&before));

    write(&path, REJECT);
    match handle.reload() {
        ReloadOutcome::Replaced { generation } => assert_eq!(generation, 2),
        other => panic!("expected Replaced, got {other:?}"),
    }
    assert!(is_reject(&handle.current()));
    assert!(
        is_allow(&before),
        "a reader holding the old Arc keeps a consistent policy"
    );

    write(&path, INVALID);
    match handle.reload() {
        ReloadOutcome::Rejected(errors) => {
            let text = errors.to_string();
            assert!(text.contains(":4: default.colour: unknown key"), "{text}");
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    assert!(
        is_reject(&handle.current()),
        "the old policy stays in force"
    );
    assert_eq!(handle.generation(), 2);

    std::fs::remove_file(&path).unwrap();
    assert!(matches!(handle.reload(), ReloadOutcome::Rejected(_)));
    assert!(
        is_reject(&handle.current()),
        "a vanished file keeps the old policy too"
    );
}

#[test]
fn initial_load_of_an_invalid_file_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    write(&path, INVALID);
    assert!(PolicyHandle::load(&path).is_err());
}

#[test]
fn fixed_handle_has_nothing_to_reload() {
    let handle = PolicyHandle::fixed(Policy::embedded_default());
    assert!(matches!(handle.reload(), ReloadOutcome::NoFile));
    assert!(handle.path().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_reloads_on_change_and_keeps_old_on_invalid() {
    let _turn = SIGNAL_LOCK.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    write(&path, ALLOW);
    let handle = Arc::new(PolicyHandle::load(&path).unwrap());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = handle
        .spawn_watcher(Duration::from_millis(50), async {
            let _ = stop_rx.await;
        })
        .unwrap();

    write(&path, REJECT);
    eventually("the watcher installs the changed file", || {
        handle.generation() == 2
    })
    .await;
    assert!(is_reject(&handle.current()));

    write(&path, INVALID);
    // The watcher must see the invalid file and refuse it; afterwards a valid edit still
    // gets through, proving the watcher kept running.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(handle.generation(), 2);
    assert!(is_reject(&handle.current()), "the invalid file was refused");

    write(&path, ALLOW);
    eventually("the watcher installs the next valid file", || {
        handle.generation() == 3
    })
    .await;
    assert!(is_allow(&handle.current()));

    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .expect("watcher stops on shutdown")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads() {
    let _turn = SIGNAL_LOCK.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    write(&path, ALLOW);
    let handle = Arc::new(PolicyHandle::load(&path).unwrap());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    // A poll interval far beyond the test, so only the signal can cause the reload.
    let task = handle
        .spawn_watcher(Duration::from_secs(3600), async {
            let _ = stop_rx.await;
        })
        .unwrap();
    let hup = || {
        let status = std::process::Command::new("kill")
            .args(["-HUP", &std::process::id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };

    write(&path, INVALID);
    hup();
    // Then a valid file and another signal: only this one may be installed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(handle.generation(), 1, "the invalid file was refused");
    assert!(is_allow(&handle.current()));

    write(&path, REJECT);
    hup();
    eventually("SIGHUP installs the valid file", || {
        handle.generation() == 2
    })
    .await;
    assert!(is_reject(&handle.current()));

    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .expect("watcher stops on shutdown")
        .unwrap();
}

/// PROXY-REVIEW D21: `trustgate_policy_reloads_total` was exported but never counted, so a
/// refused reload was invisible to Prometheus.
#[test]
fn reload_outcomes_are_counted_in_the_proxys_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    write(&path, ALLOW);
    let handle = Arc::new(PolicyHandle::load(&path).unwrap());
    let mut cfg = trustgate::config::Config::from_toml_str(
        "[[upstream]]\nname = \"r.io\"\nurl = \"http://127.0.0.1:1\"\n",
        "t.toml",
    )
    .unwrap();
    cfg.state_dir = dir.path().join("state");
    let state = trustgate::proxy::AppState::with_policy(cfg, handle.clone()).unwrap();
    write(&path, REJECT);
    assert!(matches!(handle.reload(), ReloadOutcome::Replaced { .. }));
    write(&path, INVALID);
    assert!(matches!(handle.reload(), ReloadOutcome::Rejected(_)));
    assert!(matches!(handle.reload(), ReloadOutcome::Rejected(_)));
    assert_eq!(state.metrics.policy_reload_count(true), 1);
    assert_eq!(state.metrics.policy_reload_count(false), 2);
    let text = state.metrics.render();
    assert!(
        text.contains("trustgate_policy_reloads_total{result=\"rejected\"} 2\n"),
        "{text}"
    );
}
