//! `ovnlb network load-balancer|forward list|show|create|get|set|unset|edit|delete|info`:
//! one function per verb, for either kind of object. `backend` and `port` are in
//! [`super::port`].

use std::io::Write;

use hyper::Method;
use serde_json::{json, Value};

use super::args::{parse_pairs, Format, ObjectCmd};
use super::editor::{edited, stdin_yaml};
use super::format::{got, table, write_out, yaml};
use super::port;
use super::{err, CliError, Client, Result};
use crate::lb::model::{Forward, ForwardPut, LoadBalancer, LoadBalancerPut, ObjectKind};

/// The URL of one object.
pub(super) fn path(k: ObjectKind, net: &str, addr: &str) -> String {
    format!("/1.0/networks/{net}/{}/{addr}", k.collection())
}

/// The object of a GET as the editable YAML/JSON (`description`, `config`, …).
fn editable(k: ObjectKind, v: &Value) -> Result<Value> {
    let e = |e: serde_json::Error| CliError(e.to_string());
    Ok(if k == ObjectKind::LoadBalancer {
        let o: LoadBalancer = serde_json::from_value(v.clone()).map_err(e)?;
        serde_json::to_value(o.put).map_err(e)?
    } else {
        let o: Forward = serde_json::from_value(v.clone()).map_err(e)?;
        serde_json::to_value(o.put).map_err(e)?
    })
}

/// GET, change the editable fields with `f`, PUT with `If-Match`.
pub(super) async fn modify(
    k: ObjectKind,
    c: &Client,
    network: &str,
    addr: &str,
    f: impl FnOnce(&mut Value) -> Result<()>,
) -> Result<()> {
    let path = path(k, network, addr);
    let r = c.get(&path).await?;
    let mut v = editable(k, &r.metadata)?;
    f(&mut v)?;
    c.request(Method::PUT, &path, Some(&v), r.etag.as_deref())
        .await?;
    Ok(())
}

/// Run one verb on objects of kind `k`.
pub(super) async fn run(
    k: ObjectKind,
    cmd: ObjectCmd,
    c: &Client,
    out: &mut dyn Write,
) -> Result<()> {
    match cmd {
        ObjectCmd::List { network, format } => list(k, c, &network, format, out).await,
        ObjectCmd::Show {
            network,
            listen_address,
        } => show(k, c, &network, &listen_address, out).await,
        ObjectCmd::Create {
            network,
            listen_address,
            config,
            description,
        } => create(k, c, &network, &listen_address, &config, description, out).await,
        ObjectCmd::Get {
            network,
            listen_address,
            key,
            property,
        } => {
            let r = c.get(&path(k, &network, &listen_address)).await?;
            write_out(out, &got(&r.metadata, &key, property))
        }
        ObjectCmd::Set {
            network,
            listen_address,
            pairs,
            property,
        } => {
            set(
                k,
                c,
                &network,
                &listen_address,
                parse_pairs(&pairs)?,
                property,
            )
            .await
        }
        ObjectCmd::Unset {
            network,
            listen_address,
            key,
            property,
        } => unset(k, c, &network, &listen_address, key, property).await,
        ObjectCmd::Edit {
            network,
            listen_address,
        } => edit(k, c, &network, &listen_address).await,
        ObjectCmd::Delete {
            network,
            listen_address,
        } => delete(k, c, &network, &listen_address, out).await,
        ObjectCmd::Backend(b) => port::backend(k, b, c).await,
        ObjectCmd::Port(p) => port::port(k, p, c).await,
        ObjectCmd::Info {
            network,
            listen_address,
        } => info(k, c, &network, &listen_address, out).await,
    }
}

