//! Lock-free statistics: counters per tier and overall, latency histograms per tier and
//! operation, and a serializable report.
//!
//! Every counter is an `AtomicU64` updated with `Relaxed` ordering: totals are exact, a report
//! taken while operations run is a consistent-enough snapshot, and recording never blocks.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The operations whose latency is recorded per tier.
///
/// # Examples
///
/// ```
/// assert_eq!(aurelis_cache_core::Op::Get.as_str(), "get");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Op {
    /// `get`.
    Get,
    /// `set`.
    Set,
    /// `delete`.
    Delete,
    /// `get_many`.
    GetMany,
    /// `set_many`.
    SetMany,
    /// Prefix, pattern and tag invalidation, and `clear`.
    Invalidate,
}

impl Op {
    /// Every operation, in a fixed order.
    pub const ALL: [Op; 6] =
        [Op::Get, Op::Set, Op::Delete, Op::GetMany, Op::SetMany, Op::Invalidate];

    /// The operation's name in reports.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(aurelis_cache_core::Op::SetMany.as_str(), "set_many");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Set => "set",
            Op::Delete => "delete",
            Op::GetMany => "get_many",
            Op::SetMany => "set_many",
            Op::Invalidate => "invalidate",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

const SUB_BITS: u32 = 3;
const SUB: usize = 1 << SUB_BITS;
const BUCKETS: usize = (64 - SUB_BITS as usize + 1) * SUB;

/// A lock-free log-linear histogram of durations (nanoseconds), 8 buckets per power of two
/// (values are reported within 12.5%).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let h = aurelis_cache_core::stats::Histogram::new();
/// for us in 1..=100 {
///     h.record(Duration::from_micros(us));
/// }
/// let s = h.summary();
/// assert_eq!(s.count, 100);
/// assert!((45.0..=56.0).contains(&s.p50_us));
/// ```
pub struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_ns: AtomicU64,
    max_ns: AtomicU64,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram").field("summary", &self.summary()).finish()
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    /// An empty histogram.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(aurelis_cache_core::stats::Histogram::new().summary().count, 0);
    /// ```
    pub fn new() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
            max_ns: AtomicU64::new(0),
        }
    }

    fn index(ns: u64) -> usize {
        if ns < SUB as u64 {
            return ns as usize;
        }
        let msb = 63 - ns.leading_zeros();
        (((msb - SUB_BITS + 1) as usize) << SUB_BITS)
            + ((ns >> (msb - SUB_BITS)) as usize & (SUB - 1))
    }

    /// The largest value that falls in bucket `i`.
    fn upper(i: usize) -> u64 {
        if i < SUB {
            return i as u64;
        }
        let msb = (i >> SUB_BITS) as u32 + SUB_BITS - 1;
        let sub = (i & (SUB - 1)) as u64;
        let low = ((SUB as u64) | sub) << (msb - SUB_BITS);
        low.saturating_add((1u64 << (msb - SUB_BITS)) - 1)
    }

    /// Records one duration.
    ///
    /// # Examples
    ///
    /// ```
    /// let h = aurelis_cache_core::stats::Histogram::new();
    /// h.record(std::time::Duration::from_millis(2));
    /// assert_eq!(h.summary().count, 1);
    /// ```
    pub fn record(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[Self::index(ns)].fetch_add(1, Relaxed);
        self.count.fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
        self.max_ns.fetch_max(ns, Relaxed);
    }

    /// Count, mean, p50/p90/p99 and max, in microseconds.
    ///
    /// # Examples
    ///
    /// ```
    /// let h = aurelis_cache_core::stats::Histogram::new();
    /// h.record(std::time::Duration::from_micros(10));
    /// assert!(h.summary().max_us >= 10.0);
    /// ```
    pub fn summary(&self) -> LatencySummary {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let count: u64 = counts.iter().sum();
        let quantile = |q: f64| -> f64 {
            if count == 0 {
                return 0.0;
            }
            let rank = ((count as f64) * q).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return Self::upper(i) as f64 / 1000.0;
                }
            }
            0.0
        };
        let sum = self.sum_ns.load(Relaxed);
        let max_us = self.max_ns.load(Relaxed) as f64 / 1000.0;
        // A quantile is its bucket's upper bound, which can lie above the largest value
        // recorded (one read of 10.3 us sits in a bucket reaching 10.5 us): no quantile is
        // reported above the maximum.
        let quantile = |q: f64| quantile(q).min(max_us);
        LatencySummary {
            count,
            mean_us: if count == 0 { 0.0 } else { sum as f64 / count as f64 / 1000.0 },
            p50_us: quantile(0.50),
            p90_us: quantile(0.90),
            p99_us: quantile(0.99),
            max_us,
        }
    }
}

