//! What the model cache saved: per model, requests, hits, tokens served from the cache, the
//! cost of those tokens from a price table, and the provider latency not waited for.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

/// The price of a model, in currency units (e.g. USD) per million tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Price {
    /// Per million input (prompt) tokens.
    pub input_per_million: f64,
    /// Per million output (completion) tokens.
    pub output_per_million: f64,
}

impl Price {
    /// A price per million input and output tokens.
    pub fn per_million(input: f64, output: f64) -> Self {
        Price { input_per_million: input, output_per_million: output }
    }

    /// The cost of `prompt` input and `completion` output tokens.
    ///
    /// # Examples
    ///
    /// ```
    /// let p = aurelis_cache::llm::Price::per_million(2.5, 10.0);
    /// assert_eq!(p.cost(1_000_000, 500_000), 7.5);
    /// ```
    pub fn cost(&self, prompt: u64, completion: u64) -> f64 {
        (prompt as f64 * self.input_per_million + completion as f64 * self.output_per_million)
            / 1_000_000.0
    }
}

/// Prices by model name. A model without an exact entry takes the entry of its longest
/// prefix (`gpt-4o` prices `gpt-4o-2024-08-06`), then the default, if any.
///
/// # Examples
///
/// ```
/// use aurelis_cache::llm::{Price, PriceTable};
/// let prices = PriceTable::new()
///     .price("gpt-4o", Price::per_million(2.5, 10.0))
///     .price("gpt-4o-mini", Price::per_million(0.15, 0.6));
/// assert_eq!(prices.lookup("gpt-4o-2024-08-06"), Some(Price::per_million(2.5, 10.0)));
/// assert_eq!(prices.lookup("gpt-4o-mini-2024-07-18"), Some(Price::per_million(0.15, 0.6)));
/// assert_eq!(prices.lookup("claude"), None);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PriceTable {
    /// Prices by model name (or name prefix).
    pub models: BTreeMap<String, Price>,
    /// The price of models with no entry.
    pub default: Option<Price>,
}

impl PriceTable {
    /// No prices (costs are reported as zero).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the price of `model` (and of the models it is the longest prefix of).
    pub fn price(mut self, model: impl Into<String>, price: Price) -> Self {
        self.models.insert(model.into(), price);
        self
    }

    /// Sets the price of models with no entry.
    pub fn default_price(mut self, price: Price) -> Self {
        self.default = Some(price);
        self
    }

    /// The price of `model`.
    pub fn lookup(&self, model: &str) -> Option<Price> {
        if let Some(p) = self.models.get(model) {
            return Some(*p);
        }
        self.models
            .iter()
            .filter(|(name, _)| model.starts_with(name.as_str()))
            .max_by_key(|(name, _)| name.len())
            .map(|(_, p)| *p)
            .or(self.default)
    }
}

#[derive(Default, Debug)]
struct Counters {
    requests: AtomicU64,
    hits: AtomicU64,
    provider_calls: AtomicU64,
    bypassed: AtomicU64,
    not_stored: AtomicU64,
    prompt_tokens_saved: AtomicU64,
    completion_tokens_saved: AtomicU64,
    latency_saved_us: AtomicU64,
}

/// Lock-free counters per model (a read lock to find a model's counters, a write lock only
/// the first time a model is seen).
#[derive(Debug, Default)]
pub(crate) struct CostTracker {
    models: RwLock<HashMap<String, Arc<Counters>>>,
}

/// The counters and the prices, apart from the cache (a monitor holds this, not the cache).
#[derive(Debug, Default)]
pub(crate) struct CostBook {
    pub(crate) tracker: CostTracker,
    pub(crate) prices: PriceTable,
}

impl CostBook {
    pub(crate) fn report(&self) -> CostReport {
        self.tracker.report(&self.prices)
    }
}

/// How a request was answered, for the counters.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Served {
    /// From the cache or a shared call: tokens and latency saved.
    Hit { prompt: u64, completion: u64, latency: Duration },
    /// By a call of its own, whose answer was stored.
    Called,
    /// By a call of its own, whose answer was not stored (error, truncated, ...).
    CalledNotStored,
    /// By a call of its own, the cache not consulted (sampled requests under `Skip`).
    Bypassed,
}

