//! Database schemas: `.ovsschema` files and `get_schema` replies (RFC 7047 §3.2), with
//! the checks an operation must pass before it is sent.

use std::collections::{BTreeMap, BTreeSet};

use std::path::Path;

use serde_json::Value;
use uuid::Uuid;

use super::datum::{Atom, Datum};

/// A schema error: parsing one, or a value/operation that violates one. Names the table,
/// the column and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{table}{}: {rule}", column.as_ref().map(|c| format!(".{c}")).unwrap_or_default())]
pub struct SchemaError {
    /// Table concerned.
    pub table: String,
    /// Column concerned, if any.
    pub column: Option<String>,
    /// The rule broken, in words.
    pub rule: String,
}

impl SchemaError {
    fn new(table: &str, column: Option<&str>, rule: impl Into<String>) -> Self {
        SchemaError {
            table: table.into(),
            column: column.map(Into::into),
            rule: rule.into(),
        }
    }
}

/// The atomic types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtomicType {
    /// `integer`
    Integer,
    /// `real`
    Real,
    /// `boolean`
    Boolean,
    /// `string`
    String,
    /// `uuid`
    Uuid,
}

impl AtomicType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "integer" => AtomicType::Integer,
            "real" => AtomicType::Real,
            "boolean" => AtomicType::Boolean,
            "string" => AtomicType::String,
            "uuid" => AtomicType::Uuid,
            _ => return None,
        })
    }

    /// The type's default atom (RFC 7047: 0, 0.0, false, "", all-zero UUID).
    pub fn default_atom(self) -> Atom {
        match self {
            AtomicType::Integer => Atom::Integer(0),
            AtomicType::Real => Atom::Real(0.0),
            AtomicType::Boolean => Atom::Boolean(false),
            AtomicType::String => Atom::String(String::new()),
            AtomicType::Uuid => Atom::Uuid(Uuid::nil()),
        }
    }

    fn name(self) -> &'static str {
        match self {
            AtomicType::Integer => "integer",
            AtomicType::Real => "real",
            AtomicType::Boolean => "boolean",
            AtomicType::String => "string",
            AtomicType::Uuid => "uuid",
        }
    }
}

/// Strength of a reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefType {
    /// Referenced rows cannot be deleted while referenced.
    Strong,
    /// References to deleted rows disappear.
    Weak,
}

/// A key or value type with its constraints.
#[derive(Debug, Clone, PartialEq)]
pub struct BaseType {
    /// The atomic type.
    pub atomic: AtomicType,
    /// Allowed values, when restricted.
    pub enumeration: Option<BTreeSet<Atom>>,
    /// Integer bounds.
    pub min_integer: Option<i64>,
    /// Integer bounds.
    pub max_integer: Option<i64>,
    /// Real bounds.
    pub min_real: Option<f64>,
    /// Real bounds.
    pub max_real: Option<f64>,
    /// String length bounds, in characters.
    pub min_length: Option<u64>,
    /// String length bounds, in characters.
    pub max_length: Option<u64>,
    /// Referenced table of a UUID.
    pub ref_table: Option<String>,
    /// Strength of the reference.
    pub ref_type: RefType,
}

impl BaseType {
    fn parse(v: &Value) -> Result<BaseType, String> {
        let (atomic, o) = match v {
            Value::String(s) => (s.as_str(), None),
            Value::Object(o) => (
                o.get("type")
                    .and_then(Value::as_str)
                    .ok_or("base type without \"type\"")?,
                Some(o),
            ),
            _ => return Err(format!("bad base type {v}")),
        };
        let atomic = AtomicType::parse(atomic).ok_or_else(|| format!("unknown type {atomic}"))?;
        let mut b = BaseType {
            atomic,
            enumeration: None,
            min_integer: None,
            max_integer: None,
            min_real: None,
            max_real: None,
            min_length: None,
            max_length: None,
            ref_table: None,
            ref_type: RefType::Strong,
        };
        if let Some(o) = o {
            if let Some(e) = o.get("enum") {
                let d = Datum::from_json(e)?;
                b.enumeration = Some(d.atoms().cloned().collect());
            }
            b.min_integer = o.get("minInteger").and_then(Value::as_i64);
            b.max_integer = o.get("maxInteger").and_then(Value::as_i64);
            b.min_real = o.get("minReal").and_then(Value::as_f64);
            b.max_real = o.get("maxReal").and_then(Value::as_f64);
            b.min_length = o.get("minLength").and_then(Value::as_u64);
            b.max_length = o.get("maxLength").and_then(Value::as_u64);
            b.ref_table = o.get("refTable").and_then(Value::as_str).map(Into::into);
            if o.get("refType").and_then(Value::as_str) == Some("weak") {
                b.ref_type = RefType::Weak;
            }
        }
        Ok(b)
    }

