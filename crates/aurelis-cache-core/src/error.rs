//! The one public error type of Aurelis Cache.

use std::fmt;
use std::sync::Arc;

/// A specialised `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, in broad strokes; match on it to decide what to do.
///
/// # Examples
///
/// ```
/// use aurelis_cache_core::{Error, ErrorKind};
///
/// let err = Error::new(ErrorKind::InvalidKey, "category is empty");
/// assert_eq!(err.kind(), ErrorKind::InvalidKey);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A storage backend (Redis, sled, ...) failed: connection refused, I/O error, server error.
    Backend,
    /// A value could not be encoded or decoded (serde, envelope, compression).
    Codec,
    /// A key or one of its parts is empty, too long or holds characters that are not allowed.
    InvalidKey,
    /// A value is larger than the configured maximum.
    ValueTooLarge,
    /// A configuration is invalid or could not be loaded.
    Config,
    /// An operation did not finish within its time limit.
    Timeout,
    /// The loader (the function computing a missing value) failed.
    Loader,
    /// A tier is switched off because it failed repeatedly (circuit breaker open).
    Unavailable,
    /// Something was used in a way its contract does not allow (closed store, missing init).
    Usage,
    /// The backend answered but refused this one operation (a key of the wrong type, out of
    /// memory, a read-only replica): the tier itself is up.
    Rejected,
}

impl ErrorKind {
    /// A short, stable, lowercase name for logs and metrics.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(aurelis_cache_core::ErrorKind::Timeout.as_str(), "timeout");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Backend => "backend",
            ErrorKind::Codec => "codec",
            ErrorKind::InvalidKey => "invalid_key",
            ErrorKind::ValueTooLarge => "value_too_large",
            ErrorKind::Config => "config",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Loader => "loader",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Usage => "usage",
            ErrorKind::Rejected => "rejected",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of every fallible operation in Aurelis Cache.
///
/// It carries a [`ErrorKind`], a human-readable message, the name of the tier (store) it came
/// from when there is one, and the underlying error as its `source()`. It is cheap to clone, so
/// one loader failure can be handed to every caller waiting on the same key.
///
/// An `Error` is one pointer wide (its parts sit behind an `Arc`), so a `Result` of a small
/// value is two words and comes back from a call in registers: a store's synchronous read
/// returns `Option<Result<bool>>` through every layer of a tier on each hit, and at 64 bytes
/// (the parts in line) each layer copied it through memory (`docs/performance.md`).
///
/// # Examples
///
/// ```
/// use aurelis_cache_core::{Error, ErrorKind};
///
/// let io = std::io::Error::new(std::io::ErrorKind::Other, "disk on fire");
/// let err = Error::new(ErrorKind::Backend, "write failed").with_tier("disk").with_source(io);
/// assert_eq!(err.tier(), Some("disk"));
/// assert_eq!(err.to_string(), "backend error in tier `disk`: write failed: disk on fire");
/// ```
#[derive(Clone)]
pub struct Error {
    inner: Arc<Inner>,
}

/// What an [`Error`] holds.
#[derive(Clone)]
struct Inner {
    kind: ErrorKind,
    message: String,
    tier: Option<Arc<str>>,
    source: Option<Arc<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    /// A new error of `kind` with `message`.
    ///
    /// # Examples
    ///
    /// ```
    /// let err = aurelis_cache_core::Error::new(aurelis_cache_core::ErrorKind::Config, "bad ttl");
    /// assert_eq!(err.message(), "bad ttl");
    /// ```
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { inner: Arc::new(Inner { kind, message: message.into(), tier: None, source: None }) }
    }

    /// Names the tier (store) the error came from.
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_cache_core::{Error, ErrorKind};
    /// let err = Error::new(ErrorKind::Backend, "down").with_tier("redis");
    /// assert_eq!(err.tier(), Some("redis"));
    /// ```
    pub fn with_tier(mut self, tier: impl Into<Arc<str>>) -> Self {
        Arc::make_mut(&mut self.inner).tier = Some(tier.into());
        self
    }

