//! Desired state → the NB `Load_Balancer` rows it needs. One row per (listen address,
//! protocol), named as LXD names them (`<prefix>-lb-<listen_address>-<tcp|udp>`), `vips`
//! in the exact forms northd accepts (`IP:port`, `[IPv6]:port`, portless for a forward's
//! default target), ownership in `external_ids`, and a deterministic UUID so that a
//! replayed insert is refused instead of duplicated.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use uuid::Uuid;

use super::model::{ForwardsPost, LoadBalancersPost};
use super::ports;
use super::state::ResolvedNetwork;
use super::validate::OvnNetwork;

/// Namespace of the deterministic row UUIDs.
pub const UUID_NAMESPACE: Uuid = Uuid::from_u128(0x6f766e6c_622d_4e42_8c6f_776e65727321);

/// `external_ids` keys.
pub mod keys {
    /// Who owns the row (`--owner`, default `ovnlb`).
    pub const OWNER: &str = "ovnlb:owner";
    /// The ovnlb network.
    pub const NETWORK: &str = "ovnlb:network";
    /// `load-balancer` or `forward`.
    pub const KIND: &str = "ovnlb:kind";
    /// The listen address.
    pub const LISTEN: &str = "ovnlb:listen-address";
    /// The object's revision.
    pub const REVISION: &str = "ovnlb:revision";
}

/// One `Load_Balancer` row as it should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredRow {
    /// Deterministic UUID.
    pub uuid: Uuid,
    /// `<prefix>-lb-<listen>-<proto>`.
    pub name: String,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// VIP → comma-separated backends.
    pub vips: BTreeMap<String, String>,
    /// Ownership and bookkeeping.
    pub external_ids: BTreeMap<String, String>,
    /// One `Load_Balancer_Health_Check` per VIP while the load balancer's checks are on
    /// (none otherwise), referenced from `health_check`.
    pub health_checks: Vec<DesiredHealthCheck>,
    /// Backend address → `<switch port>:<checker>`: empty until [`map_backends`] fills
    /// it from NB's switch ports (and while the checks are off).
    pub ip_port_mappings: BTreeMap<String, String>,
    /// `options`: the object's `ovn.*` keys ([`super::options`]), nothing else.
    pub options: BTreeMap<String, String>,
    /// `selection_fields` (`ovn.selection_fields`).
    pub selection_fields: BTreeSet<String>,
}

/// One `Load_Balancer_Health_Check` row as it should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredHealthCheck {
    /// Deterministic UUID (of the row's UUID and the VIP): updated in place.
    pub uuid: Uuid,
    /// The `vips` key it checks, byte for byte.
    pub vip: String,
    /// interval, timeout, success_count, failure_count.
    pub options: BTreeMap<String, String>,
    /// Ownership: the owner, network and listen address of its row.
    pub external_ids: BTreeMap<String, String>,
}

/// The switch ports that carry an address (in `addresses` or `dynamic_addresses`) on
/// a network's internal switch, as NB has them now: what a backend's health check is
/// mapped through.
pub trait SwitchPorts {
    /// The names of the ports of `switch` carrying each of `ips`, in order (asked all at
    /// once, so that an implementation over NB reads the switch once).
    fn carrying_each(&self, switch: &str, ips: &[IpAddr]) -> Vec<Vec<String>>;
    /// The names of the ports of `switch` carrying `ip`.
    fn carrying(&self, switch: &str, ip: &IpAddr) -> Vec<String> {
        self.carrying_each(switch, std::slice::from_ref(ip))
            .pop()
            .unwrap_or_default()
    }
}

/// The backend addresses of a row's VIPs (`IP:port`, `[IPv6]:port` or a bare IP), each
/// once, in order.
pub fn backend_addresses(row: &DesiredRow) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for backends in row.vips.values() {
        for b in backends.split(',') {
            let host = match b.strip_prefix('[') {
                Some(rest) => rest.split(']').next().unwrap_or(""),
                None => b.rsplit_once(':').map_or(b, |(h, _)| h),
            };
            if let Ok(ip) = host.parse::<IpAddr>() {
                if !out.contains(&ip) {
                    out.push(ip);
                }
            }
        }
    }
    out
}

