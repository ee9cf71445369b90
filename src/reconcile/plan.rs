//! Plan: desired rows against the LIVE cache (never a last-applied map), as the minimal
//! operations. Only rows carrying our owner tag are ever updated or deleted; a row we do
//! not own is never touched, even with the same name. Rows are updated in place (their
//! UUIDs survive edits); duplicates of ours collapse to one; attachments to the
//! network's router and internal switch are added where missing and removed from any
//! other router or switch.

use crate::fasthash::{HashMap, HashSet};
use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use serde::Serialize;
use uuid::Uuid;

use crate::lb::render::{self, keys, render_network, DesiredHealthCheck, DesiredRow};
use crate::lb::state::ResolvedNetwork;
use crate::lb::validate::OvnNetwork;
use crate::nb::{
    ColumnValue, LoadBalancer, LoadBalancerHealthCheck, LogicalRouter, LogicalRouterPort,
    LogicalSwitch, LogicalSwitchPort, Table,
};
use crate::ovsdb::{Atom, CacheRow, CacheView, Datum, IndexSpec};
use std::sync::Arc;

/// One change to NB.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Insert a row with its deterministic UUID.
    Create {
        /// Row UUID.
        uuid: Uuid,
        /// Row name.
        name: String,
        /// Protocol.
        protocol: String,
        /// VIPs.
        vips: BTreeMap<String, String>,
        /// external_ids.
        external_ids: BTreeMap<String, String>,
        /// Its health checks (created in the same transaction).
        #[serde(skip_serializing_if = "BTreeSet::is_empty")]
        health_check: BTreeSet<Uuid>,
        /// Backend address → `<switch port>:<checker>`.
        #[serde(skip_serializing_if = "BTreeMap::is_empty")]
        ip_port_mappings: BTreeMap<String, String>,
        /// Its OVN options (`ovn.*` keys).
        #[serde(skip_serializing_if = "BTreeMap::is_empty")]
        options: BTreeMap<String, String>,
        /// Its hash fields.
        #[serde(skip_serializing_if = "BTreeSet::is_empty")]
        selection_fields: BTreeSet<String>,
    },
    /// Insert a `Load_Balancer_Health_Check` with its deterministic UUID (a row that
    /// references it is created or updated in the same transaction).
    CreateHealthCheck {
        /// Row UUID.
        uuid: Uuid,
        /// The VIP it checks.
        vip: String,
        /// Its options.
        options: BTreeMap<String, String>,
        /// Ownership.
        external_ids: BTreeMap<String, String>,
    },
    /// Update a health check's VIP, options and ownership in place.
    UpdateHealthCheck {
        /// Row UUID.
        uuid: Uuid,
        /// The VIP it checks.
        vip: String,
        /// Its options.
        options: BTreeMap<String, String>,
        /// Ownership.
        external_ids: BTreeMap<String, String>,
    },
    /// Update changed columns of an owned row in place.
    Update {
        /// Row UUID.
        uuid: Uuid,
        /// Row name (as it will be).
        name: String,
        /// Changed columns: old and new values, as text.
        changes: BTreeMap<String, (String, String)>,
        /// The new row (all managed columns).
        #[serde(skip)]
        row: Box<DesiredRow>,
        /// The columns as read (for the `wait` guard).
        #[serde(skip)]
        observed: Box<LoadBalancer>,
    },
    /// Delete an owned row (weak references detach it everywhere).
    Delete {
        /// Row UUID.
        uuid: Uuid,
        /// Row name.
        name: String,
        /// The columns as read (for the `wait` guard).
        #[serde(skip)]
        observed: LoadBalancer,
    },
    /// Add a row to a router's or switch's `load_balancer` set.
    Attach {
        /// `Logical_Router` or `Logical_Switch`.
        table: String,
        /// Its UUID.
        target: Uuid,
        /// Its name.
        target_name: String,
        /// The load balancer row.
        lb: Uuid,
        /// Its name.
        lb_name: String,
    },
    /// Remove one of our rows from a router or switch it should not be on.
    Detach {
        /// `Logical_Router` or `Logical_Switch`.
        table: String,
        /// Its UUID.
        target: Uuid,
        /// Its name.
        target_name: String,
        /// The load balancer row.
        lb: Uuid,
        /// Its name.
        lb_name: String,
    },
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Op::Create {
                uuid,
                name,
                protocol,
                vips,
                ..
            } => {
                write!(
                    f,
                    "create Load_Balancer {name} ({uuid}) protocol={protocol} vips={vips:?}"
                )
            }
            Op::Update {
                uuid,
                name,
                changes,
                ..
            } => {
                write!(f, "update Load_Balancer {name} ({uuid}):")?;
                for (c, (old, new)) in changes {
                    write!(f, " {c}: {old} -> {new};")?;
                }
                Ok(())
            }
            Op::Delete { uuid, name, .. } => write!(f, "delete Load_Balancer {name} ({uuid})"),
            Op::CreateHealthCheck {
                uuid, vip, options, ..
            } => write!(
                f,
                "create Load_Balancer_Health_Check {vip} ({uuid}) options={options:?}"
            ),
            Op::UpdateHealthCheck {
                uuid, vip, options, ..
            } => write!(
                f,
                "update Load_Balancer_Health_Check {vip} ({uuid}) options={options:?}"
            ),
            Op::Attach {
                table,
                target_name,
                lb_name,
                ..
            } => write!(f, "attach {lb_name} to {table} {target_name}"),
            Op::Detach {
                table,
                target_name,
                lb_name,
                ..
            } => write!(f, "detach {lb_name} from {table} {target_name}"),
        }
    }
}

