//! The measured part of `docs/performance.md`: ratios between our benches and peers measured in
//! the same run, every raw measurement, the memory-per-entry figures and the machine.
//!
//! Everything here is pure (text in, text out) except [`collect_measurements`] and
//! [`MachineInfo::current`], so that the arithmetic and the marker handling are unit-tested.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::json::Json;

/// The line before the generated section of `docs/performance.md`.
pub(crate) const BEGIN_MARKER: &str = "<!-- BEGIN MEASURED -->";
/// The line after the generated section of `docs/performance.md`.
pub(crate) const END_MARKER: &str = "<!-- END MEASURED -->";

/// What a ratio row promises.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Goal {
    /// No promise: the ratio `ours / peer` is shown for information.
    Info,
    /// `ours / peer` (time) must be at most this.
    AtMost(f64),
    /// `peer / ours` (speed-up) must be at least this.
    AtLeast(f64),
}

/// One `[[ratio]]` of `benches/ratios.toml`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RatioRow {
    pub(crate) name: String,
    /// Criterion id (`group/function`) of our bench.
    pub(crate) ours: String,
    /// Criterion id of the peer it is compared with.
    pub(crate) peer: String,
    pub(crate) goal: Goal,
}

/// Reads `benches/ratios.toml`.
pub(crate) fn parse_ratios(text: &str) -> Result<Vec<RatioRow>, String> {
    let table: toml::Table = text.parse().map_err(|e| format!("{e}"))?;
    if let Some(key) = table.keys().find(|k| *k != "ratio") {
        return Err(format!("unknown top-level key `{key}` (only [[ratio]] tables are read)"));
    }
    let Some(rows) = table.get("ratio") else {
        return Ok(Vec::new());
    };
    let rows = rows.as_array().ok_or("`ratio` must be an array of tables: [[ratio]]")?;
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            let at = |msg: String| format!("[[ratio]] #{}: {msg}", i + 1);
            let row = row.as_table().ok_or_else(|| at("not a table".into()))?;
            for key in row.keys() {
                if !["name", "ours", "peer", "target", "target_min"].contains(&key.as_str()) {
                    return Err(at(format!("unknown key `{key}`")));
                }
            }
            let string = |key: &str| -> Result<String, String> {
                match row.get(key).map(|v| v.as_str()) {
                    Some(Some(s)) if !s.trim().is_empty() => Ok(s.to_owned()),
                    Some(_) => Err(at(format!("`{key}` must be a non-empty string"))),
                    None => Err(at(format!("`{key}` is missing"))),
                }
            };
            let number = |key: &str| -> Result<Option<f64>, String> {
                match row.get(key) {
                    None => Ok(None),
                    Some(v) => match v.as_float().or_else(|| v.as_integer().map(|i| i as f64)) {
                        Some(x) if x.is_finite() && x > 0.0 => Ok(Some(x)),
                        _ => Err(at(format!("`{key}` must be a positive number"))),
                    },
                }
            };
            let goal = match (number("target")?, number("target_min")?) {
                (Some(_), Some(_)) => {
                    return Err(at("give `target` or `target_min`, not both".into()));
                }
                (Some(max), None) => Goal::AtMost(max),
                (None, Some(min)) => Goal::AtLeast(min),
                (None, None) => Goal::Info,
            };
            Ok(RatioRow {
                name: string("name")?,
                ours: string("ours")?,
                peer: string("peer")?,
                goal,
            })
        })
        .collect()
}

/// One criterion result.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Measurement {
    /// Criterion's full id, `group/function[/parameter]`.
    pub(crate) id: String,
    pub(crate) mean_ns: f64,
    pub(crate) median_ns: f64,
    /// When `estimates.json` was written, seconds since the Unix epoch.
    pub(crate) written_at: Option<u64>,
}

