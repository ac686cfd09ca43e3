//! Store layers: wrappers that add behaviour around a [`Store`] (time limits, circuit
//! breaking, statistics, compression, fault injection), in the style of tower's `Layer` and
//! OpenDAL's `LayeredAccess`.
//!
//! A wrapper implements [`LayeredStore`]: it names its inner store and overrides only what it
//! changes. Every other operation is forwarded as it is, without an extra allocation or an
//! extra `await`, and a blanket implementation makes every `LayeredStore` a [`Store`]. The
//! [`LayeredStore::around`] hook sees every byte operation once, so a wrapper that does the
//! same thing around every call (a time limit, a counter) overrides that one method.
//!
//! An in-process store's decoded values ([`Store::as_value_store`]: the memory tier's
//! `Arc<T>` entries, read and written synchronously) are forwarded too, past `around` and the
//! byte operations: that is what keeps a layered memory tier's hit one lookup. A layer that
//! must see or change every value read and written (an audit log, encryption of process
//! memory) overrides [`LayeredStore::as_value_store`] to return `None`; its tier then keeps
//! bytes only, and every read goes through the layer's `get`.
//!
//! # Examples
//!
//! A layer counting the operations of its store:
//!
//! ```
//! # #[cfg(feature = "testkit")] {
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use std::sync::Arc;
//! use aurelis_cache_core::layer::{BoxFuture, Layer, Operation};
//! use aurelis_cache_core::testkit::MemoryMapStore;
//! use aurelis_cache_core::{Bytes, Result, Store};
//!
//! #[derive(Debug)]
//! struct Counted<S> {
//!     inner: S,
//!     writes: AtomicU64,
//! }
//!
//! // Named by path, not imported: with only `Store` in scope, calls such as `store.get(..)`
//! // below are not ambiguous between the two traits.
//! impl<S: Store> aurelis_cache_core::layer::LayeredStore for Counted<S> {
//!     type Inner = S;
//!     fn inner(&self) -> &S {
//!         &self.inner
//!     }
//!     fn around<'a, T: Send + 'a>(
//!         &'a self,
//!         op: Operation,
//!         call: BoxFuture<'a, Result<T>>,
//!     ) -> BoxFuture<'a, Result<T>> {
//!         if op.is_write() {
//!             self.writes.fetch_add(1, Ordering::Relaxed);
//!         }
//!         call
//!     }
//! }
//!
//! struct CountLayer;
//! impl<S: Store> Layer<S> for CountLayer {
//!     type Store = Counted<S>;
//!     fn layer(&self, inner: S) -> Counted<S> {
//!         Counted { inner, writes: AtomicU64::new(0) }
//!     }
//! }
//!
//! # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
//! # rt.block_on(async {
//! let store = CountLayer.layer(MemoryMapStore::new("memory"));
//! store.set("k", Bytes::from_static(b"v"), None).await?;
//! store.delete("k").await?;
//! assert_eq!(store.get("k").await?, None); // forwarded untouched
//! assert_eq!(store.writes.load(Ordering::Relaxed), 2);
//! assert_eq!(store.name(), "memory");
//! # Ok::<(), aurelis_cache_core::Error>(())
//! # }).unwrap();
//! # }
//! ```

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::error::Result;
use crate::store::{Capabilities, ScanPage, Store, StoreCounters};
use crate::value::ValueStore;

/// A boxed, `Send` future: what every [`Store`] method returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Turns a store into a wrapped store (tower's `Layer`, for [`Store`]s).
///
/// # Examples
///
/// See the [module documentation](self).
pub trait Layer<S> {
    /// The wrapped store.
    type Store;

    /// Wraps `inner`.
    fn layer(&self, inner: S) -> Self::Store;
}

