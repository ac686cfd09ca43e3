//! Shared fixtures: a real moka memory tier and a real sled disk tier (in a temp dir), each
//! wrapped in a fault-injecting store so tests can make a tier misbehave.

#![allow(dead_code, unreachable_pub, missing_docs, missing_debug_implementations)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use aurelis_cache::core::testkit::{FaultControl, FaultyStore};
use aurelis_cache::{BreakerConfig, Cache, CacheBuilder, MokaStore, SledStore, Store, Tier};

pub struct Tiers {
    pub memory: Arc<dyn Store>,
    pub disk: Arc<dyn Store>,
    pub memory_faults: Arc<FaultControl>,
    pub disk_faults: Arc<FaultControl>,
    pub dir: tempfile::TempDir,
}

pub fn tiers() -> Tiers {
    let dir = tempfile::tempdir().expect("tempdir");
    let memory: Arc<dyn Store> =
        Arc::new(MokaStore::builder().max_entries(10_000).build().expect("moka"));
    let disk: Arc<dyn Store> =
        Arc::new(SledStore::builder().path(dir.path().join("db")).build().expect("sled"));
    let memory_faulty = FaultyStore::new(memory.clone());
    let disk_faulty = FaultyStore::new(disk.clone());
    Tiers {
        memory_faults: memory_faulty.control(),
        disk_faults: disk_faulty.control(),
        memory: Arc::new(memory_faulty),
        disk: Arc::new(disk_faulty),
        dir,
    }
}

impl Tiers {
    /// memory (300 s cap) over disk (86400 s cap), both behind fault injectors.
    pub fn builder(&self) -> CacheBuilder {
        self.builder_with(Duration::from_secs(300), Duration::from_secs(86_400))
    }

    pub fn builder_with(&self, memory_ttl: Duration, disk_ttl: Duration) -> CacheBuilder {
        let breaker = BreakerConfig::new(3, Duration::from_millis(50));
        Cache::builder()
            .tier(
                Tier::new("memory", self.memory.clone())
                    .ttl(memory_ttl)
                    .priority(3)
                    .breaker(breaker.clone()),
            )
            .tier(Tier::new("disk", self.disk.clone()).ttl(disk_ttl).priority(1).breaker(breaker))
    }

    pub fn cache(&self) -> Cache {
        self.builder().build().expect("cache")
    }
}

/// Polls `check` until it holds or `limit` passes; returns whether it held.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn tier<'a>(
    report: &'a aurelis_cache::StatsReport,
    name: &str,
) -> &'a aurelis_cache::TierReport {
    report.tiers.iter().find(|t| t.name == name).expect("tier in report")
}

/// A seeded xorshift* generator for repeatable randomized tests.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A gate calls pass through, or wait at while it is held.
#[derive(Debug)]
pub struct Gate {
    held: tokio::sync::watch::Sender<bool>,
    /// Calls that found the gate held.
    pub stopped: std::sync::atomic::AtomicU64,
    /// Only the first call that finds the gate held waits; later ones pass.
    only_first: std::sync::atomic::AtomicBool,
}

impl Default for Gate {
    fn default() -> Self {
        Self::new()
    }
}

impl Gate {
    pub fn new() -> Self {
        Gate {
            held: tokio::sync::watch::Sender::new(false),
            stopped: std::sync::atomic::AtomicU64::new(0),
            only_first: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Holds (or releases) every call that comes to the gate.
    pub fn hold(&self, yes: bool) {
        self.held.send_replace(yes);
    }

    /// Holds only the first call that comes to the gate (until released); others pass.
    pub fn hold_first(&self) {
        self.only_first.store(true, std::sync::atomic::Ordering::SeqCst);
        self.hold(true);
    }

    /// Passes, or waits while the gate holds this call.
    pub async fn pass(&self) {
        let mut held = self.held.subscribe();
        if *held.borrow_and_update() {
            let before = self.stopped.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if before == 0 || !self.only_first.load(std::sync::atomic::Ordering::SeqCst) {
                held.wait_for(|held| !held).await.expect("the gate outlives its calls");
            }
        }
    }

    /// Waits until a call is held at the gate (at most 10 s).
    pub async fn wait_stopped(&self) {
        assert!(
            eventually(Duration::from_secs(10), || async {
                self.stopped.load(std::sync::atomic::Ordering::SeqCst) > 0
            })
            .await,
            "no call reached the gate"
        );
    }
}

/// A store whose writes (`set`) can be held at a gate: to stop a cache's write between its
/// tiers (the lower ones written, this one not yet).
#[derive(Debug)]
pub struct HeldWrites {
    inner: Arc<dyn Store>,
    /// The writes' gate.
    pub gate: Gate,
}

impl HeldWrites {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        HeldWrites { inner, gate: Gate::new() }
    }
}

impl aurelis_cache::core::layer::LayeredStore for HeldWrites {
    type Inner = dyn Store;

    fn inner(&self) -> &dyn Store {
        &*self.inner
    }

    fn around<'a, T: Send + 'a>(
        &'a self,
        op: aurelis_cache::core::layer::Operation,
        call: aurelis_cache::core::layer::BoxFuture<'a, aurelis_cache::Result<T>>,
    ) -> aurelis_cache::core::layer::BoxFuture<'a, aurelis_cache::Result<T>> {
        Box::pin(async move {
            if op == aurelis_cache::core::layer::Operation::Set {
                self.gate.pass().await;
            }
            call.await
        })
    }
}
