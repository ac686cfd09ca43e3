//! [`RedisBackplane`]: invalidations between cache instances over a Redis stream, and the
//! durable invalidation marks in a Redis hash.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aurelis_cache_core::{
    Backplane, BackplaneEvent, BackplaneHandler, Invalidation, InvalidationMessage, Mark, Result,
};
use deadpool_redis::redis::cluster::ClusterClient;
use deadpool_redis::redis::{
    self, from_redis_value, AsyncConnectionConfig, ConnectionInfo, RedisResult, Value,
};
use tokio::task::AbortHandle;

use crate::config::RedisConfig;
use crate::conn::{connection_info, Conn, Connections};
use crate::error;

/// The version suffix of the stream name; it changes when the message format does, so
/// instances of different formats never read each other's messages.
const STREAM_FORMAT: &str = "v2";

/// The version suffix of the marks hash.
const MARKS_FORMAT: &str = "v1";

/// The stream field that holds a message's JSON.
const MESSAGE_FIELD: &str = "m";

/// The stream field of an anchor entry: written by a subscriber that finds the stream empty,
/// so it has an entry id to resume from; readers skip it.
const ANCHOR_FIELD: &str = "anchor";

/// First delay before a reconnect attempt; doubled after each failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// Longest delay between reconnect attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How long one `XREAD` blocks on the server. A reply (empty after this long) that does not
/// come within this plus the config's `timeout_ms` means the connection is dead (half-open),
/// so this also bounds how long a dead connection goes unnoticed.
const BLOCK: Duration = Duration::from_millis(1000);

/// Entries one `XREAD` returns at most.
const READ_COUNT: usize = 512;

/// Keeps `ARGV[2k]` as the value of field `ARGV[2k-1]` of hash `KEYS[1]` unless the field
/// holds a larger number already.
const STORE_MARKS: &str = r"
local written = 0
for i = 1, #ARGV, 2 do
  local current = tonumber(redis.call('HGET', KEYS[1], ARGV[i]))
  if current == nil or current < tonumber(ARGV[i + 1]) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    written = written + 1
  end
end
return written
";

/// Removes every field of hash `KEYS[1]` whose value is below `ARGV[1]` (or not a number).
const PRUNE_MARKS: &str = r"
local all = redis.call('HGETALL', KEYS[1])
local before = tonumber(ARGV[1])
local removed = 0
for i = 1, #all, 2 do
  local at = tonumber(all[i + 1])
  if at == nil or at < before then
    redis.call('HDEL', KEYS[1], all[i])
    removed = removed + 1
  end
end
return removed
";

