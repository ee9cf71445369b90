//! Desired state → the NB `Load_Balancer` rows it needs. One row per (listen address,
//! protocol), named as LXD names them (`<prefix>-lb-<listen_address>-<tcp|udp>`), `vips`
//! in the exact forms northd accepts (`IP:port`, `[IPv6]:port`, portless for a forward's
//! default target), ownership in `external_ids`, and a deterministic UUID so that a
//! replayed insert is refused instead of duplicated.

use std::collections::BTreeMap;
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
            ..Default::default()
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
                    // 0 target ports: the listen port; 1: that port; N: the i-th.
                    let port = match tp.len() {
                        0 => lp,
                        1 => tp[0],
                        _ => *tp.get(i)?,
                    };
                    Some(endpoint(&ip(&b.target_address)?, Some(port)))
                })
                .collect();
            if !targets.is_empty() {
                out.entry(p.protocol.clone())
                    .or_default()
                    .insert(endpoint(&listen, Some(lp)), targets.join(","));
            }
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
        let tp = if p.target_port.is_empty() {
            vec![]
        } else {
            ports::parse_ports(&p.target_port)
                .map(|r| ports::expand(&r))
                .unwrap_or_default()
        };
        for (i, lp) in ports::expand(&r).into_iter().enumerate() {
            let port = match tp.len() {
                0 => lp,
                1 => tp[0],
                _ => match tp.get(i) {
                    Some(p) => *p,
                    None => continue,
                },
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
) -> Vec<DesiredRow> {
    vips.into_iter()
        .map(|(protocol, vips)| DesiredRow {
            uuid: row_uuid(owner, &net.name, listen, &protocol),
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
        })
        .collect()
}

/// The rows of one load balancer (none without ports).
pub fn render_load_balancer(
    owner: &str,
    net: &OvnNetwork,
    lb: &LoadBalancersPost,
    revision: u64,
) -> Vec<DesiredRow> {
    rows_for(
        owner,
        net,
        &lb.listen_address,
        "load-balancer",
        revision,
        lb_vips(lb),
    )
}

/// The rows of one forward.
pub fn render_forward(
    owner: &str,
    net: &OvnNetwork,
    f: &ForwardsPost,
    revision: u64,
) -> Vec<DesiredRow> {
    rows_for(
        owner,
        net,
        &f.listen_address,
        "forward",
        revision,
        forward_vips(f),
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
}
