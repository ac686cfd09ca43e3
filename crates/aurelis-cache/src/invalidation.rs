//! What makes an entry invalid besides its TTL: per-key epochs that guard write-backs and
//! loads against concurrent writes, and marks that invalidate whole categories, models, tags,
//! patterns or everything in O(1).
//!
//! - **Epochs.** Every local write, delete or invalidation of a key bumps its stripe (4096
//!   stripes, so unrelated keys rarely share one); a backplane gap (messages possibly missed)
//!   bumps a global epoch. Non-key invalidations are marks, judged by creation time: a copy
//!   keeps its entry's creation time, so a mark made meanwhile covers it; a load checks the
//!   marks made since it began against its key and tags before it stores (so unrelated marks
//!   keep nothing out), and one made after that check covers what it stores.
//!   A read or a load takes a snapshot before it asks any tier and copies a value into a tier
//!   only while the snapshot still holds, checking again after the copy (and removing what it
//!   copied when it no longer holds). So a value replaced or deleted while a read was in flight
//!   is never written back after the replacement returned.
//! - **Key locks.** Checking a snapshot and then writing is two steps; a write or delete of the
//!   key could fall between them and the copy would be visible until it was removed again. So
//!   the key's writes and deletes, a load's check-and-store and a write-back's check-and-copy
//!   each hold its lock stripe exclusively while they walk the tiers (a write-back that would
//!   have to wait is skipped: the read is not held up). Two changes of one key never walk the
//!   tiers side by side: held shared by writes and deletes, as before, a delete could clear
//!   memory between a write's tiers and the write fill it after, and two writes could leave
//!   memory holding one and the lower tiers the other.
//! - **Marks.** `(invalidation, at_ms)`: every entry created before `at_ms` that the
//!   invalidation matches is stale, in every tier. They are kept in memory, on the disk tier
//!   and through the backplane in the shared tier, so processes started later honour them; a
//!   mark older than the longest lifetime any tier allows is pruned.
//! - **Mark times.** A mark made here takes the millisecond after the stamp an entry written
//!   then would take (marks made at once share it) and is applied here at once; it is
//!   announced, and its call returns, only once the clock reached its time (at most a
//!   millisecond's wait). Entries are stamped with the clock (never below a mark received
//!   from elsewhere). So an entry written before a mark was made, in any process on the same
//!   clock, is older than it, and one written after the mark returned is not, even within the
//!   same millisecond.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

use aurelis_cache_core::envelope::now_ms;
use aurelis_cache_core::Invalidation;
use parking_lot::RwLock;

const STRIPES: usize = 4096;
/// Lock stripes: keys of one epoch stripe share a lock stripe (`STRIPES` is a multiple).
const LOCK_STRIPES: usize = 1024;

/// Per-key-stripe and global invalidation counters.
pub(crate) struct Epochs {
    hasher: RandomState,
    stripes: Box<[AtomicU64]>,
    global: AtomicU64,
    /// See "Key locks" in the module docs.
    locks: Box<[tokio::sync::RwLock<()>]>,
}

/// Key lock stripes held for a write of several keys (exclusively, as [`Storing`]).
pub(crate) type Changing<'a> = tokio::sync::RwLockWriteGuard<'a, ()>;
/// A key lock stripe held exclusively: no write or delete of its keys runs meanwhile.
pub(crate) type Storing<'a> = tokio::sync::RwLockWriteGuard<'a, ()>;

/// Where a load stands against the changes of its key: the key's epoch snapshot and the time
/// it began, both taken before the cache was read, and the tags its value is stored with. A
/// write or delete of the key since, or a mark since that covers an entry created when the
/// load began, keeps its value out; unrelated marks do not.
#[derive(Clone, Debug)]
pub(crate) struct LoadStart {
    pub(crate) snap: EpochSnapshot,
    pub(crate) stamp: u64,
    pub(crate) tags: std::sync::Arc<[String]>,
}

/// What [`Epochs::snapshot`] saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EpochSnapshot {
    stripe: usize,
    key: u64,
    global: u64,
}

impl Epochs {
    pub(crate) fn new() -> Self {
        Epochs {
            hasher: RandomState::new(),
            stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            global: AtomicU64::new(0),
            locks: (0..LOCK_STRIPES).map(|_| tokio::sync::RwLock::new(())).collect(),
        }
    }

