//! The monitor's reports: numbers that match the traffic that made them, breaker state,
//! keys a tier missed, write queues, the JSON shape and the table.

mod common;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use aurelis_cache::{BreakerState, CacheMonitor, Efficiency, SetOptions, WriteQueueReport};
use common::{eventually, tiers};

#[tokio::test]
async fn report_numbers_match_the_traffic() {
    let t = tiers();
    let cache = t.cache();
    let monitor = CacheMonitor::new(cache.clone());

    let empty = monitor.performance_report().await;
    assert_eq!(empty.performance_summary.cache_efficiency, Efficiency::NoTraffic);
    assert_eq!(empty.performance_summary.total_requests, 0);

    // 3 writes; 6 memory hits; 2 misses everywhere; 1 disk hit (memory dropped the entry).
    for i in 0..3 {
        cache.set(("doc", &i.to_string()), &i).await.unwrap();
    }
    for _ in 0..2 {
        for i in 0..3 {
            assert!(cache.get::<i32>(("doc", &i.to_string())).await.unwrap().is_some());
        }
    }
    for i in 10..12 {
        assert!(cache.get::<i32>(("doc", &i.to_string())).await.unwrap().is_none());
    }
    let key = cache.keys().build_key("doc", "0", None).unwrap();
    t.memory.delete(key.as_str()).await.unwrap();
    assert_eq!(cache.get::<i32>(("doc", "0")).await.unwrap(), Some(0));

    // 2 loader calls (one fails), 1 delete, 1 invalidation.
    let v: i32 = cache
        .get_or_compute(("doc", "loaded"), || async { Ok::<_, std::io::Error>(5) })
        .await
        .unwrap();
    assert_eq!(v, 5);
    let failed = cache
        .get_or_compute::<i32, _, _, _>(("doc", "broken"), || async {
            Err(std::io::Error::other("down"))
        })
        .await;
    assert!(failed.is_err());
    cache.delete(("doc", "1")).await.unwrap();
    cache.invalidate_category("other").await.unwrap();

    let stats = monitor.current_stats().await;
    // gets: 6 + 2 + 1 = 9, plus two get_or_compute misses.
    assert_eq!((stats.hits, stats.misses, stats.total_requests), (7, 4, 11));
    assert!((stats.hit_rate - 7.0 / 11.0).abs() < 1e-9);
    assert_eq!(stats.writes, 4, "3 sets and the loaded value");
    assert_eq!(stats.deletes, 1);
    // Latencies may be sampled (one read in N): only their consistency is checked.
    assert!(stats.average_response_time_us >= 0.0);

    let report = monitor.performance_report().await;
    let o = &report.overall_metrics;
    assert_eq!(o.metrics, stats);
    assert_eq!((o.loader_calls, o.loader_errors), (2, 1));
    assert_eq!(o.invalidations, 1);
    assert!(o.get_latency.count <= 11 + 2, "at most one per lookup");

    let memory = report.tier("memory").unwrap();
    let disk = report.tier("disk").unwrap();
    assert_eq!(report.backend_metrics[0].name, "memory", "tiers in lookup order");
    assert_eq!(memory.metrics.hits, 6);
    // Each loader path looks twice (the caller, then the leader's re-check): the tiers count
    // every lookup, so they are compared with the core report rather than hand-counted.
    let raw = cache.stats_report().await;
    for (tier, backend) in raw.tiers.iter().zip(&report.backend_metrics) {
        assert_eq!(tier.name, backend.name);
        assert_eq!(
            (tier.hits, tier.misses, tier.writes, tier.deletes, tier.errors, tier.writebacks),
            (
                backend.metrics.hits,
                backend.metrics.misses,
                backend.metrics.writes,
                backend.metrics.deletes,
                backend.metrics.errors,
                backend.writebacks
            )
        );
        assert_eq!(backend.metrics.total_requests, tier.hits + tier.misses);
    }
    assert!(memory.metrics.misses >= 5, "2 unknown, 1 dropped, 2 loader keys");
    assert_eq!(disk.metrics.hits, 1);
    assert!(disk.metrics.misses >= 4);
    assert_eq!((memory.metrics.deletes, disk.metrics.deletes), (1, 1));
    assert_eq!(memory.writebacks, 1, "the disk hit was copied up");
    assert_eq!(disk.metrics.writes, 4);
    assert_eq!(memory.metrics.cache_size, Some(3), "doc 0 (written back), 2, loaded");
    // The disk tier also keeps the durable invalidation mark: taken as the store tells it.
    assert_eq!(disk.metrics.cache_size, raw.tiers[1].entries);
    assert!(disk.metrics.cache_size >= Some(3), "doc 0, 2, loaded");
    assert!(memory.metrics.memory_usage.unwrap() > 0);
    assert_eq!(
        o.metrics.cache_size,
        Some(3 + disk.metrics.cache_size.unwrap()),
        "summed over the tiers"
    );
    if let Some(get) = memory.latency.get("get") {
        assert!(get.p99_us >= get.p50_us && get.max_us >= get.p99_us);
    }
    assert_eq!((memory.breaker, disk.breaker), (BreakerState::Closed, BreakerState::Closed));
    assert_eq!((memory.pending_keys, disk.pending_keys), (0, 0));

    let s = &report.performance_summary;
    assert!((s.hit_rate_percentage - 700.0 / 11.0).abs() < 1e-9);
    assert_eq!(s.cache_efficiency, Efficiency::NeedsImprovement);
    assert!(s.tiers_down.is_empty());
    let lenient = CacheMonitor::new(cache.clone()).good_hit_rate(0.5).performance_report().await;
    assert_eq!(lenient.performance_summary.cache_efficiency, Efficiency::Good);
}

