//! Decoded values kept by an in-process tier, for the cache's hot path.
//!
//! A byte store hands the cache envelope bytes, which every hit must parse and decode. An
//! in-process tier can do better: keep the decoded value (`Arc<T>`) with the few envelope
//! fields the cache checks on a hit, so that a hit of the same type is one lookup and a clone.
//! [`ValueStore`] is that side of a store; [`Store::as_value_store`](crate::Store::as_value_store)
//! offers it. The entry keeps a function that encodes the value again, so the store can still
//! answer a plain [`Store::get`](crate::Store::get) with envelope bytes.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

use crate::codec::Codec;
use crate::envelope::Envelope;
use crate::error::{Error, Result};

/// The envelope fields the cache checks on a hit, without the payload.
///
/// # Examples
///
/// ```
/// use aurelis_cache_core::{Codec, Envelope, EntryMeta};
/// let env = Envelope::new(Codec::Json, "1".into()).with_tags(vec!["t".into()]);
/// let meta = EntryMeta::of(&env);
/// assert_eq!(meta.created_at_ms, env.created_at_ms);
/// assert_eq!(&*meta.tags, ["t".to_string()]);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EntryMeta {
    /// The codec the value was written with.
    pub codec: Codec,
    /// When the entry was written, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// When it stops being fresh (`None`: never).
    pub expires_at_ms: Option<u64>,
    /// Until when it may be served stale when the loader fails.
    pub stale_until_ms: Option<u64>,
    /// Its tags.
    pub tags: Arc<[String]>,
}

impl EntryMeta {
    /// The metadata of `env`.
    pub fn of(env: &Envelope) -> Self {
        EntryMeta {
            codec: env.codec,
            created_at_ms: env.created_at_ms,
            expires_at_ms: env.expires_at_ms,
            stale_until_ms: env.stale_until_ms,
            tags: env.tags.clone().into(),
        }
    }
}

/// Encodes a type-erased value again (the `T` is fixed when the entry is made).
type Reencode = fn(&(dyn Any + Send + Sync), Codec) -> Result<Vec<u8>>;

fn reencode<T: Serialize + Send + Sync + 'static>(
    value: &(dyn Any + Send + Sync),
    codec: Codec,
) -> Result<Vec<u8>> {
    match value.downcast_ref::<T>() {
        Some(v) => codec.encode(v),
        None => Err(Error::codec("a value entry holds another type than it was made with")),
    }
}

/// A decoded value with its metadata, as an in-process tier keeps it.
///
/// # Examples
///
/// ```
/// use aurelis_cache_core::{Codec, Envelope, EntryMeta, ValueEntry};
/// let env = Envelope::new(Codec::Json, Codec::Json.encode(&7u32)?.into());
/// let entry = ValueEntry::new(7u32, EntryMeta::of(&env), 16);
/// assert_eq!(entry.get::<u32>().map(|v| *v), Some(7));
/// assert!(entry.get::<String>().is_none());
/// // It can still be turned back into envelope bytes.
/// let bytes = entry.to_envelope_bytes()?;
/// assert_eq!(Envelope::decode(bytes)?.value::<u32>()?, 7);
/// # Ok::<(), aurelis_cache_core::Error>(())
/// ```
#[derive(Clone)]
pub struct ValueEntry {
    value: Arc<dyn Any + Send + Sync>,
    reencode: Reencode,
    /// The envelope fields.
    pub meta: EntryMeta,
    /// The entry's encoded size in bytes (what a byte-bounded store weighs it as).
    pub weight: u32,
}

impl fmt::Debug for ValueEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValueEntry")
            .field("meta", &self.meta)
            .field("weight", &self.weight)
            .finish()
    }
}

impl ValueEntry {
    /// An entry holding `value`.
    pub fn new<T: Serialize + Send + Sync + 'static>(
        value: T,
        meta: EntryMeta,
        weight: u32,
    ) -> Self {
        Self::from_arc(Arc::new(value), meta, weight)
    }

    /// An entry holding an already shared `value`.
    pub fn from_arc<T: Serialize + Send + Sync + 'static>(
        value: Arc<T>,
        meta: EntryMeta,
        weight: u32,
    ) -> Self {
        ValueEntry { value, reencode: reencode::<T>, meta, weight }
    }

    /// The value, if it is a `T`.
    pub fn get<T: 'static>(&self) -> Option<&T> {
        self.value.downcast_ref::<T>()
    }

    /// The shared value, if it is a `T`.
    pub fn get_arc<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.value.clone().downcast::<T>().ok()
    }

    /// The envelope bytes of this entry (the value encoded again with its codec).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Codec`](crate::ErrorKind::Codec) when the value cannot be encoded.
    pub fn to_envelope_bytes(&self) -> Result<Bytes> {
        let payload = (self.reencode)(&*self.value, self.meta.codec)?;
        let mut env =
            Envelope::new(self.meta.codec, payload.into()).with_tags(self.meta.tags.to_vec());
        env.created_at_ms = self.meta.created_at_ms;
        env.expires_at_ms = self.meta.expires_at_ms;
        env.stale_until_ms = self.meta.stale_until_ms;
        env.encode()
    }
}

/// The decoded-value side of an in-process store. Calls are synchronous: an in-process tier
/// answers without waiting, so the cache's hot path skips the async machinery.
pub trait ValueStore: Send + Sync {
    /// The decoded value under `key`, if the store keeps one there (a live entry stored as
    /// bytes returns `None`; read it with [`Store::get`](crate::Store::get)). Shared, not
    /// copied: a hit costs a reference count.
    fn get_value(&self, key: &str) -> Option<Arc<ValueEntry>>;

    /// Stores `entry` under `key` (replacing what is there) for `ttl`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::ValueTooLarge`](crate::ErrorKind::ValueTooLarge) when the entry cannot fit.
    fn set_value(&self, key: &str, entry: ValueEntry, ttl: Option<Duration>) -> Result<()>;

    /// Stores `entry` only where no live entry is; `true` when it was written.
    ///
    /// # Errors
    ///
    /// As [`ValueStore::set_value`].
    fn set_value_if_absent(
        &self,
        key: &str,
        entry: ValueEntry,
        ttl: Option<Duration>,
    ) -> Result<bool>;

    /// Replaces the entry stored as exactly `bytes` (the same allocation) with `entry`,
    /// keeping its time to live; `false` (and nothing changed) when the key holds anything
    /// else by now. How a read upgrades an entry it has just decoded.
    fn upgrade(&self, key: &str, bytes: &Bytes, entry: ValueEntry) -> bool;
}