    fn lock_of(&self, key: &str) -> usize {
        self.stripe(key) % LOCK_STRIPES
    }

    /// Holds the lock stripes of `keys` exclusively, for a write of them: taken in stripe
    /// order (every holder of several takes them in that order, so none waits in a cycle).
    pub(crate) async fn changing<'k>(
        &self,
        keys: impl IntoIterator<Item = &'k str>,
    ) -> Vec<Changing<'_>> {
        let mut stripes: Vec<usize> = keys.into_iter().map(|k| self.lock_of(k)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut guards = Vec::with_capacity(stripes.len());
        for stripe in stripes {
            guards.push(self.locks[stripe].write().await);
        }
        guards
    }

    /// Holds `key`'s lock stripe exclusively, for a load's check-and-store.
    pub(crate) async fn storing(&self, key: &str) -> Storing<'_> {
        self.locks[self.lock_of(key)].write().await
    }

    /// [`Epochs::storing`] when no write or delete of the stripe runs now, else `None`.
    pub(crate) fn try_storing(&self, key: &str) -> Option<Storing<'_>> {
        self.locks[self.lock_of(key)].try_write().ok()
    }

    fn stripe(&self, key: &str) -> usize {
        (self.hasher.hash_one(key) as usize) % STRIPES
    }

    pub(crate) fn snapshot(&self, key: &str) -> EpochSnapshot {
        let stripe = self.stripe(key);
        EpochSnapshot {
            stripe,
            key: self.stripes[stripe].load(SeqCst),
            global: self.global.load(SeqCst),
        }
    }

    /// Whether nothing that could touch the key happened since `snap`.
    pub(crate) fn unchanged(&self, snap: EpochSnapshot) -> bool {
        self.stripes[snap.stripe].load(SeqCst) == snap.key
            && self.global.load(SeqCst) == snap.global
    }

    /// Whether, since `snap`, the key's stripe moved by exactly `own` bumps (this caller's)
    /// and nothing else happened: no other write, delete or invalidation touched the key.
    pub(crate) fn unchanged_but(&self, snap: EpochSnapshot, own: u64) -> bool {
        self.stripes[snap.stripe].load(SeqCst) == snap.key.wrapping_add(own)
            && self.global.load(SeqCst) == snap.global
    }

    pub(crate) fn bump_key(&self, key: &str) {
        self.stripes[self.stripe(key)].fetch_add(1, SeqCst);
    }

    pub(crate) fn bump_all(&self) {
        self.global.fetch_add(1, SeqCst);
    }
}

/// The mark table.
#[derive(Default)]
struct Table {
    /// Entries created before this are stale everywhere (a clear).
    clear: u64,
    /// Entries of unshared persistent tiers created before this are unproven (missed
    /// backplane messages).
    local: u64,
    /// Full prefix (`ns:version:category:`, a model prefix) -> at.
    prefixes: HashMap<String, u64>,
    tags: HashMap<String, u64>,
    patterns: Vec<(String, u64)>,
}

/// The marks this process knows.
pub(crate) struct Marks {
    /// The latest `at` of any mark: an entry created at or after it is covered by none.
    latest: AtomicU64,
    /// The latest `at` of the marks made elsewhere (received or loaded): entry stamps are
    /// not taken below it (see [`crate::cache::Inner::entry_time`]). This process's own marks
    /// do not raise it: they are made with the next millisecond and returned only once the
    /// clock reached it, so a stamp pulled up to one would run ahead of the clock and escape
    /// another process's mark made after it in the same millisecond.
    floor: AtomicU64,
    table: RwLock<Table>,
}

impl Marks {
    pub(crate) fn new() -> Self {
        Marks {
            latest: AtomicU64::new(0),
            floor: AtomicU64::new(0),
            table: RwLock::new(Table::default()),
        }
    }

    /// Records `invalidation`, made elsewhere, at `at_ms` (keeping a later `at` already
    /// known). Returns whether it changed anything. Key invalidations are not marks and are
    /// ignored.
    pub(crate) fn add(&self, invalidation: &Invalidation, at_ms: u64) -> bool {
        let changed = self.restore(invalidation, at_ms);
        if changed {
            self.floor.fetch_max(at_ms, SeqCst);
        }
        changed
    }

