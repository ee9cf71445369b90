//! The cheap, cloneable handle to a session.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use super::config::{ConnectConfig, Remote};
use super::connection::{
    AsyncStream, Command, Connection, Hook, MonitorHandler, MonitorMethod, Notification,
};
use super::error::{Error, Result, TxnError};
use super::schema::DatabaseSchema;
use super::transport;
use super::txn::{Transaction, TxnReply};

/// What one table's monitor asks for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MonitorSelect {
    /// Columns to watch; `None` for all.
    pub columns: Option<Vec<String>>,
    /// Conditions (`monitor_cond*` only): `[[column, function, value], …]`.
    pub conditions: Option<Vec<Value>>,
}

/// Tables to monitor, by name.
pub type MonitorRequests = BTreeMap<String, MonitorSelect>;

/// The all-zero transaction id: "no history, send everything".
pub const ZERO_TXN_ID: &str = "00000000-0000-0000-0000-000000000000";

struct Inner {
    /// Commands to the connection task.
    tx: mpsc::UnboundedSender<Command>,
    /// Request ids; numbers, unique per session.
    next_id: AtomicU64,
    /// Set by the connection task when it ends.
    closed: Arc<AtomicBool>,
    /// Each request fails after this long without a reply.
    request_timeout: Duration,
    /// The peer, for messages.
    peer: String,
}

/// A handle to one OVSDB session. Cloning is cheap; requests from all clones are
/// pipelined on the one connection and matched to replies by id.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("peer", &self.inner.peer)
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// Connect to `remote`. Spawn (or otherwise run) the returned [`Connection`].
///
/// # Errors
/// [`Error::Io`] (refused, timed out), [`Error::Tls`] (handshake), [`Error::Config`]
/// (an `ssl:` remote without TLS files).
pub async fn connect(remote: &Remote, cfg: &ConnectConfig) -> Result<(Client, Connection)> {
    let stream = transport::connect(remote, cfg).await?;
    Ok(from_stream(stream, cfg, remote.to_string()))
}

/// Run a session over an already connected stream (tests, custom transports).
pub fn from_stream(
    stream: impl AsyncStream,
    cfg: &ConnectConfig,
    peer: String,
) -> (Client, Connection) {
    let (tx, rx) = mpsc::unbounded_channel();
    let closed = Arc::new(AtomicBool::new(false));
    let conn = Connection::new(
        Box::new(stream),
        rx,
        closed.clone(),
        cfg.probe_interval,
        cfg.max_message,
        peer.clone(),
    );
    let client = Client {
        inner: Arc::new(Inner {
            tx,
            next_id: AtomicU64::new(1),
            closed,
            request_timeout: cfg.request_timeout,
            peer,
        }),
    };
    (client, conn)
}

