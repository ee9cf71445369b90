//! The `ovnlb` command line against a running ovnlbd: `network`, `network
//! load-balancer` and `network forward`, with lxc's grammar, output and messages
//! (`decisions.md` §5; the reference's §5). `ovnlb reconcile` lives in the binary.

pub mod http;

use std::io::{IsTerminal, Read, Write};

use clap::{Args, Subcommand, ValueEnum};
use hyper::Method;
use serde_json::{json, Value};

use crate::lb::model::{
    Config, Forward, ForwardPort, ForwardPut, LoadBalancer, LoadBalancerBackend, LoadBalancerPort,
    LoadBalancerPut, Network, ObjectKind,
};
pub use http::{Client, ClientError};

/// A CLI failure: the message lxc would print after `Error: `.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CliError(pub String);

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        CliError(e.to_string())
    }
}

type Result<T> = std::result::Result<T, CliError>;

fn err<T>(m: impl Into<String>) -> Result<T> {
    Err(CliError(m.into()))
}

/// `--format` of list commands.
#[derive(Debug, Clone, Copy, ValueEnum, Default)]
pub enum Format {
    /// Boxed table.
    #[default]
    Table,
    /// Comma-separated rows, no header.
    Csv,
    /// JSON of the objects.
    Json,
    /// YAML of the objects.
    Yaml,
    /// Columns without borders.
    Compact,
}