/// A latency distribution in microseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LatencySummary {
    /// Operations recorded.
    pub count: u64,
    /// Mean.
    pub mean_us: f64,
    /// Median (upper bound of its bucket).
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Largest value seen.
    pub max_us: f64,
}

/// Counters of one tier, updated lock-free.
///
/// # Examples
///
/// ```
/// let t = aurelis_cache_core::TierStats::new("memory");
/// t.record_hit();
/// t.record_miss();
/// let snap = t.snapshot();
/// assert_eq!((snap.hits, snap.misses), (1, 1));
/// ```
#[derive(Debug)]
pub struct TierStats {
    name: String,
    hits: AtomicU64,
    misses: AtomicU64,
    writes: AtomicU64,
    deletes: AtomicU64,
    errors: AtomicU64,
    timeouts: AtomicU64,
    corrupt: AtomicU64,
    expired: AtomicU64,
    writebacks: AtomicU64,
    skipped: AtomicU64,
    /// Hits that answered a whole `get` from this tier, counted once for this tier and the
    /// cache (see [`TierStats::record_answered_hit`]).
    answered_hits: AtomicU64,
    latency: [Histogram; Op::ALL.len()],
}

macro_rules! recorders {
    ($($(#[$doc:meta])* $fn:ident => $field:ident),* $(,)?) => {
        $(
            $(#[$doc])*
            pub fn $fn(&self) {
                self.$field.fetch_add(1, Relaxed);
            }
        )*
    };
}

impl TierStats {
    /// Empty counters for the tier `name`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(aurelis_cache_core::TierStats::new("disk").name(), "disk");
    /// ```
    pub fn new(name: impl Into<String>) -> Self {
        TierStats {
            name: name.into(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            deletes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            corrupt: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            writebacks: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            answered_hits: AtomicU64::new(0),
            latency: std::array::from_fn(|_| Histogram::new()),
        }
    }

    /// The tier's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    recorders! {
        /// A fresh entry was found.
        record_hit => hits,
        /// No (fresh) entry was found.
        record_miss => misses,
        /// An entry was written.
        record_write => writes,
        /// An entry was deleted.
        record_delete => deletes,
        /// The backend failed.
        record_error => errors,
        /// The backend did not answer in time (also counted as an error).
        record_timeout => timeouts,
        /// An unreadable entry was found (and dropped).
        record_corrupt => corrupt,
        /// An expired entry was found (and dropped).
        record_expired => expired,
        /// An entry found in a lower tier was written back to this one.
        record_writeback => writebacks,
        /// The tier was skipped because its circuit breaker was open.
        record_skipped => skipped,
    }

    /// A hit of this tier that answered a whole `get` of a cache whose [`CacheStats`] counts
    /// this tier's answered hits as its own ([`CacheStats::count_hits_answered_by`]): one
    /// counter for both reports instead of two, on the hot path of the first tier. It is in
    /// this tier's `hits` and in the cache's.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use aurelis_cache_core::{CacheStats, TierStats};
    /// let tier = Arc::new(TierStats::new("memory"));
    /// let cache = CacheStats::new();
    /// cache.count_hits_answered_by(tier.clone());
    /// tier.record_answered_hit();
    /// tier.record_hit(); // a hit counted the usual way: this tier's alone
    /// assert_eq!(tier.snapshot().hits, 2);
    /// assert_eq!(cache.snapshot().hits, 1);
    /// ```
    pub fn record_answered_hit(&self) {
        self.answered_hits.fetch_add(1, Relaxed);
    }

    /// The operations counted so far: hits, misses, writes, deletes, write-backs and errors
    /// (what a circuit breaker's failure rate is taken over, without a count of its own on
    /// every call).
    ///
    /// # Examples
    ///
    /// ```
    /// let t = aurelis_cache_core::TierStats::new("disk");
    /// t.record_hit();
    /// t.record_miss();
    /// t.record_error();
    /// t.record_timeout(); // a kind of error, already counted
    /// assert_eq!(t.calls(), 3);
    /// ```
    pub fn calls(&self) -> u64 {
        [
            &self.hits,
            &self.answered_hits,
            &self.misses,
            &self.writes,
            &self.deletes,
            &self.writebacks,
            &self.errors,
        ]
        .iter()
        .map(|c| c.load(Relaxed))
        .fold(0u64, u64::wrapping_add)
    }

    /// Records the latency of one operation.
    ///
    /// # Examples
    ///
    /// ```
    /// let t = aurelis_cache_core::TierStats::new("memory");
    /// t.record_latency(aurelis_cache_core::Op::Get, std::time::Duration::from_micros(3));
    /// assert_eq!(t.latency(aurelis_cache_core::Op::Get).count, 1);
    /// ```
    pub fn record_latency(&self, op: Op, d: Duration) {
        self.latency[op.index()].record(d);
    }

    /// The latency summary of one operation.
    pub fn latency(&self, op: Op) -> LatencySummary {
        self.latency[op.index()].summary()
    }

    /// A copy of the counters and latencies.
    pub fn snapshot(&self) -> TierReport {
        let mut latency = BTreeMap::new();
        for op in Op::ALL {
            let s = self.latency(op);
            if s.count > 0 {
                latency.insert(op.as_str().to_owned(), s);
            }
        }
        TierReport {
            name: self.name.clone(),
            hits: self.hits.load(Relaxed) + self.answered_hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            writes: self.writes.load(Relaxed),
            deletes: self.deletes.load(Relaxed),
            errors: self.errors.load(Relaxed),
            timeouts: self.timeouts.load(Relaxed),
            corrupt: self.corrupt.load(Relaxed),
            expired: self.expired.load(Relaxed),
            writebacks: self.writebacks.load(Relaxed),
            skipped: self.skipped.load(Relaxed),
            evictions: 0,
            expirations: 0,
            bytes_before_compression: 0,
            bytes_after_compression: 0,
            entries: None,
            bytes: None,
            latency,
        }
    }
}

/// Counters of the whole cache (all tiers together), updated lock-free.
///
/// # Examples
///
/// ```
/// let s = aurelis_cache_core::CacheStats::new();
/// s.record_hit();
/// s.record_loader_call();
/// assert_eq!(s.snapshot().loader_calls, 1);
/// ```
#[derive(Debug, Default)]
pub struct CacheStats {
    hits: AtomicU64,
    misses: AtomicU64,
    writes: AtomicU64,
    deletes: AtomicU64,
    errors: AtomicU64,
    corrupt: AtomicU64,
    stale_served: AtomicU64,
    loader_calls: AtomicU64,
    loader_errors: AtomicU64,
    coalesced_waiters: AtomicU64,
    invalidations: AtomicU64,
    type_mismatches: AtomicU64,
    served_uncached: AtomicU64,
    remote_loads_awaited: AtomicU64,
    published: AtomicU64,
    remote_applied: AtomicU64,
    latency_get: Histogram,
    /// The tier whose answered hits are this cache's hits too.
    answered_by: std::sync::OnceLock<Arc<TierStats>>,
}

impl CacheStats {
    /// Empty counters.
    pub fn new() -> Self {
        Self::default()
    }

    recorders! {
        /// A `get` was answered by some tier.
        record_hit => hits,
        /// A `get` found nothing in any tier.
        record_miss => misses,
        /// A value was written.
        record_write => writes,
        /// A key was deleted.
        record_delete => deletes,
        /// An operation failed in some tier (the caller may still have been served).
        record_error => errors,
        /// An unreadable entry was found in some tier.
        record_corrupt => corrupt,
        /// An expired entry was served because the loader failed (fail-safe).
        record_stale_served => stale_served,
        /// The loader was called for a missing key.
        record_loader_call => loader_calls,
        /// The loader failed.
        record_loader_error => loader_errors,
        /// A caller waited for another caller's loader instead of running its own.
        record_coalesced_waiter => coalesced_waiters,
        /// A prefix, pattern, tag or clear invalidation ran.
        record_invalidation => invalidations,
        /// An entry did not decode into the type asked for (a local miss; the entry is kept
        /// for the readers of its own type).
        record_type_mismatch => type_mismatches,
        /// A loaded value was returned but no tier could store it.
        record_served_uncached => served_uncached,
        /// A value another process loaded, awaited under its single-flight lease.
        record_remote_load_awaited => remote_loads_awaited,
        /// An invalidation was queued for the other processes (in the order they get them).
        record_published => published,
        /// An invalidation from another process was applied here.
        record_remote_applied => remote_applied,
    }

    /// Counts the hits `tier` records with [`TierStats::record_answered_hit`] as this cache's
    /// hits too (set once; later calls are ignored).
    pub fn count_hits_answered_by(&self, tier: Arc<TierStats>) {
        let _ = self.answered_by.set(tier);
    }

    /// Records the latency of one `get` through every tier.
    pub fn record_get_latency(&self, d: Duration) {
        self.latency_get.record(d);
    }

    /// A copy of the counters.
    pub fn snapshot(&self) -> OverallReport {
        let answered = self.answered_by.get().map_or(0, |t| t.answered_hits.load(Relaxed));
        let hits = self.hits.load(Relaxed) + answered;
        let misses = self.misses.load(Relaxed);
        let total = hits + misses;
        OverallReport {
            hits,
            misses,
            total_requests: total,
            hit_rate: if total == 0 { 0.0 } else { hits as f64 / total as f64 },
            writes: self.writes.load(Relaxed),
            deletes: self.deletes.load(Relaxed),
            errors: self.errors.load(Relaxed),
            corrupt: self.corrupt.load(Relaxed),
            stale_served: self.stale_served.load(Relaxed),
            loader_calls: self.loader_calls.load(Relaxed),
            loader_errors: self.loader_errors.load(Relaxed),
            coalesced_waiters: self.coalesced_waiters.load(Relaxed),
            invalidations: self.invalidations.load(Relaxed),
            type_mismatches: self.type_mismatches.load(Relaxed),
            served_uncached: self.served_uncached.load(Relaxed),
            remote_loads_awaited: self.remote_loads_awaited.load(Relaxed),
            published: self.published.load(Relaxed),
            remote_applied: self.remote_applied.load(Relaxed),
            get_latency: self.latency_get.summary(),
        }
    }
}

/// The whole-cache part of a [`StatsReport`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct OverallReport {
    /// `get`s answered by a tier.
    pub hits: u64,
    /// `get`s no tier could answer.
    pub misses: u64,
    /// `hits + misses`.
    pub total_requests: u64,
    /// `hits / total_requests` (0 when there were none).
    pub hit_rate: f64,
    /// Values written.
    pub writes: u64,
    /// Keys deleted.
    pub deletes: u64,
    /// Tier failures (callers may still have been served by another tier).
    pub errors: u64,
    /// Unreadable entries found (and dropped).
    pub corrupt: u64,
    /// Expired entries served because the loader failed.
    pub stale_served: u64,
    /// Loader calls.
    pub loader_calls: u64,
    /// Loader failures.
    pub loader_errors: u64,
    /// Callers that waited for another caller's loader.
    pub coalesced_waiters: u64,
    /// Prefix, pattern, tag and clear invalidations.
    pub invalidations: u64,
    /// Entries that did not decode into the type asked for (local misses, entries kept).
    #[serde(default)]
    pub type_mismatches: u64,
    /// Loaded values returned to the caller that no tier could store.
    #[serde(default)]
    pub served_uncached: u64,
    /// Misses answered by a value another process loaded while this one waited under the
    /// other's single-flight lease (no loader call here).
    #[serde(default)]
    pub remote_loads_awaited: u64,
    /// Invalidations queued for the other processes (through the backplane).
    #[serde(default)]
    pub published: u64,
    /// Invalidations from other processes applied here.
    #[serde(default)]
    pub remote_applied: u64,
    /// Latency of `get` through every tier.
    pub get_latency: LatencySummary,
}

/// One tier's part of a [`StatsReport`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TierReport {
    /// The tier's name.
    pub name: String,
    /// Fresh entries found.
    pub hits: u64,
    /// Lookups that found nothing fresh.
    pub misses: u64,
    /// Entries written.
    pub writes: u64,
    /// Entries deleted.
    pub deletes: u64,
    /// Backend failures.
    pub errors: u64,
    /// Operations that ran out of time (included in `errors`).
    pub timeouts: u64,
    /// Unreadable entries found (and dropped).
    pub corrupt: u64,
    /// Expired entries found (and dropped).
    pub expired: u64,
    /// Entries copied up from a lower tier.
    pub writebacks: u64,
    /// Operations skipped while the tier's circuit breaker was open.
    pub skipped: u64,
    /// Entries evicted for capacity (reported by the store).
    pub evictions: u64,
    /// Entries expired in the background (reported by the store).
    pub expirations: u64,
    /// Bytes written into a compression layer in front of the store (0 without one).
    #[serde(default)]
    pub bytes_before_compression: u64,
    /// Bytes the compression layer stored for them.
    #[serde(default)]
    pub bytes_after_compression: u64,
    /// Entries held, when the store could tell.
    pub entries: Option<u64>,
    /// Bytes held, when the store could tell.
    pub bytes: Option<u64>,
    /// Latency per operation.
    pub latency: BTreeMap<String, LatencySummary>,
}

/// A serializable statistics report of a cache.
///
/// # Examples
///
/// ```
/// let report = aurelis_cache_core::StatsReport::default();
/// let json = serde_json::to_string(&report).unwrap();
/// assert!(json.contains("\"overall\""));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StatsReport {
    /// The whole cache.
    pub overall: OverallReport,
    /// Each tier, in lookup order.
    pub tiers: Vec<TierReport>,
}

