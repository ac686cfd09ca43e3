//! Canonical JSON written straight from a [`Serialize`] value.
//!
//! A key's params are hashed as canonical JSON: the JSON of the value as `serde_json` builds
//! it ([`serde_json::to_value`]), with the members of every object sorted by name. Building
//! the `serde_json::Value` first costs an allocation per string, member and container; for the
//! arguments of a `#[cached]` call (an id, a prompt, a small struct) that was most of a hit.
//! [`write_canonical_json`] writes the same text with a serializer of its own. Where its
//! answer could differ from `serde_json`'s (map keys that are not strings, `serde_json`'s own
//! number and raw-value types, a value whose `Serialize` fails), it takes the `Value` path,
//! so the text is always the one [`Params`](crate::Params) would hash.

use std::fmt::{self, Display};
use std::ops::Range;

use serde::ser::{self, Impossible, Serialize};

use crate::error::{Error, Result};
use crate::key::{push_canonical, push_json_string};

/// Appends the canonical JSON of `value` to `out`: exactly the text of
/// `serde_json::to_value(value)` with every object's members sorted by name (as
/// [`Params::canonical_json`](crate::Params::canonical_json) writes a parameter's value), in
/// most cases without building the `serde_json::Value`.
///
/// # Examples
///
/// ```
/// use std::collections::HashMap;
/// use aurelis_cache_core::key::write_canonical_json;
///
/// #[derive(serde::Serialize)]
/// struct Search { query: String, page: u32, filters: HashMap<String, bool> }
///
/// let search = Search {
///     query: "caché \"rust\"".into(),
///     page: 2,
///     filters: HashMap::from([("b".to_string(), true), ("a".to_string(), false)]),
/// };
/// let mut out = String::new();
/// write_canonical_json(&mut out, &search)?;
/// assert_eq!(out, r#"{"filters":{"a":false,"b":true},"page":2,"query":"caché \"rust\""}"#);
///
/// // The same text as the parameter's value in `Params`.
/// let params = aurelis_cache_core::Params::new().with("v", serde_json::to_value(&search).unwrap());
/// assert_eq!(params.canonical_json(), format!(r#"{{"v":{out}}}"#));
/// # Ok::<(), aurelis_cache_core::Error>(())
/// ```
///
/// # Errors
///
/// [`ErrorKind::InvalidKey`](crate::ErrorKind::InvalidKey) when the value cannot be
/// represented as JSON (its `Serialize` fails, a map key is not a string or a number, an
/// integer does not fit 64 bits); `out` is then as it was.
pub fn write_canonical_json<T: Serialize + ?Sized>(out: &mut String, value: &T) -> Result<()> {
    let start = out.len();
    if value.serialize(Canonical { out }).is_ok() {
        return Ok(());
    }
    // serde_json's own answer: the same text, or the error it gives.
    out.truncate(start);
    let json = serde_json::to_value(value).map_err(|e| {
        Error::invalid_key("the value cannot be canonicalised as JSON").with_source(e)
    })?;
    push_canonical(out, &json);
    Ok(())
}

/// Why the fast path stopped: the caller takes the `serde_json::Value` path instead.
#[derive(Debug)]
struct Fallback;

impl Display for Fallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not written on the fast path")
    }
}

impl std::error::Error for Fallback {}

impl ser::Error for Fallback {
    fn custom<T: Display>(_msg: T) -> Self {
        Fallback
    }
}

type Fast = std::result::Result<(), Fallback>;

/// The names `serde_json` gives its own types' serialized forms (`Number` under
/// `arbitrary_precision`, `RawValue`): `to_value` reads them specially, so they take its path.
const SERDE_JSON_PRIVATE: &str = "$serde_json::private::";

/// Writes canonical JSON into `out`, mirroring `serde_json::value::Serializer` case by case.
struct Canonical<'a> {
    out: &'a mut String,
}