#[tokio::test]
async fn coalesced_waiters_and_stale_served_are_reported() {
    let t = tiers();
    let cache = t.cache();
    let gate = Arc::new(tokio::sync::Notify::new());
    let leader = {
        let cache = cache.clone();
        let gate = gate.clone();
        tokio::spawn(async move {
            cache
                .get_or_compute::<u32, _, _, _>(("slow", "k"), || async move {
                    gate.notified().await;
                    Ok::<_, std::io::Error>(1)
                })
                .await
        })
    };
    let monitor = CacheMonitor::new(cache.clone());
    assert!(
        eventually(Duration::from_secs(5), || async {
            monitor.performance_report().await.overall_metrics.loader_calls == 1
        })
        .await
    );
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move {
                cache
                    .get_or_compute::<u32, _, _, _>(("slow", "k"), || async {
                        Ok::<_, std::io::Error>(2)
                    })
                    .await
            })
        })
        .collect();
    assert!(
        eventually(Duration::from_secs(5), || async {
            monitor.performance_report().await.overall_metrics.coalesced_waiters == 3
        })
        .await
    );
    gate.notify_one();
    assert_eq!(leader.await.unwrap().unwrap(), 1);
    for w in waiters {
        assert_eq!(w.await.unwrap().unwrap(), 1);
    }

    // Fail-safe: an expired entry inside its stale window, a failing loader.
    let opts = SetOptions::new().ttl(Duration::from_millis(30)).stale_for(Duration::from_secs(600));
    cache.set_with(("stale", "k"), &9u32, &opts).await.unwrap();
    tokio::time::sleep(Duration::from_millis(80)).await;
    let v = cache
        .get_or_compute::<u32, _, _, _>(("stale", "k"), || async {
            Err(std::io::Error::other("down"))
        })
        .await
        .unwrap();
    assert_eq!(v, 9);
    let report = monitor.performance_report().await;
    assert_eq!(report.overall_metrics.stale_served, 1);
    assert_eq!(report.overall_metrics.coalesced_waiters, 3);
    assert_eq!(report.overall_metrics.loader_calls, 2);
}

#[tokio::test]
async fn breaker_state_and_missed_keys_per_tier() {
    let t = tiers();
    let cache = t.cache();
    let monitor = CacheMonitor::new(cache.clone());
    // The memory tier fails a write: it missed that key.
    t.memory_faults.fail_writes(true);
    cache.set(("doc", "d"), &1u8).await.unwrap();
    let report = monitor.performance_report().await;
    assert_eq!(report.tier("memory").unwrap().pending_keys, 1);
    assert!(report.tier("memory").unwrap().metrics.errors >= 1);
    t.memory_faults.fail_writes(false);

    // The disk tier fails every call: its breaker opens (threshold 3 in the fixture).
    t.disk_faults.fail_all(true);
    for i in 0..10 {
        let _ = cache.get::<u8>(("doc", &format!("missing{i}"))).await;
        if cache.is_tier_down("disk") {
            break;
        }
    }
    assert!(cache.is_tier_down("disk"));
    let report = monitor.performance_report().await;
    assert_eq!(report.tier("disk").unwrap().breaker, BreakerState::Open);
    assert_eq!(report.tier("memory").unwrap().breaker, BreakerState::Closed);
    assert_eq!(report.performance_summary.tiers_down, ["disk"]);
    assert_eq!(report.tier("disk").unwrap().metrics.cache_size, None, "not asked while down");
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["backend_metrics"]["disk"]["breaker"], "open");
    assert!(report.to_string().contains("open"));

    t.disk_faults.fail_all(false);
    assert!(
        eventually(Duration::from_secs(5), || async {
            monitor.performance_report().await.tier("disk").unwrap().breaker == BreakerState::Closed
        })
        .await,
        "the probe closes the breaker once the disk answers"
    );
}

