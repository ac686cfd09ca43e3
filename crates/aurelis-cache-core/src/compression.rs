//! Decompression of entry payloads, and the process-wide registry of zstd dictionaries.
//!
//! Core owns the compressed formats, so that every reader decodes every entry whatever it was
//! written with; the `aurelis-cache-compress` crate owns the policy (what to compress, with
//! which algorithm and level). Decompression is always compiled in.
//!
//! Payload layouts, by the envelope's [`Compression`]:
//!
//! | compression | payload |
//! |---|---|
//! | [`None`](Compression::None) | the serialized value |
//! | [`Zstd`](Compression::Zstd) | one zstd frame that records its decompressed size |
//! | [`Lz4`](Compression::Lz4) | the decompressed size (4 bytes, little-endian), then one lz4 block |
//! | [`ZstdDictionary`](Compression::ZstdDictionary) | the dictionary id (4 bytes, little-endian), then one zstd frame compressed with that dictionary, recording its decompressed size |
//!
//! Decompression is bounded: a payload that claims or produces more than the caller's maximum
//! (the cache's maximum value size) is an [`ErrorKind::Codec`](crate::ErrorKind::Codec) error
//! before anything that large is written, as is a corrupt frame or a dictionary this process
//! has not registered. The cache treats those as a miss counted as `corrupt`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock, RwLock};

use bytes::Bytes;
use zstd::zstd_safe::{self, DCtx, DDict};

use crate::envelope::Compression;
use crate::error::{Error, Result};

/// The largest decompressed payload accepted when the caller names no maximum: 16 MiB, the
/// cache's default maximum value size.
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: usize = 16 * 1024 * 1024;

/// Bytes in front of an lz4 block (its decompressed size) or a dictionary-compressed zstd
/// frame (the dictionary id).
pub const PREFIX_LEN: usize = 4;

/// Decompresses `payload`, compressed as `compression` says, into at most `max_bytes` bytes.
/// An uncompressed payload is returned as is (no copy).
///
/// # Examples
///
/// ```
/// use aurelis_cache_core::compression::decompress;
/// use aurelis_cache_core::{Compression, ErrorKind};
///
/// let text = b"the same words, the same words, the same words, the same words".repeat(20);
/// let mut lz4 = (text.len() as u32).to_le_bytes().to_vec();
/// lz4.extend(lz4_flex::compress(&text));
/// assert_eq!(decompress(Compression::Lz4, &lz4.clone().into(), 1 << 20)?, text);
///
/// // Over the maximum: an error, nothing that large is allocated.
/// let err = decompress(Compression::Lz4, &lz4.into(), 100).unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::Codec);
/// # Ok::<(), aurelis_cache_core::Error>(())
/// ```
///
/// # Errors
///
/// [`ErrorKind::Codec`](crate::ErrorKind::Codec) when the payload is not a valid frame of its
/// algorithm, decompresses (or claims to) to more than `max_bytes`, does not record its size,
/// or needs a dictionary that is not registered (see [`register_dictionary`]).
pub fn decompress(compression: Compression, payload: &Bytes, max_bytes: usize) -> Result<Bytes> {
    match compression {
        Compression::None => Ok(payload.clone()),
        Compression::Zstd => zstd_frame(payload, max_bytes, None).map(Bytes::from),
        Compression::Lz4 => lz4_block(payload, max_bytes).map(Bytes::from),
        Compression::ZstdDictionary => {
            let (id, frame) = split_dictionary_id(payload)?;
            let dict = dictionary(id).ok_or_else(|| {
                Error::codec(format!(
                    "payload needs zstd dictionary {id}, which is not registered in this process"
                ))
            })?;
            zstd_frame(frame, max_bytes, Some(&dict.ddict)).map(Bytes::from)
        }
    }
}

