//! [`WriteBehind`]: the cache at once, the store later, in batches, without losing writes.
//!
//! One background task (the worker) takes batches from the queue and writes them to the data
//! store; writers only touch the journal, the queue and the cache. The queue is a map from
//! record to its latest write (so repeated writes coalesce) plus an order by first enqueue.
//! Every live write (queued, being written, waiting for a retry) keeps the sequence number of
//! the oldest write it stands for; `flush` waits until none at or below its own is left.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aurelis_cache_core::{Error, ErrorKind, Result};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::journal::Journal;
use super::{read_through, store_error, DataStore, KeyLocks, RecordKey};
use crate::{Cache, SetOptions};

/// A write waiting for the data store: a value, or the record's removal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write<V> {
    /// Store this value.
    Set(V),
    /// Remove the record.
    Delete,
}

/// What a write does when the queue is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OverflowPolicy {
    /// Wait until the worker has made room (backpressure). The default.
    #[default]
    Wait,
    /// Write this one record to the store at once, then to the cache, as a
    /// [`WriteThrough`](super::WriteThrough) would. A record that is being written by the
    /// worker right now still waits, so the store never sees its writes out of order.
    WriteThrough,
}

/// A write the data store refused `max_attempts` times in a row: taken out of the queue so it
/// blocks nothing, and kept for the user to read ([`WriteBehind::dead_letters`]) or handed
/// to the callback ([`WriteBehindBuilder::on_dead_letter`]).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DeadLetter<V> {
    /// The record.
    pub key: RecordKey,
    /// The write that failed.
    pub write: Write<V>,
    /// How many times the store refused it.
    pub attempts: u32,
    /// The store's last error.
    pub error: Error,
}

/// What [`WriteBehind::shutdown`] could not write before its deadline.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ShutdownReport<V> {
    /// The writes still queued, being written or waiting for a retry at the deadline (the
    /// latest write of each record). With a journal they stay in it and are written after the
    /// next start.
    pub unwritten: Vec<(RecordKey, Write<V>)>,
    /// How many writes went to the dead letters since the start.
    pub dead_letters: u64,
    /// Whether a journal keeps the unwritten writes.
    pub journaled: bool,
}

impl<V> ShutdownReport<V> {
    /// Whether every acknowledged write reached the store (or the dead letters).
    pub fn is_complete(&self) -> bool {
        self.unwritten.is_empty()
    }
}

/// Counters and gauges of a [`WriteBehind`] (cheap: one lock, no scan).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct WriteBehindStats {
    /// Records with a write queued (not yet taken by the worker).
    pub queued: usize,
    /// Records being written by the worker now.
    pub in_flight: usize,
    /// Records waiting for a retry after the store refused them.
    pub retrying: usize,
    /// Writers waiting for room in the full queue.
    pub waiting_writers: usize,
    /// Writes acknowledged (`set`/`delete` returned `Ok`), including overflow writes.
    pub acknowledged: u64,
    /// Writes that replaced a queued write of the same record (latest wins).
    pub coalesced: u64,
    /// Writes the store took from the worker.
    pub written: u64,
    /// Calls to the store by the worker (`set_many`, and `set`/`delete` per record).
    pub store_calls: u64,
    /// Store calls that failed.
    pub store_failures: u64,
    /// Writes put back for a retry.
    pub retries: u64,
    /// Writes sent to the dead letters.
    pub dead_letters: u64,
    /// Writes made directly to the store by [`OverflowPolicy::WriteThrough`].
    pub overflow_writes: u64,
    /// Writes found in the journal at start-up and queued again.
    pub replayed: u64,
}

type DeadLetterCallback<V> = Arc<dyn Fn(&DeadLetter<V>) + Send + Sync>;

#[derive(Clone, Debug)]
struct Config {
    batch_size: usize,
    flush_interval: Duration,
    capacity: usize,
    overflow: OverflowPolicy,
    max_attempts: u32,
    backoff_base: Duration,
    backoff_max: Duration,
    drop_deadline: Duration,
    dead_letter_capacity: usize,
    options: SetOptions,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            batch_size: 10,
            flush_interval: Duration::from_secs(30),
            capacity: 10_000,
            overflow: OverflowPolicy::Wait,
            max_attempts: 10,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            drop_deadline: Duration::from_secs(30),
            dead_letter_capacity: 10_000,
            options: SetOptions::default(),
        }
    }
}

