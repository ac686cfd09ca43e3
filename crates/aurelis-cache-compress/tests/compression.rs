//! Round trips for every algorithm around the threshold, entries written under one setting
//! and read under another, corrupt frames, decompression bombs and dictionary changes.

use std::sync::Arc;

use aurelis_cache_compress::{
    Algorithm, CompressionConfig, CompressionLayer, DictionaryConfig, ZstdDictionary,
};
use aurelis_cache_core::compression::unregister_dictionary;
use aurelis_cache_core::{Codec, Compression, Envelope, ErrorKind, Store};
use aurelis_cache_moka::MokaStore;
use bytes::Bytes;

/// Text that compresses like an answer: words from a small vocabulary, pseudo-randomly.
fn text(len: usize, seed: u64) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "the ",
        "cache ",
        "answer ",
        "model ",
        "returns ",
        "a ",
        "response ",
        "quickly, ",
        "because ",
        "tiers ",
        "keep ",
        "it. ",
        "Redis ",
        "disk ",
        "memory ",
        "and ",
    ];
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(WORDS[(x % 16) as usize].as_bytes());
    }
    out.truncate(len);
    out
}

/// Bytes that do not compress (xorshift output).
fn noise(len: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn entry(payload: Vec<u8>) -> Envelope {
    Envelope::new(Codec::Json, payload.into()).with_tags(vec!["t:1".into()])
}

fn memory() -> Arc<MokaStore> {
    Arc::new(MokaStore::builder().max_bytes(256 * 1024 * 1024).build().expect("memory tier"))
}

fn dictionary(id: u32, flavour: &str) -> ZstdDictionary {
    let samples: Vec<Vec<u8>> = (0..600)
        .map(|i| {
            format!(
                r#"{{"id":"chatcmpl-{i}","object":"chat.completion","model":"gpt-test","choices":[{{"index":0,"message":{{"role":"assistant","content":"{flavour} {}"}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":{},"completion_tokens":{}}}}}"#,
                String::from_utf8(text(200 + i % 300, i as u64)).unwrap(),
                i % 97,
                i % 389
            )
            .into_bytes()
        })
        .collect();
    ZstdDictionary::train(id, &samples, 8 * 1024).expect("dictionary trains")
}

fn answer_json(i: u64, flavour: &str) -> Vec<u8> {
    format!(
        r#"{{"id":"chatcmpl-x{i}","object":"chat.completion","model":"gpt-test","choices":[{{"index":0,"message":{{"role":"assistant","content":"{flavour} {}"}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":12,"completion_tokens":80}}}}"#,
        String::from_utf8(text(900, 1000 + i)).unwrap()
    )
    .into_bytes()
}

fn layers() -> Vec<(&'static str, CompressionLayer)> {
    vec![
        ("none", CompressionLayer::builder().algorithm(Algorithm::None).build().unwrap()),
        ("zstd-1", CompressionLayer::builder().zstd_level(1).build().unwrap()),
        ("zstd-3", CompressionLayer::builder().build().unwrap()),
        ("zstd-19", CompressionLayer::builder().zstd_level(19).build().unwrap()),
        (
            "zstd-dict",
            CompressionLayer::builder().dictionary(dictionary(0x7E57_0001, "A")).build().unwrap(),
        ),
        ("lz4", CompressionLayer::builder().algorithm(Algorithm::Lz4).build().unwrap()),
    ]
}

#[tokio::test]
async fn every_algorithm_round_trips_around_the_threshold() {
    for (name, layer) in layers() {
        let inner = memory();
        let store = layer.layer(inner.clone());
        for (i, len) in
            [0usize, 1, 100, 1022, 1023, 1024, 1025, 4096, 65_536, 1 << 20].into_iter().enumerate()
        {
            let env = entry(text(len, i as u64));
            let key = format!("k{len}");
            store.set(&key, env.encode().unwrap(), None).await.unwrap();
            let raw = inner.get(&key).await.unwrap().expect("stored");
            let stored = Envelope::decode(raw).unwrap();
            assert_eq!(stored.decompressed_payload(1 << 21).unwrap(), env.payload, "{name} {len}");
            assert_eq!(stored.tags, env.tags);
            assert_eq!(stored.created_at_ms, env.created_at_ms);
            let expect = match (name, len >= 1024) {
                ("none", _) | (_, false) => Compression::None,
                ("lz4", true) => Compression::Lz4,
                ("zstd-dict", true) => Compression::ZstdDictionary,
                _ => Compression::Zstd,
            };
            assert_eq!(stored.compression, expect, "{name} {len}");
            if expect != Compression::None {
                assert!(stored.payload.len() < env.payload.len() * 3 / 4, "{name} {len}");
            }
        }
        let stats = store.stats();
        assert_eq!(stats.writes, 10, "{name}");
        if name != "none" {
            assert_eq!((stats.compressed, stats.below_threshold), (5, 5), "{name}: {stats:?}");
            assert!(stats.ratio > 2.0, "{name}: {stats:?}");
        }
    }
}

#[tokio::test]
async fn typed_values_round_trip_with_every_codec() {
    for (name, layer) in layers() {
        let store = layer.layer(memory());
        let value = serde_json::json!({
            "answer": String::from_utf8(text(5000, 7)).unwrap(),
            "tokens": 812,
        });
        for codec in [Codec::Json, Codec::Postcard] {
            let payload = codec.encode(&value.to_string()).unwrap();
            let env = Envelope::new(codec, payload.into());
            store.set("v", env.encode().unwrap(), None).await.unwrap();
            let back = Envelope::decode(store.get("v").await.unwrap().unwrap()).unwrap();
            assert_eq!(back.value::<String>().unwrap(), value.to_string(), "{name} {codec:?}");
            assert_eq!(back.value_bounded::<String>(1 << 20).unwrap(), value.to_string());
        }
    }
}

#[tokio::test]
async fn incompressible_payloads_and_other_bytes_are_stored_as_they_are() {
    let inner = memory();
    let store = CompressionLayer::builder().build().unwrap().layer(inner.clone());
    let random = entry(noise(8192)).encode().unwrap();
    store.set("random", random.clone(), None).await.unwrap();
    assert_eq!(inner.get("random").await.unwrap().unwrap(), random);

    let not_an_envelope = Bytes::from(text(8192, 3));
    store.set("raw", not_an_envelope.clone(), None).await.unwrap();
    assert_eq!(inner.get("raw").await.unwrap().unwrap(), not_an_envelope);

    let stats = store.stats();
    assert_eq!((stats.incompressible, stats.not_envelope, stats.compressed), (1, 1, 0));
    // The memory tier's decoded-value side is forwarded.
    assert_eq!(store.as_value_store().is_some(), inner.as_value_store().is_some());
    assert_eq!(stats.bytes_before, stats.bytes_after);
}

#[tokio::test]
async fn set_many_and_set_if_absent_compress_too() {
    let inner = memory();
    let store = CompressionLayer::builder().build().unwrap().layer(inner.clone());
    let a = entry(text(4000, 1)).encode().unwrap();
    let b = entry(text(5000, 2)).encode().unwrap();
    store.set_many(&[("a", a.clone()), ("b", b.clone())], None).await.unwrap();
    for (k, original) in [("a", &a), ("b", &b)] {
        let raw = inner.get(k).await.unwrap().unwrap();
        assert!(raw.len() < original.len() / 2);
        let env = Envelope::decode(raw).unwrap();
        assert_eq!(env.compression, Compression::Zstd);
    }
    if inner.capabilities().conditional_write {
        let c = entry(text(6000, 3)).encode().unwrap();
        assert!(store.set_if_absent("c", c.clone(), None).await.unwrap());
        assert!(!store.set_if_absent("c", a.clone(), None).await.unwrap());
        let env = Envelope::decode(inner.get("c").await.unwrap().unwrap()).unwrap();
        assert_eq!(env.compression, Compression::Zstd);
        assert_eq!(
            env.decompressed_payload(1 << 20).unwrap(),
            Envelope::decode(c).unwrap().payload
        );
    }
    assert_eq!(
        store.stats().compressed,
        if inner.capabilities().conditional_write { 4 } else { 2 }
    );
}

#[tokio::test]
async fn entries_written_under_one_setting_are_read_under_any_other() {
    let layers = layers();
    for (writer_name, writer) in &layers {
        let shared = memory();
        let writer = writer.layer(shared.clone());
        let payload = answer_json(1, "A");
        writer.set("shared", entry(payload.clone()).encode().unwrap(), None).await.unwrap();
        for (reader_name, reader) in &layers {
            let reader = reader.layer(shared.clone());
            let raw = reader.get("shared").await.unwrap().unwrap();
            let env = Envelope::decode(raw.clone()).unwrap();
            assert_eq!(
                env.decompressed_payload(1 << 20).unwrap(),
                payload,
                "written by {writer_name}, read by {reader_name}"
            );
            // A write-back through the reader's layer keeps a compressed entry as it was,
            // and compresses an uncompressed one with its own setting.
            let other = memory();
            reader.layer().layer(other.clone()).set("copy", raw.clone(), None).await.unwrap();
            let copy = other.get("copy").await.unwrap().unwrap();
            if env.compression != Compression::None {
                assert_eq!(copy, raw, "written by {writer_name}, copied by {reader_name}");
            }
            let copy = Envelope::decode(copy).unwrap();
            assert_eq!(copy.decompressed_payload(1 << 20).unwrap(), payload);
        }
    }
}

/// A change to a stored payload.
type Tamper = Box<dyn FnOnce(&mut Vec<u8>)>;

/// Rewrites a stored entry's payload with `f`, with a valid checksum, as a bad writer would.
fn tamper(raw: Bytes, f: impl FnOnce(&mut Vec<u8>)) -> Envelope {
    let mut env = Envelope::decode(raw).unwrap();
    let mut payload = env.payload.to_vec();
    f(&mut payload);
    env.payload = payload.into();
    Envelope::decode(env.encode().unwrap()).unwrap()
}

#[tokio::test]
async fn corrupt_frames_are_codec_errors() {
    for (name, layer) in layers() {
        if name == "none" {
            continue;
        }
        let inner = memory();
        layer
            .layer(inner.clone())
            .set("k", entry(text(20_000, 9)).encode().unwrap(), None)
            .await
            .unwrap();
        let raw = inner.get("k").await.unwrap().unwrap();
        let len = Envelope::decode(raw.clone()).unwrap().payload.len();
        let cases: Vec<(&str, Tamper)> = vec![
            ("truncated", Box::new(|p: &mut Vec<u8>| p.truncate(p.len() / 2))),
            ("empty", Box::new(|p: &mut Vec<u8>| p.clear())),
            ("header zeroed", Box::new(|p: &mut Vec<u8>| p[..8].fill(0))),
            (
                "middle flipped",
                Box::new(move |p: &mut Vec<u8>| {
                    for b in &mut p[len / 3..len / 3 + 16] {
                        *b ^= 0x5A;
                    }
                }),
            ),
            ("garbage appended", Box::new(|p: &mut Vec<u8>| p.extend_from_slice(&[0xFF; 64]))),
        ];
        for (what, f) in cases {
            let env = tamper(raw.clone(), f);
            match env.value_bounded::<String>(1 << 20) {
                Err(e) => assert_eq!(e.kind(), ErrorKind::Codec, "{name}, {what}: {e}"),
                // A flipped byte inside a literal run may still decompress (to other bytes);
                // JSON of other bytes is then either an error or a different string.
                Ok(s) => assert_ne!(s.as_bytes(), &text(20_000, 9)[..], "{name}, {what}"),
            }
        }
    }
}

#[tokio::test]
async fn decompression_bombs_are_refused() {
    let zeros = vec![b' '; 64 * 1024 * 1024];
    let max = 16 * 1024 * 1024;
    for algorithm in [Algorithm::Zstd, Algorithm::Lz4] {
        let inner = memory();
        let layer = CompressionLayer::builder().algorithm(algorithm).build().unwrap();
        layer
            .layer(inner.clone())
            .set("bomb", entry(zeros.clone()).encode().unwrap(), None)
            .await
            .unwrap();
        let raw = inner.get("bomb").await.unwrap().unwrap();
        assert!(raw.len() < 1024 * 1024, "{algorithm:?}: {} bytes", raw.len());
        let env = Envelope::decode(raw.clone()).unwrap();
        let err = env.value_bounded::<String>(max).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Codec);
        assert!(err.message().contains("over the maximum"), "{err}");
        // The default bound (16 MiB) applies to `value` too.
        assert_eq!(env.value::<String>().unwrap_err().kind(), ErrorKind::Codec);

        // A frame that lies about its size, small claim and big content.
        let lied = tamper(raw, |p| match algorithm {
            Algorithm::Lz4 => p[..4].copy_from_slice(&1000u32.to_le_bytes()),
            _ => {
                // Single-segment frame header: the content size field follows the descriptor
                // and window bytes; rewrite the payload as a zstd frame of a small input,
                // followed by the big frame.
                let small = zstd::bulk::compress(b"tiny", 3).unwrap();
                let mut both = small;
                both.extend_from_slice(p);
                *p = both;
            }
        });
        let err = lied.value_bounded::<String>(max).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Codec, "{algorithm:?}: {err}");
    }
}

