//! The key scheme: `namespace:version:category:identifier[:params-hash]`.
//!
//! * `namespace`, `version` and `category` are plain tokens: non-empty, at most
//!   [`MAX_PART_LEN`] bytes, no `:`, no white space or control characters, and none of the glob
//!   characters `* ? [ ] \` (so a category can always be matched by a prefix or a pattern).
//!   Categories starting with `@` are reserved for the cache's own keys: model answers live
//!   under `@model`, so no user category can overlap them.
//! * `identifier` may hold any character but control characters. A `:` or `%` inside it is
//!   percent-escaped (`%3A`, `%25`) so that two different (category, identifier, params) triples
//!   can never produce the same key.
//! * `params` are canonicalised (maps sorted by key at every depth, by this crate itself, so
//!   the key does not depend on serde_json's `preserve_order` feature) and hashed
//!   with blake3; the key holds the first 128 bits of that hash as 32 lowercase hex digits.
//! * A whole key is at most [`MAX_KEY_LEN`] bytes. Longer identifiers (a whole prompt, a URL
//!   with a long query) should be hashed first, as [`KeyBuilder::build_model_key`] does.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

pub use crate::canonical::write_canonical_json;
use crate::error::{Error, Result};

/// The longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 1024;
/// The longest namespace, version or category accepted, in bytes.
pub const MAX_PART_LEN: usize = 128;
/// The reserved category of [`KeyBuilder::build_model_key`] keys.
pub const MODEL_CATEGORY: &str = "@model";
/// Hex digits of the parameter and prompt hashes in a key (128 bits).
pub const HASH_HEX_LEN: usize = 32;

/// A complete, validated cache key.
///
/// # Examples
///
/// ```
/// use aurelis_cache_core::KeyBuilder;
///
/// let key = KeyBuilder::default().build_key("user_data", "user123", None)?;
/// assert_eq!(key.as_str(), "aurelis:v1:user_data:user123");
/// # Ok::<(), aurelis_cache_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(String);

impl Key {
    /// The key as a string slice, as stores see it.
    ///
    /// # Examples
    ///
    /// ```
    /// # use aurelis_cache_core::KeyBuilder;
    /// let key = KeyBuilder::default().build_key("c", "i", None)?;
    /// assert!(key.as_str().starts_with("aurelis:v1:"));
    /// # Ok::<(), aurelis_cache_core::Error>(())
    /// ```
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Takes the key's string.
    ///
    /// # Examples
    ///
    /// ```
    /// # use aurelis_cache_core::KeyBuilder;
    /// let s: String = KeyBuilder::default().build_key("c", "i", None)?.into_string();
    /// assert_eq!(s, "aurelis:v1:c:i");
    /// # Ok::<(), aurelis_cache_core::Error>(())
    /// ```
    pub fn into_string(self) -> String {
        self.0
    }
}

impl AsRef<str> for Key {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// Parameters that change a cached answer (page, limit, temperature, ...), in canonical form.
///
/// Built from pairs or from any `Serialize` value. Map keys are sorted, so the order in which
/// parameters are given never changes the key. An empty `Params` adds nothing to the key.
///
/// # Examples
///
/// ```
/// use aurelis_cache_core::Params;
///
/// let a = Params::new().with("page", 1).with("limit", 10);
/// let b: Params = [("limit", 10), ("page", 1)].into_iter().collect();
/// assert_eq!(a.hash_hex(), b.hash_hex());
/// assert_eq!(a.hash_hex().len(), 32);
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Params(BTreeMap<String, serde_json::Value>);

impl Params {
    /// No parameters.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(aurelis_cache_core::Params::new().is_empty());
    /// ```
    pub fn new() -> Self {
        Params(BTreeMap::new())
    }

    /// Adds (or replaces) one parameter.
    ///
    /// # Examples
    ///
    /// ```
    /// let p = aurelis_cache_core::Params::new().with("temperature", 0.7);
    /// assert_eq!(p.len(), 1);
    /// ```
    pub fn with(mut self, name: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        self.0.insert(name.into(), value.into());
        self
    }

    /// Canonical parameters from any serializable value: a struct or a map becomes its fields,
    /// anything else is stored under the name `value`.
    ///
    /// # Examples
    ///
    /// ```
    /// #[derive(serde::Serialize)]
    /// struct Search { page: u32, limit: u32 }
    /// let p = aurelis_cache_core::Params::from_serialize(&Search { page: 1, limit: 10 })?;
    /// assert_eq!(p, aurelis_cache_core::Params::new().with("limit", 10).with("page", 1));
    /// # Ok::<(), aurelis_cache_core::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidKey`](crate::ErrorKind::InvalidKey) when the value cannot be
    /// represented as JSON (a map with non-string keys, a failing `Serialize` impl).
    pub fn from_serialize<T: Serialize + ?Sized>(value: &T) -> Result<Self> {
        let json = serde_json::to_value(value).map_err(|e| {
            Error::invalid_key("params cannot be canonicalised as JSON").with_source(e)
        })?;
        Ok(match json {
            serde_json::Value::Object(map) => Params(map.into_iter().collect()),
            serde_json::Value::Null => Params::new(),
            other => Params::new().with("value", other),
        })
    }