impl StatsReport {
    /// A report from its parts.
    pub fn new(overall: OverallReport, tiers: Vec<TierReport>) -> Self {
        StatsReport { overall, tiers }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for ns in (0..100_000u64).chain([u64::MAX / 2, u64::MAX]) {
            let i = Histogram::index(ns);
            assert!(i >= last, "{ns}");
            assert!(i < BUCKETS);
            last = i;
            let upper = Histogram::upper(i);
            assert!(upper >= ns, "{ns} -> bucket {i} upper {upper}");
            assert!(upper as f64 <= ns as f64 * 1.125 + 1.0, "{ns} -> {upper}");
        }
    }

    #[test]
    fn quantiles_never_exceed_the_maximum() {
        // 10.3 us falls in a bucket whose upper bound is above it: before quantiles were
        // capped, one such read reported p99 > max.
        for ns in [10_300u64, 1_000_001, 77_777, 513] {
            let h = Histogram::new();
            h.record(Duration::from_nanos(ns));
            let s = h.summary();
            assert_eq!(s.max_us, ns as f64 / 1000.0);
            assert!(s.p50_us <= s.p90_us && s.p90_us <= s.p99_us && s.p99_us <= s.max_us, "{s:?}");
        }
        let h = Histogram::new();
        for us in 1..=100u64 {
            h.record(Duration::from_nanos(us * 1000 + 300));
        }
        let s = h.summary();
        assert!(s.p99_us <= s.max_us && s.p50_us >= 50.0 && s.p50_us <= 57.0, "{s:?}");
    }

    #[test]
    fn counters_are_exact_under_concurrency() {
        let stats = std::sync::Arc::new(TierStats::new("t"));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let stats = stats.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        stats.record_hit();
                        stats.record_latency(Op::Get, Duration::from_nanos(500));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let snap = stats.snapshot();
        assert_eq!(snap.hits, 40_000);
        assert_eq!(snap.latency["get"].count, 40_000);
    }
}
