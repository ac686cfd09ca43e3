//! The `Store` trait every tier implements.

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::Result;

/// What a store can do, so the cache can choose how to use it.
///
/// # Examples
///
/// ```
/// let caps = aurelis_cache_core::Capabilities::default();
/// assert!(!caps.shared && !caps.persistent);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Other processes see the same entries (Redis).
    pub shared: bool,
    /// Entries survive a restart of the process (sled, Redis with persistence).
    pub persistent: bool,
    /// The store expires entries itself (moka's expiry, Redis `PX`); otherwise the store
    /// checks expiry on read and sweeps.
    pub native_ttl: bool,
    /// Keys can be scanned in order, so prefix deletion does not walk every key.
    pub ordered_scan: bool,
    /// The store lives in this process's memory.
    pub in_process: bool,
    /// [`Store::set_if_absent`] is atomic (set-if-absent), so a guarded write cannot replace
    /// an entry written meanwhile.
    pub conditional_write: bool,
    /// [`Store::scan_prefix`] lists keys page by page.
    pub scan: bool,
}

impl Capabilities {
    /// No capability set.
    ///
    /// # Examples
    ///
    /// ```
    /// let caps = aurelis_cache_core::Capabilities::none().with_shared(true);
    /// assert!(caps.shared);
    /// ```
    pub const fn none() -> Self {
        Capabilities {
            shared: false,
            persistent: false,
            native_ttl: false,
            ordered_scan: false,
            in_process: false,
            conditional_write: false,
            scan: false,
        }
    }

    /// Sets [`Capabilities::shared`].
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(aurelis_cache_core::Capabilities::none().with_shared(true).shared);
    /// ```
    pub const fn with_shared(mut self, yes: bool) -> Self {
        self.shared = yes;
        self
    }

    /// Sets [`Capabilities::persistent`].
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(aurelis_cache_core::Capabilities::none().with_persistent(true).persistent);
    /// ```
    pub const fn with_persistent(mut self, yes: bool) -> Self {
        self.persistent = yes;
        self
    }

    /// Sets [`Capabilities::native_ttl`].
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(aurelis_cache_core::Capabilities::none().with_native_ttl(true).native_ttl);
    /// ```
    pub const fn with_native_ttl(mut self, yes: bool) -> Self {
        self.native_ttl = yes;
        self
    }

    /// Sets [`Capabilities::ordered_scan`].
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(aurelis_cache_core::Capabilities::none().with_ordered_scan(true).ordered_scan);
    /// ```
    pub const fn with_ordered_scan(mut self, yes: bool) -> Self {
        self.ordered_scan = yes;
        self
    }

    /// Sets [`Capabilities::conditional_write`].
    ///
    /// # Examples
    ///
    /// ```
    /// let caps = aurelis_cache_core::Capabilities::none().with_conditional_write(true);
    /// assert!(caps.conditional_write && !caps.scan);
    /// ```
    pub const fn with_conditional_write(mut self, yes: bool) -> Self {
        self.conditional_write = yes;
        self
    }

    /// Sets [`Capabilities::scan`].
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(aurelis_cache_core::Capabilities::none().with_scan(true).scan);
    /// ```
    pub const fn with_scan(mut self, yes: bool) -> Self {
        self.scan = yes;
        self
    }

    /// Sets [`Capabilities::in_process`].
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(aurelis_cache_core::Capabilities::none().with_in_process(true).in_process);
    /// ```
    pub const fn with_in_process(mut self, yes: bool) -> Self {
        self.in_process = yes;
        self
    }
}

/// Counters a store keeps itself, because only it sees the events (evictions by capacity,
/// expirations swept in the background).
///
/// # Examples
///
/// ```
/// assert_eq!(aurelis_cache_core::StoreCounters::default().evictions, 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct StoreCounters {
    /// Entries removed to stay within the capacity.
    pub evictions: u64,
    /// Entries removed because their time to live ran out.
    pub expirations: u64,
    /// Bytes handed to a transforming layer (compression) on writes, before it changed them.
    #[serde(default)]
    pub bytes_written_before: u64,
    /// Bytes the transforming layer handed on to the store for those writes.
    #[serde(default)]
    pub bytes_written_after: u64,
}

impl StoreCounters {
    /// Counters with the given values.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = aurelis_cache_core::StoreCounters::new(3, 4);
    /// assert_eq!((c.evictions, c.expirations), (3, 4));
    /// ```
    pub const fn new(evictions: u64, expirations: u64) -> Self {
        StoreCounters { evictions, expirations, bytes_written_before: 0, bytes_written_after: 0 }
    }

    /// Adds what a transforming layer did to the bytes written through it.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = aurelis_cache_core::StoreCounters::new(0, 0).with_bytes_written(1000, 400);
    /// assert_eq!((c.bytes_written_before, c.bytes_written_after), (1000, 400));
    /// ```
    pub const fn with_bytes_written(mut self, before: u64, after: u64) -> Self {
        self.bytes_written_before = before;
        self.bytes_written_after = after;
        self
    }
}

