//! Store engine 2: OVNLB, desired state in an OVSDB database of our own
//! (`ovsdb-schema/ovnlb.ovsschema`), normally a 3-member Raft cluster served by
//! `ovsdb-server` as OVN's own databases are. Every ovnlbd on it serves the API: reads
//! come from a warm monitor cache, writes go straight to the cluster leader.
//!
//! What the database enforces, as SQLite's tables do: a listen address is unique per
//! uplink across load balancers and forwards (the shared `Listener` table's index),
//! unique per network and kind (each object table's index), and an object belongs to an
//! existing network (a strong reference). Each write is one transaction:
//! - the rows its plan read are guarded with a `wait` on their revision, so a write
//!   planned on a cache that lagged fails and is planned again on the fresh one; an
//!   `If-Match` is that same `wait` on the revision the client gave;
//! - every row it writes carries the write's id (`write_id`), and inserted rows have a
//!   client-chosen UUID: when the outcome is unknown (the leader died with the request in
//!   flight), the cache of the next leader says whether it committed, and a replay of a
//!   committed insert fails on its UUID instead of doubling the row.
//!
//! A write that cannot commit within the store's timeout (no quorum, no leader) fails
//! with [`StoreError::Unavailable`] (the API's 503): it never hangs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{canon, Change, Result, Store, StoreError, Stored};
use crate::feed::{Feed, FeedReceiver};
use crate::lb::model::{
    AnyObject, Config, ForwardPut, ForwardsPost, LoadBalancerPut, LoadBalancersPost, Network,
    ObjectKind, ObjectRef, PutRef,
};
use crate::lb::state::{DesiredNetwork, DesiredState};
use crate::ovsdb::{
    self, Atom, CacheRow, CacheView, Condition, DatabaseSchema, Datum, IndexSpec, Remote, Row,
    Session, SessionConfig, TlsFiles, Transaction, TxnErrorKind, WaitUntil,
};

/// The OVNLB schema, as shipped in `ovsdb-schema/ovnlb.ovsschema`.
pub const OVNLB_SCHEMA: &str = include_str!("../../ovsdb-schema/ovnlb.ovsschema");

/// The database's name in [`OVNLB_SCHEMA`].
pub const DATABASE: &str = "OVNLB";

/// The parsed OVNLB schema.
pub fn ovnlb_schema() -> DatabaseSchema {
    // Part of the crate: a parse failure is a build defect, caught by the tests.
    DatabaseSchema::from_json(&serde_json::from_str(OVNLB_SCHEMA).expect("OVNLB schema is JSON"))
        .expect("OVNLB schema parses")
}

const NETWORK: &str = "Network";
const LISTENER: &str = "Listener";

fn table(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::LoadBalancer => "Load_Balancer",
        ObjectKind::Forward => "Forward",
    }
}

fn listener_kind(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::LoadBalancer => "load-balancer",
        ObjectKind::Forward => "forward",
    }
}

fn by(table: &str, column: &str) -> IndexSpec {
    IndexSpec::Column {
        table: table.into(),
        column: column.into(),
    }
}

/// The cache's indexes: networks by name, objects by network and by listen address.
fn indexes() -> Vec<IndexSpec> {
    let mut v = vec![by(NETWORK, "name")];
    for k in [ObjectKind::LoadBalancer, ObjectKind::Forward] {
        v.push(by(table(k), "network"));
        v.push(by(table(k), "listen_address"));
    }
    v
}

/// How to reach an OVNLB database.
#[derive(Debug, Clone)]
pub struct OvsdbStoreConfig {
    /// Remotes (`tcp:`, `ssl:`, `unix:`), every member of the cluster.
    pub remotes: Vec<Remote>,
    /// TLS files for `ssl:` remotes.
    pub tls: Option<TlsFiles>,
    /// How long a call may take before it fails with [`StoreError::Unavailable`]
    /// (opening: until the first snapshot is cached).
    pub timeout: Duration,
}

impl OvsdbStoreConfig {
    /// `remotes` as `ovsdb-client` takes them (`tcp:IP:PORT,ssl:IP:PORT,unix:PATH`),
    /// with a 10 s timeout.
    ///
    /// # Errors
    /// A remote that does not parse.
    pub fn parse(remotes: &str) -> Result<OvsdbStoreConfig> {
        Ok(OvsdbStoreConfig {
            remotes: ovsdb::parse_remotes(remotes)
                .map_err(|e| StoreError::Backend(format!("OVNLB remotes: {e}")))?,
            tls: None,
            timeout: Duration::from_secs(10),
        })
    }
}

/// The OVNLB engine. Its methods block (run them off the async runtime, as
/// [`super::Handle`] does); it needs the runtime it was opened on to keep running.
pub struct OvsdbStore {
    session: Session,
    rt: tokio::runtime::Handle,
    feed: Arc<Feed<Change>>,
    timeout: Duration,
    /// Stops the task turning cache changes into [`Change`]s.
    stop: CancellationToken,
    stats: Counters,
}

#[derive(Debug, Default)]
struct Counters {
    replans: std::sync::atomic::AtomicU64,
    interrupted: std::sync::atomic::AtomicU64,
    found_committed: std::sync::atomic::AtomicU64,
}

/// How writes went, since the store opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Plans made again because a row they read changed before they committed.
    pub replans: u64,
    /// Attempts cut off (connection lost, no reply, leader gone) and retried.
    pub interrupted: u64,
    /// Writes whose outcome was unknown and which a fresh cache showed committed (not
    /// sent again).
    pub found_committed: u64,
}

impl std::fmt::Debug for OvsdbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OvsdbStore")
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

