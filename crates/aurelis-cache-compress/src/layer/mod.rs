//! [`CompressionLayer`]: the compression policy, and its builder.

mod store;

use std::sync::Arc;

use aurelis_cache_core::{Envelope, Result, Store};
use bytes::Bytes;

use crate::compressor::{Compressor, PreparedDictionary};
use crate::config::{Algorithm, CompressionConfig};
use crate::dictionary::ZstdDictionary;
use crate::error;
use crate::stats::Outcome;

pub use store::CompressedStore;

/// Payloads smaller than this many bytes are stored uncompressed by default (as in the
/// reference): below it compression saves little and costs a round of work on every write.
pub const DEFAULT_THRESHOLD: usize = 1024;

/// The zstd level used when none is set. Measured on the LLM-response corpus in
/// `benches/data` (docs/compression.md), level 3 compresses 4-8x faster than gzip level 6
/// and decompresses 2-4x faster, at a ratio 2-6 % lower; a trained dictionary
/// ([`CompressionLayerBuilder::dictionary`]) beats gzip's ratio at the same speed.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// The compression policy of one tier: which algorithm, at what level, from what payload
/// size, with which dictionary. Wrap a store with [`CompressionLayer::layer`]; the layer is
/// cheap to clone and can wrap several stores.
///
/// Only entry envelopes are compressed (values that are not envelopes pass through
/// untouched), and only their payload: the header, tags and times stay readable. A payload
/// compression does not shrink is stored as it was. Reads pass bytes through: any reader
/// decompresses when it decodes the entry, whatever layer wrote it.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> aurelis_cache_core::Result<()> {
/// use std::sync::Arc;
/// use aurelis_cache_compress::{Algorithm, CompressionLayer};
/// use aurelis_cache_core::{Codec, Compression, Envelope, Store};
///
/// let disk = Arc::new(aurelis_cache_moka::MokaStore::builder().build()?);
/// let store = CompressionLayer::builder().algorithm(Algorithm::Lz4).build()?.layer(disk.clone());
///
/// let answer = "The answer, repeated at length. ".repeat(100);
/// let entry = Envelope::new(Codec::Postcard, Codec::Postcard.encode(&answer)?.into());
/// store.set("k", entry.encode()?, None).await?;
///
/// // The tier holds a smaller, lz4-compressed entry; decoding it gives the answer back.
/// let raw = disk.get("k").await?.unwrap();
/// assert!(raw.len() < entry.encoded_len() / 5);
/// let stored = Envelope::decode(raw)?;
/// assert_eq!(stored.compression, Compression::Lz4);
/// assert_eq!(stored.value::<String>()?, answer);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct CompressionLayer {
    algorithm: Algorithm,
    threshold: usize,
    compressor: Compressor,
}

impl CompressionLayer {
    /// A builder with the defaults: zstd at [`DEFAULT_ZSTD_LEVEL`] from
    /// [`DEFAULT_THRESHOLD`] bytes, no dictionary.
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_cache_compress::{Algorithm, CompressionLayer};
    /// let layer = CompressionLayer::builder().zstd_level(9).threshold(4096).build()?;
    /// assert_eq!((layer.algorithm(), layer.threshold()), (Algorithm::Zstd, 4096));
    /// assert!(CompressionLayer::builder().zstd_level(99).build().is_err());
    /// # Ok::<(), aurelis_cache_core::Error>(())
    /// ```
    pub fn builder() -> CompressionLayerBuilder {
        CompressionLayerBuilder::default()
    }

    /// A layer from its serde configuration; dictionary files are read and registered.
    ///
    /// # Errors
    ///
    /// As [`CompressionLayerBuilder::build`], and
    /// [`ErrorKind::Config`](aurelis_cache_core::ErrorKind::Config) when a dictionary file
    /// cannot be read.
    pub fn from_config(config: &CompressionConfig) -> Result<Self> {
        let mut builder = CompressionLayer::builder()
            .algorithm(config.algorithm)
            .zstd_level(config.level)
            .threshold(config.threshold);
        if let Some(d) = &config.dictionary {
            builder = builder.dictionary(ZstdDictionary::from_file(d.id, &d.path)?);
        }
        for d in &config.previous_dictionaries {
            builder = builder.previous_dictionary(ZstdDictionary::from_file(d.id, &d.path)?);
        }
        builder.build()
    }

    /// Wraps `store`: writes go through the layer, everything else is forwarded.
    pub fn layer(&self, store: Arc<dyn Store>) -> CompressedStore {
        CompressedStore::new(store, self.clone())
    }

    /// The algorithm payloads are written with.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Payloads below this many bytes are stored uncompressed.
    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// The id of the dictionary payloads are compressed with, if any.
    pub fn dictionary_id(&self) -> Option<u32> {
        match &self.compressor {
            Compressor::ZstdDictionary(d) => Some(d.id),
            _ => None,
        }
    }

    /// Compresses one encoded entry as the layer would store it; bytes that are not an
    /// envelope, are already compressed, are below the threshold or do not shrink come back
    /// as they were (the same `Bytes`, no copy).
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_cache_compress::CompressionLayer;
    /// use aurelis_cache_core::{Codec, Envelope};
    ///
    /// let layer = CompressionLayer::builder().build()?;
    /// let small = Envelope::new(Codec::Json, "[1,2]".into()).encode()?;
    /// assert_eq!(layer.compress_entry(small.clone()), small);
    /// let big = Envelope::new(Codec::Json, "[1,2],".repeat(1000).into());
    /// let out = layer.compress_entry(big.encode()?);
    /// assert!(out.len() < 200);
    /// assert_eq!(Envelope::decode(out)?.decompressed_payload(1 << 20)?, big.payload);
    /// # Ok::<(), aurelis_cache_core::Error>(())
    /// ```
    pub fn compress_entry(&self, raw: Bytes) -> Bytes {
        self.compress_value(raw).0
    }

