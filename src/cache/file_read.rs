//! Positional reads of content files from async code, without a thread hand-off when the
//! bytes are already in the page cache.
//!
//! A blocking-pool read costs two cross-thread wake-ups (the pool thread woken, then the
//! task): in a perf profile of a 256 MiB cache hit, futex and scheduler work were a third of
//! trustgate's CPU, more than the copy itself. `preadv2(RWF_NOWAIT)` (Linux 4.14, buffered
//! reads on ext4/xfs/btrfs since 5.x) copies what the page cache holds and returns `EAGAIN`
//! instead of waiting for the disk, so it may run on the async worker: it never blocks on
//! I/O. Only a read that would wait (or a filesystem without `RWF_NOWAIT`) goes to the
//! blocking pool. Bytes a fill just wrote, and a hot blob, are in the page cache, which makes
//! this the common case for both followers and hits.

use std::io::IoSliceMut;
use std::os::unix::fs::FileExt as _;
use std::sync::Arc;

use bytes::Bytes;
use rustix::io::{preadv2, Errno, ReadWriteFlags};

/// Reads bytes `at .. at + n` of `file` (`n > 0`): all of them, or — from the page cache —
/// a non-empty prefix. Fails with `UnexpectedEof` when the file ends before `at + n` and the
/// bytes are not in the page cache either.
pub async fn read_at(file: &Arc<std::fs::File>, at: u64, n: usize) -> std::io::Result<Bytes> {
    let mut buf = vec![0u8; n];
    match preadv2(
        &**file,
        &mut [IoSliceMut::new(&mut buf)],
        at,
        ReadWriteFlags::NOWAIT,
    ) {
        Ok(got) if got > 0 => {
            buf.truncate(got);
            return Ok(Bytes::from(buf));
        }
        // End of file (the blocking read reports it), not cached, or no RWF_NOWAIT here.
        Ok(_) | Err(Errno::AGAIN | Errno::OPNOTSUPP | Errno::INVAL | Errno::NOSYS) => {}
        Err(e) => return Err(e.into()),
    }
    let file = file.clone();
    tokio::task::spawn_blocking(move || file.read_exact_at(&mut buf, at).map(|()| buf))
        .await
        .map_err(std::io::Error::other)?
        .map(Bytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(bytes: &[u8]) -> (tempfile::TempDir, Arc<std::fs::File>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, bytes).unwrap();
        (dir, Arc::new(std::fs::File::open(&path).unwrap()))
    }

    #[tokio::test]
    async fn reads_the_bytes_asked_for_from_any_offset() {
        let data: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
        let (_dir, f) = file_with(&data);
        let mut got = Vec::new();
        let mut at = 7u64;
        while (at as usize) < data.len() {
            let n = (data.len() - at as usize).min(65_536);
            let chunk = read_at(&f, at, n).await.unwrap();
            assert!(!chunk.is_empty() && chunk.len() <= n);
            got.extend_from_slice(&chunk);
            at += chunk.len() as u64;
        }
        assert_eq!(got, &data[7..]);
    }

    #[tokio::test]
    async fn a_read_past_the_end_fails_instead_of_returning_nothing() {
        let (_dir, f) = file_with(b"0123456789");
        let e = read_at(&f, 10, 5).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
        let e = read_at(&f, 8, 5).await;
        // Two bytes remain: a cached prefix, or the blocking read's end-of-file error.
        match e {
            Ok(b) => assert_eq!(&b[..], b"89"),
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof),
        }
    }
}
