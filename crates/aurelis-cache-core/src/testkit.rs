//! The conformance suite every [`Store`] must pass, and a fault-injecting store wrapper.
//!
//! Cases are plain `async fn case(store: &dyn Store)` functions that panic (assert) on a
//! violation. Each case works on keys under its own prefix and expects a store that is empty
//! at the start (the cases `clear_removes_everything` and `len_counts_entries` look at the
//! whole store). A backend's `tests/conformance.rs` is one macro call:
//!
//! ```
//! use std::sync::Arc;
//! use aurelis_cache_core::testkit::{Fixture, MemoryMapStore};
//!
//! async fn fixture() -> Fixture {
//!     // A disk backend opens its store in a temp dir and keeps the dir alive with
//!     // `Fixture::new(Arc::new(store)).with_guard(dir)`.
//!     Fixture::new(Arc::new(MemoryMapStore::new("reference")))
//! }
//! aurelis_cache_core::conformance_tests!(fixture);
//! # // `cargo test` runs the generated tests; a doctest runs cases by hand.
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! #     aurelis_cache_core::testkit::round_trip(&*fixture().await.store).await;
//! #     aurelis_cache_core::testkit::delete_removes(&*fixture().await.store).await;
//! # }
//! ```

use std::any::Any;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::{Error, ErrorKind, Result};
use crate::layer::{BoxFuture, LayeredStore, Operation};
use crate::store::{Capabilities, ScanPage, Store};

/// A store under test, with whatever must live as long as it (a temp dir, a server).
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use aurelis_cache_core::testkit::{self, Fixture, MemoryMapStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let guard = Arc::new("a temp dir, a server"); // whatever the store needs alive
/// let fixture = Fixture::new(Arc::new(MemoryMapStore::new("reference")))
///     .with_guard(Arc::clone(&guard));
/// assert_eq!(Arc::strong_count(&guard), 2); // held by the fixture
///
/// testkit::round_trip(&*fixture.store).await; // a case panics on a violation
/// drop(fixture);
/// assert_eq!(Arc::strong_count(&guard), 1); // released with the store
/// # }
/// ```
pub struct Fixture {
    /// The store.
    pub store: Arc<dyn Store>,
    guard: Option<Box<dyn Any + Send + Sync>>,
}

impl fmt::Debug for Fixture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fixture").field("store", &self.store).finish_non_exhaustive()
    }
}

impl Fixture {
    /// A fixture holding only a store.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Fixture { store, guard: None }
    }

    /// Keeps `guard` alive as long as the fixture (dropped after the store).
    pub fn with_guard(mut self, guard: impl Any + Send + Sync) -> Self {
        self.guard = Some(Box::new(guard));
        self
    }
}

/// Generates one `#[tokio::test]` per conformance case, each on a fresh store from
/// `$fixture` (an `async fn() -> Fixture`). The calling crate needs `tokio` (with the
/// `macros` and `rt-multi-thread` features) as a dev-dependency.
#[macro_export]
macro_rules! conformance_tests {
    ($fixture:path) => {
        $crate::conformance_tests!(@cases $fixture;
            round_trip, missing_key_is_none, overwrite_replaces, ttl_expires_entries,
            no_ttl_keeps_entries, delete_removes, get_many_keeps_order, set_many_writes_all,
            delete_prefix_removes_only_prefix, delete_pattern_matches_globs,
            clear_removes_everything, len_counts_entries, size_bytes_grows,
            binary_and_empty_values, large_values, unusual_keys,
            concurrent_writers_one_key, concurrent_readers, name_is_set,
            set_if_absent_only_when_absent, scan_prefix_lists_every_key, flush_keeps_entries,
            get_sync_agrees_with_get);
    };
    (@cases $fixture:path; $($case:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let fixture = $fixture().await;
                $crate::testkit::$case(&*fixture.store).await;
                drop(fixture);
            }
        )*
    };
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// A value written can be read back, byte for byte.
pub async fn round_trip(store: &dyn Store) {
    store.set("rt:a", b("alpha"), None).await.expect("set");
    assert_eq!(store.get("rt:a").await.expect("get"), Some(b("alpha")));
}