    pub(crate) fn compress_value(&self, raw: Bytes) -> (Bytes, Outcome) {
        // An envelope's payload is shorter than the envelope: small values need no parsing.
        if matches!(self.compressor, Compressor::None) || raw.len() < self.threshold {
            return (raw, Outcome::Small);
        }
        let Ok(mut env) = Envelope::decode(raw.clone()) else {
            return (raw, Outcome::NotEnvelope);
        };
        if env.compression != aurelis_cache_core::Compression::None {
            return (raw, Outcome::AlreadyCompressed);
        }
        if env.payload.len() < self.threshold {
            return (raw, Outcome::Small);
        }
        let compressed = match self.compressor.compress(&env.payload) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "compression failed; entry stored uncompressed");
                return (raw, Outcome::Incompressible);
            }
        };
        if compressed.len() >= env.payload.len() {
            return (raw, Outcome::Incompressible);
        }
        env.payload = compressed.into();
        env.compression = self.compressor.compression();
        match env.encode() {
            Ok(out) => (out, Outcome::Compressed),
            // Re-encoding what decoded cannot fail; should it, the original is still valid.
            Err(_) => (raw, Outcome::Incompressible),
        }
    }
}

/// Builds a [`CompressionLayer`]; the serde twin is [`CompressionConfig`].
///
/// # Examples
///
/// ```
/// use aurelis_cache_compress::{Algorithm, CompressionLayer, ZstdDictionary};
///
/// let samples: Vec<String> =
///     (0..400).map(|i| format!("Ticket {i}: the printer on floor {} is out of toner.", i % 9)).collect();
/// let dict = ZstdDictionary::train(5, &samples, 2048)?;
/// let layer = CompressionLayer::builder().dictionary(dict).threshold(64).build()?;
/// assert_eq!(layer.dictionary_id(), Some(5));
/// // A dictionary is a zstd feature.
/// let lz4 = CompressionLayer::builder()
///     .algorithm(Algorithm::Lz4)
///     .dictionary(ZstdDictionary::from_bytes(6, b"words".to_vec()))
///     .build();
/// assert!(lz4.is_err());
/// # Ok::<(), aurelis_cache_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct CompressionLayerBuilder {
    algorithm: Algorithm,
    level: i32,
    threshold: usize,
    dictionary: Option<ZstdDictionary>,
    previous: Vec<ZstdDictionary>,
}

impl Default for CompressionLayerBuilder {
    fn default() -> Self {
        CompressionLayerBuilder {
            algorithm: Algorithm::default(),
            level: DEFAULT_ZSTD_LEVEL,
            threshold: DEFAULT_THRESHOLD,
            dictionary: None,
            previous: Vec::new(),
        }
    }
}

impl CompressionLayerBuilder {
    /// The algorithm payloads are written with (default zstd).
    pub fn algorithm(mut self, algorithm: Algorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// The zstd level (default [`DEFAULT_ZSTD_LEVEL`]).
    pub fn zstd_level(mut self, level: i32) -> Self {
        self.level = level;
        self
    }

    /// Payloads below this many bytes are stored uncompressed (default 1024).
    pub fn threshold(mut self, bytes: usize) -> Self {
        self.threshold = bytes;
        self
    }

    /// Compress with this zstd dictionary (registered for reading when the layer is built).
    pub fn dictionary(mut self, dictionary: ZstdDictionary) -> Self {
        self.dictionary = Some(dictionary);
        self
    }

    /// Register an older dictionary for reading only, so that entries written with it stay
    /// readable.
    pub fn previous_dictionary(mut self, dictionary: ZstdDictionary) -> Self {
        self.previous.push(dictionary);
        self
    }

    /// Validates the settings, registers the dictionaries and builds the layer.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`](aurelis_cache_core::ErrorKind::Config) when the zstd level is out
    /// of zstd's range, a dictionary is set for an algorithm other than zstd, a dictionary id
    /// is registered with other bytes, or zstd refuses a dictionary.
    pub fn build(self) -> Result<CompressionLayer> {
        let (min, max) = (zstd::zstd_safe::min_c_level(), zstd::zstd_safe::max_c_level());
        if !(min..=max).contains(&self.level) {
            return Err(error::config(format!(
                "zstd level {} is out of range ({min} to {max})",
                self.level
            )));
        }
        if self.dictionary.is_some() && self.algorithm != Algorithm::Zstd {
            return Err(error::config(format!(
                "a dictionary needs algorithm zstd, not {:?}",
                self.algorithm
            )));
        }
        for d in &self.previous {
            d.register()?;
        }
        let compressor = match (self.algorithm, self.dictionary) {
            (Algorithm::None, _) => Compressor::None,
            (Algorithm::Lz4, _) => Compressor::Lz4,
            (Algorithm::Zstd, None) => Compressor::Zstd { level: self.level },
            (Algorithm::Zstd, Some(d)) => {
                d.register()?;
                Compressor::ZstdDictionary(Arc::new(PreparedDictionary::new(
                    d.id(),
                    d.bytes(),
                    self.level,
                )?))
            }
        };
        Ok(CompressionLayer { algorithm: self.algorithm, threshold: self.threshold, compressor })
    }
}
