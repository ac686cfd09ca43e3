//! The invalidation backplane: how processes sharing a tier keep their memory tiers coherent.
//!
//! A backplane carries [`Invalidation`]s, never values. Each process publishes what it
//! invalidated; every other process drops the matching entries from its unshared tiers
//! (memory, disk). A backplane replays what a subscriber missed while disconnected and then
//! reports [`BackplaneEvent::Resumed`]; when it cannot prove nothing was missed it reports
//! [`BackplaneEvent::Reconnected`], and the cache marks its unshared tiers' entries as
//! unproven. Non-key invalidations are also kept as [`Mark`]s, so a process started later
//! honours them.

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

/// One message on the backplane: invalidations made together by one instance, the
/// instance that made them (so an instance ignores its own messages) and when, by the
/// sender's clock (entries created before `at_ms` are covered by its non-key invalidations).
///
/// # Examples
///
/// ```
/// use aurelis_cache_core::{Invalidation, InvalidationMessage};
/// let msg = InvalidationMessage::new("instance-a", Invalidation::Clear);
/// let bytes = msg.to_bytes()?;
/// assert_eq!(InvalidationMessage::from_bytes(&bytes)?, msg);
/// let batch = InvalidationMessage::batch("a", vec![Invalidation::Key("k1".into()), Invalidation::Key("k2".into())]);
/// assert_eq!(batch.invalidations.len(), 2);
/// # Ok::<(), aurelis_cache_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct InvalidationMessage {
    /// The id of the cache instance that published it.
    pub origin: String,
    /// When it was made, ms since the Unix epoch, by the sender's clock.
    pub at_ms: u64,
    /// What was invalidated.
    pub invalidations: Vec<Invalidation>,
}

impl InvalidationMessage {
    /// A message from `origin` with one invalidation, made now.
    pub fn new(origin: impl Into<String>, invalidation: Invalidation) -> Self {
        Self::batch(origin, vec![invalidation])
    }

    /// A message from `origin` with several invalidations, made now.
    pub fn batch(origin: impl Into<String>, invalidations: Vec<Invalidation>) -> Self {
        InvalidationMessage {
            origin: origin.into(),
            at_ms: crate::envelope::now_ms(),
            invalidations,
        }
    }

    /// Sets when the invalidations were made.
    pub fn at(mut self, at_ms: u64) -> Self {
        self.at_ms = at_ms;
        self
    }

    /// The wire form (JSON, so `redis-cli` shows readable messages).
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

/// A durable invalidation mark: every entry created before `at_ms` that the invalidation
/// matches is stale. Category, model, tag, pattern and clear invalidations are kept as marks,
/// so they cost O(1) however many entries they cover, and a process started later honours them.
///
/// # Examples
///
/// ```
/// use aurelis_cache_core::{Invalidation, Mark};
/// let mark = Mark::new(Invalidation::Tag("user:1".into()), 1_000);
/// assert_eq!(mark.at_ms, 1_000);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Mark {
    /// What the mark covers (never [`Invalidation::Key`]).
    pub invalidation: Invalidation,
    /// Entries created before this time (ms since the Unix epoch) are stale.
    pub at_ms: u64,
}

impl Mark {
    /// A mark of `invalidation` at `at_ms`.
    pub fn new(invalidation: Invalidation, at_ms: u64) -> Self {
        Mark { invalidation, at_ms }
    }
}

/// What a backplane reports to the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackplaneEvent {
    /// Another instance invalidated something.
    Invalidate(InvalidationMessage),
    /// The subscription is (again) live and messages may have been missed meanwhile (a first
    /// connection made late, or a gap the backplane cannot replay): the cache must treat
    /// whatever its unshared tiers hold as unproven (it sets a clear mark for them).
    Reconnected,
    /// The subscription is live again and every message published meanwhile was (or is being)
    /// delivered: nothing was missed.
    Resumed,
    /// The subscription was lost (the backplane keeps trying to reconnect).
    Disconnected,
}

/// The handler a backplane calls for every event. It must not block: hand work to a task.
pub type BackplaneHandler = Arc<dyn Fn(BackplaneEvent) + Send + Sync>;

/// A channel that carries invalidations between cache instances.
///
/// # Examples
///
/// An in-process backplane: what one instance publishes reaches every handler subscribed
/// to it. The mark methods keep their defaults (nothing is kept).
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use aurelis_cache_core::{
///     Backplane, BackplaneEvent, BackplaneHandler, Invalidation, InvalidationMessage, Mark,
///     Result,
/// };
///
/// #[derive(Default)]
/// struct InProcess {
///     handlers: Mutex<Vec<BackplaneHandler>>,
/// }
///
/// impl std::fmt::Debug for InProcess {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         f.write_str("InProcess")
///     }
/// }
///
/// #[async_trait::async_trait]
/// impl Backplane for InProcess {
///     async fn publish(&self, msg: &InvalidationMessage) -> Result<()> {
///         for handler in self.handlers.lock().unwrap().iter() {
///             handler(BackplaneEvent::Invalidate(msg.clone()));
///         }
///         Ok(())
///     }
///
///     async fn subscribe(&self, handler: BackplaneHandler) -> Result<()> {
///         self.handlers.lock().unwrap().push(handler);
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<()> {
/// let backplane = InProcess::default();
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let sink = Arc::clone(&seen);
/// backplane.subscribe(Arc::new(move |event| sink.lock().unwrap().push(event))).await?;
///
/// let msg = InvalidationMessage::new("instance-a", Invalidation::Key("aurelis:v1:user:42".into()));
/// backplane.publish(&msg).await?;
/// assert_eq!(*seen.lock().unwrap(), [BackplaneEvent::Invalidate(msg)]);
///
/// // The default `store_marks` keeps nothing, so there is nothing to load.
/// backplane.store_marks(&[Mark::new(Invalidation::Clear, 1_000)]).await?;
/// assert!(backplane.load_marks().await?.is_empty());
/// # Ok(())
/// # }
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
    /// dropped. It must not fail because the server is unreachable: it keeps trying in the
    /// background, reports [`BackplaneEvent::Disconnected`] while it cannot, and
    /// [`BackplaneEvent::Resumed`] or [`BackplaneEvent::Reconnected`] once it is back.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) or
    /// [`ErrorKind::Usage`](crate::ErrorKind::Usage) for a subscription that can never work.
    async fn subscribe(&self, handler: BackplaneHandler) -> Result<()>;

    /// Keeps `marks` where every instance (also one started later) can load them; a mark
    /// already kept with a later `at_ms` is left as it is. The default keeps nothing.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Backend`](crate::ErrorKind::Backend) when they could not be kept (the
    /// cache retries).
    async fn store_marks(&self, marks: &[Mark]) -> Result<()> {
        let _ = marks;
        Ok(())
    }

    /// Every mark kept by [`Backplane::store_marks`] and not pruned.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Backend`](crate::ErrorKind::Backend) when they could not be read.
    async fn load_marks(&self) -> Result<Vec<Mark>> {
        Ok(Vec::new())
    }

    /// Forgets marks made before `before_ms` (no entry that old can still be alive).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Backend`](crate::ErrorKind::Backend) when the backend fails.
    async fn prune_marks(&self, before_ms: u64) -> Result<()> {
        let _ = before_ms;
        Ok(())
    }
}
