//! Health checks: a load balancer's `healthcheck*` keys (Incus's names, parsing and
//! defaults), and the checker's source address of an `ovn` network (`ipv4.` and
//! `ipv6.healthcheck.address`, by default the second-to-last address of the internal
//! subnet, Incus's rule). Pure: what NB's switch ports say is asked of the caller.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use super::model::{Config, LoadBalancersPost};
use super::network::NbFacts;
use super::render::{self, SwitchPorts};
use super::validate::{ErrorKind, OvnNetwork, ValidationError};

/// The switch `healthcheck`.
pub const ENABLE: &str = "healthcheck";

/// The numeric keys, each with its default (applied when unset or `0`) and the largest
/// value OVN can hold: ovn-controller reads the options with `smap_get_int` (an `int`)
/// and multiplies interval and timeout by 1000 into an `int`.
const NUMBERS: [(&str, u32, u32); 4] = [
    ("healthcheck.interval", 10, 2_147_483),
    ("healthcheck.timeout", 30, 2_147_483),
    ("healthcheck.success_count", 3, i32::MAX as u32),
    ("healthcheck.failure_count", 3, i32::MAX as u32),
];

/// What a load balancer's checks probe with: seconds between probes, seconds to wait for
/// an answer, and how many answers (failures) in a row make a backend online (offline).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HealthCheck {
    /// `healthcheck.interval`, seconds.
    pub interval: u32,
    /// `healthcheck.timeout`, seconds.
    pub timeout: u32,
    /// `healthcheck.success_count`.
    pub success_count: u32,
    /// `healthcheck.failure_count`.
    pub failure_count: u32,
}

impl Default for HealthCheck {
    /// Incus's defaults: 10 / 30 / 3 / 3.
    fn default() -> Self {
        HealthCheck {
            interval: NUMBERS[0].1,
            timeout: NUMBERS[1].1,
            success_count: NUMBERS[2].1,
            failure_count: NUMBERS[3].1,
        }
    }
}

impl HealthCheck {
    /// The options of its NB `Load_Balancer_Health_Check` rows.
    pub fn options(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("interval".to_owned(), self.interval.to_string()),
            ("timeout".to_owned(), self.timeout.to_string()),
            ("success_count".to_owned(), self.success_count.to_string()),
            ("failure_count".to_owned(), self.failure_count.to_string()),
        ])
    }
}

/// Whether `k` is one of the health-check keys (or claims to be: `healthcheck.*`).
pub fn is_key(k: &str) -> bool {
    k == ENABLE || k.starts_with("healthcheck.")
}

/// Incus's booleans: `true/false/yes/no/1/0/on/off`, any case; `""` is unset.
fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "" | "false" | "no" | "0" | "off" => Some(false),
        "true" | "yes" | "1" | "on" => Some(true),
        _ => None,
    }
}

