//! ovnlbd as a library: settings ([`Settings`], from a TOML file, the environment and
//! flags, `decisions.md` §7) and [`run`], which starts the store, the NB session and its
//! cache, the controller and the API, and stops them in order when cancelled.
//!
//! Shutdown: cancelling stops the API from accepting (requests in flight finish), then
//! the controller (a transaction in flight is finished first), then the NB session.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::api::{self, AppState};
use crate::lb::validate::Limits;
use crate::ovsdb::{self, Session, SessionConfig, TlsFiles};
use crate::reconcile::controller::{default_holder, Controller, ControllerOptions};
use crate::reconcile::election::ElectionOptions;
use crate::reconcile::plan::{listen_index, vip_index};
use crate::store::{SqliteStore, Store};

pub use crate::cli::DEFAULT_DIR;

/// NB connection flags, shared by `ovnlb reconcile` and `ovnlbd`.
#[derive(Debug, Clone, clap::Args)]
pub struct NbArgs {
    /// NB remotes, as ovn-nbctl takes them (tcp:IP:PORT,ssl:IP:PORT,unix:PATH).
    #[arg(long, env = "OVNLB_NB")]
    pub nb: Option<String>,
    /// CA certificate for ssl: remotes.
    #[arg(long)]
    pub nb_ca: Option<std::path::PathBuf>,
    /// Client certificate for ssl: remotes.
    #[arg(long)]
    pub nb_cert: Option<std::path::PathBuf>,
    /// Client private key for ssl: remotes.
    #[arg(long)]
    pub nb_key: Option<std::path::PathBuf>,
}

/// Southbound connection flags (ovnlbd: backend health, read-only).
#[derive(Debug, Clone, clap::Args)]
pub struct SbArgs {
    /// SB remotes, as ovn-sbctl takes them; without, `/state` reports no backend health.
    #[arg(long, env = "OVNLB_SB")]
    pub sb: Option<String>,
    /// CA certificate for ssl: remotes.
    #[arg(long)]
    pub sb_ca: Option<std::path::PathBuf>,
    /// Client certificate for ssl: remotes.
    #[arg(long)]
    pub sb_cert: Option<std::path::PathBuf>,
    /// Client private key for ssl: remotes.
    #[arg(long)]
    pub sb_key: Option<std::path::PathBuf>,
}

impl NbArgs {
    /// The settings these flags give (the rest unset).
    pub fn settings(self) -> Settings {
        Settings {
            nb: self.nb,
            nb_ca: self.nb_ca,
            nb_cert: self.nb_cert,
            nb_key: self.nb_key,
            ..Default::default()
        }
    }
}

