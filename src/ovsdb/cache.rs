//! An in-memory replica of monitored tables.
//!
//! A [`Cache`] is a [`MonitorHandler`]: the connection task hands it the monitor reply
//! and every `update`/`update2`/`update3` in wire order, so a transaction's changes are
//! in the cache before its reply reaches the caller. A fresh snapshot (`found=false`, or
//! a plain `monitor_cond`/`monitor` reply) is built aside and swapped in atomically: rows
//! deleted while we were away never survive. A delta that does not fit (a modify or
//! delete of an unknown row, an insert of a known one, a value that does not decode)
//! marks the cache for resync: the session drops the monitor and starts afresh.
//!
//! Subscribers learn which rows changed; changes coalesce per subscriber and are never
//! dropped.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

use serde_json::Value;
use tokio::sync::{watch, Notify};
use tracing::{debug, warn};
use uuid::Uuid;

use super::client::MonitorRequests;
use super::connection::{MonitorHandler, MonitorMethod};
use super::datum::Datum;
use super::schema::{DatabaseSchema, TableSchema};
use super::txn::Row;

/// A cached row.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheRow {
    /// The row's UUID.
    pub uuid: Uuid,
    /// Every monitored column, defaults filled in.
    pub columns: Row,
}

impl CacheRow {
    /// A column's value (the empty set when not monitored).
    pub fn get(&self, column: &str) -> &Datum {
        static EMPTY: Datum = Datum::Set(BTreeSet::new());
        self.columns.get(column).unwrap_or(&EMPTY)
    }

    /// A scalar string column.
    pub fn get_str(&self, column: &str) -> Option<&str> {
        self.get(column).as_str()
    }
}

/// A secondary index kept up to date by the cache.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IndexSpec {
    /// Rows by the whole value of a column (e.g. `Logical_Router.name`).
    Column {
        /// Table.
        table: String,
        /// Column.
        column: String,
    },
    /// Rows by the value at one key of a string map column (e.g. an `external_ids` key).
    MapKey {
        /// Table.
        table: String,
        /// Map column.
        column: String,
        /// Key.
        key: String,
    },
}

impl IndexSpec {
    fn table(&self) -> &str {
        match self {
            IndexSpec::Column { table, .. } | IndexSpec::MapKey { table, .. } => table,
        }
    }

    fn key_of(&self, row: &Row) -> Option<Datum> {
        match self {
            IndexSpec::Column { column, .. } => row.get(column).cloned(),
            IndexSpec::MapKey { column, key, .. } => row
                .get(column)?
                .map_get(key)
                .map(|v| Datum::scalar(v.to_owned())),
        }
    }
}

/// What changed since a subscriber last looked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    /// The whole cache was replaced (initial load or resync): re-read everything.
    pub resync: bool,
    /// Rows inserted, modified or deleted, as (table, uuid).
    pub rows: BTreeSet<(String, Uuid)>,
}

impl Changes {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        !self.resync && self.rows.is_empty()
    }
}

struct SubShared {
    pending: Mutex<Changes>,
    notify: Notify,
}

/// A change feed from a [`Cache`]. Changes accumulate while nobody reads.
pub struct Subscription {
    shared: Arc<SubShared>,
}

impl Subscription {
    /// Wait for changes, and take all accumulated so far.
    ///
    /// # Cancel safety
    /// Cancel-safe: changes not taken stay pending.
    pub async fn changed(&mut self) -> Changes {
        loop {
            let c = std::mem::take(&mut *lock(&self.shared.pending));
            if !c.is_empty() {
                return c;
            }
            self.shared.notify.notified().await;
        }
    }

