//! The entry envelope: what every tier stores for one cached value.
//!
//! Binary layout (all integers little-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 2 | magic `0xA7 0xCA` |
//! | 1 | format version ([`FORMAT_VERSION`]) |
//! | 1 | flags: bits 0-2 codec, bits 3-5 compression ([`Compression`]), bits 6-7 zero |
//! | 8 | created-at, ms since the Unix epoch |
//! | 8 | expires-at, ms since the Unix epoch, 0 = never |
//! | 8 | stale-until, ms since the Unix epoch, 0 = none |
//! | 2 | tag count, then per tag: 2-byte length and UTF-8 bytes |
//! | 4 | payload length, then the payload |
//! | 8 | xxh3-64 checksum of every byte before it |
//!
//! Decoding never panics: an unknown version, bad lengths, bad UTF-8 or a checksum mismatch
//! is an [`ErrorKind::Codec`](crate::ErrorKind::Codec) error, which the cache treats as a miss
//! and counts as `corrupt`. Times are wall-clock so that processes sharing a tier agree on them.
//!
//! A compressed payload (see [`compression`] for the layout of each
//! algorithm) is decompressed by [`Envelope::value`] and [`Envelope::value_bounded`]: every
//! build reads every compression, whatever it writes. The checksum covers the payload as
//! stored (compressed).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use xxhash_rust::xxh3::xxh3_64;

use crate::codec::Codec;
use crate::compression::{self, DEFAULT_MAX_DECOMPRESSED_BYTES};
use crate::error::{Error, Result};

/// The envelope format this version writes and reads.
pub const FORMAT_VERSION: u8 = 1;
/// The most tags one entry may carry.
pub const MAX_TAGS: usize = 64;
/// The longest tag, in bytes.
pub const MAX_TAG_LEN: usize = 256;

const MAGIC: [u8; 2] = [0xA7, 0xCA];
const HEADER_LEN: usize = 2 + 1 + 1 + 8 + 8 + 8 + 2;
const CHECKSUM_LEN: usize = 8;

/// How a payload is compressed; stored in bits 3-5 of the envelope's flags. Core writes
/// [`Compression::None`] and reads every variant (see [`compression`] for
/// the payload layouts); the `aurelis-cache-compress` layer writes the others.
///
/// # Examples
///
/// ```
/// use aurelis_cache_core::Compression;
/// assert_eq!(Compression::default(), Compression::None);
/// assert_eq!(Compression::ZstdDictionary.as_str(), "zstd-dictionary");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Compression {
    /// Stored as is.
    #[default]
    None,
    /// zstd frame.
    Zstd,
    /// lz4 block with its size prepended.
    Lz4,
    /// zstd frame compressed with a registered dictionary, whose id is prepended.
    ZstdDictionary,
}

impl Compression {
    /// A short, stable, lowercase name for logs and stats.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Zstd => "zstd",
            Compression::Lz4 => "lz4",
            Compression::ZstdDictionary => "zstd-dictionary",
        }
    }

    fn id(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Zstd => 1,
            Compression::Lz4 => 2,
            Compression::ZstdDictionary => 3,
        }
    }

    fn from_id(id: u8) -> Option<Self> {
        match id {
            0 => Some(Compression::None),
            1 => Some(Compression::Zstd),
            2 => Some(Compression::Lz4),
            3 => Some(Compression::ZstdDictionary),
            _ => None,
        }
    }
}

