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

/// The two kinds of object a network holds: defined once, used by the store, the API,
/// the CLI and the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ObjectKind {
    /// A network load balancer.
    LoadBalancer,
    /// A network forward.
    Forward,
}

impl ObjectKind {
    /// Both kinds.
    pub const ALL: [ObjectKind; 2] = [ObjectKind::LoadBalancer, ObjectKind::Forward];

    /// The API's path segment: `load-balancers`, `forwards`.
    pub fn collection(self) -> &'static str {
        match self {
            ObjectKind::LoadBalancer => "load-balancers",
            ObjectKind::Forward => "forwards",
        }
    }

    /// The name in messages: `load balancer`, `forward`.
    pub fn what(self) -> &'static str {
        match self {
            ObjectKind::LoadBalancer => "load balancer",
            ObjectKind::Forward => "forward",
        }
    }

    /// LXD's title: `Network load balancer`, `Network forward`.
    pub fn title(self) -> &'static str {
        match self {
            ObjectKind::LoadBalancer => "Network load balancer",
            ObjectKind::Forward => "Network forward",
        }
    }

    /// LXD's 404 text: `Network load balancer not found`.
    pub fn not_found(self) -> &'static str {
        match self {
            ObjectKind::LoadBalancer => "Network load balancer not found",
            ObjectKind::Forward => "Network forward not found",
        }
    }
}

impl std::fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.what())
    }
}

/// A load balancer or a forward, owned.
#[derive(Debug, Clone, PartialEq)]
pub enum AnyObject {
    /// A load balancer.
    LoadBalancer(LoadBalancersPost),
    /// A forward.
    Forward(ForwardsPost),
}

impl AnyObject {
    /// Its kind.
    pub fn kind(&self) -> ObjectKind {
        match self {
            AnyObject::LoadBalancer(_) => ObjectKind::LoadBalancer,
            AnyObject::Forward(_) => ObjectKind::Forward,
        }
    }

    /// Its listen address.
    pub fn listen(&self) -> &str {
        match self {
            AnyObject::LoadBalancer(o) => &o.listen_address,
            AnyObject::Forward(o) => &o.listen_address,
        }
    }
}

