//! Connections: multiplexed connections checked out of deadpool-redis once and reused.
//!
//! A deadpool checkout runs the manager's recycle check, a `PING` round trip, before handing
//! the connection out; paid on every operation, it doubles the latency of a loopback `GET`.
//! Redis connections from deadpool-redis are multiplexed (`MultiplexedConnection`, or the
//! cluster connection built on it): cheap to clone, and they pipeline concurrent requests. So
//! [`Connections`] checks up to `pool_size` connections out of the pool once, keeps them in
//! slots, hands out clones, and replaces a slot's connection only when it is broken. The pool
//! still creates and bounds the connections, with its create timeout; a connect runs in its
//! own task, so an operation that gives up waiting does not abort it, and there is at most one
//! connect per slot at a time.
//!
//! Broken means a connection-level error (I/O, dropped, refused), or a connection that stays
//! silent: an operation that times out does not drop the connection, which every other
//! request of the process shares (one slow command, say a large value or a server busy for a
//! moment, would otherwise cost everybody a reconnect). Instead the slot starts one probe, a
//! `PING` on the same connection that may take [`probe_limit`](Connections::probe_limit)
//! (`connect_timeout + timeout`); the connection is dropped only when the probe fails or gets
//! no answer in that time (a half-open TCP connection, a stopped server). At most one probe
//! runs per slot.
//!
//! Which slot: the first one with fewer than [`SPREAD_AT`] requests in flight, else the least
//! busy. A caller issuing one request at a time therefore always uses the same, warm
//! connection (rotating over many idle connections measurably slows a sequential `GET`),
//! while concurrent callers spread over more connections, so one large value does not hold
//! up every request behind it. Slots past the first connect when first needed.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use aurelis_cache_core::Result;
use deadpool_redis::redis::aio::{ConnectionLike, MultiplexedConnection};
use deadpool_redis::redis::cluster_async::ClusterConnection;
use deadpool_redis::redis::{
    AsyncConnectionConfig, Cmd, ConnectionInfo, IntoConnectionInfo, Pipeline, RedisFuture,
    RedisResult, Value,
};
use deadpool_redis::Runtime;
use futures::future::{BoxFuture, FutureExt, Shared};

use crate::config::{redact_url, RedisConfig};
use crate::error;

/// Parses `url` (config field `field`) and applies the config's password and database.
pub(crate) fn connection_info(
    config: &RedisConfig,
    field: &str,
    url: &str,
) -> Result<ConnectionInfo> {
    let info = url.into_connection_info().map_err(|e| {
        let hint = if url.starts_with("rediss://") && !cfg!(feature = "tls") {
            " (rediss:// needs the crate feature `tls`)"
        } else {
            ""
        };
        error::config(field, format!("cannot use `{}`: {e}{hint}", redact_url(url)))
    })?;
    let mut settings = info.redis_settings().clone();
    if let Some(password) = &config.password {
        settings = settings.set_password(password);
    }
    if let Some(db) = config.db {
        settings = settings.set_db(db);
    }
    Ok(info.set_redis_settings(settings))
}

/// A connection to use for one operation: a clone of a held multiplexed connection.
#[derive(Clone)]
pub(crate) enum Conn {
    /// Standalone Redis.
    Single(MultiplexedConnection),
    /// Redis Cluster.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

#[derive(Clone)]
enum Pool {
    Single(deadpool_redis::Pool),
    Cluster(deadpool_redis::cluster::Pool),
}

/// A connection checked out of the pool, kept for the life of its slot.
enum Pooled {
    Single(deadpool_redis::Connection),
    Cluster(deadpool_redis::cluster::Connection),
}

impl Pooled {
    fn conn(&self) -> Conn {
        match self {
            Pooled::Single(c) => Conn::Single(MultiplexedConnection::clone(c)),
            Pooled::Cluster(c) => Conn::Cluster(ClusterConnection::clone(c)),
        }
    }

