//! [`ToKey`]: the one key argument of every [`Cache`](crate::Cache) method.

use std::borrow::Cow;
use std::cell::Cell;

use aurelis_cache_core::{Key, KeyBuilder, KeyWriter, Params, Result};

/// Anything that names one cache entry: what every key-taking [`Cache`](crate::Cache) method
/// accepts.
///
/// - a [`Key`] built beforehand (by value or by reference), for example with
///   [`KeyBuilder::build_model_key`] through [`Cache::keys`](crate::Cache::keys), which is
///   built once and then costs nothing per call;
/// - `(category, identifier)`, both anything that is `AsRef<str>` (`&str`, `String`, ...);
/// - `(category, identifier, params)`, where `params` is `&Params`, `Params` or
///   `Option<&Params>`.
///
/// Tuples are turned into a key with the cache's own [`KeyBuilder`] (its namespace and
/// version), so `("user_data", "u1")` names the same entry in every process sharing the
/// namespace. A bad category or identifier is an [`ErrorKind::InvalidKey`] error naming it.
///
/// [`ErrorKind::InvalidKey`]: aurelis_cache_core::ErrorKind::InvalidKey
///
/// # Examples
///
/// ```
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// # rt.block_on(async {
/// use aurelis_cache::{Cache, MokaStore, Params, Tier};
/// let cache = Cache::builder()
///     .tier(Tier::new("memory", std::sync::Arc::new(MokaStore::builder().build()?)))
///     .build()?;
/// let params = Params::new().with("lang", "en");
/// cache.set(("user_data", "u1", &params), &"John").await?;
///
/// // A key built once names the same entry as the tuple.
/// let key = cache.keys().build_key("user_data", "u1", Some(&params))?;
/// assert_eq!(cache.get::<String>(&key).await?.as_deref(), Some("John"));
/// // Other parameters, another entry.
/// assert_eq!(cache.get::<String>(("user_data", "u1")).await?, None);
/// // Owned strings work as well as borrowed ones.
/// let id = String::from("u1");
/// assert_eq!(cache.get::<String>(("user_data", &id, Some(&params))).await?.as_deref(), Some("John"));
/// // A bad identifier is an error that names it.
/// assert!(cache.get::<String>(("user_data", "")).await.is_err());
/// # Ok::<(), aurelis_cache::Error>(())
/// # }).unwrap();
/// ```
pub trait ToKey {
    /// The key this argument names, built with `keys` when it is not a [`Key`] already.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidKey`](aurelis_cache_core::ErrorKind::InvalidKey) for a bad
    /// category or identifier.
    fn to_key<'a>(&'a self, keys: &KeyBuilder) -> Result<Cow<'a, Key>>;

    /// The read path's form of [`ToKey::to_key`]: the key's text, borrowed from a [`Key`] or
    /// written into `buf` (cleared first) with the same checks, so a `(category, identifier)`
    /// lookup allocates no [`Key`]. Not meant to be called or overridden outside this crate.
    ///
    /// # Errors
    ///
    /// As [`ToKey::to_key`].
    #[doc(hidden)]
    fn write_text<'a>(&'a self, keys: &KeyBuilder, buf: &'a mut KeyWriter) -> Result<&'a str> {
        let key = self.to_key(keys)?;
        Ok(buf.set(&key))
    }

    /// The [`Key`] this argument is, when it is one already (so its text needs no buffer).
    /// Not meant to be called or overridden outside this crate.
    #[doc(hidden)]
    fn prebuilt(&self) -> Option<&Key> {
        None
    }
}

/// A [`KeyWriter`] for one key's text, taken from a buffer kept per thread when a key is first
/// written into it ([`KeyBuf::text`]) and given back when dropped (a read that moves to another
/// thread gives it to that thread's), so a read by `(category, identifier)` allocates nothing
/// once the thread has read before, and a read by a prebuilt [`Key`] does not touch the
/// thread's slot at all. A read nested in another (a `Clone` of a cached value that reads the
/// cache) finds the slot empty and uses a new writer. The writer keeps the head of the last
/// key (`namespace:version:category:`), so reads of one category check only identifiers.
#[derive(Default)]
pub(crate) struct KeyBuf(Option<KeyWriter>);

