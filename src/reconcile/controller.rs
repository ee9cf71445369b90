//! The controller: keeps NB equal to the store, continuously.
//!
//! Work is per key, (network, listen address): a store change marks its key dirty; an
//! NB change to one of our rows marks the row's key dirty; a change to a router or
//! switch marks the keys whose rows are missing from it (or sit on the wrong one); a
//! periodic resync marks everything. This file is the loop and that intake; the rest is
//! cut along its seams: [`super::schedule`] says which dirty keys are due (a failing key
//! backs off, jittered, without holding up others), [`super::memo`] keeps each key's
//! rendered rows and what its last clean plan read, and [`super::apply`] plans a chunk
//! of one network's keys against the live cache, commits it as one guarded transaction
//! and records what NB then holds. Nothing runs before the cache is ready, and every
//! round first syncs with the server.

use crate::fasthash::HashMap;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, debug_span, error, info, info_span, warn, Instrument};
use uuid::Uuid;

use super::apply::{self, Outcome, Records};
use super::memo::{Object, PortReaders, Recording, Rendered};
use super::plan::{self, Plan};
use super::schedule::{Reason, Schedule};
use super::Error;
use crate::lb::health;
use crate::lb::model::{AnyObject, Network, Object as _, ObjectKind};
use crate::lb::network;
use crate::lb::render::keys;
use crate::lb::validate::{Limits, OvnNetwork};
use crate::metrics::Metrics;
use crate::ovsdb::{CacheRow, Changes, Session};
use crate::store::{Change, Handle, Store, StoreError, Stored};

use crate::progress::{Key, KeyStatus, Status};

/// How a controller works.
#[derive(Debug, Clone)]
pub struct ControllerOptions {
    /// Owner id in `external_ids`.
    pub owner: String,
    /// Validation limits.
    pub limits: Limits,
    /// Full resync period.
    pub resync_every: Duration,
    /// Most keys per transaction.
    pub batch: usize,
    /// Who claims the NB fence of the owner ([`super::fence`]) before writing, and
    /// guards every transaction with it (`None`: no fence, for a program that is the
    /// owner's only writer by construction).
    pub fence_holder: Option<String>,
    /// Whether this controller is elected to write NB, when several ovnlbd share one
    /// desired state ([`super::election`]); `None`: always (the only one).
    pub elected: Option<tokio::sync::watch::Receiver<bool>>,
}

/// How a term as NB's writer ended.
enum TermEnd {
    Cancelled,
    /// The election chose another.
    Deposed,
    /// NB refused a write on the fence: another writer holds it (its token).
    Fenced(String),
}

/// Returns once `elected` says no (never without an election).
async fn deposed(elected: &mut Option<tokio::sync::watch::Receiver<bool>>) {
    match elected {
        Some(rx) => {
            let _ = rx.wait_for(|e| !*e).await;
        }
        None => std::future::pending().await,
    }
}

impl Default for ControllerOptions {
    fn default() -> Self {
        ControllerOptions {
            owner: "ovnlb".into(),
            limits: Limits::default(),
            resync_every: Duration::from_secs(60),
            batch: 256,
            fence_holder: Some(default_holder()),
            elected: None,
        }
    }
}

/// A holder name unique to this process: `<host>-<pid>-<random>`.
pub fn default_holder() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "ovnlbd".into());
    let r = Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &r[..8])
}

/// The UUIDs in exactly one of two sorted reference sets.
fn set_difference(a: &crate::ovsdb::Datum, b: &crate::ovsdb::Datum) -> Vec<Uuid> {
    let (a, b) = (a.as_set().unwrap_or(&[]), b.as_set().unwrap_or(&[]));
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x == y => {
                i += 1;
                j += 1;
            }
            (Some(x), Some(y)) if x < y => {
                out.extend(x.as_uuid());
                i += 1;
            }
            (Some(_), Some(y)) | (None, Some(y)) => {
                out.extend(y.as_uuid());
                j += 1;
            }
            (Some(x), None) => {
                out.extend(x.as_uuid());
                i += 1;
            }
            (None, None) => break,
        }
    }
    out
}