    /// Whether there are no parameters.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!aurelis_cache_core::Params::new().with("a", 1).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many parameters there are.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(aurelis_cache_core::Params::new().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The canonical JSON text of the parameters (keys sorted at every depth).
    ///
    /// # Examples
    ///
    /// ```
    /// let p = aurelis_cache_core::Params::new().with("b", 2).with("a", 1);
    /// assert_eq!(p.canonical_json(), r#"{"a":1,"b":2}"#);
    /// ```
    pub fn canonical_json(&self) -> String {
        // Sorted here at every depth: serde_json's `Map` keeps insertion order when another
        // crate of the build enables its `preserve_order` feature.
        let mut out = String::with_capacity(64);
        out.push('{');
        for (i, (name, value)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_json_string(&mut out, name);
            out.push(':');
            push_canonical(&mut out, value);
        }
        out.push('}');
        out
    }

    /// The first 128 bits of the blake3 hash of [`Params::canonical_json`], in hex.
    ///
    /// # Examples
    ///
    /// ```
    /// let p = aurelis_cache_core::Params::new().with("page", 1);
    /// assert_eq!(p.hash_hex().len(), 32);
    /// ```
    pub fn hash_hex(&self) -> String {
        hash_hex(self.canonical_json().as_bytes())
    }
}

impl<K: Into<String>, V: Into<serde_json::Value>> FromIterator<(K, V)> for Params {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Params(iter.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }
}

/// The first 128 bits of the blake3 hash of `bytes`, as 32 lowercase hex digits.
///
/// # Examples
///
/// ```
/// let h = aurelis_cache_core::key::hash_hex(b"hello");
/// assert_eq!(h.len(), 32);
/// assert_eq!(h, aurelis_cache_core::key::hash_hex(b"hello"));
/// ```
pub fn hash_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(HASH_HEX_LEN);
    push_hash_hex(&mut out, bytes);
    out
}

/// Appends [`hash_hex`] of `bytes` to `out`.
fn push_hash_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hash = blake3::hash(bytes);
    // Only the bytes kept, in lower-case hex as `blake3::Hash::to_hex` writes them.
    for b in &hash.as_bytes()[..HASH_HEX_LEN / 2] {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
}

/// Builds keys of the form `namespace:version:category:identifier[:params-hash]`.
///
/// # Examples
///
/// ```
/// use aurelis_cache_core::{KeyBuilder, Params};
///
/// let keys = KeyBuilder::new("myapp", "v2")?;
/// let key = keys.build_key("search", "query123", Some(&Params::new().with("page", 1)))?;
/// assert!(key.as_str().starts_with("myapp:v2:search:query123:"));
///
/// let model = keys.build_model_key("gpt-4o", "Hello!", &Params::new().with("temperature", 0.0))?;
/// assert!(model.as_str().starts_with("myapp:v2:@model:gpt-4o:"));
/// # Ok::<(), aurelis_cache_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyBuilder {
    namespace: String,
    version: String,
    /// `namespace:version:`, computed once.
    prefix: String,
}

/// A reusable buffer for key text ([`KeyBuilder::write_key_into`]), for callers who build
/// keys often, such as one per thread: no allocation per key once it has grown, and a key of
/// the category it held last skips the category's checks.
///
/// # Examples
///
/// ```
/// use aurelis_cache_core::{KeyBuilder, KeyWriter};
/// let keys = KeyBuilder::default();
/// let mut w = KeyWriter::new();
/// for id in ["1", "2", "3"] {
///     let text = keys.write_key_into(&mut w, "user", id, None)?;
///     assert_eq!(text, keys.build_key("user", id, None)?.as_str());
/// }
/// assert_eq!(w.as_str(), "aurelis:v1:user:3");
/// # Ok::<(), aurelis_cache_core::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct KeyWriter {
    text: String,
    /// The length of `text`'s `namespace:version:category:` head when it was written by
    /// [`KeyBuilder::write_key_into`] after the category's checks (0: none). Private, so
    /// only that method vouches for it.
    head: usize,
}

impl KeyWriter {
    /// An empty writer.
    pub const fn new() -> Self {
        KeyWriter { text: String::new(), head: 0 }
    }

    /// The text written last.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Holds `key`'s text (a key built elsewhere; the next write starts afresh).
    pub fn set(&mut self, key: &Key) -> &str {
        self.head = 0;
        self.text.clear();
        self.text.push_str(key.as_str());
        &self.text
    }

    /// The bytes the buffer holds room for.
    pub fn capacity(&self) -> usize {
        self.text.capacity()
    }
}

impl Default for KeyBuilder {
    fn default() -> Self {
        KeyBuilder {
            namespace: "aurelis".into(),
            version: "v1".into(),
            prefix: "aurelis:v1:".into(),
        }
    }
}

