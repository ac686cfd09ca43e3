//! WriteThrough and WriteBehind over an in-memory data store with fault injection and gates.
//! No test asserts on wall-clock time: waits are on gates and counters, with a generous upper
//! bound that only turns a hang into a failure.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aurelis_cache::strategy::{
    DataStore, OverflowPolicy, RecordKey, Write, WriteBehind, WriteThrough,
};
use aurelis_cache::{Cache, ErrorKind, MokaStore, Tier};
use parking_lot::Mutex;
use tokio::sync::Semaphore;

/// Turns a hang into a failure; never a timing assertion.
const HANG: Duration = Duration::from_secs(60);

fn cache() -> Cache {
    let memory = MokaStore::builder().max_entries(200_000).build().expect("moka");
    Cache::builder().tier(Tier::new("memory", Arc::new(memory))).build().expect("cache")
}

#[derive(Debug)]
struct Refused(&'static str);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Refused {}

/// An in-memory data store that counts its calls and can fail (seeded), refuse a poison value,
/// and hold its writes or reads at a gate.
#[derive(Default)]
struct MemStore {
    data: Mutex<HashMap<RecordKey, u64>>,
    calls: AtomicU64,
    set_many_calls: AtomicU64,
    get_calls: AtomicU64,
    /// xorshift state: when non-zero, each write call fails with probability 1/2.
    flaky: Mutex<u64>,
    poison: Option<u64>,
    /// A value the store panics on.
    panic_on: Option<u64>,
    /// This many of the next write calls fail.
    fail_next: AtomicUsize,
    /// `set` yields before and after it writes (widens race windows).
    yields: bool,
    /// `set_many` waits for a permit here (one per call).
    write_gate: Option<Arc<Semaphore>>,
    /// `get` waits for a permit here.
    read_gate: Option<Arc<Semaphore>>,
    /// Calls that reached a gate.
    entered: AtomicUsize,
}

impl MemStore {
    fn flaky(seed: u64) -> Self {
        MemStore { flaky: Mutex::new(seed | 1), ..Default::default() }
    }

    fn fails_now(&self) -> bool {
        let mut x = self.flaky.lock();
        if *x == 0 {
            return false;
        }
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        x.is_multiple_of(2)
    }

    fn value(&self, category: &str, id: &str) -> Option<u64> {
        self.data.lock().get(&RecordKey::new(category, id)).copied()
    }

    fn len(&self) -> usize {
        self.data.lock().len()
    }

    fn check(&self, value: u64) -> Result<(), Refused> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let forced =
            self.fail_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if forced.is_ok() || self.fails_now() {
            return Err(Refused("injected failure"));
        }
        if self.poison == Some(value) {
            return Err(Refused("poison value"));
        }
        Ok(())
    }
}

#[async_trait]
impl DataStore for MemStore {
    type Value = u64;
    type Error = Refused;

    async fn get(&self, key: &RecordKey) -> Result<Option<u64>, Refused> {
        self.get_calls.fetch_add(1, Ordering::Relaxed);
        if let Some(gate) = &self.read_gate {
            self.entered.fetch_add(1, Ordering::SeqCst);
            gate.acquire().await.expect("gate").forget();
        }
        Ok(self.data.lock().get(key).copied())
    }

    async fn set(&self, key: &RecordKey, value: &u64) -> Result<(), Refused> {
        assert!(self.panic_on != Some(*value), "the store panics on {value}");
        self.check(*value)?;
        if self.yields {
            tokio::task::yield_now().await;
        }
        self.data.lock().insert(key.clone(), *value);
        if self.yields {
            tokio::task::yield_now().await;
        }
        Ok(())
    }

    async fn set_many(&self, entries: &[(RecordKey, u64)]) -> Result<(), Refused> {
        self.set_many_calls.fetch_add(1, Ordering::Relaxed);
        if let Some(gate) = &self.write_gate {
            self.entered.fetch_add(1, Ordering::SeqCst);
            gate.acquire().await.expect("gate").forget();
        }
        for (_, v) in entries {
            assert!(self.panic_on != Some(*v), "the store panics on {v}");
            if self.poison == Some(*v) {
                self.calls.fetch_add(1, Ordering::Relaxed);
                return Err(Refused("poison value in the batch"));
            }
        }
        self.check(0)?;
        let mut data = self.data.lock();
        for (k, v) in entries {
            data.insert(k.clone(), *v);
        }
        Ok(())
    }

