//! [`NbFacts`] over NB's cache: over a [`CacheView`] (one snapshot, e.g. built by hand
//! with [`CacheView::from_rows`]), and over a [`Session`], whose live cache each call
//! reads as of now. What the API may know of NB.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use ipnet::IpNet;
use uuid::Uuid;

use crate::lb::health::{status_of, HealthFacts, Monitor};
use crate::lb::network::{NbFacts, NbGauges, Topology};
use crate::lb::options::NorthdVersion;
use crate::lb::render::{keys, SwitchPorts};
use crate::lb::validate::OvnNetwork;
use crate::nb::{self, southbound, LoadBalancer, LogicalSwitch, Table};
use crate::ovsdb::{Atom, CacheView, Datum, Session};

/// The rows `owner` owns.
fn owned_rows(v: &CacheView, owner: &str) -> usize {
    v.rows(LoadBalancer::NAME)
        .filter(|r| r.get("external_ids").map_get(keys::OWNER) == Some(owner))
        .count()
}

/// The ports of `switch` carrying each of `ips`, as (UUID, name), in order: one lookup
/// of each address in [`nb::port_address_index`] (a scan of the switch ports when the
/// view keeps no such index), each holder checked to be on `switch`. Router, localnet
/// and localport ports, and disabled ones, carry nothing a backend can be.
pub(crate) fn holders(v: &CacheView, switch: &str, ips: &[IpAddr]) -> Vec<Vec<(Uuid, String)>> {
    let switches = v.find_by(LogicalSwitch::NAME, "name", switch);
    let [sw] = switches.as_slice() else {
        return vec![Vec::new(); ips.len()];
    };
    let on_switch = sw.get("ports");
    let index = nb::port_address_index();
    ips.iter()
        .map(|ip| {
            v.lookup(&index, &Datum::scalar(ip.to_string()))
                .iter()
                .filter(|p| on_switch.contains(&Atom::Uuid(p.uuid)))
                .filter(|p| {
                    !matches!(
                        p.get_str("type").unwrap_or(""),
                        "router" | "localnet" | "localport"
                    ) && p.get("enabled").as_scalar().and_then(|a| a.as_bool()) != Some(false)
                })
                .filter_map(|p| Some((p.uuid, p.get_str("name")?.to_owned())))
                .collect()
        })
        .collect()
}

impl SwitchPorts for CacheView {
    fn carrying_each(&self, switch: &str, ips: &[IpAddr]) -> Vec<Vec<String>> {
        holders(self, switch, ips)
            .into_iter()
            .map(|h| h.into_iter().map(|(_, name)| name).collect())
            .collect()
    }
}

/// `NB_Global options:northd_internal_version`, as found.
pub(crate) fn northd_internal_version(v: &CacheView) -> Option<String> {
    v.rows(nb::NbGlobal::NAME)
        .find_map(|r| r.get("options").map_get("northd_internal_version"))
        .map(str::to_owned)
}

/// A snapshot: always ready, never connected.
impl NbFacts for CacheView {
    fn ready(&self) -> bool {
        true
    }

    fn wait_ready(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(std::future::ready(()))
    }

    fn named(&self, what: Topology, name: &str) -> usize {
        self.find_by(what.table(), "name", name).len()
    }

    fn derive_subnets(&self, net: &OvnNetwork) -> Result<(Option<IpNet>, Option<IpNet>), String> {
        super::plan::derive_subnets(self, net)
    }

    fn attached(&self, net: &OvnNetwork, rows: &[Uuid]) -> (bool, bool) {
        let has = |what: Topology, name: &str| {
            let targets = self.find_by(what.table(), "name", name);
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
    }

    fn ports_carrying(&self, switch: &str, ip: &IpAddr) -> Vec<String> {
        self.carrying(switch, ip)
    }

    fn ports_carrying_each(&self, switch: &str, ips: &[IpAddr]) -> Vec<Vec<String>> {
        self.carrying_each(switch, ips)
    }

    fn northd_version(&self) -> Option<NorthdVersion> {
        NorthdVersion::parse(&northd_internal_version(self)?)
    }

    fn switch_ipam(&self, switch: &str) -> (Option<String>, Option<String>) {
        let switches = self.find_by(LogicalSwitch::NAME, "name", switch);
        let [sw] = switches.as_slice() else {
            return (None, None);
        };
        let c = sw.get("other_config");
        (
            c.map_get("subnet").map(str::to_owned),
            c.map_get("exclude_ips").map(str::to_owned),
        )
    }

    fn gauges(&self, owner: &str) -> NbGauges {
        NbGauges {
            connected: false,
            connections: 0,
            owned_rows: owned_rows(self, owner),
        }
    }
}

/// The live cache, read as of each call.
impl NbFacts for Session {
    fn ready(&self) -> bool {
        self.cache().is_ready()
    }

