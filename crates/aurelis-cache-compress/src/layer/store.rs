//! [`CompressedStore`]: a store behind a [`CompressionLayer`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aurelis_cache_core::{Capabilities, Result, ScanPage, Store, StoreCounters};
use bytes::Bytes;

use crate::layer::CompressionLayer;
use crate::stats::{CompressionStats, Counters};

/// A store whose writes go through a [`CompressionLayer`]; every other call is forwarded to
/// the store it wraps, reads included (the bytes a tier holds are decompressed when the
/// entry is decoded, by any reader). Built by [`CompressionLayer::layer`].
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> aurelis_cache_core::Result<()> {
/// use std::sync::Arc;
/// use aurelis_cache_compress::CompressionLayer;
/// use aurelis_cache_core::{Codec, Envelope, Store};
///
/// let store = CompressionLayer::builder().build()?
///     .layer(Arc::new(aurelis_cache_moka::MokaStore::builder().build()?));
/// let text = "JSON answers repeat their field names. ".repeat(50);
/// let entry = Envelope::new(Codec::Json, Codec::Json.encode(&text)?.into());
/// store.set("answer", entry.encode()?, None).await?;
///
/// let stored = Envelope::decode(store.get("answer").await?.unwrap())?;
/// assert_eq!(stored.value::<String>()?, text);
/// assert_eq!(store.name(), "memory");
/// assert_eq!(store.stats().compressed, 1);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct CompressedStore {
    inner: Arc<dyn Store>,
    layer: CompressionLayer,
    counters: Counters,
}

impl CompressedStore {
    /// `store` behind `layer`.
    pub fn new(store: Arc<dyn Store>, layer: CompressionLayer) -> Self {
        CompressedStore { inner: store, layer, counters: Counters::default() }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.inner
    }

    /// The layer's policy.
    pub fn layer(&self) -> &CompressionLayer {
        &self.layer
    }

    /// What the layer wrote so far: values, outcomes, bytes before and after, ratio.
    pub fn stats(&self) -> CompressionStats {
        self.counters.snapshot()
    }

    fn compress(&self, value: Bytes) -> Bytes {
        let before = value.len();
        let (out, outcome) = self.layer.compress_value(value);
        self.counters.record(outcome, before, out.len());
        out
    }
}

#[async_trait]
impl Store for CompressedStore {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.inner.get(key).await
    }

    /// Reads pass through untouched (the envelope names its compression), so the inner
    /// store's synchronous read is this store's too.
    fn get_sync(&self, key: &str) -> Option<Result<Option<Bytes>>> {
        self.inner.get_sync(key)
    }

    fn get_sync_with(&self, key: &str, read: &mut dyn FnMut(&[u8])) -> Option<Result<bool>> {
        self.inner.get_sync_with(key, read)
    }

    async fn set(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<()> {
        let value = self.compress(value);
        self.inner.set(key, value, ttl).await
    }

    async fn set_if_absent(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<bool> {
        let value = self.compress(value);
        self.inner.set_if_absent(key, value, ttl).await
    }

    async fn scan_prefix(
        &self,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<ScanPage> {
        self.inner.scan_prefix(prefix, cursor, limit).await
    }

    async fn flush(&self) -> Result<()> {
        self.inner.flush().await
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        self.inner.delete(key).await
    }

    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>> {
        self.inner.get_many(keys).await
    }

    async fn set_many(&self, entries: &[(&str, Bytes)], ttl: Option<Duration>) -> Result<()> {
        let compressed: Vec<(&str, Bytes)> =
            entries.iter().map(|(k, v)| (*k, self.compress(v.clone()))).collect();
        self.inner.set_many(&compressed, ttl).await
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        self.inner.delete_prefix(prefix).await
    }

    async fn delete_pattern(&self, pattern: &str) -> Result<u64> {
        self.inner.delete_pattern(pattern).await
    }

    async fn clear(&self) -> Result<()> {
        self.inner.clear().await
    }

    async fn len(&self) -> Result<u64> {
        self.inner.len().await
    }

    async fn is_empty(&self) -> Result<bool> {
        self.inner.is_empty().await
    }

    async fn size_bytes(&self) -> Result<u64> {
        self.inner.size_bytes().await
    }

    fn counters(&self) -> StoreCounters {
        let stats = self.stats();
        self.inner.counters().with_bytes_written(stats.bytes_before, stats.bytes_after)
    }

    /// The wrapped store's decoded-value side, forwarded: an in-process tier keeps decoded
    /// values (never compressed, nothing to save there), and the layer compresses the bytes
    /// written through [`Store`].
    fn as_value_store(&self) -> Option<&dyn aurelis_cache_core::ValueStore> {
        self.inner.as_value_store()
    }
}