/// Carries [`InvalidationMessage`]s between cache instances on a Redis stream, so a peer that
/// was disconnected replays what it missed, and keeps the durable invalidation [`Mark`]s.
///
/// Keys (the config's `key_prefix` does not apply to them, so a prefixed store's `clear`
/// never removes them):
///
/// - the stream `aurelis:{namespace}:{version}:invalidations:v2`, where `namespace` and
///   `version` are the cache's key namespace and key version, and `v2` the message format;
/// - the hash `aurelis:{namespace}:{version}:marks:v1` of marks.
///
/// Each is one key, so on a cluster each lives on the master of its slot (no operation spans
/// both).
///
/// - [`publish`](Backplane::publish) is `XADD <stream> MAXLEN ~ <backplane_max_len> * m
///   <message JSON>`, within the config's `timeout_ms`. It fails (`Backend`, `Timeout`)
///   while Redis is down: the caller retries or records the loss.
/// - [`subscribe`](Backplane::subscribe) returns at once and starts a task with a connection
///   of its own (a cluster connection on a cluster, which reads from the stream's master). It
///   connects with backoff (50 ms doubling to 2 s) and then loops on `XREAD COUNT 512 BLOCK
///   1000 STREAMS <stream> <last id>`, handing every entry to the handler as
///   [`BackplaneEvent::Invalidate`], in stream order, and remembering the last id. Entries
///   that do not parse are logged and skipped. Messages from the subscriber's own instance
///   are delivered too (the cache filters them by `origin`).
/// - Events around the connection:
///   - the first connection starts at the current end of the stream; it reports
///     [`BackplaneEvent::Reconnected`] if an attempt failed before it (messages may have been
///     published meanwhile), else nothing;
///   - a lost connection (an error, or an `XREAD` unanswered for 1 s + `timeout_ms`: a
///     half-open connection) is reported once as [`BackplaneEvent::Disconnected`]; a first
///     attempt that fails is reported the same way;
///   - after reconnecting, if the last entry it saw is still in the stream, nothing after it
///     was trimmed: it reports [`BackplaneEvent::Resumed`] and replays every entry since, in
///     order. Otherwise (trimmed by `MAXLEN`, the stream deleted, a server restarted empty,
///     `FLUSHALL`) it reports [`BackplaneEvent::Reconnected`] and goes on from the current
///     end.
/// - A subscriber that finds the stream empty adds an anchor entry (field `anchor`, skipped by
///   readers), so it has an id to resume from.
/// - [`store_marks`](Backplane::store_marks) keeps each mark in the hash (field: the mark's
///   invalidation as JSON, value: `at_ms`) with a Lua script that never lowers a value;
///   [`load_marks`](Backplane::load_marks) is `HGETALL` (fields that do not parse are logged
///   and skipped); [`prune_marks`](Backplane::prune_marks) removes, in one script, the fields
///   whose value is older than asked.
/// - Dropping the backplane stops its subscriber tasks.
///
/// Limits: a subscriber that falls behind by more than `backplane_max_len` entries while
/// connected loses the oldest; it notices (the last entry it saw is gone) and reports
/// `Reconnected`. A Redis without persistence that restarts loses the stream: subscribers
/// report `Reconnected`.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use aurelis_cache_core::{Backplane, BackplaneEvent, Invalidation, InvalidationMessage};
/// use aurelis_cache_redis::{RedisBackplane, RedisConfig};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> aurelis_cache_core::Result<()> {
/// # let server = aurelis_redis_harness::RedisServer::start().unwrap();
/// let mut config = RedisConfig::default();
/// config.url = "redis://cache.internal:6379/".into();
/// # config.url = server.url(); // a throwaway local server
/// let backplane = RedisBackplane::new(&config, "myapp", "v1")?;
/// assert_eq!(backplane.stream(), "aurelis:myapp:v1:invalidations:v2");
///
/// // A handler must not block: this one hands the events to a channel.
/// let (events, mut received) = tokio::sync::mpsc::unbounded_channel();
/// backplane.subscribe(Arc::new(move |event| drop(events.send(event)))).await?;
///
/// // Every message published after `subscribe` returns is delivered (to the publishing
/// // instance too: the cache skips its own messages by their origin).
/// let msg = InvalidationMessage::new("instance-a", Invalidation::Key("k".into()));
/// backplane.publish(&msg).await?;
/// let event = tokio::time::timeout(Duration::from_secs(10), received.recv()).await;
/// assert_eq!(event.unwrap(), Some(BackplaneEvent::Invalidate(msg)));
/// # Ok(()) }
/// ```
pub struct RedisBackplane {
    stream: String,
    marks: String,
    max_len: usize,
    publisher: Arc<Connections>,
    reader: Arc<ReaderParams>,
    tasks: Mutex<Vec<AbortHandle>>,
}

/// What a subscriber task needs, shared by every `subscribe` of one backplane.
struct ReaderParams {
    tier: String,
    stream: String,
    max_len: usize,
    nodes: Vec<ConnectionInfo>,
    cluster: bool,
    timeout: Duration,
    connect_timeout: Duration,
}

