//! The backplane glue: publishing invalidations without losing them, applying other
//! processes' invalidations, durable marks, and the background tasks of a cache.
//!
//! - Outgoing invalidations go to a bounded queue (10 000); a task sends them in batches
//!   (key invalidations together, one message per mark) and retries with backoff until the
//!   backplane takes them, so a failed publish is never dropped. When the queue overflows, the
//!   task publishes a clear made at the overflow time once the backplane answers again.
//! - Incoming events go through a bounded queue as well; an overflow is handled as a gap.
//! - A gap (`Reconnected`: messages may have been missed) wipes the in-process tiers and marks
//!   the unshared persistent tiers' entries as unproven. A process with a backplane treats its
//!   disk tier's older entries the same way at start-up, because it missed whatever was
//!   invalidated while it was not running.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aurelis_cache_core::envelope::now_ms;
use aurelis_cache_core::{
    Backplane, BackplaneEvent, Bytes, Invalidation, InvalidationMessage, Mark, Result,
};
use parking_lot::Mutex;

use crate::cache::Inner;
use crate::tiers::Scope;

/// Most invalidations waiting to be published.
const OUTBOX_CAPACITY: usize = 10_000;
/// Most backplane events waiting to be applied.
const INBOX_CAPACITY: usize = 10_000;
/// Most key invalidations in one message.
const BATCH: usize = 256;
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Something to hand to the backplane.
#[derive(Clone, Debug)]
enum Outgoing {
    Publish(Invalidation, u64),
    Marks(Vec<Mark>),
}

/// The backplane side of a cache.
pub(crate) struct SyncState {
    pub(crate) backplane: Option<Arc<dyn Backplane>>,
    outbox: Mutex<VecDeque<Outgoing>>,
    /// Items in the outbox or being sent.
    unsent: AtomicUsize,
    overflowed_at: AtomicU64,
    wake: tokio::sync::Notify,
    drained: tokio::sync::Notify,
    /// The inbox overflowed: apply a gap.
    inbox_overflow: AtomicBool,
    pub(crate) tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl SyncState {
    pub(crate) fn new(backplane: Option<Arc<dyn Backplane>>) -> Self {
        SyncState {
            backplane,
            outbox: Mutex::new(VecDeque::new()),
            unsent: AtomicUsize::new(0),
            overflowed_at: AtomicU64::new(0),
            wake: tokio::sync::Notify::new(),
            drained: tokio::sync::Notify::new(),
            inbox_overflow: AtomicBool::new(false),
            tasks: Mutex::new(Vec::new()),
        }
    }

    /// Queues `item`; `queued` runs under the outbox's lock once it is in the queue (so what
    /// it counts agrees with the queue's order).
    fn push(&self, item: Outgoing, at: u64, queued: impl FnOnce()) {
        if self.backplane.is_none() {
            return;
        }
        {
            let mut outbox = self.outbox.lock();
            if outbox.len() >= OUTBOX_CAPACITY {
                if self.overflowed_at.fetch_max(at, SeqCst) == 0 {
                    tracing::error!(
                        "backplane outbox full: peers will be sent a clear once it drains"
                    );
                }
                return;
            }
            outbox.push_back(item);
            queued();
            self.unsent.fetch_add(1, SeqCst);
        }
        self.wake.notify_one();
    }

    /// Queues an invalidation for the other processes (when there is a backplane and room);
    /// `queued` runs once it is in the queue, under the queue's lock: the `published` count
    /// it keeps is then the invalidation's position in the order peers apply them, which a
    /// count taken after the push could state one too low when another task queued between.
    pub(crate) fn publish(&self, invalidation: Invalidation, at_ms: u64, queued: impl FnOnce()) {
        self.push(Outgoing::Publish(invalidation, at_ms), at_ms, queued);
    }

    /// Queues marks to keep in the shared tier.
    pub(crate) fn store_marks(&self, marks: Vec<Mark>) {
        let at = marks.iter().map(|m| m.at_ms).max().unwrap_or(0);
        self.push(Outgoing::Marks(marks), at, || ());
    }

    /// Waits until everything queued so far was handed to the backplane, or `limit` passed.
    /// Returns how many items are still unsent.
    pub(crate) async fn drain(&self, limit: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let drained = self.drained.notified();
            let left = self.unsent.load(SeqCst);
            if left == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, drained).await.is_err() {
                return self.unsent.load(SeqCst);
            }
        }
    }
}

