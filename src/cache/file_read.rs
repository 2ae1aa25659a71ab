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

//!
//! Each stream reads through its own [`Reader`], which reuses the buffers of chunks the
//! HTTP server has finished sending: a fresh buffer per chunk costs a page fault per 4 KiB
//! and a zero-fill (`vec![0; n]`, 1.7% of a miss's CPU in a perf profile) before the read
//! overwrites it.

use std::io::IoSliceMut;
use std::os::unix::fs::FileExt as _;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use rustix::io::{preadv2, Errno, ReadWriteFlags};

/// Chunks a reader keeps an eye on for reuse: one being sent, one queued, and slack.
const KEEP: usize = 4;

/// Positional reads of one file for one response body.
pub struct Reader {
    file: Arc<std::fs::File>,
    /// Chunks handed out lately; one the server has dropped (we hold the only handle) is
    /// read into again.
    lent: Vec<Bytes>,
}

impl Reader {
    pub fn new(file: Arc<std::fs::File>) -> Reader {
        Reader {
            file,
            lent: Vec::with_capacity(KEEP),
        }
    }

    /// Reads bytes `at .. at + n` (`n > 0`): all of them, or — from the page cache — a
    /// non-empty prefix. Fails with `UnexpectedEof` when the file ends before `at + n` and
    /// the bytes are not in the page cache either.
    pub async fn read_at(&mut self, at: u64, n: usize) -> std::io::Result<Bytes> {
        let mut buf = self.buffer(n);
        match preadv2(
            &*self.file,
            &mut [IoSliceMut::new(&mut buf)],
            at,
            ReadWriteFlags::NOWAIT,
        ) {
            Ok(got) if got > 0 => {
                buf.truncate(got);
                return Ok(self.lend(buf));
            }
            // End of file (the blocking read reports it), not cached, or no RWF_NOWAIT here.
            Ok(_) | Err(Errno::AGAIN | Errno::OPNOTSUPP | Errno::INVAL | Errno::NOSYS) => {}
            Err(e) => return Err(e.into()),
        }
        let file = self.file.clone();
        let buf = tokio::task::spawn_blocking(move || {
            let mut buf = buf;
            file.read_exact_at(&mut buf, at).map(|()| buf)
        })
        .await
        .map_err(std::io::Error::other)??;
        Ok(self.lend(buf))
    }

    /// `n` initialised bytes to read into: a lent chunk nobody else holds, or a new one.
    fn buffer(&mut self, n: usize) -> BytesMut {
        while let Some(i) = self.lent.iter().position(Bytes::is_unique) {
            match self.lent.swap_remove(i).try_into_mut() {
                Ok(mut b) if b.capacity() >= n => {
                    // Only bytes past the last read's length are zeroed (none, mostly).
                    b.resize(n, 0);
                    return b;
                }
                Ok(_) => {}
                Err(shared) => self.lent.push(shared),
            }
        }
        BytesMut::zeroed(n)
    }

    fn lend(&mut self, buf: BytesMut) -> Bytes {
        let chunk = buf.freeze();
        if self.lent.len() >= KEEP {
            self.lent.remove(0);
        }
        self.lent.push(chunk.clone());
        chunk
    }
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
        let mut r = Reader::new(f);
        let mut got = Vec::new();
        let mut at = 7u64;
        while (at as usize) < data.len() {
            let n = (data.len() - at as usize).min(65_536);
            let chunk = r.read_at(at, n).await.unwrap();
            assert!(!chunk.is_empty() && chunk.len() <= n);
            got.extend_from_slice(&chunk);
            at += chunk.len() as u64;
        }
        assert_eq!(got, &data[7..]);
    }

    #[tokio::test]
    async fn a_read_past_the_end_fails_instead_of_returning_nothing() {
        let (_dir, f) = file_with(b"0123456789");
        let mut r = Reader::new(f);
        let e = r.read_at(10, 5).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
        let e = r.read_at(8, 5).await;
        // Two bytes remain: a cached prefix, or the blocking read's end-of-file error.
        match e {
            Ok(b) => assert_eq!(&b[..], b"89"),
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof),
        }
    }

    #[tokio::test]
    async fn a_chunk_still_held_is_never_read_into_and_a_dropped_one_is_reused() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1 << 20).collect();
        let (_dir, f) = file_with(&data);
        let mut r = Reader::new(f);
        let held = r.read_at(0, 65_536).await.unwrap();
        let dropped = r.read_at(65_536, 65_536).await.unwrap();
        let reusable = dropped.as_ptr();
        drop(dropped);
        for i in 2..16u64 {
            let c = r.read_at(i * 65_536, 65_536).await.unwrap();
            assert_eq!(&c[..], &data[(i * 65_536) as usize..][..c.len()]);
            assert_ne!(c.as_ptr(), held.as_ptr(), "a held chunk was read into");
            if i == 2 {
                assert_eq!(
                    c.as_ptr(),
                    reusable,
                    "a dropped chunk's buffer was not reused"
                );
            }
        }
        assert_eq!(&held[..], &data[..65_536]);
    }
}
