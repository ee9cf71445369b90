//! The controller: keeps NB equal to the store, continuously.
//!
//! Work is per key, (network, listen address): a store change marks its key dirty; an
//! NB change to one of our rows marks the row's key dirty; a change to a router or
//! switch marks the keys whose rows are missing from it (or sit on the wrong one); a
//! periodic resync marks everything. Dirty keys are planned against the live cache
//! ([`plan::plan_objects`]) and applied in batches, one guarded transaction per network
//! batch. A failing key backs off (1 s doubling to 30 s) without holding up others.
//! Nothing runs before the cache is ready, and every pass first syncs with the server.

use crate::fasthash::HashMap;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use uuid::Uuid;

use super::plan::{self, Op};
use super::transaction;
use crate::lb::model::{AnyObject, ForwardsPost, LoadBalancersPost, Network, ObjectKind};
use crate::lb::network;
use crate::lb::render::{self, keys, DesiredRow};
use crate::lb::validate::{Limits, OvnNetwork};
use crate::metrics::Metrics;
use crate::nb::{LoadBalancer, LogicalRouter, LogicalSwitch, Table};
use crate::ovsdb::{CacheRow, CacheView, Changes, Session};
use crate::store::{Change, Handle, Store, StoreError, Stored};

use crate::progress::{Key, KeyStatus, Status};

/// Settings.
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
}

impl Default for ControllerOptions {
    fn default() -> Self {
        ControllerOptions {
            owner: "ovnlb".into(),
            limits: Limits::default(),
            resync_every: Duration::from_secs(60),
            batch: 256,
        }
    }
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

#[derive(Debug, Clone, PartialEq)]
enum Object {
    Lb(LoadBalancersPost, u64),
    Fwd(ForwardsPost, u64),
}

impl Object {
    /// What the controller keeps of a load balancer: what renders (descriptions and
    /// `user.*` keys never reach NB, and may be megabytes).
    fn lb(mut o: LoadBalancersPost, revision: u64) -> Object {
        o.put.description = String::new();
        o.put.config.retain(|k, _| !k.starts_with("user."));
        for b in &mut o.put.backends {
            b.description = String::new();
        }
        for p in &mut o.put.ports {
            p.description = String::new();
        }
        Object::Lb(o, revision)
    }

    /// What the controller keeps of a forward (as [`Object::lb`]).
    fn fwd(mut o: ForwardsPost, revision: u64) -> Object {
        o.put.description = String::new();
        o.put.config.retain(|k, _| !k.starts_with("user."));
        for p in &mut o.put.ports {
            p.description = String::new();
        }
        Object::Fwd(o, revision)
    }

    fn revision(&self) -> u64 {
        match self {
            Object::Lb(_, r) | Object::Fwd(_, r) => *r,
        }
    }
}

/// The controller. Build it, then `run` it until cancelled.
pub struct Controller {
    session: Session,
    store: Handle,
    opts: ControllerOptions,
    status: Status,
    /// Parsed networks (`None`: invalid or not an `ovn` network).
    nets: HashMap<String, Option<OvnNetwork>>,
    /// Desired objects.
    objects: HashMap<Key, Object>,
    /// Keys to reconcile.
    dirty: BTreeSet<Key>,
    /// Networks removed from the store whose rows must go.
    removed: BTreeSet<String>,
    /// Per-key backoff: (retry at, current delay). Only for keys in `dirty`: an entry
    /// goes with its key ([`Controller::work`] drops the others), so the loop never wakes
    /// for a key that has nothing left to retry.
    backoff: HashMap<Key, (Instant, Duration)>,
    /// Our NB rows → their key and what we last wrote into them. NB events whose row
    /// still matches are the echo of our own commits and are ignored.
    applied: HashMap<Uuid, (Key, DesiredRow)>,
    /// Key → its NB rows (reverse of `applied`).
    key_rows: HashMap<Key, Vec<Uuid>>,
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
}

/// A key's rendered rows, and what NB looked like when they were last found to match.
#[derive(Debug)]
struct Rendered {
    rows: Vec<DesiredRow>,
    /// Why the rows must not reach NB (one is over `max_row_bytes`: an object stored
    /// under a larger limit, or before there was one).
    too_big: Option<String>,
    /// Set when a plan over the live cache found nothing to do for the key; dropped
    /// with the rows (their object or network changed) and on failure.
    seen: Option<Seen>,
}

/// The live rows a clean plan read, as (row count, highest row version) of the
/// `Load_Balancer` rows under the key's listen address and of all routers and switches.
/// Every insert or modify stamps a row with a version above all others, and a delete
/// lowers the count, so while both pairs are unchanged, so is every row that plan read:
/// the key still matches without comparing its rows again. This is what keeps a
/// periodic resync cheap; any difference sends the key through the full plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    rows: (usize, u64),
    topology: (usize, u64),
}

