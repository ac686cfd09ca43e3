//! Write strategies over a system of record: [`WriteThrough`] and [`WriteBehind`].
//!
//! Both sit in front of a [`DataStore`] (the database that owns the data) and keep a
//! [`Cache`] coherent with it, using only the cache's public API:
//!
//! - [`WriteThrough`]: a write goes to the store first, then to the cache; a store failure
//!   leaves the cache untouched. Reads that miss the cache load from the store, coalesced.
//! - [`WriteBehind`]: a write goes to the cache at once and to a bounded queue that a
//!   background task writes to the store in batches, with retries, dead letters, `flush`,
//!   a draining shutdown and, optionally, a durable journal replayed after a crash.
//!
//! A record is named by a [`RecordKey`]: the category and identifier it is cached under (the
//! cache key is `cache.keys().build_key(category, identifier, None)`). A data store uses the
//! pair as it sees fit (table and primary key, or one string).
//!
//! The guarantees, and the tests behind them, are listed in `docs/strategies.md`.

use std::fmt;
use std::hash::{Hash, Hasher};

use async_trait::async_trait;
use aurelis_cache_core::{Error, ErrorKind, Key, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Cache, SetOptions};

mod journal;
mod write_behind;
mod write_through;

pub use write_behind::{
    DeadLetter, OverflowPolicy, ShutdownReport, Write, WriteBehind, WriteBehindBuilder,
    WriteBehindStats,
};
pub use write_through::WriteThrough;

/// The name of a record in a [`DataStore`]: the cache category and identifier it is cached
/// under.
///
/// # Examples
///
/// ```
/// use aurelis_cache::strategy::RecordKey;
///
/// let key = RecordKey::new("users", "42");
/// assert_eq!((key.category(), key.identifier()), ("users", "42"));
/// assert_eq!(key.to_string(), "users/42");
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordKey {
    category: String,
    identifier: String,
}

impl RecordKey {
    /// The record `identifier` of `category`.
    pub fn new(category: impl Into<String>, identifier: impl Into<String>) -> Self {
        RecordKey { category: category.into(), identifier: identifier.into() }
    }

    /// The category (a table, a collection).
    pub fn category(&self) -> &str {
        &self.category
    }

    /// The identifier within the category.
    pub fn identifier(&self) -> &str {
        &self.identifier
    }

    /// The cache key the record is cached under.
    pub(crate) fn cache_key(&self, cache: &Cache) -> Result<Key> {
        cache.keys().build_key(&self.category, &self.identifier, None)
    }
}

impl fmt::Display for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.category, self.identifier)
    }
}

impl fmt::Debug for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecordKey({self})")
    }
}

/// The system of record behind a [`WriteThrough`] or [`WriteBehind`]: a database, a service,
/// anything that owns the data the cache holds copies of.
///
/// Its errors become [`ErrorKind::Backend`] errors (writes) or [`ErrorKind::Loader`] errors
/// (reads through the cache's loader) with the store's error as their source.
///
/// # Examples
///
/// ```
/// use std::collections::HashMap;
/// use aurelis_cache::strategy::{DataStore, RecordKey};
/// use parking_lot::Mutex;
///
/// #[derive(Default)]
/// struct Users(Mutex<HashMap<RecordKey, String>>);
///
/// #[async_trait::async_trait]
/// impl DataStore for Users {
///     type Value = String;
///     type Error = std::io::Error;
///
///     async fn get(&self, key: &RecordKey) -> Result<Option<String>, Self::Error> {
///         Ok(self.0.lock().get(key).cloned())
///     }
///     async fn set(&self, key: &RecordKey, value: &String) -> Result<(), Self::Error> {
///         self.0.lock().insert(key.clone(), value.clone());
///         Ok(())
///     }
///     async fn delete(&self, key: &RecordKey) -> Result<(), Self::Error> {
///         self.0.lock().remove(key);
///         Ok(())
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let users = Users::default();
/// users.set_many(&[(RecordKey::new("users", "1"), "Ada".into())]).await?;
/// assert_eq!(users.get(&RecordKey::new("users", "1")).await?.as_deref(), Some("Ada"));
/// # Ok::<(), std::io::Error>(())
/// # }).unwrap();
/// ```
#[async_trait]
pub trait DataStore: Send + Sync + 'static {
    /// The records' type. The cache stores it with its codec; a [`WriteBehind`] journal
    /// stores it as MessagePack.
    type Value: Serialize + DeserializeOwned + Clone + Send + Sync + 'static;
    /// The store's error: anything that converts into `Box<dyn Error + Send + Sync>` (an
    /// error type of the store's client, `anyhow::Error`). It becomes the `source()` of the
    /// cache's `Backend` error, downcastable to its type.
    type Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static;

    /// The record under `key`, or `None` when the store does not hold it.
    async fn get(&self, key: &RecordKey) -> std::result::Result<Option<Self::Value>, Self::Error>;

    /// Stores `value` under `key` (insert or replace).
    async fn set(
        &self,
        key: &RecordKey,
        value: &Self::Value,
    ) -> std::result::Result<(), Self::Error>;

    /// Stores several records, all or nothing as far as the caller can tell: an error means
    /// the batch is retried (so every write must be idempotent). The default calls
    /// [`DataStore::set`] for each.
    async fn set_many(
        &self,
        entries: &[(RecordKey, Self::Value)],
    ) -> std::result::Result<(), Self::Error> {
        for (key, value) in entries {
            self.set(key, value).await?;
        }
        Ok(())
    }

    /// Removes the record under `key`; removing an absent record is not an error.
    async fn delete(&self, key: &RecordKey) -> std::result::Result<(), Self::Error>;
}

