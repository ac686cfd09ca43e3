//! The process-wide cache: [`init`] once at start-up, [`get_cache_manager`] anywhere.

use std::sync::OnceLock;

use aurelis_cache_core::{Error, ErrorKind, Result};

use crate::cache::Cache;
use crate::config::CacheConfig;

static GLOBAL: OnceLock<Cache> = OnceLock::new();

/// Builds the process-wide cache from `config` and returns it.
///
/// # Errors
///
/// [`ErrorKind::Usage`] when it was already initialised, and every error of
/// [`CacheConfig::build`].
pub async fn init(config: &CacheConfig) -> Result<Cache> {
    if GLOBAL.get().is_some() {
        return Err(already());
    }
    let cache = config.build().await?;
    install(cache.clone())?;
    Ok(cache)
}

/// Installs an already built cache as the process-wide one.
///
/// # Errors
///
/// [`ErrorKind::Usage`] when a process-wide cache is already installed.
pub fn install(cache: Cache) -> Result<()> {
    GLOBAL.set(cache).map_err(|_| already())
}

/// The process-wide cache.
///
/// # Errors
///
/// [`ErrorKind::Usage`] when [`init`] (or [`install`]) has not been called.
pub fn get_cache_manager() -> Result<Cache> {
    GLOBAL.get().cloned().ok_or_else(|| {
        Error::new(
            ErrorKind::Usage,
            "the process-wide cache is not initialised; call aurelis_cache::init(&config) first",
        )
    })
}

fn already() -> Error {
    Error::new(ErrorKind::Usage, "the process-wide cache is already initialised")
}