/// The store operation a [`LayeredStore::around`] hook is running.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// [`Store::get`].
    Get,
    /// [`Store::get_many`].
    GetMany,
    /// [`Store::set`].
    Set,
    /// [`Store::set_many`].
    SetMany,
    /// [`Store::set_if_absent`].
    SetIfAbsent,
    /// [`Store::delete`].
    Delete,
    /// [`Store::delete_prefix`].
    DeletePrefix,
    /// [`Store::delete_pattern`].
    DeletePattern,
    /// [`Store::clear`].
    Clear,
    /// [`Store::scan_prefix`].
    ScanPrefix,
    /// [`Store::flush`].
    Flush,
    /// [`Store::len`].
    Len,
    /// [`Store::size_bytes`].
    SizeBytes,
}

impl Operation {
    /// Whether the operation changes what the store holds (writes and deletions, and
    /// `flush`).
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_cache_core::layer::Operation;
    /// assert!(Operation::Delete.is_write());
    /// assert!(!Operation::GetMany.is_write());
    /// ```
    pub fn is_write(self) -> bool {
        !matches!(
            self,
            Operation::Get
                | Operation::GetMany
                | Operation::ScanPrefix
                | Operation::Len
                | Operation::SizeBytes
        )
    }

    /// The operation's name in `snake_case`, for logs and metric labels.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(aurelis_cache_core::layer::Operation::SetIfAbsent.as_str(), "set_if_absent");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Get => "get",
            Operation::GetMany => "get_many",
            Operation::Set => "set",
            Operation::SetMany => "set_many",
            Operation::SetIfAbsent => "set_if_absent",
            Operation::Delete => "delete",
            Operation::DeletePrefix => "delete_prefix",
            Operation::DeletePattern => "delete_pattern",
            Operation::Clear => "clear",
            Operation::ScanPrefix => "scan_prefix",
            Operation::Flush => "flush",
            Operation::Len => "len",
            Operation::SizeBytes => "size_bytes",
        }
    }
}