impl Canonical<'_> {
    fn integer(self, v: impl itoa::Integer) -> Fast {
        // With what serde_json writes integers with.
        self.out.push_str(itoa::Buffer::new().format(v));
        Ok(())
    }

    /// A scalar as serde_json's `Value` holds it, written as `Params` writes it.
    fn value(self, v: serde_json::Value) -> Fast {
        push_canonical(self.out, &v);
        Ok(())
    }

    /// Opens `{"variant":` (closed by the caller).
    fn open_variant(&mut self, variant: &str) {
        self.out.push('{');
        push_json_string(self.out, variant);
        self.out.push(':');
    }
}

impl<'a> ser::Serializer for Canonical<'a> {
    type Ok = ();
    type Error = Fallback;
    type SerializeSeq = Seq<'a>;
    type SerializeTuple = Seq<'a>;
    type SerializeTupleStruct = Seq<'a>;
    type SerializeTupleVariant = Seq<'a>;
    type SerializeMap = Object<'a>;
    type SerializeStruct = Object<'a>;
    type SerializeStructVariant = Object<'a>;

    fn serialize_bool(self, v: bool) -> Fast {
        self.out.push_str(if v { "true" } else { "false" });
        Ok(())
    }

    fn serialize_i8(self, v: i8) -> Fast {
        self.integer(v)
    }

    fn serialize_i16(self, v: i16) -> Fast {
        self.integer(v)
    }

    fn serialize_i32(self, v: i32) -> Fast {
        self.integer(v)
    }

    fn serialize_i64(self, v: i64) -> Fast {
        self.integer(v)
    }

    fn serialize_u8(self, v: u8) -> Fast {
        self.integer(v)
    }

    fn serialize_u16(self, v: u16) -> Fast {
        self.integer(v)
    }

    fn serialize_u32(self, v: u32) -> Fast {
        self.integer(v)
    }

    fn serialize_u64(self, v: u64) -> Fast {
        self.integer(v)
    }

    fn serialize_i128(self, v: i128) -> Fast {
        // Out of 64 bits it is an error or (arbitrary_precision) a number: serde_json decides.
        self.value(serde_json::to_value(v).map_err(|_| Fallback)?)
    }

    fn serialize_u128(self, v: u128) -> Fast {
        self.value(serde_json::to_value(v).map_err(|_| Fallback)?)
    }

    fn serialize_f32(self, v: f32) -> Fast {
        // serde_json's own conversion (NaN and infinities are null; its float formatting).
        self.value(serde_json::Value::from(v))
    }

    fn serialize_f64(self, v: f64) -> Fast {
        self.value(serde_json::Value::from(v))
    }

    fn serialize_char(self, v: char) -> Fast {
        push_json_string(self.out, v.encode_utf8(&mut [0; 4]));
        Ok(())
    }

    fn serialize_str(self, v: &str) -> Fast {
        push_json_string(self.out, v);
        Ok(())
    }

