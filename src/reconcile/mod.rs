//! Reconciling desired state into OVN Northbound.
//!
//! A pass resolves and validates the desired state (nothing is applied if any of it is
//! invalid), plans each network against the live cache ([`plan`]), and commits each plan
//! as one transaction guarded by `wait` operations on what the plan read. A failed guard
//! (someone changed those rows meanwhile) re-plans from the fresh cache. After applying,
//! the pass plans again: converged means nothing left to do.

pub mod controller;
pub mod facts;
pub mod plan;

use crate::fasthash::HashSet;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tracing::{info, warn};

use crate::lb::state::{resolve, DesiredState, ResolvedNetwork};
use crate::lb::validate::{Limits, ValidationError};
use crate::nb::{LoadBalancer, Table};
use crate::ovsdb::{
    Atom, Condition, DatabaseSchema, Datum, Mutation, Mutator, Row, Session, Transaction, WaitUntil,
};
use plan::{plan_network, plan_prune, Op, Plan};

/// Options of a pass.
#[derive(Debug, Clone)]
pub struct PassOptions {
    /// Owner id in `external_ids` (`ovnlb:owner`).
    pub owner: String,
    /// Plan only.
    pub dry_run: bool,
    /// Also delete our rows of networks absent from the desired state.
    pub prune: bool,
    /// Validation limits.
    pub limits: Limits,
    /// Re-plans after a failed `wait` guard before giving up.
    pub max_conflicts: usize,
}

impl Default for PassOptions {
    fn default() -> Self {
        PassOptions {
            owner: "ovnlb".into(),
            dry_run: false,
            prune: false,
            limits: Limits::default(),
            max_conflicts: 5,
        }
    }
}

/// What a pass did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PassReport {
    /// The plans (applied unless a dry run), one per network with something to do.
    pub plans: Vec<Plan>,
    /// Networks that could not be planned or applied.
    pub errors: Vec<String>,
    /// Whether NB matches the desired state afterwards (a dry run: whether it already did).
    pub converged: bool,
}

/// Why a pass did not run.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The desired state is invalid: every error, nothing applied.
    #[error("invalid desired state ({} error(s)):\n{}", .0.len(), .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<ValidationError>),
    /// NB could not be reached or failed.
    #[error(transparent)]
    Ovsdb(#[from] crate::ovsdb::Error),
}

/// The columns of a `Load_Balancer` row that ovnlb manages (and guards with `wait`).
fn managed_columns(lb: &LoadBalancer) -> Row {
    let mut row = lb.to_row();
    row.retain(|c, _| MANAGED.contains(&c.as_str()));
    row
}

/// The columns `managed_columns` keeps.
const MANAGED: [&str; 4] = ["name", "protocol", "vips", "external_ids"];

/// A `wait` that the row still has the managed columns the plan read.
fn guard(t: &mut Transaction, uuid: uuid::Uuid, observed: &LoadBalancer) {
    t.wait(
        LoadBalancer::NAME,
        vec![Condition::uuid(uuid)],
        &MANAGED,
        WaitUntil::Eq,
        vec![managed_columns(observed)],
    );
}