/// The controller. Build it, then `run` it until cancelled.
pub struct Controller {
    /// The NB session: its cache is what plans read, its transactions what they write.
    session: Session,
    /// The desired state (read on a blocking thread).
    store: Handle,
    /// How it works.
    opts: ControllerOptions,
    /// The progress the API reads (`/state`, `?wait`).
    status: Status,
    /// Parsed networks (`None`: invalid or not an `ovn` network).
    nets: HashMap<String, Option<OvnNetwork>>,
    /// Desired objects.
    objects: HashMap<Key, Object>,
    /// Which keys are due, and which networks' rows must go.
    schedule: Schedule,
    /// The chunk being worked, each key with why it is due (for its span), sorted.
    working: Vec<(Key, Reason)>,
    /// Our NB rows and what we last wrote into them.
    records: Records,
    /// Rendered rows per key, until its object or network changes: a resync only
    /// compares.
    rendered: HashMap<Key, Rendered>,
    /// Counters and latencies, for `/metrics`.
    metrics: Arc<Metrics>,
    /// The store's changes (taken in `run`; also drained after waiting for NB, so a
    /// round never works from objects the store no longer holds).
    store_feed: Option<crate::feed::FeedReceiver<Change>>,
    /// Routers and switches as last seen: a change is checked against the previous
    /// `load_balancer` set, so only the rows that joined or left it are looked at.
    targets: HashMap<Uuid, Arc<CacheRow>>,
    /// Which checked keys read which switch ports.
    readers: PortReaders,
    /// The NB fence this controller holds (none before it is claimed, or without one).
    fence: Option<super::fence::Fence>,
    /// Set when another writer took the fence: this controller stops, for good.
    fenced_out: Option<String>,
    /// What was last logged of each network's checker address ([`health::checker_warnings`]).
    checker_warned: HashMap<String, Vec<String>>,
}

/// Switch ports of no switch: what an object without health checks renders with (its
/// rows map nothing).
struct NoPorts;

impl crate::lb::render::SwitchPorts for NoPorts {
    fn carrying_each(&self, _: &str, ips: &[std::net::IpAddr]) -> Vec<Vec<String>> {
        vec![Vec::new(); ips.len()]
    }
}

/// The objects of one network, each with its listen address.
type Objects = Vec<(String, Object)>;

/// A stored load balancer or forward as the controller keeps it.
fn kept(s: Stored<AnyObject>) -> Object {
    match s.value {
        AnyObject::LoadBalancer(o) => Object::lb(o, s.revision),
        AnyObject::Forward(o) => Object::fwd(o, s.revision),
    }
}

/// [`kept`], with its listen address.
fn keep(s: Stored<AnyObject>) -> (String, Object) {
    (s.value.listen().to_owned(), kept(s))
}

/// What a store change names, as the store holds it now.
enum Intake {
    /// The object (`None`: gone).
    Object(Option<Object>),
    /// Every network (the changed one among them, or not: deleted) and the changed
    /// network's objects.
    Network { all: Vec<Network>, objects: Objects },
}

