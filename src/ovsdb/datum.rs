//! OVSDB values: atoms, sets and maps (RFC 7047 §5.1).
//!
//! Both wire forms of a set are decoded (a bare atom is a one-element set); encoding is
//! canonical (one-element sets bare, maps always `["map", …]`). Sets and maps are kept
//! ordered so equal data compares and hashes equal.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};

use serde_json::{json, Value};
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
        match v {
            Value::Bool(b) => Ok(Atom::Boolean(*b)),
            Value::String(s) => Ok(Atom::String(s.clone())),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Ok(Atom::Integer(i))
                } else if let Some(f) = n.as_f64() {
                    Ok(Atom::Real(f))
                } else {
                    Err(format!("number {n} out of range"))
                }
            }
            Value::Array(a) if a.len() == 2 => match (&a[0], &a[1]) {
                (Value::String(tag), Value::String(s)) if tag == "uuid" => Uuid::parse_str(s)
                    .map(Atom::Uuid)
                    .map_err(|e| format!("bad uuid {s:?}: {e}")),
                (Value::String(tag), Value::String(s)) if tag == "named-uuid" => {
                    Ok(Atom::NamedUuid(s.clone()))
                }
                _ => Err(format!("not an atom: {v}")),
            },
            _ => Err(format!("not an atom: {v}")),
        }
    }

    /// The wire form.
    pub fn to_json(&self) -> Value {
        match self {
            Atom::Integer(i) => json!(i),
            Atom::Real(f) => json!(f),
            Atom::Boolean(b) => json!(b),
            Atom::String(s) => json!(s),
            Atom::Uuid(u) => json!(["uuid", u.to_string()]),
            Atom::NamedUuid(n) => json!(["named-uuid", n]),
        }
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
            (Atom::Uuid(a), Atom::Uuid(b)) => a.cmp(b),
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

/// A column value: a set of atoms (scalars are one-element sets) or a map.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Datum {
    /// A set (also scalars and optional values).
    Set(BTreeSet<Atom>),
    /// A map.
    Map(BTreeMap<Atom, Atom>),
}

impl Default for Datum {
    fn default() -> Self {
        Datum::Set(BTreeSet::new())
    }
}

impl Datum {
    /// The empty set.
    pub fn empty() -> Datum {
        Datum::Set(BTreeSet::new())
    }

    /// The empty map.
    pub fn empty_map() -> Datum {
        Datum::Map(BTreeMap::new())
    }

    /// A one-element set.
    pub fn scalar(a: impl Into<Atom>) -> Datum {
        Datum::Set(BTreeSet::from([a.into()]))
    }

    /// A set of the given atoms.
    pub fn set<A: Into<Atom>>(items: impl IntoIterator<Item = A>) -> Datum {
        Datum::Set(items.into_iter().map(Into::into).collect())
    }

    /// A map of string keys to string values.
    pub fn string_map<K: Into<String>, V: Into<String>>(
        items: impl IntoIterator<Item = (K, V)>,
    ) -> Datum {
        Datum::Map(
            items
                .into_iter()
                .map(|(k, v)| (Atom::String(k.into()), Atom::String(v.into())))
                .collect(),
        )
    }

