//! Event rules: `trigger -> [targets]` with `{placeholder}` substitution, applied through the
//! public invalidation API of [`Cache`] (so they reach every tier and, through the backplane,
//! every process).
//!
//! Target syntax (one string per target):
//!
//! | target | calls |
//! |---|---|
//! | `key:<category>:<identifier>` | [`Cache::delete`] (no params; everything after the first `:` is the identifier) |
//! | `category:<category>` | [`Cache::invalidate_category`] |
//! | `pattern:<glob>` | [`Cache::invalidate_pattern`] |
//! | `tag:<tag>` | [`Cache::invalidate_tag`] |
//! | `model:<model>` | [`Cache::invalidate_model`] |
//!
//! Unlike the reference, a target without one of these kinds is an error at registration, not
//! a key: a typo such as `categroy:sessions` would otherwise delete a key nobody wrote and
//! invalidate nothing, silently.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use aurelis_cache_core::{Error, ErrorKind, Result};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::cache::Cache;

/// Event rules in configuration form: trigger name -> target strings (see the module docs for
/// the target syntax).
///
/// ```toml
/// [rules]
/// user_updated = ["key:user_data:{user_id}", "tag:user:{user_id}"]
/// model_updated = ["model:{model}", "category:model_info"]
/// ```
///
/// # Examples
///
/// ```
/// let rules = aurelis_cache::InvalidationRules::from_toml_str(
///     r#"
///     [rules]
///     user_updated = ["key:user_data:{user_id}", "tag:user:{user_id}"]
///     "#,
/// )?;
/// assert_eq!(rules.rules["user_updated"].len(), 2);
/// # Ok::<(), aurelis_cache::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct InvalidationRules {
    /// Trigger name -> targets.
    pub rules: BTreeMap<String, Vec<String>>,
}

impl InvalidationRules {
    /// No rules.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the rule of `trigger`.
    ///
    /// # Examples
    ///
    /// ```
    /// let rules = aurelis_cache::InvalidationRules::new().rule("user_updated", ["tag:user:{id}"]);
    /// assert_eq!(rules.rules["user_updated"], ["tag:user:{id}"]);
    /// ```
    pub fn rule<I, S>(mut self, trigger: impl Into<String>, targets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rules.insert(trigger.into(), targets.into_iter().map(Into::into).collect());
        self
    }

    /// Parses rules from TOML (a `[rules]` table of string arrays).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] naming what did not parse (an unknown field included). Target
    /// syntax is checked when the rules are given to a [`CacheInvalidator`].
    pub fn from_toml_str(text: &str) -> Result<Self> {
        toml::from_str(text)
            .map_err(|e| Error::config(format!("invalidation rules: {}", e.message())))
    }
}

/// One piece of a target template.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Placeholder(String),
}

/// A string with `{name}` placeholders (`{{` and `}}` are literal braces).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Template {
    pieces: Vec<Piece>,
}

impl Template {
    fn parse(text: &str) -> std::result::Result<Template, String> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) if c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-' => {
                                name.push(c)
                            }
                            Some(c) => {
                                return Err(format!(
                                    "placeholder names are letters, digits, `_`, `.` and `-`, not {c:?} (write `{{{{` for a literal brace)"
                                ))
                            }
                            None => return Err("unclosed `{` (write `{{` for a literal brace)".into()),
                        }
                    }
                    if name.is_empty() {
                        return Err("empty placeholder `{}`".into());
                    }
                    if !literal.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut literal)));
                    }
                    pieces.push(Piece::Placeholder(name));
                }
                '}' => return Err("unmatched `}` (write `}}` for a literal brace)".into()),
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Ok(Template { pieces })
    }

    fn placeholders(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Placeholder(name) => Some(name.as_str()),
            Piece::Text(_) => None,
        })
    }

    /// The template with each placeholder replaced by `value(name)` (escaped by `escape`).
    fn render(
        &self,
        mut value: impl FnMut(&str) -> std::result::Result<String, String>,
        escape: fn(&str) -> String,
    ) -> std::result::Result<String, String> {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Placeholder(name) => out.push_str(&escape(&value(name)?)),
            }
        }
        Ok(out)
    }
}

/// What a target invalidates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Key,
    Category,
    Pattern,
    Tag,
    Model,
}

