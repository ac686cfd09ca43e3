//! Quality evaluation of similar-prompt lookup on labelled pairs and conversations.
//!
//! ```text
//! cargo run --release -p aurelis-cache-similarity --bin similarity-eval -- [PAIRS.jsonl [CONVERSATIONS.jsonl]]
//! ```
//!
//! Without arguments it reads `<workspace root>/../shared/data/similarity/pairs-dev.jsonl` and
//! `conversations-dev.jsonl`. For each labelled pair it stores `a` in an empty cache and looks
//! up `b` (pair mode), then stores every `a` in one cache and looks up every `b` (distractor
//! mode). A correct hit serves the pair's own `a` on a should-hit pair; a wrong hit serves a
//! trap, or any other entry; a miss serves nothing. In distractor mode, serving an entry
//! whose question is identical to the query (stored by another row) counts as correct, also
//! on a trap row. The default operating point comes last.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, OnceLock};

use aurelis_cache_similarity::{
    Analysis, Embedder, HashEmbedder, Message, Scope, SimilarityCache, SimilarityConfig,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct PairRow {
    category: String,
    a: String,
    b: String,
    same_answer: bool,
}

#[derive(Deserialize)]
struct ConversationRow {
    subtype: String,
    a: Vec<Message>,
    b: Vec<Message>,
    same_answer: bool,
}

/// One labelled case: what to store, what to look up, in which scopes.
struct Case {
    category: String,
    should_hit: bool,
    store: (Scope, String),
    query: (Scope, String),
}

#[derive(Default, Clone, Copy)]
struct Counts {
    n: u32,
    correct: u32,
    wrong: u32,
    miss: u32,
}

impl Counts {
    fn add(&mut self, other: Counts) {
        self.n += other.n;
        self.correct += other.correct;
        self.wrong += other.wrong;
        self.miss += other.miss;
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Pair,
    Distractor,
}

#[derive(Clone, Copy)]
enum Setup {
    Lexical,
    Guarded,
    Relaxed,
    HashEmbedderGuarded,
    /// The `--model` embedder: guard off (0, and lexical only at ratio 1.0), strict (1) or
    /// relaxed (2), at a cosine threshold.
    Model(u8, f32),
}

/// The embedder given with `--model`, wrapped so each text is embedded once per run.
static MODEL: OnceLock<Arc<dyn Embedder>> = OnceLock::new();

#[derive(Debug)]
struct Memo {
    inner: Arc<dyn Embedder>,
    seen: Mutex<HashMap<String, Vec<f32>>>,
}

#[async_trait::async_trait]
impl Embedder for Memo {
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }

    async fn embed(&self, texts: &[&str]) -> aurelis_cache_core::Result<Vec<Vec<f32>>> {
        let missing: Vec<&str> = {
            let seen = self.seen.lock().expect("memo lock");
            texts.iter().copied().filter(|t| !seen.contains_key(*t)).collect()
        };
        if !missing.is_empty() {
            let vectors = self.inner.embed(&missing).await?;
            let mut seen = self.seen.lock().expect("memo lock");
            for (t, v) in missing.iter().zip(vectors) {
                seen.insert(t.to_string(), v);
            }
        }
        let seen = self.seen.lock().expect("memo lock");
        Ok(texts.iter().map(|t| seen[*t].clone()).collect())
    }
}

impl Setup {
    fn name(self) -> String {
        match self {
            Setup::Lexical => "lexical alone".into(),
            Setup::Guarded => "lexical + guard".into(),
            Setup::Relaxed => "lexical + relaxed guard".into(),
            Setup::HashEmbedderGuarded => "lexical + hash embedder (cosine 0.80) + guard".into(),
            Setup::Model(0, c) => format!("model alone at cosine {c:.2}"),
            Setup::Model(1, c) => format!("lexical + model at cosine {c:.2} + guard"),
            Setup::Model(_, c) => format!("lexical + model at cosine {c:.2} + relaxed guard"),
        }
    }

    fn build(self, threshold: f64) -> SimilarityCache<usize> {
        let b = SimilarityCache::<usize>::builder().threshold(threshold);
        let b = match self {
            Setup::Lexical => b.guard(false),
            Setup::Guarded => b,
            Setup::Relaxed => b.strict_guard(false),
            Setup::HashEmbedderGuarded => b.embedder(HashEmbedder::new(512)).cosine_threshold(0.80),
            Setup::Model(mode, cosine) => {
                let b = b
                    .embedder_arc(MODEL.get().expect("--model loaded").clone())
                    .cosine_threshold(cosine);
                match mode {
                    0 => b.guard(false).threshold(1.0),
                    1 => b,
                    _ => b.strict_guard(false),
                }
            }
        };
        b.build().expect("valid settings")
    }
}

fn workspace_root() -> Option<PathBuf> {
    let mut dir = std::env::current_dir().ok()?;
    loop {
        let manifest = dir.join("Cargo.toml");
        if std::fs::read_to_string(&manifest).is_ok_and(|s| s.contains("[workspace]")) {
            return Some(dir);
        }
        if !dir.pop() {
            return None;
        }
    }
}

fn read_jsonl<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))
        })
        .collect()
}

