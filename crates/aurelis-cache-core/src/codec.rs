//! How typed values become payload bytes: MessagePack (the default), postcard or JSON.
//!
//! None of them can run code while decoding (unlike Python's pickle). The default,
//! [`Codec::MessagePack`] with named struct fields, is self-describing, so everything serde
//! can write it can read back: `serde_json::Value` (tool arguments in LLM responses),
//! `#[serde(untagged)]` enums, `#[serde(skip_serializing_if)]` fields, structs that gained or
//! lost a field. [`Codec::Postcard`] is more compact and faster but not self-describing:
//! those types encode under it and then fail to decode; use it only for plain data.

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
    /// [postcard](https://docs.rs/postcard): compact, fast, not self-describing (see the
    /// module docs for the types it cannot decode).
    Postcard,
    /// JSON through serde_json: larger, self-describing, readable with other tools.
    Json,
    /// [MessagePack](https://docs.rs/rmp-serde) with named struct fields: compact and
    /// self-describing. The default.
    #[default]
    MessagePack,
}

impl Codec {
    /// The codec's id in the envelope flags.
    pub(crate) fn id(self) -> u8 {
        match self {
            Codec::Postcard => 0,
            Codec::Json => 1,
            Codec::MessagePack => 2,
        }
    }

    pub(crate) fn from_id(id: u8) -> Option<Self> {
        match id {
            0 => Some(Codec::Postcard),
            1 => Some(Codec::Json),
            2 => Some(Codec::MessagePack),
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
            Codec::MessagePack => rmp_serde::to_vec_named(value)
                .map_err(|e| Error::codec("MessagePack could not encode the value").with_source(e)),
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
            Codec::MessagePack => {
                let mut de = rmp_serde::Deserializer::new(std::io::Cursor::new(bytes));
                let value = T::deserialize(&mut de).map_err(|e| {
                    Error::codec(format!(
                        "MessagePack could not decode a {}",
                        std::any::type_name::<T>()
                    ))
                    .with_source(e)
                })?;
                let left = bytes.len() - (de.position() as usize).min(bytes.len());
                if left != 0 {
                    return Err(Error::codec(format!(
                        "{left} bytes left over after decoding a {}: the entry was written as another type",
                        std::any::type_name::<T>()
                    )));
                }
                Ok(value)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Response {
        content: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        reasoning: Option<String>,
        tool_args: serde_json::Value,
    }

    #[test]
    fn default_codec_round_trips_json_values_and_skipped_fields() {
        let value = Response {
            content: "hi".into(),
            reasoning: None,
            tool_args: serde_json::json!({"city": "Paris", "days": [1, 2.5, null]}),
        };
        let codec = Codec::default();
        assert_eq!(codec, Codec::MessagePack);
        let back: Response = codec.decode(&codec.encode(&value).unwrap()).unwrap();
        assert_eq!(back, value);
        // Postcard encodes it but cannot read it back: the trap the default avoids.
        let bytes = Codec::Postcard.encode(&value).unwrap();
        assert!(Codec::Postcard.decode::<Response>(&bytes).is_err());
    }

    #[test]
    fn message_pack_refuses_leftovers_and_other_types() {
        let bytes = Codec::MessagePack.encode(&(1u8, 2u8)).unwrap();
        assert!(Codec::MessagePack.decode::<u8>(&bytes).is_err());
        let mut longer = Codec::MessagePack.encode(&7u32).unwrap();
        longer.push(0);
        assert!(Codec::MessagePack.decode::<u32>(&longer).is_err());
        assert_eq!(Codec::from_id(Codec::MessagePack.id()), Some(Codec::MessagePack));
    }
}
