//! A tier that fails, hangs or returns damaged bytes never fails a read another tier can
//! serve; damaged entries are counted misses and are deleted; the circuit breaker skips a
//! failing tier and a background probe brings it back.

mod common;

use std::time::Duration;

use aurelis_cache::core::testkit::Corruption;
use aurelis_cache::{BreakerConfig, Cache, ErrorKind, Tier};
use common::{eventually, tier, tiers};

#[tokio::test]
async fn failing_memory_tier_does_not_fail_reads_or_writes() {
    let t = tiers();
    let cache = t.cache();
    t.memory_faults.fail_all(true);
    cache.set(("doc", "d"), &"v".to_string()).await.expect("disk alone can take the write");
    assert_eq!(cache.get::<String>(("doc", "d")).await.unwrap().as_deref(), Some("v"));
    let report = cache.stats_report().await;
    // The write failed in memory; the memory tier missed the key, so the read does not even
    // ask it (it could hold an older value) and the disk answers.
    assert_eq!(tier(&report, "memory").errors, 1);
    assert_eq!(tier(&report, "disk").hits, 1);
    assert!(report.overall.errors >= 1);
    assert_eq!(cache.tier_pending("memory"), 1);
}

#[tokio::test]
async fn failing_disk_tier_does_not_fail_reads() {
    let t = tiers();
    let cache = t.cache();
    cache.set(("doc", "d"), &"v".to_string()).await.unwrap();
    t.disk_faults.fail_all(true);
    assert_eq!(cache.get::<String>(("doc", "d")).await.unwrap().as_deref(), Some("v"));
    // A miss with a broken lower tier is a plain miss, not an error.
    assert_eq!(cache.get::<String>(("doc", "other")).await.unwrap(), None);
}

#[tokio::test]
async fn a_write_no_tier_takes_is_an_error() {
    let t = tiers();
    let cache = t.cache();
    t.memory_faults.fail_writes(true);
    t.disk_faults.fail_writes(true);
    let err = cache.set(("doc", "d"), &1u8).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Backend);
    assert!(err.tier().is_some());
}

#[tokio::test]
async fn strict_mode_reports_tier_errors() {
    let t = tiers();
    let cache = t.builder().strict(true).build().unwrap();
    cache.set(("doc", "d"), &1u8).await.unwrap();
    t.disk_faults.fail_reads(true);
    // Memory answers first, so a healthy read still works...
    assert_eq!(cache.get::<u8>(("doc", "d")).await.unwrap(), Some(1));
    // ...but a miss that reaches the failing disk tier is an error in strict mode.
    let err = cache.get::<u8>(("doc", "missing")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Backend);
    assert_eq!(err.tier(), Some("disk"));
}

#[tokio::test]
async fn a_hanging_tier_times_out_and_the_other_answers() {
    let t = tiers();
    let cache = Cache::builder()
        .tier(Tier::new("memory", t.memory.clone()).timeout(Duration::from_millis(50)))
        .tier(Tier::new("disk", t.disk.clone()).timeout(Duration::from_secs(5)))
        .build()
        .unwrap();
    cache.set(("doc", "d"), &7u32).await.unwrap();
    t.memory_faults.delay(Duration::from_secs(30));
    let got = tokio::time::timeout(Duration::from_secs(10), cache.get::<u32>(("doc", "d")))
        .await
        .expect("the cache must not wait for the hanging tier")
        .unwrap();
    assert_eq!(got, Some(7));
    let report = cache.stats_report().await;
    // The read, and the write-back of the disk hit, both ran into the time limit.
    assert!(tier(&report, "memory").timeouts >= 1);
    assert_eq!(tier(&report, "disk").hits, 1);
}

#[tokio::test]
async fn corrupt_entries_are_counted_misses_and_deleted() {
    for how in [Corruption::Garbage, Corruption::Truncate, Corruption::FlipBit] {
        let t = tiers();
        let cache = t.cache();
        cache.set(("doc", "d"), &"a value long enough to flip".to_string()).await.unwrap();
        t.memory.clear().await.unwrap();
        t.disk_faults.corrupt(Some(how));
        assert_eq!(cache.get::<String>(("doc", "d")).await.unwrap(), None, "{how:?}");
        let report = cache.stats_report().await;
        assert_eq!(report.overall.corrupt, 1, "{how:?}");
        assert_eq!(tier(&report, "disk").corrupt, 1, "{how:?}");
        assert_eq!(report.overall.misses, 1);
        t.disk_faults.corrupt(None);
        let key = cache.keys().build_key("doc", "d", None).unwrap();
        assert!(
            eventually(Duration::from_secs(2), || async {
                t.disk.get(key.as_str()).await.unwrap().is_none()
            })
            .await,
            "corrupt entry not deleted ({how:?})"
        );
    }
}

