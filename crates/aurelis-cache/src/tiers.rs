//! The one walk over the tiers: read, write, guarded write-back, delete and the repair of a
//! tier that missed writes, with one error policy.
//!
//! Error policy: a tier error is counted and logged; a read goes on to the next tier, a
//! write or delete is remembered as missed by that tier (so the tier cannot serve the key
//! again before it caught up). Strict caches return the first error instead, after doing the
//! same bookkeeping.

use std::ops::Range;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aurelis_cache_core::envelope::{coarse_now_ms, now_ms};
use aurelis_cache_core::{
    Bytes, EntryMeta, Envelope, Error, ErrorKind, Invalidation, Op, Result, ValueEntry, ValueStore,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::cache::Inner;
use crate::entry::{self, Freshness};
use crate::invalidation::EpochSnapshot;
use crate::tier::TierState;

/// What a typed read found.
pub(crate) enum Lookup<T> {
    /// A fresh value, with when it was written and when it expires (for refresh-ahead).
    Fresh(T, Lifetime),
    /// Nothing fresh; maybe an expired value inside its stale window (fail-safe candidate).
    Miss(Option<T>),
}

/// A value a read found: shared with a tier that keeps it decoded, or decoded for this read
/// alone (no `Arc` is made for a value nobody else holds).
pub(crate) enum Found<T> {
    /// Shared with an in-process tier.
    Shared(Arc<T>),
    /// Decoded for this read.
    Owned(T),
}

impl<T> Found<T> {
    /// The value behind an `Arc` (made here for an owned one).
    pub(crate) fn into_arc(self) -> Arc<T> {
        match self {
            Found::Shared(v) => v,
            Found::Owned(v) => Arc::new(v),
        }
    }

    /// The value itself: moved when it is this read's own, cloned out of its `Arc` when
    /// it is shared (moved if the tier dropped it meanwhile).
    pub(crate) fn into_owned(self) -> T
    where
        T: Clone,
    {
        match self {
            Found::Shared(v) => Arc::try_unwrap(v).unwrap_or_else(|shared| T::clone(&shared)),
            Found::Owned(v) => v,
        }
    }
}

/// What the first tier answered without waiting (see [`Inner::first_sync`]).
pub(crate) enum First<T> {
    /// A fresh hit, decoded for this read.
    Hit(T),
    /// Nothing fresh there (counted): the walk goes on from the second tier.
    Next(Resume<T>),
    /// The first tier is not read this way: the whole walk.
    Walk,
}

/// Where a walk over the tiers starts, and what it carries over from the tiers before.
pub(crate) struct Resume<T> {
    /// The first tier to read.
    from: usize,
    /// A value in its stale window found above `from`.
    stale: Option<Found<T>>,
    /// When the read started, if it is timed.
    started: Option<Instant>,
    /// When the last tier call ended, if the read is timed.
    clock: Option<Instant>,
}

impl<T> Resume<T> {
    /// A walk from the first tier; timed one read in [`SAMPLE_EVERY`].
    pub(crate) fn start() -> Self {
        let started = sample().then(Instant::now);
        Resume { from: 0, stale: None, started, clock: started }
    }
}

/// What a byte tier's answer turned out to be for a read (see [`Inner::judge`]).
enum Judged<T, R> {
    /// Fresh, decoded: the value and what the reader keeps of the entry (`R`: its envelope and
    /// bytes, or nothing when judged in place).
    Hit(T, R),
    /// In its stale window, decoded.
    Stale(T),
    /// Nothing this read can use (counted).
    Nothing,
}

/// When an entry was written and when it expires (ms since the epoch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Lifetime {
    pub(crate) created_at_ms: u64,
    pub(crate) expires_at_ms: Option<u64>,
}

/// What a tier's entry turned out to be.
enum Checked<E = Envelope> {
    Fresh(E),
    Stale(E),
    Dropped,
    /// A decoded entry of another type than the one asked for: read as bytes instead.
    OtherType,
}

/// Reads are timed once in this many per thread (the rest skip the clock).
pub(crate) const SAMPLE_EVERY: u32 = 16;

/// Whether this read is timed: every [`SAMPLE_EVERY`]th read of the thread.
fn sample() -> bool {
    thread_local! {
        static READS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    }
    READS.with(|n| {
        let v = n.get().wrapping_add(1);
        n.set(v);
        v % SAMPLE_EVERY == 0
    })
}

/// An envelope carrying `meta` (no payload), for the lifetime arithmetic of a write-back.
fn envelope_of(meta: &EntryMeta) -> Envelope {
    let mut env = Envelope::new(meta.codec, Bytes::new());
    env.created_at_ms = meta.created_at_ms;
    env.expires_at_ms = meta.expires_at_ms;
    env.stale_until_ms = meta.stale_until_ms;
    env
}