impl KeyBuilder {
    /// A builder for `namespace` and `version`.
    ///
    /// # Examples
    ///
    /// ```
    /// let keys = aurelis_cache_core::KeyBuilder::new("aurelis", "v1")?;
    /// assert_eq!(keys, aurelis_cache_core::KeyBuilder::default());
    /// # Ok::<(), aurelis_cache_core::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidKey`](crate::ErrorKind::InvalidKey) when either part is empty, too
    /// long, or holds `:`, white space, control or glob characters.
    pub fn new(namespace: impl Into<String>, version: impl Into<String>) -> Result<Self> {
        let namespace = namespace.into();
        let version = version.into();
        validate_token("namespace", &namespace)?;
        validate_token("version", &version)?;
        let prefix = format!("{namespace}:{version}:");
        Ok(KeyBuilder { namespace, version, prefix })
    }

    /// The namespace (`aurelis` by default).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(aurelis_cache_core::KeyBuilder::default().namespace(), "aurelis");
    /// ```
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The version (`v1` by default).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(aurelis_cache_core::KeyBuilder::default().version(), "v1");
    /// ```
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The prefix every key of this builder starts with: `namespace:version:`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(aurelis_cache_core::KeyBuilder::default().prefix(), "aurelis:v1:");
    /// ```
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Builds `namespace:version:category:identifier[:params-hash]`.
    ///
    /// # Examples
    ///
    /// ```
    /// let keys = aurelis_cache_core::KeyBuilder::default();
    /// assert_eq!(keys.build_key("user", "a:b", None)?.as_str(), "aurelis:v1:user:a%3Ab");
    /// assert!(keys.build_key("", "id", None).is_err());
    /// # Ok::<(), aurelis_cache_core::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidKey`](crate::ErrorKind::InvalidKey) naming the part that is wrong:
    /// an empty or ill-formed category, an empty identifier or one with control characters, or
    /// a key longer than [`MAX_KEY_LEN`].
    pub fn build_key(
        &self,
        category: &str,
        identifier: &str,
        params: Option<&Params>,
    ) -> Result<Key> {
        let mut key = String::with_capacity(
            self.prefix.len() + category.len() + identifier.len() + 2 + HASH_HEX_LEN,
        );
        self.write_key(&mut key, category, identifier, params)?;
        Ok(Key(key))
    }

    /// Builds the key [`KeyBuilder::build_key`] builds with params whose
    /// [`Params::canonical_json`] is `canonical_json`, without building the [`Params`]: for
    /// callers that write the canonical text themselves (with [`write_canonical_json`], as
    /// `#[cached]` does for a call's arguments). `"{}"` is no params, as an empty [`Params`].
    /// The text is hashed as it is: text that is not canonical gives another key.
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_cache_core::{key::write_canonical_json, KeyBuilder, Params};
    /// let keys = KeyBuilder::default();
    /// let mut text = String::from(r#"{"page":"#);
    /// write_canonical_json(&mut text, &3u32)?;
    /// text.push('}');
    /// let key = keys.build_key_with_canonical_params("search", "rust", &text)?;
    /// assert_eq!(key, keys.build_key("search", "rust", Some(&Params::new().with("page", 3)))?);
    /// assert_eq!(keys.build_key_with_canonical_params("search", "rust", "{}")?.as_str(), "aurelis:v1:search:rust");
    /// # Ok::<(), aurelis_cache_core::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`KeyBuilder::build_key`].
    pub fn build_key_with_canonical_params(
        &self,
        category: &str,
        identifier: &str,
        canonical_json: &str,
    ) -> Result<Key> {
        validate_category(category)?;
        let plain = validate_identifier(identifier)?;
        let mut key = String::with_capacity(
            self.prefix.len() + category.len() + identifier.len() + 3 + HASH_HEX_LEN,
        );
        key.push_str(&self.prefix);
        key.push_str(category);
        key.push(':');
        push_escaped(&mut key, identifier, plain);
        if canonical_json != "{}" {
            key.push(':');
            push_hash_hex(&mut key, canonical_json.as_bytes());
        }
        check_len(&key)?;
        Ok(Key(key))
    }

    /// Writes the text of the key [`KeyBuilder::build_key`] would build into `out` (cleared
    /// first), with the same checks: for callers who look a key up often and keep one buffer
    /// instead of allocating a [`Key`] per lookup.
    ///
    /// # Examples
    ///
    /// ```
    /// let keys = aurelis_cache_core::KeyBuilder::default();
    /// let mut buf = String::from("left over");
    /// keys.write_key(&mut buf, "user", "42", None)?;
    /// assert_eq!(buf, keys.build_key("user", "42", None)?.as_str());
    /// assert!(keys.write_key(&mut buf, "user", "", None).is_err());
    /// # Ok::<(), aurelis_cache_core::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`KeyBuilder::build_key`]; `out` is left cleared or partly written.
    pub fn write_key(
        &self,
        out: &mut String,
        category: &str,
        identifier: &str,
        params: Option<&Params>,
    ) -> Result<()> {
        validate_category(category)?;
        let plain = validate_identifier(identifier)?;
        out.clear();
        out.push_str(&self.prefix);
        out.push_str(category);
        out.push(':');
        push_tail(out, identifier, plain, params)
    }

