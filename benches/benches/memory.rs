//! Memory tier hits, 1 KiB string values: the facade over one `MokaStore` layer against raw
//! moka, foyer's in-memory cache and the `cached` crate, all on the same runtime.
//!
//! Every store holds the same 1,000 entries; each iteration reads the same hot key and gets an
//! owned `String` back (the peers clone the value out, the facade decodes its envelope).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use aurelis_cache::{Cache, MokaStore, Tier};
use aurelis_cache_benches::{
    criterion, interleave, interleaved_turns, runtime, value, Turns, Way, CATEGORY, IDENTIFIER,
    VALUE_LEN,
};
use criterion::{criterion_group, criterion_main, Criterion};

/// Entries in every store (the hot key and 999 others).
const ENTRIES: usize = 1_000;
/// Capacity of every store.
const CAPACITY: usize = 10_000;
/// Time to live where the store has one.
const TTL: Duration = Duration::from_secs(300);

fn identifiers() -> impl Iterator<Item = String> {
    std::iter::once(IDENTIFIER.to_owned()).chain((1..ENTRIES).map(|i| format!("other-{i}")))
}

fn memory_hit(c: &mut Criterion) {
    let rt = runtime();
    let value = value(VALUE_LEN);

    // Ours: a cache with one memory layer.
    let store = MokaStore::builder().max_entries(CAPACITY as u64).build().expect("moka store");
    let cache = Cache::builder()
        .tier(Tier::new("memory", Arc::new(store)).ttl(TTL))
        .build()
        .expect("cache");
    rt.block_on(async {
        for id in identifiers() {
            cache.set((CATEGORY, &id), &value).await.expect("set");
        }
    });
    let key = cache.keys().build_key(CATEGORY, IDENTIFIER, None).expect("key");
    // Every peer stores the value under the facade's key string.
    let raw_key = key.as_str().to_owned();
    let raw_keys: Vec<String> = identifiers()
        .map(|id| cache.keys().build_key(CATEGORY, &id, None).expect("key").into_string())
        .collect();

    // Raw moka, configured like the memory tier: bounded by entries, with a TTL.
    let moka: moka::future::Cache<String, String> =
        moka::future::Cache::builder().max_capacity(CAPACITY as u64).time_to_live(TTL).build();
    // foyer's in-memory cache (no TTL in foyer's memory cache).
    let foyer: foyer::Cache<String, String> = foyer::CacheBuilder::new(CAPACITY).build();
    // The `cached` crate's concurrent bounded store with a TTL.
    let cached: cached::ShardedLruTtlCache<String, String> =
        cached::ShardedLruTtlCache::new(CAPACITY, TTL);
    rt.block_on(async {
        for k in &raw_keys {
            moka.insert(k.clone(), value.clone()).await;
            foyer.insert(k.clone(), value.clone());
            cached.set(k.clone(), value.clone());
        }
    });
    assert_eq!(
        rt.block_on(cache.get::<String>((CATEGORY, IDENTIFIER))).unwrap(),
        Some(value.clone())
    );
    assert_eq!(rt.block_on(moka.get(&raw_key)), Some(value.clone()));
    assert_eq!(foyer.get(&raw_key).map(|e| e.value().clone()), Some(value.clone()));
    assert_eq!(cached.get(raw_key.as_str()), Some(value.clone()));

    let mut group = c.benchmark_group("memory_hit");
    group.bench_function("aurelis_facade", |b| {
        b.to_async(&rt).iter(|| async {
            let hit: Option<String> =
                cache.get((black_box(CATEGORY), black_box(IDENTIFIER))).await.unwrap();
            black_box(hit.unwrap())
        })
    });
    group.bench_function("aurelis_facade_prebuilt_key", |b| {
        b.to_async(&rt).iter(|| async {
            let hit: Option<String> = cache.get(black_box(&key)).await.unwrap();
            black_box(hit.unwrap())
        })
    });
    // With the prebuilt key, like `aurelis_facade_prebuilt_key`: this row is the cost of the
    // hit without the copy, not of building the key (until 2026-11-26 it built the key per call).
    group.bench_function("aurelis_get_shared", |b| {
        b.to_async(&rt).iter(|| async {
            let hit: Option<Arc<String>> = cache.get_shared(black_box(&key)).await.unwrap();
            black_box(hit.unwrap())
        })
    });
    group.bench_function("raw_moka", |b| {
        b.to_async(&rt).iter(|| async { black_box(moka.get(black_box(&raw_key)).await.unwrap()) })
    });
    group.bench_function("foyer_memory", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(foyer.get(black_box(&raw_key)).map(|e| e.value().clone()).unwrap())
        })
    });
    group.bench_function("cached_crate", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(cached.get(black_box(raw_key.as_str())).unwrap()) })
    });
    group.finish();

    // The same reads of ours and raw moka's taking turns of 1,000 (see `interleave`), so
    // that they share the machine's changes of speed: `memory_hit_interleaved.json`, the
    // table the memory hit targets are judged on.
    let Some((turns, file)) =
        interleaved_turns("memory_hit_interleaved", INTERLEAVED, "memory_hit_interleaved.json")
    else {
        return;
    };
    let ways: [Way; 4] = [
        ("raw_moka", "raw moka get"),
        ("aurelis_facade", "facade get((category, id))"),
        ("aurelis_facade_prebuilt_key", "facade get(&key)"),
        ("aurelis_get_shared", "facade get_shared(&key)"),
    ];
    rt.block_on(interleave("memory_hit_interleaved", file, &ways, turns, |way| {
        let (cache, key, moka, raw_key) = (&cache, &key, &moka, &raw_key);
        async move {
            match way {
                0 => {
                    black_box(moka.get(black_box(raw_key)).await.unwrap());
                }
                1 => {
                    let hit: Option<String> =
                        cache.get((black_box(CATEGORY), black_box(IDENTIFIER))).await.unwrap();
                    black_box(hit.unwrap());
                }
                2 => {
                    let hit: Option<String> = cache.get(black_box(key)).await.unwrap();
                    black_box(hit.unwrap());
                }
                _ => {
                    let hit: Option<Arc<String>> = cache.get_shared(black_box(key)).await.unwrap();
                    black_box(hit.unwrap());
                }
            }
        }
    }));
}

/// Reads per turn and rounds of the interleaved measurement (about 2 s).
const INTERLEAVED: Turns = Turns { reads: 1_000, rounds: 2_001 };

criterion_group! {
    name = benches;
    config = criterion();
    targets = memory_hit
}
criterion_main!(benches);
