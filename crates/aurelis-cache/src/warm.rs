//! Cache warming: load many keys ahead of traffic, a bounded number at a time, with progress
//! reporting and a summary.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aurelis_cache_core::{Error, ErrorKind, Key};
use futures::stream::{self, Stream, StreamExt};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::cache::Cache;
use crate::options::SetOptions;

/// How far a warm-up has got, handed to the progress callback after each key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct WarmProgress {
    /// Keys finished (loaded, failed or already present).
    pub done: u64,
    /// Keys in the warm-up, when known (an iterator with an exact size, or a stream given
    /// its length).
    pub total: Option<u64>,
    /// Keys loaded so far.
    pub loaded: u64,
    /// Keys whose loader failed so far.
    pub failed: u64,
    /// Keys found already cached so far.
    pub already_present: u64,
}

/// One key that could not be warmed.
#[derive(Debug)]
#[non_exhaustive]
pub struct WarmFailure {
    /// The key.
    pub key: Key,
    /// Why: the loader's error ([`ErrorKind::Loader`], with the loader's error as source), or
    /// the cache's.
    pub error: Error,
}

/// What a warm-up did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct WarmSummary {
    /// Keys loaded and cached.
    pub loaded: u64,
    /// Keys found already cached (their loader was not called).
    pub already_present: u64,
    /// Keys that could not be warmed, with the reason (in completion order).
    pub failed: Vec<WarmFailure>,
    /// Wall time of the warm-up.
    pub elapsed: Duration,
}

impl WarmSummary {
    /// Keys handled: `loaded + already_present + failed`.
    pub fn total(&self) -> u64 {
        self.loaded + self.already_present + self.failed.len() as u64
    }
}

impl fmt::Display for WarmSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "warmed {} keys in {:.2?}: {} loaded, {} already present, {} failed",
            self.total(),
            self.elapsed,
            self.loaded,
            self.already_present,
            self.failed.len()
        )
    }
}

type ProgressFn = dyn Fn(WarmProgress) + Send + Sync;

/// Loads many keys into a cache ahead of traffic: at most `concurrency` loaders run at once
/// (default 8), a key already cached is left alone (its loader is not called), a failing
/// loader is recorded and does not stop the others, and a progress callback sees every key
/// finish.
///
/// Each key goes through [`Cache::get_or_compute`](crate::Cache::get_or_compute): one lookup (a hit means "already
/// present"), then the loader, coalesced with any concurrent reader of the same key. Warming
/// therefore counts as traffic in the cache's stats (a miss and a loader call per key
/// loaded, a hit per key present).
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> aurelis_cache::Result<()> {
/// use std::sync::Arc;
/// use aurelis_cache::{Cache, CacheWarmer, Tier, MokaStore};
///
/// let cache = Cache::builder()
///     .tier(Tier::new("memory", Arc::new(MokaStore::builder().build()?)))
///     .build()?;
/// cache.set(("user_data", "u1"), &"cached already".to_string()).await?;
///
/// let items = ["u1", "u2", "u3"].map(|id| {
///     let key = cache.keys().build_key("user_data", id, None).unwrap();
///     (key, move || async move { Ok::<_, std::io::Error>(format!("loaded {id}")) })
/// });
/// let summary = CacheWarmer::new(cache.clone()).concurrency(2).warm::<String, _, _, _, _>(items).await;
/// assert_eq!((summary.loaded, summary.already_present, summary.failed.len()), (2, 1, 0));
/// assert_eq!(cache.get::<String>(("user_data", "u3")).await?.as_deref(), Some("loaded u3"));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct CacheWarmer {
    cache: Cache,
    concurrency: usize,
    options: SetOptions,
    progress: Option<Arc<ProgressFn>>,
}

impl fmt::Debug for CacheWarmer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheWarmer")
            .field("cache", &self.cache)
            .field("concurrency", &self.concurrency)
            .field("options", &self.options)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// The loader's outcome as seen from inside the wrapper (the cache consumes the error).
#[derive(Default)]
struct LoaderOutcome {
    called: bool,
    error: Option<String>,
}

impl CacheWarmer {
    /// The default number of loaders run at once.
    pub const DEFAULT_CONCURRENCY: usize = 8;

    /// A warmer over `cache` with the default concurrency and entry options.
    pub fn new(cache: Cache) -> Self {
        CacheWarmer {
            cache,
            concurrency: Self::DEFAULT_CONCURRENCY,
            options: SetOptions::default(),
            progress: None,
        }
    }

    /// At most `n` loaders at once (at least 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Options (TTL, tags, stale window) of the entries the warm-up writes.
    pub fn options(mut self, options: SetOptions) -> Self {
        self.options = options;
        self
    }