    /// Writes the key [`KeyBuilder::build_key`] would build into `writer` and returns its
    /// text, with the same checks. The writer remembers the head of the last key it held
    /// (`namespace:version:category:`, checked when it was written): a key of the same
    /// category from the same builder only checks and writes its identifier (and params).
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_cache_core::{KeyBuilder, KeyWriter};
    /// let keys = KeyBuilder::default();
    /// let mut w = KeyWriter::new();
    /// assert_eq!(keys.write_key_into(&mut w, "user", "42", None)?, "aurelis:v1:user:42");
    /// // Same category: the head is kept, the identifier is still checked.
    /// assert_eq!(keys.write_key_into(&mut w, "user", "a:b", None)?, "aurelis:v1:user:a%3Ab");
    /// assert!(keys.write_key_into(&mut w, "user", "", None).is_err());
    /// assert!(keys.write_key_into(&mut w, "bad category", "1", None).is_err());
    /// // Another builder's prefix is never taken for this one's.
    /// let other = KeyBuilder::new("app", "v2")?;
    /// assert_eq!(other.write_key_into(&mut w, "user", "42", None)?, "app:v2:user:42");
    /// assert_eq!(keys.write_key_into(&mut w, "user", "42", None)?, "aurelis:v1:user:42");
    /// # Ok::<(), aurelis_cache_core::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`KeyBuilder::build_key`]; the writer then holds no key (its text is unspecified).
    pub fn write_key_into<'w>(
        &self,
        writer: &'w mut KeyWriter,
        category: &str,
        identifier: &str,
        params: Option<&Params>,
    ) -> Result<&'w str> {
        let prefix = self.prefix.as_bytes();
        let head = prefix.len() + category.len() + 1;
        let text = writer.text.as_bytes();
        let kept = writer.head == head
            && text.len() >= head
            && text[head - 1] == b':'
            && same_bytes(&text[prefix.len()..head - 1], category.as_bytes())
            && same_bytes(&text[..prefix.len()], prefix);
        if !kept {
            // `head` is only set once the category has passed its checks.
            writer.head = 0;
            validate_category(category)?;
            writer.text.clear();
            writer.text.push_str(&self.prefix);
            writer.text.push_str(category);
            writer.text.push(':');
            writer.head = head;
        }
        let plain = validate_identifier(identifier)?;
        writer.text.truncate(head);
        // The common key, written in line: a printable ASCII identifier without `:` or `%`,
        // no params, within the maximum length.
        if plain && params.is_none() && head + identifier.len() <= MAX_KEY_LEN {
            writer.text.push_str(identifier);
            return Ok(writer.text.as_str());
        }
        push_tail(&mut writer.text, identifier, plain, params)?;
        Ok(writer.text.as_str())
    }

    /// Builds the key of a model request: `namespace:version:@model:<model>:<hash>`, where the
    /// hash covers the prompt and every parameter (128-bit blake3 of both, so a prompt of any
    /// length gives a short key).
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_cache_core::{KeyBuilder, Params};
    /// let keys = KeyBuilder::default();
    /// let cold = keys.build_model_key("gpt-4o", "Hi", &Params::new().with("temperature", 0.0))?;
    /// let warm = keys.build_model_key("gpt-4o", "Hi", &Params::new().with("temperature", 0.9))?;
    /// assert_ne!(cold, warm);
    /// assert!(cold.as_str().starts_with(&keys.model_prefix("gpt-4o")?));
    /// # Ok::<(), aurelis_cache_core::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidKey`](crate::ErrorKind::InvalidKey) when `model` is empty or holds
    /// control characters.
    pub fn build_model_key(&self, model: &str, prompt: &str, params: &Params) -> Result<Key> {
        let mut hasher = blake3::Hasher::new();
        // Length-prefix the prompt so that prompt and params cannot run into each other.
        hasher.update(&(prompt.len() as u64).to_le_bytes());
        hasher.update(prompt.as_bytes());
        hasher.update(params.canonical_json().as_bytes());
        let hash = hasher.finalize();
        let mut key = self.model_prefix(model)?;
        key.push_str(&hash.to_hex().as_str()[..HASH_HEX_LEN]);
        check_len(&key)?;
        Ok(Key(key))
    }

    /// A key this builder could have built, from its string (for keys kept elsewhere, such
    /// as an index of cache keys): it must be under this builder's prefix, no longer than the
    /// maximum key length and free of control characters.
    ///
    /// # Examples
    ///
    /// ```
    /// # use aurelis_cache_core::KeyBuilder;
    /// let keys = KeyBuilder::default();
    /// let key = keys.build_key("user_data", "u1", None)?;
    /// assert_eq!(keys.parse_key(key.as_str())?, key);
    /// assert!(keys.parse_key("other:v1:user_data:u1").is_err());
    /// assert!(keys.parse_key("aurelis:v1:").is_err());
    /// # Ok::<(), aurelis_cache_core::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidKey`](crate::ErrorKind::InvalidKey) naming what is wrong.
    pub fn parse_key(&self, raw: &str) -> Result<Key> {
        let Some(rest) = raw.strip_prefix(self.prefix()) else {
            return Err(Error::invalid_key(format!(
                "key {raw:?} is not under this cache's prefix {:?}",
                self.prefix()
            )));
        };
        if rest.is_empty() {
            return Err(Error::invalid_key(format!("key {raw:?} has nothing after its prefix")));
        }
        if raw.len() > MAX_KEY_LEN {
            return Err(Error::invalid_key(format!(
                "key is {} bytes, longer than the maximum of {MAX_KEY_LEN}",
                raw.len()
            )));
        }
        if let Some(c) = raw.chars().find(|c| c.is_control()) {
            return Err(Error::invalid_key(format!("key holds the control character {c:?}")));
        }
        Ok(Key(raw.to_owned()))
    }

    /// The prefix of every key [`KeyBuilder::build_model_key`] builds for `model`, for
    /// invalidating all of one model's answers with a prefix deletion.
    ///
    /// # Examples
    ///
    /// ```
    /// let keys = aurelis_cache_core::KeyBuilder::default();
    /// assert_eq!(keys.model_prefix("gpt-4o")?, "aurelis:v1:@model:gpt-4o:");
    /// # Ok::<(), aurelis_cache_core::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidKey`](crate::ErrorKind::InvalidKey) when `model` is empty or holds
    /// control characters.
    pub fn model_prefix(&self, model: &str) -> Result<String> {
        let plain = validate_identifier(model)
            .map_err(|e| Error::invalid_key(format!("model: {}", e.message())))?;
        let mut key = String::with_capacity(self.prefix.len() + 7 + model.len() + 1);
        key.push_str(&self.prefix);
        key.push_str(MODEL_CATEGORY);
        key.push(':');
        push_escaped(&mut key, model, plain);
        key.push(':');
        Ok(key)
    }

    /// The prefix of every key in `category`: `namespace:version:category:`.
    ///
    /// # Examples
    ///
    /// ```
    /// let keys = aurelis_cache_core::KeyBuilder::default();
    /// assert_eq!(keys.category_prefix("user_data")?, "aurelis:v1:user_data:");
    /// # Ok::<(), aurelis_cache_core::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidKey`](crate::ErrorKind::InvalidKey) when the category is not a
    /// valid token.
    pub fn category_prefix(&self, category: &str) -> Result<String> {
        validate_category(category)?;
        Ok(format!("{}{category}:", self.prefix))
    }
}