/// Fill in a checked row's `ip_port_mappings`: each backend address to the one switch
/// port of the network's internal switch carrying it, and the checker of its family.
/// A row without health checks needs none.
///
/// # Errors
/// Why a backend cannot be checked (northd would silently drop it from the VIP, or
/// never probe it): no switch port carries it, several do, a port's name holds `:`, or
/// its family has no checker address.
pub fn map_backends(
    row: &mut DesiredRow,
    net: &OvnNetwork,
    ports: &dyn SwitchPorts,
) -> Result<(), String> {
    row.ip_port_mappings.clear();
    if row.health_checks.is_empty() {
        return Ok(());
    }
    let ips = backend_addresses(row);
    let carrying = ports.carrying_each(&net.switch, &ips);
    for (ip, found) in ips.into_iter().zip(carrying) {
        let (family, checker) = if ip.is_ipv4() {
            ("IPv4", net.checker4)
        } else {
            ("IPv6", net.checker6)
        };
        let checker =
            checker.ok_or_else(|| format!("No {family} address for load balancer health check"))?;
        let port = match found.as_slice() {
            [one] => one,
            [] => {
                return Err(format!(
                    "Couldn't find a logical switch port for \"{ip}\" on {}: its health check cannot be mapped",
                    net.switch
                ))
            }
            many => {
                return Err(format!(
                    "Backend \"{ip}\" matches several logical switch ports ({})",
                    many.join(", ")
                ))
            }
        };
        if port.contains(':') {
            return Err(format!(
                "Backend \"{ip}\" is on logical switch port \"{port}\", whose name holds ':', which OVN cannot map"
            ));
        }
        row.ip_port_mappings.insert(
            super::health::mapping_key(&ip),
            super::health::mapping_value(port, &checker),
        );
    }
    Ok(())
}

/// Bytes the `vips` column of `row` takes on the OVSDB wire (`["vip","backends"],` per
/// entry): what [`super::validate::Limits::max_row_bytes`] bounds.
pub fn vips_bytes(row: &DesiredRow) -> usize {
    row.vips.iter().map(|(k, v)| k.len() + v.len() + 8).sum()
}

impl From<&DesiredRow> for crate::nb::LoadBalancer {
    fn from(r: &DesiredRow) -> Self {
        crate::nb::LoadBalancer {
            uuid: r.uuid,
            name: r.name.clone(),
            vips: r.vips.clone(),
            protocol: Some(r.protocol.clone()),
            external_ids: r.external_ids.clone(),
            health_check: r.health_checks.iter().map(|h| h.uuid).collect(),
            ip_port_mappings: r.ip_port_mappings.clone(),
            options: r.options.clone(),
            selection_fields: r.selection_fields.clone(),
        }
    }
}

/// `IP:port`, `[IPv6]:port`, or the bare IP when `port` is `None`.
pub fn endpoint(ip: &IpAddr, port: Option<u16>) -> String {
    match (ip, port) {
        (_, None) => ip.to_string(),
        (IpAddr::V4(_), Some(p)) => format!("{ip}:{p}"),
        (IpAddr::V6(_), Some(p)) => format!("[{ip}]:{p}"),
    }
}

/// The deterministic UUID of a row.
pub fn row_uuid(owner: &str, network: &str, listen: &str, protocol: &str) -> Uuid {
    Uuid::new_v5(
        &UUID_NAMESPACE,
        format!("{owner}/{network}/{listen}/{protocol}").as_bytes(),
    )
}

fn ip(s: &str) -> Option<IpAddr> {
    s.parse().ok()
}

/// Rows of one listen address: protocol → vips.
type ByProtocol = BTreeMap<String, BTreeMap<String, String>>;

