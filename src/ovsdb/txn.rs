//! Transactions: a builder for every RFC 7047 operation, checked against the schema
//! before anything is sent, and the reply mapped per operation.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::ser::{SerializeTuple, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use uuid::Uuid;

use super::datum::{Atom, Datum};
use super::error::{Error, ServerError};
use super::schema::{AtomicType, DatabaseSchema, SchemaError, TableSchema};

/// A row's columns.
pub type Row = BTreeMap<String, Datum>;

/// Condition functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `>=`
    Ge,
    /// `>`
    Gt,
    /// `includes`
    Includes,
    /// `excludes`
    Excludes,
}

impl Function {
    fn as_str(self) -> &'static str {
        match self {
            Function::Lt => "<",
            Function::Le => "<=",
            Function::Eq => "==",
            Function::Ne => "!=",
            Function::Ge => ">=",
            Function::Gt => ">",
            Function::Includes => "includes",
            Function::Excludes => "excludes",
        }
    }
}

/// One `where` clause.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// Column (`_uuid` allowed).
    pub column: String,
    /// Function.
    pub function: Function,
    /// Operand.
    pub value: Datum,
}

impl Condition {
    /// `column == value`.
    pub fn eq(column: &str, value: impl Into<Datum>) -> Condition {
        Condition {
            column: column.into(),
            function: Function::Eq,
            value: value.into(),
        }
    }

    /// `_uuid == uuid`.
    pub fn uuid(u: Uuid) -> Condition {
        Condition::eq("_uuid", Atom::Uuid(u))
    }

    /// Any function.
    pub fn new(column: &str, function: Function, value: impl Into<Datum>) -> Condition {
        Condition {
            column: column.into(),
            function,
            value: value.into(),
        }
    }

    /// Wire form `[column, function, value]`.
    pub fn to_json(&self) -> Value {
        json!([self.column, self.function.as_str(), self.value.to_json()])
    }
}

impl Serialize for Condition {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(3)?;
        t.serialize_element(&self.column)?;
        t.serialize_element(self.function.as_str())?;
        t.serialize_element(&self.value)?;
        t.end()
    }
}

impl Serialize for Mutation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(3)?;
        t.serialize_element(&self.column)?;
        t.serialize_element(self.mutator.as_str())?;
        t.serialize_element(&self.value)?;
        t.end()
    }
}

/// The wire form of one operation, serialised straight into the transaction's buffer.
#[derive(Serialize)]
struct Op<'a> {
    op: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    table: Option<&'a str>,
    #[serde(rename = "where", skip_serializing_if = "Option::is_none")]
    conds: Option<&'a [Condition]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    row: Option<&'a Row>,
    #[serde(rename = "uuid-name", skip_serializing_if = "Option::is_none")]
    uuid_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uuid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mutations: Option<&'a [Mutation]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    columns: Option<&'a [&'a str]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    until: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rows: Option<&'a [Row]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    comment: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lock: Option<&'a str>,
}

impl<'a> Op<'a> {
    fn new(op: &'static str, table: Option<&'a str>) -> Op<'a> {
        Op {
            op,
            table,
            conds: None,
            row: None,
            uuid_name: None,
            uuid: None,
            mutations: None,
            columns: None,
            timeout: None,
            until: None,
            rows: None,
            comment: None,
            lock: None,
        }
    }
}

/// Mutators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutator {
    /// `+=`
    Add,
    /// `-=`
    Sub,
    /// `*=`
    Mul,
    /// `/=`
    Div,
    /// `%=`
    Mod,
    /// `insert` into a set or map.
    Insert,
    /// `delete` from a set or map (by key set or by pairs).
    Delete,
}

impl Mutator {
    fn as_str(self) -> &'static str {
        match self {
            Mutator::Add => "+=",
            Mutator::Sub => "-=",
            Mutator::Mul => "*=",
            Mutator::Div => "/=",
            Mutator::Mod => "%=",
            Mutator::Insert => "insert",
            Mutator::Delete => "delete",
        }
    }
}

/// One mutation.
#[derive(Debug, Clone, PartialEq)]
pub struct Mutation {
    /// Column.
    pub column: String,
    /// Mutator.
    pub mutator: Mutator,
    /// Operand.
    pub value: Datum,
}

