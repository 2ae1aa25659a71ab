//! Followers that keep up take each written batch from memory: slices of the fill's batch
//! buffers, which the fill gathers into again only once no follower holds them.

use super::*;
use http_body_util::BodyExt as _;

fn blob(len: usize) -> Vec<u8> {
    // Distinct bytes at every offset, so a batch written over another shows.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_taking_batches_from_memory_gets_the_blob_while_it_holds_every_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::cache::DiskStore::open(dir.path(), 1 << 30).unwrap();
    // Many more batches than the fill keeps buffers for.
    let data = blob(16 * WRITE_BATCH + 12_345);
    let digest = Digest::from_sha256_bytes(Sha256::digest(&data).into());
    let fills = Fills::new();
    let Claim::Lead(leader) = fills.claim("r", &digest).await else {
        panic!("the first claim leads");
    };
    let file = store.start_fill(&digest, data.len() as u64).await.unwrap();
    let upstream: Vec<Result<Bytes, String>> = data
        .chunks(64 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let fill = leader.start(
        file,
        futures_util::stream::iter(upstream).boxed(),
        Duration::from_secs(5),
        "test",
    );
    // One client from the start, one a range from inside the first batch, both at once.
    let first = 777_777u64;
    let (whole, range) = tokio::join!(
        hold_all(follow(fill.clone(), 0, data.len() as u64)),
        hold_all(follow(fill, first, data.len() as u64 - first)),
    );
    for (held, from) in [(whole, 0), (range, first as usize)] {
        assert!(
            held.iter().any(|c| c.len() > READ_CHUNK),
            "the follower never took a written batch from memory (file reads are at most {READ_CHUNK} bytes)"
        );
        let got: Vec<u8> = held.iter().flat_map(|c| c.iter().copied()).collect();
        assert_eq!(got.len(), data.len() - from);
        let first_bad = got.iter().zip(&data[from..]).position(|(a, b)| a != b);
        assert_eq!(first_bad, None, "follower from byte {from}: wrong bytes");
    }
}

/// Every chunk of `body`, each kept until the end, so none of their buffers may be
/// gathered into again.
async fn hold_all(mut body: ProxyBody) -> Vec<Bytes> {
    let mut held = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(chunk) = frame.unwrap().into_data() {
            held.push(chunk);
        }
    }
    held
}
