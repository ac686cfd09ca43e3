//! The measured part of `docs/performance.md`: ratios between our benches and peers measured in
//! the same run, the interleaved Redis hit figures, every raw measurement, the memory-per-entry
//! figures and the machine.
//!
//! Everything here is pure (text in, text out) except [`gather`], which reads the inputs, and
//! [`MachineInfo::current`], so that the arithmetic and the marker handling are unit-tested.
//! What the tables mean is explained in docs/performance.md, outside the generated section.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::{parse_ratios, Goal, InterleavedConfig, RatioRow};
use crate::results::{
    collect_measurements, modified_secs, parse_interleaved, parse_memory, InterleavedRun,
    Measurement, MemoryRow,
};

/// The line before the generated section of `docs/performance.md`.
pub(crate) const BEGIN_MARKER: &str = "<!-- BEGIN MEASURED -->";
/// The line after the generated section of `docs/performance.md`.
pub(crate) const END_MARKER: &str = "<!-- END MEASURED -->";

/// The outcome of one ratio row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    Met,
    Missed,
    Info,
    NotMeasured,
    /// The way of the interleaved table the others are divided by.
    Baseline,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Met => "met",
            Status::Missed => "**missed**",
            Status::Info => "info",
            Status::NotMeasured => "not measured",
            Status::Baseline => "baseline",
        }
    }
}

/// The status cell of a ratio row: rows judged on the interleaved table say so, and are not
/// shown as a missed target.
pub(crate) fn status_cell(e: &Evaluated) -> String {
    match (e.row.judged_on_interleaved, e.status) {
        (true, Status::Met) => "met here (judged on the interleaved table)".into(),
        (true, Status::Missed) => "missed here (judged on the interleaved table)".into(),
        (_, status) => status.label().into(),
    }
}

/// A ratio row with its numbers.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Evaluated {
    pub(crate) row: RatioRow,
    pub(crate) ours_ns: Option<f64>,
    pub(crate) peer_ns: Option<f64>,
    /// `ours / peer`, or `peer / ours` for [`Goal::AtLeast`] rows.
    pub(crate) ratio: Option<f64>,
    pub(crate) status: Status,
}

/// Computes one row's ratio from mean times and checks it against its goal.
pub(crate) fn evaluate(row: &RatioRow, measured: &BTreeMap<String, Measurement>) -> Evaluated {
    let mean = |id: &str| measured.get(id).map(|m| m.mean_ns).filter(|ns| *ns > 0.0);
    let (ours_ns, peer_ns) = (mean(&row.ours), mean(&row.peer));
    let ratio = match (ours_ns, peer_ns, row.goal) {
        (Some(ours), Some(peer), Goal::AtLeast(_)) => Some(peer / ours),
        (Some(ours), Some(peer), _) => Some(ours / peer),
        _ => None,
    };
    let status = match (ratio, row.goal) {
        (None, _) => Status::NotMeasured,
        (Some(_), Goal::Info) => Status::Info,
        (Some(r), Goal::AtMost(max)) if r <= max => Status::Met,
        (Some(r), Goal::AtLeast(min)) if r >= min => Status::Met,
        (Some(_), _) => Status::Missed,
    };
    Evaluated { row: row.clone(), ours_ns, peer_ns, ratio, status }
}

/// One way of the interleaved table with its ratio and status.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct InterleavedWay {
    pub(crate) name: String,
    pub(crate) us_per_read: Option<f64>,
    pub(crate) cpu_us_per_read: Option<f64>,
    /// This way's wall time / the baseline's.
    pub(crate) ratio: Option<f64>,
    /// The highest allowed ratio, from `[interleaved] targets`.
    pub(crate) target: Option<f64>,
    pub(crate) status: Status,
}

/// One interleaved table: the run's figures (none when it was not measured) checked against
/// its `[interleaved.<group>]`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct InterleavedReport {
    /// The section's title ("Redis hit").
    pub(crate) title: String,
    /// The file the figures come from.
    pub(crate) file: String,
    /// `None`: no file from this run.
    pub(crate) reads_per_way: Option<u64>,
    pub(crate) reads_per_turn: Option<u64>,
    /// The way the others are divided by, when known.
    pub(crate) baseline: Option<String>,
    /// The file's ways in file order, then the configured ones it lacks (not measured).
    pub(crate) ways: Vec<InterleavedWay>,
}