/// Builds a [`WriteBehind`]; every setting has a default (those of the reference: batches of
/// 10, a 30 s flush interval).
///
/// # Examples
///
/// ```
/// # use std::{collections::HashMap, sync::Arc, time::Duration};
/// # use aurelis_cache::{Cache, Tier, MokaStore};
/// # use aurelis_cache::strategy::{DataStore, OverflowPolicy, RecordKey, WriteBehind};
/// # #[derive(Default)]
/// # struct Db(parking_lot::Mutex<HashMap<RecordKey, u64>>);
/// # #[async_trait::async_trait]
/// # impl DataStore for Db {
/// #     type Value = u64;
/// #     type Error = std::io::Error;
/// #     async fn get(&self, k: &RecordKey) -> Result<Option<u64>, Self::Error> { Ok(self.0.lock().get(k).copied()) }
/// #     async fn set(&self, k: &RecordKey, v: &u64) -> Result<(), Self::Error> { self.0.lock().insert(k.clone(), *v); Ok(()) }
/// #     async fn delete(&self, k: &RecordKey) -> Result<(), Self::Error> { self.0.lock().remove(k); Ok(()) }
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> aurelis_cache::Result<()> {
/// # let cache = Cache::builder().tier(Tier::new("memory", Arc::new(MokaStore::builder().build()?))).build()?;
/// let journal = tempfile::tempdir().unwrap();
/// let counters = WriteBehind::builder(cache, Db::default())
///     .batch_size(100)
///     .flush_interval(Duration::from_secs(1))
///     .capacity(50_000)
///     .overflow(OverflowPolicy::Wait)
///     .max_attempts(5)
///     .journal(journal.path())
///     .build()
///     .await?;
/// counters.set("visits", "home", 1).await?;
/// let report = counters.shutdown(Duration::from_secs(5)).await;
/// assert!(report.is_complete());
/// assert_eq!(counters.store().get(&RecordKey::new("visits", "home")).await.unwrap(), Some(1));
/// # Ok(())
/// # }
/// ```
pub struct WriteBehindBuilder<S: DataStore> {
    cache: Cache,
    store: S,
    config: Config,
    journal: Option<PathBuf>,
    on_dead_letter: Option<DeadLetterCallback<S::Value>>,
}

impl<S: DataStore> fmt::Debug for WriteBehindBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteBehindBuilder")
            .field("config", &self.config)
            .field("journal", &self.journal)
            .finish_non_exhaustive()
    }
}

impl<S: DataStore> WriteBehindBuilder<S> {
    /// A batch is written once this many records are queued (default 10).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.config.batch_size = n;
        self
    }

    /// A queued write waits at most this long before its batch is written, full or not
    /// (default 30 s).
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.config.flush_interval = interval;
        self
    }

    /// The most records the queue holds (queued, being written or waiting for a retry;
    /// default 10,000). A write to a record already queued replaces it and needs no room.
    pub fn capacity(mut self, n: usize) -> Self {
        self.config.capacity = n;
        self
    }

    /// What a write does when the queue is full (default [`OverflowPolicy::Wait`]).
    pub fn overflow(mut self, policy: OverflowPolicy) -> Self {
        self.config.overflow = policy;
        self
    }

    /// How many times the store may refuse one write before it goes to the dead letters
    /// (default 10).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.config.max_attempts = n;
        self
    }

    /// The retry delay after the first failure, doubled after each further one up to `max`,
    /// with jitter: the delay is between half and all of that (defaults 100 ms and 30 s).
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.config.backoff_base = base;
        self.config.backoff_max = max;
        self
    }

    /// How long the worker keeps draining the queue after the last handle is dropped without
    /// [`WriteBehind::shutdown`] (default 30 s, best effort: it needs the runtime to live on).
    pub fn drain_on_drop(mut self, deadline: Duration) -> Self {
        self.config.drop_deadline = deadline;
        self
    }

    /// The most dead letters kept for [`WriteBehind::dead_letters`] (default 10,000); older
    /// ones are dropped first (the callback sees every one).
    pub fn dead_letter_capacity(mut self, n: usize) -> Self {
        self.config.dead_letter_capacity = n;
        self
    }

    /// The options (TTL, tags, stale window) values are cached with.
    pub fn options(mut self, options: SetOptions) -> Self {
        self.config.options = options;
        self
    }

    /// Journals every write in a sled database at `path` (created if missing) before it is
    /// acknowledged, and replays what the journal holds when built. Off unless a path is
    /// given; give one whenever losing queued writes on a crash is not acceptable.
    pub fn journal(mut self, path: impl Into<PathBuf>) -> Self {
        self.journal = Some(path.into());
        self
    }

    /// Called for every write sent to the dead letters (from the worker task: keep it short).
    pub fn on_dead_letter(
        mut self,
        callback: impl Fn(&DeadLetter<S::Value>) + Send + Sync + 'static,
    ) -> Self {
        self.on_dead_letter = Some(Arc::new(callback));
        self
    }

    /// Opens the journal (if any), queues the writes it holds again (and puts them in the
    /// cache), and starts the worker on the current tokio runtime.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] for a zero batch size, capacity or attempt count;
    /// [`ErrorKind::Backend`] when the journal cannot be opened or read;
    /// [`ErrorKind::Codec`] for a journal record that does not decode.
    pub async fn build(self) -> Result<WriteBehind<S>> {
        let c = &self.config;
        if c.batch_size == 0 || c.capacity == 0 || c.max_attempts == 0 {
            return Err(Error::new(
                ErrorKind::Config,
                "write-behind: batch_size, capacity and max_attempts must be at least 1",
            ));
        }
        let journal = self.journal.as_deref().map(Journal::open).transpose()?;
        let mut state = State::default();
        let mut replay = Vec::new();
        if let Some(journal) = &journal {
            let now = Instant::now();
            for record in journal.records::<S::Value>()? {
                state.next_seq = state.next_seq.max(record.seq + 1);
                replay.push((record.key.clone(), record.write.clone()));
                state.insert(record.key, record.write, record.seq, Some(record.raw), now);
                state.stats.replayed += 1;
            }
        }
        // Sequence numbers start above every journaled one, so flush targets stay ordered.
        state.next_seq = state.next_seq.max(1);
        let shared = Arc::new(Shared {
            cache: self.cache,
            store: self.store,
            config: self.config,
            journal,
            on_dead_letter: self.on_dead_letter,
            locks: KeyLocks::new(),
            state: Mutex::new(state),
            work: Notify::new(),
            progress: Notify::new(),
            rng: AtomicU64::new(seed()),
        });
        // The cache may hold older values than the journal (a crash between the two).
        for (key, write) in replay {
            if let Err(e) = shared.cache_write(&key, &write).await {
                tracing::warn!(record = %key, error = %e, "write-behind replay: cache not updated");
            }
        }
        let worker = tokio::spawn(run(shared.clone()));
        Ok(WriteBehind { handle: Arc::new(Handle { shared, worker: Mutex::new(Some(worker)) }) })
    }
}

