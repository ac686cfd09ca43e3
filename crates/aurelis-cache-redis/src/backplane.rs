//! [`RedisBackplane`]: invalidations between cache instances over Redis pub/sub.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aurelis_cache_core::{
    Backplane, BackplaneEvent, BackplaneHandler, InvalidationMessage, Result,
};
use deadpool_redis::redis::aio::{PubSubSink, PubSubStream};
use deadpool_redis::redis::{self, ConnectionInfo, Value};
use futures::StreamExt;
use tokio::sync::oneshot;
use tokio::task::AbortHandle;

use crate::config::RedisConfig;
use crate::conn::{connection_info, Connections};
use crate::error;

/// The version suffix of the channel name; it changes when the message format does, so
/// instances of different formats never read each other's messages.
const FORMAT_VERSION: &str = "v1";

/// First delay before a reconnect attempt; doubled after each failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// Longest delay between reconnect attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How often an idle subscription is checked with `PING`, to notice a connection that died
/// without closing (a half-open TCP connection never ends the message stream).
const PING_EVERY: Duration = Duration::from_secs(1);

/// Carries [`InvalidationMessage`]s between cache instances on a Redis pub/sub channel.
///
/// The channel is `aurelis:{namespace}:invalidations:v1`; instances that share a namespace
/// see each other's invalidations. The `v1` suffix is the message format version: it changes
/// when the format does, so old and new instances never misread each other. The config's
/// `key_prefix` does not apply to the channel (channels are not keys).
///
/// - [`publish`](Backplane::publish) sends `PUBLISH channel <message JSON>` on a held
///   multiplexed connection, within the config's `timeout_ms`.
/// - [`subscribe`](Backplane::subscribe) starts a task with its own pub/sub connection that
///   hands every message to the handler. Messages that do not parse are logged and skipped.
///   When the connection is lost the handler gets [`BackplaneEvent::Disconnected`] once;
///   the task reconnects with backoff (50 ms doubling to 2 s), moving to the next node of a
///   cluster, and after subscribing again the handler gets [`BackplaneEvent::Reconnected`]:
///   messages may have been missed meanwhile, so the cache flushes its memory tiers.
/// - Dropping the backplane stops its subscriber tasks.
///
/// Delivery is at most once and only while connected: Redis pub/sub keeps no backlog. Every
/// subscriber gets every message, including its own; the cache ignores messages whose
/// `origin` is itself.
///
/// # Examples
///
/// ```no_run
/// use std::sync::Arc;
/// use aurelis_cache_core::{Backplane, BackplaneEvent, Invalidation, InvalidationMessage};
/// use aurelis_cache_redis::{RedisBackplane, RedisConfig};
///
/// # async fn demo() -> aurelis_cache_core::Result<()> {
/// let backplane = RedisBackplane::new(&RedisConfig::default(), "myapp")?;
/// assert_eq!(backplane.channel(), "aurelis:myapp:invalidations:v1");
/// backplane
///     .subscribe(Arc::new(|event| match event {
///         BackplaneEvent::Invalidate(msg) => println!("drop {:?}", msg.invalidation),
///         BackplaneEvent::Reconnected => println!("flush memory tiers"),
///         _ => {}
///     }))
///     .await?;
/// backplane
///     .publish(&InvalidationMessage::new("instance-a", Invalidation::Key("k".into())))
///     .await?;
/// # Ok(()) }
/// ```
pub struct RedisBackplane {
    channel: String,
    publisher: Arc<Connections>,
    subscriber: Arc<SubscriberParams>,
    tasks: Mutex<Vec<AbortHandle>>,
}

/// What a subscriber task needs, shared by every `subscribe` of one backplane.
struct SubscriberParams {
    tier: String,
    channel: String,
    nodes: Vec<ConnectionInfo>,
    timeout: Duration,
    connect_timeout: Duration,
}

impl fmt::Debug for RedisBackplane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tasks = self.tasks.lock().map(|t| t.len()).unwrap_or(0);
        f.debug_struct("RedisBackplane")
            .field("channel", &self.channel)
            .field("nodes", &self.subscriber.nodes.len())
            .field("subscriptions", &tasks)
            .field("publisher", &self.publisher)
            .finish()
    }
}

impl RedisBackplane {
    /// The channel name of `namespace`: `aurelis:{namespace}:invalidations:v1`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(
    ///     aurelis_cache_redis::RedisBackplane::channel_for("shop"),
    ///     "aurelis:shop:invalidations:v1"
    /// );
    /// ```
    pub fn channel_for(namespace: &str) -> String {
        format!("aurelis:{namespace}:invalidations:{FORMAT_VERSION}")
    }

