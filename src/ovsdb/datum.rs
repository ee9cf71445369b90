//! OVSDB values: atoms, sets and maps (RFC 7047 §5.1).
//!
//! Both wire forms of a set are decoded (a bare atom is a one-element set); encoding is
//! canonical (one-element sets bare, maps always `["map", …]`). A [`Datum`] keeps its
//! elements in a sorted `Vec` (a map: sorted by key, keys unique): equal data compares
//! and hashes equal, lookups are binary searches, and the typical one-element value is a
//! single small allocation (a `BTreeMap` node costs hundreds of bytes). Values are
//! (de)serialised with serde directly, without an intermediate `serde_json::Value`.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeSeq, Serializer};
use serde_json::Value;
use uuid::Uuid;

/// One scalar value.
#[derive(Debug, Clone)]
pub enum Atom {
    /// 64-bit signed integer.
    Integer(i64),
    /// Double-precision real.
    Real(f64),
    /// Boolean.
    Boolean(bool),
    /// UTF-8 string.
    String(String),
    /// A row UUID.
    Uuid(Uuid),
    /// A reference to a row inserted earlier in the same transaction.
    NamedUuid(String),
}

impl Atom {
    fn rank(&self) -> u8 {
        match self {
            Atom::Integer(_) => 0,
            Atom::Real(_) => 1,
            Atom::Boolean(_) => 2,
            Atom::String(_) => 3,
            Atom::Uuid(_) => 4,
            Atom::NamedUuid(_) => 5,
        }
    }

    /// Decode a wire atom.
    ///
    /// # Errors
    /// A description when `v` is not an atom.
    pub fn from_json(v: &Value) -> Result<Atom, String> {
        Atom::deserialize(v).map_err(|e| e.to_string())
    }

    /// The wire form.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// The string, if this is a string atom.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Atom::String(s) => Some(s),
            _ => None,
        }
    }

    /// The UUID, if this is a UUID atom.
    pub fn as_uuid(&self) -> Option<Uuid> {
        match self {
            Atom::Uuid(u) => Some(*u),
            _ => None,
        }
    }

    /// The integer, if this is an integer atom.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Atom::Integer(i) => Some(*i),
            _ => None,
        }
    }

    /// The boolean, if this is a boolean atom.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Atom::Boolean(b) => Some(*b),
            _ => None,
        }
    }
}

impl PartialEq for Atom {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Atom {}
impl PartialOrd for Atom {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Atom {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Atom::Integer(a), Atom::Integer(b)) => a.cmp(b),
            (Atom::Real(a), Atom::Real(b)) => a.total_cmp(b),
            (Atom::Boolean(a), Atom::Boolean(b)) => a.cmp(b),
            (Atom::String(a), Atom::String(b)) => a.cmp(b),
            // As integers: the same order as the bytes (big-endian), without a memcmp call.
            (Atom::Uuid(a), Atom::Uuid(b)) => a.as_u128().cmp(&b.as_u128()),
            (Atom::NamedUuid(a), Atom::NamedUuid(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}
impl Hash for Atom {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.rank().hash(h);
        match self {
            Atom::Integer(i) => i.hash(h),
            Atom::Real(f) => f.to_bits().hash(h),
            Atom::Boolean(b) => b.hash(h),
            Atom::String(s) | Atom::NamedUuid(s) => s.hash(h),
            Atom::Uuid(u) => u.hash(h),
        }
    }
}

impl From<&str> for Atom {
    fn from(s: &str) -> Self {
        Atom::String(s.to_owned())
    }
}
impl From<String> for Atom {
    fn from(s: String) -> Self {
        Atom::String(s)
    }
}
impl From<i64> for Atom {
    fn from(i: i64) -> Self {
        Atom::Integer(i)
    }
}
impl From<bool> for Atom {
    fn from(b: bool) -> Self {
        Atom::Boolean(b)
    }
}
impl From<Uuid> for Atom {
    fn from(u: Uuid) -> Self {
        Atom::Uuid(u)
    }
}

impl Serialize for Atom {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Atom::Integer(i) => s.serialize_i64(*i),
            Atom::Real(f) => s.serialize_f64(*f),
            Atom::Boolean(b) => s.serialize_bool(*b),
            Atom::String(v) => s.serialize_str(v),
            Atom::Uuid(u) => {
                let mut buf = Uuid::encode_buffer();
                (&"uuid", &*u.hyphenated().encode_lower(&mut buf)).serialize(s)
            }
            Atom::NamedUuid(n) => (&"named-uuid", n).serialize(s),
        }
    }
}

