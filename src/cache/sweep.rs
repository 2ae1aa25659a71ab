//! Housekeeping of the two-level directories trustgate keeps besides content
//! (`<dir>/<shard>/<entry>`: content links by scope, reached records by hash prefix).

use std::fs::DirEntry;
use std::path::Path;

/// Deletes every entry of every shard of `dir` that `stale` says is, then each shard
/// directory left empty. Blocking file-system work. Returns how many entries were deleted; an
/// entry or shard that cannot be read or removed is left for the next sweep.
pub fn sweep_shards(dir: &Path, mut stale: impl FnMut(&DirEntry) -> bool) -> usize {
    let Ok(shards) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut deleted = 0;
    for shard in shards.flatten() {
        let path = shard.path();
        let Ok(entries) = std::fs::read_dir(&path) else {
            continue;
        };
        for e in entries.flatten() {
            if stale(&e) && std::fs::remove_file(e.path()).is_ok() {
                deleted += 1;
            }
        }
        // Fails (harmlessly) while entries remain.
        let _ = std::fs::remove_dir(&path);
    }
    deleted
}