/// The plan for one network.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// The ovnlb network.
    pub network: String,
    /// The router the rows attach to.
    #[serde(skip)]
    pub router: Option<(Uuid, String)>,
    /// The internal switch.
    #[serde(skip)]
    pub switch: Option<(Uuid, String)>,
    /// Operations, in order.
    pub ops: Vec<Op>,
    /// The UUID each desired row has once the plan is applied, in the order the rows
    /// were given (an adopted row keeps its own): what the controller records, so it
    /// never looks the rows up again.
    #[serde(skip)]
    pub uuids: Vec<Uuid>,
}

impl Plan {
    /// A plan that only deletes rows (no router or switch to guard, no rows placed).
    pub fn removal(network: impl Into<String>, ops: Vec<Op>) -> Plan {
        Plan {
            network: network.into(),
            router: None,
            switch: None,
            ops,
            uuids: Vec::new(),
        }
    }
}

/// Why a network cannot be planned: its router or switch, looked up by name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("network {}: {}", self.network(), self.reason())]
pub enum PlanError {
    /// No row of the table has the name.
    Missing {
        /// The network.
        network: String,
        /// `Logical_Router` or `Logical_Switch`.
        table: &'static str,
        /// The name looked for.
        name: String,
    },
    /// A load balancer's health checks cannot be mapped to switch ports
    /// ([`render::map_backends`]).
    Unmappable {
        /// The network.
        network: String,
        /// Why.
        message: String,
    },
    /// Several rows have it (names are not unique in NB).
    Ambiguous {
        /// The network.
        network: String,
        /// `Logical_Router` or `Logical_Switch`.
        table: &'static str,
        /// The name.
        name: String,
        /// How many rows have it.
        count: usize,
    },
}

impl PlanError {
    /// The network that cannot be planned.
    pub fn network(&self) -> &str {
        match self {
            PlanError::Missing { network, .. }
            | PlanError::Ambiguous { network, .. }
            | PlanError::Unmappable { network, .. } => network,
        }
    }

    /// What is wrong, without the network (as `/state` shows it on the network).
    pub fn reason(&self) -> String {
        match self {
            PlanError::Missing { table, name, .. } => format!("{table} \"{name}\" not found in NB"),
            PlanError::Ambiguous {
                table, name, count, ..
            } => format!("{count} {table} rows are named \"{name}\": ambiguous, nothing done"),
            PlanError::Unmappable { message, .. } => message.clone(),
        }
    }
}

/// The one row of `table` named `name` (names are not unique in NB: two is an error).
fn unique_by_name(
    view: &CacheView,
    table: &'static str,
    name: &str,
    network: &str,
) -> Result<std::sync::Arc<CacheRow>, PlanError> {
    let rows = view.find_by(table, "name", name);
    match rows.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(PlanError::Missing {
            network: network.into(),
            table,
            name: name.into(),
        }),
        many => Err(PlanError::Ambiguous {
            network: network.into(),
            table,
            name: name.into(),
            count: many.len(),
        }),
    }
}