impl Inner {
    /// Reads `key` through the tiers; the first fresh entry of type `T` wins and is copied
    /// (guarded) into the tiers above it. An entry that does not decode into `T` is a local
    /// miss: the read goes on and the entry is kept for readers of its own type.
    ///
    /// An in-process tier that keeps decoded values ([`ValueStore`](aurelis_cache_core::ValueStore)) answers a hit of the same
    /// type with the shared value: no envelope parse, no decode, no async call. An entry it
    /// holds as bytes is decoded once and then kept decoded. Latencies are timed on one read in
    /// [`SAMPLE_EVERY`] per thread.
    pub(crate) async fn read<T>(&self, key: &str) -> Result<Lookup<Arc<T>>>
    where
        T: DeserializeOwned + Serialize + Send + Sync + 'static,
    {
        Ok(match self.read_found::<T>(key).await? {
            Lookup::Fresh(v, life) => Lookup::Fresh(v.into_arc(), life),
            Lookup::Miss(stale) => Lookup::Miss(stale.map(Found::into_arc)),
        })
    }

    /// [`Inner::read`], handing out a value decoded for this read alone without an `Arc`.
    pub(crate) async fn read_found<T>(&self, key: &str) -> Result<Lookup<Found<T>>>
    where
        T: DeserializeOwned + Serialize + Send + Sync + 'static,
    {
        self.read_from::<T>(key, Resume::start()).await
    }

    /// The first tier's answer, when it can be had without waiting: a byte store read in
    /// process ([`Store::get_sync_with`](aurelis_cache_core::Store::get_sync_with), the entry
    /// judged where the store keeps it) whose entry is fresh and decodes is the hit (no future, no write-back: nothing is above the first tier);
    /// whatever else it answered is judged as the walk would judge it (counted once) and the
    /// walk goes on from the second tier ([`First::Next`]). Tiers that keep decoded values are
    /// read by [`Inner::memory_hit`] and the walk, as are network stores and a cache not
    /// started yet ([`First::Walk`]).
    pub(crate) fn first_sync<T>(&self, key: &str) -> Result<First<T>>
    where
        T: DeserializeOwned,
    {
        if !self.ready.initialized() {
            return Ok(First::Walk);
        }
        let Some(tier) = self.tiers.first() else {
            return Ok(First::Walk);
        };
        if !tier.sync_read.load(Relaxed) || tier.keeps_values {
            return Ok(First::Walk);
        }
        let started = sample().then(Instant::now);
        let next = |stale, clock| First::Next(Resume { from: 1, stale, started, clock });
        if !tier.readable(key) {
            return Ok(next(None, started));
        }
        // The entry is judged where the store keeps it: no `Bytes` is made for a value that is
        // only decoded. Only the value and whether it is fresh come out: the envelope is
        // dropped where it was parsed (35 instructions fewer per hit than carrying it out).
        let mut judged: Option<(T, bool)> = None;
        let mut judge = |raw: &[u8]| {
            judged = match self.judge_entry::<T, ()>(tier, key, (raw, None), true, |_| ()) {
                Judged::Hit(value, ()) => Some((value, true)),
                Judged::Stale(value) => Some((value, false)),
                Judged::Nothing => None,
            }
        };
        let Some(answer) = tier.store().get_sync_with(key, &mut judge) else {
            tier.sync_read.store(false, Relaxed);
            return Ok(First::Walk);
        };
        let clock = started.map(|c| {
            let now = Instant::now();
            tier.stats.record_latency(Op::Get, now.duration_since(c));
            now
        });
        match answer {
            Ok(true) => {}
            Ok(false) => tier.stats.record_miss(),
            Err(e) => self.read_error(e)?,
        }
        let value = match judged {
            Some((value, true)) => value,
            Some((value, false)) => return Ok(next(Some(Found::Owned(value)), clock)),
            None => return Ok(next(None, clock)),
        };
        // The hit answers the caller's read: one count for the tier and the cache.
        tier.stats.record_answered_hit();
        if let (Some(started), Some(c)) = (started, clock) {
            self.stats.record_get_latency(c.duration_since(started));
        }
        Ok(First::Hit(value))
    }

