//! Reconciling desired state into OVN Northbound.
//!
//! A pass resolves and validates the desired state (nothing is applied if any of it is
//! invalid), plans each network against the live cache ([`plan`]), and commits each plan
//! as one transaction guarded by `wait` operations on what the plan read. A failed guard
//! (someone changed those rows meanwhile) re-plans from the fresh cache. After applying,
//! the pass plans again: converged means nothing left to do.

pub mod apply;
pub mod controller;
pub mod election;
pub mod facts;
pub mod fence;
mod memo;
pub mod plan;
mod schedule;

pub use apply::transaction;

use crate::fasthash::HashSet;
use std::time::Duration;

use serde::Serialize;
use tracing::{info, warn};

use crate::lb::state::{resolve, DesiredState, ResolvedNetwork};
use crate::lb::validate::{Limits, ValidationError};
use crate::ovsdb::Session;
use apply::Outcome;
use plan::{plan_network, plan_removal, Plan, PlanError};

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

/// Why a network's or a key's rows did not reach NB.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The network cannot be planned (its router or switch missing or ambiguous).
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// NB blocks the key: a row ovnlb does not own holds the UUID or a VIP of one of its
    /// rows. The message says what the operator has to do; it is not retried in a loop.
    #[error("{0}")]
    Blocked(String),
    /// One of the key's rows would be larger than `max_row_bytes`.
    #[error("{0}")]
    TooBig(String),
    /// NB refused the network's commit, or its outcome is unknown.
    #[error("network {network}: {source}")]
    Commit {
        /// The network.
        network: String,
        /// NB's answer.
        #[source]
        source: crate::ovsdb::Error,
    },
}

impl Error {
    /// The OVSDB error under it, if NB answered.
    pub fn ovsdb(&self) -> Option<&crate::ovsdb::Error> {
        match self {
            Error::Commit { source, .. } => Some(source),
            _ => None,
        }
    }
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
            let absent = |n: Option<&str>| !n.is_some_and(|n| known.contains(n));
            let ops = plan_removal(&opts.owner, absent, v);
            if !ops.is_empty() {
                out.push(Plan::removal(
                    "(pruned: networks absent from the desired state)",
                    ops,
                ));
            }
        }
    });
    out
}

/// Apply one network's plan, re-planning from the fresh cache when NB's answer is
/// re-plannable ([`apply::is_replannable`]), at most `max_conflicts` times.
async fn apply(
    session: &Session,
    net: Option<&ResolvedNetwork>,
    mut plan: Plan,
    opts: &PassOptions,
) -> Result<Plan, Error> {
    let mut conflicts = 0;
    loop {
        let commit_error = |source| Error::Commit {
            network: plan.network.clone(),
            source,
        };
        match apply::commit(session, &plan, None).await {
            Outcome::Applied => {
                info!(network = %plan.network, ops = plan.ops.len(), "applied");
                return Ok(plan);
            }
            Outcome::Replan(e) if conflicts < opts.max_conflicts => {
                conflicts += 1;
                warn!(network = %plan.network, error = %e, "NB changed under the plan: re-planning");
                tokio::time::sleep(Duration::from_millis(50 * conflicts as u64)).await;
                let Some(net) = net else {
                    return Err(commit_error(e));
                };
                // Plan on what NB holds now (after an unknown outcome: whether it
                // committed).
                session.sync().await.map_err(commit_error)?;
                plan = session
                    .cache()
                    .read(|v| plan_network(&opts.owner, net, v))?;
                if plan.ops.is_empty() {
                    return Ok(plan);
                }
            }
            Outcome::Replan(e) | Outcome::Failed(e) | Outcome::Fenced(e) => {
                return Err(commit_error(e))
            }
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
            Err(e) => report.errors.push(e.to_string()),
        }
    }
    // Verify against the cache (read-your-writes: it already holds what we committed).
    let mut verify_errors = Vec::new();
    let left = plans(session, &nets, opts, &mut verify_errors);
    report.converged = left.is_empty() && report.errors.is_empty();
    Ok(report)
}
