//! The guard: vetoes a candidate that differs from the query in what changes an answer.
//!
//! Real paraphrases are rewordings; wrong answers come from minimal edits (a negation, a
//! number, a name, a qualifier, an antonym, two arguments swapped). The guard compares the
//! two prompts' analyses and vetoes any such edit, saying which one it found.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::text::{Analysis, Token, TokenKind, DATE_WORDS, NEGATION_CUES};

/// Why the guard refused a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum VetoReason {
    /// A negation cue (`not`, `no`, `without`, `stop`, `avoid`...) or a negating prefix
    /// (`un-`, `dis-`, `non-`...) is present in one prompt only.
    Negation,
    /// The numbers, amounts, percentages or clock times differ.
    Number,
    /// The dates, days, months or times of day differ.
    Date,
    /// A name (a capitalised word mid-sentence, an acronym) differs.
    Entity,
    /// A word was replaced by its opposite (`enable`/`disable`, `increase`/`decrease`...).
    Antonym,
    /// A qualifier was added or removed (`gift` vs `gift card`, `flu` vs `flu in babies`).
    Scope,
    /// A content word was replaced by a different one that is not a known synonym.
    Substitution,
    /// The same words fill different roles (`from A to B` vs `from B to A`).
    RoleSwap,
    /// The user's verifier rejected the candidate, failed or timed out.
    Verifier,
}

impl VetoReason {
    /// A short, stable, lowercase name for reports and metrics.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(aurelis_cache_similarity::VetoReason::RoleSwap.as_str(), "role_swap");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            VetoReason::Negation => "negation",
            VetoReason::Number => "number",
            VetoReason::Date => "date",
            VetoReason::Entity => "entity",
            VetoReason::Antonym => "antonym",
            VetoReason::Scope => "scope",
            VetoReason::Substitution => "substitution",
            VetoReason::RoleSwap => "role_swap",
            VetoReason::Verifier => "verifier",
        }
    }
}

/// A guard's refusal: the reason and the words that caused it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Veto {
    /// The kind of difference found.
    pub reason: VetoReason,
    /// The words involved, for a human (`"'unlock' vs 'lock'"`).
    pub detail: String,
}

impl fmt::Display for Veto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason.as_str(), self.detail)
    }
}

impl Veto {
    pub(crate) fn new(reason: VetoReason, detail: impl Into<String>) -> Self {
        Veto { reason, detail: detail.into() }
    }
}

/// The guard. Stateless; [`Guard::check`] compares two analysed prompts.
///
/// # Examples
///
/// ```
/// use aurelis_cache_similarity::{Analysis, Guard, VetoReason};
///
/// let guard = Guard::default();
/// let check = |a: &str, b: &str| guard.check(&Analysis::new(a), &Analysis::new(b));
/// assert_eq!(check("Cancel my subscription", "Don't cancel my subscription").unwrap_err().reason,
///            VetoReason::Negation);
/// assert_eq!(check("Track order 48213", "Track order 48231").unwrap_err().reason, VetoReason::Number);
/// assert_eq!(check("Send the invoice to Sarah", "Send the invoice to Sam").unwrap_err().reason,
///            VetoReason::Entity);
/// assert!(check("How do I change my email adress?", "How can I change my email address?").is_ok());
/// ```
#[derive(Debug, Clone)]
pub struct Guard {
    strict: bool,
}

impl Default for Guard {
    fn default() -> Self {
        Guard::strict()
    }
}

impl Guard {
    /// The default guard: besides negations, numbers, dates, names, opposites and role
    /// swaps, any content word that is not in both prompts (up to typos and listed
    /// synonyms) vetoes the candidate.
    pub fn strict() -> Self {
        Guard { strict: true }
    }

    /// A guard that lets substituted or added content words through and vetoes only
    /// negations, numbers, dates, names, listed opposites and role swaps. Meant for a
    /// semantic embedder followed by a [`Verifier`](crate::Verifier): alone it serves
    /// traps such as `puppy` vs `kitten` (see docs/similarity.md for the measurements).
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_cache_similarity::{Analysis, Guard};
    ///
    /// let (a, b) = (Analysis::new("Do you have parking?"), Analysis::new("Do you have car parking?"));
    /// assert!(Guard::strict().check(&a, &b).is_err());
    /// assert!(Guard::relaxed().check(&a, &b).is_ok());
    /// ```
    pub fn relaxed() -> Self {
        Guard { strict: false }
    }