/// Splits a [`Compression::ZstdDictionary`] payload into its dictionary id and zstd frame.
///
/// # Examples
///
/// ```
/// let payload = [7, 0, 0, 0, 0x28, 0xB5, 0x2F, 0xFD];
/// let (id, frame) = aurelis_cache_core::compression::split_dictionary_id(&payload)?;
/// assert_eq!((id, frame), (7, &payload[4..]));
/// # Ok::<(), aurelis_cache_core::Error>(())
/// ```
///
/// # Errors
///
/// [`ErrorKind::Codec`](crate::ErrorKind::Codec) when the payload is shorter than the id.
pub fn split_dictionary_id(payload: &[u8]) -> Result<(u32, &[u8])> {
    let (id, frame) = split_prefix(payload, "dictionary id")?;
    Ok((id, frame))
}

fn split_prefix<'a>(payload: &'a [u8], what: &str) -> Result<(u32, &'a [u8])> {
    if payload.len() < PREFIX_LEN {
        return Err(Error::codec(format!("compressed payload is too short to hold its {what}")));
    }
    let (head, rest) = payload.split_at(PREFIX_LEN);
    let mut raw = [0u8; PREFIX_LEN];
    raw.copy_from_slice(head);
    Ok((u32::from_le_bytes(raw), rest))
}

thread_local! {
    /// One decompression context per thread, reused (creating one per call costs more than
    /// decompressing a small payload).
    static DCTX: RefCell<Option<DCtx<'static>>> = const { RefCell::new(None) };
}

fn zstd_frame(frame: &[u8], max_bytes: usize, ddict: Option<&DDict<'static>>) -> Result<Vec<u8>> {
    let size = match zstd_safe::get_frame_content_size(frame) {
        Ok(Some(size)) => size,
        Ok(None) => {
            return Err(Error::codec("zstd frame does not record its decompressed size"));
        }
        Err(_) => return Err(Error::codec("payload is not a zstd frame")),
    };
    if size > max_bytes as u64 {
        return Err(Error::codec(format!(
            "zstd frame claims {size} decompressed bytes, over the maximum of {max_bytes}"
        )));
    }
    let size = size as usize;
    let mut out = Vec::with_capacity(size);
    let result = DCTX.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = DCtx::try_create();
        }
        let Some(dctx) = slot.as_mut() else {
            return Err(Error::codec("zstd could not allocate a decompression context"));
        };
        let written = match ddict {
            Some(ddict) => dctx.decompress_using_ddict(&mut out, frame, ddict),
            None => dctx.decompress(&mut out, frame),
        };
        written.map_err(|code| {
            Error::codec(format!("corrupt zstd frame: {}", zstd_safe::get_error_name(code)))
        })
    })?;
    if result != size || out.len() != size {
        return Err(Error::codec(format!(
            "zstd frame claims {size} decompressed bytes but holds {result}"
        )));
    }
    Ok(out)
}

fn lz4_block(payload: &[u8], max_bytes: usize) -> Result<Vec<u8>> {
    let (size, block) = split_prefix(payload, "decompressed size")?;
    let size = size as usize;
    if size > max_bytes {
        return Err(Error::codec(format!(
            "lz4 block claims {size} decompressed bytes, over the maximum of {max_bytes}"
        )));
    }
    let mut out = vec![0u8; size];
    let written = lz4_flex::block::decompress_into(block, &mut out)
        .map_err(|e| Error::codec("corrupt lz4 block").with_source(e))?;
    if written != size {
        return Err(Error::codec(format!(
            "lz4 block claims {size} decompressed bytes but holds {written}"
        )));
    }
    Ok(out)
}

/// A zstd dictionary registered in this process, ready for decompression.
///
/// # Examples
///
/// ```
/// use aurelis_cache_core::compression::{dictionary, register_dictionary};
///
/// let dict = register_dictionary(41, b"shared words of many short answers".to_vec())?;
/// assert_eq!(dict.id(), 41);
/// assert_eq!(dictionary(41).unwrap().bytes(), dict.bytes());
/// # Ok::<(), aurelis_cache_core::Error>(())
/// ```
pub struct RegisteredDictionary {
    id: u32,
    bytes: Arc<[u8]>,
    ddict: DDict<'static>,
}

