//! Plan → commit → record: what both reconcilers do with a plan.
//!
//! [`transaction`] turns a plan into one guarded transaction, [`commit`] sends it and
//! says what came of it, and [`is_replannable`] is the one decision, on the error's
//! kind, of whether a refused commit is planned again from the fresh cache. The
//! controller's side is [`plan_chunk`] (the memo filter, blocked keys, the plan) and
//! [`Records`] (what NB holds of each key once a plan is applied).

use std::collections::BTreeMap;
use std::sync::Arc;

use uuid::Uuid;

use super::fence::Fence;
use super::memo::{listen_rows, topology, Rendered, Seen};
use super::plan::{self, Op, Plan, PlanError};
use crate::fasthash::{HashMap, HashSet};
use crate::lb::render::DesiredRow;
use crate::lb::validate::OvnNetwork;
use crate::nb::{LoadBalancer, LoadBalancerHealthCheck, Table};
use crate::ovsdb::{
    Atom, CacheView, Condition, DatabaseSchema, Datum, Error, Mutation, Mutator, Row, Session,
    Transaction, WaitUntil,
};
use crate::progress::Key;

/// The columns of a `Load_Balancer` row that ovnlb manages (and guards with `wait`).
fn managed_columns(lb: &LoadBalancer) -> Row {
    let mut row = lb.to_row();
    row.retain(|c, _| MANAGED.contains(&c.as_str()));
    row
}

/// The columns `managed_columns` keeps.
const MANAGED: [&str; 8] = [
    "name",
    "protocol",
    "vips",
    "external_ids",
    "health_check",
    "ip_port_mappings",
    "options",
    "selection_fields",
];

/// A `Load_Balancer_Health_Check` row's columns.
fn health_check_row(
    vip: &str,
    options: &BTreeMap<String, String>,
    external_ids: &BTreeMap<String, String>,
) -> Row {
    crate::nb::LoadBalancerHealthCheck {
        vip: vip.to_owned(),
        options: options.clone(),
        external_ids: external_ids.clone(),
        ..Default::default()
    }
    .to_row()
}

/// A `wait` that the row still has the managed columns the plan read.
fn guard(t: &mut Transaction, uuid: Uuid, observed: &LoadBalancer) {
    t.wait(
        LoadBalancer::NAME,
        vec![Condition::uuid(uuid)],
        &MANAGED,
        WaitUntil::Eq,
        vec![managed_columns(observed)],
    );
}

/// The transaction of a plan: `wait`s that the router and switch are still as named
/// and that every row updated or deleted still has what the plan read, then the
/// operations, with one mutate per router or switch for the attachments.
pub fn transaction(plan: &Plan, schema: &Arc<DatabaseSchema>) -> Transaction {
    fenced_transaction(plan, schema, None)
}