    /// Check one atom against the type and its constraints.
    ///
    /// # Errors
    /// The rule broken, in words.
    pub fn check(&self, a: &Atom) -> Result<(), String> {
        match (self.atomic, a) {
            (AtomicType::Integer, Atom::Integer(i)) => {
                if self.min_integer.is_some_and(|m| *i < m)
                    || self.max_integer.is_some_and(|m| *i > m)
                {
                    return Err(format!(
                        "{i} is outside {}..={}",
                        self.min_integer.map(|v| v.to_string()).unwrap_or_default(),
                        self.max_integer.map(|v| v.to_string()).unwrap_or_default()
                    ));
                }
            }
            (AtomicType::Real, Atom::Real(_) | Atom::Integer(_)) => {
                let f = match a {
                    Atom::Real(f) => *f,
                    Atom::Integer(i) => *i as f64,
                    _ => unreachable!(),
                };
                if self.min_real.is_some_and(|m| f < m) || self.max_real.is_some_and(|m| f > m) {
                    return Err(format!("{f} is out of range"));
                }
            }
            (AtomicType::Boolean, Atom::Boolean(_)) => {}
            (AtomicType::String, Atom::String(_))
                if self.min_length.is_none() && self.max_length.is_none() => {}
            (AtomicType::String, Atom::String(s)) => {
                let n = s.chars().count() as u64;
                if self.min_length.is_some_and(|m| n < m) || self.max_length.is_some_and(|m| n > m)
                {
                    return Err(format!("string length {n} is out of range"));
                }
            }
            (AtomicType::Uuid, Atom::Uuid(_) | Atom::NamedUuid(_)) => {}
            (t, a) => return Err(format!("expected {}, got {}", t.name(), a.to_json())),
        }
        if let Some(e) = &self.enumeration {
            if !e.contains(a) {
                let allowed: Vec<String> = e.iter().map(|a| a.to_json().to_string()).collect();
                return Err(format!(
                    "{} is not one of {}",
                    a.to_json(),
                    allowed.join(", ")
                ));
            }
        }
        Ok(())
    }
}

/// A column's type: key, optional value (a map), and element count bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnType {
    /// Key (or element) type.
    pub key: BaseType,
    /// Value type of a map.
    pub value: Option<BaseType>,
    /// Minimum number of elements (0 or 1).
    pub min: u64,
    /// Maximum number of elements; `None` is unlimited.
    pub max: Option<u64>,
}

impl ColumnType {
    fn parse(v: &Value) -> Result<ColumnType, String> {
        match v {
            Value::String(_) => Ok(ColumnType {
                key: BaseType::parse(v)?,
                value: None,
                min: 1,
                max: Some(1),
            }),
            Value::Object(o) => {
                let key = BaseType::parse(o.get("key").ok_or("type without \"key\"")?)?;
                let value = o.get("value").map(BaseType::parse).transpose()?;
                let min = o
                    .get("min")
                    .map(|m| m.as_u64().ok_or("bad min"))
                    .transpose()?
                    .unwrap_or(1);
                let max = match o.get("max") {
                    None => Some(1),
                    Some(Value::String(s)) if s == "unlimited" => None,
                    Some(m) => Some(m.as_u64().ok_or("bad max")?),
                };
                Ok(ColumnType {
                    key,
                    value,
                    min,
                    max,
                })
            }
            _ => Err(format!("bad column type {v}")),
        }
    }

    /// Whether this is a map type.
    pub fn is_map(&self) -> bool {
        self.value.is_some()
    }

    /// Whether this is exactly one atom (min 1, max 1, no value).
    pub fn is_scalar(&self) -> bool {
        self.value.is_none() && self.min == 1 && self.max == Some(1)
    }

    /// Whether it can hold more than one element. Only such columns travel as
    /// differences in `update2` "modify"; a column with max 1 (scalar or optional)
    /// carries its new value (OVS `ovsdb_type_is_composite`).
    pub fn is_composite(&self) -> bool {
        self.max != Some(1)
    }