impl RegisteredDictionary {
    /// The id entries name the dictionary by.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The dictionary's bytes, as registered.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl fmt::Debug for RegisteredDictionary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisteredDictionary")
            .field("id", &self.id)
            .field("len", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

type Registry = RwLock<HashMap<u32, Arc<RegisteredDictionary>>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::default)
}

/// Registers a zstd dictionary under `id` for this process, so that entries compressed with
/// it decode. Registering the same bytes under the same id again returns the registered
/// dictionary; an id is never reused for other bytes (entries written with the old dictionary
/// would no longer decode): give a changed dictionary a new id and keep the old one
/// registered while entries written with it may still be cached.
///
/// # Examples
///
/// ```
/// use aurelis_cache_core::compression::register_dictionary;
/// use aurelis_cache_core::ErrorKind;
///
/// register_dictionary(42, b"first dictionary".to_vec())?;
/// register_dictionary(42, b"first dictionary".to_vec())?; // same bytes: fine
/// let err = register_dictionary(42, b"other bytes".to_vec()).unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::Config);
/// # Ok::<(), aurelis_cache_core::Error>(())
/// ```
///
/// # Errors
///
/// [`ErrorKind::Config`](crate::ErrorKind::Config) when `id` is registered with other bytes,
/// or zstd refuses the bytes as a dictionary.
pub fn register_dictionary(
    id: u32,
    bytes: impl Into<Arc<[u8]>>,
) -> Result<Arc<RegisteredDictionary>> {
    let bytes: Arc<[u8]> = bytes.into();
    if let Some(existing) = dictionary(id) {
        return if existing.bytes == bytes {
            Ok(existing)
        } else {
            Err(Error::config(format!(
                "zstd dictionary id {id} is already registered with other bytes; give a changed \
                 dictionary a new id"
            )))
        };
    }
    let ddict = DDict::try_create(&bytes)
        .ok_or_else(|| Error::config(format!("zstd refused dictionary {id}")))?;
    let dict = Arc::new(RegisteredDictionary { id, bytes, ddict });
    let mut map = registry().write().unwrap_or_else(|e| e.into_inner());
    let entry = map.entry(id).or_insert_with(|| Arc::clone(&dict));
    if entry.bytes != dict.bytes {
        return Err(Error::config(format!(
            "zstd dictionary id {id} is already registered with other bytes"
        )));
    }
    Ok(Arc::clone(entry))
}

/// The dictionary registered under `id`, if any.
///
/// # Examples
///
/// ```
/// assert!(aurelis_cache_core::compression::dictionary(0xDEAD_0000).is_none());
/// ```
pub fn dictionary(id: u32) -> Option<Arc<RegisteredDictionary>> {
    registry().read().unwrap_or_else(|e| e.into_inner()).get(&id).cloned()
}