/// The subnets of the router port peered with the network's internal switch, for an
/// `ovn` network whose config gives none.
///
/// # Errors
/// A message asking for the explicit keys when NB does not tell.
pub fn derive_subnets(
    view: &CacheView,
    net: &OvnNetwork,
) -> Result<(Option<IpNet>, Option<IpNet>), String> {
    let ask = "give ipv4.address/ipv6.address explicitly";
    let switch = unique_by_name(view, LogicalSwitch::NAME, &net.switch, &net.name)
        .map_err(|e| format!("{}: {ask}", e.reason()))?;
    let switch = LogicalSwitch::from_row(&switch).ok_or("bad Logical_Switch row")?;
    let mut found = None;
    for p in &switch.ports {
        let Some(lsp) = view
            .get(LogicalSwitchPort::NAME, p)
            .and_then(|r| LogicalSwitchPort::from_row(r))
        else {
            continue;
        };
        if lsp.kind != "router" {
            continue;
        }
        let Some(lrp_name) = lsp.options.get("router-port") else {
            continue;
        };
        if let Some(lrp) = view
            .find_by(LogicalRouterPort::NAME, "name", lrp_name)
            .first()
            .and_then(|r| LogicalRouterPort::from_row(r))
        {
            found = Some(lrp);
            break;
        }
    }
    let lrp = found.ok_or_else(|| {
        format!(
            "no router port is peered with Logical_Switch \"{}\": {ask}",
            net.switch
        )
    })?;
    let mut v4 = None;
    let mut v6 = None;
    for n in &lrp.networks {
        match n.parse::<IpNet>() {
            Ok(IpNet::V4(x)) if v4.is_none() => v4 = Some(IpNet::V4(x)),
            Ok(IpNet::V6(x)) if v6.is_none() && !x.addr().is_unicast_link_local() => {
                v6 = Some(IpNet::V6(x))
            }
            _ => {}
        }
    }
    Ok((v4, v6))
}

/// Whether a cached row already has the managed columns of `want` (no allocation).
pub fn row_matches(row: &CacheRow, want: &DesiredRow) -> bool {
    fn str_map_eq(d: &crate::ovsdb::Datum, want: &BTreeMap<String, String>) -> bool {
        let Some(pairs) = d.as_map() else {
            return false;
        };
        pairs.len() == want.len()
            && pairs.iter().zip(want).all(|((k, v), (wk, wv))| {
                k.as_str() == Some(wk.as_str()) && v.as_str() == Some(wv.as_str())
            })
    }
    let checks = row.get("health_check");
    row.get_str("name") == Some(want.name.as_str())
        && row.get_str("protocol") == Some(want.protocol.as_str())
        && str_map_eq(row.get("vips"), &want.vips)
        && str_map_eq(row.get("external_ids"), &want.external_ids)
        && str_map_eq(row.get("ip_port_mappings"), &want.ip_port_mappings)
        && str_map_eq(row.get("options"), &want.options)
        && {
            let f = row.get("selection_fields");
            f.len() == want.selection_fields.len()
                && f.atoms()
                    .zip(&want.selection_fields)
                    .all(|(a, w)| a.as_str() == Some(w.as_str()))
        }
        && checks.len() == want.health_checks.len()
        && want
            .health_checks
            .iter()
            .all(|h| checks.contains(&Atom::Uuid(h.uuid)))
}

/// Whether a cached `Load_Balancer_Health_Check` row is as `want`.
pub fn health_check_matches(row: &CacheRow, want: &DesiredHealthCheck) -> bool {
    let map = |c: &str| BTreeMap::<String, String>::from_datum(row.get(c));
    row.get_str("vip") == Some(want.vip.as_str())
        && map("options").as_ref() == Some(&want.options)
        && map("external_ids").as_ref() == Some(&want.external_ids)
}

fn text<T: std::fmt::Debug>(v: &T) -> String {
    format!("{v:?}")
}

/// What changed between an observed row and the desired one (managed columns only).
fn diff(observed: &LoadBalancer, want: &DesiredRow) -> BTreeMap<String, (String, String)> {
    let mut c = BTreeMap::new();
    if observed.name != want.name {
        c.insert("name".into(), (observed.name.clone(), want.name.clone()));
    }
    if observed.protocol.as_deref() != Some(want.protocol.as_str()) {
        c.insert(
            "protocol".into(),
            (text(&observed.protocol), want.protocol.clone()),
        );
    }
    if observed.vips != want.vips {
        c.insert("vips".into(), (text(&observed.vips), text(&want.vips)));
    }
    if observed.external_ids != want.external_ids {
        c.insert(
            "external_ids".into(),
            (text(&observed.external_ids), text(&want.external_ids)),
        );
    }
    if observed.ip_port_mappings != want.ip_port_mappings {
        c.insert(
            "ip_port_mappings".into(),
            (
                text(&observed.ip_port_mappings),
                text(&want.ip_port_mappings),
            ),
        );
    }
    if observed.options != want.options {
        c.insert(
            "options".into(),
            (text(&observed.options), text(&want.options)),
        );
    }
    if observed.selection_fields != want.selection_fields {
        c.insert(
            "selection_fields".into(),
            (
                text(&observed.selection_fields),
                text(&want.selection_fields),
            ),
        );
    }
    let checks: BTreeSet<Uuid> = want.health_checks.iter().map(|h| h.uuid).collect();
    if observed.health_check != checks {
        c.insert(
            "health_check".into(),
            (text(&observed.health_check), text(&checks)),
        );
    }
    c
}

