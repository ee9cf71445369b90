//! The OVN options LXD and Incus hide, as `ovn.*` config keys: `ovn.affinity_timeout`,
//! `ovn.selection_fields`, `ovn.reject` (load balancers) and `ovn.neighbor_responder`
//! (load balancers and forwards). Each is written into every NB row of its object, in
//! place; a key unset writes nothing (never a default). Values northd would silently
//! turn off, clamp or misread are refused, and so are the combinations that fail
//! silently (`../shared/docs/ovn-lb-options.md` §1, §3). Some rules depend on northd's
//! version, which the caller reads from NB ([`NorthdVersion`]). Pure.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use super::model::{Config, LoadBalancersPost};
use super::ports;
use super::validate::{ErrorKind, ValidationError};

/// `options:affinity_timeout`: seconds a client stays with its backend.
pub const AFFINITY: &str = "ovn.affinity_timeout";
/// `selection_fields`: what the backend choice hashes.
pub const SELECTION: &str = "ovn.selection_fields";
/// `options:reject`: reset or port unreachable when no backend is usable.
pub const REJECT: &str = "ovn.reject";
/// `options:neighbor_responder`: which VIPs the router answers ARP / NDP for.
pub const RESPONDER: &str = "ovn.neighbor_responder";

/// The hash fields a load balancer may name (`eth_*` is constant for north-south
/// traffic: the upstream router's MAC and ours).
const FIELDS: [&str; 4] = ["ip_src", "ip_dst", "tp_src", "tp_dst"];

/// Whether `k` is an OVN option key (or claims to be one: `ovn.*` other than the
/// network keys, which never reach an object's config).
pub fn is_key(k: &str) -> bool {
    k.starts_with("ovn.")
}

/// The options of one object, as parsed from its config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OvnOptions {
    /// `ovn.affinity_timeout`, 1-65535 seconds.
    pub affinity_timeout: Option<u16>,
    /// `ovn.selection_fields`, each once, as given in order.
    pub selection_fields: Vec<String>,
    /// `ovn.reject=true`.
    pub reject: bool,
    /// `ovn.neighbor_responder`: `reachable`, `all` or `none`, as given.
    pub neighbor_responder: Option<String>,
}

impl OvnOptions {
    /// What they write into `Load_Balancer.options`.
    pub fn nb_options(&self) -> BTreeMap<String, String> {
        let mut o = BTreeMap::new();
        if let Some(t) = self.affinity_timeout {
            o.insert("affinity_timeout".to_owned(), t.to_string());
        }
        if self.reject {
            o.insert("reject".to_owned(), "true".to_owned());
        }
        if let Some(n) = &self.neighbor_responder {
            o.insert("neighbor_responder".to_owned(), n.clone());
        }
        o
    }

    /// What they write into `Load_Balancer.selection_fields`.
    pub fn nb_selection_fields(&self) -> BTreeSet<String> {
        self.selection_fields.iter().cloned().collect()
    }
}

fn invalid(k: &str, why: impl fmt::Display) -> (String, String) {
    (
        format!("config.{k}"),
        format!("Invalid value for \"{k}\": {why}"),
    )
}

/// An object's options from its config; `forward`: only `ovn.neighbor_responder` is
/// allowed. Every other `ovn.*` key is refused, and so are affinity together with
/// health checks (`checked`: OVN's affinity ignores them, so a pinned client keeps being
/// sent to an offline backend) or with hash fields.
///
/// # Errors
/// Each broken rule as (field, message).
pub fn parse(
    config: &Config,
    forward: bool,
    checked: bool,
) -> Result<OvnOptions, Vec<(String, String)>> {
    let mut o = OvnOptions::default();
    let mut errors = Vec::new();
    for (k, v) in config.iter().filter(|(k, _)| is_key(k)) {
        let lb_only = [AFFINITY, SELECTION, REJECT].contains(&k.as_str());
        if forward && lb_only {
            errors.push((
                format!("config.{k}"),
                format!("Invalid option \"{k}\": network forwards have no such option (load balancers only)"),
            ));
            continue;
        }
        match k.as_str() {
            AFFINITY => match parse_affinity(v) {
                Ok(t) => o.affinity_timeout = Some(t),
                Err(why) => errors.push(invalid(k, why)),
            },
            SELECTION => match parse_fields(v) {
                Ok(f) => o.selection_fields = f,
                Err(why) => errors.push(invalid(k, why)),
            },
            REJECT => match v.as_str() {
                "true" => o.reject = true,
                "false" => o.reject = false,
                _ => errors.push(invalid(
                    k,
                    format!(
                        "\"{v}\" is not true or false (OVN reads anything but \"true\" as false)"
                    ),
                )),
            },
            RESPONDER => match v.as_str() {
                "reachable" | "all" | "none" => o.neighbor_responder = Some(v.clone()),
                _ => errors.push(invalid(
                    k,
                    format!("\"{v}\" is not one of reachable, all, none"),
                )),
            },
            _ => errors.push((format!("config.{k}"), format!("Invalid option \"{k}\""))),
        }
    }
    if o.affinity_timeout.is_some() {
        if checked {
            errors.push(invalid(
                AFFINITY,
                "session affinity cannot be combined with health checks (healthcheck=true): OVN's affinity ignores backend health, so a pinned client keeps being sent to an offline backend",
            ));
        }
        if !o.selection_fields.is_empty() {
            errors.push(invalid(
                AFFINITY,
                format!("session affinity cannot be combined with {SELECTION}: a pinned client's connections are not hashed"),
            ));
        }
    }
    if errors.is_empty() {
        Ok(o)
    } else {
        Err(errors)
    }
}

