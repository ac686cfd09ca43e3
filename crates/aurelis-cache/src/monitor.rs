//! `CacheMonitor`: the reference's current stats and performance report, built from the
//! cache's lock-free counters and [`Cache::stats_report`] (cheap store counters, never a scan
//! of a shared tier), plus what the reference lacks: per-tier latency percentiles, stale
//! served, coalesced waiters, loader calls and errors, breaker state, keys a tier missed,
//! backplane counters, and write-behind queue depth and dead letters from any
//! [`WriteQueueStats`] provider.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use aurelis_cache_core::stats::LatencySummary;
use aurelis_cache_core::{OverallReport, StatsReport, TierReport};
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crate::cache::Cache;
use crate::llm::{CostBook, CostReport, ModelResponseCache};

/// The reference's `CacheMetrics`: the whole cache in [`CacheMonitor::current_stats`], one
/// tier in [`BackendMetrics`].
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct CacheMetrics {
    /// Lookups answered.
    pub hits: u64,
    /// Lookups not answered.
    pub misses: u64,
    /// Values written.
    pub writes: u64,
    /// Keys deleted.
    pub deletes: u64,
    /// Failures (for the whole cache: tier failures, callers may still have been served).
    pub errors: u64,
    /// `hits + misses`.
    pub total_requests: u64,
    /// `hits / total_requests` (0 without requests).
    pub hit_rate: f64,
    /// Mean lookup time in microseconds (the whole cache: a `get` through every tier; a tier:
    /// its own `get`s).
    pub average_response_time_us: f64,
    /// Entries held (a tier: when its store can tell cheaply, never for a shared tier; the
    /// whole cache: the sum over the tiers that could tell, so an entry kept by two tiers
    /// counts twice).
    pub cache_size: Option<u64>,
    /// Bytes held (as `cache_size`).
    pub memory_usage: Option<u64>,
}

/// The whole cache in a [`PerformanceReport`]: the reference's metrics and the rest of the
/// cache's counters.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct OverallMetrics {
    /// The reference's fields.
    #[serde(flatten)]
    pub metrics: CacheMetrics,
    /// Expired entries served because the loader failed (fail-safe).
    pub stale_served: u64,
    /// Callers that waited for another caller's loader instead of running their own.
    pub coalesced_waiters: u64,
    /// Loader calls.
    pub loader_calls: u64,
    /// Loader failures.
    pub loader_errors: u64,
    /// Prefix, pattern, tag, model and clear invalidations.
    pub invalidations: u64,
    /// Unreadable entries found (and dropped).
    pub corrupt: u64,
    /// Entries that did not decode into the type asked for.
    pub type_mismatches: u64,
    /// Loaded values returned that no tier could store.
    pub served_uncached: u64,
    /// Misses answered by another process's load (cross-process single-flight).
    pub remote_loads_awaited: u64,
    /// Invalidations queued for the other processes.
    pub published: u64,
    /// Invalidations from other processes applied here.
    pub remote_applied: u64,
    /// Latency of a `get` through every tier.
    pub get_latency: LatencySummary,
}

/// A tier's circuit breaker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// The tier is used.
    #[default]
    Closed,
    /// The tier is skipped after repeated failures, and probed in the background.
    Open,
}

impl BreakerState {
    /// `"closed"` or `"open"`.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
        }
    }
}

/// One tier ("backend") in a [`PerformanceReport`].
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct BackendMetrics {
    /// The tier's name (also the key of this entry in the JSON report).
    #[serde(skip)]
    pub name: String,
    /// The reference's fields, for this tier.
    #[serde(flatten)]
    pub metrics: CacheMetrics,
    /// Operations that ran out of time (included in `errors`).
    pub timeouts: u64,
    /// Unreadable entries found (and dropped; counted as misses).
    pub corrupt: u64,
    /// Expired entries found (and dropped; counted as misses).
    pub expired: u64,
    /// Entries copied up from a lower tier.
    pub writebacks: u64,
    /// Operations skipped while the breaker was open.
    pub skipped: u64,
    /// Entries evicted for capacity (reported by the store).
    pub evictions: u64,
    /// Entries expired in the background (reported by the store).
    pub expirations: u64,
    /// The circuit breaker.
    pub breaker: BreakerState,
    /// Keys this tier missed (failed or skipped writes and invalidations) and must be repaired
    /// of before it serves them again.
    pub pending_keys: u64,
    /// Compression on the way into this tier (feature `compress`; `None` without a
    /// compression layer or before its first write; left out of the JSON then).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression: Option<CompressionReport>,
    /// Latency per operation (`get`, `set`, `delete`, `get_many`, `set_many`, `invalidate`;
    /// only those that ran).
    pub latency: BTreeMap<String, LatencySummary>,
}

