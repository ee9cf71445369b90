//! The API objects, field for field as LXD's (`shared/api/network_load_balancer.go`,
//! `network_forward.go`, `network.go`), in JSON and YAML. `null` lists and maps read as
//! empty; [`LoadBalancerPut::normalise`] and friends bring values to canonical form
//! (canonical IPs, trimmed strings, no spaces in port lists).

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Deserializer, Serialize};

/// `null` (or absent) reads as the type's default (a serde `deserialize_with`).
pub fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A config map (`key: value`).
pub type Config = BTreeMap<String, String>;

/// One named backend of a load balancer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBalancerBackend {
    /// Name, unique in the load balancer (`c1-http`).
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    /// Description.
    #[serde(default, deserialize_with = "null_default")]
    pub description: String,
    /// Target port(s), e.g. `80,81,8080-8090`; empty means "the listen port".
    #[serde(default, deserialize_with = "null_default")]
    pub target_port: String,
    /// Target IP inside the network.
    #[serde(default, deserialize_with = "null_default")]
    pub target_address: String,
}

/// One port entry of a load balancer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBalancerPort {
    /// Description.
    #[serde(default, deserialize_with = "null_default")]
    pub description: String,
    /// `tcp` or `udp`.
    #[serde(default, deserialize_with = "null_default")]
    pub protocol: String,
    /// Listen port(s), e.g. `80,81,8080-8090`.
    #[serde(default, deserialize_with = "null_default")]
    pub listen_port: String,
    /// Backend names to balance over.
    #[serde(default, deserialize_with = "null_default")]
    pub target_backend: Vec<String>,
}

/// The editable part of a load balancer (`PUT` body).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBalancerPut {
    /// Description.
    #[serde(default, deserialize_with = "null_default")]
    pub description: String,
    /// Config (`user.*`).
    #[serde(default, deserialize_with = "null_default")]
    pub config: Config,
    /// Backends.
    #[serde(default, deserialize_with = "null_default")]
    pub backends: Vec<LoadBalancerBackend>,
    /// Ports.
    #[serde(default, deserialize_with = "null_default")]
    pub ports: Vec<LoadBalancerPort>,
}

/// A load balancer to create (`POST` body).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBalancersPost {
    /// The editable fields.
    #[serde(flatten)]
    pub put: LoadBalancerPut,
    /// The listen (VIP) address on the uplink.
    #[serde(default, deserialize_with = "null_default")]
    pub listen_address: String,
}

/// A load balancer as returned by `GET`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBalancer {
    /// The editable fields.
    #[serde(flatten)]
    pub put: LoadBalancerPut,
    /// The listen address.
    #[serde(default, deserialize_with = "null_default")]
    pub listen_address: String,
    /// Cluster member (empty: not clustered).
    #[serde(default, deserialize_with = "null_default")]
    pub location: String,
}

/// One port entry of a forward.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardPort {
    /// Description.
    #[serde(default, deserialize_with = "null_default")]
    pub description: String,
    /// `tcp` or `udp`.
    #[serde(default, deserialize_with = "null_default")]
    pub protocol: String,
    /// Listen port(s).
    #[serde(default, deserialize_with = "null_default")]
    pub listen_port: String,
    /// Target port(s): empty (same as listen), one (many-to-one) or as many as listen.
    #[serde(default, deserialize_with = "null_default")]
    pub target_port: String,
    /// Target IP inside the network.
    #[serde(default, deserialize_with = "null_default")]
    pub target_address: String,
}

/// The editable part of a forward.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardPut {
    /// Description.
    #[serde(default, deserialize_with = "null_default")]
    pub description: String,
    /// Config: `target_address` (the default target, whole IP) and `user.*`.
    #[serde(default, deserialize_with = "null_default")]
    pub config: Config,
    /// Port forwards.
    #[serde(default, deserialize_with = "null_default")]
    pub ports: Vec<ForwardPort>,
}

/// A forward to create.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardsPost {
    /// The editable fields.
    #[serde(flatten)]
    pub put: ForwardPut,
    /// The listen address on the uplink.
    #[serde(default, deserialize_with = "null_default")]
    pub listen_address: String,
}

/// A forward as returned by `GET`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forward {
    /// The editable fields.
    #[serde(flatten)]
    pub put: ForwardPut,
    /// The listen address.
    #[serde(default, deserialize_with = "null_default")]
    pub listen_address: String,
    /// Cluster member.
    #[serde(default, deserialize_with = "null_default")]
    pub location: String,
}