    /// Take accumulated changes without waiting.
    pub fn try_changed(&mut self) -> Changes {
        std::mem::take(&mut *lock(&self.shared.pending))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The tables' contents and indexes at one moment.
#[derive(Debug, Default, Clone)]
pub struct CacheView {
    /// Rows by table, then UUID.
    tables: HashMap<String, HashMap<Uuid, Arc<CacheRow>>>,
    /// Index contents, parallel to the cache's `index_specs`.
    indexes: Vec<HashMap<Datum, BTreeSet<Uuid>>>,
    /// Index definitions (shared, immutable).
    specs: Arc<Vec<IndexSpec>>,
}

impl CacheView {
    /// One row.
    pub fn get(&self, table: &str, uuid: &Uuid) -> Option<&Arc<CacheRow>> {
        self.tables.get(table)?.get(uuid)
    }

    /// All rows of a table (unordered).
    pub fn rows(&self, table: &str) -> impl Iterator<Item = &Arc<CacheRow>> + '_ {
        self.tables.get(table).into_iter().flat_map(|t| t.values())
    }

    /// Row count of a table.
    pub fn len(&self, table: &str) -> usize {
        self.tables.get(table).map_or(0, HashMap::len)
    }

    /// Rows whose indexed value equals `key` (an index must be declared; otherwise a
    /// scan is done).
    pub fn lookup(&self, spec: &IndexSpec, key: &Datum) -> Vec<Arc<CacheRow>> {
        if let Some(i) = self.specs.iter().position(|s| s == spec) {
            return self.indexes[i]
                .get(key)
                .into_iter()
                .flatten()
                .filter_map(|u| self.get(spec.table(), u).cloned())
                .collect();
        }
        self.rows(spec.table())
            .filter(|r| spec.key_of(&r.columns).as_ref() == Some(key))
            .cloned()
            .collect()
    }

    /// Rows of `table` whose `column` equals the string `value`.
    pub fn find_by(&self, table: &str, column: &str, value: &str) -> Vec<Arc<CacheRow>> {
        self.lookup(
            &IndexSpec::Column {
                table: table.into(),
                column: column.into(),
            },
            &Datum::scalar(value),
        )
    }

    fn index_insert(&mut self, table: &str, row: &CacheRow) {
        for (i, spec) in self.specs.iter().enumerate() {
            if spec.table() == table {
                if let Some(k) = spec.key_of(&row.columns) {
                    self.indexes[i].entry(k).or_default().insert(row.uuid);
                }
            }
        }
    }

    fn index_remove(&mut self, table: &str, row: &CacheRow) {
        for (i, spec) in self.specs.iter().enumerate() {
            if spec.table() == table {
                if let Some(k) = spec.key_of(&row.columns) {
                    if let Some(set) = self.indexes[i].get_mut(&k) {
                        set.remove(&row.uuid);
                        if set.is_empty() {
                            self.indexes[i].remove(&k);
                        }
                    }
                }
            }
        }
    }

    fn put(&mut self, table: &str, row: CacheRow) {
        self.remove(table, &row.uuid);
        let row = Arc::new(row);
        self.index_insert(table, &row);
        self.tables
            .entry(table.into())
            .or_default()
            .insert(row.uuid, row);
    }

    fn remove(&mut self, table: &str, uuid: &Uuid) -> Option<Arc<CacheRow>> {
        let old = self.tables.get_mut(table)?.remove(uuid)?;
        self.index_remove(table, &old);
        Some(old)
    }
}

/// An inconsistency between the cache and an update.
#[derive(Debug)]
struct Inconsistent(String);

/// A replica of the monitored tables of one database.
pub struct Cache {
    /// The schema used to decode values and fill defaults.
    schema: Arc<DatabaseSchema>,
    /// What is monitored (tables and columns): also the monitor request.
    requests: MonitorRequests,
    /// The data; replaced wholesale on resync.
    view: RwLock<CacheView>,
    /// Last transaction id seen (`monitor_cond_since` on a clustered database), for
    /// resuming. `None` when the server keeps no history (standalone: all zeros).
    last_txn_id: Mutex<Option<String>>,
    /// Whether the last monitor reply resumed from `last_txn_id` (`found=true`).
    resumed: AtomicBool,
    /// True once a complete snapshot is loaded.
    ready: watch::Sender<bool>,
    /// Set when an update did not fit: the owner must restart the monitor from scratch.
    needs_resync: AtomicBool,
    /// Woken when `needs_resync` or cancellation happens.
    resync_notify: Notify,
    /// Change feeds.
    subscribers: Mutex<Vec<Weak<SubShared>>>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("db", &self.schema.name)
            .field("ready", &self.is_ready())
            .finish()
    }
}

