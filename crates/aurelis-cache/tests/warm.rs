//! Cache warming: the concurrency bound, summary counts, progress calls, streams.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aurelis_cache::{CacheWarmer, ErrorKind, Key, WarmProgress};
use futures::StreamExt;

/// Counts loaders running at once and the most seen. With a `gate`, loaders hold until that
/// many have run at once (or a second passed), so reaching the bound does not depend on timing.
#[derive(Default)]
struct InFlight {
    now: AtomicUsize,
    max: AtomicUsize,
    calls: AtomicUsize,
    gate: usize,
}

impl InFlight {
    async fn load(&self, value: u32) -> Result<u32, std::io::Error> {
        self.calls.fetch_add(1, SeqCst);
        let now = self.now.fetch_add(1, SeqCst) + 1;
        self.max.fetch_max(now, SeqCst);
        let deadline = std::time::Instant::now() + Duration::from_secs(1);
        while self.max.load(SeqCst) < self.gate && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::task::yield_now().await;
        self.now.fetch_sub(1, SeqCst);
        if value % 10 == 9 {
            Err(std::io::Error::other(format!("row {value} is gone")))
        } else {
            Ok(value * 2)
        }
    }
}

fn key(cache: &aurelis_cache::Cache, i: u32) -> Key {
    cache.keys().build_key("row", &i.to_string(), None).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrency_bound_is_respected_and_reached() {
    let tiers = common::tiers();
    let cache = tiers.cache();
    for limit in [1usize, 3, 8] {
        cache.clear().await.unwrap();
        let counter = Arc::new(InFlight { gate: limit, ..Default::default() });
        let items = (0..40u32).map(|i| {
            let counter = counter.clone();
            (key(&cache, i), move || async move { counter.load(i).await })
        });
        let summary = CacheWarmer::new(cache.clone()).concurrency(limit).warm(items).await;
        let max = counter.max.load(SeqCst);
        assert!(max <= limit, "limit {limit}: {max} loaders ran at once");
        assert_eq!(max, limit, "limit {limit}: the warmer should use its whole budget");
        assert_eq!(summary.total(), 40);
    }
}

#[tokio::test]
async fn summary_counts_loaded_failed_and_already_present() {
    let tiers = common::tiers();
    let cache = tiers.cache();
    for i in [0u32, 1, 2] {
        cache.set(("row", &i.to_string()), &1000u32).await.unwrap();
    }
    let counter = Arc::new(InFlight::default());
    // 0..20: 0,1,2 present; 9 and 19 fail; 15 loaded.
    let items = (0..20u32).map(|i| {
        let counter = counter.clone();
        (key(&cache, i), move || async move { counter.load(i).await })
    });
    let summary = CacheWarmer::new(cache.clone()).concurrency(4).warm(items).await;
    assert_eq!(summary.already_present, 3);
    assert_eq!(summary.loaded, 15);
    assert_eq!(summary.failed.len(), 2);
    assert_eq!(counter.calls.load(SeqCst), 17, "present keys' loaders are not called");
    let mut failed: Vec<String> = summary.failed.iter().map(|f| f.key.to_string()).collect();
    failed.sort();
    assert_eq!(failed, [key(&cache, 19).to_string(), key(&cache, 9).to_string()]);
    for f in &summary.failed {
        assert_eq!(f.error.kind(), ErrorKind::Loader);
    }
    assert!(summary.elapsed > Duration::ZERO);
    assert!(summary.to_string().contains("15 loaded"), "{summary}");

    // What was loaded is cached; present values were left alone; failures cached nothing.
    assert_eq!(cache.get::<u32>(("row", "5")).await.unwrap(), Some(10));
    assert_eq!(cache.get::<u32>(("row", "1")).await.unwrap(), Some(1000));
    assert_eq!(cache.get::<u32>(("row", "9")).await.unwrap(), None);

    // A second warm-up finds everything that loaded.
    let again = (0..20u32).map(|i| {
        let counter = counter.clone();
        (key(&cache, i), move || async move { counter.load(i).await })
    });
    let summary = CacheWarmer::new(cache.clone()).warm(again).await;
    assert_eq!((summary.already_present, summary.loaded, summary.failed.len()), (18, 0, 2));
}

#[tokio::test]
async fn progress_is_reported_after_every_key_with_the_total() {
    let tiers = common::tiers();
    let cache = tiers.cache();
    cache.set(("row", "0"), &0u32).await.unwrap();
    let seen: Arc<Mutex<Vec<WarmProgress>>> = Arc::default();
    let sink = seen.clone();
    let counter = Arc::new(InFlight::default());
    let items: Vec<_> = (0..12u32)
        .map(|i| {
            let counter = counter.clone();
            (key(&cache, i), move || async move { counter.load(i).await })
        })
        .collect();
    let summary = CacheWarmer::new(cache.clone())
        .concurrency(3)
        .on_progress(move |p| sink.lock().unwrap().push(p))
        .warm(items)
        .await;
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 12);
    for (i, p) in seen.iter().enumerate() {
        assert_eq!(p.done, i as u64 + 1);
        assert_eq!(p.total, Some(12));
        assert_eq!(p.loaded + p.failed + p.already_present, p.done);
    }
    let last = seen.last().unwrap();
    assert_eq!(
        (last.loaded, last.failed, last.already_present),
        (summary.loaded, summary.failed.len() as u64, summary.already_present)
    );
    assert_eq!((last.loaded, last.failed, last.already_present), (10, 1, 1));
}

#[tokio::test]
async fn a_stream_of_unknown_length_is_warmed_with_the_bound() {
    let tiers = common::tiers();
    let cache = tiers.cache();
    let counter = Arc::new(InFlight::default());
    let c = cache.clone();
    let producer = counter.clone();
    // An unbounded source cut by `take`: the warmer must not need the length.
    let items = futures::stream::iter(0u32..).take(25).map(move |i| {
        let counter = producer.clone();
        (key(&c, i), move || async move { counter.load(i).await })
    });
    let totals: Arc<Mutex<Vec<Option<u64>>>> = Arc::default();
    let sink = totals.clone();
    let summary = CacheWarmer::new(cache.clone())
        .concurrency(5)
        .on_progress(move |p| sink.lock().unwrap().push(p.total))
        .warm_stream(items, None)
        .await;
    assert_eq!(summary.total(), 25);
    assert!(counter.max.load(SeqCst) <= 5);
    assert!(totals.lock().unwrap().iter().all(Option::is_none));
}

#[tokio::test]
async fn a_failing_loader_over_a_stale_entry_counts_as_failed() {
    let tiers = common::tiers();
    let cache = tiers.cache();
    let opts = aurelis_cache::SetOptions::new()
        .ttl(Duration::from_millis(50))
        .stale_for(Duration::from_secs(600));
    cache.set_with(("row", "9"), &1u32, &opts).await.unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    let counter = Arc::new(InFlight::default());
    let c = counter.clone();
    let summary = CacheWarmer::new(cache.clone())
        .warm([(key(&cache, 9), move || async move { c.load(9).await })])
        .await;
    assert_eq!(summary.failed.len(), 1, "{summary}");
    assert!(
        summary.failed[0].error.to_string().contains("row 9 is gone"),
        "{}",
        summary.failed[0].error
    );
}
