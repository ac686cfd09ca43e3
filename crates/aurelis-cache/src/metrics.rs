//! Metrics export through the [`metrics`](https://docs.rs/metrics) facade (feature `metrics`).
//!
//! The cache keeps its counters in lock-free atomics of its own; an export reads a
//! [`PerformanceReport`] and publishes its values to whatever recorder is installed
//! (`metrics-exporter-prometheus`, StatsD, ...): counters with `absolute`, gauges for states
//! and sizes, and latency percentiles as gauges with a `quantile` label. Call
//! [`CacheMonitor::export_metrics`] when you like, or let [`spawn_metrics_exporter`] do it
//! periodically.
//!
//! Every name starts with `aurelis_cache_`; [`METRIC_NAMES`] lists them all, and
//! docs/monitoring.md explains each with its labels:
//!
//! | name | type | labels |
//! |---|---|---|
//! | `aurelis_cache_requests_total` | counter | `result` = `hit` \| `miss` |
//! | `aurelis_cache_op_total` | counter | `tier`, `op`, `result` (see below) |
//! | `aurelis_cache_writes_total`, `_deletes_total`, `_errors_total`, `_corrupt_total`, `_invalidations_total`, `_type_mismatches_total`, `_served_uncached_total`, `_remote_loads_awaited_total` | counter | |
//! | `aurelis_cache_loader_calls_total`, `aurelis_cache_loader_errors_total` | counter | |
//! | `aurelis_cache_stale_served_total`, `aurelis_cache_coalesced_waiters_total` | counter | |
//! | `aurelis_cache_backplane_published_total`, `aurelis_cache_backplane_applied_total` | counter | |
//! | `aurelis_cache_get_latency_seconds` | gauge | `quantile` = `0.5` \| `0.9` \| `0.99` \| `1` (max) |
//! | `aurelis_cache_latency_seconds` | gauge | `tier`, `op`, `quantile` |
//! | `aurelis_cache_entries`, `aurelis_cache_bytes` | gauge | `tier` (unshared tiers only) |
//! | `aurelis_cache_breaker_open` | gauge (0/1) | `tier` |
//! | `aurelis_cache_pending_keys` | gauge | `tier` |
//! | `aurelis_cache_write_queue_depth`, `aurelis_cache_write_dead_letters` | gauge | `queue` |
//!
//! `aurelis_cache_op_total{tier, op, result}`: `op="get"` with `result` `hit` or `miss`;
//! `op="drop"` with `expired` or `corrupt` (entries found and dropped, also counted as get
//! misses); `op="set"`, `"delete"`, `"writeback"` with `ok`; `op="evict"` with `capacity` or
//! `expired` (reported by the store); `op="any"` with `error`, `timeout` (also counted as
//! errors) or `skipped` (breaker open).

use std::sync::Arc;
use std::time::Duration;

use ::metrics::Label;
use aurelis_cache_core::stats::LatencySummary;

use crate::cache::Cache;
use crate::monitor::{BreakerState, CacheMonitor, PerformanceReport};

/// Every metric name the exporter can emit. `aurelis_cache_entries` and
/// `aurelis_cache_bytes` appear only for tiers that can tell (never shared ones), the latency
/// gauges only for operations that ran, the write queue gauges only when a queue is registered
/// with the monitor ([`CacheMonitor::with_write_queue`]).
pub const METRIC_NAMES: &[&str] = &[
    REQUESTS,
    OP,
    WRITES,
    DELETES,
    ERRORS,
    CORRUPT,
    INVALIDATIONS,
    TYPE_MISMATCHES,
    SERVED_UNCACHED,
    REMOTE_LOADS_AWAITED,
    LOADER_CALLS,
    LOADER_ERRORS,
    STALE_SERVED,
    COALESCED_WAITERS,
    PUBLISHED,
    REMOTE_APPLIED,
    GET_LATENCY,
    LATENCY,
    ENTRIES,
    BYTES,
    BREAKER_OPEN,
    PENDING_KEYS,
    WRITE_QUEUE_DEPTH,
    WRITE_DEAD_LETTERS,
];

const REQUESTS: &str = "aurelis_cache_requests_total";
const OP: &str = "aurelis_cache_op_total";
const WRITES: &str = "aurelis_cache_writes_total";
const DELETES: &str = "aurelis_cache_deletes_total";
const ERRORS: &str = "aurelis_cache_errors_total";
const CORRUPT: &str = "aurelis_cache_corrupt_total";
const INVALIDATIONS: &str = "aurelis_cache_invalidations_total";
const TYPE_MISMATCHES: &str = "aurelis_cache_type_mismatches_total";
const SERVED_UNCACHED: &str = "aurelis_cache_served_uncached_total";
const REMOTE_LOADS_AWAITED: &str = "aurelis_cache_remote_loads_awaited_total";
const LOADER_CALLS: &str = "aurelis_cache_loader_calls_total";
const LOADER_ERRORS: &str = "aurelis_cache_loader_errors_total";
const STALE_SERVED: &str = "aurelis_cache_stale_served_total";
const COALESCED_WAITERS: &str = "aurelis_cache_coalesced_waiters_total";
const PUBLISHED: &str = "aurelis_cache_backplane_published_total";
const REMOTE_APPLIED: &str = "aurelis_cache_backplane_applied_total";
const GET_LATENCY: &str = "aurelis_cache_get_latency_seconds";
const LATENCY: &str = "aurelis_cache_latency_seconds";
const ENTRIES: &str = "aurelis_cache_entries";
const BYTES: &str = "aurelis_cache_bytes";
const BREAKER_OPEN: &str = "aurelis_cache_breaker_open";
const PENDING_KEYS: &str = "aurelis_cache_pending_keys";
const WRITE_QUEUE_DEPTH: &str = "aurelis_cache_write_queue_depth";
const WRITE_DEAD_LETTERS: &str = "aurelis_cache_write_dead_letters";