/// Divides every way of `run` by the baseline and checks the targets of `config`. Without a
/// run, the baseline and the ways with a target are listed as not measured.
pub(crate) fn evaluate_interleaved(
    config: &InterleavedConfig,
    run: Option<&InterleavedRun>,
) -> InterleavedReport {
    let rows = run.map(|r| r.rows.as_slice()).unwrap_or_default();
    let baseline = config.baseline.clone().or_else(|| rows.first().map(|r| r.name.clone()));
    let baseline_us = rows
        .iter()
        .find(|r| Some(&r.name) == baseline.as_ref())
        .map(|r| r.us_per_read)
        .filter(|us| *us > 0.0);
    let mut ways = Vec::new();
    if let Some(name) = baseline.as_ref().filter(|b| !rows.iter().any(|r| &r.name == *b)) {
        ways.push(InterleavedWay {
            name: name.clone(),
            us_per_read: None,
            cpu_us_per_read: None,
            ratio: None,
            target: None,
            status: Status::NotMeasured,
        });
    }
    for row in rows {
        let target = config.targets.get(&row.name).copied();
        let is_baseline = Some(&row.name) == baseline.as_ref();
        let ratio = match (baseline_us, row.us_per_read) {
            (Some(base), us) if us > 0.0 => Some(us / base),
            _ => None,
        };
        let status = match (ratio, target) {
            (None, _) => Status::NotMeasured,
            (Some(_), _) if is_baseline => Status::Baseline,
            (Some(_), None) => Status::Info,
            (Some(r), Some(max)) if r <= max => Status::Met,
            (Some(_), Some(_)) => Status::Missed,
        };
        ways.push(InterleavedWay {
            name: row.name.clone(),
            us_per_read: Some(row.us_per_read),
            cpu_us_per_read: row.cpu_us_per_read,
            ratio,
            target,
            status,
        });
    }
    for (name, max) in &config.targets {
        if !ways.iter().any(|w| &w.name == name) {
            ways.push(InterleavedWay {
                name: name.clone(),
                us_per_read: None,
                cpu_us_per_read: None,
                ratio: None,
                target: Some(*max),
                status: Status::NotMeasured,
            });
        }
    }
    InterleavedReport {
        title: config.title.clone(),
        file: config.file.clone(),
        reads_per_way: run.map(|r| r.reads_per_way),
        reads_per_turn: run.and_then(|r| r.reads_per_turn),
        baseline,
        ways,
    }
}

/// The ratio and target cells of one way of the interleaved table.
pub(crate) fn interleaved_cells(w: &InterleavedWay) -> (String, String) {
    let ratio = w.ratio.map(|r| format!("{}×", fmt_ratio(r))).unwrap_or_else(|| "—".into());
    let target = w.target.map(|max| format!("≤ {max}×")).unwrap_or_else(|| "—".into());
    (ratio, target)
}

/// Where and when the numbers were taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MachineInfo {
    pub(crate) cpu: String,
    pub(crate) nproc: String,
    pub(crate) rustc: String,
    pub(crate) os: String,
    pub(crate) date: String,
    pub(crate) command: String,
}

impl MachineInfo {
    /// Reads this machine's description; `command` is how the numbers were produced.
    pub(crate) fn current(rustc_version: String, command: String) -> Self {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                let (key, value) = l.split_once(':')?;
                (key.trim() == "model name").then(|| value.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        let nproc = std::thread::available_parallelism()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "unknown".into());
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let os = format!("{} {}", std::env::consts::OS, kernel.trim()).trim().to_owned();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        MachineInfo { cpu, nproc, rustc: rustc_version, os, date: utc_timestamp(now), command }
    }
}

/// `secs` since the Unix epoch as `YYYY-MM-DD HH:MM UTC`.
pub(crate) fn utc_timestamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02} UTC", rem / 3600, rem % 3600 / 60)
}

/// Nanoseconds as microseconds with three significant digits or more.
pub(crate) fn fmt_us(ns: f64) -> String {
    let us = ns / 1000.0;
    if us >= 100.0 {
        format!("{us:.1}")
    } else if us >= 10.0 {
        format!("{us:.2}")
    } else if us >= 1.0 {
        format!("{us:.3}")
    } else {
        format!("{us:.4}")
    }
}

fn fmt_ratio(ratio: f64) -> String {
    if ratio >= 10.0 {
        format!("{ratio:.1}")
    } else if ratio >= 0.01 || ratio <= 0.0 {
        format!("{ratio:.2}")
    } else {
        // Two significant digits, so that a ratio far below 1 does not print as 0.00.
        let decimals = (-ratio.log10()).floor() as usize + 2;
        format!("{ratio:.decimals$}")
    }
}

fn md_cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The ratio and target cells of one evaluated row.
pub(crate) fn ratio_cells(e: &Evaluated) -> (String, String) {
    let ratio = match (e.ratio, e.row.goal) {
        (None, _) => "—".to_owned(),
        (Some(r), Goal::AtLeast(_)) => format!("{}× faster", fmt_ratio(r)),
        (Some(r), _) => format!("{}×", fmt_ratio(r)),
    };
    let target = match e.row.goal {
        Goal::Info => "—".to_owned(),
        Goal::AtMost(max) => format!("≤ {max}×"),
        Goal::AtLeast(min) => format!("≥ {min}× faster"),
    };
    (ratio, target)
}

