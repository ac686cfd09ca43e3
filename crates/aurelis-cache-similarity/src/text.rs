//! Text normalisation and analysis: the one place a prompt becomes tokens.
//!
//! Normalisation is deliberately conservative: it removes what never changes an answer
//! (case, punctuation, spacing, greetings, fillers, thanks, contractions, number words) and
//! keeps everything else. The analysis then marks each token with what the guard needs:
//! its kind (word, number, time), whether it carries content, whether it looked like a
//! name in the original text, and a canonical key (light stemming and a small synonym table).

use std::fmt;

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenKind {
    /// A word (letters, possibly with inner hyphens).
    Word,
    /// A number, with digit separators removed and number words turned into digits.
    Number,
    /// A clock time such as `7pm` or `9:15`.
    Time,
    /// A currency or percent sign.
    Symbol,
}

/// One token of an analysed prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The normalised surface form (lowercase).
    pub text: String,
    /// The canonical key used for matching (stemmed, synonyms folded).
    pub key: String,
    /// What the token is.
    pub kind: TokenKind,
    /// `false` for function words (articles, auxiliaries, pronouns, most prepositions).
    pub content: bool,
    /// The word looked like a name in the original text (capitalised mid-sentence or an acronym).
    pub name_like: bool,
}

/// A prompt after normalisation: its normalised text and its tokens.
///
/// # Examples
///
/// ```
/// use aurelis_cache_similarity::Analysis;
///
/// let a = Analysis::new("Hi, quick question: how can I reset my password? Thanks!");
/// let b = Analysis::new("how do i reset my password");
/// assert_eq!(a.normalized(), b.normalized());
/// assert_eq!(Analysis::new("Don't cancel it").normalized(), "do not cancel it");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Analysis {
    normalized: String,
    tokens: Vec<Token>,
}

impl fmt::Debug for Analysis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Analysis").field("normalized", &self.normalized).finish()
    }
}

impl Analysis {
    /// Normalises and analyses `text`.
    pub fn new(text: &str) -> Self {
        let raw = raw_tokens(text);
        let mut tokens = Vec::with_capacity(raw.len());
        for (surface, name_like) in raw {
            push_expanded(&mut tokens, &surface, name_like);
        }
        strip_fillers(&mut tokens);
        canonicalise_questions(&mut tokens);
        let normalized = tokens.iter().map(|t| t.text.as_str()).collect::<Vec<_>>().join(" ");
        Analysis { normalized, tokens }
    }

    /// The normalised text: lowercase words separated by single spaces, no punctuation.
    pub fn normalized(&self) -> &str {
        &self.normalized
    }

    /// The tokens, in order.
    pub fn tokens(&self) -> &[Token] {
        &self.tokens
    }

    /// The canonical text: the token keys in order (stems, folded synonyms).
    pub fn canonical(&self) -> String {
        self.tokens.iter().map(|t| t.key.as_str()).collect::<Vec<_>>().join(" ")
    }

    /// The canonical keys of the content tokens, in order.
    pub fn content_keys(&self) -> impl Iterator<Item = &str> {
        self.tokens.iter().filter(|t| t.content).map(|t| t.key.as_str())
    }
}

/// Splits the original text into lowercase surface words, noting which looked like names.
fn raw_tokens(text: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut sentence_start = true;
    let mut word_start_is_sentence = true;
    let flush = |current: &mut String, out: &mut Vec<(String, bool)>, at_start: bool| {
        if current.is_empty() {
            return;
        }
        let trimmed =
            current.trim_matches(|c| c == '-' || c == '\'' || c == '.' || c == ',' || c == ':');
        if !trimmed.is_empty() {
            let first_upper = trimmed.chars().next().is_some_and(char::is_uppercase);
            let upper_count = trimmed.chars().filter(|c| c.is_uppercase()).count();
            let letters = trimmed.chars().filter(|c| c.is_alphabetic()).count();
            let acronym = upper_count >= 2 && letters >= 2 && upper_count * 2 > letters;
            let inner_upper = trimmed.chars().skip(1).any(char::is_uppercase);
            let name_like = (first_upper && !at_start) || acronym || inner_upper;
            out.push((trimmed.to_lowercase(), name_like));
        }
        current.clear();
    };
    let chars: Vec<char> = text.chars().collect();
    for (i, &c0) in chars.iter().enumerate() {
        let c = match c0 {
            '\u{2019}' | '\u{2018}' | '`' => '\'',
            '\u{2013}' | '\u{2014}' => ' ',
            other => other,
        };
        let next = chars.get(i + 1).copied().unwrap_or(' ');
        let prev = if i > 0 { chars[i - 1] } else { ' ' };
        let keep = c.is_alphanumeric()
            || (c == '\'' && prev.is_alphanumeric() && next.is_alphanumeric())
            || (c == '-' && prev.is_alphanumeric() && next.is_alphanumeric())
            || ((c == '.' || c == ',' || c == ':')
                && prev.is_ascii_digit()
                && next.is_ascii_digit());
        if keep {
            if current.is_empty() {
                word_start_is_sentence = sentence_start;
            }
            current.push(c);
            sentence_start = false;
        } else {
            flush(&mut current, &mut out, word_start_is_sentence);
            match c {
                '£' | '$' | '€' | '%' => out.push((c.to_string(), false)),
                '.' | '?' | '!' | ':' | ';' | '\n' => sentence_start = true,
                _ => {}
            }
        }
    }
    flush(&mut current, &mut out, word_start_is_sentence);
    out
}

