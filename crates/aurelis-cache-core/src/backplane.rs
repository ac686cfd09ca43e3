//! The invalidation backplane: how processes sharing a tier keep their memory tiers coherent.
//!
//! A backplane carries [`Invalidation`]s, never values. Each process publishes what it
//! invalidated; every other process drops the matching entries from its in-process tiers. A
//! backplane that lost its connection reports [`BackplaneEvent::Reconnected`] once it is back,
//! because messages may have been missed meanwhile: the cache then flushes its memory tiers.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What was invalidated. Keys, prefixes and patterns are full store keys.
///
/// # Examples
///
/// ```
/// use aurelis_cache_core::Invalidation;
/// let inv = Invalidation::Prefix("aurelis:v1:user_data:".into());
/// assert!(inv.matches("aurelis:v1:user_data:42", &[]));
/// assert!(!inv.matches("aurelis:v1:session:42", &[]));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Invalidation {
    /// One key.
    Key(String),
    /// Every key starting with this prefix (a category, a model).
    Prefix(String),
    /// Every key matching this glob.
    Pattern(String),
    /// Every entry carrying this tag.
    Tag(String),
    /// Everything.
    Clear,
}

impl Invalidation {
    /// Whether an entry under `key` with `tags` is invalidated by this.
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_cache_core::Invalidation;
    /// assert!(Invalidation::Tag("user:1".into()).matches("k", &["user:1".to_string()]));
    /// assert!(Invalidation::Clear.matches("anything", &[]));
    /// ```
    pub fn matches(&self, key: &str, tags: &[String]) -> bool {
        match self {
            Invalidation::Key(k) => k == key,
            Invalidation::Prefix(p) => key.starts_with(p.as_str()),
            Invalidation::Pattern(p) => crate::store::glob_match(p, key),
            Invalidation::Tag(t) => tags.iter().any(|x| x == t),
            Invalidation::Clear => true,
        }
    }
}

/// One message on the backplane: an invalidation and the instance that made it (so an
/// instance ignores its own messages).
///
/// # Examples
///
/// ```
/// use aurelis_cache_core::{Invalidation, InvalidationMessage};
/// let msg = InvalidationMessage::new("instance-a", Invalidation::Clear);
/// let bytes = msg.to_bytes()?;
/// assert_eq!(InvalidationMessage::from_bytes(&bytes)?, msg);
/// # Ok::<(), aurelis_cache_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct InvalidationMessage {
    /// The id of the cache instance that published it.
    pub origin: String,
    /// What was invalidated.
    pub invalidation: Invalidation,
}

impl InvalidationMessage {
    /// A message from `origin`.
    pub fn new(origin: impl Into<String>, invalidation: Invalidation) -> Self {
        InvalidationMessage { origin: origin.into(), invalidation }
    }

    /// The wire form (JSON, so `redis-cli SUBSCRIBE` shows readable messages).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Codec`](crate::ErrorKind::Codec) if serialization fails.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self)
            .map_err(|e| Error::codec("cannot encode invalidation message").with_source(e))
    }

    /// Parses the wire form.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Codec`](crate::ErrorKind::Codec) when the bytes are not a message.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes)
            .map_err(|e| Error::codec("malformed invalidation message").with_source(e))
    }
}

/// What a backplane reports to the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackplaneEvent {
    /// Another instance invalidated something.
    Invalidate(InvalidationMessage),
    /// The subscription was lost and is back; messages may have been missed.
    Reconnected,
    /// The subscription was lost (the backplane keeps trying to reconnect).
    Disconnected,
}

/// The handler a backplane calls for every event. It must not block: hand work to a task.
pub type BackplaneHandler = Arc<dyn Fn(BackplaneEvent) + Send + Sync>;

/// A channel that carries invalidations between cache instances.
///
/// # Examples
///
/// ```
/// use aurelis_cache_core::{Backplane, BackplaneHandler, InvalidationMessage, Result};
///
/// #[derive(Debug)]
/// struct Nowhere;
///
/// #[async_trait::async_trait]
/// impl Backplane for Nowhere {
///     async fn publish(&self, _msg: &InvalidationMessage) -> Result<()> { Ok(()) }
///     async fn subscribe(&self, _handler: BackplaneHandler) -> Result<()> { Ok(()) }
/// }
/// ```
#[async_trait]
pub trait Backplane: Debug + Send + Sync + 'static {
    /// Publishes one message to every subscribed instance.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Backend`](crate::ErrorKind::Backend) when it could not be sent.
    async fn publish(&self, msg: &InvalidationMessage) -> Result<()>;

    /// Starts delivering events to `handler`, in the background, until the backplane is
    /// dropped. Reconnects by itself and reports [`BackplaneEvent::Reconnected`] when it does.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Backend`](crate::ErrorKind::Backend) when the first subscription fails.
    async fn subscribe(&self, handler: BackplaneHandler) -> Result<()>;
}