/// A router or switch: its UUID and name.
type Target = (Uuid, String);

/// The router and switch rows of a network (only their UUID and name are needed).
fn targets(view: &CacheView, net: &OvnNetwork) -> Result<(Target, Target), PlanError> {
    let r = unique_by_name(view, LogicalRouter::NAME, &net.router, &net.name)?;
    let s = unique_by_name(view, LogicalSwitch::NAME, &net.switch, &net.name)?;
    Ok(((r.uuid, net.router.clone()), (s.uuid, net.switch.clone())))
}

fn owned_row(r: &CacheRow, owner: &str, network: &str) -> bool {
    let e = r.get("external_ids");
    e.map_get(keys::OWNER) == Some(owner) && e.map_get(keys::NETWORK) == Some(network)
}

/// Plan one network.
///
/// # Errors
/// When the router or switch is missing or ambiguous (nothing is planned then).
pub fn plan_network(
    owner: &str,
    net: &ResolvedNetwork,
    view: &CacheView,
) -> Result<Plan, PlanError> {
    let (router, switch) = targets(view, &net.net)?;
    let mut desired = render_network(owner, net);
    for row in &mut desired {
        render::map_backends(row, &net.net, view).map_err(|message| PlanError::Unmappable {
            network: net.net.name.clone(),
            message,
        })?;
    }
    let owned: Vec<&std::sync::Arc<CacheRow>> = view
        .rows(LoadBalancer::NAME)
        .filter(|r| owned_row(r, owner, &net.net.name))
        .collect();
    let refs: Vec<&DesiredRow> = desired.iter().collect();
    Ok(plan_rows(
        &net.net.name,
        &refs,
        &owned,
        view,
        router,
        switch,
    ))
}

/// The index the per-object planning uses: `Load_Balancer` rows by listen address.
pub fn listen_index() -> IndexSpec {
    IndexSpec::MapKey {
        table: LoadBalancer::NAME.into(),
        column: "external_ids".into(),
        key: keys::LISTEN.into(),
    }
}

/// `Load_Balancer` rows by each of their VIPs: how a VIP already held elsewhere is found
/// without a scan ([`foreign_vips`]).
pub fn vip_index() -> IndexSpec {
    IndexSpec::MapKeys {
        table: LoadBalancer::NAME.into(),
        column: "vips".into(),
    }
}

/// Plan some objects of one network: `objects` gives, per listen address, the rows it
/// should have (empty: the object is gone). Owned rows are found through
/// [`listen_index`], attachments by binary search: the cost follows the objects planned,
/// not the size of NB.
///
/// # Errors
/// When the router or switch is missing or ambiguous.
pub fn plan_objects(
    owner: &str,
    net: &OvnNetwork,
    objects: &[(&str, &[DesiredRow])],
    view: &CacheView,
) -> Result<Plan, PlanError> {
    let (router, switch) = targets(view, net)?;
    let index = listen_index();
    let mut desired = Vec::new();
    let mut found = Vec::new();
    for (listen, rows) in objects {
        desired.extend(rows.iter());
        found.extend(
            view.lookup(&index, &crate::ovsdb::Datum::scalar(*listen))
                .into_iter()
                .filter(|r| owned_row(r, owner, &net.name)),
        );
    }
    let owned: Vec<&std::sync::Arc<CacheRow>> = found.iter().collect();
    Ok(plan_rows(&net.name, &desired, &owned, view, router, switch))
}

/// VIPs the given rows would add to NB: those not in the row that already has the
/// row's UUID. A key whose VIPs are all in its own rows needs no check against foreign
/// rows (the common update: a backend changed).
pub fn new_vips<'r>(rows: &'r [DesiredRow], view: &CacheView) -> Vec<&'r str> {
    let mut out = Vec::new();
    for want in rows {
        let have: HashSet<&str> = view
            .get(LoadBalancer::NAME, &want.uuid)
            .and_then(|r| r.get("vips").as_map())
            .map(|m| m.iter().filter_map(|(k, _)| k.as_str()).collect())
            .unwrap_or_default();
        out.extend(
            want.vips
                .keys()
                .map(String::as_str)
                .filter(|v| !have.contains(v)),
        );
    }
    out
}