/// Expands contractions, splits numbers from units and pushes analysed tokens.
fn push_expanded(tokens: &mut Vec<Token>, surface: &str, name_like: bool) {
    // Contractions and possessives.
    if let Some((head, tail)) = surface.split_once('\'') {
        match tail {
            "t" if head.ends_with('n') => {
                let base = match head {
                    "won" => "will",
                    "can" => "can",
                    "shan" => "shall",
                    "ain" => "is",
                    _ => &head[..head.len() - 1],
                };
                push_word(tokens, base, false);
                push_word(tokens, "not", false);
                return;
            }
            "s" => {
                push_word(tokens, head, name_like);
                if IS_HEADS.contains(&head) {
                    push_word(tokens, "is", false);
                }
                return;
            }
            "re" => return push_pair(tokens, head, "are"),
            "ve" => return push_pair(tokens, head, "have"),
            "ll" => return push_pair(tokens, head, "will"),
            "d" => return push_pair(tokens, head, "would"),
            "m" => return push_pair(tokens, head, "am"),
            "" => return push_word(tokens, head, name_like),
            _ => {}
        }
    }
    match surface {
        "whats" => return push_pair(tokens, "what", "is"),
        "hows" => return push_pair(tokens, "how", "is"),
        "wheres" => return push_pair(tokens, "where", "is"),
        "whens" => return push_pair(tokens, "when", "is"),
        "whos" => return push_pair(tokens, "who", "is"),
        "cannot" => return push_pair(tokens, "can", "not"),
        "dont" => return push_pair(tokens, "do", "not"),
        "doesnt" => return push_pair(tokens, "does", "not"),
        "cant" => return push_pair(tokens, "can", "not"),
        "wont" => return push_pair(tokens, "will", "not"),
        "isnt" => return push_pair(tokens, "is", "not"),
        "im" => return push_pair(tokens, "i", "am"),
        _ => {}
    }
    // Clock times: 7pm, 7.30am, 9:15.
    let lower = surface;
    for suffix in ["am", "pm"] {
        if let Some(num) = lower.strip_suffix(suffix) {
            if !num.is_empty() && num.chars().all(|c| c.is_ascii_digit() || c == ':' || c == '.') {
                let num = num.replace('.', ":");
                tokens.push(token(format!("{num}{suffix}"), TokenKind::Time, true, false));
                return;
            }
        }
    }
    if lower.contains(':') && lower.chars().all(|c| c.is_ascii_digit() || c == ':') {
        tokens.push(token(lower.to_string(), TokenKind::Time, true, false));
        return;
    }
    // Hyphenated words: split, so "6-year-old" and "6 year old" agree.
    if lower.contains('-') && lower.chars().any(|c| c.is_ascii_digit()) {
        for part in lower.split('-').filter(|p| !p.is_empty()) {
            push_expanded(tokens, part, false);
        }
        return;
    }
    // Numbers glued to units: 10gb, 23kg, 100mb.
    let digits: String =
        lower.chars().take_while(|c| c.is_ascii_digit() || *c == ',' || *c == '.').collect();
    if !digits.is_empty() {
        let number: String = digits.chars().filter(|c| *c != ',').collect();
        let number = number.trim_end_matches('.').to_string();
        tokens.push(token(number, TokenKind::Number, true, false));
        let rest = &lower[digits.len()..];
        if !rest.is_empty() {
            push_word(tokens, rest, false);
        }
        return;
    }
    if let Some(n) = number_word(lower) {
        tokens.push(token(n.to_string(), TokenKind::Number, true, false));
        return;
    }
    push_word(tokens, lower, name_like);
}

