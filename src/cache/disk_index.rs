//! The content cache's in-memory index: which digests are on disk, their sizes, and the order
//! in which they were last used, so eviction is least-recently-used and costs no directory
//! walk. Rebuilt from the directory at startup, ordered by file mtime: when each entry was
//! published or, to within an hour, last read (see `touch_if_stale` in `disk.rs`).

use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, Copy)]
struct Entry {
    size: u64,
    stamp: u64,
    /// The data file's identity and change time when its whole content last hashed to the
    /// digest in this process (see `FileStamp`); `None` until then.
    verified: Option<FileStamp>,
}

/// What identifies one version of a data file: device, inode, length and change time
/// (`st_ctime`, which every write, truncate, chmod or rename sets to the current time and
/// no unprivileged call can set back). Equal stamps mean the file was not written since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    pub dev: u64,
    pub ino: u64,
    pub len: u64,
    pub ctime: (i64, i64),
}

impl FileStamp {
    pub fn of(md: &std::fs::Metadata) -> FileStamp {
        use std::os::unix::fs::MetadataExt as _;
        FileStamp {
            dev: md.dev(),
            ino: md.ino(),
            len: md.len(),
            ctime: (md.ctime(), md.ctime_nsec()),
        }
    }
}

/// Sizes and use order of the cached entries, keyed by the digest's hex.
#[derive(Debug, Default)]
pub(super) struct Index {
    entries: HashMap<String, Entry>,
    /// stamp → hex; the first entry is the least recently used.
    order: BTreeMap<u64, String>,
    total: u64,
    /// Bytes promised to fills in progress (announced lengths): `total + reserved` never
    /// exceeds the budget, so temp files are inside it (PROXY-REVIEW D1, D16).
    reserved: u64,
    clock: u64,
}

impl Index {
    fn next_stamp(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Marks `hex` as just used; its recorded size, if it is held.
    pub fn touch(&mut self, hex: &str) -> Option<u64> {
        let stamp = self.next_stamp();
        let e = self.entries.get_mut(hex)?;
        self.order.remove(&e.stamp);
        e.stamp = stamp;
        self.order.insert(stamp, hex.to_string());
        Some(e.size)
    }

    pub fn contains(&self, hex: &str) -> bool {
        self.entries.contains_key(hex)
    }

    /// Records `hex` (or refreshes it) as the most recently used entry.
    pub fn insert(&mut self, hex: &str, size: u64) {
        self.remove(hex);
        let stamp = self.next_stamp();
        self.entries.insert(
            hex.to_string(),
            Entry {
                size,
                stamp,
                verified: None,
            },
        );
        self.order.insert(stamp, hex.to_string());
        self.total += size;
    }

    pub fn remove(&mut self, hex: &str) -> Option<u64> {
        let e = self.entries.remove(hex)?;
        self.order.remove(&e.stamp);
        self.total -= e.size;
        Some(e.size)
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn reserved(&self) -> u64 {
        self.reserved
    }

    /// Promises `len` bytes to a fill: evicts least recently used entries until
    /// `total + reserved + len <= max` and returns them, or `None` (nothing evicted) when
    /// `len` cannot fit even in an empty cache beside the other reservations.
    pub fn reserve(&mut self, len: u64, max: u64) -> Option<Vec<String>> {
        let room = max.checked_sub(self.reserved)?.checked_sub(len)?;
        let victims = self.evict_to(room, None);
        self.reserved += len;
        Some(victims)
    }

    /// Gives back a reservation (the fill failed, or its entry was just inserted).
    pub fn release(&mut self, len: u64) {
        self.reserved = self.reserved.saturating_sub(len);
    }

    /// The stamp recorded when `hex` was last verified whole.
    pub fn verified(&self, hex: &str) -> Option<FileStamp> {
        self.entries.get(hex).and_then(|e| e.verified)
    }

    /// Records (or clears) that `hex`'s file, as `stamp` describes it, hashed to its digest.
    pub fn set_verified(&mut self, hex: &str, stamp: Option<FileStamp>) {
        if let Some(e) = self.entries.get_mut(hex) {
            e.verified = stamp;
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Drops least recently used entries until at most `max` bytes are held, sparing `keep`
    /// (the entry just published: evicting what was just written would make the cache
    /// useless for it); returns the dropped hexes so the caller can delete their files
    /// outside the lock.
    pub fn evict_to(&mut self, max: u64, keep: Option<&str>) -> Vec<String> {
        let mut victims = Vec::new();
        let mut spared = None;
        while self.total > max {
            let Some((&stamp, hex)) = self.order.iter().next() else {
                break;
            };
            let hex = hex.clone();
            if keep == Some(hex.as_str()) {
                // Set aside so the loop can look past it; put back below.
                self.order.remove(&stamp);
                spared = Some((stamp, hex));
                continue;
            }
            self.remove(&hex);
            victims.push(hex);
        }
        if let Some((stamp, hex)) = spared {
            self.order.insert(stamp, hex);
        }
        victims
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_first_and_spares_the_newest() {
        let mut ix = Index::default();
        ix.insert("a", 10);
        ix.insert("b", 10);
        ix.insert("c", 10);
        assert_eq!(ix.touch("a"), Some(10));
        ix.insert("d", 10);
        assert_eq!(ix.evict_to(25, Some("d")), vec!["b", "c"]);
        assert_eq!(ix.total(), 20);
        assert!(ix.contains("a") && ix.contains("d"));
        // Even alone over the budget, the entry just written stays.
        ix.insert("e", 100);
        assert_eq!(ix.evict_to(25, Some("e")), vec!["a", "d"]);
        assert_eq!(ix.len(), 1);
        assert_eq!(ix.evict_to(25, None), vec!["e"]);
        assert_eq!(ix.total(), 0);
    }

    #[test]
    fn reservations_count_against_the_budget() {
        let mut ix = Index::default();
        ix.insert("a", 40);
        ix.insert("b", 40);
        // 40 more cannot fit beside 80 held in 100: the oldest goes.
        assert_eq!(ix.reserve(40, 100), Some(vec!["a".to_string()]));
        assert_eq!((ix.total(), ix.reserved()), (40, 40));
        // Two reservations of 40 leave room for 20 at most, whatever is evicted.
        assert_eq!(ix.reserve(40, 100), Some(vec!["b".to_string()]));
        assert_eq!(ix.reserve(21, 100), None);
        assert_eq!(ix.reserve(101, 100), None);
        ix.release(40);
        ix.insert("c", 40);
        ix.release(40);
        assert_eq!((ix.total(), ix.reserved()), (40, 0));
    }

    #[test]
    fn reinserting_does_not_double_count() {
        let mut ix = Index::default();
        ix.insert("a", 10);
        ix.insert("a", 10);
        assert_eq!(ix.total(), 10);
        assert_eq!(ix.remove("a"), Some(10));
        assert_eq!(ix.total(), 0);
        assert_eq!(ix.touch("a"), None);
    }
}
