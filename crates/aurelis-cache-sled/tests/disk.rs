//! Behaviour of the disk tier beyond the conformance suite: restarts, the sweep, the size cap,
//! corrupt entries, configuration and open errors.

use std::path::Path;
use std::time::{Duration, Instant};

use aurelis_cache_core::{Bytes, ErrorKind, Store};
use aurelis_cache_sled::{SledConfig, SledStore};

const HEADER: u64 = 8;

fn value(len: usize) -> Bytes {
    Bytes::from(vec![b'v'; len])
}

fn open(path: &Path) -> SledStore {
    SledStore::builder().path(path).build().expect("open")
}

/// Opens the raw sled database, waiting for the lock a just-dropped store may still hold.
fn open_raw(path: &Path) -> sled::Db {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match sled::open(path) {
            Ok(db) => return db,
            Err(e) if Instant::now() < deadline => {
                eprintln!("waiting for the database lock: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("cannot open {}: {e}", path.display()),
        }
    }
}

/// Polls `check` every 20 ms for up to 10 s.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn entries_and_ttls_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let store = open(&path);
    store.set("forever", value(10), None).await.unwrap();
    store.set("long", value(20), Some(Duration::from_secs(3600))).await.unwrap();
    store.set("short", value(30), Some(Duration::from_millis(300))).await.unwrap();
    let size = store.size_bytes().await.unwrap();
    assert_eq!(size, (7 + 10) + (4 + 20) + (5 + 30) + 3 * HEADER);
    drop(store); // no explicit flush: closing the store writes everything

    let store = open(&path);
    assert_eq!(store.size_bytes().await.unwrap(), size, "size measured again at open");
    assert_eq!(store.get("forever").await.unwrap(), Some(value(10)));
    assert_eq!(store.get("long").await.unwrap(), Some(value(20)));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(store.get("short").await.unwrap(), None, "the TTL is honoured after a restart");
    assert_eq!(store.counters().expirations, 1);
    assert_eq!(store.len().await.unwrap(), 2);
    drop(store);

    let store = open(&path);
    assert_eq!(store.get("short").await.unwrap(), None);
    assert_eq!(store.len().await.unwrap(), 2);
}

#[tokio::test]
async fn the_sweep_removes_expired_entries_without_reads() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::builder()
        .path(dir.path())
        .sweep_interval(Duration::from_millis(100))
        .build()
        .unwrap();
    for i in 0..10 {
        store
            .set(&format!("brief:{i}"), value(100), Some(Duration::from_millis(50)))
            .await
            .unwrap();
    }
    for i in 0..5 {
        store.set(&format!("kept:{i}"), value(100), None).await.unwrap();
    }
    eventually("the sweep to expire 10 entries", || store.counters().expirations == 10).await;
    assert_eq!(store.size_bytes().await.unwrap(), 5 * (6 + 100 + HEADER));
    assert_eq!(store.len().await.unwrap(), 5);
    assert_eq!(store.counters().evictions, 0);
    assert_eq!(store.get("kept:3").await.unwrap(), Some(value(100)));
}

#[tokio::test]
async fn expired_entries_count_in_len_until_removed_on_read() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        SledStore::builder().path(dir.path()).sweep_interval(Duration::ZERO).build().unwrap();
    store.set("a", value(1), Some(Duration::from_millis(30))).await.unwrap();
    store.set("b", value(1), None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(store.len().await.unwrap(), 2, "len is a counter: expired entries until removed");
    assert_eq!(store.counters().expirations, 0, "no sweep ran");
    assert_eq!(store.get("a").await.unwrap(), None);
    assert_eq!(store.counters().expirations, 1, "removed when read");
    assert_eq!(store.len().await.unwrap(), 1);
    assert_eq!(store.size_bytes().await.unwrap(), 1 + 1 + HEADER);
    assert!(!store.delete("a").await.unwrap());
}

