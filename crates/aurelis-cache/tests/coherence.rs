//! The coherence invariant, tested against an oracle: seeded, repeatable, randomized
//! interleavings of reads, writes, deletes and category, tag and clear invalidations on a
//! small key space, through memory over a slow middle tier over disk (delays widen the race
//! windows; in the outage runs the middle tier also fails on and off, opening its breaker).
//!
//! Oracle: every operation takes a ticket from one counter when it starts and when it ends.
//! A read may return the value of write `w` only if `w` started before the read ended, and no
//! write, delete or invalidation of that key started after `w` ended and ended before the
//! read started (that one replaced `w` before the read began). A miss is always allowed.
//!
//! The mixed runs also write with `set_many` and read through every read path of the hot
//! path: `get_shared`, `get_many`, `get_or_compute_with` and a read as another type (which
//! must miss: no such value was ever written), so that decoded memory entries, their upgrades
//! from bytes and loads stored across deletes are judged by the same oracle. A loaded value
//! (tagged as `set` tags) is as old as its loader's start: a read may return it only if no
//! write or delete of its key began after the loader started and ended before the read began.
//! It replaces nothing itself (a load that raced a change is returned but not stored).

mod common;

use common::{Gate, HeldWrites, Rng};

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use aurelis_cache::core::testkit::{FaultControl, FaultyStore, MemoryMapStore};
use aurelis_cache::{BreakerConfig, Cache, SetOptions, Store, Tier};
use parking_lot::Mutex;

const KEYS: u64 = 6;
const TASKS: usize = 4;
const OPS_PER_TASK: usize = 150;

/// xorshift64*: a small seeded generator, so a failing seed replays the same choices.

#[derive(Clone, Debug)]
enum Kind {
    /// Wrote this value.
    Write(u64),
    /// A loader made this value, having started at this ticket (its value is as old as
    /// that). Not a write another read must see: a load that raced a change is not stored.
    Loaded(u64, u64),
    /// Deleted or invalidated the key.
    Remove,
    /// Read this (None: miss).
    Read(Option<u64>),
}

#[derive(Clone, Debug)]
struct Event {
    key: u64,
    /// The operation that made it (for the failure message).
    #[allow(dead_code, reason = "read through `Debug` in the failure messages")]
    op: &'static str,
    kind: Kind,
    start: u64,
    end: u64,
}

fn category(key: u64) -> &'static str {
    if key.is_multiple_of(2) {
        "even"
    } else {
        "odd"
    }
}

fn tag(key: u64) -> String {
    format!("t{}", key % 3)
}

struct Fixture {
    cache: Cache,
    middle_faults: Arc<FaultControl>,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let memory: Arc<dyn Store> =
        Arc::new(aurelis_cache::MokaStore::builder().max_entries(1000).build().expect("moka"));
    let middle = FaultyStore::new(Arc::new(MemoryMapStore::new("middle")));
    let middle_faults = middle.control();
    middle_faults.delay(Duration::from_millis(2));
    let disk = FaultyStore::new(Arc::new(
        aurelis_cache::SledStore::builder().path(dir.path().join("db")).build().expect("sled"),
    ));
    disk.control().delay(Duration::from_millis(1));
    let breaker = BreakerConfig::new(3, Duration::from_millis(20));
    let cache = Cache::builder()
        .tier(Tier::new("memory", memory).priority(3).breaker(breaker.clone()))
        .tier(Tier::new("middle", Arc::new(middle)).priority(2).breaker(breaker.clone()))
        .tier(Tier::new("disk", Arc::new(disk)).priority(1).breaker(breaker))
        .build()
        .expect("cache");
    Fixture { cache, middle_faults, _dir: dir }
}

async fn run(seed: u64, outages: bool) -> Vec<Event> {
    run_with(seed, outages, false).await
}

