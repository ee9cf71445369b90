//! The `ovnlb` command line against a running ovnlbd: `network`, `network
//! load-balancer` and `network forward`, with lxc's grammar, output and messages
//! (`decisions.md` §5; the reference's §5). `ovnlb reconcile` lives in the binary.
//!
//! By concern: [`args`] the grammar, [`connect`] how ovnlbd is reached, `format` the
//! output, `editor` text from stdin or `$EDITOR`, and one function per verb in
//! `network`, `object` (load balancers and forwards) and `port` (their backends and
//! ports); [`http`] is the client.

pub mod args;
pub mod connect;
mod editor;
mod format;
pub mod http;
mod network;
mod object;
mod port;

use std::io::Write;

pub use args::{BackendCmd, Format, NetworkCmd, ObjectCmd, PortCmd};
pub use connect::{Connect, DEFAULT_DIR};
pub use http::{Client, ClientError};

use crate::lb::model::ObjectKind;

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

/// Run `ovnlb network …`, writing to `out`.
///
/// # Errors
/// The server's message, or the client's own (`No matching port(s) found`, …).
pub async fn run(cmd: NetworkCmd, conn: &Connect, out: &mut dyn Write) -> Result<()> {
    let c = conn.client()?;
    match cmd {
        NetworkCmd::LoadBalancer(o) => object::run(ObjectKind::LoadBalancer, o, &c, out).await,
        NetworkCmd::Forward(o) => object::run(ObjectKind::Forward, o, &c, out).await,
        other => network::run(other, &c, out).await,
    }
}