/// ovnlbd's settings. Every field may come from the TOML file; the binary overlays the
/// environment and flags.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// NB remotes (`tcp:IP:PORT,ssl:IP:PORT,unix:PATH`).
    pub nb: Option<String>,
    /// CA for `ssl:` remotes.
    pub nb_ca: Option<PathBuf>,
    /// Client certificate for `ssl:` remotes.
    pub nb_cert: Option<PathBuf>,
    /// Client key for `ssl:` remotes.
    pub nb_key: Option<PathBuf>,
    /// SB remotes, read for backend health (none: `/state` reports none).
    pub sb: Option<String>,
    /// CA for the SB's `ssl:` remotes.
    pub sb_ca: Option<PathBuf>,
    /// Client certificate for the SB's `ssl:` remotes.
    pub sb_cert: Option<PathBuf>,
    /// Client key for the SB's `ssl:` remotes.
    pub sb_key: Option<PathBuf>,
    /// Owner id of our NB rows.
    pub owner: Option<String>,
    /// State directory (database, socket).
    pub dir: Option<PathBuf>,
    /// API socket (default `<dir>/unix.socket`).
    pub socket: Option<PathBuf>,
    /// `text` or `json`.
    pub log_format: Option<String>,
    /// Periodic resync, seconds.
    pub resync_seconds: Option<u64>,
    /// HTTPS API on this TCP address, with client certificates (off by default).
    pub https_listen: Option<std::net::SocketAddr>,
    /// Plain `/metrics` on this TCP address (off by default; `/1.0/metrics` is on the API).
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Most connections per listener (default: an even share of `RLIMIT_NOFILE` between
    /// the listeners, less a reserve; beyond it the oldest idle connection is closed).
    pub max_connections: Option<usize>,
    /// Seconds to receive a request head, and to keep an idle connection (default 10).
    pub header_timeout_seconds: Option<u64>,
    /// Seconds to receive a request body (default 30).
    pub body_timeout_seconds: Option<u64>,
    /// Most VIPs one load balancer or forward may expand to (default 4096).
    pub max_vips: Option<usize>,
    /// Most VIP × backend pairs one load balancer may expand to (default 65,536).
    pub max_endpoints: Option<usize>,
    /// Most bytes of VIPs in one NB row (default 4 MiB; at most a quarter of
    /// `nb_max_message_bytes`).
    pub max_row_bytes: Option<usize>,
    /// Largest OVSDB message taken from NB (default 64 MiB): the initial snapshot of the
    /// monitored tables must fit in it.
    pub nb_max_message_bytes: Option<usize>,
    /// Where desired state lives: `sqlite` (the default, `<dir>/ovnlb.db`) or
    /// `ovsdb:<remotes>` (an OVNLB database, normally a 3-member cluster shared by
    /// several ovnlbd).
    pub store: Option<String>,
    /// CA for the OVNLB database's `ssl:` remotes.
    pub store_ca: Option<PathBuf>,
    /// Client certificate for the OVNLB database's `ssl:` remotes.
    pub store_cert: Option<PathBuf>,
    /// Client key for the OVNLB database's `ssl:` remotes.
    pub store_key: Option<PathBuf>,
    /// Seconds an OVNLB call may take before the API answers 503 (default 10).
    pub store_timeout_seconds: Option<u64>,
    /// Seconds a standby waits without seeing the active renew its lease before it
    /// takes over (OVNLB only; default 5, renewals every second).
    pub lease_seconds: Option<u64>,
}

/// Where desired state lives.
#[derive(Debug, Clone)]
pub enum StoreChoice {
    /// SQLite at `<dir>/ovnlb.db`.
    Sqlite,
    /// An OVNLB database.
    Ovsdb(crate::store::ovsdb::OvsdbStoreConfig),
}

impl Settings {
    /// Read a TOML file.
    ///
    /// # Errors
    /// Unreadable file, bad TOML, unknown keys.
    pub fn from_file(path: &Path) -> Result<Settings, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// `self`, with every field `over` sets replacing it.
    pub fn overlay(self, over: Settings) -> Settings {
        Settings {
            nb: over.nb.or(self.nb),
            nb_ca: over.nb_ca.or(self.nb_ca),
            nb_cert: over.nb_cert.or(self.nb_cert),
            nb_key: over.nb_key.or(self.nb_key),
            sb: over.sb.or(self.sb),
            sb_ca: over.sb_ca.or(self.sb_ca),
            sb_cert: over.sb_cert.or(self.sb_cert),
            sb_key: over.sb_key.or(self.sb_key),
            owner: over.owner.or(self.owner),
            dir: over.dir.or(self.dir),
            socket: over.socket.or(self.socket),
            log_format: over.log_format.or(self.log_format),
            resync_seconds: over.resync_seconds.or(self.resync_seconds),
            metrics_listen: over.metrics_listen.or(self.metrics_listen),
            https_listen: over.https_listen.or(self.https_listen),
            max_connections: over.max_connections.or(self.max_connections),
            header_timeout_seconds: over.header_timeout_seconds.or(self.header_timeout_seconds),
            body_timeout_seconds: over.body_timeout_seconds.or(self.body_timeout_seconds),
            max_vips: over.max_vips.or(self.max_vips),
            max_endpoints: over.max_endpoints.or(self.max_endpoints),
            max_row_bytes: over.max_row_bytes.or(self.max_row_bytes),
            nb_max_message_bytes: over.nb_max_message_bytes.or(self.nb_max_message_bytes),
            store: over.store.or(self.store),
            store_ca: over.store_ca.or(self.store_ca),
            store_cert: over.store_cert.or(self.store_cert),
            store_key: over.store_key.or(self.store_key),
            store_timeout_seconds: over.store_timeout_seconds.or(self.store_timeout_seconds),
            lease_seconds: over.lease_seconds.or(self.lease_seconds),
        }
    }