impl Kind {
    const ALL: [(Kind, &'static str); 5] = [
        (Kind::Key, "key"),
        (Kind::Category, "category"),
        (Kind::Pattern, "pattern"),
        (Kind::Tag, "tag"),
        (Kind::Model, "model"),
    ];
}

/// A registered target: its kind and template(s).
#[derive(Clone, Debug)]
struct TargetTemplate {
    source: String,
    kind: Kind,
    /// The category of a `key:` target; the only template of every other kind.
    first: Template,
    /// The identifier of a `key:` target.
    identifier: Option<Template>,
}

/// A target with its placeholders filled in: what one event invalidates.
///
/// # Examples
///
/// ```
/// use aurelis_cache::ResolvedTarget;
/// let t = ResolvedTarget::Key { category: "user_data".into(), identifier: "u1".into() };
/// assert_eq!(t.to_string(), "key:user_data:u1");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ResolvedTarget {
    /// One entry: `delete(category, identifier, None)`.
    Key {
        /// The category.
        category: String,
        /// The identifier.
        identifier: String,
    },
    /// `invalidate_category(category)`.
    Category {
        /// The category.
        category: String,
    },
    /// `invalidate_pattern(pattern)` (substituted values escaped: they match literally).
    Pattern {
        /// The glob.
        pattern: String,
    },
    /// `invalidate_tag(tag)`.
    Tag {
        /// The tag.
        tag: String,
    },
    /// `invalidate_model(model)`.
    Model {
        /// The model.
        model: String,
    },
}

impl fmt::Display for ResolvedTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolvedTarget::Key { category, identifier } => {
                write!(f, "key:{category}:{identifier}")
            }
            ResolvedTarget::Category { category } => write!(f, "category:{category}"),
            ResolvedTarget::Pattern { pattern } => write!(f, "pattern:{pattern}"),
            ResolvedTarget::Tag { tag } => write!(f, "tag:{tag}"),
            ResolvedTarget::Model { model } => write!(f, "model:{model}"),
        }
    }
}

