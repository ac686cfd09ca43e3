//! Deterministic synthetic prompts, for benchmarks and load tests of the similarity index:
//! prompts built from a small vocabulary with a seeded generator (every run with the same
//! seed stores the same prompts), and queries that mix near repeats (a greeting, a typo), one-
//! word edits the guard must refuse, and new prompts.
//!
//! # Examples
//!
//! ```
//! use aurelis_cache_similarity::synthetic::{prompt, query, Lcg};
//! let (mut a, mut b) = (Lcg::new(7), Lcg::new(7));
//! let stored = vec![prompt(&mut a)];
//! assert_eq!(stored[0], prompt(&mut b));
//! assert!(!query(&mut a, &stored).is_empty());
//! ```

/// A seeded generator (64-bit LCG), so every run produces the same prompts.
#[derive(Clone, Debug)]
pub struct Lcg(u64);

impl Lcg {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Lcg(seed)
    }
    fn next(&mut self) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) as usize
    }
    fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
        v[self.next() % v.len()]
    }
}

const OPENERS: &[&str] = &[
    "How do I",
    "Can I",
    "Where can I",
    "When can I",
    "Why can't I",
    "Is it possible to",
    "What do I need to",
    "Who do I contact to",
    "How long does it take to",
    "How much does it cost to",
];
const VERBS: &[&str] = &[
    "cancel",
    "renew",
    "update",
    "change",
    "transfer",
    "close",
    "open",
    "book",
    "pay for",
    "order",
    "return",
    "upgrade",
    "downgrade",
    "pause",
    "resume",
    "report",
    "replace",
    "register",
    "claim",
    "split",
    "share",
    "move",
    "freeze",
    "unlock",
    "reset",
    "extend",
    "reduce",
    "increase",
    "check",
    "track",
];
const ADJECTIVES: &[&str] = &[
    "",
    "",
    "",
    "new",
    "old",
    "second",
    "joint",
    "business",
    "student",
    "family",
    "annual",
    "monthly",
    "premium",
    "basic",
    "international",
    "local",
    "shared",
    "backup",
    "spare",
    "temporary",
];
const NOUNS: &[&str] = &[
    "subscription",
    "gym membership",
    "parking permit",
    "broadband contract",
    "savings account",
    "table reservation",
    "energy tariff",
    "hotel booking",
    "debit card",
    "phone plan",
    "council tax bill",
    "library card",
    "car insurance",
    "pension",
    "passport",
    "driving licence",
    "tenancy agreement",
    "mortgage",
    "credit limit",
    "direct debit",
    "standing order",
    "delivery slot",
    "meter reading",
    "prescription",
    "appointment",
    "train ticket",
    "season ticket",
    "flight",
    "seat",
    "baggage allowance",
    "refund",
    "invoice",
    "password",
    "email address",
    "home address",
    "phone number",
    "API key",
    "workspace",
    "project",
    "repository",
    "deployment",
    "domain",
    "SSL certificate",
    "mailbox",
    "calendar",
    "meeting room",
    "locker",
    "bike",
    "charger",
    "router",
    "boiler service",
    "window repair",
    "bin collection",
    "school place",
    "nursery place",
    "blue badge",
    "tax return",
    "payslip",
    "expense claim",
    "holiday request",
];
const TAILS: &[&str] = &[
    "",
    "",
    "",
    " online",
    " by phone",
    " this week",
    " before Friday",
    " for my partner",
    " for my son",
    " in Leeds",
    " in Bristol",
    " in Glasgow",
    " from abroad",
    " after the deadline",
    " without a fee",
    " on the app",
    " at the branch",
    " next month",
    " for two people",
    " for 12 months",
];

/// A new prompt.
pub fn prompt(rng: &mut Lcg) -> String {
    let adjective = rng.pick(ADJECTIVES);
    let space = if adjective.is_empty() { "" } else { " " };
    let number = if rng.next().is_multiple_of(4) {
        format!(" number {}", rng.next() % 10_000)
    } else {
        String::new()
    };
    format!(
        "{} {} my {adjective}{space}{}{number}{}?",
        rng.pick(OPENERS),
        rng.pick(VERBS),
        rng.pick(NOUNS),
        rng.pick(TAILS)
    )
}

/// A query against `stored` prompts: a near repeat, a one-word edit or a new prompt.
pub fn query(rng: &mut Lcg, stored: &[String]) -> String {
    let base = &stored[rng.next() % stored.len()];
    match rng.next() % 4 {
        0 => format!("Hi, {} Thanks!", base.to_lowercase()),
        1 => base.replacen("my", "my my", 1).replacen("the", "teh", 1),
        2 => {
            let (from, to) = (rng.pick(VERBS), rng.pick(VERBS));
            base.replacen(from, to, 1)
        }
        _ => prompt(rng),
    }
}
