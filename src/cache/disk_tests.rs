use super::*;

fn dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("trustgate-disk-")
        .tempdir()
        .unwrap()
}

fn content(seed: u8, len: usize) -> (Vec<u8>, Digest) {
    let bytes: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect();
    let d = Digest::sha256_of(&bytes);
    (bytes, d)
}

fn tmp_files(store: &DiskStore) -> usize {
    std::fs::read_dir(store.root().join("tmp")).unwrap().count()
}

async fn read_all(mut b: CachedBlob) -> Vec<u8> {
    let mut v = Vec::new();
    b.file.read_to_end(&mut v).await.unwrap();
    v
}

async fn write_blob(store: &DiskStore, bytes: &[u8], d: &Digest) -> Finished {
    let mut w = store.blob_writer(d, None).await.unwrap();
    for c in bytes.chunks(7) {
        w.feed(c).await;
    }
    w.finish().await
}

#[tokio::test]
async fn a_blob_appears_only_once_complete_and_verified() {
    let t = dir();
    let store = DiskStore::open(t.path(), 1 << 20).unwrap();
    let (bytes, d) = content(1, 1000);
    let mut w = store.blob_writer(&d, Some(1000)).await.unwrap();
    w.feed(&bytes[..500]).await;
    // Mid-stream: nothing under the final name, the partial data only in tmp/.
    assert!(!store.data_path(&d).exists());
    assert!(store.open_blob(&d).await.is_none());
    assert_eq!(tmp_files(&store), 1);
    w.feed(&bytes[500..]).await;
    let f = w.finish().await;
    assert_eq!(
        f,
        Finished {
            actual: d,
            published: true
        }
    );
    assert_eq!(tmp_files(&store), 0);
    let b = store.open_blob(&d).await.unwrap();
    assert_eq!(b.len, 1000);
    assert_eq!(read_all(b).await, bytes);
    assert_eq!(store.held_bytes(), 1000);
    // Already held: no second writer.
    assert!(store.blob_writer(&d, None).await.is_none());
}

#[tokio::test]
async fn a_mismatch_or_an_abort_leaves_nothing() {
    let t = dir();
    let store = DiskStore::open(t.path(), 1 << 20).unwrap();
    let (bytes, d) = content(2, 1000);
    let (other, _) = content(3, 1000);
    let f = write_blob(&store, &other, &d).await;
    assert!(!f.published);
    assert_ne!(f.actual, d);
    assert!(!store.data_path(&d).exists());
    assert!(store.open_blob(&d).await.is_none());
    assert_eq!(tmp_files(&store), 0);

    // The stream stops half way (client gone, upstream broke): the writer is dropped.
    let mut w = store.blob_writer(&d, None).await.unwrap();
    w.feed(&bytes[..10]).await;
    assert_eq!(tmp_files(&store), 1);
    drop(w);
    assert_eq!(tmp_files(&store), 0);
    assert!(!store.data_path(&d).exists());
    assert_eq!(store.held_bytes(), 0);
}

#[tokio::test]
async fn concurrent_writers_of_one_digest_publish_one_entry() {
    let t = dir();
    let store = DiskStore::open(t.path(), 1 << 20).unwrap();
    let (bytes, d) = content(4, 64 * 1024);
    let mut writers = Vec::new();
    for _ in 0..4 {
        writers.push(store.blob_writer(&d, None).await.unwrap());
    }
    let tasks: Vec<_> = writers
        .into_iter()
        .map(|mut w| {
            let bytes = bytes.clone();
            tokio::spawn(async move {
                for c in bytes.chunks(4096) {
                    w.feed(c).await;
                }
                w.finish().await
            })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap().published);
    }
    assert_eq!(store.held_bytes(), bytes.len() as u64);
    assert_eq!(tmp_files(&store), 0);
    assert_eq!(read_all(store.open_blob(&d).await.unwrap()).await, bytes);
    let shard = store.data_path(&d).parent().unwrap().to_path_buf();
    assert_eq!(
        std::fs::read_dir(shard).unwrap().count(),
        2,
        "data + sidecar"
    );
}

#[tokio::test]
async fn least_recently_used_entries_are_evicted_and_open_reads_survive() {
    let t = dir();
    let store = DiskStore::open(t.path(), 250).unwrap();
    let (a, da) = content(5, 100);
    let (b, db) = content(6, 100);
    let (c, dc) = content(7, 100);
    write_blob(&store, &a, &da).await;
    write_blob(&store, &b, &db).await;
    // `a` is used again (and kept open), so `b` is now the least recently used.
    let open_a = store.open_blob(&da).await.unwrap();
    write_blob(&store, &c, &dc).await;
    assert!(store.held_bytes() <= 250);
    assert!(!store.data_path(&db).exists(), "LRU entry evicted");
    assert!(store.contains(&da) && store.contains(&dc));

    // Eviction of a file being read: the open descriptor still reads it whole.
    let (d, dd) = content(8, 200);
    write_blob(&store, &d, &dd).await;
    assert!(!store.data_path(&da).exists());
    assert_eq!(read_all(open_a).await, a);
    assert!(store.held_bytes() <= 250);
}

