//! Compression: ratio and throughput of zstd (several levels, with and without a trained
//! dictionary) and lz4 against gzip level 6 (flate2, its default miniz_oxide backend), on
//! LLM-response text of 0.5 to 64 KiB from `benches/data` (see its README: prose, Rust code
//! and chat-completion JSON).
//!
//! Each size has one sample of each kind; a row's throughput is over their total size. Before
//! the criterion rows, two markdown tables are printed: the ratios per size and kind, and a
//! speed table from interleaved best-of-rounds timings (every codec against gzip-6, measured
//! in turns so that all share the machine's changes of speed), which `docs/compression.md`
//! quotes. Only the tables:
//!
//! ```sh
//! cargo bench -p aurelis-cache-benches --bench compression -- table-only
//! ```
//!
//! Compressors and decompressors reuse their context, as the compression layer does (zstd's
//! `bulk` API; lz4_flex has none); gzip gets a fresh encoder per payload, as flate2's users
//! write it. The dictionary is trained on answers the measured samples do not come from.
//! `redis_hit_32k/*` (and the table before them) read a 32 KiB response from a real
//! `redis-server` on loopback, stored uncompressed, with zstd-3 and with lz4.
//! `layer/*` rows run the `CompressionLayer` default on whole envelopes (parse, compress,
//! re-encode with checksum) and core's bounded decoder; below the 1 KiB threshold the entry
//! passes through untouched (the 512 B rows measure that).

use std::hint::black_box;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use std::sync::Arc;

use aurelis_cache_compress::{Algorithm, CompressionLayer, ZstdDictionary, DEFAULT_ZSTD_LEVEL};
use aurelis_cache_core::{Codec, Envelope, Store};
use aurelis_cache_redis::RedisStore;
use aurelis_redis_harness::RedisServer;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const PROSE: &str = include_str!("../data/prose.txt");
const CODE: &str = include_str!("../data/code.txt");
const ANSWERS: &str = include_str!("../data/answers.jsonl");

/// Sample sizes, 0.5 to 64 KiB.
const SIZES: [usize; 5] = [512, 2048, 8192, 32 * 1024, 64 * 1024];
/// zstd levels measured without a dictionary.
const ZSTD_LEVELS: [i32; 4] = [1, 3, 6, 9];
/// Answers of `answers.jsonl` the dictionary is trained on; the rest are measured.
const TRAINING_ANSWERS: usize = 300;
/// The trained dictionary's size.
const DICTIONARY_SIZE: usize = 16 * 1024;

/// `len` bytes of `text` from an offset that depends on `len`, so sizes do not all share
/// their start.
fn slice(text: &str, len: usize, salt: usize) -> Vec<u8> {
    let bytes = text.as_bytes();
    let len = len.min(bytes.len());
    let start = (len * 7 + salt * 1013) % (bytes.len() - len + 1);
    bytes[start..start + len].to_vec()
}

/// A chat-completion response of about `len` bytes whose answer mixes prose and code.
fn json_answer(len: usize) -> Vec<u8> {
    let mut content = String::new();
    let mut i = 0;
    while content.len() < len {
        let part = if i % 3 == 2 { slice(CODE, 700, i) } else { slice(PROSE, 900, i + len) };
        if i % 3 == 2 {
            content.push_str("\n```rust\n");
        }
        content.push_str(&String::from_utf8_lossy(&part));
        if i % 3 == 2 {
            content.push_str("\n```\n");
        }
        i += 1;
    }
    let response = serde_json::json!({
        "id": format!("chatcmpl-bench{len}"),
        "object": "chat.completion",
        "created": 1764000000,
        "model": "gpt-4o-mini",
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": content },
            "finish_reason": "stop"
        }],
        "usage": { "prompt_tokens": 211, "completion_tokens": len / 4, "total_tokens": 211 + len / 4 }
    });
    let mut raw = serde_json::to_vec(&response).expect("json");
    // Trim the answer text so the whole response is `len` bytes; the result is still what a
    // tier would hold for a response of about that size (compressors do not parse it).
    if raw.len() > len {
        let cut = raw.len() - len;
        let tail = raw.split_off(raw.len() - 220);
        raw.truncate(raw.len() - cut);
        raw.extend_from_slice(&tail);
    }
    raw
}

