//! [`MokaStore`], its builder and its [`Store`] implementation.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{mpsc, Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use aurelis_cache_core::{
    glob_match, Capabilities, Error, ErrorKind, Result, Store, StoreCounters, ValueEntry,
    ValueStore,
};
use bytes::Bytes;
use moka::notification::RemovalCause;
use moka::ops::compute::{CompResult, Op};
use moka::sync::Cache;

use crate::clock;
use crate::config::MokaConfig;

/// The tier name used when none is set.
pub(crate) const DEFAULT_NAME: &str = "memory";

/// The capacity used when neither `max_entries` nor `max_bytes` is set.
const DEFAULT_MAX_ENTRIES: u64 = 1000;

/// How often the background sweep removes expired entries, unless set.
pub(crate) const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// What an entry holds: the bytes it was given, or a decoded value (see [`ValueStore`]).
#[derive(Clone)]
enum Slot {
    Bytes(Bytes),
    /// Behind an `Arc`: the slot stays as small as a `Bytes` handle (entries stored as bytes
    /// pay nothing for the decoded kind), and a hit shares the entry instead of copying it.
    Value(Arc<ValueEntry>),
}

/// One cached value and when it stops being served.
#[derive(Clone)]
struct Entry {
    slot: Slot,
    expires_at: Deadline,
}

/// When an entry stops being served, as nanoseconds on the monotonic clock ([`clock`];
/// `u64::MAX`: never): 8 bytes per entry where an `Option<Instant>` takes 16.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Deadline(u64);

impl Deadline {
    const NEVER: Deadline = Deadline(u64::MAX);

    /// The deadline of a write now with `ttl` (a TTL too long to represent is as good as none).
    fn after(ttl: Option<Duration>) -> Self {
        ttl.and_then(|ttl| u64::try_from(ttl.as_nanos()).ok())
            .and_then(|ttl| clock::now_ns().checked_add(ttl))
            .map_or(Deadline::NEVER, Deadline)
    }
}

impl Entry {
    /// Whether the entry is still served at `now` (nanoseconds on the [`clock`]).
    fn is_live(&self, now: u64) -> bool {
        now < self.expires_at.0
    }

    /// The value's size in bytes (a decoded value weighs what it was encoded as).
    fn len(&self) -> usize {
        match &self.slot {
            Slot::Bytes(b) => b.len(),
            Slot::Value(v) => v.weight as usize,
        }
    }

    /// The bytes of the entry (a decoded value is encoded again; `None` if that fails).
    fn bytes(&self) -> Option<Bytes> {
        match &self.slot {
            Slot::Bytes(b) => Some(b.clone()),
            Slot::Value(v) => match v.to_envelope_bytes() {
                Ok(b) => Some(b),
                Err(e) => {
                    tracing::warn!(error = %e, "a decoded memory entry could not be encoded again");
                    None
                }
            },
        }
    }
}

/// The hasher of the store's keys: aHash, keyed at random per store (keys cannot be chosen to
/// collide without seeing the hashes), about a tenth of std's SipHash-1-3 on a 24-byte key (173
/// instructions less per hit, callgrind over `hit_profile`). A memory hit hashes its key once.
type Hasher = ahash::RandomState;

/// How the store bounds itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Capacity {
    Entries(u64),
    Bytes(u64),
}

/// Events only the store sees (evictions through moka's listener; expirations where an
/// expired entry is removed: by a read, a sweep or [`MokaStore::purge_expired`]).
#[derive(Debug, Default)]
struct Counters {
    evictions: AtomicU64,
    expirations: AtomicU64,
    /// Keys + values of the entries held (added on insert, taken off by the removal
    /// listener, whatever the cause), so `size_bytes` never walks the cache.
    bytes: AtomicU64,
}