/// `ovnlb network …`.
#[derive(Debug, Subcommand)]
pub enum NetworkCmd {
    /// List networks.
    #[command(alias = "ls")]
    List {
        /// Output format.
        #[arg(short, long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Show a network.
    Show {
        /// Network.
        network: String,
    },
    /// Create a network: `ovnlb network create ovn1 --type ovn network=uplink ovn.router=… ovn.switch=…`.
    Create {
        /// Network.
        network: String,
        /// `key=value` config.
        config: Vec<String>,
        /// `physical` (an uplink) or `ovn`.
        #[arg(short, long = "type", default_value = "ovn")]
        kind: String,
        /// Description.
        #[arg(long)]
        description: Option<String>,
    },
    /// Get a config key (or a property with -p).
    Get {
        /// Network.
        network: String,
        /// Key.
        key: String,
        /// The key is a property (description).
        #[arg(short, long)]
        property: bool,
    },
    /// Set config keys (`key=value…`).
    Set {
        /// Network.
        network: String,
        /// `key=value…` (or `key value`).
        pairs: Vec<String>,
        /// Properties (description).
        #[arg(short, long)]
        property: bool,
    },
    /// Unset a config key.
    Unset {
        /// Network.
        network: String,
        /// Key.
        key: String,
        /// The key is a property.
        #[arg(short, long)]
        property: bool,
    },
    /// Edit a network as YAML ($EDITOR, or stdin when not a terminal).
    Edit {
        /// Network.
        network: String,
    },
    /// Delete a network (with its load balancers and forwards).
    #[command(alias = "rm")]
    Delete {
        /// Network.
        network: String,
    },
    /// Network load balancers.
    #[command(name = "load-balancer", subcommand)]
    LoadBalancer(ObjectCmd),
    /// Network forwards.
    #[command(subcommand)]
    Forward(ObjectCmd),
}

/// The verbs of `network load-balancer` and `network forward`.
#[derive(Debug, Subcommand)]
pub enum ObjectCmd {
    /// List them.
    #[command(alias = "ls")]
    List {
        /// Network.
        network: String,
        /// Output format.
        #[arg(short, long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Show one.
    Show {
        /// Network.
        network: String,
        /// Listen address.
        listen_address: String,
    },
    /// Create one (`key=value` config; YAML on stdin gives the rest).
    #[command(alias = "add")]
    Create {
        /// Network.
        network: String,
        /// Listen address.
        listen_address: String,
        /// `key=value` config.
        config: Vec<String>,
        /// Description.
        #[arg(long)]
        description: Option<String>,
    },
    /// Get a config key (or a property with -p).
    Get {
        /// Network.
        network: String,
        /// Listen address.
        listen_address: String,
        /// Key.
        key: String,
        /// The key is a property (description).
        #[arg(short, long)]
        property: bool,
    },
    /// Set config keys (`key=value…`, or the legacy `key value`).
    Set {
        /// Network.
        network: String,
        /// Listen address.
        listen_address: String,
        /// `key=value…`.
        pairs: Vec<String>,
        /// Properties (description).
        #[arg(short, long)]
        property: bool,
    },
    /// Unset a config key.
    Unset {
        /// Network.
        network: String,
        /// Listen address.
        listen_address: String,
        /// Key.
        key: String,
        /// The key is a property.
        #[arg(short, long)]
        property: bool,
    },
    /// Edit as YAML ($EDITOR, or stdin when not a terminal).
    Edit {
        /// Network.
        network: String,
        /// Listen address.
        listen_address: String,
    },
    /// Delete one.
    #[command(aliases = ["rm", "remove"])]
    Delete {
        /// Network.
        network: String,
        /// Listen address.
        listen_address: String,
    },
    /// Backends (load balancers only).
    #[command(subcommand)]
    Backend(BackendCmd),
    /// Ports.
    #[command(subcommand)]
    Port(PortCmd),
    /// State in OVN: desired and applied revision, NB rows, attachment, last error.
    Info {
        /// Network.
        network: String,
        /// Listen address.
        listen_address: String,
    },
}

/// `backend add|remove`.
#[derive(Debug, Subcommand)]
pub enum BackendCmd {
    /// Add a backend.
    #[command(alias = "create")]
    Add {
        /// Network.
        network: String,
        /// Listen address.
        listen_address: String,
        /// Backend name.
        name: String,
        /// Target address.
        target_address: String,
        /// Target port(s).
        target_port: Option<String>,
        /// Description.
        #[arg(long)]
        description: Option<String>,
    },
    /// Remove a backend.
    #[command(aliases = ["delete", "rm"])]
    Remove {
        /// Network.
        network: String,
        /// Listen address.
        listen_address: String,
        /// Backend name.
        name: String,
    },
}

/// `port add|remove`.
#[derive(Debug, Subcommand)]
pub enum PortCmd {
    /// Add a port: load balancers `<protocol> <listen_ports> <backend>[,<backend>]` (or
    /// `target_backend=…`); forwards `<protocol> <listen_ports> <target_address>
    /// [<target_ports>]`.
    #[command(alias = "create")]
    Add {
        /// Network.
        network: String,
        /// Listen address.
        listen_address: String,
        /// `tcp` or `udp`.
        protocol: String,
        /// Listen port(s).
        listen_ports: String,
        /// Backends (load balancer) or target address (forward).
        target: String,
        /// Target port(s) (forwards).
        target_ports: Option<String>,
        /// Description.
        #[arg(long)]
        description: Option<String>,
    },
    /// Remove matching ports.
    #[command(aliases = ["delete", "rm"])]
    Remove {
        /// Network.
        network: String,
        /// Listen address.
        listen_address: String,
        /// Protocol to match.
        protocol: Option<String>,
        /// Listen port(s) to match.
        listen_ports: Option<String>,
        /// Remove every match.
        #[arg(short, long)]
        force: bool,
    },
}

/// Where ovnlbd keeps its state (database, socket) unless told otherwise; the CLI
/// looks for the daemon's socket there.
pub const DEFAULT_DIR: &str = "/var/lib/ovnlb";

/// How to reach the daemon.
#[derive(Debug, Clone, Args)]
pub struct Connect {
    /// ovnlbd's socket. Default: $OVNLB_DIR/unix.socket, /var/lib/ovnlb/unix.socket.
    #[arg(long, global = true, env = "OVNLB_SOCKET")]
    pub socket: Option<std::path::PathBuf>,
    /// A remote ovnlbd: https://host:port (with --tls-cert, --tls-key, --tls-ca).
    #[arg(long, global = true, env = "OVNLB_REMOTE")]
    pub remote: Option<String>,
    /// Client certificate (PEM) for --remote.
    #[arg(long, global = true, env = "OVNLB_TLS_CERT")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// Client key (PEM) for --remote.
    #[arg(long, global = true, env = "OVNLB_TLS_KEY")]
    pub tls_key: Option<std::path::PathBuf>,
    /// The server's certificate or its CA (PEM) for --remote.
    #[arg(long, global = true, env = "OVNLB_TLS_CA")]
    pub tls_ca: Option<std::path::PathBuf>,
}

impl Connect {
    /// The client.
    ///
    /// # Errors
    /// A remote without its CA, or with unusable files.
    pub fn client(&self) -> Result<Client> {
        if let Some(url) = &self.remote {
            let Some(ca) = self.tls_ca.clone() else {
                return err(
                    "--remote needs --tls-ca (the server's certificate), --tls-cert and --tls-key",
                );
            };
            let files = crate::tls::TlsFiles {
                ca,
                cert: self.tls_cert.clone(),
                key: self.tls_key.clone(),
            };
            return Ok(Client::https(url, &files)?);
        }
        let path = self.socket.clone().unwrap_or_else(|| {
            std::env::var_os("OVNLB_DIR")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| DEFAULT_DIR.into())
                .join("unix.socket")
        });
        Ok(Client::unix(path))
    }
}

fn obj_path(k: ObjectKind, net: &str, addr: &str) -> String {
    format!("/1.0/networks/{net}/{}/{addr}", k.collection())
}

fn parse_pairs(pairs: &[String]) -> Result<Vec<(String, String)>> {
    if pairs.len() == 2 && !pairs[0].contains('=') {
        // The legacy `key value` form.
        return Ok(vec![(pairs[0].clone(), pairs[1].clone())]);
    }
    pairs
        .iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) => Ok((k.to_owned(), v.to_owned())),
            None => err(format!("Invalid key=value configuration: {p}")),
        })
        .collect()
}

