//! The coherence invariant across instances sharing a real Redis: two caches (memory, a slowed
//! Redis tier shared by both, a disk tier each, the stream backplane) run seeded random
//! interleavings of reads, writes, deletes and category/tag invalidations on a small key space.
//!
//! Oracle: as in `coherence.rs`, a read may not return a value replaced before it began, where
//! "replaced" counts an instance's own operations once they returned, and the other
//! instance's operations once this instance had applied their invalidation before the read
//! began. Each instance publishes its invalidations in order (`published` counts them as they
//! are queued) and a receiver counts those it applied (`remote_applied`); an operation whose
//! position in its publisher's order is at most the reader's applied count at the read's start
//! had reached the reader. (Taking the publisher's count after the operation returned can only
//! overstate the position, which makes the oracle check fewer reads, never wrongly.)
//!
//! The mixed run reads through `get_shared`, `get_many` and `get_or_compute_with` as well, so
//! that decoded memory entries and values stored by a load are judged by the same oracle. A
//! loaded value may be read back as a write's may, but it replaces nothing (as in
//! `coherence.rs`): a load whose key changed while it ran returns its value unstored and
//! unannounced. Counting it as a write made the oracle flag reads of the value it did not
//! replace (about one run in 40 under load).

#![cfg(feature = "redis")]

mod common;

use common::{HeldWrites, Rng};

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use aurelis_cache::core::testkit::FaultyStore;
use aurelis_cache::{
    BreakerConfig, Cache, MokaStore, RedisBackplane, RedisConfig, RedisStore, SetOptions,
    SledStore, Store, Tier,
};
use aurelis_redis_harness::RedisServer;
use parking_lot::Mutex;

const KEYS: u64 = 6;
const TASKS_PER_INSTANCE: usize = 2;
const OPS_PER_TASK: usize = 120;

#[derive(Clone, Debug)]
enum Kind {
    Write(u64),
    /// A value a load returned. Like a write, a read may return it; unlike a write it
    /// replaces nothing: a load whose key changed while it ran (here, also when the other
    /// instance's invalidation of an older write arrived meanwhile) returns its value without
    /// storing or announcing it, so the older value may rightly stay (as in `coherence.rs`).
    Loaded(u64),
    Remove,
    /// What was read, and how many of the other instance's invalidations the reader had
    /// applied when the read began.
    Read(Option<u64>, u64),
}

