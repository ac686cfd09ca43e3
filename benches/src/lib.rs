//! Helpers shared by the bench targets in `benches/`: the values, the criterion settings and
//! the tokio runtime every async peer runs on, so that every row of a group is measured the
//! same way.

use std::path::PathBuf;
use std::time::Duration;

use criterion::Criterion;

/// Category of every facade entry in the benches.
pub const CATEGORY: &str = "bench";

/// Identifier of the entry read by the single-key benches.
pub const IDENTIFIER: &str = "item-42";

/// Size of the value of most benches: 1 KiB.
pub const VALUE_LEN: usize = 1024;

/// A string value of `len` bytes (ASCII, not all one byte, so nothing compresses it to a
/// special case).
pub fn value(len: usize) -> String {
    (0..len).map(|i| char::from(b'a' + (i % 26) as u8)).collect()
}

/// The criterion settings of every group: 1 s of warm-up, 5 s of measurement, 50 samples.
/// `criterion_group!` applies the command-line options on top (`--measurement-time`,
/// `--sample-size`, a filter, `--save-baseline`).
pub fn criterion() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(50)
}

/// The runtime every async bench runs on, ours and the peers': tokio's current-thread runtime
/// with time and I/O enabled. Criterion's `to_async` drives each measured loop with
/// `block_on`, so the loop, the tasks the clients spawn (a Redis connection's driver) and
/// their I/O all run on the bench thread, and a Redis server started by the benches has the
/// other core to itself.
///
/// Why not the multi-threaded runtime: on a two-core machine its two workers, criterion's
/// thread and `redis-server` are four busy threads on two cores, and every Redis reply then
/// crosses threads twice (driver task on a worker, waiting future on criterion's thread). A
/// raw `GET` measured that way took 70-90 µs with a ±15 % spread instead of about 20 µs with
/// ±3 %: the hand-offs drowned the differences the benches are there to show.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime")
}

/// What the command line asks of a bench target that is a plain program (not criterion):
/// `cargo bench` passes it the same arguments as the criterion targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlainRun {
    /// Measure and report.
    Full,
    /// `--test` (`cargo test --benches`): a small run that only checks the target works.
    Quick,
    /// `--list`, or a filter that leaves this target out: do nothing (after printing the
    /// target's name for `--list`).
    Skip,
}

/// Criterion's options that take a value (so that the value is not read as a filter).
const OPTIONS_WITH_VALUE: [&str; 18] = [
    "--save-baseline",
    "-s",
    "--baseline",
    "-b",
    "--baseline-lenient",
    "--load-baseline",
    "--measurement-time",
    "--warm-up-time",
    "--sample-size",
    "--nresamples",
    "--noise-threshold",
    "--confidence-level",
    "--significance-level",
    "--profile-time",
    "--output-format",
    "--color",
    "-c",
    "--plotting-backend",
];

/// Reads the command line of the plain bench target `name`: it runs unless a filter is given
/// that is not a part of `name` (filters are matched as plain substrings, not as criterion's
/// regular expressions).
pub fn plain_run(name: &str) -> PlainRun {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("{name}: benchmark");
        return PlainRun::Skip;
    }
    let mut filters = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if OPTIONS_WITH_VALUE.contains(&arg.as_str()) {
            iter.next();
        } else if !arg.starts_with('-') {
            filters.push(arg.as_str());
        }
    }
    if !filters.is_empty() && !filters.iter().any(|f| name.contains(f)) {
        return PlainRun::Skip;
    }
    if args.iter().any(|a| a == "--test") {
        PlainRun::Quick
    } else {
        PlainRun::Full
    }
}

/// The directory the plain bench targets write their results to, for `cargo xtask bench`:
/// `<target dir>/aurelis-bench`, where the target dir is `$CARGO_TARGET_DIR` (relative to the
/// workspace), else the one this binary was built in (`<target>/release/deps/<bench>`).
pub fn output_dir() -> PathBuf {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = match std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => workspace.join(dir),
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| exe.ancestors().nth(3).map(PathBuf::from))
            .unwrap_or_else(|| workspace.join("target")),
    };
    target.join("aurelis-bench")
}

/// Writes `contents` to `file` in [`output_dir`] (created if needed) and says so on stderr,
/// prefixed with `bench`. Panics if the file cannot be written: the run's results would be lost.
pub fn write_output(bench: &str, file: &str, contents: &str) -> PathBuf {
    let dir = output_dir();
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("{bench}: cannot create {}: {e}", dir.display()));
    let path = dir.join(file);
    std::fs::write(&path, contents)
        .unwrap_or_else(|e| panic!("{bench}: cannot write {}: {e}", path.display()));
    eprintln!("{bench}: wrote {}", path.display());
    path
}

/// `text` as a JSON string literal, quotes included.
pub fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Nanoseconds the calling thread has spent on a CPU, when the kernel tells
/// (`/proc/thread-self/schedstat`).
pub fn thread_cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