    /// Judges what a byte tier answered, as every read does: a fresh entry that decodes into
    /// `T` is the hit (with its envelope and bytes); a miss, an error (returned in strict
    /// mode), an unreadable, invalidated, expired or mistyped entry is counted and nothing;
    /// an entry in its stale window is decoded when `want_stale`.
    #[inline(always)]
    fn judge<T: DeserializeOwned>(
        &self,
        tier: &Arc<TierState>,
        key: &str,
        result: Result<Option<Bytes>>,
        want_stale: bool,
    ) -> Result<Judged<T, (Envelope, Bytes)>> {
        let raw = match result {
            Ok(Some(raw)) => raw,
            Ok(None) => {
                tier.stats.record_miss();
                return Ok(Judged::Nothing);
            }
            Err(e) => {
                self.read_error(e)?;
                return Ok(Judged::Nothing);
            }
        };
        Ok(
            match self.judge_entry::<T, Envelope>(
                tier,
                key,
                (&raw, Some(&raw)),
                want_stale,
                Envelope::clone,
            ) {
                Judged::Hit(value, env) => Judged::Hit(value, (env, raw)),
                Judged::Stale(value) => Judged::Stale(value),
                Judged::Nothing => Judged::Nothing,
            },
        )
    }

    /// A tier's error on a read: counted, and returned in strict mode.
    fn read_error(&self, e: Error) -> Result<()> {
        self.stats.record_error();
        if self.strict {
            return Err(e);
        }
        Ok(())
    }

    /// [`Inner::judge`] of an entry's bytes (`raw`, with the `Bytes` they are in if any); a hit
    /// keeps what `keep` makes of the envelope. The envelope is looked at where it was parsed,
    /// never moved: a read judged in place keeps nothing of it (moving it copied its
    /// `Option<u64>` fields with 16-byte loads just after they were written with 8-byte
    /// stores, a stall of about 5 ns each on a disk hit). The walk, which keeps the envelope for
    /// its write-back, clones it instead (an allocation per tag of a tagged entry): moving it out
    /// of the parse's result cost a disk hit 42 instructions and about 0.03× of a raw sled read.
    #[inline(always)]
    fn judge_entry<T: DeserializeOwned, R>(
        &self,
        tier: &Arc<TierState>,
        key: &str,
        raw: (&[u8], Option<&Bytes>),
        want_stale: bool,
        keep: impl FnOnce(&Envelope) -> R,
    ) -> Judged<T, R> {
        let parsed = Envelope::decode_header(raw.0, !tier.in_process);
        let (env, payload) = match &parsed {
            Ok((env, payload)) => (env, payload.clone()),
            Err(e) => {
                self.corrupt_entry(tier, key, e);
                tier.stats.record_miss();
                return Judged::Nothing;
            }
        };
        match self.check(tier, key, env) {
            Checked::Fresh(()) => match self.decode::<T>(tier, key, env, raw, payload) {
                Some(value) => return Judged::Hit(value, keep(env)),
                None => tier.stats.record_miss(),
            },
            Checked::Stale(()) => {
                tier.stats.record_miss();
                if want_stale {
                    if let Some(value) = self.decode::<T>(tier, key, env, raw, payload) {
                        return Judged::Stale(value);
                    }
                }
            }
            Checked::Dropped | Checked::OtherType => tier.stats.record_miss(),
        }
        Judged::Nothing
    }

