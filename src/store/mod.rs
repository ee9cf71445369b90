//! Desired state, kept durably. [`Store`] is the small trait the rest of ovnlb uses;
//! [`SqliteStore`] is the embedded default (WAL, `synchronous=FULL`: a write that
//! returned survives `kill -9`); [`ovsdb::OvsdbStore`] keeps it in OVNLB, an OVSDB
//! database of our own on a Raft cluster, for several ovnlbd at once. Validation happens above; the store enforces what
//! only a database can: existence, uniqueness (listen addresses per uplink, in SQL) and
//! revisions (`if_match`).

mod group;
pub mod ovsdb;
mod schema;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::feed::{Feed, FeedReceiver};
use crate::lb::model::{
    canonical_ip, AnyObject, Config, ForwardPut, ForwardsPost, LoadBalancerPut, LoadBalancersPost,
    Network, Object, ObjectKind, ObjectRef, PutRef,
};
use crate::lb::state::{DesiredNetwork, DesiredState};

/// What went wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No such object.
    #[error("{0} not found")]
    NotFound(String),
    /// It exists already, or its listen address is taken on the uplink.
    #[error("{0}")]
    Conflict(String),
    /// `if_match` names another revision than the stored one.
    #[error("revision mismatch: stored revision is {current}, the request expected {expected}")]
    PreconditionFailed {
        /// Stored revision.
        current: u64,
        /// Expected by the caller.
        expected: u64,
    },
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    /// Stored JSON does not decode.
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    /// The thread running the call failed (it panicked, or the runtime is shutting down).
    #[error("store task: {0}")]
    Task(String),
    /// The database cannot take the call now (a clustered store without quorum or
    /// leader within its timeout): retry later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The database refused the call for a reason of its own (not the caller's input).
    #[error("store: {0}")]
    Backend(String),
}

/// Result alias.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A stored object with its revision (the ETag).
#[derive(Debug, Clone, PartialEq)]
pub struct Stored<T> {
    /// The object.
    pub value: T,
    /// Its revision: 1 when created, +1 per update.
    pub revision: u64,
}

/// Durable desired state.
pub trait Store: Send + Sync {
    /// All networks.
    fn networks(&self) -> Result<Vec<Stored<Network>>>;
    /// One network.
    fn network(&self, name: &str) -> Result<Stored<Network>>;
    /// Create a network; returns its revision.
    fn create_network(&self, n: &Network) -> Result<u64>;
    /// Replace a network's description and config.
    fn update_network(&self, n: &Network, if_match: Option<u64>) -> Result<u64>;
    /// Delete a network with its load balancers and forwards.
    fn delete_network(&self, name: &str, if_match: Option<u64>) -> Result<()>;
    /// The objects of `kind` of a network.
    fn objects(&self, kind: ObjectKind, network: &str) -> Result<Vec<Stored<AnyObject>>>;
    /// One object.
    fn object(&self, kind: ObjectKind, network: &str, listen: &str) -> Result<Stored<AnyObject>>;
    /// Create an object (normalised by the caller); returns its revision (1).
    fn create_object(&self, network: &str, o: ObjectRef<'_>) -> Result<u64>;
    /// Replace the editable fields of the object of `put`'s kind at `listen`.
    fn update_object(
        &self,
        network: &str,
        listen: &str,
        put: PutRef<'_>,
        if_match: Option<u64>,
    ) -> Result<u64>;
    /// Delete an object.
    fn delete_object(
        &self,
        kind: ObjectKind,
        network: &str,
        listen: &str,
        if_match: Option<u64>,
    ) -> Result<()>;
    /// Everything, as desired state (with revisions).
    fn desired_state(&self) -> Result<DesiredState>;
    /// Changes committed from now on: which network, and which object of it (`None`: the
    /// network itself). Coalesced, never dropped.
    fn subscribe(&self) -> FeedReceiver<Change>;
}

/// The typed face of a [`Store`]'s objects, generic over their kind (every store has it).
pub trait Objects: Store {
    /// The objects of a network.
    ///
    /// # Errors
    /// The store's.
    fn list<O: Object>(&self, network: &str) -> Result<Vec<Stored<O>>> {
        self.objects(O::KIND, network)?
            .into_iter()
            .map(typed)
            .collect()
    }

