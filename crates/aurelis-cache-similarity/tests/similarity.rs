//! Behaviour of the similarity cache: guard, scopes, exact-first, removal, persistence,
//! verifier, shadow mode, the candidate index against a full scan, and the dev data.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aurelis_cache_core::testkit::MemoryMapStore;
use aurelis_cache_core::{Error, Store};
use aurelis_cache_similarity::{
    lexical_score, Analysis, Guard, HashEmbedder, Message, Scope, SimilarityCache, Verdict,
    Verifier, VetoReason,
};

fn cache() -> SimilarityCache<String> {
    SimilarityCache::builder().build().unwrap()
}

fn vetoed(lookup: &aurelis_cache_similarity::Lookup<String>) -> Vec<VetoReason> {
    lookup
        .candidates
        .iter()
        .filter_map(|c| match &c.verdict {
            Verdict::Vetoed(v) => Some(v.reason),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn guard_vetoes_negation_number_entity_swaps_and_explains() {
    // A low threshold, so every trap is a candidate and the guard alone decides.
    let c = SimilarityCache::<String>::builder().threshold(0.5).build().unwrap();
    let s = Scope::for_model("m");
    for p in [
        "Cancel my subscription",
        "Track order 48213",
        "Who is the CEO of Microsoft?",
        "Remind me at 7am",
    ] {
        c.insert(&s, p, p.to_string(), None).await.unwrap();
    }
    for (q, reason) in [
        ("Don't cancel my subscription", VetoReason::Negation),
        ("Track order 48231", VetoReason::Number),
        ("Who is the CEO of Apple?", VetoReason::Entity),
        ("Remind me at 7pm", VetoReason::Number),
    ] {
        let found = c.lookup(&s, q).await;
        assert!(found.hit.is_none(), "{q} served {:?}", found.hit);
        assert_eq!(vetoed(&found), [reason], "{q}");
    }
    // Rewordings within the guard's tolerance are served.
    let found = c.lookup(&s, "hi, cancel my subscripton please").await;
    assert_eq!(found.hit.unwrap().value, "Cancel my subscription");
}

#[tokio::test]
async fn guard_off_serves_the_trap_the_guard_stops() {
    let unguarded = SimilarityCache::<String>::builder().guard(false).build().unwrap();
    let s = Scope::for_model("m");
    unguarded.insert(&s, "How do I enable dark mode?", "on".into(), None).await.unwrap();
    assert!(unguarded.lookup(&s, "How do I disable dark mode?").await.hit.is_some());
    let guarded = cache();
    guarded.insert(&s, "How do I enable dark mode?", "on".into(), None).await.unwrap();
    assert!(guarded.lookup(&s, "How do I disable dark mode?").await.hit.is_none());
}

#[tokio::test]
async fn scopes_never_mix() {
    let c = cache();
    let a = Scope::builder().model("m").system("You are a bank.").namespace("tenant-a").build();
    c.insert(&a, "How do I close my account?", "bank answer".into(), None).await.unwrap();
    let others = [
        Scope::builder().model("m").system("You are a gym.").namespace("tenant-a").build(),
        Scope::builder().model("m").system("You are a bank.").namespace("tenant-b").build(),
        Scope::builder().model("m2").system("You are a bank.").namespace("tenant-a").build(),
        Scope::builder()
            .model("m")
            .system("You are a bank.")
            .namespace("tenant-a")
            .history(&[Message::new("user", "I have a gym membership")])
            .build(),
    ];
    for other in others {
        let found = c.lookup(&other, "How do I close my account?").await;
        assert!(found.hit.is_none() && found.candidates.is_empty());
    }
    assert_eq!(c.lookup(&a, "how do I close my account").await.hit.unwrap().value, "bank answer");

    // Conversations: the same last message after a different history is another scope.
    let (s1, p1) = Scope::builder().model("m").conversation(&[
        Message::new("user", "My Flixora subscription"),
        Message::new("assistant", "Cancel or change plan?"),
        Message::new("user", "cancel it"),
    ]);
    let (s2, p2) = Scope::builder().model("m").conversation(&[
        Message::new("user", "My PulseFit membership"),
        Message::new("assistant", "Cancel or freeze it?"),
        Message::new("user", "Cancel it."),
    ]);
    c.insert(&s1, &p1, "flixora".into(), None).await.unwrap();
    assert!(c.lookup(&s2, &p2).await.hit.is_none());
    assert_eq!(c.lookup(&s1, &p2).await.hit.unwrap().value, "flixora");
}

#[tokio::test]
async fn exact_match_is_tried_first() {
    let c = cache();
    let s = Scope::for_model("m");
    c.insert(&s, "How do I change my email adress?", "typo entry".into(), None).await.unwrap();
    c.insert(&s, "How do I change my email address?", "exact entry".into(), None).await.unwrap();
    let hit = c.lookup(&s, "HOW DO I CHANGE MY EMAIL ADDRESS").await.hit.unwrap();
    assert!(hit.exact);
    assert_eq!(hit.value, "exact entry");
    assert_eq!(hit.score.lexical, 1.0);
    // Inserting the same normalised prompt replaces the entry.
    c.insert(&s, "how do i change my email address", "replaced".into(), None).await.unwrap();
    assert_eq!(c.len(), 2);
    assert_eq!(
        c.lookup(&s, "How do I change my email address?").await.hit.unwrap().value,
        "replaced"
    );
}

#[tokio::test]
async fn removed_invalidated_and_expired_entries_leave_the_index() {
    let c = cache();
    let s = Scope::for_model("m");
    let id = c.insert(&s, "What are your opening hours?", "9-5".into(), None).await.unwrap();
    assert!(c.remove_id(id));
    assert!(!c.remove_id(id));
    assert!(c.lookup(&s, "what are your opening hours").await.hit.is_none());
    assert!(c.lookup(&s, "what are you opening hours").await.candidates.is_empty());

    c.insert(&s, "Where is my order?", "tracking".into(), None).await.unwrap();
    assert!(c.remove(&s, "where is my order"));
    assert!(c.lookup(&s, "Where is my ordr?").await.hit.is_none());

    // Many removals compact the tombstones; the survivors are still found.
    for i in 0..300 {
        c.insert(&s, &format!("How do I renew permit {i}?"), format!("{i}"), None).await.unwrap();
    }
    for i in 0..250 {
        assert!(c.remove(&s, &format!("How do I renew permit {i}?")));
    }
    assert_eq!(c.len(), 50);
    assert_eq!(c.lookup(&s, "how do i renew permit 299").await.hit.unwrap().value, "299");
    assert!(c.lookup(&s, "how do i renew permit 7").await.hit.is_none());
    for i in 0..10 {
        c.insert(&s, &format!("How do I cancel booking {i}?"), format!("b{i}"), None)
            .await
            .unwrap();
    }
    assert_eq!(c.lookup(&s, "How can I cancel booking 3").await.hit.unwrap().value, "b3");

    // A scope invalidation removes all of it.
    assert_eq!(c.invalidate_scope(&s), 60);
    assert!(c.is_empty());

    // Expiry.
    c.insert(&s, "Is the deposit refundable?", "yes".into(), Some(Duration::from_millis(20)))
        .await
        .unwrap();
    assert!(c.lookup(&s, "is the deposit refundable").await.hit.is_some());
    tokio::time::sleep(Duration::from_millis(40)).await;
    assert!(c.lookup(&s, "is the deposit refundable").await.hit.is_none());
    assert_eq!(c.purge_expired(), 1);
    assert!(c.is_empty());
}

#[tokio::test]
async fn persistence_round_trips_through_a_store_and_drops_expired_entries() {
    let store: Arc<dyn Store> = Arc::new(MemoryMapStore::new("disk"));
    let s = Scope::builder().model("m").system("sys").build();
    let before = SimilarityCache::<serde_json::Value>::builder()
        .embedder(HashEmbedder::new(64))
        .build()
        .unwrap();
    before
        .insert(&s, "How do I reset my password?", serde_json::json!({"a": 1}), None)
        .await
        .unwrap();
    before
        .insert(
            &s,
            "Where is my parcel?",
            serde_json::json!("soon"),
            Some(Duration::from_millis(10)),
        )
        .await
        .unwrap();
    let removed = before.insert(&s, "Delete me", serde_json::json!(null), None).await.unwrap();
    assert!(before.remove_id(removed));
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(before.save(store.as_ref(), "sim:idx").await.unwrap(), 1);

    let after = SimilarityCache::<serde_json::Value>::builder()
        .embedder(HashEmbedder::new(64))
        .build()
        .unwrap();
    assert_eq!(after.load(store.as_ref(), "sim:idx").await.unwrap(), 1);
    assert_eq!(after.len(), 1);
    let hit = after.lookup(&s, "how can i reset my pasword").await.hit.unwrap();
    assert_eq!(hit.value, serde_json::json!({"a": 1}));
    assert!(after.lookup(&s, "Where is my parcel?").await.hit.is_none());
    assert!(after
        .lookup(&Scope::for_model("m"), "How do I reset my password?")
        .await
        .hit
        .is_none());
    // A missing key loads nothing; garbage is an error, not a panic.
    assert_eq!(after.load(store.as_ref(), "absent").await.unwrap(), 0);
    store.set("bad", aurelis_cache_core::Bytes::from_static(b"{not json"), None).await.unwrap();
    assert!(after.load(store.as_ref(), "bad").await.is_err());
}

#[derive(Debug)]
struct Slow;

#[async_trait]
impl Verifier for Slow {
    async fn verify(&self, _: &str, _: &str) -> aurelis_cache_core::Result<bool> {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok(true)
    }
}

#[derive(Debug)]
struct Fixed(aurelis_cache_core::Result<bool>);

#[async_trait]
impl Verifier for Fixed {
    async fn verify(&self, q: &str, c: &str) -> aurelis_cache_core::Result<bool> {
        assert_ne!(q, c, "the verifier only sees non-exact candidates");
        match &self.0 {
            Ok(b) => Ok(*b),
            Err(_) => Err(Error::backend("verifier down")),
        }
    }
}

#[tokio::test]
async fn verifier_timeout_or_failure_is_a_miss() {
    let s = Scope::for_model("m");
    let builder =
        || SimilarityCache::<String>::builder().verifier_timeout(Duration::from_millis(30));
    let slow = builder().verifier(Slow).build().unwrap();
    let failing = builder().verifier(Fixed(Err(Error::backend("x")))).build().unwrap();
    let yes = builder().verifier(Fixed(Ok(true))).build().unwrap();
    for c in [&slow, &failing, &yes] {
        c.insert(&s, "How do I change my email address?", "v".into(), None).await.unwrap();
    }
    let started = std::time::Instant::now();
    let found = slow.lookup(&s, "How can I change my email adress?").await;
    assert!(found.hit.is_none());
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(vetoed(&found), [VetoReason::Verifier]);
    assert!(failing.lookup(&s, "How can I change my email adress?").await.hit.is_none());
    assert!(yes.lookup(&s, "How can I change my email adress?").await.hit.is_some());
    // Exact matches do not need the verifier.
    assert!(slow.lookup(&s, "how do i change my email address").await.hit.is_some());
}

#[tokio::test]
async fn shadow_mode_measures_without_serving() {
    let c = SimilarityCache::<String>::builder().shadow(true).compare_eq().build().unwrap();
    let s = Scope::for_model("m");
    c.insert(&s, "How do I reset my password?", "Settings > Security".into(), None).await.unwrap();
    c.insert(&s, "What's the price for members?", "£5".into(), None).await.unwrap();
    let found = c.lookup(&s, "How can I reset my pasword?").await;
    assert!(found.hit.is_none());
    assert_eq!(found.would_hit.as_ref().unwrap().value, "Settings > Security");
    let found = c.lookup(&s, "What's the price for members? Thanks").await;
    assert!(found.hit.is_none() && found.would_hit.is_some());
    assert!(c.lookup(&s, "Where is my order?").await.would_hit.is_none());
    // The real answers arrive: one matches the would-be hit, one does not.
    c.insert(&s, "How can I reset my pasword?", "Settings > Security".into(), None).await.unwrap();
    c.insert(&s, "What's the price for members? Thanks", "£6".into(), None).await.unwrap();
    let r = c.shadow_report();
    assert_eq!(
        (r.lookups, r.would_hit, r.confirmed_same, r.confirmed_different, r.pending),
        (3, 2, 1, 1, 0)
    );
    assert_eq!(r.recent_wrong.len(), 1);
}

/// A seeded generator, so the random set is the same on every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
        v[(self.next() as usize) % v.len()]
    }
}

const OPENERS: &[&str] =
    &["How do I", "Can I", "Where can I", "When can I", "Why can't I", "How long does it take to"];
const VERBS: &[&str] =
    &["cancel", "renew", "update", "change", "transfer", "close", "open", "book", "pay", "order"];
const OBJECTS: &[&str] = &[
    "my subscription",
    "the gym membership",
    "a parking permit",
    "my broadband contract",
    "the savings account",
    "a table reservation",
    "my energy tariff",
    "the hotel booking",
    "a replacement card",
    "my phone plan",
    "the council tax bill",
    "a library card",
    "the car insurance",
    "my pension transfer",
    "a passport renewal",
];
const TAILS: &[&str] =
    &["", " online", " by phone", " this week", " in Leeds", " for my partner", " before Friday"];

fn prompt(rng: &mut Lcg) -> String {
    format!("{} {} {}{}?", rng.pick(OPENERS), rng.pick(VERBS), rng.pick(OBJECTS), rng.pick(TAILS))
}

fn perturb(rng: &mut Lcg, p: &str) -> String {
    let mut words: Vec<String> = p.split(' ').map(str::to_string).collect();
    match rng.next() % 4 {
        0 => {
            // A typo: swap two inner letters of a long word.
            if let Some(w) = words.iter_mut().find(|w| w.len() > 6) {
                let mut c: Vec<char> = w.chars().collect();
                c.swap(2, 3);
                *w = c.into_iter().collect();
            }
        }
        1 => words.insert(0, "Hi,".to_string()),
        2 => {
            let i = (rng.next() as usize) % words.len();
            words[i] = rng.pick(VERBS).to_string();
        }
        _ => return p.to_lowercase(),
    }
    words.join(" ")
}

#[tokio::test]
async fn candidate_index_finds_the_same_best_match_as_a_full_scan() {
    let mut rng = Lcg(0x5eed);
    let s = Scope::for_model("m");
    let c = SimilarityCache::<usize>::builder().build().unwrap();
    let mut stored: Vec<String> = Vec::new();
    while stored.len() < 500 {
        let p = prompt(&mut rng);
        if !stored.iter().any(|q| Analysis::new(q).normalized() == Analysis::new(&p).normalized()) {
            c.insert(&s, &p, stored.len(), None).await.unwrap();
            stored.push(p);
        }
    }
    let analysed: Vec<Analysis> = stored.iter().map(|p| Analysis::new(p)).collect();
    let quick: Vec<String> = analysed.iter().map(Analysis::canonical).collect();
    let guard = Guard::default();
    let (mut hits, mut misses) = (0, 0);
    for _ in 0..120 {
        let base = stored[(rng.next() as usize) % stored.len()].clone();
        let query = perturb(&mut rng, &base);
        let qa = Analysis::new(&query);
        // Full scan: the best stored prompt above the threshold that the guard passes.
        let qlen = qa.canonical().len() as f64;
        let mut best: Option<(f64, usize)> = None;
        for (i, a) in analysed.iter().enumerate() {
            // Cheap bound first: the plain ratio over lengths cannot exceed this.
            let (x, y) = (quick[i].len() as f64, qlen);
            if 2.0 * x.min(y) / (x + y) < 0.80 {
                continue;
            }
            let score = if a.normalized() == qa.normalized() { 2.0 } else { lexical_score(&qa, a) };
            if score >= 0.85 && guard.check(&qa, a).is_ok() && best.is_none_or(|(b, _)| score > b) {
                best = Some((score, i));
            }
        }
        let found = c.lookup(&s, &query).await;
        match (best, found.hit) {
            (None, None) => misses += 1,
            (Some((score, i)), Some(hit)) => {
                hits += 1;
                let got = if hit.exact { 2.0 } else { hit.score.lexical };
                assert!(
                    (got - score).abs() < 1e-9,
                    "{query}: scan {} ({score}) vs index {} ({got})",
                    stored[i],
                    hit.prompt
                );
            }
            (scan, index) => {
                panic!("{query}: scan {scan:?} vs index {:?}", index.map(|h| h.prompt))
            }
        }
    }
    assert!(hits > 40 && misses > 10, "hits {hits} misses {misses}");
}

#[tokio::test]
async fn hash_embedder_candidates_use_cosine_units() {
    let c = SimilarityCache::<String>::builder()
        .embedder(HashEmbedder::new(256))
        .threshold(1.0)
        .cosine_threshold(0.5)
        .build()
        .unwrap();
    let s = Scope::for_model("m");
    c.insert(&s, "How do I reset the password on my work laptop?", "IT portal".into(), None)
        .await
        .unwrap();
    let found = c.lookup(&s, "How do I reset the password on my laptop for work?").await;
    let cand = &found.candidates[0];
    let cos = cand.score.cosine.unwrap();
    assert!((0.5..=1.0).contains(&cos), "{cos}");
    assert!(cand.score.lexical < 1.0);
    assert!(SimilarityCache::<String>::builder().cosine_threshold(1.5).build().is_err());
    assert!(SimilarityCache::<String>::builder().threshold(-0.1).build().is_err());
}

/// The dev half of the labelled data: at the defaults, at most 1% of traps are served
/// (pairs and conversations).
#[tokio::test]
async fn dev_pairs_meet_the_trap_target_at_the_defaults() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/similarity/pairs-dev.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("{}: {e} (the shared data sits beside the repository)", path.display())
    });
    let s = Scope::for_model("m");
    let (mut traps, mut served, mut should, mut correct) = (0, 0, 0, 0);
    for line in text.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        let c = cache();
        c.insert(&s, row["a"].as_str().unwrap(), String::new(), None).await.unwrap();
        let hit = c.lookup(&s, row["b"].as_str().unwrap()).await.hit.is_some();
        if row["same_answer"].as_bool().unwrap() {
            should += 1;
            correct += usize::from(hit);
        } else {
            traps += 1;
            served += usize::from(hit);
        }
    }
    assert!(served * 100 <= traps, "{served} of {traps} traps served");
    assert!(correct * 100 >= should * 35, "{correct} of {should} should-hit pairs served");

    // Conversations: the history is in the scope, so a different history never matches.
    let path = path.with_file_name("conversations-dev.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (mut traps, mut served) = (0, 0);
    for line in text.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        let messages =
            |side: &str| -> Vec<Message> { serde_json::from_value(row[side].clone()).unwrap() };
        let (sa, pa) = Scope::builder().model("m").conversation(&messages("a"));
        let (sb, pb) = Scope::builder().model("m").conversation(&messages("b"));
        let c = cache();
        c.insert(&sa, &pa, String::new(), None).await.unwrap();
        if !row["same_answer"].as_bool().unwrap() {
            traps += 1;
            served += usize::from(c.lookup(&sb, &pb).await.hit.is_some());
        }
    }
    assert!(traps > 0 && served * 100 <= traps, "{served} of {traps} conversation traps served");
}