impl Mutation {
    /// Build one.
    pub fn new(column: &str, mutator: Mutator, value: impl Into<Datum>) -> Mutation {
        Mutation {
            column: column.into(),
            mutator,
            value: value.into(),
        }
    }
}

/// `until` of a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitUntil {
    /// Wait until the selected rows equal `rows`.
    Eq,
    /// Wait until they differ.
    Ne,
}

/// A transaction under construction. Each builder call checks its operation against the
/// schema (when one is given); the first violation is kept and returned by
/// [`Client::transact`](super::Client::transact) without sending anything.
#[derive(Debug, Clone)]
pub struct Transaction {
    /// Database name.
    db: String,
    /// Schema for checks.
    schema: Option<Arc<DatabaseSchema>>,
    /// Operations in wire form, comma-separated, already serialised.
    buf: Vec<u8>,
    /// Number of operations in `buf`.
    n_ops: usize,
    /// First schema violation.
    error: Option<SchemaError>,
    /// Counter for generated named-uuids.
    named: u32,
}

impl Transaction {
    /// A transaction on `db`, unchecked.
    pub fn new(db: &str) -> Transaction {
        Transaction {
            db: db.into(),
            schema: None,
            buf: Vec::new(),
            n_ops: 0,
            error: None,
            named: 0,
        }
    }

    /// A transaction checked against `schema`.
    pub fn with_schema(schema: Arc<DatabaseSchema>) -> Transaction {
        Transaction {
            db: schema.name.clone(),
            schema: Some(schema),
            buf: Vec::new(),
            n_ops: 0,
            error: None,
            named: 0,
        }
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.n_ops
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.n_ops == 0
    }

    /// The first schema violation recorded.
    ///
    /// # Errors
    /// [`Error::Schema`].
    pub fn check(&self) -> Result<(), Error> {
        match &self.error {
            Some(e) => Err(Error::Schema(e.clone())),
            None => Ok(()),
        }
    }

    /// The `transact` params `[db, op, …]` as JSON text.
    pub fn encode_params(&self, out: &mut Vec<u8>) {
        out.reserve(self.buf.len() + self.db.len() + 8);
        out.push(b'[');
        let _ = serde_json::to_writer(&mut *out, &self.db);
        if self.n_ops > 0 {
            out.push(b',');
            out.extend_from_slice(&self.buf);
        }
        out.push(b']');
    }

    /// The `transact` params: `[db, op, …]`.
    pub fn params(&self) -> Value {
        let mut v = Vec::new();
        self.encode_params(&mut v);
        serde_json::from_slice(&v).unwrap_or_default()
    }

    /// The operations in wire form.
    pub fn ops(&self) -> Vec<Value> {
        match self.params() {
            Value::Array(mut a) => a.split_off(1),
            _ => Vec::new(),
        }
    }

    fn push(&mut self, op: &Op<'_>) {
        if self.n_ops > 0 {
            self.buf.push(b',');
        }
        self.n_ops += 1;
        // Serialising our own types into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.buf, op);
    }

    fn table(&mut self, table: &str) -> Option<TableSchema> {
        let s = self.schema.as_ref()?;
        match s.table(table) {
            Ok(t) => Some(t.clone()),
            Err(e) => {
                self.fail(e);
                None
            }
        }
    }

