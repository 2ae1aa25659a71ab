//! Size and work bounds for trust metadata, in one place (DESIGN practice 5). Sizes are handed
//! to the [`MetadataSource`](super::source::MetadataSource), which aborts a download past them,
//! and checked again on the bytes it returns.

use std::time::Duration;

/// Default for [`Limits::update_deadline`].
pub const DEFAULT_UPDATE_DEADLINE: Duration = Duration::from_secs(30);

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
    /// Wall-clock time one whole update may take, across every file it fetches: 30 s
    /// (policy: `trust_timeout` per `[trust_servers.<name>]`). Per-request timeouts alone
    /// (connect, headers, body) multiply with the number of files, so a server trickling each
    /// file just under them could hold a pull for many minutes (TUF "slow retrieval"). Past the
    /// deadline every fetch fails as "unreachable": stored, still-valid data may answer
    /// (Notary's rule for network errors), otherwise the pull fails closed (503).
    pub update_deadline: Duration,
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
            update_deadline: DEFAULT_UPDATE_DEADLINE,
        }
    }
}