    /// The store these settings choose.
    ///
    /// # Errors
    /// An unknown engine, or remotes that do not parse.
    pub fn store_choice(&self) -> Result<StoreChoice, DaemonError> {
        let s = self.store.as_deref().unwrap_or("sqlite").trim();
        if s == "sqlite" {
            return Ok(StoreChoice::Sqlite);
        }
        let Some(remotes) = s.strip_prefix("ovsdb:") else {
            return Err(DaemonError::Settings(format!(
                "store: \"{s}\" is neither sqlite nor ovsdb:<remotes> (e.g. ovsdb:tcp:10.0.0.1:6645,tcp:10.0.0.2:6645)"
            )));
        };
        let mut cfg = crate::store::ovsdb::OvsdbStoreConfig::parse(remotes)
            .map_err(|e| DaemonError::Settings(format!("store: {e}")))?;
        if let Some(ca) = &self.store_ca {
            cfg.tls = Some(TlsFiles {
                ca: ca.clone(),
                cert: self.store_cert.clone(),
                key: self.store_key.clone(),
            });
        }
        if let Some(t) = self.store_timeout_seconds {
            cfg.timeout = std::time::Duration::from_secs(t.max(1));
        }
        Ok(StoreChoice::Ovsdb(cfg))
    }

    /// The state directory.
    pub fn dir(&self) -> PathBuf {
        self.dir.clone().unwrap_or_else(|| DEFAULT_DIR.into())
    }

    /// The largest NB message taken.
    pub fn nb_max_message(&self) -> usize {
        self.nb_max_message_bytes
            .unwrap_or(ovsdb::DEFAULT_MAX_MESSAGE)
    }

    /// What one request may render.
    ///
    /// # Errors
    /// A zero limit, or rows allowed to come near the NB message limit.
    pub fn limits(&self) -> Result<Limits, DaemonError> {
        let d = Limits::default();
        let l = Limits {
            max_vips: self.max_vips.unwrap_or(d.max_vips),
            max_endpoints: self.max_endpoints.unwrap_or(d.max_endpoints),
            max_row_bytes: self.max_row_bytes.unwrap_or(d.max_row_bytes),
        };
        if l.max_vips == 0 || l.max_endpoints == 0 || l.max_row_bytes == 0 {
            return Err(DaemonError::Settings(
                "max_vips, max_endpoints and max_row_bytes must be at least 1".into(),
            ));
        }
        let msg = self.nb_max_message();
        if l.max_row_bytes > msg / 4 {
            return Err(DaemonError::Settings(format!(
                "max_row_bytes ({}) must be at most a quarter of nb_max_message_bytes ({msg}): a row near the message limit cuts every NB client off",
                l.max_row_bytes
            )));
        }
        Ok(l)
    }

    /// The limits of each of `listeners` listeners.
    pub fn serve_options(&self, listeners: usize) -> api::serve::ServeOptions {
        let mut o = api::serve::ServeOptions::for_share(listeners);
        if let Some(n) = self.max_connections {
            o.max_connections = n.max(1);
        }
        if let Some(t) = self.header_timeout_seconds {
            o.header_timeout = std::time::Duration::from_secs(t.max(1));
        }
        o
    }

    /// The API socket.
    pub fn socket(&self) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(|| self.dir().join("unix.socket"))
    }
}

/// How long shutdown waits for open requests before closing them.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Take the exclusive lock of the state dir (`<dir>/ovnlbd.lock`, holding the pid of
/// its holder), released when the returned file is dropped or the process ends.
///
/// # Errors
/// When another process holds it (naming its pid), or the file cannot be opened.
pub fn lock_dir(dir: &Path) -> Result<std::fs::File, DaemonError> {
    use std::io::{Read, Seek, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join("ovnlbd.lock");
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)?;
    match f.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = f.read_to_string(&mut holder);
            return Err(DaemonError::Settings(format!(
                "state dir {} is in use by another ovnlbd (pid {}): {} is locked",
                dir.display(),
                holder.trim(),
                path.display()
            )));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
    }
    f.set_len(0)?;
    f.rewind()?;
    writeln!(f, "{}", std::process::id())?;
    Ok(f)
}