/// An embedder with one direction per topic (parking, vaccines): prompts on one topic are
/// identical to it, so only the guard decides between them.
#[derive(Debug)]
struct Topics;

#[async_trait]
impl aurelis_cache_similarity::Embedder for Topics {
    fn model_id(&self) -> &str {
        "topics"
    }
    async fn embed(&self, texts: &[&str]) -> aurelis_cache_core::Result<Vec<Vec<f32>>> {
        Ok(texts
            .iter()
            .map(|t| if t.contains("park") { vec![1.0, 0.0] } else { vec![0.0, 1.0] })
            .collect())
    }
}

#[tokio::test]
async fn rewordings_the_embedder_vouches_for_get_the_relaxed_guard_minimal_edits_the_strict_one() {
    let c = SimilarityCache::<String>::builder().embedder(Topics).build().unwrap();
    let s = Scope::for_model("m");
    c.insert(&s, "Do you have parking?", "yes".into(), None).await.unwrap();
    // A rewording (low lexical ratio): other content words are the embedder's business.
    let found = c.lookup(&s, "Is there somewhere to park?").await;
    let hit = found.hit.expect("rewording served");
    assert!(hit.score.lexical < 0.70 && hit.score.cosine == Some(1.0));
    // The hard checks still apply to rewordings.
    assert!(c.lookup(&s, "Is there nowhere to park?").await.hit.is_none());
    // A minimal edit gets the strict guard even though the embedder vouches for it.
    c.insert(&s, "What vaccines does my puppy need?", "puppy".into(), None).await.unwrap();
    let found = c.lookup(&s, "What vaccines does my kitten need?").await;
    assert!(found.hit.is_none());
    assert!(vetoed(&found).contains(&VetoReason::Substitution));
    // Without an embedder the rewording is never a candidate.
    let lexical = cache();
    lexical.insert(&s, "Do you have parking?", "yes".into(), None).await.unwrap();
    assert!(lexical.lookup(&s, "Is there somewhere to park?").await.hit.is_none());
}
