//! Validation: every rule of LXD/Incus (`lxd-load-balancer-reference.md` §2) for what we
//! model, with their error texts, plus what they miss (ports 1-65535, a backend for every
//! port entry, a VIP cap). Pure functions; each error names the object, the field (with
//! its index) and the rule.

use crate::fasthash::{HashMap, HashSet};
use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use super::health;
use super::model::{canonical_ip, ForwardsPost, LoadBalancersPost, Network};
use super::ports;

/// What kind of failure (maps to an HTTP status later).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input breaks a rule (400).
    Invalid,
    /// It collides with something that exists (409).
    Conflict,
    /// It cannot be checked now: NB, which it depends on, is not at hand (503).
    Unavailable,
}

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// The object, e.g. `load balancer 192.0.2.10 of network ovn1`.
    pub object: String,
    /// The field, e.g. `ports[1].listen_port` (empty: the object as a whole).
    pub field: String,
    /// The rule, in LXD's words where LXD has them.
    pub message: String,
    /// Invalid or conflict.
    pub kind: ErrorKind,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.object, self.message)
        } else {
            write!(f, "{}: {}: {}", self.object, self.field, self.message)
        }
    }
}

impl std::error::Error for ValidationError {}

/// Limits of ours: they bound what one request renders into NB (and so what northd, SB
/// and every monitor of NB must hold). Settings `max_vips`, `max_endpoints` and
/// `max_row_bytes` of ovnlbd.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Most VIPs (listen ports, summed over protocols) one load balancer or forward may
    /// expand to. Default 4096.
    pub max_vips: usize,
    /// Most endpoints (VIP × backend pairs) one load balancer may expand to. Default
    /// 65,536 (4096 ports × 16 backends, or 16 ports × 4096 backends).
    pub max_endpoints: usize,
    /// Most bytes of one rendered `Load_Balancer` row's `vips`. Default 4 MiB, well inside
    /// the 64 MiB of an OVSDB message (ovsdb-server's and ours): a row past the message
    /// limit would cut every client of NB off on its next snapshot.
    pub max_row_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_vips: 4096,
            max_endpoints: 65_536,
            max_row_bytes: 4 << 20,
        }
    }
}

/// One `ipv{4,6}.ovn.ranges` setting.
#[derive(Debug, Clone, PartialEq)]
pub struct OvnRanges {
    /// The config key.
    pub key: String,
    /// Its raw value (for messages).
    pub raw: String,
    /// Inclusive ranges.
    pub ranges: Vec<(IpAddr, IpAddr)>,
}

/// A parsed `physical` network.
#[derive(Debug, Clone, PartialEq)]
pub struct Uplink {
    /// Name.
    pub name: String,
    /// `ipv4.routes` and `ipv6.routes`.
    pub routes: Vec<IpNet>,
    /// `ipv4.ovn.ranges` / `ipv6.ovn.ranges`.
    pub ranges: Vec<OvnRanges>,
}

/// A parsed `ovn` network.
#[derive(Debug, Clone, PartialEq)]
pub struct OvnNetwork {
    /// Name.
    pub name: String,
    /// The `physical` network it sits on.
    pub uplink: String,
    /// NB `Logical_Router` name.
    pub router: String,
    /// NB internal `Logical_Switch` name.
    pub switch: String,
    /// Row-name prefix.
    pub prefix: String,
    /// `ipv4.address` as gateway/prefix (`None`: unset or `none`).
    pub subnet4: Option<IpNet>,
    /// `ipv6.address`.
    pub subnet6: Option<IpNet>,
    /// Whether `ipv4.address`/`ipv6.address` were given (else derived from NB).
    pub subnets_given: bool,
    /// The health checker's source address per family (`ipv4.healthcheck.address`,
    /// `ipv6.…`), once the subnets are known by default the subnet's second-to-last
    /// address ([`super::health::default_checker`]); `None` when the family has no
    /// subnet, or no room for one.
    pub checker4: Option<IpAddr>,
    /// IPv6.
    pub checker6: Option<IpAddr>,
}

impl OvnNetwork {
    /// The network's subnet of `ip`'s family.
    pub fn subnet_for(&self, ip: &IpAddr) -> Option<&IpNet> {
        if ip.is_ipv4() {
            self.subnet4.as_ref()
        } else {
            self.subnet6.as_ref()
        }
    }
}

struct Errs {
    object: String,
    list: Vec<ValidationError>,
}