const IS_HEADS: &[&str] =
    &["what", "where", "who", "when", "how", "it", "that", "there", "here", "this", "which", "why"];

fn push_pair(tokens: &mut Vec<Token>, a: &str, b: &str) {
    push_word(tokens, a, false);
    push_word(tokens, b, false);
}

fn push_word(tokens: &mut Vec<Token>, word: &str, name_like: bool) {
    if word.is_empty() {
        return;
    }
    match word {
        "£" | "$" | "€" | "%" => {
            tokens.push(token(word.to_string(), TokenKind::Symbol, true, false));
        }
        "percent" | "per-cent" => {
            tokens.push(token("%".to_string(), TokenKind::Symbol, true, false))
        }
        "pounds" | "pound" | "quid" => {
            tokens.push(token("£".to_string(), TokenKind::Symbol, true, false))
        }
        "dollars" | "dollar" | "usd" => {
            tokens.push(token("$".to_string(), TokenKind::Symbol, true, false))
        }
        "euros" | "euro" | "eur" => {
            tokens.push(token("€".to_string(), TokenKind::Symbol, true, false))
        }
        _ => {
            let key = canonical_key(word);
            let content = !STOPWORDS.contains(&word) && !STOPWORDS.contains(&key.as_str());
            tokens.push(Token {
                text: word.to_string(),
                key,
                kind: TokenKind::Word,
                content,
                name_like,
            });
        }
    }
}

fn token(text: String, kind: TokenKind, content: bool, name_like: bool) -> Token {
    Token { key: text.clone(), text, kind, content, name_like }
}

/// Single number words; compounds ("twenty five") are left as two numbers, which is safe.
fn number_word(word: &str) -> Option<u32> {
    const WORDS: &[(&str, u32)] = &[
        ("zero", 0),
        ("one", 1),
        ("two", 2),
        ("three", 3),
        ("four", 4),
        ("five", 5),
        ("six", 6),
        ("seven", 7),
        ("eight", 8),
        ("nine", 9),
        ("ten", 10),
        ("eleven", 11),
        ("twelve", 12),
        ("thirteen", 13),
        ("fourteen", 14),
        ("fifteen", 15),
        ("sixteen", 16),
        ("seventeen", 17),
        ("eighteen", 18),
        ("nineteen", 19),
        ("twenty", 20),
        ("thirty", 30),
        ("forty", 40),
        ("fifty", 50),
        ("sixty", 60),
        ("seventy", 70),
        ("eighty", 80),
        ("ninety", 90),
        ("hundred", 100),
        ("thousand", 1000),
        ("single", 1),
        ("double", 2),
        ("dozen", 12),
        ("fortnight", 14),
    ];
    WORDS.iter().find(|(w, _)| *w == word).map(|(_, n)| *n)
}

/// Function words: ignored when comparing content. Words that can flip an answer (negations,
/// directions, quantities, `on`/`off`, `in`/`out`, `before`/`after`...) are NOT listed here.
pub(crate) const STOPWORDS: &[&str] = &[
    "a",
    "an",
    "the",
    "do",
    "does",
    "did",
    "is",
    "are",
    "am",
    "was",
    "were",
    "be",
    "been",
    "being",
    "can",
    "could",
    "would",
    "will",
    "shall",
    "may",
    "might",
    "i",
    "me",
    "my",
    "mine",
    "myself",
    "you",
    "your",
    "yours",
    "we",
    "our",
    "us",
    "it",
    "its",
    "this",
    "that",
    "these",
    "those",
    "there",
    "here",
    "to",
    "for",
    "of",
    "at",
    "by",
    "and",
    "or",
    "if",
    "as",
    "so",
    "just",
    "also",
    "have",
    "has",
    "had",
    "any",
    "some",
    "about",
    "via",
    "really",
    "actually",
    "then",
    "what",
    "which",
    "anything",
    "something",
    "still",
    "currently",
    "possible",
    "way",
    "please",
    "kindly",
    "like",
    "want",
    "need",
    "know",
    "tell",
];

