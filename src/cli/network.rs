//! `ovnlb network list|show|create|get|set|unset|edit|delete`: one function per verb.

use std::io::Write;

use hyper::Method;
use serde_json::{json, Value};

use super::args::{parse_pairs, Format, NetworkCmd};
use super::editor::edited;
use super::format::{got, table, write_out, yaml};
use super::{err, CliError, Client, Result};
use crate::lb::model::{Config, Network};

/// A network in the order lxc shows it.
#[derive(serde::Serialize, serde::Deserialize)]
struct NetworkShow {
    #[serde(default)]
    config: Config,
    #[serde(default)]
    description: String,
    #[serde(default)]
    name: String,
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    used_by: Vec<String>,
    #[serde(default)]
    managed: bool,
    #[serde(default)]
    status: String,
    #[serde(default)]
    locations: Vec<String>,
}

fn path(network: &str) -> String {
    format!("/1.0/networks/{network}")
}

/// Run one of the network verbs (load balancers and forwards are dispatched before).
pub(super) async fn run(cmd: NetworkCmd, c: &Client, out: &mut dyn Write) -> Result<()> {
    match cmd {
        NetworkCmd::List { format } => list(c, format, out).await,
        NetworkCmd::Show { network } => show(c, &network, out).await,
        NetworkCmd::Create {
            network,
            config,
            kind,
            description,
        } => create(c, &network, &kind, description, &config, out).await,
        NetworkCmd::Get {
            network,
            key,
            property,
        } => get(c, &network, &key, property, out).await,
        NetworkCmd::Set {
            network,
            pairs,
            property,
        } => set(c, &network, parse_pairs(&pairs)?, property).await,
        NetworkCmd::Unset {
            network,
            key,
            property,
        } => set(c, &network, vec![(key, String::new())], property).await,
        NetworkCmd::Edit { network } => edit(c, &network).await,
        NetworkCmd::Delete { network } => delete(c, &network, out).await,
        NetworkCmd::LoadBalancer(_) | NetworkCmd::Forward(_) => {
            err("load-balancer and forward are not network verbs")
        }
    }
}

/// `network list`: lxc's columns.
async fn list(c: &Client, format: Format, out: &mut dyn Write) -> Result<()> {
    let r = c.get("/1.0/networks?recursion=1").await?;
    let nets: Vec<Value> = serde_json::from_value(r.metadata.clone()).unwrap_or_default();
    let rows = nets
        .iter()
        .map(|n| {
            let s = |k: &str| n.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            let cfg = |k: &str| {
                n.pointer(&format!("/config/{}", k.replace('/', "~1")))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned()
            };
            vec![
                s("name"),
                s("type"),
                "YES".into(),
                cfg("ipv4.address"),
                cfg("ipv6.address"),
                s("description"),
                n.get("used_by")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len)
                    .to_string(),
                s("status").to_uppercase(),
            ]
        })
        .collect();
    let t = table(
        format,
        &[
            "NAME",
            "TYPE",
            "MANAGED",
            "IPV4",
            "IPV6",
            "DESCRIPTION",
            "USED BY",
            "STATE",
        ],
        rows,
        &r.metadata,
    )?;
    write_out(out, &t)
}

/// `network show`: the network as YAML, in lxc's field order.
async fn show(c: &Client, network: &str, out: &mut dyn Write) -> Result<()> {
    let r = c.get(&path(network)).await?;
    let n: NetworkShow = serde_json::from_value(r.metadata).map_err(|e| CliError(e.to_string()))?;
    write_out(out, &yaml(&n)?)
}

/// `network create`.
async fn create(
    c: &Client,
    network: &str,
    kind: &str,
    description: Option<String>,
    config: &[String],
    out: &mut dyn Write,
) -> Result<()> {
    let cfg: Config = parse_pairs(config)?.into_iter().collect();
    let body = json!({"name": network, "type": kind, "description": description.unwrap_or_default(), "config": cfg});
    c.request(Method::POST, "/1.0/networks", Some(&body), None)
        .await?;
    write_out(out, &format!("Network {network} created\n"))
}

/// `network get`: a config key (a property with `-p`).
async fn get(
    c: &Client,
    network: &str,
    key: &str,
    property: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let r = c.get(&path(network)).await?;
    write_out(out, &got(&r.metadata, key, property))
}

/// `network set` and `unset` (an unset is a set to `""`): GET, change, PUT with
/// `If-Match`.
async fn set(
    c: &Client,
    network: &str,
    pairs: Vec<(String, String)>,
    property: bool,
) -> Result<()> {
    let path = path(network);
    let r = c.get(&path).await?;
    let mut n: Network = serde_json::from_value(r.metadata).map_err(|e| CliError(e.to_string()))?;
    for (k, v) in pairs {
        if property {
            match k.as_str() {
                "description" => n.description = v,
                _ => return err(format!("Invalid property: {k}")),
            }
        } else {
            n.config.insert(k, v);
        }
    }
    let body = json!({"description": n.description, "config": n.config});
    c.request(Method::PUT, &path, Some(&body), r.etag.as_deref())
        .await?;
    Ok(())
}

/// `network edit`: description and config through the editor, PUT with `If-Match`.
async fn edit(c: &Client, network: &str) -> Result<()> {
    let path = path(network);
    let r = c.get(&path).await?;
    let n: Network = serde_json::from_value(r.metadata).map_err(|e| CliError(e.to_string()))?;
    let current = yaml(&json!({"description": n.description, "config": n.config}))?;
    let text = edited(&current)?;
    let v: Value = serde_yaml_ng::from_str(&text).map_err(|e| CliError(format!("yaml: {e}")))?;
    c.request(Method::PUT, &path, Some(&v), r.etag.as_deref())
        .await?;
    Ok(())
}

/// `network delete`.
async fn delete(c: &Client, network: &str, out: &mut dyn Write) -> Result<()> {
    c.request(Method::DELETE, &path(network), None, None)
        .await?;
    write_out(out, &format!("Network {network} deleted\n"))
}
