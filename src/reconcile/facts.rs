//! [`NbFacts`] over an NB session's live cache: what the API may know of NB.

use std::future::Future;
use std::pin::Pin;

use ipnet::IpNet;
use uuid::Uuid;

use crate::lb::network::{NbFacts, NbGauges, Topology};
use crate::lb::render::keys;
use crate::lb::validate::OvnNetwork;
use crate::nb::{LoadBalancer, Table};
use crate::ovsdb::{Atom, Session};

impl NbFacts for Session {
    fn ready(&self) -> bool {
        self.cache().is_ready()
    }

    fn wait_ready(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(self.cache().wait_ready())
    }

    fn named(&self, what: Topology, name: &str) -> usize {
        self.cache()
            .read(|v| v.find_by(what.table(), "name", name).len())
    }

    fn derive_subnets(&self, net: &OvnNetwork) -> Result<(Option<IpNet>, Option<IpNet>), String> {
        self.cache().read(|v| super::plan::derive_subnets(v, net))
    }

    fn attached(&self, net: &OvnNetwork, rows: &[Uuid]) -> (bool, bool) {
        self.cache().read(|v| {
            let has = |what: Topology, name: &str| {
                let targets = v.find_by(what.table(), "name", name);
                !rows.is_empty()
                    && targets.len() == 1
                    && rows
                        .iter()
                        .all(|u| targets[0].get("load_balancer").contains(&Atom::Uuid(*u)))
            };
            (
                has(Topology::Router, &net.router),
                has(Topology::Switch, &net.switch),
            )
        })
    }

    fn gauges(&self, owner: &str) -> NbGauges {
        let owned_rows = self.cache().read(|v| {
            v.rows(LoadBalancer::NAME)
                .filter(|r| r.get("external_ids").map_get(keys::OWNER) == Some(owner))
                .count()
        });
        NbGauges {
            connected: self.is_connected(),
            connections: self.connection_count(),
            owned_rows,
        }
    }
}