    fn serialize_bytes(self, v: &[u8]) -> Fast {
        // An array of numbers, as serde_json's `Value` holds bytes.
        self.out.push('[');
        for (i, b) in v.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.out.push_str(itoa::Buffer::new().format(*b));
        }
        self.out.push(']');
        Ok(())
    }

    fn serialize_none(self) -> Fast {
        self.serialize_unit()
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Fast {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Fast {
        self.out.push_str("null");
        Ok(())
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Fast {
        self.serialize_unit()
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Fast {
        self.serialize_str(variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Fast {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        mut self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Fast {
        self.open_variant(variant);
        value.serialize(Canonical { out: &mut *self.out })?;
        self.out.push('}');
        Ok(())
    }

    fn serialize_seq(self, _len: Option<usize>) -> std::result::Result<Seq<'a>, Fallback> {
        Ok(Seq::open(self.out, "]"))
    }

    fn serialize_tuple(self, len: usize) -> std::result::Result<Seq<'a>, Fallback> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> std::result::Result<Seq<'a>, Fallback> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_variant(
        mut self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> std::result::Result<Seq<'a>, Fallback> {
        self.open_variant(variant);
        Ok(Seq::open(self.out, "]}"))
    }

    fn serialize_map(self, _len: Option<usize>) -> std::result::Result<Object<'a>, Fallback> {
        Ok(Object::open(self.out, "}"))
    }

    fn serialize_struct(
        self,
        name: &'static str,
        _len: usize,
    ) -> std::result::Result<Object<'a>, Fallback> {
        if name.starts_with(SERDE_JSON_PRIVATE) {
            return Err(Fallback);
        }
        Ok(Object::open(self.out, "}"))
    }

    fn serialize_struct_variant(
        mut self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> std::result::Result<Object<'a>, Fallback> {
        self.open_variant(variant);
        Ok(Object::open(self.out, "}}"))
    }
}

/// An array (or a tuple variant's array) being written.
struct Seq<'a> {
    out: &'a mut String,
    first: bool,
    close: &'static str,
}

impl<'a> Seq<'a> {
    fn open(out: &'a mut String, close: &'static str) -> Self {
        out.push('[');
        Seq { out, first: true, close }
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Fast {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        value.serialize(Canonical { out: &mut *self.out })
    }

    fn close(self) -> Fast {
        self.out.push_str(self.close);
        Ok(())
    }
}

/// The four sequence traits of serde's data model, each writing its elements the same way.
macro_rules! seq_traits {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for Seq<'_> {
            type Ok = ();
            type Error = Fallback;

            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Fast {
                self.element(value)
            }

            fn end(self) -> Fast {
                self.close()
            }
        }
    )*};
}

seq_traits!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

/// A member's name: a struct's field names are static, a map's keys are not.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Name {
    Static(&'static str),
    Owned(String),
}

impl Name {
    fn as_str(&self) -> &str {
        match self {
            Name::Static(s) => s,
            Name::Owned(s) => s,
        }
    }
}

/// An object (a map, a struct, a struct variant's fields) being written.
///
/// Members are written in the order they come, each value straight into `out`; the object is
/// rewritten in name order at the end only if they did not come sorted (a struct whose fields
/// are declared in name order, a `BTreeMap`, costs no copy). Of members with the same name the
/// last one stays, as in serde_json's map.
struct Object<'a> {
    out: &'a mut String,
    /// Where the object's `{` is.
    start: usize,
    /// Each member's name and where its value's text is in `out`.
    members: Vec<(Name, Range<usize>)>,
    /// The name of a map's key whose value comes next.
    key: Option<String>,
    close: &'static str,
}

impl<'a> Object<'a> {
    fn open(out: &'a mut String, close: &'static str) -> Self {
        let start = out.len();
        out.push('{');
        Object { out, start, members: Vec::new(), key: None, close }
    }

    fn member<T: Serialize + ?Sized>(&mut self, name: Name, value: &T) -> Fast {
        if !self.members.is_empty() {
            self.out.push(',');
        }
        push_json_string(self.out, name.as_str());
        self.out.push(':');
        let from = self.out.len();
        value.serialize(Canonical { out: &mut *self.out })?;
        self.members.push((name, from..self.out.len()));
        Ok(())
    }

    fn close(self) -> Fast {
        let Object { out, start, mut members, close, .. } = self;
        let sorted = members.windows(2).all(|w| w[0].0.as_str() < w[1].0.as_str());
        if !sorted {
            let written = out.split_off(start);
            // Stable: of equal names the last written stays last, and is the one kept.
            members.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
            out.push('{');
            let mut first = true;
            for (i, (name, value)) in members.iter().enumerate() {
                if members.get(i + 1).is_some_and(|next| next.0.as_str() == name.as_str()) {
                    continue;
                }
                if !first {
                    out.push(',');
                }
                first = false;
                push_json_string(out, name.as_str());
                out.push(':');
                out.push_str(&written[value.start - start..value.end - start]);
            }
        }
        out.push_str(close);
        Ok(())
    }
}