impl CostTracker {
    fn counters(&self, model: &str) -> Arc<Counters> {
        if let Some(c) = self.models.read().get(model) {
            return c.clone();
        }
        self.models.write().entry(model.to_owned()).or_default().clone()
    }

    pub(crate) fn record(&self, model: &str, served: Served) {
        let c = self.counters(model);
        c.requests.fetch_add(1, Relaxed);
        match served {
            Served::Hit { prompt, completion, latency } => {
                c.hits.fetch_add(1, Relaxed);
                c.prompt_tokens_saved.fetch_add(prompt, Relaxed);
                c.completion_tokens_saved.fetch_add(completion, Relaxed);
                c.latency_saved_us
                    .fetch_add(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX), Relaxed);
            }
            Served::Called => {
                c.provider_calls.fetch_add(1, Relaxed);
            }
            Served::CalledNotStored => {
                c.provider_calls.fetch_add(1, Relaxed);
                c.not_stored.fetch_add(1, Relaxed);
            }
            Served::Bypassed => {
                c.provider_calls.fetch_add(1, Relaxed);
                c.bypassed.fetch_add(1, Relaxed);
            }
        }
    }

    pub(crate) fn report(&self, prices: &PriceTable) -> CostReport {
        let mut models = BTreeMap::new();
        let mut total = ModelCost::default();
        for (name, c) in self.models.read().iter() {
            let prompt = c.prompt_tokens_saved.load(Relaxed);
            let completion = c.completion_tokens_saved.load(Relaxed);
            let price = prices.lookup(name);
            let m = ModelCost {
                requests: c.requests.load(Relaxed),
                hits: c.hits.load(Relaxed),
                provider_calls: c.provider_calls.load(Relaxed),
                bypassed: c.bypassed.load(Relaxed),
                not_stored: c.not_stored.load(Relaxed),
                prompt_tokens_saved: prompt,
                completion_tokens_saved: completion,
                cost_saved: price.map_or(0.0, |p| p.cost(prompt, completion)),
                priced: price.is_some(),
                provider_latency_saved: Duration::from_micros(c.latency_saved_us.load(Relaxed)),
            };
            total.add(&m);
            models.insert(name.clone(), m);
        }
        total.priced = models.values().all(|m| m.priced);
        CostReport { models, total }
    }
}

/// What the cache saved for one model (or in total).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ModelCost {
    /// Requests made through the model cache.
    pub requests: u64,
    /// Requests answered without a provider call of their own: from a tier, or by sharing a
    /// call in flight (coalesced or joined streams).
    pub hits: u64,
    /// Provider calls made.
    pub provider_calls: u64,
    /// Provider calls that bypassed the cache (sampled requests under `SampledPolicy::Skip`).
    pub bypassed: u64,
    /// Provider answers not stored (errors, truncated answers, ...).
    pub not_stored: u64,
    /// Input tokens of the answers served from the cache.
    pub prompt_tokens_saved: u64,
    /// Output tokens of the answers served from the cache.
    pub completion_tokens_saved: u64,
    /// The price of those tokens (zero without a price).
    pub cost_saved: f64,
    /// Whether a price was known (for the total: for every model).
    pub priced: bool,
    /// The provider time the hits did not wait for.
    #[serde(serialize_with = "secs")]
    pub provider_latency_saved: Duration,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl ModelCost {
    fn add(&mut self, m: &ModelCost) {
        self.requests += m.requests;
        self.hits += m.hits;
        self.provider_calls += m.provider_calls;
        self.bypassed += m.bypassed;
        self.not_stored += m.not_stored;
        self.prompt_tokens_saved += m.prompt_tokens_saved;
        self.completion_tokens_saved += m.completion_tokens_saved;
        self.cost_saved += m.cost_saved;
        self.provider_latency_saved += m.provider_latency_saved;
    }

    /// Hits over requests (0 without requests).
    pub fn hit_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.hits as f64 / self.requests as f64
        }
    }
}