/// Where a store answers [`Store::get_sync`] (and [`Store::get_sync_with`]), it answers what
/// [`Store::get`] answers: a live value, a missing key, an overwritten, a deleted and an
/// expired entry.
pub async fn get_sync_agrees_with_get(store: &dyn Store) {
    store.set("sync:live", b("live"), None).await.expect("set");
    store.set("sync:over", b("first"), None).await.expect("set");
    store.set("sync:over", b("second"), Some(Duration::from_secs(60))).await.expect("set");
    store.set("sync:gone", b("gone"), None).await.expect("set");
    store.delete("sync:gone").await.expect("delete");
    store.set("sync:short", b("s"), Some(Duration::from_millis(50))).await.expect("set");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while store.get("sync:short").await.expect("get").is_some() {
        assert!(std::time::Instant::now() < deadline, "a 50 ms entry still served after 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for key in ["sync:live", "sync:over", "sync:gone", "sync:short", "sync:never"] {
        let by_get = store.get(key).await.expect("get");
        if let Some(by_sync) = store.get_sync(key) {
            assert_eq!(by_sync.expect("get_sync"), by_get, "get_sync and get differ on {key}");
        }
        let mut seen = None;
        if let Some(found) =
            store.get_sync_with(key, &mut |bytes| seen = Some(Bytes::copy_from_slice(bytes)))
        {
            assert_eq!(found.expect("get_sync_with"), by_get.is_some(), "get_sync_with on {key}");
            assert_eq!(seen, by_get, "get_sync_with and get differ on {key}");
        }
    }
    assert_eq!(store.get("sync:over").await.expect("get"), Some(b("second")));
}

/// A key never written reads as `None`.
pub async fn missing_key_is_none(store: &dyn Store) {
    assert_eq!(store.get("missing:nothing-here").await.expect("get"), None);
    assert!(!store.delete("missing:nothing-here").await.expect("delete"));
}

/// A second write replaces the first.
pub async fn overwrite_replaces(store: &dyn Store) {
    store.set("ow:k", b("first"), None).await.expect("set");
    store.set("ow:k", b("second, longer value"), None).await.expect("set");
    assert_eq!(store.get("ow:k").await.expect("get"), Some(b("second, longer value")));
    store.set("ow:k", b("3"), Some(Duration::from_secs(60))).await.expect("set");
    assert_eq!(store.get("ow:k").await.expect("get"), Some(b("3")));
}

/// An entry with a TTL is served, and is gone once its TTL has passed while an entry with a
/// long TTL is still served.
///
/// Only a wrong store can fail it, never a slow machine: the short-TTL entry is polled until
/// it disappears (for up to 10 s), and nothing is required to still be there after a short
/// time (the entry that must survive has an hour to live).
pub async fn ttl_expires_entries(store: &dyn Store) {
    // An hour outlasts any run of this case.
    store.set("ttl:long", b("l"), Some(Duration::from_secs(3600))).await.expect("set");
    assert_eq!(store.get("ttl:long").await.expect("get"), Some(b("l")), "live entry not served");

    store.set("ttl:short", b("s"), Some(Duration::from_millis(100))).await.expect("set");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while let Some(value) = store.get("ttl:short").await.expect("get") {
        assert_eq!(value, b("s"), "wrong value served before expiry");
        assert!(
            std::time::Instant::now() < deadline,
            "an entry with a 100 ms TTL was still served after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(store.get("ttl:short").await.expect("get"), None, "expired entry served again");
    assert_eq!(store.get("ttl:long").await.expect("get"), Some(b("l")), "live entry dropped");

    // Re-setting an expired key works like a fresh write.
    store.set("ttl:short", b("again"), None).await.expect("set");
    assert_eq!(store.get("ttl:short").await.expect("get"), Some(b("again")));
}

/// An entry without a TTL outlives a short-TTL neighbour.
pub async fn no_ttl_keeps_entries(store: &dyn Store) {
    store.set("nottl:k", b("v"), None).await.expect("set");
    store.set("nottl:overwritten", b("v1"), Some(Duration::from_millis(100))).await.expect("set");
    store.set("nottl:overwritten", b("v2"), None).await.expect("set");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(store.get("nottl:k").await.expect("get"), Some(b("v")));
    assert_eq!(
        store.get("nottl:overwritten").await.expect("get"),
        Some(b("v2")),
        "a write without TTL must drop the TTL of the entry it replaces"
    );
}

/// `delete` removes, reports whether it did, and leaves other keys alone.
pub async fn delete_removes(store: &dyn Store) {
    store.set("del:a", b("1"), None).await.expect("set");
    store.set("del:b", b("2"), None).await.expect("set");
    assert!(store.delete("del:a").await.expect("delete"));
    assert!(!store.delete("del:a").await.expect("delete again"));
    assert_eq!(store.get("del:a").await.expect("get"), None);
    assert_eq!(store.get("del:b").await.expect("get"), Some(b("2")));
}

/// `get_many` answers in the order asked, with `None` for misses and duplicates repeated.
pub async fn get_many_keeps_order(store: &dyn Store) {
    for i in 0..20 {
        store.set(&format!("gm:{i}"), b(&format!("v{i}")), None).await.expect("set");
    }
    let keys: Vec<String> = (0..25).rev().map(|i| format!("gm:{i}")).collect();
    let mut refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    refs.push("gm:3");
    let got = store.get_many(&refs).await.expect("get_many");
    assert_eq!(got.len(), refs.len());
    for (key, value) in refs.iter().zip(&got) {
        let i: usize = key[3..].parse().expect("index");
        let want = (i < 20).then(|| b(&format!("v{i}")));
        assert_eq!(value, &want, "{key}");
    }
    assert!(store.get_many(&[]).await.expect("empty get_many").is_empty());
}

/// `set_many` writes every pair, with the TTL given.
pub async fn set_many_writes_all(store: &dyn Store) {
    let keys: Vec<String> = (0..50).map(|i| format!("sm:{i}")).collect();
    let entries: Vec<(&str, Bytes)> =
        keys.iter().map(|k| (k.as_str(), b(&format!("value of {k}")))).collect();
    store.set_many(&entries, None).await.expect("set_many");
    for k in &keys {
        assert_eq!(store.get(k).await.expect("get"), Some(b(&format!("value of {k}"))));
    }
    store
        .set_many(&[("sm:ttl", b("t"))], Some(Duration::from_millis(100)))
        .await
        .expect("set_many ttl");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(store.get("sm:ttl").await.expect("get"), None);
    store.set_many(&[], None).await.expect("empty set_many");
}

/// Prefix deletion removes exactly the keys with that prefix and counts them.
pub async fn delete_prefix_removes_only_prefix(store: &dyn Store) {
    for i in 0..30 {
        store.set(&format!("pfx:user:{i}"), b("u"), None).await.expect("set");
    }
    store.set("pfx:users", b("not under pfx:user:"), None).await.expect("set");
    store.set("pfx:session:1", b("s"), None).await.expect("set");
    store.set("pfx:use", b("shorter"), None).await.expect("set");
    assert_eq!(store.delete_prefix("pfx:user:").await.expect("delete_prefix"), 30);
    assert_eq!(store.get("pfx:user:7").await.expect("get"), None);
    assert_eq!(store.get("pfx:users").await.expect("get"), Some(b("not under pfx:user:")));
    assert_eq!(store.get("pfx:session:1").await.expect("get"), Some(b("s")));
    assert_eq!(store.get("pfx:use").await.expect("get"), Some(b("shorter")));
    assert_eq!(store.delete_prefix("pfx:user:").await.expect("again"), 0);
}

/// Pattern deletion follows Redis glob rules and counts what it removed.
pub async fn delete_pattern_matches_globs(store: &dyn Store) {
    for k in ["pat:user:1:profile", "pat:user:22:profile", "pat:user:3:settings", "pat:post:1"] {
        store.set(k, b("x"), None).await.expect("set");
    }
    assert_eq!(store.delete_pattern("pat:user:*:profile").await.expect("delete_pattern"), 2);
    assert_eq!(store.get("pat:user:1:profile").await.expect("get"), None);
    assert_eq!(store.get("pat:user:3:settings").await.expect("get"), Some(b("x")));
    assert_eq!(store.delete_pattern("pat:p?st:[0-9]").await.expect("delete_pattern"), 1);
    assert_eq!(store.get("pat:post:1").await.expect("get"), None);
    assert_eq!(store.delete_pattern("pat:nothing*").await.expect("none"), 0);
}

/// `clear` empties the store.
pub async fn clear_removes_everything(store: &dyn Store) {
    for i in 0..40 {
        store.set(&format!("clr:{i}"), b("v"), None).await.expect("set");
    }
    store.clear().await.expect("clear");
    assert_eq!(store.get("clr:1").await.expect("get"), None);
    assert_eq!(store.len().await.expect("len"), 0);
    assert!(store.is_empty().await.expect("is_empty"));
    store.set("clr:after", b("v"), None).await.expect("set after clear");
    assert_eq!(store.get("clr:after").await.expect("get"), Some(b("v")));
}

/// `len` counts live entries.
pub async fn len_counts_entries(store: &dyn Store) {
    assert_eq!(store.len().await.expect("len"), 0, "fixture store must start empty");
    for i in 0..25 {
        store.set(&format!("len:{i}"), b("v"), None).await.expect("set");
    }
    store.set("len:0", b("overwrite does not add"), None).await.expect("set");
    assert_eq!(store.len().await.expect("len"), 25);
    store.delete("len:1").await.expect("delete");
    assert_eq!(store.len().await.expect("len"), 24);
}

/// `size_bytes` grows when values are added.
pub async fn size_bytes_grows(store: &dyn Store) {
    let before = store.size_bytes().await.expect("size_bytes");
    for i in 0..20 {
        store.set(&format!("size:{i}"), Bytes::from(vec![7u8; 4096]), None).await.expect("set");
    }
    let after = store.size_bytes().await.expect("size_bytes");
    assert!(after > before, "size_bytes did not grow: {before} -> {after}");
    assert!(after >= 20 * 4096, "size_bytes {after} is less than the 80 KiB written");
}

/// Any byte, including NUL and invalid UTF-8, round-trips; an empty value is a hit.
pub async fn binary_and_empty_values(store: &dyn Store) {
    let all: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
    store.set("bin:all", Bytes::from(all.clone()), None).await.expect("set");
    assert_eq!(store.get("bin:all").await.expect("get"), Some(Bytes::from(all)));
    store.set("bin:empty", Bytes::new(), None).await.expect("set empty");
    assert_eq!(
        store.get("bin:empty").await.expect("get"),
        Some(Bytes::new()),
        "an empty value must be a hit, not a miss"
    );
}

/// A multi-megabyte value round-trips intact.
pub async fn large_values(store: &dyn Store) {
    let big: Vec<u8> =
        (0..4 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    store.set("large:4mib", Bytes::from(big.clone()), None).await.expect("set");
    let got = store.get("large:4mib").await.expect("get").expect("large value present");
    assert_eq!(got.len(), big.len());
    assert!(got == big, "large value came back different");
}

/// Keys with unicode, spaces, glob characters and escapes are stored as given.
pub async fn unusual_keys(store: &dyn Store) {
    let keys =
        ["odd:ünïcødé:ключ", "odd:with space", "odd:star*q?[x]", "odd:back\\slash", "odd:%3A"];
    for (i, k) in keys.iter().enumerate() {
        store.set(k, b(&i.to_string()), None).await.expect("set");
    }
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(store.get(k).await.expect("get"), Some(b(&i.to_string())), "{k}");
    }
    assert_eq!(store.delete_prefix("odd:star*").await.expect("literal prefix"), 1);
    assert_eq!(store.get("odd:with space").await.expect("get"), Some(b("1")));
}

/// Many tasks writing one key leave one of their values, whole.
pub async fn concurrent_writers_one_key(store: &dyn Store) {
    let values: Vec<Bytes> =
        (0..16u8).map(|i| Bytes::from(vec![i; 1000 + i as usize * 37])).collect();
    let writes = values.iter().map(|v| async move {
        for _ in 0..10 {
            store.set("cw:key", v.clone(), None).await.expect("set");
        }
    });
    futures::future::join_all(writes).await;
    let got = store.get("cw:key").await.expect("get").expect("present");
    assert!(values.contains(&got), "torn or foreign value of {} bytes", got.len());
}

/// Many concurrent readers all see the value.
pub async fn concurrent_readers(store: &dyn Store) {
    let value = Bytes::from(vec![42u8; 2048]);
    store.set("cr:key", value.clone(), None).await.expect("set");
    let reads = (0..64).map(|_| async { store.get("cr:key").await.expect("get") });
    for got in futures::future::join_all(reads).await {
        assert_eq!(got.as_ref(), Some(&value));
    }
}

/// The store has a non-empty name.
pub async fn name_is_set(store: &dyn Store) {
    assert!(!store.name().is_empty());
}

/// With [`Capabilities::conditional_write`], `set_if_absent` writes only where no live entry
/// is (an expired one counts as absent) and never replaces one; without it, it is refused with
/// [`ErrorKind::Usage`] and writes nothing.
pub async fn set_if_absent_only_when_absent(store: &dyn Store) {
    if !store.capabilities().conditional_write {
        let err = store.set_if_absent("sia:k", b("v"), None).await.expect_err("no capability");
        assert_eq!(err.kind(), ErrorKind::Usage);
        assert_eq!(store.get("sia:k").await.expect("get"), None);
        return;
    }
    assert!(store.set_if_absent("sia:k", b("first"), None).await.expect("set_if_absent"));
    assert!(!store.set_if_absent("sia:k", b("second"), None).await.expect("set_if_absent"));
    assert_eq!(store.get("sia:k").await.expect("get"), Some(b("first")));
    store.delete("sia:k").await.expect("delete");
    assert!(store.set_if_absent("sia:k", b("third"), None).await.expect("set_if_absent"));
    assert_eq!(store.get("sia:k").await.expect("get"), Some(b("third")));
    // An expired entry is absent.
    store.set("sia:old", b("old"), Some(Duration::from_millis(50))).await.expect("set");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while store.get("sia:old").await.expect("get").is_some() {
        assert!(std::time::Instant::now() < deadline, "entry never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(store.set_if_absent("sia:old", b("new"), None).await.expect("set_if_absent"));
    assert_eq!(store.get("sia:old").await.expect("get"), Some(b("new")));
    // Concurrent writers: exactly one wins.
    let wins = futures::future::join_all(
        (0..8).map(|i| store.set_if_absent("sia:race", Bytes::from(vec![i as u8]), None)),
    )
    .await
    .into_iter()
    .filter(|r| *r.as_ref().expect("set_if_absent"))
    .count();
    assert_eq!(wins, 1, "exactly one concurrent set_if_absent must win");
}

/// With [`Capabilities::scan`], `scan_prefix` pages through every key under a prefix and no
/// other; without it, it is refused with [`ErrorKind::Usage`].
pub async fn scan_prefix_lists_every_key(store: &dyn Store) {
    if !store.capabilities().scan {
        let err = store.scan_prefix("scan:", None, 10).await.expect_err("no capability");
        assert_eq!(err.kind(), ErrorKind::Usage);
        return;
    }
    for i in 0..57 {
        store.set(&format!("scan:in:{i:03}"), b("v"), None).await.expect("set");
    }
    store.set("scan:out:1", b("v"), None).await.expect("set");
    store.set("scan:i", b("v"), None).await.expect("set");
    let mut seen = std::collections::BTreeSet::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page: ScanPage =
            store.scan_prefix("scan:in:", cursor.as_deref(), 10).await.expect("scan_prefix");
        for key in page.keys {
            assert!(key.starts_with("scan:in:"), "{key} is outside the prefix");
            seen.insert(key);
        }
        pages += 1;
        assert!(pages < 1000, "scan never ends");
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen.len(), 57, "every key under the prefix is listed");
    let empty = store.scan_prefix("scan:none:", None, 10).await.expect("scan_prefix");
    assert!(empty.keys.is_empty());
}

/// `flush` succeeds and keeps what was written.
pub async fn flush_keeps_entries(store: &dyn Store) {
    store.set("flush:k", b("v"), None).await.expect("set");
    store.flush().await.expect("flush");
    assert_eq!(store.get("flush:k").await.expect("get"), Some(b("v")));
}

/// How a [`FaultyStore`] damages the values it reads.
///
/// # Examples
///
/// ```
/// let c = aurelis_cache_core::testkit::Corruption::Garbage;
/// assert_ne!(c, aurelis_cache_core::testkit::Corruption::Truncate);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Corruption {
    /// Replace the value with bytes that are not an envelope.
    Garbage,
    /// Cut the value in half.
    Truncate,
    /// Flip one bit in the middle.
    FlipBit,
}

/// Switches and counters of a [`FaultyStore`], shared so a test can flip them while the
/// store is in use.
#[derive(Debug, Default)]
pub struct FaultControl {
    fail_reads: AtomicBool,
    fail_writes: AtomicBool,
    delay_ms: AtomicU64,
    corruption: parking_corruption::Slot,
    gets: AtomicU64,
    sets: AtomicU64,
    deletes: AtomicU64,
}

mod parking_corruption {
    use super::Corruption;
    use std::sync::atomic::{AtomicU8, Ordering::SeqCst};

    #[derive(Debug, Default)]
    pub(super) struct Slot(AtomicU8);

    impl Slot {
        pub(super) fn set(&self, c: Option<Corruption>) {
            let v = match c {
                None => 0,
                Some(Corruption::Garbage) => 1,
                Some(Corruption::Truncate) => 2,
                Some(Corruption::FlipBit) => 3,
            };
            self.0.store(v, SeqCst);
        }

        pub(super) fn get(&self) -> Option<Corruption> {
            match self.0.load(SeqCst) {
                1 => Some(Corruption::Garbage),
                2 => Some(Corruption::Truncate),
                3 => Some(Corruption::FlipBit),
                _ => None,
            }
        }
    }
}

impl FaultControl {
    /// Makes reads (`get`, `get_many`) fail with a backend error, or not.
    pub fn fail_reads(&self, yes: bool) {
        self.fail_reads.store(yes, SeqCst);
    }

    /// Makes every write and deletion fail with a backend error, or not.
    pub fn fail_writes(&self, yes: bool) {
        self.fail_writes.store(yes, SeqCst);
    }

    /// Makes every operation fail, or none.
    pub fn fail_all(&self, yes: bool) {
        self.fail_reads(yes);
        self.fail_writes(yes);
    }

    /// Delays every operation by `delay` (zero for none).
    pub fn delay(&self, delay: Duration) {
        self.delay_ms.store(delay.as_millis() as u64, SeqCst);
    }

    /// Damages every value read, or stops doing so.
    pub fn corrupt(&self, how: Option<Corruption>) {
        self.corruption.set(how);
    }

    /// `get` and `get_many` calls seen (a `get_many` counts once).
    pub fn gets(&self) -> u64 {
        self.gets.load(SeqCst)
    }

    /// `set` and `set_many` calls seen.
    pub fn sets(&self) -> u64 {
        self.sets.load(SeqCst)
    }

    /// Deletions of any kind seen.
    pub fn deletes(&self) -> u64 {
        self.deletes.load(SeqCst)
    }
}

/// Wraps a store and, on demand, fails, slows down or returns damaged values, to test how the
/// tiered cache copes with a misbehaving tier. With no fault switched on it forwards every call.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use aurelis_cache_core::testkit::{FaultyStore, MemoryMapStore};
///
/// let faulty = FaultyStore::new(Arc::new(MemoryMapStore::new("inner")));
/// let control = faulty.control();
/// control.fail_all(true);
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// # rt.block_on(async {
/// use aurelis_cache_core::Store;
/// assert!(faulty.get("k").await.is_err());
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct FaultyStore {
    inner: Arc<dyn Store>,
    control: Arc<FaultControl>,
}

impl FaultyStore {
    /// Wraps `inner`, all faults off.
    pub fn new(inner: Arc<dyn Store>) -> Self {
        FaultyStore { inner, control: Arc::new(FaultControl::default()) }
    }

    /// The switches, to keep after the store is handed to a cache.
    pub fn control(&self) -> Arc<FaultControl> {
        self.control.clone()
    }

    async fn before(&self, write: bool) -> Result<()> {
        let delay = self.control.delay_ms.load(SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let fail = if write { &self.control.fail_writes } else { &self.control.fail_reads };
        if fail.load(SeqCst) {
            return Err(
                Error::new(ErrorKind::Backend, "injected fault").with_tier(Store::name(self))
            );
        }
        Ok(())
    }

    fn damage(&self, value: Option<Bytes>) -> Option<Bytes> {
        let value = value?;
        Some(match self.control.corruption.get() {
            None => value,
            Some(Corruption::Garbage) => {
                Bytes::from_static(b"\x00\xffnot an envelope at all\x13\x37")
            }
            Some(Corruption::Truncate) => value.slice(..value.len() / 2),
            Some(Corruption::FlipBit) => {
                let mut v = value.to_vec();
                if !v.is_empty() {
                    let mid = v.len() / 2;
                    v[mid] ^= 0x10;
                }
                Bytes::from(v)
            }
        })
    }
}

/// A store layer: every operation is counted, delayed and failed as switched, and reads are
/// damaged on demand; everything else is forwarded.
impl LayeredStore for FaultyStore {
    type Inner = dyn Store;

    fn inner(&self) -> &dyn Store {
        &*self.inner
    }

    fn around<'a, T: Send + 'a>(
        &'a self,
        op: Operation,
        call: BoxFuture<'a, Result<T>>,
    ) -> BoxFuture<'a, Result<T>> {
        let counter = match op {
            Operation::Get | Operation::GetMany => Some(&self.control.gets),
            Operation::Set | Operation::SetMany | Operation::SetIfAbsent => {
                Some(&self.control.sets)
            }
            Operation::Delete
            | Operation::DeletePrefix
            | Operation::DeletePattern
            | Operation::Clear => Some(&self.control.deletes),
            _ => None,
        };
        if let Some(counter) = counter {
            counter.fetch_add(1, SeqCst);
        }
        Box::pin(async move {
            self.before(op.is_write()).await?;
            call.await
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>> {
        let call = self.around(Operation::Get, self.inner.get(key));
        Box::pin(async move { Ok(self.damage(call.await?)) })
    }

    fn get_many<'a>(&'a self, keys: &'a [&'a str]) -> BoxFuture<'a, Result<Vec<Option<Bytes>>>> {
        let call = self.around(Operation::GetMany, self.inner.get_many(keys));
        Box::pin(async move { Ok(call.await?.into_iter().map(|v| self.damage(v)).collect()) })
    }

    /// `None`: the faults are injected on the byte path, so the cache must not go around
    /// it through the inner store's decoded values.
    fn as_value_store(&self) -> Option<&dyn crate::value::ValueStore> {
        None
    }
}

/// A minimal in-memory store on a `Mutex<BTreeMap>`, for tests of code above the `Store`
/// trait (it is the reference the conformance suite is checked against, not a product tier:
/// use `aurelis-cache-moka` for that).
///
/// # Examples
///
/// ```
/// let store = aurelis_cache_core::testkit::MemoryMapStore::new("reference");
/// # use aurelis_cache_core::Store;
/// assert_eq!(store.name(), "reference");
/// ```
#[derive(Debug)]
pub struct MemoryMapStore {
    name: String,
    map: std::sync::Mutex<std::collections::BTreeMap<String, (Bytes, Option<std::time::Instant>)>>,
}

impl MemoryMapStore {
    /// An empty store called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        MemoryMapStore { name: name.into(), map: Default::default() }
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<
        '_,
        std::collections::BTreeMap<String, (Bytes, Option<std::time::Instant>)>,
    > {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn live(entry: &(Bytes, Option<std::time::Instant>)) -> bool {
        entry.1.is_none_or(|at| std::time::Instant::now() < at)
    }
}

#[async_trait]
impl Store for MemoryMapStore {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
            .with_in_process(true)
            .with_ordered_scan(true)
            .with_conditional_write(true)
            .with_scan(true)
    }

    async fn set_if_absent(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<bool> {
        let mut map = self.lock();
        if map.get(key).is_some_and(Self::live) {
            return Ok(false);
        }
        let at = ttl.map(|t| std::time::Instant::now() + t);
        map.insert(key.to_owned(), (value, at));
        Ok(true)
    }

    async fn scan_prefix(
        &self,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<ScanPage> {
        use std::ops::Bound;
        let map = self.lock();
        let start = match cursor {
            Some(c) => Bound::Excluded(c.to_owned()),
            None => Bound::Included(prefix.to_owned()),
        };
        let mut keys = Vec::new();
        let mut more = false;
        for (k, e) in map.range((start, Bound::Unbounded)) {
            if !k.starts_with(prefix) {
                break;
            }
            if keys.len() >= limit.max(1) {
                more = true;
                break;
            }
            if Self::live(e) {
                keys.push(k.clone());
            }
        }
        let next = if more { keys.last().cloned() } else { None };
        Ok(ScanPage::new(keys, next))
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let map = self.lock();
        Ok(map.get(key).filter(|e| Self::live(e)).map(|e| e.0.clone()))
    }

    fn get_sync(&self, key: &str) -> Option<Result<Option<Bytes>>> {
        let map = self.lock();
        Some(Ok(map.get(key).filter(|e| Self::live(e)).map(|e| e.0.clone())))
    }

    async fn set(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<()> {
        let at = ttl.map(|t| std::time::Instant::now() + t);
        self.lock().insert(key.to_owned(), (value, at));
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        Ok(self.lock().remove(key).is_some_and(|e| Self::live(&e)))
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        let mut map = self.lock();
        let before = map.len();
        map.retain(|k, _| !k.starts_with(prefix));
        Ok((before - map.len()) as u64)
    }

    async fn delete_pattern(&self, pattern: &str) -> Result<u64> {
        let mut map = self.lock();
        let before = map.len();
        map.retain(|k, _| !crate::store::glob_match(pattern, k));
        Ok((before - map.len()) as u64)
    }

    async fn clear(&self) -> Result<()> {
        self.lock().clear();
        Ok(())
    }

    async fn len(&self) -> Result<u64> {
        Ok(self.lock().values().filter(|e| Self::live(e)).count() as u64)
    }

    async fn size_bytes(&self) -> Result<u64> {
        Ok(self.lock().iter().map(|(k, e)| (k.len() + e.0.len()) as u64).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn fixture() -> Fixture {
        Fixture::new(Arc::new(MemoryMapStore::new("reference")))
    }

    crate::conformance_tests!(fixture);
}