fn check_len(key: &str) -> Result<()> {
    if key.len() > MAX_KEY_LEN {
        return Err(Error::invalid_key(format!(
            "key is {} bytes, longer than the maximum of {MAX_KEY_LEN}; hash long identifiers first",
            key.len()
        )));
    }
    Ok(())
}

/// Byte class: may appear in a category or namespace without the character rules (printable
/// ASCII other than white space and `: * ? [ ] \`).
const TOKEN_OK: u8 = 1;
/// Byte class: may appear in an identifier without the character rules (printable ASCII,
/// space included).
const IDENT_OK: u8 = 2;
/// Byte class: escaped in identifiers (`:` and `%`).
const ESCAPED: u8 = 4;

/// The class of every byte, for the checks of the common case (all-ASCII parts) that run
/// before the full character rules.
static BYTE_CLASS: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b: usize = 0x20;
    while b < 0x7f {
        let mut class = IDENT_OK;
        if b as u8 != b' ' && !matches!(b as u8, b':' | b'*' | b'?' | b'[' | b']' | b'\\') {
            class |= TOKEN_OK;
        }
        if matches!(b as u8, b':' | b'%') {
            class |= ESCAPED;
        }
        table[b] = class;
        b += 1;
    }
    table
};

fn validate_token(what: &str, value: &str) -> Result<()> {
    if !value.is_empty()
        && value.len() <= MAX_PART_LEN
        && value.bytes().fold(TOKEN_OK, |all, b| all & BYTE_CLASS[usize::from(b)]) != 0
    {
        return Ok(());
    }
    if value.is_empty() {
        return Err(Error::invalid_key(format!("{what} is empty")));
    }
    if value.len() > MAX_PART_LEN {
        return Err(Error::invalid_key(format!(
            "{what} is {} bytes, longer than the maximum of {MAX_PART_LEN}",
            value.len()
        )));
    }
    if let Some(c) = value.chars().find(|c| {
        c.is_whitespace() || c.is_control() || matches!(c, ':' | '*' | '?' | '[' | ']' | '\\')
    }) {
        return Err(Error::invalid_key(format!(
            "{what} {value:?} holds {c:?}; white space, control characters and `: * ? [ ] \\` are not allowed"
        )));
    }
    Ok(())
}

fn validate_category(category: &str) -> Result<()> {
    validate_token("category", category)?;
    if category.starts_with('@') {
        return Err(Error::invalid_key(format!(
            "category {category:?} starts with `@`, which is reserved for the cache's own keys"
        )));
    }
    Ok(())
}