#[tokio::test]
async fn garbage_written_straight_into_a_store_is_a_miss() {
    let t = tiers();
    let cache = t.cache();
    let key = cache.keys().build_key("doc", "raw", None).unwrap();
    for garbage in [&b""[..], b"\x00", b"{\"json\": true}", &[0xA7, 0xCA, 1, 0, 0, 0][..]] {
        t.disk.set(key.as_str(), garbage.to_vec().into(), None).await.unwrap();
        assert_eq!(cache.get::<String>(("doc", "raw")).await.unwrap(), None);
    }
    assert_eq!(cache.stats_report().await.overall.corrupt, 4);
    // A healthy value written afterwards is served.
    cache.set(("doc", "raw"), &"ok".to_string()).await.unwrap();
    assert_eq!(cache.get::<String>(("doc", "raw")).await.unwrap().as_deref(), Some("ok"));
}

#[tokio::test]
async fn a_value_of_another_type_is_a_miss_not_an_error() {
    let t = tiers();
    let cache = t.cache();
    cache.set(("doc", "d"), &"not a number".to_string()).await.unwrap();
    assert_eq!(cache.get::<u64>(("doc", "d")).await.unwrap(), None);
    let report = cache.stats_report().await;
    assert_eq!(report.overall.type_mismatches, 2, "one per tier asked");
    assert_eq!(report.overall.corrupt, 0);
    // A local miss: the entry stays for readers of its own type.
    assert_eq!(cache.get::<String>(("doc", "d")).await.unwrap().as_deref(), Some("not a number"));
}

#[tokio::test]
async fn breaker_skips_a_failing_tier_and_a_probe_brings_it_back() {
    let t = tiers();
    let cache = t.cache(); // threshold 3, probe every 50 ms
    cache.set(("doc", "d"), &1u8).await.unwrap();
    t.memory.clear().await.unwrap();
    t.disk_faults.fail_all(true);
    for _ in 0..3 {
        assert_eq!(cache.get::<u8>(("doc", "d")).await.unwrap(), None);
    }
    assert!(cache.is_tier_down("disk"));
    // While open, reads do not call the tier at all (the probe may, at its own pace).
    let before = t.disk_faults.gets();
    for _ in 0..20 {
        cache.get::<u8>(("doc", "d")).await.unwrap();
    }
    assert!(t.disk_faults.gets() - before < 20, "an open breaker still called the tier");
    assert!(tier(&cache.stats_report().await, "disk").skipped >= 20);

    t.disk_faults.fail_all(false);
    assert!(
        eventually(Duration::from_secs(5), || async { !cache.is_tier_down("disk") }).await,
        "probe did not close the breaker"
    );
    assert_eq!(cache.get::<u8>(("doc", "d")).await.unwrap(), Some(1));
}

#[tokio::test]
async fn breaker_threshold_zero_never_opens() {
    let t = tiers();
    let cache = Cache::builder()
        .tier(
            Tier::new("disk", t.disk.clone())
                .breaker(BreakerConfig::new(0, Duration::from_millis(50))),
        )
        .build()
        .unwrap();
    t.disk_faults.fail_all(true);
    for _ in 0..10 {
        assert_eq!(cache.get::<u8>(("doc", "d")).await.unwrap(), None);
    }
    // Every call reached the failing store (none skipped by a breaker) and failed.
    assert!(!cache.is_tier_down("disk"));
    let report = cache.stats_report().await;
    assert!(tier(&report, "disk").errors >= 10);
    assert_eq!(tier(&report, "disk").skipped, 0);
    assert_eq!(t.disk_faults.gets(), 10);
}

#[tokio::test]
async fn clones_share_tiers_and_stats() {
    let t = tiers();
    let cache = t.cache();
    let clone = cache.clone();
    cache.set(("doc", "d"), &1u8).await.unwrap();
    assert_eq!(clone.get::<u8>(("doc", "d")).await.unwrap(), Some(1));
    assert_eq!(cache.stats_report().await.overall.hits, 1, "the clone's hit is not in the stats");
    clone.delete(("doc", "d")).await.unwrap();
    assert_eq!(cache.get::<u8>(("doc", "d")).await.unwrap(), None);
}