/// Of `wanted`, the VIPs already held by `Load_Balancer` rows attached to the network's
/// router or switch that `owner` does not own. Rows are found through [`vip_index`]
/// (a scan without it): the cost follows the VIPs asked about, not the size of NB.
pub fn foreign_vips<'w>(
    owner: &str,
    net: &OvnNetwork,
    wanted: &HashSet<&'w str>,
    view: &CacheView,
) -> HashSet<&'w str> {
    let mut held = HashSet::default();
    if wanted.is_empty() {
        return held;
    }
    let targets: Vec<Arc<CacheRow>> = [
        (LogicalRouter::NAME, &net.router),
        (LogicalSwitch::NAME, &net.switch),
    ]
    .into_iter()
    .flat_map(|(table, name)| view.find_by(table, "name", name))
    .collect();
    let index = vip_index();
    for vip in wanted {
        let holders = view.lookup(&index, &Datum::scalar(*vip));
        let foreign = holders.iter().any(|r| {
            r.get("external_ids").map_get(keys::OWNER) != Some(owner)
                && targets
                    .iter()
                    .any(|t| t.get("load_balancer").contains(&Atom::Uuid(r.uuid)))
        });
        if foreign {
            held.insert(*vip);
        }
    }
    held
}

/// Why the rows of one key cannot be applied, if they cannot: a row we do not own
/// already has the deterministic UUID of one of them (our owner tag was removed from
/// it), or a row we do not own on the network's router or switch already holds one of
/// their VIPs (`foreign`: [`foreign_vips`]). Neither is retried in a loop: the
/// operator has to act, and the message says how.
pub fn blocked(
    owner: &str,
    rows: &[DesiredRow],
    foreign: &HashSet<&str>,
    view: &CacheView,
) -> Option<String> {
    for want in rows {
        if let Some(r) = view.get(LoadBalancer::NAME, &want.uuid) {
            if r.get("external_ids").map_get(keys::OWNER) != Some(owner) {
                return Some(format!(
                    "NB Load_Balancer {} ({}) has the UUID of this object's row but not the owner tag {}={owner}: restore the tag (ovn-nbctl set Load_Balancer {} external_ids:{}={owner}) or delete the row",
                    r.get_str("name").unwrap_or(""),
                    want.uuid,
                    keys::OWNER,
                    want.uuid,
                    keys::OWNER,
                ));
            }
        }
        if let Some(vip) = want.vips.keys().find(|v| foreign.contains(v.as_str())) {
            return Some(format!(
                "VIP {vip} is already held by a Load_Balancer row ovnlb does not own on this network's router or switch: remove that row or choose another listen address"
            ));
        }
    }
    None
}

/// Deletes of every row of ours whose network (`ovnlb:network`, `None` when absent)
/// `remove` picks: what `ovnlb reconcile --prune` deletes (networks absent from the
/// desired state) and what the controller deletes when a network leaves the store.
pub fn plan_removal(
    owner: &str,
    remove: impl Fn(Option<&str>) -> bool,
    view: &CacheView,
) -> Vec<Op> {
    view.rows(LoadBalancer::NAME)
        .filter(|r| {
            let e = r.get("external_ids");
            e.map_get(keys::OWNER) == Some(owner) && remove(e.map_get(keys::NETWORK))
        })
        .filter_map(|r| LoadBalancer::from_row(r))
        .map(|r| Op::Delete {
            uuid: r.uuid,
            name: r.name.clone(),
            observed: r,
        })
        .collect()
}