/// YAML as lxc prints it (Go's yaml: empty strings as `""`).
fn yaml<T: serde::Serialize>(v: &T) -> Result<String> {
    let text = serde_yaml_ng::to_string(v).map_err(|e| CliError(e.to_string()))?;
    // serde's single-quoted scalars become Go's double-quoted ones (only those with no
    // quote or backslash inside, which read the same either way).
    let requote = |l: &str| -> Option<String> {
        let body = l.strip_suffix('\'')?;
        let at = body.rfind('\'')?;
        let (head, inner) = (&body[..at], &body[at + 1..]);
        let plain = !inner.contains(['\'', '"', '\\']);
        let key = head.ends_with(": ") || head.trim_start() == "- ";
        (plain && key).then(|| format!("{head}\"{inner}\"\n"))
    };
    // YAML 1.1 booleans (what Go's yaml reads as true/false) are strings here: quoted.
    let bool11 = |l: &str| -> Option<String> {
        let at = l.rfind(": ").map(|i| i + 2).or_else(|| {
            let t = l.trim_start();
            t.starts_with("- ").then(|| l.len() - t.len() + 2)
        })?;
        let v = &l[at..];
        // (`true`/`false` strings come out quoted already; unquoted they are booleans.)
        const WORDS: [&str; 6] = ["y", "n", "yes", "no", "on", "off"];
        WORDS
            .contains(&v.to_ascii_lowercase().as_str())
            .then(|| format!("{}\"{v}\"\n", &l[..at]))
    };
    Ok(text
        .lines()
        .map(|l| {
            requote(l)
                .or_else(|| bool11(l))
                .unwrap_or_else(|| format!("{l}\n"))
        })
        .collect())
}

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