/// One page of keys from [`Store::scan_prefix`].
///
/// # Examples
///
/// ```
/// let page = aurelis_cache_core::ScanPage::new(vec!["a:1".into()], None);
/// assert!(page.is_last());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScanPage {
    /// Keys of this page (live entries; a store that expires lazily may include a few expired
    /// ones). Order is the store's: sorted for ordered stores, arbitrary for Redis.
    pub keys: Vec<String>,
    /// The cursor of the next page, `None` after the last page.
    pub next: Option<String>,
}

impl ScanPage {
    /// A page of `keys`, followed by the page at `next` if any.
    pub fn new(keys: Vec<String>, next: Option<String>) -> Self {
        ScanPage { keys, next }
    }

    /// Whether this is the last page.
    pub fn is_last(&self) -> bool {
        self.next.is_none()
    }
}

/// One storage tier: opaque byte values under string keys, with a time to live.
///
/// Stores never interpret values: the cache hands them encoded envelopes. Every method is
/// async and object-safe, so tiers are used as `Arc<dyn Store>`. Every backend passes the
/// conformance suite in the `testkit` module (feature `testkit`).
///
/// Patterns are Redis-style globs: `*` any run of characters, `?` one character, `[abc]` /
/// `[a-z]` / `[^a]` a class, `\` escapes the next character. [`glob_match`] implements them.
///
/// # Examples
///
/// Code above the trait works with any tier; here, two in-memory stores from the testkit:
///
/// ```
/// use aurelis_cache_core::{Bytes, Store};
///
/// async fn copy_one(from: &dyn Store, to: &dyn Store, key: &str) -> aurelis_cache_core::Result<bool> {
///     match from.get(key).await? {
///         Some(value) => { to.set(key, value, None).await?; Ok(true) }
///         None => Ok(false),
///     }
/// }
///
/// # #[cfg(feature = "testkit")]
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> aurelis_cache_core::Result<()> {
/// use aurelis_cache_core::testkit::MemoryMapStore;
///
/// let (disk, memory) = (MemoryMapStore::new("disk"), MemoryMapStore::new("memory"));
/// disk.set("user:42", Bytes::from_static(b"profile"), None).await?;
///
/// assert!(copy_one(&disk, &memory, "user:42").await?);
/// assert_eq!(memory.get("user:42").await?, Some(Bytes::from_static(b"profile")));
/// assert!(!copy_one(&disk, &memory, "user:43").await?); // nothing to copy
/// assert_eq!(memory.len().await?, 1);
/// # Ok(())
/// # }
/// # #[cfg(not(feature = "testkit"))]
/// # fn main() {}
/// ```
#[async_trait]
pub trait Store: Debug + Send + Sync + 'static {
    /// The tier's name, used in stats, logs and errors.
    fn name(&self) -> &str;

    /// What the store can do.
    fn capabilities(&self) -> Capabilities;

    /// The value under `key`, or `None` when there is none or it has expired.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Backend`](crate::ErrorKind::Backend) or
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) when the backend fails.
    async fn get(&self, key: &str) -> Result<Option<Bytes>>;

    /// [`Store::get`] answered on the spot, by stores whose reads never wait on a network
    /// (an in-process map, an embedded database): `Some` with exactly what `get` would return,
    /// or `None` from a store that has no such read (the default), which is then read with
    /// `get`. The cache tries it first, which saves the boxed futures of the store and its
    /// layers on every disk hit. A [`LayeredStore`](crate::layer::LayeredStore) passes it on
    /// only when it says so: a layer that does not answers `None`.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(feature = "testkit")] {
    /// use aurelis_cache_core::testkit::{FaultyStore, MemoryMapStore};
    /// use aurelis_cache_core::{Bytes, Store};
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// let store = std::sync::Arc::new(MemoryMapStore::new("map"));
    /// store.set("k", Bytes::from_static(b"v"), None).await?;
    /// assert_eq!(store.get_sync("k").transpose()?, Some(Some(Bytes::from_static(b"v"))));
    /// // A fault-injecting layer has no synchronous read: its faults apply to `get`.
    /// assert!(FaultyStore::new(store).get_sync("k").is_none());
    /// # Ok::<(), aurelis_cache_core::Error>(())
    /// # }).unwrap();
    /// # }
    /// ```
    fn get_sync(&self, key: &str) -> Option<Result<Option<Bytes>>> {
        let _ = key;
        None
    }

    /// [`Store::get_sync`] without handing the bytes out: `read` is called with the entry's
    /// bytes where the store holds them (no [`Bytes`] made for them), and the answer is
    /// `Some(Ok(true))` when it was called, `Some(Ok(false))` for a miss, `Some(Err(_))` as
    /// `get_sync` would fail, and `None` from a store without a synchronous read. The cache
    /// reads its first tier this way when it only decodes the value. The default goes
    /// through `get_sync`, so a store need only override it to save the `Bytes`.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(feature = "testkit")] {
    /// use aurelis_cache_core::testkit::MemoryMapStore;
    /// use aurelis_cache_core::{Bytes, Store};
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// let store = MemoryMapStore::new("map");
    /// store.set("k", Bytes::from_static(b"value"), None).await?;
    /// let mut len = 0;
    /// assert_eq!(store.get_sync_with("k", &mut |bytes| len = bytes.len()).transpose()?, Some(true));
    /// assert_eq!(len, 5);
    /// assert_eq!(store.get_sync_with("other", &mut |_| unreachable!()).transpose()?, Some(false));
    /// # Ok::<(), aurelis_cache_core::Error>(())
    /// # }).unwrap();
    /// # }
    /// ```
    fn get_sync_with(&self, key: &str, read: &mut dyn FnMut(&[u8])) -> Option<Result<bool>> {
        Some(self.get_sync(key)?.map(|found| found.map(|bytes| read(&bytes)).is_some()))
    }

    /// Stores `value` under `key`, replacing what was there; `ttl = None` keeps it until it
    /// is evicted or deleted.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Backend`](crate::ErrorKind::Backend),
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout), or
    /// [`ErrorKind::ValueTooLarge`](crate::ErrorKind::ValueTooLarge) when the store cannot
    /// hold a value that big.
    async fn set(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<()>;

    /// Stores `value` under `key` only when no live entry is there; `true` when it was
    /// written. Stores whose [`Capabilities::conditional_write`] is set do this atomically
    /// (moka's entry API, sled's compare-and-swap, Redis `SET NX PX`); the cache uses it to
    /// copy a lower-tier hit upwards without replacing a value written meanwhile.
    ///
    /// # Errors
    ///
    /// As [`Store::set`]; [`ErrorKind::Usage`](crate::ErrorKind::Usage) from the default
    /// implementation, for stores that cannot write conditionally.
    async fn set_if_absent(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<bool> {
        let _ = (key, value, ttl);
        Err(crate::Error::new(
            crate::ErrorKind::Usage,
            format!("store `{}` has no conditional write", self.name()),
        ))
    }

    /// Lists keys starting with `prefix`, at most about `limit` per page, from `cursor`
    /// (`None` for the first page; then the previous page's [`ScanPage::next`]). Keys written
    /// or deleted during a scan may or may not be listed; every key present for the whole scan
    /// is listed at least once.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Backend`](crate::ErrorKind::Backend) when the backend fails;
    /// [`ErrorKind::Usage`](crate::ErrorKind::Usage) from the default implementation, for
    /// stores that cannot list keys ([`Capabilities::scan`] unset).
    async fn scan_prefix(
        &self,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<ScanPage> {
        let _ = (prefix, cursor, limit);
        Err(crate::Error::new(
            crate::ErrorKind::Usage,
            format!("store `{}` cannot list keys", self.name()),
        ))
    }

    /// Makes every write that returned so far durable (sled: flushed to disk). A no-op for
    /// stores that are durable per write or not durable at all.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Backend`](crate::ErrorKind::Backend) when the backend fails.
    async fn flush(&self) -> Result<()> {
        Ok(())
    }

    /// Removes `key`; `true` when something was removed.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Backend`](crate::ErrorKind::Backend) when the backend fails.
    async fn delete(&self, key: &str) -> Result<bool>;

    /// The values under `keys`, in the same order. Backends override this with one round trip.
    ///
    /// # Errors
    ///
    /// As [`Store::get`].
    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            out.push(self.get(key).await?);
        }
        Ok(out)
    }

    /// Stores every `(key, value)` pair with the same `ttl`.
    ///
    /// # Errors
    ///
    /// As [`Store::set`]; entries before the failing one may have been written.
    async fn set_many(&self, entries: &[(&str, Bytes)], ttl: Option<Duration>) -> Result<()> {
        for (key, value) in entries {
            self.set(key, value.clone(), ttl).await?;
        }
        Ok(())
    }

    /// Removes every key that starts with `prefix`; returns how many were removed.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Backend`](crate::ErrorKind::Backend) when the backend fails.
    async fn delete_prefix(&self, prefix: &str) -> Result<u64>;

    /// Removes every key matching the glob `pattern`; returns how many were removed.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Backend`](crate::ErrorKind::Backend) when the backend fails.
    async fn delete_pattern(&self, pattern: &str) -> Result<u64>;

    /// Removes every entry.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Backend`](crate::ErrorKind::Backend) when the backend fails.
    async fn clear(&self) -> Result<()>;

    /// How many entries the store holds (may include expired entries not yet swept).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Backend`](crate::ErrorKind::Backend) when the backend fails.
    async fn len(&self) -> Result<u64>;

    /// Whether the store holds no entries.
    ///
    /// # Errors
    ///
    /// As [`Store::len`].
    async fn is_empty(&self) -> Result<bool> {
        Ok(self.len().await? == 0)
    }

    /// Bytes the store uses for its entries (keys and values; an estimate where the backend
    /// cannot tell exactly).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Backend`](crate::ErrorKind::Backend) when the backend fails.
    async fn size_bytes(&self) -> Result<u64>;

    /// Counters only the store can keep (evictions, background expirations).
    fn counters(&self) -> StoreCounters {
        StoreCounters::default()
    }

    /// The store's decoded-value side, if it keeps decoded values (in-process tiers); the
    /// cache then serves hits of the same type without decoding.
    fn as_value_store(&self) -> Option<&dyn crate::value::ValueStore> {
        None
    }
}