/// A network as ovnlb models it: `physical` (an uplink) or `ovn`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// Name.
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    /// Description.
    #[serde(default, deserialize_with = "null_default")]
    pub description: String,
    /// `physical` or `ovn`.
    #[serde(rename = "type", default, deserialize_with = "null_default")]
    pub kind: String,
    /// Config (see `decisions.md` §1).
    #[serde(default, deserialize_with = "null_default")]
    pub config: Config,
}

/// The canonical text of an IP, or `None`.
pub fn canonical_ip(s: &str) -> Option<String> {
    s.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .ok()
        .map(|ip| ip.to_string())
}

/// `80, 81 ,8080-8090` → `80,81,8080-8090`.
fn trim_list(s: &str) -> String {
    s.split(',').map(str::trim).collect::<Vec<_>>().join(",")
}

fn canon_or_trim(s: &str) -> String {
    canonical_ip(s).unwrap_or_else(|| s.trim().to_owned())
}

impl LoadBalancerPut {
    /// Canonical form: trimmed text, canonical target IPs, no spaces in port lists.
    pub fn normalise(&mut self) {
        self.description = self.description.trim().to_owned();
        for b in &mut self.backends {
            b.description = b.description.trim().to_owned();
            b.target_address = canon_or_trim(&b.target_address);
            b.target_port = trim_list(&b.target_port);
        }
        for p in &mut self.ports {
            p.description = p.description.trim().to_owned();
            p.protocol = p.protocol.trim().to_owned();
            p.listen_port = trim_list(&p.listen_port);
            for t in &mut p.target_backend {
                *t = t.trim().to_owned();
            }
        }
    }
}

impl LoadBalancersPost {
    /// Normalise, the listen address included.
    pub fn normalise(&mut self) {
        self.put.normalise();
        self.listen_address = canon_or_trim(&self.listen_address);
    }
}

impl ForwardPut {
    /// Canonical form.
    pub fn normalise(&mut self) {
        self.description = self.description.trim().to_owned();
        if let Some(t) = self.config.get_mut("target_address") {
            *t = canon_or_trim(t);
        }
        for p in &mut self.ports {
            p.description = p.description.trim().to_owned();
            p.protocol = p.protocol.trim().to_owned();
            p.listen_port = trim_list(&p.listen_port);
            p.target_port = trim_list(&p.target_port);
            p.target_address = canon_or_trim(&p.target_address);
        }
    }
}

impl ForwardsPost {
    /// Normalise, the listen address included.
    pub fn normalise(&mut self) {
        self.put.normalise();
        self.listen_address = canon_or_trim(&self.listen_address);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_yaml_field_names_and_nulls() {
        let lb: LoadBalancersPost = serde_json::from_str(
            r#"{"listen_address":"2001:DB8::0010","description":" d ","config":null,"backends":[{"name":"b1","target_address":"10.0.0.11","target_port":"80, 81"}],"ports":[{"protocol":"tcp","listen_port":" 80 ,81","target_backend":["b1"]}]}"#,
        )
        .unwrap();
        let mut lb = lb;
        lb.normalise();
        assert_eq!(lb.listen_address, "2001:db8::10");
        assert_eq!(lb.put.description, "d");
        assert!(lb.put.config.is_empty());
        assert_eq!(lb.put.backends[0].target_port, "80,81");
        assert_eq!(lb.put.ports[0].listen_port, "80,81");
        let v = serde_json::to_value(&LoadBalancer {
            put: lb.put.clone(),
            listen_address: lb.listen_address.clone(),
            location: String::new(),
        })
        .unwrap();
        for k in [
            "listen_address",
            "location",
            "description",
            "config",
            "backends",
            "ports",
        ] {
            assert!(v.get(k).is_some(), "{k}");
        }
        let y: LoadBalancersPost = serde_yaml_ng::from_str("listen_address: 192.0.2.10\nbackends: ~\nports:\n- protocol: udp\n  listen_port: \"53\"\n  target_backend: [a, b]\n").unwrap();
        assert_eq!(y.put.ports[0].target_backend, ["a", "b"]);
        let n: Network = serde_yaml_ng::from_str(
            "name: uplink\ntype: physical\nconfig: {ipv4.routes: 192.0.2.0/24}\n",
        )
        .unwrap();
        assert_eq!(n.kind, "physical");
        let f: ForwardsPost = serde_json::from_str(r#"{"listen_address":"192.0.2.20","config":{"target_address":"10.0.0.011"},"ports":null}"#).unwrap();
        assert!(f.put.ports.is_empty());
    }
}