/// A write-behind queue's state, as a [`WriteQueueStats`] provider reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct WriteQueueReport {
    /// Writes accepted and not yet written to the store.
    pub queue_depth: u64,
    /// Writes given up on (in the dead-letter sink).
    pub dead_letters: u64,
}

impl WriteQueueReport {
    /// A report from its parts.
    pub fn new(queue_depth: u64, dead_letters: u64) -> Self {
        WriteQueueReport { queue_depth, dead_letters }
    }
}

/// Something that can tell its write queue's depth and dead letters:
/// [`WriteBehind`](crate::strategy::WriteBehind) implements it (give the monitor a clone), and
/// so does any `Fn() -> WriteQueueReport`.
///
/// # Examples
///
/// ```
/// use std::sync::{atomic::{AtomicU64, Ordering}, Arc};
/// use aurelis_cache::{WriteQueueReport, WriteQueueStats};
///
/// let depth = Arc::new(AtomicU64::new(3));
/// let d = depth.clone();
/// let provider = move || WriteQueueReport::new(d.load(Ordering::Relaxed), 0);
/// assert_eq!(provider.write_queue_stats().queue_depth, 3);
/// ```
pub trait WriteQueueStats: Send + Sync {
    /// The queue's current state (cheap: read counters, do not walk the queue).
    fn write_queue_stats(&self) -> WriteQueueReport;
}

impl<F: Fn() -> WriteQueueReport + Send + Sync> WriteQueueStats for F {
    fn write_queue_stats(&self) -> WriteQueueReport {
        self()
    }
}

/// The reference's verdict on a hit rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub enum Efficiency {
    /// Hit rate above the monitor's threshold (0.8 by default, as in the reference).
    #[serde(rename = "Good")]
    Good,
    /// Hit rate at or below it.
    #[serde(rename = "Needs Improvement")]
    NeedsImprovement,
    /// No request yet.
    #[serde(rename = "No Traffic")]
    NoTraffic,
}

impl fmt::Display for Efficiency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Efficiency::Good => "Good",
            Efficiency::NeedsImprovement => "Needs Improvement",
            Efficiency::NoTraffic => "No Traffic",
        })
    }
}

/// The reference's `performance_summary`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct PerformanceSummary {
    /// `hit_rate * 100`.
    pub hit_rate_percentage: f64,
    /// `hits + misses`.
    pub total_requests: u64,
    /// The verdict on the hit rate.
    pub cache_efficiency: Efficiency,
    /// Tiers whose breaker is open.
    pub tiers_down: Vec<String>,
}

/// The performance report: the reference's three sections plus the write queues.
///
/// JSON shape (every number is a JSON number; `cache_size` and `memory_usage` may be `null`):
///
/// ```text
/// {
///   "overall_metrics": { hits, misses, writes, deletes, errors, total_requests, hit_rate,
///                        average_response_time_us, cache_size, memory_usage,
///                        stale_served, coalesced_waiters, loader_calls, loader_errors,
///                        invalidations, corrupt, type_mismatches, served_uncached,
///                        published, remote_applied,
///                        get_latency: { count, mean_us, p50_us, p90_us, p99_us, max_us } },
///   "backend_metrics": { "<tier>": { hits, misses, writes, deletes, errors, total_requests,
///                        hit_rate, average_response_time_us, cache_size, memory_usage,
///                        timeouts, corrupt, expired, writebacks, skipped, evictions,
///                        expirations, breaker: "closed" | "open", pending_keys,
///                        latency: { "<op>": { count, mean_us, ... } } }, ... },
///   "write_queues":    { "<name>": { queue_depth, dead_letters }, ... },
///   "performance_summary": { hit_rate_percentage, total_requests,
///                            cache_efficiency: "Good" | "Needs Improvement" | "No Traffic",
///                            tiers_down: [ "<tier>", ... ] }
/// }
/// ```
///
/// `backend_metrics` lists the tiers in lookup order. Percentiles are the upper bounds of
/// their histogram buckets (within 12.5%), so a p99 can exceed the exact max in JSON; the
/// `Display` table, compact and per tier, caps them at the max.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct PerformanceReport {
    /// The whole cache.
    pub overall_metrics: OverallMetrics,
    /// Each tier, in lookup order (a JSON object keyed by tier name).
    #[serde(serialize_with = "tiers_as_map")]
    pub backend_metrics: Vec<BackendMetrics>,
    /// Each write queue registered with the monitor, by name.
    pub write_queues: BTreeMap<String, WriteQueueReport>,
    /// What the model cache registered with [`CacheMonitor::with_model_cache`] saved (absent
    /// from the JSON without one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_costs: Option<CostReport>,
    /// The verdict.
    pub performance_summary: PerformanceSummary,
}

