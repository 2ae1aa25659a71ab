//! In-memory caches on the request path.
//!
//! - [`TagCache`]: verified tag → signed-target results, so a hot tag costs one trust
//!   resolution per TTL instead of one per pull. Concurrent lookups of one key share a single
//!   resolution (single-flight), and no entry outlives the trust metadata it was verified
//!   from: its lifetime is `min(configured ttl, time until the result's own expiry)`.
//! - [`ManifestCache`]: verified manifest bytes by digest, bounded by total size. Insertion
//!   re-checks the digest, so the cache can never serve bytes under a digest they do not have.
//!
//! - [`DiskStore`]: verified manifests and blobs on disk by digest (content addressed, so
//!   never stale), written through while blobs stream; what an air-gapped mirror serves from.
//!
//! The in-memory caches are generic over nothing the trust or registry modules define, so they can be tested
//! alone; the proxy supplies the concrete value type (the trust module's verified target).

mod disk;
mod disk_fill;
mod disk_index;
mod file_read;
mod manifests;
mod sweep;
mod tags;

pub use disk::{BlobWriter, CachedBlob, CachedManifestFile, DiskError, DiskStore, Finished};
pub use disk_fill::FillFile;
pub use disk_index::FileStamp;
pub use file_read::Reader;
pub use manifests::{CachedManifest, ManifestCache, ManifestCacheError};
pub use sweep::sweep_shards;
pub use tags::{entry_ttl, TagCache, TagCacheSettings, TagKey};