/// Run `ovnlb network …`, writing to `out`.
///
/// # Errors
/// The server's message, or the client's own (`No matching port(s) found`, …).
pub async fn run(cmd: NetworkCmd, conn: &Connect, out: &mut dyn Write) -> Result<()> {
    let c = conn.client()?;
    match cmd {
        NetworkCmd::LoadBalancer(o) => object(ObjectKind::LoadBalancer, o, &c, out).await,
        NetworkCmd::Forward(o) => object(ObjectKind::Forward, o, &c, out).await,
        other => network(other, &c, out).await,
    }
}

fn write_out(out: &mut dyn Write, s: &str) -> Result<()> {
    out.write_all(s.as_bytes())
        .map_err(|e| CliError(e.to_string()))
}

fn table(
    format: Format,
    header: &[&str],
    rows: Vec<Vec<String>>,
    objects: &Value,
) -> Result<String> {
    let mut rows = rows;
    rows.sort_by(|a, b| natural(&a[0], &b[0]));
    Ok(match format {
        Format::Json => format!("{}\n", objects),
        Format::Yaml => yaml(objects)?,
        Format::Csv => rows
            .iter()
            .map(|r| {
                r.iter()
                    .map(|c| {
                        if c.contains([',', '"', '\n']) {
                            format!("\"{}\"", c.replace('"', "\"\""))
                        } else {
                            c.clone()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(",")
                    + "\n"
            })
            .collect(),
        Format::Table | Format::Compact => {
            let mut w: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
            for r in &rows {
                for (i, c) in r.iter().enumerate() {
                    w[i] = w[i].max(c.chars().count());
                }
            }
            let line = |cells: &[String]| -> String {
                let inner: Vec<String> = cells
                    .iter()
                    .enumerate()
                    .map(|(i, c)| format!(" {c:<width$} ", width = w[i]))
                    .collect();
                if matches!(format, Format::Compact) {
                    // lxc's compact: two spaces before each cell and after the last.
                    let cells: String = cells
                        .iter()
                        .enumerate()
                        .map(|(i, c)| format!("  {c:<width$}", width = w[i]))
                        .collect();
                    format!("{cells}  \n")
                } else {
                    format!("|{}|\n", inner.join("|"))
                }
            };
            let border = format!(
                "+{}+\n",
                w.iter()
                    .map(|n| "-".repeat(n + 2))
                    .collect::<Vec<_>>()
                    .join("+")
            );
            // Headers centred, as lxc prints them (the left half of odd padding smaller).
            let head: Vec<String> = header
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    let pad = w[i] - h.chars().count();
                    format!("{}{h}{}", " ".repeat(pad / 2), " ".repeat(pad - pad / 2))
                })
                .collect();
            let mut s = String::new();
            if matches!(format, Format::Table) {
                s.push_str(&border);
            }
            s.push_str(&line(&head));
            if matches!(format, Format::Table) {
                s.push_str(&border);
            }
            for r in &rows {
                s.push_str(&line(r));
                if matches!(format, Format::Table) {
                    s.push_str(&border);
                }
            }
            s
        }
    })
}

/// Natural order: digit runs compare as numbers (`10.0.0.9` before `10.0.0.10`).
fn natural(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let b = s.as_bytes();
        for i in 1..=b.len() {
            if i == b.len() || b[i].is_ascii_digit() != b[i - 1].is_ascii_digit() {
                out.push((b[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for (x, y) in ca.iter().zip(&cb) {
        let o = match (x, y) {
            ((true, p), (true, q)) => p
                .trim_start_matches('0')
                .len()
                .cmp(&q.trim_start_matches('0').len())
                .then_with(|| p.trim_start_matches('0').cmp(q.trim_start_matches('0'))),
            ((_, p), (_, q)) => p.cmp(q),
        };
        if o != std::cmp::Ordering::Equal {
            return o;
        }
    }
    ca.len().cmp(&cb.len())
}

/// Text from stdin (not a terminal) or from $EDITOR over `current`.
fn edited(current: &str) -> Result<String> {
    if !std::io::stdin().is_terminal() {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| CliError(e.to_string()))?;
        return Ok(s);
    }
    let editor = std::env::var("VISUAL")
        .or_else(|_| std::env::var("EDITOR"))
        .unwrap_or_else(|_| "vi".into());
    let dir = std::env::temp_dir().join(format!("ovnlb-edit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| CliError(e.to_string()))?;
    let file = dir.join("object.yaml");
    std::fs::write(&file, current).map_err(|e| CliError(e.to_string()))?;
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(&file)
        .status()
        .map_err(|e| CliError(format!("running {editor}: {e}")))?;
    let text = std::fs::read_to_string(&file).map_err(|e| CliError(e.to_string()));
    let _ = std::fs::remove_dir_all(&dir);
    if !status.success() {
        return err(format!("{editor} exited with {status}"));
    }
    text
}

/// What `get` prints of an object: a config key's value (a property's with `-p`) and a
/// newline; nothing for a missing key (as lxc).
fn got(object: &Value, key: &str, property: bool) -> String {
    let v = if property {
        object.get(key)
    } else {
        object.get("config").and_then(|m| m.get(key))
    };
    match v.cloned() {
        Some(Value::String(s)) => format!("{s}\n"),
        Some(Value::Null) | None => String::new(),
        Some(other) => format!("{other}\n"),
    }
}

async fn network(cmd: NetworkCmd, c: &Client, out: &mut dyn Write) -> Result<()> {
    match cmd {
        NetworkCmd::List { format } => {
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
        NetworkCmd::Show { network } => {
            let r = c.get(&format!("/1.0/networks/{network}")).await?;
            let n: NetworkShow =
                serde_json::from_value(r.metadata).map_err(|e| CliError(e.to_string()))?;
            write_out(out, &yaml(&n)?)
        }
        NetworkCmd::Create {
            network,
            config,
            kind,
            description,
        } => {
            let cfg: Config = parse_pairs(&config)?.into_iter().collect();
            let body = json!({"name": network, "type": kind, "description": description.unwrap_or_default(), "config": cfg});
            c.request(Method::POST, "/1.0/networks", Some(&body), None)
                .await?;
            write_out(out, &format!("Network {network} created\n"))
        }
        NetworkCmd::Get {
            network,
            key,
            property,
        } => {
            let r = c.get(&format!("/1.0/networks/{network}")).await?;
            write_out(out, &got(&r.metadata, &key, property))
        }
        NetworkCmd::Set {
            network,
            pairs,
            property,
        } => set_network(c, &network, parse_pairs(&pairs)?, property).await,
        NetworkCmd::Unset {
            network,
            key,
            property,
        } => set_network(c, &network, vec![(key, String::new())], property).await,
        NetworkCmd::Edit { network } => {
            let path = format!("/1.0/networks/{network}");
            let r = c.get(&path).await?;
            let n: Network =
                serde_json::from_value(r.metadata).map_err(|e| CliError(e.to_string()))?;
            let current = yaml(&json!({"description": n.description, "config": n.config}))?;
            let text = edited(&current)?;
            let v: Value =
                serde_yaml_ng::from_str(&text).map_err(|e| CliError(format!("yaml: {e}")))?;
            c.request(Method::PUT, &path, Some(&v), r.etag.as_deref())
                .await?;
            Ok(())
        }
        NetworkCmd::Delete { network } => {
            c.request(
                Method::DELETE,
                &format!("/1.0/networks/{network}"),
                None,
                None,
            )
            .await?;
            write_out(out, &format!("Network {network} deleted\n"))
        }
        NetworkCmd::LoadBalancer(_) | NetworkCmd::Forward(_) => unreachable!("dispatched in run"),
    }
}

async fn set_network(
    c: &Client,
    network: &str,
    pairs: Vec<(String, String)>,
    property: bool,
) -> Result<()> {
    let path = format!("/1.0/networks/{network}");
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

async fn object(k: ObjectKind, cmd: ObjectCmd, c: &Client, out: &mut dyn Write) -> Result<()> {
    match cmd {
        ObjectCmd::List { network, format } => {
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
        ObjectCmd::Show {
            network,
            listen_address,
        } => {
            let r = c.get(&obj_path(k, &network, &listen_address)).await?;
            let e = |e: serde_json::Error| CliError(e.to_string());
            let text = if k == ObjectKind::LoadBalancer {
                yaml(&serde_json::from_value::<LoadBalancer>(r.metadata).map_err(e)?)?
            } else {
                yaml(&serde_json::from_value::<Forward>(r.metadata).map_err(e)?)?
            };
            write_out(out, &text)
        }
        ObjectCmd::Create {
            network,
            listen_address,
            config,
            description,
        } => {
            let mut body = if std::io::stdin().is_terminal() {
                json!({})
            } else {
                let mut s = String::new();
                std::io::stdin()
                    .read_to_string(&mut s)
                    .map_err(|e| CliError(e.to_string()))?;
                if s.trim().is_empty() {
                    json!({})
                } else {
                    serde_yaml_ng::from_str(&s).map_err(|e| CliError(format!("yaml: {e}")))?
                }
            };
            let Value::Object(m) = &mut body else {
                return err("The YAML on stdin must be a map");
            };
            let cfg = m.entry("config").or_insert_with(|| json!({}));
            if cfg.is_null() {
                *cfg = json!({});
            }
            for (key, v) in parse_pairs(&config)? {
                cfg[key] = Value::String(v);
            }
            if let Some(d) = description {
                m.insert("description".into(), Value::String(d));
            }
            m.insert(
                "listen_address".into(),
                Value::String(listen_address.clone()),
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
        ObjectCmd::Get {
            network,
            listen_address,
            key,
            property,
        } => {
            let r = c.get(&obj_path(k, &network, &listen_address)).await?;
            write_out(out, &got(&r.metadata, &key, property))
        }
        ObjectCmd::Set {
            network,
            listen_address,
            pairs,
            property,
        } => {
            let pairs = parse_pairs(&pairs)?;
            modify(k, c, &network, &listen_address, |v| {
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
        ObjectCmd::Unset {
            network,
            listen_address,
            key,
            property,
        } => {
            modify(k, c, &network, &listen_address, |v| {
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
        ObjectCmd::Edit {
            network,
            listen_address,
        } => {
            let path = obj_path(k, &network, &listen_address);
            let r = c.get(&path).await?;
            let current = yaml(&editable(k, &r.metadata)?)?;
            let text = edited(&current)?;
            let v: Value =
                serde_yaml_ng::from_str(&text).map_err(|e| CliError(format!("yaml: {e}")))?;
            // Strict, as lxc: the YAML must read as the editable object.
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
        ObjectCmd::Delete {
            network,
            listen_address,
        } => {
            c.request(
                Method::DELETE,
                &obj_path(k, &network, &listen_address),
                None,
                None,
            )
            .await?;
            write_out(out, &format!("{} {listen_address} deleted\n", k.title()))
        }
        ObjectCmd::Backend(b) => {
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
                    modify(k, c, &network, &listen_address, |v| {
                        let mut put: LoadBalancerPut = serde_json::from_value(v.clone())
                            .map_err(|e| CliError(e.to_string()))?;
                        put.backends.push(LoadBalancerBackend {
                            name,
                            description: description.unwrap_or_default(),
                            target_address,
                            target_port: target_port.unwrap_or_default(),
                        });
                        *v = serde_json::to_value(put).map_err(|e| CliError(e.to_string()))?;
                        Ok(())
                    })
                    .await
                }
                BackendCmd::Remove {
                    network,
                    listen_address,
                    name,
                } => {
                    modify(k, c, &network, &listen_address, |v| {
                        let mut put: LoadBalancerPut = serde_json::from_value(v.clone())
                            .map_err(|e| CliError(e.to_string()))?;
                        let before = put.backends.len();
                        put.backends.retain(|b| b.name != name);
                        if put.backends.len() == before {
                            return err("No matching backend found");
                        }
                        *v = serde_json::to_value(put).map_err(|e| CliError(e.to_string()))?;
                        Ok(())
                    })
                    .await
                }
            }
        }
        ObjectCmd::Port(p) => port(k, p, c).await,
        ObjectCmd::Info {
            network,
            listen_address,
        } => {
            let r = c
                .get(&format!("{}/state", obj_path(k, &network, &listen_address)))
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
            write_out(out, &s)
        }
    }
}

/// GET, change the editable fields with `f`, PUT with `If-Match`.
async fn modify(
    k: ObjectKind,
    c: &Client,
    network: &str,
    addr: &str,
    f: impl FnOnce(&mut Value) -> Result<()>,
) -> Result<()> {
    let path = obj_path(k, network, addr);
    let r = c.get(&path).await?;
    let mut v = editable(k, &r.metadata)?;
    f(&mut v)?;
    c.request(Method::PUT, &path, Some(&v), r.etag.as_deref())
        .await?;
    Ok(())
}

async fn port(k: ObjectKind, p: PortCmd, c: &Client) -> Result<()> {
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
            modify(k, c, &network, &listen_address, |v| {
                let e = |e: serde_json::Error| CliError(e.to_string());
                if k == ObjectKind::LoadBalancer {
                    if target_ports.is_some() {
                        return err("Load balancer ports take backends, not target ports");
                    }
                    let list = target.strip_prefix("target_backend=").unwrap_or(&target);
                    let mut put: LoadBalancerPut = serde_json::from_value(v.clone()).map_err(e)?;
                    put.ports.push(LoadBalancerPort {
                        description: description.unwrap_or_default(),
                        protocol,
                        listen_port: listen_ports,
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
                        description: description.unwrap_or_default(),
                        protocol,
                        listen_port: listen_ports,
                        target_port: target_ports.unwrap_or_default(),
                        target_address: target,
                    });
                    *v = serde_json::to_value(put).map_err(e)?;
                }
                Ok(())
            })
            .await
        }
        PortCmd::Remove {
            network,
            listen_address,
            protocol,
            listen_ports,
            force,
        } => {
            modify(k, c, &network, &listen_address, |v| {
                let ports = v
                    .get_mut("ports")
                    .and_then(Value::as_array_mut)
                    .ok_or_else(|| CliError("No matching port(s) found".into()))?;
                let matches = |p: &Value| {
                    let f = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("");
                    protocol.as_deref().is_none_or(|x| f("protocol") == x)
                        && listen_ports
                            .as_deref()
                            .is_none_or(|x| f("listen_port") == x)
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order_and_tables() {
        let mut v = vec!["10.0.0.10", "10.0.0.9", "2001:db8::1", "10.0.0.100"];
        v.sort_by(|a, b| natural(a, b));
        assert_eq!(v, ["10.0.0.9", "10.0.0.10", "10.0.0.100", "2001:db8::1"]);
        let t = table(
            Format::Table,
            &["A", "B"],
            vec![vec!["x".into(), "1".into()]],
            &Value::Null,
        )
        .unwrap();
        assert_eq!(t, "+---+---+\n| A | B |\n+---+---+\n| x | 1 |\n+---+---+\n");
        let t = table(
            Format::Csv,
            &["A", "B"],
            vec![vec!["x,y".into(), "1".into()]],
            &Value::Null,
        )
        .unwrap();
        assert_eq!(t, "\"x,y\",1\n");
        assert_eq!(
            parse_pairs(&["user.a".into(), "b".into()]).unwrap(),
            [("user.a".to_owned(), "b".to_owned())]
        );
        assert!(parse_pairs(&["x".into(), "y".into(), "z".into()]).is_err());
    }
}
