//! A supervised session: connect to one of several remotes, keep a monitored cache,
//! reconnect with jittered backoff, follow the cluster leader.
//!
//! The supervisor task loops: pick the first remote of the rotation, connect, check the
//! server through `_Server.Database` (standalone, or clustered, connected, leader when
//! `leader_only`, and a Raft `index` not older than any seen: the stale-follower guard),
//! start the database monitor (resuming from the last transaction id when the server
//! still has it), publish the client, and wait until the connection ends, the server
//! loses leadership or the cache needs a resync. A server that fails or stops leading
//! goes to the end of the rotation. After a full round without success it sleeps a
//! jittered backoff (1 s doubling to 8 s), reset once a connection has been stable.
//! It never panics and never blocks forever: every request has a timeout.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use super::cache::{Cache, IndexSpec};
use super::client::{connect, Client, MonitorRequests, MonitorSelect};
use super::config::{ConnectConfig, Remote};
use super::error::{Error, Result};
use super::schema::DatabaseSchema;
use super::txn::{Transaction, TxnReply};

/// Settings of a supervised session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Remotes, tried in order (rotated on failure).
    pub remotes: Vec<Remote>,
    /// Per-connection settings.
    pub connect: ConnectConfig,
    /// Database to monitor (`OVN_Northbound`).
    pub database: String,
    /// Only use the cluster leader (writes then never go through a follower, and the
    /// cache is never stale).
    pub leader_only: bool,
    /// Schema used for the cache and transaction checks.
    pub schema: Arc<DatabaseSchema>,
    /// Tables and columns to monitor.
    pub monitor: MonitorRequests,
    /// Secondary indexes of the cache.
    pub indexes: Vec<IndexSpec>,
    /// First backoff delay.
    pub backoff_min: Duration,
    /// Largest backoff delay.
    pub backoff_max: Duration,
    /// A connection that lived this long resets the backoff.
    pub stable_after: Duration,
}

impl SessionConfig {
    /// Defaults for `remotes` and `schema`: leader-only, monitoring every table of the
    /// schema with every column.
    pub fn new(remotes: Vec<Remote>, schema: Arc<DatabaseSchema>) -> SessionConfig {
        let monitor = schema
            .tables
            .values()
            .map(|t| {
                (
                    t.name.clone(),
                    MonitorSelect {
                        columns: Some(t.columns.keys().cloned().collect()),
                        conditions: None,
                    },
                )
            })
            .collect();
        SessionConfig {
            remotes,
            connect: ConnectConfig::default(),
            database: schema.name.clone(),
            leader_only: true,
            schema,
            monitor,
            indexes: Vec::new(),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(8),
            stable_after: Duration::from_secs(30),
        }
    }

    /// Monitor only these tables (all their schema columns).
    pub fn tables(mut self, tables: &[&str]) -> Self {
        self.monitor.retain(|t, _| tables.contains(&t.as_str()));
        self
    }
}

/// The session's state, for status pages and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionState {
    /// Not connected; trying.
    Connecting,
    /// Connected and monitoring.
    Connected {
        /// The remote in use.
        remote: String,
        /// Whether the monitor resumed from the last transaction (`found=true`).
        resumed: bool,
    },
    /// Stopped for good.
    Stopped,
}

struct Shared {
    /// The current client, `None` while disconnected.
    client: watch::Sender<Option<Client>>,
    /// The database cache; survives reconnects.
    cache: Arc<Cache>,
    /// State for observers.
    state: watch::Sender<SessionState>,
    /// Highest Raft index seen from any server (stale-follower guard).
    max_index: AtomicI64,
    /// Sessions brought up so far (1 after the first connection).
    connections: AtomicU64,
    /// Why the last attempt failed (cleared on success), for messages.
    last_error: std::sync::Mutex<Option<String>>,
    /// Stops the supervisor.
    cancel: CancellationToken,
    /// Settings.
    cfg: SessionConfig,
}

/// A supervised connection with a live cache. Cheap to clone; the supervisor stops when
/// [`Session::shutdown`] is called or the last handle is dropped.
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
    _guard: Arc<DropGuard>,
}

struct DropGuard(CancellationToken);
impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("state", &*self.shared.state.borrow())
            .finish()
    }
}

