//! The bench results on disk: criterion's `estimates.json`/`benchmark.json` and the files the
//! plain bench targets write into `<target dir>/aurelis-bench/`. Read with serde_json; the
//! only I/O is [`collect_measurements`].

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::UNIX_EPOCH;

use serde::Deserialize;

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

/// The part of criterion's `estimates.json` the report uses.
#[derive(Debug, Deserialize)]
struct Estimates {
    mean: Estimate,
    median: Estimate,
}

#[derive(Debug, Deserialize)]
struct Estimate {
    point_estimate: f64,
}

/// The part of criterion's `benchmark.json` the report uses.
#[derive(Debug, Deserialize)]
struct BenchmarkId {
    full_id: String,
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
    let est: Estimates = serde_json::from_str(estimates).map_err(|e| e.to_string())?;
    let id = benchmark
        .and_then(|b| serde_json::from_str::<BenchmarkId>(b).ok())
        .map(|b| b.full_id)
        .unwrap_or_else(|| fallback_id.to_owned());
    Ok(Measurement {
        id,
        mean_ns: est.mean.point_estimate,
        median_ns: est.median.point_estimate,
        written_at,
    })
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
            let written_at = modified_secs(&estimates);
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

/// When `path` was last written, seconds since the Unix epoch.
pub(crate) fn modified_secs(path: &Path) -> Option<u64> {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
}

/// One row of `memory_overhead.json`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub(crate) struct MemoryRow {
    pub(crate) name: String,
    pub(crate) bytes_per_entry: f64,
    pub(crate) payload_bytes: f64,
}

#[derive(Debug, Deserialize)]
struct MemoryFile {
    rows: Vec<MemoryRow>,
}

/// Reads `memory_overhead.json`: `{"rows":[{"name":..,"bytes_per_entry":..,"payload_bytes":..}]}`.
pub(crate) fn parse_memory(text: &str) -> Result<Vec<MemoryRow>, String> {
    let file: MemoryFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
    Ok(file.rows)
}

/// One way of reading in `redis_interleaved.json`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub(crate) struct InterleavedRow {
    /// The way's name (that of its `redis_hit` criterion function).
    pub(crate) name: String,
    /// Wall time per read, µs.
    pub(crate) us_per_read: f64,
    /// The bench thread's CPU time per read, µs, when the kernel tells.
    #[serde(default)]
    pub(crate) cpu_us_per_read: Option<f64>,
}

/// `redis_interleaved.json`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub(crate) struct InterleavedRun {
    /// Measured reads of each way.
    pub(crate) reads_per_way: u64,
    /// Reads of one way before the next takes its turn, when the file says.
    #[serde(default)]
    pub(crate) reads_per_turn: Option<u64>,
    pub(crate) rows: Vec<InterleavedRow>,
}

/// Reads `redis_interleaved.json`: `{"reads_per_way":N,"reads_per_turn":N,"rows":[{"name":..,
/// "us_per_read":..,"cpu_us_per_read":..|null}]}` (`reads_per_turn` and `cpu_us_per_read`
/// may be left out).
pub(crate) fn parse_interleaved(text: &str) -> Result<InterleavedRun, String> {
    let run: InterleavedRun = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if let Some(i) = run.rows.iter().position(|r| r.name.is_empty()) {
        return Err(format!("row {}: `name` is empty", i + 1));
    }
    Ok(run)
}

#[cfg(test)]
/// What `benches/benches/redis_interleaved.rs` writes.
pub(crate) const INTERLEAVED_JSON: &str = "{\"reads_per_way\":28000,\"reads_per_turn\":200,\
    \"rows\":[\n\
    {\"name\":\"raw_redis_held_conn\",\"us_per_read\":60.0000,\"cpu_us_per_read\":30.0000},\n\
    {\"name\":\"redis_store\",\"us_per_read\":61.2000,\"cpu_us_per_read\":30.5000},\n\
    {\"name\":\"aurelis_facade\",\"us_per_read\":63.0000,\"cpu_us_per_read\":null}\n]}\n";

#[cfg(test)]
mod tests {
    use super::*;

    /// What criterion 0.8 writes, abridged.
    const ESTIMATES: &str = r#"{
        "mean":{"confidence_interval":{"confidence_level":0.95,"lower_bound":1450.0,
                "upper_bound":1550.0},"point_estimate":1500.0,"standard_error":20.5},
        "median":{"confidence_interval":{"confidence_level":0.95,"lower_bound":1350.0,
                "upper_bound":1450.0},"point_estimate":1400.0,"standard_error":15.0},
        "median_abs_dev":{"confidence_interval":{"confidence_level":0.95,"lower_bound":1.0,
                "upper_bound":2.0},"point_estimate":1.5,"standard_error":0.1},
        "slope":null,
        "std_dev":{"confidence_interval":{"confidence_level":0.95,"lower_bound":1.0,
                "upper_bound":2.0},"point_estimate":1.5,"standard_error":0.1}}"#;

    #[test]
    fn reads_a_criterion_result_by_its_full_id() {
        let bench = r#"{"group_id":"g","function_id":"a:b","value_str":null,"throughput":null,
            "full_id":"g/a:b","directory_name":"g/a_b","title":"g/a:b"}"#;
        let m = parse_measurement(ESTIMATES, Some(bench), "g/a_b", Some(5)).unwrap();
        assert_eq!(m.id, "g/a:b");
        assert_eq!((m.mean_ns, m.median_ns, m.written_at), (1500.0, 1400.0, Some(5)));
        // Without a readable benchmark.json, the directory names the bench.
        let m = parse_measurement(ESTIMATES, None, "g/a_b", None).unwrap();
        assert_eq!(m.id, "g/a_b");
        let m = parse_measurement(ESTIMATES, Some("{"), "g/a_b", None).unwrap();
        assert_eq!(m.id, "g/a_b");
        for bad in ["{}", r#"{"mean":{"point_estimate":1},"median":{}}"#, "[", ""] {
            assert!(parse_measurement(bad, None, "x", None).is_err(), "accepted: {bad}");
        }
        // Integers are numbers too.
        let m = parse_measurement(
            r#"{"mean":{"point_estimate":2},"median":{"point_estimate":1}}"#,
            None,
            "x",
            None,
        )
        .unwrap();
        assert_eq!((m.mean_ns, m.median_ns), (2.0, 1.0));
    }

    #[test]
    fn collects_results_from_a_criterion_tree() {
        let dir = std::env::temp_dir().join(format!("xtask-collect-{}", std::process::id()));
        for sub in ["g/ours/new", "g/ours/base", "g/peer/new", "g/report", "report"] {
            fs::create_dir_all(dir.join(sub)).unwrap();
            fs::write(dir.join(sub).join("estimates.json"), ESTIMATES).unwrap();
        }
        let (all, older) = collect_measurements(&dir, None).unwrap();
        assert_eq!(all.keys().collect::<Vec<_>>(), ["g/ours", "g/peer"]);
        assert_eq!(older, 0);
        let (fresh, older) = collect_measurements(&dir, Some(u64::MAX)).unwrap();
        assert!(fresh.is_empty());
        assert_eq!(older, 2);
        let (none, _) = collect_measurements(&dir.join("absent"), None).unwrap();
        assert!(none.is_empty());
        // A broken result is an error naming the file.
        fs::write(dir.join("g/peer/new/estimates.json"), "{").unwrap();
        let error = collect_measurements(&dir, None).unwrap_err();
        assert!(error.contains("g/peer/new/estimates.json"), "{error}");
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
}
