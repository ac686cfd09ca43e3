//! [`ZstdDictionary`]: a zstd dictionary under an id, trained from sample payloads.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use aurelis_cache_core::compression::register_dictionary;
use aurelis_cache_core::Result;

use crate::error;

/// The dictionary size [`ZstdDictionary::train`] aims for when given none: 16 KiB, enough for
/// the phrasing many short answers share.
pub const DEFAULT_DICTIONARY_SIZE: usize = 16 * 1024;

/// A zstd dictionary and the id entries compressed with it carry.
///
/// Many short, similar payloads (answers in the same format, JSON with the same fields)
/// compress far better with a dictionary trained on samples of them. The id goes into every
/// entry compressed with it; a process reads such entries while a dictionary with that id is
/// registered (see [`aurelis_cache_core::compression::register_dictionary`];
/// [`ZstdDictionary::register`] and a [`CompressionLayer`](crate::CompressionLayer) using the
/// dictionary do it). To change the dictionary, train a new one under a new id and keep the
/// old one registered while entries written with it may still be cached.
///
/// # Examples
///
/// ```
/// use aurelis_cache_compress::ZstdDictionary;
///
/// let samples: Vec<String> = (0..500)
///     .map(|i| format!(r#"{{"role":"assistant","content":"Order {i} ships in {} days.","finish_reason":"stop"}}"#, i % 7))
///     .collect();
/// let dict = ZstdDictionary::train(7, &samples, 4096)?;
/// assert_eq!(dict.id(), 7);
/// assert!(!dict.bytes().is_empty() && dict.bytes().len() <= 4096);
/// # Ok::<(), aurelis_cache_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ZstdDictionary {
    id: u32,
    bytes: Arc<[u8]>,
}

impl ZstdDictionary {
    /// A dictionary from its bytes (as [`ZstdDictionary::bytes`] gave them, or any zstd
    /// dictionary or raw content).
    ///
    /// # Examples
    ///
    /// ```
    /// let dict = aurelis_cache_compress::ZstdDictionary::from_bytes(3, b"common words".to_vec());
    /// assert_eq!(dict.bytes(), b"common words");
    /// ```
    pub fn from_bytes(id: u32, bytes: impl Into<Arc<[u8]>>) -> Self {
        ZstdDictionary { id, bytes: bytes.into() }
    }

    /// Reads a dictionary file (as written from [`ZstdDictionary::bytes`], or by `zstd --train`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`](aurelis_cache_core::ErrorKind::Config) when the file cannot be read.
    pub fn from_file(id: u32, path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| error::dictionary_file(path, e))?;
        Ok(ZstdDictionary::from_bytes(id, bytes))
    }

    /// Trains a dictionary of at most `max_size` bytes from sample payloads (a few hundred
    /// or more, each what the cache would store: serialized values).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`](aurelis_cache_core::ErrorKind::Config) when zstd cannot train one
    /// (too few or too small samples).
    pub fn train<S: AsRef<[u8]>>(id: u32, samples: &[S], max_size: usize) -> Result<Self> {
        let bytes = zstd::dict::from_samples(samples, max_size).map_err(error::training)?;
        Ok(ZstdDictionary::from_bytes(id, bytes))
    }

    /// The id entries carry.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The dictionary's bytes, to save and load with [`ZstdDictionary::from_bytes`].
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Registers the dictionary for decompression in this process (a reader that does not
    /// write with it, or still holds entries written with it, needs only this).
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_cache_compress::ZstdDictionary;
    /// ZstdDictionary::from_bytes(11, b"old answers".to_vec()).register()?;
    /// assert!(aurelis_cache_core::compression::dictionary(11).is_some());
    /// # Ok::<(), aurelis_cache_core::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`](aurelis_cache_core::ErrorKind::Config) when the id is registered
    /// with other bytes, or zstd refuses the bytes.
    pub fn register(&self) -> Result<()> {
        register_dictionary(self.id, Arc::clone(&self.bytes)).map(|_| ())
    }
}

impl fmt::Debug for ZstdDictionary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZstdDictionary")
            .field("id", &self.id)
            .field("len", &self.bytes.len())
            .finish()
    }
}