struct AtomVisitor;

impl<'de> Visitor<'de> for AtomVisitor {
    type Value = Atom;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an OVSDB atom")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Atom, E> {
        Ok(Atom::Boolean(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Atom, E> {
        Ok(Atom::Integer(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Atom, E> {
        i64::try_from(v)
            .map(Atom::Integer)
            .map_err(|_| E::custom(format!("integer {v} out of range")))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Atom, E> {
        Ok(Atom::Real(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Atom, E> {
        Ok(Atom::String(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Atom, E> {
        Ok(Atom::String(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Atom, A::Error> {
        let tag: TagBuf = seq
            .next_element()?
            .ok_or_else(|| de::Error::custom("empty array is not an atom"))?;
        let atom = tagged_atom(&tag.0, &mut seq)?;
        if seq.next_element::<de::IgnoredAny>()?.is_some() {
            return Err(de::Error::custom("atom array longer than 2"));
        }
        Ok(atom)
    }
}

fn tagged_atom<'de, A: SeqAccess<'de>>(tag: &str, seq: &mut A) -> Result<Atom, A::Error> {
    let s: TagBuf = seq
        .next_element()?
        .ok_or_else(|| de::Error::custom(format!("[\"{tag}\"] without value")))?;
    match tag {
        "uuid" => Uuid::parse_str(&s.0)
            .map(Atom::Uuid)
            .map_err(|e| de::Error::custom(format!("bad uuid {:?}: {e}", s.0))),
        "named-uuid" => Ok(Atom::NamedUuid(s.0)),
        other => Err(de::Error::custom(format!("not an atom: [\"{other}\", …]"))),
    }
}

/// A string element (owned: JSON with escapes cannot be borrowed).
struct TagBuf(String);
impl<'de> Deserialize<'de> for TagBuf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(TagBuf)
    }
}

impl<'de> Deserialize<'de> for Atom {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Atom, D::Error> {
        d.deserialize_any(AtomVisitor)
    }
}

/// A column value: a set of atoms (scalars are one-element sets) or a map.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Datum {
    repr: Repr,
}

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Repr {
    /// Sorted, unique.
    Set(Vec<Atom>),
    /// Sorted by key, keys unique.
    Map(Vec<(Atom, Atom)>),
}

impl Default for Repr {
    fn default() -> Self {
        Repr::Set(Vec::new())
    }
}

impl fmt::Debug for Datum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            Repr::Set(s) => f.debug_set().entries(s).finish(),
            Repr::Map(m) => f
                .debug_map()
                .entries(m.iter().map(|(k, v)| (k, v)))
                .finish(),
        }
    }
}

impl Datum {
    /// The empty set.
    pub const fn empty() -> Datum {
        Datum {
            repr: Repr::Set(Vec::new()),
        }
    }

    /// The empty map.
    pub const fn empty_map() -> Datum {
        Datum {
            repr: Repr::Map(Vec::new()),
        }
    }

    /// A one-element set.
    pub fn scalar(a: impl Into<Atom>) -> Datum {
        Datum {
            repr: Repr::Set(vec![a.into()]),
        }
    }

    /// A set of the given atoms (sorted and deduplicated here).
    pub fn set<A: Into<Atom>>(items: impl IntoIterator<Item = A>) -> Datum {
        Datum::from_atoms(items.into_iter().map(Into::into).collect())
    }

    /// A set from a vector (sorted and deduplicated here).
    pub fn from_atoms(mut v: Vec<Atom>) -> Datum {
        if !v.is_sorted_by(|a, b| a < b) {
            v.sort_unstable();
            v.dedup();
        }
        Datum { repr: Repr::Set(v) }
    }

    /// A map of the given pairs (sorted by key; the last value of a repeated key wins).
    pub fn map(pairs: impl IntoIterator<Item = (Atom, Atom)>) -> Datum {
        Datum::from_pairs(pairs.into_iter().collect())
    }

    /// A map from a vector of pairs (sorted by key; the last value of a repeated key wins).
    pub fn from_pairs(mut v: Vec<(Atom, Atom)>) -> Datum {
        if !v.is_sorted_by(|a, b| a.0 < b.0) {
            v.reverse();
            v.sort_by(|a, b| a.0.cmp(&b.0)); // stable: the last given comes first
            v.dedup_by(|later, earlier| later.0 == earlier.0);
        }
        Datum { repr: Repr::Map(v) }
    }

    /// A map of string keys to string values.
    pub fn string_map<K: Into<String>, V: Into<String>>(
        items: impl IntoIterator<Item = (K, V)>,
    ) -> Datum {
        Datum::map(
            items
                .into_iter()
                .map(|(k, v)| (Atom::String(k.into()), Atom::String(v.into()))),
        )
    }

    /// Whether this is a map (an empty set of a map column is normalised to a map by the
    /// schema when decoding).
    pub fn is_map(&self) -> bool {
        matches!(self.repr, Repr::Map(_))
    }

    /// Number of elements (set members or map pairs).
    pub fn len(&self) -> usize {
        match &self.repr {
            Repr::Set(s) => s.len(),
            Repr::Map(m) => m.len(),
        }
    }

    /// Whether the set or map is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Decode either wire form of a set, a map, or a bare atom.
    ///
    /// # Errors
    /// A description when `v` is not a datum.
    pub fn from_json(v: &Value) -> Result<Datum, String> {
        Datum::deserialize(v).map_err(|e| e.to_string())
    }

    /// The canonical wire form.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// The set's members (a map's keys), in order.
    pub fn atoms(&self) -> impl Iterator<Item = &Atom> + '_ {
        let (s, m): (&[Atom], &[(Atom, Atom)]) = match &self.repr {
            Repr::Set(s) => (s, &[]),
            Repr::Map(m) => (&[], m),
        };
        s.iter().chain(m.iter().map(|(k, _)| k))
    }

    /// The set's members; `None` for a map.
    pub fn as_set(&self) -> Option<&[Atom]> {
        match &self.repr {
            Repr::Set(s) => Some(s),
            Repr::Map(_) => None,
        }
    }

    /// Whether a set contains `a` (a map: has key `a`).
    pub fn contains(&self, a: &Atom) -> bool {
        match &self.repr {
            Repr::Set(s) => s.binary_search(a).is_ok(),
            Repr::Map(m) => m.binary_search_by(|(k, _)| k.cmp(a)).is_ok(),
        }
    }

    /// The single member of a one-element set.
    pub fn as_scalar(&self) -> Option<&Atom> {
        match &self.repr {
            Repr::Set(s) if s.len() == 1 => s.first(),
            _ => None,
        }
    }

    /// The single string of a one-element set.
    pub fn as_str(&self) -> Option<&str> {
        self.as_scalar().and_then(Atom::as_str)
    }

    /// The map's pairs, sorted by key (an empty set counts as an empty map).
    pub fn as_map(&self) -> Option<&[(Atom, Atom)]> {
        match &self.repr {
            Repr::Map(m) => Some(m),
            Repr::Set(s) if s.is_empty() => Some(&[]),
            Repr::Set(_) => None,
        }
    }

    /// A map's value at `key`.
    pub fn map_get_atom(&self, key: &Atom) -> Option<&Atom> {
        let m = self.as_map()?;
        m.binary_search_by(|(k, _)| k.cmp(key))
            .ok()
            .map(|i| &m[i].1)
    }

    /// A map's string value at a string key.
    pub fn map_get(&self, key: &str) -> Option<&str> {
        let m = self.as_map()?;
        m.binary_search_by(|(k, _)| match k {
            Atom::String(s) => s.as_str().cmp(key),
            other => other.rank().cmp(&3),
        })
        .ok()
        .and_then(|i| m[i].1.as_str())
    }

    /// The set of UUIDs in a reference column.
    pub fn uuids(&self) -> impl Iterator<Item = Uuid> + '_ {
        self.atoms().filter_map(Atom::as_uuid)
    }

    /// Apply an `update2` "modify" difference for a column of composite type (max > 1):
    /// symmetric difference for sets; for maps, a pair whose key is present toggles it off
    /// when the value is equal and replaces the value otherwise, a new key is added.
    pub fn apply_diff(&mut self, diff: &Datum) {
        match (&mut self.repr, &diff.repr) {
            (Repr::Set(s), Repr::Set(d)) => {
                for a in d {
                    match s.binary_search(a) {
                        Ok(i) => {
                            s.remove(i);
                        }
                        Err(i) => s.insert(i, a.clone()),
                    }
                }
            }
            (Repr::Map(m), Repr::Map(d)) => {
                for (k, v) in d {
                    match m.binary_search_by(|(mk, _)| mk.cmp(k)) {
                        Ok(i) if m[i].1 == *v => {
                            m.remove(i);
                        }
                        Ok(i) => m[i].1 = v.clone(),
                        Err(i) => m.insert(i, (k.clone(), v.clone())),
                    }
                }
            }
            (Repr::Set(s), Repr::Map(d)) if s.is_empty() => self.repr = Repr::Map(d.clone()),
            // An empty diff of the other shape is a no-op.
            _ => {}
        }
    }

    /// Integers widened to reals (for `real` columns).
    pub(crate) fn widen_integers(&mut self) {
        if let Repr::Set(s) = &mut self.repr {
            if s.iter().any(|a| matches!(a, Atom::Integer(_))) {
                let v = std::mem::take(s).into_iter().map(|a| match a {
                    Atom::Integer(i) => Atom::Real(i as f64),
                    a => a,
                });
                *self = Datum::from_atoms(v.collect());
            }
        }
    }

    /// An empty set becomes an empty map (for map columns).
    pub(crate) fn empty_as_map(&mut self) {
        if self.is_empty() {
            self.repr = Repr::Map(Vec::new());
        }
    }
}

impl From<Atom> for Datum {
    fn from(a: Atom) -> Self {
        Datum {
            repr: Repr::Set(vec![a]),
        }
    }
}

impl Serialize for Datum {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Items<'a, T>(&'a [T]);
        impl<T: Serialize> Serialize for Items<'_, T> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut seq = s.serialize_seq(Some(self.0.len()))?;
                for i in self.0 {
                    seq.serialize_element(i)?;
                }
                seq.end()
            }
        }
        match &self.repr {
            Repr::Set(v) if v.len() == 1 => v[0].serialize(s),
            Repr::Set(v) => (&"set", Items(v)).serialize(s),
            Repr::Map(m) => (&"map", Items(m)).serialize(s),
        }
    }
}

struct DatumVisitor;

impl<'de> Visitor<'de> for DatumVisitor {
    type Value = Datum;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an OVSDB datum")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Datum, E> {
        Ok(Datum::scalar(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Datum, E> {
        Ok(Datum::scalar(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Datum, E> {
        AtomVisitor.visit_u64(v).map(Datum::from)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Datum, E> {
        Ok(Datum::from(Atom::Real(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Datum, E> {
        Ok(Datum::scalar(v))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Datum, E> {
        Ok(Datum::scalar(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Datum, A::Error> {
        let tag: TagBuf = seq
            .next_element()?
            .ok_or_else(|| de::Error::custom("empty array is not a datum"))?;
        let d = match tag.0.as_str() {
            "set" => {
                let v: Vec<Atom> = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::custom("[\"set\"] without members"))?;
                Datum::from_atoms(v)
            }
            "map" => {
                let v: Vec<(Atom, Atom)> = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::custom("[\"map\"] without pairs"))?;
                Datum::from_pairs(v)
            }
            other => Datum::from(tagged_atom(other, &mut seq)?),
        };
        if seq.next_element::<de::IgnoredAny>()?.is_some() {
            return Err(de::Error::custom("datum array longer than 2"));
        }
        Ok(d)
    }
}

impl<'de> Deserialize<'de> for Datum {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Datum, D::Error> {
        d.deserialize_any(DatumVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn both_set_forms_and_canonical_encoding() {
        let bare = Datum::from_json(&json!("tcp")).unwrap();
        let wrapped = Datum::from_json(&json!(["set", ["tcp"]])).unwrap();
        assert_eq!(bare, wrapped);
        assert_eq!(bare.to_json(), json!("tcp"));
        let u = Uuid::new_v4();
        let d = Datum::from_json(&json!(["uuid", u.to_string()])).unwrap();
        assert_eq!(d.uuids().collect::<Vec<_>>(), vec![u]);
        assert_eq!(d.to_json(), json!(["uuid", u.to_string()]));
        let m = Datum::from_json(&json!(["map", [["b", "2"], ["a", "1"]]])).unwrap();
        assert_eq!(m.map_get("b"), Some("2"));
        assert_eq!(m.map_get("c"), None);
        assert_eq!(m.to_json(), json!(["map", [["a", "1"], ["b", "2"]]]));
        assert_eq!(Datum::empty().to_json(), json!(["set", []]));
        assert_eq!(
            Datum::set([3i64, 1, 2, 1]).to_json(),
            json!(["set", [1, 2, 3]])
        );
        assert!(Datum::from_json(&json!({"x": 1})).is_err());
        assert!(Datum::from_json(&json!(["uuid", "nope"])).is_err());
        assert!(Datum::from_json(&json!(["set", [1], 2])).is_err());
        assert!(Datum::from_json(&json!(["bogus", 1])).is_err());
        assert!(Datum::from_json(&json!(18446744073709551615u64)).is_err());
        assert_eq!(
            Datum::from_json(&json!(1.5)).unwrap().as_scalar(),
            Some(&Atom::Real(1.5))
        );
        assert_eq!(
            Datum::from_json(&json!(["named-uuid", "r1"]))
                .unwrap()
                .to_json(),
            json!(["named-uuid", "r1"])
        );
        // Direct from bytes, escapes included.
        let d: Datum = serde_json::from_str(r#"["map",[["k\"1","v\\"]]]"#).unwrap();
        assert_eq!(d.map_get("k\"1"), Some("v\\"));
        // Repeated map keys: the last wins.
        assert_eq!(
            Datum::string_map([("a", "1"), ("a", "2")]).map_get("a"),
            Some("2")
        );
    }

    #[test]
    fn diffs() {
        let mut s = Datum::set(["a", "b"]);
        s.apply_diff(&Datum::set(["b", "c"]));
        assert_eq!(s, Datum::set(["a", "c"]));
        let mut m = Datum::string_map([("k1", "v1"), ("k2", "v2")]);
        m.apply_diff(&Datum::string_map([
            ("k1", "v1"),
            ("k2", "new"),
            ("k3", "v3"),
        ]));
        assert_eq!(m, Datum::string_map([("k2", "new"), ("k3", "v3")]));
        let mut e = Datum::empty();
        e.apply_diff(&Datum::string_map([("a", "b")]));
        assert_eq!(e, Datum::string_map([("a", "b")]));
    }
}