/// Create `dir` (and its parents) as 0750 where missing, whatever the umask.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(dir)
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// A setting is missing or wrong.
    #[error("{0}")]
    Settings(String),
    /// The store failed to open.
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    /// NB settings are wrong.
    #[error("NB: {0}")]
    Ovsdb(#[from] ovsdb::Error),
    /// The socket or directory.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The indexes NB's cache keeps for the planner and the health checks' switch ports.
pub fn nb_indexes() -> Vec<ovsdb::IndexSpec> {
    vec![listen_index(), vip_index(), crate::nb::port_address_index()]
}

/// The NB session of `settings`, monitoring what the controller needs.
///
/// # Errors
/// No or unparsable remotes.
pub fn nb_session(settings: &Settings) -> Result<Session, DaemonError> {
    let nb = settings.nb.as_deref().ok_or_else(|| {
        DaemonError::Settings(
            "no NB remotes: give --nb (or OVNLB_NB, or nb in the config file)".into(),
        )
    })?;
    let remotes = ovsdb::parse_remotes(nb)?;
    let mut cfg = SessionConfig::new(remotes, Arc::new(ovsdb::ovn_nb_schema()));
    cfg.connect.max_message = settings.nb_max_message();
    cfg.monitor = crate::nb::monitor_requests();
    cfg.indexes = nb_indexes();
    if let Some(ca) = &settings.nb_ca {
        cfg.connect.tls = Some(TlsFiles {
            ca: ca.clone(),
            cert: settings.nb_cert.clone(),
            key: settings.nb_key.clone(),
        });
    }
    Ok(Session::start(cfg)?)
}

/// The read-only SB session of `settings`, monitoring `Service_Monitor` only (`None`
/// without SB remotes).
///
/// # Errors
/// Unparsable remotes.
pub fn sb_session(settings: &Settings) -> Result<Option<Session>, DaemonError> {
    let Some(sb) = settings.sb.as_deref() else {
        return Ok(None);
    };
    let remotes = ovsdb::parse_remotes(sb)?;
    let mut cfg = SessionConfig::new(remotes, Arc::new(crate::nb::southbound::schema()));
    cfg.monitor = crate::nb::southbound::monitor_requests();
    cfg.indexes = vec![crate::nb::southbound::port_index()];
    if let Some(ca) = &settings.sb_ca {
        cfg.connect.tls = Some(TlsFiles {
            ca: ca.clone(),
            cert: settings.sb_cert.clone(),
            key: settings.sb_key.clone(),
        });
    }
    Ok(Some(Session::start(cfg)?))
}

/// How often ovnlbd measures the NB round trip on its own session.
pub const NB_ECHO_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Every [`NB_ECHO_EVERY`], an `echo` on the controller's NB session, its round trip
/// recorded (`ovnlb_nb_echo_seconds`): NB's responsiveness as ovnlbd sees it, the runtime
/// included (a worker held by other work delays the reply's processing).
async fn nb_echo_probe(
    session: Session,
    metrics: Arc<crate::metrics::Metrics>,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(NB_ECHO_EVERY) => {}
            () = cancel.cancelled() => return,
        }
        let t0 = std::time::Instant::now();
        let echo = tokio::time::timeout(NB_ECHO_EVERY * 5, session.sync());
        if let Ok(Ok(())) = echo.await {
            metrics.nb_echo_seconds.observe(t0.elapsed());
        }
    }
}

/// The SQLite store at `<dir>/ovnlb.db`.
async fn open_sqlite(dir: &Path) -> Result<Arc<dyn Store>, DaemonError> {
    // Created 0600 before SQLite opens it (its -wal and -shm take the same mode): no
    // window where the desired state is world-readable.
    let db = dir.join("ovnlb.db");
    {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&db)?;
    }
    Ok(Arc::new(
        tokio::task::spawn_blocking(move || SqliteStore::open(db))
            .await
            .map_err(|e| DaemonError::Settings(format!("opening the store: {e}")))??,
    ))
}