/// One seeded run; with `mixed`, reads take every read path (see the module docs).
async fn run_with(seed: u64, outages: bool, mixed: bool) -> Vec<Event> {
    let f = fixture();
    let clock = Arc::new(AtomicU64::new(0));
    let values = Arc::new(AtomicU64::new(1));
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (cache, clock, values, log) =
            (f.cache.clone(), clock.clone(), values.clone(), log.clone());
        let faults = f.middle_faults.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(seed.wrapping_mul(31).wrapping_add(t as u64 + 1) | 1);
            for _ in 0..OPS_PER_TASK {
                let key = rng.below(KEYS);
                let id = key.to_string();
                let cat = category(key);
                let roll = rng.below(100);
                if outages && t == 0 && roll < 4 {
                    faults.fail_all(rng.below(2) == 0);
                    continue;
                }
                let start = clock.fetch_add(1, SeqCst);
                let (op, events): (&str, Vec<(u64, Kind)>) = match roll {
                    0..=49 if mixed => mixed_read(&cache, &mut rng, key, &values, &clock).await,
                    0..=49 => {
                        let got = cache.get::<u64>((cat, &id)).await.expect("get");
                        ("get", vec![(key, Kind::Read(got))])
                    }
                    50..=74 if mixed && rng.below(3) == 0 => {
                        // Two keys of one tag in one call (one option set for both).
                        let other = (key + 3) % KEYS;
                        let other_id = other.to_string();
                        let (v, w) = (values.fetch_add(1, SeqCst), values.fetch_add(1, SeqCst));
                        let opts = SetOptions::new().tag(tag(key));
                        let entries = [((cat, id.as_str()), v), ((category(other), &other_id), w)];
                        let _ = cache.set_many(&entries, &opts).await;
                        ("set_many", vec![(key, Kind::Write(v)), (other, Kind::Write(w))])
                    }
                    50..=74 => {
                        let v = values.fetch_add(1, SeqCst);
                        let opts = SetOptions::new().tag(tag(key));
                        // A write may fail only when every tier refused it.
                        match cache.set_with((cat, &id), &v, &opts).await {
                            Ok(()) => ("set", vec![(key, Kind::Write(v))]),
                            Err(_) => ("set (refused)", vec![(key, Kind::Write(v))]),
                        }
                    }
                    75..=87 => {
                        let _ = cache.delete((cat, &id)).await;
                        ("delete", vec![(key, Kind::Remove)])
                    }
                    88..=92 => {
                        cache.invalidate_category(cat).await.expect("invalidate_category");
                        let keys = (0..KEYS).filter(|k| category(*k) == cat);
                        ("invalidate_category", keys.map(|k| (k, Kind::Remove)).collect())
                    }
                    93..=97 => {
                        let tg = tag(key);
                        cache.invalidate_tag(&tg).await.expect("invalidate_tag");
                        let keys = (0..KEYS).filter(|k| tag(*k) == tg);
                        ("invalidate_tag", keys.map(|k| (k, Kind::Remove)).collect())
                    }
                    _ => {
                        cache.clear().await.expect("clear");
                        ("clear", (0..KEYS).map(|k| (k, Kind::Remove)).collect())
                    }
                };
                let end = clock.fetch_add(1, SeqCst);
                let mut log = log.lock();
                for (key, kind) in events {
                    log.push(Event { key, op, kind, start, end });
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    f.middle_faults.fail_all(false);
    let log = log.lock().clone();
    log
}

/// A read of `key` through one of the read paths, picked by `rng`; the events it makes.
async fn mixed_read(
    cache: &Cache,
    rng: &mut Rng,
    key: u64,
    values: &AtomicU64,
    clock: &AtomicU64,
) -> (&'static str, Vec<(u64, Kind)>) {
    let id = key.to_string();
    let cat = category(key);
    match rng.below(5) {
        0 => {
            let got = cache.get::<u64>((cat, &id)).await.expect("get");
            ("get", vec![(key, Kind::Read(got))])
        }
        1 => {
            let got = cache.get_shared::<u64>((cat, &id)).await.expect("get_shared");
            ("get_shared", vec![(key, Kind::Read(got.map(|v| *v)))])
        }
        2 => {
            let other = rng.below(KEYS);
            let other_id = other.to_string();
            let got = cache
                .get_many::<u64>([(cat, id.as_str()), (category(other), other_id.as_str())])
                .await
                .expect("get_many");
            assert_eq!(got.len(), 2, "get_many answers every key");
            ("get_many", vec![(key, Kind::Read(got[0])), (other, Kind::Read(got[1]))])
        }
        3 => {
            // The loader takes a while, so that writes, deletes and invalidations land while
            // it runs (see `Kind::Loaded`).
            let delay = Duration::from_millis(rng.below(4));
            let loaded = AtomicU64::new(0);
            let loader_started = AtomicU64::new(0);
            // Tagged as `set` tags, so that a tag invalidation removes it too (the oracle's
            // model: every value of a key carries the key's tag).
            let options = SetOptions::new().tag(tag(key));
            let got = cache
                .get_or_compute_with((cat, &id), &options, || async {
                    loader_started.store(clock.fetch_add(1, SeqCst), SeqCst);
                    tokio::time::sleep(delay).await;
                    let v = values.fetch_add(1, SeqCst);
                    loaded.store(v, SeqCst);
                    Ok::<u64, std::io::Error>(v)
                })
                .await
                .expect("get_or_compute_with");
            let mut events = Vec::new();
            let loaded = loaded.load(SeqCst);
            if loaded != 0 {
                events.push((key, Kind::Loaded(loaded, loader_started.load(SeqCst))));
            }
            events.push((key, Kind::Read(Some(got))));
            ("get_or_compute_with", events)
        }
        _ => {
            // Only numbers are ever written: a read as a string must miss, and leaves the
            // entries it skipped for readers of their own type.
            let got = cache.get::<String>((cat, &id)).await.expect("get as another type");
            assert_eq!(got, None, "a read as String found a value no one wrote");
            ("get as String", Vec::new())
        }
    }
}

fn check(events: &[Event]) -> Result<usize, String> {
    let mut reads_with_value = 0;
    for read in events {
        let Kind::Read(Some(v)) = read.kind else { continue };
        reads_with_value += 1;
        let Some(write) = events.iter().find(|e| match e.kind {
            Kind::Write(w) | Kind::Loaded(w, _) => w == v,
            _ => false,
        }) else {
            return Err(format!("read {read:?} returned a value never written"));
        };
        // Since when a later change replaces the value: a loaded one is as old as its loader.
        let written = match write.kind {
            Kind::Loaded(_, at) => at,
            _ => write.end,
        };
        if write.key != read.key {
            return Err(format!("read {read:?} returned the value of another key: {write:?}"));
        }
        if write.start > read.end {
            return Err(format!("read {read:?} returned a value written after it: {write:?}"));
        }
        if let Some(replaced) = events.iter().find(|e| {
            e.key == read.key
                && matches!(e.kind, Kind::Write(_) | Kind::Remove)
                && e.start > written
                && e.end < read.start
        }) {
            return Err(format!(
                "read {read:?} returned {write:?}, replaced before the read began by {replaced:?}"
            ));
        }
    }
    Ok(reads_with_value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_read_returns_a_replaced_value() {
    for seed in 1..=12 {
        let events = run(seed, false).await;
        let hits = check(&events).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert!(
            hits > 10,
            "seed {seed}: only {hits} reads found a value; the test exercises little"
        );
    }
}

/// Runs and checks the seeded runs of `seeds`; each must find values in enough reads to mean
/// something.
async fn check_runs(seeds: std::ops::RangeInclusive<u64>, outages: bool, mixed: bool) {
    for seed in seeds {
        let events = run_with(seed, outages, mixed).await;
        let hits = check(&events).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert!(hits > 10, "seed {seed}: only {hits} reads found a value");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_read_returns_a_replaced_value_while_a_tier_fails_on_and_off() {
    check_runs(101..=112, true, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_read_path_returns_a_replaced_value() {
    check_runs(201..=212, false, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_read_path_returns_a_replaced_value_while_a_tier_fails_on_and_off() {
    check_runs(301..=312, true, true).await;
}

/// A store layer whose writes or deletes can be held until released, so a test can stop an
/// operation half way through the tiers.
#[derive(Debug)]
struct Gated {
    inner: Arc<dyn Store>,
    sets: Gate,
    deletes: Gate,
}

impl aurelis_cache::core::layer::LayeredStore for Gated {
    type Inner = dyn Store;

    fn inner(&self) -> &dyn Store {
        &*self.inner
    }

    fn around<'a, T: Send + 'a>(
        &'a self,
        op: aurelis_cache::core::layer::Operation,
        call: aurelis_cache::core::layer::BoxFuture<'a, aurelis_cache::Result<T>>,
    ) -> aurelis_cache::core::layer::BoxFuture<'a, aurelis_cache::Result<T>> {
        use aurelis_cache::core::layer::Operation;
        Box::pin(async move {
            match op {
                Operation::Set | Operation::SetIfAbsent => self.sets.pass().await,
                Operation::Delete => self.deletes.pass().await,
                _ => {}
            }
            call.await
        })
    }
}

/// Polls `done` every millisecond until it holds or `limit` passed; returns whether it held.
async fn within(limit: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while !done() {
        if std::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    true
}

/// Memory over a middle tier whose writes and deletes can be held, over disk.
struct GatedTiers {
    cache: Cache,
    memory: Arc<dyn Store>,
    /// The middle tier's own store, under the gates.
    middle_map: Arc<dyn Store>,
    middle: Arc<Gated>,
    _dir: tempfile::TempDir,
}

fn gated_tiers() -> GatedTiers {
    let dir = tempfile::tempdir().expect("tempdir");
    let memory: Arc<dyn Store> =
        Arc::new(aurelis_cache::MokaStore::builder().max_entries(100).build().expect("moka"));
    let middle_map: Arc<dyn Store> = Arc::new(MemoryMapStore::new("middle"));
    let middle =
        Arc::new(Gated { inner: middle_map.clone(), sets: Gate::new(), deletes: Gate::new() });
    let disk: Arc<dyn Store> = Arc::new(
        aurelis_cache::SledStore::builder().path(dir.path().join("db")).build().expect("sled"),
    );
    let cache = Cache::builder()
        .tier(Tier::new("memory", memory.clone()).priority(3))
        .tier(Tier::new("middle", middle.clone()).priority(2))
        .tier(Tier::new("disk", disk).priority(1))
        .build()
        .expect("cache");
    GatedTiers { cache, memory, middle_map, middle, _dir: dir }
}

/// With `op` held at its write into the middle tier, deletes `key`, lets `op` go on and
/// reads `key` once the delete returned and `op` finished, or stopped again at the middle
/// tier on its way to remove what it wrote (held there, so that what it wrote above stays
/// readable). Returns what that read saw.
async fn read_after_a_delete_racing<T>(
    f: &GatedTiers,
    key: (&'static str, &'static str),
    op: &tokio::task::JoinHandle<T>,
) -> Option<String> {
    assert!(
        within(Duration::from_secs(30), || f.middle.sets.stopped.load(SeqCst) == 1).await,
        "the operation never reached the middle tier"
    );
    let delete = {
        let cache = f.cache.clone();
        tokio::spawn(async move { cache.delete(key).await })
    };
    // Without the key locks the delete returns at once; with them it waits for `op`.
    if within(Duration::from_secs(1), || delete.is_finished()).await {
        f.middle.deletes.hold(true);
    }
    f.middle.sets.hold(false);
    assert!(
        within(Duration::from_secs(30), || {
            delete.is_finished() && (op.is_finished() || f.middle.deletes.stopped.load(SeqCst) > 0)
        })
        .await,
        "the delete or the operation never finished"
    );
    let seen = f.cache.get::<String>(key).await.expect("get");
    f.middle.deletes.hold(false);
    delete.await.expect("delete").expect("deleted");
    seen
}

/// A load whose store is half way through the tiers when the key is deleted: once the delete
/// returned, no read sees the loaded value (it was written before the delete, or not at all).
/// Before the key locks, the delete ran past the store, which then wrote the upper tiers and
/// removed its value again only after a read could find it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_after_a_delete_never_sees_a_load_that_raced_it() {
    let f = gated_tiers();
    let key = ("doc", "raced");
    // The load's store stops at the middle tier (the disk, written first, has the value).
    f.middle.sets.hold(true);
    let load = {
        let cache = f.cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_compute(key, || async { Ok::<_, std::io::Error>("loaded".to_string()) })
                .await
        })
    };
    let seen = read_after_a_delete_racing(&f, key, &load).await;
    assert_eq!(load.await.expect("load").expect("loaded"), "loaded");
    assert_eq!(seen, None, "a read after the delete returned saw the load that raced it");
    assert_eq!(f.cache.get::<String>(key).await.expect("get"), None);
}

/// A read copying a lower tier's hit up (write-back) while the key is deleted: once the
/// delete returned, no read sees the deleted value, and none is left in any tier. Before the
/// key locks, the delete ran past the copy; the copy landed in the middle tier after it, a
/// later read copied it into the memory tier, and the first read's removal of its own copy
/// (in the middle tier only) left the deleted value in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_back_racing_a_delete_leaves_nothing_behind() {
    let f = gated_tiers();
    let key = ("doc", "copied");
    f.cache.set(key, &"deleted".to_string()).await.expect("set");
    // Only the disk tier holds it (as after the upper tiers evicted it).
    let text = f.cache.keys().build_key("doc", "copied", None).expect("key");
    f.memory.delete(text.as_str()).await.expect("memory delete");
    f.middle_map.delete(text.as_str()).await.expect("middle delete");
    // The read's copy into the middle tier stops there (the memory tier is copied first).
    f.middle.sets.hold(true);
    let read = {
        let cache = f.cache.clone();
        tokio::spawn(async move { cache.get::<String>(key).await })
    };
    let seen = read_after_a_delete_racing(&f, key, &read).await;
    assert_eq!(read.await.expect("read").expect("get").as_deref(), Some("deleted"));
    assert_eq!(seen, None, "a read after the delete returned saw the deleted value");
    assert_eq!(f.cache.get::<String>(key).await.expect("get"), None, "the deleted value is back");
}

/// The defect of issue 6, by hand: a value replaced while its tier was down comes back once
/// the tier answers again.
#[tokio::test]
async fn writes_and_deletes_made_while_a_tier_is_down_are_not_undone_when_it_returns() {
    let f = fixture();
    let cache = &f.cache;
    f.middle_faults.delay(Duration::ZERO);
    for i in 0..20 {
        cache.set(("k", &i.to_string()), &1u64).await.unwrap();
        cache.set(("d", &i.to_string()), &1u64).await.unwrap();
    }
    f.middle_faults.fail_all(true);
    for i in 0..20 {
        cache.set(("k", &i.to_string()), &2u64).await.unwrap();
        cache.delete(("d", &i.to_string())).await.unwrap();
    }
    assert!(cache.is_tier_down("middle") || cache.tier_pending("middle") > 0);
    f.middle_faults.fail_all(false);
    // Whatever the repair task has done by now, no read may see the old state.
    for _ in 0..3 {
        for i in 0..20 {
            let id = i.to_string();
            assert_eq!(cache.get::<u64>(("k", &id)).await.unwrap(), Some(2), "old value came back");
            assert_eq!(
                cache.get::<u64>(("d", &id)).await.unwrap(),
                None,
                "deleted value came back"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        common::eventually(Duration::from_secs(5), || async {
            !cache.is_tier_down("middle") && cache.tier_pending("middle") == 0
        })
        .await,
        "the tier never caught up"
    );
}

/// A read that finds an invalidated entry removes it in a task of its own. A value stored
/// under the key before that task ran (by a load or a set right after the read) is not
/// removed with it: before the removal checked that the key had not changed since, it
/// deleted the new value (a lost write, and a second load).
#[tokio::test]
async fn a_value_stored_after_a_read_found_an_invalidated_entry_is_not_removed_with_it() {
    for (round, by_load) in [(1u64, true), (2, false)] {
        let memory: Arc<dyn Store> = Arc::new(aurelis_cache::MokaStore::builder().build().unwrap());
        let cache = Cache::builder().tier(Tier::new("memory", memory)).build().unwrap();
        cache.set(("docs", "a"), &0u64).await.unwrap();
        cache.invalidate_category("docs").await.unwrap();
        // Finds the invalidated entry and queues its removal (this runtime has one thread:
        // the removal runs once this task yields).
        assert_eq!(cache.get::<u64>(("docs", "a")).await.unwrap(), None);
        if by_load {
            let loaded = cache
                .get_or_compute(("docs", "a"), || async { Ok::<_, std::io::Error>(round) })
                .await
                .unwrap();
            assert_eq!(loaded, round);
        } else {
            cache.set(("docs", "a"), &round).await.unwrap();
        }
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            cache.get::<u64>(("docs", "a")).await.unwrap(),
            Some(round),
            "the value stored after the read was removed (by_load: {by_load})"
        );
    }
}

/// An invalidation returns once the clock reached its mark's time, so a value written right
/// after it returns is never covered by it, even within the same millisecond (here, many
/// times in a row). Under a paused test clock the wait does not move that clock on (it yields
/// instead of sleeping), so applications' paused-time tests see no jump.
#[tokio::test(start_paused = true)]
async fn a_write_right_after_an_invalidation_returned_is_kept() {
    let memory: Arc<dyn Store> = Arc::new(aurelis_cache::MokaStore::builder().build().unwrap());
    let cache = Cache::builder().tier(Tier::new("memory", memory)).build().unwrap();
    let started = tokio::time::Instant::now();
    for round in 0..200u64 {
        cache.invalidate_category("docs").await.unwrap();
        cache.set(("docs", "a"), &round).await.unwrap();
        assert_eq!(cache.get::<u64>(("docs", "a")).await.unwrap(), Some(round), "round {round}");
        cache.invalidate_tag("t").await.unwrap();
        cache.set_with(("docs", "b"), &round, &SetOptions::new().tag("t")).await.unwrap();
        assert_eq!(cache.get::<u64>(("docs", "b")).await.unwrap(), Some(round), "round {round}");
    }
    assert!(
        tokio::time::Instant::now() - started < Duration::from_secs(1),
        "the paused clock moved {:?}",
        tokio::time::Instant::now() - started
    );
}

/// A backplane the test drives by hand: it only hands the events it is given to the cache.
#[derive(Default)]
struct HandBackplane(Mutex<Option<aurelis_cache::core::BackplaneHandler>>);

impl std::fmt::Debug for HandBackplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HandBackplane")
    }
}

#[async_trait::async_trait]
impl aurelis_cache::core::Backplane for HandBackplane {
    async fn publish(
        &self,
        _msg: &aurelis_cache::core::InvalidationMessage,
    ) -> aurelis_cache::Result<()> {
        Ok(())
    }

    async fn subscribe(
        &self,
        handler: aurelis_cache::core::BackplaneHandler,
    ) -> aurelis_cache::Result<()> {
        *self.0.lock() = Some(handler);
        Ok(())
    }
}

/// After a backplane gap (invalidations from other processes may have been missed), what
/// this process's disk tier holds is unproven: also an entry written in the same millisecond
/// just before the gap was seen. Before, the gap's local mark took the clock's millisecond,
/// which covers only entries created before it, and such an entry stayed readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_written_just_before_a_backplane_gap_is_unproven() {
    let dir = tempfile::tempdir().unwrap();
    let disk: Arc<dyn Store> =
        Arc::new(aurelis_cache::SledStore::builder().path(dir.path()).build().unwrap());
    let backplane = Arc::new(HandBackplane::default());
    let cache = Cache::builder()
        .tier(Tier::new("disk", disk))
        .backplane(backplane.clone())
        .build_connected()
        .await
        .unwrap();
    let gap = || {
        let handler = backplane.0.lock().clone().expect("subscribed");
        handler(aurelis_cache::core::BackplaneEvent::Reconnected);
    };
    for round in 0..20u64 {
        let id = round.to_string();
        cache.set(("docs", id.as_str()), &round).await.unwrap();
        gap();
        let mut found = Some(round);
        for _ in 0..200 {
            found = cache.get::<u64>(("docs", id.as_str())).await.unwrap();
            if found.is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(found, None, "round {round}: an entry written before the gap is still served");
    }
}

/// Memory whose writes can be held, over disk.
struct HeldTiers {
    cache: Cache,
    memory: Arc<HeldWrites>,
    disk: Arc<dyn Store>,
    _dir: tempfile::TempDir,
}

fn held_memory_over_disk() -> HeldTiers {
    let dir = tempfile::tempdir().expect("tempdir");
    let memory = Arc::new(HeldWrites::new(Arc::new(
        aurelis_cache::MokaStore::builder().max_entries(100).build().expect("moka"),
    )));
    let disk: Arc<dyn Store> = Arc::new(
        aurelis_cache::SledStore::builder().path(dir.path().join("db")).build().expect("sled"),
    );
    let cache = Cache::builder()
        .tier(Tier::new("memory", memory.clone()).priority(2))
        .tier(Tier::new("disk", disk.clone()).priority(1))
        .build()
        .expect("cache");
    HeldTiers { cache, memory, disk, _dir: dir }
}

/// A write and a delete of one key at once in one process: the delete runs while the write is
/// between its tiers (disk written, memory not yet). The tiers must agree afterwards. When the
/// delete held the key's lock shared, as the write does, it cleared memory before the write
/// filled it: memory kept the value the disk no longer had, served until it expired and then
/// gone, and another process sharing the lower tier never saw it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_during_a_write_between_tiers_leaves_the_tiers_agreeing() {
    let HeldTiers { cache, memory, disk, _dir } = held_memory_over_disk();
    let key = cache.keys().build_key("doc", "k", None).unwrap();

    memory.gate.hold(true);
    let write = tokio::spawn({
        let cache = cache.clone();
        async move { cache.set(("doc", "k"), &1u64).await }
    });
    memory.gate.wait_stopped().await;
    assert!(disk.get(key.as_str()).await.unwrap().is_some(), "the disk holds the write");
    let delete = tokio::spawn({
        let cache = cache.clone();
        async move { cache.delete(("doc", "k")).await }
    });
    // Let the delete run as far as it can while the write is held (nothing is timed).
    tokio::time::sleep(Duration::from_millis(200)).await;
    memory.gate.hold(false);
    write.await.unwrap().unwrap();
    delete.await.unwrap().unwrap();
    let in_memory = memory.get(key.as_str()).await.unwrap().is_some();
    let on_disk = disk.get(key.as_str()).await.unwrap().is_some();
    assert_eq!(in_memory, on_disk, "memory and disk disagree after a write and a delete");
    assert_eq!(cache.get::<u64>(("doc", "k")).await.unwrap().is_some(), on_disk);
}

/// Two writes of one key at once in one process, the second made while the first is between
/// its tiers (disk written, memory not yet): the tiers must end up holding the same one. When
/// writes held the key's lock shared, the second walked past the first, and memory kept the
/// first's value while the disk kept the second's (served until memory dropped it, then the
/// other value).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writes_of_one_key_at_once_leave_the_tiers_agreeing() {
    let HeldTiers { cache, memory, disk, _dir } = held_memory_over_disk();
    let key = cache.keys().build_key("doc", "k", None).unwrap();

    memory.gate.hold_first();
    let first = tokio::spawn({
        let cache = cache.clone();
        async move { cache.set(("doc", "k"), &1u64).await }
    });
    memory.gate.wait_stopped().await;
    let second = tokio::spawn({
        let cache = cache.clone();
        async move { cache.set(("doc", "k"), &2u64).await }
    });
    // Let the second write run as far as it can while the first is held (nothing is timed).
    tokio::time::sleep(Duration::from_millis(200)).await;
    memory.gate.hold(false);
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
    let in_memory = memory.get(key.as_str()).await.unwrap();
    let on_disk = disk.get(key.as_str()).await.unwrap();
    assert!(on_disk.is_some());
    assert_eq!(in_memory, on_disk, "memory and disk keep different writes of the key");
}
