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
