//! The one place where zstd's, lz4's and the file system's errors become
//! [`aurelis_cache_core::Error`].

use std::io;
use std::path::Path;

use aurelis_cache_core::{Error, ErrorKind};

/// A setting that cannot work.
pub(crate) fn config(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Config, message)
}

/// zstd could not train a dictionary from the samples given.
pub(crate) fn training(source: io::Error) -> Error {
    Error::new(ErrorKind::Config, "zstd could not train a dictionary from these samples")
        .with_source(source)
}

/// A dictionary file named in the configuration could not be read.
pub(crate) fn dictionary_file(path: &Path, source: io::Error) -> Error {
    Error::new(
        ErrorKind::Config,
        format!("cannot read the zstd dictionary at `{}`", path.display()),
    )
    .with_source(source)
}

/// zstd failed to compress (an error code from the library).
pub(crate) fn zstd_code(code: usize) -> Error {
    Error::new(
        ErrorKind::Codec,
        format!("zstd compression failed: {}", zstd::zstd_safe::get_error_name(code)),
    )
}