/// The transaction of a plan.
pub fn transaction(plan: &Plan, schema: &Arc<DatabaseSchema>) -> Transaction {
    let mut t = Transaction::with_schema(schema.clone());
    t.comment(&format!("ovnlb: network {}", plan.network));
    // The router and switch still exist, as named when planned.
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
    for op in &plan.ops {
        match op {
            Op::Create {
                uuid,
                name,
                protocol,
                vips,
                external_ids,
            } => {
                let lb = LoadBalancer {
                    uuid: *uuid,
                    name: name.clone(),
                    vips: vips.clone(),
                    protocol: Some(protocol.clone()),
                    external_ids: external_ids.clone(),
                    ..Default::default()
                };
                t.insert_with_uuid(LoadBalancer::NAME, *uuid, managed_columns(&lb));
            }
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
                    managed_columns(&LoadBalancer::from(row)),
                );
            }
            Op::Delete { uuid, observed, .. } => {
                guard(&mut t, *uuid, observed);
                t.delete(LoadBalancer::NAME, vec![Condition::uuid(*uuid)]);
            }
            // Attachments are gathered below: one mutate per router or switch.
            Op::Attach { .. } | Op::Detach { .. } => {}
        }
    }
    let mut mutations: BTreeMap<(&str, uuid::Uuid, bool), Vec<Atom>> = BTreeMap::new();
    for op in &plan.ops {
        match op {
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
            _ => {}
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

/// Resolve the desired state against the session's cache (subnets derived from NB where
/// not given).
///
/// # Errors
/// Every validation error.
pub fn resolve_with(
    session: &Session,
    state: &DesiredState,
    limits: &Limits,
) -> Result<Vec<ResolvedNetwork>, Vec<ValidationError>> {
    resolve(state, limits, Some(session))
}

fn plans(
    session: &Session,
    nets: &[ResolvedNetwork],
    opts: &PassOptions,
    errors: &mut Vec<String>,
) -> Vec<Plan> {
    let mut out = Vec::new();
    session.cache().read(|v| {
        for n in nets {
            match plan_network(&opts.owner, n, v) {
                Ok(p) if !p.ops.is_empty() => out.push(p),
                Ok(_) => {}
                Err(e) => errors.push(e.to_string()),
            }
        }
        if opts.prune {
            let known: HashSet<&str> = nets.iter().map(|n| n.net.name.as_str()).collect();
            let ops = plan_prune(&opts.owner, &known, v);
            if !ops.is_empty() {
                out.push(Plan {
                    network: "(pruned: networks absent from the desired state)".into(),
                    router: None,
                    switch: None,
                    ops,
                });
            }
        }
    });
    out
}

/// Apply one network's plan, re-planning after a failed guard.
async fn apply(
    session: &Session,
    net: Option<&ResolvedNetwork>,
    mut plan: Plan,
    opts: &PassOptions,
) -> Result<Plan, String> {
    let mut conflicts = 0;
    loop {
        let txn = transaction(&plan, session.schema());
        match session.transact(&txn).await {
            Ok(_) => {
                info!(network = %plan.network, ops = plan.ops.len(), "applied");
                return Ok(plan);
            }
            Err(e)
                if (e.is_conflict()
                    || e.txn_error().is_some_and(|t| t.error == "duplicate uuid"))
                    && conflicts < opts.max_conflicts =>
            {
                conflicts += 1;
                warn!(network = %plan.network, error = %e, "NB changed under the plan: re-planning");
                tokio::time::sleep(Duration::from_millis(50 * conflicts as u64)).await;
                let Some(net) = net else {
                    return Err(e.to_string());
                };
                plan = session
                    .cache()
                    .read(|v| plan_network(&opts.owner, net, v))
                    .map_err(|e| e.to_string())?;
                if plan.ops.is_empty() {
                    return Ok(plan);
                }
            }
            Err(e) => return Err(format!("network {}: {e}", plan.network)),
        }
    }
}

/// One pass: validate, plan, apply (unless a dry run), verify.
///
/// # Errors
/// [`ReconcileError::Invalid`] with every validation error (nothing applied).
pub async fn reconcile_pass(
    session: &Session,
    state: &DesiredState,
    opts: &PassOptions,
) -> Result<PassReport, ReconcileError> {
    session.cache().wait_ready().await;
    // Plan on everything NB had committed when the pass started.
    session.sync().await?;
    let nets = resolve_with(session, state, &opts.limits).map_err(ReconcileError::Invalid)?;
    let mut report = PassReport::default();
    let planned = plans(session, &nets, opts, &mut report.errors);
    if opts.dry_run {
        report.converged = planned.is_empty() && report.errors.is_empty();
        report.plans = planned;
        return Ok(report);
    }
    for p in planned {
        let net = nets.iter().find(|n| n.net.name == p.network);
        match apply(session, net, p, opts).await {
            Ok(p) => report.plans.push(p),
            Err(e) => report.errors.push(e),
        }
    }
    // Verify against the cache (read-your-writes: it already holds what we committed).
    let mut verify_errors = Vec::new();
    let left = plans(session, &nets, opts, &mut verify_errors);
    report.converged = left.is_empty() && report.errors.is_empty();
    Ok(report)
}