/// Publishes a cache's counters to the installed `metrics` recorder, optionally with labels of
/// its own on every metric (to tell several caches of one process apart).
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> aurelis_cache::Result<()> {
/// # let cache = aurelis_cache::Cache::builder()
/// #     .tier(aurelis_cache::Tier::new("memory", std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?)))
/// #     .build()?;
/// use aurelis_cache::{CacheMonitor, MetricsExporter};
/// cache.get::<u8>(("c", "missing")).await?;
/// let exporter = MetricsExporter::new(CacheMonitor::new(cache)).label("cache", "sessions");
/// // With no recorder installed this publishes to nothing; with one, the values land there.
/// let report = exporter.export().await;
/// assert_eq!(report.overall_metrics.metrics.misses, 1);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct MetricsExporter {
    monitor: CacheMonitor,
    labels: Vec<(String, String)>,
}

impl MetricsExporter {
    /// An exporter of `monitor`'s cache (and its write queues).
    pub fn new(monitor: impl Into<CacheMonitor>) -> Self {
        MetricsExporter { monitor: monitor.into(), labels: Vec::new() }
    }

    /// Adds the label `key=value` to every metric exported.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.push((key.into(), value.into()));
        self
    }

    /// Reads a report and publishes it; returns the report.
    pub async fn export(&self) -> PerformanceReport {
        let report = self.monitor.performance_report().await;
        self.publish(&report);
        report
    }

    /// Publishes `report` to the installed recorder (no I/O of its own).
    pub fn publish(&self, report: &PerformanceReport) {
        let o = &report.overall_metrics;
        self.counter(REQUESTS, &[("result", "hit")], o.metrics.hits);
        self.counter(REQUESTS, &[("result", "miss")], o.metrics.misses);
        self.counter(WRITES, &[], o.metrics.writes);
        self.counter(DELETES, &[], o.metrics.deletes);
        self.counter(ERRORS, &[], o.metrics.errors);
        self.counter(CORRUPT, &[], o.corrupt);
        self.counter(INVALIDATIONS, &[], o.invalidations);
        self.counter(TYPE_MISMATCHES, &[], o.type_mismatches);
        self.counter(SERVED_UNCACHED, &[], o.served_uncached);
        self.counter(REMOTE_LOADS_AWAITED, &[], o.remote_loads_awaited);
        self.counter(LOADER_CALLS, &[], o.loader_calls);
        self.counter(LOADER_ERRORS, &[], o.loader_errors);
        self.counter(STALE_SERVED, &[], o.stale_served);
        self.counter(COALESCED_WAITERS, &[], o.coalesced_waiters);
        self.counter(PUBLISHED, &[], o.published);
        self.counter(REMOTE_APPLIED, &[], o.remote_applied);
        self.quantiles(GET_LATENCY, &[], &o.get_latency);

        for t in &report.backend_metrics {
            let tier = t.name.as_str();
            let m = &t.metrics;
            for (op, result, v) in [
                ("get", "hit", m.hits),
                ("get", "miss", m.misses),
                ("drop", "expired", t.expired),
                ("drop", "corrupt", t.corrupt),
                ("set", "ok", m.writes),
                ("delete", "ok", m.deletes),
                ("writeback", "ok", t.writebacks),
                ("evict", "capacity", t.evictions),
                ("evict", "expired", t.expirations),
                ("any", "error", m.errors),
                ("any", "timeout", t.timeouts),
                ("any", "skipped", t.skipped),
            ] {
                self.counter(OP, &[("tier", tier), ("op", op), ("result", result)], v);
            }
            for (op, latency) in &t.latency {
                self.quantiles(LATENCY, &[("tier", tier), ("op", op)], latency);
            }
            if let Some(entries) = m.cache_size {
                self.gauge(ENTRIES, &[("tier", tier)], entries as f64);
            }
            if let Some(bytes) = m.memory_usage {
                self.gauge(BYTES, &[("tier", tier)], bytes as f64);
            }
            let open = if t.breaker == BreakerState::Open { 1.0 } else { 0.0 };
            self.gauge(BREAKER_OPEN, &[("tier", tier)], open);
            self.gauge(PENDING_KEYS, &[("tier", tier)], t.pending_keys as f64);
        }
        for (queue, q) in &report.write_queues {
            self.gauge(WRITE_QUEUE_DEPTH, &[("queue", queue)], q.queue_depth as f64);
            self.gauge(WRITE_DEAD_LETTERS, &[("queue", queue)], q.dead_letters as f64);
        }
        if let Some(costs) = &report.model_costs {
            use crate::llm::cost_metrics as m;
            for (model, c) in &costs.models {
                let label = [("model", model.as_str())];
                self.counter(m::MODEL_REQUESTS, &label, c.requests);
                self.counter(m::MODEL_HITS, &label, c.hits);
                self.counter(m::MODEL_PROVIDER_CALLS, &label, c.provider_calls);
                for (kind, n) in
                    [("prompt", c.prompt_tokens_saved), ("completion", c.completion_tokens_saved)]
                {
                    self.counter(m::MODEL_TOKENS_SAVED, &[("model", model), ("kind", kind)], n);
                }
                self.gauge(m::MODEL_COST_SAVED, &label, c.cost_saved);
                self.gauge(m::MODEL_LATENCY_SAVED, &label, c.provider_latency_saved.as_secs_f64());
            }
        }
    }

    /// Exports every `every` until the cache is dropped (the task holds no strong handle
    /// of it) or the returned handle is aborted. Must be called inside a Tokio runtime.
    /// A registered write queue that holds the cache itself (a `WriteBehind` does) keeps it
    /// alive: abort the handle then.
    pub fn spawn(self, every: Duration) -> tokio::task::JoinHandle<()> {
        let cache = Arc::downgrade(&self.monitor.cache.inner);
        let MetricsExporter { monitor, labels } = self;
        let CacheMonitor { queues, good_hit_rate, models, .. } = monitor;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every.max(Duration::from_millis(1)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = cache.upgrade() else { break };
                let monitor = CacheMonitor {
                    cache: Cache { inner },
                    queues: queues.clone(),
                    good_hit_rate,
                    models: models.clone(),
                };
                MetricsExporter { monitor, labels: labels.clone() }.export().await;
            }
            tracing::debug!("cache dropped: metrics exporter stopped");
        })
    }

    fn labels(&self, extra: &[(&'static str, &str)]) -> Vec<Label> {
        self.labels
            .iter()
            .map(|(k, v)| Label::new(k.clone(), v.clone()))
            .chain(extra.iter().map(|(k, v)| Label::new(*k, (*v).to_owned())))
            .collect()
    }

    fn counter(&self, name: &'static str, labels: &[(&'static str, &str)], value: u64) {
        ::metrics::counter!(name, self.labels(labels)).absolute(value);
    }

    fn gauge(&self, name: &'static str, labels: &[(&'static str, &str)], value: f64) {
        ::metrics::gauge!(name, self.labels(labels)).set(value);
    }

    fn quantiles(&self, name: &'static str, labels: &[(&'static str, &str)], l: &LatencySummary) {
        for (quantile, us) in
            [("0.5", l.p50_us), ("0.9", l.p90_us), ("0.99", l.p99_us), ("1", l.max_us)]
        {
            let mut all = labels.to_vec();
            all.push(("quantile", quantile));
            self.gauge(name, &all, us / 1e6);
        }
    }
}

