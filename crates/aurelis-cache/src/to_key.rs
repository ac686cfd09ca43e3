//! [`ToKey`]: the one key argument of every [`Cache`](crate::Cache) method.

use std::borrow::Cow;
use std::cell::RefCell;

use aurelis_cache_core::{Key, KeyBuilder, Params, Result};

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

    /// The hit path's form of [`ToKey::to_key`]: calls `hit` with the key's text and returns
    /// `None` when it answered `true`, else the key (for the slow path). A
    /// `(category, identifier)` pair is written into a buffer kept per thread, so a hit
    /// allocates no [`Key`]; the slow path then builds one (the checks run again).
    /// Not meant to be called or overridden outside this crate.
    ///
    /// # Errors
    ///
    /// As [`ToKey::to_key`].
    #[doc(hidden)]
    fn probe<'a>(
        &'a self,
        keys: &KeyBuilder,
        hit: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Option<Cow<'a, Key>>> {
        probe_built(self.to_key(keys)?, hit)
    }
}

/// [`ToKey::probe`] with the key built: `None` when `hit` answered, else the key.
fn probe_built<'a>(
    key: Cow<'a, Key>,
    hit: &mut dyn FnMut(&str) -> bool,
) -> Result<Option<Cow<'a, Key>>> {
    Ok(if hit(key.as_str()) { None } else { Some(key) })
}

impl ToKey for Key {
    #[inline]
    fn to_key<'a>(&'a self, _keys: &KeyBuilder) -> Result<Cow<'a, Key>> {
        Ok(Cow::Borrowed(self))
    }
}

impl<K: ToKey + ?Sized> ToKey for &K {
    #[inline]
    fn to_key<'a>(&'a self, keys: &KeyBuilder) -> Result<Cow<'a, Key>> {
        (**self).to_key(keys)
    }

    #[inline]
    fn probe<'a>(
        &'a self,
        keys: &KeyBuilder,
        hit: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Option<Cow<'a, Key>>> {
        (**self).probe(keys, hit)
    }
}

impl<C: AsRef<str>, I: AsRef<str>> ToKey for (C, I) {
    fn to_key<'a>(&'a self, keys: &KeyBuilder) -> Result<Cow<'a, Key>> {
        keys.build_key(self.0.as_ref(), self.1.as_ref(), None).map(Cow::Owned)
    }

    fn probe<'a>(
        &'a self,
        keys: &KeyBuilder,
        hit: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Option<Cow<'a, Key>>> {
        thread_local! {
            static BUF: RefCell<String> = const { RefCell::new(String::new()) };
        }
        let (category, identifier) = (self.0.as_ref(), self.1.as_ref());
        // `None`: the buffer is in use further up this thread's stack (a `Clone` of a cached
        // value that reads the cache); the key is then built as usual.
        let answered = BUF.with(|buf| match buf.try_borrow_mut() {
            Ok(mut buf) => {
                keys.write_key(&mut buf, category, identifier, None).map(|()| Some(hit(&buf)))
            }
            Err(_) => Ok(None),
        })?;
        match answered {
            Some(true) => Ok(None),
            Some(false) => self.to_key(keys).map(Some),
            None => probe_built(self.to_key(keys)?, hit),
        }
    }
}

impl<C: AsRef<str>, I: AsRef<str>, P: ParamsArg> ToKey for (C, I, P) {
    fn to_key<'a>(&'a self, keys: &KeyBuilder) -> Result<Cow<'a, Key>> {
        keys.build_key(self.0.as_ref(), self.1.as_ref(), self.2.params()).map(Cow::Owned)
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