    fn fail(&mut self, e: SchemaError) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }

    fn check_row(&mut self, table: &str, row: &Row, update: bool) {
        let Some(schema) = self.schema.clone() else {
            return;
        };
        let Ok(t) = schema.table(table) else {
            return self.fail(schema.table(table).unwrap_err());
        };
        for (c, d) in row {
            let r = t.column(c).and_then(|col| {
                if update && !col.mutable {
                    return Err(SchemaError {
                        table: table.into(),
                        column: Some(c.clone()),
                        rule: "column is immutable".into(),
                    });
                }
                col.ty.check(d).map_err(|rule| SchemaError {
                    table: table.into(),
                    column: Some(c.clone()),
                    rule,
                })
            });
            if let Err(e) = r {
                return self.fail(e);
            }
        }
    }

    fn check_where(&mut self, table: &str, conds: &[Condition]) {
        let Some(schema) = self.schema.clone() else {
            return;
        };
        let Ok(t) = schema.table(table) else {
            return self.fail(schema.table(table).unwrap_err());
        };
        for c in conds {
            if c.column == "_uuid" || c.column == "_version" {
                if c.value.len() != 1
                    || !matches!(
                        c.value.as_scalar(),
                        Some(Atom::Uuid(_) | Atom::NamedUuid(_))
                    )
                {
                    return self.fail(SchemaError {
                        table: table.into(),
                        column: Some(c.column.clone()),
                        rule: "condition needs one uuid".into(),
                    });
                }
                continue;
            }
            let r = t.column(&c.column).and_then(|col| {
                let ordered = matches!(
                    c.function,
                    Function::Lt | Function::Le | Function::Ge | Function::Gt
                );
                if ordered
                    && !(col.ty.is_scalar()
                        && matches!(col.ty.key.atomic, AtomicType::Integer | AtomicType::Real))
                {
                    return Err(SchemaError {
                        table: table.into(),
                        column: Some(c.column.clone()),
                        rule: format!("{} needs an integer or real column", c.function.as_str()),
                    });
                }
                c.value
                    .atoms()
                    .try_for_each(|a| col.ty.key.check(a))
                    .map_err(|rule| SchemaError {
                        table: table.into(),
                        column: Some(c.column.clone()),
                        rule,
                    })
            });
            if let Err(e) = r {
                return self.fail(e);
            }
        }
    }

    /// `insert`; returns the named-uuid to reference the new row in later operations.
    pub fn insert(&mut self, table: &str, row: Row) -> Atom {
        self.named += 1;
        let name = format!("row{}", self.named);
        self.check_row(table, &row, false);
        self.push(&Op {
            row: Some(&row),
            uuid_name: Some(&name),
            ..Op::new("insert", Some(table))
        });
        Atom::NamedUuid(name)
    }

    /// `insert` with a client-chosen row UUID (idempotent: a replay fails with
    /// `duplicate uuid`).
    pub fn insert_with_uuid(&mut self, table: &str, uuid: Uuid, row: Row) -> Atom {
        self.check_row(table, &row, false);
        self.push(&Op {
            row: Some(&row),
            uuid: Some(uuid.to_string()),
            ..Op::new("insert", Some(table))
        });
        Atom::Uuid(uuid)
    }

    /// `update` the rows matching `conds`.
    pub fn update(&mut self, table: &str, conds: Vec<Condition>, row: Row) {
        self.check_where(table, &conds);
        self.check_row(table, &row, true);
        self.push(&Op {
            conds: Some(&conds),
            row: Some(&row),
            ..Op::new("update", Some(table))
        });
    }

    /// `mutate` the rows matching `conds`.
    pub fn mutate(&mut self, table: &str, conds: Vec<Condition>, mutations: Vec<Mutation>) {
        self.check_where(table, &conds);
        if let Some(t) = self.table(table) {
            for m in &mutations {
                let r = t.column(&m.column).and_then(|col| {
                    let err = |rule: String| SchemaError {
                        table: table.into(),
                        column: Some(m.column.clone()),
                        rule,
                    };
                    if !col.mutable {
                        return Err(err("column is immutable".into()));
                    }
                    match m.mutator {
                        Mutator::Insert | Mutator::Delete => {
                            if col.ty.is_scalar() {
                                return Err(err(format!(
                                    "{} needs a set or map column",
                                    m.mutator.as_str()
                                )));
                            }
                            match (m.value.as_set(), m.value.as_map(), &col.ty.value) {
                                (_, Some(pairs), Some(vt)) if m.value.is_map() => pairs
                                    .iter()
                                    .try_for_each(|(k, v)| {
                                        col.ty.key.check(k).and_then(|_| vt.check(v))
                                    })
                                    .map_err(err),
                                (None, _, None) => Err(err("a map given for a set column".into())),
                                (Some(s), _, Some(_))
                                    if m.mutator == Mutator::Insert && !s.is_empty() =>
                                {
                                    Err(err("insert into a map needs a map".into()))
                                }
                                (Some(s), _, _) => {
                                    s.iter().try_for_each(|a| col.ty.key.check(a)).map_err(err)
                                }
                                (None, _, _) => Ok(()),
                            }
                        }
                        _ => {
                            if !matches!(col.ty.key.atomic, AtomicType::Integer | AtomicType::Real)
                                || col.ty.is_map()
                            {
                                return Err(err(format!(
                                    "{} needs an integer or real column",
                                    m.mutator.as_str()
                                )));
                            }
                            Ok(())
                        }
                    }
                });
                if let Err(e) = r {
                    self.fail(e);
                    break;
                }
            }
        }
        self.push(&Op {
            conds: Some(&conds),
            mutations: Some(&mutations),
            ..Op::new("mutate", Some(table))
        });
    }

    /// `delete` the rows matching `conds`.
    pub fn delete(&mut self, table: &str, conds: Vec<Condition>) {
        self.check_where(table, &conds);
        self.push(&Op {
            conds: Some(&conds),
            ..Op::new("delete", Some(table))
        });
    }

    /// `select` columns (all when `None`) of the rows matching `conds`.
    pub fn select(&mut self, table: &str, conds: Vec<Condition>, columns: Option<&[&str]>) {
        self.check_where(table, &conds);
        self.check_columns(table, columns.unwrap_or(&[]));
        self.push(&Op {
            conds: Some(&conds),
            columns,
            ..Op::new("select", Some(table))
        });
    }

    fn check_columns(&mut self, table: &str, columns: &[&str]) {
        if let Some(t) = self.table(table) {
            for c in columns {
                if *c != "_uuid" && *c != "_version" {
                    if let Err(e) = t.column(c) {
                        return self.fail(e);
                    }
                }
            }
        }
    }

    /// `wait` (timeout 0: a guard that fails at once with `timed out`) until the
    /// `columns` of the rows matching `conds` are (`Eq`) or are not (`Ne`) `rows`.
    pub fn wait(
        &mut self,
        table: &str,
        conds: Vec<Condition>,
        columns: &[&str],
        until: WaitUntil,
        rows: Vec<Row>,
    ) {
        self.check_where(table, &conds);
        self.check_columns(table, columns);
        let until = match until {
            WaitUntil::Eq => "==",
            WaitUntil::Ne => "!=",
        };
        self.push(&Op {
            conds: Some(&conds),
            columns: Some(columns),
            timeout: Some(0),
            until: Some(until),
            rows: Some(&rows),
            ..Op::new("wait", Some(table))
        });
    }

    /// `comment` (logged by the server).
    pub fn comment(&mut self, text: &str) {
        self.push(&Op {
            comment: Some(text),
            ..Op::new("comment", None)
        });
    }

    /// `assert` that this session holds lock `id`.
    pub fn assert_lock(&mut self, id: &str) {
        self.push(&Op {
            lock: Some(id),
            ..Op::new("assert", None)
        });
    }
}