/// (count, highest version) of some rows.
fn versions<'a>(rows: impl Iterator<Item = &'a Arc<CacheRow>>) -> (usize, u64) {
    rows.fold((0, 0), |(n, v), r| (n + 1, v.max(r.version())))
}

/// [`Seen::topology`]: every router and switch (attachments are read from them).
fn topology(v: &CacheView) -> (usize, u64) {
    versions(
        v.rows(LogicalRouter::NAME)
            .chain(v.rows(LogicalSwitch::NAME)),
    )
}

/// [`Seen::rows`]: the rows under one listen address, ours or not (`index`:
/// [`plan::listen_index`]).
fn listen_rows(v: &CacheView, index: &crate::ovsdb::IndexSpec, listen: &str) -> (usize, u64) {
    versions(v.lookup(index, &crate::ovsdb::Datum::scalar(listen)).iter())
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
            dirty: BTreeSet::new(),
            removed: BTreeSet::new(),
            backoff: HashMap::default(),
            applied: HashMap::default(),
            key_rows: HashMap::default(),
            rendered: HashMap::default(),
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

    /// Run until `cancel`; a transaction in flight is finished first.
    pub async fn run(mut self, cancel: CancellationToken) {
        self.store_feed = Some(self.store.subscribe());
        let mut nb_feed = self.session.cache().subscribe();
        tokio::select! {
            _ = self.session.cache().wait_ready() => {}
            _ = cancel.cancelled() => return,
        }
        info!("controller starting: cache ready");
        self.load().await;
        let mut next_resync = Instant::now() + self.opts.resync_every;
        loop {
            self.work().await;
            let wake = self
                .backoff
                .values()
                .map(|(at, _)| *at)
                .min()
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
                _ = cancel.cancelled() => break,
            }
            Metrics::inc(&self.metrics.wakeups);
            // Take whatever else arrived meanwhile in the same round.
            self.take_store_changes().await;
            let c = nb_feed.try_changed();
            if !c.is_empty() {
                self.on_nb(c);
            }
        }
        info!("controller stopped");
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
            self.removed.insert(gone.clone());
        }
        self.dirty.extend(old_keys);
        self.dirty.extend(self.objects.keys().cloned());
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
                    self.backoff.remove(&key);
                    self.rendered.remove(&key);
                    self.dirty.insert(key);
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
                    self.dirty.extend(keys);
                    match all.iter().find(|n| n.name == c.network) {
                        Some(n) => {
                            self.load_network(n, &all, objects);
                            self.removed.remove(&c.network);
                        }
                        None => {
                            self.nets.remove(&c.network);
                            self.status.set_network_error(&c.network, None);
                            self.removed.insert(c.network.clone());
                        }
                    }
                    let now: Vec<Key> = self
                        .objects
                        .keys()
                        .filter(|(n, _)| *n == c.network)
                        .cloned()
                        .collect();
                    self.dirty.extend(now);
                }
                (None, Ok(Intake::Object(_))) => {}
            }
        }
    }

    fn on_nb(&mut self, changes: Changes) {
        if changes.resync {
            self.dirty.extend(self.objects.keys().cloned());
        }
        let owner = self.opts.owner.clone();
        let cache = self.session.cache().clone();
        cache.read(|v| {
            for (table, uuid) in &changes.rows {
                match table.as_str() {
                    "Load_Balancer" => {
                        let row = v.get(table, uuid);
                        if let Some((k, want)) = self.applied.get(uuid) {
                            // The echo of our own write: nothing to do.
                            if !row.is_some_and(|r| plan::row_matches(r, want)) {
                                self.dirty.insert(k.clone());
                            }
                        } else if let Some(r) = row {
                            let e = r.get("external_ids");
                            if e.map_get(keys::OWNER) == Some(owner.as_str()) {
                                if let (Some(n), Some(l)) =
                                    (e.map_get(keys::NETWORK), e.map_get(keys::LISTEN))
                                {
                                    self.dirty.insert((n.to_owned(), l.to_owned()));
                                }
                            }
                        }
                    }
                    "Logical_Router" | "Logical_Switch" => {
                        // Missing attachments of our rows on the networks using it, and
                        // our rows on it for another network (binary searches over the
                        // rows we placed).
                        let Some(row) = v.get(table, uuid) else {
                            self.targets.remove(uuid);
                            self.dirty.extend(self.objects.keys().cloned());
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
                                    if let Some((k, _)) = self.applied.get(&u) {
                                        if check(&u, k) {
                                            wrong.push(k.clone());
                                        }
                                    }
                                }
                            }
                            // First seen, or renamed: every row we placed.
                            None => {
                                for (u, (k, _)) in &self.applied {
                                    if check(u, k) {
                                        wrong.push(k.clone());
                                    }
                                }
                            }
                        }
                        self.dirty.extend(wrong);
                    }
                    _ => {}
                }
            }
        });
    }

    fn ensure_rendered(&mut self, net: &OvnNetwork, key: &Key) {
        if self.rendered.contains_key(key) {
            return;
        }
        let rows = match self.objects.get(key) {
            Some(Object::Lb(lb, rev)) => {
                render::render_load_balancer(&self.opts.owner, net, lb, *rev)
            }
            Some(Object::Fwd(f, rev)) => render::render_forward(&self.opts.owner, net, f, *rev),
            None => Vec::new(),
        };
        let max = self.opts.limits.max_row_bytes;
        let too_big = rows.iter().find_map(|r| {
            let bytes = render::vips_bytes(r);
            (bytes > max).then(|| {
                format!(
                    "Too large for OVN: the {} Load_Balancer row would hold {bytes} bytes of VIPs, more than the limit of {max} bytes per row (max_row_bytes); it is left out of NB until the object is shrunk",
                    r.protocol
                )
            })
        });
        self.rendered.insert(
            key.clone(),
            Rendered {
                rows,
                too_big,
                seen: None,
            },
        );
    }

    /// The periodic resync: every key checked against the live cache. The store is not
    /// re-read: it is written only through [`Store`], whose feed never drops a change.
    /// With nothing to change, a key costs a look at its rows' versions ([`Seen`]).
    pub async fn resync(&mut self) {
        Metrics::inc(&self.metrics.resyncs);
        self.dirty.extend(self.objects.keys().cloned());
        self.work().await;
    }

    /// Reconcile dirty keys (and removed networks) until none is due.
    async fn work(&mut self) {
        if self.dirty.is_empty() && self.removed.is_empty() {
            return;
        }
        if let Err(e) = self.session.sync().await {
            warn!(error = %e, "NB not reachable; will retry");
            return;
        }
        // The wait for NB may have been long (an outage): what the store changed meanwhile
        // comes first, so an object deleted while NB was away is never written.
        self.take_store_changes().await;
        for network in std::mem::take(&mut self.removed) {
            self.remove_network(&network).await;
        }
        let now = Instant::now();
        // Keys still backing off stay dirty; they are taken once their time comes.
        let (due, later): (Vec<Key>, Vec<Key>) = std::mem::take(&mut self.dirty)
            .into_iter()
            .partition(|k| self.backoff.get(k).is_none_or(|(at, _)| *at <= now));
        self.dirty.extend(later);
        // `due` is sorted by (network, listen): each network's keys are one run.
        let mut start = 0;
        while start < due.len() {
            let network = due[start].0.clone();
            let end = start + due[start..].iter().take_while(|k| k.0 == network).count();
            if let Some(Some(net)) = self.nets.get(&network).cloned() {
                for chunk in due[start..end].chunks(self.opts.batch.max(1)) {
                    self.apply_chunk(&net, chunk).await;
                }
            }
            // (Unknown or unusable network: nothing is touched.)
            start = end;
        }
        // A key that left `dirty` without being retried (its network went, or cannot be
        // used) keeps no backoff: no state of a key outlives it.
        let dirty = &self.dirty;
        self.backoff.retain(|k, _| dirty.contains(k));
    }

    async fn apply_chunk(&mut self, net: &OvnNetwork, keys: &[Key]) {
        for k in keys {
            self.ensure_rendered(net, k);
        }
        // A key too big for NB fails on its own; the others go on.
        let (keys, big): (Vec<Key>, Vec<Key>) = keys
            .iter()
            .cloned()
            .partition(|k| self.rendered.get(k).is_none_or(|r| r.too_big.is_none()));
        for k in big {
            let why = self.rendered.get(&k).and_then(|r| r.too_big.clone());
            self.fail(std::slice::from_ref(&k), why.as_deref().unwrap_or_default());
        }
        let keys = keys.as_slice();
        let planning = std::time::Instant::now();
        let (keys, plan, seen, blocked) = {
            let rendered = &self.rendered;
            let owner = &self.opts.owner;
            self.session.cache().read(|v| {
                let topology = topology(v);
                let index = plan::listen_index();
                // Keys whose rows and topology are as a clean plan saw them need nothing;
                // the others are planned, and remember what this view holds if clean.
                let (keys, now): (Vec<Key>, Vec<Seen>) = keys
                    .iter()
                    .map(|k| {
                        let now = Seen {
                            rows: listen_rows(v, &index, &k.1),
                            topology,
                        };
                        (k, now)
                    })
                    .filter(|(k, now)| rendered.get(*k).and_then(|r| r.seen) != Some(*now))
                    .map(|(k, now)| (k.clone(), now))
                    .unzip();
                // Keys NB blocks (a foreign row with our UUID or VIP) fail on their own.
                let rows_of = |k: &Key| rendered.get(k).map_or(&[][..], |r| r.rows.as_slice());
                // Only VIPs a key would add are checked against foreign rows: a key whose
                // VIPs are all in its own rows (a backend changed, a resync) costs no scan.
                let wanted: crate::fasthash::HashSet<&str> = keys
                    .iter()
                    .flat_map(|k| plan::new_vips(rows_of(k), v))
                    .collect();
                let foreign = plan::foreign_vips(owner, net, &wanted, v);
                let mut blocked = Vec::new();
                let (keys, now): (Vec<Key>, Vec<Seen>) = keys
                    .into_iter()
                    .zip(now)
                    .filter(
                        |(k, _)| match plan::blocked(owner, rows_of(k), &foreign, v) {
                            Some(why) => {
                                blocked.push((k.clone(), why));
                                false
                            }
                            None => true,
                        },
                    )
                    .unzip();
                let objects: Vec<(&str, &[DesiredRow])> = keys
                    .iter()
                    .map(|k| {
                        (
                            k.1.as_str(),
                            rendered.get(k).map_or(&[][..], |r| r.rows.as_slice()),
                        )
                    })
                    .collect();
                let plan = plan::plan_objects(owner, net, &objects, v);
                // A clean plan: remember what it read.
                let seen: Vec<Seen> = match &plan {
                    Ok(p) if p.ops.is_empty() => now,
                    _ => Vec::new(),
                };
                (keys, plan, seen, blocked)
            })
        };
        for (k, why) in blocked {
            self.fail(std::slice::from_ref(&k), &why);
        }
        if keys.is_empty() {
            return;
        }
        Metrics::inc(&self.metrics.passes);
        self.metrics.plan_seconds.observe(planning.elapsed());
        let keys = &keys[..];
        for (k, s) in keys.iter().zip(seen) {
            if let Some(r) = self.rendered.get_mut(k) {
                r.seen = Some(s);
            }
        }
        let plan = match plan {
            Ok(p) => p,
            Err(e) => {
                self.status
                    .set_network_error(&net.name, Some(e.message.clone()));
                return self.fail(keys, &e.to_string());
            }
        };
        self.status.set_network_error(&net.name, None);
        if !plan.ops.is_empty() {
            let txn = transaction(&plan, self.session.schema());
            let committing = std::time::Instant::now();
            let result = self.session.transact(&txn).await;
            self.metrics.commit_seconds.observe(committing.elapsed());
            match result {
                Ok(_) => {
                    Metrics::inc(&self.metrics.transactions);
                    self.metrics
                        .operations
                        .fetch_add(plan.ops.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    debug!(network = %net.name, keys = keys.len(), ops = plan.ops.len(), "applied")
                }
                // ("duplicate uuid" is not one: a row we do not own holds our UUID, which
                // `plan::blocked` reports; a race with it fails and backs off.)
                Err(e) if e.is_conflict() => {
                    // NB moved under us: re-plan on the next round, from the fresh cache.
                    Metrics::inc(&self.metrics.conflicts);
                    debug!(network = %net.name, error = %e, "conflict: re-planning");
                    self.dirty.extend(keys.iter().cloned());
                    return;
                }
                Err(e) => return self.fail(keys, &e.to_string()),
            }
        }
        // Success: record what NB now holds. Keys that needed nothing and are recorded
        // already keep their records (a resync then allocates nothing).
        let progress = self.status.clone();
        progress.update_keys(|status| {
            for k in keys {
                self.backoff.remove(k);
                let rows = self.rendered.get(k).map_or(&[][..], |r| r.rows.as_slice());
                // Nothing to do, and what we recorded is exactly what is rendered now.
                let unchanged = plan.ops.is_empty()
                    && match self.key_rows.get(k) {
                        None => rows.is_empty(),
                        Some(uuids) => {
                            uuids.len() == rows.len()
                                && uuids
                                    .iter()
                                    .zip(rows)
                                    .all(|(u, r)| self.applied.get(u).is_some_and(|(_, a)| a == r))
                        }
                    };
                if !unchanged {
                    for u in self.key_rows.remove(k).unwrap_or_default() {
                        self.applied.remove(&u);
                    }
                    let mut nb_rows = Vec::new();
                    let mut uuids = Vec::new();
                    for r in rows {
                        // Rows adopted in place keep their own UUID; find the live one.
                        let live = self.session.cache().read(|v| {
                            v.lookup(
                                &plan::listen_index(),
                                &crate::ovsdb::Datum::scalar(k.1.clone()),
                            )
                            .iter()
                            .find(|x| {
                                x.get_str("name") == Some(r.name.as_str())
                                    && x.get("external_ids").map_get(keys::OWNER)
                                        == Some(self.opts.owner.as_str())
                            })
                            .map(|x| x.uuid)
                        });
                        let u = live.unwrap_or(r.uuid);
                        self.applied.insert(u, (k.clone(), r.clone()));
                        uuids.push(u);
                        nb_rows.push((r.name.clone(), u, r.protocol.clone()));
                    }
                    if !uuids.is_empty() {
                        self.key_rows.insert(k.clone(), uuids);
                    }
                    if let Some(o) = self.objects.get(k) {
                        let st = status.entry(k.clone()).or_default();
                        st.rows = nb_rows;
                        st.applied_revision = Some(o.revision());
                        st.error.clear();
                    }
                } else if let Some(o) = self.objects.get(k) {
                    match status.get_mut(k) {
                        Some(st) => {
                            if st.applied_revision != Some(o.revision()) || !st.error.is_empty() {
                                st.applied_revision = Some(o.revision());
                                st.error.clear();
                            }
                        }
                        None => {
                            status.insert(
                                k.clone(),
                                KeyStatus {
                                    applied_revision: Some(o.revision()),
                                    ..Default::default()
                                },
                            );
                        }
                    }
                }
                if !self.objects.contains_key(k) {
                    status.remove(k);
                    self.rendered.remove(k);
                }
            }
        });
    }

    fn fail(&mut self, keys: &[Key], error: &str) {
        Metrics::inc(&self.metrics.errors);
        warn!(error, keys = keys.len(), "reconcile failed; backing off");
        let now = Instant::now();
        let progress = self.status.clone();
        progress.update_keys(|status| {
            for k in keys {
                if let Some(r) = self.rendered.get_mut(k) {
                    r.seen = None;
                }
                let delay = self
                    .backoff
                    .get(k)
                    .map(|(_, d)| (*d * 2).min(Duration::from_secs(30)))
                    .unwrap_or(Duration::from_secs(1));
                self.backoff.insert(k.clone(), (now + delay, delay));
                self.dirty.insert(k.clone());
                status.entry(k.clone()).or_default().error = error.to_owned();
            }
        });
    }

    /// Delete every row of ours of a network removed from the store.
    async fn remove_network(&mut self, network: &str) {
        let owner = self.opts.owner.clone();
        let ops: Vec<Op> = self.session.cache().read(|v| {
            v.rows(LoadBalancer::NAME)
                .filter_map(|r| LoadBalancer::from_row(r))
                .filter(|r| {
                    r.external_ids.get(keys::OWNER) == Some(&owner)
                        && r.external_ids.get(keys::NETWORK).map(String::as_str) == Some(network)
                })
                .map(|r| Op::Delete {
                    uuid: r.uuid,
                    name: r.name.clone(),
                    observed: r,
                })
                .collect()
        });
        if !ops.is_empty() {
            let plan = plan::Plan {
                network: network.to_owned(),
                router: None,
                switch: None,
                ops,
            };
            if let Err(e) = self
                .session
                .transact(&transaction(&plan, self.session.schema()))
                .await
            {
                warn!(network, error = %e, "removing a network's rows failed; will retry");
                self.removed.insert(network.to_owned());
                return;
            }
            info!(
                network,
                rows = plan.ops.len(),
                "network removed: its rows deleted"
            );
        }
        // No state of the network's keys outlives it, whether or not they ever had rows.
        self.applied.retain(|_, (k, _)| k.0 != network);
        self.key_rows.retain(|k, _| k.0 != network);
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