/// Milliseconds since the Unix epoch, now.
///
/// # Examples
///
/// ```
/// assert!(aurelis_cache_core::envelope::now_ms() > 1_600_000_000_000);
/// ```
pub fn now_ms() -> u64 {
    // Seconds and milliseconds apart: `Duration::as_millis` divides a `u128`.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs().saturating_mul(1000) + u64::from(d.subsec_millis()))
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch at the system clock's last tick: what reads compare
/// deadlines with. Never ahead of [`now_ms`] and at most one kernel tick behind it (1 to 4 ms
/// on Linux, where it is `CLOCK_REALTIME_COARSE`, a read of a value the kernel keeps, about a
/// tenth of the cost of the precise clock; elsewhere it is [`now_ms`]). So an entry is never
/// judged expired before its deadline, and may be served up to one tick after it.
///
/// # Examples
///
/// ```
/// use aurelis_cache_core::envelope::{coarse_now_ms, now_ms};
/// let coarse = coarse_now_ms();
/// let precise = now_ms();
/// assert!(coarse <= precise && precise - coarse < 1_000);
/// ```
#[inline]
pub fn coarse_now_ms() -> u64 {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
        match (u64::try_from(t.tv_sec), u64::try_from(t.tv_nsec)) {
            (Ok(secs), Ok(nanos)) => secs.saturating_mul(1000) + nanos / 1_000_000,
            _ => 0,
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        now_ms()
    }
}

/// One cached value with its metadata.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aurelis_cache_core::{Codec, Envelope};
///
/// let env = Envelope::new(Codec::Postcard, Codec::Postcard.encode("hi")?.into())
///     .with_ttl(Some(Duration::from_secs(60)))
///     .with_tags(vec!["greetings".into()]);
/// let bytes = env.encode()?;
/// let back = Envelope::decode(bytes)?;
/// assert_eq!(back.tags, ["greetings"]);
/// assert_eq!(back.value::<String>()?, "hi");
/// # Ok::<(), aurelis_cache_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// The codec the payload was written with.
    pub codec: Codec,
    /// How the payload is compressed.
    pub compression: Compression,
    /// When the entry was written, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// When the entry stops being fresh, ms since the Unix epoch; `None` = never.
    pub expires_at_ms: Option<u64>,
    /// Until when an expired entry may still be served when the loader fails (fail-safe).
    pub stale_until_ms: Option<u64>,
    /// Tags for tag invalidation.
    pub tags: Vec<String>,
    /// The (possibly compressed) serialized value.
    pub payload: Bytes,
}

impl Envelope {
    /// An envelope created now, never expiring, without tags.
    ///
    /// # Examples
    ///
    /// ```
    /// let env = aurelis_cache_core::Envelope::new(aurelis_cache_core::Codec::Json, "1".into());
    /// assert_eq!(env.expires_at_ms, None);
    /// ```
    pub fn new(codec: Codec, payload: Bytes) -> Self {
        Envelope {
            codec,
            compression: Compression::None,
            created_at_ms: now_ms(),
            expires_at_ms: None,
            stale_until_ms: None,
            tags: Vec::new(),
            payload,
        }
    }

    /// Sets the expiry to `created_at + ttl` (`None` = never expires).
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// let env = aurelis_cache_core::Envelope::new(Default::default(), Default::default())
    ///     .with_ttl(Some(Duration::from_secs(1)));
    /// assert_eq!(env.expires_at_ms, Some(env.created_at_ms + 1000));
    /// // A TTL too long to represent saturates instead of wrapping into the past.
    /// let forever = env.clone().with_ttl(Some(Duration::MAX));
    /// assert_eq!(forever.expires_at_ms, Some(u64::MAX));
    /// ```
    pub fn with_ttl(mut self, ttl: Option<Duration>) -> Self {
        // Saturating: a huge TTL (Duration::MAX) means "practically never", not a wrapped past.
        self.expires_at_ms = ttl.map(|t| {
            self.created_at_ms.saturating_add(u64::try_from(t.as_millis()).unwrap_or(u64::MAX))
        });
        self
    }

    /// Sets the tags.
    ///
    /// # Examples
    ///
    /// ```
    /// let env = aurelis_cache_core::Envelope::new(Default::default(), Default::default())
    ///     .with_tags(vec!["user:1".into()]);
    /// assert_eq!(env.tags.len(), 1);
    /// ```
    pub fn with_tags(mut self, tags: Vec<String>) -> Self {
        self.tags = tags;
        self
    }

