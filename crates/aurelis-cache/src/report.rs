//! The stats report: counters and latencies kept as the cache works, plus what the unshared
//! stores can tell cheaply.

use std::time::Duration;

use aurelis_cache_core::StatsReport;

use crate::cache::Cache;

impl Cache {
    /// A report of the counters, latencies, and each unshared tier's entries and bytes (asked
    /// of the stores, each under its tier's time limit; `None` where a store could not tell,
    /// and always for shared tiers, whose stores would have to scan a shared server).
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// # let cache = aurelis_cache::Cache::builder()
    /// #     .tier(aurelis_cache::Tier::new("memory", std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?)))
    /// #     .build()?;
    /// cache.set(("a", "1"), &1u8).await?;
    /// cache.get::<u8>(("a", "1")).await?;
    /// let report = cache.stats_report().await;
    /// assert_eq!(report.overall.hits, 1);
    /// assert_eq!(report.tiers[0].entries, Some(1));
    /// # Ok::<(), aurelis_cache::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn stats_report(&self) -> StatsReport {
        let mut tiers = Vec::with_capacity(self.inner.tiers.len());
        for tier in &self.inner.tiers {
            let mut report = tier.stats.snapshot();
            let counters = tier.store().counters();
            report.evictions = counters.evictions;
            report.expirations = counters.expirations;
            report.bytes_before_compression = counters.bytes_written_before;
            report.bytes_after_compression = counters.bytes_written_after;
            if !tier.is_open() && !tier.shared {
                let limit = tier.config.timeout.unwrap_or(Duration::from_secs(2));
                report.entries =
                    tokio::time::timeout(limit, tier.store().len()).await.ok().and_then(|r| r.ok());
                report.bytes = tokio::time::timeout(limit, tier.store().size_bytes())
                    .await
                    .ok()
                    .and_then(|r| r.ok());
            }
            tiers.push(report);
        }
        StatsReport::new(self.inner.stats.snapshot(), tiers)
    }
}