    /// Records `invalidation` at `at_ms` as read back from this process's own disk tier (a
    /// mark this process, or an earlier run of it, kept): like [`Marks::add`], but entry
    /// stamps are not pulled up to it. A mark of this process that is still waiting for the
    /// clock may be among them: pulling stamps up to its time would reopen the gap the wait
    /// closes.
    pub(crate) fn restore(&self, invalidation: &Invalidation, at_ms: u64) -> bool {
        let mut t = self.table.write();
        let changed = Self::record(&mut t, invalidation, at_ms);
        if changed {
            self.latest.fetch_max(at_ms, SeqCst);
        }
        changed
    }

    /// Records a mark made here, now, and returns its time: the millisecond after the stamp
    /// an entry written now would take ([`Marks::stamp`]), taken under the table's lock. So a
    /// load that took its store stamp and then found no covering mark is stamped before this
    /// mark's time, and one that checks after it finds it. Marks made at once share a time
    /// (they do not queue behind each other). The caller waits until entries are stamped at
    /// or after the time ([`crate::cache::Inner::wait_for_clock`]) before announcing the mark
    /// or returning to its own caller.
    pub(crate) fn add_new(&self, invalidation: &Invalidation) -> u64 {
        let mut t = self.table.write();
        let at = self.stamp(now_ms()) + 1;
        if Self::record(&mut t, invalidation, at) {
            self.latest.fetch_max(at, SeqCst);
        }
        at
    }

    /// The creation time of an entry written at `now_ms`: the clock, but never earlier than a
    /// mark received from another process, unless that mark is more than a second ahead.
    pub(crate) fn stamp(&self, now_ms: u64) -> u64 {
        now_ms.max(self.floor.load(SeqCst).min(now_ms + 1_000))
    }

    fn record(t: &mut Table, invalidation: &Invalidation, at_ms: u64) -> bool {
        match invalidation {
            Invalidation::Clear => raise(&mut t.clear, at_ms),
            Invalidation::Prefix(p) => raise(t.prefixes.entry(p.clone()).or_insert(0), at_ms),
            Invalidation::Tag(tag) => raise(t.tags.entry(tag.clone()).or_insert(0), at_ms),
            Invalidation::Pattern(p) => match t.patterns.iter_mut().find(|(q, _)| q == p) {
                Some((_, at)) => raise(at, at_ms),
                None => {
                    t.patterns.push((p.clone(), at_ms));
                    true
                }
            },
            _ => false,
        }
    }

    /// Marks every entry of unshared persistent tiers created before `at_ms` as unproven.
    pub(crate) fn add_local(&self, at_ms: u64) {
        raise(&mut self.table.write().local, at_ms);
        self.latest.fetch_max(at_ms, SeqCst);
    }

    /// Whether an entry under `key` (built under `prefix`), created at `created_at_ms` with
    /// `tags`, read from a tier that is `local_persistent` (unshared and on disk), is stale.
    pub(crate) fn covers(
        &self,
        prefix: &str,
        key: &str,
        created_at_ms: u64,
        tags: &[String],
        local_persistent: bool,
    ) -> bool {
        // Fast path: created after every mark.
        if created_at_ms >= self.latest.load(SeqCst) {
            return false;
        }
        let t = self.table.read();
        if created_at_ms < t.clear || (local_persistent && created_at_ms < t.local) {
            return true;
        }
        if !t.prefixes.is_empty() {
            if let Some(rest) = key.strip_prefix(prefix) {
                // Every prefix of the key that ends at a `:` after the cache's own prefix.
                for (i, _) in rest.match_indices(':') {
                    let candidate = &key[..prefix.len() + i + 1];
                    if t.prefixes.get(candidate).is_some_and(|&at| created_at_ms < at) {
                        return true;
                    }
                }
            }
        }
        if tags.iter().any(|tag| t.tags.get(tag).is_some_and(|&at| created_at_ms < at)) {
            return true;
        }
        t.patterns
            .iter()
            .any(|(p, at)| created_at_ms < *at && aurelis_cache_core::glob_match(p, key))
    }

    /// Forgets marks made before `before_ms`.
    pub(crate) fn prune(&self, before_ms: u64) {
        let mut t = self.table.write();
        t.prefixes.retain(|_, at| *at >= before_ms);
        t.tags.retain(|_, at| *at >= before_ms);
        t.patterns.retain(|(_, at)| *at >= before_ms);
    }

    /// How many marks are held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        let t = self.table.read();
        usize::from(t.clear > 0) + t.prefixes.len() + t.tags.len() + t.patterns.len()
    }
}

