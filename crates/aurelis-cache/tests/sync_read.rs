//! A cache whose first tier is an in-process byte store (sled) reads that tier synchronously
//! (`Store::get_sync_with`, no future) and walks on from the second tier only when it has
//! nothing fresh. Whatever the first tier answered is judged once: a hit, a miss, a corrupt,
//! invalidated, expired or mistyped entry is counted as the full walk counts it, and the walk
//! does not read that tier again.

mod common;

use std::sync::Arc;
use std::time::Duration;

use aurelis_cache::core::testkit::FaultyStore;
use aurelis_cache::core::Bytes;
use aurelis_cache::{Cache, SetOptions, SledStore, Store, Tier};
use common::{eventually, tier};

/// Two sled tiers, `first` over `second`, used as they are (no fault layer, which would hide
/// the synchronous read).
fn two_disks(dir: &tempfile::TempDir) -> (Cache, Arc<dyn Store>, Arc<dyn Store>) {
    let first: Arc<dyn Store> =
        Arc::new(SledStore::builder().path(dir.path().join("first")).build().expect("sled"));
    let second: Arc<dyn Store> =
        Arc::new(SledStore::builder().path(dir.path().join("second")).build().expect("sled"));
    let cache = Cache::builder()
        .tier(Tier::new("first", first.clone()).priority(2))
        .tier(Tier::new("second", second.clone()).priority(1))
        .build()
        .expect("cache");
    (cache, first, second)
}

#[tokio::test]
async fn a_first_tier_hit_is_counted_once_and_never_walks_on() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _, _) = two_disks(&dir);
    cache.set(("doc", "a"), &"answer".to_string()).await.unwrap();
    for _ in 0..3 {
        assert_eq!(cache.get::<String>(("doc", "a")).await.unwrap().as_deref(), Some("answer"));
    }
    assert_eq!(
        cache.get_shared::<String>(("doc", "a")).await.unwrap().as_deref().map(String::as_str),
        Some("answer")
    );
    let report = cache.stats_report().await;
    assert_eq!(report.overall.hits, 4);
    assert_eq!(report.overall.misses, 0);
    assert_eq!(tier(&report, "first").hits, 4);
    assert_eq!(
        tier(&report, "second").hits + tier(&report, "second").misses,
        0,
        "second tier read"
    );
}

#[tokio::test]
async fn a_corrupt_first_tier_entry_is_counted_once_and_the_second_tier_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, first, _) = two_disks(&dir);
    cache.set(("doc", "b"), &"kept below".to_string()).await.unwrap();
    let key = cache.keys().build_key("doc", "b", None).unwrap();
    first.set(key.as_str(), Bytes::from_static(b"not an envelope"), None).await.unwrap();

    assert_eq!(cache.get::<String>(("doc", "b")).await.unwrap().as_deref(), Some("kept below"));
    let report = cache.stats_report().await;
    assert_eq!(report.overall.corrupt, 1, "the corrupt entry was judged more than once");
    assert_eq!(tier(&report, "first").corrupt, 1);
    assert_eq!(tier(&report, "first").misses, 1);
    assert_eq!(tier(&report, "second").hits, 1);
    assert_eq!(report.overall.hits, 1);
    // The corrupt entry is removed in the background (the write-back, conditional, does not
    // overwrite it); the next read does not count it again.
    let removed = eventually(Duration::from_secs(5), || async {
        first.get(key.as_str()).await.unwrap().is_none_or(|raw| raw.as_ref() != b"not an envelope")
    })
    .await;
    assert!(removed, "the corrupt entry was left in the first tier");
    assert_eq!(cache.get::<String>(("doc", "b")).await.unwrap().as_deref(), Some("kept below"));
    assert_eq!(cache.stats_report().await.overall.corrupt, 1);
}

#[tokio::test]
async fn misses_and_mistyped_entries_are_counted_once_per_tier() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _, _) = two_disks(&dir);
    assert_eq!(cache.get::<String>(("doc", "absent")).await.unwrap(), None);
    let report = cache.stats_report().await;
    assert_eq!(report.overall.misses, 1);
    assert_eq!(tier(&report, "first").misses, 1, "the first tier was read twice");
    assert_eq!(tier(&report, "second").misses, 1);

    cache.set(("doc", "text"), &"not a number".to_string()).await.unwrap();
    assert_eq!(cache.get::<u32>(("doc", "text")).await.unwrap(), None);
    let report = cache.stats_report().await;
    // One mismatch per tier holding the entry, not one more for a second read of the first.
    assert_eq!(report.overall.type_mismatches, 2);
    assert_eq!(tier(&report, "first").misses, 2);
    // The entry is kept for readers of its own type.
    assert_eq!(
        cache.get::<String>(("doc", "text")).await.unwrap().as_deref(),
        Some("not a number")
    );
}

#[tokio::test]
async fn invalidated_and_expired_first_tier_entries_are_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _, _) = two_disks(&dir);
    cache.set(("user", "1"), &1u32).await.unwrap();
    cache.set(("user", "2"), &2u32).await.unwrap();
    assert_eq!(cache.get::<u32>(("user", "1")).await.unwrap(), Some(1));
    cache.invalidate_category("user").await.unwrap();
    assert_eq!(cache.get::<u32>(("user", "1")).await.unwrap(), None);
    assert_eq!(cache.get::<u32>(("user", "2")).await.unwrap(), None);

    let short = SetOptions::new().ttl(Duration::from_millis(30)).stale_for(Duration::from_secs(60));
    cache.set_with(("doc", "short"), &"soon stale".to_string(), &short).await.unwrap();
    assert!(cache.get::<String>(("doc", "short")).await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(80)).await;
    // In its stale window: not a hit for `get` ...
    assert_eq!(cache.get::<String>(("doc", "short")).await.unwrap(), None);
    // ... but the fail-safe value when the loader fails.
    let served = cache
        .get_or_compute_with(("doc", "short"), &short, || async {
            Err::<String, _>(std::io::Error::other("model down"))
        })
        .await
        .unwrap();
    assert_eq!(served, "soon stale");
}

#[tokio::test]
async fn strict_caches_return_a_first_tier_error_and_others_walk_on() {
    // A first tier without a synchronous read (a fault-injecting layer) takes the full walk:
    // its failure is skipped by a lenient cache and returned by a strict one.
    let dir = tempfile::tempdir().unwrap();
    let disk: Arc<dyn Store> =
        Arc::new(SledStore::builder().path(dir.path().join("db")).build().unwrap());
    let faulty = FaultyStore::new(disk.clone());
    let faults = faulty.control();
    let second: Arc<dyn Store> =
        Arc::new(SledStore::builder().path(dir.path().join("second")).build().unwrap());
    let faulty: Arc<dyn Store> = Arc::new(faulty);
    let lenient = Cache::builder()
        .tier(Tier::new("first", faulty.clone()).priority(2))
        .tier(Tier::new("second", second.clone()).priority(1))
        .build()
        .unwrap();
    lenient.set(("doc", "c"), &7u32).await.unwrap();
    faults.fail_all(true);
    assert_eq!(lenient.get::<u32>(("doc", "c")).await.unwrap(), Some(7));
    let strict = Cache::builder()
        .tier(Tier::new("first", faulty).priority(2))
        .tier(Tier::new("second", second).priority(1))
        .strict(true)
        .build()
        .unwrap();
    assert!(strict.get::<u32>(("doc", "c")).await.is_err());
}
