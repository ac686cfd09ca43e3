//! Explains lookups of labelled pairs with a BERT model folder and the relaxed guard:
//! `cargo run --release -p aurelis-cache-similarity --features candle --example explain_model -- PAIRS.jsonl MODEL_DIR [COSINE]`.
use std::sync::Arc;

use aurelis_cache_similarity::{BertEmbedder, Embedder, Scope, SimilarityCache};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("pairs file");
    let model: Arc<dyn Embedder> =
        Arc::new(BertEmbedder::load(args.next().expect("model dir")).expect("model"));
    let cosine: f32 = args.next().map(|c| c.parse().expect("cosine")).unwrap_or(0.8);
    let text = std::fs::read_to_string(path).expect("pairs file");
    let scope = Scope::for_model("m");
    for line in text.lines() {
        let r: serde_json::Value = serde_json::from_str(line).expect("json");
        let (a, b) = (r["a"].as_str().expect("a"), r["b"].as_str().expect("b"));
        let same = r["same_answer"].as_bool().expect("label");
        let cache = SimilarityCache::<u8>::builder()
            .embedder_arc(model.clone())
            .cosine_threshold(cosine)
            .strict_guard(false)
            .build()
            .expect("cache");
        cache.insert(&scope, a, 0, None).await.expect("insert");
        let found = cache.lookup(&scope, b).await;
        if found.hit.is_some() != same {
            let c = found.candidates.first();
            println!(
                "{} {} hit={} | {a} || {b} | {:?}",
                r["category"],
                r["style"],
                found.hit.is_some(),
                c.map(|c| (c.score.lexical, c.score.cosine, &c.verdict))
            );
        }
    }
}
