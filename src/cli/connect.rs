//! How the CLI reaches ovnlbd: its unix socket, or HTTPS with a client certificate.

use clap::Args;

use super::{err, Client, Result};

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