fn lb_vips(lb: &LoadBalancersPost) -> ByProtocol {
    let mut out = ByProtocol::new();
    let Some(listen) = ip(&lb.listen_address) else {
        return out;
    };
    let backends: BTreeMap<&str, _> = lb
        .put
        .backends
        .iter()
        .map(|b| (b.name.as_str(), b))
        .collect();
    for p in &lb.put.ports {
        let Ok(r) = ports::parse_ports(&p.listen_port) else {
            continue;
        };
        for (i, lp) in ports::expand(&r).into_iter().enumerate() {
            let targets: Vec<String> = p
                .target_backend
                .iter()
                .filter_map(|n| backends.get(n.as_str()))
                .filter_map(|b| {
                    let tp = if b.target_port.is_empty() {
                        vec![]
                    } else {
                        ports::expand(&ports::parse_ports(&b.target_port).ok()?)
                    };
                    let port = ports::target_port(&tp, i, lp)?;
                    Some(endpoint(&ip(&b.target_address)?, Some(port)))
                })
                .collect();
            // (A port whose last backend left has a VIP with no backends.)
            out.entry(p.protocol.clone())
                .or_default()
                .insert(endpoint(&listen, Some(lp)), targets.join(","));
        }
    }
    out
}

fn forward_vips(f: &ForwardsPost) -> ByProtocol {
    let mut out = ByProtocol::new();
    let Some(listen) = ip(&f.listen_address) else {
        return out;
    };
    for p in &f.put.ports {
        let (Ok(r), Some(target)) = (ports::parse_ports(&p.listen_port), ip(&p.target_address))
        else {
            continue;
        };
        let tp = ports::targets(&p.target_port);
        for (i, lp) in ports::expand(&r).into_iter().enumerate() {
            let Some(port) = ports::target_port(&tp, i, lp) else {
                continue;
            };
            out.entry(p.protocol.clone())
                .or_default()
                .insert(endpoint(&listen, Some(lp)), endpoint(&target, Some(port)));
        }
    }
    // The default target takes the whole IP (every protocol): a portless VIP. northd
    // matches it on the address alone; it lives in the tcp row.
    if let Some(t) = f.put.config.get("target_address").and_then(|t| ip(t)) {
        out.entry("tcp".into())
            .or_default()
            .insert(endpoint(&listen, None), endpoint(&t, None));
    }
    out
}

fn rows_for(
    owner: &str,
    net: &OvnNetwork,
    listen: &str,
    kind: &str,
    revision: u64,
    vips: ByProtocol,
    checks: Option<&super::health::HealthCheck>,
) -> Vec<DesiredRow> {
    vips.into_iter()
        .map(|(protocol, vips)| {
            let uuid = row_uuid(owner, &net.name, listen, &protocol);
            let health_checks = checks
                .map(|hc| {
                    // (A VIP with no backends has nothing to check.)
                    vips.iter()
                        .filter(|(_, backends)| !backends.is_empty())
                        .map(|(vip, _)| DesiredHealthCheck {
                            uuid: Uuid::new_v5(&UUID_NAMESPACE, format!("{uuid}/{vip}").as_bytes()),
                            vip: vip.clone(),
                            options: hc.options(),
                            external_ids: BTreeMap::from([
                                (keys::OWNER.to_owned(), owner.to_owned()),
                                (keys::NETWORK.to_owned(), net.name.clone()),
                                (keys::LISTEN.to_owned(), listen.to_owned()),
                            ]),
                        })
                        .collect()
                })
                .unwrap_or_default();
            DesiredRow {
                uuid,
                name: format!("{}-lb-{listen}-{protocol}", net.prefix),
                external_ids: BTreeMap::from([
                    (keys::OWNER.to_owned(), owner.to_owned()),
                    (keys::NETWORK.to_owned(), net.name.clone()),
                    (keys::KIND.to_owned(), kind.to_owned()),
                    (keys::LISTEN.to_owned(), listen.to_owned()),
                    (keys::REVISION.to_owned(), revision.to_string()),
                ]),
                protocol,
                vips,
                health_checks,
                ip_port_mappings: BTreeMap::new(),
                options: BTreeMap::new(),
                selection_fields: BTreeSet::new(),
            }
        })
        .collect()
}