/// Run ovnlbd until `cancel`: the store (`<dir>/ovnlb.db`, or OVNLB), the NB session, the
/// controller and the API on the unix socket (and HTTPS, metrics when set). `ready`,
/// when given, receives the socket path once the API listens.
///
/// # Errors
/// When something cannot start; after start, failures are logged and retried.
pub async fn run(
    settings: Settings,
    cancel: CancellationToken,
    ready: Option<tokio::sync::oneshot::Sender<PathBuf>>,
) -> Result<(), DaemonError> {
    let limits = settings.limits()?;
    let dir = settings.dir();
    private_dir(&dir)?;
    // One daemon per state dir, for the life of the process: two controllers on one
    // store revert each other's acknowledged writes in NB.
    let _lock = lock_dir(&dir)?;
    let choice = settings.store_choice()?;
    let (store, ovnlb): (Arc<dyn Store>, _) = match choice {
        StoreChoice::Sqlite => (open_sqlite(&dir).await?, None),
        StoreChoice::Ovsdb(cfg) => {
            info!(remotes = ?cfg.remotes, "desired state in OVNLB");
            let s = Arc::new(crate::store::ovsdb::OvsdbStore::open(cfg).await?);
            (s.clone(), Some(s))
        }
    };
    let session = nb_session(&settings)?;
    let sb = sb_session(&settings)?;
    if sb.is_none() {
        info!("no OVN Southbound configured (--sb): /state reports no backend health");
    }
    let owner = settings.owner.clone().unwrap_or_else(|| "ovnlb".into());
    let mut opts = ControllerOptions {
        owner: owner.clone(),
        limits,
        ..Default::default()
    };
    if let Some(s) = settings.resync_seconds {
        opts.resync_every = std::time::Duration::from_secs(s.max(1));
    }
    // With OVNLB, several ovnlbd share the desired state: the lease elects the one that
    // reconciles.
    let (elected, election) = match &ovnlb {
        Some(_) => {
            let (tx, rx) = tokio::sync::watch::channel(false);
            opts.elected = Some(rx);
            let holder = opts.fence_holder.clone().unwrap_or_else(default_holder);
            let mut e = ElectionOptions::new(&holder);
            if let Some(s) = settings.lease_seconds {
                e.period = std::time::Duration::from_secs(s.max(3));
            }
            (Some(tx), Some(e))
        }
        None => (None, None),
    };
    let controller = Controller::new(session.clone(), store.clone(), opts);
    let status = controller.status();
    let state = AppState {
        store: crate::store::Handle::new(store),
        nb: Some(Arc::new(session.clone())),
        sb: sb
            .clone()
            .map(|s| Arc::new(s) as Arc<dyn crate::lb::health::HealthFacts>),
        status: Some(status.clone()),
        limits,
        owner,
        metrics: Some(controller.metrics()),
        body_timeout: settings
            .body_timeout_seconds
            .map_or(api::BODY_TIMEOUT, |s| {
                std::time::Duration::from_secs(s.max(1))
            }),
    };
    let tracker = TaskTracker::new();
    let ctl_cancel = CancellationToken::new();
    tracker.spawn(nb_echo_probe(
        session.clone(),
        controller.metrics(),
        ctl_cancel.clone(),
    ));
    if let Some(sb) = &sb {
        tracker.spawn(crate::reconcile::facts::watch_health(
            sb.clone(),
            controller.metrics(),
            ctl_cancel.clone(),
        ));
    }
    match (ovnlb, elected, election) {
        (Some(ovnlb), Some(tx), Some(e)) => {
            let stopped = CancellationToken::new();
            let c = tokio::spawn(controller.run(stopped.clone()));
            tracker.spawn(crate::reconcile::election::run(
                ovnlb,
                e,
                tx,
                c,
                stopped,
                ctl_cancel.clone(),
            ));
        }
        _ => {
            tracker.spawn(controller.run(ctl_cancel.clone()));
        }
    }
    let socket = settings.socket();
    let listeners = 1
        + usize::from(settings.metrics_listen.is_some())
        + usize::from(settings.https_listen.is_some());
    let serve_opts = settings.serve_options(listeners);
    info!(
        max_connections = serve_opts.max_connections,
        header_timeout = ?serve_opts.header_timeout,
        "limits of each listener"
    );
    if let Some(addr) = settings.metrics_listen {
        let l = tokio::net::TcpListener::bind(addr).await?;
        info!(%addr, "metrics listening");
        tracker.spawn(api::serve::serve(
            api::serve::Listener::Tcp(l),
            api::metrics_router(state.clone()),
            serve_opts,
            cancel.clone(),
        ));
    }
    let router = api::router(state);
    if let Some(addr) = settings.https_listen {
        let trust = dir.join("trust");
        private_dir(&trust)?;
        let (crt, key) = api::tls::server_cert(&dir)?;
        let tls = api::tls::server_config(&crt, &key)?;
        let l = tokio::net::TcpListener::bind(addr).await?;
        info!(addr = %l.local_addr()?, trust = %trust.display(), "HTTPS API listening");
        tracker.spawn(api::serve::serve(
            api::serve::Listener::Tls(
                l,
                tokio_rustls::TlsAcceptor::from(tls),
                Arc::new(api::tls::TrustList::new(trust)),
            ),
            router.clone(),
            serve_opts,
            cancel.clone(),
        ));
    }
    let listener = api::bind_unix(&socket).await?;
    if let Some(r) = ready {
        let _ = r.send(socket.clone());
    }
    info!(socket = %socket.display(), dir = %dir.display(), "ovnlbd running");
    let closing = cancel.clone();
    tracker.spawn(async move {
        // Shutdown answers every `?wait` at once (503), so no request holds it up.
        closing.cancelled().await;
        status.close();
    });
    let unix = api::serve::serve(
        api::serve::Listener::Unix(listener, socket.clone()),
        router,
        serve_opts,
        cancel.clone(),
    );
    let served: std::io::Result<()> = tokio::select! {
        () = unix => Ok(()),
        // Requests still open after the grace period (a partial request, a slow client)
        // are dropped: SIGTERM always ends the process.
        _ = async {
            cancel.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            warn!(grace = ?SHUTDOWN_GRACE, "requests still open after the grace period: closed");
            Ok(())
        }
    };
    if let Err(e) = &served {
        warn!(error = %e, "API stopped");
    }
    // The API is closed: stop the controller (it finishes a transaction in flight).
    ctl_cancel.cancel();
    tracker.close();
    // (HTTPS connections still open get the same grace period.)
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        warn!("tasks still running after the grace period: left behind");
    }
    session.shutdown();
    if let Some(sb) = &sb {
        sb.shutdown();
    }
    let _ = std::fs::remove_file(&socket);
    info!("ovnlbd stopped");
    served.map_err(DaemonError::Io)
}