#[tokio::test]
async fn write_queues_are_reported_from_their_providers() {
    let t = tiers();
    let depth = Arc::new(AtomicU64::new(0));
    let d = depth.clone();
    let monitor = CacheMonitor::new(t.cache())
        .with_write_queue("orders", move || WriteQueueReport::new(d.load(Relaxed), 2))
        .with_write_queue("audit", || WriteQueueReport::new(0, 0));
    depth.store(17, Relaxed);
    let report = monitor.performance_report().await;
    assert_eq!(report.write_queues["orders"], WriteQueueReport::new(17, 2));
    assert_eq!(report.write_queues["audit"], WriteQueueReport::new(0, 0));
    depth.store(3, Relaxed);
    assert_eq!(monitor.performance_report().await.write_queues["orders"].queue_depth, 3);
    let text = report.to_string();
    assert!(text.contains("write queue orders: depth 17 | dead letters 2"), "{text}");
}

fn keys(v: &serde_json::Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().expect("an object").keys().cloned().collect();
    k.sort();
    k
}

#[tokio::test]
async fn json_shape_is_stable() {
    let t = tiers();
    let cache = t.cache();
    cache.set(("doc", "d"), &1u8).await.unwrap();
    cache.get::<u8>(("doc", "d")).await.unwrap();
    let report = CacheMonitor::new(cache)
        .with_write_queue("orders", || WriteQueueReport::new(1, 0))
        .performance_report()
        .await;
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(
        keys(&json),
        ["backend_metrics", "overall_metrics", "performance_summary", "write_queues"]
    );
    let metrics = [
        "average_response_time_us",
        "cache_size",
        "deletes",
        "errors",
        "hit_rate",
        "hits",
        "memory_usage",
        "misses",
        "total_requests",
        "writes",
    ];
    let mut overall: Vec<&str> = metrics.to_vec();
    overall.extend([
        "coalesced_waiters",
        "corrupt",
        "get_latency",
        "invalidations",
        "loader_calls",
        "loader_errors",
        "published",
        "remote_applied",
        "remote_loads_awaited",
        "served_uncached",
        "stale_served",
        "type_mismatches",
    ]);
    overall.sort();
    assert_eq!(keys(&json["overall_metrics"]), overall);
    assert_eq!(
        keys(&json["overall_metrics"]["get_latency"]),
        ["count", "max_us", "mean_us", "p50_us", "p90_us", "p99_us"]
    );
    assert_eq!(keys(&json["backend_metrics"]), ["disk", "memory"]);
    let order: Vec<&String> = json["backend_metrics"].as_object().unwrap().keys().collect();
    let text = serde_json::to_string(&report).unwrap();
    assert!(text.find("\"memory\":").unwrap() < text.find("\"disk\":").unwrap(), "{order:?}");
    let mut tier: Vec<&str> = metrics.to_vec();
    tier.extend([
        "breaker",
        "corrupt",
        "evictions",
        "expirations",
        "expired",
        "latency",
        "pending_keys",
        "skipped",
        "timeouts",
        "writebacks",
    ]);
    tier.sort();
    assert_eq!(keys(&json["backend_metrics"]["memory"]), tier);
    assert_eq!(json["backend_metrics"]["memory"]["breaker"], "closed");
    assert_eq!(json["backend_metrics"]["memory"]["hits"], 1);
    assert!(json["backend_metrics"]["memory"]["latency"].is_object());
    assert_eq!(keys(&json["write_queues"]["orders"]), ["dead_letters", "queue_depth"]);
    assert_eq!(
        keys(&json["performance_summary"]),
        ["cache_efficiency", "hit_rate_percentage", "tiers_down", "total_requests"]
    );
    assert_eq!(json["performance_summary"]["cache_efficiency"], "Good");
    assert_eq!(json["performance_summary"]["hit_rate_percentage"], 100.0);
}

#[tokio::test]
async fn display_is_a_per_tier_table() {
    let t = tiers();
    let cache = t.cache();
    cache.set(("doc", "d"), &1u8).await.unwrap();
    cache.get::<u8>(("doc", "d")).await.unwrap();
    cache.get::<u8>(("doc", "x")).await.unwrap();
    let text = CacheMonitor::new(cache).performance_report().await.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("requests 2 | hit rate 50.0% (Needs Improvement)"), "{text}");
    let header = lines.iter().position(|l| l.starts_with("tier")).expect("a header row");
    let memory: Vec<&str> = lines[header + 1].split_whitespace().collect();
    let disk: Vec<&str> = lines[header + 2].split_whitespace().collect();
    assert_eq!(&memory[..4], ["memory", "1", "1", "50.0"], "{text}");
    assert_eq!(&disk[..4], ["disk", "0", "1", "0.0"], "{text}");
    assert!(lines[header + 1].contains("closed"));
}
