//! Single-flight: concurrent callers of one key and one result type share one load.
//!
//! Modelled on moka's `future/value_initializer.rs`: waiters are keyed by `(key, TypeId)`
//! (callers asking for different types never share a result); the leader re-checks the cache
//! after taking the lead (a load that finished just before found the value); a leader that is
//! cancelled hands the lead to a waiter (tokio's `OnceCell` runs the next waiter's init), and
//! the last caller to leave an unfinished flight removes it from the map (drop guard), so the
//! map never keeps a dead entry.
//!
//! A caller joins a flight only when nothing touched the key between the flight's start and
//! its own (their epoch snapshots are equal): a load that began before a write, delete or
//! invalidation may not be stored (see `Cache::load_and_store`), and it is not handed to a
//! caller that came after the change either. Such a caller starts a flight of its own, which
//! takes the key's place in the map (the older one finishes for its own callers).

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use aurelis_cache_core::{Error, Result};
use parking_lot::Mutex;
use tokio::sync::OnceCell;

use crate::invalidation::LoadStart;

type Shared = std::result::Result<Arc<dyn Any + Send + Sync>, Error>;
type FlightKey = (String, TypeId);

/// One load in flight.
struct Flight {
    cell: OnceCell<Shared>,
    /// Where its first caller's load started.
    start: LoadStart,
}

/// The loads in flight.
#[derive(Default)]
pub(crate) struct Flights {
    map: Mutex<HashMap<FlightKey, Arc<Flight>>>,
}

impl Flights {
    /// How many loads are in flight.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.lock().len()
    }

    /// Runs `init` for `key` unless another caller of the same `T` is already running it,
    /// nothing wrote or deleted the key since that caller's start (equal epoch snapshots) and
    /// `fresh` says no invalidation since then covers its load, in which case this waits for
    /// its result. `on_wait` is called when this caller waits.
    pub(crate) async fn run<T, F, Fut>(
        &self,
        key: &str,
        start: &LoadStart,
        fresh: impl FnOnce(&LoadStart) -> bool,
        on_wait: impl FnOnce(),
        init: F,
    ) -> Result<T>
    where
        T: Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let fkey: FlightKey = (key.to_owned(), TypeId::of::<T>());
        let (flight, leader) = {
            let mut map = self.map.lock();
            match map.get(&fkey) {
                Some(f) if f.start.snap == start.snap && fresh(&f.start) => (f.clone(), false),
                // None, or a flight that began before the key was last changed.
                _ => {
                    let f = Arc::new(Flight { cell: OnceCell::new(), start: start.clone() });
                    map.insert(fkey.clone(), f.clone());
                    (f, true)
                }
            }
        };
        if !leader {
            on_wait();
        }
        let guard = Guard { flights: self, key: fkey, flight };
        let shared = guard
            .flight
            .cell
            .get_or_init(|| async move {
                match init().await {
                    Ok(v) => Ok(Arc::new(v) as Arc<dyn Any + Send + Sync>),
                    Err(e) => Err(e),
                }
            })
            .await
            .clone();
        drop(guard);
        match shared {
            Ok(any) => Ok(any
                .downcast_ref::<T>()
                .expect("flights are keyed by TypeId, so the result is a T")
                .clone()),
            Err(e) => Err(e),
        }
    }
}

