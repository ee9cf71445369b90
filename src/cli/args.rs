//! The command line's grammar: lxc's verbs, arguments and aliases (clap), and the
//! `key=value` pairs they take.

use clap::{Subcommand, ValueEnum};

use super::{err, Result};

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

/// `key=value` pairs (or the legacy `key value`) as given on the command line.
pub(crate) fn parse_pairs(pairs: &[String]) -> Result<Vec<(String, String)>> {
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

#[cfg(test)]
mod tests {
    use super::parse_pairs;

    #[test]
    fn pairs_are_key_value_or_the_legacy_key_and_value() {
        assert_eq!(
            parse_pairs(&["user.a".into(), "b".into()]).unwrap(),
            [("user.a".to_owned(), "b".to_owned())]
        );
        assert_eq!(
            parse_pairs(&["a=1".into(), "b=".into()]).unwrap(),
            [
                ("a".to_owned(), "1".to_owned()),
                ("b".to_owned(), String::new())
            ]
        );
        assert!(parse_pairs(&["x".into(), "y".into(), "z".into()]).is_err());
    }
}