#[tokio::test]
async fn the_size_cap_evicts_the_oldest_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::builder().path(dir.path()).max_bytes(10_000).build().unwrap();
    // 4-byte key + 8-byte header + 488-byte value = 500 bytes: 20 entries fit.
    for i in 0..100 {
        store.set(&format!("k{i:03}"), value(488), None).await.unwrap();
        assert!(store.size_bytes().await.unwrap() <= 10_000);
    }
    assert_eq!(store.size_bytes().await.unwrap(), 10_000);
    assert_eq!(store.counters().evictions, 80);
    assert_eq!(store.len().await.unwrap(), 20);
    for i in 0..80 {
        assert_eq!(store.get(&format!("k{i:03}")).await.unwrap(), None, "k{i:03} kept");
    }
    for i in 80..100 {
        assert_eq!(store.get(&format!("k{i:03}")).await.unwrap(), Some(value(488)), "k{i:03}");
    }

    // Writing a key again makes it the newest.
    store.set("k080", value(488), None).await.unwrap();
    store.set("k100", value(488), None).await.unwrap();
    assert_eq!(store.get("k080").await.unwrap(), Some(value(488)));
    assert_eq!(store.get("k081").await.unwrap(), None, "k081 was the oldest write");
    assert_eq!(store.counters().evictions, 81);

    // A bigger entry evicts as many as needed.
    store.set("big", value(1989), None).await.unwrap(); // 3 + 8 + 1989 = 2000
    assert!(store.size_bytes().await.unwrap() <= 10_000);
    assert_eq!(store.counters().evictions, 85);
    assert_eq!(store.get("big").await.unwrap(), Some(value(1989)));
}

#[tokio::test]
async fn the_write_order_survives_a_restart_and_a_smaller_cap() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::builder().path(dir.path()).max_bytes(10_000).build().unwrap();
    // Written in reverse key order, so write order and key order disagree.
    for i in (0..20).rev() {
        store.set(&format!("k{i:03}"), value(488), None).await.unwrap();
    }
    drop(store);
    let store = SledStore::builder().path(dir.path()).max_bytes(5_000).build().unwrap();
    assert_eq!(store.size_bytes().await.unwrap(), 5_000);
    assert_eq!(store.counters().evictions, 10);
    for i in 0..10 {
        assert_eq!(store.get(&format!("k{i:03}")).await.unwrap(), Some(value(488)), "k{i:03}");
    }
    for i in 10..20 {
        assert_eq!(store.get(&format!("k{i:03}")).await.unwrap(), None, "k{i:03}");
    }
}

#[tokio::test]
async fn a_value_bigger_than_the_cap_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::builder().path(dir.path()).max_bytes(1000).build().unwrap();
    store.set("small", value(10), None).await.unwrap();
    let err = store.set("big", value(1000), None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ValueTooLarge);
    assert_eq!(err.tier(), Some("disk"));
    assert!(err.message().contains("1011") && err.message().contains("1000"), "{err}");
    assert_eq!(store.get("big").await.unwrap(), None);
    assert_eq!(store.get("small").await.unwrap(), Some(value(10)), "nothing evicted");
    let err = store.set_many(&[("a", value(1)), ("b", value(5000))], None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ValueTooLarge);
    assert_eq!(store.get("a").await.unwrap(), None, "set_many checks every value first");
    // Exactly the cap fits (and evicts everything else).
    store.set("fit", value(1000 - 3 - 8), None).await.unwrap();
    assert_eq!(store.size_bytes().await.unwrap(), 1000);
    assert_eq!(store.get("small").await.unwrap(), None);
}

