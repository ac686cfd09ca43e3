//! Memory per cached entry beyond the payload (not a criterion timing): the facade's memory
//! tier (a `MokaStore` layer written through `Cache::set`) against raw moka, foyer's in-memory
//! cache and the `cached` crate holding the same keys and `String` values.
//!
//! Every row is measured in a child process of its own (this program run again with
//! `AURELIS_MEMORY_OVERHEAD_ROW` set): memory a dropped store frees later, such as moka's
//! deferred reclamation, would otherwise be counted against the next store measured (it made
//! one row read 0 bytes per entry).
//!
//! Method: a counting global allocator (`cap::Cap` over the system allocator) gives the bytes
//! the program has asked for and not yet freed. For each store and value size, the live bytes
//! are read before building a store with a capacity of [`ENTRIES`] entries and after filling it
//! with that many distinct entries (its pending maintenance run); the difference divided by
//! the entries it then holds is the cost of one entry of a full store, its fixed structures
//! (preallocated tables, shards) included. The payload is the key's bytes plus the value's bytes
//! (the same key strings everywhere: the facade's key for that identifier), so the overhead
//! column is what each store adds around them: map nodes, hashes, LRU/frequency bookkeeping,
//! timestamps and, for the facade, its entry envelope (header, expiry, checksum, codec
//! framing). Allocator rounding and fragmentation are not included (the counter sees requested
//! sizes, not what malloc reserves).
//!
//! The workspace forbids `unsafe_code`, and a `forbid` cannot be lifted by an `allow` in one
//! file, so the `GlobalAlloc` implementation comes from the small `cap` crate instead of being
//! written here.
//!
//! Writes `<target dir>/aurelis-bench/memory_overhead.json` (see `output_dir` in the benches'
//! lib), which `cargo xtask bench` puts in docs/performance.md. Takes the same filter argument
//! as the criterion targets: it runs when the filter is a part of `memory_overhead`.

use std::alloc::System;
use std::sync::Arc;
use std::time::Duration;

use aurelis_cache::{Cache, KeyBuilder, MokaStore, Store, Tier};
use aurelis_cache_benches::{json_string, plain_run, value, write_output, PlainRun, CATEGORY};
use cap::Cap;

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

/// Entries inserted per measurement.
const ENTRIES: usize = 100_000;
/// Value sizes measured, in bytes.
const VALUE_SIZES: [usize; 2] = [1024, 100];
/// TTL where the store has one (the default memory tier's 300 s).
const TTL: Duration = Duration::from_secs(300);

/// One row of the JSON file.
struct Row {
    name: String,
    bytes_per_entry: f64,
    payload_bytes: f64,
}

/// The live bytes of the program.
fn live() -> usize {
    ALLOCATOR.allocated()
}

/// The identifier of entry `i`: every identifier, so every key, has the same length.
fn identifier(i: usize) -> String {
    format!("item-{i:06}")
}

/// Runs `fill` between two readings of the live bytes and returns the bytes per entry held.
/// `fill` builds a store, fills it and returns it with the number of entries it holds (the
/// store is dropped after the second reading).
fn per_entry<S>(fill: impl FnOnce() -> (S, usize)) -> f64 {
    let before = live();
    let (store, held) = fill();
    let after = live();
    drop(store);
    assert!(held > 0, "the store holds nothing");
    after.saturating_sub(before) as f64 / held as f64
}

/// The stores measured, in order (the rows of one value size).
const STORES: usize = 8;