/// The rows of one load balancer (none without ports), with a health check per VIP
/// while its checks are on; their `ip_port_mappings` are left to [`map_backends`].
pub fn render_load_balancer(
    owner: &str,
    net: &OvnNetwork,
    lb: &LoadBalancersPost,
    revision: u64,
) -> Vec<DesiredRow> {
    // (A config that does not parse was refused when stored: no checks or options then.)
    let checks = super::health::parse(&lb.put.config).ok().flatten();
    let opts = super::options::parse(&lb.put.config, false, checks.is_some()).unwrap_or_default();
    with_options(
        rows_for(
            owner,
            net,
            &lb.listen_address,
            "load-balancer",
            revision,
            lb_vips(lb),
            checks.as_ref(),
        ),
        &opts,
    )
}

/// `rows` with the object's OVN options, each row the same.
fn with_options(mut rows: Vec<DesiredRow>, opts: &super::options::OvnOptions) -> Vec<DesiredRow> {
    for r in &mut rows {
        r.options = opts.nb_options();
        r.selection_fields = opts.nb_selection_fields();
    }
    rows
}

/// The rows of one forward.
pub fn render_forward(
    owner: &str,
    net: &OvnNetwork,
    f: &ForwardsPost,
    revision: u64,
) -> Vec<DesiredRow> {
    with_options(
        rows_for(
            owner,
            net,
            &f.listen_address,
            "forward",
            revision,
            forward_vips(f),
            None,
        ),
        &super::options::parse(&f.put.config, true, false).unwrap_or_default(),
    )
}