/// A decimal integer 1-65535: northd reads `0`, signs, units, hex and values past
/// 2^32 as off, and clamps the rest to 65535, all silently.
fn parse_affinity(v: &str) -> Result<u16, String> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "\"{v}\" is not a decimal number of seconds (1 to 65535)"
        ));
    }
    match v.parse::<u32>() {
        Ok(n @ 1..=65535) => Ok(n as u16),
        _ => Err(format!(
            "{v} is out of range: session affinity lasts 1 to 65535 seconds"
        )),
    }
}

/// A comma list of [`FIELDS`] holding `ip_src` or `tp_src`.
fn parse_fields(v: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for f in v.split(',').map(str::trim) {
        if f.starts_with("eth_") {
            return Err(format!(
                "{f}: the Ethernet addresses of traffic from the uplink are always the upstream router's and ours, so they spread nothing"
            ));
        }
        if !FIELDS.contains(&f) {
            return Err(format!(
                "\"{f}\" is not a hash field (give a comma list of {})",
                FIELDS.join(", ")
            ));
        }
        if !out.iter().any(|o| o == f) {
            out.push(f.to_owned());
        }
    }
    if !out.iter().any(|f| f == "ip_src" || f == "tp_src") {
        return Err(
            "must hold ip_src or tp_src: the destination alone is the same for every connection to a listen port, so all of them would reach one backend".into(),
        );
    }
    Ok(out)
}

/// northd's version, as in `NB_Global options:northd_internal_version`
/// (`23.03.1-20.27.0-70.6`: the part before the first `-`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NorthdVersion {
    /// (major, minor, patch).
    pub number: (u32, u32, u32),
    /// As found.
    pub text: String,
}

impl NorthdVersion {
    /// Parse `northd_internal_version` (`None`: not a version).
    pub fn parse(internal: &str) -> Option<NorthdVersion> {
        let text = internal.split('-').next()?.trim();
        let mut parts = text.split('.').map(|p| p.parse::<u32>().ok());
        let major = parts.next()??;
        let minor = parts.next()??;
        let patch = parts.next().flatten().unwrap_or(0);
        Some(NorthdVersion {
            number: (major, minor, patch),
            text: text.to_owned(),
        })
    }

    /// Whether it is older than `major.minor`.
    pub fn older_than(&self, major: u32, minor: u32) -> bool {
        self.number < (major, minor, 0)
    }
}

impl fmt::Display for NorthdVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn error(object: &str, field: &str, message: String) -> ValidationError {
    ValidationError {
        object: object.to_owned(),
        field: field.to_owned(),
        message,
        kind: ErrorKind::Invalid,
    }
}

/// The options of a load balancer's config (`None`: it does not parse, which
/// validation reports).
pub fn of_load_balancer(lb: &LoadBalancersPost) -> Option<OvnOptions> {
    let checked = matches!(super::health::parse(&lb.put.config), Ok(Some(_)));
    parse(&lb.put.config, false, checked).ok()
}

/// The rules that depend on northd's version (`None`: not known, nothing refused):
/// before 25.03, `ip_*` hash fields on an IPv6 listen address (northd hashes IPv4
/// fields there, which are empty: no spreading at all); before 24.03, affinity on a
/// backend address and target port another affinity load balancer of the network
/// targets too (its flows do not match the VIP: the two collide).
pub fn check_with_version(
    lb: &LoadBalancersPost,
    others: &[LoadBalancersPost],
    network: &str,
    version: Option<&NorthdVersion>,
) -> Vec<ValidationError> {
    let (Some(v), Some(o)) = (version, of_load_balancer(lb)) else {
        return Vec::new();
    };
    let object = format!("load balancer {} of network {network}", lb.listen_address);
    let mut out = Vec::new();
    let v6 = matches!(lb.listen_address.parse::<IpAddr>(), Ok(IpAddr::V6(_)));
    if v6 && v.older_than(25, 3) {
        if let Some(f) = o.selection_fields.iter().find(|f| f.starts_with("ip_")) {
            out.push(error(
                &object,
                &format!("config.{SELECTION}"),
                format!("Invalid value for \"{SELECTION}\": {f} on an IPv6 listen address needs northd 25.03 or later (found {v}): older ones hash the IPv4 field, which is empty, so every connection reaches one backend"),
            ));
        }
    }
    if o.affinity_timeout.is_some() && v.older_than(24, 3) {
        let mine = affinity_targets(lb);
        for other in others
            .iter()
            .filter(|x| x.listen_address != lb.listen_address)
            .filter(|x| of_load_balancer(x).is_some_and(|o| o.affinity_timeout.is_some()))
        {
            if let Some(t) = affinity_targets(other).intersection(&mine).next() {
                out.push(error(
                    &object,
                    &format!("config.{AFFINITY}"),
                    format!("Invalid value for \"{AFFINITY}\": load balancer {} also has session affinity and targets {t}; northd older than 24.03 (found {v}) cannot tell their flows apart", other.listen_address),
                ));
                break;
            }
        }
    }
    out
}