/// Whether `key` matches the Redis-style glob `pattern` (see [`Store`]).
///
/// # Examples
///
/// ```
/// use aurelis_cache_core::glob_match;
/// assert!(glob_match("aurelis:v1:user:*", "aurelis:v1:user:42"));
/// assert!(glob_match("h?llo", "hello"));
/// assert!(glob_match("h[ae]llo", "hallo"));
/// assert!(!glob_match("h[^e]llo", "hello"));
/// assert!(glob_match(r"a\*b", "a*b"));
/// assert!(!glob_match("user:*", "session:1"));
/// ```
pub fn glob_match(pattern: &str, key: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let k: Vec<char> = key.chars().collect();
    // Iterative matcher with single-star backtracking: O(len(p) * len(k)) worst case.
    let (mut pi, mut ki) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ki < k.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ki));
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    ki += 1;
                    continue;
                }
                '[' => {
                    if let Some((matched, next)) = match_class(&p, pi, k[ki]) {
                        if matched {
                            pi = next;
                            ki += 1;
                            continue;
                        }
                    } else if k[ki] == '[' {
                        // An unterminated class matches a literal `[`.
                        pi += 1;
                        ki += 1;
                        continue;
                    }
                }
                '\\' if pi + 1 < p.len() => {
                    if p[pi + 1] == k[ki] {
                        pi += 2;
                        ki += 1;
                        continue;
                    }
                }
                c => {
                    if c == k[ki] {
                        pi += 1;
                        ki += 1;
                        continue;
                    }
                }
            }
        }
        match star {
            Some((sp, sk)) => {
                pi = sp + 1;
                ki = sk + 1;
                star = Some((sp, sk + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Matches `c` against the class starting at `p[start] == '['`; returns (matched, index after
/// the class), or `None` when the class is not terminated.
fn match_class(p: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let mut i = start + 1;
    // Redis negates with `^` only; `!` is a literal, as in Redis.
    let negate = p.get(i) == Some(&'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < p.len() {
        let mut lo = p[i];
        if lo == ']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if lo == '\\' && i + 1 < p.len() {
            i += 1;
            lo = p[i];
        }
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            let mut hi = p[i + 2];
            let mut skip = 3;
            if hi == '\\' && i + 3 < p.len() {
                hi = p[i + 3];
                skip = 4;
            }
            let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
            if lo <= c && c <= hi {
                matched = true;
            }
            i += skip;
        } else {
            if lo == c {
                matched = true;
            }
            i += 1;
        }
    }
    None
}

/// The longest literal prefix of a glob pattern (everything before the first `* ? [ \`), so
/// ordered stores can scan only that range.
///
/// # Examples
///
/// ```
/// assert_eq!(aurelis_cache_core::store::literal_prefix("aurelis:v1:user:*:x"), "aurelis:v1:user:");
/// assert_eq!(aurelis_cache_core::store::literal_prefix("*"), "");
/// ```
pub fn literal_prefix(pattern: &str) -> &str {
    let end = pattern.find(['*', '?', '[', '\\']).unwrap_or(pattern.len());
    &pattern[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_cases() {
        let cases = [
            ("*", "", true),
            ("*", "anything", true),
            ("a*", "a", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("[a-c]x", "bx", true),
            ("[a-c]x", "dx", false),
            ("[^a-c]x", "dx", true),
            ("[!a]", "!", true),
            ("[!a]", "b", false),
            ("[]]", "]", true),
            ("[", "[", true),
            ("a\\?", "a?", true),
            ("a\\?", "ab", false),
            ("user:*:profile", "user:42:profile", true),
            ("user:*:profile", "user:42:settings", false),
            ("ünï*", "ünïcode", true),
        ];
        for (p, k, want) in cases {
            assert_eq!(glob_match(p, k), want, "{p:?} vs {k:?}");
        }
    }
}