#[tokio::test]
async fn a_truncated_blob_is_dropped_not_served() {
    let t = dir();
    let store = DiskStore::open(t.path(), 1 << 20).unwrap();
    let (bytes, d) = content(9, 1000);
    write_blob(&store, &bytes, &d).await;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(store.data_path(&d))
        .unwrap();
    f.set_len(600).unwrap();
    assert!(store.open_blob(&d).await.is_none());
    assert!(!store.data_path(&d).exists());
    assert_eq!(store.held_bytes(), 0);
    // Refetched later, it is cached again.
    assert!(write_blob(&store, &bytes, &d).await.published);
}

#[tokio::test]
async fn a_reopened_store_keeps_intact_entries_and_drops_broken_ones() {
    let t = dir();
    let (a, da) = content(10, 300);
    let (b, db) = content(11, 300);
    {
        let store = DiskStore::open(t.path(), 1 << 20).unwrap();
        write_blob(&store, &a, &da).await;
        write_blob(&store, &b, &db).await;
        std::fs::write(store.data_path(&db), &b[..10]).unwrap();
        // A crash mid-write leaves a temp file behind.
        std::fs::write(store.root().join("tmp").join("x.tmp"), b"partial").unwrap();
    }
    let store = DiskStore::open(t.path(), 1 << 20).unwrap();
    assert_eq!(store.held_bytes(), 300);
    assert_eq!(read_all(store.open_blob(&da).await.unwrap()).await, a);
    assert!(!store.contains(&db));
    assert!(!store.data_path(&db).exists());
    assert_eq!(tmp_files(&store), 0);
    // A smaller budget on restart evicts down to it.
    drop(store);
    let store = DiskStore::open(t.path(), 100).unwrap();
    assert_eq!(store.held_bytes(), 0);
}

#[tokio::test]
async fn manifests_are_rehashed_on_read() {
    let t = dir();
    let store = DiskStore::open(t.path(), 1 << 20).unwrap();
    let m = br#"{"schemaVersion":2}"#;
    let d = Digest::sha256_of(m);
    let (other, _) = content(12, 20);
    assert!(!store.put_manifest(&d, Some("x"), &other).await.unwrap());
    assert!(!store.contains(&d));
    assert!(store
        .put_manifest(&d, Some("application/vnd.oci.image.manifest.v1+json"), m)
        .await
        .unwrap());
    let got = store.get_manifest(&d, 1 << 20).await.unwrap();
    assert_eq!(&got.bytes[..], m);
    assert_eq!(
        got.media_type.as_deref(),
        Some("application/vnd.oci.image.manifest.v1+json")
    );
    // Over the manifest size limit: not served as a manifest.
    assert!(store.get_manifest(&d, 5).await.is_none());
    // Same length, other bytes: refused and deleted.
    let mut bad = m.to_vec();
    bad[2] = b'X';
    std::fs::write(store.data_path(&d), &bad).unwrap();
    assert!(store.get_manifest(&d, 1 << 20).await.is_none());
    assert!(!store.data_path(&d).exists());
}

#[tokio::test]
async fn a_blob_is_not_a_manifest_but_a_manifest_is_a_blob() {
    let t = dir();
    let store = DiskStore::open(t.path(), 1 << 20).unwrap();
    let (bytes, d) = content(13, 50);
    write_blob(&store, &bytes, &d).await;
    assert!(store.get_manifest(&d, 1 << 20).await.is_none());
    let m = br#"{"schemaVersion":2,"x":1}"#;
    let dm = Digest::sha256_of(m);
    store.put_manifest(&dm, None, m).await.unwrap();
    assert_eq!(read_all(store.open_blob(&dm).await.unwrap()).await, m);
}

#[tokio::test]
async fn use_order_survives_a_restart_through_mtimes() {
    let t = dir();
    let (a, da) = content(14, 100);
    let (b, db) = content(15, 100);
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3 * 3600);
    {
        let store = DiskStore::open(t.path(), 1 << 20).unwrap();
        write_blob(&store, &a, &da).await;
        write_blob(&store, &b, &db).await;
        // Both published long ago, `a` first; then `a` is read.
        for (d, age) in [(&da, 1), (&db, 2)] {
            let f = std::fs::File::options()
                .write(true)
                .open(store.data_path(d))
                .unwrap();
            f.set_modified(old + std::time::Duration::from_secs(age))
                .unwrap();
        }
        store.open_blob(&da).await.unwrap();
    }
    // Room for one: the one read last stays.
    let store = DiskStore::open(t.path(), 150).unwrap();
    assert!(store.contains(&da), "recently read entry evicted");
    assert!(!store.contains(&db));
}

#[tokio::test]
async fn links_to_content_no_longer_held_are_swept_at_start() {
    let t = dir();
    let (a, da) = content(40, 100);
    let (_, db) = content(41, 100);
    {
        let store = DiskStore::open(t.path(), 1 << 20).unwrap();
        write_blob(&store, &a, &da).await;
        store.link("r/one", &da).await;
        store.link("r/one", &db).await; // linked, never held (or evicted since)
        store.link("r/two", &db).await;
        assert!(store.is_linked("r/two", &db).await);
    }
    let store = DiskStore::open(t.path(), 1 << 20).unwrap();
    assert!(
        store.is_linked("r/one", &da).await,
        "a link to held content stays"
    );
    assert!(!store.is_linked("r/one", &db).await);
    assert!(!store.is_linked("r/two", &db).await);
    let dirs = std::fs::read_dir(t.path().join("links")).unwrap().count();
    assert_eq!(dirs, 1, "the emptied scope directory is gone");
}