fn pair_cases(rows: &[PairRow]) -> Vec<Case> {
    let scope = Scope::for_model("eval-model");
    rows.iter()
        .map(|r| Case {
            category: r.category.clone(),
            should_hit: r.same_answer,
            store: (scope, r.a.clone()),
            query: (scope, r.b.clone()),
        })
        .collect()
}

/// Conversations with the history left out of the scope: only the last user messages are
/// compared. Not how the cache works; it shows what the history in the scope prevents.
fn last_message_cases(rows: &[ConversationRow]) -> Vec<Case> {
    let scope = Scope::for_model("eval-model");
    rows.iter()
        .map(|r| Case {
            category: r.subtype.clone(),
            should_hit: r.same_answer,
            store: (scope, Scope::builder().conversation(&r.a).1),
            query: (scope, Scope::builder().conversation(&r.b).1),
        })
        .collect()
}

fn conversation_cases(rows: &[ConversationRow]) -> Vec<Case> {
    rows.iter()
        .map(|r| Case {
            category: r.subtype.clone(),
            should_hit: r.same_answer,
            store: Scope::builder().model("eval-model").conversation(&r.a),
            query: Scope::builder().model("eval-model").conversation(&r.b),
        })
        .collect()
}

async fn evaluate(
    cases: &[Case],
    setup: Setup,
    threshold: f64,
    mode: Mode,
) -> BTreeMap<String, Counts> {
    let mut out: BTreeMap<String, Counts> = BTreeMap::new();
    let shared = setup.build(threshold);
    if mode == Mode::Distractor {
        for (i, c) in cases.iter().enumerate() {
            shared.insert(&c.store.0, &c.store.1, i, None).await.expect("insert");
        }
    }
    for (i, c) in cases.iter().enumerate() {
        let own;
        let cache = match mode {
            Mode::Pair => {
                own = setup.build(threshold);
                own.insert(&c.store.0, &c.store.1, i, None).await.expect("insert");
                &own
            }
            Mode::Distractor => &shared,
        };
        let found = cache.lookup(&c.query.0, &c.query.1).await;
        let counts = out.entry(c.category.clone()).or_default();
        counts.n += 1;
        match found.hit {
            None => counts.miss += 1,
            Some(hit) => {
                // In distractor mode an identical `a` stored by another row is the same entry.
                // Serving a stored question identical to the query (another row stored it)
                // is right whatever the row's label.
                let own_prompt = Analysis::new(&c.store.1);
                let hit_prompt = Analysis::new(&hit.prompt);
                let same_entry = hit.value == i
                    || (c.store.0 == c.query.0
                        && hit_prompt.normalized() == own_prompt.normalized());
                let identical = hit.value != i
                    && hit.exact
                    && hit_prompt.normalized() == Analysis::new(&c.query.1).normalized();
                if (c.should_hit && same_entry) || identical {
                    counts.correct += 1;
                } else {
                    counts.wrong += 1;
                }
            }
        }
    }
    out
}

fn totals(by: &BTreeMap<String, Counts>, should_hit: &BTreeMap<String, bool>) -> (Counts, Counts) {
    let (mut hit, mut trap) = (Counts::default(), Counts::default());
    for (cat, c) in by {
        if should_hit[cat] {
            hit.add(*c);
        } else {
            trap.add(*c);
        }
    }
    (hit, trap)
}

fn pct(a: u32, n: u32) -> String {
    if n == 0 {
        "-".to_string()
    } else {
        format!("{:.1}%", 100.0 * f64::from(a) / f64::from(n))
    }
}

