//! [`RedisStore`], its builder, and the [`Store`] implementation.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aurelis_cache_core::{Capabilities, Result, ScanPage, Store};
use bytes::Bytes;
use deadpool_redis::redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use deadpool_redis::redis::{self, from_redis_value, RedisError, RedisResult, Value};
use futures::future::try_join_all;

use crate::config::RedisConfig;
use crate::conn::{Conn, Connections};
use crate::error;

/// Longest TTL sent to Redis (about 2,200 years); longer ones are capped so `PX` never
/// overflows the server's clock arithmetic.
const MAX_TTL_MS: u128 = 1 << 46;

/// Settings for a [`RedisStore`], mirroring [`RedisConfig`]; [`RedisStoreBuilder::build`]
/// validates them.
///
/// # Examples
///
/// ```
/// use aurelis_cache_core::ErrorKind;
/// use aurelis_cache_redis::RedisStore;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let builder = RedisStore::builder()
///     .name("shared")
///     .url("redis://cache.internal:6379/")
///     .password("s3cret")
///     .key_prefix("app1:")
///     .timeout_ms(100);
/// assert_eq!(builder.config().key_prefix, "app1:");
/// assert!(!format!("{builder:?}").contains("s3cret")); // never shown
///
/// // `build` validates the settings before any connection, naming the field at fault.
/// let err = builder.timeout_ms(0).build().await.unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::Config);
/// assert!(err.message().contains("`timeout_ms`"));
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct RedisStoreBuilder {
    config: RedisConfig,
}

impl RedisStoreBuilder {
    /// A builder with [`RedisConfig::default`] settings.
    pub fn new() -> Self {
        RedisStoreBuilder::default()
    }

    /// A builder starting from `config`.
    pub fn from_config(config: RedisConfig) -> Self {
        RedisStoreBuilder { config }
    }

    /// The settings so far.
    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// See [`RedisConfig::name`].
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// See [`RedisConfig::url`].
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.config.url = url.into();
        self
    }

    /// See [`RedisConfig::cluster_urls`]; a non-empty list selects Redis Cluster.
    pub fn cluster_urls<I, S>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config.cluster_urls = urls.into_iter().map(Into::into).collect();
        self
    }

    /// See [`RedisConfig::password`].
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.config.password = Some(password.into());
        self
    }

    /// See [`RedisConfig::db`].
    pub fn db(mut self, db: i64) -> Self {
        self.config.db = Some(db);
        self
    }

    /// See [`RedisConfig::pool_size`].
    pub fn pool_size(mut self, pool_size: usize) -> Self {
        self.config.pool_size = pool_size;
        self
    }

    /// See [`RedisConfig::timeout_ms`].
    pub fn timeout_ms(mut self, timeout_ms: u64) -> Self {
        self.config.timeout_ms = timeout_ms;
        self
    }

    /// See [`RedisConfig::connect_timeout_ms`].
    pub fn connect_timeout_ms(mut self, connect_timeout_ms: u64) -> Self {
        self.config.connect_timeout_ms = connect_timeout_ms;
        self
    }

    /// See [`RedisConfig::key_prefix`].
    pub fn key_prefix(mut self, key_prefix: impl Into<String>) -> Self {
        self.config.key_prefix = key_prefix.into();
        self
    }

    /// See [`RedisConfig::scan_count`].
    pub fn scan_count(mut self, scan_count: usize) -> Self {
        self.config.scan_count = scan_count;
        self
    }

    /// Validates the settings and builds the store.
    ///
    /// Building does not wait for Redis: connections are opened in the background and by the
    /// first operations, so a cache can start while Redis is down; operations fail (with
    /// [`ErrorKind::Backend`](aurelis_cache_core::ErrorKind::Backend) or
    /// [`ErrorKind::Timeout`](aurelis_cache_core::ErrorKind::Timeout)) until it is back.
    /// Must run inside a Tokio runtime.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`](aurelis_cache_core::ErrorKind::Config) naming the field, for an
    /// unparseable URL, a zero pool size or time limit, an empty name, or a database other
    /// than 0 on a cluster.
    pub async fn build(self) -> Result<RedisStore> {
        RedisStore::from_config(&self.config).await
    }
}

