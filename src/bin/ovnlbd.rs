//! `ovnlbd`: the controller process (store, NB session, controller, LXD-compatible API).
//! Settings: flags > environment > config file > defaults (`decisions.md` §7).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use ovnlb::daemon::{self, Settings};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "ovnlbd",
    version,
    about = "ovnlb's daemon: load balancers and forwards for OVN, behind an LXD-compatible API"
)]
struct Flags {
    /// Config file (TOML; keys as the long flags, with `_`). Default: <dir>/ovnlbd.toml
    /// when present.
    #[arg(long, env = "OVNLB_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    nb: ovnlb::daemon::NbArgs,
    #[command(flatten)]
    sb: ovnlb::daemon::SbArgs,
    /// Owner id of our NB rows (external_ids:ovnlb:owner).
    #[arg(long)]
    owner: Option<String>,
    /// State directory (database, socket). Default /var/lib/ovnlb.
    #[arg(long, env = "OVNLB_DIR")]
    dir: Option<PathBuf>,
    /// API unix socket. Default <dir>/unix.socket (so LXD_DIR=<dir> lxc … works).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long, value_parser = ["text", "json"])]
    log_format: Option<String>,
    /// Periodic resync, in seconds (default 60).
    #[arg(long)]
    resync_seconds: Option<u64>,
    /// Serve the API over HTTPS on this address, with client certificates (trust list:
    /// PEM files in <dir>/trust/; server certificate <dir>/server.crt, generated if absent).
    #[arg(long)]
    https_listen: Option<std::net::SocketAddr>,
    /// Serve plain /metrics on this address (e.g. 127.0.0.1:9100).
    #[arg(long)]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Where desired state lives: sqlite (default, <dir>/ovnlb.db) or ovsdb:<remotes>,
    /// an OVNLB database shared by several ovnlbd (e.g. ovsdb:tcp:10.0.0.1:6645,...).
    #[arg(long, env = "OVNLB_STORE")]
    store: Option<String>,
    /// CA certificate for the OVNLB database's ssl: remotes.
    #[arg(long)]
    store_ca: Option<PathBuf>,
    /// Client certificate for the OVNLB database's ssl: remotes.
    #[arg(long)]
    store_cert: Option<PathBuf>,
    /// Client private key for the OVNLB database's ssl: remotes.
    #[arg(long)]
    store_key: Option<PathBuf>,
    /// Seconds an OVNLB call may take before the API answers 503 (default 10).
    #[arg(long)]
    store_timeout_seconds: Option<u64>,
    /// Seconds without a renewal before a standby takes the reconciler lease (default 5).
    #[arg(long)]
    lease_seconds: Option<u64>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Copy a SQLite store into an empty OVNLB database, in one transaction.
    Migrate {
        /// The SQLite database (e.g. /var/lib/ovnlb/ovnlb.db).
        #[arg(long)]
        from: PathBuf,
        /// ovsdb:<remotes> of the OVNLB database.
        #[arg(long)]
        to: String,
    },
}

fn settings(f: Flags) -> Result<Settings, String> {
    let flags = Settings {
        store: f.store,
        store_ca: f.store_ca,
        store_cert: f.store_cert,
        store_key: f.store_key,
        store_timeout_seconds: f.store_timeout_seconds,
        lease_seconds: f.lease_seconds,
        owner: f.owner,
        dir: f.dir,
        socket: f.socket,
        log_format: f.log_format,
        resync_seconds: f.resync_seconds,
        metrics_listen: f.metrics_listen,
        https_listen: f.https_listen,
        sb: f.sb.sb,
        sb_ca: f.sb.sb_ca,
        sb_cert: f.sb.sb_cert,
        sb_key: f.sb.sb_key,
        ..f.nb.settings()
    };
    let file = match f.config {
        Some(p) => Settings::from_file(&p)?,
        None => {
            let p = flags
                .dir
                .clone()
                .unwrap_or_else(|| daemon::DEFAULT_DIR.into())
                .join("ovnlbd.toml");
            if p.exists() {
                Settings::from_file(&p)?
            } else {
                Settings::default()
            }
        }
    };
    Ok(file.overlay(flags))
}

fn init_logs(format: Option<&str>) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = if format == Some("json") {
        b.json().try_init()
    } else {
        b.try_init()
    };
}

async fn shutdown_signal(cancel: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("signal received: shutting down");
    cancel.cancel();
}

/// Raise the soft descriptor limit to the hard one (systemd's default soft limit is
/// 1024): each listener's connection cap is a share of it.
fn raise_nofile() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut l = getrlimit(Resource::Nofile);
    let want = l.maximum.unwrap_or(1 << 20);
    if l.current.is_some_and(|c| c < want) {
        l.current = Some(want);
        if let Err(e) = setrlimit(Resource::Nofile, l) {
            tracing::warn!(error = %e, "raising RLIMIT_NOFILE failed");
        }
    }
}

fn main() -> ExitCode {
    let mut flags = Flags::parse();
    let command = flags.command.take();
    let s = match settings(flags) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("Error: {e}");
            return ExitCode::FAILURE;
        }
    };
    init_logs(s.log_format.as_deref());
    if let Some(Command::Migrate { from, to }) = command {
        return match daemon::migrate(&s, &from, &to) {
            Ok(m) => {
                println!("{m}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("Error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    raise_nofile();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let cancel = CancellationToken::new();
        tokio::spawn(shutdown_signal(cancel.clone()));
        match daemon::run(s, cancel, None).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("Error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