impl Drop for OvsdbStore {
    fn drop(&mut self) {
        self.stop.cancel();
        self.session.shutdown();
    }
}

/// What went wrong talking to the database, as a store error.
fn backend(e: &ovsdb::Error) -> StoreError {
    StoreError::Backend(format!("OVNLB: {e}"))
}

impl OvsdbStore {
    /// Connect (leader-only, following the leader across the remotes) and wait for the
    /// first snapshot of the database.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when no leader answered within the timeout.
    pub async fn open(cfg: OvsdbStoreConfig) -> Result<OvsdbStore> {
        let mut sc = SessionConfig::new(cfg.remotes, Arc::new(ovnlb_schema()));
        sc.indexes = indexes();
        sc.connect.tls = cfg.tls;
        sc.connect.request_timeout = cfg.timeout;
        // A frozen leader is left within about two seconds (ha-design.md §5.4).
        sc.connect.probe_interval = Some(Duration::from_secs(1));
        sc.backoff_min = Duration::from_millis(100);
        sc.backoff_max = Duration::from_secs(2);
        let session = Session::start(sc).map_err(|e| backend(&e))?;
        let ready = tokio::time::timeout(cfg.timeout, session.cache().wait_ready()).await;
        if ready.is_err() {
            let why = session.last_error().unwrap_or_else(|| "no leader".into());
            session.shutdown();
            return Err(StoreError::Unavailable(format!(
                "OVNLB: no snapshot from a cluster leader within {:?}: {why}",
                cfg.timeout
            )));
        }
        let feed = Arc::new(Feed::default());
        let stop = CancellationToken::new();
        tokio::spawn(translate(
            session.cache().clone(),
            feed.clone(),
            stop.clone(),
        ));
        Ok(OvsdbStore {
            session,
            rt: tokio::runtime::Handle::current(),
            feed,
            timeout: cfg.timeout,
            stop,
            stats: Counters::default(),
        })
    }

    /// How writes went so far.
    pub fn stats(&self) -> WriteStats {
        use std::sync::atomic::Ordering::Relaxed;
        WriteStats {
            replans: self.stats.replans.load(Relaxed),
            interrupted: self.stats.interrupted.load(Relaxed),
            found_committed: self.stats.found_committed.load(Relaxed),
        }
    }