/// A shared data store (one store behind several strategies, or kept by the caller).
#[async_trait]
impl<T: DataStore> DataStore for std::sync::Arc<T> {
    type Value = T::Value;
    type Error = T::Error;

    async fn get(&self, key: &RecordKey) -> std::result::Result<Option<Self::Value>, Self::Error> {
        (**self).get(key).await
    }

    async fn set(
        &self,
        key: &RecordKey,
        value: &Self::Value,
    ) -> std::result::Result<(), Self::Error> {
        (**self).set(key, value).await
    }

    async fn set_many(
        &self,
        entries: &[(RecordKey, Self::Value)],
    ) -> std::result::Result<(), Self::Error> {
        (**self).set_many(entries).await
    }

    async fn delete(&self, key: &RecordKey) -> std::result::Result<(), Self::Error> {
        (**self).delete(key).await
    }
}

/// A data store's write error, as the one error type.
pub(crate) fn store_error(
    op: &str,
    err: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> Error {
    Error::new(ErrorKind::Backend, format!("data store `{op}` failed"))
        .with_tier("data store")
        .with_boxed_source(err.into())
}

/// Striped per-key locks: two writes to one key reach the store and the cache in the same
/// order.
pub(crate) struct KeyLocks {
    stripes: Vec<tokio::sync::Mutex<()>>,
}

impl KeyLocks {
    const STRIPES: usize = 64;

    pub(crate) fn new() -> Self {
        KeyLocks { stripes: (0..Self::STRIPES).map(|_| tokio::sync::Mutex::new(())).collect() }
    }

    pub(crate) async fn lock(&self, key: &RecordKey) -> tokio::sync::MutexGuard<'_, ()> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut hasher);
        self.stripes[(hasher.finish() as usize) % Self::STRIPES].lock().await
    }
}

/// The loader's error for a record the store does not hold: not cached, mapped back to `None`.
#[derive(Debug)]
struct Absent;

/// The marker [`Absent`] carries as its source, so it can be found in the cache's error
/// chain (the cache wraps the loader's error in a private type).
#[derive(Debug)]
struct AbsentMarker;

static ABSENT_MARKER: AbsentMarker = AbsentMarker;

impl fmt::Display for Absent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the data store does not hold the record")
    }
}

impl std::error::Error for Absent {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&ABSENT_MARKER)
    }
}

impl fmt::Display for AbsentMarker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("absent")
    }
}

impl std::error::Error for AbsentMarker {}

fn is_absent(err: &Error) -> bool {
    let mut next = std::error::Error::source(err);
    while let Some(e) = next {
        if e.is::<AbsentMarker>() || e.is::<Absent>() {
            return true;
        }
        next = e.source();
    }
    false
}

/// A record from the cache, else from the store (then cached). A record the store does not
/// hold is `None` and not cached. Callers hold the record's lock.
pub(crate) async fn read_through<S: DataStore>(
    cache: &Cache,
    store: &S,
    key: &RecordKey,
    options: &SetOptions,
) -> Result<Option<S::Value>> {
    let cache_key = key.cache_key(cache)?;
    let loaded = cache
        .get_or_compute_with(&cache_key, &options.clone(), || async move {
            match store.get(key).await {
                Ok(Some(v)) => Ok(v),
                Ok(None) => Err(Box::new(Absent) as Box<dyn std::error::Error + Send + Sync>),
                Err(e) => Err(e.into()),
            }
        })
        .await;
    match loaded {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == ErrorKind::Loader && is_absent(&e) => Ok(None),
        Err(e) => Err(e),
    }
}