/// What the model cache saved, per model and in total (JSON-serializable; `Display` prints a
/// table).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct CostReport {
    /// Per model, by name.
    pub models: BTreeMap<String, ModelCost>,
    /// All models.
    pub total: ModelCost,
}

impl fmt::Display for CostReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<24} {:>8} {:>8} {:>6} {:>13} {:>13} {:>10} {:>10}",
            "model",
            "requests",
            "hits",
            "calls",
            "in tok saved",
            "out tok saved",
            "cost saved",
            "time saved"
        )?;
        let row = |f: &mut fmt::Formatter<'_>, name: &str, m: &ModelCost| {
            let cost = if m.priced { format!("{:.4}", m.cost_saved) } else { "n/a".into() };
            writeln!(
                f,
                "{:<24} {:>8} {:>8} {:>6} {:>13} {:>13} {:>10} {:>9.1}s",
                name,
                m.requests,
                m.hits,
                m.provider_calls,
                m.prompt_tokens_saved,
                m.completion_tokens_saved,
                cost,
                m.provider_latency_saved.as_secs_f64()
            )
        };
        for (name, m) in &self.models {
            row(f, name, m)?;
        }
        row(f, "total", &self.total)
    }
}

/// The metrics a [`MetricsExporter`](crate::MetricsExporter) emits for a model cache
/// registered with [`CacheMonitor::with_model_cache`](crate::CacheMonitor::with_model_cache),
/// each with a `model` label (`aurelis_cache_model_tokens_saved_total` also with `kind` =
/// `prompt` | `completion`).
#[cfg(feature = "metrics")]
pub const MODEL_METRIC_NAMES: &[&str] = &[
    MODEL_REQUESTS,
    MODEL_HITS,
    MODEL_PROVIDER_CALLS,
    MODEL_TOKENS_SAVED,
    MODEL_COST_SAVED,
    MODEL_LATENCY_SAVED,
];

#[cfg(feature = "metrics")]
pub(crate) const MODEL_REQUESTS: &str = "aurelis_cache_model_requests_total";
#[cfg(feature = "metrics")]
pub(crate) const MODEL_HITS: &str = "aurelis_cache_model_hits_total";
#[cfg(feature = "metrics")]
pub(crate) const MODEL_PROVIDER_CALLS: &str = "aurelis_cache_model_provider_calls_total";
#[cfg(feature = "metrics")]
pub(crate) const MODEL_TOKENS_SAVED: &str = "aurelis_cache_model_tokens_saved_total";
#[cfg(feature = "metrics")]
pub(crate) const MODEL_COST_SAVED: &str = "aurelis_cache_model_cost_saved";
#[cfg(feature = "metrics")]
pub(crate) const MODEL_LATENCY_SAVED: &str = "aurelis_cache_model_latency_saved_seconds";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_prices_saved_tokens_per_model() {
        let t = CostTracker::default();
        let hit =
            Served::Hit { prompt: 1_000, completion: 2_000, latency: Duration::from_millis(800) };
        t.record("gpt-4o-2024", Served::Called);
        t.record("gpt-4o-2024", hit);
        t.record("gpt-4o-2024", hit);
        t.record("local", Served::Bypassed);
        let prices = PriceTable::new().price("gpt-4o", Price::per_million(2.5, 10.0));
        let r = t.report(&prices);
        let m = &r.models["gpt-4o-2024"];
        assert_eq!((m.requests, m.hits, m.provider_calls), (3, 2, 1));
        assert_eq!((m.prompt_tokens_saved, m.completion_tokens_saved), (2_000, 4_000));
        assert!((m.cost_saved - (2_000.0 * 2.5 + 4_000.0 * 10.0) / 1e6).abs() < 1e-12);
        assert_eq!(m.provider_latency_saved, Duration::from_millis(1600));
        assert!(!r.models["local"].priced);
        assert!(!r.total.priced);
        assert_eq!(r.total.requests, 4);
        assert_eq!(r.total.bypassed, 1);
        assert!(r.to_string().contains("gpt-4o-2024"));
    }
}