/// The shared tier on Redis, standalone or Redis Cluster, through deadpool-redis.
///
/// See the [crate documentation](crate) for key prefixes, time limits and outage behaviour.
///
/// # Examples
///
/// ```
/// use aurelis_cache_core::Store;
/// use aurelis_cache_redis::{RedisConfig, RedisStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> aurelis_cache_core::Result<()> {
/// # let server = aurelis_redis_harness::RedisServer::start().unwrap();
/// let mut config = RedisConfig::default();
/// config.url = "redis://127.0.0.1:6380/".into();
/// # config.url = server.url(); // a throwaway local server
/// let store = RedisStore::from_config(&config).await?;
/// store.set("k", "v".into(), Some(std::time::Duration::from_secs(60))).await?;
/// assert_eq!(store.get("k").await?.as_deref(), Some(&b"v"[..]));
/// # Ok(()) }
/// ```
pub struct RedisStore {
    conns: Arc<Connections>,
    config: RedisConfig,
    escaped_prefix: String,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("name", &self.config.name)
            .field("cluster", &self.config.is_cluster())
            .field("key_prefix", &self.config.key_prefix)
            .field("connections", &self.conns)
            .finish()
    }
}

/// One `SCAN` target: the server, or one master of the cluster.
enum Target {
    Server,
    Node { host: String, port: u16 },
}

impl RedisStore {
    /// Settings for a new store.
    ///
    /// # Examples
    ///
    /// ```
    /// let builder = aurelis_cache_redis::RedisStore::builder().key_prefix("app:");
    /// assert_eq!(builder.config().key_prefix, "app:");
    /// ```
    pub fn builder() -> RedisStoreBuilder {
        RedisStoreBuilder::new()
    }

