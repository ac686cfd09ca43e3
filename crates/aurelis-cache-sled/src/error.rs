//! The one place where sled's errors become [`aurelis_cache_core::Error`].

use std::io;
use std::path::Path;
use std::sync::Arc;

use aurelis_cache_core::{Error, ErrorKind};

/// A failed sled operation `op` (`"get"`, `"insert"`, ...) in tier `tier`.
pub(crate) fn backend(tier: &Arc<str>, op: &str, source: sled::Error) -> Error {
    Error::new(ErrorKind::Backend, format!("sled {op} failed"))
        .with_tier(Arc::clone(tier))
        .with_source(source)
}

/// The database at `path` could not be opened. A path that cannot be a database directory
/// (under a regular file, not writable, ...) is a configuration error; a database locked by
/// another store or process, and anything else, is a backend error.
pub(crate) fn open(tier: &str, path: &Path, source: sled::Error) -> Error {
    let shown = path.display();
    let (kind, message) = match &source {
        e if is_locked(e) => (
            ErrorKind::Backend,
            format!(
                "the sled database at `{shown}` is locked: another store or process has it open"
            ),
        ),
        sled::Error::Io(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotADirectory
                    | io::ErrorKind::AlreadyExists
                    | io::ErrorKind::NotFound
                    | io::ErrorKind::PermissionDenied
                    | io::ErrorKind::IsADirectory
                    | io::ErrorKind::ReadOnlyFilesystem
                    | io::ErrorKind::InvalidInput
            ) =>
        {
            (ErrorKind::Config, format!("cannot open a sled database at `{shown}`"))
        }
        _ => (ErrorKind::Backend, format!("cannot open the sled database at `{shown}`")),
    };
    Error::new(kind, message).with_tier(tier).with_source(source)
}

/// Whether opening failed because another handle holds the database's file lock.
pub(crate) fn is_locked(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

/// A setting that cannot work.
pub(crate) fn config(tier: &str, message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Config, message).with_tier(tier)
}

/// A blocking task that did not finish (panicked or was cancelled by a runtime shutdown).
pub(crate) fn task(tier: &Arc<str>, op: &str, source: tokio::task::JoinError) -> Error {
    Error::new(ErrorKind::Backend, format!("the blocking {op} task did not finish"))
        .with_tier(Arc::clone(tier))
        .with_source(source)
}

/// The sweeper thread could not be started.
pub(crate) fn spawn(tier: &str, source: io::Error) -> Error {
    Error::new(ErrorKind::Backend, "cannot start the expiry sweeper thread")
        .with_tier(tier)
        .with_source(source)
}
