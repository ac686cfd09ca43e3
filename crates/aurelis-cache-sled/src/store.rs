//! [`SledStore`], its builder and its [`Store`] implementation.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aurelis_cache_core::envelope::{coarse_now_ms, now_ms};
use aurelis_cache_core::store::literal_prefix;
use aurelis_cache_core::{
    glob_match, Capabilities, Error, ErrorKind, Result, ScanPage, Store, StoreCounters,
};
use bytes::Bytes;
use sled::IVec;
use tokio::task::coop::consume_budget;

use crate::config::SledConfig;
use crate::{error, layout};

/// The tier name used when none is set.
pub(crate) const DEFAULT_NAME: &str = "disk";
/// Time between background sweeps of expired entries, unless set.
pub(crate) const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// sled's background flush period, unless set.
pub(crate) const DEFAULT_FLUSH_EVERY_MS: Option<u64> = Some(500);

/// Tree of the write order, when a size cap is set: big-endian write sequence -> key.
const ORDER_TREE: &str = "__aurelis_cache_write_order";
/// Tree of each key's latest write sequence, when a size cap is set: key -> big-endian seq.
const SEQ_TREE: &str = "__aurelis_cache_write_seq";
/// Tree of the store's own metadata (see [`CleanClose`]).
const META_TREE: &str = "__aurelis_cache_meta";
/// Key of the [`CleanClose`] record in [`META_TREE`]: present only between a clean close and
/// the next open.
const CLEAN_KEY: &[u8] = b"clean_close";

/// What a clean close leaves behind so that the next open need not walk every entry: the
/// counters, and whether the write order was kept (the store was capped) up to the close.
///
/// Written last when the last handle closes, after every entry, then flushed; removed (and
/// the removal flushed) when the store opens, before anything else is written. So it is
/// present exactly when nothing changed since the counters were taken, and a crash at any
/// point leaves it absent, which makes the next open walk the entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct CleanClose {
    size: u64,
    count: u64,
    ordered: bool,
}

impl CleanClose {
    /// Format tag of the record, so that a different layout is ignored (and walked).
    const FORMAT: u8 = 1;
    const LEN: usize = 18;

    fn encode(self) -> [u8; Self::LEN] {
        let mut out = [0; Self::LEN];
        out[0] = Self::FORMAT;
        out[1] = u8::from(self.ordered);
        out[2..10].copy_from_slice(&self.size.to_le_bytes());
        out[10..18].copy_from_slice(&self.count.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<CleanClose> {
        let bytes: &[u8; Self::LEN] = bytes.try_into().ok()?;
        if bytes[0] != Self::FORMAT || bytes[1] > 1 {
            return None;
        }
        let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().unwrap_or([0; 8]));
        Some(CleanClose { ordered: bytes[1] == 1, size: u64_at(2), count: u64_at(10) })
    }
}

/// Subtracts `n` from `counter`, stopping at zero. The store's own bookkeeping never goes
/// below zero (an entry is counted before it is visible); this only guards against entries
/// written to the database by other means between runs, which the counters do not know.
fn sub(counter: &AtomicU64, n: u64) {
    let _ = counter.fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(n)));
}

/// How long `build` waits for a database whose file lock is still held. sled releases it a
/// little after the last handle is dropped, so a store reopened right after closing it in the
/// same process would otherwise fail now and then.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// Opens the database, waiting up to [`LOCK_WAIT`] for its file lock.
fn open_db(config: &sled::Config, name: &str, path: &Path) -> Result<sled::Db> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match config.open() {
            Ok(db) => return Ok(db),
            Err(e) if error::is_locked(&e) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(error::open(name, path, e)),
        }
    }
}

/// Why an entry is being removed, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cause {
    Expired,
    Corrupt,
}

/// Write-order bookkeeping for eviction under a size cap.
///
/// Every mutation of a capped store holds `lock`, so the entries and both trees change
/// together; reads never take it. The trees may still disagree after a crash, which
/// [`Inner::recover`] repairs at open.
struct WriteOrder {
    /// seq (u64 big-endian) -> key, oldest first.
    by_seq: sled::Tree,
    /// key -> its latest seq.
    seq_of: sled::Tree,
    next_seq: AtomicU64,
    lock: Mutex<()>,
}