    /// Attaches the underlying error.
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_cache_core::{Error, ErrorKind};
    /// let io = std::io::Error::new(std::io::ErrorKind::Other, "eof");
    /// let err = Error::new(ErrorKind::Backend, "read").with_source(io);
    /// assert!(std::error::Error::source(&err).is_some());
    /// ```
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Arc::make_mut(&mut self.inner).source = Some(Arc::new(source));
        self
    }

    /// Attaches an already boxed error as the source: the box's own error is the `source()`
    /// (not a wrapper around it), so callers can downcast it to its type.
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_cache_core::{Error, ErrorKind};
    /// let boxed: Box<dyn std::error::Error + Send + Sync> =
    ///     std::io::Error::new(std::io::ErrorKind::TimedOut, "slow").into();
    /// let err = Error::new(ErrorKind::Loader, "the loader failed").with_boxed_source(boxed);
    /// let source = std::error::Error::source(&err).unwrap();
    /// assert_eq!(source.downcast_ref::<std::io::Error>().unwrap().kind(), std::io::ErrorKind::TimedOut);
    /// assert_eq!(err.to_string(), "loader error: the loader failed: slow");
    /// ```
    pub fn with_boxed_source(
        mut self,
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    ) -> Self {
        Arc::make_mut(&mut self.inner).source = Some(Arc::from(source));
        self
    }

    /// The kind of failure.
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_cache_core::{Error, ErrorKind};
    /// assert_eq!(Error::new(ErrorKind::Codec, "x").kind(), ErrorKind::Codec);
    /// ```
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// Whether the error says the tier is unreachable or too slow (a backend transport
    /// failure, a time-out, a tier switched off), as opposed to a problem with this one
    /// operation (a value too large, a key of the wrong type, a codec error). Only transport
    /// failures count towards a circuit breaker.
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_cache_core::{Error, ErrorKind};
    /// assert!(Error::new(ErrorKind::Timeout, "slow").is_transport());
    /// assert!(!Error::new(ErrorKind::Rejected, "WRONGTYPE").is_transport());
    /// assert!(!Error::new(ErrorKind::ValueTooLarge, "big").is_transport());
    /// ```
    pub fn is_transport(&self) -> bool {
        matches!(self.inner.kind, ErrorKind::Backend | ErrorKind::Timeout | ErrorKind::Unavailable)
    }

    /// The message, without kind, tier or source.
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_cache_core::{Error, ErrorKind};
    /// assert_eq!(Error::new(ErrorKind::Codec, "x").message(), "x");
    /// ```
    pub fn message(&self) -> &str {
        &self.inner.message
    }

    /// The tier (store) name, when the error came from one.
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_cache_core::{Error, ErrorKind};
    /// assert_eq!(Error::new(ErrorKind::Codec, "x").tier(), None);
    /// ```
    pub fn tier(&self) -> Option<&str> {
        self.inner.tier.as_deref()
    }

    /// Shorthand for an [`ErrorKind::InvalidKey`] error.
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_cache_core::{Error, ErrorKind};
    /// assert_eq!(Error::invalid_key("empty").kind(), ErrorKind::InvalidKey);
    /// ```
    pub fn invalid_key(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidKey, message)
    }

    /// Shorthand for an [`ErrorKind::Codec`] error.
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_cache_core::{Error, ErrorKind};
    /// assert_eq!(Error::codec("truncated").kind(), ErrorKind::Codec);
    /// ```
    pub fn codec(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Codec, message)
    }

    /// Shorthand for an [`ErrorKind::Backend`] error.
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_cache_core::{Error, ErrorKind};
    /// assert_eq!(Error::backend("refused").kind(), ErrorKind::Backend);
    /// ```
    pub fn backend(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Backend, message)
    }

    /// Shorthand for an [`ErrorKind::Config`] error.
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_cache_core::{Error, ErrorKind};
    /// assert_eq!(Error::config("ttl is zero").kind(), ErrorKind::Config);
    /// ```
    pub fn config(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Config, message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        let inner = &*self.inner;
        d.field("kind", &inner.kind).field("message", &inner.message);
        if let Some(tier) = &inner.tier {
            d.field("tier", tier);
        }
        if let Some(source) = &inner.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &*self.inner;
        write!(f, "{} error", inner.kind)?;
        if let Some(tier) = &inner.tier {
            write!(f, " in tier `{tier}`")?;
        }
        write!(f, ": {}", inner.message)?;
        if let Some(source) = &inner.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synchronous read's answer passes through every layer of a tier on each hit: it stays
    /// two words (returned in registers) only while the error is one pointer.
    #[test]
    fn an_error_is_one_pointer_and_a_read_answer_two_words() {
        assert_eq!(std::mem::size_of::<Error>(), std::mem::size_of::<usize>());
        assert!(std::mem::size_of::<Option<Result<bool>>>() <= 2 * std::mem::size_of::<usize>());
        // Changing a shared error copies its parts: the clone keeps what it had.
        let first = Error::new(ErrorKind::Backend, "down");
        let second = first.clone().with_tier("redis");
        assert_eq!(first.tier(), None);
        assert_eq!(second.tier(), Some("redis"));
        assert_eq!(second.message(), "down");
    }
}