impl Cache {
    /// A cache of `requests` (tables and columns) in `schema`, keeping `indexes`.
    pub fn new(
        schema: Arc<DatabaseSchema>,
        requests: MonitorRequests,
        indexes: Vec<IndexSpec>,
    ) -> Arc<Cache> {
        let specs = Arc::new(indexes);
        let view = CacheView {
            tables: HashMap::new(),
            indexes: vec![HashMap::new(); specs.len()],
            specs,
        };
        Arc::new(Cache {
            schema,
            requests,
            view: RwLock::new(view),
            last_txn_id: Mutex::new(None),
            resumed: AtomicBool::new(false),
            ready: watch::Sender::new(false),
            needs_resync: AtomicBool::new(false),
            resync_notify: Notify::new(),
            subscribers: Mutex::new(Vec::new()),
        })
    }

    /// The schema.
    pub fn schema(&self) -> &Arc<DatabaseSchema> {
        &self.schema
    }

    /// The monitor request for this cache.
    pub fn requests(&self) -> &MonitorRequests {
        &self.requests
    }

    /// Read a consistent view of all tables.
    pub fn read<R>(&self, f: impl FnOnce(&CacheView) -> R) -> R {
        f(&self.view.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// One row.
    pub fn get(&self, table: &str, uuid: &Uuid) -> Option<Arc<CacheRow>> {
        self.read(|v| v.get(table, uuid).cloned())
    }

    /// All rows of a table.
    pub fn rows(&self, table: &str) -> Vec<Arc<CacheRow>> {
        self.read(|v| v.rows(table).cloned().collect())
    }

    /// Rows matching an index key.
    pub fn lookup(&self, spec: &IndexSpec, key: &Datum) -> Vec<Arc<CacheRow>> {
        self.read(|v| v.lookup(spec, key))
    }

    /// Everything, ordered, for comparisons.
    pub fn dump(&self) -> BTreeMap<String, BTreeMap<Uuid, Row>> {
        self.read(|v| {
            v.tables
                .iter()
                .map(|(t, rows)| {
                    (
                        t.clone(),
                        rows.iter().map(|(u, r)| (*u, r.columns.clone())).collect(),
                    )
                })
                .collect()
        })
    }

    /// Whether a complete snapshot is loaded.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Wait until a complete snapshot is loaded.
    pub async fn wait_ready(&self) {
        let mut rx = self.ready.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }

    /// The last transaction id, for `monitor_cond_since`.
    pub fn last_txn_id(&self) -> Option<String> {
        lock(&self.last_txn_id).clone()
    }

    /// Whether the last monitor start resumed from the last transaction id.
    pub fn resumed(&self) -> bool {
        self.resumed.load(Ordering::SeqCst)
    }

    /// Whether an update did not fit and the monitor must restart from scratch.
    pub fn needs_resync(&self) -> bool {
        self.needs_resync.load(Ordering::SeqCst)
    }

    /// Wait until a resync is needed (or the monitor was cancelled).
    pub async fn resync_needed(&self) {
        loop {
            let n = self.resync_notify.notified();
            if self.needs_resync() {
                return;
            }
            n.await;
        }
    }

    /// Clear the resync flag (the owner is about to restart the monitor).
    pub fn clear_resync(&self) {
        self.needs_resync.store(false, Ordering::SeqCst);
    }

    /// A change feed.
    pub fn subscribe(&self) -> Subscription {
        let shared = Arc::new(SubShared {
            pending: Mutex::new(Changes::default()),
            notify: Notify::new(),
        });
        lock(&self.subscribers).push(Arc::downgrade(&shared));
        Subscription { shared }
    }

    fn publish(&self, changes: Changes) {
        if changes.is_empty() {
            return;
        }
        let mut subs = lock(&self.subscribers);
        subs.retain(|w| {
            let Some(s) = w.upgrade() else { return false };
            let mut p = lock(&s.pending);
            p.resync |= changes.resync;
            p.rows.extend(changes.rows.iter().cloned());
            drop(p);
            s.notify.notify_one();
            true
        });
    }

    fn mark_resync(&self, why: &str) {
        warn!(db = %self.schema.name, why, "cache inconsistent with the server: resync");
        *lock(&self.last_txn_id) = None;
        self.needs_resync.store(true, Ordering::SeqCst);
        self.resync_notify.notify_waiters();
        self.resync_notify.notify_one();
    }

    fn table(&self, name: &str) -> Result<&TableSchema, Inconsistent> {
        self.schema
            .table(name)
            .map_err(|e| Inconsistent(e.to_string()))
    }

    /// Decode a row object; columns the schema does not know are skipped (a newer
    /// server schema must not break us).
    fn decode_row(&self, t: &TableSchema, v: &Value) -> Result<Row, Inconsistent> {
        let o = v
            .as_object()
            .ok_or_else(|| Inconsistent(format!("row of {} is not an object", t.name)))?;
        let mut row = Row::new();
        for (c, val) in o {
            if !t.columns.contains_key(c) {
                continue;
            }
            row.insert(
                c.clone(),
                t.decode(c, val).map_err(|e| Inconsistent(e.to_string()))?,
            );
        }
        Ok(row)
    }

    /// Defaults for the monitored columns of a table.
    fn defaults(&self, t: &TableSchema) -> Row {
        let cols = self.requests.get(&t.name).and_then(|s| s.columns.as_ref());
        t.columns
            .values()
            .filter(|c| cols.is_none_or(|cs| cs.iter().any(|n| n == &c.name)))
            .map(|c| (c.name.clone(), c.ty.default_datum()))
            .collect()
    }

    fn full_row(&self, t: &TableSchema, uuid: Uuid, v: &Value) -> Result<CacheRow, Inconsistent> {
        let mut columns = self.defaults(t);
        columns.extend(self.decode_row(t, v)?);
        Ok(CacheRow { uuid, columns })
    }

    /// Apply `table-updates2` (update2/update3 and `monitor_cond*` replies).
    fn apply2(
        &self,
        view: &mut CacheView,
        updates: &Value,
        changes: &mut Changes,
    ) -> Result<(), Inconsistent> {
        let Some(tables) = updates.as_object() else {
            return Err(Inconsistent("table-updates is not an object".into()));
        };
        for (tname, rows) in tables {
            let t = self.table(tname)?;
            for (u, ru) in rows.as_object().into_iter().flatten() {
                let uuid =
                    Uuid::parse_str(u).map_err(|e| Inconsistent(format!("row uuid {u}: {e}")))?;
                let Some((kind, body)) = ru.as_object().and_then(|o| o.iter().next()) else {
                    return Err(Inconsistent(format!("empty row-update for {tname} {u}")));
                };
                match kind.as_str() {
                    "initial" | "insert" => {
                        if view.get(tname, &uuid).is_some() {
                            return Err(Inconsistent(format!(
                                "insert of {tname} {u}, which we already have"
                            )));
                        }
                        view.put(tname, self.full_row(t, uuid, body)?);
                    }
                    "modify" => {
                        let Some(old) = view.get(tname, &uuid) else {
                            return Err(Inconsistent(format!("modify of unknown {tname} {u}")));
                        };
                        let mut row = (**old).clone();
                        for (c, val) in body.as_object().into_iter().flatten() {
                            let Some(col) = t.columns.get(c) else {
                                continue;
                            };
                            let d = t.decode(c, val).map_err(|e| Inconsistent(e.to_string()))?;
                            if !col.ty.is_composite() {
                                row.columns.insert(c.clone(), d);
                            } else {
                                row.columns
                                    .entry(c.clone())
                                    .or_insert_with(|| col.ty.default_datum())
                                    .apply_diff(&d);
                            }
                        }
                        view.put(tname, row);
                    }
                    "delete" => {
                        if view.remove(tname, &uuid).is_none() {
                            return Err(Inconsistent(format!("delete of unknown {tname} {u}")));
                        }
                    }
                    other => {
                        return Err(Inconsistent(format!("unknown row-update kind {other:?}")))
                    }
                }
                changes.rows.insert((tname.clone(), uuid));
            }
        }
        Ok(())
    }

    /// Apply `table-updates` (RFC 7047 `update` and `monitor` replies).
    fn apply1(
        &self,
        view: &mut CacheView,
        updates: &Value,
        changes: &mut Changes,
    ) -> Result<(), Inconsistent> {
        let Some(tables) = updates.as_object() else {
            return Err(Inconsistent("table-updates is not an object".into()));
        };
        for (tname, rows) in tables {
            let t = self.table(tname)?;
            for (u, ru) in rows.as_object().into_iter().flatten() {
                let uuid =
                    Uuid::parse_str(u).map_err(|e| Inconsistent(format!("row uuid {u}: {e}")))?;
                match ru.get("new") {
                    Some(new) if !new.is_null() => {
                        let row = match view.get(tname, &uuid) {
                            Some(old) => {
                                let mut r = (**old).clone();
                                r.columns.extend(self.decode_row(t, new)?);
                                r
                            }
                            None => self.full_row(t, uuid, new)?,
                        };
                        view.put(tname, row);
                    }
                    _ => {
                        if view.remove(tname, &uuid).is_none() {
                            return Err(Inconsistent(format!("delete of unknown {tname} {u}")));
                        }
                    }
                }
                changes.rows.insert((tname.clone(), uuid));
            }
        }
        Ok(())
    }

    fn fresh_view(&self) -> CacheView {
        let specs = self.read(|v| v.specs.clone());
        CacheView {
            tables: HashMap::new(),
            indexes: vec![HashMap::new(); specs.len()],
            specs,
        }
    }

    /// Build a fresh snapshot and swap it in.
    fn replace(&self, updates: &Value, v1: bool) {
        let mut fresh = self.fresh_view();
        let mut changes = Changes::default();
        let r = if v1 {
            self.apply1(&mut fresh, updates, &mut changes)
        } else {
            self.apply2(&mut fresh, updates, &mut changes)
        };
        match r {
            Ok(()) => {
                *self.view.write().unwrap_or_else(|p| p.into_inner()) = fresh;
                debug!(db = %self.schema.name, rows = changes.rows.len(), "cache loaded");
                self.needs_resync.store(false, Ordering::SeqCst);
                self.ready.send_replace(true);
                self.publish(Changes {
                    resync: true,
                    rows: BTreeSet::new(),
                });
            }
            Err(Inconsistent(why)) => self.mark_resync(&why),
        }
    }

    /// Apply deltas in place.
    fn delta(&self, updates: &Value, v1: bool) {
        let mut changes = Changes::default();
        let r = {
            let mut view = self.view.write().unwrap_or_else(|p| p.into_inner());
            if v1 {
                self.apply1(&mut view, updates, &mut changes)
            } else {
                self.apply2(&mut view, updates, &mut changes)
            }
        };
        if let Err(Inconsistent(why)) = r {
            self.mark_resync(&why);
            changes.resync = true;
        }
        self.publish(changes);
    }
}

impl MonitorHandler for Cache {
    fn on_reply(&self, method: MonitorMethod, result: &Value) {
        match method {
            MonitorMethod::CondSince => {
                let found = result.get(0).and_then(Value::as_bool).unwrap_or(false);
                let txn = result
                    .get(1)
                    .and_then(Value::as_str)
                    .filter(|t| *t != super::client::ZERO_TXN_ID)
                    .map(str::to_owned);
                let updates = result.get(2).cloned().unwrap_or(Value::Null);
                let updates = if updates.is_null() {
                    Value::Object(Default::default())
                } else {
                    updates
                };
                let resume = found && self.is_ready();
                if resume {
                    debug!(db = %self.schema.name, "monitor resumed from the last transaction");
                    self.delta(&updates, false);
                } else {
                    self.replace(&updates, false);
                }
                self.resumed.store(resume, Ordering::SeqCst);
                *lock(&self.last_txn_id) = txn;
            }
            MonitorMethod::Cond => {
                self.resumed.store(false, Ordering::SeqCst);
                self.replace(result, false)
            }
            MonitorMethod::Plain => {
                self.resumed.store(false, Ordering::SeqCst);
                self.replace(result, true)
            }
        }
    }

    fn on_update(&self, method: &str, params: &Value) {
        if self.needs_resync() {
            return;
        }
        match method {
            "update3" => {
                if let Some(t) = params
                    .get(1)
                    .and_then(Value::as_str)
                    .filter(|t| *t != super::client::ZERO_TXN_ID)
                {
                    *lock(&self.last_txn_id) = Some(t.to_owned());
                }
                self.delta(params.get(2).unwrap_or(&Value::Null), false)
            }
            "update2" => self.delta(params.get(1).unwrap_or(&Value::Null), false),
            _ => self.delta(params.get(1).unwrap_or(&Value::Null), true),
        }
    }

    fn on_canceled(&self) {
        // The owner restarts the monitor (resuming from the last transaction id where
        // the server allows); the data stays as it was meanwhile.
        self.needs_resync.store(true, Ordering::SeqCst);
        self.resync_notify.notify_waiters();
        self.resync_notify.notify_one();
    }
}
