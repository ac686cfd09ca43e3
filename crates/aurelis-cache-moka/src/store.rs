//! [`MokaStore`], its builder and its [`Store`] implementation.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aurelis_cache_core::{
    glob_match, Capabilities, Error, ErrorKind, Result, Store, StoreCounters, ValueEntry,
    ValueStore,
};
use bytes::Bytes;
use moka::notification::RemovalCause;
use moka::ops::compute::Op;
use moka::sync::Cache;
use moka::Expiry;

use crate::config::MokaConfig;

/// The tier name used when none is set.
pub(crate) const DEFAULT_NAME: &str = "memory";

/// The capacity used when neither `max_entries` nor `max_bytes` is set.
const DEFAULT_MAX_ENTRIES: u64 = 1000;

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

/// The instant an entry stops being served, as nanoseconds since a base instant taken once
/// per process (`u64::MAX`: never): 8 bytes per entry where an `Option<Instant>` takes 16.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Deadline(u64);

impl Deadline {
    const NEVER: Deadline = Deadline(u64::MAX);

    /// The deadline of a write now with `ttl` (a TTL too long to represent is as good as none).
    fn after(ttl: Option<Duration>) -> Self {
        match ttl.and_then(|ttl| Instant::now().checked_add(ttl)) {
            Some(at) => Deadline(
                u64::try_from(at.saturating_duration_since(base()).as_nanos()).unwrap_or(u64::MAX),
            ),
            None => Deadline::NEVER,
        }
    }

    /// The instant, `None` for never.
    fn instant(self) -> Option<Instant> {
        (self != Deadline::NEVER).then(|| base() + Duration::from_nanos(self.0))
    }
}

/// The instant deadlines are counted from (the first time one is made).
fn base() -> Instant {
    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

impl Entry {
    fn is_live(&self, now: Instant) -> bool {
        self.expires_at.instant().is_none_or(|at| now < at)
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

/// Gives every entry its own time to live. An overwrite takes the TTL of the new entry, so a
/// write without TTL drops the TTL of the entry it replaces.
struct EntryExpiry;

impl Expiry<String, Entry> for EntryExpiry {
    fn expire_after_create(
        &self,
        _key: &String,
        entry: &Entry,
        created_at: Instant,
    ) -> Option<Duration> {
        entry.expires_at.instant().map(|at| at.saturating_duration_since(created_at))
    }

    fn expire_after_update(
        &self,
        _key: &String,
        entry: &Entry,
        updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        entry.expires_at.instant().map(|at| at.saturating_duration_since(updated_at))
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

/// Events only the eviction listener sees.
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
}

impl fmt::Debug for MokaStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MokaStore")
            .field("name", &self.name)
            .field("capacity", &self.capacity)
            .field("entry_count", &self.cache.entry_count())
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
        Ok(self.cache.get(key).and_then(|entry| entry.bytes()))
    }

    fn get_sync(&self, key: &str) -> Option<Result<Option<Bytes>>> {
        Some(Ok(self.cache.get(key).and_then(|entry| entry.bytes())))
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
            moka::ops::compute::CompResult::Removed(entry) => entry.value().is_live(Instant::now()),
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
    fn insert(&self, key: &str, entry: Entry) {
        self.counters.bytes.fetch_add((key.len() + entry.len()) as u64, Relaxed);
        self.cache.entry_by_ref(key).and_compute_with(|_| Op::Put(entry));
    }

    /// moka's entry API runs one insertion per key even under concurrent callers, and treats
    /// an expired entry as absent.
    fn insert_if_absent(&self, key: &str, entry: Entry) -> bool {
        let weight = (key.len() + entry.len()) as u64;
        let inserted = self.cache.entry_by_ref(key).or_insert_with(|| entry).is_fresh();
        if inserted {
            self.counters.bytes.fetch_add(weight, Relaxed);
        }
        inserted
    }
}

impl ValueStore for MokaStore {
    fn get_value(&self, key: &str) -> Option<Arc<ValueEntry>> {
        match self.cache.get(key)?.slot {
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
                if entry.is_live(Instant::now()) {
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
}

impl Default for MokaStoreBuilder {
    fn default() -> Self {
        MokaStoreBuilder { name: DEFAULT_NAME.to_owned(), max_entries: None, max_bytes: None }
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
        let mut builder = Cache::builder().expire_after(EntryExpiry).eviction_listener(
            move |key: Arc<String>, entry: Entry, cause| {
                let weight = (key.len() + entry.len()) as u64;
                let _ = listener_counters
                    .bytes
                    .fetch_update(Relaxed, Relaxed, |b| Some(b.saturating_sub(weight)));
                match cause {
                    RemovalCause::Size => {
                        listener_counters.evictions.fetch_add(1, Relaxed);
                    }
                    RemovalCause::Expired => {
                        listener_counters.expirations.fetch_add(1, Relaxed);
                    }
                    RemovalCause::Explicit | RemovalCause::Replaced => {}
                }
            },
        );
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
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_round_trip_and_saturate_to_never() {
        assert_eq!(Deadline::after(None), Deadline::NEVER);
        assert_eq!(Deadline::after(None).instant(), None);
        // Too long to represent: as good as no TTL, as before.
        assert_eq!(Deadline::after(Some(Duration::MAX)), Deadline::NEVER);
        let before = Instant::now();
        let at = Deadline::after(Some(Duration::from_secs(60))).instant().expect("a deadline");
        let after = Instant::now();
        assert!(at >= before + Duration::from_secs(60) - Duration::from_micros(1), "{at:?}");
        assert!(at <= after + Duration::from_secs(60), "{at:?}");
        let entry = Entry {
            slot: Slot::Bytes(Bytes::new()),
            expires_at: Deadline::after(Some(Duration::ZERO)),
        };
        assert!(!entry.is_live(Instant::now()));
        let entry = Entry { slot: Slot::Bytes(Bytes::new()), expires_at: Deadline::NEVER };
        assert!(entry.is_live(Instant::now() + Duration::from_secs(1 << 30)));
        assert_eq!(std::mem::size_of::<Entry>(), 40);
    }
}