    /// The column's default value.
    pub fn default_datum(&self) -> Datum {
        if self.min == 0 {
            if self.is_map() {
                Datum::empty_map()
            } else {
                Datum::empty()
            }
        } else if let Some(v) = &self.value {
            Datum::map([(self.key.atomic.default_atom(), v.atomic.default_atom())])
        } else {
            Datum::from(self.key.atomic.default_atom())
        }
    }

    /// Decode a wire value for this type (integers widen to reals, an empty set of a
    /// map column is an empty map).
    ///
    /// # Errors
    /// A description of what does not decode.
    pub fn decode(&self, v: &Value) -> Result<Datum, String> {
        let mut d = Datum::from_json(v)?;
        self.normalize(&mut d);
        Ok(d)
    }

    /// Bring an untyped value to this type's form: integers widen to reals, an empty set
    /// of a map column is an empty map.
    pub fn normalize(&self, d: &mut Datum) {
        if self.key.atomic == AtomicType::Real {
            d.widen_integers();
        }
        if self.is_map() {
            d.empty_as_map();
        }
    }

    /// Check a full value against the type: form, element count, each atom.
    ///
    /// # Errors
    /// The rule broken, in words.
    pub fn check(&self, d: &Datum) -> Result<(), String> {
        let n = d.len() as u64;
        if n < self.min || self.max.is_some_and(|m| n > m) {
            return Err(format!(
                "{n} element(s) where {}..{} are allowed",
                self.min,
                self.max
                    .map(|m| m.to_string())
                    .unwrap_or_else(|| "unlimited".into())
            ));
        }
        match (d.as_set(), d.as_map(), &self.value) {
            (_, Some(m), Some(vt)) => {
                for (k, v) in m {
                    self.key.check(k)?;
                    vt.check(v)?;
                }
            }
            (Some(s), _, None) => s.iter().try_for_each(|a| self.key.check(a))?,
            (None, _, None) => return Err("a map given for a set column".into()),
            (_, None, Some(_)) => return Err("a set given for a map column".into()),
        }
        Ok(())
    }
}

/// One column.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnSchema {
    /// Column name.
    pub name: String,
    /// Its type.
    pub ty: ColumnType,
    /// Not persisted.
    pub ephemeral: bool,
    /// Whether `update`/`mutate` may change it.
    pub mutable: bool,
}

/// One table.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSchema {
    /// Table name.
    pub name: String,
    /// Columns by name (without `_uuid`/`_version`).
    pub columns: BTreeMap<String, ColumnSchema>,
    /// Root tables keep unreferenced rows.
    pub is_root: bool,
    /// Unique column sets.
    pub indexes: Vec<Vec<String>>,
    /// Row count limit.
    pub max_rows: Option<u64>,
}

impl TableSchema {
    /// The column, or a [`SchemaError`] naming it.
    ///
    /// # Errors
    /// When the table has no such column.
    pub fn column(&self, name: &str) -> Result<&ColumnSchema, SchemaError> {
        self.columns
            .get(name)
            .ok_or_else(|| SchemaError::new(&self.name, Some(name), "no such column"))
    }

    /// Decode and check a value for a column (`_uuid` and `_version` included).
    ///
    /// # Errors
    /// When the column does not exist or the value breaks its type.
    pub fn decode(&self, column: &str, v: &Value) -> Result<Datum, SchemaError> {
        if column == "_uuid" || column == "_version" {
            return Datum::from_json(v).map_err(|e| SchemaError::new(&self.name, Some(column), e));
        }
        self.column(column)?
            .ty
            .decode(v)
            .map_err(|e| SchemaError::new(&self.name, Some(column), e))
    }
}

/// A whole database schema.
#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseSchema {
    /// Database name (`OVN_Northbound`).
    pub name: String,
    /// Schema version.
    pub version: String,
    /// Tables by name.
    pub tables: BTreeMap<String, TableSchema>,
}