#[derive(Clone, Debug)]
struct Event {
    instance: usize,
    key: u64,
    kind: Kind,
    start: u64,
    end: u64,
    /// For writes and removals: the operation's position in its instance's publish order.
    seq: u64,
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

async fn instance(config: &RedisConfig, dir: &std::path::Path) -> Cache {
    let memory: Arc<dyn Store> = Arc::new(MokaStore::builder().max_entries(1000).build().unwrap());
    let redis = FaultyStore::new(Arc::new(RedisStore::from_config(config).await.unwrap()));
    redis.control().delay(Duration::from_millis(2));
    let disk: Arc<dyn Store> = Arc::new(SledStore::builder().path(dir).build().unwrap());
    let breaker = BreakerConfig::new(50, Duration::from_millis(50));
    Cache::builder()
        .tier(Tier::new("memory", memory).priority(3).breaker(breaker.clone()))
        .tier(Tier::new("redis", Arc::new(redis)).priority(2).breaker(breaker.clone()))
        .tier(Tier::new("disk", disk).priority(1).breaker(breaker))
        .backplane(Arc::new(RedisBackplane::new(config, "aurelis", "v1").unwrap()))
        .build_connected()
        .await
        .unwrap()
}

async fn run(seed: u64, mixed: bool) -> Vec<Event> {
    let server = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let mut config = RedisConfig::default();
    config.url = server.url();
    config.timeout_ms = 2_000;
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let caches = [instance(&config, dirs[0].path()).await, instance(&config, dirs[1].path()).await];
    let clock = Arc::new(AtomicU64::new(0));
    let values = Arc::new(AtomicU64::new(1));
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for (i, cache) in caches.iter().enumerate() {
        for t in 0..TASKS_PER_INSTANCE {
            let (cache, clock, values, log) =
                (cache.clone(), clock.clone(), values.clone(), log.clone());
            tasks.push(tokio::spawn(async move {
                let mut rng = Rng((seed * 131 + (i * 7 + t) as u64 + 1) | 1);
                for _ in 0..OPS_PER_TASK {
                    let key = rng.below(KEYS);
                    let id = key.to_string();
                    let cat = category(key);
                    let roll = rng.below(100);
                    let applied = cache.stats().snapshot().remote_applied;
                    let start = clock.fetch_add(1, SeqCst);
                    let events: Vec<(u64, Kind)> = match roll {
                        0..=54 if mixed => {
                            mixed_read(&cache, &mut rng, key, applied, &values).await
                        }
                        0..=54 => {
                            let got = cache.get::<u64>((cat, &id)).await.expect("get");
                            vec![(key, Kind::Read(got, applied))]
                        }
                        55..=79 => {
                            let v = values.fetch_add(1, SeqCst);
                            let opts = SetOptions::new().tag(tag(key));
                            cache.set_with((cat, &id), &v, &opts).await.expect("set");
                            vec![(key, Kind::Write(v))]
                        }
                        80..=91 => {
                            cache.delete((cat, &id)).await.expect("delete");
                            vec![(key, Kind::Remove)]
                        }
                        92..=96 => {
                            cache.invalidate_category(cat).await.expect("invalidate_category");
                            (0..KEYS)
                                .filter(|k| category(*k) == cat)
                                .map(|k| (k, Kind::Remove))
                                .collect()
                        }
                        _ => {
                            let tg = tag(key);
                            cache.invalidate_tag(&tg).await.expect("invalidate_tag");
                            (0..KEYS).filter(|k| tag(*k) == tg).map(|k| (k, Kind::Remove)).collect()
                        }
                    };
                    let end = clock.fetch_add(1, SeqCst);
                    let seq = cache.stats().snapshot().published;
                    let mut log = log.lock();
                    for (key, kind) in events {
                        log.push(Event { instance: i, key, kind, start, end, seq });
                    }
                }
            }));
        }
    }
    for t in tasks {
        t.await.expect("task");
    }
    let events = log.lock().clone();
    for cache in &caches {
        cache.close(Duration::from_secs(5)).await.unwrap();
    }
    events
}

/// A read of `key` through `get_shared`, `get_many` or `get_or_compute_with`, picked by `rng`.
async fn mixed_read(
    cache: &Cache,
    rng: &mut Rng,
    key: u64,
    applied: u64,
    values: &AtomicU64,
) -> Vec<(u64, Kind)> {
    let id = key.to_string();
    let cat = category(key);
    match rng.below(3) {
        0 => {
            let got = cache.get_shared::<u64>((cat, &id)).await.expect("get_shared");
            vec![(key, Kind::Read(got.map(|v| *v), applied))]
        }
        1 => {
            let other = rng.below(KEYS);
            let other_id = other.to_string();
            let got = cache
                .get_many::<u64>([(cat, id.as_str()), (category(other), other_id.as_str())])
                .await
                .expect("get_many");
            vec![(key, Kind::Read(got[0], applied)), (other, Kind::Read(got[1], applied))]
        }
        _ => {
            let delay = Duration::from_millis(rng.below(4));
            let loaded = AtomicU64::new(0);
            let options = SetOptions::new().tag(tag(key));
            let got = cache
                .get_or_compute_with((cat, &id), &options, || async {
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
                events.push((key, Kind::Loaded(loaded)));
            }
            events.push((key, Kind::Read(Some(got), applied)));
            events
        }
    }
}

fn check(events: &[Event]) -> Result<(usize, usize), String> {
    let (mut with_value, mut remote_checks) = (0, 0);
    for read in events {
        let Kind::Read(found, applied) = read.kind else { continue };
        // Reads constrained by an operation of the other instance that had reached them.
        if events.iter().any(|e| {
            e.key == read.key
                && e.instance != read.instance
                && matches!(e.kind, Kind::Write(_) | Kind::Remove)
                && e.seq <= applied
                && e.end < read.start
        }) {
            remote_checks += 1;
        }
        let Some(v) = found else { continue };
        with_value += 1;
        let Some(write) =
            events.iter().find(|e| matches!(e.kind, Kind::Write(w) | Kind::Loaded(w) if w == v))
        else {
            return Err(format!("read {read:?} returned a value never written"));
        };
        if write.key != read.key || write.start > read.end {
            return Err(format!("read {read:?} returned {write:?}"));
        }
        let reached = |e: &Event| {
            if e.instance == read.instance {
                e.end < read.start
            } else {
                e.seq <= applied && e.end < read.start
            }
        };
        for e in events.iter().filter(|e| {
            e.key == read.key
                && matches!(e.kind, Kind::Write(_) | Kind::Remove)
                && e.start > write.end
        }) {
            if reached(e) {
                let mut history: Vec<&Event> =
                    events.iter().filter(|x| x.key == read.key).collect();
                history.sort_by_key(|x| x.start);
                let history: Vec<String> = history.iter().map(|x| format!("{x:?}")).collect();
                return Err(format!(
                    "read {read:?} returned {write:?}, replaced before the read began by {e:?}\nhistory of the key:\n{}",
                    history.join("\n")
                ));
            }
        }
    }
    Ok((with_value, remote_checks))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_instance_serves_a_value_replaced_by_an_invalidation_it_received() {
    let mut checked = 0;
    for seed in 1..=4 {
        let events = run(seed, false).await;
        let (hits, remote) = check(&events).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert!(hits > 10, "seed {seed}: only {hits} reads found a value");
        checked += remote;
    }
    assert!(
        checked > 20,
        "only {checked} reads were checked against the other instance's operations"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_instance_serves_a_replaced_value_through_any_read_path() {
    let mut checked = 0;
    for seed in 11..=14 {
        let events = run(seed, true).await;
        let (hits, remote) = check(&events).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert!(hits > 10, "seed {seed}: only {hits} reads found a value");
        checked += remote;
    }
    assert!(
        checked > 20,
        "only {checked} reads were checked against the other instance's operations"
    );
}

/// An invalidation covers every entry written before it, whichever process wrote it, even
/// when the writer had just made an invalidation of its own (a mark takes the next
/// millisecond). Before marks waited for the clock to reach their time, the writer stamped
/// its entry with its own mark's time, a millisecond ahead of the clock; the other process's
/// invalidation, made after the write within that millisecond, took the same time and did
/// not cover the entry, which was then served. The two caches share a Redis tier and no
/// backplane, so the writer's mark does not reach the other (as while it is in flight).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_covers_an_entry_another_process_wrote_just_before_it() {
    let server = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let mut config = RedisConfig::default();
    config.url = server.url();
    let redis_only = || async {
        let store: Arc<dyn Store> = Arc::new(RedisStore::from_config(&config).await.unwrap());
        Cache::builder().tier(Tier::new("redis", store)).build_connected().await.unwrap()
    };
    let (writer, other) = (redis_only().await, redis_only().await);
    for round in 0..50u64 {
        let category = format!("c{round}");
        writer.invalidate_category(&format!("elsewhere{round}")).await.unwrap();
        writer.set((category.as_str(), "k"), &round).await.unwrap();
        other.invalidate_category(&category).await.unwrap();
        assert_eq!(
            other.get::<u64>((category.as_str(), "k")).await.unwrap(),
            None,
            "round {round}: an entry written before the invalidation was served after it"
        );
    }
}

/// A write of a key here and another process's delete of it, the delete announced while the
/// write is between its tiers (its value in Redis and on disk, memory not written yet): both
/// processes end up agreeing with Redis. When the announcement was applied at once (the key's
/// lock held shared, as by writes), it cleared memory before the write filled it, and this
/// process served the deleted value from memory while the other read nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_announced_while_a_write_is_between_tiers_leaves_both_processes_agreeing() {
    let server = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let mut config = RedisConfig::default();
    config.url = server.url();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let gate =
        Arc::new(HeldWrites::new(Arc::new(MokaStore::builder().max_entries(100).build().unwrap())));
    let build = |memory: Arc<dyn Store>, dir: &std::path::Path| {
        let config = config.clone();
        let dir = dir.to_path_buf();
        async move {
            let redis: Arc<dyn Store> = Arc::new(RedisStore::from_config(&config).await.unwrap());
            let disk: Arc<dyn Store> = Arc::new(SledStore::builder().path(dir).build().unwrap());
            Cache::builder()
                .tier(Tier::new("memory", memory).priority(3))
                .tier(Tier::new("redis", redis).priority(2))
                .tier(Tier::new("disk", disk).priority(1))
                .backplane(Arc::new(RedisBackplane::new(&config, "aurelis", "v1").unwrap()))
                .build_connected()
                .await
                .unwrap()
        }
    };
    let writer = build(gate.clone(), dirs[0].path()).await;
    let deleter =
        build(Arc::new(MokaStore::builder().max_entries(100).build().unwrap()), dirs[1].path())
            .await;

    gate.gate.hold(true);
    let write = tokio::spawn({
        let writer = writer.clone();
        async move { writer.set(("doc", "k"), &1u64).await }
    });
    // The write stops at memory: Redis and disk hold its value.
    gate.gate.wait_stopped().await;
    assert!(deleter.delete(("doc", "k")).await.unwrap(), "Redis held the write's value");
    // Give the announcement time to arrive here (it is applied at once, or waits for the
    // write; either way nothing is asserted on the time).
    tokio::time::sleep(Duration::from_millis(300)).await;
    gate.gate.hold(false);
    write.await.unwrap().unwrap();
    let mut waited = 0;
    while writer.stats().snapshot().remote_applied == 0 {
        assert!(waited < 10_000, "the delete's announcement never arrived");
        tokio::time::sleep(Duration::from_millis(1)).await;
        waited += 1;
    }
    assert_eq!(deleter.get::<u64>(("doc", "k")).await.unwrap(), None);
    assert_eq!(
        writer.get::<u64>(("doc", "k")).await.unwrap(),
        None,
        "this process serves a value the other deleted and Redis no longer holds"
    );
    for cache in [writer, deleter] {
        cache.close(Duration::from_secs(5)).await.unwrap();
    }
}