#[tokio::test]
async fn the_running_size_matches_a_fresh_measurement_after_concurrent_work() {
    for cap in [None, Some(200_000u64)] {
        let dir = tempfile::tempdir().unwrap();
        let mut builder =
            SledStore::builder().path(dir.path()).sweep_interval(Duration::from_millis(5));
        if let Some(cap) = cap {
            builder = builder.max_bytes(cap);
        }
        let store = std::sync::Arc::new(builder.build().unwrap());
        let tasks: Vec<_> = (0..8)
            .map(|t| {
                let store = store.clone();
                tokio::spawn(async move {
                    for i in 0..300usize {
                        let key = format!("k{}", (i * 7 + t) % 50);
                        match i % 5 {
                            0 => drop(store.delete(&key).await.unwrap()),
                            1 => {
                                let ttl = Some(Duration::from_millis(1));
                                store.set(&key, value(i % 97), ttl).await.unwrap();
                            }
                            2 => drop(store.get(&key).await.unwrap()),
                            _ => store.set(&key, value((i * t) % 3000), None).await.unwrap(),
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        // Let the sweeper take every expired entry, so nothing changes between reading the
        // size and closing the store.
        tokio::time::sleep(Duration::from_millis(100)).await;
        store.purge_expired().await.unwrap();
        let size = store.size_bytes().await.unwrap();
        let len = store.len().await.unwrap();
        if let Some(cap) = cap {
            assert!(size <= cap);
        }
        drop(std::sync::Arc::into_inner(store).expect("no other reference"));
        // Measured afresh: what the raw database holds.
        let (raw_len, raw_size) = {
            let db = open_raw(dir.path());
            let raw_size: u64 =
                db.iter().map(|e| e.unwrap()).map(|(k, v)| (k.len() + v.len()) as u64).sum();
            (db.len() as u64, raw_size)
        };
        assert_eq!((len, size), (raw_len, raw_size), "cap {cap:?}");
        let store = SledStore::builder().path(dir.path()).build().unwrap();
        assert_eq!(store.size_bytes().await.unwrap(), size, "cap {cap:?}");
        assert_eq!(store.len().await.unwrap(), len, "cap {cap:?}");
    }
}

#[tokio::test]
async fn corrupt_entries_found_at_open_are_removed_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(dir.path()).unwrap();
        db.insert("bad", &b"abc"[..]).unwrap();
        db.insert("bad2", &b""[..]).unwrap();
        db.insert("good", &[0u8; 8][..]).unwrap(); // no expiry, empty value
        db.flush().unwrap();
    }
    let store =
        SledStore::builder().path(dir.path()).sweep_interval(Duration::ZERO).build().unwrap();
    assert!(store.recovered_by_walk(), "never closed by the store: measured by a walk");
    assert_eq!(store.corrupt_entries(), 2, "both removed by the walk");
    assert_eq!(store.len().await.unwrap(), 1);
    assert_eq!(store.size_bytes().await.unwrap(), 4 + 8);
    assert_eq!(store.get("bad").await.unwrap(), None);
    assert_eq!(store.get("good").await.unwrap(), Some(Bytes::new()));
    assert_eq!(store.counters().expirations, 0, "corruption is not an expiration");
    drop(store);
    assert_eq!(open_raw(dir.path()).len(), 1);
}

#[tokio::test]
async fn corrupt_entries_are_removed_and_counted_by_reads_and_the_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.set("good", value(3), None).await.unwrap();
    drop(store); // clean close: the next open reads the counters back
    {
        // Written behind the store's back, so not in its counters.
        let db = open_raw(dir.path());
        db.insert("bad", &b"abc"[..]).unwrap();
        db.insert("bad2", &b""[..]).unwrap();
        db.flush().unwrap();
    }
    let store =
        SledStore::builder().path(dir.path()).sweep_interval(Duration::ZERO).build().unwrap();
    assert!(!store.recovered_by_walk());
    assert_eq!(store.corrupt_entries(), 0);
    assert_eq!(store.len().await.unwrap(), 1, "corrupt entries are never counted");

    assert_eq!(store.get("bad").await.unwrap(), None, "a corrupt entry is a miss");
    assert_eq!(store.corrupt_entries(), 1, "removed by the read");
    assert_eq!(store.purge_expired().await.unwrap(), 1, "the sweep removes bad2");
    assert_eq!(store.corrupt_entries(), 2, "removed by the sweep");
    assert_eq!(store.counters().expirations, 0, "corruption is not an expiration");
    assert_eq!(store.len().await.unwrap(), 1);
    assert_eq!(store.size_bytes().await.unwrap(), 4 + 8 + 3, "only the good entry counted");
    assert_eq!(store.get("good").await.unwrap(), Some(value(3)));
    drop(store);
    assert_eq!(open_raw(dir.path()).len(), 1);
}

#[tokio::test]
async fn a_clean_close_records_the_counters_and_the_next_open_does_not_walk() {
    for cap in [None, Some(1_000_000u64)] {
        let dir = tempfile::tempdir().unwrap();
        let build = || {
            let builder = SledStore::builder().path(dir.path()).sweep_interval(Duration::ZERO);
            match cap {
                Some(cap) => builder.max_bytes(cap).build().unwrap(),
                None => builder.build().unwrap(),
            }
        };
        let store = build();
        assert!(store.recovered_by_walk(), "a new database is walked (it is empty)");
        for i in 0..100 {
            store.set(&format!("k{i:03}"), value(i), None).await.unwrap();
        }
        store.set("k000", value(50), None).await.unwrap();
        store.delete("k001").await.unwrap();
        store.set_if_absent("new", value(7), None).await.unwrap();
        let (len, size) = (store.len().await.unwrap(), store.size_bytes().await.unwrap());
        assert_eq!(len, 100, "cap {cap:?}");
        drop(store);

        let store = build();
        assert!(!store.recovered_by_walk(), "cap {cap:?}: walked after a clean close");
        assert_eq!(store.len().await.unwrap(), len, "cap {cap:?}");
        assert_eq!(store.size_bytes().await.unwrap(), size, "cap {cap:?}");
        // The counters keep working from there, and the write order too.
        store.set("k002", value(1), None).await.unwrap();
        store.set("k999", value(1), None).await.unwrap();
        assert_eq!(store.len().await.unwrap(), len + 1, "cap {cap:?}");
        store.close().await.unwrap();

        // Opened without the cap in between, the write order is gone: a capped open walks.
        let store = SledStore::builder().path(dir.path()).build().unwrap();
        assert!(!store.recovered_by_walk(), "cap {cap:?}: an uncapped open needs no order");
        assert_eq!(store.len().await.unwrap(), len + 1);
        drop(store);
        let store = SledStore::builder().path(dir.path()).max_bytes(1_000_000).build().unwrap();
        assert!(store.recovered_by_walk(), "cap {cap:?}: no write order recorded");
        assert_eq!(store.len().await.unwrap(), len + 1);
        drop(store);
        let store = SledStore::builder().path(dir.path()).max_bytes(1_000_000).build().unwrap();
        assert!(!store.recovered_by_walk(), "cap {cap:?}");
        assert_eq!(store.len().await.unwrap(), len + 1);
    }
}

/// sled calls run inline, but each one is a cooperative yield point once the task's budget
/// is spent: a task writing (or reading) in a loop lets the other tasks of its thread run.
#[tokio::test(flavor = "current_thread")]
async fn a_loop_of_inline_operations_yields_to_other_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let other_ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = other_ran.clone();
    // One thread: the spawned task runs only when this one yields.
    tokio::spawn(async move { flag.store(true, std::sync::atomic::Ordering::SeqCst) });
    let seen_after = |ops: &mut u32| {
        *ops += 1;
        other_ran.load(std::sync::atomic::Ordering::SeqCst)
    };
    let mut ops = 0;
    while !seen_after(&mut ops) {
        assert!(ops < 10_000, "10000 inline operations and the other task never ran");
        match ops % 3 {
            0 => store.set(&format!("k{}", ops % 50), value(10), None).await.unwrap(),
            1 => drop(store.get(&format!("k{}", ops % 50)).await.unwrap()),
            _ => drop(store.delete(&format!("k{}", ops % 50)).await.unwrap()),
        }
    }
}

#[test]
fn every_operation_works_without_a_tokio_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    block_on(store.set("p:1", value(1), None)).unwrap();
    block_on(store.set("p:2", value(1), None)).unwrap();
    assert_eq!(block_on(store.len()).unwrap(), 2);
    // Scans run inline when there is no runtime to hand them to.
    assert_eq!(block_on(store.delete_pattern("p:[1]")).unwrap(), 1);
    assert_eq!(block_on(store.delete_prefix("p:")).unwrap(), 1);
    block_on(store.flush()).unwrap();
    block_on(store.clear()).unwrap();
}

/// Polls a future to completion on this thread, outside any tokio runtime.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::yield_now();
    }
}