/// Measures the stores of one value size; `only`: just the store of that index.
fn measure(
    rt: &tokio::runtime::Runtime,
    entries: usize,
    value_len: usize,
    only: Option<usize>,
) -> Vec<Row> {
    let value = value(value_len);
    let keys = KeyBuilder::new("aurelis", "v1").expect("key builder");
    let key = |i: usize| keys.build_key(CATEGORY, &identifier(i), None).expect("key").into_string();
    let payload = (key(0).len() + value_len) as f64;
    let capacity = entries as u64;
    let mut rows = Vec::new();
    let mut row = |name: &str, bytes_per_entry: f64| {
        eprintln!(
            "memory_overhead: {name:<52} {bytes_per_entry:>6.0} bytes per entry, payload \
             {payload:.0}, overhead {:.0}",
            bytes_per_entry - payload
        );
        rows.push(Row { name: name.to_owned(), bytes_per_entry, payload_bytes: payload });
    };

    if only.is_none_or(|o| o == 0) {
        // Ours: the memory tier, written through the facade (the envelope is what is stored).
        let facade = facade_per_entry(rt, capacity, entries, &value, false);
        row(&format!("aurelis facade, memory tier (MokaStore), {value_len} B values"), facade);
    }

    if only.is_none_or(|o| o == 1) {
        // Ours, as the memory tier keeps entries once read: decoded (`Arc<String>` and metadata).
        let decoded = facade_per_entry(rt, capacity, entries, &value, true);
        row(
            &format!("aurelis facade, memory tier, decoded after a read, {value_len} B values"),
            decoded,
        );
    }

    if only.is_none_or(|o| o == 2) {
        // Raw moka, String keys and values, bounded by entries with a TTL like the memory tier.
        let raw_moka = per_entry(|| {
            let moka: moka::future::Cache<String, String> =
                moka::future::Cache::builder().max_capacity(capacity).time_to_live(TTL).build();
            let held = rt.block_on(async {
                for i in 0..entries {
                    moka.insert(key(i), value.clone()).await;
                }
                moka.run_pending_tasks().await;
                moka.entry_count()
            });
            (moka, held as usize)
        });
        row(&format!("raw moka, String to String, {value_len} B values"), raw_moka);
    }

    if only.is_none_or(|o| o == 3) {
        // foyer's in-memory cache (its default weigher counts 1 per entry).
        let foyer_bytes = per_entry(|| {
            let foyer: foyer::Cache<String, String> = foyer::CacheBuilder::new(entries).build();
            for i in 0..entries {
                foyer.insert(key(i), value.clone());
            }
            let held = foyer.usage();
            (foyer, held)
        });
        row(&format!("foyer in-memory cache, {value_len} B values"), foyer_bytes);
    }

    if only.is_none_or(|o| o == 4) {
        // The `cached` crate's concurrent bounded store with a TTL.
        let cached_bytes = per_entry(|| {
            let cached: cached::ShardedLruTtlCache<String, String> =
                cached::ShardedLruTtlCache::new(entries, TTL);
            for i in 0..entries {
                cached.set(key(i), value.clone());
            }
            let held = cached.len();
            (cached, held)
        });
        row(&format!("cached crate ShardedLruTtlCache, {value_len} B values"), cached_bytes);
    }

    // Where moka's share goes (informational): the same String to String cache without a
    // TTL, with a time to live per entry (`expire_after`, as the memory tier has: a
    // timer-wheel node per entry instead of a write-order node), and with `Arc<String>` values
    // (a decoded entry's value is shared behind an `Arc`).
    let builder = || moka::sync::Cache::builder().max_capacity(capacity);
    if only.is_none_or(|o| o == 5) {
        let bytes = sync_moka_per_entry(builder().build(), entries, &key, || value.clone());
        row(&format!("raw moka (sync), String to String, no TTL, {value_len} B values"), bytes);
    }
    if only.is_none_or(|o| o == 6) {
        let moka = builder().expire_after(EveryEntry).build();
        let bytes = sync_moka_per_entry(moka, entries, &key, || value.clone());
        row(
            &format!("raw moka (sync), String to String, TTL per entry, {value_len} B values"),
            bytes,
        );
    }
    if only.is_none_or(|o| o == 7) {
        let moka = moka::sync::Cache::builder().max_capacity(capacity).time_to_live(TTL).build();
        let bytes = sync_moka_per_entry(moka, entries, &key, || Arc::new(value.clone()));
        row(&format!("raw moka (sync), String to Arc<String>, TTL, {value_len} B values"), bytes);
    }
    rows
}