    /// Removes the connection from the pool for good (it failed), so the pool makes a new one.
    fn discard(self) {
        match self {
            Pooled::Single(c) => drop(deadpool_redis::Connection::take(c)),
            Pooled::Cluster(c) => drop(deadpool_redis::cluster::Connection::take(c)),
        }
    }
}

type Connecting = Shared<BoxFuture<'static, Result<(Conn, u64)>>>;

/// A connection carrying this many requests makes the next request try the next slot.
const SPREAD_AT: usize = 4;

enum SlotState {
    Empty,
    Connecting(Connecting),
    Ready { conn: Conn, pooled: Pooled, generation: u64 },
}

/// One held connection (or none yet), how many requests it carries, and whether a probe of
/// it runs.
struct Slot {
    state: Mutex<SlotState>,
    in_flight: AtomicUsize,
    probing: AtomicBool,
}

/// Counts a request in flight on a slot until dropped (also on timeout or cancellation).
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        InFlight(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The connections of one store or backplane.
pub(crate) struct Connections {
    tier: Arc<str>,
    pool: Pool,
    slots: Box<[Slot]>,
    generation: AtomicU64,
    timeout: Duration,
    connect_timeout: Duration,
    cluster: bool,
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ready = self
            .slots
            .iter()
            .filter(|s| matches!(*lock(&s.state), SlotState::Ready { .. }))
            .count();
        f.debug_struct("Connections")
            .field("cluster", &self.cluster)
            .field("slots", &self.slots.len())
            .field("ready", &ready)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

fn lock(slot: &Mutex<SlotState>) -> MutexGuard<'_, SlotState> {
    slot.lock().unwrap_or_else(|e| e.into_inner())
}

impl Connections {
    /// Builds the pool; connects nothing (connections are opened by the first operations).
    pub(crate) fn new(config: &RedisConfig, slots: usize) -> Result<Arc<Self>> {
        config.validate()?;
        #[cfg(feature = "tls")]
        install_crypto_provider();
        let connect_timeout = config.connect_timeout();
        let pool = if config.is_cluster() {
            let nodes = config
                .cluster_urls
                .iter()
                .map(|url| connection_info(config, "cluster_urls", url))
                .collect::<Result<Vec<_>>>()?;
            let manager = deadpool_redis::cluster::Manager::new(nodes, false)
                .map_err(|e| error::config("cluster_urls", e))?;
            let pool = deadpool_redis::cluster::Pool::builder(manager)
                .max_size(slots)
                .runtime(Runtime::Tokio1)
                .wait_timeout(Some(connect_timeout))
                .create_timeout(Some(connect_timeout))
                .recycle_timeout(Some(connect_timeout))
                .build()
                .map_err(|e| error::config("pool_size", e))?;
            Pool::Cluster(pool)
        } else {
            let info = connection_info(config, "url", &config.url)?;
            // The store enforces its own per-operation time limit; the connection's own
            // response timeout is off so that limit is the only one.
            let connection_config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(connect_timeout))
                .set_response_timeout(None);
            let manager = deadpool_redis::Manager::new_with_config(info, connection_config)
                .map_err(|e| error::config("url", e))?;
            let pool = deadpool_redis::Pool::builder(manager)
                .max_size(slots)
                .runtime(Runtime::Tokio1)
                .wait_timeout(Some(connect_timeout))
                .create_timeout(Some(connect_timeout))
                .recycle_timeout(Some(connect_timeout))
                .build()
                .map_err(|e| error::config("pool_size", e))?;
            Pool::Single(pool)
        };
        Ok(Arc::new(Connections {
            tier: Arc::from(config.name.as_str()),
            pool,
            slots: (0..slots)
                .map(|_| Slot {
                    state: Mutex::new(SlotState::Empty),
                    in_flight: AtomicUsize::new(0),
                    probing: AtomicBool::new(false),
                })
                .collect(),
            generation: AtomicU64::new(0),
            timeout: config.timeout(),
            connect_timeout,
            cluster: config.is_cluster(),
        }))
    }

    /// Starts connecting the first slot in the background, without waiting.
    pub(crate) fn warm_up(self: &Arc<Self>) {
        let mut state = lock(&self.slots[0].state);
        if let SlotState::Empty = *state {
            *state = SlotState::Connecting(self.spawn_connect(0));
        }
    }

    pub(crate) fn tier(&self) -> &str {
        &self.tier
    }

    /// Runs `f` on a connection within the per-operation time limit. A connection-level error
    /// makes the slot drop its connection, so the next use reconnects; a timeout makes the slot
    /// probe its connection (see the module documentation).
    pub(crate) async fn run<T, F, Fut>(self: &Arc<Self>, op: &str, f: F) -> Result<T>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let mut picked: Option<(usize, u64)> = None;
        let picked_ref = &mut picked;
        let attempt = async move {
            let (conn, slot, generation) = self.acquire().await?;
            *picked_ref = Some((slot, generation));
            let _in_flight = InFlight::new(&self.slots[slot].in_flight);
            f(conn).await.map_err(|e| {
                if error::is_connection_error(&e) {
                    self.discard(slot, generation);
                }
                error::backend(&self.tier, op, e)
            })
        };
        let outcome = tokio::time::timeout(self.timeout, attempt).await;
        match outcome {
            Ok(result) => result,
            Err(_elapsed) => {
                if let Some((slot, generation)) = picked {
                    self.probe(slot, generation);
                }
                Err(error::timeout(&self.tier, op, self.timeout))
            }
        }
    }

    /// The slot for the next request: the first with fewer than [`SPREAD_AT`] requests in
    /// flight, else the least busy.
    fn pick(&self) -> usize {
        let mut least = (usize::MAX, 0);
        for (i, slot) in self.slots.iter().enumerate() {
            let load = slot.in_flight.load(Ordering::Relaxed);
            if load < SPREAD_AT {
                return i;
            }
            if load < least.0 {
                least = (load, i);
            }
        }
        least.1
    }