    /// `Ok(())` when nothing that changes an answer differs between `query` and `candidate`,
    /// otherwise the first difference found.
    pub fn check(&self, query: &Analysis, candidate: &Analysis) -> Result<(), Veto> {
        check_negation(query, candidate)?;
        check_numbers(query, candidate)?;
        check_dates(query, candidate)?;
        check_content(query, candidate, self.strict)?;
        check_roles(query, candidate)?;
        Ok(())
    }
}

fn count<'a>(it: impl Iterator<Item = &'a str>) -> HashMap<&'a str, i32> {
    let mut m = HashMap::new();
    for k in it {
        *m.entry(k).or_insert(0) += 1;
    }
    m
}

fn diff_counts<'a>(a: &HashMap<&'a str, i32>, b: &HashMap<&'a str, i32>) -> Vec<(&'a str, i32)> {
    let mut out: Vec<(&str, i32)> = Vec::new();
    for (k, v) in a {
        let d = v - b.get(k).copied().unwrap_or(0);
        if d != 0 {
            out.push((k, d));
        }
    }
    for (k, v) in b {
        if !a.contains_key(k) {
            out.push((k, -v));
        }
    }
    out.sort();
    out
}

fn describe(diff: &[(&str, i32)]) -> String {
    let q: Vec<_> = diff.iter().filter(|(_, d)| *d > 0).map(|(k, _)| format!("'{k}'")).collect();
    let c: Vec<_> = diff.iter().filter(|(_, d)| *d < 0).map(|(k, _)| format!("'{k}'")).collect();
    match (q.is_empty(), c.is_empty()) {
        (false, false) => format!("{} in query vs {} in candidate", q.join(" "), c.join(" ")),
        (false, true) => format!("{} only in query", q.join(" ")),
        _ => format!("{} only in candidate", c.join(" ")),
    }
}

fn is_negation(t: &Token) -> bool {
    t.kind == TokenKind::Word && NEGATION_CUES.contains(&t.text.as_str())
}

fn check_negation(q: &Analysis, c: &Analysis) -> Result<(), Veto> {
    let qa = count(q.tokens().iter().filter(|t| is_negation(t)).map(|t| t.key.as_str()));
    let ca = count(c.tokens().iter().filter(|t| is_negation(t)).map(|t| t.key.as_str()));
    let diff = diff_counts(&qa, &ca);
    if diff.is_empty() {
        Ok(())
    } else {
        Err(Veto::new(VetoReason::Negation, describe(&diff)))
    }
}

fn is_number(t: &Token) -> bool {
    matches!(t.kind, TokenKind::Number | TokenKind::Time | TokenKind::Symbol)
}

fn check_numbers(q: &Analysis, c: &Analysis) -> Result<(), Veto> {
    let qa = count(q.tokens().iter().filter(|t| is_number(t)).map(|t| t.key.as_str()));
    let ca = count(c.tokens().iter().filter(|t| is_number(t)).map(|t| t.key.as_str()));
    let diff = diff_counts(&qa, &ca);
    if diff.is_empty() {
        Ok(())
    } else {
        Err(Veto::new(VetoReason::Number, describe(&diff)))
    }
}

fn is_date(t: &Token) -> bool {
    t.kind == TokenKind::Word
        && DATE_WORDS.contains(&t.text.as_str())
        && (t.name_like || !matches!(t.text.as_str(), "may" | "march" | "fall"))
}

fn check_dates(q: &Analysis, c: &Analysis) -> Result<(), Veto> {
    let qa = count(q.tokens().iter().filter(|t| is_date(t)).map(|t| t.key.as_str()));
    let ca = count(c.tokens().iter().filter(|t| is_date(t)).map(|t| t.key.as_str()));
    let diff = diff_counts(&qa, &ca);
    if diff.is_empty() {
        Ok(())
    } else {
        Err(Veto::new(VetoReason::Date, describe(&diff)))
    }
}

