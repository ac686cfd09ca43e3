//! The one place where Redis and pool errors become [`aurelis_cache_core::Error`].

use std::time::Duration;

use aurelis_cache_core::{Error, ErrorKind};
use deadpool_redis::redis::RedisError;

/// A Redis error from `op` in tier `tier`: [`ErrorKind::Backend`] with the Redis error as
/// source.
pub(crate) fn backend(tier: &str, op: &str, err: RedisError) -> Error {
    Error::new(ErrorKind::Backend, format!("redis {op} failed")).with_tier(tier).with_source(err)
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
        PoolError::Backend(e) => backend(tier, "connect", e),
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
        PoolError::Backend(e) => backend(tier, "cluster connect", e),
        other => backend_msg(tier, format!("redis cluster connection pool failed: {other}")),
    }
}

/// A bad configuration value: [`ErrorKind::Config`] naming the field.
pub(crate) fn config(field: &str, problem: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Config, format!("redis config `{field}`: {problem}"))
}

/// Whether `err` means the connection it came from is unusable, so it is replaced.
pub(crate) fn is_connection_error(err: &RedisError) -> bool {
    err.is_unrecoverable_error()
        || err.is_io_error()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.is_timeout()
}