    async fn delete(&self, key: &RecordKey) -> Result<(), Refused> {
        self.check(0)?;
        self.data.lock().remove(key);
        Ok(())
    }
}

/// Polls `cond` (yielding) until it holds; fails after `HANG`.
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(start.elapsed() < HANG, "gave up waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(HANG, fut).await.unwrap_or_else(|_| panic!("hung: {what}"))
}

// ----- write-through ---------------------------------------------------------------------

#[tokio::test]
async fn write_through_writes_the_store_then_the_cache() {
    let cache = cache();
    let wt = WriteThrough::new(cache.clone(), MemStore::default());
    wt.set("users", "1", &10).await.unwrap();
    assert_eq!(wt.store().value("users", "1"), Some(10));
    assert_eq!(cache.get::<u64>(("users", "1")).await.unwrap(), Some(10));
    assert_eq!(wt.get("users", "1").await.unwrap(), Some(10));
    assert_eq!(wt.store().get_calls.load(Ordering::Relaxed), 0, "served by the cache");

    wt.delete("users", "1").await.unwrap();
    assert_eq!(wt.store().value("users", "1"), None);
    assert_eq!(cache.get::<u64>(("users", "1")).await.unwrap(), None);
}

#[tokio::test]
async fn write_through_store_failure_leaves_the_cache_untouched() {
    let cache = cache();
    let store = MemStore { poison: Some(666), ..Default::default() };
    let wt = WriteThrough::new(cache.clone(), store);
    wt.set("users", "1", &1).await.unwrap();
    let err = wt.set("users", "1", &666).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Backend);
    let source = std::error::Error::source(&err).expect("the store's error as source");
    assert_eq!(source.to_string(), "poison value");
    assert_eq!(cache.get::<u64>(("users", "1")).await.unwrap(), Some(1));
    assert_eq!(wt.store().value("users", "1"), Some(1));
}

/// A store whose client reports `anyhow::Error`s (the usual service code).
#[derive(Debug, Default)]
struct AnyhowStore(Mutex<HashMap<RecordKey, u64>>);

#[async_trait]
impl DataStore for AnyhowStore {
    type Value = u64;
    type Error = anyhow::Error;

    async fn get(&self, key: &RecordKey) -> anyhow::Result<Option<u64>> {
        if key.identifier() == "broken" {
            anyhow::bail!("replica lagging");
        }
        Ok(self.0.lock().get(key).copied())
    }

    async fn set(&self, key: &RecordKey, value: &u64) -> anyhow::Result<()> {
        if *value == 666 {
            return Err(anyhow::anyhow!("constraint violated").context("inserting the row"));
        }
        self.0.lock().insert(key.clone(), *value);
        Ok(())
    }

    async fn delete(&self, key: &RecordKey) -> anyhow::Result<()> {
        self.0.lock().remove(key);
        Ok(())
    }
}

#[tokio::test]
async fn a_store_reporting_anyhow_errors_works_and_its_error_is_the_source() {
    let cache = cache();
    let wt = WriteThrough::new(cache.clone(), AnyhowStore::default());
    wt.set("users", "1", &1).await.unwrap();
    assert_eq!(wt.get("users", "1").await.unwrap(), Some(1));
    let err = wt.set("users", "1", &666).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Backend);
    let source = std::error::Error::source(&err).expect("the store's error as source");
    assert_eq!(source.to_string(), "inserting the row");
    assert_eq!(cache.get::<u64>(("users", "1")).await.unwrap(), Some(1));
    let err = wt.get("users", "broken").await.unwrap_err();
    assert!(err.to_string().contains("replica lagging"), "{err}");
}