    /// Whether the entry is still fresh at `now_ms`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// let env = aurelis_cache_core::Envelope::new(Default::default(), Default::default())
    ///     .with_ttl(Some(Duration::from_secs(10)));
    /// assert!(env.is_fresh(env.created_at_ms));
    /// assert!(!env.is_fresh(env.created_at_ms + 10_000));
    /// ```
    pub fn is_fresh(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_none_or(|at| now_ms < at)
    }

    /// The lifetime left at `now_ms`: `Some(None)` = forever, `None` = already expired.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// let env = aurelis_cache_core::Envelope::new(Default::default(), Default::default())
    ///     .with_ttl(Some(Duration::from_secs(10)));
    /// assert_eq!(env.remaining_ttl(env.created_at_ms + 4_000), Some(Some(Duration::from_secs(6))));
    /// ```
    pub fn remaining_ttl(&self, now_ms: u64) -> Option<Option<Duration>> {
        match self.expires_at_ms {
            None => Some(None),
            Some(at) if now_ms < at => Some(Some(Duration::from_millis(at - now_ms))),
            Some(_) => None,
        }
    }

    /// Decompresses the payload if needed and decodes it into a `T` with the codec it was
    /// written with; decompression is bounded by
    /// [`DEFAULT_MAX_DECOMPRESSED_BYTES`]
    /// (use [`Envelope::value_bounded`] to name the cache's own maximum).
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_cache_core::{Codec, Envelope};
    /// let env = Envelope::new(Codec::Postcard, Codec::Postcard.encode(&42u64)?.into());
    /// assert_eq!(env.value::<u64>()?, 42);
    /// # Ok::<(), aurelis_cache_core::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Codec`](crate::ErrorKind::Codec) when the payload does not decompress
    /// (see [`Envelope::value_bounded`]) or is not a valid `T`.
    pub fn value<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        self.value_bounded(DEFAULT_MAX_DECOMPRESSED_BYTES)
    }

    /// As [`Envelope::value`], with decompression bounded by `max_bytes` (the cache's maximum
    /// value size): a payload that would decompress to more is an error, not an allocation.
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_cache_core::{Codec, Compression, Envelope, ErrorKind};
    ///
    /// let text = "many similar words ".repeat(100);
    /// let plain = Codec::Postcard.encode(&text)?;
    /// let mut env = Envelope::new(Codec::Postcard, lz4_flex::compress_prepend_size(&plain).into());
    /// env.compression = Compression::Lz4;
    /// assert!(env.payload.len() < plain.len());
    /// assert_eq!(env.value_bounded::<String>(1 << 20)?, text);
    /// assert_eq!(env.value_bounded::<String>(100).unwrap_err().kind(), ErrorKind::Codec);
    /// # Ok::<(), aurelis_cache_core::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Codec`](crate::ErrorKind::Codec) when the payload is a corrupt frame,
    /// decompresses to more than `max_bytes`, needs a zstd dictionary this process has not
    /// registered, or is not a valid `T`.
    pub fn value_bounded<T: serde::de::DeserializeOwned>(&self, max_bytes: usize) -> Result<T> {
        if self.compression == Compression::None {
            return self.codec.decode(&self.payload);
        }
        self.codec.decode(&self.decompressed_payload(max_bytes)?)
    }

    /// The payload decompressed (a cheap clone when it is not compressed), at most
    /// `max_bytes` long.
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_cache_core::{Codec, Compression, Envelope};
    /// let mut env = Envelope::new(Codec::Json, zstd::bulk::compress(b"[1,2,3]", 3)?.into());
    /// env.compression = Compression::Zstd;
    /// assert_eq!(env.decompressed_payload(1024)?, &b"[1,2,3]"[..]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`compression::decompress`].
    pub fn decompressed_payload(&self, max_bytes: usize) -> Result<Bytes> {
        compression::decompress(self.compression, &self.payload, max_bytes)
    }

    /// The id of the zstd dictionary the payload needs, when it is
    /// [`Compression::ZstdDictionary`] (and long enough to hold one).
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_cache_core::{Codec, Compression, Envelope};
    /// let mut env = Envelope::new(Codec::Json, vec![9, 0, 0, 0, 1].into());
    /// assert_eq!(env.dictionary_id(), None);
    /// env.compression = Compression::ZstdDictionary;
    /// assert_eq!(env.dictionary_id(), Some(9));
    /// ```
    pub fn dictionary_id(&self) -> Option<u32> {
        if self.compression != Compression::ZstdDictionary {
            return None;
        }
        compression::split_dictionary_id(&self.payload).ok().map(|(id, _)| id)
    }

    /// The encoded size of this envelope in bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// let env = aurelis_cache_core::Envelope::new(Default::default(), vec![0u8; 10].into());
    /// assert_eq!(env.encoded_len(), env.encode()?.len());
    /// # Ok::<(), aurelis_cache_core::Error>(())
    /// ```
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN
            + self.tags.iter().map(|t| 2 + t.len()).sum::<usize>()
            + 4
            + self.payload.len()
            + CHECKSUM_LEN
    }

    /// Encodes the envelope.
    ///
    /// # Examples
    ///
    /// ```
    /// let env = aurelis_cache_core::Envelope::new(Default::default(), vec![1, 2, 3].into());
    /// assert_eq!(aurelis_cache_core::Envelope::decode(env.encode()?)?, env);
    /// # Ok::<(), aurelis_cache_core::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Codec`](crate::ErrorKind::Codec) when there are more than [`MAX_TAGS`]
    /// tags, a tag is empty or longer than [`MAX_TAG_LEN`], or the payload is 4 GiB or more.
    pub fn encode(&self) -> Result<Bytes> {
        if self.tags.len() > MAX_TAGS {
            return Err(Error::codec(format!(
                "{} tags; at most {MAX_TAGS} are allowed",
                self.tags.len()
            )));
        }
        if let Some(tag) = self.tags.iter().find(|t| t.is_empty() || t.len() > MAX_TAG_LEN) {
            return Err(Error::codec(format!(
                "tag {tag:?} is empty or longer than {MAX_TAG_LEN} bytes"
            )));
        }
        let payload_len = u32::try_from(self.payload.len())
            .map_err(|_| Error::codec("payload is 4 GiB or larger"))?;
        let mut out = BytesMut::with_capacity(self.encoded_len());
        out.put_slice(&MAGIC);
        out.put_u8(FORMAT_VERSION);
        out.put_u8(self.codec.id() | (self.compression.id() << 3));
        out.put_u64_le(self.created_at_ms);
        out.put_u64_le(self.expires_at_ms.unwrap_or(0));
        out.put_u64_le(self.stale_until_ms.unwrap_or(0));
        out.put_u16_le(self.tags.len() as u16);
        for tag in &self.tags {
            out.put_u16_le(tag.len() as u16);
            out.put_slice(tag.as_bytes());
        }
        out.put_u32_le(payload_len);
        out.put_slice(&self.payload);
        let checksum = xxh3_64(&out);
        out.put_u64_le(checksum);
        Ok(out.freeze())
    }

    /// Decodes and verifies an envelope. The payload shares `bytes`' memory (no copy).
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_cache_core::Envelope;
    /// assert!(Envelope::decode(bytes::Bytes::from_static(b"garbage")).is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Codec`](crate::ErrorKind::Codec) describing the first thing found wrong:
    /// too short, bad magic, unknown version or flags, lengths past the end, bad UTF-8 in a
    /// tag, trailing bytes, or a checksum mismatch.
    pub fn decode(bytes: Bytes) -> Result<Self> {
        Self::decode_with(bytes, true)
    }

    /// Decodes an envelope without verifying its checksum; every structural check of
    /// [`Envelope::decode`] still runs. For bytes that never left this process's memory (an
    /// in-process tier holding what this process encoded), where the checksum, the most
    /// expensive part of decoding, guards against nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_cache_core::{Codec, Envelope};
    /// let raw = Envelope::new(Codec::Postcard, vec![1, 2].into()).encode()?;
    /// assert_eq!(Envelope::decode_trusted(raw.clone())?, Envelope::decode(raw)?);
    /// assert!(Envelope::decode_trusted(bytes::Bytes::from_static(b"garbage")).is_err());
    /// # Ok::<(), aurelis_cache_core::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Envelope::decode`], except for checksum mismatches.
    pub fn decode_trusted(bytes: Bytes) -> Result<Self> {
        Self::decode_with(bytes, false)
    }

    fn decode_with(bytes: Bytes, verify: bool) -> Result<Self> {
        let (mut env, payload) = Self::decode_header(&bytes, verify)?;
        env.payload = bytes.slice(payload);
        Ok(env)
    }

    /// Decodes an envelope but for its payload, which is left empty, and returns where the
    /// payload sits in `bytes`: for a reader that decodes the payload in place, without the
    /// `Bytes` handle [`Envelope::decode`] makes (which, for bytes read into a `Vec`, costs an
    /// allocation). Checks as [`Envelope::decode`] when `verify`, as
    /// [`Envelope::decode_trusted`] when not.
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_cache_core::{Codec, Envelope};
    /// let raw = Envelope::new(Codec::Json, "[1,2]".into()).encode()?;
    /// let (env, payload) = Envelope::decode_header(&raw, true)?;
    /// assert!(env.payload.is_empty());
    /// assert_eq!(env.codec.decode::<Vec<u8>>(&raw[payload])?, [1, 2]);
    /// assert!(Envelope::decode_header(b"garbage", true).is_err());
    /// # Ok::<(), aurelis_cache_core::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Envelope::decode`] (checksum mismatches only when `verify`).
    #[inline]
    pub fn decode_header(bytes: &[u8], verify: bool) -> Result<(Self, std::ops::Range<usize>)> {
        if bytes.len() < HEADER_LEN + 4 + CHECKSUM_LEN {
            return Err(Error::codec(format!("envelope is truncated ({} bytes)", bytes.len())));
        }
        if bytes[0..2] != MAGIC {
            return Err(Error::codec("not an Aurelis envelope (bad magic)"));
        }
        if bytes[2] != FORMAT_VERSION {
            return Err(Error::codec(format!(
                "envelope format version {} is not supported (this build reads {FORMAT_VERSION})",
                bytes[2]
            )));
        }
        let body_len = bytes.len() - CHECKSUM_LEN;
        if verify {
            let stored = u64::from_le_bytes(read_array(bytes, body_len)?);
            if xxh3_64(&bytes[..body_len]) != stored {
                return Err(Error::codec("envelope checksum mismatch"));
            }
        }
        // The fixed header in one bounds check (the length was checked above).
        let Some(header) = bytes.first_chunk::<HEADER_LEN>() else {
            return Err(Error::codec("envelope is truncated"));
        };
        let flags = header[3];
        let codec = Codec::from_id(flags & 0b111)
            .ok_or_else(|| Error::codec(format!("unknown codec id {}", flags & 0b111)))?;
        let compression = Compression::from_id((flags >> 3) & 0b111).ok_or_else(|| {
            Error::codec(format!("unknown compression id {}", (flags >> 3) & 0b111))
        })?;
        if flags >> 6 != 0 {
            return Err(Error::codec(format!("unknown flag bits in {flags:#010b}")));
        }
        let word = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&header[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let created_at_ms = word(4);
        let expires_at_ms = nonzero(word(12));
        let stale_until_ms = nonzero(word(20));
        let tag_count = u16::from_le_bytes([header[28], header[29]]) as usize;
        if tag_count > MAX_TAGS {
            return Err(Error::codec(format!("envelope claims {tag_count} tags")));
        }
        let mut pos = HEADER_LEN;
        let mut tags = Vec::with_capacity(tag_count);
        for _ in 0..tag_count {
            let len = u16::from_le_bytes(read_array(&bytes[..body_len], pos)?) as usize;
            if len == 0 || len > MAX_TAG_LEN {
                // `encode` refuses such tags, so an envelope holding one was not written by us.
                return Err(Error::codec(format!(
                    "tag of {len} bytes (1 to {MAX_TAG_LEN} allowed)"
                )));
            }
            pos += 2;
            let raw = bytes[..body_len]
                .get(pos..pos + len)
                .ok_or_else(|| Error::codec("tag runs past the end of the envelope"))?;
            let tag = std::str::from_utf8(raw)
                .map_err(|e| Error::codec("tag is not UTF-8").with_source(e))?;
            tags.push(tag.to_owned());
            pos += len;
        }
        let payload_len = u32::from_le_bytes(read_array(&bytes[..body_len], pos)?) as usize;
        pos += 4;
        if pos.checked_add(payload_len) != Some(body_len) {
            return Err(Error::codec(format!(
                "payload length {payload_len} does not match the envelope size"
            )));
        }
        let env = Envelope {
            codec,
            compression,
            created_at_ms,
            expires_at_ms,
            stale_until_ms,
            tags,
            payload: Bytes::new(),
        };
        Ok((env, pos..body_len))
    }
}