    /// The walk over the tiers from `resume.from` (see [`Inner::read`]).
    pub(crate) async fn read_from<T>(
        &self,
        key: &str,
        resume: Resume<T>,
    ) -> Result<Lookup<Found<T>>>
    where
        T: DeserializeOwned + Serialize + Send + Sync + 'static,
    {
        let Resume { from, mut stale, started, mut clock } = resume;
        let mut snap = None;
        for (depth, tier) in self.tiers.iter().enumerate().skip(from) {
            if !tier.readable(key) {
                continue;
            }
            if depth > 0 && snap.is_none() {
                // Before the first read that could be copied up (see `write_back`).
                snap = Some(self.epochs.snapshot(key));
            }
            let values = tier.store_raw().as_value_store();
            if let Some(values) = values {
                if let Some(entry) = values.get_value(key) {
                    match self.check_value::<T>(tier, key, &entry) {
                        Checked::Fresh(value) => {
                            tier.stats.record_hit();
                            if let Some(started) = started {
                                let now = Instant::now();
                                tier.stats.record_latency(Op::Get, now.duration_since(started));
                                self.stats.record_get_latency(now.duration_since(started));
                            }
                            let life = Lifetime {
                                created_at_ms: entry.meta.created_at_ms,
                                expires_at_ms: entry.meta.expires_at_ms,
                            };
                            if depth > 0 {
                                let snap = snap.unwrap_or_else(|| self.epochs.snapshot(key));
                                Box::pin(self.copy_value_up(depth, key, entry, snap)).await;
                            }
                            return Ok(Lookup::Fresh(Found::Shared(value), life));
                        }
                        Checked::Stale(value) => {
                            tier.stats.record_miss();
                            stale.get_or_insert(Found::Shared(value));
                            continue;
                        }
                        Checked::Dropped => {
                            tier.stats.record_miss();
                            continue;
                        }
                        // Kept decoded as another type (read first as that type): the read
                        // takes the tier's bytes below (the store encodes the value again,
                        // and they decode as `T` if the value fits it). The entry stays as
                        // it is: a read of one type never takes it away from another.
                        Checked::OtherType => {}
                    }
                }
            }
            let sync = if tier.sync_read.load(Relaxed) { tier.store().get_sync(key) } else { None };
            let result = match sync {
                Some(result) => {
                    // The runtime's cooperative budget, as an asynchronous read would spend
                    // it: a task reading hit after hit still yields now and then.
                    tokio::task::consume_budget().await;
                    result
                }
                None => {
                    tier.sync_read.store(false, Relaxed);
                    tier.store().get(key).await
                }
            };
            if let Some(c) = clock {
                let now = Instant::now();
                tier.stats.record_latency(Op::Get, now.duration_since(c));
                clock = Some(now);
            }
            let (value, env, raw) = match self.judge::<T>(tier, key, result, stale.is_none())? {
                Judged::Hit(value, (env, raw)) => (value, env, raw),
                Judged::Stale(value) => {
                    stale = Some(Found::Owned(value));
                    continue;
                }
                Judged::Nothing => continue,
            };
            tier.stats.record_hit();
            let life =
                Lifetime { created_at_ms: env.created_at_ms, expires_at_ms: env.expires_at_ms };
            let value = if depth > 0 {
                let snap = snap.unwrap_or_else(|| self.epochs.snapshot(key));
                Box::pin(self.copy_up(depth, key, values, (value, env, raw), snap)).await
            } else {
                self.keep_decoded(key, values, &[], (value, &env, &raw)).0
            };
            if let (Some(started), Some(c)) = (started, clock) {
                self.stats.record_get_latency(c.duration_since(started));
            }
            return Ok(Lookup::Fresh(value, life));
        }
        if let (Some(started), Some(c)) = (started, clock) {
            self.stats.record_get_latency(c.duration_since(started));
        }
        Ok(Lookup::Miss(stale))
    }

    /// Whether the first tier keeps decoded values (so a hit may be answered by
    /// [`Inner::memory_hit`] before anything else).
    pub(crate) fn has_memory_front(&self) -> bool {
        self.tiers.first().is_some_and(|t| t.keeps_values)
    }

    /// The synchronous hit: the first tier keeps decoded values and holds a fresh one of the
    /// requested type under `key` (`take` gets it out of the entry). Anything else (a miss, an
    /// expired or invalidated entry, another type, a cache not started yet) is `None` with no
    /// side effect, and the full read runs.
    ///
    /// `answered`: the hit answers the caller's `get`, and is counted once for the tier and
    /// the cache ([`TierStats::record_answered_hit`](aurelis_cache_core::TierStats::record_answered_hit));
    /// otherwise it is the tier's alone.
    pub(crate) fn memory_hit<R>(
        &self,
        key: &str,
        answered: bool,
        take: impl FnOnce(&ValueEntry) -> Option<R>,
    ) -> Option<R> {
        if !self.ready.initialized() {
            return None;
        }
        let tier = self.tiers.first().filter(|t| t.keeps_values)?;
        let values = tier.store_raw().as_value_store()?;
        if !tier.readable_quietly(key) {
            return None;
        }
        let started = sample().then(Instant::now);
        let entry = values.get_value(key)?;
        let meta = &entry.meta;
        if self.marks.covers(self.keys.prefix(), key, meta.created_at_ms, &meta.tags, false) {
            return None;
        }
        if meta.expires_at_ms.is_some()
            && entry::freshness_of(meta.expires_at_ms, meta.stale_until_ms, coarse_now_ms())
                != Freshness::Fresh
        {
            return None;
        }
        let value = take(&entry)?;
        if answered {
            tier.stats.record_answered_hit();
        } else {
            tier.stats.record_hit();
        }
        if let Some(started) = started {
            let took = started.elapsed();
            tier.stats.record_latency(Op::Get, took);
            self.stats.record_get_latency(took);
        }
        Some(value)
    }