/// Where `ovnlb reconcile` reads the desired state.
#[derive(Debug, Clone)]
pub enum Source {
    /// A desired-state file (YAML).
    File(PathBuf),
    /// An ovnlb SQLite store (as ovnlbd keeps it).
    Db(PathBuf),
}

/// One `ovnlb reconcile` pass: what to read, where NB is, how.
#[derive(Debug, Clone)]
pub struct OneShot {
    /// The desired state.
    pub source: Source,
    /// NB remotes and TLS files (`nb`, `nb_ca`, `nb_cert`, `nb_key` are read).
    pub nb: Settings,
    /// The pass's options.
    pub pass: crate::reconcile::PassOptions,
    /// Give up after this long without a usable NB server (also each request's timeout).
    pub timeout: std::time::Duration,
}

/// How a one-shot pass ended.
#[derive(Debug)]
pub enum OneShotOutcome {
    /// The desired state is invalid: nothing was applied. The errors, as text.
    Invalid(Vec<String>),
    /// The pass ran (or planned, in a dry run).
    Done(crate::reconcile::PassReport),
}

/// `ovnlb reconcile`: read the desired state, connect to NB, run one pass.
///
/// # Errors
/// Unreadable sources, no NB remotes, no usable NB server within the timeout, and NB
/// failures of the pass.
pub async fn reconcile_once(o: OneShot) -> Result<OneShotOutcome, DaemonError> {
    let fail = DaemonError::Settings;
    let state = match &o.source {
        Source::File(file) => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| fail(format!("reading {}: {e}", file.display())))?;
            crate::lb::state::DesiredState::from_yaml(&text)
                .map_err(|e| fail(format!("{}: {e}", file.display())))?
        }
        Source::Db(db) => {
            if !db.exists() {
                return Err(fail(format!("{}: no such store", db.display())));
            }
            // Off the runtime's workers, as every SQLite call.
            let path = db.clone();
            tokio::task::spawn_blocking(move || {
                SqliteStore::open(&path)
                    .map_err(|e| fail(format!("opening {}: {e}", path.display())))?
                    .desired_state()
                    .map_err(DaemonError::from)
            })
            .await
            .map_err(|e| fail(format!("reading {}: {e}", db.display())))??
        }
    };
    let nb =
        o.nb.nb
            .clone()
            .ok_or_else(|| fail("give the NB remotes: --nb (or OVNLB_NB)".into()))?;
    let remotes = ovsdb::parse_remotes(&nb)?;
    let mut cfg = SessionConfig::new(remotes, Arc::new(ovsdb::ovn_nb_schema()));
    cfg.monitor = crate::nb::monitor_requests();
    cfg.indexes = nb_indexes();
    cfg.connect.request_timeout = o.timeout;
    if let Some(ca) = &o.nb.nb_ca {
        cfg.connect.tls = Some(TlsFiles {
            ca: ca.clone(),
            cert: o.nb.nb_cert.clone(),
            key: o.nb.nb_key.clone(),
        });
    }
    let session = Session::start(cfg)?;
    if tokio::time::timeout(o.timeout, session.cache().wait_ready())
        .await
        .is_err()
    {
        let secs = o.timeout.as_secs();
        return Err(fail(match session.last_error() {
            Some(e) => format!("no usable NB server at {nb} within {secs} s (last error: {e})"),
            None => format!("no usable NB server at {nb} within {secs} s"),
        }));
    }
    let outcome = match crate::reconcile::reconcile_pass(&session, &state, &o.pass).await {
        Ok(r) => Ok(OneShotOutcome::Done(r)),
        Err(crate::reconcile::ReconcileError::Invalid(errors)) => Ok(OneShotOutcome::Invalid(
            errors.iter().map(ToString::to_string).collect(),
        )),
        Err(e) => Err(fail(e.to_string())),
    };
    session.shutdown();
    outcome
}