    /// Builds a store from `config`; see [`RedisStoreBuilder::build`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use aurelis_cache_redis::{RedisConfig, RedisStore};
    /// let mut config = RedisConfig::default();
    /// config.url = "definitely not a url".into();
    /// let err = RedisStore::from_config(&config).await.unwrap_err();
    /// assert!(err.message().contains("`url`"));
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`RedisStoreBuilder::build`].
    pub async fn from_config(config: &RedisConfig) -> Result<RedisStore> {
        let conns = Connections::new(config, config.pool_size)?;
        conns.warm_up();
        Ok(RedisStore {
            conns,
            escaped_prefix: escape_glob(&config.key_prefix),
            config: config.clone(),
        })
    }

    /// The connections (for the lease commands).
    pub(crate) fn conns(&self) -> &Arc<Connections> {
        &self.conns
    }

    /// The settings the store was built with.
    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// Whether the store talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.config.is_cluster()
    }

    /// Sends `PING` (to every master on a cluster), for health checks.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Backend`](aurelis_cache_core::ErrorKind::Backend) or
    /// [`ErrorKind::Timeout`](aurelis_cache_core::ErrorKind::Timeout) when Redis does not
    /// answer.
    pub async fn ping(&self) -> Result<()> {
        self.conns
            .run("PING", |mut c| async move { redis::cmd("PING").query_async::<()>(&mut c).await })
            .await
    }

    /// The store's key of a Redis key: without the key prefix; `None` for a key that is not
    /// UTF-8 or not under the prefix (not one of this store's keys).
    fn store_key(&self, redis_key: Vec<u8>) -> Option<String> {
        let key = String::from_utf8(redis_key).ok()?;
        if self.config.key_prefix.is_empty() {
            return Some(key);
        }
        key.strip_prefix(self.config.key_prefix.as_str()).map(str::to_owned)
    }

    fn full_key<'a>(&self, key: &'a str) -> Cow<'a, str> {
        if self.config.key_prefix.is_empty() {
            Cow::Borrowed(key)
        } else {
            Cow::Owned(format!("{}{key}", self.config.key_prefix))
        }
    }

    /// The targets to `SCAN`: the server, or every master of the cluster.
    async fn targets(&self) -> Result<Vec<Target>> {
        if !self.is_cluster() {
            return Ok(vec![Target::Server]);
        }
        let masters = self
            .conns
            .run("CLUSTER SLOTS", |c| async move {
                let Conn::Cluster(mut c) = c else { return Err(not_cluster()) };
                let mut cmd = redis::cmd("CLUSTER");
                cmd.arg("SLOTS");
                let reply = c
                    .route_command(cmd, RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random))
                    .await?;
                parse_masters(reply)
            })
            .await?;
        // Sorted, so an index into the list names the same master from one call to the next
        // (the cursor of `scan_prefix` holds one) while the topology does not change.
        let mut masters = masters;
        masters.sort();
        Ok(masters.into_iter().map(|(host, port)| Target::Node { host, port }).collect())
    }

    /// One `SCAN` round trip on `target` with `COUNT count`: the next cursor and the keys it
    /// returned.
    async fn scan_step(
        &self,
        target: &Target,
        cursor: u64,
        pattern: &str,
        count: usize,
    ) -> Result<(u64, Vec<Vec<u8>>)> {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(count);
        match target {
            Target::Server => {
                self.conns.run("SCAN", |mut c| async move { cmd.query_async(&mut c).await }).await
            }
            Target::Node { host, port } => {
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                    host: host.clone(),
                    port: *port,
                });
                self.conns
                    .run("SCAN", |c| async move {
                        let Conn::Cluster(mut c) = c else { return Err(not_cluster()) };
                        Ok(from_redis_value(c.route_command(cmd, routing).await?)?)
                    })
                    .await
            }
        }
    }

    /// Hands every batch of keys matching `pattern`, on every target, to `batch`. A key may
    /// come twice (`SCAN` only guarantees "at least once").
    async fn scan(&self, pattern: &str, batch: &mut Batch) -> Result<()> {
        for target in self.targets().await? {
            let mut cursor = 0;
            loop {
                let (next, keys) =
                    self.scan_step(&target, cursor, pattern, self.config.scan_count).await?;
                if !keys.is_empty() {
                    batch.take(self, keys).await?;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(())
    }

    /// `UNLINK`s `keys` (in one command; split by slot on a cluster); how many were removed.
    async fn unlink(&self, keys: Vec<Vec<u8>>) -> Result<u64> {
        let mut cmd = redis::cmd("UNLINK");
        cmd.arg(keys);
        self.conns.run("UNLINK", |mut c| async move { cmd.query_async::<u64>(&mut c).await }).await
    }

    /// Removes every key matching the Redis glob `pattern` (already prefixed).
    async fn delete_matching(&self, pattern: &str) -> Result<u64> {
        let mut batch = Batch::Unlink(0);
        self.scan(pattern, &mut batch).await?;
        match batch {
            Batch::Unlink(removed) => Ok(removed),
            _ => unreachable!("the batch kind does not change"),
        }
    }

    /// Sum of `MEMORY USAGE` of `keys` (missing keys count 0).
    async fn memory_usage(&self, keys: Vec<Vec<u8>>) -> Result<u64> {
        self.conns
            .run("MEMORY USAGE", |c| async move {
                let sizes: Vec<Option<u64>> = match c {
                    Conn::Single(mut c) => {
                        let mut pipe = redis::pipe();
                        for key in &keys {
                            pipe.cmd("MEMORY").arg("USAGE").arg(key);
                        }
                        pipe.query_async(&mut c).await?
                    }
                    Conn::Cluster(c) => {
                        try_join_all(keys.iter().map(|key| {
                            let mut c = c.clone();
                            async move {
                                redis::cmd("MEMORY")
                                    .arg("USAGE")
                                    .arg(key)
                                    .query_async::<Option<u64>>(&mut c)
                                    .await
                            }
                        }))
                        .await?
                    }
                };
                Ok(sizes.into_iter().flatten().sum())
            })
            .await
    }
}

/// What [`RedisStore::scan`] does with each batch of keys. None keeps more than one batch in
/// memory.
enum Batch {
    /// Unlinks each batch and counts what was removed.
    Unlink(u64),
    /// Counts keys (a key `SCAN` returns twice counts twice: an estimate, see `len`).
    Count(u64),
    /// Sums `MEMORY USAGE` of each batch (a key seen twice by `SCAN` counts twice: this is
    /// an estimate).
    MemoryUsage(u64),
}

impl Batch {
    async fn take(&mut self, store: &RedisStore, keys: Vec<Vec<u8>>) -> Result<()> {
        match self {
            Batch::Unlink(removed) => *removed += store.unlink(keys).await?,
            Batch::Count(n) => *n += keys.len() as u64,
            Batch::MemoryUsage(bytes) => *bytes += store.memory_usage(keys).await?,
        }
        Ok(())
    }
}

/// Round trips one `scan_prefix` page may take while they find no key.
const SCAN_ROUNDS_PER_PAGE: usize = 16;

/// Parses a `scan_prefix` cursor: a Redis cursor (standalone), or `<master>:<cursor>` with
/// the index of a master in [`RedisStore::targets`] (cluster).
fn parse_cursor(text: &str, targets: usize) -> Option<(usize, u64)> {
    let (target, cursor) = match text.split_once(':') {
        Some((target, cursor)) => (target.parse().ok()?, cursor),
        None => (0, text),
    };
    if target >= targets {
        return None;
    }
    Some((target, cursor.parse().ok()?))
}

fn scan_cursor_error(tier: &str, cursor: &str) -> aurelis_cache_core::Error {
    aurelis_cache_core::Error::new(
        aurelis_cache_core::ErrorKind::Usage,
        format!("`{cursor}` is not a scan cursor of this store (or the cluster changed)"),
    )
    .with_tier(tier)
}

fn not_cluster() -> RedisError {
    RedisError::from((redis::ErrorKind::Client, "expected a cluster connection"))
}

/// The distinct master addresses in a `CLUSTER SLOTS` reply.
fn parse_masters(reply: Value) -> RedisResult<Vec<(String, u16)>> {
    let ranges: Vec<Vec<Value>> = from_redis_value(reply)?;
    let mut masters: Vec<(String, u16)> = Vec::new();
    for range in ranges {
        // [start, end, [host, port, id, ...], replicas...]
        let Some(master) = range.into_iter().nth(2) else { continue };
        let mut fields = from_redis_value::<Vec<Value>>(master)?.into_iter();
        let (Some(host), Some(port)) = (fields.next(), fields.next()) else { continue };
        let host: String = from_redis_value(host)?;
        let port: u16 = from_redis_value(port)?;
        if !masters.iter().any(|(h, p)| *h == host && *p == port) {
            masters.push((host, port));
        }
    }
    if masters.is_empty() {
        return Err(RedisError::from((redis::ErrorKind::Client, "CLUSTER SLOTS named no master")));
    }
    Ok(masters)
}

/// Sum of `used_memory_dataset` over an `INFO memory` reply (one text, or a map of node to
/// text on a cluster).
fn parse_used_memory_dataset(reply: Value) -> RedisResult<u64> {
    fn from_text(text: &str) -> u64 {
        text.lines()
            .find_map(|line| line.strip_prefix("used_memory_dataset:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }
    match reply {
        Value::Map(nodes) => {
            let mut total = 0;
            for (_, info) in nodes {
                total += from_text(&from_redis_value::<String>(info)?);
            }
            Ok(total)
        }
        other => Ok(from_text(&from_redis_value::<String>(other)?)),
    }
}

/// `prefix` with the Redis glob characters escaped, so `SCAN MATCH` takes it literally.
pub(crate) fn escape_glob(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 4);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// How a TTL is sent: none (plain `SET`), `PX` milliseconds, or already expired.
enum Ttl {
    Keep,
    Px(u64),
    Expired,
}

fn ttl_arg(ttl: Option<Duration>) -> Ttl {
    match ttl {
        None => Ttl::Keep,
        Some(ttl) if ttl.is_zero() => Ttl::Expired,
        Some(ttl) => {
            // Round up, so a sub-millisecond TTL still stores the entry briefly.
            let ms = ttl.as_nanos().div_ceil(1_000_000).min(MAX_TTL_MS);
            Ttl::Px(ms as u64)
        }
    }
}

#[async_trait]
impl Store for RedisStore {
    fn name(&self) -> &str {
        self.conns.tier()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
            .with_shared(true)
            .with_native_ttl(true)
            .with_conditional_write(true)
            .with_scan(true)
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.full_key(key).as_ref());
        let value = self
            .conns
            .run("GET", |mut c| async move { cmd.query_async::<Option<Vec<u8>>>(&mut c).await })
            .await?;
        Ok(value.map(Bytes::from))
    }

    async fn set(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<()> {
        let key = self.full_key(key);
        let cmd = match ttl_arg(ttl) {
            Ttl::Expired => {
                // Already expired: nothing may be served, so the old entry goes too.
                let mut cmd = redis::cmd("UNLINK");
                cmd.arg(key.as_ref());
                return self
                    .conns
                    .run("UNLINK", |mut c| async move { cmd.query_async::<()>(&mut c).await })
                    .await;
            }
            Ttl::Keep => {
                let mut cmd = redis::cmd("SET");
                cmd.arg(key.as_ref()).arg(value.as_ref());
                cmd
            }
            Ttl::Px(ms) => {
                let mut cmd = redis::cmd("SET");
                cmd.arg(key.as_ref()).arg(value.as_ref()).arg("PX").arg(ms);
                cmd
            }
        };
        self.conns.run("SET", |mut c| async move { cmd.query_async::<()>(&mut c).await }).await
    }

    async fn set_if_absent(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<bool> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.full_key(key).as_ref()).arg(value.as_ref()).arg("NX");
        match ttl_arg(ttl) {
            // Already expired: there is nothing to write, and an entry that is there stays.
            Ttl::Expired => return Ok(false),
            Ttl::Keep => {}
            Ttl::Px(ms) => {
                cmd.arg("PX").arg(ms);
            }
        }
        // `OK` when written, nil when the key exists (of any type).
        let written = self
            .conns
            .run("SET NX", |mut c| async move { cmd.query_async::<Option<String>>(&mut c).await })
            .await?;
        Ok(written.is_some())
    }

    async fn scan_prefix(
        &self,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<ScanPage> {
        let count = limit.max(1);
        let pattern = format!("{}{}*", self.escaped_prefix, escape_glob(prefix));
        let targets = self.targets().await?;
        let (mut target, mut redis_cursor) = match cursor {
            None => (0, 0),
            Some(text) => parse_cursor(text, targets.len())
                .ok_or_else(|| scan_cursor_error(self.name(), text))?,
        };
        let mut keys = Vec::new();
        // `SCAN` with `MATCH` may answer no key for many round trips when few keys match:
        // go on for a few round trips before handing back an empty page.
        for _ in 0..SCAN_ROUNDS_PER_PAGE {
            let (next, batch) =
                self.scan_step(&targets[target], redis_cursor, &pattern, count).await?;
            keys.extend(batch.into_iter().filter_map(|key| self.store_key(key)));
            redis_cursor = next;
            if redis_cursor == 0 {
                target += 1;
                if target == targets.len() {
                    return Ok(ScanPage::new(keys, None));
                }
            }
            if !keys.is_empty() {
                break;
            }
        }
        let next = if self.is_cluster() {
            format!("{target}:{redis_cursor}")
        } else {
            redis_cursor.to_string()
        };
        Ok(ScanPage::new(keys, Some(next)))
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        let mut cmd = redis::cmd("UNLINK");
        cmd.arg(self.full_key(key).as_ref());
        let removed = self
            .conns
            .run("UNLINK", |mut c| async move { cmd.query_async::<u64>(&mut c).await })
            .await?;
        Ok(removed > 0)
    }

    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        // One MGET; on a cluster redis-rs splits it by slot and puts the answers back in
        // order.
        let mut cmd = redis::cmd("MGET");
        for key in keys {
            cmd.arg(self.full_key(key).as_ref());
        }
        let values =
            self.conns
                .run("MGET", |mut c| async move {
                    cmd.query_async::<Vec<Option<Vec<u8>>>>(&mut c).await
                })
                .await?;
        if values.len() != keys.len() {
            return Err(error::backend_msg(
                self.name(),
                format!("MGET of {} keys answered {} values", keys.len(), values.len()),
            ));
        }
        Ok(values.into_iter().map(|v| v.map(Bytes::from)).collect())
    }

    async fn set_many(&self, entries: &[(&str, Bytes)], ttl: Option<Duration>) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let ttl = ttl_arg(ttl);
        if let Ttl::Expired = ttl {
            for (key, _) in entries {
                self.delete(key).await?;
            }
            return Ok(());
        }
        let cmds: Vec<redis::Cmd> = entries
            .iter()
            .map(|(key, value)| {
                let mut cmd = redis::cmd("SET");
                cmd.arg(self.full_key(key).as_ref()).arg(value.as_ref());
                if let Ttl::Px(ms) = ttl {
                    cmd.arg("PX").arg(ms);
                }
                cmd
            })
            .collect();
        self.conns
            .run("SET (batch)", |c| async move {
                match c {
                    // One pipeline, one round trip.
                    Conn::Single(mut c) => {
                        let mut pipe = redis::pipe();
                        for cmd in cmds {
                            pipe.add_command(cmd).ignore();
                        }
                        pipe.query_async::<()>(&mut c).await
                    }
                    // A pipeline cannot span slots on a cluster: the commands go out
                    // concurrently on the multiplexed node connections instead.
                    Conn::Cluster(c) => {
                        try_join_all(cmds.into_iter().map(|cmd| {
                            let mut c = c.clone();
                            async move { cmd.query_async::<()>(&mut c).await }
                        }))
                        .await?;
                        Ok(())
                    }
                }
            })
            .await
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        let pattern = format!("{}{}*", self.escaped_prefix, escape_glob(prefix));
        self.delete_matching(&pattern).await
    }

    async fn delete_pattern(&self, pattern: &str) -> Result<u64> {
        let pattern = format!("{}{pattern}", self.escaped_prefix);
        self.delete_matching(&pattern).await
    }

    async fn clear(&self) -> Result<()> {
        if !self.config.key_prefix.is_empty() {
            let pattern = format!("{}*", self.escaped_prefix);
            self.delete_matching(&pattern).await?;
            return Ok(());
        }
        // On a cluster redis-rs sends FLUSHDB to every master and needs all to succeed.
        self.conns
            .run("FLUSHDB", |mut c| async move {
                redis::cmd("FLUSHDB").arg("ASYNC").query_async::<()>(&mut c).await
            })
            .await
    }

    async fn len(&self) -> Result<u64> {
        if self.config.key_prefix.is_empty() {
            // On a cluster redis-rs sends DBSIZE to every master and sums the answers.
            return self
                .conns
                .run("DBSIZE", |mut c| async move {
                    redis::cmd("DBSIZE").query_async::<u64>(&mut c).await
                })
                .await;
        }
        let mut batch = Batch::Count(0);
        self.scan(&format!("{}*", self.escaped_prefix), &mut batch).await?;
        match batch {
            Batch::Count(n) => Ok(n),
            _ => unreachable!("the batch kind does not change"),
        }
    }

    async fn size_bytes(&self) -> Result<u64> {
        if self.config.key_prefix.is_empty() {
            return self
                .conns
                .run("INFO memory", |mut c| async move {
                    let reply =
                        redis::cmd("INFO").arg("memory").query_async::<Value>(&mut c).await?;
                    parse_used_memory_dataset(reply)
                })
                .await;
        }
        let mut batch = Batch::MemoryUsage(0);
        self.scan(&format!("{}*", self.escaped_prefix), &mut batch).await?;
        match batch {
            Batch::MemoryUsage(bytes) => Ok(bytes),
            _ => unreachable!("the batch kind does not change"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_glob_characters() {
        assert_eq!(escape_glob("a*b?c[d]e\\f"), "a\\*b\\?c\\[d\\]e\\\\f");
        assert_eq!(escape_glob("plain:prefix:"), "plain:prefix:");
        let escaped = format!("{}*", escape_glob("odd:star*"));
        assert!(aurelis_cache_core::glob_match(&escaped, "odd:star*q?[x]"));
        assert!(!aurelis_cache_core::glob_match(&escaped, "odd:starry"));
    }

    #[test]
    fn scan_cursors() {
        assert_eq!(parse_cursor("17", 1), Some((0, 17)));
        assert_eq!(parse_cursor("2:17", 3), Some((2, 17)));
        assert_eq!(parse_cursor("3:17", 3), None, "no fourth master");
        assert_eq!(parse_cursor("x", 1), None);
        assert_eq!(parse_cursor("1:-4", 3), None);
    }

    #[test]
    fn ttl_arguments() {
        assert!(matches!(ttl_arg(None), Ttl::Keep));
        assert!(matches!(ttl_arg(Some(Duration::ZERO)), Ttl::Expired));
        assert!(matches!(ttl_arg(Some(Duration::from_micros(10))), Ttl::Px(1)));
        assert!(matches!(ttl_arg(Some(Duration::from_millis(1500))), Ttl::Px(1500)));
        assert!(matches!(ttl_arg(Some(Duration::MAX)), Ttl::Px(ms) if ms as u128 == MAX_TTL_MS));
    }

    #[test]
    fn parses_info_and_cluster_slots() {
        let info = "# Memory\r\nused_memory:100\r\nused_memory_dataset:42\r\n";
        assert_eq!(
            parse_used_memory_dataset(Value::BulkString(info.as_bytes().to_vec())).expect("one"),
            42
        );
        let map = Value::Map(vec![
            (Value::BulkString(b"a:1".to_vec()), Value::BulkString(info.as_bytes().to_vec())),
            (Value::BulkString(b"b:2".to_vec()), Value::BulkString(info.as_bytes().to_vec())),
        ]);
        assert_eq!(parse_used_memory_dataset(map).expect("map"), 84);

        let node = |port: i64| {
            Value::Array(vec![
                Value::BulkString(b"127.0.0.1".to_vec()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let slots = Value::Array(vec![
            Value::Array(vec![Value::Int(0), Value::Int(5460), node(7000)]),
            Value::Array(vec![Value::Int(5461), Value::Int(10922), node(7001)]),
            Value::Array(vec![Value::Int(10923), Value::Int(16383), node(7000)]),
        ]);
        assert_eq!(
            parse_masters(slots).expect("slots"),
            vec![("127.0.0.1".to_owned(), 7000), ("127.0.0.1".to_owned(), 7001)]
        );
    }
}