/// Content words compared as sets, tolerating typos; what is left over explains the veto.
fn check_content(q: &Analysis, c: &Analysis, strict: bool) -> Result<(), Veto> {
    let considered =
        |t: &&Token| t.content && t.kind == TokenKind::Word && !is_negation(t) && !is_date(t);
    let qs: Vec<&Token> = dedup(q.tokens().iter().filter(considered).collect());
    let cs: Vec<&Token> = dedup(c.tokens().iter().filter(considered).collect());
    let mut q_left: Vec<&Token> = Vec::new();
    let mut c_used = vec![false; cs.len()];
    for qt in &qs {
        if let Some(i) = cs.iter().position(|ct| ct.key == qt.key) {
            c_used[i] = true;
        } else {
            q_left.push(qt);
        }
    }
    let mut c_left: Vec<&Token> =
        cs.iter().zip(&c_used).filter(|(_, u)| !**u).map(|(t, _)| *t).collect();
    // Typos: pair what is left when the two words are one or two edits apart. Names are
    // never typos of each other ("Sara" and "Sarah" may be two people).
    q_left.retain(|qt| {
        let typo = |ct: &&Token| !qt.name_like && !ct.name_like && is_typo(&qt.text, &ct.text);
        if let Some(i) = c_left.iter().position(typo) {
            c_left.remove(i);
            false
        } else {
            true
        }
    });
    if q_left.is_empty() && c_left.is_empty() {
        return Ok(());
    }
    // Explain: opposites first, then names, then substitutions, then additions.
    for qt in &q_left {
        for ct in &c_left {
            if let Some(reason) = opposite(&qt.text, &ct.text) {
                return Err(Veto::new(reason, format!("'{}' vs '{}'", qt.text, ct.text)));
            }
        }
    }
    let words =
        |v: &[&Token]| v.iter().map(|t| format!("'{}'", t.text)).collect::<Vec<_>>().join(" ");
    if let Some(t) = q_left.iter().chain(c_left.iter()).find(|t| t.name_like) {
        return Err(Veto::new(
            VetoReason::Entity,
            format!("name '{}' differs ({} vs {})", t.text, words(&q_left), words(&c_left)),
        ));
    }
    if !strict {
        return Ok(());
    }
    if !q_left.is_empty() && !c_left.is_empty() {
        return Err(Veto::new(
            VetoReason::Substitution,
            format!("{} in query vs {} in candidate", words(&q_left), words(&c_left)),
        ));
    }
    if q_left.is_empty() {
        Err(Veto::new(VetoReason::Scope, format!("{} only in candidate", words(&c_left))))
    } else {
        Err(Veto::new(VetoReason::Scope, format!("{} only in query", words(&q_left))))
    }
}

fn dedup(mut v: Vec<&Token>) -> Vec<&Token> {
    let mut seen = std::collections::HashSet::new();
    v.retain(|t| seen.insert(t.key.clone()));
    v
}

/// Prepositions whose objects give the arguments their roles.
const ROLE_WORDS: &[&str] =
    &["from", "to", "into", "onto", "than", "vs", "versus", "over", "under", "after", "before"];

/// `from A to B` vs `from B to A`: the word following each role word must agree.
fn check_roles(q: &Analysis, c: &Analysis) -> Result<(), Veto> {
    for role in ROLE_WORDS {
        let qo = objects(q, role);
        let co = objects(c, role);
        if qo.is_empty() || co.is_empty() {
            continue;
        }
        let agree = qo.iter().any(|a| co.iter().any(|b| a == b || is_typo(a, b)));
        if !agree {
            return Err(Veto::new(
                VetoReason::RoleSwap,
                format!("'{role} {}' vs '{role} {}'", qo.join("/"), co.join("/")),
            ));
        }
    }
    Ok(())
}

fn objects(a: &Analysis, role: &str) -> Vec<String> {
    let toks = a.tokens();
    let mut out = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        if t.text == role {
            if let Some(o) = toks[i + 1..].iter().take(4).find(|t| t.content) {
                out.push(o.key.clone());
            }
        }
    }
    out
}

/// Two spellings of one word: same first letter, both at least four letters, no digits, and
/// at most one edit (two for words of eight letters or more), counting a swap of two
/// neighbouring letters as one edit.
pub(crate) fn is_typo(a: &str, b: &str) -> bool {
    let (ac, bc): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if ac.len() < 4 || bc.len() < 4 || ac[0] != bc[0] {
        return false;
    }
    if ac.iter().chain(&bc).any(|c| c.is_ascii_digit()) {
        return false;
    }
    let limit = if ac.len().min(bc.len()) >= 8 { 2 } else { 1 };
    damerau(&ac, &bc) <= limit && opposite(a, b).is_none()
}