/// The options of an `ovnlb reconcile` pass (the rest as [`crate::reconcile`] defaults).
pub fn pass_options(owner: String, dry_run: bool, prune: bool) -> crate::reconcile::PassOptions {
    crate::reconcile::PassOptions {
        owner,
        dry_run,
        prune,
        ..Default::default()
    }
}

/// `ovnlbd migrate`: everything of the SQLite store at `from` into the empty OVNLB
/// database `to`, in one transaction. Returns what was copied.
///
/// # Errors
/// A missing or unreadable source, a target that is not `ovsdb:…`, unreachable or not
/// empty, each as a sentence naming the flag.
pub fn migrate(s: &Settings, from: &std::path::Path, to: &str) -> Result<String, String> {
    if !from.is_file() {
        return Err(format!("--from {}: no such SQLite store", from.display()));
    }
    let sqlite = crate::store::SqliteStore::open(from)
        .map_err(|e| format!("--from {}: {e}", from.display()))?;
    let target = Settings {
        store: Some(to.to_owned()),
        ..s.clone()
    };
    let StoreChoice::Ovsdb(cfg) = target.store_choice().map_err(|e| format!("--to: {e}"))? else {
        return Err(format!("--to {to}: give ovsdb:<remotes>"));
    };
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let store = rt
        .block_on(crate::store::ovsdb::OvsdbStore::open(cfg))
        .map_err(|e| format!("--to {to}: {e}"))?;
    let (n, l, f) = std::thread::scope(|sc| {
        sc.spawn(|| store.import(&sqlite))
            .join()
            .unwrap_or_else(|_| Err(crate::store::StoreError::Task("the copy panicked".into())))
    })
    .map_err(|e| format!("--to {to}: {e}"))?;
    drop(store);
    Ok(format!(
        "migrated {n} networks, {l} load balancers and {f} forwards from {} to {to}",
        from.display()
    ))
}
