//! Periodic housekeeping of what trustgate keeps on disk besides content (PROXY-REVIEW D20):
//! reached-digest records past their lifetime, and links to content the cache no longer
//! holds. Without it both grow with every distinct digest ever pulled, in inodes the
//! content budget does not count.
//!
//! Trust state is not swept here, deliberately: a GUN's state file holds its pinned root and
//! its rollback floors, and deleting it would make the next pull a first contact (trust on
//! first use again) — Notary never deletes it either. What is redundant in it (copies in the
//! layout of earlier versions) is deleted by the trust store itself as each GUN is saved.

use std::sync::Arc;
use std::time::Duration;

use super::AppState;

/// How often [`run`] sweeps. Reached records are rewritten at most hourly too
/// (`ReachedSet::rewrite_after`), so a sweep never races a record's refresh by more than that.
pub const EVERY: Duration = Duration::from_secs(3600);

/// What one sweep deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub reached: usize,
    pub links: usize,
}

/// One sweep, on the blocking pool (it walks directories).
pub async fn sweep(state: &Arc<AppState>) -> Swept {
    let state = state.clone();
    let swept = tokio::task::spawn_blocking(move || Swept {
        reached: state.enforcer.sweep_reached(),
        links: state.content.as_ref().map_or(0, |c| c.prune_links()),
    })
    .await;
    match swept {
        Ok(s) => {
            tracing::debug!(reached = s.reached, links = s.links, "maintenance sweep");
            s
        }
        Err(e) => {
            tracing::warn!(error = %e, "maintenance sweep failed");
            Swept::default()
        }
    }
}

/// Sweeps now and then every `every` until `shutdown` resolves.
pub async fn run(
    state: Arc<AppState>,
    every: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = tick.tick() => {
                sweep(&state).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn touch(path: &std::path::Path, age: Duration) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let f = std::fs::File::create(path).unwrap();
        f.set_modified(SystemTime::now() - age).unwrap();
    }

    /// A running proxy's sweep deletes reached records older than their 24 h lifetime and
    /// links to content it does not hold, and keeps the rest (PROXY-REVIEW D20).
    #[tokio::test]
    async fn the_sweep_bounds_reached_records_and_links() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = crate::config::Config::from_toml_str(
            "[[upstream]]\nname = \"r.io\"\nurl = \"http://127.0.0.1:1\"\n",
            "t.toml",
        )
        .unwrap();
        cfg.state_dir = dir.path().to_path_buf();
        assert!(cfg.cache.enabled, "the content cache is on by default");
        let state = AppState::new(cfg).unwrap();

        let reached = dir.path().join("reached");
        touch(
            &reached.join("ab").join("ab-old"),
            Duration::from_secs(25 * 3600),
        );
        touch(
            &reached.join("cd").join("cd-new"),
            Duration::from_secs(3600),
        );
        let orphan = dir.path().join("content/links/scope").join("0".repeat(64));
        touch(&orphan, Duration::ZERO);

        assert_eq!(
            sweep(&state).await,
            Swept {
                reached: 1,
                links: 1
            }
        );
        assert!(!reached.join("ab").exists(), "expired record and its shard");
        assert!(
            reached.join("cd").join("cd-new").exists(),
            "live record kept"
        );
        assert!(!orphan.exists());
        assert_eq!(sweep(&state).await, Swept::default(), "nothing left to do");
    }
}