/// Greetings, fillers and sign-offs that never change an answer.
const FILLERS_ANYWHERE: &[&str] = &["um", "uh", "er", "erm", "uhm", "hmm", "please", "pls", "plz"];
const FILLERS_LEADING: &[&[&str]] = &[
    &["hi", "there"],
    &["hello", "there"],
    &["hey", "there"],
    &["hi", "team"],
    &["hello", "team"],
    &["hi", "all"],
    &["hey", "all"],
    &["hi"],
    &["hello"],
    &["hey"],
    &["hiya"],
    &["yo"],
    &["good", "morning"],
    &["good", "afternoon"],
    &["good", "evening"],
    &["morning"],
    &["quick", "question"],
    &["quick", "q"],
    &["quick", "1"],
    &["just", "wondering"],
    &["i", "was", "wondering"],
    &["so"],
    &["well"],
    &["yeah"],
    &["ok"],
    &["okay"],
    &["right"],
    &["sorry"],
    &["excuse", "me"],
];
const FILLERS_TRAILING: &[&[&str]] = &[
    &["thanks", "in", "advance"],
    &["thank", "you", "very", "much"],
    &["thank", "you"],
    &["many", "thanks"],
    &["thanks", "a", "lot"],
    &["thanks"],
    &["thx"],
    &["cheers"],
    &["ta"],
    &["much", "appreciated"],
];

fn strip_fillers(tokens: &mut Vec<Token>) {
    tokens.retain(|t| !(t.kind == TokenKind::Word && FILLERS_ANYWHERE.contains(&t.text.as_str())));
    loop {
        let before = tokens.len();
        for phrase in FILLERS_LEADING {
            if tokens.len() > phrase.len() && starts_with(tokens, phrase) {
                tokens.drain(..phrase.len());
                break;
            }
        }
        for phrase in FILLERS_TRAILING {
            if tokens.len() > phrase.len() && ends_with(tokens, phrase) {
                let n = tokens.len() - phrase.len();
                tokens.truncate(n);
                break;
            }
        }
        if tokens.len() == before {
            break;
        }
    }
}

fn starts_with(tokens: &[Token], phrase: &[&str]) -> bool {
    tokens.iter().zip(phrase).all(|(t, p)| t.text == *p)
}

fn ends_with(tokens: &[Token], phrase: &[&str]) -> bool {
    tokens[tokens.len() - phrase.len()..].iter().zip(phrase).all(|(t, p)| t.text == *p)
}

/// "how can i", "how should i", "how could i" ask the same as "how do i".
fn canonicalise_questions(tokens: &mut [Token]) {
    for i in 0..tokens.len().saturating_sub(2) {
        let q = tokens[i].text.as_str();
        if matches!(q, "how" | "who" | "where" | "when" | "what" | "which")
            && matches!(tokens[i + 1].text.as_str(), "can" | "could" | "should" | "would" | "do")
            && matches!(tokens[i + 2].text.as_str(), "i" | "we")
        {
            tokens[i + 1].text = "do".to_string();
            tokens[i + 1].key = "do".to_string();
        }
    }
}

/// A light English stemmer followed by a small table of synonyms that never change an answer.
pub(crate) fn canonical_key(word: &str) -> String {
    if let Some(canon) = synonym(word) {
        return canon.to_string();
    }
    let stem = stem(word);
    synonym(&stem).map(str::to_string).unwrap_or(stem)
}

fn stem(word: &str) -> String {
    let mut w = word.to_string();
    let n = w.chars().count();
    if n <= 3 || !w.is_ascii() {
        return w;
    }
    if w.ends_with("ies") && n > 4 {
        w.truncate(w.len() - 3);
        w.push('y');
    } else if w.ends_with('s') && !w.ends_with("ss") && !w.ends_with("us") && !w.ends_with("is") {
        w.pop();
    }
    if w.len() > 5 && w.ends_with("ing") {
        w.truncate(w.len() - 3);
        undouble(&mut w);
    } else if w.len() > 4 && w.ends_with("ed") {
        w.truncate(w.len() - 2);
        undouble(&mut w);
    }
    if w.len() > 3 && w.ends_with('e') {
        w.pop();
    }
    w
}

fn undouble(w: &mut String) {
    let b = w.as_bytes();
    if b.len() >= 3
        && b[b.len() - 1] == b[b.len() - 2]
        && !matches!(b[b.len() - 1], b'l' | b's' | b'z')
    {
        w.pop();
    }
}