/// A load balancer's checks from its config: `None` while `healthcheck` is off (the
/// numeric keys are still checked). Every other `healthcheck.*` key is refused.
///
/// # Errors
/// Each broken rule as (field, message).
pub fn parse(config: &Config) -> Result<Option<HealthCheck>, Vec<(String, String)>> {
    let mut errors = Vec::new();
    let mut on = false;
    let mut numbers = [0u32; 4];
    for (k, v) in config.iter().filter(|(k, _)| is_key(k)) {
        let field = format!("config.{k}");
        if k == ENABLE {
            match parse_bool(v.trim()) {
                Some(b) => on = b,
                None => errors.push((
                    field,
                    format!("Invalid value for \"{k}\": \"{v}\" is not a boolean (true or false)"),
                )),
            }
            continue;
        }
        let Some(i) = NUMBERS.iter().position(|(name, _, _)| name == k) else {
            errors.push((field, format!("Invalid option \"{k}\"")));
            continue;
        };
        let (_, default, most) = NUMBERS[i];
        let v = v.trim();
        if v.is_empty() {
            numbers[i] = default;
            continue;
        }
        if !v.bytes().all(|b| b.is_ascii_digit()) {
            errors.push((
                field,
                format!("Invalid value for \"{k}\": \"{v}\" is not an unsigned integer"),
            ));
            continue;
        }
        match v.parse::<u32>() {
            Ok(0) => numbers[i] = default,
            Ok(n) if n > most => errors.push((
                field,
                format!(
                    "Invalid value for \"{k}\": {n} is more than OVN can hold (at most {most})"
                ),
            )),
            Ok(n) => numbers[i] = n,
            Err(_) => errors.push((
                field,
                format!("Invalid value for \"{k}\": \"{v}\" is not an unsigned 32-bit integer"),
            )),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if !on {
        return Ok(None);
    }
    let or_default = |i: usize| {
        if numbers[i] == 0 {
            NUMBERS[i].1
        } else {
            numbers[i]
        }
    };
    Ok(Some(HealthCheck {
        interval: or_default(0),
        timeout: or_default(1),
        success_count: or_default(2),
        failure_count: or_default(3),
    }))
}

/// The default checker address of a subnet: its second-to-last address (10.0.0.254 in
/// 10.0.0.0/24, `…:ffff:ffff:ffff:fffe` in a /64). `None` when the subnet has no room
/// for it beside the router's address (a /31, /32, /127 or /128).
pub fn default_checker(subnet: &IpNet) -> Option<IpAddr> {
    if subnet.max_prefix_len() - subnet.prefix_len() < 2 {
        return None;
    }
    Some(match subnet.broadcast() {
        IpAddr::V4(b) => IpAddr::V4(Ipv4Addr::from(u32::from(b) - 1)),
        IpAddr::V6(b) => IpAddr::V6(Ipv6Addr::from(u128::from(b) - 1)),
    })
}

/// Whether `ip` can be the checker of `subnet` (whose address is the router's): inside
/// it, neither its network nor its broadcast address, not the router's.
///
/// # Errors
/// Why not.
pub fn check_checker(ip: &IpAddr, subnet: &IpNet) -> Result<(), String> {
    if !subnet.contains(ip) {
        return Err(format!(
            "{ip} is not in the network's subnet {}",
            subnet.trunc()
        ));
    }
    if *ip == subnet.addr() {
        return Err(format!("{ip} is the router's address"));
    }
    if *ip == subnet.network() || (ip.is_ipv4() && *ip == subnet.broadcast()) {
        return Err(format!("{ip} is not a host address of {}", subnet.trunc()));
    }
    Ok(())
}

/// Why the IPv4 checker `checker` of a switch whose `other_config` has `subnet` (OVN's
/// IPAM hands out its addresses) and `exclude_ips` may be taken by an instance: it is
/// not in `exclude_ips` (`None`: the switch has no IPAM, or the address is excluded).
/// ovnlb never writes `exclude_ips` (the switch is not ours); the operator adds it.
pub fn checker_unreserved(
    checker: &IpAddr,
    subnet: Option<&str>,
    exclude_ips: Option<&str>,
) -> Option<String> {
    let IpAddr::V4(c) = checker else {
        return None;
    };
    subnet.filter(|s| !s.trim().is_empty())?;
    let excluded = exclude_ips.unwrap_or("").split_whitespace().any(|t| {
        let (a, b) = t.split_once("..").unwrap_or((t, t));
        match (a.parse::<Ipv4Addr>(), b.parse::<Ipv4Addr>()) {
            (Ok(a), Ok(b)) => a <= *c && *c <= b,
            _ => false,
        }
    });
    (!excluded).then(|| {
        format!("the health-check address {c} is not in the switch's other_config:exclude_ips: OVN's IPAM may give it to an instance, whose traffic the checks would then take; add it there")
    })
}

/// [`checker_unreserved`] of `net`'s IPv4 checker on its switch as `nb` has it.
pub fn checker_warnings(net: &OvnNetwork, nb: &dyn NbFacts) -> Vec<String> {
    let Some(c) = net.checker4 else {
        return Vec::new();
    };
    let (subnet, exclude) = nb.switch_ipam(&net.switch);
    checker_unreserved(&c, subnet.as_deref(), exclude.as_deref())
        .into_iter()
        .collect()
}

/// The `ip_port_mappings` key of a backend: the canonical address, IPv6 bracketed.
pub fn mapping_key(ip: &IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    }
}

/// The `ip_port_mappings` value: `<switch port>:<checker>`, IPv6 bracketed.
pub fn mapping_value(port: &str, checker: &IpAddr) -> String {
    format!("{port}:{}", mapping_key(checker))
}

/// The rules a checked load balancer must meet against NB's switch ports, when NB is
/// at hand (else the controller finds the same at apply time, and `/state` shows it):
/// every backend on exactly one enabled switch port of the internal switch, a checker
/// address in every backend's family, held by no switch port.
pub fn check_with_nb(
    lb: &LoadBalancersPost,
    net: &OvnNetwork,
    nb: &dyn NbFacts,
) -> Vec<ValidationError> {
    let object = format!(
        "load balancer {} of network {}",
        lb.listen_address, net.name
    );
    let error = |field: &str, message: String| ValidationError {
        object: object.clone(),
        field: field.into(),
        message,
        kind: ErrorKind::Invalid,
    };
    if !matches!(parse(&lb.put.config), Ok(Some(_))) {
        return Vec::new();
    }
    struct Ports<'a>(&'a dyn NbFacts);
    impl SwitchPorts for Ports<'_> {
        fn carrying_each(&self, switch: &str, ips: &[IpAddr]) -> Vec<Vec<String>> {
            self.0.ports_carrying_each(switch, ips)
        }
    }
    let mut out = Vec::new();
    for (family, checker) in [("ipv4", net.checker4), ("ipv6", net.checker6)] {
        let Some(c) = checker else { continue };
        let holders = nb.ports_carrying(&net.switch, &c);
        if !holders.is_empty() {
            out.push(error(
                "config.healthcheck",
                format!(
                    "The health checker address {c} of network {} is held by logical switch port {}: set {family}.healthcheck.address on the network to an unused address",
                    net.name,
                    holders.join(", ")
                ),
            ));
        }
    }
    for mut row in render::render_load_balancer("", net, lb, 0) {
        if let Err(why) = render::map_backends(&mut row, net, &Ports(nb)) {
            out.push(error("backends", why));
            break;
        }
    }
    out
}

