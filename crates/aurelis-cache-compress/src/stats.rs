//! What a compression layer did: counters and their serializable snapshot.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

/// What happened to one value on its way into the tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Compressed, and smaller.
    Compressed,
    /// Below the threshold (or the layer's algorithm is `none`): stored as is.
    Small,
    /// Compression did not shrink the payload: stored as is.
    Incompressible,
    /// Already compressed (a write-back from a lower tier): stored as is.
    AlreadyCompressed,
    /// Not an envelope (the layer only compresses envelopes): stored as is.
    NotEnvelope,
}

/// Lock-free counters of one layer.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    writes: AtomicU64,
    compressed: AtomicU64,
    small: AtomicU64,
    incompressible: AtomicU64,
    already_compressed: AtomicU64,
    not_envelope: AtomicU64,
    bytes_before: AtomicU64,
    bytes_after: AtomicU64,
}

impl Counters {
    pub(crate) fn record(&self, outcome: Outcome, before: usize, after: usize) {
        self.writes.fetch_add(1, Relaxed);
        let counter = match outcome {
            Outcome::Compressed => &self.compressed,
            Outcome::Small => &self.small,
            Outcome::Incompressible => &self.incompressible,
            Outcome::AlreadyCompressed => &self.already_compressed,
            Outcome::NotEnvelope => &self.not_envelope,
        };
        counter.fetch_add(1, Relaxed);
        self.bytes_before.fetch_add(before as u64, Relaxed);
        self.bytes_after.fetch_add(after as u64, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> CompressionStats {
        let bytes_before = self.bytes_before.load(Relaxed);
        let bytes_after = self.bytes_after.load(Relaxed);
        CompressionStats {
            writes: self.writes.load(Relaxed),
            compressed: self.compressed.load(Relaxed),
            below_threshold: self.small.load(Relaxed),
            incompressible: self.incompressible.load(Relaxed),
            already_compressed: self.already_compressed.load(Relaxed),
            not_envelope: self.not_envelope.load(Relaxed),
            bytes_before,
            bytes_after,
            ratio: ratio(bytes_before, bytes_after),
        }
    }
}

fn ratio(before: u64, after: u64) -> f64 {
    if after == 0 {
        1.0
    } else {
        before as f64 / after as f64
    }
}

/// A snapshot of what a [`CompressedStore`](crate::CompressedStore) wrote: how many values,
/// what became of them, and the bytes before and after (whole encoded entries, as the tier
/// stores them). Serializable, for the monitor report.
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
/// let answer = "A long, repetitive answer. ".repeat(200);
/// let entry = Envelope::new(Codec::Postcard, Codec::Postcard.encode(&answer)?.into()).encode()?;
/// store.set("k", entry, None).await?;
///
/// let stats = store.stats();
/// assert_eq!((stats.writes, stats.compressed), (1, 1));
/// assert!(stats.bytes_after < stats.bytes_before && stats.ratio > 10.0);
/// assert!(serde_json::to_string(&stats).unwrap().contains("\"ratio\""));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CompressionStats {
    /// Values written through the layer.
    pub writes: u64,
    /// Values stored compressed.
    pub compressed: u64,
    /// Values whose payload was below the threshold (or the algorithm is `none`).
    pub below_threshold: u64,
    /// Values compression did not shrink, stored uncompressed.
    pub incompressible: u64,
    /// Values already compressed when they arrived (write-backs), stored as they were.
    pub already_compressed: u64,
    /// Values that are not entry envelopes, stored untouched.
    pub not_envelope: u64,
    /// Bytes handed to the layer.
    pub bytes_before: u64,
    /// Bytes the layer handed to the tier.
    pub bytes_after: u64,
    /// `bytes_before / bytes_after` (1.0 before the first write).
    pub ratio: f64,
}
