//! Crash test of the write-behind journal: a real child process writes through a journaled
//! `WriteBehind` to a data store that persists to a sled database, and prints `acked <n>`
//! after each acknowledged write; the parent kills it with SIGKILL mid-stream, starts a
//! `WriteBehind` on the same journal and store, and checks that every acknowledged write
//! reached the store.
//!
//! The child is this same test binary, re-launched with `--ignored --exact
//! write_behind_crash_child`: an ignored test, so a normal run never runs it, and it fails
//! when run without the directory the parent gives it (`AURELIS_WB_CRASH_DIR`).

use std::io::{BufRead, BufReader, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aurelis_cache::strategy::{DataStore, RecordKey, WriteBehind};
use aurelis_cache::{Cache, MokaStore, Tier};

const CHILD_ENV: &str = "AURELIS_WB_CRASH_DIR";
const CHILD_TEST: &str = "write_behind_crash_child";
const CHILD_MAX_WRITES: u64 = 200_000;
const CHILD_MAX_TIME: Duration = Duration::from_secs(60);
/// The parent kills the child once it has reported at least this many acknowledged writes.
const KILL_AFTER_ACKED: u64 = 300;
const PARENT_TIMEOUT: Duration = Duration::from_secs(120);

/// A data store persisting to sled: a write is flushed to disk before it is acknowledged.
struct SledDataStore {
    db: sled::Db,
}

impl SledDataStore {
    fn open(path: &Path) -> Self {
        SledDataStore { db: sled::open(path).expect("open the store's database") }
    }

    fn key(key: &RecordKey) -> Vec<u8> {
        format!("{}/{}", key.category(), key.identifier()).into_bytes()
    }
}

#[async_trait]
impl DataStore for SledDataStore {
    type Value = u64;
    type Error = sled::Error;

    async fn get(&self, key: &RecordKey) -> Result<Option<u64>, sled::Error> {
        Ok(self
            .db
            .get(Self::key(key))?
            .map(|v| u64::from_be_bytes(v.as_ref().try_into().expect("8 bytes"))))
    }

    async fn set(&self, key: &RecordKey, value: &u64) -> Result<(), sled::Error> {
        self.set_many(&[(key.clone(), *value)]).await
    }

    async fn set_many(&self, entries: &[(RecordKey, u64)]) -> Result<(), sled::Error> {
        // A slow system of record, so that writes pile up in the queue.
        tokio::time::sleep(Duration::from_millis(2)).await;
        let mut batch = sled::Batch::default();
        for (k, v) in entries {
            batch.insert(Self::key(k), &v.to_be_bytes());
        }
        self.db.apply_batch(batch)?;
        self.db.flush_async().await?;
        Ok(())
    }

    async fn delete(&self, key: &RecordKey) -> Result<(), sled::Error> {
        self.db.remove(Self::key(key))?;
        self.db.flush_async().await?;
        Ok(())
    }
}

fn cache() -> Cache {
    let memory = Arc::new(MokaStore::builder().build().expect("moka"));
    Cache::builder().tier(Tier::new("memory", memory)).build().expect("cache")
}

fn id(n: u64) -> String {
    format!("k{n}")
}

fn expected(n: u64) -> u64 {
    n.wrapping_mul(7).wrapping_add(1)
}

/// The child: writes k0, k1, ... and prints `acked <n>` after each acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of `every_acknowledged_write_survives_a_sigkill`, run by it"]
async fn write_behind_crash_child() {
    let dir = std::env::var_os(CHILD_ENV).unwrap_or_else(|| {
        panic!("{CHILD_TEST} is run by the crash test, which sets {CHILD_ENV}; run that instead")
    });
    let dir = Path::new(&dir);
    let wb = WriteBehind::builder(cache(), SledDataStore::open(&dir.join("store")))
        .journal(dir.join("journal"))
        .build()
        .await
        .expect("child builds the write-behind");
    let started = Instant::now();
    let mut out = std::io::stdout();
    for n in 0..CHILD_MAX_WRITES {
        wb.set("crash", &id(n), expected(n)).await.expect("child write");
        writeln!(out, "acked {}", n + 1).expect("report");
        out.flush().expect("report");
        if started.elapsed() > CHILD_MAX_TIME {
            break;
        }
    }
}

/// Runs the child on `dir` until it has reported `KILL_AFTER_ACKED` writes, waits `delay`,
/// kills it, and returns the highest count it reported.
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
            if let Some(n) = line.strip_prefix("acked ") {
                tx.send(n.trim().parse().expect("acked count")).ok();
            }
        }
    });
    let deadline = Instant::now() + PARENT_TIMEOUT;
    let mut acked = 0;
    while acked < KILL_AFTER_ACKED {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(n) => acked = acked.max(n),
            Err(e) => {
                child.kill().ok();
                child.wait().ok();
                panic!("child stopped reporting ({e:?}) after {acked} acknowledged writes");
            }
        }
    }
    std::thread::sleep(delay);
    child.kill().expect("SIGKILL the child");
    let status = child.wait().expect("reap the child");
    assert!(!status.success(), "the child finished before it was killed: {status:?}");
    reader.join().expect("reader thread");
    // Lines printed before the kill are acknowledged writes too.
    acked.max(rx.try_iter().max().unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_survives_a_sigkill() {
    let mut replayed_total = 0;
    for (round, delay_ms) in [0u64, 5, 17].into_iter().enumerate() {
        let dir = tempfile::tempdir().expect("temp dir");
        let acked = run_and_kill_child(dir.path(), Duration::from_millis(delay_ms));
        assert!(acked >= KILL_AFTER_ACKED);

        // What the store held at the kill, before any replay.
        let before = {
            let store = SledDataStore::open(&dir.path().join("store"));
            let mut held = 0;
            for n in 0..acked {
                held +=
                    u64::from(store.get(&RecordKey::new("crash", id(n))).await.unwrap().is_some());
            }
            held
        };

        let wb = WriteBehind::builder(cache(), SledDataStore::open(&dir.path().join("store")))
            .journal(dir.path().join("journal"))
            .build()
            .await
            .expect("a write-behind restarts on the journal");
        let replayed = wb.stats().replayed;
        replayed_total += replayed;
        wb.flush().await;
        for n in 0..acked {
            let got = wb.store().get(&RecordKey::new("crash", id(n))).await.expect("store get");
            assert_eq!(got, Some(expected(n)), "round {round}: acknowledged write {n} lost");
        }
        assert!(wb.dead_letters().is_empty());
        let report = wb.shutdown(Duration::from_secs(30)).await;
        assert!(report.is_complete(), "round {round}");
        eprintln!(
            "round {round}: {acked} acknowledged, {before} in the store at the kill, \
             {replayed} replayed from the journal"
        );
    }
    // The journal mattered: some acknowledged writes were only in it when the child died.
    assert!(replayed_total > 0, "nothing was pending at any kill: the test proves nothing");
}
