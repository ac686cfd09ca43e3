//! `benches/ratios.toml`: which of our benches are compared with which peer, and the targets.
//! The file format is described in its header comment and in docs/performance.md.

use std::collections::BTreeMap;

use serde::Deserialize;

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

/// One `[[ratio]]` of `benches/ratios.toml`, checked.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RatioRow {
    pub(crate) name: String,
    /// Criterion id (`group/function`) of our bench.
    pub(crate) ours: String,
    /// Criterion id of the peer it is compared with.
    pub(crate) peer: String,
    pub(crate) goal: Goal,
    /// `judged_on = "interleaved"`: the row keeps its target and shows whether this run's
    /// criterion numbers meet it, but the target is judged on the interleaved table of its
    /// criterion group (`[interleaved.<group>]`).
    pub(crate) judged_on_interleaved: bool,
}

impl RatioRow {
    /// The criterion group of `ours` (the part before the first `/`).
    pub(crate) fn group(&self) -> &str {
        self.ours.split('/').next().unwrap_or_default()
    }
}

/// An `[interleaved.<group>]` table: how the interleaved results of one criterion group's
/// reads (a file a bench target writes) are compared.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InterleavedConfig {
    /// The section's title in the report ("Redis hit").
    pub(crate) title: String,
    /// The file in `<target>/aurelis-bench` the bench writes (`redis_interleaved.json`).
    pub(crate) file: String,
    /// The way every other way is divided by; `None`: the file's first row.
    #[serde(default)]
    pub(crate) baseline: Option<String>,
    /// Way name to the highest allowed ratio way / baseline (wall time per read). Ways
    /// without one are informational.
    #[serde(default)]
    pub(crate) targets: BTreeMap<String, f64>,
}

/// Everything `benches/ratios.toml` holds, checked.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct BenchConfig {
    /// The `[[ratio]]` tables, in file order.
    pub(crate) ratios: Vec<RatioRow>,
    /// The `[interleaved.<group>]` tables, by criterion group.
    pub(crate) interleaved: BTreeMap<String, InterleavedConfig>,
}

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RatiosFile {
    #[serde(default)]
    ratio: Vec<RatioEntry>,
    #[serde(default)]
    interleaved: BTreeMap<String, InterleavedConfig>,
}

/// One `[[ratio]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RatioEntry {
    name: String,
    ours: String,
    peer: String,
    target: Option<f64>,
    target_min: Option<f64>,
    judged_on: Option<JudgedOn>,
}

/// The values `judged_on` accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum JudgedOn {
    Interleaved,
}

fn positive(x: f64) -> bool {
    x.is_finite() && x > 0.0
}

/// Reads `benches/ratios.toml`. A key the format does not know is an error that names it.
pub(crate) fn parse_ratios(text: &str) -> Result<BenchConfig, String> {
    let file: RatiosFile = toml::from_str(text).map_err(|e| e.to_string().trim().to_owned())?;
    for (group, table) in &file.interleaved {
        check_interleaved(table).map_err(|e| format!("[interleaved.{group}]: {e}"))?;
    }
    let ratios = file
        .ratio
        .into_iter()
        .enumerate()
        .map(|(i, entry)| {
            check_row(entry, &file.interleaved).map_err(|e| format!("[[ratio]] #{}: {e}", i + 1))
        })
        .collect::<Result<_, _>>()?;
    Ok(BenchConfig { ratios, interleaved: file.interleaved })
}

fn check_interleaved(table: &InterleavedConfig) -> Result<(), String> {
    for (key, value) in [("title", &table.title), ("file", &table.file)] {
        if value.trim().is_empty() {
            return Err(format!("`{key}` must be a non-empty string"));
        }
    }
    if table.baseline.as_deref().is_some_and(|b| b.trim().is_empty()) {
        return Err("`baseline` must be a non-empty string".into());
    }
    for (way, max) in &table.targets {
        if !positive(*max) {
            return Err(format!("target of `{way}` must be a positive number"));
        }
    }
    if let Some(baseline) = &table.baseline {
        if table.targets.contains_key(baseline) {
            return Err(format!("the baseline `{baseline}` cannot have a target"));
        }
    }
    Ok(())
}