fn raise(slot: &mut u64, at: u64) -> bool {
    if at > *slot {
        *slot = at;
        true
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "aurelis:v1:";

    #[test]
    fn epochs_see_key_and_global_bumps() {
        let e = Epochs::new();
        let s = e.snapshot("aurelis:v1:a:1");
        assert!(e.unchanged(s));
        e.bump_key("aurelis:v1:a:1");
        assert!(!e.unchanged(s));
        let s = e.snapshot("aurelis:v1:a:1");
        e.bump_all();
        assert!(!e.unchanged(s));
    }

    #[test]
    fn local_marks_made_at_once_share_a_time_and_do_not_pull_stamps() {
        let m = Marks::new();
        // Marks made back to back within a millisecond take the same time (the millisecond
        // after the clock), instead of one more each: a burst of invalidations does not make
        // the last one wait a millisecond per mark before it.
        let mut shared = 0;
        for i in 0..50 {
            let a = m.add_new(&Invalidation::Tag(format!("a{i}")));
            let b = m.add_new(&Invalidation::Tag(format!("b{i}")));
            assert!(b == a || b == a + 1, "{a} then {b}");
            shared += usize::from(a == b);
            // The mark is ahead of the clock until the caller's wait; stamps stay on the clock.
            assert!(m.stamp(a - 1) < a);
        }
        assert!(shared > 0, "no two marks made at once shared a time");
        // A mark received from elsewhere, ahead of the clock, pulls stamps up to it (up to a
        // second ahead), and so do the times of local marks made after it.
        let now = now_ms();
        m.add(&Invalidation::Tag("remote".into()), now + 500);
        assert_eq!(m.stamp(now), now + 500);
        assert!(m.add_new(&Invalidation::Tag("after".into())) > now + 500);
        assert_eq!(m.stamp(now - 2_000), now - 2_000 + 1_000);
        // A mark read back from this process's own disk tier covers, but pulls no stamps.
        let own = Marks::new();
        own.restore(&Invalidation::Tag("kept".into()), now + 500);
        assert!(own.covers(P, "aurelis:v1:a:1", now, &["kept".into()], false));
        assert_eq!(own.stamp(now), now);
    }

    #[test]
    fn marks_cover_older_entries_only() {
        let m = Marks::new();
        assert!(!m.covers(P, "aurelis:v1:user:1", 5, &[], false));
        m.add(&Invalidation::Prefix("aurelis:v1:user:".into()), 100);
        assert!(m.covers(P, "aurelis:v1:user:1", 99, &[], false));
        assert!(!m.covers(P, "aurelis:v1:user:1", 100, &[], false));
        assert!(!m.covers(P, "aurelis:v1:users:1", 5, &[], false));
        assert!(!m.covers(P, "aurelis:v1:session:1", 5, &[], false));
        // Model prefixes sit one level deeper.
        m.add(&Invalidation::Prefix("aurelis:v1:@model:gpt-4o:".into()), 200);
        assert!(m.covers(P, "aurelis:v1:@model:gpt-4o:abc", 150, &[], false));
        assert!(!m.covers(P, "aurelis:v1:@model:gpt-4o-mini:abc", 150, &[], false));
        m.add(&Invalidation::Tag("t".into()), 300);
        assert!(m.covers(P, "aurelis:v1:x:1", 250, &["t".into()], false));
        assert!(!m.covers(P, "aurelis:v1:x:1", 250, &["u".into()], false));
        m.add(&Invalidation::Pattern("aurelis:v1:doc:a*".into()), 400);
        assert!(m.covers(P, "aurelis:v1:doc:abc", 350, &[], false));
        assert!(!m.covers(P, "aurelis:v1:doc:b", 350, &[], false));
        m.add_local(500);
        assert!(m.covers(P, "aurelis:v1:z:1", 450, &[], true));
        assert!(!m.covers(P, "aurelis:v1:z:1", 450, &[], false));
        m.add(&Invalidation::Clear, 600);
        assert!(m.covers(P, "aurelis:v1:z:1", 550, &[], false));
        assert!(!m.add(&Invalidation::Clear, 10), "an older clear changes nothing");
        assert_eq!(m.len(), 5);
        m.prune(350);
        assert_eq!(m.len(), 2, "the clear and the pattern stay");
    }
}