    fn wait_ready(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(self.cache().wait_ready())
    }

    fn named(&self, what: Topology, name: &str) -> usize {
        self.cache().read(|v| v.named(what, name))
    }

    fn derive_subnets(&self, net: &OvnNetwork) -> Result<(Option<IpNet>, Option<IpNet>), String> {
        self.cache().read(|v| NbFacts::derive_subnets(v, net))
    }

    fn attached(&self, net: &OvnNetwork, rows: &[Uuid]) -> (bool, bool) {
        self.cache().read(|v| v.attached(net, rows))
    }

    fn ports_carrying(&self, switch: &str, ip: &IpAddr) -> Vec<String> {
        self.cache().read(|v| v.carrying(switch, ip))
    }

    fn ports_carrying_each(&self, switch: &str, ips: &[IpAddr]) -> Vec<Vec<String>> {
        self.cache().read(|v| v.carrying_each(switch, ips))
    }

    fn northd_version(&self) -> Option<NorthdVersion> {
        self.cache().read(|v| v.northd_version())
    }

    fn switch_ipam(&self, switch: &str) -> (Option<String>, Option<String>) {
        self.cache().read(|v| v.switch_ipam(switch))
    }

    fn gauges(&self, owner: &str) -> NbGauges {
        NbGauges {
            connected: self.is_connected(),
            connections: self.connection_count(),
            owned_rows: self.cache().read(|v| owned_rows(v, owner)),
        }
    }
}

/// The SB session's live cache of `Service_Monitor` (indexed by switch port).
/// A `Service_Monitor` row as a [`Monitor`].
fn monitor_of(r: &crate::ovsdb::CacheRow) -> Monitor {
    Monitor {
        port: r.get_str("logical_port").unwrap_or("").to_owned(),
        ip: r.get_str("ip").unwrap_or("").to_owned(),
        target_port: r
            .get("port")
            .as_scalar()
            .and_then(Atom::as_i64)
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(0),
        protocol: r.get_str("protocol").unwrap_or("tcp").to_owned(),
        status: status_of(Some(r.get_str("status").map(str::to_owned))),
    }
}

impl HealthFacts for Session {
    fn ready(&self) -> bool {
        self.cache().is_ready()
    }

    fn monitors(&self) -> Vec<Monitor> {
        let mut all: Vec<Monitor> = self.cache().read(|v| {
            v.rows(southbound::SERVICE_MONITOR)
                .map(|r| monitor_of(r))
                .collect()
        });
        all.sort();
        all
    }