/// Everything the measured section is made of.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Report {
    /// The `[[ratio]]` rows with their numbers.
    pub(crate) rows: Vec<Evaluated>,
    /// The interleaved tables set up in ratios.toml, in the order of their groups' names.
    pub(crate) interleaved: Vec<InterleavedReport>,
    /// Every criterion result used, by id.
    pub(crate) measured: BTreeMap<String, Measurement>,
    /// Criterion results left out because an earlier run wrote them.
    pub(crate) older: usize,
    /// The "Memory per entry" rows, when measured.
    pub(crate) memory: Option<Vec<MemoryRow>>,
    /// What was left out and why, for the console.
    pub(crate) notes: Vec<String>,
}

/// Where the report's inputs are.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sources<'a> {
    /// `benches/ratios.toml`.
    pub(crate) ratios: &'a Path,
    /// Criterion's output directory (`<target>/criterion` or `CRITERION_HOME`).
    pub(crate) criterion: &'a Path,
    /// `<target>/aurelis-bench`, where the plain bench targets write.
    pub(crate) bench_files: &'a Path,
    /// After a bench run: its start (seconds since the Unix epoch); files written before it
    /// are from earlier runs and left out. `None` (`--report-only`): everything on disk.
    pub(crate) since: Option<u64>,
}

/// Reads ratios.toml and every result, and computes the ratios.
pub(crate) fn gather(sources: Sources<'_>) -> Result<Report, String> {
    let text = fs::read_to_string(sources.ratios)
        .map_err(|e| format!("cannot read {}: {e}", sources.ratios.display()))?;
    let config = parse_ratios(&text).map_err(|e| format!("{}: {e}", sources.ratios.display()))?;
    let (measured, older) = collect_measurements(sources.criterion, sources.since)?;
    let mut notes = Vec::new();
    let memory = read_fresh(
        &sources.bench_files.join("memory_overhead.json"),
        sources.since,
        parse_memory,
        &mut notes,
    )?;
    let mut interleaved = Vec::new();
    for table in config.interleaved.values() {
        let path = sources.bench_files.join(&table.file);
        let run = read_fresh(&path, sources.since, parse_interleaved, &mut notes)?;
        interleaved.push(evaluate_interleaved(table, run.as_ref()));
    }
    let rows = config.ratios.iter().map(|r| evaluate(r, &measured)).collect();
    Ok(Report { rows, interleaved, measured, older, memory, notes })
}

/// Reads and parses one of the files the plain bench targets write, if it exists and, after a
/// bench run (`since`), was written by that run; an older file is left out with a note.
fn read_fresh<T>(
    path: &Path,
    since: Option<u64>,
    parse: impl FnOnce(&str) -> Result<T, String>,
    notes: &mut Vec<String>,
) -> Result<Option<T>, String> {
    let Ok(text) = fs::read_to_string(path) else {
        return Ok(None);
    };
    let fresh = since.is_none_or(|since| modified_secs(path).is_some_and(|at| at >= since));
    if !fresh {
        notes.push(format!("{} is from an earlier run, left out", path.display()));
        return Ok(None);
    }
    parse(&text).map(Some).map_err(|e| format!("{}: {e}", path.display()))
}

/// Everything that goes between the markers: tables with short captions. What the columns
/// mean is explained in docs/performance.md, outside the markers.
pub(crate) fn render_measured(report: &Report, machine: &MachineInfo) -> String {
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "<!-- Generated by `cargo xtask bench`; rewritten on every run. -->");
    let _ = writeln!(w);
    let _ = writeln!(w, "### Ratios against peers measured in the same run");
    let _ = writeln!(w);
    if report.rows.is_empty() {
        let _ = writeln!(w, "No rows in `benches/ratios.toml`.");
    } else {
        let _ = writeln!(w, "| Comparison | ours (µs) | peer (µs) | ratio | target | status |");
        let _ = writeln!(w, "|---|---:|---:|---:|---:|---|");
        for e in &report.rows {
            let (ratio, target) = ratio_cells(e);
            let time = |ns: Option<f64>| ns.map(fmt_us).unwrap_or_else(|| "—".into());
            let _ = writeln!(
                w,
                "| {}<br>`{}` vs `{}` | {} | {} | {} | {} | {} |",
                md_cell(&e.row.name),
                md_cell(&e.row.ours),
                md_cell(&e.row.peer),
                time(e.ours_ns),
                time(e.peer_ns),
                ratio,
                target,
                status_cell(e),
            );
        }
    }
    for table in &report.interleaved {
        render_interleaved(w, table);
    }
    let _ = writeln!(w);
    let _ = writeln!(w, "### Every measurement");
    let _ = writeln!(w);
    if report.measured.is_empty() {
        let _ = writeln!(w, "No criterion results were found.");
    } else {
        let _ = writeln!(w, "| Benchmark | mean (µs) | median (µs) | written |");
        let _ = writeln!(w, "|---|---:|---:|---|");
        for m in report.measured.values() {
            let at = m.written_at.map(utc_timestamp).unwrap_or_else(|| "—".into());
            let _ = writeln!(
                w,
                "| `{}` | {} | {} | {} |",
                md_cell(&m.id),
                fmt_us(m.mean_ns),
                fmt_us(m.median_ns),
                at
            );
        }
    }
    let _ = writeln!(w);
    let _ = writeln!(w, "### Memory per entry");
    let _ = writeln!(w);
    match report.memory.as_deref() {
        None => {
            let _ = writeln!(w, "Not measured (no `aurelis-bench/memory_overhead.json`).");
        }
        Some([]) => {
            let _ = writeln!(w, "`memory_overhead.json` has no rows.");
        }
        Some(memory) => {
            let _ =
                writeln!(w, "| Store | payload (bytes) | bytes per entry | overhead per entry |");
            let _ = writeln!(w, "|---|---:|---:|---:|");
            for m in memory {
                let _ = writeln!(
                    w,
                    "| {} | {:.0} | {:.0} | {:.0} |",
                    md_cell(&m.name),
                    m.payload_bytes,
                    m.bytes_per_entry,
                    m.bytes_per_entry - m.payload_bytes
                );
            }
        }
    }
    let _ = writeln!(w);
    let _ = writeln!(w, "### Machine");
    let _ = writeln!(w);
    let _ = writeln!(w, "- CPU: {} ({} logical cores available)", machine.cpu, machine.nproc);
    let _ = writeln!(w, "- OS: {}", machine.os);
    let _ = writeln!(w, "- Compiler: {}", machine.rustc);
    let _ = writeln!(w, "- Generated: {} by `{}`", machine.date, machine.command);
    out
}