fn samples(len: usize) -> Vec<(&'static str, Vec<u8>)> {
    vec![("prose", slice(PROSE, len, 1)), ("code", slice(CODE, len, 2)), ("json", json_answer(len))]
}

fn answers() -> Vec<Vec<u8>> {
    ANSWERS.lines().map(|l| l.as_bytes().to_vec()).collect()
}

/// One compressor under test, with its contexts.
enum Algo {
    Gzip6,
    Lz4,
    Zstd(zstd::bulk::Compressor<'static>, zstd::bulk::Decompressor<'static>),
}

struct Way {
    name: String,
    codec: Algo,
}

impl Way {
    fn compress(&mut self, data: &[u8]) -> Vec<u8> {
        match &mut self.codec {
            Algo::Gzip6 => {
                let mut enc = flate2::write::GzEncoder::new(
                    Vec::with_capacity(data.len() / 2),
                    flate2::Compression::new(6),
                );
                enc.write_all(data).expect("gzip");
                enc.finish().expect("gzip")
            }
            Algo::Lz4 => lz4_flex::compress_prepend_size(data),
            Algo::Zstd(c, _) => c.compress(data).expect("zstd"),
        }
    }

    fn decompress(&mut self, data: &[u8], len: usize) -> Vec<u8> {
        match &mut self.codec {
            Algo::Gzip6 => {
                let mut out = Vec::with_capacity(len);
                flate2::read::GzDecoder::new(data).read_to_end(&mut out).expect("gunzip");
                out
            }
            Algo::Lz4 => lz4_flex::decompress_size_prepended(data).expect("lz4"),
            Algo::Zstd(_, d) => d.decompress(data, len).expect("zstd"),
        }
    }
}

fn ways(dictionary: &ZstdDictionary) -> Vec<Way> {
    let mut ways = vec![Way { name: "gzip-6".into(), codec: Algo::Gzip6 }];
    for level in ZSTD_LEVELS {
        ways.push(Way {
            name: format!("zstd-{level}"),
            codec: Algo::Zstd(
                zstd::bulk::Compressor::new(level).expect("zstd"),
                zstd::bulk::Decompressor::new().expect("zstd"),
            ),
        });
    }
    for level in [1, 3] {
        ways.push(Way {
            name: format!("zstd-{level}-dict"),
            codec: Algo::Zstd(
                zstd::bulk::Compressor::with_dictionary(level, dictionary.bytes()).expect("zstd"),
                zstd::bulk::Decompressor::with_dictionary(dictionary.bytes()).expect("zstd"),
            ),
        });
    }
    ways.push(Way { name: "lz4".into(), codec: Algo::Lz4 });
    ways
}

/// Prints the ratio table: total input / total output, per size (all kinds) and per kind.
fn print_ratios(dictionary: &ZstdDictionary) {
    let mut ways = ways(dictionary);
    let held_out: Vec<Vec<u8>> = answers().split_off(TRAINING_ANSWERS);
    println!("\n## Compression ratios (input bytes / output bytes)\n");
    print!("| sample |");
    for w in &ways {
        print!(" {} |", w.name);
    }
    println!();
    println!("|---|{}", "---|".repeat(ways.len()));
    let mut rows: Vec<(String, Vec<Vec<u8>>)> = Vec::new();
    for len in SIZES {
        let s = samples(len);
        rows.push((format!("{len} B, all kinds"), s.iter().map(|(_, d)| d.clone()).collect()));
        for (kind, data) in s {
            rows.push((format!("{len} B, {kind}"), vec![data]));
        }
    }
    let avg = held_out.iter().map(Vec::len).sum::<usize>() / held_out.len();
    rows.push((format!("{} held-out answers (avg {avg} B)", held_out.len()), held_out));
    for (label, data) in rows {
        print!("| {label} |");
        let before: usize = data.iter().map(Vec::len).sum();
        for w in &mut ways {
            let after: usize = data
                .iter()
                .map(|d| {
                    let c = w.compress(d);
                    assert_eq!(w.decompress(&c, d.len()), *d, "{} round trip", w.name);
                    c.len()
                })
                .sum();
            print!(" {:.2} |", before as f64 / after as f64);
        }
        println!();
    }
    println!();
}