    /// Number of elements (set members or map pairs).
    pub fn len(&self) -> usize {
        match self {
            Datum::Set(s) => s.len(),
            Datum::Map(m) => m.len(),
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
        if let Value::Array(a) = v {
            if a.len() == 2 {
                if let (Value::String(tag), Value::Array(items)) = (&a[0], &a[1]) {
                    match tag.as_str() {
                        "set" => {
                            return items
                                .iter()
                                .map(Atom::from_json)
                                .collect::<Result<_, _>>()
                                .map(Datum::Set)
                        }
                        "map" => {
                            let mut m = BTreeMap::new();
                            for pair in items {
                                match pair {
                                    Value::Array(p) if p.len() == 2 => {
                                        m.insert(Atom::from_json(&p[0])?, Atom::from_json(&p[1])?);
                                    }
                                    _ => return Err(format!("bad map pair: {pair}")),
                                }
                            }
                            return Ok(Datum::Map(m));
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(Datum::Set(BTreeSet::from([Atom::from_json(v)?])))
    }

    /// The canonical wire form.
    pub fn to_json(&self) -> Value {
        match self {
            Datum::Set(s) if s.len() == 1 => s.iter().next().map(Atom::to_json).unwrap_or_default(),
            Datum::Set(s) => json!(["set", s.iter().map(Atom::to_json).collect::<Vec<_>>()]),
            Datum::Map(m) => json!([
                "map",
                m.iter()
                    .map(|(k, v)| json!([k.to_json(), v.to_json()]))
                    .collect::<Vec<_>>()
            ]),
        }
    }

    /// The set's members (a map's keys).
    pub fn atoms(&self) -> Box<dyn Iterator<Item = &Atom> + '_> {
        match self {
            Datum::Set(s) => Box::new(s.iter()),
            Datum::Map(m) => Box::new(m.keys()),
        }
    }

    /// The single member of a one-element set.
    pub fn as_scalar(&self) -> Option<&Atom> {
        match self {
            Datum::Set(s) if s.len() == 1 => s.iter().next(),
            _ => None,
        }
    }

    /// The single string of a one-element set.
    pub fn as_str(&self) -> Option<&str> {
        self.as_scalar().and_then(Atom::as_str)
    }

    /// The map, if this is one (an empty set counts as an empty map).
    pub fn as_map(&self) -> Option<&BTreeMap<Atom, Atom>> {
        static EMPTY: BTreeMap<Atom, Atom> = BTreeMap::new();
        match self {
            Datum::Map(m) => Some(m),
            Datum::Set(s) if s.is_empty() => Some(&EMPTY),
            Datum::Set(_) => None,
        }
    }

    /// A map's string value at a string key.
    pub fn map_get(&self, key: &str) -> Option<&str> {
        self.as_map()?
            .get(&Atom::String(key.to_owned()))
            .and_then(Atom::as_str)
    }

    /// The set of UUIDs in a reference column.
    pub fn uuids(&self) -> impl Iterator<Item = Uuid> + '_ {
        self.atoms().filter_map(Atom::as_uuid)
    }

    /// Apply an `update2` "modify" difference for a column of composite type (max > 1): symmetric
    /// difference for sets; for maps, a pair with a key present toggles it off when the
    /// value is equal and replaces the value otherwise, a new key is added.
    pub fn apply_diff(&mut self, diff: &Datum) {
        match (self, diff) {
            (Datum::Set(s), Datum::Set(d)) => {
                for a in d {
                    if !s.remove(a) {
                        s.insert(a.clone());
                    }
                }
            }
            (Datum::Map(m), Datum::Map(d)) => {
                for (k, v) in d {
                    match m.get(k) {
                        Some(old) if old == v => {
                            m.remove(k);
                        }
                        _ => {
                            m.insert(k.clone(), v.clone());
                        }
                    }
                }
            }
            (this @ Datum::Set(_), Datum::Map(d)) if this.is_empty() => {
                *this = Datum::Map(d.clone());
            }
            // An empty diff of the other shape is a no-op.
            _ => {}
        }
    }
}

impl From<Atom> for Datum {
    fn from(a: Atom) -> Self {
        Datum::Set(BTreeSet::from([a]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_set_forms_and_canonical_encoding() {
        let bare = Datum::from_json(&json!("tcp")).unwrap();
        let wrapped = Datum::from_json(&json!(["set", ["tcp"]])).unwrap();
        assert_eq!(bare, wrapped);
        assert_eq!(bare.to_json(), json!("tcp"));
        let u = Uuid::new_v4();
        let d = Datum::from_json(&json!(["uuid", u.to_string()])).unwrap();
        assert_eq!(d.uuids().collect::<Vec<_>>(), vec![u]);
        let m = Datum::from_json(&json!(["map", [["a", "1"], ["b", "2"]]])).unwrap();
        assert_eq!(m.map_get("b"), Some("2"));
        assert_eq!(m.to_json(), json!(["map", [["a", "1"], ["b", "2"]]]));
        assert_eq!(Datum::empty().to_json(), json!(["set", []]));
        assert_eq!(
            Datum::set([3i64, 1, 2]).to_json(),
            json!(["set", [1, 2, 3]])
        );
        assert!(Datum::from_json(&json!({"x": 1})).is_err());
        assert!(Datum::from_json(&json!(["uuid", "nope"])).is_err());
        assert_eq!(
            Datum::from_json(&json!(1.5)).unwrap().as_scalar(),
            Some(&Atom::Real(1.5))
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