/// The "`title`, interleaved" section of one table.
fn render_interleaved(w: &mut String, report: &InterleavedReport) {
    let _ = writeln!(w);
    let _ = writeln!(w, "### {}, interleaved", report.title);
    let _ = writeln!(w);
    let Some(reads) = report.reads_per_way else {
        let _ = writeln!(
            w,
            "Not measured (no `aurelis-bench/{}` from this run).",
            md_cell(&report.file)
        );
        return;
    };
    let mut caption = format!("{reads} reads per way");
    if let Some(turn) = report.reads_per_turn {
        let _ = write!(caption, ", taking turns every {turn} reads");
    }
    if let Some(baseline) = &report.baseline {
        let _ = write!(caption, "; ratio = way / `{}`", md_cell(baseline));
    }
    let _ = writeln!(w, "{caption}.");
    let _ = writeln!(w);
    if report.ways.is_empty() {
        let _ = writeln!(w, "`{}` has no rows.", md_cell(&report.file));
        return;
    }
    let _ = writeln!(w, "| Way | µs per read | CPU µs per read | ratio | target | status |");
    let _ = writeln!(w, "|---|---:|---:|---:|---:|---|");
    let us = |us: Option<f64>| us.map(|us| fmt_us(us * 1000.0)).unwrap_or_else(|| "—".into());
    for way in &report.ways {
        let (ratio, target) = interleaved_cells(way);
        let _ = writeln!(
            w,
            "| `{}` | {} | {} | {} | {} | {} |",
            md_cell(&way.name),
            us(way.us_per_read),
            us(way.cpu_us_per_read),
            ratio,
            target,
            way.status.label(),
        );
    }
}

/// A new `docs/performance.md` when there is none: the markers under a title (the prose that
/// explains the tables is written by hand around them).
pub(crate) fn new_document() -> String {
    format!("# Performance\n\n{BEGIN_MARKER}\n{END_MARKER}\n")
}

