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

use crate::fasthash::HashMap;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::{watch, Notify};
use tracing::{debug, warn};
use uuid::Uuid;

use super::client::{MonitorRequests, ZERO_TXN_ID};
use super::connection::{MonitorHandler, MonitorMethod};
use super::datum::Datum;
use super::schema::{ColumnType, DatabaseSchema, TableSchema};
use super::txn::Row;
use crate::feed::{Feed, FeedReceiver};

/// Column names, types and defaults of one monitored table, shared by all its rows.
#[derive(Debug)]
struct Layout {
    /// Table name.
    table: String,
    /// Monitored column names, sorted.
    names: Vec<String>,
    /// Their types (for normalising decoded values).
    types: Vec<Option<ColumnType>>,
    /// Their default values (a new row starts from these).
    defaults: Vec<Datum>,
}

impl Layout {
    fn new(t: &TableSchema, columns: Option<&Vec<String>>) -> Layout {
        let mut names: Vec<String> = match columns {
            Some(c) => c
                .iter()
                .filter(|n| t.columns.contains_key(*n))
                .cloned()
                .collect(),
            None => t.columns.keys().cloned().collect(),
        };
        names.sort();
        names.dedup();
        let types: Vec<Option<ColumnType>> = names
            .iter()
            .map(|n| t.columns.get(n).map(|c| c.ty.clone()))
            .collect();
        let defaults = types
            .iter()
            .map(|t| {
                t.as_ref()
                    .map(ColumnType::default_datum)
                    .unwrap_or_default()
            })
            .collect();
        Layout {
            table: t.name.clone(),
            names,
            types,
            defaults,
        }
    }

    fn from_names(table: &str, names: Vec<String>) -> Layout {
        let n = names.len();
        Layout {
            table: table.to_owned(),
            names,
            types: vec![None; n],
            defaults: vec![Datum::empty(); n],
        }
    }

    fn index(&self, column: &str) -> Option<usize> {
        self.names.binary_search_by(|n| n.as_str().cmp(column)).ok()
    }
}

/// A cached row: its UUID and the monitored columns' values (defaults filled in).
#[derive(Debug, Clone)]
pub struct CacheRow {
    /// The row's UUID.
    pub uuid: Uuid,
    /// Column names and types, shared by the table's rows.
    layout: Arc<Layout>,
    /// Values, parallel to `layout.names`.
    values: Vec<Datum>,
    /// Stamped from [`next_version`] each time the cache stores this row.
    version: u64,
}

/// Row versions: one counter for every cache of the process, so a version never repeats.
static VERSIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn next_version() -> u64 {
    VERSIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl PartialEq for CacheRow {
    fn eq(&self, other: &Self) -> bool {
        self.uuid == other.uuid && self.columns().eq(other.columns())
    }
}

impl CacheRow {
    /// A row from a generic [`Row`] (for tests and tools).
    pub fn from_row(table: &str, uuid: Uuid, row: Row) -> CacheRow {
        let (names, values) = row.into_iter().unzip();
        CacheRow {
            uuid,
            layout: Arc::new(Layout::from_names(table, names)),
            values,
            version: next_version(),
        }
    }

    /// The row's version in the cache: a new one each time the cache stores the row
    /// (inserted, modified, or reloaded with a fresh snapshot), never reused. A row whose
    /// version is the one seen before has not changed since (the converse does not
    /// hold: a reload gives unchanged rows new versions).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// A column's value (the empty set when not monitored).
    pub fn get(&self, column: &str) -> &Datum {
        static EMPTY: Datum = Datum::empty();
        self.layout
            .index(column)
            .map_or(&EMPTY, |i| &self.values[i])
    }

    /// A scalar string column.
    pub fn get_str(&self, column: &str) -> Option<&str> {
        self.get(column).as_str()
    }

    /// Every monitored column with its value, by name.
    pub fn columns(&self) -> impl Iterator<Item = (&str, &Datum)> + '_ {
        self.layout
            .names
            .iter()
            .map(String::as_str)
            .zip(self.values.iter())
    }

    /// As a generic [`Row`].
    pub fn to_row(&self) -> Row {
        self.columns()
            .map(|(k, v)| (k.to_owned(), v.clone()))
            .collect()
    }

    /// The table this row belongs to.
    pub fn table(&self) -> &str {
        &self.layout.table
    }
}

