//! Per-entry write options.

use std::time::Duration;

use aurelis_cache_core::{Error, ErrorKind, Result};

/// The largest encoded value accepted by default (16 MiB).
pub const DEFAULT_MAX_VALUE_BYTES: usize = 16 * 1024 * 1024;

/// Per-entry settings for a write.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let opts = aurelis_cache::SetOptions::new()
///     .ttl(Duration::from_secs(60))
///     .tag("user:42")
///     .stale_for(Duration::from_secs(600));
/// assert_eq!(opts.tags(), ["user:42"]);
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SetOptions {
    ttl: Option<Duration>,
    tags: Vec<String>,
    stale_for: Option<Duration>,
    ttl_jitter: Option<Duration>,
    soft_timeout: Option<Duration>,
    hard_timeout: Option<Duration>,
    refresh_ahead: Option<f64>,
}

impl SetOptions {
    /// Refuses options that cannot take effect (checked by every write and load before
    /// anything runs): a stale window without a TTL (an entry without one never expires, so
    /// it would never be served stale, and a tier's TTL cap removes it without one).
    pub(crate) fn check(&self) -> Result<()> {
        if self.stale_for.is_some() && self.ttl.is_none() {
            return Err(Error::new(
                ErrorKind::Usage,
                "stale_for needs a ttl: an entry without one never goes stale (set SetOptions::ttl too)",
            ));
        }
        Ok(())
    }
    /// No TTL of its own, no tags, no stale window: what [`SetOptions::new`] returns, as a
    /// constant for the methods that take no options.
    pub(crate) const DEFAULT: SetOptions = SetOptions {
        ttl: None,
        tags: Vec::new(),
        stale_for: None,
        ttl_jitter: None,
        soft_timeout: None,
        hard_timeout: None,
        refresh_ahead: None,
    };

    /// No TTL of its own (each tier's cap applies), no tags, no stale window.
    ///
    /// # Examples
    ///
    /// ```
    /// let opts = aurelis_cache::SetOptions::new();
    /// assert!(opts.tags().is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// The entry's own time to live (each tier still caps it with its own).
    ///
    /// # Examples
    ///
    /// ```
    /// let opts = aurelis_cache::SetOptions::new().ttl(std::time::Duration::from_secs(60));
    /// assert_ne!(opts, aurelis_cache::SetOptions::new());
    /// ```
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Adds a tag, for [`Cache::invalidate_tag`](crate::Cache::invalidate_tag).
    ///
    /// # Examples
    ///
    /// ```
    /// let opts = aurelis_cache::SetOptions::new().tag("user:1").tag("team:7");
    /// assert_eq!(opts.tags(), ["user:1", "team:7"]);
    /// ```
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// How long after expiry the entry may still be served by [`Cache::get_or_compute`](crate::Cache::get_or_compute)
    /// when the loader fails (fail-safe). Needs a TTL: a write with a stale window and no TTL
    /// is refused ([`ErrorKind::Usage`](crate::ErrorKind::Usage)).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let opts = aurelis_cache::SetOptions::new().ttl(Duration::from_secs(60)).stale_for(Duration::from_secs(600));
    /// assert_ne!(opts, aurelis_cache::SetOptions::new().ttl(Duration::from_secs(60)));
    /// ```
    pub fn stale_for(mut self, stale_for: Duration) -> Self {
        self.stale_for = Some(stale_for);
        self
    }

    /// Adds a random extra of up to `jitter` to each entry's TTL, so entries written together
    /// do not all expire (and reload) together.
    pub fn ttl_jitter(mut self, jitter: Duration) -> Self {
        self.ttl_jitter = Some(jitter);
        self
    }

    /// For [`Cache::get_or_refresh`](crate::Cache::get_or_refresh): when a stale value can
    /// be served, the caller waits at most this long for the loader, then gets the stale value
    /// while the loader finishes in the background and stores its result.
    pub fn soft_timeout(mut self, timeout: Duration) -> Self {
        self.soft_timeout = Some(timeout);
        self
    }

    /// For [`Cache::get_or_refresh`](crate::Cache::get_or_refresh): the caller waits at most
    /// this long for the loader (then gets a stale value, or an `ErrorKind::Timeout` error);
    /// the loader finishes in the background and stores its result.
    pub fn hard_timeout(mut self, timeout: Duration) -> Self {
        self.hard_timeout = Some(timeout);
        self
    }

    /// For [`Cache::get_or_refresh`](crate::Cache::get_or_refresh): a hit read after this
    /// fraction of its TTL (0 < fraction < 1, e.g. 0.8) is served as it is and refreshed in
    /// the background (one refresh at a time per key), so hot entries never expire under load.
    pub fn refresh_ahead(mut self, fraction: f64) -> Self {
        self.refresh_ahead = Some(fraction);
        self
    }

    /// The entry's own time to live, if set.
    pub(crate) fn ttl_value(&self) -> Option<Duration> {
        self.ttl
    }

    pub(crate) fn ttl_jitter_value(&self) -> Option<Duration> {
        self.ttl_jitter
    }

    pub(crate) fn soft_timeout_value(&self) -> Option<Duration> {
        self.soft_timeout
    }

    pub(crate) fn hard_timeout_value(&self) -> Option<Duration> {
        self.hard_timeout
    }

    pub(crate) fn refresh_ahead_value(&self) -> Option<f64> {
        self.refresh_ahead
    }

    /// The stale window, if set.
    pub(crate) fn stale_for_value(&self) -> Option<Duration> {
        self.stale_for
    }

    /// The tags.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(aurelis_cache::SetOptions::new().tag("a").tags(), ["a"]);
    /// ```
    pub fn tags(&self) -> &[String] {
        &self.tags
    }
}