#[tokio::test]
async fn dictionary_change_keeps_old_entries_readable_while_registered() {
    let v1 = dictionary(0x7E57_0101, "Version one");
    let v2 = dictionary(0x7E57_0102, "Version two");
    let shared = memory();

    let old = CompressionLayer::builder().dictionary(v1.clone()).threshold(256).build().unwrap();
    let old_store = old.layer(shared.clone());
    let old_payload = answer_json(1, "Version one");
    old_store.set("old", entry(old_payload.clone()).encode().unwrap(), None).await.unwrap();

    let new = CompressionLayer::builder()
        .dictionary(v2.clone())
        .previous_dictionary(v1.clone())
        .threshold(256)
        .build()
        .unwrap();
    let new_store = new.layer(shared.clone());
    let new_payload = answer_json(2, "Version two");
    new_store.set("new", entry(new_payload.clone()).encode().unwrap(), None).await.unwrap();

    let old_env = Envelope::decode(shared.get("old").await.unwrap().unwrap()).unwrap();
    let new_env = Envelope::decode(shared.get("new").await.unwrap().unwrap()).unwrap();
    assert_eq!(old_env.dictionary_id(), Some(v1.id()));
    assert_eq!(new_env.dictionary_id(), Some(v2.id()));
    assert_eq!(old_env.decompressed_payload(1 << 20).unwrap(), old_payload);
    assert_eq!(new_env.decompressed_payload(1 << 20).unwrap(), new_payload);

    // The dictionary pays: smaller than zstd without one at the same level.
    let plain = CompressionLayer::builder()
        .build()
        .unwrap()
        .compress_entry(entry(new_payload.clone()).encode().unwrap());
    assert!(new_env.payload.len() < Envelope::decode(plain).unwrap().payload.len());

    // Reusing an id for other bytes is refused.
    let clash = ZstdDictionary::from_bytes(v1.id(), v2.bytes().to_vec());
    let err = CompressionLayer::builder().dictionary(clash).build().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);

    // Once the old dictionary is gone, its entries are a codec error (a counted miss).
    assert!(unregister_dictionary(v1.id()));
    let err = old_env.value::<String>().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Codec);
    assert!(err.message().contains("not registered"), "{err}");
    assert_eq!(new_env.decompressed_payload(1 << 20).unwrap(), new_payload);
    v1.register().unwrap();
    assert_eq!(old_env.decompressed_payload(1 << 20).unwrap(), old_payload);
}

