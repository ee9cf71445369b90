//! One network context: an `ovn` network parsed, its subnets filled in (from NB when its
//! config gives none) and its uplink found, written once for the API, the controller,
//! `ovnlb reconcile` and `/state` ([`context`], [`ovn`]).
//!
//! What that needs of NB sits behind a small trait: whether NB is at hand, its routers
//! and switches by name, the subnets of a network derived from its router port, whether
//! rows are attached, and the session's gauges. `reconcile` implements it over the live
//! cache ([`crate::reconcile::facts`]); the API holds it as `dyn NbFacts` and never
//! reaches NB itself.

use std::future::Future;
use std::pin::Pin;

use ipnet::IpNet;
use uuid::Uuid;

use super::model::Network;
use super::validate::{self, ErrorKind, OvnNetwork, Uplink, ValidationError};

/// A kind of NB topology row a network names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// `Logical_Router` (`ovn.router`).
    Router,
    /// `Logical_Switch` (`ovn.switch`).
    Switch,
}

impl Topology {
    /// The NB table's name (as error messages name it).
    pub fn table(self) -> &'static str {
        match self {
            Topology::Router => "Logical_Router",
            Topology::Switch => "Logical_Switch",
        }
    }
}

/// The session's gauges, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NbGauges {
    /// Connected to a usable server.
    pub connected: bool,
    /// Connections made since start.
    pub connections: u64,
    /// `Load_Balancer` rows owned by the owner asked about.
    pub owned_rows: usize,
}

/// Facts of NB, read from a live view of it.
pub trait NbFacts: Send + Sync {
    /// Whether the view holds a full snapshot of NB now.
    fn ready(&self) -> bool;
    /// Resolves once [`NbFacts::ready`] (the caller bounds the wait).
    fn wait_ready(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
    /// How many rows of `what` are named `name`.
    fn named(&self, what: Topology, name: &str) -> usize;
    /// The subnets (IPv4, IPv6) of the router port peered with the network's switch.
    ///
    /// # Errors
    /// A message asking for the explicit keys when NB does not tell.
    fn derive_subnets(&self, net: &OvnNetwork) -> Result<(Option<IpNet>, Option<IpNet>), String>;
    /// Whether every one of `rows` is in the `load_balancer` column of the network's
    /// (unique) router, and of its switch.
    fn attached(&self, net: &OvnNetwork, rows: &[Uuid]) -> (bool, bool);
    /// The session's gauges, counting the rows `owner` owns.
    fn gauges(&self, owner: &str) -> NbGauges;
    /// The enabled ports of the switch named `switch` that carry `ip` (in `addresses`
    /// or `dynamic_addresses`; router, localnet and localport ports left out).
    fn ports_carrying(&self, switch: &str, ip: &std::net::IpAddr) -> Vec<String>;
    /// [`NbFacts::ports_carrying`] of each of `ips`, in order, reading the switch once.
    fn ports_carrying_each(&self, switch: &str, ips: &[std::net::IpAddr]) -> Vec<Vec<String>> {
        ips.iter()
            .map(|ip| self.ports_carrying(switch, ip))
            .collect()
    }
    /// `other_config:subnet` and `other_config:exclude_ips` of the switch named
    /// `switch` (its IPv4 IPAM), when it is unique and has them.
    fn switch_ipam(&self, _switch: &str) -> (Option<String>, Option<String>) {
        (None, None)
    }
    /// northd's version, from `NB_Global options:northd_internal_version` (`None`: NB
    /// does not say, e.g. northd never ran).
    fn northd_version(&self) -> Option<super::options::NorthdVersion> {
        None
    }
}

/// An `ovn` network ready to validate objects against.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkContext {
    /// The network, its subnets known.
    pub net: OvnNetwork,
    /// Its uplink, parsed.
    pub uplink: Uplink,
}

/// Fill in the subnets of a network whose config gives none, from `nb` (`None`: NB is
/// not at hand, which is an [`ErrorKind::Unavailable`] error for such a network).
///
/// # Errors
/// The network's subnets cannot be known.
pub fn fill_subnets(net: &mut OvnNetwork, nb: Option<&dyn NbFacts>) -> Result<(), ValidationError> {
    if net.subnets_given {
        return Ok(());
    }
    let object = format!("network {}", net.name);
    let Some(nb) = nb else {
        return Err(ValidationError {
            object,
            field: String::new(),
            message: "OVN Northbound is not reachable to derive the network's subnets: give ipv4.address/ipv6.address explicitly".into(),
            kind: ErrorKind::Unavailable,
        });
    };
    match nb.derive_subnets(net) {
        Ok((v4, v6)) => {
            net.subnet4 = v4;
            net.subnet6 = v6;
            Ok(())
        }
        Err(message) => Err(ValidationError {
            object,
            field: "config.ipv4.address".into(),
            message,
            kind: ErrorKind::Invalid,
        }),
    }
}