impl fmt::Debug for RedisBackplane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tasks = self.tasks.lock().map(|t| t.len()).unwrap_or(0);
        f.debug_struct("RedisBackplane")
            .field("stream", &self.stream)
            .field("marks", &self.marks)
            .field("max_len", &self.max_len)
            .field("cluster", &self.reader.cluster)
            .field("subscriptions", &tasks)
            .field("publisher", &self.publisher)
            .finish()
    }
}

impl RedisBackplane {
    /// The stream of `namespace` and key `version`:
    /// `aurelis:{namespace}:{version}:invalidations:v2`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(
    ///     aurelis_cache_redis::RedisBackplane::stream_for("shop", "v3"),
    ///     "aurelis:shop:v3:invalidations:v2"
    /// );
    /// ```
    pub fn stream_for(namespace: &str, version: &str) -> String {
        format!("aurelis:{namespace}:{version}:invalidations:{STREAM_FORMAT}")
    }

    /// The marks hash of `namespace` and key `version`: `aurelis:{namespace}:{version}:marks:v1`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(
    ///     aurelis_cache_redis::RedisBackplane::marks_key_for("shop", "v3"),
    ///     "aurelis:shop:v3:marks:v1"
    /// );
    /// ```
    pub fn marks_key_for(namespace: &str, version: &str) -> String {
        format!("aurelis:{namespace}:{version}:marks:{MARKS_FORMAT}")
    }

