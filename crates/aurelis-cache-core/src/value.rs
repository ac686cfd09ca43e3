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
use crate::error::Result;

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
            tags: if env.tags.is_empty() { no_tags() } else { env.tags.clone().into() },
        }
    }
}

/// The empty tag list every untagged entry shares: an `Arc` of an empty slice still
/// allocates its counts (32 bytes per entry with glibc's malloc), one shared list does not.
fn no_tags() -> Arc<[String]> {
    static EMPTY: std::sync::OnceLock<Arc<[String]>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| Arc::from(Vec::new())).clone()
}

/// A decoded value of any type that can be encoded again (its vtable carries the encoder,
/// so an entry does not hold a function pointer of its own).
trait Erased: Any + Send + Sync {
    /// The value encoded with `codec`.
    fn reencode(&self, codec: Codec) -> Result<Vec<u8>>;
}

impl<T: Serialize + Send + Sync + 'static> Erased for T {
    fn reencode(&self, codec: Codec) -> Result<Vec<u8>> {
        codec.encode(self)
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
    value: Arc<dyn Erased>,
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
        ValueEntry { value, meta, weight }
    }

    /// The value, if it is a `T`.
    pub fn get<T: 'static>(&self) -> Option<&T> {
        let value: &(dyn Any + Send + Sync) = &*self.value;
        value.downcast_ref::<T>()
    }

    /// The shared value, if it is a `T`.
    pub fn get_arc<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        let value: Arc<dyn Any + Send + Sync> = self.value.clone();
        value.downcast::<T>().ok()
    }

    /// The envelope bytes of this entry (the value encoded again with its codec).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Codec`](crate::ErrorKind::Codec) when the value cannot be encoded.
    pub fn to_envelope_bytes(&self) -> Result<Bytes> {
        let payload = self.value.reencode(self.meta.codec)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_share_untagged_lists_and_stay_small() {
        let env = Envelope::new(Codec::Json, Codec::Json.encode(&"v").unwrap().into());
        let (a, b) = (EntryMeta::of(&env), EntryMeta::of(&env));
        // No allocation per untagged entry: every one shares the same empty list.
        assert!(Arc::ptr_eq(&a.tags, &b.tags));
        let tagged = EntryMeta::of(&env.clone().with_tags(vec!["t".into()]));
        assert_eq!(&*tagged.tags, ["t".to_string()]);
        // The encoder lives in the value's vtable, not in the entry: an entry is 88 bytes, so
        // its `Arc` fits a 112-byte allocation (it was 128 with a function pointer).
        assert_eq!(std::mem::size_of::<ValueEntry>(), 88);
        let entry = ValueEntry::new("v".to_string(), a, 4);
        assert_eq!(entry.get::<String>().map(String::as_str), Some("v"));
        assert_eq!(entry.get_arc::<String>().as_deref().map(String::as_str), Some("v"));
        assert!(entry.get_arc::<u32>().is_none());
        assert_eq!(
            Envelope::decode(entry.to_envelope_bytes().unwrap())
                .unwrap()
                .value::<String>()
                .unwrap(),
            "v"
        );
    }
}
