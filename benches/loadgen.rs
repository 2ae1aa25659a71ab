//! The load generator behind `scripts/bench.sh` (a `harness = false` bench: the script
//! starts the servers, this binary only measures). It sends a fixed number of GETs to one
//! URL over a fixed number of keep-alive HTTP/1.1 connections and prints one line of
//! `key=value` figures: requests/s, latency percentiles, MiB/s.
//!
//! Every answer is checked (status 200, and when given the `Docker-Content-Digest` and the
//! body length), so a fast stream of errors never passes for a fast server: failures are
//! counted and reported, and the script shows them next to the figures.
//!
//! ```text
//! loadgen --url URL | --urls FILE [--accept TYPE] [--requests N] [--concurrency C]
//!         [--expect-digest sha256:...] [--expect-len BYTES] [--expect-sha256 HEX] [--max-secs S]
//! loadgen --sha256-rate MIB   (prints the single-core SHA-256 rate of the sha2 crate)
//! ```
//!
//! `--urls FILE` spreads the requests over the URLs in FILE (one a line, in turn), for loads
//! of many distinct objects (the memory benchmark).
//!
//! Run without `--url` (as a plain `cargo bench` does) it only points at the script.

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
struct Args {
    url: String,
    /// `--urls`: request `k` goes to `urls[k % len]` instead of `url`.
    urls: Vec<String>,
    accept: Option<String>,
    requests: usize,
    concurrency: usize,
    expect_digest: Option<String>,
    expect_len: Option<u64>,
    /// Hash every body (sha256, hex) and count any other as an error.
    expect_sha256: Option<String>,
    max_secs: u64,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut url = None;
    let mut a = Args {
        url: String::new(),
        urls: Vec::new(),
        accept: None,
        requests: 1000,
        concurrency: 16,
        expect_digest: None,
        expect_len: None,
        expect_sha256: None,
        max_secs: 60,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        // `cargo bench` appends `--bench`; it means nothing here.
        if flag == "--bench" {
            continue;
        }
        // `cargo test --all-targets` runs benches with libtest's flags; there is no test here.
        if flag.starts_with("--test") || flag == "--nocapture" || flag == "--quiet" {
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = |v: &str| {
            v.parse::<u64>()
                .map_err(|e| format!("{flag}: {v:?} is not a number: {e}"))
        };
        match flag.as_str() {
            "--url" => url = Some(value),
            "--urls" => {
                let text = std::fs::read_to_string(&value).map_err(|e| format!("{value}: {e}"))?;
                a.urls = text
                    .lines()
                    .filter(|l| !l.is_empty())
                    .map(String::from)
                    .collect();
                if a.urls.is_empty() {
                    return Err(format!("{value}: no URLs"));
                }
                url = Some(a.urls[0].clone());
            }
            "--accept" => a.accept = Some(value),
            "--requests" => a.requests = num(&value)? as usize,
            "--concurrency" => a.concurrency = num(&value)?.max(1) as usize,
            "--expect-digest" => a.expect_digest = Some(value),
            "--expect-len" => a.expect_len = Some(num(&value)?),
            "--expect-sha256" => a.expect_sha256 = Some(value),
            "--sha256-rate" => {
                sha256_rate(num(&value)?);
                return Ok(None);
            }
            "--max-secs" => a.max_secs = num(&value)?.max(1),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(url.map(|u| Args { url: u, ..a }))
}

/// One worker's results: latencies of successful requests, body bytes, failures.
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    bytes: u64,
    errors: usize,
    first_error: Option<String>,
}

impl Tally {
    fn fail(&mut self, why: String) {
        self.errors += 1;
        self.first_error.get_or_insert(why);
    }
}

async fn one(client: &reqwest::Client, a: &Args, k: usize) -> Result<u64, String> {
    let url = if a.urls.is_empty() {
        &a.url
    } else {
        &a.urls[k % a.urls.len()]
    };
    let mut req = client.get(url);
    if let Some(accept) = &a.accept {
        req = req.header(reqwest::header::ACCEPT, accept);
    }
    let mut resp = req.send().await.map_err(|e| format!("send: {e}"))?;
    if resp.status() != reqwest::StatusCode::OK {
        return Err(format!("status {}", resp.status()));
    }
    if let Some(want) = &a.expect_digest {
        let got = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("<none>");
        if got != want {
            return Err(format!("digest {got}, expected {want}"));
        }
    }
    // Counted chunk by chunk: a 16 MiB body is never held whole.
    let mut n = 0u64;
    let mut hasher = a.expect_sha256.as_ref().map(|_| {
        use sha2::Digest as _;
        sha2::Sha256::new()
    });
    while let Some(chunk) = resp.chunk().await.map_err(|e| format!("body: {e}"))? {
        n += chunk.len() as u64;
        if let Some(h) = hasher.as_mut() {
            sha2::Digest::update(h, &chunk);
        }
    }
    if let (Some(h), Some(want)) = (hasher, &a.expect_sha256) {
        let got = hex::encode(sha2::Digest::finalize(h));
        if got != *want {
            return Err(format!("body sha256 {got}, expected {want}"));
        }
    }
    if let Some(want) = a.expect_len {
        if n != want {
            return Err(format!("body of {n} bytes, expected {want}"));
        }
    }
    Ok(n)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    // Nearest rank: the smallest latency with at least p of the samples at or below it.
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1000.0
}

async fn run(a: Args) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(a.concurrency)
        .timeout(Duration::from_secs(a.max_secs))
        .build()
        .map_err(|e| format!("client: {e}"))?;
    let a = Arc::new(a);
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(a.max_secs);
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..a.concurrency {
        let (client, a, next) = (client.clone(), a.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut t = Tally::default();
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= a.requests || Instant::now() >= deadline {
                    break;
                }
                let t0 = Instant::now();
                match one(&client, &a, k).await {
                    Ok(n) => {
                        t.latencies.push(t0.elapsed());
                        t.bytes += n;
                    }
                    Err(e) => t.fail(e),
                }
            }
            t
        }));
    }
    let mut all = Tally::default();
    for w in workers {
        let t = w.await.map_err(|e| format!("worker: {e}"))?;
        all.latencies.extend(t.latencies);
        all.bytes += t.bytes;
        all.errors += t.errors;
        if all.first_error.is_none() {
            all.first_error = t.first_error;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    all.latencies.sort();
    let ok = all.latencies.len();
    println!(
        "ok={ok} errors={} secs={secs:.3} rps={:.1} p50_ms={:.3} p99_ms={:.3} max_ms={:.3} mib_s={:.1} truncated={} first_error={:?}",
        all.errors,
        ok as f64 / secs,
        percentile(&all.latencies, 0.50),
        percentile(&all.latencies, 0.99),
        percentile(&all.latencies, 1.0),
        all.bytes as f64 / (1024.0 * 1024.0) / secs,
        ok + all.errors < a.requests,
        all.first_error.unwrap_or_default(),
    );
    Ok(())
}

/// Prints the single-core SHA-256 rate of the `sha2` crate trustgate verifies with (the
/// ceiling of a verifying miss), hashing `mib` MiB from memory.
fn sha256_rate(mib: u64) {
    use sha2::Digest as _;
    let buf = vec![0x5au8; 1024 * 1024];
    let mut h = sha2::Sha256::new();
    let t0 = Instant::now();
    for _ in 0..mib {
        h.update(&buf);
    }
    let _ = h.finalize();
    println!(
        "sha256_mib_s={:.1}",
        mib as f64 / t0.elapsed().as_secs_f64()
    );
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(a)) => a,
        Ok(None) if std::env::args().any(|a| a == "--sha256-rate") => return ExitCode::SUCCESS,
        Ok(None) => {
            println!("loadgen: measures one URL; run scripts/bench.sh for the full benchmark");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    // Two worker threads: the machine has two cores, shared with the servers under test.
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}
