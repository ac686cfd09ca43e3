//! `Envelope::decode` must never panic, whatever bytes a tier hands back, and whatever it
//! accepts must encode back to the very same bytes.
//!
//! Random bytes almost never start with the magic and end with a valid xxh3 checksum, so each
//! input is tried twice: as is (the length, magic, version and checksum checks), and framed as
//! a tier would store it, behind the magic and format version and followed by its correct
//! checksum, so that the fuzzer spends its time on the flags, tags and payload behind them.

#![no_main]

use aurelis_cache_core::Envelope;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use xxhash_rust::xxh3::xxh3_64;

/// Magic `0xA7 0xCA`, then the format version.
const HEAD: [u8; 3] = [0xA7, 0xCA, aurelis_cache_core::envelope::FORMAT_VERSION];

fuzz_target!(|data: &[u8]| {
    check(Bytes::copy_from_slice(data));

    let mut framed = Vec::with_capacity(HEAD.len() + data.len() + 8);
    framed.extend_from_slice(&HEAD);
    framed.extend_from_slice(data);
    let checksum = xxh3_64(&framed);
    framed.extend_from_slice(&checksum.to_le_bytes());
    check(Bytes::from(framed));
});

fn check(raw: Bytes) {
    let Ok(envelope) = Envelope::decode(raw.clone()) else {
        return;
    };
    let encoded = match envelope.encode() {
        Ok(encoded) => encoded,
        Err(e) => panic!("decode accepted an envelope that encode refuses: {e}\n{envelope:?}"),
    };
    assert_eq!(encoded, raw, "re-encoding a decoded envelope changed its bytes");
    let again = Envelope::decode(encoded).expect("a re-encoded envelope decodes");
    assert_eq!(again, envelope, "decoding the re-encoded bytes gave another envelope");
}