    fn monitor(
        &self,
        port: &str,
        ip: &IpAddr,
        target_port: u16,
        protocol: &str,
    ) -> Option<Option<String>> {
        let index = southbound::port_index();
        self.cache().read(|v| {
            v.lookup(&index, &Datum::scalar(port))
                .iter()
                .find(|r| {
                    r.get_str("ip").and_then(|a| a.parse::<IpAddr>().ok()) == Some(*ip)
                        && r.get("port").as_scalar().and_then(Atom::as_i64)
                            == Some(i64::from(target_port))
                        // (An unset protocol is tcp.)
                        && r.get_str("protocol").unwrap_or("tcp") == protocol
                })
                .map(|r| r.get_str("status").map(str::to_owned))
        })
    }
}

/// Watch the Southbound's monitors until `cancel`: every status change is logged and
/// counted (`ovnlb_backend_health_transitions_total`).
pub async fn watch_health(
    sb: Session,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    cancel: tokio_util::sync::CancellationToken,
) {
    let mut feed = sb.cache().subscribe();
    let mut last: crate::fasthash::HashMap<Uuid, Monitor> = Default::default();
    loop {
        let changes = tokio::select! {
            c = feed.changed() => c,
            () = cancel.cancelled() => return,
        };
        // Only the rows that changed are looked at; a reload of the whole cache (the
        // first snapshot, a reconnection) compares them all.
        let seen: Vec<(Uuid, Option<Monitor>)> = sb.cache().read(|v| {
            let row = |u: &Uuid| v.get(southbound::SERVICE_MONITOR, u).map(|r| monitor_of(r));
            if changes.resync {
                let mut all: Vec<(Uuid, Option<Monitor>)> = v
                    .rows(southbound::SERVICE_MONITOR)
                    .map(|r| (r.uuid, Some(monitor_of(r))))
                    .collect();
                // Rows gone while the cache was reloaded.
                all.extend(
                    last.keys()
                        .filter(|u| v.get(southbound::SERVICE_MONITOR, u).is_none())
                        .map(|u| (*u, None)),
                );
                all
            } else {
                changes
                    .rows
                    .iter()
                    .filter(|(t, _)| t == southbound::SERVICE_MONITOR)
                    .map(|(_, u)| (*u, row(u)))
                    .collect()
            }
        });
        for (u, now) in seen {
            let Some(m) = now else {
                last.remove(&u);
                continue;
            };
            let before = last.get(&u).map(|b| b.status.clone());
            if before.as_deref().is_some_and(|b| b != m.status) {
                crate::metrics::Metrics::inc(&metrics.health_transitions);
                tracing::info!(
                    logical_port = %m.port,
                    ip = %m.ip,
                    port = m.target_port,
                    protocol = %m.protocol,
                    from = before.as_deref().unwrap_or(""),
                    to = %m.status,
                    "backend health changed"
                );
            }
            last.insert(u, m);
        }
    }
}

#[cfg(test)]
mod tests {
    //! The desired-state resolver over hand-built NB views.
    use super::*;
    use crate::lb::model::Network;
    use crate::lb::state::{resolve, DesiredNetwork, DesiredState};
    use crate::lb::validate::Limits;
    use crate::nb::{LogicalRouter, LogicalRouterPort, LogicalSwitchPort};
    use crate::ovsdb::{CacheRow, Row};