fn encode(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

impl Client {
    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst) || self.inner.tx.is_closed()
    }

    /// Close the session: pending requests fail (a `transact` with
    /// [`Error::Indeterminate`]), monitors end.
    pub fn close(&self) {
        let _ = self.inner.tx.send(Command::Close);
    }

    /// The peer this client talks to.
    pub fn peer(&self) -> &str {
        &self.inner.peer
    }

    async fn call_hook(&self, method: &str, params: Vec<u8>, hook: Hook) -> Result<Box<RawValue>> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, rx) = oneshot::channel();
        self.inner
            .tx
            .send(Command::Request {
                id,
                method: method.to_owned(),
                params,
                reply,
                hook,
            })
            .map_err(|_| Error::Closed)?;
        match tokio::time::timeout(self.inner.request_timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(Error::Closed),
            Err(_) => {
                let _ = self.inner.tx.send(Command::Cancel(id));
                Err(Error::Timeout {
                    method: method.to_owned(),
                    timeout: self.inner.request_timeout,
                })
            }
        }
    }

    /// Any method, raw.
    ///
    /// # Errors
    /// [`Error::Server`] for an error reply; [`Error::Closed`], [`Error::Timeout`].
    pub async fn call(&self, method: &str, params: Value) -> Result<Value> {
        let raw = self.call_hook(method, encode(&params), Hook::None).await?;
        serde_json::from_str(raw.get())
            .map_err(|e| Error::Protocol(format!("reply to {method}: {e}")))
    }

    /// `list_dbs`.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub async fn list_dbs(&self) -> Result<Vec<String>> {
        let v = self.call("list_dbs", json!([])).await?;
        serde_json::from_value(v).map_err(|e| Error::Protocol(format!("list_dbs reply: {e}")))
    }

    /// `get_schema`, parsed.
    ///
    /// # Errors
    /// As [`Client::call`]; [`Error::Schema`] when the reply does not parse.
    pub async fn get_schema(&self, db: &str) -> Result<DatabaseSchema> {
        let v = self.call("get_schema", json!([db])).await?;
        Ok(DatabaseSchema::from_json(&v)?)
    }

    /// `echo`: a round trip.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub async fn echo(&self) -> Result<()> {
        let v = self.call("echo", json!(["ovnlb"])).await?;
        if v != json!(["ovnlb"]) {
            return Err(Error::Protocol(format!("echo returned {v}")));
        }
        Ok(())
    }

    /// Send a transaction and map its result.
    ///
    /// # Errors
    /// [`Error::Schema`] if the builder recorded a schema violation (nothing sent);
    /// [`Error::Transaction`] for a per-operation or commit error (classed);
    /// [`Error::Indeterminate`] when the connection died or the reply timed out after
    /// sending; [`Error::Closed`] when it was never sent.
    pub async fn transact(&self, txn: &Transaction) -> Result<TxnReply> {
        txn.check()?;
        let n_ops = txn.len();
        let mut params = Vec::new();
        txn.encode_params(&mut params);
        let v = match self.call_hook("transact", params, Hook::None).await {
            Ok(v) => v,
            Err(Error::Timeout { timeout, .. }) => {
                return Err(Error::Indeterminate(format!("no reply within {timeout:?}")))
            }
            Err(e) => return Err(e),
        };
        // One pass over the reply: each result located as a slice, checked for an
        // error without building anything; the rest is decoded on demand by TxnReply.
        let reply = TxnReply::parse(v).map_err(Error::Protocol)?;
        if let Some((i, se)) = reply.first_error() {
            return Err(TxnError::new((i < n_ops).then_some(i), se).into());
        }
        Ok(reply)
    }

    /// Start a monitor, falling back from `monitor_cond_since` to `monitor_cond` and
    /// `monitor` on servers that do not know the newer method. The handler receives the
    /// reply and every later update inside the connection task, in wire order.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub async fn monitor(
        &self,
        db: &str,
        monitor_id: &Value,
        requests: &MonitorRequests,
        last_txn_id: Option<&str>,
        handler: Arc<dyn MonitorHandler>,
    ) -> Result<MonitorMethod> {
        for method in [
            MonitorMethod::CondSince,
            MonitorMethod::Cond,
            MonitorMethod::Plain,
        ] {
            let mut reqs = serde_json::Map::new();
            for (table, sel) in requests {
                let mut o = serde_json::Map::new();
                if let Some(c) = &sel.columns {
                    o.insert("columns".into(), json!(c));
                }
                if method != MonitorMethod::Plain {
                    if let Some(w) = &sel.conditions {
                        o.insert("where".into(), json!(w));
                    }
                }
                reqs.insert(table.clone(), json!([o]));
            }
            let mut params = vec![json!(db), monitor_id.clone(), Value::Object(reqs)];
            if method == MonitorMethod::CondSince {
                params.push(json!(last_txn_id.unwrap_or(ZERO_TXN_ID)));
            }
            let hook = Hook::Monitor {
                key: monitor_id.to_string(),
                method,
                handler: handler.clone(),
            };
            match self
                .call_hook(method.name(), encode(&Value::Array(params)), hook)
                .await
            {
                Ok(_) => return Ok(method),
                Err(Error::Server { error, .. }) if error.error == "unknown method" => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Protocol("server knows no monitor method".into()))
    }

    /// `monitor_cancel`.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub async fn monitor_cancel(&self, monitor_id: &Value) -> Result<()> {
        self.call_hook(
            "monitor_cancel",
            encode(&json!([monitor_id])),
            Hook::Unmonitor {
                key: monitor_id.to_string(),
            },
        )
        .await
        .map(drop)
    }

    /// `lock`: `Ok(true)` when granted now; otherwise a `locked` notification follows.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub async fn lock(&self, id: &str) -> Result<bool> {
        self.lock_call("lock", id).await
    }

    /// `steal`: take the lock from its holder (who gets `stolen`).
    ///
    /// # Errors
    /// As [`Client::call`].
    pub async fn steal(&self, id: &str) -> Result<bool> {
        self.lock_call("steal", id).await
    }

    async fn lock_call(&self, method: &str, id: &str) -> Result<bool> {
        let v = self.call(method, json!([id])).await?;
        Ok(v.get("locked").and_then(Value::as_bool).unwrap_or(false))
    }

    /// `unlock`.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub async fn unlock(&self, id: &str) -> Result<()> {
        self.call("unlock", json!([id])).await.map(drop)
    }

    /// `set_db_change_aware`: the server then cancels monitors (`monitor_canceled`)
    /// instead of closing the session when a database changes or goes away.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub async fn set_db_change_aware(&self, aware: bool) -> Result<()> {
        self.call("set_db_change_aware", json!([aware]))
            .await
            .map(drop)
    }

    /// Receive every notification other than monitor updates (`locked`, `stolen`,
    /// `monitor_canceled`, …) from now on. Unbounded: none is dropped.
    pub fn notifications(&self) -> mpsc::UnboundedReceiver<Notification> {
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = self.inner.tx.send(Command::Subscribe(tx));
        rx
    }
}