/// Rounds of the speed table; each way is timed once per round, ways taking turns, and the
/// best round counts (the machine is shared: the best round is the one least disturbed).
const ROUNDS: usize = 30;
/// About how long one timing lasts.
const TIMING: Duration = Duration::from_millis(5);

/// Seconds per pass of `f` over the samples: the best of `ROUNDS`, interleaved by the caller.
fn time_pass(iters: u32, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    start.elapsed().as_secs_f64() / f64::from(iters)
}

/// Prints the speed table: ratio, compression and decompression MB/s (10^6 bytes of input or
/// output per second) per sample set and codec, and each against gzip-6, from interleaved
/// best-of-rounds timings (criterion's rows, measured one after another, do not share the
/// machine's changes of speed).
fn print_speeds(dictionary: &ZstdDictionary) {
    let mut sets: Vec<(String, Vec<Vec<u8>>)> = SIZES
        .iter()
        .map(|&len| (format!("{len} B"), samples(len).into_iter().map(|(_, d)| d).collect()))
        .collect();
    sets.push(("held-out answers".into(), answers().split_off(TRAINING_ANSWERS)));
    println!("\n## Speeds (best of {ROUNDS} interleaved rounds; MB/s of uncompressed bytes)\n");
    println!("| samples | codec | ratio | compress MB/s | decompress MB/s | ratio vs gzip-6 | compress vs gzip-6 | decompress vs gzip-6 |");
    println!("|---|---|---|---|---|---|---|---|");
    for (label, data) in &sets {
        let total: usize = data.iter().map(Vec::len).sum();
        let mut ways = ways(dictionary);
        let compressed: Vec<Vec<Vec<u8>>> =
            ways.iter_mut().map(|w| data.iter().map(|d| w.compress(d)).collect()).collect();
        // Iterations per timing, from one pass of each.
        let iters: Vec<(u32, u32)> = ways
            .iter_mut()
            .zip(&compressed)
            .map(|(w, cs)| {
                let c = time_pass(1, || data.iter().for_each(|d| drop(black_box(w.compress(d)))));
                let d = time_pass(1, || {
                    cs.iter().zip(data).for_each(|(c, d)| drop(black_box(w.decompress(c, d.len()))))
                });
                let n = |t: f64| ((TIMING.as_secs_f64() / t.max(1e-9)) as u32).clamp(1, 100_000);
                (n(c), n(d))
            })
            .collect();
        let mut best = vec![(f64::MAX, f64::MAX); ways.len()];
        for _ in 0..ROUNDS {
            for (i, w) in ways.iter_mut().enumerate() {
                let c = time_pass(iters[i].0, || {
                    data.iter().for_each(|d| drop(black_box(w.compress(black_box(d)))))
                });
                let d = time_pass(iters[i].1, || {
                    compressed[i]
                        .iter()
                        .zip(data)
                        .for_each(|(c, d)| drop(black_box(w.decompress(black_box(c), d.len()))))
                });
                best[i] = (best[i].0.min(c), best[i].1.min(d));
            }
        }
        let mbps = |t: f64| total as f64 / t / 1e6;
        let ratio =
            |i: usize| total as f64 / compressed[i].iter().map(Vec::len).sum::<usize>() as f64;
        for (i, w) in ways.iter().enumerate() {
            println!(
                "| {label} | {} | {:.2} | {:.0} | {:.0} | {:.2} | {:.1}x | {:.1}x |",
                w.name,
                ratio(i),
                mbps(best[i].0),
                mbps(best[i].1),
                ratio(i) / ratio(0),
                best[0].0 / best[i].0,
                best[0].1 / best[i].1,
            );
        }
    }
    println!();
}

