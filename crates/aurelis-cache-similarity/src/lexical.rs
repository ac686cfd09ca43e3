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
/// A lookup starts from the stored prompts of the scope holding either of the query's two
/// rarest content keys, narrows them with the next-rarest keys (sorted posting lists,
/// galloping search) while more than the candidate limit remain, allowing each candidate
/// to lack one key (a typo), ranks the rest by the keys they share, and scores only the
/// best few. The guard only passes a candidate that holds every content word of the query
/// (up to typos), so a candidate the guard would pass is lost only when two of its content
/// words are misspelt.
#[derive(Debug, Default)]
pub(crate) struct LexicalIndex {
    vocab: HashMap<Box<str>, u32>,
    postings: HashMap<(u64, u32), Vec<Slot>>,
    /// The sorted key ids of each slot.
    slot_keys: Vec<Box<[u32]>>,
    /// Prompts with no content word (rare: "what is it?"), per scope: scanned linearly.
    bare: HashMap<u64, Vec<Slot>>,
}

impl LexicalIndex {
    pub(crate) fn insert(&mut self, scope: u64, slot: Slot, keys: &[String]) {
        let mut ids: Vec<u32> = Vec::with_capacity(keys.len());
        for k in keys {
            let next = self.vocab.len() as u32;
            let id = *self.vocab.entry(k.as_str().into()).or_insert(next);
            if !ids.contains(&id) {
                ids.push(id);
                let list = self.postings.entry((scope, id)).or_default();
                // Posting lists stay sorted (slots are reused after compaction).
                match list.last() {
                    Some(&last) if last > slot => {
                        let at = list.partition_point(|&s| s < slot);
                        list.insert(at, slot);
                    }
                    _ => list.push(slot),
                }
            }
        }
        ids.sort_unstable();
        if self.slot_keys.len() <= slot as usize {
            self.slot_keys.resize(slot as usize + 1, Box::default());
        }
        if ids.is_empty() {
            self.bare.entry(scope).or_default().push(slot);
        }
        self.slot_keys[slot as usize] = ids.into_boxed_slice();
    }

    /// The best `limit` candidate slots for `keys` in `scope`, best first. `live(slot)` is
    /// false for removed, expired or foreign-scope slots.
    pub(crate) fn candidates(
        &self,
        scope: u64,
        keys: &[String],
        limit: usize,
        live: impl Fn(Slot) -> bool,
    ) -> Vec<Slot> {
        let mut ids: Vec<u32> =
            keys.iter().filter_map(|k| self.vocab.get(k.as_str()).copied()).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut lists: Vec<&[Slot]> = ids
            .iter()
            .filter_map(|id| self.postings.get(&(scope, *id)).map(Vec::as_slice))
            .collect();
        lists.sort_by_key(|l| l.len());
        // (slot, number of probed keys it lacks): the union of the two rarest lists, then
        // narrowed by each next-rarest list while more than `limit` remain, tolerating one
        // missing key (a typo) per candidate.
        let mut cur: Vec<(Slot, u32)> = match lists.as_slice() {
            [] => Vec::new(),
            [only] => only.iter().map(|&s| (s, 0)).collect(),
            [a, b, ..] => union(a, b),
        };
        for list in lists.iter().skip(2) {
            if cur.len() <= limit {
                break;
            }
            let mut next = Vec::with_capacity(cur.len());
            let mut pos = 0;
            for &(slot, missing) in &cur {
                let (p, found) = gallop(list, pos, slot);
                pos = p;
                if found {
                    next.push((slot, missing));
                } else if missing == 0 {
                    next.push((slot, 1));
                }
            }
            if next.is_empty() {
                break;
            }
            cur = next;
        }
        if let Some(list) = self.bare.get(&scope) {
            cur.extend(list.iter().map(|&s| (s, u32::MAX)));
        }
        // Keep the least-missing few, then rank those by the keys they share in full and by
        // how close their size is to the query's (a superset ranks below an equal set).
        let keep = limit.saturating_mul(4);
        if cur.len() > keep {
            cur.select_nth_unstable_by_key(keep, |&(s, m)| (m, s));
            cur.truncate(keep);
        }
        let qn = ids.len();
        let mut ranked: Vec<(usize, usize, Slot)> = cur
            .into_iter()
            .map(|(slot, _)| {
                let theirs = &self.slot_keys[slot as usize];
                (shared(&ids, theirs), theirs.len().abs_diff(qn), slot)
            })
            .collect();
        let by_rank = |a: &(usize, usize, Slot), b: &(usize, usize, Slot)| {
            b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2))
        };
        ranked.sort_unstable_by(by_rank);
        ranked.into_iter().map(|(_, _, s)| s).filter(|s| live(*s)).take(limit).collect()
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
        let slot_keys: usize = self.slot_keys.iter().map(|k| 16 + k.len() * 4).sum();
        vocab + postings + bare + slot_keys
    }
}

/// Size of the intersection of two sorted id lists.
fn shared(a: &[u32], b: &[u32]) -> usize {
    let (mut i, mut j, mut n) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                n += 1;
                i += 1;
                j += 1;
            }
        }
    }
    n
}

/// The union of two sorted lists: slots in both lack nothing, slots in one lack one key.
fn union(a: &[Slot], b: &[Slot]) -> Vec<(Slot, u32)> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(&x), Some(&y)) if x == y => {
                out.push((x, 0));
                i += 1;
                j += 1;
            }
            (Some(&x), Some(&y)) if x < y => {
                out.push((x, 1));
                i += 1;
            }
            (Some(&x), None) => {
                out.push((x, 1));
                i += 1;
            }
            (_, Some(&y)) => {
                out.push((y, 1));
                j += 1;
            }
            (None, None) => break,
        }
    }
    out
}

/// Finds `target` in the sorted `list` from position `from` on (exponential then binary
/// search): the position to resume from and whether it is there.
fn gallop(list: &[Slot], from: usize, target: Slot) -> (usize, bool) {
    let mut lo = from;
    let mut step = 1;
    while lo + step < list.len() && list[lo + step] < target {
        lo += step;
        step *= 2;
    }
    let hi = (lo + step + 1).min(list.len());
    if lo >= hi {
        return (lo, false);
    }
    match list[lo..hi].binary_search(&target) {
        Ok(i) => (lo + i, true),
        Err(i) => (lo + i, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gallop_and_union() {
        let list = [1, 3, 5, 7, 9, 11, 13, 15, 17];
        assert_eq!(gallop(&list, 0, 13), (6, true));
        assert_eq!(gallop(&list, 2, 6), (3, false));
        assert_eq!(gallop(&list, 0, 99), (9, false));
        assert_eq!(gallop(&list, 9, 1), (9, false));
        assert_eq!(union(&[1, 2, 4], &[2, 3]), vec![(1, 1), (2, 0), (3, 1), (4, 1)]);
    }
}