/// Write-behind over a [`DataStore`]: a write goes to the cache at once and to a bounded
/// queue; a background task writes the queue to the store in batches.
///
/// Guarantees (each one tested, see `docs/strategies.md`):
///
/// - **Coalescing**: repeated writes to one record while it is queued replace each other;
///   the store sees the latest.
/// - **Batches** are written when `batch_size` records are queued or the oldest has waited
///   `flush_interval`, with [`DataStore::set_many`].
/// - **Bounded**: at most `capacity` records are queued, being written or retried; a full
///   queue makes writers wait (or write through, see [`OverflowPolicy`]).
/// - **Retries**: a failed batch is retried record by record, with capped, jittered
///   exponential backoff; other records go on meanwhile. A write refused `max_attempts` times
///   goes to the [dead letters](WriteBehind::dead_letters) and blocks nothing.
/// - **`flush`** waits until every write acknowledged before it reached the store (or the
///   dead letters).
/// - **`shutdown`** drains within a deadline and reports what it could not write; dropping
///   the last handle drains in the background (best effort).
/// - **Journal** (optional): a write is journaled in sled and flushed to disk before `set`
///   returns; after a crash, building on the same journal writes every acknowledged write to
///   the store (at least once).
/// - **Read your writes**: [`WriteBehind::get`] sees queued writes before the cache and the
///   store.
///
/// Cloning is cheap; clones share the queue.
///
/// # Examples
///
/// ```
/// # use std::{collections::HashMap, sync::Arc, time::Duration};
/// # use aurelis_cache::{Cache, Tier, MokaStore};
/// # use aurelis_cache::strategy::{DataStore, RecordKey, WriteBehind};
/// # #[derive(Default)]
/// # struct Db(parking_lot::Mutex<HashMap<RecordKey, String>>);
/// # #[async_trait::async_trait]
/// # impl DataStore for Db {
/// #     type Value = String;
/// #     type Error = std::io::Error;
/// #     async fn get(&self, k: &RecordKey) -> Result<Option<String>, Self::Error> { Ok(self.0.lock().get(k).cloned()) }
/// #     async fn set(&self, k: &RecordKey, v: &String) -> Result<(), Self::Error> { self.0.lock().insert(k.clone(), v.clone()); Ok(()) }
/// #     async fn delete(&self, k: &RecordKey) -> Result<(), Self::Error> { self.0.lock().remove(k); Ok(()) }
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> aurelis_cache::Result<()> {
/// let cache = Cache::builder()
///     .tier(Tier::new("memory", Arc::new(MokaStore::builder().build()?)))
///     .build()?;
/// let profiles = WriteBehind::new(cache.clone(), Db::default());
///
/// profiles.set("profile", "ada", "draft".to_string()).await?;
/// profiles.set("profile", "ada", "final".to_string()).await?;
/// // The cache has it at once; the store once the batch is written.
/// assert_eq!(cache.get::<String>(("profile", "ada")).await?.as_deref(), Some("final"));
/// assert_eq!(profiles.get("profile", "ada").await?.as_deref(), Some("final"));
///
/// profiles.flush().await;
/// let stored = profiles.store().get(&RecordKey::new("profile", "ada")).await.unwrap();
/// assert_eq!(stored.as_deref(), Some("final"));
/// assert_eq!(profiles.stats().written, 1); // the two writes coalesced
/// # Ok(())
/// # }
/// ```
pub struct WriteBehind<S: DataStore> {
    handle: Arc<Handle<S>>,
}

impl<S: DataStore> Clone for WriteBehind<S> {
    fn clone(&self) -> Self {
        WriteBehind { handle: self.handle.clone() }
    }
}

impl<S: DataStore> fmt::Debug for WriteBehind<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = &self.handle.shared;
        f.debug_struct("WriteBehind")
            .field("config", &shared.config)
            .field("journaled", &shared.journal.is_some())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// The user's handles share this; its drop starts the best-effort drain.
struct Handle<S: DataStore> {
    shared: Arc<Shared<S>>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl<S: DataStore> Drop for Handle<S> {
    fn drop(&mut self) {
        let mut st = self.shared.state.lock();
        if !st.closed {
            st.closed = true;
            st.draining = true;
            st.drain_deadline = Some(Instant::now() + self.shared.config.drop_deadline);
        }
        drop(st);
        self.shared.work.notify_one();
    }
}

struct Shared<S: DataStore> {
    cache: Cache,
    store: S,
    config: Config,
    journal: Option<Journal>,
    on_dead_letter: Option<DeadLetterCallback<S::Value>>,
    locks: KeyLocks,
    state: Mutex<State<S::Value>>,
    /// Wakes the worker: a full batch, a flush, a shutdown.
    work: Notify,
    /// Writes resolved (written, dead, dropped): wakes waiting writers, flushes, shutdown.
    progress: Notify,
    rng: AtomicU64,
}

struct Entry<V> {
    write: Write<V>,
    /// The sequence number of the latest write.
    seq: u64,
    /// The sequence number of the oldest write this entry stands for.
    first_seq: u64,
    /// When the oldest write it stands for was queued.
    since: Instant,
    attempts: u32,
    /// The journal record of the latest write.
    raw: Option<sled::IVec>,
}

struct State<V> {
    /// Queued, not yet taken by the worker.
    pending: HashMap<RecordKey, Entry<V>>,
    /// `pending` by first sequence number.
    order: BTreeMap<u64, RecordKey>,
    /// Taken by the worker, being written.
    in_flight: HashMap<RecordKey, Entry<V>>,
    /// Refused by the store, waiting until the instant for another attempt. A record is never
    /// both here and in `pending` (a new write replaces the one waiting).
    retry: HashMap<RecordKey, (Entry<V>, Instant)>,
    /// The first sequence numbers of every live entry.
    outstanding: BTreeSet<u64>,
    /// Writers that were given room and have not queued their write yet.
    reserved: usize,
    waiting_writers: usize,
    next_seq: u64,
    /// Writes up to this sequence number are written at once (a flush waits for them).
    flush_target: u64,
    /// No new writes are accepted.
    closed: bool,
    /// Write everything at once.
    draining: bool,
    /// The worker stops at this instant (drop) or when nothing is left.
    drain_deadline: Option<Instant>,
    /// The worker is told to stop (shutdown).
    stop: bool,
    /// The worker has stopped.
    stopped: bool,
    dead: VecDeque<DeadLetter<V>>,
    stats: WriteBehindStats,
}

impl<V> Default for State<V> {
    fn default() -> Self {
        State {
            pending: HashMap::new(),
            order: BTreeMap::new(),
            in_flight: HashMap::new(),
            retry: HashMap::new(),
            outstanding: BTreeSet::new(),
            reserved: 0,
            waiting_writers: 0,
            next_seq: 1,
            flush_target: 0,
            closed: false,
            draining: false,
            drain_deadline: None,
            stop: false,
            stopped: false,
            dead: VecDeque::new(),
            stats: WriteBehindStats::default(),
        }
    }
}

enum Step<V> {
    Write(Vec<(RecordKey, Write<V>)>),
    Wait(Option<Instant>),
    Exit,
}

impl<V: Clone> State<V> {
    fn live(&self) -> usize {
        self.pending.len() + self.in_flight.len() + self.retry.len()
    }

    /// The latest write of `key` not yet acknowledged by the store.
    fn latest(&self, key: &RecordKey) -> Option<&Write<V>> {
        self.pending
            .get(key)
            .or_else(|| self.in_flight.get(key))
            .or_else(|| self.retry.get(key).map(|(e, _)| e))
            .map(|e| &e.write)
    }

    /// Queues a write (coalescing with a queued or retrying write of the same record).
    fn insert(
        &mut self,
        key: RecordKey,
        write: Write<V>,
        seq: u64,
        raw: Option<sled::IVec>,
        now: Instant,
    ) {
        if let Some(e) = self.pending.get_mut(&key) {
            e.write = write;
            e.seq = seq;
            e.raw = raw;
            self.stats.coalesced += 1;
            return;
        }
        let (first_seq, since) = match self.retry.remove(&key) {
            Some((old, _)) => {
                self.stats.coalesced += 1;
                (old.first_seq, old.since)
            }
            None => {
                self.outstanding.insert(seq);
                (seq, now)
            }
        };
        self.order.insert(first_seq, key.clone());
        self.pending.insert(key, Entry { write, seq, first_seq, since, attempts: 0, raw });
    }

    fn next_step(&mut self, now: Instant, config: &Config) -> Step<V> {
        if self.stop || self.drain_deadline.is_some_and(|d| now >= d) {
            return Step::Exit;
        }
        if self.drain_deadline.is_some() && self.live() == 0 && self.reserved == 0 {
            return Step::Exit;
        }
        let mut batch = Vec::new();
        let due: Vec<RecordKey> = self
            .retry
            .iter()
            .filter(|(_, (_, at))| *at <= now)
            .map(|(k, _)| k.clone())
            .take(config.batch_size)
            .collect();
        for key in due {
            if let Some((entry, _)) = self.retry.remove(&key) {
                batch.push((key.clone(), entry.write.clone()));
                self.in_flight.insert(key, entry);
            }
        }
        let front = self.order.first_key_value().map(|(seq, key)| (*seq, key.clone()));
        if let Some((first_seq, key)) = front {
            let oldest = self.pending[&key].since;
            let take = !batch.is_empty()
                || self.draining
                || first_seq <= self.flush_target
                || self.pending.len() >= config.batch_size
                || oldest + config.flush_interval <= now;
            while take && batch.len() < config.batch_size {
                let Some((_, key)) = self.order.pop_first() else { break };
                let entry = self.pending.remove(&key).expect("ordered keys are queued");
                batch.push((key.clone(), entry.write.clone()));
                self.in_flight.insert(key, entry);
            }
        }
        if !batch.is_empty() {
            return Step::Write(batch);
        }
        let next_batch = self
            .order
            .first_key_value()
            .map(|(_, key)| self.pending[key].since + config.flush_interval);
        let next_retry = self.retry.values().map(|(_, at)| *at).min();
        let wake = [next_batch, next_retry, self.drain_deadline].into_iter().flatten().min();
        Step::Wait(wake)
    }

    fn snapshot(&self) -> WriteBehindStats {
        WriteBehindStats {
            queued: self.pending.len(),
            in_flight: self.in_flight.len(),
            retrying: self.retry.len(),
            waiting_writers: self.waiting_writers,
            ..self.stats
        }
    }
}

/// A seed for the backoff jitter (not for anything secret).
fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    (nanos ^ (std::process::id() as u64).rotate_left(32)) | 1
}

impl<S: DataStore> Shared<S> {
    /// xorshift64: jitter only.
    fn random(&self) -> u64 {
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.store(x, Ordering::Relaxed);
        x
    }

    /// The delay before attempt `attempts + 1`: capped exponential, between half and all of it.
    fn backoff(&self, attempts: u32) -> Duration {
        let base = self.config.backoff_base.as_nanos() as u64;
        let cap = self.config.backoff_max.as_nanos() as u64;
        let full = base.saturating_mul(1u64 << attempts.saturating_sub(1).min(32)).min(cap);
        let half = full / 2;
        Duration::from_nanos(half + self.random() % (full - half + 1))
    }

    async fn cache_write(&self, key: &RecordKey, write: &Write<S::Value>) -> Result<()> {
        let cache_key = key.cache_key(&self.cache)?;
        match write {
            Write::Set(v) => self.cache.set_with(&cache_key, v, &self.config.options).await,
            Write::Delete => self.cache.delete(&cache_key).await.map(drop),
        }
    }

    async fn store_write(&self, key: &RecordKey, write: &Write<S::Value>) -> Result<()> {
        match write {
            Write::Set(v) => self.store.set(key, v).await.map_err(|e| store_error("set", e)),
            Write::Delete => self.store.delete(key).await.map_err(|e| store_error("delete", e)),
        }
    }

    /// The writer's side: room, journal, cache, queue.
    async fn enqueue(&self, key: RecordKey, write: Write<S::Value>) -> Result<()> {
        key.cache_key(&self.cache)?;
        let mut raw = match &self.journal {
            Some(_) => Some(Journal::encode(0, &write)?),
            None => None,
        };
        let _guard = self.locks.lock(&key).await;
        let seq = loop {
            let notified = self.progress.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.state.lock();
                if st.closed {
                    return Err(Error::new(ErrorKind::Usage, "write-behind is shut down"));
                }
                let coalesces = st.pending.contains_key(&key) || st.retry.contains_key(&key);
                if coalesces || st.live() + st.reserved < self.config.capacity {
                    st.reserved += 1;
                    let seq = st.next_seq;
                    st.next_seq += 1;
                    break Some(seq);
                }
                if self.config.overflow == OverflowPolicy::WriteThrough
                    && !st.in_flight.contains_key(&key)
                {
                    break None;
                }
                st.waiting_writers += 1;
            }
            let _waiting = OnDrop(|| self.state.lock().waiting_writers -= 1);
            notified.await;
        };
        let Some(seq) = seq else {
            // Overflow: this record has no live write, so nothing can overtake this one.
            self.store_write(&key, &write).await?;
            if let Err(e) = self.cache_write(&key, &write).await {
                tracing::warn!(record = %key, error = %e, "write-behind overflow: cache not updated");
            }
            let mut st = self.state.lock();
            st.stats.overflow_writes += 1;
            st.stats.acknowledged += 1;
            return Ok(());
        };
        let _reserved = OnDrop(|| {
            self.state.lock().reserved -= 1;
            self.progress.notify_waiters();
        });
        let raw = match (&self.journal, raw.as_mut()) {
            (Some(journal), Some(raw)) => {
                Journal::set_seq(raw, seq);
                Some(journal.append(&key, raw).await?)
            }
            _ => None,
        };
        // The journal (when there is one) holds the write: it is acknowledged. The cache
        // first, so a reader never finds the queue emptied before the cache has the value.
        if let Err(e) = self.cache_write(&key, &write).await {
            tracing::warn!(record = %key, error = %e, "write-behind: queued, but the cache was not updated");
            if let Ok(cache_key) = key.cache_key(&self.cache) {
                self.cache.delete(&cache_key).await.ok();
            }
        }
        let wake = {
            let mut st = self.state.lock();
            st.insert(key, write, seq, raw, Instant::now());
            st.stats.acknowledged += 1;
            st.pending.len() >= self.config.batch_size || st.draining
        };
        if wake {
            self.work.notify_one();
        }
        Ok(())
    }

    /// The worker's side: one batch to the store, then each record resolved.
    async fn write_batch(&self, batch: Vec<(RecordKey, Write<S::Value>)>) {
        let mut calls = 0u64;
        let mut failures = 0u64;
        let mut results: Vec<(RecordKey, Result<()>)> = Vec::with_capacity(batch.len());
        let (sets, deletes): (Vec<_>, Vec<_>) =
            batch.into_iter().partition(|(_, w)| matches!(w, Write::Set(_)));
        let sets: Vec<(RecordKey, S::Value)> = sets
            .into_iter()
            .filter_map(|(k, w)| match w {
                Write::Set(v) => Some((k, v)),
                Write::Delete => None,
            })
            .collect();
        if !sets.is_empty() {
            calls += 1;
            match guarded("set_many", self.store.set_many(&sets)).await {
                Ok(()) => results.extend(sets.into_iter().map(|(k, _)| (k, Ok(())))),
                Err(e) if sets.len() == 1 => {
                    failures += 1;
                    let (k, _) = sets.into_iter().next().expect("one entry");
                    results.push((k, Err(e)));
                }
                Err(e) => {
                    failures += 1;
                    tracing::debug!(error = %e, "write-behind: batch failed, writing its records one by one");
                    for (k, v) in sets {
                        calls += 1;
                        let r = guarded("set", self.store.set(&k, &v)).await;
                        failures += u64::from(r.is_err());
                        results.push((k, r));
                    }
                }
            }
        }
        for (k, _) in deletes {
            calls += 1;
            let r = guarded("delete", self.store.delete(&k)).await;
            failures += u64::from(r.is_err());
            results.push((k, r));
        }
        self.resolve(results, calls, failures).await;
    }

    async fn resolve(&self, results: Vec<(RecordKey, Result<()>)>, calls: u64, failures: u64) {
        let now = Instant::now();
        let mut dead_now = Vec::new();
        let mut removals = Vec::new();
        {
            let mut st = self.state.lock();
            st.stats.store_calls += calls;
            st.stats.store_failures += failures;
            for (key, result) in results {
                let Some(mut entry) = st.in_flight.remove(&key) else { continue };
                match result {
                    Ok(()) => {
                        st.outstanding.remove(&entry.first_seq);
                        st.stats.written += 1;
                        if let Some(raw) = entry.raw {
                            removals.push((key, raw));
                        }
                    }
                    Err(error) => {
                        entry.attempts += 1;
                        if let Some(newer) = st.pending.get(&key) {
                            // A newer write replaces this one; it inherits its age.
                            let (newer_first, newer_since) = (newer.first_seq, newer.since);
                            if entry.first_seq < newer_first {
                                st.outstanding.remove(&newer_first);
                                st.order.remove(&newer_first);
                                st.order.insert(entry.first_seq, key.clone());
                                let newer = st.pending.get_mut(&key).expect("just found");
                                newer.first_seq = entry.first_seq;
                                newer.since = entry.since.min(newer_since);
                            } else {
                                st.outstanding.remove(&entry.first_seq);
                            }
                        } else if entry.attempts >= self.config.max_attempts {
                            st.outstanding.remove(&entry.first_seq);
                            st.stats.dead_letters += 1;
                            tracing::warn!(record = %key, attempts = entry.attempts, error = %error, "write-behind: dead letter");
                            if let Some(raw) = entry.raw.take() {
                                removals.push((key.clone(), raw));
                            }
                            let letter = DeadLetter {
                                key,
                                write: entry.write,
                                attempts: entry.attempts,
                                error,
                            };
                            if self.config.dead_letter_capacity > 0 {
                                if st.dead.len() >= self.config.dead_letter_capacity {
                                    st.dead.pop_front();
                                }
                                st.dead.push_back(letter.clone());
                            }
                            dead_now.push(letter);
                        } else {
                            st.stats.retries += 1;
                            let at = now + self.backoff(entry.attempts);
                            st.retry.insert(key, (entry, at));
                        }
                    }
                }
            }
            // Inside the lock: once a record has no live write, it has no journal entry
            // either, so an overflow write straight to the store cannot be followed by the
            // replay of an older entry after a crash.
            if let Some(journal) = &self.journal {
                for (key, raw) in &removals {
                    journal.remove(key, raw);
                }
            }
        }
        // Before waking flushes: once `flush` returns, the callback has seen its dead letters.
        if let Some(callback) = &self.on_dead_letter {
            for letter in &dead_now {
                callback(letter);
            }
        }
        self.progress.notify_waiters();
    }
}

