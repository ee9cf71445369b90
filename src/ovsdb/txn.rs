//! Transactions: a builder for every RFC 7047 operation, checked against the schema
//! before anything is sent, and the reply mapped per operation.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::datum::{Atom, Datum};
use super::error::Error;
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
    /// Operations in wire form.
    ops: Vec<Value>,
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
            ops: Vec::new(),
            error: None,
            named: 0,
        }
    }

    /// A transaction checked against `schema`.
    pub fn with_schema(schema: Arc<DatabaseSchema>) -> Transaction {
        Transaction {
            db: schema.name.clone(),
            schema: Some(schema),
            ops: Vec::new(),
            error: None,
            named: 0,
        }
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
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

    /// The `transact` params: `[db, op, …]`.
    pub fn params(&self) -> Value {
        let mut v = Vec::with_capacity(self.ops.len() + 1);
        v.push(json!(self.db));
        v.extend(self.ops.iter().cloned());
        Value::Array(v)
    }

    /// The operations in wire form.
    pub fn ops(&self) -> &[Value] {
        &self.ops
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

    fn row_json(row: &Row) -> Value {
        Value::Object(
            row.iter()
                .map(|(k, v)| (k.clone(), v.to_json()))
                .collect::<Map<_, _>>(),
        )
    }

    fn where_json(conds: &[Condition]) -> Value {
        Value::Array(conds.iter().map(Condition::to_json).collect())
    }

    /// `insert`; returns the named-uuid to reference the new row in later operations.
    pub fn insert(&mut self, table: &str, row: Row) -> Atom {
        self.named += 1;
        let name = format!("row{}", self.named);
        self.check_row(table, &row, false);
        self.ops.push(
            json!({"op": "insert", "table": table, "row": Self::row_json(&row), "uuid-name": name}),
        );
        Atom::NamedUuid(name)
    }

    /// `insert` with a client-chosen row UUID (idempotent: a replay fails with
    /// `duplicate uuid`).
    pub fn insert_with_uuid(&mut self, table: &str, uuid: Uuid, row: Row) -> Atom {
        self.check_row(table, &row, false);
        self.ops.push(json!({"op": "insert", "table": table, "row": Self::row_json(&row), "uuid": uuid.to_string()}));
        Atom::Uuid(uuid)
    }

    /// `update` the rows matching `conds`.
    pub fn update(&mut self, table: &str, conds: Vec<Condition>, row: Row) {
        self.check_where(table, &conds);
        self.check_row(table, &row, true);
        self.ops.push(json!({"op": "update", "table": table, "where": Self::where_json(&conds), "row": Self::row_json(&row)}));
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
                            match (&m.value, &col.ty.value) {
                                (Datum::Map(pairs), Some(vt)) => pairs
                                    .iter()
                                    .try_for_each(|(k, v)| {
                                        col.ty.key.check(k).and_then(|_| vt.check(v))
                                    })
                                    .map_err(err),
                                (Datum::Map(_), None) => {
                                    Err(err("a map given for a set column".into()))
                                }
                                (Datum::Set(s), Some(_))
                                    if m.mutator == Mutator::Insert && !s.is_empty() =>
                                {
                                    Err(err("insert into a map needs a map".into()))
                                }
                                (Datum::Set(s), _) => {
                                    s.iter().try_for_each(|a| col.ty.key.check(a)).map_err(err)
                                }
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
        let muts: Vec<Value> = mutations
            .iter()
            .map(|m| json!([m.column, m.mutator.as_str(), m.value.to_json()]))
            .collect();
        self.ops.push(json!({"op": "mutate", "table": table, "where": Self::where_json(&conds), "mutations": muts}));
    }

    /// `delete` the rows matching `conds`.
    pub fn delete(&mut self, table: &str, conds: Vec<Condition>) {
        self.check_where(table, &conds);
        self.ops
            .push(json!({"op": "delete", "table": table, "where": Self::where_json(&conds)}));
    }

    /// `select` columns (all when `None`) of the rows matching `conds`.
    pub fn select(&mut self, table: &str, conds: Vec<Condition>, columns: Option<&[&str]>) {
        self.check_where(table, &conds);
        self.check_columns(table, columns.unwrap_or(&[]));
        let mut op = json!({"op": "select", "table": table, "where": Self::where_json(&conds)});
        if let Some(c) = columns {
            op["columns"] = json!(c);
        }
        self.ops.push(op);
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
        let rows: Vec<Value> = rows.iter().map(Self::row_json).collect();
        self.ops.push(json!({"op": "wait", "timeout": 0, "table": table, "where": Self::where_json(&conds), "columns": columns, "until": until, "rows": rows}));
    }

    /// `comment` (logged by the server).
    pub fn comment(&mut self, text: &str) {
        self.ops.push(json!({"op": "comment", "comment": text}));
    }

    /// `assert` that this session holds lock `id`.
    pub fn assert_lock(&mut self, id: &str) {
        self.ops.push(json!({"op": "assert", "lock": id}));
    }
}

/// The per-operation results of a committed transaction.
#[derive(Debug, Clone)]
pub struct TxnReply {
    results: Vec<Value>,
}

impl TxnReply {
    pub(crate) fn new(results: Vec<Value>) -> TxnReply {
        TxnReply { results }
    }

    /// Raw results.
    pub fn results(&self) -> &[Value] {
        &self.results
    }

    /// The UUID an `insert` at `op` created.
    pub fn uuid(&self, op: usize) -> Option<Uuid> {
        let u = self.results.get(op)?.get("uuid")?;
        Atom::from_json(u).ok()?.as_uuid()
    }

    /// The row count of an `update`, `mutate` or `delete` at `op`.
    pub fn count(&self, op: usize) -> Option<u64> {
        self.results.get(op)?.get("count")?.as_u64()
    }

    /// The rows of a `select` at `op`, decoded with the table's schema.
    ///
    /// # Errors
    /// A [`SchemaError`] for a column that does not decode.
    pub fn rows(&self, op: usize, table: &TableSchema) -> Result<Vec<Row>, SchemaError> {
        let Some(rows) = self
            .results
            .get(op)
            .and_then(|r| r.get("rows"))
            .and_then(Value::as_array)
        else {
            return Ok(vec![]);
        };
        rows.iter()
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