impl Session {
    /// Start the supervisor on the current tokio runtime.
    ///
    /// # Errors
    /// [`Error::Config`] when no remote is given.
    pub fn start(cfg: SessionConfig) -> Result<Session> {
        if cfg.remotes.is_empty() {
            return Err(Error::Config("no remote given".into()));
        }
        let cache = Cache::new(cfg.schema.clone(), cfg.monitor.clone(), cfg.indexes.clone());
        let cancel = CancellationToken::new();
        let shared = Arc::new(Shared {
            client: watch::Sender::new(None),
            cache,
            state: watch::Sender::new(SessionState::Connecting),
            max_index: AtomicI64::new(0),
            connections: AtomicU64::new(0),
            last_error: std::sync::Mutex::new(None),
            cancel: cancel.clone(),
            cfg,
        });
        let s = shared.clone();
        tokio::spawn(
            async move { supervise(s).await }.instrument(tracing::info_span!("ovsdb.session")),
        );
        Ok(Session {
            shared,
            _guard: Arc::new(DropGuard(cancel)),
        })
    }

    /// The cache (stays populated while reconnecting).
    pub fn cache(&self) -> &Arc<Cache> {
        &self.shared.cache
    }

    /// The schema.
    pub fn schema(&self) -> &Arc<DatabaseSchema> {
        &self.shared.cfg.schema
    }

    /// A new transaction on the session's database, checked against its schema.
    pub fn transaction(&self) -> Transaction {
        Transaction::with_schema(self.shared.cfg.schema.clone())
    }

    /// Watch the state.
    pub fn state(&self) -> watch::Receiver<SessionState> {
        self.shared.state.subscribe()
    }