/// The memory tier: an in-process [`moka::sync::Cache`] holding opaque byte values (or, through
/// [`ValueStore`], the decoded values the cache puts there), each
/// with its own time to live, bounded by a number of entries or by bytes.
///
/// Entries are evicted by moka's TinyLFU policy when the store is full (a new entry may be
/// turned away if it is less popular than the entries it would displace); evictions and
/// expirations are reported by [`Store::counters`]. Cloning is cheap and shares the entries.
///
/// Time to live is the store's own: each entry keeps its deadline (8 bytes), a read checks it
/// against the coarse monotonic clock (served for its whole TTL and at most one kernel tick,
/// 1 to 4 ms, longer) and removes an expired entry it finds. Expired entries nobody reads are
/// removed by a background sweep every `sweep_interval` (60 s unless set; started by the first
/// write with a TTL, stopped when the last clone of the store is dropped) or at once by
/// [`MokaStore::purge_expired`]; until then they count in [`Store::len`] and take room like
/// live ones. moka's own per-entry expiry is not used: its timer node cost 40 bytes per entry,
/// and its read hook with the instant conversions it needs about 245 instructions per hit
/// (`docs/performance.md`).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aurelis_cache_core::{Bytes, Store};
/// use aurelis_cache_moka::MokaStore;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> aurelis_cache_core::Result<()> {
/// let store = MokaStore::builder().max_entries(10_000).build()?;
/// store.set("greeting", Bytes::from_static(b"hello"), Some(Duration::from_secs(300))).await?;
/// assert_eq!(store.get("greeting").await?, Some(Bytes::from_static(b"hello")));
/// assert_eq!(store.name(), "memory");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct MokaStore {
    cache: Cache<String, Entry, Hasher>,
    name: Arc<str>,
    capacity: Capacity,
    counters: Arc<Counters>,
    sweeper: Arc<Sweeper>,
}

/// The background sweep of expired entries: a thread started by the first write with a TTL
/// that wakes every `interval`, and stops when the last clone of the store drops this (and
/// with it the sender its wait listens on).
struct Sweeper {
    /// `Duration::ZERO`: no sweep.
    interval: Duration,
    /// Set once the thread is started (`None` inside: it could not be).
    stop: OnceLock<Option<mpsc::Sender<()>>>,
}

impl Sweeper {
    /// Starts the sweep thread unless it runs already (an atomic load once it does).
    #[inline]
    fn ensure_started(&self, cache: &Cache<String, Entry, Hasher>, counters: &Arc<Counters>) {
        if self.stop.get().is_none() && !self.interval.is_zero() {
            self.stop.get_or_init(|| self.start(cache.clone(), Arc::clone(counters)));
        }
    }

    #[cold]
    fn start(
        &self,
        cache: Cache<String, Entry, Hasher>,
        counters: Arc<Counters>,
    ) -> Option<mpsc::Sender<()>> {
        let (stop, stopped) = mpsc::channel::<()>();
        let interval = self.interval;
        let spawned =
            std::thread::Builder::new().name("aurelis-moka-sweep".into()).spawn(move || {
                // Wakes every `interval` until the sender is dropped (the store is gone).
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    let removed = sweep(&cache, &counters);
                    tracing::debug!(removed, "memory tier swept expired entries");
                }
            });
        match spawned {
            Ok(_) => Some(stop),
            Err(e) => {
                tracing::warn!(error = %e, "the memory tier's sweep thread could not start; \
                    expired entries are removed when read or by purge_expired");
                None
            }
        }
    }
}

/// Removes every entry expired now; returns how many (counted as expirations).
fn sweep(cache: &Cache<String, Entry, Hasher>, counters: &Counters) -> u64 {
    let now = clock::now_ns();
    let mut removed = 0;
    for (key, entry) in cache.iter() {
        if !entry.is_live(now) && remove_expired(cache, counters, &key, now) {
            removed += 1;
        }
    }
    removed
}

/// Removes `key` if its entry is expired at `now` (a write since it was found expired is
/// kept); counts an expiration when it does.
fn remove_expired(
    cache: &Cache<String, Entry, Hasher>,
    counters: &Counters,
    key: &str,
    now: u64,
) -> bool {
    let result = cache.entry_by_ref(key).and_compute_with(|current| match current {
        Some(current) if !current.value().is_live(now) => Op::Remove,
        _ => Op::Nop,
    });
    let removed = matches!(result, CompResult::Removed(_));
    if removed {
        counters.expirations.fetch_add(1, Relaxed);
    }
    removed
}

impl fmt::Debug for MokaStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MokaStore")
            .field("name", &self.name)
            .field("capacity", &self.capacity)
            .field("entry_count", &self.cache.entry_count())
            .field("sweep_interval", &self.sweeper.interval)
            .finish_non_exhaustive()
    }
}

impl MokaStore {
    /// A builder with the defaults: name `"memory"`, up to 1000 entries.
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_cache_core::Store;
    /// use aurelis_cache_moka::MokaStore;
    ///
    /// assert_eq!(MokaStore::builder().build()?.name(), "memory");
    /// let store = MokaStore::builder().name("l1").max_bytes(1 << 20).build()?;
    /// assert_eq!(store.name(), "l1");
    /// # Ok::<(), aurelis_cache_core::Error>(())
    /// ```
    pub fn builder() -> MokaStoreBuilder {
        MokaStoreBuilder::default()
    }