/// Removes the dictionary registered under `id`; entries written with it stop decoding (each
/// is a miss, counted as corrupt). Returns whether one was registered.
///
/// # Examples
///
/// ```
/// use aurelis_cache_core::compression::{dictionary, register_dictionary, unregister_dictionary};
/// register_dictionary(43, b"short-lived".to_vec())?;
/// assert!(unregister_dictionary(43));
/// assert!(dictionary(43).is_none());
/// # Ok::<(), aurelis_cache_core::Error>(())
/// ```
pub fn unregister_dictionary(id: u32) -> bool {
    registry().write().unwrap_or_else(|e| e.into_inner()).remove(&id).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use proptest::prelude::*;

    fn text(len: usize) -> Vec<u8> {
        b"A cache keeps answers close; a tier keeps them longer. "
            .iter()
            .copied()
            .cycle()
            .take(len)
            .collect()
    }

    fn zstd_payload(data: &[u8]) -> Bytes {
        zstd::bulk::compress(data, 3).unwrap().into()
    }

    fn lz4_payload(data: &[u8]) -> Bytes {
        lz4_flex::compress_prepend_size(data).into()
    }

    #[test]
    fn round_trips() {
        for len in [0, 1, 100, 1023, 1024, 1025, 70_000] {
            let data = text(len);
            assert_eq!(decompress(Compression::Zstd, &zstd_payload(&data), len).unwrap(), data);
            assert_eq!(decompress(Compression::Lz4, &lz4_payload(&data), len).unwrap(), data);
            assert_eq!(decompress(Compression::None, &data.clone().into(), 0).unwrap(), data);
        }
    }

    #[test]
    fn bombs_are_refused_by_their_claimed_size() {
        let data = vec![0u8; 1 << 20];
        let zstd = zstd_payload(&data);
        let lz4 = lz4_payload(&data);
        assert!(zstd.len() < 1000 && lz4.len() < 5000);
        for (c, p) in [(Compression::Zstd, zstd), (Compression::Lz4, lz4)] {
            let err = decompress(c, &p, (1 << 20) - 1).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Codec);
            assert!(err.message().contains("over the maximum"), "{err}");
        }
    }

    #[test]
    fn lying_sizes_are_errors() {
        let data = text(5000);
        // lz4 claiming fewer or more bytes than the block holds.
        for claim in [10u32, 4999, 5001, 60_000] {
            let mut p = claim.to_le_bytes().to_vec();
            p.extend(lz4_flex::compress(&data));
            let err = decompress(Compression::Lz4, &p.into(), 1 << 20).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Codec, "claim {claim}");
        }
        // Two zstd frames, the first claiming only its own size.
        let mut two = zstd_payload(&data).to_vec();
        two.extend_from_slice(&zstd_payload(&data));
        assert!(decompress(Compression::Zstd, &two.into(), 1 << 20).is_err());
    }

    #[test]
    fn frames_without_a_size_are_refused() {
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        std::io::Write::write_all(&mut enc, &text(3000)).unwrap();
        let frame = enc.finish().unwrap();
        let err = decompress(Compression::Zstd, &frame.into(), 1 << 20).unwrap_err();
        assert!(err.message().contains("does not record"), "{err}");
    }

    #[test]
    fn missing_dictionary_is_a_codec_error() {
        let mut p = 0xFEED_0001u32.to_le_bytes().to_vec();
        p.extend_from_slice(&zstd_payload(b"x"));
        let err = decompress(Compression::ZstdDictionary, &p.into(), 100).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Codec);
        assert!(err.message().contains("not registered"), "{err}");
        let err = decompress(Compression::ZstdDictionary, &Bytes::from_static(b"ab"), 100);
        assert!(err.is_err());
    }

    #[test]
    fn dictionary_round_trip_and_wrong_dictionary() {
        let dict_a = text(4096);
        let dict_b: Vec<u8> = b"Entirely different words live in here, other ones. ".repeat(80);
        register_dictionary(0xFEED_0002, dict_a.clone()).unwrap();
        register_dictionary(0xFEED_0003, dict_b).unwrap();
        let data = text(2000);
        let mut cctx = zstd::bulk::Compressor::with_dictionary(3, &dict_a).unwrap();
        let frame = cctx.compress(&data).unwrap();
        for (id, ok) in [(0xFEED_0002u32, true), (0xFEED_0003, false)] {
            let mut p = id.to_le_bytes().to_vec();
            p.extend_from_slice(&frame);
            let got = decompress(Compression::ZstdDictionary, &p.into(), 1 << 20);
            // A raw-content dictionary has no id in the frame, so the wrong one may decode to
            // other bytes; it must never panic, and the right one gives the data back.
            if ok {
                assert_eq!(got.unwrap(), data);
            } else if let Ok(other) = got {
                assert_ne!(other, data);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_payloads_never_panic(
            raw in proptest::collection::vec(any::<u8>(), 0..300),
            max in 0usize..100_000,
        ) {
            let raw = Bytes::from(raw);
            for c in [Compression::Zstd, Compression::Lz4, Compression::ZstdDictionary] {
                if let Ok(out) = decompress(c, &raw, max) {
                    prop_assert!(out.len() <= max);
                }
            }
        }

        #[test]
        fn zstd_magic_then_garbage_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut raw = vec![0x28, 0xB5, 0x2F, 0xFD];
            raw.extend(tail);
            let _ = decompress(Compression::Zstd, &raw.into(), 1 << 16);
        }
    }
}
