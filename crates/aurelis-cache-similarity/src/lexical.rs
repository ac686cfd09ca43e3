//! The lexical scorer (rapidfuzz's indel ratio, as difflib's) and the inverted index that
//! keeps a lookup from scoring every stored prompt.

use std::collections::HashMap;

use crate::text::Analysis;

/// The lexical similarity of two analysed prompts, in `[0, 1]`.
///
/// The larger of rapidfuzz's `ratio` (the normalised indel similarity, which is what
/// difflib's `SequenceMatcher.ratio` approximates) over the canonical texts, and the same
/// ratio over their words sorted (so a moved clause, "On the menu, what vegan options do you
/// have?", still scores high; the guard catches arguments that swapped roles).
///
/// # Examples
///
/// ```
/// use aurelis_cache_similarity::{lexical_score, Analysis};
///
/// let s = |a: &str, b: &str| lexical_score(&Analysis::new(a), &Analysis::new(b));
/// assert_eq!(s("Do you accept Apple Pay?", "do you accept apple pay"), 1.0);
/// assert!(s("What vegan options do you have on the menu?", "On the menu, what vegan options do you have?") > 0.95);
/// assert!(s("How do I reset my password?", "Where is the nearest station?") < 0.6);
/// ```
pub fn lexical_score(query: &Analysis, candidate: &Analysis) -> f64 {
    let (qc, cc) = (query.canonical(), candidate.canonical());
    score_texts(&qc, &sorted_words(&qc), &cc, &sorted_words(&cc))
}

pub(crate) fn score_texts(q: &str, q_sorted: &str, c: &str, c_sorted: &str) -> f64 {
    let plain = rapidfuzz::fuzz::ratio(q.chars(), c.chars());
    if plain >= 1.0 {
        return plain;
    }
    plain.max(rapidfuzz::fuzz::ratio(q_sorted.chars(), c_sorted.chars()))
}

pub(crate) fn sorted_words(text: &str) -> String {
    let mut words: Vec<&str> = text.split(' ').collect();
    words.sort_unstable();
    words.join(" ")
}

/// Slot number of an entry in the cache's slab.
pub(crate) type Slot = u32;

/// An inverted index from (scope, content key) to the slots holding it.
///
/// A lookup counts, for every stored prompt of the scope that shares at least one content
/// key with the query, how many it shares, and only the best-ranked few are scored. The
/// guard only ever passes a candidate that shares the query's content words (up to typos),
/// so a candidate the guard would pass is not lost unless every one of its content words
/// is misspelt.
#[derive(Debug, Default)]
pub(crate) struct LexicalIndex {
    vocab: HashMap<Box<str>, u32>,
    postings: HashMap<(u64, u32), Vec<Slot>>,
    /// Prompts with no content word (rare: "what is it?"), per scope: scanned linearly.
    bare: HashMap<u64, Vec<Slot>>,
}

impl LexicalIndex {
    pub(crate) fn insert(&mut self, scope: u64, slot: Slot, keys: &[String]) {
        if keys.is_empty() {
            self.bare.entry(scope).or_default().push(slot);
            return;
        }
        let mut seen: Vec<u32> = Vec::with_capacity(keys.len());
        for k in keys {
            let next = self.vocab.len() as u32;
            let id = *self.vocab.entry(k.as_str().into()).or_insert(next);
            if !seen.contains(&id) {
                seen.push(id);
                self.postings.entry((scope, id)).or_default().push(slot);
            }
        }
    }

    /// The best `limit` candidate slots for `keys` in `scope`, best first, skipping dead
    /// slots. `size(slot)` gives a slot's number of distinct content keys, used to prefer
    /// candidates whose content is the query's and not a superset of it.
    pub(crate) fn candidates(
        &self,
        scope: u64,
        keys: &[String],
        limit: usize,
        live: impl Fn(Slot) -> Option<usize>,
    ) -> Vec<Slot> {
        let mut ids: Vec<u32> =
            keys.iter().filter_map(|k| self.vocab.get(k.as_str()).copied()).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut counts: HashMap<Slot, u32> = HashMap::new();
        for id in &ids {
            if let Some(list) = self.postings.get(&(scope, *id)) {
                for &slot in list {
                    *counts.entry(slot).or_insert(0) += 1;
                }
            }
        }
        if let Some(list) = self.bare.get(&scope) {
            for &slot in list {
                counts.entry(slot).or_insert(0);
            }
        }
        let mut distinct = keys.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        let qn = distinct.len() as i64;
        let mut ranked: Vec<(u32, u64, Slot)> = counts
            .into_iter()
            .filter_map(|(slot, shared)| {
                let size = live(slot)? as i64;
                Some((shared, (size - qn).unsigned_abs(), slot))
            })
            .collect();
        let by_rank = |a: &(u32, u64, Slot), b: &(u32, u64, Slot)| {
            b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2))
        };
        if ranked.len() > limit {
            ranked.select_nth_unstable_by(limit, by_rank);
            ranked.truncate(limit);
        }
        ranked.sort_unstable_by(by_rank);
        ranked.into_iter().map(|(_, _, s)| s).collect()
    }

    /// Drops every posting of a slot that `live` rejects (compaction).
    pub(crate) fn retain(&mut self, live: impl Fn(Slot) -> bool) {
        for list in self.postings.values_mut() {
            list.retain(|s| live(*s));
        }
        self.postings.retain(|_, l| !l.is_empty());
        for list in self.bare.values_mut() {
            list.retain(|s| live(*s));
        }
        self.bare.retain(|_, l| !l.is_empty());
    }

    /// Bytes held by the index structures (not the entries), approximately.
    pub(crate) fn approx_bytes(&self) -> usize {
        let vocab: usize = self.vocab.keys().map(|k| k.len() + 16 + 4 + 8).sum();
        let postings: usize = self.postings.values().map(|l| l.capacity() * 4 + 24 + 12 + 8).sum();
        let bare: usize = self.bare.values().map(|l| l.capacity() * 4 + 32).sum();
        vocab + postings + bare
    }
}