fn tiers_as_map<S: Serializer>(tiers: &[BackendMetrics], s: S) -> Result<S::Ok, S::Error> {
    let mut map = s.serialize_map(Some(tiers.len()))?;
    for tier in tiers {
        map.serialize_entry(&tier.name, tier)?;
    }
    map.end()
}

impl PerformanceReport {
    /// The tier named `name`.
    pub fn tier(&self, name: &str) -> Option<&BackendMetrics> {
        self.backend_metrics.iter().find(|t| t.name == name)
    }

    /// The report as pretty JSON.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }
}

fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn human_bytes(v: Option<u64>) -> String {
    match v {
        None => "-".to_owned(),
        Some(b) if b < 10 * 1024 => format!("{b} B"),
        Some(b) if b < 10 * 1024 * 1024 => format!("{:.1} KiB", b as f64 / 1024.0),
        Some(b) => format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
    }
}

impl fmt::Display for PerformanceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.overall_metrics;
        let s = &self.performance_summary;
        writeln!(
            f,
            "requests {} | hit rate {:.1}% ({}) | loader calls {} ({} failed) | coalesced waiters {} | stale served {}",
            s.total_requests,
            s.hit_rate_percentage,
            s.cache_efficiency,
            o.loader_calls,
            o.loader_errors,
            o.coalesced_waiters,
            o.stale_served
        )?;
        let l = &o.get_latency;
        writeln!(
            f,
            "get latency (us) | p50 {:.0} | p90 {:.0} | p99 {:.0} | max {:.0} | backplane published {} applied {}",
            l.p50_us.min(l.max_us),
            l.p90_us.min(l.max_us),
            l.p99_us.min(l.max_us),
            l.max_us,
            o.published,
            o.remote_applied
        )?;
        writeln!(
            f,
            "{:<10} {:>8} {:>8} {:>6} {:>8} {:>7} {:>6} {:>8} {:>8} {:>8} {:>10} {:>7} {:>7}",
            "tier",
            "hits",
            "misses",
            "hit%",
            "writes",
            "w-back",
            "errors",
            "p50 us",
            "p99 us",
            "entries",
            "bytes",
            "breaker",
            "pending"
        )?;
        for t in &self.backend_metrics {
            let m = &t.metrics;
            let get = t.latency.get("get").cloned().unwrap_or_default();
            writeln!(
                f,
                "{:<10} {:>8} {:>8} {:>6.1} {:>8} {:>7} {:>6} {:>8.0} {:>8.0} {:>8} {:>10} {:>7} {:>7}",
                t.name,
                m.hits,
                m.misses,
                m.hit_rate * 100.0,
                m.writes,
                t.writebacks,
                m.errors,
                get.p50_us.min(get.max_us),
                get.p99_us.min(get.max_us),
                opt(m.cache_size),
                human_bytes(m.memory_usage),
                t.breaker.as_str(),
                t.pending_keys
            )?;
        }
        for (name, q) in &self.write_queues {
            writeln!(
                f,
                "write queue {name}: depth {} | dead letters {}",
                q.queue_depth, q.dead_letters
            )?;
        }
        if let Some(costs) = &self.model_costs {
            write!(f, "{costs}")?;
        }
        Ok(())
    }
}

