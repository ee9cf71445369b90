//! What the controller remembers between rounds so that a resync only compares: each
//! key's rendered rows, and the versions of the live rows its last clean plan read.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use uuid::Uuid;

use crate::fasthash::HashMap;
use crate::lb::render::{self, DesiredRow, SwitchPorts};
use crate::lb::validate::OvnNetwork;
use crate::nb::{LogicalRouter, LogicalSwitch, Table};
use crate::ovsdb::{CacheRow, CacheView, Datum, IndexSpec};
use crate::progress::Key;

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

/// NB's switch ports over a view, noting what a render asked and which ports answered
/// (for [`PortReaders::record`]).
pub(crate) struct Recording<'a> {
    view: &'a CacheView,
    asked: RefCell<Vec<IpAddr>>,
    answered: RefCell<Vec<Uuid>>,
}

impl<'a> Recording<'a> {
    pub(crate) fn new(view: &'a CacheView) -> Recording<'a> {
        Recording {
            view,
            asked: RefCell::default(),
            answered: RefCell::default(),
        }
    }

    /// The addresses asked for and the ports that carried one of them.
    pub(crate) fn into_parts(self) -> (Vec<IpAddr>, Vec<Uuid>) {
        (self.asked.into_inner(), self.answered.into_inner())
    }
}

impl SwitchPorts for Recording<'_> {
    fn carrying_each(&self, switch: &str, ips: &[IpAddr]) -> Vec<Vec<String>> {
        let found = super::facts::holders(self.view, switch, ips);
        self.asked.borrow_mut().extend_from_slice(ips);
        let mut answered = self.answered.borrow_mut();
        found
            .into_iter()
            .map(|h| {
                h.into_iter()
                    .map(|(uuid, name)| {
                        answered.push(uuid);
                        name
                    })
                    .collect()
            })
            .collect()
    }
}

/// Which checked keys read which switch ports when they were last rendered: a change to
/// a switch port re-renders only the keys it answered before or that asked for an
/// address it carries now, not every checked key with a pass over every port.
/// (The readers of an address or port are kept in a `Vec`: almost always one key, where
/// a `BTreeSet` would allocate a whole node per address.)
#[derive(Debug, Default)]
pub(crate) struct PortReaders {
    of_key: HashMap<Key, (Vec<IpAddr>, Vec<Uuid>)>,
    by_ip: HashMap<IpAddr, Vec<Key>>,
    by_port: HashMap<Uuid, Vec<Key>>,
}

impl PortReaders {
    /// `key` was rendered asking for `asked` and answered by `answered` (replacing what
    /// it read before).
    pub(crate) fn record(&mut self, key: &Key, mut asked: Vec<IpAddr>, mut answered: Vec<Uuid>) {
        self.forget(key);
        if asked.is_empty() && answered.is_empty() {
            return;
        }
        asked.sort_unstable();
        asked.dedup();
        answered.sort_unstable();
        answered.dedup();
        for ip in &asked {
            self.by_ip.entry(*ip).or_default().push(key.clone());
        }
        for u in &answered {
            self.by_port.entry(*u).or_default().push(key.clone());
        }
        self.of_key.insert(key.clone(), (asked, answered));
    }

    /// `key` reads no switch port (gone, or rendered without checks).
    pub(crate) fn forget(&mut self, key: &Key) {
        let Some((asked, answered)) = self.of_key.remove(key) else {
            return;
        };
        fn drop_from<K: std::hash::Hash + Eq>(m: &mut HashMap<K, Vec<Key>>, k: K, key: &Key) {
            if let Some(keys) = m.get_mut(&k) {
                keys.retain(|x| x != key);
                if keys.is_empty() {
                    m.remove(&k);
                }
            }
        }
        for ip in asked {
            drop_from(&mut self.by_ip, ip, key);
        }
        for u in answered {
            drop_from(&mut self.by_port, u, key);
        }
    }

    /// The keys a change to switch port `port`, now carrying `carries`, may re-map.
    pub(crate) fn readers(&self, port: &Uuid, carries: &[IpAddr]) -> BTreeSet<Key> {
        let mut out: BTreeSet<Key> = self
            .by_port
            .get(port)
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        for ip in carries {
            if let Some(keys) = self.by_ip.get(ip) {
                out.extend(keys.iter().cloned());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(l: &str) -> Key {
        ("net".to_owned(), l.to_owned())
    }

    #[test]
    fn a_port_is_read_by_the_keys_it_answered_and_those_asking_what_it_carries() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let mut r = PortReaders::default();
        r.record(&key("k1"), vec![ip("10.0.0.11")], vec![a]);
        r.record(&key("k2"), vec![ip("10.0.0.12")], vec![]);
        assert_eq!(r.readers(&a, &[]), BTreeSet::from([key("k1")]));
        assert_eq!(
            r.readers(&b, &[ip("10.0.0.12")]),
            BTreeSet::from([key("k2")])
        );
        assert!(r.readers(&b, &[ip("10.0.0.99")]).is_empty());
        // Rendered again with other backends: what it read before is forgotten.
        r.record(&key("k1"), vec![ip("10.0.0.13")], vec![b]);
        assert!(r.readers(&a, &[ip("10.0.0.11")]).is_empty());
        r.forget(&key("k1"));
        r.forget(&key("k2"));
        assert!(r.by_ip.is_empty() && r.by_port.is_empty() && r.of_key.is_empty());
    }
}