/// Removes a flight from the map once it finished, or when its last caller leaves it
/// unfinished (cancelled).
struct Guard<'a> {
    flights: &'a Flights,
    key: FlightKey,
    flight: Arc<Flight>,
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        let mut map = self.flights.map.lock();
        let Some(current) = map.get(&self.key) else { return };
        if !Arc::ptr_eq(current, &self.flight) {
            return;
        }
        // Done: later callers must look at the cache again, not at this result. Unfinished:
        // remove it only when nobody else waits on it (the map's reference and ours).
        if self.flight.cell.initialized() || Arc::strong_count(&self.flight) <= 2 {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invalidation::Epochs;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    /// The start of a load of `k` in a fresh set of epochs (equal for every call).
    fn snap() -> LoadStart {
        static EPOCHS: std::sync::OnceLock<Epochs> = std::sync::OnceLock::new();
        start(EPOCHS.get_or_init(Epochs::new).snapshot("k"))
    }

    fn start(snap: crate::invalidation::EpochSnapshot) -> LoadStart {
        LoadStart { snap, stamp: 0, tags: Arc::from(Vec::new()) }
    }

    #[tokio::test]
    async fn one_init_for_concurrent_callers_of_one_type() {
        let flights = Arc::new(Flights::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (flights, calls, gate) = (flights.clone(), calls.clone(), gate.clone());
            tasks.push(tokio::spawn(async move {
                flights
                    .run(
                        "k",
                        &snap(),
                        |_| true,
                        || {},
                        || async move {
                            calls.fetch_add(1, SeqCst);
                            gate.notified().await;
                            Ok(7u32)
                        },
                    )
                    .await
            }));
        }
        while calls.load(SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        // Every task has registered once the map holds one flight and the tasks all wait.
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        gate.notify_one();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), 7);
        }
        assert_eq!(calls.load(SeqCst), 1);
        assert_eq!(flights.len(), 0);
    }

    #[tokio::test]
    async fn different_types_do_not_share() {
        let flights = Flights::default();
        let start = snap();
        let a = flights.run("k", &start, |_| true, || {}, || async { Ok(1u8) });
        let b = flights.run("k", &start, |_| true, || {}, || async { Ok("x".to_string()) });
        let (a, b) = tokio::join!(a, b);
        assert_eq!((a.unwrap(), b.unwrap()), (1u8, "x".to_string()));
    }

    #[tokio::test]
    async fn a_cancelled_leader_leaves_no_flight_behind() {
        let flights = Arc::new(Flights::default());
        let started = Arc::new(tokio::sync::Notify::new());
        let task = {
            let (flights, started) = (flights.clone(), started.clone());
            tokio::spawn(async move {
                flights
                    .run(
                        "k",
                        &snap(),
                        |_| true,
                        || {},
                        || async move {
                            started.notify_one();
                            std::future::pending::<Result<u8>>().await
                        },
                    )
                    .await
            })
        };
        started.notified().await; // the loader runs: the leader is registered
        assert_eq!(flights.len(), 1);
        task.abort();
        let _ = task.await;
        assert_eq!(flights.len(), 0, "the cancelled leader's flight is gone");
        assert_eq!(
            flights.run("k", &snap(), |_| true, || {}, || async { Ok(3u8) }).await.unwrap(),
            3
        );
    }

    #[tokio::test]
    async fn a_caller_that_saw_the_key_touched_does_not_join_an_older_flight() {
        let epochs = Epochs::new();
        let flights = Arc::new(Flights::default());
        let gate = Arc::new(tokio::sync::Notify::new());
        let started = Arc::new(tokio::sync::Notify::new());
        let before = epochs.snapshot("k");
        let old = {
            let (flights, gate, started) = (flights.clone(), gate.clone(), started.clone());
            tokio::spawn(async move {
                flights
                    .run(
                        "k",
                        &start(before),
                        |_| true,
                        || {},
                        || async move {
                            started.notify_one();
                            gate.notified().await;
                            Ok(1u8)
                        },
                    )
                    .await
            })
        };
        started.notified().await;
        epochs.bump_key("k"); // a write or delete of the key while the old load runs
        let waited = AtomicUsize::new(0);
        let after = epochs.snapshot("k");
        assert_ne!(after, before);
        let after = start(after);
        let new = flights.run(
            "k",
            &after,
            |_| true,
            || {
                waited.fetch_add(1, SeqCst);
            },
            || async { Ok(2u8) },
        );
        // Were the later caller to join the older flight, this opens its gate, so the test
        // fails on the value instead of hanging.
        let done = std::sync::atomic::AtomicBool::new(false);
        let new = async {
            let v = new.await;
            done.store(true, SeqCst);
            v
        };
        let opener = async {
            while !done.load(SeqCst) && waited.load(SeqCst) == 0 {
                tokio::task::yield_now().await;
            }
            gate.notify_one();
        };
        let (new, ()) = tokio::join!(new, opener);
        assert_eq!(new.unwrap(), 2, "the later caller ran its own load");
        assert_eq!(waited.load(SeqCst), 0, "it did not wait for the older flight");
        // The older flight finishes for its own caller (the gate is open), and leaves nothing
        // behind.
        assert_eq!(old.await.unwrap().unwrap(), 1);
        assert_eq!(flights.len(), 0);
    }
}
