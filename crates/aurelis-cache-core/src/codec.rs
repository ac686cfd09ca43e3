//! How typed values become payload bytes: postcard (compact, the default) or JSON.
//!
//! Neither format can run code while decoding (unlike Python's pickle). Postcard is not
//! self-describing: types that need to see the data to decode it (`serde_json::Value`,
//! `#[serde(untagged)]` enums, `#[serde(skip_serializing_if)]` fields) need [`Codec::Json`].

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The serialization format of a payload. Its id travels in the envelope's flags, so a reader
/// decodes every entry with the codec it was written with, whatever its own default.
///
/// # Examples
///
/// ```
/// use aurelis_cache_core::Codec;
///
/// let bytes = Codec::Postcard.encode(&vec![1u32, 2, 3])?;
/// let back: Vec<u32> = Codec::Postcard.decode(&bytes)?;
/// assert_eq!(back, [1, 2, 3]);
/// # Ok::<(), aurelis_cache_core::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Codec {
    /// [postcard](https://docs.rs/postcard): compact, fast, not self-describing.
    #[default]
    Postcard,
    /// JSON through serde_json: larger, self-describing, readable with other tools.
    Json,
}

impl Codec {
    /// The codec's id in the envelope flags.
    pub(crate) fn id(self) -> u8 {
        match self {
            Codec::Postcard => 0,
            Codec::Json => 1,
        }
    }

    pub(crate) fn from_id(id: u8) -> Option<Self> {
        match id {
            0 => Some(Codec::Postcard),
            1 => Some(Codec::Json),
            _ => None,
        }
    }

    /// Serializes `value`.
    ///
    /// # Examples
    ///
    /// ```
    /// let bytes = aurelis_cache_core::Codec::Json.encode(&("a", 1))?;
    /// assert_eq!(bytes, br#"["a",1]"#);
    /// # Ok::<(), aurelis_cache_core::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Codec`](crate::ErrorKind::Codec) when the value's `Serialize` impl fails
    /// or the format cannot represent it.
    pub fn encode<T: Serialize + ?Sized>(self, value: &T) -> Result<Vec<u8>> {
        match self {
            Codec::Postcard => postcard::to_stdvec(value)
                .map_err(|e| Error::codec("postcard could not encode the value").with_source(e)),
            Codec::Json => serde_json::to_vec(value)
                .map_err(|e| Error::codec("JSON could not encode the value").with_source(e)),
        }
    }

    /// Deserializes a `T` from `bytes`.
    ///
    /// # Examples
    ///
    /// ```
    /// let n: Option<u8> = aurelis_cache_core::Codec::Postcard.decode(&[0])?;
    /// assert_eq!(n, None);
    /// // Bytes left over mean the entry was written as another type.
    /// assert!(aurelis_cache_core::Codec::Postcard.decode::<u8>(&[1, 2]).is_err());
    /// # Ok::<(), aurelis_cache_core::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Codec`](crate::ErrorKind::Codec) when the bytes are not a valid `T`
    /// (for postcard, also when bytes are left over after a `T`). Postcard cannot detect
    /// every mismatch: bytes written as one type may happen to decode as another of the same
    /// shape; the key's version is the tool for schema changes.
    pub fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T> {
        match self {
            Codec::Postcard => {
                let (value, rest) = postcard::take_from_bytes(bytes).map_err(|e| {
                    Error::codec(format!(
                        "postcard could not decode a {}",
                        std::any::type_name::<T>()
                    ))
                    .with_source(e)
                })?;
                // Postcard is not self-describing; leftover bytes are the one sign it gives
                // that the bytes were written as another type.
                if !rest.is_empty() {
                    return Err(Error::codec(format!(
                        "{} bytes left over after decoding a {}: the entry was written as another type",
                        rest.len(),
                        std::any::type_name::<T>()
                    )));
                }
                Ok(value)
            }
            Codec::Json => serde_json::from_slice(bytes).map_err(|e| {
                Error::codec(format!("JSON could not decode a {}", std::any::type_name::<T>()))
                    .with_source(e)
            }),
        }
    }
}