/// Parse the `ovn` network `n` among `all` (for its uplink), fill in its subnets, and
/// settle its health checkers' addresses ([`validate::settle_checkers`]).
///
/// # Errors
/// Every broken rule, or why its subnets cannot be known.
pub fn ovn(
    n: &Network,
    all: &[Network],
    nb: Option<&dyn NbFacts>,
) -> Result<OvnNetwork, Vec<ValidationError>> {
    let mut net = validate::parse_ovn(n, all)?;
    fill_subnets(&mut net, nb).map_err(|e| vec![e])?;
    let errors = validate::settle_checkers(&mut net);
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(net)
}

/// The context of the `ovn` network `n`: [`ovn`], and its uplink (in `all`) parsed.
///
/// # Errors
/// As [`ovn`], and every broken rule of the uplink.
pub fn context(
    n: &Network,
    all: &[Network],
    nb: Option<&dyn NbFacts>,
) -> Result<NetworkContext, Vec<ValidationError>> {
    let net = ovn(n, all, nb)?;
    // `parse_ovn` has checked that the uplink is among `all` and physical.
    let up = all.iter().find(|u| u.name == net.uplink).ok_or_else(|| {
        vec![ValidationError {
            object: format!("network {}", net.name),
            field: "config.network".into(),
            message: format!("Uplink network \"{}\" not found", net.uplink),
            kind: ErrorKind::Invalid,
        }]
    })?;
    let uplink = validate::parse_uplink(up)?;
    Ok(NetworkContext { net, uplink })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// NB as a test states it: one derivation answer, nothing else.
    struct Derives(Result<(Option<IpNet>, Option<IpNet>), String>);

    impl NbFacts for Derives {
        fn ready(&self) -> bool {
            true
        }
        fn wait_ready(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
            Box::pin(std::future::ready(()))
        }
        fn named(&self, _: Topology, _: &str) -> usize {
            1
        }
        fn derive_subnets(&self, _: &OvnNetwork) -> Result<(Option<IpNet>, Option<IpNet>), String> {
            self.0.clone()
        }
        fn attached(&self, _: &OvnNetwork, _: &[Uuid]) -> (bool, bool) {
            (false, false)
        }
        fn gauges(&self, _: &str) -> NbGauges {
            NbGauges::default()
        }
        fn ports_carrying(&self, _: &str, _: &std::net::IpAddr) -> Vec<String> {
            Vec::new()
        }
    }

    fn networks(ovn_config: &[(&str, &str)]) -> Vec<Network> {
        let net = |name: &str, kind: &str, config: &[(&str, &str)]| Network {
            name: name.into(),
            description: String::new(),
            kind: kind.into(),
            config: config
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
        };
        let mut ovn = vec![
            ("network", "uplink"),
            ("ovn.router", "r1"),
            ("ovn.switch", "s1"),
        ];
        ovn.extend_from_slice(ovn_config);
        vec![
            net("ovn1", "ovn", &ovn),
            net("uplink", "physical", &[("ipv4.routes", "192.0.2.0/24")]),
        ]
    }

    #[test]
    fn subnets_given_in_the_config_need_no_nb() {
        let all = networks(&[("ipv4.address", "10.0.0.1/24"), ("ipv6.address", "none")]);
        let c = context(&all[0], &all, None).unwrap();
        assert_eq!(c.net.subnet4, Some("10.0.0.1/24".parse().unwrap()));
        assert_eq!(c.net.subnet6, None);
        assert_eq!(c.uplink.name, "uplink");
        assert_eq!(
            c.uplink.routes,
            vec!["192.0.2.0/24".parse::<IpNet>().unwrap()]
        );
    }

    #[test]
    fn subnets_not_given_are_derived_from_nb() {
        let all = networks(&[]);
        let v4: IpNet = "10.1.0.1/24".parse().unwrap();
        let nb = Derives(Ok((Some(v4), None)));
        let c = context(&all[0], &all, Some(&nb)).unwrap();
        assert_eq!((c.net.subnet4, c.net.subnet6), (Some(v4), None));
    }

    #[test]
    fn subnets_without_nb_wait_on_nb() {
        let all = networks(&[]);
        let e = context(&all[0], &all, None).unwrap_err();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].kind, ErrorKind::Unavailable);
        assert!(
            e[0].message.contains("give ipv4.address/ipv6.address"),
            "{e:?}"
        );
    }

    #[test]
    fn subnets_nb_cannot_tell_name_the_key_to_set() {
        let all = networks(&[]);
        let nb = Derives(Err("no router port peers the switch".into()));
        let e = context(&all[0], &all, Some(&nb)).unwrap_err();
        assert_eq!(
            (e[0].field.as_str(), e[0].kind),
            ("config.ipv4.address", ErrorKind::Invalid)
        );
    }
}