/// Escapes a substituted value for a glob: identifiers are stored with `%` and `:` escaped
/// (`%25`, `%3A`), and glob characters are made literal, so a context value can never widen
/// a pattern (a `user_id` of `*` matches the identifier `*`, not every user).
fn escape_for_pattern(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '%' => out.push_str("%25"),
            ':' => out.push_str("%3A"),
            '*' | '?' | '[' | ']' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

fn verbatim(value: &str) -> String {
    value.to_owned()
}

impl TargetTemplate {
    fn parse(source: &str) -> std::result::Result<TargetTemplate, String> {
        let Some((kind_str, body)) = source.split_once(':') else {
            return Err("no kind: write key:<category>:<identifier>, category:<category>, pattern:<glob>, tag:<tag> or model:<model>".into());
        };
        let Some(kind) = Kind::ALL.iter().find(|(_, s)| *s == kind_str).map(|(k, _)| *k) else {
            return Err(format!(
                "unknown kind `{kind_str}` (expected key, category, pattern, tag or model)"
            ));
        };
        if body.is_empty() {
            return Err(format!("empty {kind_str}"));
        }
        let (first, identifier) = if kind == Kind::Key {
            let Some((category, identifier)) = body.split_once(':') else {
                return Err("a key target is key:<category>:<identifier>".into());
            };
            (Template::parse(category)?, Some(Template::parse(identifier)?))
        } else {
            (Template::parse(body)?, None)
        };
        Ok(TargetTemplate { source: source.to_owned(), kind, first, identifier })
    }

    fn placeholders(&self) -> impl Iterator<Item = &str> {
        self.first.placeholders().chain(self.identifier.iter().flat_map(|t| t.placeholders()))
    }

    fn resolve(
        &self,
        mut value: impl FnMut(&str) -> std::result::Result<String, String>,
    ) -> std::result::Result<ResolvedTarget, String> {
        let escape = if self.kind == Kind::Pattern { escape_for_pattern } else { verbatim };
        let first = self.first.render(&mut value, escape)?;
        Ok(match self.kind {
            Kind::Key => ResolvedTarget::Key {
                category: first,
                identifier: self
                    .identifier
                    .as_ref()
                    .map_or(Ok(String::new()), |t| t.render(&mut value, verbatim))?,
            },
            Kind::Category => ResolvedTarget::Category { category: first },
            Kind::Pattern => ResolvedTarget::Pattern { pattern: first },
            Kind::Tag => ResolvedTarget::Tag { tag: first },
            Kind::Model => ResolvedTarget::Model { model: first },
        })
    }
}

/// The values an event's placeholders are filled from: names to strings.
///
/// # Examples
///
/// ```
/// use aurelis_cache::EventContext;
///
/// let ctx = EventContext::new().with("user_id", 42).with("model", "gpt-4o");
/// assert_eq!(ctx.get("user_id"), Some("42"));
///
/// #[derive(serde::Serialize)]
/// struct UserUpdated { user_id: u64, name: &'static str }
/// let ctx = EventContext::from_serialize(&UserUpdated { user_id: 7, name: "Ada" })?;
/// assert_eq!(ctx.get("user_id"), Some("7"));
/// # Ok::<(), aurelis_cache::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventContext(BTreeMap<String, String>);

impl EventContext {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `name = value` (any `Display` value, written as it displays).
    pub fn with(mut self, name: impl Into<String>, value: impl fmt::Display) -> Self {
        self.0.insert(name.into(), value.to_string());
        self
    }

    /// Sets `name = value`.
    pub fn insert(&mut self, name: impl Into<String>, value: impl fmt::Display) {
        self.0.insert(name.into(), value.to_string());
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// A context from any value serializing to a JSON object of scalars: strings are taken
    /// as they are, numbers and booleans as they print; `null` fields are left out (so a
    /// placeholder naming one is an unknown placeholder).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Usage`] when `value` does not serialize to an object, or a field is an
    /// array or an object (naming the field).
    pub fn from_serialize<T: Serialize + ?Sized>(value: &T) -> Result<Self> {
        let json = serde_json::to_value(value).map_err(|e| {
            Error::new(ErrorKind::Usage, "event context does not serialize to JSON").with_source(e)
        })?;
        let serde_json::Value::Object(map) = json else {
            return Err(Error::new(
                ErrorKind::Usage,
                "event context must serialize to an object (a struct or a map)",
            ));
        };
        let mut out = BTreeMap::new();
        for (name, v) in map {
            let text = match v {
                serde_json::Value::Null => continue,
                serde_json::Value::String(s) => s,
                serde_json::Value::Bool(b) => b.to_string(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Array(_) | serde_json::Value::Object(_) => {
                    return Err(Error::new(
                        ErrorKind::Usage,
                        format!("event context field `{name}` is not a scalar"),
                    ))
                }
            };
            out.insert(name, text);
        }
        Ok(EventContext(out))
    }
}

impl<K: Into<String>, V: fmt::Display> FromIterator<(K, V)> for EventContext {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        EventContext(iter.into_iter().map(|(k, v)| (k.into(), v.to_string())).collect())
    }
}

impl From<BTreeMap<String, String>> for EventContext {
    fn from(map: BTreeMap<String, String>) -> Self {
        EventContext(map)
    }
}

impl From<HashMap<String, String>> for EventContext {
    fn from(map: HashMap<String, String>) -> Self {
        EventContext(map.into_iter().collect())
    }
}

/// Invalidation driven by application events: each trigger names the targets to invalidate,
/// with `{placeholder}`s filled from the event's [`EventContext`].
///
/// Rules are checked when registered (kind, syntax, the fixed parts as keys, categories and
/// tags); at an event, every target is resolved before any is applied, so an unknown
/// placeholder invalidates nothing and is an error. An event without a rule is an error too,
/// never a silent no-op. Each target goes through [`Cache`]'s public invalidation calls, so it
/// reaches every tier and, through the backplane, every process.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> aurelis_cache::Result<()> {
/// use std::sync::Arc;
/// use aurelis_cache::{Cache, CacheInvalidator, EventContext, Tier, MokaStore, SetOptions};
///
/// let cache = Cache::builder()
///     .tier(Tier::new("memory", Arc::new(MokaStore::builder().build()?)))
///     .build()?;
/// let invalidator = CacheInvalidator::new(cache.clone());
/// invalidator.register_invalidation_rule(
///     "user_updated",
///     ["key:user_data:{user_id}", "tag:user:{user_id}"],
/// )?;
///
/// cache.set(("user_data", "42"), &"Ada").await?;
/// cache.set_with(("feed", "home"), &"...", &SetOptions::new().tag("user:42")).await?;
/// cache.set(("user_data", "7"), &"Grace").await?;
///
/// invalidator.invalidate_on_event("user_updated", &EventContext::new().with("user_id", 42)).await?;
/// assert_eq!(cache.get::<String>(("user_data", "42")).await?, None);
/// assert_eq!(cache.get::<String>(("feed", "home")).await?, None);
/// assert_eq!(cache.get::<String>(("user_data", "7")).await?.as_deref(), Some("Grace"));
///
/// // Unknown events and placeholders are errors, not silent no-ops.
/// assert!(invalidator.invalidate_on_event("user_deleted", &EventContext::new()).await.is_err());
/// assert!(invalidator.invalidate_on_event("user_updated", &EventContext::new()).await.is_err());
/// # Ok(())
/// # }
/// ```
pub struct CacheInvalidator {
    cache: Cache,
    rules: RwLock<BTreeMap<String, Vec<TargetTemplate>>>,
}

impl fmt::Debug for CacheInvalidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rules = self.rules.read();
        f.debug_struct("CacheInvalidator")
            .field("cache", &self.cache)
            .field("triggers", &rules.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl CacheInvalidator {
    /// An invalidator without rules over `cache`.
    pub fn new(cache: Cache) -> Self {
        CacheInvalidator { cache, rules: RwLock::new(BTreeMap::new()) }
    }

    /// An invalidator with every rule of `rules` registered.
    ///
    /// # Examples
    ///
    /// ```
    /// # let cache = aurelis_cache::Cache::builder()
    /// #     .tier(aurelis_cache::Tier::new("memory", std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?)))
    /// #     .build()?;
    /// use aurelis_cache::{CacheInvalidator, InvalidationRules};
    /// let rules = InvalidationRules::new().rule("model_updated", ["model:{model}"]);
    /// let invalidator = CacheInvalidator::from_rules(cache, &rules)?;
    /// assert_eq!(invalidator.triggers(), ["model_updated"]);
    ///
    /// let bad = InvalidationRules::new().rule("oops", ["categroy:sessions"]);
    /// # let cache = aurelis_cache::Cache::builder()
    /// #     .tier(aurelis_cache::Tier::new("memory", std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?)))
    /// #     .build()?;
    /// let err = CacheInvalidator::from_rules(cache, &bad).unwrap_err();
    /// assert!(err.to_string().contains("categroy:sessions"));
    /// # Ok::<(), aurelis_cache::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`CacheInvalidator::register_invalidation_rule`], for the first bad rule.
    pub fn from_rules(cache: Cache, rules: &InvalidationRules) -> Result<Self> {
        let invalidator = CacheInvalidator::new(cache);
        for (trigger, targets) in &rules.rules {
            invalidator.register_invalidation_rule(trigger, targets)?;
        }
        Ok(invalidator)
    }

    /// The cache this invalidator works on.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// Registers the targets invalidated when `trigger` happens, replacing any earlier rule of
    /// that trigger (as the reference does). See the module docs for the target syntax.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] naming the trigger and the target when the trigger is empty, the
    /// rule has no target, a target has no known kind, a placeholder is malformed, or the
    /// target's fixed parts could never form a valid key, category, pattern, tag or model name
    /// (checked with every placeholder set to `x`).
    pub fn register_invalidation_rule<I, S>(&self, trigger: &str, targets: I) -> Result<()>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        if trigger.is_empty() {
            return Err(Error::config("invalidation rule: the trigger is empty"));
        }
        let mut parsed = Vec::new();
        for target in targets {
            let target = target.as_ref();
            let bad = |why: String| {
                Error::config(format!("invalidation rule `{trigger}`: target `{target}`: {why}"))
            };
            let template = TargetTemplate::parse(target).map_err(bad)?;
            let sample = template.resolve(|_| Ok("x".to_owned())).map_err(bad)?;
            self.check(&sample).map_err(|e| bad(e.message().to_owned()))?;
            parsed.push(template);
        }
        if parsed.is_empty() {
            return Err(Error::config(format!("invalidation rule `{trigger}` has no target")));
        }
        self.rules.write().insert(trigger.to_owned(), parsed);
        Ok(())
    }

    /// Removes the rule of `trigger`; returns whether there was one.
    pub fn remove_rule(&self, trigger: &str) -> bool {
        self.rules.write().remove(trigger).is_some()
    }

    /// The registered triggers, sorted: those of the rules and those of
    /// `#[cached(invalidate_on = [..])]` functions.
    pub fn triggers(&self) -> Vec<String> {
        let mut out: Vec<String> = self.rules.read().keys().cloned().collect();
        out.extend(registered_events().into_iter().map(str::to_owned));
        out.sort();
        out.dedup();
        out
    }

    /// The targets of `trigger` as registered (`None` when it has none): the rule's, then a
    /// `category:<category>` target for each `#[cached(invalidate_on = [trigger])]` function.
    pub fn targets(&self, trigger: &str) -> Option<Vec<String>> {
        let mut out: Option<Vec<String>> =
            self.rules.read().get(trigger).map(|t| t.iter().map(|t| t.source.clone()).collect());
        for category in registered_categories(trigger) {
            let target = format!("category:{category}");
            let targets = out.get_or_insert_with(Vec::new);
            if !targets.contains(&target) {
                targets.push(target);
            }
        }
        out
    }

    /// The placeholders the rule of `trigger` needs, sorted and without duplicates.
    ///
    /// # Examples
    ///
    /// ```
    /// # let cache = aurelis_cache::Cache::builder()
    /// #     .tier(aurelis_cache::Tier::new("memory", std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?)))
    /// #     .build()?;
    /// let inv = aurelis_cache::CacheInvalidator::new(cache);
    /// inv.register_invalidation_rule("e", ["key:doc:{tenant}/{id}", "tag:tenant:{tenant}"])?;
    /// assert_eq!(inv.placeholders("e"), Some(vec!["id".to_string(), "tenant".to_string()]));
    /// # Ok::<(), aurelis_cache::Error>(())
    /// ```
    pub fn placeholders(&self, trigger: &str) -> Option<Vec<String>> {
        let rules = self.rules.read();
        let targets = rules.get(trigger)?;
        let mut names: Vec<String> =
            targets.iter().flat_map(|t| t.placeholders()).map(str::to_owned).collect();
        names.sort();
        names.dedup();
        Some(names)
    }

    /// The targets `event` would invalidate with `context`, without invalidating anything.
    ///
    /// # Errors
    ///
    /// As [`CacheInvalidator::invalidate_on_event`], before anything is invalidated.
    pub fn resolve(&self, event: &str, context: &EventContext) -> Result<Vec<ResolvedTarget>> {
        let rules = self.rules.read();
        let functions = registered_categories(event);
        let targets = match rules.get(event) {
            Some(targets) => targets.as_slice(),
            None if !functions.is_empty() => &[],
            None => {
                drop(rules);
                let known = self.triggers();
                return Err(Error::new(
                    ErrorKind::Usage,
                    format!("no invalidation rule for event `{event}` (registered: {known:?})"),
                ));
            }
        };
        let mut out = Vec::with_capacity(targets.len() + functions.len());
        for target in targets {
            let resolved = target
                .resolve(|name| {
                    context.get(name).map(str::to_owned).ok_or_else(|| {
                        let have: Vec<&str> = context.0.keys().map(String::as_str).collect();
                        format!("placeholder `{{{name}}}` is not in the event context (it has {have:?})")
                    })
                })
                .map_err(|why| {
                    Error::new(
                        ErrorKind::Usage,
                        format!("event `{event}`: target `{}`: {why}", target.source),
                    )
                })?;
            self.check(&resolved).map_err(|e| {
                Error::new(
                    e.kind(),
                    format!(
                        "event `{event}`: target `{}` gave `{resolved}`: {}",
                        target.source,
                        e.message()
                    ),
                )
            })?;
            out.push(resolved);
        }
        // The categories of `#[cached(invalidate_on = [event])]` functions (checked at
        // compile time).
        for category in functions {
            let target = ResolvedTarget::Category { category: category.to_owned() };
            if !out.contains(&target) {
                out.push(target);
            }
        }
        Ok(out)
    }

    /// Invalidates every target of `event`'s rule, with placeholders filled from `context`,
    /// and returns what was invalidated. Every target is resolved (and checked) first, so an
    /// unknown placeholder invalidates nothing; then each is applied in order. When applying
    /// one fails (tier errors, in strict mode), the others are still applied and the first
    /// error is returned.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Usage`] for an event without a rule or a placeholder missing from the
    /// context; [`ErrorKind::InvalidKey`] when a substituted value makes an invalid key,
    /// category, tag or model name; tier errors as the [`Cache`] call returns them (strict mode).
    pub async fn invalidate_on_event(
        &self,
        event: &str,
        context: &EventContext,
    ) -> Result<Vec<ResolvedTarget>> {
        let targets = self.resolve(event, context)?;
        let mut first_err = None;
        for target in &targets {
            if let Err(e) = self.apply(target).await {
                tracing::warn!(event, target = %target, error = %e, "event invalidation failed");
                first_err.get_or_insert_with(|| {
                    Error::new(e.kind(), format!("event `{event}`: invalidating `{target}` failed"))
                        .with_source(e)
                });
            }
        }
        tracing::debug!(event, targets = targets.len(), "event invalidation applied");
        match first_err {
            Some(e) => Err(e),
            None => Ok(targets),
        }
    }

    /// Whether `target` is something the cache accepts (no I/O).
    fn check(&self, target: &ResolvedTarget) -> Result<()> {
        let keys = self.cache.keys();
        match target {
            ResolvedTarget::Key { category, identifier } => {
                keys.build_key(category, identifier, None).map(drop)
            }
            ResolvedTarget::Category { category } => keys.category_prefix(category).map(drop),
            ResolvedTarget::Model { model } => keys.model_prefix(model).map(drop),
            ResolvedTarget::Pattern { pattern } if pattern.is_empty() => {
                Err(Error::invalid_key("pattern is empty"))
            }
            ResolvedTarget::Tag { tag } if tag.is_empty() => {
                Err(Error::invalid_key("tag is empty"))
            }
            ResolvedTarget::Pattern { .. } | ResolvedTarget::Tag { .. } => Ok(()),
        }
    }

    async fn apply(&self, target: &ResolvedTarget) -> Result<()> {
        match target {
            ResolvedTarget::Key { category, identifier } => {
                self.cache.delete((category, identifier)).await.map(drop)
            }
            ResolvedTarget::Category { category } => self.cache.invalidate_category(category).await,
            ResolvedTarget::Pattern { pattern } => self.cache.invalidate_pattern(pattern).await,
            ResolvedTarget::Tag { tag } => self.cache.invalidate_tag(tag).await,
            ResolvedTarget::Model { model } => self.cache.invalidate_model(model).await,
        }
    }
}

/// The categories of the `#[cached]` functions registered for `event` (`invalidate_on`).
fn registered_categories(event: &str) -> Vec<&'static str> {
    #[cfg(feature = "macros")]
    return crate::__macro_support::registered_categories(event);
    #[cfg(not(feature = "macros"))]
    {
        let _ = event;
        Vec::new()
    }
}

/// The events some `#[cached]` function is registered for.
fn registered_events() -> Vec<&'static str> {
    #[cfg(feature = "macros")]
    return crate::__macro_support::registered_events();
    #[cfg(not(feature = "macros"))]
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse_placeholders_and_escaped_braces() {
        let t = Template::parse("a{b}c{{d}}{e}").unwrap();
        assert_eq!(
            t.pieces,
            [
                Piece::Text("a".into()),
                Piece::Placeholder("b".into()),
                Piece::Text("c{d}".into()),
                Piece::Placeholder("e".into()),
            ]
        );
        for bad in ["{", "a{b", "}", "{}", "{a b}"] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pattern_values_match_literally() {
        assert_eq!(escape_for_pattern("a*b?[c]\\:%"), "a\\*b\\?\\[c\\]\\\\%3A%25");
        assert!(aurelis_cache_core::glob_match("doc:\\*", "doc:*"));
        assert!(!aurelis_cache_core::glob_match("doc:\\*", "doc:x"));
    }

    #[test]
    fn key_targets_split_at_the_first_colon() {
        let t = TargetTemplate::parse("key:doc:{a}:{b}").unwrap();
        let r = t.resolve(|n| Ok(n.to_uppercase())).unwrap();
        assert_eq!(r, ResolvedTarget::Key { category: "doc".into(), identifier: "A:B".into() });
    }
}