/// The codecs with criterion rows.
const CRITERION_WAYS: [&str; 6] = ["gzip-6", "zstd-1", "zstd-3", "zstd-6", "zstd-3-dict", "lz4"];

/// Shorter than the crate's default settings: these rows are many and steady.
fn short(group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20);
}

fn compression(c: &mut Criterion) {
    let training: Vec<Vec<u8>> = answers().into_iter().take(TRAINING_ANSWERS).collect();
    let dictionary =
        ZstdDictionary::train(1, &training, DICTIONARY_SIZE).expect("dictionary trains");
    print_ratios(&dictionary);
    print_speeds(&dictionary);

    let mut groups: Vec<(String, Vec<Vec<u8>>)> = SIZES
        .iter()
        .map(|&len| (len.to_string(), samples(len).into_iter().map(|(_, d)| d).collect()))
        .collect();
    groups.push(("answers".into(), answers().split_off(TRAINING_ANSWERS)));

    for (label, data) in &groups {
        let total: usize = data.iter().map(Vec::len).sum();
        // Criterion rows for the codecs docs/compression.md discusses (the table above has
        // every one), kept short: 84 rows of about 1.5 s.
        let mut ways: Vec<Way> = ways(&dictionary)
            .into_iter()
            .filter(|w| CRITERION_WAYS.contains(&w.name.as_str()))
            .collect();

        let mut group = c.benchmark_group("compress");
        short(&mut group);
        group.throughput(Throughput::Bytes(total as u64));
        for w in &mut ways {
            group.bench_function(BenchmarkId::new(w.name.clone(), label), |b| {
                b.iter(|| {
                    for d in data {
                        black_box(w.compress(black_box(d)));
                    }
                })
            });
        }
        group.finish();

        let mut group = c.benchmark_group("decompress");
        short(&mut group);
        group.throughput(Throughput::Bytes(total as u64));
        for w in &mut ways {
            let compressed: Vec<(Vec<u8>, usize)> =
                data.iter().map(|d| (w.compress(d), d.len())).collect();
            group.bench_function(BenchmarkId::new(w.name.clone(), label), |b| {
                b.iter(|| {
                    for (d, len) in &compressed {
                        black_box(w.decompress(black_box(d), *len));
                    }
                })
            });
        }
        group.finish();

        // The layer's default on whole envelopes (parse, compress, re-encode with checksum),
        // and core's bounded decoder on what it wrote.
        let layer = CompressionLayer::builder().build().expect("layer");
        let entries: Vec<bytes::Bytes> = data
            .iter()
            .map(|d| Envelope::new(Codec::Json, d.clone().into()).encode().expect("envelope"))
            .collect();
        let stored: Vec<Envelope> = entries
            .iter()
            .map(|e| Envelope::decode(layer.compress_entry(e.clone())).expect("decodes"))
            .collect();
        let mut group = c.benchmark_group("layer");
        short(&mut group);
        group.throughput(Throughput::Bytes(total as u64));
        group.bench_function(
            BenchmarkId::new(format!("compress-zstd-{DEFAULT_ZSTD_LEVEL}"), label),
            |b| {
                b.iter(|| {
                    for e in &entries {
                        black_box(layer.compress_entry(black_box(e.clone())));
                    }
                })
            },
        );
        group.bench_function(
            BenchmarkId::new(format!("decompress-zstd-{DEFAULT_ZSTD_LEVEL}"), label),
            |b| {
                b.iter(|| {
                    for e in &stored {
                        black_box(e.decompressed_payload(16 << 20).expect("decompresses"));
                    }
                })
            },
        );
        group.finish();
    }
}