    fn count(&self, c: &std::sync::atomic::AtomicU64) {
        c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether a write whose outcome was unknown committed after all.
    fn committed(&self, unknown: bool, done: &impl Fn(&CacheView) -> bool) -> bool {
        let yes = unknown && self.read(done);
        if yes {
            self.count(&self.stats.found_committed);
        }
        yes
    }

    /// The session (its state, for status pages and tests).
    pub fn session(&self) -> &Session {
        &self.session
    }

    fn read<T>(&self, f: impl FnOnce(&CacheView) -> T) -> T {
        self.session.cache().read(f)
    }

    /// Read with `f`; when it finds nothing, wait for the cache to hold everything the
    /// leader had committed and read again (an object just created through another
    /// ovnlbd is found).
    fn read_fresh<T>(&self, f: impl Fn(&CacheView) -> Result<T>) -> Result<T> {
        match self.read(&f) {
            Err(StoreError::NotFound(_)) => {
                self.rt
                    .block_on(self.barrier(Instant::now() + self.timeout))?;
                self.read(f)
            }
            r => r,
        }
    }

    /// Wait until the cache holds every change the leader had committed (the session's
    /// echo barrier), within `deadline`.
    async fn barrier(&self, deadline: Instant) -> Result<()> {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, self.session.sync()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StoreError::Unavailable(format!("OVNLB: {e}"))),
            Err(_) => Err(StoreError::Unavailable(format!(
                "OVNLB: no leader answered within {:?}",
                self.timeout
            ))),
        }
    }

    /// Commit the transaction `plan` builds from the cache, until it commits, is refused
    /// for good, or the timeout passes. `done` says, from a fresh cache, whether this
    /// write committed (asked when an attempt's outcome was unknown).
    fn write(
        &self,
        plan: impl Fn(&CacheView, &Transaction) -> Result<Plan>,
        done: impl Fn(&CacheView) -> bool,
    ) -> Result<u64> {
        self.rt.block_on(self.write_async(plan, done))
    }

    async fn write_async(
        &self,
        plan: impl Fn(&CacheView, &Transaction) -> Result<Plan>,
        done: impl Fn(&CacheView) -> bool,
    ) -> Result<u64> {
        let deadline = Instant::now() + self.timeout;
        // Whether an attempt may have committed (its reply was lost).
        let mut unknown = false;
        // Whether the plan has been built on a cache known to be fresh.
        let mut fresh = false;
        let mut replans = 0u32;
        loop {
            let base = self.session.transaction();
            let p = match self.read(|v| plan(v, &base)) {
                Ok(p) => p,
                // Found from a cache that may lag: ask the fresh one before answering.
                Err(e) if !fresh && !matches!(e, StoreError::Backend(_)) => {
                    self.barrier(deadline).await?;
                    fresh = true;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let left = deadline.saturating_duration_since(Instant::now());
            let r = tokio::time::timeout(left, self.session.transact(&p.txn)).await;
            let e = match r {
                Ok(Ok(_)) => {
                    // Read-your-writes on this node; the write is committed either way.
                    let _ = self.barrier(deadline).await;
                    return Ok(p.result);
                }
                Ok(Err(e)) => e,
                Err(_) => {
                    return Err(StoreError::Unavailable(format!(
                        "OVNLB: no commit within {:?} (no quorum or no leader){}",
                        self.timeout,
                        if unknown {
                            "; an earlier attempt may have committed"
                        } else {
                            ""
                        }
                    )))
                }
            };
            let refused = e.txn_error().cloned();
            match refused {
                // A guard: what the plan read has changed.
                Some(t) if t.kind == TxnErrorKind::Conflict => {
                    self.barrier(deadline).await?;
                    if self.committed(unknown, &done) {
                        return Ok(p.result);
                    }
                    if let (Some(op), Some(pin)) = (t.op_index, &p.pinned) {
                        if op == pin.op {
                            let current = self.read(|v| {
                                v.get(pin.table, &pin.uuid)
                                    .map(|r| revision(r))
                                    .ok_or_else(|| StoreError::NotFound(pin.what.clone()))
                            })?;
                            if current != pin.expected {
                                return Err(StoreError::PreconditionFailed {
                                    current,
                                    expected: pin.expected,
                                });
                            }
                        }
                    }
                    replans += 1;
                    self.count(&self.stats.replans);
                    if replans > 50 {
                        return Err(StoreError::Unavailable(
                            "OVNLB: the rows this write reads kept changing under it".into(),
                        ));
                    }
                    fresh = true;
                }
                Some(t) if t.error == "duplicate uuid" => {
                    // Only a replay of an insert that committed reuses its UUID.
                    self.count(&self.stats.found_committed);
                    return Ok(p.result);
                }
                Some(t) if t.kind == TxnErrorKind::Permanent => {
                    if unknown {
                        self.barrier(deadline).await?;
                        if self.committed(true, &done) {
                            return Ok(p.result);
                        }
                    }
                    let details = t.details.clone().unwrap_or_default();
                    return Err(match t.error.as_str() {
                        "constraint violation" => {
                            StoreError::Conflict(if details.contains(&format!("\"{LISTENER}\"")) {
                                p.overlap.clone()
                            } else {
                                p.duplicate.clone()
                            })
                        }
                        // The network went away under the write.
                        "referential integrity violation" => {
                            StoreError::NotFound(p.network.clone())
                        }
                        _ => backend(&e),
                    });
                }
                // Sent and lost, never sent, or a passing refusal: find out, then retry.
                _ if e.is_indeterminate()
                    || e.is_closed()
                    || matches!(e, ovsdb::Error::Unavailable(_))
                    || refused.is_some() =>
                {
                    unknown |= e.is_indeterminate() || refused.is_some();
                    self.count(&self.stats.interrupted);
                    tracing::debug!(error = %e, "OVNLB write interrupted; checking and retrying");
                    self.barrier(deadline).await?;
                    if self.committed(unknown, &done) {
                        return Ok(p.result);
                    }
                    fresh = true;
                }
                _ => return Err(backend(&e)),
            }
        }
    }
}

/// A guard the client set (`If-Match`): its failure is a 412, not a re-plan.
struct Pin {
    op: usize,
    table: &'static str,
    uuid: Uuid,
    expected: u64,
    what: String,
}

/// One attempt of a write.
struct Plan {
    txn: Transaction,
    /// What the write returns once committed.
    result: u64,
    pinned: Option<Pin>,
    /// The conflict text when the uplink's `Listener` index refuses it.
    overlap: String,
    /// The conflict text when another index (a name, an address on the network) does.
    duplicate: String,
    /// What is missing when a reference fails (the network).
    network: String,
}

impl Plan {
    fn new(txn: Transaction, result: u64) -> Plan {
        Plan {
            txn,
            result,
            pinned: None,
            overlap: String::new(),
            duplicate: String::new(),
            network: String::new(),
        }
    }
}

fn revision(r: &CacheRow) -> u64 {
    r.get("revision")
        .as_scalar()
        .and_then(Atom::as_i64)
        .unwrap_or(0)
        .max(0) as u64
}

fn text(r: &CacheRow, column: &str) -> String {
    r.get_str(column).unwrap_or_default().to_owned()
}

fn config_of(r: &CacheRow) -> Config {
    r.get("config")
        .as_map()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

fn config_datum(c: &Config) -> Datum {
    Datum::string_map(c.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

fn uuid_of(r: &CacheRow, column: &str) -> Option<Uuid> {
    r.get(column).uuids().next()
}

fn unjson<T: serde::de::DeserializeOwned>(r: &CacheRow, column: &str) -> Result<T> {
    let s = r.get_str(column).unwrap_or_default();
    serde_json::from_str(if s.is_empty() { "[]" } else { s })
        .map_err(|e| StoreError::Corrupt(format!("{}.{column} of {}: {e}", r.table(), r.uuid)))
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

fn not_found_network(name: &str) -> StoreError {
    StoreError::NotFound(format!("Network \"{name}\""))
}

fn network_row(v: &CacheView, name: &str) -> Result<Arc<CacheRow>> {
    v.lookup(&by(NETWORK, "name"), &Datum::scalar(name))
        .into_iter()
        .next()
        .ok_or_else(|| not_found_network(name))
}

fn uplink_of(r: &CacheRow) -> String {
    r.get("config").map_get("network").unwrap_or("").to_owned()
}

fn network_of(r: &CacheRow) -> Stored<Network> {
    Stored {
        value: Network {
            name: text(r, "name"),
            description: text(r, "description"),
            kind: text(r, "type"),
            config: config_of(r),
        },
        revision: revision(r),
    }
}

fn object_of(kind: ObjectKind, r: &CacheRow) -> Result<Stored<AnyObject>> {
    let listen_address = text(r, "listen_address");
    let description = text(r, "description");
    let config = config_of(r);
    let value = match kind {
        ObjectKind::LoadBalancer => AnyObject::LoadBalancer(LoadBalancersPost {
            listen_address,
            put: LoadBalancerPut {
                description,
                config,
                backends: unjson(r, "backends")?,
                ports: unjson(r, "ports")?,
            },
        }),
        ObjectKind::Forward => AnyObject::Forward(ForwardsPost {
            listen_address,
            put: ForwardPut {
                description,
                config,
                ports: unjson(r, "ports")?,
            },
        }),
    };
    Ok(Stored {
        value,
        revision: revision(r),
    })
}

/// The object rows of a network, ordered by listen address.
fn objects_of(v: &CacheView, kind: ObjectKind, network: Uuid) -> Vec<Arc<CacheRow>> {
    let mut rows = v.lookup(
        &by(table(kind), "network"),
        &Datum::scalar(Atom::Uuid(network)),
    );
    rows.sort_by(|a, b| {
        a.get_str("listen_address")
            .cmp(&b.get_str("listen_address"))
    });
    rows
}

fn object_row(
    v: &CacheView,
    kind: ObjectKind,
    network: Uuid,
    listen: &str,
) -> Option<Arc<CacheRow>> {
    v.lookup(&by(table(kind), "listen_address"), &Datum::scalar(listen))
        .into_iter()
        .find(|r| uuid_of(r, "network") == Some(network))
}

/// `wait` until the row's revision is `rev`: the guard of a row a plan read.
fn guard(txn: &mut Transaction, table: &str, uuid: Uuid, rev: u64) -> usize {
    let i = txn.len();
    txn.wait(
        table,
        vec![Condition::uuid(uuid)],
        &["revision"],
        WaitUntil::Eq,
        vec![Row::from([(
            "revision".to_owned(),
            Datum::scalar(rev as i64),
        )])],
    );
    i
}

/// Guard a row the client pinned (`If-Match`), or one the plan only read.
fn pin(
    txn: &mut Transaction,
    table: &'static str,
    r: &CacheRow,
    if_match: Option<u64>,
    what: &str,
) -> Result<Option<Pin>> {
    let rev = revision(r);
    if let Some(expected) = if_match {
        if expected != rev {
            return Err(StoreError::PreconditionFailed {
                current: rev,
                expected,
            });
        }
    }
    let op = guard(txn, table, r.uuid, rev);
    Ok(if_match.map(|expected| Pin {
        op,
        table,
        uuid: r.uuid,
        expected,
        what: what.to_owned(),
    }))
}

fn object_fields(put: PutRef<'_>) -> Row {
    let mut row = Row::new();
    let (description, config, ports) = match put {
        PutRef::LoadBalancer(p) => {
            row.insert("backends".into(), Datum::scalar(json(&p.backends)));
            (&p.description, &p.config, json(&p.ports))
        }
        PutRef::Forward(p) => (&p.description, &p.config, json(&p.ports)),
    };
    row.insert("description".into(), Datum::scalar(description.as_str()));
    row.insert("config".into(), config_datum(config));
    row.insert("ports".into(), Datum::scalar(ports));
    row
}

fn written_by(r: Option<&Arc<CacheRow>>, id: &str) -> bool {
    r.is_some_and(|r| r.get_str("write_id") == Some(id))
}

impl Store for OvsdbStore {
    fn networks(&self) -> Result<Vec<Stored<Network>>> {
        let mut v: Vec<Stored<Network>> =
            self.read(|v| v.rows(NETWORK).map(|r| network_of(r)).collect());
        v.sort_by(|a, b| a.value.name.cmp(&b.value.name));
        Ok(v)
    }

    fn network(&self, name: &str) -> Result<Stored<Network>> {
        self.read_fresh(|v| network_row(v, name).map(|r| network_of(&r)))
    }

    fn create_network(&self, n: &Network) -> Result<u64> {
        let id = Uuid::new_v4();
        let wid = id.to_string();
        let exists = format!("The network already exists: \"{}\"", n.name);
        self.write(
            |v, base| {
                if network_row(v, &n.name).is_ok() {
                    return Err(StoreError::Conflict(exists.clone()));
                }
                let mut txn = base.clone();
                txn.insert_with_uuid(
                    NETWORK,
                    id,
                    Row::from([
                        ("name".to_owned(), Datum::scalar(n.name.as_str())),
                        (
                            "description".to_owned(),
                            Datum::scalar(n.description.as_str()),
                        ),
                        ("type".to_owned(), Datum::scalar(n.kind.as_str())),
                        ("config".to_owned(), config_datum(&n.config)),
                        ("revision".to_owned(), Datum::scalar(1i64)),
                        ("write_id".to_owned(), Datum::scalar(wid.as_str())),
                    ]),
                );
                let mut p = Plan::new(txn, 1);
                p.duplicate = exists.clone();
                Ok(p)
            },
            |v| written_by(v.get(NETWORK, &id), &wid),
        )
    }

    fn update_network(&self, n: &Network, if_match: Option<u64>) -> Result<u64> {
        let wid = Uuid::new_v4().to_string();
        let what = format!("Network \"{}\"", n.name);
        let uplink = n.config.get("network").cloned().unwrap_or_default();
        let this = std::sync::Mutex::new(None);
        self.write(
            |v, base| {
                let r = network_row(v, &n.name)?;
                *this.lock().unwrap_or_else(|p| p.into_inner()) = Some(r.uuid);
                let mut txn = base.clone();
                let pinned = pin(&mut txn, NETWORK, &r, if_match, &what)?;
                let rev = revision(&r);
                txn.update(
                    NETWORK,
                    vec![Condition::uuid(r.uuid)],
                    Row::from([
                        (
                            "description".to_owned(),
                            Datum::scalar(n.description.as_str()),
                        ),
                        ("config".to_owned(), config_datum(&n.config)),
                        ("revision".to_owned(), Datum::scalar(rev as i64 + 1)),
                        ("write_id".to_owned(), Datum::scalar(wid.as_str())),
                    ]),
                );
                // Listeners follow the network to its new uplink: every object of it,
                // the set of them guarded (an object created meanwhile re-plans this).
                if uplink != uplink_of(&r) {
                    for kind in [ObjectKind::LoadBalancer, ObjectKind::Forward] {
                        let objs = objects_of(v, kind, r.uuid);
                        txn.wait(
                            table(kind),
                            vec![Condition::eq("network", Atom::Uuid(r.uuid))],
                            &["listen_address"],
                            WaitUntil::Eq,
                            objs.iter()
                                .map(|o| {
                                    Row::from([(
                                        "listen_address".to_owned(),
                                        o.get("listen_address").clone(),
                                    )])
                                })
                                .collect(),
                        );
                        for l in objs.iter().filter_map(|o| uuid_of(o, "listener")) {
                            txn.update(
                                LISTENER,
                                vec![Condition::uuid(l)],
                                Row::from([("uplink".to_owned(), Datum::scalar(uplink.as_str()))]),
                            );
                        }
                    }
                }
                let mut p = Plan::new(txn, rev + 1);
                p.pinned = pinned;
                p.overlap = format!(
                    "A listen address of network \"{}\" is already in use on uplink \"{uplink}\"",
                    n.name
                );
                p.duplicate = p.overlap.clone();
                p.network = what.clone();
                Ok(p)
            },
            |v| {
                let u = *this.lock().unwrap_or_else(|p| p.into_inner());
                u.is_some_and(|u| written_by(v.get(NETWORK, &u), &wid))
            },
        )
    }

    fn delete_network(&self, name: &str, if_match: Option<u64>) -> Result<()> {
        let what = format!("Network \"{name}\"");
        let this = std::sync::Mutex::new(None);
        self.write(
            |v, base| {
                let r = network_row(v, name)?;
                *this.lock().unwrap_or_else(|p| p.into_inner()) = Some(r.uuid);
                let mut txn = base.clone();
                let pinned = pin(&mut txn, NETWORK, &r, if_match, &what)?;
                for kind in [ObjectKind::LoadBalancer, ObjectKind::Forward] {
                    txn.delete(
                        table(kind),
                        vec![Condition::eq("network", Atom::Uuid(r.uuid))],
                    );
                }
                txn.delete(NETWORK, vec![Condition::uuid(r.uuid)]);
                let mut p = Plan::new(txn, 0);
                p.pinned = pinned;
                p.network = what.clone();
                Ok(p)
            },
            |v| {
                let u = *this.lock().unwrap_or_else(|p| p.into_inner());
                u.is_some_and(|u| v.get(NETWORK, &u).is_none())
            },
        )
        .map(drop)
    }

    fn objects(&self, kind: ObjectKind, network: &str) -> Result<Vec<Stored<AnyObject>>> {
        self.read_fresh(|v| {
            let n = network_row(v, network)?;
            objects_of(v, kind, n.uuid)
                .iter()
                .map(|r| object_of(kind, r))
                .collect()
        })
    }

    fn object(&self, kind: ObjectKind, network: &str, listen: &str) -> Result<Stored<AnyObject>> {
        let listen = canon(listen);
        self.read_fresh(|v| {
            let n = network_row(v, network)?;
            let r = object_row(v, kind, n.uuid, &listen)
                .ok_or_else(|| StoreError::NotFound(kind.title().into()))?;
            object_of(kind, &r)
        })
    }

    fn create_object(&self, network: &str, o: ObjectRef<'_>) -> Result<u64> {
        let (kind, listen, put) = match o {
            ObjectRef::LoadBalancer(lb) => (
                ObjectKind::LoadBalancer,
                canon(&lb.listen_address),
                PutRef::LoadBalancer(&lb.put),
            ),
            ObjectRef::Forward(f) => (
                ObjectKind::Forward,
                canon(&f.listen_address),
                PutRef::Forward(&f.put),
            ),
        };
        let id = Uuid::new_v4();
        let wid = id.to_string();
        let t = table(kind);
        let exists = format!(
            "A {} for that listen address already exists",
            kind.title().to_lowercase().trim_start_matches("network ")
        );
        self.write(
            |v, base| {
                let n = network_row(v, network)?;
                if object_row(v, kind, n.uuid, &listen).is_some() {
                    return Err(StoreError::Conflict(exists.clone()));
                }
                let uplink = uplink_of(&n);
                let mut txn = base.clone();
                // The uplink was read from the network: guard it.
                guard(&mut txn, NETWORK, n.uuid, revision(&n));
                let l = txn.insert(
                    LISTENER,
                    Row::from([
                        ("uplink".to_owned(), Datum::scalar(uplink.as_str())),
                        ("address".to_owned(), Datum::scalar(listen.as_str())),
                        ("kind".to_owned(), Datum::scalar(listener_kind(kind))),
                    ]),
                );
                let mut row = object_fields(put);
                row.insert("network".into(), Datum::scalar(Atom::Uuid(n.uuid)));
                row.insert("listener".into(), Datum::scalar(l));
                row.insert("listen_address".into(), Datum::scalar(listen.as_str()));
                row.insert("revision".into(), Datum::scalar(1i64));
                row.insert("write_id".into(), Datum::scalar(wid.as_str()));
                txn.insert_with_uuid(t, id, row);
                let mut p = Plan::new(txn, 1);
                p.overlap = format!("Listen address \"{listen}\" overlaps with another network or NIC (in use on uplink \"{uplink}\")");
                p.duplicate = exists.clone();
                p.network = format!("Network \"{network}\"");
                Ok(p)
            },
            |v| written_by(v.get(t, &id), &wid),
        )
    }

    fn update_object(
        &self,
        network: &str,
        listen: &str,
        put: PutRef<'_>,
        if_match: Option<u64>,
    ) -> Result<u64> {
        let kind = match put {
            PutRef::LoadBalancer(_) => ObjectKind::LoadBalancer,
            PutRef::Forward(_) => ObjectKind::Forward,
        };
        let listen = canon(listen);
        let wid = Uuid::new_v4().to_string();
        let t = table(kind);
        let this = std::sync::Mutex::new(None);
        self.write(
            |v, base| {
                let n = network_row(v, network)?;
                let r = object_row(v, kind, n.uuid, &listen)
                    .ok_or_else(|| StoreError::NotFound(kind.title().into()))?;
                *this.lock().unwrap_or_else(|p| p.into_inner()) = Some(r.uuid);
                let mut txn = base.clone();
                let pinned = pin(&mut txn, t, &r, if_match, kind.title())?;
                let rev = revision(&r);
                let mut row = object_fields(put);
                row.insert("revision".into(), Datum::scalar(rev as i64 + 1));
                row.insert("write_id".into(), Datum::scalar(wid.as_str()));
                txn.update(t, vec![Condition::uuid(r.uuid)], row);
                let mut p = Plan::new(txn, rev + 1);
                p.pinned = pinned;
                p.network = kind.title().into();
                Ok(p)
            },
            |v| {
                let u = *this.lock().unwrap_or_else(|p| p.into_inner());
                u.is_some_and(|u| written_by(v.get(t, &u), &wid))
            },
        )
    }

    fn delete_object(
        &self,
        kind: ObjectKind,
        network: &str,
        listen: &str,
        if_match: Option<u64>,
    ) -> Result<()> {
        let listen = canon(listen);
        let t = table(kind);
        let this = std::sync::Mutex::new(None);
        self.write(
            |v, base| {
                let n = network_row(v, network)?;
                let r = object_row(v, kind, n.uuid, &listen)
                    .ok_or_else(|| StoreError::NotFound(kind.title().into()))?;
                *this.lock().unwrap_or_else(|p| p.into_inner()) = Some(r.uuid);
                let mut txn = base.clone();
                let pinned = pin(&mut txn, t, &r, if_match, kind.title())?;
                txn.delete(t, vec![Condition::uuid(r.uuid)]);
                let mut p = Plan::new(txn, 0);
                p.pinned = pinned;
                Ok(p)
            },
            |v| {
                let u = *this.lock().unwrap_or_else(|p| p.into_inner());
                u.is_some_and(|u| v.get(t, &u).is_none())
            },
        )
        .map(drop)
    }

    fn desired_state(&self) -> Result<DesiredState> {
        self.read(|v| {
            let mut nets: Vec<Arc<CacheRow>> = v.rows(NETWORK).cloned().collect();
            nets.sort_by(|a, b| a.get_str("name").cmp(&b.get_str("name")));
            let mut networks = Vec::with_capacity(nets.len());
            for n in nets {
                let mut d = DesiredNetwork {
                    network: network_of(&n).value,
                    load_balancers: Vec::new(),
                    forwards: Vec::new(),
                    revisions: BTreeMap::new(),
                };
                for kind in [ObjectKind::LoadBalancer, ObjectKind::Forward] {
                    for r in objects_of(v, kind, n.uuid) {
                        let s = object_of(kind, &r)?;
                        match s.value {
                            AnyObject::LoadBalancer(lb) => {
                                d.revisions.insert(lb.listen_address.clone(), s.revision);
                                d.load_balancers.push(lb);
                            }
                            AnyObject::Forward(f) => {
                                d.revisions.insert(f.listen_address.clone(), s.revision);
                                d.forwards.push(f);
                            }
                        }
                    }
                }
                networks.push(d);
            }
            Ok(DesiredState { networks })
        })
    }

    fn subscribe(&self) -> FeedReceiver<Change> {
        self.feed.subscribe()
    }
}

/// What a cached row stands for as a [`Change`] (objects need their network's name).
fn change_of(v: &CacheView, table_name: &str, r: &CacheRow) -> Option<Change> {
    let kind = match table_name {
        NETWORK => return Some(Change::network(r.get_str("name")?)),
        "Load_Balancer" => ObjectKind::LoadBalancer,
        "Forward" => ObjectKind::Forward,
        _ => return None,
    };
    let n = v.get(NETWORK, &uuid_of(r, "network")?)?;
    Some(Change::object(
        n.get_str("name")?,
        kind,
        r.get_str("listen_address")?,
    ))
}

/// Turn the cache's row changes, whoever wrote them (this ovnlbd or another), into the
/// store's [`Change`]s. A deleted row is gone from the cache: what it stood for is kept
/// from when it was seen.
async fn translate(cache: Arc<ovsdb::Cache>, feed: Arc<Feed<Change>>, stop: CancellationToken) {
    let mut sub = cache.subscribe();
    let mut known: HashMap<(String, Uuid), Change> = HashMap::new();
    // The first snapshot is in the cache already.
    cache.read(|v| {
        for t in [NETWORK, "Load_Balancer", "Forward"] {
            for r in v.rows(t) {
                if let Some(c) = change_of(v, t, r) {
                    known.insert((t.to_owned(), r.uuid), c);
                }
            }
        }
    });
    loop {
        let changes = tokio::select! {
            c = sub.changed() => c,
            () = stop.cancelled() => return,
        };
        let mut out = Vec::new();
        cache.read(|v| {
            let keys: Vec<(String, Uuid)> = if changes.resync {
                let mut k: Vec<_> = known.keys().cloned().collect();
                for t in [NETWORK, "Load_Balancer", "Forward"] {
                    k.extend(v.rows(t).map(|r| (t.to_owned(), r.uuid)));
                }
                k
            } else {
                changes.rows.iter().cloned().collect()
            };
            for key in keys {
                match v.get(&key.0, &key.1) {
                    Some(r) => {
                        if let Some(c) = change_of(v, &key.0, r) {
                            if let Some(old) = known.insert(key, c.clone()) {
                                if old != c {
                                    out.push(old);
                                }
                            }
                            out.push(c);
                        }
                    }
                    None => out.extend(known.remove(&key)),
                }
            }
        });
        if !out.is_empty() {
            feed.publish(out);
        }
    }
}

/// A lease as the `Lease` table holds it: who holds it, in which epoch, and how many
/// times that holder renewed it in this epoch. `holder` is empty once released.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    /// The holder (empty: released).
    pub holder: String,
    /// Incremented by every takeover.
    pub epoch: u64,
    /// Incremented by every renewal of the holder.
    pub renew_seq: u64,
}

const LEASE: &str = "Lease";

fn int(v: u64) -> Datum {
    Datum::scalar(v as i64)
}

fn lease_columns(l: &LeaseRow) -> Row {
    Row::from([
        ("holder".to_owned(), Datum::scalar(l.holder.as_str())),
        ("epoch".to_owned(), int(l.epoch)),
        ("renew_seq".to_owned(), int(l.renew_seq)),
    ])
}

impl OvsdbStore {
    /// The lease `name` in the cache (`None`: never taken).
    pub fn lease(&self, name: &str) -> Option<LeaseRow> {
        self.read(|v| {
            v.rows(LEASE)
                .find(|r| r.get_str("name") == Some(name))
                .map(|r| {
                    let n = |c: &str| r.get(c).as_scalar().and_then(Atom::as_i64).unwrap_or(0);
                    LeaseRow {
                        holder: text(r, "holder"),
                        epoch: n("epoch").max(0) as u64,
                        renew_seq: n("renew_seq").max(0) as u64,
                    }
                })
        })
    }

    /// One guarded lease transaction: `Ok(true)` committed, `Ok(false)` its guard (or the
    /// name's index) refused it; when the reply is lost, the fresh cache decides by
    /// `mine`.
    async fn lease_txn(
        &self,
        txn: Transaction,
        mine: impl Fn(Option<LeaseRow>) -> bool,
        name: &str,
    ) -> Result<bool> {
        let deadline = Instant::now() + self.timeout;
        let left = deadline.saturating_duration_since(Instant::now());
        let r = tokio::time::timeout(left, self.session.transact(&txn)).await;
        match r {
            Ok(Ok(_)) => {
                let _ = self.barrier(deadline).await;
                Ok(true)
            }
            Ok(Err(e)) if e.is_conflict() => Ok(false),
            Ok(Err(e))
                if e.txn_error()
                    .is_some_and(|t| t.error == "constraint violation") =>
            {
                Ok(false)
            }
            Ok(Err(e)) if e.is_indeterminate() => {
                self.barrier(deadline).await?;
                Ok(mine(self.lease(name)))
            }
            Ok(Err(e)) => Err(backend(&e)),
            Err(_) => Err(StoreError::Unavailable(format!(
                "OVNLB: no commit within {:?}",
                self.timeout
            ))),
        }
    }

    /// Take the lease `name` for `holder` from the state `seen` (`None`: no row yet), in
    /// one compare-and-swap: of several contenders from the same `seen`, one wins.
    /// Returns the epoch won.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] without quorum; [`StoreError::Backend`].
    pub async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        seen: Option<&LeaseRow>,
    ) -> Result<Option<u64>> {
        let mut txn = self.session.transaction();
        let epoch = seen.map_or(1, |s| s.epoch + 1);
        let want = LeaseRow {
            holder: holder.to_owned(),
            epoch,
            renew_seq: 0,
        };
        match seen {
            None => {
                let mut row = lease_columns(&want);
                row.insert("name".into(), Datum::scalar(name));
                txn.insert(LEASE, row);
            }
            Some(s) => {
                let at = vec![Condition::eq("name", Atom::from(name))];
                txn.wait(
                    LEASE,
                    at.clone(),
                    &["holder", "epoch", "renew_seq"],
                    WaitUntil::Eq,
                    vec![lease_columns(s)],
                );
                txn.update(LEASE, at, lease_columns(&want));
            }
        }
        let won = self
            .lease_txn(
                txn,
                |l| l.is_some_and(|l| l.holder == holder && l.epoch == epoch),
                name,
            )
            .await?;
        Ok(won.then_some(epoch))
    }

    /// A transaction that starts by waiting until lease `name` is `holder`'s of `epoch`,
    /// and the condition that selects the lease row.
    fn held_lease_txn(
        &self,
        name: &str,
        holder: &str,
        epoch: u64,
    ) -> (Transaction, Vec<Condition>) {
        let mut txn = self.session.transaction();
        let at = vec![Condition::eq("name", Atom::from(name))];
        txn.wait(
            LEASE,
            at.clone(),
            &["holder", "epoch"],
            WaitUntil::Eq,
            vec![Row::from([
                ("holder".to_owned(), Datum::scalar(holder)),
                ("epoch".to_owned(), int(epoch)),
            ])],
        );
        (txn, at)
    }

    /// Renew `holder`'s lease of `epoch`. `Ok(false)`: it is no longer `holder`'s.
    ///
    /// # Errors
    /// As [`OvsdbStore::acquire_lease`].
    pub async fn renew_lease(&self, name: &str, holder: &str, epoch: u64) -> Result<bool> {
        let (mut txn, at) = self.held_lease_txn(name, holder, epoch);
        txn.mutate(
            LEASE,
            at,
            vec![ovsdb::Mutation::new(
                "renew_seq",
                ovsdb::Mutator::Add,
                Datum::scalar(1i64),
            )],
        );
        // A lost reply: still ours means renewed, or renewable next time.
        self.lease_txn(
            txn,
            |l| l.is_some_and(|l| l.holder == holder && l.epoch == epoch),
            name,
        )
        .await
    }

    /// Give `holder`'s lease of `epoch` up at once (a graceful stop): a standby takes it
    /// without waiting for it to expire.
    ///
    /// # Errors
    /// As [`OvsdbStore::acquire_lease`].
    pub async fn release_lease(&self, name: &str, holder: &str, epoch: u64) -> Result<bool> {
        let (mut txn, at) = self.held_lease_txn(name, holder, epoch);
        txn.update(
            LEASE,
            at,
            Row::from([("holder".to_owned(), Datum::scalar(""))]),
        );
        self.lease_txn(txn, |l| l.is_some_and(|l| l.holder.is_empty()), name)
            .await
    }
}

impl OvsdbStore {
    /// Copy everything of `from` into this database in one transaction, revisions kept
    /// (ETags clients hold stay valid). Refuses a database that holds any network,
    /// checked by the transaction itself. Returns (networks, load balancers, forwards).
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when the database is not empty (or the copy breaks one of
    /// its indexes); `from`'s errors; as [`OvsdbStore::acquire_lease`].
    pub fn import(&self, from: &dyn Store) -> Result<(usize, usize, usize)> {
        let nets = from.networks()?;
        let state = from.desired_state()?;
        if self.read(|v| v.len(NETWORK)) > 0 {
            return Err(StoreError::Conflict(
                "the OVNLB database is not empty: migrate refuses to merge into existing desired state".into(),
            ));
        }
        let mut txn = self.session.transaction();
        // Empty when the copy commits, not only when it was planned.
        txn.wait(NETWORK, vec![], &["name"], WaitUntil::Eq, vec![]);
        let (mut lbs, mut fwds) = (0, 0);
        for d in &state.networks {
            let Some(n) = nets.iter().find(|n| n.value.name == d.network.name) else {
                continue;
            };
            let id = Uuid::new_v4();
            let uplink = n.value.config.get("network").cloned().unwrap_or_default();
            txn.insert_with_uuid(
                NETWORK,
                id,
                Row::from([
                    ("name".to_owned(), Datum::scalar(n.value.name.as_str())),
                    (
                        "description".to_owned(),
                        Datum::scalar(n.value.description.as_str()),
                    ),
                    ("type".to_owned(), Datum::scalar(n.value.kind.as_str())),
                    ("config".to_owned(), config_datum(&n.value.config)),
                    ("revision".to_owned(), int(n.revision.max(1))),
                    ("write_id".to_owned(), Datum::scalar("migrated")),
                ]),
            );
            let objects = d
                .load_balancers
                .iter()
                .map(|o| {
                    (
                        ObjectKind::LoadBalancer,
                        &o.listen_address,
                        PutRef::LoadBalancer(&o.put),
                    )
                })
                .chain(d.forwards.iter().map(|o| {
                    (
                        ObjectKind::Forward,
                        &o.listen_address,
                        PutRef::Forward(&o.put),
                    )
                }));
            for (kind, listen, put) in objects {
                let l = txn.insert(
                    LISTENER,
                    Row::from([
                        ("uplink".to_owned(), Datum::scalar(uplink.as_str())),
                        ("address".to_owned(), Datum::scalar(listen.as_str())),
                        ("kind".to_owned(), Datum::scalar(listener_kind(kind))),
                    ]),
                );
                let mut row = object_fields(put);
                row.insert("network".into(), Datum::scalar(Atom::Uuid(id)));
                row.insert("listener".into(), Datum::scalar(l));
                row.insert("listen_address".into(), Datum::scalar(listen.as_str()));
                let rev = d.revisions.get(listen).copied().unwrap_or(1).max(1);
                row.insert("revision".into(), int(rev));
                row.insert("write_id".into(), Datum::scalar("migrated"));
                txn.insert(table(kind), row);
                match kind {
                    ObjectKind::LoadBalancer => lbs += 1,
                    ObjectKind::Forward => fwds += 1,
                }
            }
        }
        let counts = (state.networks.len(), lbs, fwds);
        self.rt.block_on(async {
            let deadline = Instant::now() + self.timeout.max(Duration::from_secs(60));
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.session.transact(&txn)).await {
                Ok(Ok(_)) => {
                    let _ = self.barrier(deadline).await;
                    Ok(counts)
                }
                Ok(Err(e)) if e.is_conflict() => Err(StoreError::Conflict(
                    "the OVNLB database is not empty: migrate refuses to merge into existing desired state".into(),
                )),
                Ok(Err(e)) => Err(backend(&e)),
                Err(_) => Err(StoreError::Unavailable(
                    "OVNLB: the copy did not commit in time (no quorum?); run migrate again once the cluster answers".into(),
                )),
            }
        })
    }
}