/// Puts `generated` between the markers of `doc`, keeping everything outside them. A document
/// without markers gets them appended at the end.
pub(crate) fn replace_measured(doc: &str, generated: &str) -> Result<String, String> {
    let begins = doc.matches(BEGIN_MARKER).count();
    let ends = doc.matches(END_MARKER).count();
    let body = generated.trim_matches('\n');
    match (begins, ends) {
        (0, 0) => {
            let mut out = doc.trim_end_matches('\n').to_owned();
            if !out.is_empty() {
                out.push_str("\n\n");
            }
            out.push_str(&format!("{BEGIN_MARKER}\n{body}\n{END_MARKER}\n"));
            Ok(out)
        }
        (1, 1) => {
            let start = doc.find(BEGIN_MARKER).unwrap_or_default() + BEGIN_MARKER.len();
            let end = doc.find(END_MARKER).unwrap_or_default();
            if end < start {
                return Err(format!("`{END_MARKER}` comes before `{BEGIN_MARKER}`"));
            }
            Ok(format!("{}\n{body}\n{}", &doc[..start], &doc[end..]))
        }
        _ => Err(format!(
            "expected one `{BEGIN_MARKER}` and one `{END_MARKER}`, found {begins} and {ends}; \
             fix the markers by hand"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(pairs: &[(&str, f64)]) -> BTreeMap<String, Measurement> {
        pairs
            .iter()
            .map(|(id, ns)| {
                let m = Measurement {
                    id: id.to_string(),
                    mean_ns: *ns,
                    median_ns: *ns * 0.9,
                    written_at: Some(0),
                };
                (id.to_string(), m)
            })
            .collect()
    }

    fn test_machine() -> MachineInfo {
        MachineInfo {
            cpu: "Test CPU".into(),
            nproc: "2".into(),
            rustc: "rustc 1.0".into(),
            os: "linux".into(),
            date: "2026-01-01 00:00 UTC".into(),
            command: "cargo xtask bench".into(),
        }
    }

    fn row(ours: &str, peer: &str, goal: Goal) -> RatioRow {
        RatioRow {
            name: "n".into(),
            ours: ours.into(),
            peer: peer.into(),
            goal,
            judged_on_interleaved: false,
        }
    }

    #[test]
    fn time_ratio_is_ours_over_peer() {
        let m = measured(&[("g/ours", 150.0), ("g/peer", 100.0)]);
        let e = evaluate(&row("g/ours", "g/peer", Goal::AtMost(1.5)), &m);
        assert_eq!(e.ratio, Some(1.5));
        assert_eq!(e.status, Status::Met);
        let e = evaluate(&row("g/ours", "g/peer", Goal::AtMost(1.49)), &m);
        assert_eq!(e.status, Status::Missed);
        let e = evaluate(&row("g/ours", "g/peer", Goal::Info), &m);
        assert_eq!((e.ratio, e.status), (Some(1.5), Status::Info));
        assert_eq!(ratio_cells(&e), ("1.50×".into(), "—".into()));
    }

    #[test]
    fn speed_up_ratio_is_peer_over_ours() {
        let m = measured(&[("g/get_many", 10_000.0), ("g/sequential", 350_000.0)]);
        let e = evaluate(&row("g/get_many", "g/sequential", Goal::AtLeast(30.0)), &m);
        assert_eq!(e.ratio, Some(35.0));
        assert_eq!(e.status, Status::Met);
        assert_eq!(ratio_cells(&e), ("35.0× faster".into(), "≥ 30× faster".into()));
        let e = evaluate(&row("g/get_many", "g/sequential", Goal::AtLeast(40.0)), &m);
        assert_eq!(e.status, Status::Missed);
    }

    #[test]
    fn missing_or_zero_data_is_not_measured() {
        let m = measured(&[("g/ours", 150.0), ("g/zero", 0.0)]);
        for peer in ["g/absent", "g/zero"] {
            let e = evaluate(&row("g/ours", peer, Goal::AtMost(2.0)), &m);
            assert_eq!((e.ratio, e.status), (None, Status::NotMeasured));
        }
        let e = evaluate(&row("g/absent", "g/ours", Goal::Info), &m);
        assert_eq!(e.status, Status::NotMeasured);
        assert_eq!(e.ours_ns, None);
        assert_eq!(e.peer_ns, Some(150.0));
    }

    #[test]
    fn formats_times_and_dates() {
        assert_eq!(fmt_us(1234.0), "1.234");
        assert_eq!(fmt_us(12_345.0), "12.35");
        assert_eq!(fmt_us(123_456.0), "123.5");
        assert_eq!(fmt_us(250.0), "0.2500");
        assert_eq!(fmt_ratio(12.34), "12.3");
        assert_eq!(fmt_ratio(1.234), "1.23");
        assert_eq!(fmt_ratio(0.0123), "0.01");
        assert_eq!(fmt_ratio(0.0042), "0.0042");
        assert_eq!(fmt_ratio(0.000_31), "0.00031");
        assert_eq!(utc_timestamp(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc_timestamp(951_827_696), "2000-02-29 12:34 UTC");
        assert_eq!(utc_timestamp(1_767_225_599), "2025-12-31 23:59 UTC");
    }

    #[test]
    fn replaces_only_between_markers() {
        let doc =
            format!("# Title\n\nintro\n\n{BEGIN_MARKER}\nold\ntable\n{END_MARKER}\n\nafter\n");
        let out = replace_measured(&doc, "\nnew\n\n").unwrap();
        assert_eq!(
            out,
            format!("# Title\n\nintro\n\n{BEGIN_MARKER}\nnew\n{END_MARKER}\n\nafter\n")
        );
        // Idempotent.
        assert_eq!(replace_measured(&out, "new").unwrap(), out);
    }

    #[test]
    fn appends_markers_when_missing_and_refuses_broken_ones() {
        let out = replace_measured("# Perf\n\nhand text\n", "gen").unwrap();
        assert_eq!(out, format!("# Perf\n\nhand text\n\n{BEGIN_MARKER}\ngen\n{END_MARKER}\n"));
        assert!(replace_measured(&format!("{END_MARKER}\n{BEGIN_MARKER}\n"), "x").is_err());
        assert!(replace_measured(&format!("{BEGIN_MARKER}\nx\n"), "x").is_err());
        let twice = format!("{BEGIN_MARKER}\n{END_MARKER}\n{BEGIN_MARKER}\n{END_MARKER}\n");
        assert!(replace_measured(&twice, "x").is_err());
        let fresh = replace_measured(&new_document(), "gen").unwrap();
        assert!(fresh.starts_with("# Performance\n"));
        assert!(fresh.ends_with(&format!("{BEGIN_MARKER}\ngen\n{END_MARKER}\n")));
    }

    /// A report of `rows` with `measured` and nothing else.
    fn report(rows: Vec<Evaluated>, measured: BTreeMap<String, Measurement>) -> Report {
        Report {
            rows,
            interleaved: Vec::new(),
            measured,
            older: 0,
            memory: None,
            notes: Vec::new(),
        }
    }

    #[test]
    fn renders_every_section() {
        let m = measured(&[("g/ours", 2_000.0), ("g/peer", 1_000.0)]);
        let rows = vec![
            evaluate(&row("g/ours", "g/peer", Goal::AtMost(1.5)), &m),
            evaluate(&row("g/ours", "g/none", Goal::Info), &m),
        ];
        let machine = test_machine();
        let mut full = report(rows, m);
        full.memory = Some(vec![MemoryRow {
            name: "moka".into(),
            bytes_per_entry: 1200.0,
            payload_bytes: 1024.0,
        }]);
        let text = render_measured(&full, &machine);
        assert!(text.contains("| 2.000 | 1.000 | 2.00× | ≤ 1.5× | **missed** |"), "{text}");
        assert!(text.contains("| — | — | — | not measured |"), "{text}");
        assert!(text.contains("| `g/ours` | 2.000 | 1.800 |"), "{text}");
        assert!(text.contains("| moka | 1024 | 1200 | 176 |"), "{text}");
        assert!(text.contains("Test CPU (2 logical cores"), "{text}");
        assert!(!text.contains(BEGIN_MARKER) && !text.contains(END_MARKER));
        assert!(!text.contains("interleaved"), "{text}");
        let empty = render_measured(&report(Vec::new(), BTreeMap::new()), &machine);
        assert!(empty.contains("No criterion results"));
        assert!(empty.contains("Not measured"));
    }

    /// Outside the tables, the section holds headings and one-line captions only: the prose
    /// that explains them lives in docs/performance.md.
    #[test]
    fn the_generated_section_is_tables_and_captions() {
        let m = measured(&[("g/ours", 1_300.0), ("g/peer", 1_000.0)]);
        let mut judged = row("g/ours", "g/peer", Goal::AtMost(1.1));
        judged.judged_on_interleaved = true;
        let mut full = report(vec![evaluate(&judged, &m)], m);
        let run = parse_interleaved(INTERLEAVED_JSON).unwrap();
        full.interleaved = vec![
            evaluate_interleaved(&interleaved_config(Some("raw_redis_held_conn"), &[]), Some(&run)),
            evaluate_interleaved(&interleaved_config(None, &[("facade", 1.2)]), None),
        ];
        let text = render_measured(&full, &test_machine());
        assert!(text.contains("### Redis hit, interleaved"), "{text}");
        assert!(text.contains("Not measured (no `aurelis-bench/redis_interleaved.json`"), "{text}");
        let mut paragraph = 0;
        for line in text.lines() {
            let prose = !(line.is_empty()
                || line.starts_with('|')
                || line.starts_with('#')
                || line.starts_with("- ")
                || line.starts_with("<!--"));
            paragraph = if prose { paragraph + 1 } else { 0 };
            assert!(paragraph <= 1, "a paragraph of prose in:\n{text}");
            assert!(line.chars().count() <= 100 || line.starts_with('|'), "{line}");
        }
    }

    use crate::results::INTERLEAVED_JSON;

    fn interleaved_config(baseline: Option<&str>, targets: &[(&str, f64)]) -> InterleavedConfig {
        InterleavedConfig {
            title: "Redis hit".into(),
            file: "redis_interleaved.json".into(),
            baseline: baseline.map(str::to_owned),
            targets: targets.iter().map(|(w, t)| (w.to_string(), *t)).collect(),
        }
    }

    #[test]
    fn checks_interleaved_targets_against_the_baseline() {
        let run = parse_interleaved(INTERLEAVED_JSON).unwrap();
        let config = interleaved_config(Some("raw_redis_held_conn"), &[("aurelis_facade", 1.1)]);
        let report = evaluate_interleaved(&config, Some(&run));
        assert_eq!((report.reads_per_way, report.reads_per_turn), (Some(28_000), Some(200)));
        let summary: Vec<_> =
            report.ways.iter().map(|w| (w.name.as_str(), w.ratio, w.status)).collect();
        assert_eq!(
            summary,
            [
                ("raw_redis_held_conn", Some(1.0), Status::Baseline),
                ("redis_store", Some(61.2 / 60.0), Status::Info),
                ("aurelis_facade", Some(63.0 / 60.0), Status::Met),
            ]
        );
        assert_eq!(report.ways[2].cpu_us_per_read, None);
        assert_eq!(interleaved_cells(&report.ways[2]), ("1.05×".into(), "≤ 1.1×".into()));
        assert_eq!(interleaved_cells(&report.ways[1]), ("1.02×".into(), "—".into()));

        // Just over the target is missed; exactly on it is met.
        let tight = interleaved_config(None, &[("aurelis_facade", 1.04)]);
        let report = evaluate_interleaved(&tight, Some(&run));
        assert_eq!(report.baseline.as_deref(), Some("raw_redis_held_conn"));
        assert_eq!(report.ways[2].status, Status::Missed);
        let exact = interleaved_config(None, &[("redis_store", 61.2 / 60.0)]);
        assert_eq!(evaluate_interleaved(&exact, Some(&run)).ways[1].status, Status::Met);
    }

    #[test]
    fn interleaved_ways_missing_from_the_run_are_not_measured() {
        let run = parse_interleaved(INTERLEAVED_JSON).unwrap();
        let config = interleaved_config(Some("raw_redis_held_conn"), &[("other_way", 1.1)]);
        let report = evaluate_interleaved(&config, Some(&run));
        let last = report.ways.last().unwrap();
        assert_eq!(
            (last.name.as_str(), last.status, last.target),
            ("other_way", Status::NotMeasured, Some(1.1))
        );

        // A baseline absent from the file: nothing has a ratio.
        let config = interleaved_config(Some("absent"), &[("aurelis_facade", 1.1)]);
        let report = evaluate_interleaved(&config, Some(&run));
        assert_eq!(report.ways.len(), 4);
        assert_eq!(report.ways[0].name, "absent");
        assert!(report.ways.iter().all(|w| w.ratio.is_none() && w.status == Status::NotMeasured));

        // No file from this run.
        let config = interleaved_config(Some("raw_redis_held_conn"), &[("aurelis_facade", 1.1)]);
        let report = evaluate_interleaved(&config, None);
        assert_eq!(report.reads_per_way, None);
        let names: Vec<_> = report.ways.iter().map(|w| (w.name.as_str(), w.status)).collect();
        assert_eq!(
            names,
            [("raw_redis_held_conn", Status::NotMeasured), ("aurelis_facade", Status::NotMeasured)]
        );
    }

    #[test]
    fn renders_the_interleaved_table_and_marks_the_rows_judged_on_it() {
        let m = measured(&[("g/ours", 1_300.0), ("g/peer", 1_000.0)]);
        let mut judged = row("g/ours", "g/peer", Goal::AtMost(1.1));
        judged.judged_on_interleaved = true;
        let rows = vec![evaluate(&judged, &m)];
        assert_eq!(status_cell(&rows[0]), "missed here (judged on the interleaved table)");
        let run = parse_interleaved(INTERLEAVED_JSON).unwrap();
        let config = interleaved_config(Some("raw_redis_held_conn"), &[("aurelis_facade", 1.1)]);
        let mut full = report(rows, m);
        full.interleaved = vec![evaluate_interleaved(&config, Some(&run))];
        let text = render_measured(&full, &test_machine());
        for expected in [
            "| 1.300 | 1.000 | 1.30× | ≤ 1.1× | missed here (judged on the interleaved table) |",
            "### Redis hit, interleaved",
            "28000 reads per way, taking turns every 200 reads; ratio = way / \
             `raw_redis_held_conn`.",
            "| `raw_redis_held_conn` | 60.00 | 30.00 | 1.00× | — | baseline |",
            "| `redis_store` | 61.20 | 30.50 | 1.02× | — | info |",
            "| `aurelis_facade` | 63.00 | — | 1.05× | ≤ 1.1× | met |",
        ] {
            assert!(text.contains(expected), "no {expected:?} in:\n{text}");
        }
        assert!(!text.contains("**missed**"), "{text}");
        // The interleaved table comes before the raw measurements.
        assert!(text.find("### Redis hit").unwrap() < text.find("### Every measurement").unwrap());

        full.interleaved = vec![evaluate_interleaved(&config, None)];
        let text = render_measured(&full, &test_machine());
        assert!(text.contains("Not measured (no `aurelis-bench/redis_interleaved.json`"), "{text}");
        assert!(!text.contains("| `aurelis_facade` |"), "{text}");
    }

    /// Writes a file, creating its directory.
    fn put(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    fn estimates(mean_ns: f64) -> String {
        format!(
            "{{\"mean\":{{\"point_estimate\":{mean_ns},\"standard_error\":1.0}},\
             \"median\":{{\"point_estimate\":{}}},\"slope\":null}}",
            mean_ns * 0.9
        )
    }

    /// The whole report from a small directory laid out as after `cargo xtask bench`:
    /// ratios.toml, a criterion tree (one id with a `:` criterion escaped in the directory
    /// name), the two files of the plain bench targets, and a document with hand-written text
    /// around the markers.
    #[test]
    fn builds_the_report_from_a_fixture_directory() {
        let dir = std::env::temp_dir().join(format!("xtask-report-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        put(
            &dir.join("benches/ratios.toml"),
            "[[ratio]]\nname = \"memory hit\"\nours = \"memory_hit/ours:v1\"\n\
             peer = \"memory_hit/raw\"\ntarget = 1.5\n\n\
             [[ratio]]\nname = \"batch\"\nours = \"batch/many\"\npeer = \"batch/one_by_one\"\n\
             target_min = 10\n\n\
             [[ratio]]\nname = \"redis\"\nours = \"redis_hit/aurelis_facade\"\n\
             peer = \"redis_hit/raw_redis_held_conn\"\ntarget = 1.1\njudged_on = \"interleaved\"\n\n\
             [interleaved.redis_hit]\ntitle = \"Redis hit\"\nfile = \"redis_interleaved.json\"\n\
             baseline = \"raw_redis_held_conn\"\ntargets = { aurelis_facade = 1.1 }\n",
        );
        let criterion = dir.join("target/criterion");
        put(&criterion.join("memory_hit/ours_v1/new/estimates.json"), &estimates(120.0));
        put(
            &criterion.join("memory_hit/ours_v1/new/benchmark.json"),
            r#"{"group_id":"memory_hit","function_id":"ours:v1","full_id":"memory_hit/ours:v1"}"#,
        );
        put(&criterion.join("memory_hit/ours_v1/base/estimates.json"), &estimates(999.0));
        put(&criterion.join("memory_hit/raw/new/estimates.json"), &estimates(100.0));
        put(&criterion.join("batch/many/new/estimates.json"), &estimates(1_000.0));
        put(&criterion.join("batch/one_by_one/new/estimates.json"), &estimates(8_000.0));
        put(&criterion.join("report/index.html"), "<html></html>");
        let bench_files = dir.join("target/aurelis-bench");
        put(&bench_files.join("redis_interleaved.json"), INTERLEAVED_JSON);
        put(
            &bench_files.join("memory_overhead.json"),
            r#"{"rows":[{"name":"facade","bytes_per_entry":1400,"payload_bytes":1052}]}"#,
        );

        let sources = Sources {
            ratios: &dir.join("benches/ratios.toml"),
            criterion: &criterion,
            bench_files: &bench_files,
            since: None,
        };
        let report = gather(sources).unwrap();
        assert_eq!(report.measured.len(), 4);
        let statuses: Vec<_> = report.rows.iter().map(|e| (e.ratio, e.status)).collect();
        assert_eq!(
            statuses,
            [(Some(1.2), Status::Met), (Some(8.0), Status::Missed), (None, Status::NotMeasured)]
        );
        let doc = "# Performance\n\nHand-written.\n\n<!-- BEGIN MEASURED -->\nold\n\
                   <!-- END MEASURED -->\n\nMore hand-written text.\n";
        let out = replace_measured(doc, &render_measured(&report, &test_machine())).unwrap();
        assert!(out.starts_with("# Performance\n\nHand-written.\n\n<!-- BEGIN MEASURED -->\n"));
        assert!(out.ends_with("<!-- END MEASURED -->\n\nMore hand-written text.\n"));
        for expected in [
            "| memory hit<br>`memory_hit/ours:v1` vs `memory_hit/raw` | 0.1200 | 0.1000 | 1.20× \
             | ≤ 1.5× | met |",
            "| batch<br>`batch/many` vs `batch/one_by_one` | 1.000 | 8.000 | 8.00× faster \
             | ≥ 10× faster | **missed** |",
            "| — | — | — | ≤ 1.1× | not measured |",
            "| `aurelis_facade` | 63.00 | — | 1.05× | ≤ 1.1× | met |",
            "| `memory_hit/ours:v1` | 0.1200 | 0.1080 |",
            "| facade | 1052 | 1400 | 348 |",
        ] {
            assert!(out.contains(expected), "no {expected:?} in:\n{out}");
        }
        assert!(!out.contains("old\n") && !out.contains("0.9990"), "{out}");

        // After a run that wrote nothing: every row is "not measured", nothing fails.
        let after_run = gather(Sources { since: Some(u64::MAX), ..sources }).unwrap();
        assert!(after_run.measured.is_empty());
        assert_eq!(after_run.older, 4);
        assert!(after_run.memory.is_none());
        assert_eq!(after_run.notes.len(), 2, "{:?}", after_run.notes);
        assert!(after_run.rows.iter().all(|e| e.status == Status::NotMeasured));
        let text = render_measured(&after_run, &test_machine());
        assert!(text.contains("No criterion results were found."), "{text}");

        // No results directory at all (a fresh checkout): the same.
        let empty = dir.join("empty");
        let fresh = gather(Sources { criterion: &empty, bench_files: &empty, ..sources }).unwrap();
        assert!(fresh.measured.is_empty() && fresh.memory.is_none());

        // A typo in ratios.toml is an error naming the file and the key.
        put(&dir.join("benches/ratios.toml"), "[[ratio]]\nname = \"x\"\nour = \"a\"\n");
        let error = gather(sources).unwrap_err();
        assert!(error.contains("ratios.toml") && error.contains("`our`"), "{error}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