/// A load balancer or a forward, borrowed (what a store writes).
#[derive(Debug, Clone, Copy)]
pub enum ObjectRef<'a> {
    /// A load balancer.
    LoadBalancer(&'a LoadBalancersPost),
    /// A forward.
    Forward(&'a ForwardsPost),
}

/// The editable part of a load balancer or a forward, borrowed (what an update writes).
#[derive(Debug, Clone, Copy)]
pub enum PutRef<'a> {
    /// A load balancer's.
    LoadBalancer(&'a LoadBalancerPut),
    /// A forward's.
    Forward(&'a ForwardPut),
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::LoadBalancersPost {}
    impl Sealed for super::ForwardsPost {}
}

/// What code generic over the kind needs of an object: [`LoadBalancersPost`] and
/// [`ForwardsPost`] (sealed).
pub trait Object:
    sealed::Sealed + Serialize + serde::de::DeserializeOwned + Clone + Send + Sync + 'static
{
    /// The editable part (`PUT`).
    type Put: Serialize + serde::de::DeserializeOwned + Clone + Default + Send + Sync + 'static;
    /// Its kind.
    const KIND: ObjectKind;
    /// The whole object from its parts.
    fn new(listen_address: String, put: Self::Put) -> Self;
    /// Its listen address.
    fn listen(&self) -> &str;
    /// Its editable part.
    fn put_mut(&mut self) -> &mut Self::Put;
    /// Its parts.
    fn into_parts(self) -> (String, Self::Put);
    /// The config map of an editable part.
    fn config_mut(put: &mut Self::Put) -> &mut Config;
    /// Canonical form, the listen address included.
    fn normalise(&mut self);
    /// Every broken rule, against the network's context.
    fn validate(
        &self,
        net: &super::validate::OvnNetwork,
        uplink: &super::validate::Uplink,
        limits: &super::validate::Limits,
    ) -> Vec<super::validate::ValidationError>;
    /// The load balancer it is (`None`: a forward).
    fn as_load_balancer(&self) -> Option<&LoadBalancersPost> {
        None
    }
    /// Whether its health checks are on (a forward has none).
    fn checks_health(&self) -> bool {
        false
    }
    /// The rules its health checks must meet against NB's switch ports.
    fn check_with_nb(
        &self,
        _net: &super::validate::OvnNetwork,
        _nb: &dyn super::network::NbFacts,
    ) -> Vec<super::validate::ValidationError> {
        Vec::new()
    }
    /// The rules its health checks must meet against the network's other objects of
    /// its kind.
    fn check_shared_backends(
        &self,
        _others: &[Self],
        _net: &super::validate::OvnNetwork,
    ) -> Vec<super::validate::ValidationError>
    where
        Self: Sized,
    {
        Vec::new()
    }
    /// Whether its check reads the network's other objects of its kind (health checks,
    /// or options whose rules depend on northd's version).
    fn reads_neighbours(&self) -> bool {
        self.checks_health()
    }
    /// The rules of its options that depend on northd's `version` (`None`: not known),
    /// against the network's other objects of its kind.
    fn check_with_version(
        &self,
        _others: &[Self],
        _net: &super::validate::OvnNetwork,
        _version: Option<&super::options::NorthdVersion>,
    ) -> Vec<super::validate::ValidationError>
    where
        Self: Sized,
    {
        Vec::new()
    }
    /// Borrowed, for a store.
    fn as_ref(&self) -> ObjectRef<'_>;
    /// An editable part borrowed, for a store.
    fn put_ref(put: &Self::Put) -> PutRef<'_>;
    /// Back from an [`AnyObject`] (`None`: the other kind).
    fn from_any(o: AnyObject) -> Option<Self>;
}

impl Object for LoadBalancersPost {
    type Put = LoadBalancerPut;
    const KIND: ObjectKind = ObjectKind::LoadBalancer;
    fn new(listen_address: String, put: LoadBalancerPut) -> Self {
        LoadBalancersPost {
            listen_address,
            put,
        }
    }
    fn listen(&self) -> &str {
        &self.listen_address
    }
    fn put_mut(&mut self) -> &mut LoadBalancerPut {
        &mut self.put
    }
    fn into_parts(self) -> (String, LoadBalancerPut) {
        (self.listen_address, self.put)
    }
    fn config_mut(put: &mut LoadBalancerPut) -> &mut Config {
        &mut put.config
    }
    fn normalise(&mut self) {
        LoadBalancersPost::normalise(self);
    }
    fn validate(
        &self,
        net: &super::validate::OvnNetwork,
        uplink: &super::validate::Uplink,
        limits: &super::validate::Limits,
    ) -> Vec<super::validate::ValidationError> {
        super::validate::validate_load_balancer(self, net, uplink, limits)
    }
    fn as_load_balancer(&self) -> Option<&LoadBalancersPost> {
        Some(self)
    }
    fn checks_health(&self) -> bool {
        matches!(super::health::parse(&self.put.config), Ok(Some(_)))
    }
    fn check_with_nb(
        &self,
        net: &super::validate::OvnNetwork,
        nb: &dyn super::network::NbFacts,
    ) -> Vec<super::validate::ValidationError> {
        super::health::check_with_nb(self, net, nb)
    }
    fn check_shared_backends(
        &self,
        others: &[Self],
        net: &super::validate::OvnNetwork,
    ) -> Vec<super::validate::ValidationError> {
        super::health::check_shared_backends(self, others, net)
    }
    fn reads_neighbours(&self) -> bool {
        self.checks_health()
            || super::options::of_load_balancer(self)
                .is_some_and(|o| o.affinity_timeout.is_some() || !o.selection_fields.is_empty())
    }
    fn check_with_version(
        &self,
        others: &[Self],
        net: &super::validate::OvnNetwork,
        version: Option<&super::options::NorthdVersion>,
    ) -> Vec<super::validate::ValidationError> {
        super::options::check_with_version(self, others, &net.name, version)
    }
    fn as_ref(&self) -> ObjectRef<'_> {
        ObjectRef::LoadBalancer(self)
    }
    fn put_ref(put: &LoadBalancerPut) -> PutRef<'_> {
        PutRef::LoadBalancer(put)
    }
    fn from_any(o: AnyObject) -> Option<Self> {
        match o {
            AnyObject::LoadBalancer(o) => Some(o),
            AnyObject::Forward(_) => None,
        }
    }
}

impl Object for ForwardsPost {
    type Put = ForwardPut;
    const KIND: ObjectKind = ObjectKind::Forward;
    fn new(listen_address: String, put: ForwardPut) -> Self {
        ForwardsPost {
            listen_address,
            put,
        }
    }
    fn listen(&self) -> &str {
        &self.listen_address
    }
    fn put_mut(&mut self) -> &mut ForwardPut {
        &mut self.put
    }
    fn into_parts(self) -> (String, ForwardPut) {
        (self.listen_address, self.put)
    }
    fn config_mut(put: &mut ForwardPut) -> &mut Config {
        &mut put.config
    }
    fn normalise(&mut self) {
        ForwardsPost::normalise(self);
    }
    fn validate(
        &self,
        net: &super::validate::OvnNetwork,
        uplink: &super::validate::Uplink,
        limits: &super::validate::Limits,
    ) -> Vec<super::validate::ValidationError> {
        super::validate::validate_forward(self, net, uplink, limits)
    }
    fn as_ref(&self) -> ObjectRef<'_> {
        ObjectRef::Forward(self)
    }
    fn put_ref(put: &ForwardPut) -> PutRef<'_> {
        PutRef::Forward(put)
    }
    fn from_any(o: AnyObject) -> Option<Self> {
        match o {
            AnyObject::Forward(o) => Some(o),
            AnyObject::LoadBalancer(_) => None,
        }
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