fn print_table(title: &str, by: &BTreeMap<String, Counts>, should_hit: &BTreeMap<String, bool>) {
    println!("\n{title}");
    println!("  {:<28} {:>5} {:>8} {:>8} {:>8}", "category", "n", "correct", "wrong", "miss");
    for (cat, c) in by {
        let kind = if should_hit[cat] { "hit" } else { "trap" };
        println!(
            "  {:<28} {:>5} {:>8} {:>8} {:>8}",
            format!("{cat} ({kind})"),
            c.n,
            c.correct,
            c.wrong,
            c.miss
        );
    }
    let (hit, trap) = totals(by, should_hit);
    println!(
        "  {:<28} {:>5} {:>8} {:>8} {:>8}   correct hits {} of should-hit",
        "should-hit total",
        hit.n,
        hit.correct,
        hit.wrong,
        hit.miss,
        pct(hit.correct, hit.n)
    );
    println!(
        "  {:<28} {:>5} {:>8} {:>8} {:>8}   traps served {} of traps",
        "trap total",
        trap.n,
        trap.correct,
        trap.wrong,
        trap.miss,
        pct(trap.wrong, trap.n)
    );
}

async fn report(
    label: &str,
    cases: &[Case],
    should_hit: &BTreeMap<String, bool>,
    setup: Setup,
    threshold: f64,
    mode: Mode,
) -> (Counts, Counts) {
    let by = evaluate(cases, setup, threshold, mode).await;
    let mode_name = if mode == Mode::Pair { "pair mode" } else { "distractor mode" };
    print_table(
        &format!("{label}, {mode_name}, {} at threshold {threshold:.2}", setup.name()),
        &by,
        should_hit,
    );
    totals(&by, should_hit)
}