    fn u(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn row(table: &str, uuid: u128, cols: Vec<(&str, Datum)>) -> CacheRow {
        let r: Row = cols.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        CacheRow::from_row(table, u(uuid), r)
    }

    /// Router `lr` with port `lrp` (`networks`), switch `ls` whose router port peers it.
    fn sandbox(networks: &[&str]) -> CacheView {
        CacheView::from_rows(
            Vec::new(),
            [
                row(LogicalRouter::NAME, 1, vec![("name", Datum::scalar("lr"))]),
                row(
                    LogicalRouterPort::NAME,
                    2,
                    vec![
                        ("name", Datum::scalar("lrp")),
                        ("networks", Datum::set(networks.iter().copied())),
                    ],
                ),
                row(
                    LogicalSwitchPort::NAME,
                    3,
                    vec![
                        ("name", Datum::scalar("ls-lr")),
                        ("type", Datum::scalar("router")),
                        ("options", Datum::string_map([("router-port", "lrp")])),
                    ],
                ),
                row(
                    LogicalSwitch::NAME,
                    4,
                    vec![
                        ("name", Datum::scalar("ls")),
                        ("ports", Datum::set([Atom::Uuid(u(3))])),
                    ],
                ),
            ],
        )
    }

    /// Switch `ls` with ports `a` (static 10.0.0.11), `b` (dynamic 10.0.0.12), a router
    /// port on 10.0.0.1, a disabled port on 10.0.0.13; port `c` of no switch on 10.0.0.11.
    fn ports(indexes: Vec<crate::ovsdb::IndexSpec>) -> CacheView {
        let port = |uuid, name: &str, cols: Vec<(&str, Datum)>| {
            let mut cols = cols;
            cols.push(("name", Datum::scalar(name)));
            row(LogicalSwitchPort::NAME, uuid, cols)
        };
        CacheView::from_rows(
            indexes,
            [
                port(
                    11,
                    "a",
                    vec![("addresses", Datum::set(["0a:00:00:00:00:11 10.0.0.11"]))],
                ),
                port(
                    12,
                    "b",
                    vec![(
                        "dynamic_addresses",
                        Datum::scalar("0a:00:00:00:00:12 10.0.0.12"),
                    )],
                ),
                port(
                    13,
                    "r",
                    vec![
                        ("addresses", Datum::set(["router 10.0.0.1"])),
                        ("type", Datum::scalar("router")),
                    ],
                ),
                port(
                    14,
                    "off",
                    vec![
                        ("addresses", Datum::set(["0a:00:00:00:00:13 10.0.0.13"])),
                        ("enabled", Datum::scalar(false)),
                    ],
                ),
                port(
                    15,
                    "c",
                    vec![("addresses", Datum::set(["0a:00:00:00:00:15 10.0.0.11"]))],
                ),
                row(
                    LogicalSwitch::NAME,
                    4,
                    vec![
                        ("name", Datum::scalar("ls")),
                        (
                            "ports",
                            Datum::set([11, 12, 13, 14].map(|n| Atom::Uuid(u(n)))),
                        ),
                    ],
                ),
            ],
        )
    }

    #[test]
    fn the_holders_of_an_address_are_the_usable_ports_of_the_switch_with_or_without_the_index() {
        let ips: Vec<IpAddr> = [
            "10.0.0.11",
            "10.0.0.12",
            "10.0.0.1",
            "10.0.0.13",
            "10.0.0.99",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        let want = vec![
            vec![(u(11), "a".to_owned())],
            vec![(u(12), "b".to_owned())],
            vec![],
            vec![],
            vec![],
        ];
        assert_eq!(
            holders(&ports(vec![nb::port_address_index()]), "ls", &ips),
            want
        );
        assert_eq!(holders(&ports(Vec::new()), "ls", &ips), want);
        assert_eq!(
            holders(&ports(Vec::new()), "nope", &ips),
            vec![Vec::new(); 5]
        );
    }

    fn state(ovn_config: &[(&str, &str)]) -> DesiredState {
        let net = |name: &str, kind: &str, config: &[(&str, &str)]| DesiredNetwork {
            network: Network {
                name: name.into(),
                kind: kind.into(),
                config: config
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Default::default()
            },
            load_balancers: Vec::new(),
            forwards: Vec::new(),
            revisions: Default::default(),
        };
        let mut ovn = vec![
            ("network", "uplink"),
            ("ovn.router", "lr"),
            ("ovn.switch", "ls"),
        ];
        ovn.extend_from_slice(ovn_config);
        DesiredState {
            networks: vec![
                net("uplink", "physical", &[("ipv4.routes", "192.0.2.0/24")]),
                net("ovn1", "ovn", &ovn),
            ],
        }
    }

    #[test]
    fn subnets_not_given_are_those_of_the_router_port_peered_with_the_switch() {
        let v = sandbox(&["fe80::1/64", "10.0.0.1/24", "fd00::1/64"]);
        let nets = resolve(&state(&[]), &Limits::default(), Some(&v)).unwrap();
        assert_eq!(nets.len(), 1);
        assert_eq!(nets[0].net.subnet4, Some("10.0.0.1/24".parse().unwrap()));
        assert_eq!(
            nets[0].net.subnet6,
            Some("fd00::1/64".parse().unwrap()),
            "the link-local address is not the subnet"
        );
    }

    #[test]
    fn subnets_given_win_over_nb() {
        let v = sandbox(&["10.0.0.1/24"]);
        let nets = resolve(
            &state(&[("ipv4.address", "10.9.0.1/24")]),
            &Limits::default(),
            Some(&v),
        )
        .unwrap();
        assert_eq!(nets[0].net.subnet4, Some("10.9.0.1/24".parse().unwrap()));
    }

    #[test]
    fn a_switch_nb_lacks_asks_for_the_subnets() {
        let v = CacheView::from_rows(
            Vec::new(),
            [row(
                LogicalRouter::NAME,
                1,
                vec![("name", Datum::scalar("lr"))],
            )],
        );
        let e = resolve(&state(&[]), &Limits::default(), Some(&v)).unwrap_err();
        assert!(
            e.iter()
                .any(|e| e.message.contains("Logical_Switch \"ls\" not found")
                    && e.message.contains("give ipv4.address/ipv6.address")),
            "{e:?}"
        );
    }

    #[test]
    fn a_switch_with_no_router_port_asks_for_the_subnets() {
        let v = CacheView::from_rows(
            Vec::new(),
            [row(
                LogicalSwitch::NAME,
                4,
                vec![("name", Datum::scalar("ls"))],
            )],
        );
        let e = resolve(&state(&[]), &Limits::default(), Some(&v)).unwrap_err();
        assert!(
            e.iter()
                .any(|e| e.message.contains("no router port is peered")),
            "{e:?}"
        );
    }
}