/// Reports on a cache: [`CacheMonitor::current_stats`] (the reference's `CacheMetrics`) and
/// [`CacheMonitor::performance_report`] (JSON-serializable, with a compact `Display` table).
/// Reading the report is cheap: counters, and each unshared tier's entry and byte counters.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> aurelis_cache::Result<()> {
/// use std::sync::Arc;
/// use aurelis_cache::{Cache, CacheMonitor, Efficiency, Tier, MokaStore};
///
/// let cache = Cache::builder()
///     .tier(Tier::new("memory", Arc::new(MokaStore::builder().build()?)))
///     .build()?;
/// cache.set(("user_data", "u1"), &1u8).await?;
/// for _ in 0..9 {
///     cache.get::<u8>(("user_data", "u1")).await?;
/// }
/// cache.get::<u8>(("user_data", "u2")).await?;
///
/// let monitor = CacheMonitor::new(cache);
/// let stats = monitor.current_stats().await;
/// assert_eq!((stats.hits, stats.misses, stats.total_requests), (9, 1, 10));
///
/// let report = monitor.performance_report().await;
/// assert_eq!(report.performance_summary.hit_rate_percentage, 90.0);
/// assert_eq!(report.performance_summary.cache_efficiency, Efficiency::Good);
/// assert_eq!(report.tier("memory").unwrap().metrics.cache_size, Some(1));
/// let json = serde_json::to_value(&report).unwrap();
/// assert_eq!(json["backend_metrics"]["memory"]["breaker"], "closed");
/// println!("{report}");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct CacheMonitor {
    pub(crate) cache: Cache,
    pub(crate) queues: Vec<(String, Arc<dyn WriteQueueStats>)>,
    pub(crate) good_hit_rate: f64,
    pub(crate) models: Option<Arc<CostBook>>,
}

impl fmt::Debug for CacheMonitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheMonitor")
            .field("cache", &self.cache)
            .field("write_queues", &self.queues.iter().map(|(n, _)| n).collect::<Vec<_>>())
            .field("good_hit_rate", &self.good_hit_rate)
            .finish()
    }
}

impl From<Cache> for CacheMonitor {
    fn from(cache: Cache) -> Self {
        CacheMonitor::new(cache)
    }
}

impl CacheMonitor {
    /// A monitor of `cache` (hit rates above 0.8 are "Good", as in the reference).
    pub fn new(cache: Cache) -> Self {
        CacheMonitor { cache, queues: Vec::new(), good_hit_rate: 0.8, models: None }
    }

    /// Reports the write queue `name` (a write-behind strategy, or any
    /// [`WriteQueueStats`]) in `write_queues` and in the exported metrics.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> aurelis_cache::Result<()> {
    /// # let cache = aurelis_cache::Cache::builder()
    /// #     .tier(aurelis_cache::Tier::new("memory", std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?)))
    /// #     .build()?;
    /// use aurelis_cache::{CacheMonitor, WriteQueueReport};
    /// let monitor = CacheMonitor::new(cache).with_write_queue("orders", || WriteQueueReport::new(5, 1));
    /// let report = monitor.performance_report().await;
    /// assert_eq!(report.write_queues["orders"].queue_depth, 5);
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_write_queue(
        mut self,
        name: impl Into<String>,
        queue: impl WriteQueueStats + 'static,
    ) -> Self {
        self.queues.push((name.into(), Arc::new(queue)));
        self
    }

    /// Reports what `models` saved (requests, hits, tokens, cost, provider time per model) in
    /// `model_costs` and, with the `metrics` feature, in the exported metrics
    /// (`llm::MODEL_METRIC_NAMES`, with that feature). The monitor keeps the
    /// counters, not the model cache.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> aurelis_cache::Result<()> {
    /// # let cache = aurelis_cache::Cache::builder()
    /// #     .tier(aurelis_cache::Tier::new("memory", std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?)))
    /// #     .build()?;
    /// use aurelis_cache::CacheMonitor;
    /// use aurelis_cache::llm::{ModelRequest, ModelResponse, ModelResponseCache, Usage};
    /// let models = ModelResponseCache::new(cache.clone());
    /// let request = ModelRequest::new("gpt-4o").temperature(0.0);
    /// for _ in 0..2 {
    ///     models.get_or_call(&request, || async {
    ///         Ok::<_, std::io::Error>(ModelResponse::success("gpt-4o", "hi").usage(Usage::new(7, 1)))
    ///     }).await?;
    /// }
    /// let report = CacheMonitor::new(cache).with_model_cache(&models).performance_report().await;
    /// assert_eq!(report.model_costs.unwrap().models["gpt-4o"].prompt_tokens_saved, 7);
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_model_cache(mut self, models: &ModelResponseCache) -> Self {
        self.models = Some(models.cost_book());
        self
    }

    /// The hit rate above which the summary says "Good" (default 0.8).
    pub fn good_hit_rate(mut self, rate: f64) -> Self {
        self.good_hit_rate = rate;
        self
    }

    /// The cache monitored.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// The whole cache's counters in the reference's `CacheMetrics` shape.
    pub async fn current_stats(&self) -> CacheMetrics {
        let report = self.cache.stats_report().await;
        overall_metrics(&report.overall, &report.tiers)
    }