/// The publisher task: sends the outbox in order, retrying until the backplane takes it.
pub(crate) async fn run_publisher(weak: Weak<Inner>) {
    loop {
        {
            let Some(inner) = weak.upgrade() else { return };
            if inner.sync.outbox.lock().is_empty() {
                inner.sync.drained.notify_waiters();
                // Wake up at least every second, to notice the cache is gone.
                let notified = inner.sync.wake.notified();
                let _ = tokio::time::timeout(Duration::from_secs(1), notified).await;
                continue;
            }
        }
        let Some(inner) = weak.upgrade() else { return };
        let Some(backplane) = inner.sync.backplane.clone() else { return };
        // A batch: consecutive key invalidations, or one other item.
        let batch: Vec<Outgoing> = {
            let outbox = inner.sync.outbox.lock();
            let mut batch = Vec::new();
            for item in outbox.iter() {
                match item {
                    Outgoing::Publish(Invalidation::Key(_), _) if batch.len() < BATCH => {
                        if matches!(
                            batch.first(),
                            Some(Outgoing::Publish(Invalidation::Key(_), _)) | None
                        ) {
                            batch.push(item.clone());
                        } else {
                            break;
                        }
                    }
                    _ if batch.is_empty() => {
                        batch.push(item.clone());
                        break;
                    }
                    _ => break,
                }
            }
            batch
        };
        let n = batch.len();
        let origin = inner.instance_id.clone();
        drop(inner);
        let mut delay = FIRST_BACKOFF;
        loop {
            let sent = match &batch[..] {
                [Outgoing::Marks(marks)] => backplane.store_marks(marks).await,
                items => {
                    let mut at = 0;
                    let invalidations = items
                        .iter()
                        .filter_map(|i| match i {
                            Outgoing::Publish(inv, t) => {
                                at = at.max(*t);
                                Some(inv.clone())
                            }
                            Outgoing::Marks(_) => None,
                        })
                        .collect();
                    backplane
                        .publish(&InvalidationMessage::batch(origin.clone(), invalidations).at(at))
                        .await
                }
            };
            match sent {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "backplane publish failed; retrying");
                    if weak.strong_count() == 0 {
                        return;
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(MAX_BACKOFF);
                }
            }
        }
        let Some(inner) = weak.upgrade() else { return };
        {
            let mut outbox = inner.sync.outbox.lock();
            for _ in 0..n {
                outbox.pop_front();
            }
        }
        inner.sync.unsent.fetch_sub(n, SeqCst);
        let overflowed = inner.sync.overflowed_at.swap(0, SeqCst);
        if overflowed != 0 {
            // Peers missed what did not fit: they must stop trusting what they hold.
            inner.publish(Invalidation::Clear, overflowed);
            inner.sync.store_marks(vec![Mark::new(Invalidation::Clear, overflowed)]);
        }
    }
}