/// The backends (`IP:port`, protocol) a checked load balancer probes.
fn probed(lb: &LoadBalancersPost, net: &OvnNetwork) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for row in render::render_load_balancer("", net, lb, 0) {
        for backends in row.vips.values() {
            for b in backends.split(',') {
                let p = (b.to_owned(), row.protocol.clone());
                if !out.contains(&p) {
                    out.push(p);
                }
            }
        }
    }
    out
}

/// SB keeps one monitor per backend (switch port, address, target port, protocol), its
/// options those of whichever load balancer northd reads last: a backend checked by
/// `lb` may not be checked by another load balancer of the network with other options.
pub fn check_shared_backends(
    lb: &LoadBalancersPost,
    others: &[LoadBalancersPost],
    net: &OvnNetwork,
) -> Vec<ValidationError> {
    let Ok(Some(mine)) = parse(&lb.put.config) else {
        return Vec::new();
    };
    let ours = probed(lb, net);
    let mut out = Vec::new();
    for o in others
        .iter()
        .filter(|o| o.listen_address != lb.listen_address)
    {
        let Ok(Some(theirs)) = parse(&o.put.config) else {
            continue;
        };
        if theirs == mine {
            continue;
        }
        if let Some((b, proto)) = probed(o, net).into_iter().find(|p| ours.contains(p)) {
            out.push(ValidationError {
                object: format!("load balancer {} of network {}", lb.listen_address, net.name),
                field: "config.healthcheck".into(),
                message: format!(
                    "Backend {b} ({proto}) is health-checked by load balancer {} with other options: OVN keeps one monitor per backend, so both must use the same healthcheck.* values",
                    o.listen_address
                ),
                kind: ErrorKind::Invalid,
            });
            break;
        }
    }
    out
}

/// A backend monitor's status as `/state` reports it: SB's `online`, `offline` and
/// `error` as they are; `pending` for a monitor never probed (OVN 23.03 sends it
/// traffic); `unknown` when there is no monitor (no switch port carries the backend, or
/// it was added since the last reconcile: OVN sends it no traffic).
pub fn status_of(monitor: Option<Option<String>>) -> String {
    match monitor {
        None => "unknown".into(),
        Some(None) => "pending".into(),
        Some(Some(s)) if s.is_empty() => "pending".into(),
        Some(Some(s)) => s,
    }
}

/// One backend monitor of the Southbound, as `/metrics` shows it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Monitor {
    /// The switch port.
    pub port: String,
    /// The backend's address.
    pub ip: String,
    /// The backend's (target) port.
    pub target_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// [`status_of`] it.
    pub status: String,
}