/// The category part of a key built by a [`KeyBuilder`] with `prefix` (`None` when `key` is
/// not under the prefix).
///
/// # Examples
///
/// ```
/// use aurelis_cache_core::key::category_of;
/// assert_eq!(category_of("aurelis:v1:", "aurelis:v1:user:42"), Some("user"));
/// assert_eq!(category_of("aurelis:v1:", "other:v1:user:42"), None);
/// ```
pub fn category_of<'a>(prefix: &str, key: &'a str) -> Option<&'a str> {
    let rest = key.strip_prefix(prefix)?;
    rest.split(':').next().filter(|c| !c.is_empty())
}

/// `a == b`, without a call to `memcmp` for the short parts of a key (up to 16 bytes: two
/// overlapping loads of each side).
#[inline(always)]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap_or([0; 8]));
    let half = |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().unwrap_or([0; 4]));
    match n {
        0 => true,
        1..=3 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        4..=7 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        _ => a == b,
    }
}

/// The check of the common identifier (printable ASCII, space included, which is always
/// valid): `Some(true)` when it needs no escaping (holds no `:` or `%`), `Some(false)` when it
/// does, `None` when it needs [`validate_identifier`]'s full rules.
#[inline(always)]
fn plain_identifier(value: &str) -> Option<bool> {
    if value.is_empty() || value.len() > MAX_KEY_LEN {
        return None;
    }
    let (all, any) = value.bytes().fold((IDENT_OK, 0), |(all, any), b| {
        let class = BYTE_CLASS[usize::from(b)];
        (all & class, any | class)
    });
    (all != 0).then_some(any & ESCAPED == 0)
}

/// Checks an identifier; `true` when it needs no escaping (holds no `:` or `%`). The common
/// identifier is checked in line ([`plain_identifier`]), the others by
/// [`identifier_by_rules`].
#[inline(always)]
fn validate_identifier(value: &str) -> Result<bool> {
    match plain_identifier(value) {
        Some(plain) => Ok(plain),
        None => identifier_by_rules(value),
    }
}

/// [`validate_identifier`] of an identifier [`plain_identifier`] could not judge: empty, too
/// long, or holding more than printable ASCII.
#[cold]
fn identifier_by_rules(value: &str) -> Result<bool> {
    if value.is_empty() {
        return Err(Error::invalid_key("identifier is empty"));
    }
    if value.len() > MAX_KEY_LEN {
        return Err(Error::invalid_key(format!(
            "identifier is {} bytes, longer than the maximum key length of {MAX_KEY_LEN}; hash it first",
            value.len()
        )));
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(Error::invalid_key(format!("identifier holds the control character {c:?}")));
    }
    Ok(!value.contains([':', '%']))
}

/// Writes `value` as JSON with object keys sorted at every depth.
pub(crate) fn push_canonical(out: &mut String, value: &serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<(&String, &serde_json::Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (name, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_string(out, name);
                out.push(':');
                push_canonical(out, value);
            }
            out.push('}');
        }
        serde_json::Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_canonical(out, item);
            }
            out.push(']');
        }
        serde_json::Value::String(s) => push_json_string(out, s),
        // Scalars have one JSON form: serde_json's (`Display` of a `Number` is what
        // `to_string` writes), without an allocation per value.
        serde_json::Value::Number(n) => {
            use std::fmt::Write as _;
            let _ = write!(out, "{n}");
        }
        serde_json::Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        serde_json::Value::Null => out.push_str("null"),
    }
}