#[tokio::test]
async fn write_through_reads_fill_the_cache_and_absent_records_are_not_cached() {
    let cache = cache();
    let wt = WriteThrough::new(cache.clone(), MemStore::default());
    wt.store().data.lock().insert(RecordKey::new("users", "7"), 70);
    assert_eq!(wt.get("users", "7").await.unwrap(), Some(70));
    assert_eq!(cache.get::<u64>(("users", "7")).await.unwrap(), Some(70));

    assert_eq!(wt.get("users", "8").await.unwrap(), None);
    assert_eq!(cache.get::<u64>(("users", "8")).await.unwrap(), None);
    // Not cached as absent: once the store has it, it is read.
    wt.store().data.lock().insert(RecordKey::new("users", "8"), 80);
    assert_eq!(wt.get("users", "8").await.unwrap(), Some(80));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn write_through_concurrent_misses_read_the_store_once() {
    fn wb_entered(wt: &WriteThrough<MemStore>) -> bool {
        wt.store().entered.load(Ordering::SeqCst) == 1
    }
    let cache = cache();
    let gate = Arc::new(Semaphore::new(0));
    let store = MemStore { read_gate: Some(gate.clone()), ..Default::default() };
    store.data.lock().insert(RecordKey::new("users", "1"), 5);
    let wt = WriteThrough::new(cache.clone(), store);
    let readers: Vec<_> = (0..50)
        .map(|_| {
            let wt = wt.clone();
            tokio::spawn(async move { wt.get("users", "1").await })
        })
        .collect();
    // One caller reached the store; the others wait for it (on the record's lock).
    wait_until("one store read", || wb_entered(&wt)).await;
    gate.add_permits(100);
    for r in readers {
        assert_eq!(within("reader", r).await.unwrap().unwrap(), Some(5));
    }
    assert_eq!(wt.store().get_calls.load(Ordering::Relaxed), 1);
}

// ----- write-behind ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_thousand_writes_then_shutdown_lose_nothing() {
    const N: u64 = 100_000;
    const WRITERS: u64 = 8;
    let wb = WriteBehind::new(cache(), MemStore::default());
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let wb = wb.clone();
            tokio::spawn(async move {
                for n in (w..N).step_by(WRITERS as usize) {
                    wb.set("n", &n.to_string(), n * 3).await.expect("write");
                }
            })
        })
        .collect();
    for t in tasks {
        within("writer", t).await.unwrap();
    }
    let report = within("shutdown", wb.shutdown(HANG)).await;
    assert!(report.is_complete(), "{} unwritten", report.unwritten.len());
    let store = wb.store();
    assert_eq!(store.len() as u64, N);
    for n in 0..N {
        assert_eq!(store.value("n", &n.to_string()), Some(n * 3), "record {n}");
    }
    let stats = wb.stats();
    assert_eq!((stats.acknowledged, stats.written), (N, N));
    // Bounded: never more than the default capacity live at once, so most writes waited.
    assert!(stats.queued + stats.in_flight + stats.retrying == 0);
    assert_eq!(wb.set("n", "0", 1).await.unwrap_err().kind(), ErrorKind::Usage);
}

