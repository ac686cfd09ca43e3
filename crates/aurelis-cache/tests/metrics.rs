//! Metrics export (feature `metrics`): a Prometheus recorder scraped after traffic finds the
//! counters moving, and every metric the Grafana dashboard queries is exported.

#![cfg(feature = "metrics")]

mod common;

use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::time::Duration;

use aurelis_cache::{CacheMonitor, MetricsExporter, WriteQueueReport, METRIC_NAMES};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// The process-wide recorder (one per test binary), installed once.
fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder).expect("no other recorder in this binary");
        handle
    })
}

/// The value of the sample `name{labels}` in Prometheus text, labels given as `k="v"` pairs
/// that must all be present (in any order).
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, rest) = match series.split_once('{') {
            Some((m, rest)) => (m, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if metric != name {
            return None;
        }
        let have: BTreeSet<&str> = rest.split(',').filter(|s| !s.is_empty()).collect();
        let all = labels.iter().all(|(k, v)| have.contains(format!("{k}=\"{v}\"").as_str()));
        all.then(|| value.parse().ok()).flatten()
    })
}

/// Names of every metric in Prometheus text.
fn names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_owned())
        .collect()
}

async fn traffic(cache: &aurelis_cache::Cache, rounds: u32) {
    for i in 0..rounds {
        cache.set(("doc", &i.to_string()), &i).await.unwrap();
    }
    for _ in 0..4 {
        for i in 0..rounds * 2 {
            cache.get::<u32>(("doc", &i.to_string())).await.unwrap();
        }
    }
    for i in 0..rounds {
        let _: u32 = cache
            .get_or_compute(
                ("loaded", &i.to_string()),
                || async move { Ok::<_, std::io::Error>(i) },
            )
            .await
            .unwrap();
    }
    cache.delete(("doc", "0")).await.unwrap();
}

#[tokio::test]
async fn prometheus_scrape_finds_the_counters_moving() {
    let handle = handle();
    let t = common::tiers();
    let cache = t.cache();
    let exporter = MetricsExporter::new(
        CacheMonitor::new(cache.clone()).with_write_queue("orders", || WriteQueueReport::new(4, 1)),
    )
    .label("cache", "moving");
    let at = |text: &str, name: &str, labels: &[(&str, &str)]| {
        let mut all = vec![("cache", "moving")];
        all.extend_from_slice(labels);
        sample(text, name, &all)
    };

    traffic(&cache, 10).await;
    exporter.export().await;
    let first = handle.render();
    let hits = at(&first, "aurelis_cache_requests_total", &[("result", "hit")]).expect(&first);
    let misses = at(&first, "aurelis_cache_requests_total", &[("result", "miss")]).unwrap();
    assert_eq!((hits, misses), (40.0, 50.0), "{first}");
    assert_eq!(at(&first, "aurelis_cache_loader_calls_total", &[]), Some(10.0));
    assert_eq!(at(&first, "aurelis_cache_writes_total", &[]), Some(20.0));
    assert_eq!(at(&first, "aurelis_cache_deletes_total", &[]), Some(1.0));
    let memory_hits = at(
        &first,
        "aurelis_cache_op_total",
        &[("tier", "memory"), ("op", "get"), ("result", "hit")],
    );
    assert_eq!(memory_hits, Some(40.0));
    assert!(
        at(
            &first,
            "aurelis_cache_op_total",
            &[("tier", "disk"), ("op", "get"), ("result", "miss")]
        )
        .unwrap()
            >= 50.0
    );
    assert_eq!(at(&first, "aurelis_cache_breaker_open", &[("tier", "disk")]), Some(0.0));
    assert_eq!(at(&first, "aurelis_cache_entries", &[("tier", "memory")]), Some(19.0));
    assert!(at(&first, "aurelis_cache_bytes", &[("tier", "disk")]).unwrap() > 0.0);
    assert_eq!(at(&first, "aurelis_cache_write_queue_depth", &[("queue", "orders")]), Some(4.0));
    assert_eq!(at(&first, "aurelis_cache_write_dead_letters", &[("queue", "orders")]), Some(1.0));

    // More traffic: the counters move by exactly what happened.
    for _ in 0..5 {
        cache.get::<u32>(("doc", "3")).await.unwrap();
    }
    cache.get::<u32>(("doc", "nope")).await.unwrap();
    exporter.export().await;
    let second = handle.render();
    assert_eq!(at(&second, "aurelis_cache_requests_total", &[("result", "hit")]), Some(hits + 5.0));
    assert_eq!(
        at(&second, "aurelis_cache_requests_total", &[("result", "miss")]),
        Some(misses + 1.0)
    );
    assert_eq!(
        at(
            &second,
            "aurelis_cache_op_total",
            &[("tier", "memory"), ("op", "get"), ("result", "hit")]
        ),
        Some(45.0)
    );

    // A tier whose breaker opens shows it.
    t.disk_faults.fail_all(true);
    for i in 0..10 {
        cache.get::<u32>(("doc", &format!("gone{i}"))).await.unwrap();
        if cache.is_tier_down("disk") {
            break;
        }
    }
    exporter.export().await;
    let third = handle.render();
    assert_eq!(at(&third, "aurelis_cache_breaker_open", &[("tier", "disk")]), Some(1.0));
    assert!(
        at(
            &third,
            "aurelis_cache_op_total",
            &[("tier", "disk"), ("op", "any"), ("result", "error")]
        )
        .unwrap()
            >= 1.0
    );
}