/// [`transaction`], starting with `fence`'s guard when there is one.
pub fn fenced_transaction(
    plan: &Plan,
    schema: &Arc<DatabaseSchema>,
    fence: Option<&Fence>,
) -> Transaction {
    let mut t = Transaction::with_schema(schema.clone());
    if let Some(f) = fence {
        f.guard(&mut t);
    }
    t.comment(&format!("ovnlb: network {}", plan.network));
    for (table, target) in [
        ("Logical_Router", &plan.router),
        ("Logical_Switch", &plan.switch),
    ] {
        if let Some((u, name)) = target {
            t.wait(
                table,
                vec![Condition::uuid(*u)],
                &["name"],
                WaitUntil::Eq,
                vec![Row::from([(
                    "name".to_owned(),
                    Datum::scalar(name.clone()),
                )])],
            );
        }
    }
    let mut mutations: BTreeMap<(&str, Uuid, bool), Vec<Atom>> = BTreeMap::new();
    for op in &plan.ops {
        match op {
            Op::Create {
                uuid,
                name,
                protocol,
                vips,
                external_ids,
                health_check,
                ip_port_mappings,
                options,
                selection_fields,
            } => {
                let lb = LoadBalancer {
                    uuid: *uuid,
                    name: name.clone(),
                    vips: vips.clone(),
                    protocol: Some(protocol.clone()),
                    external_ids: external_ids.clone(),
                    health_check: health_check.clone(),
                    ip_port_mappings: ip_port_mappings.clone(),
                    options: options.clone(),
                    selection_fields: selection_fields.clone(),
                };
                t.insert_with_uuid(LoadBalancer::NAME, *uuid, managed_columns(&lb));
            }
            Op::CreateHealthCheck {
                uuid,
                vip,
                options,
                external_ids,
            } => {
                t.insert_with_uuid(
                    LoadBalancerHealthCheck::NAME,
                    *uuid,
                    health_check_row(vip, options, external_ids),
                );
            }
            Op::UpdateHealthCheck {
                uuid,
                vip,
                options,
                external_ids,
            } => t.update(
                LoadBalancerHealthCheck::NAME,
                vec![Condition::uuid(*uuid)],
                health_check_row(vip, options, external_ids),
            ),
            Op::Update {
                uuid,
                row,
                observed,
                ..
            } => {
                guard(&mut t, *uuid, observed);
                t.update(
                    LoadBalancer::NAME,
                    vec![Condition::uuid(*uuid)],
                    managed_columns(&LoadBalancer::from(&**row)),
                );
            }
            Op::Delete { uuid, observed, .. } => {
                guard(&mut t, *uuid, observed);
                t.delete(LoadBalancer::NAME, vec![Condition::uuid(*uuid)]);
            }
            Op::Attach {
                table, target, lb, ..
            } => mutations
                .entry((table, *target, true))
                .or_default()
                .push(Atom::Uuid(*lb)),
            Op::Detach {
                table, target, lb, ..
            } => mutations
                .entry((table, *target, false))
                .or_default()
                .push(Atom::Uuid(*lb)),
        }
    }
    for ((table, target, insert), lbs) in mutations {
        let m = if insert {
            Mutator::Insert
        } else {
            Mutator::Delete
        };
        t.mutate(
            table,
            vec![Condition::uuid(target)],
            vec![Mutation::new("load_balancer", m, Datum::from_atoms(lbs))],
        );
    }
    t
}

/// Whether a refused commit is planned again from the fresh cache, decided on the
/// error's kind: a failed `wait` (NB changed what the plan read) or an outcome NB left
/// unknown (the connection died before the reply: after the resync the cache says
/// whether it committed). Anything else is a failure (a `duplicate uuid` among them:
/// a row we do not own holds our UUID, which the controller reports as blocked, and
/// after a resync our own row is found by its UUID instead of inserted again).
pub fn is_replannable(e: &Error) -> bool {
    e.is_conflict() || e.is_indeterminate()
}

/// What came of committing a plan.
#[derive(Debug)]
pub enum Outcome {
    /// NB holds the plan (or it had nothing to do: nothing was sent).
    Applied,
    /// Refused, and worth planning again ([`is_replannable`]).
    Replan(Error),
    /// Refused for good, or NB could not be reached.
    Failed(Error),
    /// Refused by the fence: another writer holds NB for this owner.
    Fenced(Error),
}

/// Commit a plan as one transaction ([`fenced_transaction`]); a plan with no operations
/// sends nothing.
pub async fn commit(session: &Session, plan: &Plan, fence: Option<&Fence>) -> Outcome {
    if plan.ops.is_empty() {
        return Outcome::Applied;
    }
    match session
        .transact(&fenced_transaction(plan, session.schema(), fence))
        .await
    {
        Ok(_) => Outcome::Applied,
        Err(e) if fence.is_some() && Fence::refused(&e) => Outcome::Fenced(e),
        Err(e) if is_replannable(&e) => Outcome::Replan(e),
        Err(e) => Outcome::Failed(e),
    }
}

/// A chunk of one network's keys, planned against one cache view.
#[derive(Debug)]
pub(crate) struct Planned {
    /// The keys planned, in the order their rows were given to the planner.
    pub(crate) keys: Vec<Key>,
    /// Their plan.
    pub(crate) plan: Result<Plan, PlanError>,
    /// What each key's plan read, when the plan was clean (else empty).
    pub(crate) seen: Vec<Seen>,
    /// Keys NB blocks, with why: they fail on their own.
    pub(crate) blocked: Vec<(Key, String)>,
}