/// Every row one network needs.
pub fn render_network(owner: &str, net: &ResolvedNetwork) -> Vec<DesiredRow> {
    let mut rows = Vec::new();
    for (lb, rev) in &net.load_balancers {
        rows.extend(render_load_balancer(owner, &net.net, lb, *rev));
    }
    for (f, rev) in &net.forwards {
        rows.extend(render_forward(owner, &net.net, f, *rev));
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::state::{resolve, DesiredState};
    use crate::lb::validate::Limits;

    const STATE: &str = r#"
networks:
  - name: uplink
    type: physical
    config: {ipv4.routes: 192.0.2.0/24, ipv6.routes: "2001:db8::/64"}
  - name: ovn1
    type: ovn
    config: {network: uplink, ovn.router: lxd-net1-lr, ovn.switch: lxd-net1-ls-int, ovn.prefix: lxd-net1, ipv4.address: 10.0.0.1/24, ipv6.address: "fd00::1/64"}
    load_balancers:
      - listen_address: 192.0.2.10
        backends:
          - {name: b1, target_address: 10.0.0.11, target_port: "8080"}
          - {name: b2, target_address: 10.0.0.12}
          - {name: b3, target_address: 10.0.0.13, target_port: "9000-9001"}
        ports:
          - {protocol: tcp, listen_port: "80", target_backend: [b1, b2]}
          - {protocol: tcp, listen_port: "443-444", target_backend: [b3]}
          - {protocol: udp, listen_port: "53", target_backend: [b2]}
      - listen_address: "2001:db8::10"
        backends: [{name: v6, target_address: "fd00::11"}]
        ports: [{protocol: tcp, listen_port: "80", target_backend: [v6]}]
      - listen_address: 192.0.2.12
    forwards:
      - listen_address: 192.0.2.11
        config: {target_address: 10.0.0.13}
        ports: [{protocol: udp, listen_port: "5000-5001", target_address: 10.0.0.11, target_port: "6000"}]
"#;

    #[test]
    fn rows_names_and_vips() {
        let st = DesiredState::from_yaml(STATE).unwrap();
        let nets = resolve(&st, &Limits::default(), None).unwrap();
        let rows = render_network("ovnlb", &nets[0]);
        let by_name: BTreeMap<&str, &DesiredRow> =
            rows.iter().map(|r| (r.name.as_str(), r)).collect();
        assert_eq!(
            by_name.keys().copied().collect::<Vec<_>>(),
            [
                "lxd-net1-lb-192.0.2.10-tcp",
                "lxd-net1-lb-192.0.2.10-udp",
                "lxd-net1-lb-192.0.2.11-tcp",
                "lxd-net1-lb-192.0.2.11-udp",
                "lxd-net1-lb-2001:db8::10-tcp"
            ],
            "no rows for a load balancer without ports"
        );
        let tcp = by_name["lxd-net1-lb-192.0.2.10-tcp"];
        assert_eq!(tcp.vips["192.0.2.10:80"], "10.0.0.11:8080,10.0.0.12:80");
        assert_eq!(tcp.vips["192.0.2.10:443"], "10.0.0.13:9000");
        assert_eq!(tcp.vips["192.0.2.10:444"], "10.0.0.13:9001");
        assert_eq!(
            by_name["lxd-net1-lb-192.0.2.10-udp"].vips["192.0.2.10:53"],
            "10.0.0.12:53"
        );
        assert_eq!(
            by_name["lxd-net1-lb-2001:db8::10-tcp"].vips["[2001:db8::10]:80"],
            "[fd00::11]:80"
        );
        assert_eq!(
            by_name["lxd-net1-lb-192.0.2.11-tcp"].vips["192.0.2.11"],
            "10.0.0.13"
        );
        assert_eq!(
            by_name["lxd-net1-lb-192.0.2.11-udp"].vips["192.0.2.11:5001"],
            "10.0.0.11:6000"
        );
        assert_eq!(tcp.external_ids[keys::KIND], "load-balancer");
        assert_eq!(tcp.uuid, row_uuid("ovnlb", "ovn1", "192.0.2.10", "tcp"));
        assert_ne!(tcp.uuid, row_uuid("other", "ovn1", "192.0.2.10", "tcp"));
    }

    #[test]
    fn ovn_options_go_into_every_row_of_their_object_and_nothing_when_unset() {
        let state = STATE
            .replace(
                "      - listen_address: 192.0.2.10\n",
                "      - listen_address: 192.0.2.10\n        config: {ovn.selection_fields: \"tp_src,ip_src\", ovn.reject: \"true\", ovn.neighbor_responder: all}\n",
            )
            .replace(
                "        config: {target_address: 10.0.0.13}",
                "        config: {target_address: 10.0.0.13, ovn.neighbor_responder: none}",
            );
        let st = DesiredState::from_yaml(&state).unwrap();
        let nets = resolve(&st, &Limits::default(), None).unwrap();
        let rows = render_network("ovnlb", &nets[0]);
        let opts = |name: &str| {
            let r = rows.iter().find(|r| r.name == name).unwrap();
            (r.options.clone(), r.selection_fields.clone())
        };
        let lb = (
            BTreeMap::from([
                ("neighbor_responder".to_owned(), "all".to_owned()),
                ("reject".to_owned(), "true".to_owned()),
            ]),
            BTreeSet::from(["ip_src".to_owned(), "tp_src".to_owned()]),
        );
        assert_eq!(opts("lxd-net1-lb-192.0.2.10-tcp"), lb);
        assert_eq!(opts("lxd-net1-lb-192.0.2.10-udp"), lb);
        let fwd = BTreeMap::from([("neighbor_responder".to_owned(), "none".to_owned())]);
        assert_eq!(opts("lxd-net1-lb-192.0.2.11-tcp").0, fwd);
        assert_eq!(opts("lxd-net1-lb-192.0.2.11-udp").0, fwd);
        assert_eq!(
            opts("lxd-net1-lb-2001:db8::10-tcp"),
            (BTreeMap::new(), BTreeSet::new())
        );
    }

    #[test]
    fn a_port_without_backends_is_a_vip_without_backends_and_no_check() {
        let state = CHECKED.replace(
            "          - {protocol: udp, listen_port: \"18620\", target_backend: [b1]}",
            "          - {protocol: udp, listen_port: \"18620\", target_backend: []}",
        );
        let st = DesiredState::from_yaml(&state).unwrap();
        let nets = resolve(&st, &Limits::default(), None).unwrap();
        let rows = render_network("ovnlb", &nets[0]);
        let udp = rows
            .iter()
            .find(|r| r.name == "lxd-net1-lb-192.0.2.20-udp")
            .unwrap();
        assert_eq!(udp.vips["192.0.2.20:18620"], "");
        assert!(udp.health_checks.is_empty(), "{udp:?}");
    }

    #[test]
    fn invalid_state_is_reported_in_full() {
        let bad = STATE
            .replace("target_port: \"8080\"", "target_port: \"0\"")
            .replace("listen_address: 192.0.2.11", "listen_address: 192.0.2.10");
        let st = DesiredState::from_yaml(&bad).unwrap();
        let errs = resolve(&st, &Limits::default(), None).unwrap_err();
        let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert!(
            text.iter().any(|e| e.contains("Port 0 is out of range")),
            "{text:?}"
        );
        assert!(text.iter().any(|e| e.contains("forward 192.0.2.10 of network ovn1: listen_address: Listen address \"192.0.2.10\" overlaps")), "{text:?}");
    }

    /// NB's switch ports as a test states them: address → port names.
    struct Ports(Vec<(&'static str, &'static str)>);

    impl SwitchPorts for Ports {
        fn carrying_each(&self, switch: &str, ips: &[IpAddr]) -> Vec<Vec<String>> {
            assert_eq!(switch, "lxd-net1-ls-int");
            ips.iter()
                .map(|ip| {
                    self.0
                        .iter()
                        .filter(|(a, _)| a.parse::<IpAddr>().ok() == Some(*ip))
                        .map(|(_, p)| (*p).to_owned())
                        .collect()
                })
                .collect()
        }
    }

    const CHECKED: &str = r#"
networks:
  - name: uplink
    type: physical
    config: {ipv4.routes: 192.0.2.0/24, ipv6.routes: "2001:db8::/64"}
  - name: ovn1
    type: ovn
    config: {network: uplink, ovn.router: lxd-net1-lr, ovn.switch: lxd-net1-ls-int, ovn.prefix: lxd-net1, ipv4.address: 10.0.0.1/24, ipv6.address: "fd00::1/64"}
    load_balancers:
      - listen_address: 192.0.2.20
        config: {healthcheck: "true", healthcheck.interval: "2", healthcheck.failure_count: "0"}
        backends:
          - {name: b1, target_address: 10.0.0.11, target_port: "18610"}
          - {name: b2, target_address: 10.0.0.12, target_port: "18610"}
        ports:
          - {protocol: tcp, listen_port: "18620", target_backend: [b1, b2]}
          - {protocol: udp, listen_port: "18620", target_backend: [b1]}
      - listen_address: "2001:db8::20"
        config: {healthcheck: "yes"}
        backends: [{name: v6, target_address: "fd00:0::11", target_port: "18610"}]
        ports: [{protocol: tcp, listen_port: "18620", target_backend: [v6]}]
      - listen_address: 192.0.2.21
        config: {healthcheck: "false", healthcheck.interval: "2"}
        backends: [{name: b1, target_address: 10.0.0.11}]
        ports: [{protocol: tcp, listen_port: "80", target_backend: [b1]}]
"#;

    fn checked_rows() -> BTreeMap<String, DesiredRow> {
        let st = DesiredState::from_yaml(CHECKED).unwrap();
        let nets = resolve(&st, &Limits::default(), None).unwrap();
        let ports = Ports(vec![
            ("10.0.0.11", "lsp-be1"),
            ("fd00::11", "lsp-be1"),
            ("10.0.0.12", "lsp-be2"),
        ]);
        render_network("ovnlb", &nets[0])
            .into_iter()
            .map(|mut r| {
                map_backends(&mut r, &nets[0].net, &ports).unwrap();
                (r.name.clone(), r)
            })
            .collect()
    }

    #[test]
    fn a_checked_ipv4_row_has_a_check_per_vip_and_a_mapping_per_backend() {
        let rows = checked_rows();
        let tcp = &rows["lxd-net1-lb-192.0.2.20-tcp"];
        assert_eq!(tcp.health_checks.len(), 1);
        let hc = &tcp.health_checks[0];
        assert_eq!(hc.vip, "192.0.2.20:18620", "the vips key, byte for byte");
        assert!(tcp.vips.contains_key(&hc.vip));
        assert_eq!(
            hc.options,
            BTreeMap::from([
                ("interval".to_owned(), "2".to_owned()),
                ("timeout".to_owned(), "30".to_owned()),
                ("success_count".to_owned(), "3".to_owned()),
                ("failure_count".to_owned(), "3".to_owned()),
            ]),
            "0 and unset take the defaults"
        );
        assert_eq!(
            tcp.ip_port_mappings,
            BTreeMap::from([
                ("10.0.0.11".to_owned(), "lsp-be1:10.0.0.254".to_owned()),
                ("10.0.0.12".to_owned(), "lsp-be2:10.0.0.254".to_owned()),
            ])
        );
        let udp = &rows["lxd-net1-lb-192.0.2.20-udp"];
        assert_eq!(udp.health_checks[0].vip, "192.0.2.20:18620");
        assert_ne!(
            udp.health_checks[0].uuid, hc.uuid,
            "one row per VIP and protocol"
        );
        assert_eq!(
            udp.ip_port_mappings,
            BTreeMap::from([("10.0.0.11".to_owned(), "lsp-be1:10.0.0.254".to_owned())])
        );
        let lb = crate::nb::LoadBalancer::from(tcp);
        assert_eq!(
            lb.health_check,
            std::collections::BTreeSet::from([hc.uuid]),
            "the row references its checks"
        );
    }

    #[test]
    fn a_checked_ipv6_row_brackets_both_sides_canonically() {
        let rows = checked_rows();
        let v6 = &rows["lxd-net1-lb-2001:db8::20-tcp"];
        assert_eq!(v6.health_checks[0].vip, "[2001:db8::20]:18620");
        assert_eq!(
            v6.ip_port_mappings,
            BTreeMap::from([(
                "[fd00::11]".to_owned(),
                "lsp-be1:[fd00::ffff:ffff:ffff:fffe]".to_owned()
            )])
        );
    }

    #[test]
    fn a_row_whose_checks_are_off_has_neither_checks_nor_mappings() {
        let rows = checked_rows();
        let off = &rows["lxd-net1-lb-192.0.2.21-tcp"];
        assert!(off.health_checks.is_empty());
        assert!(off.ip_port_mappings.is_empty());
        assert!(crate::nb::LoadBalancer::from(off).health_check.is_empty());
    }

    #[test]
    fn a_backend_on_no_switch_port_or_on_several_cannot_be_mapped() {
        let st = DesiredState::from_yaml(CHECKED).unwrap();
        let nets = resolve(&st, &Limits::default(), None).unwrap();
        let mut row = render_network("ovnlb", &nets[0])
            .into_iter()
            .find(|r| r.name == "lxd-net1-lb-192.0.2.20-tcp")
            .unwrap();
        let none = Ports(vec![("10.0.0.11", "lsp-be1")]);
        let e = map_backends(&mut row, &nets[0].net, &none).unwrap_err();
        assert!(
            e.contains("Couldn't find a logical switch port for \"10.0.0.12\""),
            "{e}"
        );
        let two = Ports(vec![
            ("10.0.0.11", "lsp-be1"),
            ("10.0.0.12", "lsp-be2"),
            ("10.0.0.12", "lsp-dup"),
        ]);
        let e = map_backends(&mut row, &nets[0].net, &two).unwrap_err();
        assert!(
            e.contains("matches several logical switch ports (lsp-be2, lsp-dup)"),
            "{e}"
        );
    }
}