/// The `address:target port` endpoints a load balancer's ports send to (of any
/// protocol: northd's affinity flows match the backend, not the protocol).
fn affinity_targets(lb: &LoadBalancersPost) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for p in &lb.put.ports {
        let Ok(r) = ports::parse_ports(&p.listen_port) else {
            continue;
        };
        for (i, lp) in ports::expand(&r).into_iter().enumerate() {
            for b in lb
                .put
                .backends
                .iter()
                .filter(|b| p.target_backend.contains(&b.name))
            {
                let Ok(ip) = b.target_address.parse::<IpAddr>() else {
                    continue;
                };
                if let Some(tp) = ports::target_port(&ports::targets(&b.target_port), i, lp) {
                    out.insert(super::render::endpoint(&ip, Some(tp)));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Config {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn refused(pairs: &[(&str, &str)], forward: bool, checked: bool) -> String {
        parse(&cfg(pairs), forward, checked)
            .expect_err("refused")
            .into_iter()
            .map(|(f, m)| format!("{f}: {m}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn affinity_is_a_decimal_number_of_seconds_from_1_to_65535() {
        for ok in ["1", "60", "65535"] {
            let o = parse(&cfg(&[(AFFINITY, ok)]), false, false).unwrap();
            assert_eq!(o.nb_options()["affinity_timeout"], ok);
        }
        for bad in [
            "0",
            "65536",
            "4294967296",
            "-1",
            "+5",
            " 30",
            "30s",
            "1e3",
            "0x10",
            "",
        ] {
            let e = refused(&[(AFFINITY, bad)], false, false);
            assert!(
                e.starts_with(
                    "config.ovn.affinity_timeout: Invalid value for \"ovn.affinity_timeout\""
                ),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn affinity_is_refused_with_health_checks_and_with_hash_fields() {
        assert!(refused(&[(AFFINITY, "60")], false, true).contains("health checks"));
        assert!(
            refused(&[(AFFINITY, "60"), (SELECTION, "ip_src")], false, false)
                .contains("ovn.selection_fields")
        );
    }

    #[test]
    fn hash_fields_are_ip_and_tp_fields_holding_a_source() {
        let o = parse(&cfg(&[(SELECTION, "tp_src, ip_src,ip_src")]), false, false).unwrap();
        assert_eq!(o.selection_fields, ["tp_src", "ip_src"]);
        assert_eq!(
            o.nb_selection_fields(),
            BTreeSet::from(["ip_src".to_owned(), "tp_src".to_owned()])
        );
        assert!(refused(&[(SELECTION, "eth_src,ip_src")], false, false).contains("eth_src"));
        assert!(refused(&[(SELECTION, "ip_dst,tp_dst")], false, false).contains("ip_src or tp_src"));
        assert!(refused(&[(SELECTION, "ipv6_src")], false, false).contains("not a hash field"));
    }

    #[test]
    fn reject_is_true_or_false_and_only_true_is_written() {
        let on = parse(&cfg(&[(REJECT, "true")]), false, false).unwrap();
        assert_eq!(
            on.nb_options(),
            BTreeMap::from([("reject".into(), "true".into())])
        );
        let off = parse(&cfg(&[(REJECT, "false")]), false, false).unwrap();
        assert!(off.nb_options().is_empty());
        for bad in ["1", "yes", "TRUE", "on"] {
            assert!(refused(&[(REJECT, bad)], false, false).contains("not true or false"));
        }
    }

    #[test]
    fn forwards_take_only_the_neighbour_responder() {
        let o = parse(&cfg(&[(RESPONDER, "all")]), true, false).unwrap();
        assert_eq!(o.nb_options()["neighbor_responder"], "all");
        for k in [AFFINITY, SELECTION, REJECT] {
            assert!(refused(&[(k, "1")], true, false).contains("load balancers only"));
        }
        assert!(refused(&[(RESPONDER, "bogus")], true, false).contains("reachable, all, none"));
        assert!(refused(&[("ovn.skip_snat", "true")], false, false)
            .contains("Invalid option \"ovn.skip_snat\""));
    }

    #[test]
    fn the_northd_version_is_the_part_before_the_first_dash() {
        let v = NorthdVersion::parse("23.03.1-20.27.0-70.6").unwrap();
        assert_eq!(v.number, (23, 3, 1));
        assert_eq!(v.to_string(), "23.03.1");
        assert!(v.older_than(24, 3) && !v.older_than(23, 3));
        assert!(!NorthdVersion::parse("25.03.0-x").unwrap().older_than(25, 3));
        assert_eq!(NorthdVersion::parse("garbage"), None);
    }
}
