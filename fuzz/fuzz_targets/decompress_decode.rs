//! Decompressing an entry must never panic or allocate past its bound, whatever payload a tier
//! hands back flagged as compressed; and what the compressors write must decompress to the
//! very same bytes.
//!
//! The first input byte picks the compression flag (zstd, lz4, zstd with dictionary 1, which
//! is registered); the rest is the payload, tried three ways:
//!
//! 1. as is, through a whole envelope (encode, decode, `value_bounded`), with a small bound;
//! 2. behind a valid header for its algorithm (the zstd magic, an lz4 size, the dictionary
//!    id), so that the fuzzer spends its time inside the decoders rather than in front of them;
//! 3. compressed by zstd, lz4 and zstd with the dictionary, then decompressed, which must
//!    give the input back.

#![no_main]

use std::sync::Once;

use aurelis_cache_core::compression::{decompress, register_dictionary};
use aurelis_cache_core::{Codec, Compression, Envelope};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

/// The bound of every decompression: small, so that bombs are cheap to find.
const MAX: usize = 64 * 1024;
/// The dictionary registered for `Compression::ZstdDictionary` payloads.
const DICT_ID: u32 = 1;
const DICT: &[u8] = b"{\"id\":\"chatcmpl-\",\"object\":\"chat.completion\",\"model\":\"gpt-4o-mini\",\
\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"The cache keeps \
answers close to the caller; a tier keeps them longer.\"},\"finish_reason\":\"stop\"}]}";

static INIT: Once = Once::new();

fuzz_target!(|data: &[u8]| {
    INIT.call_once(|| {
        register_dictionary(DICT_ID, DICT.to_vec()).expect("dictionary registers");
    });
    let Some((&pick, payload)) = data.split_first() else {
        return;
    };
    let compression = match pick % 3 {
        0 => Compression::Zstd,
        1 => Compression::Lz4,
        _ => Compression::ZstdDictionary,
    };

    // 1. The payload as is, through a whole envelope.
    let mut env = Envelope::new(Codec::Postcard, Bytes::copy_from_slice(payload));
    env.compression = compression;
    let raw = env.encode().expect("an envelope with a short payload encodes");
    let back = Envelope::decode(raw).expect("what encode wrote decodes");
    assert_eq!(back, env);
    if let Ok(out) = back.decompressed_payload(MAX) {
        assert!(out.len() <= MAX, "{} bytes past the bound of {MAX}", out.len());
    }
    let _ = back.value_bounded::<Vec<u8>>(MAX);
    let _ = back.value_bounded::<String>(MAX);

    // 2. Behind a valid header for the algorithm.
    let mut framed = Vec::with_capacity(payload.len() + 8);
    match compression {
        Compression::Zstd => framed.extend_from_slice(&[0x28, 0xB5, 0x2F, 0xFD]),
        Compression::Lz4 => {
            let claim = u32::from(pick) * 97 % (MAX as u32 + 100);
            framed.extend_from_slice(&claim.to_le_bytes());
        }
        _ => {
            framed.extend_from_slice(&DICT_ID.to_le_bytes());
            framed.extend_from_slice(&[0x28, 0xB5, 0x2F, 0xFD]);
        }
    }
    framed.extend_from_slice(payload);
    if let Ok(out) = decompress(compression, &Bytes::from(framed), MAX) {
        assert!(out.len() <= MAX, "{} bytes past the bound of {MAX}", out.len());
    }

    // 3. Compress, then decompress: the same bytes.
    let zstd = zstd::bulk::compress(payload, 3).expect("zstd compresses");
    assert_eq!(decompress(Compression::Zstd, &zstd.into(), payload.len()).unwrap(), payload);
    let lz4 = lz4_flex::compress_prepend_size(payload);
    assert_eq!(decompress(Compression::Lz4, &lz4.into(), payload.len()).unwrap(), payload);
    let mut with_dict = DICT_ID.to_le_bytes().to_vec();
    with_dict.extend(
        zstd::bulk::Compressor::with_dictionary(3, DICT)
            .and_then(|mut c| c.compress(payload))
            .expect("zstd compresses with the dictionary"),
    );
    assert_eq!(
        decompress(Compression::ZstdDictionary, &with_dict.into(), payload.len()).unwrap(),
        payload
    );
});