impl WriteOrder {
    fn lock(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The state shared by a [`SledStore`], its sweeper and its blocking tasks. Dropping the last
/// reference closes the database cleanly (see [`Inner::close`]).
struct Inner {
    name: Arc<str>,
    path: PathBuf,
    db: sled::Db,
    /// Entries live in the default tree.
    entries: sled::Tree,
    /// The [`CleanClose`] record.
    meta: sled::Tree,
    max_bytes: Option<u64>,
    order: Option<WriteOrder>,
    /// Keys + stored values (header included) of every well-formed entry, expired or not.
    /// Corrupt entries are never counted: the store never writes one, and the walk at open
    /// removes those it finds.
    size: AtomicU64,
    /// Well-formed entries, expired or not (same rules as `size`).
    count: AtomicU64,
    evictions: AtomicU64,
    expirations: AtomicU64,
    /// Corrupt entries removed (by a read, the sweep or the walk at open).
    corrupt: AtomicU64,
    /// Whether opening walked every entry to measure them.
    walked: bool,
    /// Set by any sled error: the bookkeeping may be half-done, so the close must not claim
    /// the counters are right.
    failed: AtomicBool,
    /// Set once the clean-close record is written, so that it is written once.
    closed: AtomicBool,
}

impl Inner {
    fn backend(&self, op: &'static str) -> impl FnOnce(sled::Error) -> Error + '_ {
        move |e| {
            self.failed.store(true, Relaxed);
            error::backend(&self.name, op, e)
        }
    }

    /// Counts an entry of `weight` bytes about to become visible.
    fn count_in(&self, weight: u64) {
        self.size.fetch_add(weight, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    /// Uncounts `stored`, just removed or replaced under `key` (nothing for a corrupt entry,
    /// which was never counted).
    fn count_out(&self, key: &[u8], stored: &[u8]) {
        if layout::expires_at(stored).is_some() {
            sub(&self.size, layout::weight(key, stored));
            sub(&self.count, 1);
        }
    }

    fn lock(&self) -> Option<MutexGuard<'_, ()>> {
        self.order.as_ref().map(WriteOrder::lock)
    }

    fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        match self.entries.get(key).map_err(self.backend("get"))? {
            Some(stored) if self.is_live(key, &stored)? => Ok(Some(layout::value(stored))),
            _ => Ok(None),
        }
    }

    /// [`Inner::get`], calling `read` with the value in place instead of returning it.
    ///
    /// The entry is looked at where sled returned it (matched by reference, never moved): an
    /// `IVec` moved through `Option` and `Result` wrappers was copied at byte offsets that
    /// stalled the next load (store forwarding; about 8% of a facade disk hit's samples in
    /// `perf record`).
    fn get_with(&self, key: &[u8], read: &mut dyn FnMut(&[u8])) -> Result<bool> {
        let found = self.entries.get(key);
        let stored = match &found {
            Ok(Some(stored)) => stored,
            Ok(None) => return Ok(false),
            Err(_) => return Err(self.backend("get")(found.unwrap_err())),
        };
        if !self.is_live(key, stored)? {
            return Ok(false);
        }
        read(&stored[layout::HEADER_LEN..]);
        Ok(true)
    }

    /// Whether `stored`, just read under `key`, is live (an expired or corrupt one is removed).
    fn is_live(&self, key: &[u8], stored: &IVec) -> Result<bool> {
        match layout::expires_at(stored) {
            Some(0) => Ok(true),
            // The coarse clock: never ahead of the deadline's, at most a tick behind.
            Some(at) if !layout::is_expired(at, coarse_now_ms()) => Ok(true),
            Some(_) => {
                self.remove_if_unchanged(key, stored, Cause::Expired)?;
                Ok(false)
            }
            None => {
                tracing::warn!(
                    tier = %self.name,
                    key = %String::from_utf8_lossy(key),
                    len = stored.len(),
                    "corrupt entry (shorter than its 8-byte header) removed"
                );
                self.remove_if_unchanged(key, stored, Cause::Corrupt)?;
                Ok(false)
            }
        }
    }

    fn insert(&self, key: &[u8], stored: Vec<u8>) -> Result<()> {
        let weight = layout::weight(key, &stored);
        let _guard = self.lock();
        // Count the new entry before it is visible, so that a concurrent removal of it can
        // never take the running size or count below zero.
        self.count_in(weight);
        let old = match self.entries.insert(key, stored) {
            Ok(old) => old,
            Err(e) => {
                sub(&self.size, weight);
                sub(&self.count, 1);
                return Err(self.backend("insert")(e));
            }
        };
        if let Some(old) = &old {
            self.count_out(key, old);
        }
        self.record_write_order(key)
    }

    /// Stores `stored` under `key` only when no live entry is there (compare-and-swap, so a
    /// concurrent write is never replaced); returns whether it wrote.
    fn insert_if_absent(&self, key: &[u8], stored: Vec<u8>) -> Result<bool> {
        let weight = layout::weight(key, &stored);
        let _guard = self.lock();
        let stored = IVec::from(stored);
        loop {
            let current = self.entries.get(key).map_err(self.backend("get"))?;
            if current.as_ref().is_some_and(|c| layout::is_live(c, now_ms())) {
                return Ok(false);
            }
            self.count_in(weight);
            let swapped =
                match self.entries.compare_and_swap(key, current.as_ref(), Some(stored.clone())) {
                    Ok(swapped) => swapped,
                    Err(e) => {
                        sub(&self.size, weight);
                        sub(&self.count, 1);
                        return Err(self.backend("compare_and_swap")(e));
                    }
                };
            if swapped.is_err() {
                // Written or removed meanwhile: look again.
                sub(&self.size, weight);
                sub(&self.count, 1);
                continue;
            }
            if let Some(old) = &current {
                // Replaced an expired or a corrupt entry.
                self.count_out(key, old);
                if layout::expires_at(old).is_some() {
                    self.expirations.fetch_add(1, Relaxed);
                } else {
                    self.corrupt.fetch_add(1, Relaxed);
                }
            }
            self.record_write_order(key)?;
            return Ok(true);
        }
    }

    /// Moves `key` to the newest end of the write order and evicts over the cap (capped
    /// stores only; the caller holds the lock).
    fn record_write_order(&self, key: &[u8]) -> Result<()> {
        if let Some(order) = &self.order {
            let seq = order.next_seq.fetch_add(1, Relaxed).to_be_bytes();
            if let Some(old_seq) =
                order.seq_of.insert(key, &seq[..]).map_err(self.backend("insert"))?
            {
                order.by_seq.remove(old_seq).map_err(self.backend("remove"))?;
            }
            order.by_seq.insert(&seq[..], key).map_err(self.backend("insert"))?;
            self.evict_over_cap(order)?;
        }
        Ok(())
    }

    /// Up to `limit` live keys under `prefix` after `cursor` (or from the start).
    fn scan_page(&self, prefix: &[u8], cursor: Option<&[u8]>, limit: usize) -> Result<ScanPage> {
        use std::ops::Bound;
        let start = match cursor {
            Some(c) => Bound::Excluded(IVec::from(c)),
            None => Bound::Included(IVec::from(prefix)),
        };
        let now = now_ms();
        let mut keys = Vec::new();
        let mut last = None;
        for item in self.entries.range::<IVec, _>((start, Bound::Unbounded)) {
            let (key, stored) = item.map_err(self.backend("scan"))?;
            if !key.starts_with(prefix) {
                return Ok(ScanPage::new(keys, None));
            }
            if keys.len() >= limit.max(1) {
                return Ok(ScanPage::new(keys, last));
            }
            if let Ok(text) = std::str::from_utf8(&key) {
                last = Some(text.to_owned());
                if layout::is_live(&stored, now) {
                    keys.push(text.to_owned());
                }
            }
        }
        Ok(ScanPage::new(keys, None))
    }

    /// Evicts the oldest-written entries until the size is within the cap. The caller holds
    /// the write-order lock.
    fn evict_over_cap(&self, order: &WriteOrder) -> Result<()> {
        let Some(max) = self.max_bytes else { return Ok(()) };
        while self.size.load(Relaxed) > max {
            let Some((seq, key)) = order.by_seq.pop_min().map_err(self.backend("pop_min"))? else {
                tracing::warn!(
                    tier = %self.name,
                    size = self.size.load(Relaxed),
                    max_bytes = max,
                    "size above max_bytes but no entry left in the write order"
                );
                break;
            };
            // An older write of a key that was written again since: nothing to evict.
            if order.seq_of.get(&key).map_err(self.backend("get"))?.as_ref() != Some(&seq) {
                continue;
            }
            order.seq_of.remove(&key).map_err(self.backend("remove"))?;
            if let Some(old) = self.entries.remove(&key).map_err(self.backend("remove"))? {
                self.count_out(&key, &old);
                self.evictions.fetch_add(1, Relaxed);
            }
        }
        Ok(())
    }

    /// Removes `key`; returns the stored value removed, if any.
    fn remove(&self, key: &[u8]) -> Result<Option<IVec>> {
        let _guard = self.lock();
        let old = self.entries.remove(key).map_err(self.backend("remove"))?;
        if let Some(old) = &old {
            self.count_out(key, old);
            self.forget_order(key)?;
        }
        Ok(old)
    }

    /// Removes `key` only if it still holds `stored` (a concurrent fresh write wins), and
    /// counts it as an expiration or a corrupt entry after its `cause`. Returns whether it
    /// removed it.
    fn remove_if_unchanged(&self, key: &[u8], stored: &IVec, cause: Cause) -> Result<bool> {
        let _guard = self.lock();
        let swapped = self
            .entries
            .compare_and_swap(key, Some(stored), None::<&[u8]>)
            .map_err(self.backend("compare_and_swap"))?;
        if swapped.is_err() {
            return Ok(false);
        }
        self.count_out(key, stored);
        match cause {
            Cause::Expired => self.expirations.fetch_add(1, Relaxed),
            Cause::Corrupt => self.corrupt.fetch_add(1, Relaxed),
        };
        self.forget_order(key)?;
        Ok(true)
    }

    /// Drops `key` from the write order (the caller holds the lock).
    fn forget_order(&self, key: &[u8]) -> Result<()> {
        if let Some(order) = &self.order {
            if let Some(seq) = order.seq_of.remove(key).map_err(self.backend("remove"))? {
                order.by_seq.remove(seq).map_err(self.backend("remove"))?;
            }
        }
        Ok(())
    }

    /// Removes every live-or-not entry under `prefix` whose key `matches`; returns how many of
    /// them were live. Blocking: walks the range.
    fn remove_range(&self, prefix: &[u8], matches: impl Fn(&[u8]) -> bool) -> Result<u64> {
        let now = now_ms();
        let mut removed = 0;
        for key in self.entries.scan_prefix(prefix).keys() {
            let key = key.map_err(self.backend("scan"))?;
            if !matches(&key) {
                continue;
            }
            if self.remove(&key)?.is_some_and(|old| layout::is_live(&old, now)) {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Removes expired (and corrupt) entries; returns how many. Blocking: walks every entry.
    /// Stops early when `stop` is set.
    fn sweep(&self, stop: &AtomicBool) -> Result<u64> {
        let now = now_ms();
        let mut removed = 0;
        for item in self.entries.iter() {
            if stop.load(Relaxed) {
                break;
            }
            let (key, stored) = item.map_err(self.backend("scan"))?;
            let cause = match layout::expires_at(&stored) {
                Some(at) if layout::is_expired(at, now) => Cause::Expired,
                Some(_) => continue,
                None => {
                    tracing::warn!(
                        tier = %self.name,
                        key = %String::from_utf8_lossy(&key),
                        len = stored.len(),
                        "corrupt entry (shorter than its 8-byte header) removed by the sweep"
                    );
                    Cause::Corrupt
                }
            };
            if self.remove_if_unchanged(&key, &stored, cause)? {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Sets the counters after an open: from `clean`, the record of the previous run's clean
    /// close, when there is one that fits (it kept the write order if this store needs it);
    /// otherwise by walking every entry. Then evicts over the cap. Blocking.
    fn recover(&mut self, clean: Option<CleanClose>) -> Result<()> {
        match clean {
            Some(clean) if clean.ordered || self.order.is_none() => {
                self.size.store(clean.size, Relaxed);
                self.count.store(clean.count, Relaxed);
                if let Some(order) = &self.order {
                    let next_seq = match order.by_seq.last().map_err(self.backend("scan"))? {
                        Some((seq, _)) => seq_after(&seq),
                        None => 0,
                    };
                    order.next_seq.store(next_seq, Relaxed);
                }
            }
            _ => {
                self.walk()?;
                self.walked = true;
            }
        }
        if let Some(order) = &self.order {
            let _guard = order.lock();
            self.evict_over_cap(order)?;
        }
        // Opened: from now on the last handle records a clean close.
        self.closed.store(false, Relaxed);
        Ok(())
    }

    /// Measures every entry, removes corrupt ones and repairs the write order: the open after
    /// a crash (or of a database never closed by this version). Blocking; nothing else uses
    /// the store yet.
    fn walk(&self) -> Result<()> {
        let mut next_seq = 0u64;
        if let Some(order) = &self.order {
            // Forget write-order records that do not describe an entry's latest write.
            for item in order.by_seq.iter() {
                let (seq, key) = item.map_err(self.backend("scan"))?;
                let current = order.seq_of.get(&key).map_err(self.backend("get"))?;
                if seq.len() != 8 || current.as_ref() != Some(&seq) {
                    order.by_seq.remove(&seq).map_err(self.backend("remove"))?;
                }
            }
            for item in order.seq_of.iter() {
                let (key, seq) = item.map_err(self.backend("scan"))?;
                let back = order.by_seq.get(&seq).map_err(self.backend("get"))?;
                let present = self.entries.contains_key(&key).map_err(self.backend("get"))?;
                if !present || back.as_ref() != Some(&key) {
                    order.seq_of.remove(&key).map_err(self.backend("remove"))?;
                    if back.as_ref() == Some(&key) {
                        order.by_seq.remove(&seq).map_err(self.backend("remove"))?;
                    }
                }
            }
            if let Some((seq, _)) = order.by_seq.last().map_err(self.backend("scan"))? {
                next_seq = seq_after(&seq);
            }
        }
        let (mut size, mut count) = (0, 0);
        for item in self.entries.iter() {
            let (key, stored) = item.map_err(self.backend("scan"))?;
            if layout::expires_at(&stored).is_none() {
                tracing::warn!(
                    tier = %self.name,
                    key = %String::from_utf8_lossy(&key),
                    len = stored.len(),
                    "corrupt entry (shorter than its 8-byte header) removed at open"
                );
                self.entries.remove(&key).map_err(self.backend("remove"))?;
                self.forget_order(&key)?;
                self.corrupt.fetch_add(1, Relaxed);
                continue;
            }
            size += layout::weight(&key, &stored);
            count += 1;
            if let Some(order) = &self.order {
                // Entries written without a record (before a crash, or while uncapped) are
                // ordered after the recorded ones, in key order.
                if !order.seq_of.contains_key(&key).map_err(self.backend("get"))? {
                    let seq = next_seq.to_be_bytes();
                    next_seq += 1;
                    order.seq_of.insert(&key, &seq[..]).map_err(self.backend("insert"))?;
                    order.by_seq.insert(&seq[..], &key).map_err(self.backend("insert"))?;
                }
            }
        }
        self.size.store(size, Relaxed);
        self.count.store(count, Relaxed);
        if let Some(order) = &self.order {
            order.next_seq.store(next_seq, Relaxed);
        }
        Ok(())
    }

    /// Records a clean close (the counters, in [`META_TREE`]) and flushes, once; after a sled
    /// error it only flushes, so that the next open walks. Blocking. Called by the last
    /// handle, when nothing else can change the entries.
    fn close(&self) -> Result<()> {
        if self.closed.swap(true, Relaxed) {
            return Ok(());
        }
        if self.failed.load(Relaxed) {
            tracing::warn!(
                tier = %self.name,
                "a sled operation failed during this run: the next open measures every entry"
            );
        } else {
            let record = CleanClose {
                size: self.size.load(Relaxed),
                count: self.count.load(Relaxed),
                ordered: self.order.is_some(),
            };
            self.meta.insert(CLEAN_KEY, &record.encode()[..]).map_err(self.backend("insert"))?;
        }
        self.db.flush().map_err(self.backend("flush"))?;
        Ok(())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::warn!(tier = %self.name, error = %e, "closing the disk tier failed");
        }
    }
}

/// The write-order sequence after `seq` (8 bytes big-endian).
fn seq_after(seq: &[u8]) -> u64 {
    let seq: [u8; 8] = seq.try_into().unwrap_or([0; 8]);
    u64::from_be_bytes(seq).saturating_add(1)
}

/// Runs `work` on tokio's blocking pool when a runtime is present, inline otherwise.
async fn run_blocking<T, F>(name: &Arc<str>, op: &'static str, work: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle.spawn_blocking(work).await.map_err(|e| error::task(name, op, e))?,
        Err(_) => work(),
    }
}

/// The background thread removing expired entries; stopped and joined when the store drops.
struct Sweeper {
    stop: Arc<AtomicBool>,
    /// Dropping it wakes the thread up at once.
    wake: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Sweeper {
    fn start(inner: &Arc<Inner>, interval: Duration) -> Result<Sweeper> {
        let stop = Arc::new(AtomicBool::new(false));
        let (wake, sleep) = mpsc::channel::<()>();
        let weak: Weak<Inner> = Arc::downgrade(inner);
        let thread_stop = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name(format!("aurelis-sweep-{}", inner.name))
            .spawn(move || loop {
                match sleep.recv_timeout(interval) {
                    Err(RecvTimeoutError::Timeout) => {}
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                }
                let Some(inner) = weak.upgrade() else { return };
                match inner.sweep(&thread_stop) {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::debug!(tier = %inner.name, removed = n, "swept expired entries")
                    }
                    Err(e) => tracing::warn!(tier = %inner.name, error = %e, "sweep failed"),
                }
            })
            .map_err(|e| error::spawn(&inner.name, e))?;
        Ok(Sweeper { stop, wake: Some(wake), thread: Some(thread) })
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        self.wake.take();
        if let Some(thread) = self.thread.take() {
            // The thread only ever waits on `wake` or walks entries checking `stop`, so this
            // returns promptly; afterwards nothing but the store holds the database.
            let _ = thread.join();
        }
    }
}

/// The disk tier: a [sled](https://docs.rs/sled) database holding opaque byte values, each
/// with its own expiry, surviving restarts.
///
/// - Each value is stored as an 8-byte little-endian expiry (milliseconds since the Unix epoch,
///   0 = never) followed by the value bytes.
/// - Reads and writes (`get`, `set`, `set_if_absent`, `delete` and their batch forms) call
///   sled directly on the calling task, with a tokio cooperative-budget yield point before
///   each entry; scans (`clear`, prefix and pattern deletion, `scan_prefix`) and
///   [`SledStore::close`] run on tokio's blocking pool when a runtime is present. See
///   "Threads" below.
/// - Expired entries are removed when read and by a background sweep thread every
///   `sweep_interval`, both counted as expirations in [`Store::counters`].
/// - [`Store::len`] and [`Store::size_bytes`] read counters kept on every write, removal,
///   eviction and expiry (O(1)); they include expired entries not yet removed by a read or
///   the sweep. Corrupt entries (shorter than the header) are never counted: they are
///   removed when found and counted in [`SledStore::corrupt_entries`].
/// - With `max_bytes` set, the oldest-written entries are evicted after a write that takes
///   the size (keys + values + headers) past the cap, counted as evictions.
/// - Writes reach the disk every `flush_every_ms`, on [`SledStore::flush`], and when the store
///   is closed.
///
/// Dropping the store (or [`SledStore::close`]) stops its sweeper, records the counters in a
/// small metadata tree and flushes: the next open reads them back instead of walking every
/// entry. After a crash the record is missing and the next open walks the database (see
/// [`SledStoreBuilder::build`]). Writing to the database with other programs between runs
/// leaves the counters unaware of those entries.
///
/// # Threads
///
/// A sled read or write is mostly an in-memory operation (a few µs), but it can touch the
/// disk: a read of a page not in sled's cache, or a write that waits for sled's log buffer.
/// Moving single operations to `spawn_blocking` was measured and rejected (release build,
/// 2 cores, 100k values of ~140 bytes): a hot `get` takes 1.6-1.9 µs at the median inline
/// against 16-28 µs through the blocking pool, and 4 concurrent writers reach ~100-110k
/// `set`/s inline against ~30k/s; the rare slow calls (p99.9 0.3-7 ms, max ~13 ms, sled
/// waiting for its log) are as slow either way. A write handed to the blocking pool also
/// outlives its caller when the caller is cancelled (a time-out layer, a dropped request):
/// it lands later and can overtake a later `delete` of the same key, bringing back a deleted
/// value. Inline, an operation either completes before its future does or does not happen.
///
/// What did hurt was that these calls never yielded: 4 tasks writing in a loop starved a
/// 1 ms ticker on the same runtime for up to ~0.8 s. Each operation (and each entry of a
/// batch) now consumes tokio's cooperative budget first, so a busy task yields every 128 or
/// so operations (ticker lateness max ~13-17 ms in the same run). Opening (which may walk
/// the database) is blocking: the facade opens the disk tier on the blocking pool.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aurelis_cache_core::{Bytes, Store};
/// use aurelis_cache_sled::SledStore;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> aurelis_cache_core::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let store = SledStore::builder().path(dir.path().join("cache")).build()?;
/// store.set("answer", Bytes::from_static(b"42"), Some(Duration::from_secs(3600))).await?;
/// store.flush().await?;
/// drop(store);
///
/// let store = SledStore::builder().path(dir.path().join("cache")).build()?;
/// assert_eq!(store.get("answer").await?, Some(Bytes::from_static(b"42")));
/// # Ok(())
/// # }
/// ```
pub struct SledStore {
    inner: Arc<Inner>,
    // Declared after `inner` but dropped explicitly first in `Drop`.
    sweeper: Option<Sweeper>,
}

impl Drop for SledStore {
    fn drop(&mut self) {
        self.sweeper.take();
    }
}

impl fmt::Debug for SledStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SledStore")
            .field("name", &self.inner.name)
            .field("path", &self.inner.path)
            .field("max_bytes", &self.inner.max_bytes)
            .field("size_bytes", &self.inner.size.load(Relaxed))
            .field("entries", &self.inner.count.load(Relaxed))
            .field("sweeping", &self.sweeper.is_some())
            .finish_non_exhaustive()
    }
}

impl SledStore {
    /// A builder with the defaults: name `"disk"`, no size cap, a sweep every 60 s, sled
    /// flushing every 500 ms. A path must be set.
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_cache_core::Store;
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = aurelis_cache_sled::SledStore::builder().path(dir.path()).build()?;
    /// assert_eq!(store.name(), "disk");
    /// assert_eq!(store.path(), dir.path());
    /// # Ok::<(), aurelis_cache_core::Error>(())
    /// ```
    pub fn builder() -> SledStoreBuilder {
        SledStoreBuilder::default()
    }

    /// A store built from `config`.
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_cache_core::{ErrorKind, Store};
    /// use aurelis_cache_sled::{SledConfig, SledStore};
    ///
    /// let mut config = SledConfig::default();
    /// config.name = "cold".into();
    /// // `path` is required.
    /// assert_eq!(SledStore::from_config(&config).unwrap_err().kind(), ErrorKind::Config);
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// config.path = Some(dir.path().join("disk-cache"));
    /// config.max_bytes = Some(512 * 1024 * 1024);
    /// let store = SledStore::from_config(&config)?;
    /// assert_eq!(store.name(), "cold");
    /// assert!(dir.path().join("disk-cache").is_dir());
    /// # Ok::<(), aurelis_cache_core::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`SledStoreBuilder::build`].
    pub fn from_config(config: &SledConfig) -> Result<SledStore> {
        SledStoreBuilder::from_config(config).build()
    }

    /// Writes everything written so far to disk and waits for it (sled's `flush_async`): a
    /// durable point. Returns the number of bytes flushed.
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_cache_core::{Bytes, Store};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> aurelis_cache_core::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = aurelis_cache_sled::SledStore::builder()
    ///     .path(dir.path())
    ///     .flush_every_ms(None) // no background flushes: only `flush` writes to disk
    ///     .build()?;
    /// store.set("k", Bytes::from_static(b"v"), None).await?;
    /// assert!(store.flush().await? > 0); // "k" now survives a crash
    /// assert_eq!(store.get("k").await?, Some(Bytes::from_static(b"v")));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Backend`] when sled cannot write or sync.
    pub async fn flush(&self) -> Result<usize> {
        self.inner.db.flush_async().await.map_err(self.inner.backend("flush"))
    }

    /// Removes expired entries now instead of waiting for the background sweep; returns how
    /// many were removed. They count as expirations.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aurelis_cache_core::{Bytes, Store};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> aurelis_cache_core::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = aurelis_cache_sled::SledStore::builder().path(dir.path()).build()?;
    /// store.set("brief", Bytes::from_static(b"v"), Some(Duration::from_millis(1))).await?;
    /// tokio::time::sleep(Duration::from_millis(20)).await;
    /// assert_eq!(store.purge_expired().await?, 1);
    /// assert_eq!(store.counters().expirations, 1);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Backend`] when sled fails.
    pub async fn purge_expired(&self) -> Result<u64> {
        self.blocking("sweep", |inner| inner.sweep(&AtomicBool::new(false))).await
    }

    /// Corrupt entries (stored values shorter than the 8-byte expiry header) this store
    /// removed since it was opened: found by a read (which then misses), by the sweep, or by
    /// the walk at open. They are never counted by [`Store::len`] or [`Store::size_bytes`].
    ///
    /// The store never writes such an entry; they come from other programs writing to the
    /// database (or a damaged one), and are logged as they are removed.
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_cache_core::Store;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> aurelis_cache_core::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// sled::open(dir.path()).unwrap().insert("k", &b"bad"[..]).unwrap(); // 3 bytes, no header
    /// let store = aurelis_cache_sled::SledStore::builder().path(dir.path()).build()?;
    /// assert_eq!(store.corrupt_entries(), 1); // removed at open
    /// assert_eq!(store.get("k").await?, None);
    /// assert_eq!(store.len().await?, 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn corrupt_entries(&self) -> u64 {
        self.inner.corrupt.load(Relaxed)
    }

    /// Whether opening walked every entry to measure them: `true` after a crash (or on a
    /// database never closed by this version of the store), `false` when the previous run
    /// closed cleanly and its counters were read back instead.
    ///
    /// # Examples
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = aurelis_cache_sled::SledStore::builder().path(dir.path()).build()?;
    /// assert!(store.recovered_by_walk()); // a new database: nothing recorded yet
    /// drop(store); // a clean close records the counters
    ///
    /// let store = aurelis_cache_sled::SledStore::builder().path(dir.path()).build()?;
    /// assert!(!store.recovered_by_walk());
    /// # Ok::<(), aurelis_cache_core::Error>(())
    /// ```
    pub fn recovered_by_walk(&self) -> bool {
        self.inner.walked
    }

    /// Closes the store: stops the sweeper, records the counters so that the next open
    /// need not walk the entries, and flushes everything to disk, reporting errors that
    /// dropping the store can only log. Runs on tokio's blocking pool when a runtime is
    /// present.
    ///
    /// Dropping the store does the same. If an operation cancelled earlier is still running
    /// on the blocking pool, it holds the database, and the close happens when it finishes.
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_cache_core::{Bytes, Store};
    /// use aurelis_cache_sled::SledStore;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> aurelis_cache_core::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = SledStore::builder().path(dir.path()).build()?;
    /// store.set("k", Bytes::from_static(b"v"), None).await?;
    /// store.close().await?;
    ///
    /// let store = SledStore::builder().path(dir.path()).build()?;
    /// assert!(!store.recovered_by_walk());
    /// assert_eq!(store.len().await?, 1);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Backend`] when sled cannot write the record or flush.
    pub async fn close(self) -> Result<()> {
        let inner = Arc::clone(&self.inner);
        let name = Arc::clone(&self.inner.name);
        drop(self); // stops and joins the sweeper
        run_blocking(&name, "close", move || match Arc::try_unwrap(inner) {
            // The last handle: close now, so that errors reach the caller.
            Ok(inner) => inner.close(),
            // A detached blocking task still holds it: it closes when that task ends.
            Err(_) => Ok(()),
        })
        .await
    }

    /// The directory of the database.
    ///
    /// # Examples
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = aurelis_cache_sled::SledStore::builder().path(dir.path()).build()?;
    /// assert_eq!(store.path(), dir.path());
    /// # Ok::<(), aurelis_cache_core::Error>(())
    /// ```
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `work` on tokio's blocking pool when a runtime is present, inline otherwise.
    async fn blocking<T, F>(&self, op: &'static str, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        run_blocking(&self.inner.name, op, move || work(&inner)).await
    }

    fn check_weight(&self, key: &str, value: &Bytes) -> Result<()> {
        if let Some(max) = self.inner.max_bytes {
            let weight = (key.len() + layout::HEADER_LEN) as u64 + value.len() as u64;
            if weight > max {
                return Err(Error::new(
                    ErrorKind::ValueTooLarge,
                    format!(
                        "entry of {weight} bytes (key {} + header {} + value {}) does not fit \
                         in a disk tier of max_bytes = {max}",
                        key.len(),
                        layout::HEADER_LEN,
                        value.len()
                    ),
                )
                .with_tier(Arc::clone(&self.inner.name)));
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Store for SledStore {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
            .with_persistent(true)
            .with_ordered_scan(true)
            .with_conditional_write(true)
            .with_scan(true)
    }

    async fn set_if_absent(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<bool> {
        self.check_weight(key, &value)?;
        consume_budget().await;
        self.inner.insert_if_absent(key.as_bytes(), layout::encode(layout::expiry_for(ttl), &value))
    }

    async fn scan_prefix(
        &self,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<ScanPage> {
        let prefix = prefix.as_bytes().to_vec();
        let cursor = cursor.map(|c| c.as_bytes().to_vec());
        self.blocking("scan_prefix", move |inner| {
            inner.scan_page(&prefix, cursor.as_deref(), limit)
        })
        .await
    }

    async fn flush(&self) -> Result<()> {
        SledStore::flush(self).await.map(drop)
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        consume_budget().await;
        self.inner.get(key.as_bytes())
    }

    /// sled reads are synchronous: answered on the spot (the cache yields to the runtime's
    /// budget around it, as `get` does).
    fn get_sync(&self, key: &str) -> Option<Result<Option<Bytes>>> {
        Some(self.inner.get(key.as_bytes()))
    }

    /// The value is read where sled keeps it (no `Bytes` made around it).
    fn get_sync_with(&self, key: &str, read: &mut dyn FnMut(&[u8])) -> Option<Result<bool>> {
        Some(self.inner.get_with(key.as_bytes(), read))
    }

    async fn set(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<()> {
        self.check_weight(key, &value)?;
        consume_budget().await;
        self.inner.insert(key.as_bytes(), layout::encode(layout::expiry_for(ttl), &value))
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        consume_budget().await;
        let removed = self.inner.remove(key.as_bytes())?;
        Ok(removed.is_some_and(|old| layout::is_live(&old, now_ms())))
    }

    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>> {
        let mut values = Vec::with_capacity(keys.len());
        for key in keys {
            consume_budget().await;
            values.push(self.inner.get(key.as_bytes())?);
        }
        Ok(values)
    }

    async fn set_many(&self, entries: &[(&str, Bytes)], ttl: Option<Duration>) -> Result<()> {
        for (key, value) in entries {
            self.check_weight(key, value)?;
        }
        for (key, value) in entries {
            consume_budget().await;
            self.inner.insert(key.as_bytes(), layout::encode(layout::expiry_for(ttl), value))?;
        }
        Ok(())
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        let prefix = prefix.as_bytes().to_vec();
        self.blocking("delete_prefix", move |inner| inner.remove_range(&prefix, |_| true)).await
    }

    async fn delete_pattern(&self, pattern: &str) -> Result<u64> {
        let pattern = pattern.to_owned();
        self.blocking("delete_pattern", move |inner| {
            let prefix = literal_prefix(&pattern).as_bytes();
            inner.remove_range(prefix, |key| {
                std::str::from_utf8(key).is_ok_and(|key| glob_match(&pattern, key))
            })
        })
        .await
    }

    async fn clear(&self) -> Result<()> {
        self.blocking("clear", |inner| inner.remove_range(&[], |_| true).map(drop)).await
    }

    async fn len(&self) -> Result<u64> {
        Ok(self.inner.count.load(Relaxed))
    }

    async fn size_bytes(&self) -> Result<u64> {
        Ok(self.inner.size.load(Relaxed))
    }

    fn counters(&self) -> StoreCounters {
        StoreCounters::new(self.inner.evictions.load(Relaxed), self.inner.expirations.load(Relaxed))
    }
}

/// Builds a [`SledStore`]; [`SledConfig`] is its serde twin.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aurelis_cache_sled::SledStore;
///
/// let dir = tempfile::tempdir().unwrap();
/// let builder = SledStore::builder()
///     .name("disk")
///     .path(dir.path().join("cache"))
///     .max_bytes(4 * 1024 * 1024 * 1024)
///     .sweep_interval(Duration::from_secs(30))
///     .flush_every_ms(Some(1000))
///     .cache_capacity_bytes(256 * 1024 * 1024);
/// let store = builder.clone().build()?;
/// assert_eq!(store.path(), dir.path().join("cache"));
///
/// // `build` validates: a zero cap is refused.
/// let err = builder.max_bytes(0).build().unwrap_err();
/// assert_eq!(err.kind(), aurelis_cache_core::ErrorKind::Config);
/// # Ok::<(), aurelis_cache_core::Error>(())
/// ```
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct SledStoreBuilder {
    name: String,
    path: Option<PathBuf>,
    max_bytes: Option<u64>,
    sweep_interval: Duration,
    flush_every_ms: Option<u64>,
    cache_capacity_bytes: Option<u64>,
}

impl Default for SledStoreBuilder {
    fn default() -> Self {
        SledStoreBuilder::from_config(&SledConfig::default())
    }
}

impl SledStoreBuilder {
    /// A builder taking every setting from `config`.
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_cache_core::Store;
    /// use aurelis_cache_sled::{SledConfig, SledStoreBuilder};
    ///
    /// let mut config = SledConfig::default();
    /// config.name = "cold".into();
    /// let dir = tempfile::tempdir().unwrap();
    /// // Setters called afterwards override the config (here: the path it lacks).
    /// let store = SledStoreBuilder::from_config(&config).path(dir.path()).build()?;
    /// assert_eq!(store.name(), "cold");
    /// assert_eq!(store.path(), dir.path());
    /// # Ok::<(), aurelis_cache_core::Error>(())
    /// ```
    pub fn from_config(config: &SledConfig) -> Self {
        SledStoreBuilder {
            name: config.name.clone(),
            path: config.path.clone(),
            max_bytes: config.max_bytes,
            sweep_interval: Duration::from_secs(config.sweep_interval_secs),
            flush_every_ms: config.flush_every_ms.filter(|&ms| ms > 0),
            cache_capacity_bytes: config.cache_capacity_bytes,
        }
    }

    /// The tier's name in stats, logs and errors (default `"disk"`).
    ///
    /// # Examples
    ///
    /// ```
    /// # use aurelis_cache_core::Store;
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = aurelis_cache_sled::SledStore::builder().name("l3").path(dir.path()).build()?;
    /// assert_eq!(store.name(), "l3");
    /// # Ok::<(), aurelis_cache_core::Error>(())
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Directory of the database, created if missing (required).
    ///
    /// # Examples
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = aurelis_cache_sled::SledStore::builder().path(dir.path().join("db")).build()?;
    /// assert!(dir.path().join("db").is_dir());
    /// # Ok::<(), aurelis_cache_core::Error>(())
    /// ```
    pub fn path(mut self, path: impl Into<PathBuf>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// Caps the stored bytes (keys + values + an 8-byte header per entry): a write that goes
    /// past it evicts the oldest-written entries, and a single entry bigger than the cap is
    /// refused with [`ErrorKind::ValueTooLarge`]. No cap by default.
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_cache_core::{Bytes, ErrorKind, Store};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> aurelis_cache_core::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = aurelis_cache_sled::SledStore::builder()
    ///     .path(dir.path())
    ///     .max_bytes(1024)
    ///     .build()?;
    /// // Each entry weighs 1 (key) + 400 (value) + 8 (header) = 409 bytes.
    /// for key in ["a", "b", "c"] {
    ///     store.set(key, Bytes::from(vec![0; 400]), None).await?;
    /// }
    /// assert_eq!(store.get("a").await?, None); // the oldest write, evicted
    /// assert!(store.get("c").await?.is_some());
    /// assert_eq!(store.size_bytes().await?, 818);
    /// assert_eq!(store.counters().evictions, 1);
    ///
    /// let err = store.set("big", Bytes::from(vec![0; 2048]), None).await.unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::ValueTooLarge);
    /// # Ok(())
    /// # }
    /// ```
    pub fn max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = Some(max_bytes);
        self
    }

    /// Time between background sweeps of expired entries (default 60 s). [`Duration::ZERO`]
    /// turns the sweep off; expired entries are then removed only when read.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aurelis_cache_core::{Bytes, Store};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> aurelis_cache_core::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = aurelis_cache_sled::SledStore::builder()
    ///     .path(dir.path())
    ///     .sweep_interval(Duration::ZERO) // no sweeper
    ///     .build()?;
    /// store.set("brief", Bytes::from_static(b"v"), Some(Duration::from_millis(1))).await?;
    /// tokio::time::sleep(Duration::from_millis(20)).await;
    /// assert_eq!(store.len().await?, 1); // expired, but nothing removed it yet
    /// assert_eq!(store.get("brief").await?, None); // a read removes it
    /// assert_eq!(store.len().await?, 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn sweep_interval(mut self, interval: Duration) -> Self {
        self.sweep_interval = interval;
        self
    }

    /// Milliseconds between sled's background flushes to disk (default `Some(500)`); `None`
    /// (or `Some(0)`) turns them off, so only [`SledStore::flush`] and dropping the store
    /// write to disk.
    pub fn flush_every_ms(mut self, every_ms: Option<u64>) -> Self {
        self.flush_every_ms = every_ms.filter(|&ms| ms > 0);
        self
    }

    /// Size of sled's in-memory page cache in bytes (default: sled's own, 1 GiB).
    pub fn cache_capacity_bytes(mut self, bytes: u64) -> Self {
        self.cache_capacity_bytes = Some(bytes);
        self
    }

    /// Validates the settings, opens (or creates) the database, reads its counters, and
    /// starts the sweeper. Blocking (it reads the disk): call it outside the async workers
    /// (`spawn_blocking`) when the database may be big.
    ///
    /// After a clean close (the last handle dropped, or [`SledStore::close`]) the counters
    /// come from a small record the close wrote, so opening costs about what sled's own open
    /// costs. Otherwise (after a crash, a kill, or on a database last closed by an older
    /// version) it walks every entry once to measure them, removes corrupt ones and repairs
    /// the write order; [`SledStore::recovered_by_walk`] tells which happened.
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_cache_core::ErrorKind;
    /// use aurelis_cache_sled::SledStore;
    ///
    /// let err = SledStore::builder().build().unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Config); // no path
    /// ```
    ///
    /// # Errors
    ///
    /// - [`ErrorKind::Config`] when the name is empty, the path is missing, `max_bytes` or
    ///   `cache_capacity_bytes` is zero, or the path cannot hold a database (it is under a
    ///   regular file, not writable, ...); the message names the path.
    /// - [`ErrorKind::Backend`] when the database is locked by another store or process (after
    ///   waiting up to 2 s for the lock, which sled releases shortly after a store using the
    ///   same path is dropped), or sled fails to open or read it.
    pub fn build(self) -> Result<SledStore> {
        let name = self.name;
        if name.is_empty() {
            return Err(Error::config("the disk tier's name must not be empty"));
        }
        let Some(path) = self.path else {
            return Err(error::config(&name, "the disk tier needs a path: set `path`"));
        };
        if self.max_bytes == Some(0) {
            return Err(error::config(&name, "max_bytes must be at least 1 (or unset for no cap)"));
        }
        if self.cache_capacity_bytes == Some(0) {
            return Err(error::config(&name, "cache_capacity_bytes must be at least 1"));
        }

        let mut sled_config = sled::Config::new().path(&path).flush_every_ms(self.flush_every_ms);
        if let Some(bytes) = self.cache_capacity_bytes {
            sled_config = sled_config.cache_capacity(bytes);
        }
        let db = open_db(&sled_config, &name, &path)?;
        let name: Arc<str> = name.into();
        let backend = |op: &'static str| {
            let name = Arc::clone(&name);
            move |e| error::backend(&name, op, e)
        };

        // Take the clean-close record, and make its removal durable before anything else
        // changes: a crash from here on makes the next open walk.
        let meta = db.open_tree(META_TREE).map_err(backend("open_tree"))?;
        let record = meta.remove(CLEAN_KEY).map_err(backend("remove"))?;
        if record.is_some() {
            db.flush().map_err(backend("flush"))?;
        }
        let clean = record.as_deref().and_then(CleanClose::decode);

        let order = if self.max_bytes.is_some() {
            Some(WriteOrder {
                by_seq: db.open_tree(ORDER_TREE).map_err(backend("open_tree"))?,
                seq_of: db.open_tree(SEQ_TREE).map_err(backend("open_tree"))?,
                next_seq: AtomicU64::new(0),
                lock: Mutex::new(()),
            })
        } else {
            // Left over from a capped run: out of date as soon as we write uncapped.
            for tree in [ORDER_TREE, SEQ_TREE] {
                db.drop_tree(tree).map_err(backend("drop_tree"))?;
            }
            None
        };
        let entries: sled::Tree = (*db).clone();
        let mut inner = Inner {
            name,
            path,
            db,
            entries,
            meta,
            max_bytes: self.max_bytes,
            order,
            size: AtomicU64::new(0),
            count: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            expirations: AtomicU64::new(0),
            corrupt: AtomicU64::new(0),
            walked: false,
            failed: AtomicBool::new(false),
            // Nothing to record until `recover` succeeds.
            closed: AtomicBool::new(true),
        };
        inner.recover(clean)?;
        let inner = Arc::new(inner);
        let sweeper = if self.sweep_interval.is_zero() {
            None
        } else {
            Some(Sweeper::start(&inner, self.sweep_interval)?)
        };
        Ok(SledStore { inner, sweeper })
    }
}
