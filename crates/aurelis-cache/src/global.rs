//! The process-wide cache: [`init`] once at start-up, [`get_cache_manager`] anywhere.

use std::sync::OnceLock;

use aurelis_cache_core::{Error, ErrorKind, Result};

use crate::cache::Cache;
use crate::config::CacheConfig;

static GLOBAL: OnceLock<Cache> = OnceLock::new();
/// Serialises `init` calls, so two concurrent ones cannot both build a cache.
static INIT: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Builds the process-wide cache from `config` and returns it.
///
/// # Examples
///
/// ```
/// let err = aurelis_cache::get_cache_manager().unwrap_err();
/// assert_eq!(err.kind(), aurelis_cache::ErrorKind::Usage);
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let dir = tempfile::tempdir().unwrap();
/// let mut config = aurelis_cache::CacheConfig::default();
/// config.disk.store.path = Some(dir.path().join("db"));
/// let cache = aurelis_cache::init(&config).await?;
/// assert_eq!(aurelis_cache::get_cache_manager()?.tier_names(), cache.tier_names());
/// # Ok::<(), aurelis_cache::Error>(())
/// # }).unwrap();
/// ```
///
/// # Errors
///
/// [`ErrorKind::Usage`] when it was already initialised, and every error of
/// [`CacheConfig::build`].
pub async fn init(config: &CacheConfig) -> Result<Cache> {
    let _one_at_a_time = INIT.lock().await;
    if GLOBAL.get().is_some() {
        return Err(already());
    }
    let cache = config.build().await?;
    install(cache.clone())?;
    Ok(cache)
}

/// Installs an already built cache as the process-wide one.
///
/// # Examples
///
/// ```
/// let memory = std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?);
/// let cache = aurelis_cache::Cache::builder().tier(aurelis_cache::Tier::new("memory", memory)).build()?;
/// aurelis_cache::install(cache)?;
/// assert!(aurelis_cache::get_cache_manager().is_ok());
/// # Ok::<(), aurelis_cache::Error>(())
/// ```
///
/// # Errors
///
/// [`ErrorKind::Usage`] when a process-wide cache is already installed.
pub fn install(cache: Cache) -> Result<()> {
    GLOBAL.set(cache).map_err(|_| already())
}

/// The process-wide cache.
///
/// # Examples
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// // Nothing installed yet in this process: a usage error that says what to call.
/// let err = aurelis_cache::get_cache_manager().unwrap_err();
/// assert_eq!(err.kind(), aurelis_cache::ErrorKind::Usage);
///
/// let memory = std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?);
/// let cache = aurelis_cache::Cache::builder().tier(aurelis_cache::Tier::new("memory", memory)).build()?;
/// aurelis_cache::install(cache)?;
/// // Every later call gets the same cache.
/// aurelis_cache::get_cache_manager()?.set(("k", "1"), &1u8).await?;
/// assert_eq!(aurelis_cache::get_cache_manager()?.get::<u8>(("k", "1")).await?, Some(1));
/// # Ok::<(), aurelis_cache::Error>(())
/// # }).unwrap();
/// ```
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

/// The process-wide cache, without a clone (the `#[cached]` hot path).
#[cfg(feature = "macros")]
pub(crate) fn global_ref() -> Option<&'static Cache> {
    GLOBAL.get()
}

fn already() -> Error {
    Error::new(ErrorKind::Usage, "the process-wide cache is already initialised")
}

/// Flushes the process-wide cache before the process exits: waits (up to `limit`) for the
/// invalidations still to publish and makes the disk tier durable. The process-wide cache is
/// a `static` that is never dropped, so without this, writes of the last moments (sled's
/// flush interval, 500 ms by default) are lost when `main` returns or `process::exit` runs.
/// Returns the number of invalidations still unsent; `Ok(0)` when there is no process-wide
/// cache.
///
/// # Examples
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// // At the end of main:
/// assert_eq!(aurelis_cache::shutdown(std::time::Duration::from_secs(5)).await?, 0);
/// # Ok::<(), aurelis_cache::Error>(())
/// # }).unwrap();
/// ```
///
/// # Errors
///
/// As [`Cache::flush`].
pub async fn shutdown(limit: std::time::Duration) -> Result<usize> {
    match GLOBAL.get() {
        Some(cache) => cache.close(limit).await,
        None => Ok(0),
    }
}