/// One way of reading in an interleaved measurement: its name in the JSON file (the criterion
/// function of the same read) and the label printed on stderr.
pub type Way = (&'static str, &'static str);

/// How long an interleaved measurement runs: `reads` per turn, `rounds` rounds (the first only
/// warms up). [`PlainRun::Quick`] gets a tiny one that only checks the code runs.
#[derive(Clone, Copy, Debug)]
pub struct Turns {
    /// Reads of one way before the next takes its turn.
    pub reads: u32,
    /// Rounds of turns, the first of which is not measured.
    pub rounds: u32,
}

/// What the interleaved measurement `name` of a bench target runs: `full` turns written to
/// `file` on a full run, a tiny run that writes nothing under `--test`, nothing (`None`) when
/// a filter leaves it out (see [`plain_run`]).
pub fn interleaved_turns(
    name: &str,
    full: Turns,
    file: &'static str,
) -> Option<(Turns, Option<&'static str>)> {
    match plain_run(name) {
        PlainRun::Full => Some((full, Some(file))),
        PlainRun::Quick => Some((Turns { reads: 10, rounds: 2 }, None)),
        PlainRun::Skip => None,
    }
}

/// Measures `ways` of reading the same thing taking turns: every round gives each way a turn
/// of `turns.reads` calls of `read(way)` (the round starting with the next way each time), so
/// that all of them share every change of the machine's speed, which criterion's rows,
/// measured one after another for several seconds each, do not. Prints each way's wall and
/// CPU time per read and its ratio to the first way; with `file`, writes them to that file of
/// [`output_dir`] as `{"reads_per_way":N,"reads_per_turn":N,"rows":[{"name":..,
/// "us_per_read":..,"cpu_us_per_read":..|null}]}`, which `cargo xtask bench` reads.
pub async fn interleave<F, Fut>(
    bench: &str,
    file: Option<&str>,
    ways: &[Way],
    turns: Turns,
    mut read: F,
) where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let n = ways.len();
    let mut wall_ns = vec![0u128; n];
    let mut cpu_ns = vec![Some(0u64); n];
    let mut measured = 0u64;
    for round in 0..turns.rounds {
        for i in 0..n {
            let way = (round as usize + i) % n;
            let cpu_before = thread_cpu_ns();
            let started = std::time::Instant::now();
            for _ in 0..turns.reads {
                read(way).await;
            }
            let elapsed = started.elapsed();
            if round == 0 {
                continue;
            }
            wall_ns[way] += elapsed.as_nanos();
            cpu_ns[way] = match (cpu_ns[way], cpu_before, thread_cpu_ns()) {
                (Some(sum), Some(before), Some(after)) => Some(sum + (after - before)),
                _ => None,
            };
        }
        if round > 0 {
            measured += u64::from(turns.reads);
        }
    }
    eprintln!("{bench}: {measured} reads per way, in {} rounds", turns.rounds.saturating_sub(1));
    report_interleaved(bench, file, ways, turns.reads, measured, &wall_ns, &cpu_ns);
}

/// Prints the figures of an interleaved measurement (each way's wall and CPU time per read,
/// its ratio to the first way) and, with `file`, writes them to that file of [`output_dir`]
/// in the format [`interleave`] describes. `wall_ns` and `cpu_ns` are each way's totals over
/// `measured` reads.
pub fn report_interleaved(
    bench: &str,
    file: Option<&str>,
    ways: &[Way],
    reads_per_turn: u32,
    measured: u64,
    wall_ns: &[u128],
    cpu_ns: &[Option<u64>],
) {
    let per_read = |ns: f64| ns / measured.max(1) as f64 / 1_000.0;
    let mut rows = Vec::new();
    for (i, (name, label)) in ways.iter().enumerate() {
        let wall_us = per_read(wall_ns[i] as f64);
        let cpu_us = cpu_ns[i].map(|ns| per_read(ns as f64));
        let cpu = cpu_us
            .map(|us| format!("{us:8.3} µs CPU"))
            .unwrap_or_else(|| "CPU time unknown".into());
        eprintln!(
            "{bench}: {label:<30} {wall_us:8.3} µs per read ({:.3}× {}), {cpu}",
            wall_ns[i] as f64 / wall_ns[0].max(1) as f64,
            ways[0].0,
        );
        let cpu_us = cpu_us.map_or_else(|| "null".to_owned(), |us| format!("{us:.5}"));
        rows.push(format!(
            "{{\"name\":{},\"us_per_read\":{wall_us:.5},\"cpu_us_per_read\":{cpu_us}}}",
            json_string(name)
        ));
    }
    if let Some(file) = file {
        let json = format!(
            "{{\"reads_per_way\":{measured},\"reads_per_turn\":{reads_per_turn},\"rows\":[\n{}\n]}}\n",
            rows.join(",\n")
        );
        write_output(bench, file, &json);
    }
}