fn nonzero(v: u64) -> Option<u64> {
    (v != 0).then_some(v)
}

fn read_array<const N: usize>(bytes: &[u8], at: usize) -> Result<[u8; N]> {
    bytes
        .get(at..at.saturating_add(N))
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| Error::codec("envelope is truncated"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Envelope {
        Envelope::new(Codec::Postcard, Bytes::from_static(b"payload bytes"))
            .with_ttl(Some(Duration::from_secs(30)))
            .with_tags(vec!["a".into(), "user:7".into()])
    }

    #[test]
    fn round_trip_keeps_every_field() {
        let mut env = sample();
        env.stale_until_ms = Some(env.created_at_ms + 90_000);
        env.compression = Compression::Lz4;
        env.codec = Codec::Json;
        assert_eq!(Envelope::decode(env.encode().unwrap()).unwrap(), env);
    }

    #[test]
    fn wrong_version_is_an_error_not_a_panic() {
        let mut raw = sample().encode().unwrap().to_vec();
        raw[2] = 99;
        let err = Envelope::decode(raw.into()).unwrap_err();
        assert!(err.message().contains("version 99"), "{err}");
    }

    #[test]
    fn truncations_are_errors() {
        let raw = sample().encode().unwrap();
        for len in 0..raw.len() {
            assert!(Envelope::decode(raw.slice(..len)).is_err(), "len {len}");
        }
    }

    #[test]
    fn tags_encode_refuses_are_refused_by_decode_too() {
        for bad in [String::new(), "x".repeat(MAX_TAG_LEN + 1)] {
            // Build the bytes by hand: encode would refuse them.
            let mut raw = vec![0xA7, 0xCA, FORMAT_VERSION, 0];
            raw.extend_from_slice(&[0u8; 24]);
            raw.extend_from_slice(&1u16.to_le_bytes());
            raw.extend_from_slice(&(bad.len() as u16).to_le_bytes());
            raw.extend_from_slice(bad.as_bytes());
            raw.extend_from_slice(&0u32.to_le_bytes());
            let sum = xxh3_64(&raw);
            raw.extend_from_slice(&sum.to_le_bytes());
            let err = Envelope::decode(raw.into()).unwrap_err();
            assert!(err.message().contains("tag of"), "{err}");
        }
    }

    #[test]
    fn too_many_tags_are_refused() {
        let env = sample().with_tags((0..=MAX_TAGS).map(|i| i.to_string()).collect());
        assert!(env.encode().is_err());
    }

    /// Bytes laid out by hand as builds before compression wrote them (format 1, JSON codec,
    /// compression 0): they still decode, and their value with them.
    #[test]
    fn uncompressed_format_1_entries_still_decode() {
        let mut raw = vec![0xA7, 0xCA, 1, 1];
        raw.extend_from_slice(&1_700_000_000_000u64.to_le_bytes());
        raw.extend_from_slice(&0u64.to_le_bytes());
        raw.extend_from_slice(&0u64.to_le_bytes());
        raw.extend_from_slice(&1u16.to_le_bytes());
        raw.extend_from_slice(&3u16.to_le_bytes());
        raw.extend_from_slice(b"t:1");
        raw.extend_from_slice(&7u32.to_le_bytes());
        raw.extend_from_slice(b"\"hello\"");
        let sum = xxh3_64(&raw);
        raw.extend_from_slice(&sum.to_le_bytes());
        let env = Envelope::decode(raw.into()).unwrap();
        assert_eq!((env.codec, env.compression), (Codec::Json, Compression::None));
        assert_eq!(env.tags, ["t:1"]);
        assert_eq!(env.value::<String>().unwrap(), "hello");
        assert_eq!(env.value_bounded::<String>(0).unwrap(), "hello");
    }

    #[test]
    fn every_compression_round_trips_through_the_envelope() {
        let text = "an answer that repeats itself, ".repeat(64);
        let plain = Codec::Json.encode(&text).unwrap();
        let zstd = zstd::bulk::compress(&plain, 3).unwrap();
        let lz4 = lz4_flex::compress_prepend_size(&plain);
        compression::register_dictionary(0x00E7_0001, b"an answer that repeats".to_vec()).unwrap();
        let mut dict = 0x00E7_0001u32.to_le_bytes().to_vec();
        dict.extend(
            zstd::bulk::Compressor::with_dictionary(3, b"an answer that repeats")
                .unwrap()
                .compress(&plain)
                .unwrap(),
        );
        for (c, payload) in [
            (Compression::None, plain.clone()),
            (Compression::Zstd, zstd),
            (Compression::Lz4, lz4),
            (Compression::ZstdDictionary, dict),
        ] {
            let mut env = Envelope::new(Codec::Json, payload.into());
            env.compression = c;
            let back = Envelope::decode(env.encode().unwrap()).unwrap();
            assert_eq!(back.compression, c);
            assert_eq!(back.value::<String>().unwrap(), text, "{c:?}");
            assert_eq!(back.decompressed_payload(plain.len()).unwrap(), plain, "{c:?}");
            if c != Compression::None {
                let err = back.value_bounded::<String>(plain.len() - 1).unwrap_err();
                assert_eq!(err.kind(), crate::ErrorKind::Codec, "{c:?}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Envelope::decode(raw.clone().into());
            let _ = Envelope::decode_trusted(raw.into());
        }

        #[test]
        fn garbage_after_a_valid_header_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut raw = vec![0xA7, 0xCA, FORMAT_VERSION, 0];
            raw.extend_from_slice(&tail);
            let _ = Envelope::decode(raw.clone().into());
            let _ = Envelope::decode_trusted(raw.into());
        }

        #[test]
        fn any_single_bit_flip_is_detected(
            payload in proptest::collection::vec(any::<u8>(), 0..200),
            tags in proptest::collection::vec("[a-z:0-9]{1,12}", 0..4),
            flip in any::<proptest::sample::Index>(),
            bit in 0u8..8,
        ) {
            let env = Envelope::new(Codec::Postcard, payload.into()).with_tags(tags);
            let mut raw = env.encode().unwrap().to_vec();
            let i = flip.index(raw.len());
            raw[i] ^= 1 << bit;
            prop_assert!(Envelope::decode(raw.into()).is_err());
        }

        #[test]
        fn round_trip(
            payload in proptest::collection::vec(any::<u8>(), 0..300),
            tags in proptest::collection::vec("\\PC{1,20}", 0..5),
            ttl in proptest::option::of(1u64..10_000_000),
        ) {
            let env = Envelope::new(Codec::Postcard, payload.into())
                .with_tags(tags)
                .with_ttl(ttl.map(Duration::from_millis));
            prop_assert_eq!(Envelope::decode(env.encode().unwrap()).unwrap(), env);
        }
    }
}