    /// One object.
    ///
    /// # Errors
    /// The store's.
    fn get<O: Object>(&self, network: &str, listen: &str) -> Result<Stored<O>> {
        typed(self.object(O::KIND, network, listen)?)
    }

    /// Create an object (normalised by the caller); returns its revision (1).
    ///
    /// # Errors
    /// The store's.
    fn create<O: Object>(&self, network: &str, o: &O) -> Result<u64> {
        self.create_object(network, o.as_ref())
    }

    /// Replace an object's editable fields.
    ///
    /// # Errors
    /// The store's.
    fn update<O: Object>(
        &self,
        network: &str,
        listen: &str,
        put: &O::Put,
        if_match: Option<u64>,
    ) -> Result<u64> {
        self.update_object(network, listen, O::put_ref(put), if_match)
    }

    /// Delete an object.
    ///
    /// # Errors
    /// The store's.
    fn delete<O: Object>(&self, network: &str, listen: &str, if_match: Option<u64>) -> Result<()> {
        self.delete_object(O::KIND, network, listen, if_match)
    }
}

impl<S: Store + ?Sized> Objects for S {}

/// A stored object as the kind asked for.
fn typed<O: Object>(s: Stored<AnyObject>) -> Result<Stored<O>> {
    let Stored { value, revision } = s;
    let kind = value.kind();
    O::from_any(value)
        .map(|value| Stored { value, revision })
        .ok_or_else(|| StoreError::Corrupt(format!("a {kind} where a {} was asked for", O::KIND)))
}

/// A [`Store`] for async code: every call runs on tokio's blocking pool, so no SQLite
/// call (nor its fsync) ever holds a runtime worker; the NB session, the controller and
/// the other requests keep running while a write commits.
#[derive(Clone)]
pub struct Handle(Arc<dyn Store>);

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle").finish_non_exhaustive()
    }
}

impl Handle {
    /// Wrap a store.
    pub fn new(store: Arc<dyn Store>) -> Handle {
        Handle(store)
    }

    /// Run `f` against the store on a blocking thread.
    ///
    /// # Errors
    /// `f`'s error, or [`StoreError::Task`] when the thread failed.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Store) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let s = self.0.clone();
        tokio::task::spawn_blocking(move || f(s.as_ref()))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Changes committed from now on (no SQLite involved).
    pub fn subscribe(&self) -> FeedReceiver<Change> {
        self.0.subscribe()
    }

    /// The store itself, for code that is not on the runtime.
    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.0
    }
}

/// What a committed write touched.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Change {
    /// The network.
    pub network: String,
    /// The load balancer or forward; `None` for the network.
    pub object: Option<ChangedObject>,
}

/// The object a [`Change`] touched.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChangedObject {
    /// Its kind.
    pub kind: ObjectKind,
    /// Its listen address (canonical).
    pub listen: String,
}

impl Change {
    /// The network `n` itself.
    pub fn network(n: &str) -> Change {
        Change {
            network: n.to_owned(),
            object: None,
        }
    }

    /// The object of `kind` at `listen` on network `n`.
    pub fn object(n: &str, kind: ObjectKind, listen: &str) -> Change {
        Change {
            network: n.to_owned(),
            object: Some(ChangedObject {
                kind,
                listen: listen.to_owned(),
            }),
        }
    }
}

/// The embedded SQLite store.
pub struct SqliteStore {
    /// One connection; SQLite serialises writers anyway, and every call is short.
    conn: Mutex<Connection>,
    /// Subscribers to committed changes.
    feed: Feed<Change>,
    /// Writes waiting for (or in) a commit.
    group: group::Group,
    /// The database file (`None` in memory): reopened when SQLite finds it read-only, so
    /// a database opened while unwritable recovers once it is writable again.
    path: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

fn canon(listen: &str) -> String {
    canonical_ip(listen).unwrap_or_else(|| listen.trim().to_owned())
}

fn conflict_or(e: rusqlite::Error, what: impl FnOnce() -> String) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StoreError::Conflict(what())
        }
        _ => StoreError::Db(e),
    }
}