    /// The full report (see [`PerformanceReport`] for its JSON shape).
    pub async fn performance_report(&self) -> PerformanceReport {
        let report = self.cache.stats_report().await;
        self.build_report(report)
    }

    fn build_report(&self, report: StatsReport) -> PerformanceReport {
        let o = &report.overall;
        let overall = OverallMetrics {
            metrics: overall_metrics(o, &report.tiers),
            stale_served: o.stale_served,
            coalesced_waiters: o.coalesced_waiters,
            loader_calls: o.loader_calls,
            loader_errors: o.loader_errors,
            invalidations: o.invalidations,
            corrupt: o.corrupt,
            type_mismatches: o.type_mismatches,
            served_uncached: o.served_uncached,
            remote_loads_awaited: o.remote_loads_awaited,
            published: o.published,
            remote_applied: o.remote_applied,
            get_latency: o.get_latency.clone(),
        };
        let tiers: Vec<BackendMetrics> =
            report.tiers.iter().map(|t| self.tier_metrics(t)).collect();
        let write_queues =
            self.queues.iter().map(|(name, q)| (name.clone(), q.write_queue_stats())).collect();
        let total = overall.metrics.total_requests;
        let performance_summary = PerformanceSummary {
            hit_rate_percentage: overall.metrics.hit_rate * 100.0,
            total_requests: total,
            cache_efficiency: if total == 0 {
                Efficiency::NoTraffic
            } else if overall.metrics.hit_rate > self.good_hit_rate {
                Efficiency::Good
            } else {
                Efficiency::NeedsImprovement
            },
            tiers_down: tiers
                .iter()
                .filter(|t| t.breaker == BreakerState::Open)
                .map(|t| t.name.clone())
                .collect(),
        };
        PerformanceReport {
            overall_metrics: overall,
            backend_metrics: tiers,
            write_queues,
            model_costs: self.models.as_ref().map(|m| m.report()),
            performance_summary,
        }
    }

    fn tier_metrics(&self, t: &TierReport) -> BackendMetrics {
        let total = t.hits + t.misses;
        let get = t.latency.get("get");
        BackendMetrics {
            name: t.name.clone(),
            metrics: CacheMetrics {
                hits: t.hits,
                misses: t.misses,
                writes: t.writes,
                deletes: t.deletes,
                errors: t.errors,
                total_requests: total,
                hit_rate: ratio(t.hits, total),
                average_response_time_us: get.map_or(0.0, |l| l.mean_us),
                cache_size: t.entries,
                memory_usage: t.bytes,
            },
            timeouts: t.timeouts,
            corrupt: t.corrupt,
            expired: t.expired,
            writebacks: t.writebacks,
            skipped: t.skipped,
            evictions: t.evictions,
            expirations: t.expirations,
            breaker: if self.cache.is_tier_down(&t.name) {
                BreakerState::Open
            } else {
                BreakerState::Closed
            },
            pending_keys: self.cache.tier_pending(&t.name) as u64,
            compression: (t.bytes_before_compression > 0).then(|| CompressionReport {
                bytes_before: t.bytes_before_compression,
                bytes_after: t.bytes_after_compression,
                ratio: t.bytes_before_compression as f64 / t.bytes_after_compression.max(1) as f64,
            }),
            latency: t.latency.clone(),
        }
    }
}

/// What a tier's compression layer did to the bytes written through it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct CompressionReport {
    /// Bytes written into the tier.
    pub bytes_before: u64,
    /// Bytes it stored.
    pub bytes_after: u64,
    /// `bytes_before / bytes_after`.
    pub ratio: f64,
}

fn ratio(part: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        part as f64 / total as f64
    }
}

fn sum_known(values: impl Iterator<Item = Option<u64>>) -> Option<u64> {
    values.flatten().fold(None, |acc, v| Some(acc.unwrap_or(0) + v))
}

fn overall_metrics(o: &OverallReport, tiers: &[TierReport]) -> CacheMetrics {
    CacheMetrics {
        hits: o.hits,
        misses: o.misses,
        writes: o.writes,
        deletes: o.deletes,
        errors: o.errors,
        total_requests: o.total_requests,
        hit_rate: o.hit_rate,
        average_response_time_us: o.get_latency.mean_us,
        cache_size: sum_known(tiers.iter().map(|t| t.entries)),
        memory_usage: sum_known(tiers.iter().map(|t| t.bytes)),
    }
}