    /// Checks a decoded entry as [`Inner::check`] checks bytes: marks, freshness, type.
    fn check_value<T: Send + Sync + 'static>(
        &self,
        tier: &Arc<TierState>,
        key: &str,
        entry: &ValueEntry,
    ) -> Checked<Arc<T>> {
        let meta = &entry.meta;
        if self.marks.covers(self.keys.prefix(), key, meta.created_at_ms, &meta.tags, false) {
            self.remove_in_background(tier, key);
            return Checked::Dropped;
        }
        let freshness = match meta.expires_at_ms {
            None => Freshness::Fresh,
            Some(_) => {
                entry::freshness_of(meta.expires_at_ms, meta.stale_until_ms, coarse_now_ms())
            }
        };
        let Some(value) = entry.get_arc::<T>() else {
            return Checked::OtherType;
        };
        match freshness {
            Freshness::Fresh => Checked::Fresh(value),
            Freshness::Stale => {
                tier.stats.record_expired();
                Checked::Stale(value)
            }
            Freshness::Dead => {
                tier.stats.record_expired();
                self.remove_in_background(tier, key);
                Checked::Dropped
            }
        }
    }

    /// Checks a tier's parsed entry against the marks and its lifetime. Invalidated and dead
    /// entries of unshared tiers are removed in the background (never from a shared tier, where
    /// another process may have written a fresh value meanwhile; it expires there by itself).
    #[inline]
    fn check(&self, tier: &Arc<TierState>, key: &str, env: &Envelope) -> Checked<()> {
        let local_persistent = !tier.shared && !tier.in_process;
        if self.marks.covers(
            self.keys.prefix(),
            key,
            env.created_at_ms,
            &env.tags,
            local_persistent,
        ) {
            self.remove_in_background(tier, key);
            return Checked::Dropped;
        }
        if env.expires_at_ms.is_none() {
            return Checked::Fresh(());
        }
        match entry::freshness(env, coarse_now_ms()) {
            Freshness::Fresh => Checked::Fresh(()),
            Freshness::Stale => {
                tier.stats.record_expired();
                Checked::Stale(())
            }
            Freshness::Dead => {
                tier.stats.record_expired();
                self.remove_in_background(tier, key);
                Checked::Dropped
            }
        }
    }

    /// An entry that does not parse (checksum, lengths, version): counted, logged and, from
    /// an unshared tier, removed in the background.
    #[cold]
    fn corrupt_entry(&self, tier: &Arc<TierState>, key: &str, e: &Error) {
        tier.stats.record_corrupt();
        self.stats.record_corrupt();
        tracing::warn!(tier = %tier.name(), key, error = %e, "corrupt cache entry skipped");
        self.remove_in_background(tier, key);
    }

    /// Decodes the payload of `env`, at `payload` in `raw`, into a `T` (in place unless it
    /// is compressed: then out of `owner`, the `Bytes` of `raw` if there is one, else a copy);
    /// `None`, counted and logged, when it cannot be.
    fn decode<T: DeserializeOwned>(
        &self,
        tier: &TierState,
        key: &str,
        env: &Envelope,
        (raw, owner): (&[u8], Option<&Bytes>),
        payload: Range<usize>,
    ) -> Option<T> {
        let decoded = if env.compression == aurelis_cache_core::Compression::None {
            env.codec.decode::<T>(&raw[payload])
        } else {
            let mut compressed = env.clone();
            compressed.payload = match owner {
                Some(bytes) => bytes.slice(payload),
                None => Bytes::copy_from_slice(&raw[payload]),
            };
            return self.decode_compressed(tier, key, &compressed);
        };
        match decoded {
            Ok(v) => Some(v),
            Err(e) => {
                self.stats.record_type_mismatch();
                tracing::debug!(tier = %tier.name(), key, error = %e, "entry does not decode into the requested type: a miss for this read, entry kept");
                None
            }
        }
    }

    /// [`Inner::decode`] of a compressed entry (whose payload is in `env`).
    fn decode_compressed<T: DeserializeOwned>(
        &self,
        tier: &TierState,
        key: &str,
        env: &Envelope,
    ) -> Option<T> {
        match env.value_bounded::<T>(self.max_value_bytes) {
            Ok(v) => Some(v),
            Err(e)
                if env.compression != aurelis_cache_core::Compression::None
                    && env.decompressed_payload(self.max_value_bytes).is_err() =>
            {
                // Not this reader's type problem: the payload cannot be decompressed here (a
                // damaged frame, a bomb, a dictionary this process has not registered). A miss
                // for this tier; the entry is kept for processes that can read it.
                tier.stats.record_corrupt();
                self.stats.record_corrupt();
                tracing::warn!(tier = %tier.name(), key, error = %e, "compressed entry unreadable here");
                None
            }
            Err(e) => {
                self.stats.record_type_mismatch();
                tracing::debug!(tier = %tier.name(), key, error = %e, "entry does not decode into the requested type: a miss for this read, entry kept");
                None
            }
        }
    }

    /// Removes the unreadable, invalidated or dead entry a read found at `key` in `tier`
    /// (unless the tier is shared), in a task of its own, unless the key changed since.
    fn remove_in_background(&self, tier: &Arc<TierState>, key: &str) {
        if tier.shared {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        let tier = tier.clone();
        let key = key.to_owned();
        // The entry judged is the one there unless the key was written or deleted since: a
        // value stored meanwhile (a load's, a set's) is not removed with it.
        let epochs = self.epochs.clone();
        let snap = epochs.snapshot(&key);
        rt.spawn(async move {
            let _storing = epochs.storing(&key).await;
            if !epochs.unchanged(snap) {
                return;
            }
            if let Err(e) = tier.store().delete(&key).await {
                tracing::debug!(tier = %tier.name(), error = %e, "could not remove a bad entry");
            }
        });
    }

    /// A hit found in a byte tier, as the read hands it out: decoded into a shared entry where
    /// one is kept (the tier itself, through `values`, or one of the tiers `above` that a
    /// write-back fills; then also returned, for the write-back), else the value as decoded.
    fn keep_decoded<T>(
        &self,
        key: &str,
        values: Option<&dyn ValueStore>,
        above: &[Arc<TierState>],
        (value, env, raw): (T, &Envelope, &Bytes),
    ) -> (Found<T>, Option<ValueEntry>)
    where
        T: DeserializeOwned + Serialize + Send + Sync + 'static,
    {
        if values.is_none() && !above.iter().any(|t| t.keeps_values) {
            return (Found::Owned(value), None);
        }
        let value = Arc::new(value);
        let decoded = ValueEntry::from_arc(
            value.clone(),
            EntryMeta::of(env),
            u32::try_from(raw.len()).unwrap_or(u32::MAX),
        );
        if let Some(values) = values {
            // Decoded once: kept decoded (if it still holds these bytes).
            values.upgrade(key, raw, decoded.clone());
        }
        (Found::Shared(value), Some(decoded))
    }

    /// A hit found in the byte tier at `depth`: [`Inner::keep_decoded`], then copied into the
    /// tiers above. Its own future, boxed by the read: its envelope, bytes and decoded entry
    /// would otherwise sit in every read's future (see [`Inner::write_back`]).
    async fn copy_up<T>(
        &self,
        depth: usize,
        key: &str,
        values: Option<&dyn ValueStore>,
        (value, env, raw): (T, Envelope, Bytes),
        snap: EpochSnapshot,
    ) -> Found<T>
    where
        T: DeserializeOwned + Serialize + Send + Sync + 'static,
    {
        let (found, decoded) =
            self.keep_decoded(key, values, &self.tiers[..depth], (value, &env, &raw));
        self.write_back(depth, key, &raw, &env, decoded.as_ref(), snap).await;
        found
    }

    /// A decoded hit found at `depth` (a tier that keeps values below another), copied into
    /// the tiers above as [`Inner::copy_up`] does.
    async fn copy_value_up(
        &self,
        depth: usize,
        key: &str,
        entry: Arc<ValueEntry>,
        snap: EpochSnapshot,
    ) {
        if let Ok(raw) = entry.to_envelope_bytes() {
            let env = envelope_of(&entry.meta);
            self.write_back(depth, key, &raw, &env, Some(&entry), snap).await;
        }
    }

    /// Copies a hit found at `depth` into the tiers above it, with its remaining lifetime,
    /// only while nothing touched the key since `snap`; never from an unshared tier into a
    /// shared one (this process's copy may be one another process already replaced). The
    /// copy is conditional where the tier can do it (never replacing a value written
    /// meanwhile), and undone when the key was touched while it was made.
    ///
    /// The reads box it, with what it needs ([`Inner::copy_up`], [`Inner::copy_value_up`]):
    /// it runs only when a lower tier answered, and held in line it made every `get` future
    /// larger (1,256 bytes instead of about 650), bytes copied on every move of the future, hits
    /// included.
    pub(crate) async fn write_back(
        &self,
        depth: usize,
        key: &str,
        raw: &Bytes,
        env: &Envelope,
        value: Option<&ValueEntry>,
        snap: EpochSnapshot,
    ) {
        if depth == 0 {
            return;
        }
        // No write or delete of the key runs while the copy is checked and made; with one
        // in progress the copy is skipped rather than the read held up (see `invalidation`).
        let Some(_storing) = self.epochs.try_storing(key) else {
            return;
        };
        let source_shared = self.tiers[depth].shared;
        let lifetime = entry::store_lifetime(env, now_ms());
        for tier in &self.tiers[..depth] {
            if tier.shared && !source_shared {
                continue;
            }
            if !tier.readable(key) || !self.epochs.unchanged(snap) {
                continue;
            }
            let ttl = tier.cap_ttl(lifetime);
            let started = Instant::now();
            let values = tier.store_raw().as_value_store();
            let result = if let (Some(values), Some(value)) = (values, value) {
                values.set_value_if_absent(key, value.clone(), ttl)
            } else if tier.conditional_write {
                tier.store().set_if_absent(key, raw.clone(), ttl).await
            } else {
                tier.store().set(key, raw.clone(), ttl).await.map(|()| true)
            };
            match result {
                Ok(true) => {
                    tier.stats.record_latency(Op::Set, started.elapsed());
                    tier.stats.record_writeback();
                    if !self.epochs.unchanged(snap) {
                        // Touched while we copied: what we wrote may be the replaced value.
                        if tier.store().delete(key).await.is_err() {
                            tier.missed(key);
                        }
                    }
                }
                Ok(false) => {}
                Err(e) => {
                    self.stats.record_error();
                    tracing::debug!(tier = %tier.name(), error = %e, "write-back failed");
                }
            }
        }
    }

    /// Writes encoded entries to every tier, lowest first, each with its capped TTL. A tier
    /// that is down or fails misses the keys (it will not serve them before it caught up).
    /// Fails when no tier took the write, or in strict mode when any tier failed.
    ///
    /// Lowest first, with the keys' epochs bumped before and after each tier: a concurrent
    /// read that found the old value in a lower tier before that tier was written cannot copy
    /// it into an upper tier after the upper tier was written without seeing a bump (see
    /// [`Inner::write_back`]).
    pub(crate) async fn write_all(
        &self,
        entries: &[(&str, Bytes)],
        lifetime: Option<Duration>,
        decoded: Option<&ValueEntry>,
    ) -> Result<()> {
        let op = if entries.len() == 1 { Op::Set } else { Op::SetMany };
        let bump = || {
            for (key, _) in entries {
                self.epochs.bump_key(key);
            }
        };
        bump();
        let mut results = Vec::with_capacity(self.tiers.len());
        for tier in self.tiers.iter().rev() {
            results.push(self.write_tier(tier, entries, lifetime, op, decoded).await);
            bump();
        }
        self.settle(results, "nothing was written")
    }

    async fn write_tier(
        &self,
        tier: &TierState,
        entries: &[(&str, Bytes)],
        lifetime: Option<Duration>,
        op: Op,
        decoded: Option<&ValueEntry>,
    ) -> Result<()> {
        if !tier.available() {
            for (key, _) in entries {
                tier.missed(key);
            }
            return Err(
                Error::new(ErrorKind::Unavailable, "circuit breaker open").with_tier(tier.name())
            );
        }
        let ttl = tier.cap_ttl(lifetime);
        let started = Instant::now();
        let values = tier.store_raw().as_value_store();
        let result = if let (Some(values), Some(decoded), [(key, _)]) = (values, decoded, entries) {
            values.set_value(key, decoded.clone(), ttl)
        } else if let [(key, raw)] = entries {
            tier.store().set(key, raw.clone(), ttl).await
        } else {
            tier.store().set_many(entries, ttl).await
        };
        match &result {
            Ok(()) => {
                tier.stats.record_latency(op, started.elapsed());
                tier.stats.record_write();
                for (key, _) in entries {
                    tier.caught_up(key);
                }
            }
            Err(_) => {
                for (key, _) in entries {
                    tier.missed(key);
                }
            }
        }
        result
    }

    /// Deletes `key` from the tiers in `scope`, lowest first, bumping its epoch before and
    /// after each tier (as [`Inner::write_all`]). Returns whether any tier held it.
    pub(crate) async fn delete_everywhere(&self, key: &str, scope: Scope) -> Result<bool> {
        self.epochs.bump_key(key);
        let mut results = Vec::with_capacity(self.tiers.len());
        for tier in self.tiers.iter().rev().filter(|t| scope.reaches(t)) {
            results.push(self.delete_tier(tier, key).await);
            self.epochs.bump_key(key);
        }
        let any = results.iter().any(|r| matches!(r, Ok(true)));
        let mut first_err = None;
        for result in results {
            if let Err(e) = result {
                self.stats.record_error();
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) if self.strict => Err(partial(e, "delete")),
            _ => Ok(any),
        }
    }

    async fn delete_tier(&self, tier: &TierState, key: &str) -> Result<bool> {
        if !tier.available() {
            tier.missed(key);
            return Err(
                Error::new(ErrorKind::Unavailable, "circuit breaker open").with_tier(tier.name())
            );
        }
        let started = Instant::now();
        let result = tier.store().delete(key).await;
        match &result {
            Ok(removed) => {
                tier.stats.record_latency(Op::Delete, started.elapsed());
                if *removed {
                    tier.stats.record_delete();
                }
                tier.caught_up(key);
            }
            Err(_) => tier.missed(key),
        }
        result
    }

    /// Applies a non-key invalidation another process made at `at_ms` (received, or loaded):
    /// a mark, which every tier honours at once, persisted to the unshared persistent tiers.
    pub(crate) async fn apply_mark(&self, invalidation: &Invalidation, at_ms: u64) -> Result<()> {
        // No epoch bump: what a read copies or a load stores meanwhile is created before the
        // mark, so the mark covers it (see `invalidation`).
        if !self.marks.add(invalidation, at_ms) {
            return Ok(());
        }
        self.persist_marks(&[aurelis_cache_core::Mark::new(invalidation.clone(), at_ms)]).await
    }

    /// Collects per-tier outcomes of a write: fine when at least one tier took it (or, in
    /// strict mode, when every tier did).
    fn settle(&self, results: Vec<Result<()>>, nothing: &str) -> Result<()> {
        let mut written = 0;
        let mut first_err = None;
        for result in results {
            match result {
                Ok(()) => written += 1,
                Err(e) => {
                    self.stats.record_error();
                    first_err.get_or_insert(e);
                }
            }
        }
        match (written, first_err) {
            (_, Some(e)) if self.strict => Err(partial(e, "write")),
            (0, Some(e)) => Err(rewrap(e, &format!("no tier could be written ({nothing})"))),
            (0, None) => Err(Error::new(
                ErrorKind::Unavailable,
                format!("the cache has no tier ({nothing})"),
            )),
            _ => Ok(()),
        }
    }

    /// The repair task of one tier: while its breaker is open it probes it; once it answers,
    /// it removes every key the tier missed (or, past what could be remembered, flushes it of
    /// what it cannot prove fresh), and only then puts the tier back in use.
    pub(crate) async fn repair(&self, tier: &Arc<TierState>) {
        let interval = Duration::from_millis(tier.config.breaker.probe_interval_ms.max(1));
        if tier.is_open() {
            let limit = tier.config.timeout.unwrap_or(Duration::from_secs(1));
            let probe = tier.store_raw().get("aurelis:__probe__");
            match tokio::time::timeout(limit, probe).await {
                Ok(Ok(_)) => {}
                _ => return,
            }
        }
        if tier.overflowed() {
            let flushed = if tier.shared {
                // Other processes read this tier too: they must stop trusting it as well.
                self.invalidate_everywhere(Invalidation::Clear).await.is_ok()
            } else if tier.in_process {
                tier.store_unguarded().delete_prefix(self.keys.prefix()).await.is_ok()
            } else {
                let at = self.fresh_mark_time();
                self.marks.add_local(at);
                self.wait_for_clock(at).await;
                true
            };
            if !flushed {
                return;
            }
            tier.clear_overflow();
        }
        loop {
            let keys = tier.pending_keys(256);
            if keys.is_empty() {
                break;
            }
            let mut repaired = Vec::with_capacity(keys.len());
            let mut failed = false;
            for key in keys {
                match tier.store_unguarded().delete(&key).await {
                    Ok(_) => {
                        tier.caught_up(&key);
                        repaired.push(key);
                    }
                    Err(e) => {
                        tracing::debug!(tier = %tier.name(), error = %e, "repair: delete failed, retrying later");
                        failed = true;
                        break;
                    }
                }
            }
            if tier.shared {
                // Announce them now that the shared tier cannot serve their old values (a
                // whole batch at once, after every key of it was removed).
                let now = now_ms();
                for key in repaired {
                    self.publish_now(Invalidation::Key(key), now);
                }
            }
            if failed {
                tokio::time::sleep(interval).await;
                return;
            }
        }
        if tier.is_open() && !tier.has_pending() {
            tier.close();
        }
    }
}

/// Which tiers an operation reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Every tier (an operation of this process).
    All,
    /// Tiers no other process shares (an invalidation received from another process, which
    /// already applied it to the shared tiers).
    Unshared,
}

impl Scope {
    fn reaches(self, tier: &TierState) -> bool {
        match self {
            Scope::All => true,
            Scope::Unshared => !tier.shared,
        }
    }
}

fn partial(e: Error, what: &str) -> Error {
    rewrap(e, &format!("partial failure: the {what} did not reach every tier"))
}

/// `e` with `context` in front of its message, keeping its kind and tier.
fn rewrap(e: Error, context: &str) -> Error {
    let tier = e.tier().map(str::to_owned);
    let mut err = Error::new(e.kind(), format!("{context}: {}", e.message()));
    if let Some(tier) = tier {
        err = err.with_tier(tier);
    }
    err.with_source(e)
}