/// A store call whose error, or panic, becomes the one error type: a panicking store counts
/// as a failed attempt instead of killing the worker (and hanging every `flush`).
async fn guarded<E: Into<Box<dyn std::error::Error + Send + Sync>>>(
    op: &str,
    call: impl std::future::Future<Output = std::result::Result<(), E>>,
) -> Result<()> {
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(call).catch_unwind().await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(store_error(op, e)),
        Err(_) => Err(Error::new(ErrorKind::Backend, format!("data store `{op}` panicked"))
            .with_tier("data store")),
    }
}

/// Runs a closure when dropped (also when the future holding it is cancelled).
struct OnDrop<F: FnMut()>(F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}

/// The worker: batches to the store until told to stop.
async fn run<S: DataStore>(shared: Arc<Shared<S>>) {
    loop {
        let notified = shared.work.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let step = shared.state.lock().next_step(Instant::now(), &shared.config);
        match step {
            Step::Write(batch) => shared.write_batch(batch).await,
            Step::Wait(Some(at)) => {
                tokio::select! {
                    _ = &mut notified => {}
                    _ = tokio::time::sleep_until(at) => {}
                }
            }
            Step::Wait(None) => notified.await,
            Step::Exit => break,
        }
    }
    let mut st = shared.state.lock();
    st.stopped = true;
    if !st.stop && st.live() > 0 {
        // Dropped without `shutdown`, and the drain deadline passed: nobody to report to.
        tracing::warn!(
            unwritten = st.live(),
            journaled = shared.journal.is_some(),
            "write-behind dropped: drain deadline passed with writes not in the store"
        );
    }
    drop(st);
    shared.progress.notify_waiters();
}

