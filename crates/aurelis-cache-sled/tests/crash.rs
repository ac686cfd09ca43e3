//! Crash test: a real child process writes to the disk tier and is killed with SIGKILL in the
//! middle of its writes; the database must reopen, hold only well-formed entries, and keep
//! every write the child saw flushed.
//!
//! The child is this same test binary, re-launched with `--ignored --exact crash_child_writer`:
//! the child is an ignored test, so a normal run never runs it, and it fails when run without
//! the directory the parent gives it (`AURELIS_CRASH_CHILD_DIR`).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use aurelis_cache_core::Store;
use aurelis_cache_sled::SledStore;

const CHILD_ENV: &str = "AURELIS_CRASH_CHILD_DIR";
const CHILD_TEST: &str = "crash_child_writer";
/// The child flushes (and reports) after this many writes.
const FLUSH_EVERY: u64 = 25;
/// The child stops by itself after this many writes or this long.
const CHILD_MAX_WRITES: u64 = 100_000;
const CHILD_MAX_TIME: Duration = Duration::from_secs(60);
/// The parent kills the child once it has reported at least this many flushed writes.
const KILL_AFTER_FLUSHED: u64 = 400;
const PARENT_TIMEOUT: Duration = Duration::from_secs(90);

fn key(n: u64) -> String {
    format!("k{n}")
}

/// The value the child writes under `key(n)`: 16 to about 1.5 KiB of bytes derived from `n`.
fn expected_value(n: u64) -> Vec<u8> {
    let len = 16 + (n * 37 % 1500) as usize;
    (0..len).map(|i| (n.wrapping_mul(31).wrapping_add(i as u64 * 7) % 251) as u8).collect()
}

/// The child: writes k0, k1, ... and prints `flushed <n>` after each durable point.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of `a_killed_writer_leaves_every_flushed_write_intact`, run by it"]
async fn crash_child_writer() {
    let dir = std::env::var_os(CHILD_ENV).unwrap_or_else(|| {
        panic!("{CHILD_TEST} is run by the crash test, which sets {CHILD_ENV}; run that instead")
    });
    let store = SledStore::builder().path(dir).build().expect("child opens the store");
    let started = Instant::now();
    for n in 0..CHILD_MAX_WRITES {
        store.set(&key(n), expected_value(n).into(), None).await.expect("child write");
        if (n + 1) % FLUSH_EVERY == 0 {
            store.flush().await.expect("child flush");
            let mut out = std::io::stdout();
            writeln!(out, "flushed {}", n + 1).expect("report");
            out.flush().expect("report");
        }
        if started.elapsed() > CHILD_MAX_TIME {
            break;
        }
    }
}

/// Runs the child on `dir` until it has reported `KILL_AFTER_FLUSHED` flushed writes, waits
/// `delay`, kills it, and returns the highest flushed count it reported.
fn run_and_kill_child(dir: &Path, delay: Duration) -> u64 {
    let exe = std::env::current_exe().expect("test binary path");
    let mut child = Command::new(exe)
        .args(["--ignored", "--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the child");
    let stdout = child.stdout.take().expect("child stdout");
    let (tx, rx) = mpsc::channel::<u64>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(n) = line.strip_prefix("flushed ") {
                tx.send(n.trim().parse().expect("flushed count")).ok();
            }
        }
    });

    let deadline = Instant::now() + PARENT_TIMEOUT;
    let mut flushed = 0;
    while flushed < KILL_AFTER_FLUSHED {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(n) => flushed = flushed.max(n),
            Err(e) => {
                child.kill().ok();
                child.wait().ok();
                panic!("child stopped reporting ({e:?}) after {flushed} flushed writes");
            }
        }
    }
    std::thread::sleep(delay);
    child.kill().expect("SIGKILL the child");
    let status = child.wait().expect("reap the child");
    assert!(!status.success(), "the child finished before it was killed: {status:?}");
    reader.join().expect("reader thread");
    // Reports written before the kill are durable too.
    flushed.max(rx.try_iter().max().unwrap_or(0))
}

/// Every entry in the raw database is well-formed and holds what the child wrote; returns
/// how many there are and their size as the store counts it (key + stored value).
fn check_every_entry(dir: &Path) -> (u64, u64) {
    // The child is dead, so nothing holds the lock; a retry would hide a real problem.
    let db = sled::open(dir).expect("the database reopens after a crash");
    let (mut count, mut bytes) = (0, 0);
    for item in db.iter() {
        let (k, v) = item.expect("entry readable");
        let k = std::str::from_utf8(&k).expect("utf-8 key");
        let n: u64 =
            k.strip_prefix('k').and_then(|n| n.parse().ok()).expect("a key the child wrote");
        assert!(v.len() >= 8, "{k}: value shorter than its header");
        assert_eq!(&v[..8], &[0u8; 8], "{k}: no expiry was set");
        assert!(v[8..] == expected_value(n)[..], "{k}: value differs from what was written");
        count += 1;
        bytes += (k.len() + v.len()) as u64;
    }
    (count, bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_writer_leaves_every_flushed_write_intact() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut flushed_max = 0;
    // Three crashes on the same database, at different points of the write/flush cycle. From
    // the second round on, the child opens a database the parent closed cleanly (no walk),
    // and its crash must make the next open walk again.
    for (round, delay_ms) in [0u64, 7, 23].into_iter().enumerate() {
        let flushed = run_and_kill_child(dir.path(), Duration::from_millis(delay_ms));
        assert!(flushed >= KILL_AFTER_FLUSHED);
        flushed_max = flushed_max.max(flushed);

        let (entries, bytes) = check_every_entry(dir.path());
        assert!(entries >= flushed_max, "round {round}: {entries} entries < {flushed_max} flushed");

        let store = SledStore::builder().path(dir.path()).build().expect("store reopens");
        assert!(store.recovered_by_walk(), "round {round}: no walk after a crash");
        assert_eq!(store.len().await.expect("len"), entries, "round {round}");
        assert_eq!(store.size_bytes().await.expect("size"), bytes, "round {round}");
        assert_eq!(store.corrupt_entries(), 0, "round {round}");
        for n in 0..flushed_max {
            let got = store.get(&key(n)).await.expect("get");
            assert_eq!(
                got.as_deref(),
                Some(&expected_value(n)[..]),
                "round {round}: {} lost",
                key(n)
            );
        }
        store.close().await.expect("clean close");

        // Closed cleanly: the next open reads the counters back instead of walking.
        let store = SledStore::builder().path(dir.path()).build().expect("store reopens");
        assert!(!store.recovered_by_walk(), "round {round}: walked after a clean close");
        assert_eq!(store.len().await.expect("len"), entries, "round {round}");
        assert_eq!(store.size_bytes().await.expect("size"), bytes, "round {round}");
    }
}