/// The Redis hit of a 32 KiB chat-completion response, stored uncompressed, with zstd-3 and
/// with lz4 through the compression layer: `RedisStore::get`, envelope decode (checksum),
/// decompression and `serde_json::Value` decoding, on a `redis-server` on loopback (where the
/// bytes saved cost almost nothing to move: the saving shows on a real network, see the
/// stored sizes). Printed as an interleaved best-of-rounds table, then criterion rows.
fn redis_hit(c: &mut Criterion) {
    let rt = aurelis_cache_benches::runtime();
    let server = RedisServer::start().unwrap_or_else(|e| panic!("compression bench: {e}"));
    let store: Arc<dyn Store> = Arc::new(
        rt.block_on(RedisStore::builder().url(server.url()).build()).expect("redis store"),
    );
    let answer = json_answer(32 * 1024);
    let entry = Envelope::new(Codec::Json, answer.into()).encode().expect("envelope");
    let ways =
        [("uncompressed", Algorithm::None), ("zstd-3", Algorithm::Zstd), ("lz4", Algorithm::Lz4)];
    let mut stored = Vec::new();
    for (name, algorithm) in ways {
        let layer = CompressionLayer::builder().algorithm(algorithm).build().expect("layer");
        let key = format!("compression:hit:{name}");
        rt.block_on(layer.layer(Arc::clone(&store)).set(&key, entry.clone(), None)).expect("set");
        let len = rt.block_on(store.get(&key)).expect("get").expect("stored").len();
        stored.push((name, key, len));
    }
    let hit = |key: &str| {
        let raw = rt.block_on(store.get(key)).expect("get").expect("hit");
        let env = Envelope::decode(raw).expect("envelope");
        env.value_bounded::<serde_json::Value>(16 << 20).expect("value")
    };
    // The same decoding on bytes already fetched: what the hit costs beyond the round trip.
    let fetched: Vec<bytes::Bytes> = stored
        .iter()
        .map(|(_, key, _)| rt.block_on(store.get(key)).expect("get").expect("hit"))
        .collect();
    let decode = |raw: &bytes::Bytes| {
        let env = Envelope::decode(raw.clone()).expect("envelope");
        env.value_bounded::<serde_json::Value>(16 << 20).expect("value")
    };
    let mut best = vec![(f64::MAX, f64::MAX); stored.len()];
    for _ in 0..ROUNDS {
        for (i, (_, key, _)) in stored.iter().enumerate() {
            let h = time_pass(50, || drop(black_box(hit(key))));
            let d = time_pass(50, || drop(black_box(decode(&fetched[i]))));
            best[i] = (best[i].0.min(h), best[i].1.min(d));
        }
    }
    println!(
        "\n## Redis hit, 32 KiB response (loopback; best of {ROUNDS} interleaved rounds of 50)\n"
    );
    println!("| stored as | bytes in Redis | µs per hit | vs uncompressed | of which decoding (no Redis) |");
    println!("|---|---|---|---|---|");
    for (i, (name, _, len)) in stored.iter().enumerate() {
        println!(
            "| {name} | {len} | {:.1} | {:.2}x | {:.1} |",
            best[i].0 * 1e6,
            best[i].0 / best[0].0,
            best[i].1 * 1e6
        );
    }
    println!();

    let mut group = c.benchmark_group("redis_hit_32k");
    short(&mut group);
    for (name, key, _) in &stored {
        group.bench_function(*name, |b| b.iter(|| black_box(hit(key))));
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = aurelis_cache_benches::criterion();
    targets = compression, redis_hit
}
criterion_main!(benches);