    /// A store built from `config`.
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_cache_core::{Bytes, ErrorKind, Store};
    /// use aurelis_cache_moka::{MokaConfig, MokaStore};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> aurelis_cache_core::Result<()> {
    /// let mut config = MokaConfig::default();
    /// config.name = "hot".into();
    /// config.max_bytes = Some(1024);
    /// let store = MokaStore::from_config(&config)?;
    /// assert_eq!(store.name(), "hot");
    /// let err = store.set("big", Bytes::from(vec![0; 2048]), None).await.unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::ValueTooLarge);
    ///
    /// config.max_entries = Some(500); // and max_bytes: one bound or the other
    /// assert_eq!(MokaStore::from_config(&config).unwrap_err().kind(), ErrorKind::Config);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`MokaStoreBuilder::build`].
    pub fn from_config(config: &MokaConfig) -> Result<MokaStore> {
        MokaStoreBuilder::from_config(config).build()
    }

    /// Removes the expired entries now instead of waiting for the background sweep; returns
    /// how many were removed. They count as expirations.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aurelis_cache_core::{Bytes, Store};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> aurelis_cache_core::Result<()> {
    /// let store = aurelis_cache_moka::MokaStore::builder().build()?;
    /// store.set("brief", Bytes::from_static(b"v"), Some(Duration::from_millis(1))).await?;
    /// store.set("kept", Bytes::from_static(b"v"), None).await?;
    /// tokio::time::sleep(Duration::from_millis(20)).await;
    /// assert_eq!(store.len().await?, 2); // nothing read it, the sweep has not run yet
    /// assert_eq!(store.purge_expired(), 1);
    /// assert_eq!(store.len().await?, 1);
    /// assert_eq!(store.counters().expirations, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn purge_expired(&self) -> u64 {
        sweep(&self.cache, &self.counters)
    }

    /// The entry under `key` if it is live; an expired one is removed (and counted).
    #[inline]
    fn live(&self, key: &str) -> Option<Entry> {
        let entry = self.cache.get(key)?;
        if entry.expires_at == Deadline::NEVER {
            return Some(entry);
        }
        let now = clock::coarse_now_ns();
        if entry.is_live(now) {
            return Some(entry);
        }
        remove_expired(&self.cache, &self.counters, key, now);
        None
    }

    fn check_weight(&self, key: &str, value: &Bytes) -> Result<()> {
        self.check_len(key, value.len())
    }

    fn check_len(&self, key: &str, value_len: usize) -> Result<()> {
        if let Capacity::Bytes(max) = self.capacity {
            let weight = key.len() as u64 + value_len as u64;
            if weight > max || weight > u64::from(u32::MAX) {
                return Err(Error::new(
                    ErrorKind::ValueTooLarge,
                    format!(
                        "entry of {weight} bytes (key {} + value {}) does not fit in a memory \
                         tier of max_bytes = {max}",
                        key.len(),
                        value_len
                    ),
                )
                .with_tier(self.name.clone()));
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Store for MokaStore {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
            .with_in_process(true)
            .with_native_ttl(true)
            .with_conditional_write(true)
    }

    async fn set_if_absent(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<bool> {
        self.check_weight(key, &value)?;
        Ok(self.insert_if_absent(
            key,
            Entry { slot: Slot::Bytes(value), expires_at: Deadline::after(ttl) },
        ))
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        Ok(self.live(key).and_then(|entry| entry.bytes()))
    }

    fn get_sync(&self, key: &str) -> Option<Result<Option<Bytes>>> {
        Some(Ok(self.live(key).and_then(|entry| entry.bytes())))
    }

    async fn set(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<()> {
        self.check_weight(key, &value)?;
        self.insert(key, Entry { slot: Slot::Bytes(value), expires_at: Deadline::after(ttl) });
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        // Through the compute path too, serialized with `upgrade` (see `insert`).
        let result = self.cache.entry_by_ref(key).and_compute_with(|_| Op::Remove);
        Ok(match result {
            CompResult::Removed(entry) => entry.value().is_live(clock::now_ns()),
            _ => false,
        })
    }

    async fn set_many(&self, entries: &[(&str, Bytes)], ttl: Option<Duration>) -> Result<()> {
        for (key, value) in entries {
            self.check_weight(key, value)?;
        }
        for (key, value) in entries {
            self.set(key, value.clone(), ttl).await?;
        }
        Ok(())
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        self.remove_matching(|key| key.starts_with(prefix)).await
    }

    async fn delete_pattern(&self, pattern: &str) -> Result<u64> {
        self.remove_matching(|key| glob_match(pattern, key)).await
    }

    async fn clear(&self) -> Result<()> {
        self.cache.invalidate_all();
        self.cache.run_pending_tasks();
        Ok(())
    }

    async fn len(&self) -> Result<u64> {
        self.cache.run_pending_tasks();
        Ok(self.cache.entry_count())
    }

    async fn size_bytes(&self) -> Result<u64> {
        Ok(match self.capacity {
            Capacity::Bytes(_) => {
                self.cache.run_pending_tasks();
                self.cache.weighted_size()
            }
            // Kept on every insert and removal: O(1), never a walk of the cache.
            Capacity::Entries(_) => self.counters.bytes.load(Relaxed),
        })
    }

    fn counters(&self) -> StoreCounters {
        StoreCounters::new(
            self.counters.evictions.load(Relaxed),
            self.counters.expirations.load(Relaxed),
        )
    }

    fn as_value_store(&self) -> Option<&dyn ValueStore> {
        Some(self)
    }
}

impl MokaStore {
    /// Writes go through moka's compute path, which is serialized per key with `upgrade`
    /// (a plain `insert` is not: an upgrade that read the old bytes could otherwise put their
    /// decoded value back over a newer write).
    /// Starts the background sweep with the first entry that can expire.
    #[inline]
    fn sweep_if_expiring(&self, entry: &Entry) {
        if entry.expires_at != Deadline::NEVER {
            self.sweeper.ensure_started(&self.cache, &self.counters);
        }
    }

    fn insert(&self, key: &str, entry: Entry) {
        self.sweep_if_expiring(&entry);
        self.counters.bytes.fetch_add((key.len() + entry.len()) as u64, Relaxed);
        self.cache.entry_by_ref(key).and_compute_with(|_| Op::Put(entry));
    }

    /// moka's compute path runs one per key even under concurrent callers; an expired entry
    /// is absent (replaced, and counted as an expiration).
    fn insert_if_absent(&self, key: &str, entry: Entry) -> bool {
        self.sweep_if_expiring(&entry);
        let weight = (key.len() + entry.len()) as u64;
        let now = clock::now_ns();
        let mut expired = false;
        let result = self.cache.entry_by_ref(key).and_compute_with(|current| match current {
            Some(current) if current.value().is_live(now) => Op::Nop,
            current => {
                expired = current.is_some();
                Op::Put(entry)
            }
        });
        let inserted = matches!(result, CompResult::Inserted(_) | CompResult::ReplacedWith(_));
        if inserted {
            self.counters.bytes.fetch_add(weight, Relaxed);
            if expired {
                self.counters.expirations.fetch_add(1, Relaxed);
            }
        }
        inserted
    }
}

impl ValueStore for MokaStore {
    fn get_value(&self, key: &str) -> Option<Arc<ValueEntry>> {
        match self.live(key)?.slot {
            Slot::Value(v) => Some(v),
            Slot::Bytes(_) => None,
        }
    }

    fn set_value(&self, key: &str, entry: ValueEntry, ttl: Option<Duration>) -> Result<()> {
        self.check_len(key, entry.weight as usize)?;
        self.insert(
            key,
            Entry { slot: Slot::Value(Arc::new(entry)), expires_at: Deadline::after(ttl) },
        );
        Ok(())
    }

    fn set_value_if_absent(
        &self,
        key: &str,
        entry: ValueEntry,
        ttl: Option<Duration>,
    ) -> Result<bool> {
        self.check_len(key, entry.weight as usize)?;
        Ok(self.insert_if_absent(
            key,
            Entry { slot: Slot::Value(Arc::new(entry)), expires_at: Deadline::after(ttl) },
        ))
    }

    fn upgrade(&self, key: &str, bytes: &Bytes, entry: ValueEntry) -> bool {
        let weight = entry.weight as usize;
        let result = self.cache.entry_by_ref(key).and_compute_with(|current| match current {
            Some(current) => match &current.value().slot {
                Slot::Bytes(b) if b.as_ptr() == bytes.as_ptr() && b.len() == bytes.len() => {
                    let expires_at = current.value().expires_at;
                    Op::Put(Entry { slot: Slot::Value(Arc::new(entry)), expires_at })
                }
                _ => Op::Nop,
            },
            None => Op::Nop,
        });
        let replaced = matches!(result, moka::ops::compute::CompResult::ReplacedWith(_));
        if replaced {
            // The listener takes the old bytes off; count the value in.
            self.counters.bytes.fetch_add((key.len() + weight) as u64, Relaxed);
        }
        replaced
    }
}

impl MokaStore {
    /// Removes the live entries whose key satisfies `matches`; returns how many.
    async fn remove_matching(&self, matches: impl Fn(&str) -> bool) -> Result<u64> {
        let keys: Vec<Arc<String>> =
            self.cache.iter().filter(|(k, _)| matches(k)).map(|(k, _)| k).collect();
        let mut removed = 0;
        for key in keys {
            if let Some(entry) = self.cache.remove(key.as_str()) {
                if entry.is_live(clock::now_ns()) {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

/// Builds a [`MokaStore`]; [`MokaConfig`] is its serde twin.
///
/// # Examples
///
/// ```
/// use aurelis_cache_moka::MokaStore;
///
/// let by_count = MokaStore::builder().name("memory").max_entries(10_000).build()?;
/// let by_size = MokaStore::builder().max_bytes(256 * 1024 * 1024).build()?;
/// assert!(MokaStore::builder().max_entries(10).max_bytes(1024).build().is_err());
/// # Ok::<(), aurelis_cache_core::Error>(())
/// ```
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct MokaStoreBuilder {
    name: String,
    max_entries: Option<u64>,
    max_bytes: Option<u64>,
    sweep_interval: Duration,
}

impl Default for MokaStoreBuilder {
    fn default() -> Self {
        MokaStoreBuilder {
            name: DEFAULT_NAME.to_owned(),
            max_entries: None,
            max_bytes: None,
            sweep_interval: DEFAULT_SWEEP_INTERVAL,
        }
    }
}

impl MokaStoreBuilder {
    /// A builder taking every setting from `config`.
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_cache_moka::{MokaConfig, MokaStoreBuilder};
    ///
    /// let store = MokaStoreBuilder::from_config(&MokaConfig::default()).name("l1").build()?;
    /// # use aurelis_cache_core::Store;
    /// assert_eq!(store.name(), "l1");
    /// # Ok::<(), aurelis_cache_core::Error>(())
    /// ```
    pub fn from_config(config: &MokaConfig) -> Self {
        MokaStoreBuilder {
            name: config.name.clone(),
            max_entries: config.max_entries,
            max_bytes: config.max_bytes,
            sweep_interval: Duration::from_secs(config.sweep_interval_secs),
        }
    }

    /// The tier's name in stats, logs and errors (default `"memory"`).
    ///
    /// # Examples
    ///
    /// ```
    /// # use aurelis_cache_core::Store;
    /// let store = aurelis_cache_moka::MokaStore::builder().name("hot").build()?;
    /// assert_eq!(store.name(), "hot");
    /// # Ok::<(), aurelis_cache_core::Error>(())
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Bounds the store by a number of entries (default 1000). Cannot be combined with
    /// [`max_bytes`](Self::max_bytes).
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_cache_core::{Bytes, Store};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> aurelis_cache_core::Result<()> {
    /// let store = aurelis_cache_moka::MokaStore::builder().max_entries(10).build()?;
    /// for i in 0..100 {
    ///     store.set(&format!("k{i}"), Bytes::from_static(b"v"), None).await?;
    /// }
    /// assert!(store.len().await? <= 10);
    /// # Ok(())
    /// # }
    /// ```
    pub fn max_entries(mut self, max_entries: u64) -> Self {
        self.max_entries = Some(max_entries);
        self
    }

    /// Bounds the store by bytes, each entry weighing its key length plus its value length.
    /// A single entry heavier than this is refused with
    /// [`ErrorKind::ValueTooLarge`]. Cannot be combined with
    /// [`max_entries`](Self::max_entries).
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_cache_core::{Bytes, ErrorKind, Store};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> aurelis_cache_core::Result<()> {
    /// let store = aurelis_cache_moka::MokaStore::builder().max_bytes(64 << 10).build()?;
    /// for i in 0..100 {
    ///     store.set(&format!("k{i}"), Bytes::from(vec![0; 1024]), None).await?;
    /// }
    /// assert!(store.size_bytes().await? <= 64 << 10); // keys + values
    ///
    /// let err = store.set("huge", Bytes::from(vec![0; 65 << 10]), None).await.unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::ValueTooLarge);
    /// # Ok(())
    /// # }
    /// ```
    pub fn max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = Some(max_bytes);
        self
    }

    /// How often a background thread removes the expired entries nobody read (default 60 s;
    /// `Duration::ZERO`: never, they are then removed when read, by
    /// [`MokaStore::purge_expired`] or when evicted). The thread starts with the first write
    /// that has a TTL.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aurelis_cache_core::{Bytes, Store};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> aurelis_cache_core::Result<()> {
    /// let store = aurelis_cache_moka::MokaStore::builder()
    ///     .sweep_interval(Duration::from_millis(20))
    ///     .build()?;
    /// store.set("brief", Bytes::from_static(b"v"), Some(Duration::from_millis(1))).await?;
    /// // Never read again, and still removed.
    /// while store.counters().expirations == 0 {
    ///     tokio::time::sleep(Duration::from_millis(10)).await;
    /// }
    /// assert_eq!(store.len().await?, 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn sweep_interval(mut self, interval: Duration) -> Self {
        self.sweep_interval = interval;
        self
    }

    /// Validates the settings and builds the store.
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_cache_core::ErrorKind;
    /// use aurelis_cache_moka::MokaStore;
    ///
    /// assert!(MokaStore::builder().build().is_ok());
    /// let err = MokaStore::builder().max_entries(0).build().unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Config);
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] when the name is empty, when both `max_entries` and `max_bytes`
    /// are set, or when the capacity is zero.
    pub fn build(self) -> Result<MokaStore> {
        let config_error = |message: String| Error::config(message).with_tier(self.name.as_str());
        if self.name.is_empty() {
            return Err(Error::config("the memory tier's name must not be empty"));
        }
        let capacity = match (self.max_entries, self.max_bytes) {
            (Some(entries), Some(bytes)) => {
                return Err(config_error(format!(
                    "max_entries ({entries}) and max_bytes ({bytes}) are mutually exclusive: \
                     set one of them"
                )))
            }
            (Some(0), None) => return Err(config_error("max_entries must be at least 1".into())),
            (None, Some(0)) => return Err(config_error("max_bytes must be at least 1".into())),
            (Some(entries), None) => Capacity::Entries(entries),
            (None, Some(bytes)) => Capacity::Bytes(bytes),
            (None, None) => Capacity::Entries(DEFAULT_MAX_ENTRIES),
        };

        let counters = Arc::new(Counters::default());
        let listener_counters = Arc::clone(&counters);
        let mut builder =
            Cache::builder().eviction_listener(move |key: Arc<String>, entry: Entry, cause| {
                let weight = (key.len() + entry.len()) as u64;
                let _ = listener_counters
                    .bytes
                    .fetch_update(Relaxed, Relaxed, |b| Some(b.saturating_sub(weight)));
                match cause {
                    RemovalCause::Size => {
                        listener_counters.evictions.fetch_add(1, Relaxed);
                    }
                    // The store counts expirations where it removes them (moka expires nothing).
                    RemovalCause::Expired | RemovalCause::Explicit | RemovalCause::Replaced => {}
                }
            });
        builder = match capacity {
            Capacity::Entries(entries) => builder.max_capacity(entries),
            Capacity::Bytes(bytes) => {
                builder.max_capacity(bytes).weigher(|key: &String, entry: &Entry| {
                    u32::try_from(key.len() + entry.len()).unwrap_or(u32::MAX)
                })
            }
        };
        Ok(MokaStore {
            cache: builder.build_with_hasher(Hasher::new()),
            name: self.name.into(),
            capacity,
            counters,
            sweeper: Arc::new(Sweeper { interval: self.sweep_interval, stop: OnceLock::new() }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_round_trip_and_saturate_to_never() {
        assert_eq!(Deadline::after(None), Deadline::NEVER);
        // Too long to represent: as good as no TTL, as before.
        assert_eq!(Deadline::after(Some(Duration::MAX)), Deadline::NEVER);
        let before = clock::now_ns();
        let at = Deadline::after(Some(Duration::from_secs(60))).0;
        let after = clock::now_ns();
        assert!(at >= before + 60_000_000_000 && at <= after + 60_000_000_000, "{at}");
        let entry = Entry {
            slot: Slot::Bytes(Bytes::new()),
            expires_at: Deadline::after(Some(Duration::ZERO)),
        };
        assert!(!entry.is_live(clock::now_ns()));
        let entry = Entry { slot: Slot::Bytes(Bytes::new()), expires_at: Deadline::NEVER };
        assert!(entry.is_live(u64::MAX - 1));
        assert_eq!(std::mem::size_of::<Entry>(), 40);
    }
}