impl ser::SerializeMap for Object<'_> {
    type Ok = ();
    type Error = Fallback;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Fast {
        self.key = Some(key.serialize(MapKey)?);
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Fast {
        let key = self.key.take().ok_or(Fallback)?;
        self.member(Name::Owned(key), value)
    }

    fn end(self) -> Fast {
        self.close()
    }
}

/// A struct's and a struct variant's fields are members named by the field.
macro_rules! struct_traits {
    ($($trait:ident),*) => {$(
        impl ser::$trait for Object<'_> {
            type Ok = ();
            type Error = Fallback;

            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Fast {
                self.member(Name::Static(key), value)
            }

            fn end(self) -> Fast {
                self.close()
            }
        }
    )*};
}

struct_traits!(SerializeStruct, SerializeStructVariant);

/// A map key: strings here; anything else (numbers, booleans, enums serde_json turns into
/// strings by rules of its own) takes serde_json's path.
struct MapKey;

type KeyResult = std::result::Result<String, Fallback>;

impl ser::Serializer for MapKey {
    type Ok = String;
    type Error = Fallback;
    type SerializeSeq = Impossible<String, Fallback>;
    type SerializeTuple = Impossible<String, Fallback>;
    type SerializeTupleStruct = Impossible<String, Fallback>;
    type SerializeTupleVariant = Impossible<String, Fallback>;
    type SerializeMap = Impossible<String, Fallback>;
    type SerializeStruct = Impossible<String, Fallback>;
    type SerializeStructVariant = Impossible<String, Fallback>;

    fn serialize_str(self, v: &str) -> KeyResult {
        Ok(v.to_owned())
    }

    fn serialize_bool(self, _v: bool) -> KeyResult {
        Err(Fallback)
    }

    fn serialize_i8(self, _v: i8) -> KeyResult {
        Err(Fallback)
    }

    fn serialize_i16(self, _v: i16) -> KeyResult {
        Err(Fallback)
    }

    fn serialize_i32(self, _v: i32) -> KeyResult {
        Err(Fallback)
    }

    fn serialize_i64(self, _v: i64) -> KeyResult {
        Err(Fallback)
    }

    fn serialize_u8(self, _v: u8) -> KeyResult {
        Err(Fallback)
    }

    fn serialize_u16(self, _v: u16) -> KeyResult {
        Err(Fallback)
    }

    fn serialize_u32(self, _v: u32) -> KeyResult {
        Err(Fallback)
    }

    fn serialize_u64(self, _v: u64) -> KeyResult {
        Err(Fallback)
    }

    fn serialize_f32(self, _v: f32) -> KeyResult {
        Err(Fallback)
    }

    fn serialize_f64(self, _v: f64) -> KeyResult {
        Err(Fallback)
    }

    fn serialize_char(self, _v: char) -> KeyResult {
        Err(Fallback)
    }

    fn serialize_bytes(self, _v: &[u8]) -> KeyResult {
        Err(Fallback)
    }

    fn serialize_none(self) -> KeyResult {
        Err(Fallback)
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _value: &T) -> KeyResult {
        Err(Fallback)
    }

    fn serialize_unit(self) -> KeyResult {
        Err(Fallback)
    }

