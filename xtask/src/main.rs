//! Aurelis Cache's task runner: `cargo xtask <command>` (see `cargo xtask help`).
//!
//! It only needs std and `toml` (to read `benches/ratios.toml`), so it builds in seconds.

mod json;
mod report;

use std::collections::BTreeMap;
use std::env;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use json::Json;

const HELP: &str = "\
cargo xtask: Aurelis Cache's task runner

USAGE:
    cargo xtask <COMMAND> [ARGS...]

COMMANDS:
    test [ARGS...]     The project's test command: checks that redis-server and redis-cli are
                       installed (tests start their own servers on free ports), then runs
                       `cargo test --workspace --all-features [ARGS...]` (unit, integration and
                       doc tests). ARGS go to cargo test, e.g.
                       `cargo xtask test -p aurelis-cache-core -- --nocapture`.
    ci                 Exactly what CI (.ci/run) runs, stopping at the first failure:
                         1. cargo fmt --all -- --check
                         2. cargo clippy --workspace --all-targets --all-features -- -D warnings
                            (builds the benches too)
                         3. the `test` command
    bench [--report-only] [ARGS...]
                       Runs `cargo bench -p aurelis-cache-benches -- [ARGS...]` (criterion; ARGS
                       is typically a filter such as `memory_hit`), then rewrites the measured
                       section of docs/performance.md. With --report-only, no bench runs and the
                       section is rebuilt from the criterion results already on disk.
    demo [ARGS...]     Runs the LLM caching demo:
                       `cargo run --release -p aurelis-cache --example llm_demo -- [ARGS...]`.
    fuzz [SECS]        Fuzzes Envelope::decode for SECS seconds (default 60):
                       `cargo +nightly fuzz run envelope_decode -- -max_total_time=SECS` in fuzz/.
                       Needs the nightly toolchain and cargo-fuzz. Not part of `ci`.
    help               Prints this text.