fn plan_rows(
    network: &str,
    desired: &[&DesiredRow],
    owned: &[&std::sync::Arc<CacheRow>],
    view: &CacheView,
    router: Target,
    switch: Target,
) -> Plan {
    let mut ops = Vec::new();
    let mut claimed: HashSet<Uuid> = HashSet::default();
    let mut final_uuids = Vec::new();
    // Indexes: linear in the rows, never quadratic.
    let by_uuid: HashMap<Uuid, &CacheRow> = owned.iter().map(|r| (r.uuid, &***r)).collect();
    let desired_uuids: HashSet<Uuid> = desired.iter().map(|d| d.uuid).collect();
    let mut by_name: HashMap<&str, Vec<&CacheRow>> = HashMap::default();
    for r in owned.iter().filter(|r| !desired_uuids.contains(&r.uuid)) {
        by_name
            .entry(r.get_str("name").unwrap_or(""))
            .or_default()
            .push(r);
    }
    let typed = |r: &CacheRow| LoadBalancer::from_row(r).unwrap_or_default();
    // Health checks first: each one missing is inserted, each one that differs updated
    // in place (one referenced no more is garbage-collected by the server: the table
    // is not a root).
    for &want in desired {
        for h in &want.health_checks {
            match view.get(LoadBalancerHealthCheck::NAME, &h.uuid) {
                None => ops.push(Op::CreateHealthCheck {
                    uuid: h.uuid,
                    vip: h.vip.clone(),
                    options: h.options.clone(),
                    external_ids: h.external_ids.clone(),
                }),
                Some(r) if !health_check_matches(r, h) => ops.push(Op::UpdateHealthCheck {
                    uuid: h.uuid,
                    vip: h.vip.clone(),
                    options: h.options.clone(),
                    external_ids: h.external_ids.clone(),
                }),
                Some(_) => {}
            }
        }
    }
    for &want in desired {
        // Ours by UUID; else an owned row of the same name (adopted, UUID kept).
        let existing = by_uuid.get(&want.uuid).copied().or_else(|| {
            by_name
                .get(want.name.as_str())
                .and_then(|v| v.iter().find(|r| !claimed.contains(&r.uuid)).copied())
        });
        match existing {
            Some(r) => {
                claimed.insert(r.uuid);
                // Typed rows are built only for rows that differ.
                if !row_matches(r, want) {
                    let observed = typed(r);
                    let changes = diff(&observed, want);
                    ops.push(Op::Update {
                        uuid: r.uuid,
                        name: want.name.clone(),
                        changes,
                        row: Box::new(want.clone()),
                        observed: Box::new(observed),
                    });
                }
                final_uuids.push((r.uuid, want.name.clone()));
            }
            None => {
                ops.push(Op::Create {
                    uuid: want.uuid,
                    name: want.name.clone(),
                    protocol: want.protocol.clone(),
                    vips: want.vips.clone(),
                    external_ids: want.external_ids.clone(),
                    health_check: want.health_checks.iter().map(|h| h.uuid).collect(),
                    ip_port_mappings: want.ip_port_mappings.clone(),
                    options: want.options.clone(),
                    selection_fields: want.selection_fields.clone(),
                });
                claimed.insert(want.uuid);
                final_uuids.push((want.uuid, want.name.clone()));
            }
        }
    }
    for r in owned.iter().filter(|r| !claimed.contains(&r.uuid)) {
        let observed = typed(r);
        ops.push(Op::Delete {
            uuid: r.uuid,
            name: observed.name.clone(),
            observed,
        });
    }
    // Attachments: on the network's router and switch; on no other. Membership is a
    // binary search in the (sorted) sets: the cost does not grow with their size.
    let empty = crate::ovsdb::Datum::empty();
    for (table, (target, target_name)) in [
        (LogicalRouter::NAME, &router),
        (LogicalSwitch::NAME, &switch),
    ] {
        let attached = view
            .get(table, target)
            .map(|r| r.get("load_balancer"))
            .unwrap_or(&empty);
        for (u, n) in &final_uuids {
            if !attached.contains(&crate::ovsdb::Atom::Uuid(*u)) {
                ops.push(Op::Attach {
                    table: table.into(),
                    target: *target,
                    target_name: target_name.clone(),
                    lb: *u,
                    lb_name: n.clone(),
                });
            }
        }
        for other in view.rows(table).filter(|r| r.uuid != *target) {
            let set = other.get("load_balancer");
            for (u, n) in final_uuids
                .iter()
                .filter(|(u, _)| set.contains(&crate::ovsdb::Atom::Uuid(*u)))
            {
                ops.push(Op::Detach {
                    table: table.into(),
                    target: other.uuid,
                    target_name: other.get_str("name").unwrap_or("").into(),
                    lb: *u,
                    lb_name: n.clone(),
                });
            }
        }
    }
    Plan {
        network: network.into(),
        router: Some(router),
        switch: Some(switch),
        ops,
        uuids: final_uuids.into_iter().map(|(u, _)| u).collect(),
    }
}

#[cfg(test)]
mod tests {
    //! The planner over hand-built cache views: no server, one behaviour each.
    use super::*;
    use crate::ovsdb::Row;