impl CacheMonitor {
    /// Publishes the current counters to the installed `metrics` recorder (see
    /// [`MetricsExporter`] for names and labels) and returns the report they came from.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> aurelis_cache::Result<()> {
    /// # let cache = aurelis_cache::Cache::builder()
    /// #     .tier(aurelis_cache::Tier::new("memory", std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?)))
    /// #     .build()?;
    /// cache.set(("c", "k"), &1u8).await?;
    /// let report = aurelis_cache::CacheMonitor::new(cache).export_metrics().await;
    /// assert_eq!(report.overall_metrics.metrics.writes, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn export_metrics(&self) -> PerformanceReport {
        MetricsExporter::new(self.clone()).export().await
    }
}

/// Exports `monitor`'s cache (a [`Cache`] or a [`CacheMonitor`] with its write queues) to the
/// installed `metrics` recorder every `every`, until the cache is dropped or the handle is
/// aborted (see [`MetricsExporter::spawn`]). Must be called inside a Tokio runtime.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> aurelis_cache::Result<()> {
/// # let cache = aurelis_cache::Cache::builder()
/// #     .tier(aurelis_cache::Tier::new("memory", std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?)))
/// #     .build()?;
/// let exporter = aurelis_cache::spawn_metrics_exporter(cache.clone(), std::time::Duration::from_millis(10));
/// drop(cache); // the exporter stops at its next tick once the last handle is gone
/// let finished = tokio::time::timeout(std::time::Duration::from_secs(5), exporter).await;
/// assert!(finished.is_ok(), "the exporter ended with the cache");
/// # Ok(())
/// # }
/// ```
pub fn spawn_metrics_exporter(
    monitor: impl Into<CacheMonitor>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    MetricsExporter::new(monitor).spawn(every)
}