    /// Why the last connection attempt failed, if it did (`None` once connected).
    pub fn last_error(&self) -> Option<String> {
        self.shared
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// How many times a session came up (reconnections = this − 1).
    pub fn connection_count(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Whether a server is connected and monitored right now.
    pub fn is_connected(&self) -> bool {
        self.shared
            .client
            .borrow()
            .as_ref()
            .is_some_and(|c| !c.is_closed())
    }

    /// The connected client, waiting up to the request timeout for one.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when no server could be used in time.
    pub async fn client(&self) -> Result<Client> {
        let mut rx = self.shared.client.subscribe();
        let wait = self.shared.cfg.connect.request_timeout;
        let r = tokio::time::timeout(
            wait,
            rx.wait_for(|c| c.as_ref().is_some_and(|c| !c.is_closed())),
        )
        .await;
        match r {
            Ok(Ok(c)) => Ok(c.clone().expect("checked Some")),
            _ => Err(Error::Unavailable(format!(
                "no usable server within {wait:?}"
            ))),
        }
    }

    /// Commit a transaction on the current server.
    ///
    /// # Errors
    /// As [`Client::transact`], plus [`Error::Unavailable`].
    pub async fn transact(&self, txn: &Transaction) -> Result<TxnReply> {
        txn.check()?;
        self.client().await?.transact(txn).await
    }

    /// A barrier: once this returns, the cache holds every change the server had
    /// committed when it was called. ovsdb-server flushes a session's pending monitor
    /// updates before it reads that session's next request
    /// (`ovsdb_jsonrpc_session_run`: `monitor_flush_all` then `session_recv`), and the
    /// updates are applied in wire order, so the echo's reply comes after them. On a
    /// cluster this holds for the server we use (the leader, when leader-only).
    ///
    /// # Errors
    /// As [`Session::client`] and [`Client::echo`].
    pub async fn sync(&self) -> Result<()> {
        self.client().await?.echo().await
    }

    /// Stop the supervisor and close the connection.
    pub fn shutdown(&self) {
        self.shared.cancel.cancel();
    }
}

fn jitter(d: Duration) -> Duration {
    // ±25%, from the v4 UUID generator's randomness (no extra dependency).
    let r = (uuid::Uuid::new_v4().as_u128() % 1000) as f64 / 1000.0;
    d.mul_f64(0.75 + r * 0.5)
}

async fn supervise(shared: Arc<Shared>) {
    let cfg = &shared.cfg;
    let mut rotation: VecDeque<Remote> = cfg.remotes.iter().cloned().collect();
    let mut backoff = cfg.backoff_min;
    let mut failures_this_round = 0usize;
    loop {
        if shared.cancel.is_cancelled() {
            break;
        }
        let remote = rotation.front().cloned().expect("non-empty rotation");
        let started = tokio::time::Instant::now();
        let outcome = tokio::select! {
            r = serve(&shared, &remote) => r,
            _ = shared.cancel.cancelled() => Ok(()),
        };
        shared.client.send_replace(None);
        if shared.cancel.is_cancelled() {
            break;
        }
        shared.state.send_replace(SessionState::Connecting);
        let stable = started.elapsed() >= cfg.stable_after;
        match &outcome {
            Ok(()) => info!(%remote, "ovsdb session ended; reconnecting"),
            Err(e) => {
                warn!(%remote, error = %e, "ovsdb server unusable");
                *shared.last_error.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(format!("{remote}: {e}"));
            }
        }
        // This remote goes to the end of the rotation.
        rotation.rotate_left(1);
        if stable || matches!(outcome, Ok(())) && started.elapsed() >= Duration::from_secs(1) {
            backoff = cfg.backoff_min;
            failures_this_round = 0;
            continue;
        }
        failures_this_round += 1;
        if failures_this_round >= rotation.len() {
            failures_this_round = 0;
            let d = jitter(backoff);
            debug!(delay = ?d, "every remote failed; backing off");
            tokio::select! {
                _ = tokio::time::sleep(d) => {}
                _ = shared.cancel.cancelled() => break,
            }
            backoff = (backoff * 2).min(cfg.backoff_max);
        }
    }
    shared.client.send_replace(None);
    shared.state.send_replace(SessionState::Stopped);
}

/// The `_Server.Database` row for our database.
struct ServerRow {
    model: String,
    connected: bool,
    leader: bool,
    index: i64,
}

fn server_row(cache: &Cache, db: &str) -> Option<ServerRow> {
    cache.read(|v| {
        v.rows("Database")
            .find(|r| r.get_str("name") == Some(db))
            .map(|r| ServerRow {
                model: r.get_str("model").unwrap_or("").to_owned(),
                connected: r
                    .get("connected")
                    .as_scalar()
                    .and_then(|a| a.as_bool())
                    .unwrap_or(false),
                leader: r
                    .get("leader")
                    .as_scalar()
                    .and_then(|a| a.as_bool())
                    .unwrap_or(false),
                index: r
                    .get("index")
                    .as_scalar()
                    .and_then(|a| a.as_i64())
                    .unwrap_or(0),
            })
    })
}

/// Whether the server may be used; `Err` says why not.
fn usable(shared: &Shared, row: &Option<ServerRow>) -> std::result::Result<(), String> {
    let max = shared.max_index.load(Ordering::SeqCst);
    let seen = check_server(
        row.as_ref(),
        &shared.cfg.database,
        shared.cfg.leader_only,
        max,
    )?;
    shared.max_index.fetch_max(seen, Ordering::SeqCst);
    Ok(())
}

/// Whether a server may be used, given its `_Server.Database` row and the highest Raft
/// index seen so far; `Ok` carries the index to remember.
fn check_server(
    row: Option<&ServerRow>,
    db: &str,
    leader_only: bool,
    max_seen: i64,
) -> std::result::Result<i64, String> {
    let Some(row) = row else {
        return Err(format!("server does not serve {db}"));
    };
    if row.model != "clustered" {
        return Ok(max_seen);
    }
    if !row.connected {
        return Err("cluster member is not connected to the cluster".into());
    }
    if leader_only && !row.leader {
        return Err("not the cluster leader".into());
    }
    // A member that lags behind what we have already seen would show us the past.
    if row.index < max_seen {
        return Err(format!(
            "stale cluster member (index {} < {max_seen} seen)",
            row.index
        ));
    }
    Ok(row.index)
}

async fn serve(shared: &Arc<Shared>, remote: &Remote) -> Result<()> {
    let cfg = &shared.cfg;
    let (client, conn) = connect(remote, &cfg.connect).await?;
    let mut conn_task = tokio::spawn(
        conn.run()
            .instrument(tracing::debug_span!("ovsdb.conn", remote = %remote)),
    );
    let mut result = serve_connected(shared, remote, &client, &mut conn_task).await;
    // A request that failed because the connection ended ("connection closed") hides why
    // it ended (a message over the size limit, a protocol error): report that instead.
    // (`Connection::run` itself never ends with these two, so the task is not yet awaited.)
    if matches!(result, Err(Error::Closed | Error::Indeterminate(_))) {
        if let Ok(Ok(Err(cause))) =
            tokio::time::timeout(Duration::from_secs(1), &mut conn_task).await
        {
            result = Err(cause);
        }
    }
    // Dropping our handle is not enough (users may hold clones): close explicitly.
    client.close();
    result
}

async fn serve_connected(
    shared: &Arc<Shared>,
    remote: &Remote,
    client: &Client,
    conn_task: &mut tokio::task::JoinHandle<Result<()>>,
) -> Result<()> {
    let cfg = &shared.cfg;
    // _Server.Database: the cluster role of this server.
    let server_cache = match client.get_schema("_Server").await {
        Ok(schema) => {
            let req: MonitorRequests = BTreeMap::from([(
                "Database".to_owned(),
                MonitorSelect {
                    columns: Some(
                        ["name", "model", "connected", "leader", "index"]
                            .map(String::from)
                            .to_vec(),
                    ),
                    conditions: Some(vec![json!(["name", "==", cfg.database])]),
                },
            )]);
            let c = Cache::new(Arc::new(schema), req.clone(), vec![]);
            client
                .monitor("_Server", &json!("ovnlb-server"), &req, None, c.clone())
                .await?;
            usable(shared, &server_row(&c, &cfg.database)).map_err(Error::Unavailable)?;
            Some(c)
        }
        // Servers older than _Server: standalone by definition.
        Err(Error::Server { error, .. }) if error.error == "unknown database" => None,
        Err(e) => return Err(e),
    };

    // Removing or converting the database then cancels our monitor (`monitor_canceled`)
    // instead of dropping the whole session.
    client.set_db_change_aware(true).await?;
    let cache = &shared.cache;
    cache.clear_resync();
    let last = cache.last_txn_id();
    client
        .monitor(
            &cfg.database,
            &json!("ovnlb-db"),
            cache.requests(),
            last.as_deref(),
            cache.clone(),
        )
        .await?;
    let resumed = last.is_some() && cache.resumed();
    info!(%remote, resumed, "ovsdb session up");
    shared.connections.fetch_add(1, Ordering::SeqCst);
    *shared.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
    shared.state.send_replace(SessionState::Connected {
        remote: remote.to_string(),
        resumed,
    });
    shared.client.send_replace(Some(client.clone()));

    let mut server_changes = server_cache.as_ref().map(|c| c.subscribe());
    loop {
        tokio::select! {
            r = &mut *conn_task => {
                return match r {
                    Ok(r) => r,
                    Err(e) => Err(Error::Protocol(format!("connection task failed: {e}"))),
                };
            }
            _ = cache.resync_needed() => {
                // The connection's end also cancels its monitors: report that as such.
                if client.is_closed() {
                    return Err(Error::Closed);
                }
                return Err(Error::Protocol("monitor cancelled or cache inconsistent: restarting it".into()));
            }
            _ = async {
                match server_changes.as_mut() {
                    Some(s) => { s.changed().await; }
                    None => std::future::pending().await,
                }
            } => {
                if let Some(c) = &server_cache {
                    usable(shared, &server_row(c, &cfg.database)).map_err(Error::Unavailable)?;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(model: &str, connected: bool, leader: bool, index: i64) -> ServerRow {
        ServerRow {
            model: model.into(),
            connected,
            leader,
            index,
        }
    }

    #[test]
    fn server_checks() {
        let db = "OVN_Northbound";
        assert!(check_server(None, db, true, 0)
            .unwrap_err()
            .contains("does not serve"));
        assert_eq!(
            check_server(Some(&row("standalone", true, true, 0)), db, true, 7),
            Ok(7)
        );
        assert_eq!(
            check_server(Some(&row("clustered", true, true, 10)), db, true, 7),
            Ok(10)
        );
        assert!(
            check_server(Some(&row("clustered", true, false, 10)), db, true, 7)
                .unwrap_err()
                .contains("leader")
        );
        assert_eq!(
            check_server(Some(&row("clustered", true, false, 10)), db, false, 7),
            Ok(10)
        );
        assert!(
            check_server(Some(&row("clustered", false, true, 10)), db, true, 7)
                .unwrap_err()
                .contains("not connected")
        );
        let e = check_server(Some(&row("clustered", true, false, 5)), db, false, 7).unwrap_err();
        assert!(e.contains("stale"), "{e}");
    }
}
