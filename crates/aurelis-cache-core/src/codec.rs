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
                // Read in place (strings and byte arrays borrowed, then copied once into the
                // value), not through `io::Read`, which grows a buffer for every string.
                let value = rmp_serde::from_slice(bytes).map_err(|e| {
                    Error::codec(format!(
                        "MessagePack could not decode a {}",
                        std::any::type_name::<T>()
                    ))
                    .with_source(e)
                })?;
                let used = message_pack_len(bytes).unwrap_or(bytes.len());
                if used != bytes.len() {
                    return Err(Error::codec(format!(
                        "{} bytes left over after decoding a {}: the entry was written as another type",
                        bytes.len() - used,
                        std::any::type_name::<T>()
                    )));
                }
                Ok(value)
            }
        }
    }
}

/// The length of the one MessagePack value at the start of `bytes`, found by walking its
/// markers (`None` when it is cut short or malformed). Iterative: any nesting depth is fine.
fn message_pack_len(bytes: &[u8]) -> Option<usize> {
    /// The big-endian length of `n` bytes at `at`.
    fn length(bytes: &[u8], at: usize, n: usize) -> Option<usize> {
        let field = bytes.get(at..at.checked_add(n)?)?;
        Some(field.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b)))
    }
    let mut pos = 0usize;
    // Values still to skip; every value takes at least one byte, so more than the bytes left
    // is malformed (which also bounds the counter).
    let mut pending = 1usize;
    while pending > 0 {
        pending -= 1;
        let marker = *bytes.get(pos)?;
        pos += 1;
        // (bytes after the marker, of which a length field of `len_bytes`, nested values)
        let (skip, nested) = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
            0x80..=0x8f => (0, 2 * usize::from(marker & 0x0f)),
            0x90..=0x9f => (0, usize::from(marker & 0x0f)),
            0xa0..=0xbf => (usize::from(marker & 0x1f), 0),
            0xcc | 0xd0 => (1, 0),
            0xcd | 0xd1 => (2, 0),
            0xca | 0xce | 0xd2 => (4, 0),
            0xcb | 0xcf | 0xd3 => (8, 0),
            0xd4 => (2, 0),
            0xd5 => (3, 0),
            0xd6 => (5, 0),
            0xd7 => (9, 0),
            0xd8 => (17, 0),
            0xc4 | 0xd9 => (1 + length(bytes, pos, 1)?, 0),
            0xc5 | 0xda => (2 + length(bytes, pos, 2)?, 0),
            0xc6 | 0xdb => (4 + length(bytes, pos, 4)?, 0),
            0xc7 => (2 + length(bytes, pos, 1)?, 0),
            0xc8 => (3 + length(bytes, pos, 2)?, 0),
            0xc9 => (5 + length(bytes, pos, 4)?, 0),
            0xdc => (2, length(bytes, pos, 2)?),
            0xdd => (4, length(bytes, pos, 4)?),
            0xde => (2, 2 * length(bytes, pos, 2)?),
            0xdf => (4, length(bytes, pos, 4)?.checked_mul(2)?),
            0xc1 => return None,
        };
        pos = pos.checked_add(skip)?;
        pending = pending.checked_add(nested)?;
        if pos > bytes.len() || pending > bytes.len() - pos {
            return None;
        }
    }
    Some(pos)
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

    /// The marker walk measures every kind of value as rmp-serde writes it, alone and with
    /// bytes after it, and refuses every cut-short prefix.
    #[test]
    fn message_pack_length_matches_what_rmp_serde_writes() {
        use std::collections::BTreeMap;
        let mut map = BTreeMap::new();
        for i in 0..20u32 {
            map.insert(format!("k{i}"), vec![f64::from(i) * 0.5; (i % 3) as usize]);
        }
        let samples: Vec<Vec<u8>> = vec![
            Codec::MessagePack.encode(&0u8).unwrap(),
            Codec::MessagePack.encode(&-1i8).unwrap(),
            Codec::MessagePack.encode(&-100i64).unwrap(),
            Codec::MessagePack.encode(&u64::MAX).unwrap(),
            Codec::MessagePack.encode(&i64::MIN).unwrap(),
            Codec::MessagePack.encode(&300u16).unwrap(),
            Codec::MessagePack.encode(&70_000u32).unwrap(),
            Codec::MessagePack.encode(&1.5f32).unwrap(),
            Codec::MessagePack.encode(&1.5f64).unwrap(),
            Codec::MessagePack.encode(&true).unwrap(),
            Codec::MessagePack.encode(&()).unwrap(),
            Codec::MessagePack.encode(&Option::<u8>::None).unwrap(),
            Codec::MessagePack.encode(&"x".repeat(31)).unwrap(),
            Codec::MessagePack.encode(&"x".repeat(200)).unwrap(),
            Codec::MessagePack.encode(&"x".repeat(70_000)).unwrap(),
            Codec::MessagePack.encode(&serde_bytes_like(300)).unwrap(),
            Codec::MessagePack.encode(&vec![1u8; 20]).unwrap(),
            Codec::MessagePack.encode(&vec![vec![7u32; 3]; 70_000]).unwrap(),
            Codec::MessagePack.encode(&map).unwrap(),
            Codec::MessagePack
                .encode(&Response {
                    content: "hi".into(),
                    reasoning: Some("because".into()),
                    tool_args: serde_json::json!({"a": [1, {"b": null}], "c": -2.5}),
                })
                .unwrap(),
        ];
        for bytes in samples {
            assert_eq!(
                message_pack_len(&bytes),
                Some(bytes.len()),
                "{:x?}",
                &bytes[..8.min(bytes.len())]
            );
            let mut longer = bytes.clone();
            longer.extend_from_slice(&[0xc0, 0x01]);
            assert_eq!(message_pack_len(&longer), Some(bytes.len()));
            for cut in [0, 1, bytes.len() / 2, bytes.len() - 1] {
                if cut < bytes.len() {
                    assert_eq!(message_pack_len(&bytes[..cut]), None, "prefix of {cut} bytes");
                }
            }
        }
        // Binary (bin 8/16) and ext markers, written by hand.
        assert_eq!(message_pack_len(&[0xc4, 2, 9, 9]), Some(4));
        assert_eq!(message_pack_len(&[0xc5, 0, 1, 9]), Some(4));
        assert_eq!(message_pack_len(&[0xd4, 1, 9]), Some(3));
        assert_eq!(message_pack_len(&[0xc7, 1, 5, 9, 0xff]), Some(4));
        assert_eq!(message_pack_len(&[0xc1]), None);
        // A count far beyond the bytes there is refused at once.
        assert_eq!(message_pack_len(&[0xdd, 0xff, 0xff, 0xff, 0xff, 0]), None);
    }

    /// A `Vec<u8>` serialized as a byte string (`serde_bytes`-style), for the bin markers.
    fn serde_bytes_like(n: usize) -> impl Serialize {
        struct Bin(Vec<u8>);
        impl Serialize for Bin {
            fn serialize<S: serde::Serializer>(
                &self,
                s: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_bytes(&self.0)
            }
        }
        Bin(vec![3; n])
    }
}