/// Reads one benchmark's `new/` directory: `estimates.json` for the numbers, `benchmark.json`
/// for the id (criterion replaces characters such as `/` or `:` in directory names, so the
/// directory path is only the fallback).
pub(crate) fn parse_measurement(
    estimates: &str,
    benchmark: Option<&str>,
    fallback_id: &str,
    written_at: Option<u64>,
) -> Result<Measurement, String> {
    let est = Json::parse(estimates).map_err(|e| e.to_string())?;
    let point = |stat: &str| {
        est.path(&format!("{stat}.point_estimate"))
            .and_then(Json::as_f64)
            .ok_or_else(|| format!("no {stat}.point_estimate"))
    };
    let id = benchmark
        .and_then(|b| Json::parse(b).ok())
        .and_then(|b| b.get("full_id").and_then(Json::as_str).map(str::to_owned))
        .unwrap_or_else(|| fallback_id.to_owned());
    Ok(Measurement { id, mean_ns: point("mean")?, median_ns: point("median")?, written_at })
}

/// Every `<criterion_dir>/**/new/estimates.json`, by id. With `since`, results written before
/// it (earlier runs) are left out and counted in the second value.
pub(crate) fn collect_measurements(
    criterion_dir: &Path,
    since: Option<u64>,
) -> Result<(BTreeMap<String, Measurement>, usize), String> {
    let mut found = BTreeMap::new();
    let mut older = 0;
    if !criterion_dir.is_dir() {
        return Ok((found, older));
    }
    let mut stack = vec![criterion_dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries =
            fs::read_dir(&dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        for entry in entries {
            let path = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if !path.is_dir() || matches!(name, "report" | "base" | "change") {
                continue;
            }
            let estimates = path.join("estimates.json");
            if name != "new" || !estimates.is_file() {
                stack.push(path);
                continue;
            }
            let written_at = fs::metadata(&estimates)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs());
            if let (Some(since), Some(at)) = (since, written_at) {
                if at < since {
                    older += 1;
                    continue;
                }
            }
            let fallback = dir
                .strip_prefix(criterion_dir)
                .unwrap_or(&dir)
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            let text = fs::read_to_string(&estimates)
                .map_err(|e| format!("cannot read {}: {e}", estimates.display()))?;
            let bench = fs::read_to_string(path.join("benchmark.json")).ok();
            let m = parse_measurement(&text, bench.as_deref(), &fallback, written_at)
                .map_err(|e| format!("{}: {e}", estimates.display()))?;
            found.insert(m.id.clone(), m);
        }
    }
    Ok((found, older))
}

/// The outcome of one ratio row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    Met,
    Missed,
    Info,
    NotMeasured,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Met => "met",
            Status::Missed => "**missed**",
            Status::Info => "info",
            Status::NotMeasured => "not measured",
        }
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

/// One row of `memory_overhead.json`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct MemoryRow {
    pub(crate) name: String,
    pub(crate) bytes_per_entry: f64,
    pub(crate) payload_bytes: f64,
}