fn damerau(a: &[char], b: &[char]) -> usize {
    let (n, m) = (a.len(), b.len());
    if n.abs_diff(m) > 2 {
        return 3;
    }
    let mut d = vec![vec![0usize; m + 1]; n + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=n {
        for j in 1..=m {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[n][m]
}

const NEGATING_PREFIXES: &[&str] =
    &["un", "dis", "non", "non-", "in", "im", "il", "ir", "de", "anti", "mis"];

/// Common English opposites. Substitutions are vetoed anyway; this table names the reason
/// and keeps short function-like opposites (`on`/`off`) from passing as typos.
const OPPOSITES: &[(&str, &str)] = &[
    ("on", "off"),
    ("in", "out"),
    ("up", "down"),
    ("open", "close"),
    ("open", "closed"),
    ("enable", "disable"),
    ("add", "remove"),
    ("increase", "decrease"),
    ("increase", "reduce"),
    ("more", "less"),
    ("more", "fewer"),
    ("most", "least"),
    ("high", "low"),
    ("higher", "lower"),
    ("highest", "lowest"),
    ("before", "after"),
    ("under", "over"),
    ("above", "below"),
    ("accept", "decline"),
    ("accept", "reject"),
    ("approve", "reject"),
    ("approved", "rejected"),
    ("allow", "ban"),
    ("allowed", "banned"),
    ("allow", "prohibit"),
    ("pass", "fail"),
    ("include", "exclude"),
    ("included", "excluded"),
    ("start", "stop"),
    ("pause", "resume"),
    ("grant", "revoke"),
    ("buy", "sell"),
    ("send", "receive"),
    ("import", "export"),
    ("upload", "download"),
    ("join", "leave"),
    ("enrol", "withdraw"),
    ("deposit", "withdraw"),
    ("credit", "debit"),
    ("win", "lose"),
    ("hot", "cold"),
    ("spicy", "mild"),
    ("compulsory", "optional"),
    ("mandatory", "optional"),
    ("required", "optional"),
    ("benefit", "drawback"),
    ("benefits", "drawbacks"),
    ("advantage", "disadvantage"),
    ("pros", "cons"),
    ("best", "worst"),
    ("cheapest", "dearest"),
    ("first", "last"),
    ("early", "late"),
    ("earliest", "latest"),
    ("minimum", "maximum"),
    ("min", "max"),
    ("public", "private"),
    ("free", "paid"),
    ("lock", "unlock"),
    ("arrive", "depart"),
    ("arrival", "departure"),
    ("inbound", "outbound"),
    ("upgrade", "downgrade"),
    ("eat", "avoid"),
    ("take", "avoid"),
    ("same", "different"),
    ("same", "next"),
    ("next", "previous"),
    ("left", "right"),
    ("true", "false"),
    ("yes", "no"),
    ("safe", "unsafe"),
    ("easy", "hard"),
    ("popular", "unpopular"),
    ("legal", "illegal"),
    ("possible", "impossible"),
    ("full", "empty"),
    ("mute", "unmute"),
    ("archive", "unarchive"),
    ("like", "dislike"),
    ("agree", "disagree"),
    ("connect", "disconnect"),
    ("subscribe", "unsubscribe"),
    ("follow", "unfollow"),
    ("block", "unblock"),
    ("freeze", "unfreeze"),
    ("install", "uninstall"),
    ("encrypt", "decrypt"),
    ("import", "export"),
    ("inside", "outside"),
    ("internal", "external"),
    ("domestic", "international"),
    ("domestic", "long-haul"),
    ("short-haul", "long-haul"),
    ("adult", "child"),
    ("member", "non-member"),
    ("employed", "self-employed"),
    ("resident", "visitor"),
    ("online", "offline"),
    ("online", "paper"),
    ("online", "in-store"),
    ("home", "abroad"),
    ("permanent", "temporary"),
    ("single", "return"),
    ("full-time", "part-time"),
    ("old", "new"),
    ("oldest", "newest"),
    ("long", "short"),
    ("fixed", "variable"),
    ("gross", "net"),
    ("profit", "loss"),
    ("income", "expense"),
    ("maximum", "minimum"),
    ("more", "fewer"),
    ("increased", "decreased"),
    ("raise", "lower"),
];

/// `Some(reason)` when `a` and `b` are opposites: a negating prefix or a listed pair.
pub(crate) fn opposite(a: &str, b: &str) -> Option<VetoReason> {
    for (x, y) in [(a, b), (b, a)] {
        for p in NEGATING_PREFIXES {
            if let Some(rest) = y.strip_prefix(p) {
                let near = rest.len() >= 4
                    && x.len() >= 4
                    && x.is_ascii()
                    && rest.starts_with(&x[..x.len() - 1]);
                if rest == x || near {
                    return Some(VetoReason::Negation);
                }
            }
        }
    }
    static PAIRS: std::sync::OnceLock<std::collections::HashSet<(String, String)>> =
        std::sync::OnceLock::new();
    let pairs = PAIRS.get_or_init(|| {
        let mut set = std::collections::HashSet::new();
        for (x, y) in OPPOSITES {
            let (kx, ky) = (crate::text::canonical_key(x), crate::text::canonical_key(y));
            set.insert((kx.clone(), ky.clone()));
            set.insert((ky, kx));
        }
        set
    });
    if pairs.contains(&(crate::text::canonical_key(a), crate::text::canonical_key(b))) {
        return Some(VetoReason::Antonym);
    }
    // increase/decrease, upgrade/downgrade, inbound/outbound: same stem, opposite heads.
    for (x, y) in [("in", "de"), ("up", "down"), ("in", "out"), ("over", "under"), ("pre", "post")]
    {
        for (u, v) in [(a, b), (b, a)] {
            if let (Some(r1), Some(r2)) = (u.strip_prefix(x), v.strip_prefix(y)) {
                if r1 == r2 && r1.len() >= 3 {
                    return Some(VetoReason::Antonym);
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn veto(a: &str, b: &str) -> Option<VetoReason> {
        Guard::default().check(&Analysis::new(a), &Analysis::new(b)).err().map(|v| v.reason)
    }

    #[test]
    fn vetoes_answer_changing_edits() {
        use VetoReason::*;
        let cases = [
            ("Cancel my subscription", "Don't cancel my subscription", Negation),
            ("How do I lock my card?", "How do I unlock my card?", Negation),
            ("How do I enable dark mode?", "How do I disable dark mode?", Antonym),
            (
                "Which council tax bands have increased?",
                "Which council tax bands have decreased?",
                Antonym,
            ),
            ("Track order 48213", "Track order 48231", Number),
            ("Remind me at 7am", "Remind me at 7pm", Number),
            ("Are you open on Saturday?", "Are you open on Sunday?", Date),
            ("Who is the CEO of Microsoft?", "Who is the CEO of Apple?", Entity),
            ("How do I get a refund on a gift?", "How do I get a refund on a gift card?", Scope),
            (
                "What vaccines does my puppy need?",
                "What vaccines does my kitten need?",
                Substitution,
            ),
            (
                "Transfer £50 from my savings to my current account",
                "Transfer £50 from my current account to my savings",
                RoleSwap,
            ),
            (
                "How do I turn on two-factor authentication?",
                "How do I turn off two-factor authentication?",
                Antonym,
            ),
        ];
        for (a, b, want) in cases {
            assert_eq!(veto(a, b), Some(want), "{a} / {b}");
        }
    }

    #[test]
    fn lets_rewordings_through() {
        for (a, b) in [
            (
                "How do I change the email address on my account?",
                "How do I chnage the email adress on my acount?",
            ),
            (
                "Is there a discount for students on train tickets?",
                "On train tickets, is there a discount for students?",
            ),
            ("How do I order a new debit card?", "How can I order a new debit card?"),
            ("How do I find my nearest store?", "How do I find my nearest shop?"),
            ("Do you have a table for 2 at 7pm?", "Do you have a table for two at 7pm?"),
        ] {
            assert_eq!(veto(a, b), None, "{a} / {b}");
        }
    }

    #[test]
    fn typos_need_the_same_first_letter_and_few_edits() {
        assert!(is_typo("address", "adress"));
        assert!(is_typo("change", "chnage"));
        assert!(!is_typo("lock", "unlock"));
        assert!(!is_typo("sunday", "monday"));
        assert!(!is_typo("increased", "decreased"));
        assert!(!is_typo("48213", "48231"));
    }
}