#[tokio::test]
async fn layers_build_from_config_with_dictionary_files() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = dictionary(0x7E57_0201, "File one");
    let v2 = dictionary(0x7E57_0202, "File two");
    std::fs::write(dir.path().join("v1.dict"), v1.bytes()).unwrap();
    std::fs::write(dir.path().join("v2.dict"), v2.bytes()).unwrap();
    let toml = format!(
        r#"
        algorithm = "zstd"
        level = 5
        threshold = 512
        [dictionary]
        id = {}
        path = "{}"
        [[previous_dictionaries]]
        id = {}
        path = "{}"
        "#,
        v2.id(),
        dir.path().join("v2.dict").display(),
        v1.id(),
        dir.path().join("v1.dict").display()
    );
    let config: CompressionConfig = toml::from_str(&toml).unwrap();
    assert_eq!(
        config.previous_dictionaries,
        [DictionaryConfig::new(v1.id(), dir.path().join("v1.dict"))]
    );
    let layer = CompressionLayer::from_config(&config).unwrap();
    assert_eq!((layer.dictionary_id(), layer.threshold()), (Some(v2.id()), 512));
    assert!(aurelis_cache_core::compression::dictionary(v1.id()).is_some());

    let missing: CompressionConfig = toml::from_str(
        r#"[dictionary]
        id = 1
        path = "/nonexistent/dir/x.dict""#,
    )
    .unwrap();
    assert_eq!(CompressionLayer::from_config(&missing).unwrap_err().kind(), ErrorKind::Config);
    assert!(toml::from_str::<CompressionConfig>("algorithm = \"brotli\"").is_err());
}