/// Reads `memory_overhead.json`: `{"rows":[{"name":..,"bytes_per_entry":..,"payload_bytes":..}]}`.
pub(crate) fn parse_memory(text: &str) -> Result<Vec<MemoryRow>, String> {
    let doc = Json::parse(text).map_err(|e| e.to_string())?;
    let rows = doc.get("rows").and_then(Json::as_array).ok_or("no `rows` array")?;
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            let num = |key: &str| {
                row.get(key)
                    .and_then(Json::as_f64)
                    .ok_or_else(|| format!("row {}: `{key}` is not a number", i + 1))
            };
            Ok(MemoryRow {
                name: row
                    .get("name")
                    .and_then(Json::as_str)
                    .ok_or_else(|| format!("row {}: `name` is not a string", i + 1))?
                    .to_owned(),
                bytes_per_entry: num("bytes_per_entry")?,
                payload_bytes: num("payload_bytes")?,
            })
        })
        .collect()
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
    } else {
        format!("{ratio:.2}")
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

/// Everything that goes between the markers.
pub(crate) fn render_measured(
    rows: &[Evaluated],
    measured: &BTreeMap<String, Measurement>,
    memory: Option<&[MemoryRow]>,
    machine: &MachineInfo,
) -> String {
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "<!-- Generated by `cargo xtask bench`: edit benches/ratios.toml or the");
    let _ =
        writeln!(w, "     text outside this section; this section is rewritten on every run. -->");
    let _ = writeln!(w);
    let _ = writeln!(w, "### Ratios against peers measured in the same run");
    let _ = writeln!(w);
    let _ =
        writeln!(w, "Times are criterion mean times per operation, in µs. `ratio` is ours / peer");
    let _ =
        writeln!(w, "(lower is better; 1.10× means 10 % slower than the peer), except rows marked");
    let _ = writeln!(
        w,
        "\"faster\", which show the speed-up peer / ours (higher is better). Rows come"
    );
    let _ = writeln!(w, "from `benches/ratios.toml`.");
    let _ = writeln!(w);
    if rows.is_empty() {
        let _ = writeln!(w, "No rows in `benches/ratios.toml`.");
    } else {
        let _ = writeln!(w, "| Comparison | ours (µs) | peer (µs) | ratio | target | status |");
        let _ = writeln!(w, "|---|---:|---:|---:|---:|---|");
        for e in rows {
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
                e.status.label(),
            );
        }
    }
    let _ = writeln!(w);
    let _ = writeln!(w, "### Every measurement");
    let _ = writeln!(w);
    if measured.is_empty() {
        let _ = writeln!(w, "No criterion results were found.");
    } else {
        let _ = writeln!(w, "| Benchmark | mean (µs) | median (µs) | written |");
        let _ = writeln!(w, "|---|---:|---:|---|");
        for m in measured.values() {
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
    match memory {
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

/// The skeleton of a new `docs/performance.md`.
pub(crate) fn new_document() -> String {
    format!(
        "# Performance\n\n\
         How Aurelis Cache compares with the libraries it is built on and with other cache crates.\n\
         Every number below comes from the criterion benches in `benches/`, where each of our\n\
         operations is measured in the same run as a peer doing the same work directly (raw moka,\n\
         raw sled, a raw Redis connection, other cache crates). Numbers are reported as ratios\n\
         because absolute times depend on the machine; the ratios and their targets are listed in\n\
         `benches/ratios.toml`.\n\n\
         Run `cargo xtask bench` to measure and regenerate the section below (`cargo xtask bench\n\
         <filter>` runs some benches only; `cargo xtask bench --report-only` rewrites it from the\n\
         last results). Text outside the measured section is kept.\n\n\
         {BEGIN_MARKER}\n{END_MARKER}\n"
    )
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

    fn row(ours: &str, peer: &str, goal: Goal) -> RatioRow {
        RatioRow { name: "n".into(), ours: ours.into(), peer: peer.into(), goal }
    }

    #[test]
    fn parses_every_kind_of_row() {
        let rows = parse_ratios(
            r#"
            # comment
            [[ratio]]
            name = "memory hit"
            ours = "memory_hit/aurelis_facade"
            peer = "memory_hit/raw_moka"
            target = 1.5

            [[ratio]]
            name = "get_many"
            ours = "g/get_many"
            peer = "g/sequential"
            target_min = 30

            [[ratio]]
            name = "info"
            ours = "a/b"
            peer = "a/c"
            "#,
        )
        .unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].ours, "memory_hit/aurelis_facade");
        assert_eq!(rows[0].goal, Goal::AtMost(1.5));
        assert_eq!(rows[1].goal, Goal::AtLeast(30.0));
        assert_eq!(rows[2].goal, Goal::Info);
        assert_eq!(parse_ratios("").unwrap(), vec![]);
    }

    #[test]
    fn rejects_bad_rows() {
        let bad = [
            "[[ratio]]\nname = \"x\"\nours = \"a\"",
            "[[ratio]]\nname = \"x\"\nours = \"a\"\npeer = \"b\"\ntarget = 1\ntarget_min = 2",
            "[[ratio]]\nname = \"x\"\nours = \"a\"\npeer = \"b\"\ntarget = -1",
            "[[ratio]]\nname = \"x\"\nours = \"a\"\npeer = \"b\"\ntarget = \"1\"",
            "[[ratio]]\nname = \"x\"\nours = \"a\"\npeer = \"b\"\ntraget = 1",
            "[[ratio]]\nname = \"\"\nours = \"a\"\npeer = \"b\"",
            "[ratios]\nname = \"x\"",
            "ratio = 3",
            "[[ratio]\n",
        ];
        for text in bad {
            assert!(parse_ratios(text).is_err(), "accepted: {text}");
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
    fn reads_a_criterion_result_by_its_full_id() {
        let est = r#"{"mean":{"point_estimate":1500.0},"median":{"point_estimate":1400.0}}"#;
        let bench =
            r#"{"group_id":"g","function_id":"a:b","full_id":"g/a:b","directory_name":"g/a_b"}"#;
        let m = parse_measurement(est, Some(bench), "g/a_b", Some(5)).unwrap();
        assert_eq!(m.id, "g/a:b");
        assert_eq!((m.mean_ns, m.median_ns, m.written_at), (1500.0, 1400.0, Some(5)));
        let m = parse_measurement(est, None, "g/a_b", None).unwrap();
        assert_eq!(m.id, "g/a_b");
        assert!(parse_measurement("{}", None, "x", None).is_err());
    }

    #[test]
    fn collects_results_from_a_criterion_tree() {
        let dir = std::env::temp_dir().join(format!("xtask-collect-{}", std::process::id()));
        let est = r#"{"mean":{"point_estimate":2000.0},"median":{"point_estimate":1900.0}}"#;
        for sub in ["g/ours/new", "g/ours/base", "g/peer/new", "g/report", "report"] {
            fs::create_dir_all(dir.join(sub)).unwrap();
            fs::write(dir.join(sub).join("estimates.json"), est).unwrap();
        }
        let (all, older) = collect_measurements(&dir, None).unwrap();
        assert_eq!(all.keys().collect::<Vec<_>>(), ["g/ours", "g/peer"]);
        assert_eq!(older, 0);
        let (fresh, older) = collect_measurements(&dir, Some(u64::MAX)).unwrap();
        assert!(fresh.is_empty());
        assert_eq!(older, 2);
        let (none, _) = collect_measurements(&dir.join("absent"), None).unwrap();
        assert!(none.is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reads_memory_overhead() {
        let rows = parse_memory(
            r#"{"rows":[{"name":"moka","bytes_per_entry":1300.5,"payload_bytes":1024}]}"#,
        )
        .unwrap();
        assert_eq!(
            rows,
            [MemoryRow { name: "moka".into(), bytes_per_entry: 1300.5, payload_bytes: 1024.0 }]
        );
        assert!(parse_memory(r#"{"rows":[{"name":"x"}]}"#).is_err());
        assert!(parse_memory(r#"[]"#).is_err());
    }

    #[test]
    fn formats_times_and_dates() {
        assert_eq!(fmt_us(1234.0), "1.234");
        assert_eq!(fmt_us(12_345.0), "12.35");
        assert_eq!(fmt_us(123_456.0), "123.5");
        assert_eq!(fmt_us(250.0), "0.2500");
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

    #[test]
    fn renders_every_section() {
        let m = measured(&[("g/ours", 2_000.0), ("g/peer", 1_000.0)]);
        let rows = [
            evaluate(&row("g/ours", "g/peer", Goal::AtMost(1.5)), &m),
            evaluate(&row("g/ours", "g/none", Goal::Info), &m),
        ];
        let machine = MachineInfo {
            cpu: "Test CPU".into(),
            nproc: "2".into(),
            rustc: "rustc 1.0".into(),
            os: "linux".into(),
            date: "2026-01-01 00:00 UTC".into(),
            command: "cargo xtask bench".into(),
        };
        let mem =
            [MemoryRow { name: "moka".into(), bytes_per_entry: 1200.0, payload_bytes: 1024.0 }];
        let text = render_measured(&rows, &m, Some(&mem), &machine);
        assert!(text.contains("| 2.000 | 1.000 | 2.00× | ≤ 1.5× | **missed** |"), "{text}");
        assert!(text.contains("| — | — | — | not measured |"), "{text}");
        assert!(text.contains("| `g/ours` | 2.000 | 1.800 |"), "{text}");
        assert!(text.contains("| moka | 1024 | 1200 | 176 |"), "{text}");
        assert!(text.contains("Test CPU (2 logical cores"), "{text}");
        assert!(!text.contains(BEGIN_MARKER) && !text.contains(END_MARKER));
        let empty = render_measured(&[], &BTreeMap::new(), None, &machine);
        assert!(empty.contains("No criterion results"));
        assert!(empty.contains("Not measured"));
    }
}