impl Errs {
    fn new(object: String) -> Errs {
        Errs {
            object,
            list: Vec::new(),
        }
    }
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.add_kind(ErrorKind::Invalid, field, message);
    }
    fn add_kind(&mut self, kind: ErrorKind, field: impl Into<String>, message: impl Into<String>) {
        self.list.push(ValidationError {
            object: self.object.clone(),
            field: field.into(),
            message: message.into(),
            kind,
        });
    }
}

fn parse_cidr_list(v: &str) -> Result<Vec<IpNet>, String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .map_err(|_| format!("Invalid CIDR \"{s}\""))
        })
        .collect()
}

fn parse_ranges(v: &str, v4: bool) -> Result<Vec<(IpAddr, IpAddr)>, String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|r| {
            let (a, b) = r
                .split_once('-')
                .ok_or_else(|| format!("Invalid IP range \"{r}\" (expected start-end)"))?;
            let a: IpAddr = a
                .trim()
                .parse()
                .map_err(|_| format!("Invalid IP range \"{r}\""))?;
            let b: IpAddr = b
                .trim()
                .parse()
                .map_err(|_| format!("Invalid IP range \"{r}\""))?;
            if a.is_ipv4() != v4 || b.is_ipv4() != v4 {
                return Err(format!("Invalid IP range \"{r}\": wrong IP family"));
            }
            if b < a {
                return Err(format!("Invalid IP range \"{r}\": start is after end"));
            }
            Ok((a, b))
        })
        .collect()
}

fn is_user_key(k: &str) -> bool {
    k.starts_with("user.")
}

/// Parse and check a `physical` network.
///
/// # Errors
/// Every broken rule.
pub fn parse_uplink(n: &Network) -> Result<Uplink, Vec<ValidationError>> {
    let mut e = Errs::new(format!("network {}", n.name));
    let mut u = Uplink {
        name: n.name.clone(),
        routes: Vec::new(),
        ranges: Vec::new(),
    };
    for (k, v) in &n.config {
        match k.as_str() {
            "ipv4.routes" | "ipv6.routes" => match parse_cidr_list(v) {
                Ok(nets) => {
                    if nets
                        .iter()
                        .any(|n| n.addr().is_ipv4() != (k == "ipv4.routes"))
                    {
                        e.add(format!("config.{k}"), format!("Wrong IP family in \"{v}\""));
                    }
                    u.routes.extend(nets);
                }
                Err(m) => e.add(format!("config.{k}"), m),
            },
            "ipv4.ovn.ranges" | "ipv6.ovn.ranges" => {
                match parse_ranges(v, k == "ipv4.ovn.ranges") {
                    Ok(ranges) => u.ranges.push(OvnRanges {
                        key: k.clone(),
                        raw: v.clone(),
                        ranges,
                    }),
                    Err(m) => e.add(format!("config.{k}"), m),
                }
            }
            k if is_user_key(k) => {}
            _ => e.add(format!("config.{k}"), format!("Invalid option \"{k}\"")),
        }
    }
    if e.list.is_empty() {
        Ok(u)
    } else {
        Err(e.list)
    }
}

fn parse_gateway(v: &str, v4: bool) -> Result<Option<IpNet>, String> {
    if v == "none" || v.is_empty() {
        return Ok(None);
    }
    let n: IpNet = v
        .parse()
        .map_err(|_| format!("Invalid gateway/prefix \"{v}\" (e.g. 10.0.0.1/24, or none)"))?;
    if n.addr().is_ipv4() != v4 {
        return Err(format!("Wrong IP family in \"{v}\""));
    }
    Ok(Some(n))
}