fn check_row(
    entry: RatioEntry,
    interleaved: &BTreeMap<String, InterleavedConfig>,
) -> Result<RatioRow, String> {
    for (key, value) in [("name", &entry.name), ("ours", &entry.ours), ("peer", &entry.peer)] {
        if value.trim().is_empty() {
            return Err(format!("`{key}` must be a non-empty string"));
        }
    }
    for (key, value) in [("target", entry.target), ("target_min", entry.target_min)] {
        if value.is_some_and(|x| !positive(x)) {
            return Err(format!("`{key}` must be a positive number"));
        }
    }
    let goal = match (entry.target, entry.target_min) {
        (Some(_), Some(_)) => return Err("give `target` or `target_min`, not both".into()),
        (Some(max), None) => Goal::AtMost(max),
        (None, Some(min)) => Goal::AtLeast(min),
        (None, None) => Goal::Info,
    };
    let judged_on_interleaved = entry.judged_on == Some(JudgedOn::Interleaved);
    if judged_on_interleaved && goal == Goal::Info {
        return Err("`judged_on` needs a `target` or `target_min`".into());
    }
    let row = RatioRow {
        name: entry.name,
        ours: entry.ours,
        peer: entry.peer,
        goal,
        judged_on_interleaved,
    };
    if judged_on_interleaved {
        // The table of the row's group judges it: it must name the row's way and peer.
        let group = row.group();
        let Some(table) = interleaved.get(group) else {
            return Err(format!(
                "`judged_on = \"interleaved\"` needs an [interleaved.{group}] table"
            ));
        };
        let way = row.ours.strip_prefix(group).unwrap_or_default().trim_start_matches('/');
        if !table.targets.contains_key(way) {
            return Err(format!("[interleaved.{group}] has no target for `{way}`"));
        }
        let peer = row.peer.strip_prefix(group).unwrap_or_default().trim_start_matches('/');
        if table.baseline.as_deref().is_some_and(|b| b != peer) {
            return Err(format!("[interleaved.{group}]'s baseline is not the row's peer `{peer}`"));
        }
    }
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROW: &str = "[[ratio]]\nname = \"x\"\nours = \"a\"\npeer = \"b\"\n";

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
    fn the_projects_ratios_toml_parses() {
        let text = include_str!("../../benches/ratios.toml");
        let config = parse_ratios(text).unwrap();
        assert!(!config.ratios.is_empty());
        assert_eq!(config.ratios.len(), text.lines().filter(|l| *l == "[[ratio]]").count());
    }

    #[test]
    fn an_unknown_key_is_an_error_naming_it() {
        let cases = [
            (format!("{ROW}traget = 1\n"), "traget"),
            ("[ratios]\nname = \"x\"\n".to_owned(), "ratios"),
            (format!("{TABLE}basline = \"raw\"\n"), "basline"),
            ("colour = 1\n".to_owned(), "colour"),
        ];
        for (text, key) in cases {
            let error = parse_ratios(&text).unwrap_err();
            assert!(error.contains(&format!("unknown field `{key}`")), "{text:?}: {error}");
        }
    }

    #[test]
    fn rejects_bad_rows() {
        let bad = [
            "[[ratio]]\nname = \"x\"\nours = \"a\"",
            &format!("{ROW}target = 1\ntarget_min = 2"),
            &format!("{ROW}target = -1"),
            &format!("{ROW}target = 0"),
            &format!("{ROW}target = \"1\""),
            "[[ratio]]\nname = \"\"\nours = \"a\"\npeer = \"b\"",
            "ratio = 3",
            "[[ratio]\n",
        ];
        for text in bad {
            assert!(parse_ratios(text).is_err(), "accepted: {text}");
        }
        let missing = parse_ratios("[[ratio]]\nname = \"x\"\nours = \"a\"").unwrap_err();
        assert!(missing.contains("missing field `peer`"), "{missing}");
        let both = parse_ratios(&format!("{ROW}{ROW}target = 1\ntarget_min = 2")).unwrap_err();
        assert!(both.starts_with("[[ratio]] #2: "), "{both}");
    }

    const TABLE: &str = "[interleaved.g]\ntitle = \"G\"\nfile = \"g.json\"\n";

    #[test]
    fn parses_interleaved_tables_and_judged_on() {
        let row = "[[ratio]]\nname = \"x\"\nours = \"g/facade\"\npeer = \"g/raw\"\n";
        let text = format!(
            "{row}target = 1.1\njudged_on = \"interleaved\"\n\n{ROW}\n\
             {TABLE}baseline = \"raw\"\ntargets = {{ facade = 1.1, store = 2 }}\n\n\
             [interleaved.h]\ntitle = \"H\"\nfile = \"h.json\"\n"
        );
        let config = parse_ratios(&text).unwrap();
        assert_eq!(config.ratios.len(), 2);
        assert!(config.ratios[0].judged_on_interleaved);
        assert_eq!(config.ratios[0].group(), "g");
        assert_eq!(config.ratios[0].goal, Goal::AtMost(1.1));
        assert!(!config.ratios[1].judged_on_interleaved);
        assert_eq!(config.interleaved.keys().collect::<Vec<_>>(), ["g", "h"]);
        let g = &config.interleaved["g"];
        assert_eq!((g.title.as_str(), g.file.as_str()), ("G", "g.json"));
        assert_eq!(g.baseline.as_deref(), Some("raw"));
        assert_eq!(
            g.targets.clone().into_iter().collect::<Vec<_>>(),
            [("facade".to_owned(), 1.1), ("store".to_owned(), 2.0)]
        );
        // Baseline and targets are optional.
        assert_eq!(config.interleaved["h"].baseline, None);
        assert!(config.interleaved["h"].targets.is_empty());
        assert!(parse_ratios(ROW).unwrap().interleaved.is_empty());
    }

    #[test]
    fn rejects_bad_interleaved_settings() {
        let row = "[[ratio]]\nname = \"x\"\nours = \"g/facade\"\npeer = \"g/raw\"\n";
        let bad = [
            // judged_on: only "interleaved", only with a target and a table of the row's
            // group that has a target for the row's way and the row's peer as baseline.
            format!("{row}target = 1\njudged_on = \"interleaved\""),
            format!("{TABLE}targets = {{ facade = 1 }}\n{row}judged_on = \"interleaved\""),
            format!(
                "{TABLE}targets = {{ facade = 1 }}\n{row}target = 1\njudged_on = \"criterion\""
            ),
            format!("{TABLE}targets = {{ facade = 1 }}\n{row}target = 1\njudged_on = true"),
            format!(
                "{TABLE}targets = {{ store = 1 }}\n{row}target = 1\njudged_on = \"interleaved\""
            ),
            format!(
                "{TABLE}baseline = \"other\"\ntargets = {{ facade = 1 }}\n\
                 {row}target = 1\njudged_on = \"interleaved\""
            ),
            format!(
                "[interleaved.h]\ntitle = \"H\"\nfile = \"h.json\"\ntargets = {{ facade = 1 }}\n\
                 {row}target = 1\njudged_on = \"interleaved\""
            ),
            // [interleaved.<group>]: known keys, a title and a file, positive targets, none on
            // the baseline.
            "interleaved = 1".into(),
            "[interleaved]\nbaseline = \"raw\"".into(),
            "[interleaved.g]\nfile = \"g.json\"".into(),
            "[interleaved.g]\ntitle = \"G\"".into(),
            "[interleaved.g]\ntitle = \" \"\nfile = \"g.json\"".into(),
            format!("{TABLE}baseline = \"\""),
            format!("{TABLE}targets = 1.1"),
            format!("{TABLE}targets = {{ facade = 0 }}"),
            format!("{TABLE}targets = {{ facade = \"1.1\" }}"),
            format!("{TABLE}baseline = \"raw\"\ntargets = {{ raw = 1.1 }}"),
        ];
        for text in bad {
            assert!(parse_ratios(&text).is_err(), "accepted: {text}");
        }
        let error = parse_ratios(&format!("{TABLE}targets = {{ facade = 0 }}")).unwrap_err();
        assert!(error.starts_with("[interleaved.g]: "), "{error}");
    }
}