    /// A connection from the picked slot, or from any ready slot while that one connects.
    async fn acquire(self: &Arc<Self>) -> Result<(Conn, usize, u64)> {
        let start = self.pick();
        let pending = {
            let mut state = lock(&self.slots[start].state);
            match &*state {
                SlotState::Ready { conn, generation, .. } => {
                    return Ok((conn.clone(), start, *generation));
                }
                SlotState::Connecting(pending) => pending.clone(),
                SlotState::Empty => {
                    let pending = self.spawn_connect(start);
                    *state = SlotState::Connecting(pending.clone());
                    pending
                }
            }
        };
        let n = self.slots.len();
        for k in 1..n {
            let i = (start + k) % n;
            if let SlotState::Ready { conn, generation, .. } = &*lock(&self.slots[i].state) {
                return Ok((conn.clone(), i, *generation));
            }
        }
        let (conn, generation) = pending.await?;
        Ok((conn, start, generation))
    }

    /// Checks a connection out of the pool in a task of its own and puts it into slot `i`.
    fn spawn_connect(self: &Arc<Self>, i: usize) -> Connecting {
        let weak: Weak<Self> = Arc::downgrade(self);
        let pool = self.pool.clone();
        let tier = self.tier.clone();
        let connect_timeout = self.connect_timeout;
        let task = tokio::spawn(async move {
            let checked_out = match pool {
                Pool::Single(pool) => pool
                    .get()
                    .await
                    .map(Pooled::Single)
                    .map_err(|e| error::pool(&tier, e, connect_timeout)),
                Pool::Cluster(pool) => pool
                    .get()
                    .await
                    .map(Pooled::Cluster)
                    .map_err(|e| error::cluster_pool(&tier, e, connect_timeout)),
            };
            let Some(this) = weak.upgrade() else {
                return Err(error::backend_msg(&tier, "the redis store was dropped"));
            };
            let mut state = lock(&this.slots[i].state);
            match checked_out {
                Ok(pooled) => {
                    let generation = this.generation.fetch_add(1, Ordering::Relaxed) + 1;
                    let conn = pooled.conn();
                    *state = SlotState::Ready { conn: conn.clone(), pooled, generation };
                    Ok((conn, generation))
                }
                Err(e) => {
                    *state = SlotState::Empty;
                    tracing::debug!(tier = %tier, error = %e, "redis connect failed");
                    Err(e)
                }
            }
        });
        let tier = self.tier.clone();
        async move {
            task.await.unwrap_or_else(|e| {
                Err(error::backend_msg(&tier, format!("redis connect task failed: {e}")))
            })
        }
        .boxed()
        .shared()
    }

    /// How long a probe waits for `PING` after a time-out before the connection counts as
    /// broken: as long as opening a new connection and one operation on it may take, since a
    /// new connection could not do better.
    pub(crate) fn probe_limit(&self) -> Duration {
        self.connect_timeout + self.timeout
    }

    /// Starts a probe of slot `i`'s connection of `generation` (after an operation on it timed
    /// out), unless one runs: a `PING` on that connection; no answer within
    /// [`probe_limit`](Self::probe_limit), or a connection-level error, drops it.
    fn probe(self: &Arc<Self>, i: usize, generation: u64) {
        let conn = match &*lock(&self.slots[i].state) {
            SlotState::Ready { conn, generation: g, .. } if *g == generation => conn.clone(),
            _ => return,
        };
        if self.slots[i].probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak: Weak<Self> = Arc::downgrade(self);
        let limit = self.probe_limit();
        tokio::spawn(async move {
            let mut conn = conn;
            let answer = tokio::time::timeout(
                limit,
                deadpool_redis::redis::cmd("PING").query_async::<Value>(&mut conn),
            )
            .await;
            let Some(this) = weak.upgrade() else { return };
            let broken = match &answer {
                Ok(Ok(_)) => false,
                Ok(Err(e)) => error::is_connection_error(e) || e.is_timeout(),
                Err(_elapsed) => true,
            };
            if broken {
                tracing::debug!(tier = %this.tier, slot = i, "redis connection failed its probe");
                this.discard(i, generation);
            }
            this.slots[i].probing.store(false, Ordering::Release);
        });
    }

    /// Drops slot `i`'s connection if it is still the one of `generation`.
    fn discard(&self, i: usize, generation: u64) {
        let taken = {
            let mut state = lock(&self.slots[i].state);
            match &*state {
                SlotState::Ready { generation: g, .. } if *g == generation => {
                    std::mem::replace(&mut *state, SlotState::Empty)
                }
                _ => return,
            }
        };
        if let SlotState::Ready { pooled, .. } = taken {
            tracing::debug!(tier = %self.tier, slot = i, "dropping a failed redis connection");
            pooled.discard();
        }
    }
}

/// redis-rs builds its rustls client config with the process-wide default crypto provider;
/// install ring's unless the application installed one already.
#[cfg(feature = "tls")]
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