async fn run(pairs_path: &Path, conversations_path: &Path) -> Result<(), String> {
    let pair_rows: Vec<PairRow> = read_jsonl(pairs_path)?;
    let conversation_rows: Vec<ConversationRow> = read_jsonl(conversations_path)?;
    let pairs = pair_cases(&pair_rows);
    let conversations = conversation_cases(&conversation_rows);
    let last_messages = last_message_cases(&conversation_rows);
    let mut should_hit = BTreeMap::new();
    for c in pairs.iter().chain(&conversations) {
        should_hit.insert(c.category.clone(), c.should_hit);
    }
    let default_threshold = SimilarityConfig::default().threshold;
    println!("similarity-eval: {} pairs from {}", pairs.len(), pairs_path.display());
    println!(
        "similarity-eval: {} conversations from {}",
        conversations.len(),
        conversations_path.display()
    );

    // Curve over thresholds, pair mode.
    println!(
        "\nCurve over thresholds (pair mode): correct hits of should-hit / traps served of traps"
    );
    println!("(conversations with the full scope are 0% / 0% at every threshold: see the tables)");
    let columns: [(&str, &Vec<Case>, Setup); 5] = [
        ("pairs: lexical alone", &pairs, Setup::Lexical),
        ("pairs: + guard", &pairs, Setup::Guarded),
        ("pairs: + relaxed guard", &pairs, Setup::Relaxed),
        ("last msg: lexical alone", &last_messages, Setup::Lexical),
        ("last msg: + guard", &last_messages, Setup::Guarded),
    ];
    let header: Vec<String> = columns.iter().map(|c| format!("{:>24}", c.0)).collect();
    println!("  {:>9} {}", "threshold", header.join(""));
    for step in 0..=10 {
        let t = 0.50 + 0.05 * f64::from(step);
        let mut cells = Vec::new();
        for (_, cases, setup) in &columns {
            let by = evaluate(cases, *setup, t, Mode::Pair).await;
            let (h, tr) = totals(&by, &should_hit);
            cells.push(format!(
                "{:>24}",
                format!("{} / {}", pct(h.correct, h.n), pct(tr.wrong, tr.n))
            ));
        }
        println!("  {t:>9.2} {}", cells.join(""));
    }

    // Per-category tables for the comparison setups.
    for setup in [Setup::Lexical, Setup::Relaxed, Setup::HashEmbedderGuarded] {
        for mode in [Mode::Pair, Mode::Distractor] {
            report("pairs", &pairs, &should_hit, setup, default_threshold, mode).await;
            report("conversations", &conversations, &should_hit, setup, default_threshold, mode)
                .await;
        }
    }
    for setup in [Setup::Lexical, Setup::Guarded] {
        let label = "conversations, last user message only (history NOT in the scope)";
        report(label, &last_messages, &should_hit, setup, default_threshold, Mode::Pair).await;
    }

    // The local model, when given.
    if MODEL.get().is_some() {
        println!("\nCurve over cosine thresholds with the model (pair mode, pairs): correct hits / traps served");
        println!(
            "  {:>9} {:>24}{:>24}{:>24}",
            "cosine", "model alone", "+ lexical + guard", "+ lexical + relaxed guard"
        );
        for step in 0..=10 {
            let c = 0.50 + 0.05 * step as f32;
            let mut cells = Vec::new();
            for mode in [0u8, 1, 2] {
                let by =
                    evaluate(&pairs, Setup::Model(mode, c), default_threshold, Mode::Pair).await;
                let (h, tr) = totals(&by, &should_hit);
                cells.push(format!(
                    "{:>24}",
                    format!("{} / {}", pct(h.correct, h.n), pct(tr.wrong, tr.n))
                ));
            }
            println!("  {c:>9.2} {}", cells.join(""));
        }
        for mode in [0u8, 1, 2] {
            for m in [Mode::Pair, Mode::Distractor] {
                if mode != 1 && m == Mode::Distractor {
                    continue;
                }
                let setup = Setup::Model(mode, SimilarityConfig::default().cosine_threshold);
                report("pairs", &pairs, &should_hit, setup, default_threshold, m).await;
                report("conversations", &conversations, &should_hit, setup, default_threshold, m)
                    .await;
            }
        }
    }

    // The default operating point, last.
    println!(
        "\n==== Default operating point: {} at threshold {default_threshold:.2} ====",
        Setup::Guarded.name()
    );
    let mut summary = Vec::new();
    for mode in [Mode::Pair, Mode::Distractor] {
        for (label, cases) in [("pairs", &pairs), ("conversations", &conversations)] {
            let (h, t) =
                report(label, cases, &should_hit, Setup::Guarded, default_threshold, mode).await;
            summary.push((label, mode, h, t));
        }
    }
    println!("\nSummary at the defaults (correct hits of should-hit; traps served of traps):");
    for (label, mode, h, t) in summary {
        let mode_name = if mode == Mode::Pair { "pair" } else { "distractor" };
        println!(
            "  {label:<14} {mode_name:<10} correct {:>3}/{:<3} ({:>6})  traps served {:>3}/{:<3} ({:>6})  \
             should-hit served a wrong entry {}  should-hit missed {}",
            h.correct,
            h.n,
            pct(h.correct, h.n),
            t.wrong,
            t.n,
            pct(t.wrong, t.n),
            h.wrong,
            h.miss
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("usage: similarity-eval [--model DIR] [PAIRS.jsonl [CONVERSATIONS.jsonl]]");
        println!("defaults: <workspace root>/../shared/data/similarity/{{pairs,conversations}}-dev.jsonl");
        println!(
            "--model DIR: also measure a BERT sentence model folder (needs the `candle` feature)"
        );
        return ExitCode::SUCCESS;
    }
    if let Some(i) = args.iter().position(|a| a == "--model") {
        let Some(dir) = args.get(i + 1).cloned() else {
            eprintln!("similarity-eval: --model needs a folder");
            return ExitCode::FAILURE;
        };
        args.drain(i..i + 2);
        match load_model(&dir) {
            Ok(model) => {
                let memo: Arc<dyn Embedder> =
                    Arc::new(Memo { inner: model, seen: Mutex::new(HashMap::new()) });
                let _ = MODEL.set(memo);
            }
            Err(e) => {
                eprintln!("similarity-eval: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let data =
        workspace_root().map(|r| r.join("..").join("shared").join("data").join("similarity"));
    let pick = |i: usize, name: &str| -> Option<PathBuf> {
        args.get(i).map(PathBuf::from).or_else(|| data.as_ref().map(|d| d.join(name)))
    };
    let (Some(pairs), Some(conversations)) =
        (pick(0, "pairs-dev.jsonl"), pick(1, "conversations-dev.jsonl"))
    else {
        eprintln!("similarity-eval: no workspace root found from the current directory; pass the files as arguments");
        return ExitCode::FAILURE;
    };
    let rt =
        tokio::runtime::Builder::new_current_thread().enable_time().build().expect("tokio runtime");
    match rt.block_on(run(&pairs, &conversations)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("similarity-eval: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(feature = "candle")]
fn load_model(dir: &str) -> Result<Arc<dyn Embedder>, String> {
    let started = std::time::Instant::now();
    let model = aurelis_cache_similarity::BertEmbedder::load(dir).map_err(|e| e.to_string())?;
    println!("similarity-eval: loaded {dir} in {:?}", started.elapsed());
    Ok(Arc::new(model))
}

#[cfg(not(feature = "candle"))]
fn load_model(_dir: &str) -> Result<Arc<dyn Embedder>, String> {
    Err("--model needs the `candle` feature: cargo run --release -p aurelis-cache-similarity --features candle --bin similarity-eval -- --model DIR".into())
}