/// What OVN Southbound says of backend monitors, from a live view of it.
pub trait HealthFacts: Send + Sync {
    /// Whether the view holds a full snapshot of the Southbound now.
    fn ready(&self) -> bool;
    /// Every monitor, sorted.
    fn monitors(&self) -> Vec<Monitor>;
    /// The monitor of (switch port, address, target port, protocol): `None` when there
    /// is no such row, else its status (`None` while never probed).
    fn monitor(
        &self,
        port: &str,
        ip: &IpAddr,
        target_port: u16,
        protocol: &str,
    ) -> Option<Option<String>>;
}

/// One backend's health, as Incus shapes it (plus the target port).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BackendHealth {
    /// The backend's address (canonical).
    pub address: String,
    /// One entry per listen port of every port spec that sends to it.
    pub ports: Vec<PortHealth>,
}

/// One (protocol, listen port) of a backend.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PortHealth {
    /// The port spec's protocol.
    pub protocol: String,
    /// The listen port.
    pub port: u16,
    /// The backend's port it maps to: what the monitor probes.
    pub target_port: u16,
    /// [`status_of`] its monitor.
    pub status: String,
}

/// The health of every backend of `lb`, keyed by backend name: each monitor matched on
/// (switch port, address, target port, protocol), never on the listen port. The switch
/// port is what `nb` says carries the address now (`None`: NB not at hand, every status
/// `unknown`).
pub fn backend_health(
    lb: &LoadBalancersPost,
    net: &OvnNetwork,
    nb: Option<&dyn NbFacts>,
    sb: &dyn HealthFacts,
) -> BTreeMap<String, BackendHealth> {
    let mut out = BTreeMap::new();
    // The switch's ports are read once for every backend.
    let ips: Vec<IpAddr> = lb
        .put
        .backends
        .iter()
        .filter_map(|b| b.target_address.parse().ok())
        .collect();
    let carrying = nb.map(|nb| nb.ports_carrying_each(&net.switch, &ips));
    for b in &lb.put.backends {
        let Ok(ip) = b.target_address.parse::<IpAddr>() else {
            continue;
        };
        let port = carrying.as_ref().and_then(|all| {
            let found = &all[ips.iter().position(|a| *a == ip)?];
            (found.len() == 1).then(|| found[0].clone())
        });
        let targets = super::ports::targets(&b.target_port);
        let mut ports = Vec::new();
        for p in lb
            .put
            .ports
            .iter()
            .filter(|p| p.target_backend.contains(&b.name))
        {
            let Ok(r) = super::ports::parse_ports(&p.listen_port) else {
                continue;
            };
            for (i, lp) in super::ports::expand(&r).into_iter().enumerate() {
                // As rendered.
                let Some(tp) = super::ports::target_port(&targets, i, lp) else {
                    continue;
                };
                let monitor = port
                    .as_deref()
                    .and_then(|lsp| sb.monitor(lsp, &ip, tp, &p.protocol));
                ports.push(PortHealth {
                    protocol: p.protocol.clone(),
                    port: lp,
                    target_port: tp,
                    status: status_of(monitor),
                });
            }
        }
        out.insert(
            b.name.clone(),
            BackendHealth {
                address: ip.to_string(),
                ports,
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checker_outside_exclude_ips_of_an_ipam_switch_is_warned_of() {
        let c: IpAddr = "10.0.0.254".parse().unwrap();
        let warn = |subnet, ex| checker_unreserved(&c, subnet, ex).is_some();
        assert!(warn(Some("10.0.0.0/24"), None));
        assert!(warn(
            Some("10.0.0.0/24"),
            Some("10.0.0.1 10.0.0.2..10.0.0.20")
        ));
        assert!(!warn(
            Some("10.0.0.0/24"),
            Some("10.0.0.1 10.0.0.250..10.0.0.254")
        ));
        assert!(!warn(Some("10.0.0.0/24"), Some("10.0.0.254")));
        assert!(!warn(None, None), "no IPAM, nothing hands it out");
        assert!(
            checker_unreserved(&"fd00::fffe".parse().unwrap(), Some("10.0.0.0/24"), None).is_none()
        );
    }

    fn cfg(pairs: &[(&str, &str)]) -> Config {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn checks_are_off_unless_enabled_and_take_incus_defaults() {
        assert_eq!(parse(&cfg(&[])).unwrap(), None);
        assert_eq!(parse(&cfg(&[("healthcheck", "false")])).unwrap(), None);
        assert_eq!(parse(&cfg(&[("healthcheck", "")])).unwrap(), None);
        assert_eq!(
            parse(&cfg(&[("healthcheck", "TRUE")])).unwrap(),
            Some(HealthCheck::default())
        );
        let hc = parse(&cfg(&[
            ("healthcheck", "on"),
            ("healthcheck.interval", "2"),
            ("healthcheck.timeout", "0"),
            ("healthcheck.success_count", ""),
            ("healthcheck.failure_count", "5"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            hc,
            HealthCheck {
                interval: 2,
                timeout: 30,
                success_count: 3,
                failure_count: 5
            }
        );
        assert_eq!(hc.options()["interval"], "2");
    }

    #[test]
    fn values_ovn_cannot_hold_and_unknown_keys_are_refused() {
        for (k, v, why) in [
            ("healthcheck", "maybe", "not a boolean"),
            ("healthcheck.interval", "-1", "not an unsigned integer"),
            ("healthcheck.interval", "+5", "not an unsigned integer"),
            ("healthcheck.interval", "1.5", "not an unsigned"),
            (
                "healthcheck.timeout",
                "2147484",
                "more than OVN can hold (at most 2147483)",
            ),
            ("healthcheck.failure_count", "4294967296", "32-bit"),
            (
                "healthcheck.success_count",
                "2147483648",
                "at most 2147483647",
            ),
            (
                "healthcheck.probe",
                "1",
                "Invalid option \"healthcheck.probe\"",
            ),
        ] {
            let e = parse(&cfg(&[("healthcheck", "true"), (k, v)])).unwrap_err();
            assert_eq!(e.len(), 1, "{k}={v}: {e:?}");
            assert_eq!(e[0].0, format!("config.{k}"));
            assert!(e[0].1.contains(why), "{k}={v}: {}", e[0].1);
        }
        assert!(parse(&cfg(&[("healthcheck.timeout", "2147483")])).is_ok());
    }

    #[test]
    fn the_default_checker_is_the_second_to_last_address() {
        let c = |s: &str| default_checker(&s.parse().unwrap()).map(|a| a.to_string());
        assert_eq!(c("10.0.0.1/24").as_deref(), Some("10.0.0.254"));
        assert_eq!(c("10.1.2.3/16").as_deref(), Some("10.1.255.254"));
        assert_eq!(
            c("fd00::1/64").as_deref(),
            Some("fd00::ffff:ffff:ffff:fffe")
        );
        assert_eq!(c("10.0.0.1/30").as_deref(), Some("10.0.0.2"));
        assert_eq!(c("10.0.0.1/31"), None);
    }

    #[test]
    fn a_checker_must_be_a_free_host_address_of_the_subnet() {
        let s: IpNet = "10.0.0.1/24".parse().unwrap();
        let ok = |a: &str| check_checker(&a.parse().unwrap(), &s);
        assert!(ok("10.0.0.254").is_ok());
        assert!(ok("10.0.1.254")
            .unwrap_err()
            .contains("not in the network's subnet 10.0.0.0/24"));
        assert!(ok("10.0.0.1").unwrap_err().contains("router's address"));
        assert!(ok("10.0.0.255").unwrap_err().contains("not a host address"));
        assert!(ok("10.0.0.0").unwrap_err().contains("not a host address"));
    }

    #[test]
    fn mappings_bracket_ipv6_on_both_sides() {
        let v6: IpAddr = "fd00:0::11".parse().unwrap();
        let c6: IpAddr = "fd00::ffff:ffff:ffff:fffe".parse().unwrap();
        assert_eq!(mapping_key(&v6), "[fd00::11]");
        assert_eq!(
            mapping_value("lsp-a", &c6),
            "lsp-a:[fd00::ffff:ffff:ffff:fffe]"
        );
        let v4: IpAddr = "10.0.0.11".parse().unwrap();
        assert_eq!(mapping_key(&v4), "10.0.0.11");
        assert_eq!(
            mapping_value("lsp-b", &"10.0.0.254".parse().unwrap()),
            "lsp-b:10.0.0.254"
        );
    }

    /// SB as a test states it: (port, address, target port, protocol) → status.
    struct Monitors(
        Vec<(
            &'static str,
            &'static str,
            u16,
            &'static str,
            Option<&'static str>,
        )>,
    );

    impl HealthFacts for Monitors {
        fn ready(&self) -> bool {
            true
        }
        fn monitors(&self) -> Vec<Monitor> {
            Vec::new()
        }
        fn monitor(&self, port: &str, ip: &IpAddr, tp: u16, proto: &str) -> Option<Option<String>> {
            self.0
                .iter()
                .find(|(p, a, t, pr, _)| {
                    *p == port && a.parse::<IpAddr>().ok() == Some(*ip) && *t == tp && *pr == proto
                })
                .map(|(.., s)| s.map(str::to_owned))
        }
    }

    #[test]
    fn health_is_matched_on_port_address_target_port_and_protocol() {
        use crate::lb::model::{LoadBalancerBackend, LoadBalancerPort, LoadBalancerPut};
        let lb = LoadBalancersPost {
            listen_address: "192.0.2.30".into(),
            put: LoadBalancerPut {
                config: [("healthcheck".to_owned(), "true".to_owned())].into(),
                backends: vec![
                    LoadBalancerBackend {
                        name: "c1".into(),
                        target_address: "10.0.0.11".into(),
                        target_port: "8080".into(),
                        ..Default::default()
                    },
                    LoadBalancerBackend {
                        name: "c2".into(),
                        target_address: "10.0.0.12".into(),
                        target_port: "8080".into(),
                        ..Default::default()
                    },
                    LoadBalancerBackend {
                        name: "c3".into(),
                        target_address: "10.0.0.13".into(),
                        ..Default::default()
                    },
                ],
                ports: vec![LoadBalancerPort {
                    protocol: "tcp".into(),
                    listen_port: "80".into(),
                    target_backend: vec!["c1".into(), "c2".into(), "c3".into()],
                    ..Default::default()
                }],
                ..Default::default()
            },
        };
        let net = crate::lb::validate::OvnNetwork {
            name: "ovn1".into(),
            uplink: "uplink".into(),
            router: "lr".into(),
            switch: "ls".into(),
            prefix: "p".into(),
            subnet4: Some("10.0.0.1/24".parse().unwrap()),
            subnet6: None,
            subnets_given: true,
            checker4: "10.0.0.254".parse().ok(),
            checker6: None,
        };
        struct Nb;
        impl NbFacts for Nb {
            fn ready(&self) -> bool {
                true
            }
            fn wait_ready(
                &self,
            ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
                Box::pin(std::future::ready(()))
            }
            fn named(&self, _: super::super::network::Topology, _: &str) -> usize {
                1
            }
            fn derive_subnets(
                &self,
                _: &OvnNetwork,
            ) -> Result<(Option<IpNet>, Option<IpNet>), String> {
                Ok((None, None))
            }
            fn attached(&self, _: &OvnNetwork, _: &[uuid::Uuid]) -> (bool, bool) {
                (false, false)
            }
            fn gauges(&self, _: &str) -> super::super::network::NbGauges {
                Default::default()
            }
            fn ports_carrying(&self, _: &str, ip: &IpAddr) -> Vec<String> {
                match ip.to_string().as_str() {
                    "10.0.0.11" => vec!["c1".into()],
                    "10.0.0.12" => vec!["c2".into()],
                    _ => Vec::new(),
                }
            }
        }
        let sb = Monitors(vec![
            ("c1", "10.0.0.11", 8080, "tcp", Some("offline")),
            // The listen port, not the target: never c2's monitor.
            ("c2", "10.0.0.12", 80, "tcp", Some("online")),
            ("c2", "10.0.0.12", 8080, "udp", Some("online")),
            ("other-port", "10.0.0.12", 8080, "tcp", Some("online")),
        ]);
        let h = backend_health(&lb, &net, Some(&Nb), &sb);
        let status = |b: &str| h[b].ports[0].status.clone();
        assert_eq!(status("c1"), "offline");
        assert_eq!(status("c2"), "unknown", "matched on every part of the key");
        assert_eq!(status("c3"), "unknown", "no switch port carries it");
        assert_eq!(h["c1"].ports[0].port, 80);
        assert_eq!(h["c1"].ports[0].target_port, 8080);
        assert_eq!(
            h["c3"].ports[0].target_port, 80,
            "no target port: the listen port"
        );
        let pending = Monitors(vec![("c2", "10.0.0.12", 8080, "tcp", None)]);
        assert_eq!(
            backend_health(&lb, &net, Some(&Nb), &pending)["c2"].ports[0].status,
            "pending"
        );
        assert_eq!(
            backend_health(&lb, &net, None, &sb)["c1"].ports[0].status,
            "unknown",
            "NB not at hand"
        );
    }
}