impl Inner {
    /// Loads the durable marks, starts the background tasks and subscribes the backplane.
    pub(crate) async fn start(self: &Arc<Self>) -> Result<()> {
        let started = now_ms();
        self.load_marks().await;
        if self.sync.backplane.is_some() {
            // Invalidations made while this process was not running were not received: entries
            // of this process's disk tier written before now are unproven.
            self.marks.add_local(started);
        }
        let weak = Arc::downgrade(self);
        let mut tasks = Vec::new();
        for (i, _) in self.tiers.iter().enumerate() {
            let weak = weak.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let (tier, interval) = {
                        let Some(inner) = weak.upgrade() else { return };
                        let tier = inner.tiers[i].clone();
                        let interval =
                            Duration::from_millis(tier.config.breaker.probe_interval_ms.max(1));
                        (tier, interval)
                    };
                    let _ = tokio::time::timeout(interval, tier.wake.notified()).await;
                    if tier.needs_repair() {
                        if tier.is_open() {
                            tokio::time::sleep(interval).await;
                        }
                        let Some(inner) = weak.upgrade() else { return };
                        inner.repair(&tier).await;
                    }
                }
            }));
        }
        if let Some(backplane) = self.sync.backplane.clone() {
            tasks.push(tokio::spawn(run_publisher(weak.clone())));
            let (tx, mut rx) = tokio::sync::mpsc::channel::<BackplaneEvent>(INBOX_CAPACITY);
            let inbox_weak = weak.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(event) = rx.recv().await {
                    let Some(inner) = inbox_weak.upgrade() else { return };
                    if inner.sync.inbox_overflow.swap(false, SeqCst) {
                        inner.on_gap().await;
                    }
                    inner.on_event(event).await;
                }
            }));
            let overflow_weak = weak.clone();
            let subscribed = backplane
                .subscribe(Arc::new(move |event| {
                    if tx.try_send(event).is_err() {
                        if let Some(inner) = overflow_weak.upgrade() {
                            inner.sync.inbox_overflow.store(true, SeqCst);
                        }
                    }
                }))
                .await;
            if let Err(e) = subscribed {
                tracing::error!(error = %e, "backplane subscription refused: other processes' invalidations will not reach this one");
            }
        }
        self.sync.tasks.lock().extend(tasks);
        Ok(())
    }

    async fn on_event(&self, event: BackplaneEvent) {
        match event {
            BackplaneEvent::Invalidate(msg) => {
                if msg.origin == self.instance_id {
                    return;
                }
                for invalidation in &msg.invalidations {
                    tracing::debug!(origin = %msg.origin, ?invalidation, "remote invalidation");
                    let applied = match invalidation {
                        Invalidation::Key(k) => {
                            // Exclusively, as a local delete: a write of the key in progress
                            // here finishes first and its copies are then removed. Shared (as
                            // writes hold it), the removal could run between the write's
                            // tiers: the write put its value into memory after the removal had
                            // cleared it, while the shared tier held the other process's
                            // state, and the processes disagreed until the entry expired.
                            let _exclusive = self.epochs.storing(k.as_str()).await;
                            self.delete_everywhere(k, Scope::Unshared).await.map(drop)
                        }
                        other => self.apply_mark(other, msg.at_ms).await,
                    };
                    if let Err(e) = applied {
                        tracing::warn!(error = %e, "could not apply a remote invalidation everywhere; the tier will catch up");
                    }
                    self.stats.record_remote_applied();
                }
            }
            BackplaneEvent::Reconnected => self.on_gap().await,
            BackplaneEvent::Resumed => {
                tracing::info!("backplane resumed: missed invalidations replayed");
            }
            BackplaneEvent::Disconnected => {
                tracing::warn!("backplane disconnected: invalidations from other processes wait until it is back");
            }
            _ => {}
        }
    }

    /// Messages may have been missed: nothing this process keeps on its own is proven fresh.
    pub(crate) async fn on_gap(&self) {
        tracing::warn!("backplane gap: wiping in-process tiers and marking disk entries unproven");
        // Every entry stamped so far, also in this millisecond, is unproven. (Writes made
        // while this runs may be marked too: a miss, never a stale value.)
        let at = self.fresh_mark_time();
        self.epochs.bump_all();
        self.marks.add_local(at);
        for tier in self.tiers.iter().filter(|t| t.in_process) {
            if tier.store().delete_prefix(self.keys.prefix()).await.is_err() {
                tier.missed_everything();
            }
        }
        self.load_marks().await;
    }

    /// Loads marks from the unshared persistent tiers and the backplane, and prunes old ones.
    pub(crate) async fn load_marks(&self) {
        let prefix = self.marks_prefix();
        for tier in self.tiers.iter().filter(|t| !t.shared && t.scan) {
            let mut cursor: Option<String> = None;
            loop {
                let page = match tier.store().scan_prefix(&prefix, cursor.as_deref(), 512).await {
                    Ok(page) => page,
                    Err(e) => {
                        tracing::warn!(tier = %tier.name(), error = %e, "could not load invalidation marks");
                        break;
                    }
                };
                let keys: Vec<&str> = page.keys.iter().map(String::as_str).collect();
                let values = match tier.store().get_many(&keys).await {
                    Ok(v) => v,
                    Err(_) => break,
                };
                for value in values.into_iter().flatten() {
                    match serde_json::from_slice::<Mark>(&value) {
                        Ok(mark) => {
                            self.marks.restore(&mark.invalidation, mark.at_ms);
                        }
                        Err(e) => {
                            tracing::warn!(tier = %tier.name(), error = %e, "unreadable mark skipped")
                        }
                    }
                }
                match page.next {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
        }
        if let Some(backplane) = &self.sync.backplane {
            match tokio::time::timeout(Duration::from_secs(2), backplane.load_marks()).await {
                Ok(Ok(marks)) => {
                    for mark in marks {
                        self.marks.add(&mark.invalidation, mark.at_ms);
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "could not load shared invalidation marks")
                }
                Err(_) => tracing::warn!("shared invalidation marks: no answer within 2 s"),
            }
        }
        if let Some(before) = self.prune_before() {
            self.marks.prune(before);
        }
    }

    /// Marks made before this cannot cover a live entry (every tier caps lifetimes).
    pub(crate) fn prune_before(&self) -> Option<u64> {
        let mut longest = Duration::ZERO;
        for tier in self.tiers.iter() {
            longest = longest.max(tier.config.ttl?);
        }
        Some(now_ms().saturating_sub(crate::entry::millis(longest)).saturating_sub(60_000))
    }

    pub(crate) fn marks_prefix(&self) -> String {
        format!("{}@marks:", self.keys.prefix())
    }

    /// Keeps marks in the unshared persistent tiers (so a restart honours them).
    pub(crate) async fn persist_marks(&self, marks: &[Mark]) -> Result<()> {
        let prefix = self.marks_prefix();
        let lifetime = self.prune_before().map(|_| {
            let mut longest = Duration::ZERO;
            for tier in self.tiers.iter() {
                longest = longest.max(tier.config.ttl.unwrap_or_default());
            }
            longest + Duration::from_secs(60)
        });
        for tier in self.tiers.iter().filter(|t| !t.shared && t.persistent) {
            for mark in marks {
                let name = serde_json::to_vec(&mark.invalidation).unwrap_or_default();
                let key = format!("{prefix}{}", aurelis_cache_core::key::hash_hex(&name));
                let value = Bytes::from(serde_json::to_vec(mark).unwrap_or_default());
                if let Err(e) = tier.store().set(&key, value, lifetime).await {
                    tracing::warn!(tier = %tier.name(), error = %e, "could not keep an invalidation mark");
                    tier.missed_everything();
                    if self.strict {
                        return Err(e);
                    }
                }
            }
        }
        Ok(())
    }

    /// A time for a local mark ([`Marks::add_local`](crate::invalidation::Marks::add_local):
    /// this process's disk entries stamped so far are unproven): the millisecond after the
    /// stamp an entry written now would take, so entries of this very millisecond are
    /// covered too.
    pub(crate) fn fresh_mark_time(&self) -> u64 {
        self.entry_time() + 1
    }

    /// Waits until entries written from now on are stamped at or after `at_ms` (a mark's
    /// time, a millisecond or so ahead of the clock): from then on no entry this process, or
    /// another on the same clock, writes is covered by the mark. The last millisecond is
    /// waited by yielding to the runtime (tokio's timer rounds a sleep up to its next
    /// millisecond, and under a paused test clock a sleep would move that clock on); a longer
    /// wait (a received mark ahead of this clock) sleeps. Waits a second at most (a clock set
    /// back is not waited for).
    pub(crate) async fn wait_for_clock(&self, at_ms: u64) {
        let target = Duration::from_millis(at_ms);
        let give_up = std::time::Instant::now() + Duration::from_secs(1);
        while self.entry_time() < at_ms && std::time::Instant::now() < give_up {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
            match target.saturating_sub(now) {
                wait if wait > Duration::from_millis(2) => {
                    tokio::time::sleep(wait - Duration::from_millis(1)).await
                }
                _ => tokio::task::yield_now().await,
            }
        }
    }

    /// The creation time of an entry written now: the wall clock, never earlier than a mark
    /// received from another process (whose clock may run ahead of this one), so a write made
    /// after such an invalidation arrived is not covered by it. A mark more than a second
    /// ahead of this clock does not pull stamps along: entries would live longer than their
    /// TTL; they are covered by it instead (misses, never stale). This process's own marks
    /// never pull stamps: they are not returned before the clock reached them.
    pub(crate) fn entry_time(&self) -> u64 {
        self.marks.stamp(now_ms())
    }

    /// Applies a non-key invalidation made here (a mark a millisecond ahead of the stamps),
    /// keeps it as a shared mark and tells the others once the stamps reached its time.
    pub(crate) async fn invalidate_everywhere(&self, invalidation: Invalidation) -> Result<()> {
        self.stats.record_invalidation();
        let at = self.marks.add_new(&invalidation);
        let applied = self.persist_marks(&[Mark::new(invalidation.clone(), at)]).await;
        self.wait_for_clock(at).await;
        self.sync.store_marks(vec![Mark::new(invalidation.clone(), at)]);
        self.publish(invalidation, at);
        applied
    }

    /// Queues `invalidation` for the other processes, counting it. A key that a shared tier
    /// missed is not announced yet: the shared tier may still hold its old value, which peers
    /// would read right after dropping their own copies. The repair task announces it once it
    /// removed the key from the shared tier.
    pub(crate) fn publish(&self, invalidation: Invalidation, at: u64) {
        if let Invalidation::Key(key) = &invalidation {
            if self.tiers.iter().any(|t| t.shared && !t.readable_quietly(key)) {
                tracing::debug!(key = %key, "announcement deferred until the shared tier caught up");
                return;
            }
        }
        self.publish_now(invalidation, at);
    }

    /// Queues `invalidation` for the other processes at once, counting it.
    pub(crate) fn publish_now(&self, invalidation: Invalidation, at: u64) {
        self.sync.publish(invalidation, at, || self.stats.record_published());
    }
}