    /// Called after each key finishes, from the task running the warm-up (keep it quick: a
    /// progress bar's `set_position`, a log line).
    pub fn on_progress(mut self, f: impl Fn(WarmProgress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(f));
        self
    }

    /// Warms every `(key, loader)` of `items`. The total handed to the progress callback is
    /// known when the iterator's size hint is exact.
    pub async fn warm<T, I, F, Fut, E>(&self, items: I) -> WarmSummary
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        I: IntoIterator<Item = (Key, F)>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let iter = items.into_iter();
        let total = match iter.size_hint() {
            (low, Some(high)) if low == high => Some(low as u64),
            _ => None,
        };
        self.warm_stream(stream::iter(iter), total).await
    }

    /// Warms every `(key, loader)` of `items` as the stream yields them (at most
    /// `concurrency` loaders at once); `total`, when known, is handed to the progress callback.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> aurelis_cache::Result<()> {
    /// # let cache = aurelis_cache::Cache::builder()
    /// #     .tier(aurelis_cache::Tier::new("memory", std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?)))
    /// #     .build()?;
    /// use std::sync::{Arc, Mutex};
    /// use futures::StreamExt;
    ///
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let progress = seen.clone();
    /// let keys = cache.clone();
    /// let items = futures::stream::iter(0..4u32).map(move |i| {
    ///     (keys.keys().build_key("n", &i.to_string(), None).unwrap(), move || async move {
    ///         if i == 3 { Err("no such row") } else { Ok(i) }
    ///     })
    /// });
    /// let summary = aurelis_cache::CacheWarmer::new(cache)
    ///     .on_progress(move |p| progress.lock().unwrap().push((p.done, p.total)))
    ///     .warm_stream::<u32, _, _, _, _>(items, Some(4))
    ///     .await;
    /// assert_eq!(summary.loaded, 3);
    /// assert_eq!(summary.failed.len(), 1);
    /// assert_eq!(*seen.lock().unwrap(), [(1, Some(4)), (2, Some(4)), (3, Some(4)), (4, Some(4))]);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn warm_stream<T, S, F, Fut, E>(&self, items: S, total: Option<u64>) -> WarmSummary
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        S: Stream<Item = (Key, F)>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let started = Instant::now();
        let mut summary = WarmSummary::default();
        let done = AtomicU64::new(0);
        let results = items
            .map(|(key, loader)| self.warm_one::<T, F, Fut, E>(key, loader))
            .buffer_unordered(self.concurrency);
        let mut results = std::pin::pin!(results);
        while let Some((key, result)) = results.next().await {
            match result {
                Ok(true) => summary.loaded += 1,
                Ok(false) => summary.already_present += 1,
                Err(error) => {
                    tracing::debug!(key = %key, error = %error, "warming a key failed");
                    summary.failed.push(WarmFailure { key, error });
                }
            }
            let done = done.fetch_add(1, Relaxed) + 1;
            if let Some(progress) = &self.progress {
                progress(WarmProgress {
                    done,
                    total,
                    loaded: summary.loaded,
                    failed: summary.failed.len() as u64,
                    already_present: summary.already_present,
                });
            }
        }
        summary.elapsed = started.elapsed();
        tracing::info!(
            loaded = summary.loaded,
            already_present = summary.already_present,
            failed = summary.failed.len(),
            elapsed_ms = summary.elapsed.as_millis() as u64,
            "cache warm-up finished"
        );
        summary
    }

    /// Warms one key: `Ok(true)` loaded, `Ok(false)` already present.
    async fn warm_one<T, F, Fut, E>(
        &self,
        key: Key,
        loader: F,
    ) -> (Key, std::result::Result<bool, Error>)
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let outcome = Mutex::new(LoaderOutcome::default());
        let wrapped = || async {
            outcome.lock().called = true;
            let result = loader().await.map_err(Into::into);
            if let Err(e) = &result {
                outcome.lock().error = Some(e.to_string());
            }
            result
        };
        let result = self
            .cache
            .get_or_compute_with::<T, _, _, _>(&key, &self.options.clone(), wrapped)
            .await;
        let outcome = outcome.into_inner();
        let result = match (result, outcome) {
            (Err(e), _) => Err(e),
            // The loader failed but the cache served a stale entry: the key was not warmed.
            (Ok(_), LoaderOutcome { error: Some(msg), .. }) => Err(Error::new(
                ErrorKind::Loader,
                format!("the loader failed ({msg}); only a stale entry is cached"),
            )),
            (Ok(_), LoaderOutcome { called, .. }) => Ok(called),
        };
        (key, result)
    }
}
