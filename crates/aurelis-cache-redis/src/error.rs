//! The one place where Redis and pool errors become [`aurelis_cache_core::Error`].
//!
//! How a Redis error is classified:
//!
//! | Redis error | kind | counts towards the breaker |
//! | --- | --- | --- |
//! | I/O, refused or dropped connection, `LOADING`, `CLUSTERDOWN`, `MASTERDOWN`, `TRYAGAIN`, `BUSY`, failed authentication | [`ErrorKind::Backend`] | yes |
//! | an I/O time-out reported by redis-rs | [`ErrorKind::Timeout`] | yes |
//! | any other reply the server refused (`WRONGTYPE`, `OOM`, `READONLY`, `NOSCRIPT`, `NOPERM`, `MISCONF`, `EXECABORT`, `ERR ...`) | [`ErrorKind::Rejected`] | no |
//!
//! "Counts towards the breaker" is [`aurelis_cache_core::Error::is_transport`]: a server that
//! answered but refused one operation is up, so it must not switch the whole tier off.

use std::time::Duration;

use aurelis_cache_core::{Error, ErrorKind};
use deadpool_redis::redis::{ErrorKind as RedisKind, RedisError, ServerErrorKind};

/// The kind a Redis error maps to; see the module documentation.
pub(crate) fn kind_of(err: &RedisError) -> ErrorKind {
    if err.is_timeout() {
        return ErrorKind::Timeout;
    }
    match err.kind() {
        RedisKind::Server(kind) => match kind {
            ServerErrorKind::BusyLoading
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::MasterDown
            | ServerErrorKind::TryAgain
            | ServerErrorKind::Moved
            | ServerErrorKind::Ask => ErrorKind::Backend,
            ServerErrorKind::ResponseError => {
                // A plain `ERR`: the command was refused (bad argument, value too large for
                // the protocol), except the connection limit, which refuses everybody.
                let detail = err.detail().unwrap_or_default();
                if detail.contains("max number of clients") {
                    ErrorKind::Backend
                } else {
                    ErrorKind::Rejected
                }
            }
            _ => ErrorKind::Rejected,
        },
        // A reply with a code redis-rs does not know (`WRONGTYPE`, `OOM`, `MISCONF`, `BUSY`,
        // `NOAUTH`, ...).
        RedisKind::Extension => match err.code() {
            Some("BUSY" | "NOAUTH" | "WRONGPASS" | "NOREPLICAS") => ErrorKind::Backend,
            _ => ErrorKind::Rejected,
        },
        _ => ErrorKind::Backend,
    }
}

/// A Redis error from `op` in tier `tier`, classified by [`kind_of`], with the Redis error as
/// source.
pub(crate) fn backend(tier: &str, op: &str, err: RedisError) -> Error {
    let kind = kind_of(&err);
    let message = match kind {
        ErrorKind::Rejected => format!("redis refused {op}"),
        ErrorKind::Timeout => format!("redis {op} timed out"),
        _ => format!("redis {op} failed"),
    };
    Error::new(kind, message).with_tier(tier).with_source(err)
}

/// A failure without a Redis error behind it (a reply of an unexpected shape, a lost task).
pub(crate) fn backend_msg(tier: &str, message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Backend, message).with_tier(tier)
}

/// `op` did not finish within `limit`: [`ErrorKind::Timeout`].
pub(crate) fn timeout(tier: &str, op: &str, limit: Duration) -> Error {
    Error::new(ErrorKind::Timeout, format!("redis {op} did not finish within {limit:?}"))
        .with_tier(tier)
}

/// Getting a connection from the pool failed.
pub(crate) fn pool(tier: &str, err: deadpool_redis::PoolError, connect_timeout: Duration) -> Error {
    use deadpool_redis::PoolError;
    match err {
        PoolError::Timeout(_) => timeout(tier, "connect", connect_timeout),
        PoolError::Backend(e) => connect(tier, "connect", e),
        other => backend_msg(tier, format!("redis connection pool failed: {other}")),
    }
}

/// Getting a cluster connection from the pool failed.
pub(crate) fn cluster_pool(
    tier: &str,
    err: deadpool_redis::cluster::PoolError,
    connect_timeout: Duration,
) -> Error {
    use deadpool_redis::cluster::PoolError;
    match err {
        PoolError::Timeout(_) => timeout(tier, "connect", connect_timeout),
        PoolError::Backend(e) => connect(tier, "cluster connect", e),
        other => backend_msg(tier, format!("redis cluster connection pool failed: {other}")),
    }
}

/// Opening a connection failed: whatever the server said, the tier is unusable until it is
/// fixed, so this is [`ErrorKind::Backend`] (or [`ErrorKind::Timeout`]), never `Rejected`.
pub(crate) fn connect(tier: &str, op: &str, err: RedisError) -> Error {
    let kind = if err.is_timeout() { ErrorKind::Timeout } else { ErrorKind::Backend };
    Error::new(kind, format!("redis {op} failed")).with_tier(tier).with_source(err)
}

/// A bad configuration value: [`ErrorKind::Config`] naming the field.
pub(crate) fn config(field: &str, problem: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Config, format!("redis config `{field}`: {problem}"))
}

/// Whether `err` means the connection it came from is unusable, so it is replaced.
///
/// A time-out is not one of them: a slow reply does not break a multiplexed connection (the
/// connection probes itself after a time-out instead, see `conn.rs`).
pub(crate) fn is_connection_error(err: &RedisError) -> bool {
    !err.is_timeout()
        && (err.is_unrecoverable_error()
            || err.is_io_error()
            || err.is_connection_dropped()
            || err.is_connection_refusal())
}

#[cfg(test)]
mod tests {
    use super::*;
    use deadpool_redis::redis::make_extension_error;

    #[test]
    fn server_refusals_are_rejected_not_transport() {
        for code in ["WRONGTYPE", "OOM", "MISCONF", "EXECABORTX"] {
            let err = make_extension_error(code.into(), Some("refused".into()));
            let e = backend("redis", "GET", err);
            assert_eq!(e.kind(), ErrorKind::Rejected, "{code}");
            assert!(!e.is_transport(), "{code}");
        }
        let readonly = RedisError::from((
            RedisKind::Server(ServerErrorKind::ReadOnly),
            "You can't write against a read only replica.",
        ));
        assert_eq!(kind_of(&readonly), ErrorKind::Rejected);
        let noscript = RedisError::from((RedisKind::Server(ServerErrorKind::NoScript), "x"));
        assert_eq!(kind_of(&noscript), ErrorKind::Rejected);
    }

    #[test]
    fn transport_failures_stay_backend_or_timeout() {
        let io = RedisError::from(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "x"));
        assert_eq!(kind_of(&io), ErrorKind::Backend);
        assert!(is_connection_error(&io));
        let slow = RedisError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, "x"));
        assert_eq!(kind_of(&slow), ErrorKind::Timeout);
        assert!(!is_connection_error(&slow), "a slow reply does not break the connection");
        assert!(backend("redis", "GET", slow).is_transport());
        let loading = RedisError::from((RedisKind::Server(ServerErrorKind::BusyLoading), "x"));
        assert_eq!(kind_of(&loading), ErrorKind::Backend);
        let busy = make_extension_error("BUSY".into(), Some("script".into()));
        assert_eq!(kind_of(&busy), ErrorKind::Backend);
        let full = RedisError::from((
            RedisKind::Server(ServerErrorKind::ResponseError),
            "An error was signalled by the server",
            "max number of clients reached".to_owned(),
        ));
        assert_eq!(kind_of(&full), ErrorKind::Backend);
    }
}
