//! Size and work bounds for trust metadata, in one place (DESIGN practice 5). Sizes are handed
//! to the [`MetadataSource`](super::source::MetadataSource), which aborts a download past them,
//! and checked again on the bytes it returns.

/// Per-role bounds. Defaults are documented per field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// `root.json` and `<n>.root.json`. Nothing records a root's length in advance. Notary
    /// allows 100 MiB; real roots are a few KiB (one to a few certificates), so 2 MiB leaves
    /// ample room for many keys without letting a hostile server feed us a huge file.
    pub root: u64,
    /// `timestamp.json`: Notary's bound, 1 MiB (`client/tufclient.go`). Real ones are < 1 KiB.
    pub timestamp: u64,
    /// Snapshot, targets and delegations are bounded by the `length` their parent records; this
    /// caps that recorded length too (a signed but absurd length is still refused): 64 MiB.
    pub max_recorded: u64,
    /// How many root versions one update may walk through (`{v}.root.json`): 1024.
    pub max_root_rotations: u64,
    /// How many delegated roles one update loads: 1024.
    pub max_delegations: usize,
    /// Total bytes one update may download across all files: 256 MiB. Per-file bounds alone
    /// would let a hostile server list a thousand maximal delegations.
    pub max_update_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            root: 2 << 20,
            timestamp: 1 << 20,
            max_recorded: 64 << 20,
            max_root_rotations: 1024,
            max_delegations: 1024,
            max_update_bytes: 256 << 20,
        }
    }
}