    fn serialize_unit_struct(self, _name: &'static str) -> KeyResult {
        Err(Fallback)
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
    ) -> KeyResult {
        Err(Fallback)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _value: &T,
    ) -> KeyResult {
        Err(Fallback)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> KeyResult {
        Err(Fallback)
    }

    fn serialize_seq(
        self,
        _len: Option<usize>,
    ) -> std::result::Result<Self::SerializeSeq, Fallback> {
        Err(Fallback)
    }

    fn serialize_tuple(self, _len: usize) -> std::result::Result<Self::SerializeTuple, Fallback> {
        Err(Fallback)
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> std::result::Result<Self::SerializeTupleStruct, Fallback> {
        Err(Fallback)
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> std::result::Result<Self::SerializeTupleVariant, Fallback> {
        Err(Fallback)
    }

    fn serialize_map(
        self,
        _len: Option<usize>,
    ) -> std::result::Result<Self::SerializeMap, Fallback> {
        Err(Fallback)
    }

    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> std::result::Result<Self::SerializeStruct, Fallback> {
        Err(Fallback)
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> std::result::Result<Self::SerializeStructVariant, Fallback> {
        Err(Fallback)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use proptest::prelude::*;
    use serde::ser::{SerializeMap as _, SerializeStruct as _};
    use serde::Serialize;

    use super::*;

    /// What `Params` writes for a value: serde_json's `Value`, then sorted.
    fn through_value<T: Serialize + ?Sized>(value: &T) -> Option<String> {
        let json = serde_json::to_value(value).ok()?;
        let mut out = String::new();
        push_canonical(&mut out, &json);
        Some(out)
    }

    /// The fast path alone (no fallback): `None` where it hands over to serde_json.
    fn fast<T: Serialize + ?Sized>(value: &T) -> Option<String> {
        let mut out = String::new();
        value.serialize(Canonical { out: &mut out }).ok()?;
        Some(out)
    }

    /// Both paths agree, and the fast one did the work (unless `fallback` is expected).
    fn check<T: Serialize + ?Sized>(value: &T, fallback: bool) {
        let expected = through_value(value);
        let mut out = String::from("prefix");
        let got = write_canonical_json(&mut out, value).ok().map(|()| out[6..].to_string());
        assert_eq!(got, expected);
        assert_eq!(fast(value).is_none(), fallback, "fast path taken: {:?}", fast(value));
        if let Some(text) = fast(value) {
            assert_eq!(Some(text), expected);
        }
    }

    #[derive(Serialize)]
    struct Unsorted {
        zeta: u8,
        alpha: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        skipped: Option<u8>,
        mid: Vec<Inner>,
        #[serde(rename = "Upper")]
        upper: (i64, char, bool),
    }

    #[derive(Serialize)]
    struct Inner {
        y: f64,
        x: f32,
        tag: Kind,
    }

    #[derive(Serialize)]
    enum Kind {
        Unit,
        New(i32),
        Tuple(u8, String),
        Struct { b: u8, a: Option<u8> },
    }

    #[derive(Serialize)]
    struct Newtype(String);

    #[derive(Serialize)]
    struct UnitStruct;

    #[derive(Serialize)]
    struct Flattened {
        b: u8,
        #[serde(flatten)]
        rest: BTreeMap<String, u8>,
    }

    /// A map that writes one key twice (serde_json keeps the last value).
    struct Duplicates;

    impl Serialize for Duplicates {
        fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            let mut m = s.serialize_map(None)?;
            m.serialize_entry("k", &1)?;
            m.serialize_entry("a", &2)?;
            m.serialize_entry("k", &3)?;
            m.end()
        }
    }

    /// A struct whose `Serialize` fails halfway.
    struct Failing;

    impl Serialize for Failing {
        fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            let mut st = s.serialize_struct("Failing", 2)?;
            st.serialize_field("a", &1)?;
            Err(serde::ser::Error::custom("no"))
        }
    }

    struct Bytes<'a>(&'a [u8]);

    impl Serialize for Bytes<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }

    #[test]
    fn the_fast_path_writes_what_params_writes() {
        check(&42u64, false);
        check(&-7i8, false);
        check(&u64::MAX, false);
        check(&i64::MIN, false);
        check(&(u64::MAX as i128), false);
        check(&-1i128, false);
        check(&1u128, false);
        check(&0.1f64, false);
        check(&-0.0f64, false);
        check(&1e300f64, false);
        check(&f64::NAN, false);
        check(&f64::INFINITY, false);
        check(&0.1f32, false);
        check(&f32::NEG_INFINITY, false);
        check(&'é', false);
        check(&'\u{1}', false);
        check("quote \" backslash \\ tab \t nul \u{0} é 😀", false);
        check(&true, false);
        check(&(), false);
        check(&None::<u8>, false);
        check(&Some("x"), false);
        check(&UnitStruct, false);
        check(&Newtype("n".into()), false);
        check(&Bytes(&[0, 1, 255]), false);
        check(&Bytes(&[]), false);
        check(&Vec::<u8>::new(), false);
        check(&(1, "two", [3.5]), false);
        for kind in [Kind::Unit, Kind::New(-1), Kind::Tuple(1, "t".into())] {
            check(&kind, false);
        }
        check(&Kind::Struct { b: 1, a: None }, false);
        check(
            &Unsorted {
                zeta: 1,
                alpha: Some("a".into()),
                skipped: None,
                mid: vec![
                    Inner { y: 2.5, x: 0.1, tag: Kind::Struct { b: 2, a: Some(1) } },
                    Inner { y: f64::NAN, x: 3.0, tag: Kind::Unit },
                ],
                upper: (-3, 'c', false),
            },
            false,
        );
        check(
            &HashMap::from([("b".to_string(), 1), ("a".to_string(), 2), ("".to_string(), 3)]),
            false,
        );
        check(&BTreeMap::from([("a", vec![BTreeMap::from([("z", 1), ("y", 2)])])]), false);
        check(&Flattened { b: 1, rest: BTreeMap::from([("a".into(), 2), ("c".into(), 3)]) }, false);
        check(&Duplicates, false);
        check(&serde_json::json!({"b": [1, {"d": null, "c": 1.5}], "a": "x"}), false);
    }

    #[test]
    fn what_the_fast_path_cannot_write_takes_serde_jsons_path() {
        // Keys serde_json turns into strings by rules of its own.
        check(&HashMap::from([(1u32, "one"), (20, "twenty"), (3, "three")]), true);
        check(&BTreeMap::from([(true, 1)]), true);
        check(&BTreeMap::from([('c', 1)]), true);
        // Errors are serde_json's: a number out of 64 bits, a failing impl, a key that is a
        // sequence; the output is left as it was.
        for (what, value) in [
            ("i128", &(u64::MAX as i128 + 1) as &dyn erased::Erased),
            ("u128", &(u128::MAX) as &dyn erased::Erased),
            ("failing", &Failing as &dyn erased::Erased),
            ("seq key", &BTreeMap::from([(vec![1], 1)]) as &dyn erased::Erased),
        ] {
            let mut out = String::from("kept");
            let err = value.write(&mut out).expect_err(what);
            assert_eq!(err.kind(), crate::ErrorKind::InvalidKey, "{what}");
            assert_eq!(out, "kept", "{what}");
        }
        assert!(through_value(&Failing).is_none());
    }

    /// `dyn`-friendly calls of the generic function, for a table of mixed types.
    mod erased {
        pub(super) trait Erased {
            fn write(&self, out: &mut String) -> crate::Result<()>;
        }

        impl<T: serde::Serialize> Erased for T {
            fn write(&self, out: &mut String) -> crate::Result<()> {
                super::write_canonical_json(out, self)
            }
        }
    }

    /// Any JSON document: objects with keys in any order (the dev build keeps insertion
    /// order), duplicates across levels, every scalar.
    fn json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(serde_json::Value::from),
            ".{0,8}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 64, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
                proptest::collection::vec(("[a-d\"\\\\é\u{1}]{0,3}", inner), 0..6)
                    .prop_map(|members| serde_json::Value::Object(members.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn any_json_document_is_written_as_params_writes_it(doc in json()) {
            let mut out = String::new();
            write_canonical_json(&mut out, &doc).unwrap();
            let expected = through_value(&doc);
            prop_assert_eq!(Some(&out), expected.as_ref());
            prop_assert_eq!(Some(out), fast(&doc));
        }

        #[test]
        fn maps_of_any_keys_are_written_as_params_writes_them(
            map in proptest::collection::hash_map(".{0,6}", any::<Option<f32>>(), 0..8),
        ) {
            check(&map, false);
        }
    }
}
