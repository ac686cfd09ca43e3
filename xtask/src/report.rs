//! The measured part of `docs/performance.md`: ratios between our benches and peers measured in
//! the same run, the interleaved Redis hit figures, every raw measurement, the memory-per-entry
//! figures and the machine.
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
    /// `judged_on = "interleaved"`: the row keeps its target and shows whether this run's
    /// criterion numbers meet it, but the target is judged on the interleaved table.
    pub(crate) judged_on_interleaved: bool,
}

/// The `[interleaved]` table of `benches/ratios.toml`: how the `redis_interleaved` results
/// are compared.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct InterleavedConfig {
    /// The way every other way is divided by; `None`: the file's first row.
    pub(crate) baseline: Option<String>,
    /// Way name to the highest allowed ratio way / baseline (wall time per read). Ways
    /// without one are informational.
    pub(crate) targets: BTreeMap<String, f64>,
}

/// Everything `benches/ratios.toml` holds.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct BenchConfig {
    /// The `[[ratio]]` tables, in file order.
    pub(crate) ratios: Vec<RatioRow>,
    /// The `[interleaved]` table, when present.
    pub(crate) interleaved: Option<InterleavedConfig>,
}

/// A positive finite number (a TOML float or integer).
fn positive(value: &toml::Value) -> Option<f64> {
    value
        .as_float()
        .or_else(|| value.as_integer().map(|i| i as f64))
        .filter(|x| x.is_finite() && *x > 0.0)
}

/// Reads the `[interleaved]` table.
fn parse_interleaved_config(value: &toml::Value) -> Result<InterleavedConfig, String> {
    let table = value.as_table().ok_or("`interleaved` must be a table: [interleaved]")?;
    let mut config = InterleavedConfig::default();
    for (key, value) in table {
        match key.as_str() {
            "baseline" => match value.as_str() {
                Some(s) if !s.trim().is_empty() => config.baseline = Some(s.to_owned()),
                _ => return Err("[interleaved]: `baseline` must be a non-empty string".into()),
            },
            "targets" => {
                let targets = value.as_table().ok_or(
                    "[interleaved]: `targets` must be a table of way = ratio, e.g. \
                     { aurelis_facade = 1.1 }",
                )?;
                for (way, max) in targets {
                    let max = positive(max).ok_or_else(|| {
                        format!("[interleaved]: target of `{way}` must be a positive number")
                    })?;
                    config.targets.insert(way.clone(), max);
                }
            }
            other => return Err(format!("[interleaved]: unknown key `{other}`")),
        }
    }
    if let Some(baseline) = &config.baseline {
        if config.targets.contains_key(baseline) {
            return Err(format!("[interleaved]: the baseline `{baseline}` cannot have a target"));
        }
    }
    Ok(config)
}

