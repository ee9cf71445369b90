//! What the controller remembers between rounds so that a resync only compares: each
//! key's rendered rows, and the versions of the live rows its last clean plan read.

use std::sync::Arc;

use crate::lb::render::{self, DesiredRow, SwitchPorts};
use crate::lb::validate::OvnNetwork;
use crate::nb::{LogicalRouter, LogicalSwitch, Table};
use crate::ovsdb::{CacheRow, CacheView, Datum, IndexSpec};

use crate::lb::model::{ForwardsPost, LoadBalancersPost};

/// A load balancer or forward as the controller keeps it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Object {
    /// A load balancer and its store revision.
    Lb(LoadBalancersPost, u64),
    /// A forward and its store revision.
    Fwd(ForwardsPost, u64),
}

impl Object {
    /// What the controller keeps of a load balancer: what renders (descriptions and
    /// `user.*` keys never reach NB, and may be megabytes).
    pub(crate) fn lb(mut o: LoadBalancersPost, revision: u64) -> Object {
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
    pub(crate) fn fwd(mut o: ForwardsPost, revision: u64) -> Object {
        o.put.description = String::new();
        o.put.config.retain(|k, _| !k.starts_with("user."));
        for p in &mut o.put.ports {
            p.description = String::new();
        }
        Object::Fwd(o, revision)
    }

    /// The store revision.
    pub(crate) fn revision(&self) -> u64 {
        match self {
            Object::Lb(_, r) | Object::Fwd(_, r) => *r,
        }
    }
}

/// A key's rendered rows, and what NB looked like when they were last found to match.
#[derive(Debug)]
pub(crate) struct Rendered {
    /// The rows, in the order the planner is given them.
    pub(crate) rows: Vec<DesiredRow>,
    /// Why the rows must not reach NB: one is over `max_row_bytes` (an object stored
    /// under a larger limit, or before there was one), or a checked backend cannot be
    /// mapped to a switch port ([`render::map_backends`]).
    pub(crate) too_big: Option<String>,
    /// Whether the rows have health checks: their mappings follow NB's switch ports,
    /// so a change to a switch port drops them.
    pub(crate) checked: bool,
    /// Set when a plan over the live cache found nothing to do for the key; dropped
    /// with the rows (their object or network changed) and on failure.
    pub(crate) seen: Option<Seen>,
}

impl Rendered {
    /// Render `object` (`None`: gone, no rows) into `net`'s rows, map their checked
    /// backends to the switch ports `ports` has, and check them against `max_row_bytes`.
    pub(crate) fn new(
        owner: &str,
        net: &OvnNetwork,
        object: Option<&Object>,
        max_row_bytes: usize,
        ports: &dyn SwitchPorts,
    ) -> Rendered {
        let mut rows = match object {
            Some(Object::Lb(lb, rev)) => render::render_load_balancer(owner, net, lb, *rev),
            Some(Object::Fwd(f, rev)) => render::render_forward(owner, net, f, *rev),
            None => Vec::new(),
        };
        let unmapped = rows
            .iter_mut()
            .find_map(|r| render::map_backends(r, net, ports).err());
        let checked = rows.iter().any(|r| !r.health_checks.is_empty());
        let too_big = unmapped.or_else(|| {
            rows.iter().find_map(|r| {
                let bytes = render::vips_bytes(r);
                (bytes > max_row_bytes).then(|| {
                    format!(
                        "Too large for OVN: the {} Load_Balancer row would hold {bytes} bytes of VIPs, more than the limit of {max_row_bytes} bytes per row (max_row_bytes); it is left out of NB until the object is shrunk",
                        r.protocol
                    )
                })
            })
        });
        Rendered {
            rows,
            too_big,
            checked,
            seen: None,
        }
    }
}

/// The live rows a clean plan read, as (row count, highest row version) of the
/// `Load_Balancer` rows under the key's listen address and of all routers and switches.
/// Every insert or modify stamps a row with a version above all others, and a delete
/// lowers the count, so while both pairs are unchanged, so is every row that plan read:
/// the key still matches without comparing its rows again. This is what keeps a
/// periodic resync cheap; any difference sends the key through the full plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seen {
    /// [`listen_rows`] of the key.
    pub(crate) rows: (usize, u64),
    /// [`topology`].
    pub(crate) topology: (usize, u64),
}

/// (count, highest version) of some rows.
pub(crate) fn versions<'a>(rows: impl Iterator<Item = &'a Arc<CacheRow>>) -> (usize, u64) {
    rows.fold((0, 0), |(n, v), r| (n + 1, v.max(r.version())))
}

/// [`Seen::topology`]: every router and switch (attachments are read from them).
pub(crate) fn topology(v: &CacheView) -> (usize, u64) {
    versions(
        v.rows(LogicalRouter::NAME)
            .chain(v.rows(LogicalSwitch::NAME)),
    )
}

/// [`Seen::rows`]: the rows under one listen address, ours or not (`index`:
/// [`super::plan::listen_index`]).
pub(crate) fn listen_rows(v: &CacheView, index: &IndexSpec, listen: &str) -> (usize, u64) {
    versions(v.lookup(index, &Datum::scalar(listen)).iter())
}