/// Read what `c` touched (on a blocking thread, with the store).
fn intake(s: &dyn Store, c: Change) -> (Change, Result<Intake, StoreError>) {
    let got = match &c.object {
        Some(o) => match s.object(o.kind, &c.network, &o.listen) {
            Ok(o) => Ok(Intake::Object(Some(kept(o)))),
            Err(StoreError::NotFound(_)) => Ok(Intake::Object(None)),
            Err(e) => Err(e),
        },
        None => s.networks().and_then(|all| {
            let all: Vec<Network> = all.into_iter().map(|n| n.value).collect();
            let mut objects = Objects::new();
            if all.iter().any(|n| n.name == c.network && n.kind == "ovn") {
                for kind in ObjectKind::ALL {
                    match s.objects(kind, &c.network) {
                        Ok(v) => objects.extend(v.into_iter().map(keep)),
                        // Deleted since: the network's own change follows.
                        Err(StoreError::NotFound(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            Ok(Intake::Network { all, objects })
        }),
    };
    (c, got)
}

impl Controller {
    /// A controller of `store` into the NB of `session` (which should monitor
    /// [`crate::nb::monitor_requests`] with [`plan::listen_index`]).
    pub fn new(session: Session, store: Arc<dyn Store>, opts: ControllerOptions) -> Controller {
        Controller {
            session,
            store: Handle::new(store),
            opts,
            status: Status::default(),
            nets: HashMap::default(),
            objects: HashMap::default(),
            schedule: Schedule::default(),
            working: Vec::new(),
            records: Records::default(),
            rendered: HashMap::default(),
            readers: PortReaders::default(),
            checker_warned: HashMap::default(),
            fence: None,
            fenced_out: None,
            metrics: Arc::new(Metrics::default()),
            store_feed: None,
            targets: HashMap::default(),
        }
    }

    /// Apply the store's changes that have arrived, if any.
    async fn take_store_changes(&mut self) {
        let c = self
            .store_feed
            .as_mut()
            .map(|f| f.try_changed())
            .unwrap_or_default();
        if !c.is_empty() {
            self.on_store(c).await;
        }
    }

    /// A handle on the progress, for the API.
    pub fn status(&self) -> Status {
        self.status.clone()
    }

    /// The controller's counters and latencies.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Run until `cancel`; a transaction in flight is finished first. With an election
    /// ([`ControllerOptions::elected`]) it writes NB only while elected: standing by
    /// until then (its caches warm), stepping down when deposed or fenced out, and
    /// taking over again when elected again.
    pub async fn run(mut self, cancel: CancellationToken) {
        self.store_feed = Some(self.store.subscribe());
        let mut nb_feed = self.session.cache().subscribe();
        tokio::select! {
            _ = self.session.cache().wait_ready() => {}
            _ = cancel.cancelled() => return,
        }
        info!("controller starting: cache ready");
        let northd = self
            .session
            .cache()
            .read(super::facts::northd_internal_version);
        info!(
            northd = northd.as_deref().unwrap_or("unknown (not in NB_Global options)"),
            "health checks on this OVN: UDP checks detect closed ports only, not dead hosts; a backend never probed is in service (pending); before 23.03.3 failures and successes count cumulatively; one unused address per network and family probes; only backends on the internal switch can be checked"
        );
        let mut elected = self.opts.elected.clone();
        loop {
            if let Some(rx) = elected.as_mut() {
                self.status.set_writer("standby", "");
                // Standing by, `/state` and `?wait` follow what the active applied, as
                // NB's rows say it.
                loop {
                    if *rx.borrow_and_update() {
                        break;
                    }
                    self.follow_nb();
                    tokio::select! {
                        r = rx.changed() => if r.is_err() { return },
                        _ = nb_feed.changed() => {}
                        _ = cancel.cancelled() => return,
                    }
                }
                // The active's progress is ours to make now.
                self.status.update_keys(|k| k.clear());
            }
            self.fence = None;
            self.fenced_out = None;
            if !self.claim_fence(&cancel).await {
                return;
            }
            self.load().await;
            match self.term(&mut nb_feed, &mut elected, &cancel).await {
                TermEnd::Cancelled => break,
                TermEnd::Deposed => {
                    info!("reconciler lease lost: this ovnlbd stops writing NB and stands by");
                }
                TermEnd::Fenced(by) => {
                    self.status.set_writer("fenced-out", &by);
                    let Some(rx) = elected.as_mut() else {
                        // Another ovnlbd writes NB for this owner now: stop, never retry.
                        error!(owner = %self.opts.owner, token = %by, "fenced out of NB: another ovnlbd claimed this owner's fence; this one stops reconciling (restart it to claim again)");
                        self.status.close();
                        return;
                    };
                    // Elected no more, whatever this ovnlbd believed: wait until the
                    // election says so, then stand by (never retry on the old belief).
                    warn!(owner = %self.opts.owner, token = %by, "fenced out of NB by another ovnlbd: stepping down");
                    tokio::select! {
                        r = rx.wait_for(|e| !*e) => if r.is_err() { return },
                        _ = cancel.cancelled() => return,
                    }
                }
            }
        }
        info!("controller stopped");
    }

    /// A standby's progress: each key's rows of this owner in NB, and the revision they
    /// carry (`ovnlb:revision`, the lowest when a key has several rows).
    fn follow_nb(&self) {
        let owner = self.opts.owner.as_str();
        let table = <crate::nb::LoadBalancer as crate::nb::Table>::NAME;
        let now: crate::fasthash::HashMap<Key, KeyStatus> = self.session.cache().read(|v| {
            let mut m = crate::fasthash::HashMap::<Key, KeyStatus>::default();
            for r in v.rows(table) {
                let ids = r.get("external_ids");
                if ids.map_get(keys::OWNER) != Some(owner) {
                    continue;
                }
                let (Some(net), Some(listen)) =
                    (ids.map_get(keys::NETWORK), ids.map_get(keys::LISTEN))
                else {
                    continue;
                };
                let rev = ids
                    .map_get(keys::REVISION)
                    .and_then(|s| s.parse::<u64>().ok());
                let st = m.entry((net.to_owned(), listen.to_owned())).or_default();
                st.applied_revision = if st.rows.is_empty() {
                    rev
                } else {
                    st.applied_revision.zip(rev).map(|(a, b)| a.min(b))
                };
                st.rows.push((
                    r.get_str("name").unwrap_or_default().to_owned(),
                    r.uuid,
                    r.get_str("protocol").unwrap_or("tcp").to_owned(),
                ));
            }
            for st in m.values_mut() {
                st.rows.sort();
            }
            m
        });
        self.status.update_keys(|k| *k = now);
    }

    /// One term as NB's writer: reconcile until cancelled, deposed or fenced out.
    async fn term(
        &mut self,
        nb_feed: &mut crate::ovsdb::Subscription,
        elected: &mut Option<tokio::sync::watch::Receiver<bool>>,
        cancel: &CancellationToken,
    ) -> TermEnd {
        let mut next_resync = Instant::now() + self.opts.resync_every;
        loop {
            self.work().await;
            if let Some(by) = self.fenced_out.take() {
                return TermEnd::Fenced(by);
            }
            let wake = self
                .schedule
                .next_wake()
                .unwrap_or(next_resync)
                .min(next_resync);
            tokio::select! {
                c = async {
                    match self.store_feed.as_mut() {
                        Some(f) => f.changed().await,
                        None => std::future::pending().await,
                    }
                } => self.on_store(c).await,
                c = nb_feed.changed() => self.on_nb(c),
                _ = tokio::time::sleep_until(wake) => {
                    if Instant::now() >= next_resync {
                        debug!("periodic resync");
                        self.resync().await;
                        next_resync = Instant::now() + self.opts.resync_every;
                    }
                }
                () = deposed(elected) => return TermEnd::Deposed,
                _ = cancel.cancelled() => return TermEnd::Cancelled,
            }
            Metrics::inc(&self.metrics.wakeups);
            // Take whatever else arrived meanwhile in the same round.
            self.take_store_changes().await;
            let c = nb_feed.try_changed();
            if !c.is_empty() {
                self.on_nb(c);
            }
            if let Some(by) = self.fenced_out.take() {
                return TermEnd::Fenced(by);
            }
        }
    }

    /// Claim the owner's NB fence (when the options give a holder), retrying every
    /// second. `false`: cancelled first.
    async fn claim_fence(&mut self, cancel: &CancellationToken) -> bool {
        let Some(holder) = self.opts.fence_holder.clone() else {
            self.status.set_writer("unfenced", "");
            return true;
        };
        let owner = self.opts.owner.clone();
        self.status.set_writer("claiming", "");
        loop {
            match super::fence::claim(&self.session, &owner, &holder).await {
                Ok(f) => {
                    info!(token = %f.token, previous = f.previous.as_deref().unwrap_or("none"), "NB fence claimed: this ovnlbd is the only writer of owner {owner}");
                    self.status.set_writer("active", &f.token);
                    self.fence = Some(f);
                    return true;
                }
                Err(e) => warn!(error = %e, "claiming the NB fence; will retry"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = cancel.cancelled() => return false,
            }
        }
    }

    /// A transaction was refused by the fence: note who holds it now, to stop.
    fn fenced(&mut self) {
        let now = super::fence::current(&self.session, &self.opts.owner)
            .filter(|t| self.fence.as_ref().is_some_and(|f| *t != f.token));
        self.fenced_out = Some(now.unwrap_or_else(|| "(another writer)".into()));
    }

    fn parse_network(&self, n: &Network, all: &[Network]) -> Result<Option<OvnNetwork>, String> {
        if n.kind != "ovn" {
            return Ok(None);
        }
        // The network and its subnets: its uplink was checked when it was stored, and
        // planning does not read it.
        let net = network::ovn(n, all, Some(&self.session)).map_err(|e| {
            e.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        Ok(Some(net))
    }

    /// Reload everything from the store (every key dirty): what `run` does first. The
    /// store is read on a blocking thread, in one call.
    pub async fn load(&mut self) {
        let state = match self.store.call(|s| s.desired_state()).await {
            Ok(s) => s,
            Err(e) => return warn!(error = %e, "reading the store"),
        };
        let networks: Vec<Network> = state.networks.iter().map(|d| d.network.clone()).collect();
        let old_nets = std::mem::take(&mut self.nets);
        let old: BTreeSet<String> = old_nets.keys().cloned().collect();
        let old_objects = std::mem::take(&mut self.objects);
        let old_keys: BTreeSet<Key> = old_objects.keys().cloned().collect();
        for d in state.networks {
            // Each object with its revision (0 when the store has none for it).
            let rev = |listen: &str| d.revisions.get(listen).copied().unwrap_or_default();
            let lbs = d.load_balancers.into_iter().map(|o| {
                let revision = rev(&o.listen_address);
                keep(Stored {
                    revision,
                    value: AnyObject::LoadBalancer(o),
                })
            });
            let fwds = d.forwards.into_iter().map(|o| {
                let revision = rev(&o.listen_address);
                keep(Stored {
                    revision,
                    value: AnyObject::Forward(o),
                })
            });
            let objects: Objects = lbs.chain(fwds).collect();
            self.load_network(&d.network, &networks, objects);
        }
        // Rendered rows stay valid while their object and network are unchanged.
        self.rendered.retain(|k, _| {
            old_objects.get(k) == self.objects.get(k) && old_nets.get(&k.0) == self.nets.get(&k.0)
        });
        for gone in old.iter().filter(|n| !self.nets.contains_key(*n)) {
            self.schedule.remove_network(gone);
        }
        self.schedule.mark_all(old_keys, Reason::Load);
        self.schedule
            .mark_all(self.objects.keys().cloned(), Reason::Load);
    }

    fn load_network(&mut self, n: &Network, all: &[Network], objects: Objects) {
        let parsed = self.parse_network(n, all);
        match &parsed {
            Ok(_) => {
                self.status.set_network_error(&n.name, None);
            }
            Err(e) => {
                warn!(network = %n.name, error = %e, "network unusable: its rows are left alone");
                self.status.set_network_error(&n.name, Some(e.clone()));
            }
        }
        self.nets.insert(n.name.clone(), parsed.ok().flatten());
        if n.kind != "ovn" {
            return;
        }
        for (listen, o) in objects {
            self.objects.insert((n.name.clone(), listen), o);
        }
    }

    /// Take in the store's changes: what they touched is read in one call on a blocking
    /// thread, then applied.
    async fn on_store(&mut self, changes: BTreeSet<Change>) {
        let read = self
            .store
            .call(move |s| {
                Ok(changes
                    .into_iter()
                    .map(|c| intake(s, c))
                    .collect::<Vec<_>>())
            })
            .await;
        let read = match read {
            Ok(r) => r,
            Err(e) => return warn!(error = %e, "reading the store"),
        };
        for (c, got) in read {
            match (c.object, got) {
                (_, Err(e)) => warn!(error = %e, "reading the store"),
                (Some(changed), Ok(Intake::Object(obj))) => {
                    let key = (c.network.clone(), changed.listen);
                    match obj {
                        Some(o) => self.objects.insert(key.clone(), o),
                        None => self.objects.remove(&key),
                    };
                    self.rendered.remove(&key);
                    self.schedule.changed(key);
                }
                (_, Ok(Intake::Network { all, objects })) => {
                    // The network itself: reload it and all its objects.
                    let keys: Vec<Key> = self
                        .objects
                        .keys()
                        .filter(|(n, _)| *n == c.network)
                        .cloned()
                        .collect();
                    for k in &keys {
                        self.objects.remove(k);
                        self.rendered.remove(k);
                    }
                    self.schedule.mark_all(keys, Reason::Network);
                    match all.iter().find(|n| n.name == c.network) {
                        Some(n) => {
                            self.load_network(n, &all, objects);
                            self.schedule.keep_network(&c.network);
                        }
                        None => {
                            self.nets.remove(&c.network);
                            self.status.set_network_error(&c.network, None);
                            self.schedule.remove_network(&c.network);
                        }
                    }
                    let now: Vec<Key> = self
                        .objects
                        .keys()
                        .filter(|(n, _)| *n == c.network)
                        .cloned()
                        .collect();
                    self.schedule.mark_all(now, Reason::Network);
                }
                (None, Ok(Intake::Object(_))) => {}
            }
        }
    }

    fn on_nb(&mut self, changes: Changes) {
        if changes.resync {
            // Switch ports may have changed unseen: checked rows map theirs again.
            self.rendered.retain(|_, r| !r.checked);
            self.schedule
                .mark_all(self.objects.keys().cloned(), Reason::NbResync);
        }
        let owner = self.opts.owner.clone();
        let cache = self.session.cache().clone();
        cache.read(|v| {
            for (table, uuid) in &changes.rows {
                match table.as_str() {
                    "Load_Balancer" => {
                        let row = v.get(table, uuid);
                        if let Some((k, want)) = self.records.get(uuid) {
                            // The echo of our own write: nothing to do.
                            if !row.is_some_and(|r| plan::row_matches(r, want)) {
                                self.schedule.mark(k.clone(), Reason::Drift);
                            }
                        } else if let Some(r) = row {
                            let e = r.get("external_ids");
                            if e.map_get(keys::OWNER) == Some(owner.as_str()) {
                                if let (Some(n), Some(l)) =
                                    (e.map_get(keys::NETWORK), e.map_get(keys::LISTEN))
                                {
                                    self.schedule
                                        .mark((n.to_owned(), l.to_owned()), Reason::Drift);
                                }
                            }
                        }
                    }
                    "NB_Global" => {
                        if let Some(f) = &self.fence {
                            let now = super::fence::token_in(v, &f.key);
                            if !f.holds(now.as_deref()) {
                                self.fenced_out = Some(now.unwrap_or_else(|| "(removed)".into()));
                            }
                        }
                    }
                    "Logical_Switch_Port" => {
                        // Checked rows map their backends through switch ports: the keys
                        // this port answered, or that ask for an address it carries now,
                        // render again (an instance recreated under a new port name).
                        let carries: Vec<std::net::IpAddr> = v
                            .get(table, uuid)
                            .map(|r| crate::nb::port_addresses(r).collect())
                            .unwrap_or_default();
                        // (Only checked renders are recorded as readers.)
                        for k in self.readers.readers(uuid, &carries) {
                            if self.objects.contains_key(&k) {
                                self.rendered.remove(&k);
                                self.schedule.reread(k, Reason::Topology);
                            }
                        }
                    }
                    "Load_Balancer_Health_Check" => {
                        // One of ours changed: its key is planned again, in full.
                        let Some(row) = v.get(table, uuid) else {
                            continue;
                        };
                        let e = row.get("external_ids");
                        if e.map_get(keys::OWNER) != Some(owner.as_str()) {
                            continue;
                        }
                        if let (Some(n), Some(l)) =
                            (e.map_get(keys::NETWORK), e.map_get(keys::LISTEN))
                        {
                            let k = (n.to_owned(), l.to_owned());
                            if let Some(r) = self.rendered.get_mut(&k) {
                                // The echo of our own write: nothing to do.
                                let echo =
                                    r.rows.iter().flat_map(|w| &w.health_checks).any(|h| {
                                        h.uuid == *uuid && plan::health_check_matches(row, h)
                                    });
                                if echo {
                                    continue;
                                }
                                r.seen = None;
                            }
                            self.schedule.mark(k, Reason::Drift);
                        }
                    }
                    "Logical_Router" | "Logical_Switch" => {
                        // Missing attachments of our rows on the networks using it, and
                        // our rows on it for another network (binary searches over the
                        // rows we placed).
                        let Some(row) = v.get(table, uuid) else {
                            self.targets.remove(uuid);
                            self.schedule
                                .mark_all(self.objects.keys().cloned(), Reason::Topology);
                            continue;
                        };
                        let name = row.get_str("name").unwrap_or("");
                        let set = row.get("load_balancer");
                        let previous = self.targets.insert(*uuid, row.clone());
                        let check = |u: &Uuid, k: &Key| {
                            let Some(Some(net)) = self.nets.get(&k.0) else {
                                return false;
                            };
                            let ours = if table == "Logical_Router" {
                                net.router == name
                            } else {
                                net.switch == name
                            };
                            ours != set.contains(&crate::ovsdb::Atom::Uuid(*u))
                        };
                        let mut wrong = Vec::new();
                        match previous.filter(|p| p.get_str("name") == Some(name)) {
                            // Only the rows that joined or left its set can have changed:
                            // a merge of the two sorted sets, not a look at every row.
                            Some(p) => {
                                for u in set_difference(p.get("load_balancer"), set) {
                                    if let Some((k, _)) = self.records.get(&u) {
                                        if check(&u, k) {
                                            wrong.push(k.clone());
                                        }
                                    }
                                }
                            }
                            // First seen, or renamed: every row we placed.
                            None => {
                                for (u, k) in self.records.rows() {
                                    if check(u, k) {
                                        wrong.push(k.clone());
                                    }
                                }
                            }
                        }
                        self.schedule.mark_all(wrong, Reason::Topology);
                    }
                    _ => {}
                }
            }
        });
    }

    fn ensure_rendered(&mut self, net: &OvnNetwork, key: &Key) {
        if !self.rendered.contains_key(key) {
            let (owner, max) = (&self.opts.owner, self.opts.limits.max_row_bytes);
            let object = self.objects.get(key);
            // Only checked objects read NB's switch ports: the others take no lock.
            let checked = matches!(object, Some(Object::Lb(lb, _)) if lb.checks_health());
            let r = if checked {
                let (r, asked, answered, warnings) = self.session.cache().read(|v| {
                    let ports = Recording::new(v);
                    let r = Rendered::new(owner, net, object, max, &ports);
                    let (asked, answered) = ports.into_parts();
                    (r, asked, answered, health::checker_warnings(net, v))
                });
                self.readers.record(key, asked, answered);
                if self.checker_warned.get(&net.name) != Some(&warnings) {
                    for w in &warnings {
                        warn!(network = %net.name, "{w}");
                    }
                    self.checker_warned.insert(net.name.clone(), warnings);
                }
                r
            } else {
                self.readers.forget(key);
                Rendered::new(owner, net, object, max, &NoPorts)
            };
            self.rendered.insert(key.clone(), r);
        }
    }

    /// The periodic resync: every key checked against the live cache. The store is not
    /// re-read: it is written only through [`Store`], whose feed never drops a change.
    /// With nothing to change, a key costs a look at its rows' versions ([`Seen`]).
    pub async fn resync(&mut self) {
        Metrics::inc(&self.metrics.resyncs);
        self.schedule
            .mark_all(self.objects.keys().cloned(), Reason::Resync);
        self.work().await;
    }

    /// Reconcile dirty keys (and removed networks) until none is due.
    async fn work(&mut self) {
        if self.schedule.is_idle() {
            return;
        }
        if let Err(e) = self.session.sync().await {
            warn!(error = %e, "NB not reachable; will retry");
            return;
        }
        // The wait for NB may have been long (an outage): what the store changed meanwhile
        // comes first, so an object deleted while NB was away is never written.
        self.take_store_changes().await;
        for network in self.schedule.take_removed() {
            self.remove_network(&network).await;
        }
        // Keys still backing off stay dirty; they are taken once their time comes.
        let due = self.schedule.take_due(Instant::now());
        // `due` is sorted by (network, listen): each network's keys are one run, worked
        // in chunks of at most `batch`.
        let batch = self.opts.batch.max(1);
        let mut due = due.into_iter().peekable();
        while let Some(first) = due.next() {
            if self.fenced_out.is_some() {
                break;
            }
            let network = first.0 .0.clone();
            let mut chunk = vec![first];
            while chunk.len() < batch {
                match due.next_if(|(k, _)| k.0 == network) {
                    Some(next) => chunk.push(next),
                    None => break,
                }
            }
            // (Unknown or unusable network: nothing is touched.)
            if let Some(Some(net)) = self.nets.get(&network).cloned() {
                self.working = chunk;
                let span = info_span!("reconcile", network = %net.name, keys = self.working.len());
                self.apply_chunk(&net).instrument(span).await;
            }
        }
        self.working.clear();
        self.schedule.settle();
    }

    /// Plan, commit and record one chunk of a network's keys ([`Controller::working`]).
    async fn apply_chunk(&mut self, net: &OvnNetwork) {
        let keys: Vec<Key> = self.working.iter().map(|(k, _)| k.clone()).collect();
        for k in &keys {
            self.ensure_rendered(net, k);
        }
        // A key too big for NB fails on its own; the others go on.
        let (keys, big): (Vec<Key>, Vec<Key>) = keys
            .into_iter()
            .partition(|k| self.rendered.get(k).is_none_or(|r| r.too_big.is_none()));
        for k in big {
            let why = self.rendered.get(&k).and_then(|r| r.too_big.clone());
            let e = Error::TooBig(why.unwrap_or_default());
            self.fail(std::slice::from_ref(&k), &e);
        }
        let planning = std::time::Instant::now();
        let planned = {
            let (owner, rendered) = (&self.opts.owner, &self.rendered);
            self.session
                .cache()
                .read(|v| apply::plan_chunk(owner, net, &keys, rendered, v))
        };
        for (k, why) in planned.blocked {
            self.fail(std::slice::from_ref(&k), &Error::Blocked(why));
        }
        let keys = &planned.keys[..];
        if keys.is_empty() {
            return;
        }
        Metrics::inc(&self.metrics.passes);
        self.metrics.plan_seconds.observe(planning.elapsed());
        for (k, s) in keys.iter().zip(&planned.seen) {
            if let Some(r) = self.rendered.get_mut(k) {
                r.seen = Some(*s);
            }
        }
        let plan = match planned.plan {
            Ok(p) => p,
            Err(e) => {
                self.status.set_network_error(&net.name, Some(e.reason()));
                return self.fail(keys, &Error::Plan(e));
            }
        };
        self.status.set_network_error(&net.name, None);
        if !plan.ops.is_empty() {
            let committing = std::time::Instant::now();
            let outcome = apply::commit(&self.session, &plan, self.fence.as_ref()).await;
            self.metrics.commit_seconds.observe(committing.elapsed());
            match outcome {
                Outcome::Applied => {
                    Metrics::inc(&self.metrics.transactions);
                    self.metrics
                        .operations
                        .fetch_add(plan.ops.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    debug!(network = %net.name, keys = keys.len(), ops = plan.ops.len(), "applied")
                }
                Outcome::Replan(e) => {
                    // NB moved under us: re-plan on the next round, from the fresh cache
                    // (a bounded number of times in a row, then the key backs off).
                    Metrics::inc(&self.metrics.conflicts);
                    debug!(network = %net.name, error = %e, "conflict: re-planning");
                    let spent: Vec<Key> = keys
                        .iter()
                        .filter(|k| !self.schedule.replan(k))
                        .cloned()
                        .collect();
                    if !spent.is_empty() {
                        let e = Error::Commit {
                            network: net.name.clone(),
                            source: e,
                        };
                        self.fail(&spent, &e);
                    }
                    return;
                }
                Outcome::Failed(e) => {
                    let e = Error::Commit {
                        network: net.name.clone(),
                        source: e,
                    };
                    return self.fail(keys, &e);
                }
                Outcome::Fenced(_) => return self.fenced(),
            }
        }
        self.record(keys, &plan);
    }

    /// After a chunk's plan was applied: record what NB now holds and publish it. Keys
    /// that needed nothing and are recorded already keep their records.
    fn record(&mut self, keys: &[Key], plan: &Plan) {
        let progress = self.status.clone();
        progress.update_keys(|status| {
            let mut uuids = &plan.uuids[..];
            for k in keys {
                let _key = debug_span!("key", listen = %k.1, reason = %self.why(k)).entered();
                self.schedule.succeeded(k);
                let rows = self.rendered.get(k).map_or(&[][..], |r| r.rows.as_slice());
                let (mine, rest) = uuids.split_at(rows.len().min(uuids.len()));
                uuids = rest;
                let shown = self.records.record(k, rows, mine, plan.ops.is_empty());
                if let Some(o) = self.objects.get(k) {
                    let st = status.entry(k.clone()).or_insert_with(KeyStatus::default);
                    if let Some(rows) = shown {
                        debug!(rows = rows.len(), "applied");
                        st.rows = rows;
                    }
                    if st.applied_revision != Some(o.revision()) || !st.error.is_empty() {
                        st.applied_revision = Some(o.revision());
                        st.error.clear();
                    }
                } else {
                    status.remove(k);
                    self.rendered.remove(k);
                }
            }
        });
    }

    /// Why a key of the chunk being worked was due.
    fn why(&self, k: &Key) -> Reason {
        match self.working.binary_search_by(|(w, _)| w.cmp(k)) {
            Ok(i) => self.working[i].1,
            Err(_) => Reason::Retry,
        }
    }

    /// Keys failed: each backs off, and `/state` shows the error. Logged once: inside
    /// the key's span for one key, else naming the first of them (each key's own span
    /// then has it at debug).
    fn fail(&mut self, keys: &[Key], error: &Error) {
        Metrics::inc(&self.metrics.errors);
        let text = error.to_string();
        match keys {
            [k] => {
                let _key = info_span!("key", listen = %k.1, reason = %self.why(k)).entered();
                warn!(error = %text, "reconcile failed; backing off");
            }
            [first, ..] => warn!(
                error = %text,
                keys = keys.len(),
                first = %first.1,
                "reconcile failed; backing off"
            ),
            [] => {}
        }
        let now = Instant::now();
        let progress = self.status.clone();
        progress.update_keys(|status| {
            for k in keys {
                if keys.len() > 1 {
                    let _key = debug_span!("key", listen = %k.1, reason = %self.why(k)).entered();
                    debug!(error = %text, "reconcile failed; backing off");
                }
                if let Some(r) = self.rendered.get_mut(k) {
                    r.seen = None;
                }
                let wait = self.schedule.failed(k, now);
                debug!(listen = %k.1, ?wait, "retry after");
                status.entry(k.clone()).or_default().error = text.clone();
            }
        });
    }

    /// Delete every row of ours of a network removed from the store.
    async fn remove_network(&mut self, network: &str) {
        let ops = self
            .session
            .cache()
            .read(|v| plan::plan_removal(&self.opts.owner, |n| n == Some(network), v));
        if !ops.is_empty() {
            let plan = Plan::removal(network, ops);
            let outcome = apply::commit(&self.session, &plan, self.fence.as_ref()).await;
            if let Outcome::Fenced(_) = outcome {
                return self.fenced();
            }
            if let Outcome::Replan(e) | Outcome::Failed(e) = outcome {
                warn!(network, error = %e, "removing a network's rows failed; will retry");
                self.schedule.remove_network(network);
                return;
            }
            info!(
                network,
                rows = plan.ops.len(),
                "network removed: its rows deleted"
            );
        }
        // No state of the network's keys outlives it, whether or not they ever had rows.
        self.records.forget_network(network);
        self.status
            .update_keys(|keys| keys.retain(|k, _| k.0 != network));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ovsdb::{Atom, Datum};

    #[test]
    fn set_difference_is_symmetric_and_linear() {
        let u = |n: u128| Uuid::from_u128(n);
        let set = |v: &[u128]| Datum::from_atoms(v.iter().map(|n| Atom::Uuid(u(*n))).collect());
        let mut d = set_difference(&set(&[1, 2, 4, 7]), &set(&[2, 3, 4, 8, 9]));
        d.sort();
        assert_eq!(d, [u(1), u(3), u(7), u(8), u(9)]);
        assert!(set_difference(&set(&[5]), &set(&[5])).is_empty());
        assert_eq!(set_difference(&Datum::empty(), &set(&[6])), [u(6)]);
    }
}