/// Synonym groups: each word maps to the group's first word. General English equivalences
/// only; a word is listed only where the two forms ask the same thing in any context.
const SYNONYMS: &[&[&str]] = &[
    &["get", "receive", "obtain", "got", "gotten", "getting", "receiving", "obtaining"],
    &["shop", "store"],
    &["fast", "quick", "quickly", "rapid"],
    &["fastest", "quickest"],
    &["big", "large"],
    &["bigger", "larger"],
    &["small", "little"],
    &["start", "begin", "starting", "beginning"],
    &["end", "finish"],
    &["buy", "purchase", "buying", "purchasing"],
    &["choose", "select", "pick"],
    &["create", "generate"],
    &["submit", "make", "file", "lodge"],
    &["offer", "provide"],
    &["help", "assist", "assistance"],
    &["need", "require", "required", "needed"],
    &["wait", "waiting"],
    &["road", "street"],
    &["atm", "cashpoint", "cash machine"],
    &["child", "kid", "children", "kids"],
    &["phone", "mobile", "cellphone"],
    &["car", "vehicle"],
    &["parcel", "package"],
    &["cost", "price", "costs", "prices", "priced"],
    &["previous", "earlier", "prior"],
    &["reply", "respond", "answer"],
    &["email", "e-mail"],
    &["wifi", "wi-fi"],
    &["website", "site", "web-site"],
    &["info", "information", "detail", "details"],
];

fn synonym(word: &str) -> Option<&'static str> {
    SYNONYMS.iter().find(|g| g.contains(&word)).map(|g| g[0])
}

/// Negation cues: a difference in their count between two prompts vetoes a match.
pub(crate) const NEGATION_CUES: &[&str] = &[
    "not",
    "no",
    "never",
    "without",
    "none",
    "nothing",
    "nobody",
    "nowhere",
    "neither",
    "nor",
    "stop",
    "stopped",
    "stopping",
    "avoid",
    "avoiding",
    "ban",
    "banned",
    "bans",
    "prohibit",
    "prohibited",
    "forbid",
    "forbidden",
    "refuse",
    "refused",
    "except",
    "excluding",
    "exclude",
    "excluded",
    "lack",
    "lacking",
    "fail",
    "failed",
    "instead",
    "unless",
    "against",
    "cease",
];

/// Words about dates and times of day.
pub(crate) const DATE_WORDS: &[&str] = &[
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "weekday",
    "weekdays",
    "weekend",
    "weekends",
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "jan",
    "feb",
    "mar",
    "apr",
    "jun",
    "jul",
    "aug",
    "sep",
    "sept",
    "oct",
    "nov",
    "dec",
    "today",
    "tomorrow",
    "yesterday",
    "tonight",
    "morning",
    "afternoon",
    "evening",
    "night",
    "overnight",
    "noon",
    "midnight",
    "daily",
    "weekly",
    "monthly",
    "yearly",
    "annually",
    "quarterly",
    "hourly",
    "spring",
    "summer",
    "autumn",
    "fall",
    "winter",
    "christmas",
    "easter",
    "same-day",
    "next-day",
    "am",
    "pm",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fillers_case_and_punctuation_go() {
        for (a, b) in [
            ("How do I top up my pay-as-you-go SIM?", "How do I  top up my pay-as-you-go SIM ?"),
            ("Do you accept Apple Pay?", "Do You Accept Apple Pay?"),
            (
                "How do I apply for a student loan?",
                "Hiya, how do I apply for a student loan? Thanks in advance",
            ),
            ("How do I check my data usage?", "um how do i check my data usage"),
            ("What's the boiling point?", "whats the boiling point"),
        ] {
            assert_eq!(Analysis::new(a).normalized(), Analysis::new(b).normalized(), "{a} / {b}");
        }
    }

    #[test]
    fn numbers_times_and_negations_are_tokens() {
        let a = Analysis::new("Remind me at 7pm, not 7.30am, for £250,000 and two 10GB plans");
        let texts: Vec<_> = a.tokens().iter().map(|t| (t.text.as_str(), t.kind)).collect();
        assert!(texts.contains(&("7pm", TokenKind::Time)));
        assert!(texts.contains(&("7:30am", TokenKind::Time)));
        assert!(texts.contains(&("250000", TokenKind::Number)));
        assert!(texts.contains(&("2", TokenKind::Number)));
        assert!(texts.contains(&("10", TokenKind::Number)));
        assert!(texts.contains(&("not", TokenKind::Word)));
        assert!(texts.contains(&("£", TokenKind::Symbol)));
    }

    #[test]
    fn names_are_noticed_mid_sentence_only() {
        let a = Analysis::new("Send the invoice to Sarah at HMRC");
        let names: Vec<_> =
            a.tokens().iter().filter(|t| t.name_like).map(|t| t.text.as_str()).collect();
        assert_eq!(names, ["sarah", "hmrc"]);
    }

    #[test]
    fn stems_and_synonyms_fold() {
        assert_eq!(canonical_key("guests"), canonical_key("guest"));
        assert_eq!(canonical_key("waiting"), canonical_key("wait"));
        assert_eq!(canonical_key("store"), canonical_key("shop"));
        assert_ne!(canonical_key("lock"), canonical_key("unlock"));
    }
}