BENCH REPORT:
    benches/ratios.toml lists the comparisons, each a [[ratio]] table:

        [[ratio]]
        name = \"memory hit, facade vs raw moka\"   # row title
        ours = \"memory_hit/aurelis_facade\"         # criterion id: group/function
        peer = \"memory_hit/raw_moka\"               # a baseline measured in the same run
        target = 1.5       # optional: mean(ours) / mean(peer) must be <= 1.5
        # target_min = 30  # or: a speed-up, mean(peer) / mean(ours) must be >= 30
        # judged_on = \"interleaved\" # shown with its target, which is judged on the
                                   # interleaved table instead (needs [interleaved])

    Without a target the row is informational (ratio ours / peer). Times are criterion's
    mean point estimates, read from <target>/criterion/**/new/estimates.json (CRITERION_HOME or
    CARGO_TARGET_DIR are respected); ids are criterion's full ids (`group/function`, plus
    `/parameter` for parameterised benches). After a run, only results written by that run are
    used; rows whose benches did not run show \"not measured\".

    Two plain bench targets write files into <target>/aurelis-bench/, used (after a run) only
    when that run wrote them:
      memory_overhead.json    the \"Memory per entry\" table:
        {\"rows\":[{\"name\":..., \"bytes_per_entry\":..., \"payload_bytes\":...}]}
      redis_interleaved.json  the \"Redis hit, interleaved\" table (the ways of reading take
                              turns, so that they share every change of the machine's speed):
        {\"reads_per_way\":N, \"reads_per_turn\":N, \"rows\":[{\"name\":..., \"us_per_read\":...,
         \"cpu_us_per_read\":... or null}]}
    The interleaved table is set up by an optional [interleaved] table in ratios.toml:

        [interleaved]
        baseline = \"raw_redis_held_conn\"  # every way / this way (default: the first row)
        targets = { aurelis_facade = 1.1 }  # way = highest ratio; other ways informational

    The generated text goes between <!-- BEGIN MEASURED --> and <!-- END MEASURED --> in
    docs/performance.md; everything outside the markers is kept.
";

fn main() -> ExitCode {
    let mut args = env::args_os().skip(1);
    let Some(command) = args.next() else {
        print!("{HELP}");
        return ExitCode::SUCCESS;
    };
    let rest: Vec<OsString> = args.collect();
    let result = match command.to_str().unwrap_or_default() {
        "help" | "--help" | "-h" => {
            print!("{HELP}");
            Ok(())
        }
        "test" => timed("test", || test(&rest)),
        "ci" => timed("ci", ci),
        "bench" => bench(&rest),
        "demo" => demo(&rest),
        "fuzz" => fuzz(&rest),
        other => {
            eprintln!("{HELP}");
            Err(Failure::new(format!("unknown command `{other}`")))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if !failure.message.is_empty() {
                eprintln!("xtask: {}", failure.message);
            }
            ExitCode::from(failure.code)
        }
    }
}

/// Why a command failed, and the exit code to leave with.
#[derive(Debug)]
struct Failure {
    message: String,
    code: u8,
}

impl Failure {
    fn new(message: impl Into<String>) -> Self {
        Failure { message: message.into(), code: 1 }
    }
}

type Result<T = ()> = std::result::Result<T, Failure>;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// The cargo that runs xtask (same toolchain), or `cargo` from PATH.
fn cargo() -> Command {
    let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

fn show(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    if parts[0].ends_with("/cargo") {
        parts[0] = "cargo".into();
    }
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

/// Runs `cmd` with inherited stdio; a non-zero exit becomes a [`Failure`] with the same code.
fn run(cmd: &mut Command) -> Result {
    let shown = show(cmd);
    eprintln!("$ {shown}");
    let status =
        cmd.status().map_err(|e| Failure::new(format!("could not start `{shown}`: {e}")))?;
    if status.success() {
        return Ok(());
    }
    let code = status.code().unwrap_or(1);
    let message = match status.code() {
        Some(c) => format!("`{shown}` exited with status {c}"),
        None => format!("`{shown}` was killed by a signal"),
    };
    Err(Failure { message, code: u8::try_from(code).ok().filter(|c| *c != 0).unwrap_or(1) })
}

fn fmt_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 60 {
        format!("{}m {:02}s", secs / 60, secs % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// Runs `f` and prints how long it took, whether it succeeded or not.
fn timed(name: &str, f: impl FnOnce() -> Result) -> Result {
    let start = Instant::now();
    let result = f();
    let outcome = if result.is_ok() { "finished" } else { "failed" };
    eprintln!("xtask {name}: {outcome} in {}", fmt_duration(start.elapsed()));
    result
}

fn on_path(program: &str) -> bool {
    let Some(path) = env::var_os("PATH") else { return false };
    env::split_paths(&path).any(|dir| {
        let candidate = dir.join(program);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::metadata(&candidate)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        }
        #[cfg(not(unix))]
        {
            candidate.is_file() || candidate.with_extension("exe").is_file()
        }
    })
}

/// Tests start real Redis servers; say how to install them when they are missing.
fn check_redis() -> Result {
    let missing: Vec<&str> =
        ["redis-server", "redis-cli"].into_iter().filter(|p| !on_path(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Failure::new(format!(
        "{} not found on PATH. The tests start their own Redis servers on free ports, so Redis \
         must be installed (no server needs to be running):\n    \
         Debian/Ubuntu: sudo apt-get install -y redis-server redis-tools\n    \
         macOS:         brew install redis",
        missing.join(" and ")
    )))
}

fn test(args: &[OsString]) -> Result {
    check_redis()?;
    let mut cmd = cargo();
    cmd.arg("test");
    // `-p` picks packages itself; otherwise test the whole workspace.
    let picks_packages = args
        .iter()
        .take_while(|a| *a != "--")
        .any(|a| a == "-p" || a == "--package" || a.to_string_lossy().starts_with("--package="));
    if !picks_packages {
        cmd.arg("--workspace");
    }
    cmd.arg("--all-features").args(args);
    run(&mut cmd)
}

fn ci() -> Result {
    check_redis()?;
    let steps: [(&str, &dyn Fn() -> Result); 3] = [
        ("fmt", &|| run(cargo().args(["fmt", "--all", "--", "--check"]))),
        ("clippy", &|| {
            run(cargo().args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--all-features",
                "--",
                "-D",
                "warnings",
            ]))
        }),
        ("test", &|| test(&[])),
    ];
    for (i, (name, step)) in steps.iter().enumerate() {
        eprintln!("\n==> xtask ci: step {}/{} `{name}`", i + 1, steps.len());
        let start = Instant::now();
        if let Err(failure) = step() {
            eprintln!(
                "\nxtask ci: step `{name}` FAILED after {} ({})",
                fmt_duration(start.elapsed()),
                failure.message
            );
            return Err(Failure { message: String::new(), code: failure.code });
        }
        eprintln!("==> xtask ci: step `{name}` passed in {}", fmt_duration(start.elapsed()));
    }
    Ok(())
}

/// Where criterion writes (`CRITERION_HOME`, else `<target dir>/criterion`) and the target dir.
fn bench_dirs() -> (PathBuf, PathBuf) {
    let target = match env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => root().join(dir),
        None => cargo_metadata_target_dir().unwrap_or_else(|| root().join("target")),
    };
    let criterion = match env::var_os("CRITERION_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => root().join(PathBuf::from(dir)),
        None => target.join("criterion"),
    };
    (criterion, target)
}

fn cargo_metadata_target_dir() -> Option<PathBuf> {
    let out = cargo()
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    Json::parse(&text).ok()?.get("target_directory")?.as_str().map(PathBuf::from)
}

fn bench(args: &[OsString]) -> Result {
    let report_only = args.iter().any(|a| a == "--report-only");
    let passthrough: Vec<&OsString> =
        args.iter().filter(|a| *a != "--report-only").skip_while(|a| *a == "--").collect();
    if report_only && !passthrough.is_empty() {
        return Err(Failure::new("`bench --report-only` takes no other arguments"));
    }
    let since = if report_only {
        None
    } else {
        // Whole seconds, one back, so that a result written in the first second counts.
        let start = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        timed("bench", || {
            run(cargo().args(["bench", "-p", "aurelis-cache-benches", "--"]).args(&passthrough))
        })?;
        Some(start.saturating_sub(1))
    };
    let mut command = String::from("cargo xtask bench");
    for a in args {
        command.push(' ');
        command.push_str(&a.to_string_lossy());
    }
    write_report(since, command)
}

fn write_report(since: Option<u64>, command: String) -> Result {
    let root = root();
    let ratios_path = root.join("benches/ratios.toml");
    let ratios_text = fs::read_to_string(&ratios_path)
        .map_err(|e| Failure::new(format!("cannot read {}: {e}", ratios_path.display())))?;
    let config = report::parse_ratios(&ratios_text)
        .map_err(|e| Failure::new(format!("{}: {e}", ratios_path.display())))?;

    let (criterion_dir, target_dir) = bench_dirs();
    let (measured, older) =
        report::collect_measurements(&criterion_dir, since).map_err(Failure::new)?;
    eprintln!(
        "xtask bench: {} criterion result(s) in {}{}",
        measured.len(),
        criterion_dir.display(),
        if older > 0 { format!(" ({older} from earlier runs left out)") } else { String::new() }
    );

    let bench_dir = target_dir.join("aurelis-bench");
    let memory = read_fresh(&bench_dir.join("memory_overhead.json"), since, report::parse_memory)?;
    let run =
        read_fresh(&bench_dir.join("redis_interleaved.json"), since, report::parse_interleaved)?;
    // The table is shown when it is set up or measured (without [interleaved]: no targets,
    // ratios to the file's first row).
    let interleaved = (config.interleaved.is_some() || run.is_some()).then(|| {
        let settings = config.interleaved.clone().unwrap_or_default();
        report::evaluate_interleaved(&settings, run.as_ref())
    });

    let evaluated: Vec<_> = config.ratios.iter().map(|r| report::evaluate(r, &measured)).collect();
    let rustc = Command::new(env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()))
        .arg("-V")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into());
    let machine = report::MachineInfo::current(rustc, command);
    let generated = report::render_measured(
        &evaluated,
        interleaved.as_ref(),
        &measured,
        memory.as_deref(),
        &machine,
    );

    let doc_path = root.join("docs/performance.md");
    let doc = match fs::read_to_string(&doc_path) {
        Ok(doc) => doc,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => report::new_document(),
        Err(e) => return Err(Failure::new(format!("cannot read {}: {e}", doc_path.display()))),
    };
    let updated = report::replace_measured(&doc, &generated)
        .map_err(|e| Failure::new(format!("{}: {e}", doc_path.display())))?;
    if let Some(dir) = doc_path.parent() {
        fs::create_dir_all(dir)
            .map_err(|e| Failure::new(format!("cannot create {}: {e}", dir.display())))?;
    }
    fs::write(&doc_path, updated)
        .map_err(|e| Failure::new(format!("cannot write {}: {e}", doc_path.display())))?;

    print_summary(&evaluated, interleaved.as_ref(), &measured);
    eprintln!("xtask bench: wrote {}", doc_path.display());
    Ok(())
}

/// Reads and parses one of the files the plain bench targets write, if it exists and, after a
/// bench run (`since`), was written by that run; an older file is left out and said so.
fn read_fresh<T>(
    path: &Path,
    since: Option<u64>,
    parse: impl FnOnce(&str) -> std::result::Result<T, String>,
) -> Result<Option<T>> {
    let Ok(text) = fs::read_to_string(path) else {
        return Ok(None);
    };
    let fresh = since.is_none_or(|since| {
        fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .is_some_and(|d| d.as_secs() >= since)
    });
    if !fresh {
        eprintln!("xtask bench: {} is from an earlier run, left out", path.display());
        return Ok(None);
    }
    parse(&text).map(Some).map_err(|e| Failure::new(format!("{}: {e}", path.display())))
}

fn print_summary(
    rows: &[report::Evaluated],
    interleaved: Option<&report::InterleavedReport>,
    measured: &BTreeMap<String, report::Measurement>,
) {
    if measured.is_empty() {
        eprintln!("xtask bench: no criterion results found; every row is \"not measured\"");
    }
    let mut lines = Vec::new();
    let mut counts = BTreeMap::new();
    for e in rows {
        let (ratio, target) = report::ratio_cells(e);
        let status = match (e.row.judged_on_interleaved, e.status) {
            (true, report::Status::Met | report::Status::Missed) => {
                format!("{:?} here, judged on interleaved", e.status)
            }
            (_, status) => format!("{status:?}"),
        };
        lines.push((e.row.name.clone(), ratio, target, status));
    }
    for way in interleaved.map(|i| i.ways.as_slice()).unwrap_or_default() {
        let (ratio, target) = report::interleaved_cells(way);
        let status = format!("{:?}", way.status);
        lines.push((format!("redis hit, interleaved: {}", way.name), ratio, target, status));
    }
    let width = lines.iter().map(|(name, ..)| name.chars().count()).max().unwrap_or(0);
    for (name, ratio, target, status) in lines {
        println!("  {name:width$}  {ratio:>14}  {target:>16}  {status}");
        *counts.entry(status).or_insert(0) += 1;
    }
    let counts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    println!("  ratios: {}", counts.join(", "));
}

fn demo(args: &[OsString]) -> Result {
    let args = args.iter().skip_while(|a| *a == "--");
    run(cargo()
        .args(["run", "--release", "-p", "aurelis-cache", "--example", "llm_demo", "--"])
        .args(args))
}

fn fuzz(args: &[OsString]) -> Result {
    let secs: u64 = match args {
        [] => 60,
        [secs] => {
            secs.to_str().and_then(|s| s.parse().ok()).filter(|s| *s > 0).ok_or_else(|| {
                Failure::new(format!("`fuzz` takes a number of seconds, not {secs:?}"))
            })?
        }
        _ => return Err(Failure::new("usage: cargo xtask fuzz [SECS]")),
    };
    // `+nightly` is understood by rustup's `cargo` proxy, not by the toolchain's own cargo
    // that $CARGO names, and rustup's RUSTUP_TOOLCHAIN from this run must not leak into it.
    let nightly = || {
        let mut cmd = Command::new("cargo");
        cmd.arg("+nightly").current_dir(root().join("fuzz"));
        for var in ["RUSTUP_TOOLCHAIN", "RUSTC", "RUSTDOC", "RUSTC_WRAPPER", "CARGO"] {
            cmd.env_remove(var);
        }
        cmd
    };
    match nightly().arg("--version").output() {
        Err(e) => {
            return Err(Failure::new(format!(
                "could not run `cargo +nightly` ({e}): fuzzing needs rustup's cargo on PATH"
            )));
        }
        Ok(out) if !out.status.success() => {
            return Err(Failure::new(
                "the nightly toolchain is needed for fuzzing (libFuzzer and sanitizers): \
                 rustup toolchain install nightly",
            ));
        }
        Ok(_) => {}
    }
    let has_cargo_fuzz =
        nightly().args(["fuzz", "--version"]).output().is_ok_and(|o| o.status.success());
    if !has_cargo_fuzz {
        return Err(Failure::new("cargo-fuzz is not installed: cargo install cargo-fuzz"));
    }
    timed("fuzz", || {
        run(nightly().args([
            "fuzz",
            "run",
            "envelope_decode",
            "--",
            &format!("-max_total_time={secs}"),
        ]))
    })
}