/// The keys a [`IndexSpec::Derived`] index files a row under: `f` is called with each.
pub type DeriveKeys = fn(row: &CacheRow, f: &mut dyn FnMut(Datum));

/// A secondary index kept up to date by the cache.
#[derive(Debug, Clone)]
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
    /// Rows by each key of a map column (e.g. `Load_Balancer.vips`: the rows holding a
    /// VIP): one row under as many keys as its map has.
    MapKeys {
        /// Table.
        table: String,
        /// Map column.
        column: String,
    },
    /// Rows by keys a function derives from each row (e.g. the addresses inside a
    /// column's strings, a format only the caller knows); two derived indexes of a
    /// table are the same index when their names are.
    Derived {
        /// Table.
        table: String,
        /// The index's name.
        name: &'static str,
        /// The keys of a row.
        keys: DeriveKeys,
    },
}

/// Equal by what they index: a derived index by its table and name (never by comparing
/// function addresses, which Rust does not promise stable).
impl PartialEq for IndexSpec {
    fn eq(&self, other: &Self) -> bool {
        use IndexSpec::*;
        match (self, other) {
            (
                Column {
                    table: t,
                    column: c,
                },
                Column {
                    table: u,
                    column: d,
                },
            )
            | (
                MapKeys {
                    table: t,
                    column: c,
                },
                MapKeys {
                    table: u,
                    column: d,
                },
            ) => t == u && c == d,
            (
                MapKey {
                    table: t,
                    column: c,
                    key: k,
                },
                MapKey {
                    table: u,
                    column: d,
                    key: l,
                },
            ) => t == u && c == d && k == l,
            (
                Derived {
                    table: t, name: n, ..
                },
                Derived {
                    table: u, name: m, ..
                },
            ) => t == u && n == m,
            _ => false,
        }
    }
}

impl Eq for IndexSpec {}

impl IndexSpec {
    fn table(&self) -> &str {
        match self {
            IndexSpec::Column { table, .. }
            | IndexSpec::MapKey { table, .. }
            | IndexSpec::MapKeys { table, .. }
            | IndexSpec::Derived { table, .. } => table,
        }
    }

    /// Call `f` with each key `row` is indexed under.
    fn for_each_key(&self, row: &CacheRow, mut f: impl FnMut(Datum)) {
        match self {
            IndexSpec::Column { column, .. } => f(row.get(column).clone()),
            IndexSpec::MapKey { column, key, .. } => {
                if let Some(v) = row.get(column).map_get(key) {
                    f(Datum::scalar(v.to_owned()));
                }
            }
            IndexSpec::MapKeys { column, .. } => {
                if let Some(m) = row.get(column).as_map() {
                    for (k, _) in m.iter() {
                        f(Datum::scalar(k.clone()));
                    }
                }
            }
            IndexSpec::Derived { keys, .. } => keys(row, &mut f),
        }
    }

    fn indexes(&self, row: &CacheRow, key: &Datum) -> bool {
        let mut hit = false;
        self.for_each_key(row, |k| hit |= &k == key);
        hit
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

/// What a subscriber is told: a whole-cache resync, or one row.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum ChangeKey {
    Resync,
    Row(String, Uuid),
}

/// A change feed from a [`Cache`]. Changes accumulate (coalesced, never dropped) while
/// nobody reads.
pub struct Subscription {
    feed: FeedReceiver<ChangeKey>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").finish_non_exhaustive()
    }
}

fn to_changes(keys: BTreeSet<ChangeKey>) -> Changes {
    let mut c = Changes::default();
    for k in keys {
        match k {
            ChangeKey::Resync => c.resync = true,
            ChangeKey::Row(t, u) => {
                c.rows.insert((t, u));
            }
        }
    }
    c
}

impl Subscription {
    /// Wait for changes, and take all accumulated so far.
    ///
    /// # Cancel safety
    /// Cancel-safe: changes not taken stay pending.
    pub async fn changed(&mut self) -> Changes {
        to_changes(self.feed.changed().await)
    }