    /// A backplane on the Redis (or Redis Cluster) of `config`, for the instances sharing the
    /// key `namespace` and key `version`. Nothing connects until the first `publish` or
    /// `subscribe`.
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_cache_redis::{RedisBackplane, RedisConfig};
    /// let err = RedisBackplane::new(&RedisConfig::default(), "", "v1").unwrap_err();
    /// assert_eq!(err.kind(), aurelis_cache_core::ErrorKind::Config);
    /// assert!(err.message().contains("namespace"));
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`](aurelis_cache_core::ErrorKind::Config) for an empty namespace or
    /// version, or an invalid config (see [`RedisConfig::validate`]).
    pub fn new(config: &RedisConfig, namespace: &str, version: &str) -> Result<RedisBackplane> {
        if namespace.is_empty() {
            return Err(error::config("namespace", "must not be empty"));
        }
        if version.is_empty() {
            return Err(error::config("version", "must not be empty"));
        }
        config.validate()?;
        let nodes = if config.is_cluster() {
            config
                .cluster_urls
                .iter()
                .map(|url| connection_info(config, "cluster_urls", url))
                .collect::<Result<Vec<_>>>()?
        } else {
            vec![connection_info(config, "url", &config.url)?]
        };
        let stream = Self::stream_for(namespace, version);
        Ok(RedisBackplane {
            publisher: Connections::new(config, config.pool_size.min(2))?,
            reader: Arc::new(ReaderParams {
                tier: config.name.clone(),
                stream: stream.clone(),
                max_len: config.backplane_max_len,
                nodes,
                cluster: config.is_cluster(),
                timeout: config.timeout(),
                connect_timeout: config.connect_timeout(),
            }),
            marks: Self::marks_key_for(namespace, version),
            max_len: config.backplane_max_len,
            stream,
            tasks: Mutex::new(Vec::new()),
        })
    }

    /// The stream this backplane uses.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The hash that holds the marks.
    pub fn marks_key(&self) -> &str {
        &self.marks
    }
}

impl Drop for RedisBackplane {
    fn drop(&mut self) {
        let tasks = self.tasks.get_mut().unwrap_or_else(|e| e.into_inner());
        for task in tasks.drain(..) {
            task.abort();
        }
    }
}

#[async_trait]
impl Backplane for RedisBackplane {
    async fn publish(&self, msg: &InvalidationMessage) -> Result<()> {
        let payload = msg.to_bytes()?;
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&self.stream)
            .arg("MAXLEN")
            .arg("~")
            .arg(self.max_len)
            .arg("*")
            .arg(MESSAGE_FIELD)
            .arg(payload);
        self.publisher
            .run("XADD", |mut c| async move { cmd.query_async::<Value>(&mut c).await })
            .await?;
        Ok(())
    }

    async fn subscribe(&self, handler: BackplaneHandler) -> Result<()> {
        // Take the stream's position now, if the server answers in time: every message
        // published after `subscribe` returns is then delivered, even one published before
        // the reader's first read. If it does not answer, the reader's first connection
        // reports `Reconnected` (what came before is unknown).
        let reader = self.reader.clone();
        let limit = reader.connect_timeout + reader.timeout;
        let position = tokio::time::timeout(limit, async {
            let mut conn = reader.connect().await?;
            reader.end_id(&mut conn).await
        })
        .await;
        let initial = match position {
            Ok(Ok(id)) => Some(id),
            Ok(Err(e)) => {
                tracing::debug!(tier = %reader.tier, error = %e, "backplane position unknown at subscribe");
                None
            }
            Err(_) => None,
        };
        let task = tokio::spawn(run_reader(self.reader.clone(), handler, initial));
        self.tasks.lock().unwrap_or_else(|e| e.into_inner()).push(task.abort_handle());
        Ok(())
    }

    async fn store_marks(&self, marks: &[Mark]) -> Result<()> {
        if marks.is_empty() {
            return Ok(());
        }
        let script = redis::Script::new(STORE_MARKS);
        let mut invocation = script.key(&self.marks);
        for mark in marks {
            invocation.arg(mark_field(&mark.invalidation)?).arg(mark.at_ms);
        }
        self.publisher
            .run("store marks", |mut c| async move { invocation.invoke_async::<u64>(&mut c).await })
            .await?;
        Ok(())
    }

    async fn load_marks(&self) -> Result<Vec<Mark>> {
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(&self.marks);
        let fields = self
            .publisher
            .run("HGETALL", |mut c| async move {
                cmd.query_async::<Vec<(Vec<u8>, Vec<u8>)>>(&mut c).await
            })
            .await?;
        let mut marks = Vec::with_capacity(fields.len());
        for (field, value) in fields {
            match parse_mark(&field, &value) {
                Some(mark) => marks.push(mark),
                None => tracing::warn!(
                    tier = %self.reader.tier,
                    key = %self.marks,
                    field = %String::from_utf8_lossy(&field),
                    "skipping a malformed invalidation mark"
                ),
            }
        }
        Ok(marks)
    }

    async fn prune_marks(&self, before_ms: u64) -> Result<()> {
        let script = redis::Script::new(PRUNE_MARKS);
        let mut invocation = script.key(&self.marks);
        invocation.arg(before_ms);
        self.publisher
            .run("prune marks", |mut c| async move { invocation.invoke_async::<u64>(&mut c).await })
            .await?;
        Ok(())
    }
}

/// The hash field of a mark: its invalidation as JSON.
fn mark_field(invalidation: &Invalidation) -> Result<String> {
    serde_json::to_string(invalidation).map_err(|e| {
        aurelis_cache_core::Error::codec("cannot encode an invalidation mark").with_source(e)
    })
}

/// A mark from a hash field and value; `None` when either does not parse.
fn parse_mark(field: &[u8], value: &[u8]) -> Option<Mark> {
    let invalidation: Invalidation = serde_json::from_slice(field).ok()?;
    let at_ms: u64 = std::str::from_utf8(value).ok()?.trim().parse().ok()?;
    Some(Mark::new(invalidation, at_ms))
}

/// The subscriber task: connects with backoff, reads the stream, reconnects, forever (until
/// aborted by the backplane's drop).
async fn run_reader(params: Arc<ReaderParams>, handler: BackplaneHandler, initial: Option<String>) {
    // The id of the last entry seen (or the stream's end when `subscribe` ran); `None` when
    // that position is unknown.
    let had_position = initial.is_some();
    let mut last_id: Option<String> = initial;
    // A connection attempt failed before the first connection, or the position at
    // `subscribe` is unknown: whatever came before the first connection may be missed.
    let mut failed_first = !had_position;
    let mut first = true;
    // `Disconnected` was reported and no connection made since.
    let mut reported_down = false;
    let mut delay = FIRST_BACKOFF;
    loop {
        let attempt = async {
            let mut conn = params.connect().await?;
            let (start, event) = params.start_id(&mut conn, last_id.as_deref()).await?;
            Ok::<_, aurelis_cache_core::Error>((conn, start, event))
        };
        let (mut conn, start, event) = match attempt.await {
            Ok(connected) => connected,
            Err(e) => {
                tracing::debug!(tier = %params.tier, stream = %params.stream, error = %e,
                    "backplane connect failed");
                if first {
                    failed_first = true;
                }
                if !reported_down {
                    tracing::warn!(tier = %params.tier, stream = %params.stream, error = %e,
                        "backplane disconnected");
                    emit(&handler, BackplaneEvent::Disconnected);
                    reported_down = true;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        delay = FIRST_BACKOFF;
        let event = match (event, first) {
            // The first connection went on from where `subscribe` stood: nothing to report.
            (Start::Resume, true) => None,
            (Start::Fresh, true) if !failed_first => None,
            (Start::Fresh, _) => Some(BackplaneEvent::Reconnected),
            (Start::Resume, false) => Some(BackplaneEvent::Resumed),
        };
        first = false;
        if let Some(event) = event {
            tracing::info!(tier = %params.tier, stream = %params.stream, ?event,
                "backplane connected");
            emit(&handler, event);
        }
        let mut last = start;
        let e = params.read(&mut conn, &mut last, &handler).await;
        last_id = Some(last);
        tracing::warn!(tier = %params.tier, stream = %params.stream, error = %e,
            "backplane disconnected");
        emit(&handler, BackplaneEvent::Disconnected);
        reported_down = true;
    }
}

/// Where a (re)connected reader starts.
#[derive(Debug)]
enum Start {
    /// At the current end of the stream: what came before is unknown or was missed.
    Fresh,
    /// After the last entry seen, which is still in the stream: nothing was missed.
    Resume,
}

impl ReaderParams {
    /// Opens the reader's own connection (within `connect_timeout + timeout`).
    async fn connect(&self) -> Result<Conn> {
        let limit = self.connect_timeout + self.timeout;
        let attempt = async {
            if self.cluster {
                let client = ClusterClient::builder(self.nodes.clone())
                    .connection_timeout(self.connect_timeout)
                    .build()?;
                Ok::<_, redis::RedisError>(Conn::Cluster(client.get_async_connection().await?))
            } else {
                let client = redis::Client::open(self.nodes[0].clone())?;
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(self.connect_timeout))
                    .set_response_timeout(None);
                Ok(Conn::Single(
                    client.get_multiplexed_async_connection_with_config(&config).await?,
                ))
            }
        };
        match tokio::time::timeout(limit, attempt).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(error::connect(&self.tier, "backplane connect", e)),
            Err(_) => Err(error::timeout(&self.tier, "backplane connect", limit)),
        }
    }

    /// Runs one command within the time limit.
    async fn query<T: redis::FromRedisValue>(
        &self,
        conn: &mut Conn,
        op: &str,
        cmd: &redis::Cmd,
    ) -> Result<T> {
        match tokio::time::timeout(self.timeout, cmd.query_async::<T>(conn)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(error::backend(&self.tier, op, e)),
            Err(_) => Err(error::timeout(&self.tier, op, self.timeout)),
        }
    }

    /// The id to read after, on a new connection: the last one seen if it is still in the
    /// stream, else the current end.
    async fn start_id(&self, conn: &mut Conn, last: Option<&str>) -> Result<(String, Start)> {
        if let Some(last) = last {
            if self.contains(conn, last).await? {
                return Ok((last.to_owned(), Start::Resume));
            }
        }
        Ok((self.end_id(conn).await?, Start::Fresh))
    }

    /// Whether the entry `id` is in the stream.
    async fn contains(&self, conn: &mut Conn, id: &str) -> Result<bool> {
        let mut cmd = redis::cmd("XRANGE");
        cmd.arg(&self.stream).arg(id).arg(id).arg("COUNT").arg(1);
        let found: Vec<Value> = self.query(conn, "XRANGE", &cmd).await?;
        Ok(!found.is_empty())
    }

    /// The id of the newest entry; when the stream has none, of an anchor entry added now.
    async fn end_id(&self, conn: &mut Conn) -> Result<String> {
        let mut cmd = redis::cmd("XREVRANGE");
        cmd.arg(&self.stream).arg("+").arg("-").arg("COUNT").arg(1);
        let newest: Value = self.query(conn, "XREVRANGE", &cmd).await?;
        let entries =
            parse_entries(newest).map_err(|e| error::backend(&self.tier, "XREVRANGE", e))?;
        if let Some((id, _)) = entries.into_iter().next() {
            return Ok(id);
        }
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&self.stream)
            .arg("MAXLEN")
            .arg("~")
            .arg(self.max_len)
            .arg("*")
            .arg(ANCHOR_FIELD)
            .arg("");
        self.query(conn, "XADD", &cmd).await
    }

    /// Reads entries after `last` and hands them to the handler until the connection is lost;
    /// returns why it was.
    async fn read(
        &self,
        conn: &mut Conn,
        last: &mut String,
        handler: &BackplaneHandler,
    ) -> aurelis_cache_core::Error {
        let limit = BLOCK + self.timeout;
        let mut lagging = false;
        loop {
            if lagging {
                // The previous read was a full batch: make sure the stream was not trimmed
                // past what was read while this reader was behind.
                match self.contains(conn, last).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(tier = %self.tier, stream = %self.stream,
                            "backplane fell behind the stream's MAXLEN: messages were lost");
                        emit(handler, BackplaneEvent::Reconnected);
                        match self.end_id(conn).await {
                            Ok(end) => *last = end,
                            Err(e) => return e,
                        }
                    }
                    Err(e) => return e,
                }
            }
            let mut cmd = redis::cmd("XREAD");
            cmd.arg("COUNT")
                .arg(READ_COUNT)
                .arg("BLOCK")
                .arg(BLOCK.as_millis() as u64)
                .arg("STREAMS")
                .arg(&self.stream)
                .arg(last.as_str());
            let reply = match tokio::time::timeout(limit, cmd.query_async::<Value>(conn)).await {
                Ok(Ok(reply)) => reply,
                Ok(Err(e)) => return error::backend(&self.tier, "XREAD", e),
                Err(_) => return error::timeout(&self.tier, "XREAD", limit),
            };
            let entries = match parse_xread(reply) {
                Ok(entries) => entries,
                Err(e) => return error::backend(&self.tier, "XREAD", e),
            };
            lagging = entries.len() >= READ_COUNT;
            for (id, fields) in entries {
                self.deliver(&id, fields, handler);
                *last = id;
            }
        }
    }

    /// Hands one entry to the handler, or logs why not.
    fn deliver(&self, id: &str, fields: Vec<Vec<u8>>, handler: &BackplaneHandler) {
        let mut message = None;
        let mut anchor = false;
        for pair in fields.chunks(2) {
            match pair {
                [name, value] if name == MESSAGE_FIELD.as_bytes() => message = Some(value),
                [name, _] if name == ANCHOR_FIELD.as_bytes() => anchor = true,
                _ => {}
            }
        }
        match message.map(|bytes| InvalidationMessage::from_bytes(bytes)) {
            Some(Ok(message)) => emit(handler, BackplaneEvent::Invalidate(message)),
            None if anchor => {}
            Some(Err(e)) => tracing::warn!(tier = %self.tier, stream = %self.stream, id,
                error = %e, "skipping a malformed backplane message"),
            None => tracing::warn!(tier = %self.tier, stream = %self.stream, id,
                "skipping a backplane entry without a message"),
        }
    }
}

/// A stream entry: its id and its fields as a flat list (name, value, name, value, ...).
type Entry = (String, Vec<Vec<u8>>);

/// The entries of an `XRANGE`/`XREVRANGE` reply.
fn parse_entries(reply: Value) -> RedisResult<Vec<Entry>> {
    match reply {
        Value::Nil => Ok(Vec::new()),
        other => Ok(from_redis_value(other)?),
    }
}

/// The entries of an `XREAD` reply for one stream (nil when the block ran out): RESP2 gives
/// `[[stream, entries]]`, RESP3 `{stream: entries}`.
fn parse_xread(reply: Value) -> RedisResult<Vec<Entry>> {
    let streams: Vec<(Value, Value)> = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Map(pairs) => pairs,
        other => from_redis_value(other)?,
    };
    let mut out = Vec::new();
    for (_, entries) in streams {
        out.extend(parse_entries(entries)?);
    }
    Ok(out)
}

/// Calls the handler; a panicking handler is logged and does not stop the subscriber.
fn emit(handler: &BackplaneHandler, event: BackplaneEvent) {
    if std::panic::catch_unwind(AssertUnwindSafe(|| handler(event))).is_err() {
        tracing::error!("the backplane handler panicked; the event was dropped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_have_namespace_version_and_format() {
        assert_eq!(RedisBackplane::stream_for("ns", "v7"), "aurelis:ns:v7:invalidations:v2");
        assert_eq!(RedisBackplane::marks_key_for("ns", "v7"), "aurelis:ns:v7:marks:v1");
    }

    #[test]
    fn rejects_empty_names_and_bad_config() {
        let err = RedisBackplane::new(&RedisConfig::default(), "", "v1").expect_err("empty");
        assert!(err.message().contains("namespace"));
        let err = RedisBackplane::new(&RedisConfig::default(), "ns", "").expect_err("empty");
        assert!(err.message().contains("version"));
        let config = RedisConfig { url: "nope".into(), ..RedisConfig::default() };
        let err = RedisBackplane::new(&config, "ns", "v1").expect_err("bad url");
        assert!(err.message().contains("`url`"));
    }

    #[test]
    fn parses_stream_replies() {
        let entry = |id: &str, fields: &[&str]| {
            Value::Array(vec![
                Value::BulkString(id.as_bytes().to_vec()),
                Value::Array(
                    fields.iter().map(|f| Value::BulkString(f.as_bytes().to_vec())).collect(),
                ),
            ])
        };
        let entries = Value::Array(vec![entry("1-0", &["m", "{}"]), entry("2-0", &["anchor", ""])]);
        let resp2 = Value::Array(vec![Value::Array(vec![
            Value::BulkString(b"s".to_vec()),
            entries.clone(),
        ])]);
        let parsed = parse_xread(resp2).expect("resp2");
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0], ("1-0".to_owned(), vec![b"m".to_vec(), b"{}".to_vec()]));
        let resp3 = Value::Map(vec![(Value::BulkString(b"s".to_vec()), entries)]);
        assert_eq!(parse_xread(resp3).expect("resp3"), parsed);
        assert!(parse_xread(Value::Nil).expect("nil").is_empty());
        assert!(parse_entries(Value::Array(vec![])).expect("empty").is_empty());
    }

    #[test]
    fn marks_round_trip_through_fields() {
        let inv = Invalidation::Tag("user:1".into());
        let field = mark_field(&inv).expect("field");
        assert_eq!(parse_mark(field.as_bytes(), b"42"), Some(Mark::new(inv, 42)));
        assert_eq!(parse_mark(b"not json", b"42"), None);
        assert_eq!(parse_mark(field.as_bytes(), b"soon"), None);
    }
}