#[tokio::test]
async fn the_periodic_exporter_publishes_and_stops_with_the_cache() {
    let handle = handle();
    let t = common::tiers();
    let cache = t.cache();
    let task = MetricsExporter::new(cache.clone())
        .label("cache", "periodic")
        .spawn(Duration::from_millis(20));
    cache.get::<u32>(("doc", "x")).await.unwrap();
    let seen = common::eventually(Duration::from_secs(5), || async {
        sample(
            &handle.render(),
            "aurelis_cache_requests_total",
            &[("cache", "periodic"), ("result", "miss")],
        ) == Some(1.0)
    })
    .await;
    assert!(seen, "{}", handle.render());
    drop(cache);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the exporter stops once the cache is dropped")
        .unwrap();
}

/// Every `aurelis_cache_*` name in the dashboard's PromQL expressions.
fn dashboard_metrics() -> BTreeSet<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/grafana-dashboard.json");
    let text = std::fs::read_to_string(path).expect("docs/grafana-dashboard.json");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let mut exprs = Vec::new();
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("expr", serde_json::Value::String(s)) => out.push(s.clone()),
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    walk(&dashboard, &mut exprs);
    assert!(exprs.len() >= 10, "the dashboard has its panels' queries: {exprs:?}");
    let mut found = BTreeSet::new();
    for expr in &exprs {
        let mut rest = expr.as_str();
        while let Some(i) = rest.find("aurelis_cache_") {
            let tail = &rest[i..];
            let end =
                tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
            found.insert(tail[..end].to_owned());
            rest = &tail[end..];
        }
    }
    found
}

#[tokio::test]
async fn every_metric_the_dashboard_queries_is_exported() {
    let handle = handle();
    let used = dashboard_metrics();
    for panel_needs in [
        "aurelis_cache_op_total",
        "aurelis_cache_latency_seconds",
        "aurelis_cache_loader_calls_total",
        "aurelis_cache_stale_served_total",
        "aurelis_cache_breaker_open",
        "aurelis_cache_write_queue_depth",
    ] {
        assert!(used.contains(panel_needs), "the dashboard shows {panel_needs}");
    }

    // Enough traffic that sampled latencies are recorded, and a write queue registered.
    let t = common::tiers();
    let cache = t.cache();
    traffic(&cache, 40).await;
    MetricsExporter::new(
        CacheMonitor::new(cache).with_write_queue("jobs", || WriteQueueReport::new(0, 0)),
    )
    .label("cache", "dashboard")
    .export()
    .await;
    let rendered = names(&handle.render());
    let documented: BTreeSet<&str> = METRIC_NAMES.iter().copied().collect();
    for name in &used {
        assert!(documented.contains(name.as_str()), "{name} is not in METRIC_NAMES");
        assert!(rendered.contains(name), "{name} was not exported; exported: {rendered:?}");
    }
    // And the documented list is exactly what the exporter emits (after this traffic).
    for name in METRIC_NAMES {
        assert!(rendered.contains(*name), "{name} is documented but was not exported");
    }
}