#[test]
fn missing_path_and_bad_numbers_are_config_errors() {
    let err = SledStore::builder().build().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.message().contains("path"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let err = SledStore::builder().path(dir.path()).max_bytes(0).build().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.message().contains("max_bytes"), "{err}");
    let err = SledStore::builder().path(dir.path()).cache_capacity_bytes(0).build().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    let err = SledStore::builder().path(dir.path()).name("").build().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
}

#[test]
fn a_path_under_a_regular_file_is_a_config_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let path = file.join("db");
    let err = SledStore::builder().path(&path).build().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains(&path.display().to_string()), "{err}");
    assert_eq!(err.tier(), Some("disk"));
}

#[test]
fn a_locked_database_is_a_backend_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path());
    let err = SledStore::builder().path(dir.path()).build().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
    assert!(err.message().contains("locked"), "{err}");
    assert!(err.to_string().contains(&dir.path().display().to_string()), "{err}");
    drop(first);
    open(dir.path());
}

#[test]
fn config_round_trips_through_toml() {
    let text = r#"
        name = "l3"
        path = "/var/cache/aurelis"
        max_bytes = 1073741824
        sweep_interval_secs = 30
        flush_every_ms = 0
        cache_capacity_bytes = 67108864
    "#;
    let config: SledConfig = toml::from_str(text).unwrap();
    assert_eq!(config.name, "l3");
    assert_eq!(config.path.as_deref(), Some(Path::new("/var/cache/aurelis")));
    assert_eq!(config.max_bytes, Some(1 << 30));
    assert_eq!(config.sweep_interval_secs, 30);
    assert_eq!(config.flush_every_ms, None, "0 turns background flushing off");
    assert_eq!(config.cache_capacity_bytes, Some(64 << 20));

    let written = toml::to_string(&config).unwrap();
    assert_eq!(toml::from_str::<SledConfig>(&written).unwrap(), config, "{written}");

    let defaults: SledConfig = toml::from_str("").unwrap();
    assert_eq!(defaults, SledConfig::default());
    assert_eq!(defaults.name, "disk");
    assert_eq!(defaults.sweep_interval_secs, 60);
    assert_eq!(defaults.flush_every_ms, Some(500));
    let written = toml::to_string(&defaults).unwrap();
    assert_eq!(toml::from_str::<SledConfig>(&written).unwrap(), defaults, "{written}");
}

#[test]
fn from_config_opens_the_configured_path() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = SledConfig::default();
    config.name = "l3".into();
    config.path = Some(dir.path().join("nested").join("db"));
    let store = SledStore::from_config(&config).unwrap();
    assert_eq!(store.name(), "l3");
    assert_eq!(store.path(), dir.path().join("nested").join("db"));
    let caps = store.capabilities();
    assert!(caps.persistent && caps.ordered_scan);
    assert!(!caps.shared && !caps.native_ttl && !caps.in_process);
}