/// The per-operation results of a committed transaction, kept as the server's text and
/// decoded on demand (a 10,000-insert reply is never built into a JSON tree).
#[derive(Debug, Clone)]
pub struct TxnReply {
    /// The whole `result` array as received.
    raw: Box<RawValue>,
    /// Byte range of each result within `raw`.
    spans: Vec<(usize, usize)>,
}

/// The fields of one result that tell an error.
#[derive(Deserialize)]
struct ErrorFields {
    #[serde(default)]
    error: Option<Value>,
    #[serde(default)]
    details: Option<Value>,
}

impl TxnReply {
    /// Locate each result in a `transact` reply.
    pub(crate) fn parse(raw: Box<RawValue>) -> Result<TxnReply, String> {
        let items: Vec<&RawValue> = serde_json::from_str(raw.get())
            .map_err(|e| format!("transact reply is not an array: {e}"))?;
        let base = raw.get().as_ptr() as usize;
        let spans = items
            .iter()
            .map(|r| (r.get().as_ptr() as usize - base, r.get().len()))
            .collect();
        Ok(TxnReply { raw, spans })
    }

    /// The first result carrying an error (a per-operation error, or the commit error
    /// after the last operation), with its index.
    pub(crate) fn first_error(&self) -> Option<(usize, ServerError)> {
        (0..self.spans.len()).find_map(|i| {
            let text = self.text(i)?;
            // `null` (operations after a failed one) and non-objects carry no error.
            if !text.starts_with('{') {
                return None;
            }
            let f: ErrorFields = serde_json::from_str(text).ok()?;
            let error = f.error.filter(|e| !e.is_null())?;
            Some((
                i,
                ServerError {
                    error: error
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| error.to_string()),
                    details: f.details.and_then(|d| d.as_str().map(str::to_owned)),
                },
            ))
        })
    }

    fn text(&self, op: usize) -> Option<&str> {
        let (start, len) = *self.spans.get(op)?;
        self.raw.get().get(start..start + len)
    }

    /// Number of results.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// One result, decoded.
    pub fn result(&self, op: usize) -> Option<Value> {
        serde_json::from_str(self.text(op)?).ok()
    }

    /// All results, decoded.
    pub fn results(&self) -> Vec<Value> {
        (0..self.len()).filter_map(|i| self.result(i)).collect()
    }

    /// The UUID an `insert` at `op` created.
    pub fn uuid(&self, op: usize) -> Option<Uuid> {
        #[derive(Deserialize)]
        struct Insert {
            uuid: Atom,
        }
        serde_json::from_str::<Insert>(self.text(op)?)
            .ok()?
            .uuid
            .as_uuid()
    }

    /// The row count of an `update`, `mutate` or `delete` at `op`.
    pub fn count(&self, op: usize) -> Option<u64> {
        #[derive(Deserialize)]
        struct Count {
            count: u64,
        }
        serde_json::from_str::<Count>(self.text(op)?)
            .ok()
            .map(|c| c.count)
    }

    /// The rows of a `select` at `op`, decoded with the table's schema.
    ///
    /// # Errors
    /// A [`SchemaError`] for a column that does not decode.
    pub fn rows(&self, op: usize, table: &TableSchema) -> Result<Vec<Row>, SchemaError> {
        let Some(rows) = self.result(op).and_then(|r| r.get("rows").cloned()) else {
            return Ok(vec![]);
        };
        rows.as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                r.as_object()
                    .map(|o| {
                        o.iter()
                            .map(|(k, v)| Ok((k.clone(), table.decode(k, v)?)))
                            .collect()
                    })
                    .unwrap_or_else(|| Ok(Row::new()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ovsdb::schema::ovn_nb_schema;

    #[test]
    fn builder_checks_against_schema() {
        let s = Arc::new(ovn_nb_schema());
        let mut t = Transaction::with_schema(s.clone());
        let lb = t.insert(
            "Load_Balancer",
            Row::from([
                ("name".into(), Datum::scalar("a")),
                ("protocol".into(), Datum::scalar("tcp")),
            ]),
        );
        t.mutate(
            "Logical_Router",
            vec![Condition::eq("name", Datum::scalar("r"))],
            vec![Mutation::new("load_balancer", Mutator::Insert, lb)],
        );
        assert!(t.check().is_ok());
        assert_eq!(t.params()[0], json!("OVN_Northbound"));
        assert_eq!(t.params()[1]["uuid-name"], json!("row1"));

        let mut t = Transaction::with_schema(s.clone());
        t.insert(
            "Load_Balancer",
            Row::from([("protocol".into(), Datum::scalar("icmp"))]),
        );
        let e = t.check().unwrap_err().to_string();
        assert!(
            e.contains("Load_Balancer.protocol") && e.contains("not one of"),
            "{e}"
        );

        let mut t = Transaction::with_schema(s.clone());
        t.update(
            "Load_Balancer",
            vec![Condition::eq("nmae", Datum::scalar("x"))],
            Row::new(),
        );
        assert!(t
            .check()
            .unwrap_err()
            .to_string()
            .contains("Load_Balancer.nmae: no such column"));

        let mut t = Transaction::with_schema(s.clone());
        t.mutate(
            "NB_Global",
            vec![],
            vec![Mutation::new("name", Mutator::Add, Datum::scalar(1i64))],
        );
        assert!(t
            .check()
            .unwrap_err()
            .to_string()
            .contains("needs an integer"));

        let mut t = Transaction::with_schema(s);
        t.delete("No_Table", vec![]);
        assert!(t.check().is_err());
    }
}