thread_local! {
    static KEY_BUF: Cell<KeyWriter> = const { Cell::new(KeyWriter::new()) };
}

/// Buffers longer than this are not kept (a thread keeps at most one, this long).
const KEY_BUF_KEEP: usize = 1024;

impl KeyBuf {
    /// The text of `key`: a prebuilt key's own, else written into this thread's buffer (taken
    /// now) with the checks of [`ToKey::write_text`].
    pub(crate) fn text<'a, K: ToKey + ?Sized>(
        &'a mut self,
        key: &'a K,
        keys: &KeyBuilder,
    ) -> Result<&'a str> {
        if let Some(key) = key.prebuilt() {
            return Ok(key.as_str());
        }
        let buf = self.0.get_or_insert_with(|| KEY_BUF.try_with(Cell::take).unwrap_or_default());
        key.write_text(keys, buf)
    }
}

impl Drop for KeyBuf {
    fn drop(&mut self) {
        if let Some(buf) = self.0.take().filter(|b| b.capacity() <= KEY_BUF_KEEP) {
            // During thread shutdown the slot may be gone: the buffer is then just dropped.
            let _ = KEY_BUF.try_with(|slot| slot.set(buf));
        }
    }
}

impl ToKey for Key {
    #[inline]
    fn to_key<'a>(&'a self, _keys: &KeyBuilder) -> Result<Cow<'a, Key>> {
        Ok(Cow::Borrowed(self))
    }

    #[inline]
    fn write_text<'a>(&'a self, _keys: &KeyBuilder, _buf: &'a mut KeyWriter) -> Result<&'a str> {
        Ok(self.as_str())
    }

    #[inline]
    fn prebuilt(&self) -> Option<&Key> {
        Some(self)
    }
}

impl<K: ToKey + ?Sized> ToKey for &K {
    #[inline]
    fn to_key<'a>(&'a self, keys: &KeyBuilder) -> Result<Cow<'a, Key>> {
        (**self).to_key(keys)
    }

    #[inline]
    fn write_text<'a>(&'a self, keys: &KeyBuilder, buf: &'a mut KeyWriter) -> Result<&'a str> {
        (**self).write_text(keys, buf)
    }

    #[inline]
    fn prebuilt(&self) -> Option<&Key> {
        (**self).prebuilt()
    }
}

impl<C: AsRef<str>, I: AsRef<str>> ToKey for (C, I) {
    fn to_key<'a>(&'a self, keys: &KeyBuilder) -> Result<Cow<'a, Key>> {
        keys.build_key(self.0.as_ref(), self.1.as_ref(), None).map(Cow::Owned)
    }

    fn write_text<'a>(&'a self, keys: &KeyBuilder, buf: &'a mut KeyWriter) -> Result<&'a str> {
        keys.write_key_into(buf, self.0.as_ref(), self.1.as_ref(), None)
    }
}

impl<C: AsRef<str>, I: AsRef<str>, P: ParamsArg> ToKey for (C, I, P) {
    fn to_key<'a>(&'a self, keys: &KeyBuilder) -> Result<Cow<'a, Key>> {
        keys.build_key(self.0.as_ref(), self.1.as_ref(), self.2.params()).map(Cow::Owned)
    }

    fn write_text<'a>(&'a self, keys: &KeyBuilder, buf: &'a mut KeyWriter) -> Result<&'a str> {
        keys.write_key_into(buf, self.0.as_ref(), self.1.as_ref(), self.2.params())
    }
}

/// What the third element of a `(category, identifier, params)` key may be: `&Params`,
/// `Params` or `Option<&Params>`.
pub trait ParamsArg {
    /// The parameters, if any.
    fn params(&self) -> Option<&Params>;
}

impl ParamsArg for Params {
    fn params(&self) -> Option<&Params> {
        Some(self)
    }
}

impl ParamsArg for &Params {
    fn params(&self) -> Option<&Params> {
        Some(self)
    }
}

impl ParamsArg for Option<&Params> {
    fn params(&self) -> Option<&Params> {
        *self
    }
}

impl ParamsArg for Option<Params> {
    fn params(&self) -> Option<&Params> {
        self.as_ref()
    }
}