fn check_rev(current: u64, if_match: Option<u64>) -> Result<()> {
    match if_match {
        Some(expected) if expected != current => {
            Err(StoreError::PreconditionFailed { current, expected })
        }
        _ => Ok(()),
    }
}

fn read_config(tx: &Connection, table: &str, fk: &str, id: i64) -> Result<Config> {
    let mut st = tx.prepare_cached(&format!("SELECT key, value FROM {table} WHERE {fk} = ?1"))?;
    let rows = st.query_map([id], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    Ok(rows.collect::<Result<BTreeMap<_, _>, _>>()?)
}

fn write_config(
    tx: &Transaction<'_>,
    table: &str,
    fk: &str,
    id: i64,
    config: &Config,
) -> Result<()> {
    tx.execute(&format!("DELETE FROM {table} WHERE {fk} = ?1"), [id])?;
    let mut st = tx.prepare_cached(&format!(
        "INSERT INTO {table} ({fk}, key, value) VALUES (?1, ?2, ?3)"
    ))?;
    for (k, v) in config {
        st.execute(params![id, k, v])?;
    }
    Ok(())
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

fn unjson<T: serde::de::DeserializeOwned>(s: &str) -> Result<T> {
    if s.is_empty() {
        return serde_json::from_str("[]").map_err(|e| StoreError::Corrupt(e.to_string()));
    }
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// (id, uplink) of a network, or NotFound.
fn network_ids(tx: &Connection, name: &str) -> Result<(i64, String)> {
    let row: Option<(i64, String)> = tx
        .query_row(
            "SELECT n.id, COALESCE((SELECT value FROM networks_config WHERE network_id = n.id AND key = 'network'), '') FROM networks n WHERE n.name = ?1",
            [name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    row.ok_or_else(|| StoreError::NotFound(format!("Network \"{name}\"")))
}

/// The same database error again, for every write of a batch that failed as one.
fn copy_db(e: &rusqlite::Error) -> StoreError {
    StoreError::Db(match e {
        rusqlite::Error::SqliteFailure(f, m) => rusqlite::Error::SqliteFailure(*f, m.clone()),
        other => rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(other.to_string()),
        ),
    })
}

/// Whether SQLite refused a write because the database is read-only.
fn read_only(e: &StoreError) -> bool {
    matches!(e, StoreError::Db(rusqlite::Error::SqliteFailure(f, _)) if f.code == rusqlite::ErrorCode::ReadOnly)
}

/// The tables of one object kind.
struct ObjectTables {
    kind: ObjectKind,
    table: &'static str,
    config: &'static str,
    fk: &'static str,
}

/// The stored fields of one load balancer or forward (owned: the write may run on
/// another caller's thread, in its batch).
struct Fields {
    listen: String,
    description: String,
    /// JSON backends (load balancers only).
    backends: Option<String>,
    /// JSON ports.
    ports: String,
    config: Config,
}

const LB: ObjectTables = ObjectTables {
    kind: ObjectKind::LoadBalancer,
    table: "networks_load_balancers",
    config: "networks_load_balancers_config",
    fk: "network_load_balancer_id",
};
/// The tables of a kind.
fn tables(kind: ObjectKind) -> &'static ObjectTables {
    match kind {
        ObjectKind::LoadBalancer => &LB,
        ObjectKind::Forward => &FWD,
    }
}

impl Fields {
    fn of_lb(listen: &str, put: &LoadBalancerPut) -> Fields {
        Fields {
            listen: listen.to_owned(),
            description: put.description.clone(),
            backends: Some(json(&put.backends)),
            ports: json(&put.ports),
            config: put.config.clone(),
        }
    }

    fn of_fwd(listen: &str, put: &ForwardPut) -> Fields {
        Fields {
            listen: listen.to_owned(),
            description: put.description.clone(),
            backends: None,
            ports: json(&put.ports),
            config: put.config.clone(),
        }
    }
}

const FWD: ObjectTables = ObjectTables {
    kind: ObjectKind::Forward,
    table: "networks_forwards",
    config: "networks_forwards_config",
    fk: "network_forward_id",
};

impl SqliteStore {
    /// Open (creating and migrating) the database at `path`.
    ///
    /// # Errors
    /// When the file cannot be opened or migrated.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore> {
        let mut s = Self::init(Connection::open(path.as_ref())?)?;
        s.path = Some(path.as_ref().to_owned());
        Ok(s)
    }

    fn configure(conn: &Connection) -> Result<()> {
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(())
    }

    /// An in-memory store (tests, dry runs).
    ///
    /// # Errors
    /// When SQLite fails.
    pub fn in_memory() -> Result<SqliteStore> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<SqliteStore> {
        Self::configure(&conn)?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        for (i, m) in schema::MIGRATIONS
            .iter()
            .enumerate()
            .skip(version.max(0) as usize)
        {
            let tx = conn.transaction()?;
            tx.execute_batch(m)?;
            tx.pragma_update(None, "user_version", i as i64 + 1)?;
            tx.commit()?;
        }
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            feed: Feed::default(),
            group: group::Group::default(),
            path: None,
        })
    }

    /// Run one write: queued, committed with the writes that arrive alongside it
    /// ([`group`]), its result returned once that transaction committed.
    fn write(
        &self,
        change: Change,
        work: impl Fn(&Transaction<'_>) -> Result<u64> + Send + 'static,
    ) -> Result<u64> {
        self.group
            .write(change, Box::new(work), |jobs| self.commit(jobs))
    }

    /// One batch: one transaction, a savepoint per write, one commit (one fsync).
    fn attempt(conn: &mut Connection, jobs: &[group::Job]) -> Vec<(u64, Result<u64>)> {
        let all_failed =
            |e: &rusqlite::Error| jobs.iter().map(|j| (j.id(), Err(copy_db(e)))).collect();
        let tx = match conn.transaction() {
            Ok(tx) => tx,
            Err(e) => return all_failed(&e),
        };
        let mut out = Vec::with_capacity(jobs.len());
        for j in jobs {
            if let Err(e) = tx.execute_batch("SAVEPOINT w") {
                return all_failed(&e);
            }
            let r = (j.work)(&tx);
            let end = if r.is_ok() {
                tx.execute_batch("RELEASE w")
            } else {
                tx.execute_batch("ROLLBACK TO w; RELEASE w")
            };
            // A savepoint that cannot be closed leaves the transaction unknown: none of
            // the batch is committed.
            if let Err(e) = end {
                return all_failed(&e);
            }
            out.push((j.id(), r));
        }
        if out.iter().any(|(_, r)| r.is_ok()) {
            if let Err(e) = tx.commit() {
                return all_failed(&e);
            }
        }
        out
    }

    fn commit(&self, jobs: Vec<group::Job>) -> Vec<(u64, Result<u64>)> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Self::attempt(&mut conn, &jobs);
        // Opened (or fallen back to) read-only: the file may be writable again now.
        let refused = out.iter().any(|(_, r)| matches!(r, Err(e) if read_only(e)));
        if let (true, Some(path)) = (refused, &self.path) {
            match Connection::open(path)
                .map_err(StoreError::from)
                .and_then(|c| {
                    Self::configure(&c)?;
                    Ok(c)
                }) {
                Ok(c) => {
                    *conn = c;
                    out = Self::attempt(&mut conn, &jobs);
                    if out.iter().any(|(_, r)| r.is_ok()) {
                        tracing::info!(db = %path.display(), "the database is writable again");
                    }
                }
                Err(e) => {
                    tracing::warn!(db = %path.display(), error = %e, "reopening the database failed")
                }
            }
        }
        drop(conn);
        if out.iter().any(|(_, r)| r.is_ok()) {
            self.feed.publish(
                jobs.iter()
                    .zip(&out)
                    .filter(|(_, (_, r))| r.is_ok())
                    .map(|(j, _)| j.change.clone()),
            );
        }
        // Disk full, read-only, I/O: the operator must hear of it (the client gets a 500).
        if let Some((_, Err(e))) = out
            .iter()
            .find(|(_, r)| matches!(r, Err(StoreError::Db(_) | StoreError::Corrupt(_))))
        {
            tracing::warn!(error = %e, writes = jobs.len(), "a write to the store failed");
        }
        out
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn)
    }

    /// (id, revision) of an object.
    fn object_ids(
        tx: &Connection,
        k: &ObjectTables,
        network_id: i64,
        listen: &str,
    ) -> Result<(i64, u64)> {
        tx.query_row(
            &format!(
                "SELECT id, revision FROM {} WHERE network_id = ?1 AND listen_address = ?2",
                k.table
            ),
            params![network_id, listen],
            |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)),
        )
        .optional()?
        .ok_or_else(|| StoreError::NotFound(k.kind.title().to_owned()))
    }

    fn remove_object(
        &self,
        k: &'static ObjectTables,
        network: &str,
        listen: &str,
        if_match: Option<u64>,
    ) -> Result<()> {
        let listen = canon(listen);
        let network = network.to_owned();
        self.write(Change::object(&network, k.kind, &listen), move |tx| {
            let (nid, _) = network_ids(tx, &network)?;
            let (id, rev) = Self::object_ids(tx, k, nid, &listen)?;
            check_rev(rev, if_match)?;
            tx.execute(&format!("DELETE FROM {} WHERE id = ?1", k.table), [id])?;
            Ok(0)
        })
        .map(drop)
    }

    /// Insert an object row; `ports` and `backends` are JSON (backends empty for forwards).
    fn insert_object(&self, k: &'static ObjectTables, network: &str, f: Fields) -> Result<u64> {
        let Fields {
            listen,
            description,
            backends,
            ports,
            config,
        } = f;
        let listen = canon(&listen);
        let network = network.to_owned();
        self.write(Change::object(&network, k.kind, &listen), move |tx| {
            let (nid, uplink) = network_ids(tx, &network)?;
            let dup = tx
                .query_row(&format!("SELECT 1 FROM {} WHERE network_id = ?1 AND listen_address = ?2", k.table), params![nid, listen], |_| Ok(()))
                .optional()?;
            if dup.is_some() {
                return Err(StoreError::Conflict(format!("A {} for that listen address already exists", k.kind.title().to_lowercase().trim_start_matches("network "))));
            }
            let r = match &backends {
                Some(b) => tx.execute(
                    &format!("INSERT INTO {} (network_id, listen_address, description, backends, ports, uplink) VALUES (?1, ?2, ?3, ?4, ?5, ?6)", k.table),
                    params![nid, listen, description, b, ports, uplink],
                ),
                None => tx.execute(
                    &format!("INSERT INTO {} (network_id, listen_address, description, ports, uplink) VALUES (?1, ?2, ?3, ?4, ?5)", k.table),
                    params![nid, listen, description, ports, uplink],
                ),
            };
            r.map_err(|e| conflict_or(e, || format!("Listen address \"{listen}\" overlaps with another network or NIC (in use on uplink \"{uplink}\")")))?;
            write_config(tx, k.config, k.fk, tx.last_insert_rowid(), &config)?;
            Ok(1)
        })
    }

    fn rewrite_object(
        &self,
        k: &'static ObjectTables,
        network: &str,
        f: Fields,
        if_match: Option<u64>,
    ) -> Result<u64> {
        let Fields {
            listen,
            description,
            backends,
            ports,
            config,
        } = f;
        let listen = canon(&listen);
        let network = network.to_owned();
        self.write(Change::object(&network, k.kind, &listen), move |tx| {
            let (nid, _) = network_ids(tx, &network)?;
            let (id, rev) = Self::object_ids(tx, k, nid, &listen)?;
            check_rev(rev, if_match)?;
            match &backends {
                Some(b) => tx.execute(
                    &format!("UPDATE {} SET description = ?1, backends = ?2, ports = ?3, revision = revision + 1 WHERE id = ?4", k.table),
                    params![description, b, ports, id],
                )?,
                None => tx.execute(&format!("UPDATE {} SET description = ?1, ports = ?2, revision = revision + 1 WHERE id = ?3", k.table), params![description, ports, id])?,
            };
            write_config(tx, k.config, k.fk, id, &config)?;
            Ok(rev + 1)
        })
    }

    fn lbs_of(
        conn: &Connection,
        network_id: i64,
        listen: Option<&str>,
    ) -> Result<Vec<Stored<LoadBalancersPost>>> {
        // Two statements: `(?2 IS NULL OR listen_address = ?2)` would keep SQLite from
        // using the (network_id, listen_address) index, scanning the network per lookup.
        let mut st = match listen {
            Some(_) => conn.prepare_cached(
                "SELECT id, listen_address, description, backends, ports, revision FROM networks_load_balancers WHERE network_id = ?1 AND listen_address = ?2",
            )?,
            None => conn.prepare_cached(
                "SELECT id, listen_address, description, backends, ports, revision FROM networks_load_balancers WHERE network_id = ?1 AND ?2 IS NULL ORDER BY id",
            )?,
        };
        let rows: Vec<(i64, String, String, String, String, i64)> = st
            .query_map(params![network_id, listen], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })?
            .collect::<Result<_, _>>()?;
        rows.into_iter()
            .map(
                |(id, listen_address, description, backends, ports, revision)| {
                    Ok(Stored {
                        value: LoadBalancersPost {
                            listen_address,
                            put: LoadBalancerPut {
                                description,
                                config: read_config(conn, LB.config, LB.fk, id)?,
                                backends: unjson(&backends)?,
                                ports: unjson(&ports)?,
                            },
                        },
                        revision: revision as u64,
                    })
                },
            )
            .collect()
    }

    fn fwds_of(
        conn: &Connection,
        network_id: i64,
        listen: Option<&str>,
    ) -> Result<Vec<Stored<ForwardsPost>>> {
        // Two statements: `(?2 IS NULL OR listen_address = ?2)` would keep SQLite from
        // using the (network_id, listen_address) index, scanning the network per lookup.
        let mut st = match listen {
            Some(_) => conn.prepare_cached(
                "SELECT id, listen_address, description, ports, revision FROM networks_forwards WHERE network_id = ?1 AND listen_address = ?2",
            )?,
            None => conn.prepare_cached(
                "SELECT id, listen_address, description, ports, revision FROM networks_forwards WHERE network_id = ?1 AND ?2 IS NULL ORDER BY id",
            )?,
        };
        let rows: Vec<(i64, String, String, String, i64)> = st
            .query_map(params![network_id, listen], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect::<Result<_, _>>()?;
        rows.into_iter()
            .map(|(id, listen_address, description, ports, revision)| {
                Ok(Stored {
                    value: ForwardsPost {
                        listen_address,
                        put: ForwardPut {
                            description,
                            config: read_config(conn, FWD.config, FWD.fk, id)?,
                            ports: unjson(&ports)?,
                        },
                    },
                    revision: revision as u64,
                })
            })
            .collect()
    }

    /// The objects of `kind` of a network (one, with `listen`), either kind's way.
    fn objects_of(
        conn: &Connection,
        kind: ObjectKind,
        network_id: i64,
        listen: Option<&str>,
    ) -> Result<Vec<Stored<AnyObject>>> {
        fn any<O>(v: Vec<Stored<O>>, f: fn(O) -> AnyObject) -> Vec<Stored<AnyObject>> {
            v.into_iter()
                .map(|s| Stored {
                    value: f(s.value),
                    revision: s.revision,
                })
                .collect()
        }
        Ok(match kind {
            ObjectKind::LoadBalancer => any(
                Self::lbs_of(conn, network_id, listen)?,
                AnyObject::LoadBalancer,
            ),
            ObjectKind::Forward => {
                any(Self::fwds_of(conn, network_id, listen)?, AnyObject::Forward)
            }
        })
    }

    fn networks_of(conn: &Connection, name: Option<&str>) -> Result<Vec<(i64, Stored<Network>)>> {
        let mut st = conn.prepare_cached("SELECT id, name, description, type, revision FROM networks WHERE (?1 IS NULL OR name = ?1) ORDER BY name")?;
        let rows: Vec<(i64, String, String, String, i64)> = st
            .query_map([name], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect::<Result<_, _>>()?;
        rows.into_iter()
            .map(|(id, name, description, kind, revision)| {
                Ok((
                    id,
                    Stored {
                        value: Network {
                            name,
                            description,
                            kind,
                            config: read_config(conn, "networks_config", "network_id", id)?,
                        },
                        revision: revision as u64,
                    },
                ))
            })
            .collect()
    }
}

impl Store for SqliteStore {
    fn networks(&self) -> Result<Vec<Stored<Network>>> {
        self.read(|c| {
            Ok(Self::networks_of(c, None)?
                .into_iter()
                .map(|(_, n)| n)
                .collect())
        })
    }

    fn network(&self, name: &str) -> Result<Stored<Network>> {
        self.read(|c| {
            Self::networks_of(c, Some(name))?
                .pop()
                .map(|(_, n)| n)
                .ok_or_else(|| StoreError::NotFound(format!("Network \"{name}\"")))
        })
    }

    fn create_network(&self, n: &Network) -> Result<u64> {
        let n = n.clone();
        self.write(Change::network(&n.name), move |tx| {
            tx.execute(
                "INSERT INTO networks (name, description, type) VALUES (?1, ?2, ?3)",
                params![n.name, n.description, n.kind],
            )
            .map_err(|e| {
                conflict_or(e, || format!("The network already exists: \"{}\"", n.name))
            })?;
            write_config(
                tx,
                "networks_config",
                "network_id",
                tx.last_insert_rowid(),
                &n.config,
            )?;
            Ok(1)
        })
    }

    fn update_network(&self, n: &Network, if_match: Option<u64>) -> Result<u64> {
        let n = n.clone();
        self.write(Change::network(&n.name), move |tx| {
            let (id, rev): (i64, i64) = tx
                .query_row("SELECT id, revision FROM networks WHERE name = ?1", [&n.name], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?
                .ok_or_else(|| StoreError::NotFound(format!("Network \"{}\"", n.name)))?;
            check_rev(rev as u64, if_match)?;
            tx.execute("UPDATE networks SET description = ?1, revision = revision + 1 WHERE id = ?2", params![n.description, id])?;
            write_config(tx, "networks_config", "network_id", id, &n.config)?;
            // Listeners follow the network to its (maybe new) uplink.
            let uplink = n.config.get("network").cloned().unwrap_or_default();
            for t in [LB.table, FWD.table] {
                tx.execute(&format!("UPDATE {t} SET uplink = ?1 WHERE network_id = ?2 AND uplink != ?1"), params![uplink, id])
                    .map_err(|e| conflict_or(e, || format!("A listen address of network \"{}\" is already in use on uplink \"{uplink}\"", n.name)))?;
            }
            Ok(rev as u64 + 1)
        })
    }

    fn delete_network(&self, name: &str, if_match: Option<u64>) -> Result<()> {
        let name = name.to_owned();
        self.write(Change::network(&name), move |tx| {
            let (id, rev): (i64, i64) = tx
                .query_row(
                    "SELECT id, revision FROM networks WHERE name = ?1",
                    [&name],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?
                .ok_or_else(|| StoreError::NotFound(format!("Network \"{name}\"")))?;
            check_rev(rev as u64, if_match)?;
            tx.execute("DELETE FROM networks WHERE id = ?1", [id])?;
            Ok(0)
        })
        .map(drop)
    }

    fn objects(&self, kind: ObjectKind, network: &str) -> Result<Vec<Stored<AnyObject>>> {
        self.read(|c| Self::objects_of(c, kind, network_ids(c, network)?.0, None))
    }

    fn object(&self, kind: ObjectKind, network: &str, listen: &str) -> Result<Stored<AnyObject>> {
        let listen = canon(listen);
        self.read(|c| {
            Self::objects_of(c, kind, network_ids(c, network)?.0, Some(&listen))?
                .pop()
                .ok_or_else(|| StoreError::NotFound(kind.title().into()))
        })
    }

    fn create_object(&self, network: &str, o: ObjectRef<'_>) -> Result<u64> {
        let (k, f) = match o {
            ObjectRef::LoadBalancer(lb) => (&LB, Fields::of_lb(&lb.listen_address, &lb.put)),
            ObjectRef::Forward(f) => (&FWD, Fields::of_fwd(&f.listen_address, &f.put)),
        };
        self.insert_object(k, network, f)
    }

    fn update_object(
        &self,
        network: &str,
        listen: &str,
        put: PutRef<'_>,
        if_match: Option<u64>,
    ) -> Result<u64> {
        let (k, f) = match put {
            PutRef::LoadBalancer(put) => (&LB, Fields::of_lb(listen, put)),
            PutRef::Forward(put) => (&FWD, Fields::of_fwd(listen, put)),
        };
        self.rewrite_object(k, network, f, if_match)
    }

    fn delete_object(
        &self,
        kind: ObjectKind,
        network: &str,
        listen: &str,
        if_match: Option<u64>,
    ) -> Result<()> {
        self.remove_object(tables(kind), network, listen, if_match)
    }

    fn desired_state(&self) -> Result<DesiredState> {
        self.read(|c| {
            let mut networks = Vec::new();
            for (id, n) in Self::networks_of(c, None)? {
                let lbs = Self::lbs_of(c, id, None)?;
                let fwds = Self::fwds_of(c, id, None)?;
                let mut revisions = BTreeMap::new();
                revisions.extend(
                    lbs.iter()
                        .map(|s| (s.value.listen_address.clone(), s.revision)),
                );
                revisions.extend(
                    fwds.iter()
                        .map(|s| (s.value.listen_address.clone(), s.revision)),
                );
                networks.push(DesiredNetwork {
                    network: n.value,
                    load_balancers: lbs.into_iter().map(|s| s.value).collect(),
                    forwards: fwds.into_iter().map(|s| s.value).collect(),
                    revisions,
                });
            }
            Ok(DesiredState { networks })
        })
    }

    fn subscribe(&self) -> FeedReceiver<Change> {
        self.feed.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(name: &str) -> Network {
        Network {
            name: name.into(),
            description: String::new(),
            kind: "physical".into(),
            config: Config::new(),
        }
    }

    fn create(id: u64, name: &str) -> group::Job {
        let n = net(name);
        group::Job::new(
            id,
            Change::network(name),
            Box::new(move |tx| {
                tx.execute(
                    "INSERT INTO networks (name, description, type) VALUES (?1, ?2, ?3)",
                    params![n.name, n.description, n.kind],
                )
                .map_err(|e| conflict_or(e, || "exists".into()))?;
                Ok(1)
            }),
        )
    }

    #[test]
    fn a_refused_write_in_a_batch_undoes_only_itself() {
        let s = SqliteStore::in_memory().unwrap();
        let mut feed = s.subscribe();
        // The second writes a row, then is refused: its row must go, the others stay.
        let half = {
            let c = create(1, "c");
            group::Job::new(
                1,
                Change::network("c"),
                Box::new(move |tx| {
                    c.run(tx)?;
                    Err(StoreError::Conflict("refused after a write".into()))
                }),
            )
        };
        let out = s.commit(vec![create(0, "a"), half, create(2, "a"), create(3, "b")]);
        assert!(out[0].1.is_ok(), "{out:?}");
        assert!(matches!(out[1].1, Err(StoreError::Conflict(_))), "{out:?}");
        assert!(matches!(out[2].1, Err(StoreError::Conflict(_))), "{out:?}");
        assert!(out[3].1.is_ok(), "{out:?}");
        let names: Vec<String> = s
            .networks()
            .unwrap()
            .into_iter()
            .map(|n| n.value.name)
            .collect();
        assert_eq!(names, ["a", "b"]);
        // Only the committed writes are announced.
        let changed: Vec<Change> = feed.try_changed().into_iter().collect();
        assert_eq!(changed, [Change::network("a"), Change::network("b")]);
    }
}
