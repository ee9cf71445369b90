//! `… backend add|remove` and `… port add|remove`: one function per verb, each a GET,
//! an edit of the editable object and a PUT with `If-Match` ([`super::object::modify`]).

use serde_json::Value;

use super::args::{BackendCmd, PortCmd};
use super::object::modify;
use super::{err, CliError, Client, Result};
use crate::lb::model::{
    ForwardPort, ForwardPut, LoadBalancerBackend, LoadBalancerPort, LoadBalancerPut, ObjectKind,
};

/// Run a `backend` verb (load balancers only).
pub(super) async fn backend(k: ObjectKind, b: BackendCmd, c: &Client) -> Result<()> {
    if k == ObjectKind::Forward {
        return err("Forwards have no backends");
    }
    match b {
        BackendCmd::Add {
            network,
            listen_address,
            name,
            target_address,
            target_port,
            description,
        } => {
            let backend = LoadBalancerBackend {
                name,
                description: description.unwrap_or_default(),
                target_address,
                target_port: target_port.unwrap_or_default(),
            };
            backend_add(c, &network, &listen_address, backend).await
        }
        BackendCmd::Remove {
            network,
            listen_address,
            name,
        } => backend_remove(c, &network, &listen_address, &name).await,
    }
}

/// `backend add`.
async fn backend_add(
    c: &Client,
    network: &str,
    listen_address: &str,
    backend: LoadBalancerBackend,
) -> Result<()> {
    modify(ObjectKind::LoadBalancer, c, network, listen_address, |v| {
        let e = |e: serde_json::Error| CliError(e.to_string());
        let mut put: LoadBalancerPut = serde_json::from_value(v.clone()).map_err(e)?;
        put.backends.push(backend);
        *v = serde_json::to_value(put).map_err(e)?;
        Ok(())
    })
    .await
}

/// `backend remove`.
async fn backend_remove(c: &Client, network: &str, listen_address: &str, name: &str) -> Result<()> {
    modify(ObjectKind::LoadBalancer, c, network, listen_address, |v| {
        let e = |e: serde_json::Error| CliError(e.to_string());
        let mut put: LoadBalancerPut = serde_json::from_value(v.clone()).map_err(e)?;
        let before = put.backends.len();
        put.backends.retain(|b| b.name != name);
        if put.backends.len() == before {
            return err("No matching backend found");
        }
        *v = serde_json::to_value(put).map_err(e)?;
        Ok(())
    })
    .await
}

/// Run a `port` verb.
pub(super) async fn port(k: ObjectKind, p: PortCmd, c: &Client) -> Result<()> {
    match p {
        PortCmd::Add {
            network,
            listen_address,
            protocol,
            listen_ports,
            target,
            target_ports,
            description,
        } => {
            let port = NewPort {
                protocol,
                listen_ports,
                target,
                target_ports,
                description: description.unwrap_or_default(),
            };
            port_add(k, c, &network, &listen_address, port).await
        }
        PortCmd::Remove {
            network,
            listen_address,
            protocol,
            listen_ports,
            force,
        } => {
            let which = (protocol.as_deref(), listen_ports.as_deref());
            port_remove(k, c, &network, &listen_address, which, force).await
        }
    }
}

/// A port as `port add` gives it.
struct NewPort {
    protocol: String,
    listen_ports: String,
    /// A load balancer's backends (`a,b` or `target_backend=a,b`), or a forward's target
    /// address.
    target: String,
    /// A forward's target ports.
    target_ports: Option<String>,
    description: String,
}

/// `port add`.
async fn port_add(
    k: ObjectKind,
    c: &Client,
    network: &str,
    listen_address: &str,
    p: NewPort,
) -> Result<()> {
    modify(k, c, network, listen_address, |v| {
        let e = |e: serde_json::Error| CliError(e.to_string());
        if k == ObjectKind::LoadBalancer {
            if p.target_ports.is_some() {
                return err("Load balancer ports take backends, not target ports");
            }
            let list = p
                .target
                .strip_prefix("target_backend=")
                .unwrap_or(&p.target);
            let mut put: LoadBalancerPut = serde_json::from_value(v.clone()).map_err(e)?;
            put.ports.push(LoadBalancerPort {
                description: p.description,
                protocol: p.protocol,
                listen_port: p.listen_ports,
                target_backend: list
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
            });
            *v = serde_json::to_value(put).map_err(e)?;
        } else {
            let mut put: ForwardPut = serde_json::from_value(v.clone()).map_err(e)?;
            put.ports.push(ForwardPort {
                description: p.description,
                protocol: p.protocol,
                listen_port: p.listen_ports,
                target_port: p.target_ports.unwrap_or_default(),
                target_address: p.target,
            });
            *v = serde_json::to_value(put).map_err(e)?;
        }
        Ok(())
    })
    .await
}

/// `port remove`: the ports matching `(protocol, listen ports)` (either unset matches
/// all); more than one only with `--force`.
async fn port_remove(
    k: ObjectKind,
    c: &Client,
    network: &str,
    listen_address: &str,
    (protocol, listen_ports): (Option<&str>, Option<&str>),
    force: bool,
) -> Result<()> {
    modify(k, c, network, listen_address, |v| {
        let ports = v
            .get_mut("ports")
            .and_then(Value::as_array_mut)
            .ok_or_else(|| CliError("No matching port(s) found".into()))?;
        let matches = |p: &Value| {
            let f = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("");
            protocol.is_none_or(|x| f("protocol") == x)
                && listen_ports.is_none_or(|x| f("listen_port") == x)
        };
        let n = ports.iter().filter(|p| matches(p)).count();
        if n == 0 {
            return err("No matching port(s) found");
        }
        if n > 1 && !force {
            return err("Multiple ports match. Use --force to remove them all");
        }
        ports.retain(|p| !matches(p));
        Ok(())
    })
    .await
}