/// Bytes per entry of the facade's memory tier holding `entries` values written through
/// `Cache::set`; with `read_back`, each is read once after its write (so it is kept decoded).
fn facade_per_entry(
    rt: &tokio::runtime::Runtime,
    capacity: u64,
    entries: usize,
    value: &str,
    read_back: bool,
) -> f64 {
    per_entry(|| {
        let store =
            Arc::new(MokaStore::builder().max_entries(capacity).build().expect("moka store"));
        let cache = Cache::builder()
            .tier(Tier::new("memory", store.clone() as Arc<dyn Store>).ttl(TTL))
            .build()
            .expect("cache");
        let held = rt.block_on(async {
            for i in 0..entries {
                cache.set((CATEGORY, &identifier(i)), value).await.expect("set");
                if read_back {
                    let read: Option<String> =
                        cache.get((CATEGORY, &identifier(i))).await.expect("get");
                    assert!(read.is_some());
                }
            }
            store.len().await.expect("len")
        });
        (cache, held as usize)
    })
}

/// Bytes per entry of the raw (sync) moka cache `moka` filled with `entries` values.
fn sync_moka_per_entry<V: Clone + Send + Sync + 'static>(
    moka: moka::sync::Cache<String, V>,
    entries: usize,
    key: &dyn Fn(usize) -> String,
    value: impl Fn() -> V,
) -> f64 {
    per_entry(|| {
        for i in 0..entries {
            moka.insert(key(i), value());
        }
        moka.run_pending_tasks();
        let held = moka.entry_count();
        (moka, held as usize)
    })
}

/// Gives every entry of a raw moka cache its own time to live (the memory tier's [`TTL`]), as
/// `MokaStore` does.
struct EveryEntry;

impl<V> moka::Expiry<String, V> for EveryEntry {
    fn expire_after_create(
        &self,
        _key: &String,
        _value: &V,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(TTL)
    }
}

fn json(rows: &[Row]) -> String {
    let rows: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{{\"name\":{},\"bytes_per_entry\":{:.1},\"payload_bytes\":{:.0}}}",
                json_string(&r.name),
                r.bytes_per_entry,
                r.payload_bytes
            )
        })
        .collect();
    format!("{{\"rows\":[\n{}\n]}}\n", rows.join(",\n"))
}

/// Set in a child process measuring one row: `store index,value length,entries`.
const CHILD_ENV: &str = "AURELIS_MEMORY_OVERHEAD_ROW";

/// Measures one row in a child process of its own and returns it: a store dropped in this
/// process frees part of its memory later (moka's deferred reclamation runs on other caches'
/// operations), which would otherwise be counted against the next store measured.
fn measure_in_child(store: usize, value_len: usize, entries: usize) -> Row {
    let exe = std::env::current_exe().expect("own executable");
    let out = std::process::Command::new(exe)
        .env(CHILD_ENV, format!("{store},{value_len},{entries}"))
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("run the measuring child");
    assert!(out.status.success(), "memory_overhead: the child measuring store {store} failed");
    let text = String::from_utf8(out.stdout).expect("UTF-8 output");
    let line = text.lines().find_map(|l| l.strip_prefix("ROW\t")).expect("a ROW line");
    let mut fields = line.split('\t');
    let mut next = || fields.next().expect("a field");
    let name = next().to_owned();
    let bytes_per_entry = next().parse().expect("bytes per entry");
    let payload_bytes = next().parse().expect("payload bytes");
    Row { name, bytes_per_entry, payload_bytes }
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        let n: Vec<usize> = spec.split(',').map(|v| v.parse().expect("a number")).collect();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
        for row in measure(&rt, n[2], n[1], Some(n[0])) {
            println!("ROW\t{}\t{}\t{}", row.name, row.bytes_per_entry, row.payload_bytes);
        }
        return;
    }
    let quick = match plain_run("memory_overhead") {
        PlainRun::Full => false,
        PlainRun::Quick => true,
        PlainRun::Skip => return,
    };
    // `--test` (`cargo test --benches`): a small run, no file.
    let entries = if quick { 1_000 } else { ENTRIES };

    if quick {
        let rt =
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        for len in VALUE_SIZES {
            measure(&rt, entries, len, None);
        }
        return;
    }
    let mut rows = Vec::new();
    for len in VALUE_SIZES {
        for store in 0..STORES {
            rows.push(measure_in_child(store, len, entries));
        }
    }
    write_output("memory_overhead", "memory_overhead.json", &json(&rows));
}
