//! Explains lookups of labelled pairs: `cargo run --release -p aurelis-cache-similarity --example explain_pairs -- PAIRS.jsonl [trap|miss|distractor|noguard]`.
use aurelis_cache_similarity::{Scope, SimilarityCache};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let path = std::env::args().nth(1).expect("pairs file");
    let mode = std::env::args().nth(2).unwrap_or_default();
    let text = std::fs::read_to_string(path).unwrap();
    let rows: Vec<serde_json::Value> =
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let scope = Scope::for_model("m");
    let all = SimilarityCache::<usize>::builder().guard(mode != "noguard").build().unwrap();
    for (i, r) in rows.iter().enumerate() {
        all.insert(&scope, r["a"].as_str().unwrap(), i, None).await.unwrap();
    }
    for (i, r) in rows.iter().enumerate() {
        let a = r["a"].as_str().unwrap();
        let b = r["b"].as_str().unwrap();
        let same = r["same_answer"].as_bool().unwrap();
        let cache = if mode == "distractor" {
            None
        } else {
            let c = SimilarityCache::<usize>::builder()
                .threshold(0.0)
                .guard(mode != "noguard")
                .build()
                .unwrap();
            c.insert(&scope, a, i, None).await.unwrap();
            Some(c)
        };
        let found = match &cache {
            Some(c) => c.lookup(&scope, b).await,
            None => all.lookup(&scope, b).await,
        };
        let hit = found.hit.as_ref().map(|h| h.value);
        let show = match mode.as_str() {
            "distractor" => hit.is_some() && (!same || hit != Some(i)),
            "miss" => same && hit.is_none(),
            _ => !same && hit.is_some(),
        };
        if show {
            println!("{} same={same} | {a} || {b}", r["category"]);
            for c in &found.candidates {
                println!("    {:.3} {:?} {:?}", c.score.lexical, c.prompt, c.verdict);
            }
        }
    }
}