/// Writes `s` as a JSON string exactly as serde_json does: `"` and `\` escaped, the control
/// characters U+0000 to U+001F as `\b \t \n \f \r` or `\u00xx` (lower-case hex), nothing
/// else (tested against serde_json below). For canonical documents written by hand, such as
/// the model cache's request fingerprint.
///
/// # Examples
///
/// ```
/// let mut out = String::new();
/// aurelis_cache_core::key::push_json_string(&mut out, "a\"b\n\u{1}");
/// assert_eq!(out, serde_json::to_string("a\"b\n\u{1}").unwrap());
/// ```
pub fn push_json_string(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(s.len() + 2);
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Writes a checked identifier, escaping `:` and `%` unless [`validate_identifier`] found it
/// `plain` (none there).
/// Appends what follows a key's `namespace:version:category:` head (the identifier, escaped
/// unless `plain`, and the params' hash) and checks the key's length.
fn push_tail(
    out: &mut String,
    identifier: &str,
    plain: bool,
    params: Option<&Params>,
) -> Result<()> {
    push_escaped(out, identifier, plain);
    if let Some(params) = params.filter(|p| !p.is_empty()) {
        out.push(':');
        push_hash_hex(out, params.canonical_json().as_bytes());
    }
    check_len(out)
}

fn push_escaped(out: &mut String, identifier: &str, plain: bool) {
    if plain {
        out.push_str(identifier);
        return;
    }
    for c in identifier.chars() {
        match c {
            ':' => out.push_str("%3A"),
            '%' => out.push_str("%25"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn nested_maps_hash_the_same_in_any_insertion_order() {
        let mut a = serde_json::Map::new();
        a.insert("z".into(), 1.into());
        a.insert("a".into(), serde_json::json!({"y": [1, {"d": 1, "c": 2}], "b": "x"}));
        let mut b = serde_json::Map::new();
        b.insert("a".into(), serde_json::json!({"b": "x", "y": [1, {"c": 2, "d": 1}]}));
        b.insert("z".into(), 1.into());
        let pa = Params::new().with("p", serde_json::Value::Object(a));
        let pb = Params::new().with("p", serde_json::Value::Object(b));
        assert_eq!(pa.canonical_json(), r#"{"p":{"a":{"b":"x","y":[1,{"c":2,"d":1}]},"z":1}}"#);
        assert_eq!(pa.canonical_json(), pb.canonical_json());
        assert_eq!(pa.hash_hex(), pb.hash_hex());
    }

    #[test]
    fn same_bytes_is_slice_equality_at_every_short_length() {
        let base: Vec<u8> = (0..40u8).map(|i| b'a' + i % 26).collect();
        for n in 0..=40 {
            let a = &base[..n];
            assert!(same_bytes(a, a), "{n} bytes");
            assert!(!same_bytes(a, &base[..n.saturating_sub(1)]) || n == 0, "lengths differ");
            for at in 0..n {
                let mut b = a.to_vec();
                b[at] ^= 0x20;
                assert!(!same_bytes(a, &b), "{n} bytes, differing at {at}");
            }
        }
    }

    #[test]
    fn a_key_writer_writes_what_build_key_builds_in_any_order() {
        // A seeded walk over builders, categories (valid and not), identifiers (plain,
        // escaped, empty, with control characters) and params: the writer's text is always
        // `build_key`'s, and its errors are `build_key`'s.
        // Prefixes of other lengths, and one of the same length (told apart by its bytes).
        let builders = [
            KeyBuilder::default(),
            KeyBuilder::new("app", "v2").unwrap(),
            KeyBuilder::new("aurelis", "v1x").unwrap(),
            KeyBuilder::new("aurelis", "v2").unwrap(),
        ];
        let categories = ["user", "users", "use", "user:x", "bad cat", "@model", "", "u"];
        let identifiers = ["42", "a:b", "50%", "", "x\u{1}", "long identifier with spaces", "é"];
        let params = Params::new().with("k", 1);
        let mut writer = KeyWriter::new();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..5_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let keys = &builders[(state % 4) as usize];
            let category = categories[(state >> 8) as usize % categories.len()];
            let identifier = identifiers[(state >> 16) as usize % identifiers.len()];
            let params = (state >> 24).is_multiple_of(3).then_some(&params);
            let built = keys.build_key(category, identifier, params);
            match (keys.write_key_into(&mut writer, category, identifier, params), built) {
                (Ok(text), Ok(key)) => assert_eq!(text, key.as_str()),
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
                (a, b) => panic!("{category:?} {identifier:?}: {a:?} against {b:?}"),
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// The canonical form writes scalars byte for byte as serde_json does, so that keys
        /// do not change with how they are written.
        #[test]
        fn scalars_are_written_as_serde_json_writes_them(
            s in "(?s).{0,40}|[\\x00-\\x1f\"\\\\/\\x7f]{0,8}",
            i in proptest::num::i64::ANY,
            u in proptest::num::u64::ANY,
            f in proptest::num::f64::ANY,
            b in proptest::bool::ANY,
        ) {
            let values = [
                serde_json::Value::from(s.clone()),
                serde_json::Value::from(i),
                serde_json::Value::from(u),
                serde_json::Value::from(f),
                serde_json::Value::from(b),
                serde_json::Value::Null,
            ];
            for value in values {
                let mut out = String::new();
                push_canonical(&mut out, &value);
                proptest::prop_assert_eq!(out, value.to_string());
            }
            let mut out = String::new();
            push_json_string(&mut out, &s);
            proptest::prop_assert_eq!(out, serde_json::to_string(&s).unwrap());
        }
    }

    #[test]
    fn hash_hex_is_the_head_of_blake3_hex() {
        for input in [&b""[..], b"hello", &[0xffu8; 1000]] {
            let full = blake3::hash(input).to_hex();
            assert_eq!(hash_hex(input), &full.as_str()[..HASH_HEX_LEN]);
        }
    }

    #[test]
    fn golden_keys() {
        // A change of these is a change of the key scheme: every cache goes cold.
        let keys = KeyBuilder::default();
        let p = Params::new().with("page", 1).with("filter", serde_json::json!({"b": 2, "a": 1}));
        assert_eq!(
            keys.build_key("search", "q:1", Some(&p)).unwrap().as_str(),
            format!(
                "aurelis:v1:search:q%3A1:{}",
                hash_hex(br#"{"filter":{"a":1,"b":2},"page":1}"#)
            )
        );
        let model = keys.build_model_key("gpt-4o", "Hi", &Params::new()).unwrap();
        assert!(model.as_str().starts_with("aurelis:v1:@model:gpt-4o:"));
    }

    #[test]
    fn reserved_categories_are_refused() {
        let keys = KeyBuilder::default();
        let err = keys.build_key("@model", "x", None).unwrap_err();
        assert!(err.message().contains("reserved"), "{err}");
        assert!(keys.category_prefix("@x").is_err());
        // `model` is an ordinary category and cannot overlap model keys.
        let user = keys.build_key("model", "gpt-4o", None).unwrap();
        assert!(!user.as_str().starts_with(&keys.model_prefix("gpt-4o").unwrap()));
    }

    #[test]
    fn default_format() {
        let keys = KeyBuilder::default();
        let key = keys.build_key("user_data", "user123", None).unwrap();
        assert_eq!(key.as_str(), "aurelis:v1:user_data:user123");
        let empty = Params::new();
        assert_eq!(keys.build_key("user_data", "user123", Some(&empty)).unwrap(), key);
    }

    #[test]
    fn params_order_does_not_matter_and_values_do() {
        let keys = KeyBuilder::default();
        let a = Params::new().with("page", 1).with("limit", 10);
        let b = Params::new().with("limit", 10).with("page", 1);
        let c = Params::new().with("limit", 10).with("page", 2);
        let ka = keys.build_key("s", "q", Some(&a)).unwrap();
        assert_eq!(ka, keys.build_key("s", "q", Some(&b)).unwrap());
        assert_ne!(ka, keys.build_key("s", "q", Some(&c)).unwrap());
        let hash = ka.as_str().rsplit(':').next().unwrap();
        assert_eq!(hash.len(), HASH_HEX_LEN);
        assert!(hash.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn nested_maps_are_canonical() {
        let mut m1 = std::collections::HashMap::new();
        for i in 0..32 {
            m1.insert(format!("k{i}"), i);
        }
        let a = Params::new().with("inner", serde_json::to_value(&m1).unwrap());
        let json = a.canonical_json();
        assert!(json.find("\"k0\"").unwrap() < json.find("\"k1\"").unwrap());
        assert!(json.find("\"k1\"").unwrap() < json.find("\"k10\"").unwrap());
    }

    #[test]
    fn identifiers_are_escaped_so_keys_cannot_collide() {
        let keys = KeyBuilder::default();
        let p = Params::new().with("x", 1);
        let with_params = keys.build_key("c", "id", Some(&p)).unwrap();
        let forged = format!("id:{}", p.hash_hex());
        assert_ne!(with_params, keys.build_key("c", &forged, None).unwrap());
        assert_ne!(
            keys.build_key("c", "a%3Ab", None).unwrap(),
            keys.build_key("c", "a:b", None).unwrap()
        );
    }

    #[test]
    fn bad_parts_are_named_in_the_error() {
        let keys = KeyBuilder::default();
        let err = keys.build_key("", "id", None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidKey);
        assert!(err.message().contains("category is empty"), "{err}");
        let err = keys.build_key("cat", "", None).unwrap_err();
        assert!(err.message().contains("identifier is empty"), "{err}");
        let err = keys.build_key("a:b", "id", None).unwrap_err();
        assert!(err.message().contains("category"), "{err}");
        let err = keys.build_key("cat", "line\nbreak", None).unwrap_err();
        assert!(err.message().contains("control"), "{err}");
        let long = "x".repeat(MAX_KEY_LEN);
        let err = keys.build_key("cat", &long, None).unwrap_err();
        assert!(err.message().contains("longer than"), "{err}");
        assert!(KeyBuilder::new("", "v1").is_err());
        assert!(KeyBuilder::new("ns", "v 1").is_err());
    }

    #[test]
    fn model_keys_cover_prompt_and_params() {
        let keys = KeyBuilder::default();
        let p = Params::new().with("temperature", 0.0);
        let a = keys.build_model_key("gpt-4o", "hello", &p).unwrap();
        assert_eq!(a, keys.build_model_key("gpt-4o", "hello", &p).unwrap());
        assert_ne!(a, keys.build_model_key("gpt-4o", "hello!", &p).unwrap());
        assert_ne!(a, keys.build_model_key("gpt-4o-mini", "hello", &p).unwrap());
        assert_ne!(
            a,
            keys.build_model_key("gpt-4o", "hello", &Params::new().with("temperature", 0.1))
                .unwrap()
        );
        let long_prompt = "word ".repeat(10_000);
        assert!(keys.build_model_key("gpt-4o", &long_prompt, &p).unwrap().as_str().len() < 100);
    }

    /// The byte-wise fast paths accept exactly what the character rules accept: every
    /// character alone and next to a plain one, ASCII and beyond.
    #[test]
    fn fast_validation_agrees_with_the_character_rules() {
        let keys = KeyBuilder::default();
        let samples = (0u32..0x300).chain([0x2028, 0x3000, 0xFEFF, 0x1F600]);
        for c in samples.filter_map(char::from_u32) {
            let bad_in_category = c.is_whitespace()
                || c.is_control()
                || matches!(c, ':' | '*' | '?' | '[' | ']' | '\\')
                || c == '@';
            for part in [c.to_string(), format!("a{c}b")] {
                let leading_at = part.starts_with('@');
                let bad = bad_in_category && (c != '@' || leading_at);
                assert_eq!(keys.build_key(&part, "id", None).is_err(), bad, "category {part:?}");
                assert_eq!(
                    keys.build_key("cat", &part, None).is_err(),
                    c.is_control(),
                    "identifier {part:?}"
                );
            }
        }
    }
}