/// Plan `keys` of network `net` from their rendered rows. Keys whose rows and topology
/// are as their last clean plan saw them ([`Seen`]) need nothing and are left out;
/// keys NB blocks ([`plan::blocked`]) are set apart; the rest are planned together.
pub(crate) fn plan_chunk(
    owner: &str,
    net: &OvnNetwork,
    keys: &[Key],
    rendered: &HashMap<Key, Rendered>,
    v: &CacheView,
) -> Planned {
    let topology = topology(v);
    let index = plan::listen_index();
    let rows_of = |k: &Key| rendered.get(k).map_or(&[][..], |r| r.rows.as_slice());
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
    // Only VIPs a key would add are checked against foreign rows: a key whose VIPs are
    // all in its own rows (a backend changed, a resync) costs no scan.
    let wanted: HashSet<&str> = keys
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
    let objects: Vec<(&str, &[DesiredRow])> =
        keys.iter().map(|k| (k.1.as_str(), rows_of(k))).collect();
    let plan = plan::plan_objects(owner, net, &objects, v);
    // A clean plan: remember what it read.
    let seen = match &plan {
        Ok(p) if p.ops.is_empty() => now,
        _ => Vec::new(),
    };
    Planned {
        keys,
        plan,
        seen,
        blocked,
    }
}

/// One NB row of a key as `/state` shows it: (name, UUID, protocol).
pub(crate) type NbRow = (String, Uuid, String);

/// Our NB rows and what we last wrote into them, per key. NB events whose row still
/// matches are the echo of our own commits and are ignored.
#[derive(Debug, Default)]
pub(crate) struct Records {
    /// Row → its key and what we wrote.
    applied: HashMap<Uuid, (Key, DesiredRow)>,
    /// Key → its rows (the reverse of `applied`).
    key_rows: HashMap<Key, Vec<Uuid>>,
}

impl Records {
    /// What we last wrote into a row, and its key.
    pub(crate) fn get(&self, uuid: &Uuid) -> Option<&(Key, DesiredRow)> {
        self.applied.get(uuid)
    }

    /// Every row we placed, with its key.
    pub(crate) fn rows(&self) -> impl Iterator<Item = (&Uuid, &Key)> {
        self.applied.iter().map(|(u, (k, _))| (u, k))
    }

    /// Record that NB holds `rows` of `key` under `uuids` (the plan's, in order).
    /// `nothing_done`: the plan had no operations, and then a key recorded exactly so
    /// already keeps its records (a resync allocates nothing). Returns the rows as
    /// `/state` shows them when the records changed.
    pub(crate) fn record(
        &mut self,
        key: &Key,
        rows: &[DesiredRow],
        uuids: &[Uuid],
        nothing_done: bool,
    ) -> Option<Vec<NbRow>> {
        let unchanged = nothing_done
            && match self.key_rows.get(key) {
                None => rows.is_empty(),
                Some(had) => {
                    had.len() == rows.len()
                        && had
                            .iter()
                            .zip(rows)
                            .all(|(u, r)| self.applied.get(u).is_some_and(|(_, a)| a == r))
                }
            };
        if unchanged {
            return None;
        }
        for u in self.key_rows.remove(key).unwrap_or_default() {
            self.applied.remove(&u);
        }
        let mut shown = Vec::with_capacity(rows.len());
        for (r, u) in rows.iter().zip(uuids) {
            self.applied.insert(*u, (key.clone(), r.clone()));
            shown.push((r.name.clone(), *u, r.protocol.clone()));
        }
        if !rows.is_empty() {
            self.key_rows
                .insert(key.clone(), uuids[..rows.len().min(uuids.len())].to_vec());
        }
        Some(shown)
    }

    /// Forget every row of a network.
    pub(crate) fn forget_network(&mut self, network: &str) {
        self.applied.retain(|_, (k, _)| k.0 != network);
        self.key_rows.retain(|k, _| k.0 != network);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ovsdb::{ServerError, TxnError};

    fn refused(tag: &str) -> Error {
        Error::Transaction(TxnError::new(
            Some(0),
            ServerError {
                error: tag.into(),
                details: None,
            },
        ))
    }

    #[test]
    fn replanning_is_decided_on_the_kind_of_error() {
        assert!(is_replannable(&refused("timed out")), "a failed wait");
        assert!(is_replannable(&Error::Indeterminate("closed".into())));
        assert!(!is_replannable(&refused("duplicate uuid")));
        assert!(!is_replannable(&refused("constraint violation")));
        assert!(!is_replannable(&Error::Closed), "NB away: nothing was sent");
    }
}