/// A store that wraps another and forwards to it whatever it does not override (OpenDAL's
/// `LayeredAccess`). Every `LayeredStore` is a [`Store`].
///
/// Each operation's default runs the inner store's operation through [`around`], so a
/// wrapper that treats every call alike overrides only `around`; a wrapper that changes
/// values (compression, damage for tests) overrides the operations it changes. Overridden
/// operations should still go through `around` when they call the inner store, so that
/// layers compose.
///
/// [`around`]: LayeredStore::around
///
/// # Examples
///
/// See the [module documentation](self).
#[allow(missing_docs)] // the forwarding methods are documented on `Store`
pub trait LayeredStore: Debug + Send + Sync + 'static {
    /// The wrapped store.
    type Inner: Store + ?Sized;

    /// The wrapped store.
    fn inner(&self) -> &Self::Inner;

    /// Runs `call` (one operation of the inner store); the default runs it as it is. Override
    /// it to add behaviour around every operation.
    fn around<'a, T: Send + 'a>(
        &'a self,
        op: Operation,
        call: BoxFuture<'a, Result<T>>,
    ) -> BoxFuture<'a, Result<T>> {
        let _ = op;
        call
    }

    fn name(&self) -> &str {
        self.inner().name()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner().capabilities()
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>> {
        self.around(Operation::Get, self.inner().get(key))
    }

    /// `None` unless the layer overrides it: a layer that changes reads (or must see every
    /// call) would be bypassed if the synchronous read went straight to its inner store. A
    /// layer that only observes calls passes it on with its own bookkeeping.
    fn get_sync(&self, key: &str) -> Option<Result<Option<Bytes>>> {
        let _ = key;
        None
    }

    /// Through the layer's [`LayeredStore::get_sync`] unless the layer overrides it (so a
    /// layer that changes or observes reads is never bypassed).
    fn get_sync_with(&self, key: &str, read: &mut dyn FnMut(&[u8])) -> Option<Result<bool>> {
        Some(LayeredStore::get_sync(self, key)?.map(|found| found.map(|b| read(&b)).is_some()))
    }

    fn get_many<'a>(&'a self, keys: &'a [&'a str]) -> BoxFuture<'a, Result<Vec<Option<Bytes>>>> {
        self.around(Operation::GetMany, self.inner().get_many(keys))
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<()>> {
        self.around(Operation::Set, self.inner().set(key, value, ttl))
    }

    fn set_many<'a>(
        &'a self,
        entries: &'a [(&'a str, Bytes)],
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<()>> {
        self.around(Operation::SetMany, self.inner().set_many(entries, ttl))
    }

    fn set_if_absent<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<bool>> {
        self.around(Operation::SetIfAbsent, self.inner().set_if_absent(key, value, ttl))
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool>> {
        self.around(Operation::Delete, self.inner().delete(key))
    }

    fn delete_prefix<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<u64>> {
        self.around(Operation::DeletePrefix, self.inner().delete_prefix(prefix))
    }

    fn delete_pattern<'a>(&'a self, pattern: &'a str) -> BoxFuture<'a, Result<u64>> {
        self.around(Operation::DeletePattern, self.inner().delete_pattern(pattern))
    }

    fn clear(&self) -> BoxFuture<'_, Result<()>> {
        self.around(Operation::Clear, self.inner().clear())
    }

    fn scan_prefix<'a>(
        &'a self,
        prefix: &'a str,
        cursor: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<ScanPage>> {
        self.around(Operation::ScanPrefix, self.inner().scan_prefix(prefix, cursor, limit))
    }

    fn flush(&self) -> BoxFuture<'_, Result<()>> {
        self.around(Operation::Flush, self.inner().flush())
    }

    fn len(&self) -> BoxFuture<'_, Result<u64>> {
        self.around(Operation::Len, self.inner().len())
    }

    fn is_empty(&self) -> BoxFuture<'_, Result<bool>> {
        self.around(Operation::Len, self.inner().is_empty())
    }

    fn size_bytes(&self) -> BoxFuture<'_, Result<u64>> {
        self.around(Operation::SizeBytes, self.inner().size_bytes())
    }

    fn counters(&self) -> StoreCounters {
        self.inner().counters()
    }

    /// The inner store's decoded values, forwarded past [`LayeredStore::around`] (see the
    /// module documentation); return `None` to keep the layer on every read and write.
    fn as_value_store(&self) -> Option<&dyn ValueStore> {
        self.inner().as_value_store()
    }
}

/// Every [`LayeredStore`] is a [`Store`]: each method hands out the layered store's future
/// as it is (no second box, no second `await`).
impl<L: LayeredStore> Store for L {
    fn name(&self) -> &str {
        LayeredStore::name(self)
    }

    fn capabilities(&self) -> Capabilities {
        LayeredStore::capabilities(self)
    }

    fn get<'s, 'k, 'f>(&'s self, key: &'k str) -> BoxFuture<'f, Result<Option<Bytes>>>
    where
        's: 'f,
        'k: 'f,
        Self: 'f,
    {
        LayeredStore::get(self, key)
    }

    fn get_sync(&self, key: &str) -> Option<Result<Option<Bytes>>> {
        LayeredStore::get_sync(self, key)
    }

    fn get_sync_with(&self, key: &str, read: &mut dyn FnMut(&[u8])) -> Option<Result<bool>> {
        LayeredStore::get_sync_with(self, key, read)
    }

    fn set<'s, 'k, 'f>(
        &'s self,
        key: &'k str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> BoxFuture<'f, Result<()>>
    where
        's: 'f,
        'k: 'f,
        Self: 'f,
    {
        LayeredStore::set(self, key, value, ttl)
    }

    fn set_if_absent<'s, 'k, 'f>(
        &'s self,
        key: &'k str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> BoxFuture<'f, Result<bool>>
    where
        's: 'f,
        'k: 'f,
        Self: 'f,
    {
        LayeredStore::set_if_absent(self, key, value, ttl)
    }