/// Parse and check an `ovn` network against the list of networks (for its uplink).
///
/// # Errors
/// Every broken rule.
pub fn parse_ovn(n: &Network, networks: &[Network]) -> Result<OvnNetwork, Vec<ValidationError>> {
    let mut e = Errs::new(format!("network {}", n.name));
    let get = |k: &str| {
        n.config
            .get(k)
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    let mut o = OvnNetwork {
        name: n.name.clone(),
        uplink: get("network").unwrap_or_default(),
        router: get("ovn.router").unwrap_or_default(),
        switch: get("ovn.switch").unwrap_or_default(),
        prefix: get("ovn.prefix").unwrap_or_else(|| format!("ovnlb-{}", n.name)),
        subnet4: None,
        subnet6: None,
        subnets_given: n.config.contains_key("ipv4.address")
            || n.config.contains_key("ipv6.address"),
        checker4: None,
        checker6: None,
    };
    for k in n.config.keys() {
        let known = matches!(
            k.as_str(),
            "network"
                | "ovn.router"
                | "ovn.switch"
                | "ovn.prefix"
                | "ipv4.address"
                | "ipv6.address"
                | "ipv4.healthcheck.address"
                | "ipv6.healthcheck.address"
        );
        if !known && !is_user_key(k) {
            e.add(format!("config.{k}"), format!("Invalid option \"{k}\""));
        }
    }
    if let Some(p) = n.config.get("ovn.prefix") {
        if let Err(why) = check_name(p, 64, ":") {
            e.add(
                "config.ovn.prefix",
                format!("Invalid value for \"ovn.prefix\": it {why}"),
            );
        }
    }
    for (k, what) in [
        ("network", "the uplink (a physical network)"),
        ("ovn.router", "the NB Logical_Router"),
        ("ovn.switch", "the NB internal Logical_Switch"),
    ] {
        if get(k).is_none() {
            e.add(
                format!("config.{k}"),
                format!("Missing required option \"{k}\": {what}"),
            );
        }
    }
    if let Some(up) = get("network") {
        match networks.iter().find(|x| x.name == up) {
            None => e.add(
                "config.network",
                format!("Uplink network \"{up}\" not found"),
            ),
            Some(x) if x.kind != "physical" => e.add(
                "config.network",
                format!("Uplink network \"{up}\" is not of type physical"),
            ),
            Some(_) => {}
        }
    }
    for (k, v4) in [("ipv4.address", true), ("ipv6.address", false)] {
        if let Some(v) = n.config.get(k) {
            match parse_gateway(v.trim(), v4) {
                Ok(s) if v4 => o.subnet4 = s,
                Ok(s) => o.subnet6 = s,
                Err(m) => e.add(format!("config.{k}"), m),
            }
        }
    }
    for (k, v4) in [
        ("ipv4.healthcheck.address", true),
        ("ipv6.healthcheck.address", false),
    ] {
        let Some(v) = get(k) else { continue };
        match v.parse::<IpAddr>() {
            Ok(a) if a.is_ipv4() == v4 => {
                if v4 {
                    o.checker4 = Some(a)
                } else {
                    o.checker6 = Some(a)
                }
            }
            _ => e.add(
                format!("config.{k}"),
                format!(
                    "Invalid value for \"{k}\": \"{v}\" is not an {} address",
                    if v4 { "IPv4" } else { "IPv6" }
                ),
            ),
        }
    }
    if e.list.is_empty() {
        Ok(o)
    } else {
        Err(e.list)
    }
}

/// A name that is safe in a URL segment, in an NB row name and in a log line: LXD's
/// network-name characters (those of an interface name: ASCII letters, digits, `-`, `_`,
/// `.`, plus `extra`), starting with a letter or digit (so never `.`, `..` or an
/// option-like `-x`), at most `max` bytes. No control, bidi or NUL characters, no `/`,
/// no `%`.
fn check_name(name: &str, max: usize, extra: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c) || extra.contains(c);
    if name.is_empty() || name.len() > max {
        return Err(format!("must be 1-{max} characters long"));
    }
    if let Some(c) = name.chars().find(|c| !allowed(*c)) {
        return Err(format!(
            "must consist of ASCII letters, digits and \"-_.{extra}\" only (found {:?})",
            c
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err("must start with a letter or a digit".into());
    }
    Ok(())
}

/// Check a network's generic fields.
pub fn check_network_common(n: &Network) -> Vec<ValidationError> {
    let mut e = Errs::new(format!("network {}", n.name));
    if let Err(why) = check_name(&n.name, 63, "") {
        e.add("name", format!("Network name {why}"));
    }
    if !matches!(n.kind.as_str(), "physical" | "ovn") {
        e.add(
            "type",
            format!(
                "Invalid network type \"{}\": must be one of physical, ovn",
                n.kind
            ),
        );
    }
    e.list
}

/// Rules on the listen address common to load balancers and forwards.
fn check_listen(e: &mut Errs, listen: &str, net: &OvnNetwork, uplink: &Uplink) -> Option<IpAddr> {
    let Ok(ip) = listen.parse::<IpAddr>() else {
        e.add(
            "listen_address",
            format!("Failed parsing \"{listen}\": Invalid IP representation"),
        );
        return None;
    };
    if ip.is_unspecified() {
        e.add(
            "listen_address",
            "A listen address is required (address allocation is not supported)",
        );
        return None;
    }
    if let Some(s) = net.subnet_for(&ip) {
        if s.trunc().contains(&ip) {
            e.add(
                "listen_address",
                format!("Listen address \"{ip}\" is inside the network's own subnet {s}: internal load balancers and forwards are not supported"),
            );
            return None;
        }
    }
    if !uplink.routes.iter().any(|r| r.contains(&ip)) {
        e.add(
            "listen_address",
            format!("Uplink network does not contain \"{ip}\" in its routes"),
        );
        return None;
    }
    for OvnRanges { key, raw, ranges } in &uplink.ranges {
        if ranges.iter().any(|(a, b)| *a <= ip && ip <= *b) {
            e.add(
                "listen_address",
                format!("Listen address \"{ip}\" overlaps with \"{key}\" (\"{raw}\")"),
            );
            return None;
        }
    }
    Some(ip)
}

/// Refuse keys that are neither `user.*` nor in `extra`; the `healthcheck*` keys are
/// left to [`health::parse`] when `checks` (a load balancer), and refused with why
/// otherwise (a forward has no health checks).
fn check_config(e: &mut Errs, config: &super::model::Config, extra: &[&str], checks: bool) {
    for k in config.keys() {
        if is_user_key(k)
            || extra.contains(&k.as_str())
            || (checks && health::is_key(k))
            || super::options::is_key(k)
        {
            continue;
        }
        if health::is_key(k) {
            e.add(
                format!("config.{k}"),
                format!("Invalid option \"{k}\": network forwards have no health checks"),
            );
        } else {
            e.add(format!("config.{k}"), format!("Invalid option \"{k}\""));
        }
    }
}

/// Fill in and check the checker addresses of a network whose subnets are known: an
/// address given must be a free host address of its family's subnet (and the family
/// must have one); one not given is the subnet's default, which `ipv4.address` (as
/// `ipv6.address`) given in the config may not take.
///
/// # Errors
/// Each broken rule.
pub fn settle_checkers(net: &mut OvnNetwork) -> Vec<ValidationError> {
    let mut e = Errs::new(format!("network {}", net.name));
    let given = net.subnets_given;
    for (family, subnet, checker) in [
        ("ipv4", net.subnet4, &mut net.checker4),
        ("ipv6", net.subnet6, &mut net.checker6),
    ] {
        let key = format!("{family}.healthcheck.address");
        match (subnet, *checker) {
            (None, Some(a)) => e.add(
                format!("config.{key}"),
                format!("Invalid value for \"{key}\": {a}: the network has no {family} subnet"),
            ),
            (Some(s), Some(a)) => {
                if let Err(why) = health::check_checker(&a, &s) {
                    e.add(
                        format!("config.{key}"),
                        format!("Invalid value for \"{key}\": {why}"),
                    );
                }
            }
            (Some(s), None) => {
                let d = health::default_checker(&s);
                if d == Some(s.addr()) {
                    if given {
                        e.add(
                            format!("config.{family}.address"),
                            format!("'{family}.address' cannot be set to {} because it is reserved for OVN load-balancer health checks", s.addr()),
                        );
                    }
                    *checker = None;
                } else {
                    *checker = d;
                }
            }
            (None, None) => {}
        }
    }
    e.list
}

/// Rules on a target address (backend or forward target).
fn check_target(
    e: &mut Errs,
    field: String,
    addr: &str,
    listen: Option<IpAddr>,
    net: &OvnNetwork,
    who: &str,
) -> Option<IpAddr> {
    let Some(ip) = canonical_ip(addr).and_then(|s| s.parse::<IpAddr>().ok()) else {
        e.add(field, format!("Invalid target address for {who}"));
        return None;
    };
    if let Some(l) = listen {
        if l.is_ipv4() != ip.is_ipv4() {
            e.add(
                field,
                format!("Cannot mix IP versions in listen address and {who} target address"),
            );
            return None;
        }
    }
    if let Some(s) = net.subnet_for(&ip) {
        let n = s.trunc();
        if !n.contains(&ip) {
            e.add(
                field,
                format!("Target address is not within the network subnet for {who}"),
            );
            return None;
        }
        if let IpNet::V4(n4) = n {
            if n4.prefix_len() < 31 {
                if ip == IpAddr::V4(n4.broadcast()) {
                    e.add(field, "Target address cannot be a broadcast address");
                    return None;
                }
                if ip == IpAddr::V4(n4.network()) {
                    e.add(field, "Target address cannot be a network address");
                    return None;
                }
            }
        }
    }
    Some(ip)
}

fn check_protocol(e: &mut Errs, i: usize, p: &str) -> bool {
    if p == "tcp" || p == "udp" {
        return true;
    }
    e.add(
        format!("ports[{i}].protocol"),
        format!(
            "Invalid port protocol in port specification {i}, protocol must be one of: tcp, udp"
        ),
    );
    false
}

/// Listen ports of port entry `i`, with duplicate and cap checks.
fn check_listen_ports(
    e: &mut Errs,
    i: usize,
    protocol: &str,
    listen_port: &str,
    seen: &mut HashSet<(String, u16)>,
    vips: &mut usize,
    limits: &Limits,
) -> Option<Vec<u16>> {
    if listen_port.is_empty() {
        e.add(
            format!("ports[{i}].listen_port"),
            format!("Missing listen port in port specification {i}"),
        );
        return None;
    }
    let ranges = match ports::parse_ports(listen_port) {
        Ok(r) => r,
        Err(m) => {
            e.add(
                format!("ports[{i}].listen_port"),
                format!("Invalid listen port in port specification {i}: {m}"),
            );
            return None;
        }
    };
    *vips += ports::count(&ranges);
    if *vips > limits.max_vips {
        e.add(
            format!("ports[{i}].listen_port"),
            format!("Too many listen ports: more than {} VIPs (each port of a range is one VIP) in port specification {i}", limits.max_vips),
        );
        return None;
    }
    let list = ports::expand(&ranges);
    for p in &list {
        if !seen.insert((protocol.to_owned(), *p)) {
            e.add(format!("ports[{i}].listen_port"), format!("Duplicate listen port {p} for protocol \"{protocol}\" in port specification {i}"));
            return None;
        }
    }
    Some(list)
}

/// Check a load balancer of `net` (normalised first by the caller).
pub fn validate_load_balancer(
    lb: &LoadBalancersPost,
    net: &OvnNetwork,
    uplink: &Uplink,
    limits: &Limits,
) -> Vec<ValidationError> {
    let mut e = Errs::new(format!(
        "load balancer {} of network {}",
        lb.listen_address, net.name
    ));
    let listen = check_listen(&mut e, &lb.listen_address, net, uplink);
    check_config(&mut e, &lb.put.config, &[], true);
    let checked = match health::parse(&lb.put.config) {
        Ok(c) => c.is_some(),
        Err(list) => {
            for (field, message) in list {
                e.add(field, message);
            }
            false
        }
    };
    if let Err(list) = super::options::parse(&lb.put.config, false, checked) {
        for (field, message) in list {
            e.add(field, message);
        }
    }

    let mut names: HashMap<&str, usize> = HashMap::default();
    let mut backend_ports: HashMap<&str, Vec<u16>> = HashMap::default();
    for (i, b) in lb.put.backends.iter().enumerate() {
        if b.name.chars().any(char::is_whitespace) {
            e.add(
                format!("backends[{i}].name"),
                format!("Name cannot contain white space in backend specification {i}"),
            );
        }
        if names.insert(&b.name, i).is_some() {
            e.add(
                format!("backends[{i}].name"),
                format!("Duplicate name \"{}\" in backend specification {i}", b.name),
            );
        }
        check_target(
            &mut e,
            format!("backends[{i}].target_address"),
            &b.target_address,
            listen,
            net,
            &format!("backend \"{}\"", b.name),
        );
        let tp = if b.target_port.is_empty() {
            Vec::new()
        } else {
            match ports::parse_ports(&b.target_port) {
                Ok(r) => ports::expand(&r),
                Err(m) => {
                    e.add(format!("backends[{i}].target_port"), format!("Invalid backend port specification {i} in backend specification {i}: {m}"));
                    Vec::new()
                }
            }
        };
        backend_ports.insert(&b.name, tp);
    }

    let mut seen = HashSet::default();
    let mut vips = 0;
    let mut endpoints = 0usize;
    for (i, p) in lb.put.ports.iter().enumerate() {
        check_protocol(&mut e, i, &p.protocol);
        let Some(list) = check_listen_ports(
            &mut e,
            i,
            &p.protocol,
            &p.listen_port,
            &mut seen,
            &mut vips,
            limits,
        ) else {
            continue;
        };
        // (An empty target_backend is a port whose last backend left: its VIP has no
        // backends, and OVN drops, or rejects with ovn.reject.)
        let mut used = BTreeSet::new();
        for name in &p.target_backend {
            match backend_ports.get(name.as_str()) {
                None => e.add(format!("ports[{i}].target_backend"), format!("Invalid target backend name \"{name}\" in port specification {i}")),
                Some(tp) if tp.len() > 1 && tp.len() != list.len() => e.add(
                    format!("ports[{i}].target_backend"),
                    format!("Mismatch of listen port(s) and target port(s) count for backend \"{name}\" in port specification {i}"),
                ),
                Some(_) => {}
            }
            if !used.insert(name) {
                e.add(
                    format!("ports[{i}].target_backend"),
                    format!("Duplicate target backend \"{name}\" in port specification {i}"),
                );
            }
        }
        endpoints = endpoints.saturating_add(list.len().saturating_mul(used.len()));
    }
    if endpoints > limits.max_endpoints {
        e.add(
            "ports",
            format!(
                "Too many endpoints: the ports expand to {endpoints} pairs of listen port and backend, more than the limit of {} per load balancer",
                limits.max_endpoints
            ),
        );
    }
    // What NB would hold, once the rest is valid (and so bounded by the caps above).
    if e.list.is_empty() {
        for row in super::render::render_load_balancer("", net, lb, 0) {
            let bytes = super::render::vips_bytes(&row);
            if bytes > limits.max_row_bytes {
                e.add(
                    "ports",
                    format!(
                        "Too large for OVN: the {} Load_Balancer row would hold {bytes} bytes of VIPs, more than the limit of {} bytes per row",
                        row.protocol, limits.max_row_bytes
                    ),
                );
            }
        }
    }
    e.list
}

/// Check a forward of `net`.
pub fn validate_forward(
    f: &ForwardsPost,
    net: &OvnNetwork,
    uplink: &Uplink,
    limits: &Limits,
) -> Vec<ValidationError> {
    let mut e = Errs::new(format!(
        "forward {} of network {}",
        f.listen_address, net.name
    ));
    let listen = check_listen(&mut e, &f.listen_address, net, uplink);
    check_config(&mut e, &f.put.config, &["target_address"], false);
    if let Err(list) = super::options::parse(&f.put.config, true, false) {
        for (field, message) in list {
            e.add(field, message);
        }
    }
    if let Some(t) = f.put.config.get("target_address").filter(|t| !t.is_empty()) {
        check_target(
            &mut e,
            "config.target_address".into(),
            t,
            listen,
            net,
            "default target",
        );
    }
    let mut seen = HashSet::default();
    let mut vips = 0;
    for (i, p) in f.put.ports.iter().enumerate() {
        check_protocol(&mut e, i, &p.protocol);
        let Some(list) = check_listen_ports(
            &mut e,
            i,
            &p.protocol,
            &p.listen_port,
            &mut seen,
            &mut vips,
            limits,
        ) else {
            continue;
        };
        if p.target_address.is_empty() {
            e.add(
                format!("ports[{i}].target_address"),
                format!("Missing target address in port specification {i}"),
            );
        } else {
            check_target(
                &mut e,
                format!("ports[{i}].target_address"),
                &p.target_address,
                listen,
                net,
                &format!("port specification {i}"),
            );
        }
        if !p.target_port.is_empty() {
            match ports::parse_ports(&p.target_port) {
                Ok(r) => {
                    let n = ports::count(&r);
                    if n > 1 && n != list.len() {
                        e.add(format!("ports[{i}].target_port"), format!("Mismatch of listen port(s) and target port(s) count in port specification {i}"));
                    }
                }
                Err(m) => e.add(
                    format!("ports[{i}].target_port"),
                    format!("Invalid target port(s) in port specification {i}: {m}"),
                ),
            }
        }
    }
    e.list
}

/// One listener for the uniqueness check: (uplink, address, what it is).
pub type Listener = (String, IpAddr, String);

/// No two listeners on one uplink share an address (a forward and a load balancer map to
/// the same NB row name, so they never may).
pub fn check_unique_listeners(listeners: &[Listener]) -> Vec<ValidationError> {
    let mut seen: HashMap<(&str, IpAddr), &str> = HashMap::default();
    let mut out = Vec::new();
    for (uplink, ip, who) in listeners {
        if let Some(first) = seen.insert((uplink, *ip), who) {
            seen.insert((uplink, *ip), first);
            out.push(ValidationError {
                object: who.clone(),
                field: "listen_address".into(),
                message: format!("Listen address \"{ip}\" overlaps with another network or NIC ({first}, on uplink {uplink})"),
                kind: ErrorKind::Conflict,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::model::{LoadBalancerBackend, LoadBalancerPort, LoadBalancerPut};

    fn nets() -> (OvnNetwork, Uplink) {
        let up = Network {
            name: "uplink".into(),
            kind: "physical".into(),
            config: [
                ("ipv4.routes", "192.0.2.0/24"),
                ("ipv6.routes", "2001:db8::/64"),
                ("ipv4.ovn.ranges", "192.0.2.100-192.0.2.254"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            ..Default::default()
        };
        let ovn = Network {
            name: "ovn1".into(),
            kind: "ovn".into(),
            config: [
                ("network", "uplink"),
                ("ovn.router", "r"),
                ("ovn.switch", "s"),
                ("ipv4.address", "10.0.0.1/24"),
                ("ipv6.address", "fd00::1/64"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            ..Default::default()
        };
        let all = vec![up.clone(), ovn.clone()];
        (parse_ovn(&ovn, &all).unwrap(), parse_uplink(&up).unwrap())
    }

    fn lb(
        listen: &str,
        backends: &[(&str, &str, &str)],
        ports: &[(&str, &str, &[&str])],
    ) -> LoadBalancersPost {
        LoadBalancersPost {
            listen_address: listen.into(),
            put: LoadBalancerPut {
                backends: backends
                    .iter()
                    .map(|(n, a, p)| LoadBalancerBackend {
                        name: (*n).into(),
                        target_address: (*a).into(),
                        target_port: (*p).into(),
                        ..Default::default()
                    })
                    .collect(),
                ports: ports
                    .iter()
                    .map(|(pr, lp, tb)| LoadBalancerPort {
                        protocol: (*pr).into(),
                        listen_port: (*lp).into(),
                        target_backend: tb.iter().map(|s| (*s).to_owned()).collect(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            },
        }
    }

    fn msgs(v: Vec<ValidationError>) -> Vec<String> {
        v.into_iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn a_good_load_balancer() {
        let (n, u) = nets();
        let ok = lb(
            "192.0.2.10",
            &[("b1", "10.0.0.11", "8080"), ("b2", "10.0.0.12", "")],
            &[("tcp", "80,443", &["b1", "b2"]), ("udp", "80", &["b1"])],
        );
        assert!(validate_load_balancer(&ok, &n, &u, &Limits::default()).is_empty());
    }

    #[test]
    fn every_rule() {
        let (n, u) = nets();
        let l = Limits::default();
        let cases: Vec<(LoadBalancersPost, &str)> = vec![
            (lb("nope", &[], &[]), "Failed parsing \"nope\": Invalid IP representation"),
            (lb("0.0.0.0", &[], &[]), "address allocation is not supported"),
            (lb("10.0.0.50", &[], &[]), "internal load balancers and forwards are not supported"),
            (lb("198.51.100.1", &[], &[]), "Uplink network does not contain \"198.51.100.1\" in its routes"),
            (lb("192.0.2.150", &[], &[]), "overlaps with \"ipv4.ovn.ranges\" (\"192.0.2.100-192.0.2.254\")"),
            (lb("192.0.2.10", &[("b 1", "10.0.0.11", "")], &[]), "backends[0].name: Name cannot contain white space in backend specification 0"),
            (lb("192.0.2.10", &[("b", "10.0.0.11", ""), ("b", "10.0.0.12", "")], &[]), "backends[1].name: Duplicate name \"b\" in backend specification 1"),
            (lb("192.0.2.10", &[("b", "10.0.0", "")], &[]), "Invalid target address for backend \"b\""),
            (lb("192.0.2.10", &[("b", "fd00::11", "")], &[]), "Cannot mix IP versions in listen address and backend \"b\" target address"),
            (lb("192.0.2.10", &[("b", "10.0.1.11", "")], &[]), "Target address is not within the network subnet for backend \"b\""),
            (lb("192.0.2.10", &[("b", "10.0.0.255", "")], &[]), "Target address cannot be a broadcast address"),
            (lb("192.0.2.10", &[("b", "10.0.0.0", "")], &[]), "Target address cannot be a network address"),
            (lb("192.0.2.10", &[("b", "10.0.0.11", "0")], &[]), "Invalid backend port specification 0 in backend specification 0: Port 0 is out of range 1-65535"),
            (lb("192.0.2.10", &[("b", "10.0.0.11", "")], &[("TCP", "80", &["b"])]), "Invalid port protocol in port specification 0, protocol must be one of: tcp, udp"),
            (lb("192.0.2.10", &[("b", "10.0.0.11", "")], &[("tcp", "", &["b"])]), "Missing listen port in port specification 0"),
            (lb("192.0.2.10", &[("b", "10.0.0.11", "")], &[("tcp", "99999", &["b"])]), "Invalid listen port in port specification 0: Port 99999 is out of range 1-65535"),
            (lb("192.0.2.10", &[("b", "10.0.0.11", "")], &[("tcp", "90-80", &["b"])]), "End port should be higher than start port"),
            (lb("192.0.2.10", &[("b", "10.0.0.11", "")], &[("tcp", "80", &["b"]), ("tcp", "70-80", &["b"])]), "ports[1].listen_port: Duplicate listen port 80 for protocol \"tcp\" in port specification 1"),
            (lb("192.0.2.10", &[("b", "10.0.0.11", "")], &[("tcp", "80", &["c"])]), "Invalid target backend name \"c\" in port specification 0"),
            (lb("192.0.2.10", &[("b", "10.0.0.11", "81,82")], &[("tcp", "80-82", &["b"])]), "Mismatch of listen port(s) and target port(s) count for backend \"b\" in port specification 0"),
            (lb("192.0.2.10", &[("b", "10.0.0.11", "")], &[("tcp", "1-5000", &["b"])]), "Too many listen ports: more than 4096 VIPs"),
        ];
        for (lbx, want) in cases {
            let got = msgs(validate_load_balancer(&lbx, &n, &u, &l));
            assert!(
                got.iter().any(|m| m.contains(want)),
                "want {want:?}, got {got:?}"
            );
        }
        let mut with_cfg = lb("192.0.2.10", &[], &[]);
        with_cfg.put.config.insert("foo".into(), "x".into());
        with_cfg.put.config.insert("user.ok".into(), "x".into());
        assert_eq!(
            msgs(validate_load_balancer(&with_cfg, &n, &u, &l)),
            ["load balancer 192.0.2.10 of network ovn1: config.foo: Invalid option \"foo\""]
        );
        // A port whose last backend left is accepted.
        let empty = lb("192.0.2.10", &[], &[("tcp", "6443", &[])]);
        assert!(validate_load_balancer(&empty, &n, &u, &l).is_empty());
        // Same port for tcp and udp is fine; 1 target port is many-to-one.
        let ok = lb(
            "2001:db8::10",
            &[("b", "fd00::11", "8080")],
            &[("tcp", "80-82", &["b"]), ("udp", "80", &["b"])],
        );
        assert!(validate_load_balancer(&ok, &n, &u, &l).is_empty());
    }

    #[test]
    fn networks_and_uniqueness() {
        let bad = Network {
            name: "u".into(),
            kind: "physical".into(),
            config: [
                ("ipv4.routes".to_owned(), "192.0.2.0/33".to_owned()),
                ("bogus".to_owned(), "1".to_owned()),
            ]
            .into(),
            ..Default::default()
        };
        let m = msgs(parse_uplink(&bad).unwrap_err());
        assert!(
            m.iter().any(|m| m.contains("Invalid CIDR"))
                && m.iter().any(|m| m.contains("Invalid option \"bogus\"")),
            "{m:?}"
        );
        let o = Network {
            name: "o".into(),
            kind: "ovn".into(),
            config: [("network".to_owned(), "nope".to_owned())].into(),
            ..Default::default()
        };
        let m = msgs(parse_ovn(&o, &[]).unwrap_err());
        assert!(m
            .iter()
            .any(|m| m.contains("Uplink network \"nope\" not found")));
        assert!(m
            .iter()
            .any(|m| m.contains("Missing required option \"ovn.router\"")));
        let ip: IpAddr = "192.0.2.10".parse().unwrap();
        let l = vec![
            ("up".to_owned(), ip, "load balancer A".to_owned()),
            ("up".to_owned(), ip, "forward B".to_owned()),
            ("other".to_owned(), ip, "C".to_owned()),
        ];
        let e = check_unique_listeners(&l);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].kind, ErrorKind::Conflict);
        assert!(e[0]
            .to_string()
            .contains("forward B: listen_address: Listen address \"192.0.2.10\" overlaps"));
    }
}
