//! Desired state: networks with their load balancers and forwards, as the
//! `ovnlb reconcile -f` file and the store hold it, resolved and validated as a whole.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::model::{null_default, ForwardsPost, LoadBalancersPost, Network};
use super::network::{self, NbFacts};
use super::validate::{self, Limits, Listener, OvnNetwork, Uplink, ValidationError};

/// One network in the desired-state file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DesiredNetwork {
    /// The network itself.
    #[serde(flatten)]
    pub network: Network,
    /// Its load balancers (`NetworkLoadBalancersPost` objects).
    #[serde(default, deserialize_with = "null_default")]
    pub load_balancers: Vec<LoadBalancersPost>,
    /// Its forwards (`NetworkForwardsPost` objects).
    #[serde(default, deserialize_with = "null_default")]
    pub forwards: Vec<ForwardsPost>,
    /// Revisions of the objects by listen address (from a store; absent in files).
    #[serde(skip)]
    pub revisions: std::collections::BTreeMap<String, u64>,
}

/// The whole desired state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DesiredState {
    /// Networks, uplinks first or not: order does not matter.
    #[serde(default, deserialize_with = "null_default")]
    pub networks: Vec<DesiredNetwork>,
}

impl DesiredState {
    /// Parse YAML (JSON is YAML too).
    ///
    /// # Errors
    /// The YAML error, with its position.
    pub fn from_yaml(text: &str) -> Result<DesiredState, String> {
        serde_yaml_ng::from_str(text).map_err(|e| e.to_string())
    }
}

/// An `ovn` network ready to render: parsed config, subnets known, objects normalised
/// and valid.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedNetwork {
    /// The parsed network.
    pub net: OvnNetwork,
    /// Its load balancers, each with its revision (0 when not stored).
    pub load_balancers: Vec<(LoadBalancersPost, u64)>,
    /// Its forwards, each with its revision.
    pub forwards: Vec<(ForwardsPost, u64)>,
}

/// Parse, derive missing subnets from `nb` ([`network::ovn`]), normalise and validate
/// everything. Either
/// every `ovn` network comes back ready to render, or every error is reported.
///
/// # Errors
/// All broken rules, across all networks.
pub fn resolve(
    state: &DesiredState,
    limits: &Limits,
    nb: Option<&dyn NbFacts>,
) -> Result<Vec<ResolvedNetwork>, Vec<ValidationError>> {
    let mut errors = Vec::new();
    let networks: Vec<Network> = state.networks.iter().map(|d| d.network.clone()).collect();
    let mut names = crate::fasthash::HashSet::default();
    for n in &networks {
        errors.extend(validate::check_network_common(n));
        if !names.insert(n.name.as_str()) {
            errors.push(ValidationError {
                object: format!("network {}", n.name),
                field: "name".into(),
                message: format!("Network \"{}\" is defined more than once", n.name),
                kind: validate::ErrorKind::Conflict,
            });
        }
    }
    let mut uplinks: Vec<Uplink> = Vec::new();
    for d in &state.networks {
        if d.network.kind == "physical" {
            match validate::parse_uplink(&d.network) {
                Ok(u) => uplinks.push(u),
                Err(e) => errors.extend(e),
            }
            if !d.load_balancers.is_empty() || !d.forwards.is_empty() {
                errors.push(ValidationError {
                    object: format!("network {}", d.network.name),
                    field: String::new(),
                    message: "Network driver \"physical\" does not support load balancers".into(),
                    kind: validate::ErrorKind::Invalid,
                });
            }
        }
    }
    let mut out = Vec::new();
    let mut listeners: Vec<Listener> = Vec::new();
    for d in state.networks.iter().filter(|d| d.network.kind == "ovn") {
        let net = match network::ovn(&d.network, &networks, nb) {
            Ok(n) => n,
            Err(e) => {
                errors.extend(e);
                continue;
            }
        };
        let Some(uplink) = uplinks.iter().find(|u| u.name == net.uplink) else {
            continue;
        };
        let mut lbs = Vec::new();
        for lb in &d.load_balancers {
            let mut lb = lb.clone();
            lb.normalise();
            errors.extend(validate::validate_load_balancer(&lb, &net, uplink, limits));
            if let Ok(ip) = lb.listen_address.parse::<IpAddr>() {
                listeners.push((
                    net.uplink.clone(),
                    ip,
                    format!("load balancer {} of network {}", ip, net.name),
                ));
            }
            let rev = d.revisions.get(&lb.listen_address).copied().unwrap_or(0);
            lbs.push((lb, rev));
        }
        let mut fwds = Vec::new();
        for f in &d.forwards {
            let mut f = f.clone();
            f.normalise();
            errors.extend(validate::validate_forward(&f, &net, uplink, limits));
            if let Ok(ip) = f.listen_address.parse::<IpAddr>() {
                listeners.push((
                    net.uplink.clone(),
                    ip,
                    format!("forward {} of network {}", ip, net.name),
                ));
            }
            let rev = d.revisions.get(&f.listen_address).copied().unwrap_or(0);
            fwds.push((f, rev));
        }
        out.push(ResolvedNetwork {
            net,
            load_balancers: lbs,
            forwards: fwds,
        });
    }
    errors.extend(validate::check_unique_listeners(&listeners));
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}