/// Reads `benches/ratios.toml`.
pub(crate) fn parse_ratios(text: &str) -> Result<BenchConfig, String> {
    let table: toml::Table = text.parse().map_err(|e| format!("{e}"))?;
    if let Some(key) = table.keys().find(|k| !["ratio", "interleaved"].contains(&k.as_str())) {
        return Err(format!(
            "unknown top-level key `{key}` (only [[ratio]] and [interleaved] tables are read)"
        ));
    }
    let interleaved = table.get("interleaved").map(parse_interleaved_config).transpose()?;
    let Some(rows) = table.get("ratio") else {
        return Ok(BenchConfig { ratios: Vec::new(), interleaved });
    };
    let rows = rows.as_array().ok_or("`ratio` must be an array of tables: [[ratio]]")?;
    let ratios = rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let at = |msg: String| format!("[[ratio]] #{}: {msg}", i + 1);
            let row = row.as_table().ok_or_else(|| at("not a table".into()))?;
            for key in row.keys() {
                if !["name", "ours", "peer", "target", "target_min", "judged_on"]
                    .contains(&key.as_str())
                {
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
                    Some(v) => match positive(v) {
                        Some(x) => Ok(Some(x)),
                        None => Err(at(format!("`{key}` must be a positive number"))),
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
            let judged_on_interleaved = match row.get("judged_on").map(|v| v.as_str()) {
                None => false,
                Some(Some("interleaved")) if goal == Goal::Info => {
                    return Err(at("`judged_on` needs a `target` or `target_min`".into()));
                }
                Some(Some("interleaved")) if interleaved.is_none() => {
                    return Err(at(
                        "`judged_on = \"interleaved\"` needs an [interleaved] table".into()
                    ));
                }
                Some(Some("interleaved")) => true,
                Some(_) => return Err(at("`judged_on` can only be \"interleaved\"".into())),
            };
            Ok(RatioRow {
                name: string("name")?,
                ours: string("ours")?,
                peer: string("peer")?,
                goal,
                judged_on_interleaved,
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(BenchConfig { ratios, interleaved })
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

/// One way of reading in `redis_interleaved.json`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct InterleavedRow {
    /// The way's name (that of its `redis_hit` criterion function).
    pub(crate) name: String,
    /// Wall time per read, µs.
    pub(crate) us_per_read: f64,
    /// The bench thread's CPU time per read, µs, when the kernel tells.
    pub(crate) cpu_us_per_read: Option<f64>,
}

/// `redis_interleaved.json`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct InterleavedRun {
    /// Measured reads of each way.
    pub(crate) reads_per_way: u64,
    /// Reads of one way before the next takes its turn, when the file says.
    pub(crate) reads_per_turn: Option<u64>,
    pub(crate) rows: Vec<InterleavedRow>,
}

/// Reads `redis_interleaved.json`: `{"reads_per_way":N,"reads_per_turn":N,"rows":[{"name":..,
/// "us_per_read":..,"cpu_us_per_read":..|null}]}` (`reads_per_turn` and `cpu_us_per_read`
/// may be left out).
pub(crate) fn parse_interleaved(text: &str) -> Result<InterleavedRun, String> {
    let doc = Json::parse(text).map_err(|e| e.to_string())?;
    let count = |key: &str| -> Result<Option<u64>, String> {
        match doc.get(key) {
            None => Ok(None),
            Some(v) => match v.as_f64() {
                Some(n) if n >= 0.0 && n.fract() == 0.0 && n <= u64::MAX as f64 => {
                    Ok(Some(n as u64))
                }
                _ => Err(format!("`{key}` is not a whole number")),
            },
        }
    };
    let reads_per_way = count("reads_per_way")?.ok_or("no `reads_per_way`")?;
    let reads_per_turn = count("reads_per_turn")?;
    let rows = doc.get("rows").and_then(Json::as_array).ok_or("no `rows` array")?;
    let rows = rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let at = |msg: &str| format!("row {}: {msg}", i + 1);
            let name = row
                .get("name")
                .and_then(Json::as_str)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| at("`name` is not a non-empty string"))?;
            let us_per_read = row
                .get("us_per_read")
                .and_then(Json::as_f64)
                .ok_or_else(|| at("`us_per_read` is not a number"))?;
            let cpu_us_per_read = match row.get("cpu_us_per_read") {
                None | Some(Json::Null) => None,
                Some(v) => Some(v.as_f64().ok_or_else(|| at("`cpu_us_per_read` is not a number"))?),
            };
            Ok(InterleavedRow { name: name.to_owned(), us_per_read, cpu_us_per_read })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(InterleavedRun { reads_per_way, reads_per_turn, rows })
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

/// The interleaved table: the run's figures (none when it was not measured) checked against
/// `[interleaved]`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct InterleavedReport {
    /// `None`: no `redis_interleaved.json` from this run.
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
    interleaved: Option<&InterleavedReport>,
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
                status_cell(e),
            );
        }
    }
    if rows.iter().any(|e| e.row.judged_on_interleaved) {
        let turn = interleaved
            .and_then(|i| i.reads_per_turn)
            .map(|n| format!("every {n} reads"))
            .unwrap_or_else(|| "often".into());
        let _ = writeln!(w);
        let _ = writeln!(
            w,
            "Rows \"judged on the interleaved table\" keep their target here for reference; it is"
        );
        let _ = writeln!(
            w,
            "judged on \"Redis hit, interleaved\" below, because criterion measures the rows of a"
        );
        let _ = writeln!(
            w,
            "group one after another, several seconds each, and on a virtual machine the loopback"
        );
        let _ = writeln!(
            w,
            "round trip drifts between those seconds by more than the facade's own cost, while"
        );
        let _ = writeln!(
            w,
            "`redis_interleaved` has the ways take turns {turn}, so that they share every drift."
        );
    }
    if let Some(report) = interleaved {
        render_interleaved(w, report);
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

/// The "Redis hit, interleaved" section.
fn render_interleaved(w: &mut String, report: &InterleavedReport) {
    let _ = writeln!(w);
    let _ = writeln!(w, "### Redis hit, interleaved");
    let _ = writeln!(w);
    if report.ways.iter().any(|way| way.target.is_some()) {
        let _ = writeln!(w, "The Redis hit target is judged on this table.");
    }
    let Some(reads) = report.reads_per_way else {
        let _ =
            writeln!(w, "Not measured (no `aurelis-bench/redis_interleaved.json` from this run).");
        return;
    };
    let turn = report.reads_per_turn.map(|n| format!(" every {n} reads")).unwrap_or_default();
    let _ = writeln!(
        w,
        "`redis_interleaved` reads the value of `redis_hit` in the ways below, which take"
    );
    let _ = writeln!(
        w,
        "turns{turn}; {reads} reads per way. Times are wall-clock µs per read; CPU is the bench"
    );
    let ratio = report
        .baseline
        .as_ref()
        .map(|b| format!("; ratio is way / `{}` (wall time)", md_cell(b)))
        .unwrap_or_default();
    let _ = writeln!(w, "thread's CPU time per read (`/proc/thread-self/schedstat`){ratio}.");
    let _ = writeln!(w);
    if report.ways.is_empty() {
        let _ = writeln!(w, "`redis_interleaved.json` has no rows.");
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
        .unwrap()
        .ratios;
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].ours, "memory_hit/aurelis_facade");
        assert_eq!(rows[0].goal, Goal::AtMost(1.5));
        assert_eq!(rows[1].goal, Goal::AtLeast(30.0));
        assert_eq!(rows[2].goal, Goal::Info);
        assert!(rows.iter().all(|r| !r.judged_on_interleaved));
        assert_eq!(parse_ratios("").unwrap(), BenchConfig::default());
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
        let machine = test_machine();
        let mem =
            [MemoryRow { name: "moka".into(), bytes_per_entry: 1200.0, payload_bytes: 1024.0 }];
        let text = render_measured(&rows, None, &m, Some(&mem), &machine);
        assert!(text.contains("| 2.000 | 1.000 | 2.00× | ≤ 1.5× | **missed** |"), "{text}");
        assert!(text.contains("| — | — | — | not measured |"), "{text}");
        assert!(text.contains("| `g/ours` | 2.000 | 1.800 |"), "{text}");
        assert!(text.contains("| moka | 1024 | 1200 | 176 |"), "{text}");
        assert!(text.contains("Test CPU (2 logical cores"), "{text}");
        assert!(!text.contains(BEGIN_MARKER) && !text.contains(END_MARKER));
        assert!(!text.contains("interleaved"), "{text}");
        let empty = render_measured(&[], None, &BTreeMap::new(), None, &machine);
        assert!(empty.contains("No criterion results"));
        assert!(empty.contains("Not measured"));
    }

    const ROW: &str = "[[ratio]]\nname = \"x\"\nours = \"a\"\npeer = \"b\"\n";

    #[test]
    fn parses_interleaved_table_and_judged_on() {
        let text = format!(
            "{ROW}target = 1.1\njudged_on = \"interleaved\"\n\n{ROW}\n\
             [interleaved]\nbaseline = \"raw\"\ntargets = {{ facade = 1.1, store = 2 }}\n"
        );
        let config = parse_ratios(&text).unwrap();
        assert_eq!(config.ratios.len(), 2);
        assert!(config.ratios[0].judged_on_interleaved);
        assert_eq!(config.ratios[0].goal, Goal::AtMost(1.1));
        assert!(!config.ratios[1].judged_on_interleaved);
        let interleaved = config.interleaved.unwrap();
        assert_eq!(interleaved.baseline.as_deref(), Some("raw"));
        assert_eq!(
            interleaved.targets.into_iter().collect::<Vec<_>>(),
            [("facade".to_owned(), 1.1), ("store".to_owned(), 2.0)]
        );
        // Every key is optional.
        let bare = parse_ratios("[interleaved]\n").unwrap();
        assert_eq!(bare.interleaved, Some(InterleavedConfig::default()));
        assert_eq!(parse_ratios(ROW).unwrap().interleaved, None);
    }

    #[test]
    fn rejects_bad_interleaved_settings() {
        let bad = [
            // judged_on: only "interleaved", only with a target and an [interleaved] table.
            format!("{ROW}target = 1\njudged_on = \"interleaved\""),
            format!("[interleaved]\n{ROW}judged_on = \"interleaved\""),
            format!("[interleaved]\n{ROW}target = 1\njudged_on = \"criterion\""),
            format!("[interleaved]\n{ROW}target = 1\njudged_on = true"),
            // [interleaved]: a table of known keys, positive targets, none on the baseline.
            "interleaved = 1".into(),
            "[interleaved]\nbasline = \"raw\"".into(),
            "[interleaved]\nbaseline = \"\"".into(),
            "[interleaved]\ntargets = 1.1".into(),
            "[interleaved]\ntargets = { facade = 0 }".into(),
            "[interleaved]\ntargets = { facade = \"1.1\" }".into(),
            "[interleaved]\nbaseline = \"raw\"\ntargets = { raw = 1.1 }".into(),
        ];
        for text in bad {
            assert!(parse_ratios(&text).is_err(), "accepted: {text}");
        }
    }

    /// What `benches/benches/redis_interleaved.rs` writes.
    const INTERLEAVED_JSON: &str = "{\"reads_per_way\":28000,\"reads_per_turn\":200,\"rows\":[\n\
        {\"name\":\"raw_redis_held_conn\",\"us_per_read\":60.0000,\"cpu_us_per_read\":30.0000},\n\
        {\"name\":\"redis_store\",\"us_per_read\":61.2000,\"cpu_us_per_read\":30.5000},\n\
        {\"name\":\"aurelis_facade\",\"us_per_read\":63.0000,\"cpu_us_per_read\":null}\n]}\n";

    fn interleaved_row(name: &str, us: f64, cpu: Option<f64>) -> InterleavedRow {
        InterleavedRow { name: name.into(), us_per_read: us, cpu_us_per_read: cpu }
    }

    #[test]
    fn reads_redis_interleaved() {
        let run = parse_interleaved(INTERLEAVED_JSON).unwrap();
        assert_eq!(run.reads_per_way, 28_000);
        assert_eq!(run.reads_per_turn, Some(200));
        assert_eq!(
            run.rows,
            [
                interleaved_row("raw_redis_held_conn", 60.0, Some(30.0)),
                interleaved_row("redis_store", 61.2, Some(30.5)),
                interleaved_row("aurelis_facade", 63.0, None),
            ]
        );
        // `reads_per_turn` and `cpu_us_per_read` may be left out.
        let minimal =
            parse_interleaved(r#"{"reads_per_way":5,"rows":[{"name":"a","us_per_read":1}]}"#)
                .unwrap();
        assert_eq!(minimal.reads_per_turn, None);
        assert_eq!(minimal.rows, [interleaved_row("a", 1.0, None)]);
        for bad in [
            r#"{"rows":[]}"#,
            r#"{"reads_per_way":1.5,"rows":[]}"#,
            r#"{"reads_per_way":-1,"rows":[]}"#,
            r#"{"reads_per_way":1}"#,
            r#"{"reads_per_way":1,"reads_per_turn":"200","rows":[]}"#,
            r#"{"reads_per_way":1,"rows":[{"name":"a"}]}"#,
            r#"{"reads_per_way":1,"rows":[{"name":"","us_per_read":1}]}"#,
            r#"{"reads_per_way":1,"rows":[{"us_per_read":1}]}"#,
            r#"{"reads_per_way":1,"rows":[{"name":"a","us_per_read":1,"cpu_us_per_read":"x"}]}"#,
            "{",
        ] {
            assert!(parse_interleaved(bad).is_err(), "accepted: {bad}");
        }
    }

    fn interleaved_config(baseline: Option<&str>, targets: &[(&str, f64)]) -> InterleavedConfig {
        InterleavedConfig {
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
        let rows = [evaluate(&judged, &m)];
        assert_eq!(status_cell(&rows[0]), "missed here (judged on the interleaved table)");
        let run = parse_interleaved(INTERLEAVED_JSON).unwrap();
        let config = interleaved_config(Some("raw_redis_held_conn"), &[("aurelis_facade", 1.1)]);
        let report = evaluate_interleaved(&config, Some(&run));
        let text = render_measured(&rows, Some(&report), &m, None, &test_machine());
        for expected in [
            "| 1.300 | 1.000 | 1.30× | ≤ 1.1× | missed here (judged on the interleaved table) |",
            "take turns every 200 reads, so that they share every drift.",
            "### Redis hit, interleaved",
            "The Redis hit target is judged on this table.",
            "which take\nturns every 200 reads; 28000 reads per way.",
            "ratio is way / `raw_redis_held_conn` (wall time).",
            "| `raw_redis_held_conn` | 60.00 | 30.00 | 1.00× | — | baseline |",
            "| `redis_store` | 61.20 | 30.50 | 1.02× | — | info |",
            "| `aurelis_facade` | 63.00 | — | 1.05× | ≤ 1.1× | met |",
        ] {
            assert!(text.contains(expected), "no {expected:?} in:\n{text}");
        }
        assert!(!text.contains("**missed**"), "{text}");
        // The interleaved table comes before the raw measurements.
        assert!(text.find("### Redis hit").unwrap() < text.find("### Every measurement").unwrap());

        let unmeasured = evaluate_interleaved(&config, None);
        let text = render_measured(&rows, Some(&unmeasured), &m, None, &test_machine());
        assert!(text.contains("Not measured (no `aurelis-bench/redis_interleaved.json`"), "{text}");
        assert!(text.contains("take turns often, so that"), "{text}");
        assert!(!text.contains("| `aurelis_facade` |"), "{text}");
    }
}