impl DatabaseSchema {
    /// Parse a `get_schema` reply or an `.ovsschema` file's JSON.
    ///
    /// # Errors
    /// A [`SchemaError`] naming the table and column that do not parse.
    pub fn from_json(v: &Value) -> Result<DatabaseSchema, SchemaError> {
        let err = |t: &str, c: Option<&str>, r: String| SchemaError::new(t, c, r);
        let name = v
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| err("", None, "schema without name".into()))?;
        let version = v
            .get("version")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let mut tables = BTreeMap::new();
        let tv = v
            .get("tables")
            .and_then(Value::as_object)
            .ok_or_else(|| err("", None, "schema without tables".into()))?;
        for (tname, t) in tv {
            let mut columns = BTreeMap::new();
            let cols = t
                .get("columns")
                .and_then(Value::as_object)
                .ok_or_else(|| err(tname, None, "table without columns".into()))?;
            for (cname, c) in cols {
                let ty = ColumnType::parse(c.get("type").unwrap_or(&Value::Null))
                    .map_err(|e| err(tname, Some(cname), e))?;
                columns.insert(
                    cname.clone(),
                    ColumnSchema {
                        name: cname.clone(),
                        ty,
                        ephemeral: c.get("ephemeral").and_then(Value::as_bool).unwrap_or(false),
                        mutable: c.get("mutable").and_then(Value::as_bool).unwrap_or(true),
                    },
                );
            }
            let indexes = t
                .get("indexes")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|i| i.as_array())
                        .map(|i| {
                            i.iter()
                                .filter_map(|c| c.as_str().map(Into::into))
                                .collect()
                        })
                        .collect()
                })
                .unwrap_or_default();
            tables.insert(
                tname.clone(),
                TableSchema {
                    name: tname.clone(),
                    columns,
                    is_root: t.get("isRoot").and_then(Value::as_bool).unwrap_or(false),
                    indexes,
                    max_rows: t.get("maxRows").and_then(Value::as_u64),
                },
            );
        }
        Ok(DatabaseSchema {
            name: name.into(),
            version,
            tables,
        })
    }

    /// Read an `.ovsschema` file.
    ///
    /// # Errors
    /// When the file cannot be read or parsed.
    pub fn from_file(path: impl AsRef<Path>) -> Result<DatabaseSchema, SchemaError> {
        let p = path.as_ref();
        let text = std::fs::read(p)
            .map_err(|e| SchemaError::new("", None, format!("{}: {e}", p.display())))?;
        let v: Value = serde_json::from_slice(&text)
            .map_err(|e| SchemaError::new("", None, format!("{}: {e}", p.display())))?;
        Self::from_json(&v)
    }

    /// The table, or a [`SchemaError`] naming it.
    ///
    /// # Errors
    /// When the database has no such table.
    pub fn table(&self, name: &str) -> Result<&TableSchema, SchemaError> {
        self.tables
            .get(name)
            .ok_or_else(|| SchemaError::new(name, None, format!("no such table in {}", self.name)))
    }
}

/// The pinned OVN Northbound schema this crate builds against (`ovsdb-schema/`).
pub const OVN_NB_SCHEMA: &str = include_str!("../../ovsdb-schema/ovn-nb.ovsschema");

/// Parse [`OVN_NB_SCHEMA`].
pub fn ovn_nb_schema() -> DatabaseSchema {
    // The pinned file is part of the crate; a parse failure is a build defect caught by tests.
    DatabaseSchema::from_json(&serde_json::from_str(OVN_NB_SCHEMA).expect("pinned schema is JSON"))
        .expect("pinned schema parses")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pinned_schema() {
        let s = ovn_nb_schema();
        assert_eq!(s.name, "OVN_Northbound");
        assert_eq!(s.version, "7.0.0");
        let lb = s.table("Load_Balancer").unwrap();
        assert!(lb.column("vips").unwrap().ty.is_map());
        let proto = &lb.column("protocol").unwrap().ty;
        assert_eq!((proto.min, proto.max), (0, Some(1)));
        assert!(proto.check(&Datum::scalar("tcp")).is_ok());
        let e = proto.check(&Datum::scalar("icmp")).unwrap_err();
        assert!(e.contains("not one of"), "{e}");
        assert!(proto.check(&Datum::set(["tcp", "udp"])).is_err());
        let tag = &s
            .table("Logical_Switch_Port")
            .unwrap()
            .column("tag_request")
            .unwrap()
            .ty;
        assert!(tag.check(&Datum::scalar(4096i64)).is_err());
        assert!(tag.check(&Datum::scalar("x")).is_err());
        assert_eq!(
            s.table("Logical_Router")
                .unwrap()
                .column("load_balancer")
                .unwrap()
                .ty
                .key
                .ref_type,
            RefType::Weak
        );
        assert!(s.table("Nope").is_err());
        let lrp = s.table("Logical_Router_Port").unwrap();
        assert_eq!(lrp.column("networks").unwrap().ty.min, 1);
        assert_eq!(
            lb.decode("external_ids", &json!(["set", []])).unwrap(),
            Datum::empty_map()
        );
        let e = lb.decode("nope", &json!(1)).unwrap_err();
        assert_eq!(e.to_string(), "Load_Balancer.nope: no such column");
    }
}