    /// Take accumulated changes without waiting.
    pub fn try_changed(&mut self) -> Changes {
        to_changes(self.feed.try_changed())
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
    /// A view of the given rows, indexed by `specs`: what a planner reads, built by hand
    /// (for tests and tools, without a server).
    pub fn from_rows(specs: Vec<IndexSpec>, rows: impl IntoIterator<Item = CacheRow>) -> CacheView {
        let mut v = CacheView {
            tables: HashMap::default(),
            indexes: vec![HashMap::default(); specs.len()],
            specs: Arc::new(specs),
        };
        for r in rows {
            let table = r.table().to_owned();
            v.put(&table, Arc::new(r));
        }
        v
    }

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
            .filter(|r| spec.indexes(r, key))
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
                let index = &mut self.indexes[i];
                spec.for_each_key(row, |k| {
                    index.entry(k).or_default().insert(row.uuid);
                });
            }
        }
    }

    fn index_remove(&mut self, table: &str, row: &CacheRow) {
        for (i, spec) in self.specs.iter().enumerate() {
            if spec.table() == table {
                let index = &mut self.indexes[i];
                spec.for_each_key(row, |k| {
                    if let Some(set) = index.get_mut(&k) {
                        set.remove(&row.uuid);
                        if set.is_empty() {
                            index.remove(&k);
                        }
                    }
                });
            }
        }
    }

    /// Insert a row (callers remove any previous version first), stamping its version.
    fn put(&mut self, table: &str, mut row: Arc<CacheRow>) {
        Arc::make_mut(&mut row).version = next_version();
        self.index_insert(table, &row);
        match self.tables.get_mut(table) {
            Some(t) => {
                t.insert(row.uuid, row);
            }
            None => {
                self.tables
                    .insert(table.to_owned(), HashMap::from_iter([(row.uuid, row)]));
            }
        }
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

/// A JSON object read as a vector of pairs, in wire order, without building a map; keys
/// are borrowed from the message unless they contain escapes.
struct Pairs<'de, V>(Vec<(Cow<'de, str>, V)>);

/// A key borrowed from the input where possible.
struct Key<'de>(Cow<'de, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Key<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KV<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for KV<'a> {
            type Value = Key<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'a>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'a>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'a>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(KV(std::marker::PhantomData))
    }
}

impl<'de: 'a, 'a, V: Deserialize<'de>> Deserialize<'de> for Pairs<'a, V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V2<'a, V>(std::marker::PhantomData<(&'a (), V)>);
        impl<'de: 'a, 'a, V: Deserialize<'de>> Visitor<'de> for V2<'a, V> {
            type Value = Pairs<'a, V>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Pairs<'a, V>, E> {
                Ok(Pairs(Vec::new()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Pairs<'a, V>, A::Error> {
                let mut v = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some((Key(k), val)) = map.next_entry::<Key<'a>, V>()? {
                    v.push((k, val));
                }
                Ok(Pairs(v))
            }
        }
        d.deserialize_any(V2(std::marker::PhantomData))
    }
}