/// Each writer owns its keys, so the last value per key is its program order's last.
async fn flaky_run(seed: u64, writers: u64, keys_per_writer: u64, writes_per_writer: u64) {
    let wb = WriteBehind::builder(cache(), MemStore::flaky(seed))
        .batch_size(7)
        .capacity(64)
        .max_attempts(64)
        .backoff(Duration::from_micros(100), Duration::from_millis(2))
        .build()
        .await
        .unwrap();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let wb = wb.clone();
            tokio::spawn(async move {
                let mut rng = seed ^ (w + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                let mut last = HashMap::new();
                for i in 0..writes_per_writer {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let id = format!("{w}-{}", rng % keys_per_writer);
                    if rng.is_multiple_of(10) {
                        wb.delete("k", &id).await.expect("delete");
                        last.insert(id.clone(), None);
                    } else {
                        wb.set("k", &id, i).await.expect("set");
                        last.insert(id.clone(), Some(i));
                    }
                    // Read your writes, whatever the queue is doing.
                    assert_eq!(wb.get("k", &id).await.expect("get"), last[&id], "seed {seed}");
                    if rng.is_multiple_of(3) {
                        tokio::task::yield_now().await;
                    }
                }
                last
            })
        })
        .collect();
    let mut expected = HashMap::new();
    for t in tasks {
        expected.extend(within("writer", t).await.unwrap());
    }
    within("flush", wb.flush()).await;
    assert!(wb.dead_letters().is_empty(), "seed {seed}: dead letters");
    for (id, value) in &expected {
        assert_eq!(wb.store().value("k", id), *value, "seed {seed}: record {id}");
    }
    let stats = wb.stats();
    assert!(stats.store_failures > 0 && stats.retries > 0, "seed {seed}: {stats:?}");
    assert!(wb.shutdown(HANG).await.is_complete());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_failing_half_its_calls_still_ends_with_every_write() {
    for seed in [1, 2, 3, 0xDEAD_BEEF, 42, 7, 1234, 99] {
        flaky_run(seed, 4, 40, 600).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_queue_makes_writers_wait_until_the_store_drains() {
    let gate = Arc::new(Semaphore::new(0));
    let store = MemStore { write_gate: Some(gate.clone()), ..Default::default() };
    let wb = WriteBehind::builder(cache(), store).batch_size(2).capacity(4).build().await.unwrap();
    for n in 0..4u64 {
        wb.set("q", &n.to_string(), n).await.unwrap();
    }
    // The worker took a batch of two and is held at the gate; two are queued: full.
    wait_until("the worker at the gate", || wb.store().entered.load(Ordering::SeqCst) == 1).await;
    let writer = {
        let wb = wb.clone();
        tokio::spawn(async move { wb.set("q", "4", 4).await })
    };
    wait_until("a waiting writer", || wb.stats().waiting_writers == 1).await;
    assert!(!writer.is_finished(), "the writer did not wait for room");
    // A write to a queued record replaces it and needs no room.
    within("coalescing write", wb.set("q", "3", 33)).await.unwrap();
    assert_eq!(wb.stats().waiting_writers, 1);
    assert_eq!(wb.store().len(), 0);

    gate.add_permits(1_000);
    within("the waiting writer", writer).await.unwrap().unwrap();
    within("flush", wb.flush()).await;
    let store = wb.store();
    assert_eq!(
        (0..5).map(|n| store.value("q", &n.to_string())).collect::<Vec<_>>(),
        [Some(0), Some(1), Some(2), Some(33), Some(4)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_queue_can_write_through_instead() {
    let gate = Arc::new(Semaphore::new(0));
    let store = MemStore { write_gate: Some(gate.clone()), ..Default::default() };
    let cache = cache();
    let wb = WriteBehind::builder(cache.clone(), store)
        .batch_size(2)
        .capacity(2)
        .overflow(OverflowPolicy::WriteThrough)
        .build()
        .await
        .unwrap();
    wb.set("q", "0", 0).await.unwrap();
    wb.set("q", "1", 1).await.unwrap();
    wait_until("the worker at the gate", || wb.store().entered.load(Ordering::SeqCst) == 1).await;
    // Full, and `set` is not gated: the overflow write reaches the store at once.
    within("overflow write", wb.set("q", "2", 2)).await.unwrap();
    assert_eq!(wb.store().value("q", "2"), Some(2));
    assert_eq!(cache.get::<u64>(("q", "2")).await.unwrap(), Some(2));
    assert_eq!(wb.stats().overflow_writes, 1);
    gate.add_permits(100);
    within("flush", wb.flush()).await;
    assert_eq!(wb.store().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_poison_entry_goes_to_dead_letters_and_the_rest_is_written() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let store = MemStore { poison: Some(13), ..Default::default() };
    let wb = WriteBehind::builder(cache(), store)
        .batch_size(8)
        .max_attempts(4)
        .backoff(Duration::from_micros(100), Duration::from_millis(1))
        .on_dead_letter({
            let seen = seen.clone();
            move |letter| seen.lock().push(letter.key.clone())
        })
        .build()
        .await
        .unwrap();
    for n in 0..50u64 {
        wb.set("v", &n.to_string(), n).await.unwrap();
    }
    within("flush past a poison entry", wb.flush()).await;
    let dead = wb.dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].key, RecordKey::new("v", "13"));
    assert_eq!(dead[0].write, Write::Set(13));
    assert_eq!(dead[0].attempts, 4);
    assert_eq!(dead[0].error.kind(), ErrorKind::Backend);
    assert_eq!(*seen.lock(), [RecordKey::new("v", "13")]);
    for n in (0..50u64).filter(|n| *n != 13) {
        assert_eq!(wb.store().value("v", &n.to_string()), Some(n));
    }
    assert_eq!(wb.store().value("v", "13"), None);
    // The record is not blocked: a good value for it is written.
    wb.set("v", "13", 1300).await.unwrap();
    within("flush", wb.flush()).await;
    assert_eq!(wb.store().value("v", "13"), Some(1300));
    assert_eq!(wb.take_dead_letters().len(), 1);
    assert!(wb.dead_letters().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flush_waits_for_every_write_before_it() {
    let gate = Arc::new(Semaphore::new(0));
    let store = MemStore { write_gate: Some(gate.clone()), ..Default::default() };
    // Batches would wait an hour without the flush.
    let wb = WriteBehind::builder(cache(), store)
        .batch_size(1_000)
        .flush_interval(Duration::from_secs(3_600))
        .build()
        .await
        .unwrap();
    for n in 0..100u64 {
        wb.set("f", &n.to_string(), n).await.unwrap();
    }
    assert_eq!(wb.store().entered.load(Ordering::SeqCst), 0, "nothing written before a flush");
    let flush = {
        let wb = wb.clone();
        tokio::spawn(async move { wb.flush().await })
    };
    wait_until("the flush's batch at the store", || wb.store().entered.load(Ordering::SeqCst) == 1)
        .await;
    assert!(!flush.is_finished(), "flush returned before its writes reached the store");
    gate.add_permits(10);
    within("flush", flush).await.unwrap();
    assert_eq!(wb.store().len(), 100);
    assert_eq!(wb.store().set_many_calls.load(Ordering::Relaxed), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_to_one_record_coalesce_and_the_store_sees_the_last() {
    let wb = WriteBehind::builder(cache(), MemStore::default())
        .batch_size(1_000)
        .flush_interval(Duration::from_secs(3_600))
        .build()
        .await
        .unwrap();
    for n in 0..1_000u64 {
        wb.set("c", "hot", n).await.unwrap();
    }
    assert_eq!(wb.get("c", "hot").await.unwrap(), Some(999));
    within("flush", wb.flush()).await;
    assert_eq!(wb.store().value("c", "hot"), Some(999));
    assert_eq!(wb.store().calls.load(Ordering::Relaxed), 1, "one store call for 1,000 writes");
    let stats = wb.stats();
    assert_eq!((stats.acknowledged, stats.coalesced, stats.written), (1_000, 999, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delete_is_a_queued_write_of_absent() {
    let cache = cache();
    let wb = WriteBehind::new(cache.clone(), MemStore::default());
    wb.set("d", "a", 1).await.unwrap();
    wb.flush().await;
    assert_eq!(wb.store().value("d", "a"), Some(1));
    wb.delete("d", "a").await.unwrap();
    assert_eq!(cache.get::<u64>(("d", "a")).await.unwrap(), None);
    assert_eq!(wb.get("d", "a").await.unwrap(), None, "the queued delete hides the stored value");
    wb.flush().await;
    assert_eq!(wb.store().value("d", "a"), None);
    // Set then delete before the batch: coalesced into the delete.
    wb.set("d", "b", 2).await.unwrap();
    wb.delete("d", "b").await.unwrap();
    wb.flush().await;
    assert_eq!(wb.store().value("d", "b"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_reports_what_it_could_not_write_and_the_journal_replays_it() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let store = MemStore { write_gate: Some(gate.clone()), ..Default::default() };
    let wb = WriteBehind::builder(cache(), store)
        .batch_size(5)
        .journal(dir.path())
        .build()
        .await
        .unwrap();
    for n in 0..20u64 {
        wb.set("j", &n.to_string(), n).await.unwrap();
    }
    wb.delete("j", "3").await.unwrap();
    wait_until("the worker at the gate", || wb.store().entered.load(Ordering::SeqCst) == 1).await;
    let report = within("shutdown", wb.shutdown(Duration::ZERO)).await;
    assert!(report.journaled);
    let mut unwritten: Vec<_> =
        report.unwritten.iter().map(|(k, w)| (k.clone(), w.clone())).collect();
    unwritten.sort_by_key(|(k, _)| k.identifier().parse::<u64>().unwrap());
    let expected: Vec<_> = (0..20u64)
        .map(|n| {
            let w = if n == 3 { Write::Delete } else { Write::Set(n) };
            (RecordKey::new("j", n.to_string()), w)
        })
        .collect();
    assert_eq!(unwritten, expected, "every write is reported, the latest per record");
    drop(wb);

    // A new instance on the same journal writes them all (sled releases the journal's lock
    // once the dropped instance's background task has let go of it: retry, bounded).
    let cache = cache();
    let wb = reopen(|| {
        WriteBehind::builder(cache.clone(), MemStore::default()).journal(dir.path()).build()
    })
    .await;
    assert_eq!(wb.stats().replayed, 20);
    assert_eq!(cache.get::<u64>(("j", "7")).await.unwrap(), Some(7), "replay fills the cache");
    wb.flush().await;
    for n in 0..20u64 {
        let want = (n != 3).then_some(n);
        assert_eq!(wb.store().value("j", &n.to_string()), want);
    }
    assert!(wb.shutdown(HANG).await.is_complete());
    drop(wb);
    // Written writes left the journal.
    let wb = reopen(|| {
        WriteBehind::builder(cache.clone(), MemStore::default()).journal(dir.path()).build()
    })
    .await;
    assert_eq!(wb.stats().replayed, 0);
}

/// Builds with `build` until the journal's sled lock is free (at most 10 s).
async fn reopen<T, F, Fut>(build: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = aurelis_cache::Result<T>>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match build().await {
            Ok(v) => return v,
            Err(e) if std::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the journal was never released: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropping_the_last_handle_drains_in_the_background() {
    let store = Arc::new(MemStore::default());
    let wb = WriteBehind::builder(cache(), store.clone())
        .batch_size(1_000)
        .flush_interval(Duration::from_secs(3_600))
        .build()
        .await
        .unwrap();
    for n in 0..100u64 {
        wb.set("drop", &n.to_string(), n).await.unwrap();
    }
    assert_eq!(store.len(), 0, "nothing written before the drop");
    drop(wb);
    wait_until("the background drain", || store.len() == 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_monitor_reports_queue_depth_and_dead_letters() {
    let gate = Arc::new(Semaphore::new(0));
    let store = MemStore { write_gate: Some(gate.clone()), poison: Some(13), ..Default::default() };
    let cache = cache();
    let wb = WriteBehind::builder(cache.clone(), store)
        .batch_size(2)
        .max_attempts(1)
        .build()
        .await
        .unwrap();
    let monitor = aurelis_cache::CacheMonitor::new(cache).with_write_queue("orders", wb.clone());
    for n in [1u64, 2, 13, 4, 5] {
        wb.set("o", &n.to_string(), n).await.unwrap();
    }
    wait_until("the worker at the gate", || wb.store().entered.load(Ordering::SeqCst) == 1).await;
    let queue = monitor.performance_report().await.write_queues["orders"];
    assert_eq!((queue.queue_depth, queue.dead_letters), (5, 0));
    gate.add_permits(100);
    within("flush", wb.flush()).await;
    let queue = monitor.performance_report().await.write_queues["orders"];
    assert_eq!((queue.queue_depth, queue.dead_letters), (0, 1));
}

/// 32 writers flushing the journal at once: sled's `flush_async` called concurrently by more
/// callers than its I/O pool has threads deadlocks, so the journal flushes one at a time for
/// everyone (group commit). This hung before that.
#[tokio::test(flavor = "current_thread")]
async fn a_journal_takes_many_concurrent_writers() {
    let dir = tempfile::tempdir().unwrap();
    let wb = WriteBehind::builder(cache(), MemStore::default())
        .journal(dir.path())
        .build()
        .await
        .unwrap();
    let writers = (0..32u64).map(|w| {
        let wb = wb.clone();
        async move {
            for i in 0..50u64 {
                wb.set("jc", &format!("{w}-{i}"), i).await.expect("journaled write");
            }
        }
    });
    within("32 journaled writers", futures::future::join_all(writers)).await;
    within("flush", wb.flush()).await;
    assert_eq!(wb.store().len(), 32 * 50);
    assert!(wb.shutdown(HANG).await.is_complete());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_panicking_store_call_is_a_failed_attempt_not_a_dead_worker() {
    let store = MemStore { panic_on: Some(7), ..Default::default() };
    let wb = WriteBehind::builder(cache(), store)
        .max_attempts(2)
        .backoff(Duration::from_micros(100), Duration::from_millis(1))
        .build()
        .await
        .unwrap();
    for n in 0..20u64 {
        wb.set("p", &n.to_string(), n).await.unwrap();
    }
    within("flush past a panicking store", wb.flush()).await;
    let dead = wb.take_dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].key, RecordKey::new("p", "7"));
    assert!(dead[0].error.message().ends_with("panicked"), "{}", dead[0].error);
    assert_eq!(wb.store().len(), 19);
    // The worker lives on.
    wb.set("p", "7", 70).await.unwrap();
    within("flush", wb.flush()).await;
    assert_eq!(wb.store().value("p", "7"), Some(70));
}

/// A write `flush` waits for fails while a newer write of the same record is queued: the
/// failed one is dropped (the newer replaces it), and `flush` must then wait for the newer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flush_waits_for_the_write_that_replaced_a_failed_one() {
    let gate = Arc::new(Semaphore::new(0));
    let store = MemStore { write_gate: Some(gate.clone()), ..Default::default() };
    let wb = WriteBehind::builder(cache(), store)
        .batch_size(1)
        .backoff(Duration::from_micros(100), Duration::from_millis(1))
        .build()
        .await
        .unwrap();
    wb.set("r", "k", 1).await.unwrap();
    wait_until("first write at the store", || wb.store().entered.load(Ordering::SeqCst) == 1).await;
    let flush = {
        let wb = wb.clone();
        tokio::spawn(async move { wb.flush().await })
    };
    wb.set("r", "k", 2).await.unwrap(); // queued behind the one being written
    wb.store().fail_next.store(1, Ordering::SeqCst);
    gate.add_permits(1); // the first write fails
    wait_until("second write at the store", || wb.store().entered.load(Ordering::SeqCst) == 2)
        .await;
    assert!(!flush.is_finished(), "flush returned before the write that replaced its own");
    assert_eq!(wb.store().value("r", "k"), None);
    gate.add_permits(1);
    within("flush", flush).await.unwrap();
    assert_eq!(wb.store().value("r", "k"), Some(2));
}

/// Seeded concurrent writers and readers on a few shared records, through write-through, in
/// rounds: after each round the cache holds exactly what the store holds for every record
/// (writes to one record reach both in the same order; a read that loaded an old value never
/// overwrites a newer one).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn write_through_cache_ends_equal_to_the_store_under_concurrency() {
    for seed in [1u64, 2, 3, 5, 8, 13, 21, 34] {
        let cache = cache();
        let wt = WriteThrough::new(cache.clone(), MemStore { yields: true, ..Default::default() });
        for round in 0..20u64 {
            let tasks: Vec<_> = (0..8u64)
                .map(|t| {
                    let wt = wt.clone();
                    tokio::spawn(async move {
                        let mut rng = (seed << 16 | round << 8 | t) | 1;
                        for i in 0..12u64 {
                            rng ^= rng << 13;
                            rng ^= rng >> 7;
                            rng ^= rng << 17;
                            let id = format!("r{}", rng % 3);
                            match rng % 8 {
                                0 => wt.delete("wt", &id).await.expect("delete"),
                                1 | 2 => drop(wt.get("wt", &id).await.expect("get")),
                                _ => {
                                    let v = round * 100_000 + t * 1_000 + i;
                                    wt.set("wt", &id, &v).await.expect("set")
                                }
                            }
                            if rng.is_multiple_of(3) {
                                tokio::task::yield_now().await;
                            }
                        }
                    })
                })
                .collect();
            for t in tasks {
                within("writer", t).await.unwrap();
            }
            for r in 0..3 {
                let id = format!("r{r}");
                let stored = wt.store().value("wt", &id);
                let cached = cache.get::<u64>(("wt", &id)).await.unwrap();
                assert!(
                    cached.is_none() || cached == stored,
                    "seed {seed} round {round}, {id}: cache {cached:?}, store {stored:?}"
                );
                assert_eq!(wt.get("wt", &id).await.unwrap(), stored, "seed {seed}, {id}");
            }
        }
    }
}

/// Repro for the lead (facade, not a strategy): one writer sets a key 2,000 times while
/// readers `get` it; after the writer's last `set_key` returned and the readers stopped, the
/// cache must hold the last value.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn facade_get_racing_set_keeps_the_last_value() {
    for seed in 0..5u64 {
        let cache = cache();
        let key = cache.keys().build_key("race", &format!("k{seed}"), None).unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let (cache, key, stop) = (cache.clone(), key.clone(), stop.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        cache.get::<u64>(&key).await.unwrap();
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        for v in 0..2_000u64 {
            cache.set(&key, &(1_000_000 + v)).await.unwrap();
            if v % 7 == 0 {
                tokio::task::yield_now().await;
            }
        }
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            r.await.unwrap();
        }
        assert_eq!(cache.get::<u64>(&key).await.unwrap(), Some(1_001_999), "seed {seed}");
    }
}