    fn scan_prefix<'s, 'p, 'c, 'f>(
        &'s self,
        prefix: &'p str,
        cursor: Option<&'c str>,
        limit: usize,
    ) -> BoxFuture<'f, Result<ScanPage>>
    where
        's: 'f,
        'p: 'f,
        'c: 'f,
        Self: 'f,
    {
        LayeredStore::scan_prefix(self, prefix, cursor, limit)
    }

    fn flush<'s, 'f>(&'s self) -> BoxFuture<'f, Result<()>>
    where
        's: 'f,
        Self: 'f,
    {
        LayeredStore::flush(self)
    }

    fn delete<'s, 'k, 'f>(&'s self, key: &'k str) -> BoxFuture<'f, Result<bool>>
    where
        's: 'f,
        'k: 'f,
        Self: 'f,
    {
        LayeredStore::delete(self, key)
    }

    fn get_many<'s, 'k, 'l, 'f>(
        &'s self,
        keys: &'k [&'l str],
    ) -> BoxFuture<'f, Result<Vec<Option<Bytes>>>>
    where
        's: 'f,
        'k: 'f,
        'l: 'f,
        Self: 'f,
    {
        LayeredStore::get_many(self, keys)
    }

    fn set_many<'s, 'e, 'k, 'f>(
        &'s self,
        entries: &'e [(&'k str, Bytes)],
        ttl: Option<Duration>,
    ) -> BoxFuture<'f, Result<()>>
    where
        's: 'f,
        'e: 'f,
        'k: 'f,
        Self: 'f,
    {
        LayeredStore::set_many(self, entries, ttl)
    }

    fn delete_prefix<'s, 'p, 'f>(&'s self, prefix: &'p str) -> BoxFuture<'f, Result<u64>>
    where
        's: 'f,
        'p: 'f,
        Self: 'f,
    {
        LayeredStore::delete_prefix(self, prefix)
    }

    fn delete_pattern<'s, 'p, 'f>(&'s self, pattern: &'p str) -> BoxFuture<'f, Result<u64>>
    where
        's: 'f,
        'p: 'f,
        Self: 'f,
    {
        LayeredStore::delete_pattern(self, pattern)
    }

    fn clear<'s, 'f>(&'s self) -> BoxFuture<'f, Result<()>>
    where
        's: 'f,
        Self: 'f,
    {
        LayeredStore::clear(self)
    }

    fn len<'s, 'f>(&'s self) -> BoxFuture<'f, Result<u64>>
    where
        's: 'f,
        Self: 'f,
    {
        LayeredStore::len(self)
    }

    fn is_empty<'s, 'f>(&'s self) -> BoxFuture<'f, Result<bool>>
    where
        's: 'f,
        Self: 'f,
    {
        LayeredStore::is_empty(self)
    }

    fn size_bytes<'s, 'f>(&'s self) -> BoxFuture<'f, Result<u64>>
    where
        's: 'f,
        Self: 'f,
    {
        LayeredStore::size_bytes(self)
    }

    fn counters(&self) -> StoreCounters {
        LayeredStore::counters(self)
    }

    fn as_value_store(&self) -> Option<&dyn ValueStore> {
        LayeredStore::as_value_store(self)
    }
}

/// A shared store is a store: layers can wrap `Arc<dyn Store>` (what a cache's tiers hold) as
/// well as a concrete store. Every call is forwarded as it is.
impl<S: Store + ?Sized> Store for Arc<S> {
    fn name(&self) -> &str {
        (**self).name()
    }

    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
    }

    fn get<'s, 'k, 'f>(&'s self, key: &'k str) -> BoxFuture<'f, Result<Option<Bytes>>>
    where
        's: 'f,
        'k: 'f,
        Self: 'f,
    {
        (**self).get(key)
    }

    fn get_sync(&self, key: &str) -> Option<Result<Option<Bytes>>> {
        (**self).get_sync(key)
    }

    fn get_sync_with(&self, key: &str, read: &mut dyn FnMut(&[u8])) -> Option<Result<bool>> {
        (**self).get_sync_with(key, read)
    }

    fn set<'s, 'k, 'f>(
        &'s self,
        key: &'k str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> BoxFuture<'f, Result<()>>
    where
        's: 'f,
        'k: 'f,
        Self: 'f,
    {
        (**self).set(key, value, ttl)
    }

    fn set_if_absent<'s, 'k, 'f>(
        &'s self,
        key: &'k str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> BoxFuture<'f, Result<bool>>
    where
        's: 'f,
        'k: 'f,
        Self: 'f,
    {
        (**self).set_if_absent(key, value, ttl)
    }

    fn scan_prefix<'s, 'p, 'c, 'f>(
        &'s self,
        prefix: &'p str,
        cursor: Option<&'c str>,
        limit: usize,
    ) -> BoxFuture<'f, Result<ScanPage>>
    where
        's: 'f,
        'p: 'f,
        'c: 'f,
        Self: 'f,
    {
        (**self).scan_prefix(prefix, cursor, limit)
    }

    fn flush<'s, 'f>(&'s self) -> BoxFuture<'f, Result<()>>
    where
        's: 'f,
        Self: 'f,
    {
        (**self).flush()
    }

    fn delete<'s, 'k, 'f>(&'s self, key: &'k str) -> BoxFuture<'f, Result<bool>>
    where
        's: 'f,
        'k: 'f,
        Self: 'f,
    {
        (**self).delete(key)
    }

    fn get_many<'s, 'k, 'l, 'f>(
        &'s self,
        keys: &'k [&'l str],
    ) -> BoxFuture<'f, Result<Vec<Option<Bytes>>>>
    where
        's: 'f,
        'k: 'f,
        'l: 'f,
        Self: 'f,
    {
        (**self).get_many(keys)
    }

    fn set_many<'s, 'e, 'k, 'f>(
        &'s self,
        entries: &'e [(&'k str, Bytes)],
        ttl: Option<Duration>,
    ) -> BoxFuture<'f, Result<()>>
    where
        's: 'f,
        'e: 'f,
        'k: 'f,
        Self: 'f,
    {
        (**self).set_many(entries, ttl)
    }

    fn delete_prefix<'s, 'p, 'f>(&'s self, prefix: &'p str) -> BoxFuture<'f, Result<u64>>
    where
        's: 'f,
        'p: 'f,
        Self: 'f,
    {
        (**self).delete_prefix(prefix)
    }

    fn delete_pattern<'s, 'p, 'f>(&'s self, pattern: &'p str) -> BoxFuture<'f, Result<u64>>
    where
        's: 'f,
        'p: 'f,
        Self: 'f,
    {
        (**self).delete_pattern(pattern)
    }

    fn clear<'s, 'f>(&'s self) -> BoxFuture<'f, Result<()>>
    where
        's: 'f,
        Self: 'f,
    {
        (**self).clear()
    }

    fn len<'s, 'f>(&'s self) -> BoxFuture<'f, Result<u64>>
    where
        's: 'f,
        Self: 'f,
    {
        (**self).len()
    }

    fn is_empty<'s, 'f>(&'s self) -> BoxFuture<'f, Result<bool>>
    where
        's: 'f,
        Self: 'f,
    {
        (**self).is_empty()
    }

    fn size_bytes<'s, 'f>(&'s self) -> BoxFuture<'f, Result<u64>>
    where
        's: 'f,
        Self: 'f,
    {
        (**self).size_bytes()
    }

    fn counters(&self) -> StoreCounters {
        (**self).counters()
    }

    fn as_value_store(&self) -> Option<&dyn ValueStore> {
        (**self).as_value_store()
    }
}