/// `<table-updates2>`: table → uuid → row-update2.
type TableUpdates2<'de> = Pairs<'de, Pairs<'de, RowUpdate2<'de>>>;
/// `<table-updates>` (RFC 7047 `update`): table → uuid → {old, new}.
type TableUpdates1<'de> = Pairs<'de, Pairs<'de, RowUpdate1<'de>>>;

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum RowUpdate2<'a> {
    #[serde(borrow)]
    Initial(Pairs<'a, Datum>),
    #[serde(borrow)]
    Insert(Pairs<'a, Datum>),
    #[serde(borrow)]
    Modify(Pairs<'a, Datum>),
    Delete,
}

#[derive(Deserialize)]
struct RowUpdate1<'a> {
    #[serde(borrow, default)]
    new: Option<Pairs<'a, Datum>>,
}

fn parse<'a, T: Deserialize<'a>>(raw: &'a RawValue) -> Result<T, Inconsistent> {
    serde_json::from_str(raw.get()).map_err(|e| Inconsistent(format!("undecodable update: {e}")))
}

/// A replica of the monitored tables of one database.
pub struct Cache {
    /// The schema used to decode values and fill defaults.
    schema: Arc<DatabaseSchema>,
    /// What is monitored (tables and columns): also the monitor request.
    requests: MonitorRequests,
    /// Column layout per monitored table.
    layouts: HashMap<String, Arc<Layout>>,
    /// The data; replaced wholesale on resync.
    view: RwLock<CacheView>,
    /// Last transaction id seen (`monitor_cond_since` on a clustered database), for
    /// resuming. `None` when the server keeps no history (standalone: all zeros).
    last_txn_id: Mutex<Option<String>>,
    /// Whether the last monitor reply resumed from `last_txn_id` (`found=true`).
    resumed: AtomicBool,
    /// True once a complete snapshot is loaded.
    ready: watch::Sender<bool>,
    /// Set when an update did not fit, or the monitor was cancelled: the owner must
    /// restart the monitor.
    needs_resync: AtomicBool,
    /// Woken when `needs_resync` is set.
    resync_notify: Notify,
    /// Change feeds.
    feed: Feed<ChangeKey>,
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
    /// Tables the schema does not have are ignored.
    pub fn new(
        schema: Arc<DatabaseSchema>,
        requests: MonitorRequests,
        indexes: Vec<IndexSpec>,
    ) -> Arc<Cache> {
        let layouts = requests
            .iter()
            .filter_map(|(t, sel)| {
                Some((
                    t.clone(),
                    Arc::new(Layout::new(schema.tables.get(t)?, sel.columns.as_ref())),
                ))
            })
            .collect();
        let specs = Arc::new(indexes);
        let view = CacheView {
            tables: HashMap::default(),
            indexes: vec![HashMap::default(); specs.len()],
            specs,
        };
        Arc::new(Cache {
            schema,
            requests,
            layouts,
            view: RwLock::new(view),
            last_txn_id: Mutex::new(None),
            resumed: AtomicBool::new(false),
            ready: watch::Sender::new(false),
            needs_resync: AtomicBool::new(false),
            resync_notify: Notify::new(),
            feed: Feed::default(),
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
                        rows.iter().map(|(u, r)| (*u, r.to_row())).collect(),
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

    /// Whether the monitor must be restarted (an update did not fit, or it was
    /// cancelled).
    pub fn needs_resync(&self) -> bool {
        self.needs_resync.load(Ordering::SeqCst)
    }

    /// Wait until the monitor must be restarted.
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
        Subscription {
            feed: self.feed.subscribe(),
        }
    }

    fn publish(&self, changes: Changes) {
        if changes.is_empty() {
            return;
        }
        let resync = changes.resync.then_some(ChangeKey::Resync);
        let rows = changes
            .rows
            .iter()
            .map(|(t, u)| ChangeKey::Row(t.clone(), *u));
        self.feed.publish(resync.into_iter().chain(rows));
    }

    fn flag_resync(&self) {
        self.needs_resync.store(true, Ordering::SeqCst);
        self.resync_notify.notify_waiters();
        self.resync_notify.notify_one();
    }

    fn mark_resync(&self, why: &str) {
        warn!(db = %self.schema.name, why, "cache inconsistent with the server: resync");
        *lock(&self.last_txn_id) = None;
        self.flag_resync();
    }

    fn new_row(layout: &Arc<Layout>, uuid: Uuid, wire: Pairs<'_, Datum>) -> CacheRow {
        let mut values = layout.defaults.clone();
        for (c, d) in wire.0 {
            Self::set_value(layout, &mut values, &c, d, false);
        }
        CacheRow {
            uuid,
            layout: layout.clone(),
            values,
            version: 0,
        }
    }

    /// Store a decoded value (normalised to its column type); `diff` applies an update2
    /// difference to composite columns. Columns not monitored are skipped.
    fn set_value(layout: &Layout, values: &mut [Datum], column: &str, mut d: Datum, diff: bool) {
        let Some(i) = layout.index(column) else {
            return;
        };
        let ty = layout.types[i].as_ref();
        if let Some(t) = ty {
            t.normalize(&mut d);
        }
        if diff && ty.is_some_and(ColumnType::is_composite) {
            values[i].apply_diff(&d);
        } else {
            values[i] = d;
        }
    }

    /// Walk `<table-updates>` of either version: each row update of a monitored table,
    /// with its table's layout; `changes` collects touched rows (deltas only).
    fn each_row<U>(
        &self,
        updates: Pairs<'_, Pairs<'_, U>>,
        mut changes: Option<&mut Changes>,
        mut apply: impl FnMut(&Arc<Layout>, &str, Uuid, U) -> Result<(), Inconsistent>,
    ) -> Result<(), Inconsistent> {
        for (table, rows) in updates.0 {
            let Some(layout) = self.layouts.get(table.as_ref()) else {
                continue;
            };
            for (u, update) in rows.0 {
                let uuid =
                    Uuid::parse_str(&u).map_err(|e| Inconsistent(format!("row uuid {u}: {e}")))?;
                apply(layout, &table, uuid, update)?;
                if let Some(c) = changes.as_deref_mut() {
                    c.rows.insert((table.to_string(), uuid));
                }
            }
        }
        Ok(())
    }

    /// Apply `<table-updates2>` (update2/update3 and `monitor_cond*` replies).
    fn apply2(
        &self,
        view: &mut CacheView,
        updates: TableUpdates2<'_>,
        changes: Option<&mut Changes>,
    ) -> Result<(), Inconsistent> {
        self.each_row(updates, changes, |layout, table, uuid, update| {
            match update {
                RowUpdate2::Initial(w) | RowUpdate2::Insert(w) => {
                    if view.get(table, &uuid).is_some() {
                        return Err(Inconsistent(format!(
                            "insert of {table} {uuid}, which we already have"
                        )));
                    }
                    view.put(table, Arc::new(Self::new_row(layout, uuid, w)));
                }
                RowUpdate2::Modify(w) => {
                    let Some(mut row) = view.remove(table, &uuid) else {
                        return Err(Inconsistent(format!("modify of unknown {table} {uuid}")));
                    };
                    // Copy-on-write: cloned only if a reader still holds the row.
                    let r = Arc::make_mut(&mut row);
                    for (c, d) in w.0 {
                        Self::set_value(layout, &mut r.values, &c, d, true);
                    }
                    view.put(table, row);
                }
                RowUpdate2::Delete => {
                    if view.remove(table, &uuid).is_none() {
                        return Err(Inconsistent(format!("delete of unknown {table} {uuid}")));
                    }
                }
            }
            Ok(())
        })
    }

    /// Apply RFC 7047 `<table-updates>` (`update` and `monitor` replies).
    fn apply1(
        &self,
        view: &mut CacheView,
        updates: TableUpdates1<'_>,
        changes: Option<&mut Changes>,
    ) -> Result<(), Inconsistent> {
        self.each_row(updates, changes, |layout, table, uuid, update| {
            match update.new {
                Some(new) => {
                    let row = match view.remove(table, &uuid) {
                        Some(mut old) => {
                            let r = Arc::make_mut(&mut old);
                            for (c, d) in new.0 {
                                Self::set_value(layout, &mut r.values, &c, d, false);
                            }
                            old
                        }
                        None => Arc::new(Self::new_row(layout, uuid, new)),
                    };
                    view.put(table, row);
                }
                None => {
                    if view.remove(table, &uuid).is_none() {
                        return Err(Inconsistent(format!("delete of unknown {table} {uuid}")));
                    }
                }
            }
            Ok(())
        })
    }

    fn fresh_view(&self) -> CacheView {
        let specs = self.read(|v| v.specs.clone());
        CacheView {
            tables: HashMap::default(),
            indexes: vec![HashMap::default(); specs.len()],
            specs,
        }
    }

    /// Build a fresh snapshot aside and swap it in.
    fn replace(&self, apply: impl FnOnce(&mut CacheView) -> Result<(), Inconsistent>) {
        let mut fresh = self.fresh_view();
        match apply(&mut fresh) {
            Ok(()) => {
                let rows: usize = fresh.tables.values().map(HashMap::len).sum();
                *self.view.write().unwrap_or_else(|p| p.into_inner()) = fresh;
                debug!(db = %self.schema.name, rows, "cache loaded");
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
    fn delta(&self, apply: impl FnOnce(&mut CacheView, &mut Changes) -> Result<(), Inconsistent>) {
        let mut changes = Changes::default();
        let r = {
            let mut view = self.view.write().unwrap_or_else(|p| p.into_inner());
            apply(&mut view, &mut changes)
        };
        if let Err(Inconsistent(why)) = r {
            self.mark_resync(&why);
            changes.resync = true;
        }
        self.publish(changes);
    }
}

impl MonitorHandler for Cache {
    fn on_reply(&self, method: MonitorMethod, result: &RawValue) {
        match method {
            MonitorMethod::CondSince => {
                let parsed: Result<(bool, String, Option<TableUpdates2>), _> = parse(result);
                let (found, txn, updates) = match parsed {
                    Ok(p) => p,
                    Err(Inconsistent(why)) => return self.mark_resync(&why),
                };
                let updates = updates.unwrap_or(Pairs(Vec::new()));
                let resume = found && self.is_ready();
                if resume {
                    debug!(db = %self.schema.name, "monitor resumed from the last transaction");
                    self.delta(|v, c| self.apply2(v, updates, Some(c)));
                } else {
                    self.replace(|v| self.apply2(v, updates, None));
                }
                self.resumed.store(resume, Ordering::SeqCst);
                *lock(&self.last_txn_id) = (txn != ZERO_TXN_ID).then_some(txn);
            }
            MonitorMethod::Cond => {
                self.resumed.store(false, Ordering::SeqCst);
                match parse::<TableUpdates2>(result) {
                    Ok(u) => self.replace(|v| self.apply2(v, u, None)),
                    Err(Inconsistent(why)) => self.mark_resync(&why),
                }
            }
            MonitorMethod::Plain => {
                self.resumed.store(false, Ordering::SeqCst);
                match parse::<TableUpdates1>(result) {
                    Ok(u) => self.replace(|v| self.apply1(v, u, None)),
                    Err(Inconsistent(why)) => self.mark_resync(&why),
                }
            }
        }
    }

    fn on_update(&self, method: &str, params: &RawValue) {
        if self.needs_resync() {
            return;
        }
        let r = match method {
            "update3" => {
                parse::<(de::IgnoredAny, String, TableUpdates2)>(params).map(|(_, txn, u)| {
                    self.delta(|v, c| self.apply2(v, u, Some(c)));
                    if txn != ZERO_TXN_ID && !self.needs_resync() {
                        *lock(&self.last_txn_id) = Some(txn);
                    }
                })
            }
            "update2" => parse::<(de::IgnoredAny, TableUpdates2)>(params)
                .map(|(_, u)| self.delta(|v, c| self.apply2(v, u, Some(c)))),
            _ => parse::<(de::IgnoredAny, TableUpdates1)>(params)
                .map(|(_, u)| self.delta(|v, c| self.apply1(v, u, Some(c)))),
        };
        if let Err(Inconsistent(why)) = r {
            self.mark_resync(&why);
        }
    }

    fn on_canceled(&self) {
        // The owner restarts the monitor (resuming from the last transaction id where
        // the server allows); the data stays as it was meanwhile.
        self.flag_resync();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ovsdb::client::MonitorSelect;
    use crate::ovsdb::schema::ovn_nb_schema;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    #[test]
    fn update2_semantics_per_column_kind() {
        let req =
            MonitorRequests::from([("Logical_Switch_Port".to_owned(), MonitorSelect::default())]);
        let c = Cache::new(Arc::new(ovn_nb_schema()), req, vec![]);
        let u = "11111111-1111-1111-1111-111111111111";
        c.on_reply(
            MonitorMethod::Cond,
            &raw(&format!(r#"{{"Logical_Switch_Port":{{"{u}":{{"initial":{{"name":"p","addresses":["set",["a","b"]],"tag_request":7,"options":["map",[["k","v"]]]}}}}}}}}"#)),
        );
        let uuid: Uuid = u.parse().unwrap();
        let mut sub = c.subscribe();
        // max>1 set: symmetric difference; max 1 optional: new value; map: toggles.
        c.on_update(
            "update2",
            &raw(&format!(r#"["m",{{"Logical_Switch_Port":{{"{u}":{{"modify":{{"addresses":["set",["b","c"]],"tag_request":["set",[]],"options":["map",[["k","v"],["x","y"]]],"enabled":true}}}}}}}}]"#)),
        );
        let r = c.get("Logical_Switch_Port", &uuid).unwrap();
        assert_eq!(r.get("addresses"), &Datum::set(["a", "c"]));
        assert!(r.get("tag_request").is_empty());
        assert_eq!(r.get("options"), &Datum::string_map([("x", "y")]));
        assert_eq!(r.get("enabled"), &Datum::scalar(true));
        assert_eq!(r.get_str("type"), Some(""), "defaults filled in");
        assert!(sub
            .try_changed()
            .rows
            .contains(&("Logical_Switch_Port".to_owned(), uuid)));
        assert!(!c.needs_resync());
        // Garbage in an update: resync, no panic.
        c.on_update(
            "update2",
            &raw(r#"["m",{"Logical_Switch_Port":{"x":{"modify":{}}}}]"#),
        );
        assert!(c.needs_resync());
    }
}