/// `list`: lxc's columns for the kind.
async fn list(
    k: ObjectKind,
    c: &Client,
    network: &str,
    format: Format,
    out: &mut dyn Write,
) -> Result<()> {
    let r = c
        .get(&format!(
            "/1.0/networks/{network}/{}?recursion=1",
            k.collection()
        ))
        .await?;
    let objs: Vec<Value> = serde_json::from_value(r.metadata.clone()).unwrap_or_default();
    let s = |o: &Value, p: &str| {
        o.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let ports = |o: &Value| {
        o.get("ports")
            .and_then(Value::as_array)
            .map_or(0, Vec::len)
            .to_string()
    };
    let (header, rows): (Vec<&str>, Vec<Vec<String>>) = if k == ObjectKind::LoadBalancer {
        (
            vec!["LISTEN ADDRESS", "DESCRIPTION", "PORTS"],
            objs.iter()
                .map(|o| vec![s(o, "/listen_address"), s(o, "/description"), ports(o)])
                .collect(),
        )
    } else {
        (
            vec![
                "LISTEN ADDRESS",
                "DESCRIPTION",
                "DEFAULT TARGET ADDRESS",
                "PORTS",
            ],
            objs.iter()
                .map(|o| {
                    vec![
                        s(o, "/listen_address"),
                        s(o, "/description"),
                        s(o, "/config/target_address"),
                        ports(o),
                    ]
                })
                .collect(),
        )
    };
    write_out(out, &table(format, &header, rows, &r.metadata)?)
}

/// `show`: the object as YAML, in the API's field order.
async fn show(
    k: ObjectKind,
    c: &Client,
    network: &str,
    listen_address: &str,
    out: &mut dyn Write,
) -> Result<()> {
    let r = c.get(&path(k, network, listen_address)).await?;
    let e = |e: serde_json::Error| CliError(e.to_string());
    let text = if k == ObjectKind::LoadBalancer {
        yaml(&serde_json::from_value::<LoadBalancer>(r.metadata).map_err(e)?)?
    } else {
        yaml(&serde_json::from_value::<Forward>(r.metadata).map_err(e)?)?
    };
    write_out(out, &text)
}

/// `create`: the YAML on stdin (if any), then the `key=value` pairs and the
/// description over it.
async fn create(
    k: ObjectKind,
    c: &Client,
    network: &str,
    listen_address: &str,
    config: &[String],
    description: Option<String>,
    out: &mut dyn Write,
) -> Result<()> {
    let mut body = stdin_yaml()?;
    let Value::Object(m) = &mut body else {
        return err("The YAML on stdin must be a map");
    };
    let cfg = m.entry("config").or_insert_with(|| json!({}));
    if cfg.is_null() {
        *cfg = json!({});
    }
    for (key, v) in parse_pairs(config)? {
        cfg[key] = Value::String(v);
    }
    if let Some(d) = description {
        m.insert("description".into(), Value::String(d));
    }
    m.insert(
        "listen_address".into(),
        Value::String(listen_address.to_owned()),
    );
    c.request(
        Method::POST,
        &format!("/1.0/networks/{network}/{}", k.collection()),
        Some(&body),
        None,
    )
    .await?;
    write_out(out, &format!("{} {listen_address} created\n", k.title()))
}

/// `set`: config keys (the description with `-p`).
async fn set(
    k: ObjectKind,
    c: &Client,
    network: &str,
    listen_address: &str,
    pairs: Vec<(String, String)>,
    property: bool,
) -> Result<()> {
    modify(k, c, network, listen_address, |v| {
        for (key, val) in pairs {
            if property {
                if key != "description" {
                    return err(format!("Invalid property: {key}"));
                }
                v["description"] = Value::String(val);
            } else {
                if v["config"].is_null() {
                    v["config"] = json!({});
                }
                v["config"][key] = Value::String(val);
            }
        }
        Ok(())
    })
    .await
}

/// `unset`: a config key to `""` (the description with `-p`).
async fn unset(
    k: ObjectKind,
    c: &Client,
    network: &str,
    listen_address: &str,
    key: String,
    property: bool,
) -> Result<()> {
    modify(k, c, network, listen_address, |v| {
        if property {
            if key != "description" {
                return err(format!("Invalid property: {key}"));
            }
            v["description"] = Value::String(String::new());
        } else if v["config"].get(&key).is_some() {
            v["config"][key] = Value::String(String::new());
        }
        Ok(())
    })
    .await
}

/// `edit`: the editable fields through the editor, read back strictly (as lxc: the YAML
/// must read as the editable object), PUT with `If-Match`.
async fn edit(k: ObjectKind, c: &Client, network: &str, listen_address: &str) -> Result<()> {
    let path = path(k, network, listen_address);
    let r = c.get(&path).await?;
    let current = yaml(&editable(k, &r.metadata)?)?;
    let text = edited(&current)?;
    let v: Value = serde_yaml_ng::from_str(&text).map_err(|e| CliError(format!("yaml: {e}")))?;
    let e = |e: serde_json::Error| CliError(format!("yaml: {e}"));
    let (fields, ty): (&[&str], _) = if k == ObjectKind::LoadBalancer {
        (
            &["description", "config", "backends", "ports"],
            "NetworkLoadBalancerPut",
        )
    } else {
        (&["description", "config", "ports"], "NetworkForwardPut")
    };
    if let Some(bad) = v
        .as_object()
        .and_then(|m| m.keys().find(|f| !fields.contains(&f.as_str())))
    {
        return err(format!("yaml: field {bad} not found in type {ty}"));
    }
    if k == ObjectKind::LoadBalancer {
        serde_json::from_value::<LoadBalancerPut>(v.clone()).map_err(e)?;
    } else {
        serde_json::from_value::<ForwardPut>(v.clone()).map_err(e)?;
    }
    c.request(Method::PUT, &path, Some(&v), r.etag.as_deref())
        .await?;
    Ok(())
}

/// `delete`.
async fn delete(
    k: ObjectKind,
    c: &Client,
    network: &str,
    listen_address: &str,
    out: &mut dyn Write,
) -> Result<()> {
    c.request(
        Method::DELETE,
        &path(k, network, listen_address),
        None,
        None,
    )
    .await?;
    write_out(out, &format!("{} {listen_address} deleted\n", k.title()))
}

/// `info`: `/state` as text (revisions, attachments, NB rows, the last error).
async fn info(
    k: ObjectKind,
    c: &Client,
    network: &str,
    listen_address: &str,
    out: &mut dyn Write,
) -> Result<()> {
    let r = c
        .get(&format!("{}/state", path(k, network, listen_address)))
        .await?;
    let m = &r.metadata;
    let mut s = String::new();
    let num = |p: &str| {
        m.pointer(p)
            .and_then(Value::as_u64)
            .map_or("none".to_owned(), |n| n.to_string())
    };
    s.push_str(&format!("Revision: {}\n", num("/revision")));
    s.push_str(&format!("Applied revision: {}\n", num("/applied_revision")));
    let yes = |p: &str| {
        if m.pointer(p).and_then(Value::as_bool) == Some(true) {
            "yes"
        } else {
            "no"
        }
    };
    s.push_str(&format!(
        "Attached to router: {}\n",
        yes("/ovn/router_attached")
    ));
    s.push_str(&format!(
        "Attached to switch: {}\n",
        yes("/ovn/switch_attached")
    ));
    s.push_str("OVN load balancers:\n");
    for lb in m
        .pointer("/ovn/load_balancers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let f = |k: &str| lb.get(k).and_then(Value::as_str).unwrap_or("");
        s.push_str(&format!(
            "  - {} ({}, {})\n",
            f("name"),
            f("protocol"),
            f("uuid")
        ));
    }
    let e = m.get("error").and_then(Value::as_str).unwrap_or("");
    if !e.is_empty() {
        s.push_str(&format!("Error: {e}\n"));
    }
    s.push_str(&health(m));
    write_out(out, &s)
}

/// The health section of `info`, as Incus's client prints it (`Backend health:`, a
/// block per backend, a line per protocol/port), after the effective settings; nothing
/// while the checks are off.
fn health(m: &Value) -> String {
    let Some(hc) = m.get("healthcheck").filter(|h| h.is_object()) else {
        return String::new();
    };
    let n = |k: &str| hc.get(k).and_then(Value::as_u64).unwrap_or(0);
    let sources: Vec<&str> = hc
        .get("source_addresses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut s = format!(
        "Health checks: every {} s, timeout {} s, online after {}, offline after {}, from {}\n",
        n("interval"),
        n("timeout"),
        n("success_count"),
        n("failure_count"),
        if sources.is_empty() {
            "-".to_owned()
        } else {
            sources.join(", ")
        }
    );
    let why = m
        .get("backend_health_error")
        .and_then(Value::as_str)
        .unwrap_or("");
    let Some(backends) = m.get("backend_health").and_then(Value::as_object) else {
        s.push_str(&format!(
            "No load-balancer health information available: {why}\n"
        ));
        return s;
    };
    s.push_str("Backend health:\n");
    for (name, b) in backends {
        let address = b.get("address").and_then(Value::as_str).unwrap_or("");
        s.push_str(&format!("  {name} ({address}):\n"));
        for p in b
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let f = |k: &str| {
                p.get(k)
                    .map(|v| v.as_str().map_or(v.to_string(), str::to_owned))
                    .unwrap_or_default()
            };
            s.push_str(&format!(
                "    - {}/{}: {} (target port {})\n",
                f("protocol"),
                f("port"),
                f("status"),
                f("target_port")
            ));
        }
    }
    s
}