    const OWNER: &str = "ovnlb";

    fn net() -> OvnNetwork {
        OvnNetwork {
            name: "ovn1".into(),
            uplink: "uplink".into(),
            router: "lr".into(),
            switch: "ls".into(),
            prefix: "ovnlb".into(),
            subnet4: None,
            subnet6: None,
            subnets_given: true,
            checker4: None,
            checker6: None,
        }
    }

    fn u(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn ids(owner: Option<&str>, network: &str, listen: &str) -> BTreeMap<String, String> {
        let mut m = BTreeMap::from([
            (keys::NETWORK.to_owned(), network.to_owned()),
            (keys::LISTEN.to_owned(), listen.to_owned()),
        ]);
        if let Some(o) = owner {
            m.insert(keys::OWNER.to_owned(), o.to_owned());
        }
        m
    }

    fn want(uuid: u128, name: &str, listen: &str) -> DesiredRow {
        DesiredRow {
            uuid: u(uuid),
            name: name.into(),
            protocol: "tcp".into(),
            vips: BTreeMap::from([(format!("{listen}:80"), "10.0.0.2:80".to_owned())]),
            external_ids: ids(Some(OWNER), "ovn1", listen),
            health_checks: Vec::new(),
            ip_port_mappings: BTreeMap::new(),
            options: BTreeMap::new(),
            selection_fields: BTreeSet::new(),
        }
    }

    /// A `Load_Balancer` row as NB would hold it.
    fn lb_row(
        uuid: u128,
        name: &str,
        vips: &[(&str, &str)],
        ids: BTreeMap<String, String>,
    ) -> CacheRow {
        let row = Row::from([
            ("name".to_owned(), Datum::scalar(name)),
            ("protocol".to_owned(), Datum::scalar("tcp")),
            (
                "vips".to_owned(),
                Datum::string_map(vips.iter().map(|(k, v)| (*k, *v))),
            ),
            ("external_ids".to_owned(), Datum::string_map(ids)),
        ]);
        CacheRow::from_row(LoadBalancer::NAME, u(uuid), row)
    }

    /// A router or switch with the given load balancers attached.
    fn target(table: &str, uuid: u128, name: &str, lbs: &[u128]) -> CacheRow {
        let row = Row::from([
            ("name".to_owned(), Datum::scalar(name)),
            (
                "load_balancer".to_owned(),
                Datum::from_atoms(lbs.iter().map(|n| Atom::Uuid(u(*n))).collect()),
            ),
        ]);
        CacheRow::from_row(table, u(uuid), row)
    }

    fn view(rows: impl IntoIterator<Item = CacheRow>) -> CacheView {
        CacheView::from_rows(vec![listen_index(), vip_index()], rows)
    }

    /// The network's router (1) and switch (2), with `lbs` attached to both.
    fn topology(lbs: &[u128]) -> Vec<CacheRow> {
        vec![
            target(LogicalRouter::NAME, 1, "lr", lbs),
            target(LogicalSwitch::NAME, 2, "ls", lbs),
        ]
    }

    fn plan(rows: &[DesiredRow], listen: &str, v: &CacheView) -> Result<Plan, PlanError> {
        plan_objects(OWNER, &net(), &[(listen, rows)], v)
    }

    #[test]
    fn an_owned_row_of_the_same_name_is_adopted_keeping_its_uuid() {
        let listen = "192.0.2.10";
        let w = want(100, "ovnlb-lb-192.0.2.10-tcp", listen);
        let mut rows = topology(&[7]);
        rows.push(lb_row(7, &w.name, &[], ids(Some(OWNER), "ovn1", listen)));
        let p = plan(std::slice::from_ref(&w), listen, &view(rows)).unwrap();
        assert_eq!(p.uuids, [u(7)], "the adopted row keeps its UUID");
        assert!(
            matches!(p.ops.as_slice(), [Op::Update { uuid, .. }] if *uuid == u(7)),
            "{:?}",
            p.ops
        );
    }

    #[test]
    fn owned_duplicates_collapse_to_one() {
        let listen = "192.0.2.11";
        let w = want(100, "ovnlb-lb-192.0.2.11-tcp", listen);
        let vip = [("192.0.2.11:80", "10.0.0.2:80")];
        let mut rows = topology(&[100, 8]);
        rows.push(lb_row(100, &w.name, &vip, ids(Some(OWNER), "ovn1", listen)));
        rows.push(lb_row(8, &w.name, &vip, ids(Some(OWNER), "ovn1", listen)));
        let p = plan(std::slice::from_ref(&w), listen, &view(rows)).unwrap();
        assert_eq!(p.uuids, [u(100)]);
        assert!(
            matches!(p.ops.as_slice(), [Op::Delete { uuid, .. }] if *uuid == u(8)),
            "{:?}",
            p.ops
        );
    }

    #[test]
    fn a_foreign_row_of_the_same_name_is_left_alone() {
        let listen = "192.0.2.12";
        let w = want(100, "ovnlb-lb-192.0.2.12-tcp", listen);
        let mut rows = topology(&[9]);
        rows.push(lb_row(
            9,
            &w.name,
            &[],
            ids(Some("someone-else"), "ovn1", listen),
        ));
        let v = view(rows);
        let p = plan(std::slice::from_ref(&w), listen, &v).unwrap();
        assert_eq!(p.uuids, [u(100)], "ours is created beside it");
        assert!(p.ops.iter().all(|o| !matches!(
            o,
            Op::Update { uuid, .. } | Op::Delete { uuid, .. } if *uuid == u(9)
        )));
        assert!(matches!(&p.ops[0], Op::Create { uuid, .. } if *uuid == u(100)));
    }

    #[test]
    fn a_row_of_ours_on_another_router_is_detached_from_it() {
        let listen = "192.0.2.13";
        let w = want(100, "ovnlb-lb-192.0.2.13-tcp", listen);
        let vip = [("192.0.2.13:80", "10.0.0.2:80")];
        let mut rows = topology(&[100]);
        rows.push(target(LogicalRouter::NAME, 3, "other-lr", &[100]));
        rows.push(lb_row(100, &w.name, &vip, ids(Some(OWNER), "ovn1", listen)));
        let p = plan(std::slice::from_ref(&w), listen, &view(rows)).unwrap();
        assert!(
            matches!(
                p.ops.as_slice(),
                [Op::Detach { target, target_name, lb, .. }]
                    if *target == u(3) && target_name == "other-lr" && *lb == u(100)
            ),
            "{:?}",
            p.ops
        );
    }

    #[test]
    fn a_missing_router_is_an_error_naming_it() {
        let listen = "192.0.2.14";
        let w = want(100, "ovnlb-lb-192.0.2.14-tcp", listen);
        let v = view([target(LogicalSwitch::NAME, 2, "ls", &[])]);
        let e = plan(std::slice::from_ref(&w), listen, &v).unwrap_err();
        assert_eq!(e.network(), "ovn1");
        assert_eq!(e.reason(), "Logical_Router \"lr\" not found in NB");
    }

    #[test]
    fn an_ambiguous_router_is_an_error_and_nothing_is_planned() {
        let listen = "192.0.2.15";
        let w = want(100, "ovnlb-lb-192.0.2.15-tcp", listen);
        let mut rows = topology(&[]);
        rows.push(target(LogicalRouter::NAME, 3, "lr", &[]));
        let e = plan(std::slice::from_ref(&w), listen, &view(rows)).unwrap_err();
        assert_eq!(
            e.reason(),
            "2 Logical_Router rows are named \"lr\": ambiguous, nothing done"
        );
    }

    #[test]
    fn a_row_already_as_desired_needs_nothing() {
        let listen = "192.0.2.16";
        let w = want(100, "ovnlb-lb-192.0.2.16-tcp", listen);
        let vip = [("192.0.2.16:80", "10.0.0.2:80")];
        let mut rows = topology(&[100]);
        rows.push(lb_row(100, &w.name, &vip, ids(Some(OWNER), "ovn1", listen)));
        let p = plan(std::slice::from_ref(&w), listen, &view(rows)).unwrap();
        assert!(p.ops.is_empty(), "{:?}", p.ops);
        assert_eq!(p.uuids, [u(100)]);
    }

    #[test]
    fn removal_deletes_only_our_rows_of_the_networks_picked() {
        let v = view([
            lb_row(1, "a", &[], ids(Some(OWNER), "gone", "192.0.2.1")),
            lb_row(2, "b", &[], ids(Some(OWNER), "kept", "192.0.2.2")),
            lb_row(3, "c", &[], ids(Some("other"), "gone", "192.0.2.3")),
        ]);
        let ops = plan_removal(OWNER, |n| n == Some("gone"), &v);
        assert!(
            matches!(ops.as_slice(), [Op::Delete { uuid, .. }] if *uuid == u(1)),
            "{ops:?}"
        );
    }
}