    /// A backplane on the Redis (or Redis Cluster) of `config`, for the instances sharing
    /// `namespace`. Nothing connects until the first `publish` or `subscribe`.
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_cache_redis::{RedisBackplane, RedisConfig};
    /// let err = RedisBackplane::new(&RedisConfig::default(), "").unwrap_err();
    /// assert_eq!(err.kind(), aurelis_cache_core::ErrorKind::Config);
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`](aurelis_cache_core::ErrorKind::Config) for an empty namespace or
    /// an invalid config (see [`RedisConfig::validate`]).
    pub fn new(config: &RedisConfig, namespace: &str) -> Result<RedisBackplane> {
        if namespace.is_empty() {
            return Err(error::config("namespace", "must not be empty"));
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
        let channel = Self::channel_for(namespace);
        Ok(RedisBackplane {
            publisher: Connections::new(config, config.pool_size.min(2))?,
            subscriber: Arc::new(SubscriberParams {
                tier: config.name.clone(),
                channel: channel.clone(),
                nodes,
                timeout: config.timeout(),
                connect_timeout: config.connect_timeout(),
            }),
            channel,
            tasks: Mutex::new(Vec::new()),
        })
    }

    /// The pub/sub channel this backplane uses.
    pub fn channel(&self) -> &str {
        &self.channel
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
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(&self.channel).arg(payload);
        self.publisher
            .run("PUBLISH", |mut c| async move { cmd.query_async::<u64>(&mut c).await })
            .await?;
        Ok(())
    }

    async fn subscribe(&self, handler: BackplaneHandler) -> Result<()> {
        let (first_tx, first_rx) = oneshot::channel();
        let task = tokio::spawn(run_subscriber(self.subscriber.clone(), handler, first_tx));
        self.tasks.lock().unwrap_or_else(|e| e.into_inner()).push(task.abort_handle());
        match first_rx.await {
            Ok(result) => result,
            Err(_) => Err(error::backend_msg(
                &self.subscriber.tier,
                "the backplane subscriber task ended before subscribing",
            )),
        }
    }
}

/// Subscribes (first to the nodes in order until one answers), reports the outcome on
/// `first`, then delivers messages, reconnecting until aborted. Gives up only when the very
/// first subscription fails.
async fn run_subscriber(
    params: Arc<SubscriberParams>,
    handler: BackplaneHandler,
    first: oneshot::Sender<Result<()>>,
) {
    let mut node = 0;
    let mut connected = None;
    let mut last_error = None;
    for _ in 0..params.nodes.len() {
        match connect(&params, node).await {
            Ok(subscription) => {
                connected = Some(subscription);
                break;
            }
            Err(e) => {
                last_error = Some(e);
                node = (node + 1) % params.nodes.len();
            }
        }
    }
    let Some(mut subscription) = connected else {
        let error = last_error
            .unwrap_or_else(|| error::backend_msg(&params.tier, "no node to subscribe to"));
        let _ = first.send(Err(error));
        return;
    };
    if first.send(Ok(())).is_err() {
        return; // `subscribe` was cancelled.
    }
    loop {
        deliver(&params, subscription, &handler).await;
        tracing::warn!(tier = %params.tier, channel = %params.channel, "backplane disconnected");
        emit(&handler, BackplaneEvent::Disconnected);
        let mut delay = FIRST_BACKOFF;
        subscription = loop {
            tokio::time::sleep(delay).await;
            // The node that failed is likely down: try the next one first.
            node = (node + 1) % params.nodes.len();
            match connect(&params, node).await {
                Ok(subscription) => break subscription,
                Err(e) => {
                    tracing::debug!(tier = %params.tier, error = %e, "backplane reconnect failed");
                    delay = (delay * 2).min(MAX_BACKOFF);
                }
            }
        };
        tracing::info!(tier = %params.tier, channel = %params.channel, "backplane reconnected");
        emit(&handler, BackplaneEvent::Reconnected);
    }
}

/// Opens a pub/sub connection to node `i` and subscribes to the channel.
async fn connect(params: &SubscriberParams, i: usize) -> Result<(PubSubSink, PubSubStream)> {
    let limit = params.connect_timeout + params.timeout;
    let attempt = async {
        let client = redis::Client::open(params.nodes[i].clone())?;
        let (mut sink, stream) = client.get_async_pubsub().await?.split();
        sink.subscribe(&params.channel).await?;
        Ok::<_, redis::RedisError>((sink, stream))
    };
    match tokio::time::timeout(limit, attempt).await {
        Ok(Ok(subscription)) => Ok(subscription),
        Ok(Err(e)) => Err(error::backend(&params.tier, "SUBSCRIBE", e)),
        Err(_) => Err(error::timeout(&params.tier, "SUBSCRIBE", limit)),
    }
}

/// Hands every message to the handler until the connection is lost (the stream ends or a
/// `PING` gets no answer in time).
async fn deliver(
    params: &SubscriberParams,
    (mut sink, mut stream): (PubSubSink, PubSubStream),
    handler: &BackplaneHandler,
) {
    let ping_limit = params.timeout.max(PING_EVERY);
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await; // the first tick is immediate
    loop {
        tokio::select! {
            msg = stream.next() => {
                let Some(msg) = msg else { return };
                match InvalidationMessage::from_bytes(msg.get_payload_bytes()) {
                    Ok(message) => emit(handler, BackplaneEvent::Invalidate(message)),
                    Err(e) => tracing::warn!(
                        tier = %params.tier,
                        channel = %params.channel,
                        error = %e,
                        "skipping a malformed backplane message"
                    ),
                }
            }
            _ = ping.tick() => {
                match tokio::time::timeout(ping_limit, sink.ping::<Value>()).await {
                    Ok(Ok(_)) => {}
                    _ => return,
                }
            }
        }
    }
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
    fn channel_name_has_namespace_and_version() {
        assert_eq!(RedisBackplane::channel_for("ns"), "aurelis:ns:invalidations:v1");
    }

    #[test]
    fn rejects_empty_namespace_and_bad_config() {
        let err = RedisBackplane::new(&RedisConfig::default(), "").expect_err("empty");
        assert!(err.message().contains("namespace"));
        let config = RedisConfig { url: "nope".into(), ..RedisConfig::default() };
        let err = RedisBackplane::new(&config, "ns").expect_err("bad url");
        assert!(err.message().contains("`url`"));
    }
}