impl<S: DataStore> WriteBehind<S> {
    /// Write-behind over `store` with the default settings and no journal; starts the worker
    /// on the current tokio runtime (so it must be called inside one).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn new(cache: Cache, store: S) -> Self {
        let shared = Arc::new(Shared {
            cache,
            store,
            config: Config::default(),
            journal: None,
            on_dead_letter: None,
            locks: KeyLocks::new(),
            state: Mutex::new(State::default()),
            work: Notify::new(),
            progress: Notify::new(),
            rng: AtomicU64::new(seed()),
        });
        let worker = tokio::spawn(run(shared.clone()));
        WriteBehind { handle: Arc::new(Handle { shared, worker: Mutex::new(Some(worker)) }) }
    }

    /// A builder for the settings and the journal.
    pub fn builder(cache: Cache, store: S) -> WriteBehindBuilder<S> {
        WriteBehindBuilder {
            cache,
            store,
            config: Config::default(),
            journal: None,
            on_dead_letter: None,
        }
    }

    fn shared(&self) -> &Shared<S> {
        &self.handle.shared
    }

    /// The data store.
    pub fn store(&self) -> &S {
        &self.shared().store
    }

    /// The cache.
    pub fn cache(&self) -> &Cache {
        &self.shared().cache
    }

    /// Writes `value` to the cache and queues it for the store. Returns once the write is
    /// acknowledged: queued (after waiting for room when the queue is full), journaled and
    /// flushed to disk when there is a journal.
    ///
    /// # Examples
    ///
    /// See [`WriteBehind`].
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidKey`] for a bad key; [`ErrorKind::Usage`] after
    /// [`WriteBehind::shutdown`]; [`ErrorKind::Codec`] when the journal cannot encode the
    /// value; [`ErrorKind::Backend`] when the journal cannot be written (or, under
    /// [`OverflowPolicy::WriteThrough`], the store refuses the overflow write). A write that
    /// returned an error was not acknowledged. A cache failure is not an error (the write is
    /// queued; the cached copy is dropped and reads find the queued write).
    pub async fn set(&self, category: &str, identifier: &str, value: S::Value) -> Result<()> {
        self.shared().enqueue(RecordKey::new(category, identifier), Write::Set(value)).await
    }

    /// Like [`WriteBehind::set`], for a [`RecordKey`].
    ///
    /// # Errors
    ///
    /// As [`WriteBehind::set`].
    pub async fn set_record(&self, key: RecordKey, value: S::Value) -> Result<()> {
        self.shared().enqueue(key, Write::Set(value)).await
    }

    /// Removes the record from the cache and queues its removal from the store (a write of
    /// "absent": it coalesces with the record's other writes).
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::{collections::HashMap, sync::Arc};
    /// # use aurelis_cache::{Cache, Tier, MokaStore};
    /// # use aurelis_cache::strategy::{DataStore, RecordKey, WriteBehind};
    /// # #[derive(Default)]
    /// # struct Db(parking_lot::Mutex<HashMap<RecordKey, u8>>);
    /// # #[async_trait::async_trait]
    /// # impl DataStore for Db {
    /// #     type Value = u8;
    /// #     type Error = std::io::Error;
    /// #     async fn get(&self, k: &RecordKey) -> Result<Option<u8>, Self::Error> { Ok(self.0.lock().get(k).copied()) }
    /// #     async fn set(&self, k: &RecordKey, v: &u8) -> Result<(), Self::Error> { self.0.lock().insert(k.clone(), *v); Ok(()) }
    /// #     async fn delete(&self, k: &RecordKey) -> Result<(), Self::Error> { self.0.lock().remove(k); Ok(()) }
    /// # }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// # let cache = Cache::builder().tier(Tier::new("memory", Arc::new(MokaStore::builder().build()?))).build()?;
    /// let flags = WriteBehind::new(cache.clone(), Db::default());
    /// flags.set("flag", "beta", 1).await?;
    /// flags.delete("flag", "beta").await?;
    /// assert_eq!(flags.get("flag", "beta").await?, None);
    /// flags.flush().await;
    /// assert_eq!(flags.store().get(&RecordKey::new("flag", "beta")).await.unwrap(), None);
    /// # Ok::<(), aurelis_cache::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`WriteBehind::set`].
    pub async fn delete(&self, category: &str, identifier: &str) -> Result<()> {
        self.shared().enqueue(RecordKey::new(category, identifier), Write::Delete).await
    }

    /// Like [`WriteBehind::delete`], for a [`RecordKey`].
    ///
    /// # Errors
    ///
    /// As [`WriteBehind::set`].
    pub async fn delete_record(&self, key: RecordKey) -> Result<()> {
        self.shared().enqueue(key, Write::Delete).await
    }

    /// The record: its latest queued write if it has one, else from the cache, else from the
    /// store (then cached; concurrent misses share one store call).
    ///
    /// # Examples
    ///
    /// See [`WriteBehind`].
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidKey`] for a bad key; [`ErrorKind::Loader`] with the store's error
    /// as source when the store fails.
    pub async fn get(&self, category: &str, identifier: &str) -> Result<Option<S::Value>> {
        self.get_record(&RecordKey::new(category, identifier)).await
    }

    /// Like [`WriteBehind::get`], for a [`RecordKey`].
    ///
    /// # Errors
    ///
    /// As [`WriteBehind::get`].
    pub async fn get_record(&self, key: &RecordKey) -> Result<Option<S::Value>> {
        let shared = self.shared();
        let queued = |shared: &Shared<S>| {
            shared.state.lock().latest(key).map(|write| match write {
                Write::Set(v) => Some(v.clone()),
                Write::Delete => None,
            })
        };
        if let Some(found) = queued(shared) {
            return Ok(found);
        }
        // Under the record's lock, as writes (see `WriteThrough::get_record`).
        let _guard = shared.locks.lock(key).await;
        if let Some(found) = queued(shared) {
            return Ok(found);
        }
        read_through(&shared.cache, &shared.store, key, &shared.config.options).await
    }

    /// Waits until every write acknowledged before this call reached the store or the dead
    /// letters (retries included: a failing store makes it wait up to `max_attempts`
    /// backoffs). Queued writes are written at once, without waiting for the interval.
    /// Returns at once after [`WriteBehind::shutdown`].
    ///
    /// # Examples
    ///
    /// See [`WriteBehind`].
    pub async fn flush(&self) {
        let shared = self.shared();
        let target = {
            let mut st = shared.state.lock();
            let target = st.next_seq - 1;
            st.flush_target = st.flush_target.max(target);
            target
        };
        shared.work.notify_one();
        loop {
            let notified = shared.progress.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let st = shared.state.lock();
                if st.stopped || st.outstanding.first().is_none_or(|first| *first > target) {
                    return;
                }
            }
            notified.await;
        }
    }

    /// Stops accepting writes, writes what is queued (retries included) for at most
    /// `deadline`, stops the worker and reports what it could not write. With a journal, the
    /// unwritten writes stay journaled and are written after the next start.
    ///
    /// # Examples
    ///
    /// See [`WriteBehindBuilder`].
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport<S::Value> {
        let shared = self.shared();
        let until = Instant::now() + deadline;
        {
            let mut st = shared.state.lock();
            st.closed = true;
            st.draining = true;
        }
        shared.work.notify_one();
        loop {
            let notified = shared.progress.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let st = shared.state.lock();
                if st.stopped || (st.live() == 0 && st.reserved == 0) {
                    break;
                }
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(until) => break,
            }
        }
        shared.state.lock().stop = true;
        shared.work.notify_one();
        let worker = self.handle.worker.lock().take();
        if let Some(mut worker) = worker {
            // The worker exits at its next step; one stuck in a store call past the deadline
            // (plus a moment to notice the stop) is stopped.
            let grace = until.max(Instant::now() + Duration::from_millis(100));
            if tokio::time::timeout_at(grace, &mut worker).await.is_err() {
                worker.abort();
                let _ = worker.await;
            }
        }
        if let Some(journal) = &shared.journal {
            journal.flush().await;
        }
        let mut st = shared.state.lock();
        st.stopped = true;
        let mut unwritten: Vec<(RecordKey, Write<S::Value>)> = Vec::new();
        unwritten.extend(st.in_flight.drain().map(|(k, e)| (k, e.write)));
        unwritten.extend(st.retry.drain().map(|(k, (e, _))| (k, e.write)));
        // A record both being written and queued again: the queued write is the latest.
        for (k, e) in st.pending.drain() {
            unwritten.retain(|(u, _)| *u != k);
            unwritten.push((k, e.write));
        }
        st.order.clear();
        st.outstanding.clear();
        let report = ShutdownReport {
            unwritten,
            dead_letters: st.stats.dead_letters,
            journaled: shared.journal.is_some(),
        };
        drop(st);
        shared.progress.notify_waiters();
        report
    }

    /// The dead letters kept so far (oldest first), without removing them.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::{collections::HashMap, sync::Arc, time::Duration};
    /// # use aurelis_cache::{Cache, Tier, MokaStore};
    /// # use aurelis_cache::strategy::{DataStore, RecordKey, Write, WriteBehind};
    /// /// A store that refuses negative numbers.
    /// #[derive(Default)]
    /// struct Ledger(parking_lot::Mutex<HashMap<RecordKey, i64>>);
    ///
    /// #[async_trait::async_trait]
    /// impl DataStore for Ledger {
    ///     type Value = i64;
    ///     type Error = std::io::Error;
    ///     async fn get(&self, k: &RecordKey) -> Result<Option<i64>, Self::Error> { Ok(self.0.lock().get(k).copied()) }
    ///     async fn set(&self, k: &RecordKey, v: &i64) -> Result<(), Self::Error> {
    ///         if *v < 0 { return Err(std::io::Error::other("negative")) }
    ///         self.0.lock().insert(k.clone(), *v);
    ///         Ok(())
    ///     }
    ///     async fn delete(&self, k: &RecordKey) -> Result<(), Self::Error> { self.0.lock().remove(k); Ok(()) }
    /// }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// # let cache = Cache::builder().tier(Tier::new("memory", Arc::new(MokaStore::builder().build()?))).build()?;
    /// let ledger = WriteBehind::builder(cache, Ledger::default())
    ///     .max_attempts(3)
    ///     .backoff(Duration::from_millis(1), Duration::from_millis(5))
    ///     .build()
    ///     .await?;
    /// ledger.set("balance", "a", 10).await?;
    /// ledger.set("balance", "b", -5).await?; // poison
    /// ledger.set("balance", "c", 30).await?;
    /// ledger.flush().await; // returns: the poison entry does not block it
    ///
    /// let dead = ledger.dead_letters();
    /// assert_eq!(dead.len(), 1);
    /// assert_eq!((dead[0].key.identifier(), &dead[0].write, dead[0].attempts), ("b", &Write::Set(-5), 3));
    /// assert_eq!(ledger.store().get(&RecordKey::new("balance", "c")).await.unwrap(), Some(30));
    /// # Ok::<(), aurelis_cache::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn dead_letters(&self) -> Vec<DeadLetter<S::Value>> {
        self.shared().state.lock().dead.iter().cloned().collect()
    }

    /// Removes and returns the dead letters kept so far (oldest first).
    pub fn take_dead_letters(&self) -> Vec<DeadLetter<S::Value>> {
        self.shared().state.lock().dead.drain(..).collect()
    }

    /// The counters and queue gauges.
    pub fn stats(&self) -> WriteBehindStats {
        self.shared().state.lock().snapshot()
    }
}

/// A [`CacheMonitor`](crate::CacheMonitor) reports the queue depth (queued, being written and
/// retrying records) and the dead letters. The monitor holds a clone of the handle, so the
/// drain on drop waits for the monitor too; call [`WriteBehind::shutdown`] at exit.
impl<S: DataStore> crate::WriteQueueStats for WriteBehind<S> {
    fn write_queue_stats(&self) -> crate::WriteQueueReport {
        let s = self.stats();
        crate::WriteQueueReport::new((s.queued + s.in_flight + s.retrying) as u64, s.dead_letters)
    }
}
