//! The I/O task of one OVSDB session.
//!
//! [`Connection::run`] owns the socket. It reads frames, matches replies to pending
//! requests by id, answers the server's `echo`, probes an idle server itself, and routes
//! `update`/`update2`/`update3` notifications to the registered monitor handler
//! *synchronously and in wire order*: the server sends a transaction's update before its
//! reply, so a caller whose `transact` returns already sees its write in the cache
//! (read-your-writes). Writes go through a second future in the same task, so a large
//! outgoing message never stops us reading (and answering probes).
//!
//! When the session ends, for any reason, every pending request fails at once:
//! [`Error::Closed`], or [`Error::Indeterminate`] for a `transact` already handed to
//! the socket.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, trace, warn};

use super::codec::Framer;
use super::error::{Error, Result, ServerError};
use super::jsonrpc::{encode_request, encode_request_raw, Message};

/// Which monitor method a reply answers (the reply and update formats differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonitorMethod {
    /// `monitor_cond_since`: reply `[found, last_txn_id, updates2]`, notifications `update3`.
    CondSince,
    /// `monitor_cond`: reply `updates2`, notifications `update2`.
    Cond,
    /// `monitor`: reply `updates`, notifications `update`.
    Plain,
}

impl MonitorMethod {
    /// The RPC method name.
    pub fn name(self) -> &'static str {
        match self {
            MonitorMethod::CondSince => "monitor_cond_since",
            MonitorMethod::Cond => "monitor_cond",
            MonitorMethod::Plain => "monitor",
        }
    }
}

/// Receives a monitor's data inside the connection task, in wire order. Implementations
/// must be quick and must not block (apply to memory, signal, return).
pub trait MonitorHandler: Send + Sync + 'static {
    /// The monitor request succeeded; `result` is its reply, undecoded (a large initial
    /// reply is deserialised straight into the handler's structures).
    fn on_reply(&self, method: MonitorMethod, result: &RawValue);
    /// An `update`, `update2` or `update3` notification's params, undecoded.
    fn on_update(&self, method: &str, params: &RawValue);
    /// The server cancelled the monitor (`monitor_canceled`, e.g. the database was
    /// removed or its schema changed) or the connection ended.
    fn on_canceled(&self);
}

/// A server notification other than monitor updates (`locked`, `stolen`, …).
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// Method name.
    pub method: String,
    /// Parameters.
    pub params: Value,
}

/// What happens beside the reply when a request completes.
pub(crate) enum Hook {
    None,
    /// Register `handler` for monitor `id` (JSON text) now; on success hand it the reply.
    Monitor {
        key: String,
        method: MonitorMethod,
        handler: Arc<dyn MonitorHandler>,
    },
    /// Forget monitor `id` once cancelled.
    Unmonitor {
        key: String,
    },
}

pub(crate) enum Command {
    Request {
        id: u64,
        method: String,
        /// Already encoded JSON (the caller's task pays for serialisation).
        params: Vec<u8>,
        reply: oneshot::Sender<Result<Box<RawValue>>>,
        hook: Hook,
    },
    /// The caller gave up waiting (timeout): forget the pending entry.
    Cancel(u64),
    Subscribe(mpsc::UnboundedSender<Notification>),
    /// Close the session now (pending requests fail).
    Close,
}

struct Pending {
    method: String,
    reply: oneshot::Sender<Result<Box<RawValue>>>,
    hook: Hook,
}

/// Anything a session can run over.
pub trait AsyncStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> AsyncStream for T {}

/// The I/O half of a session: run it (`tokio::spawn(conn.run())`) for the [`Client`]
/// to work. Ends when the peer closes, on a protocol error, a failed probe, or when every
/// `Client` is dropped.
///
/// [`Client`]: super::Client
#[must_use = "the connection does nothing unless run"]
pub struct Connection {
    /// The transport; taken by `run`.
    stream: Option<Box<dyn AsyncStream>>,
    /// Commands from the `Client` handles.
    commands: mpsc::UnboundedReceiver<Command>,
    /// Requests sent and not yet answered, by id.
    pending: HashMap<u64, Pending>,
    /// Monitor handlers by the JSON text of their monitor id.
    monitors: HashMap<String, Arc<dyn MonitorHandler>>,
    /// Receivers of other notifications.
    subscribers: Vec<mpsc::UnboundedSender<Notification>>,
    /// Set when `run` ends so clients fail fast.
    closed: Arc<AtomicBool>,
    /// Probe after this much silence.
    probe_interval: Option<Duration>,
    /// Largest message accepted.
    max_message: usize,
    /// Peer name for logs.
    peer: String,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.peer)
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl Connection {
    pub(crate) fn new(
        stream: Box<dyn AsyncStream>,
        commands: mpsc::UnboundedReceiver<Command>,
        closed: Arc<AtomicBool>,
        probe_interval: Option<Duration>,
        max_message: usize,
        peer: String,
    ) -> Connection {
        Connection {
            stream: Some(stream),
            commands,
            pending: HashMap::new(),
            monitors: HashMap::new(),
            subscribers: Vec::new(),
            closed,
            probe_interval,
            max_message,
            peer,
        }
    }

    /// Drive the session until it ends.
    ///
    /// # Errors
    /// Why the session ended: [`Error::Io`], [`Error::Codec`], [`Error::Protocol`],
    /// [`Error::ProbeTimeout`]; `Ok(())` when the peer closed cleanly or every client
    /// handle was dropped.
    pub async fn run(mut self) -> Result<()> {
        let Some(stream) = self.stream.take() else {
            return Err(Error::Closed);
        };
        let (rd, wr) = tokio::io::split(stream);
        let (out_tx, out_rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let peer = self.peer.clone();
        let result = {
            let writer = write_loop(wr, out_rx, &peer);
            let reader = self.dispatch(rd, out_tx);
            tokio::select! {
                r = reader => r,
                r = writer => r,
            }
        };
        match &result {
            Ok(()) => debug!(peer = %self.peer, "ovsdb session ended"),
            Err(e) => debug!(peer = %self.peer, error = %e, "ovsdb session ended"),
        }
        self.shutdown();
        result
    }

    fn shutdown(&mut self) {
        self.closed.store(true, Ordering::SeqCst);
        self.commands.close();
        for (_, p) in self.pending.drain() {
            let e = if p.method == "transact" {
                Error::Indeterminate("connection closed before the reply".into())
            } else {
                Error::Closed
            };
            let _ = p.reply.send(Err(e));
        }
        // Commands queued but never sent: plainly closed.
        while let Ok(cmd) = self.commands.try_recv() {
            if let Command::Request { reply, .. } = cmd {
                let _ = reply.send(Err(Error::Closed));
            }
        }
        for (_, h) in self.monitors.drain() {
            h.on_canceled();
        }
    }

    async fn dispatch<R: AsyncRead + Unpin>(
        &mut self,
        mut rd: R,
        out: mpsc::UnboundedSender<Vec<u8>>,
    ) -> Result<()> {
        let mut framer = Framer::new(self.max_message);
        let mut buf = vec![0u8; 64 * 1024];
        let mut last_rx = Instant::now();
        let mut probe_sent = false;
        let far = Duration::from_secs(86400 * 365);
        loop {
            let probe_at = last_rx
                + self
                    .probe_interval
                    .map(|p| if probe_sent { p * 2 } else { p })
                    .unwrap_or(far);
            tokio::select! {
                n = rd.read(&mut buf) => {
                    let n = n.map_err(|e| Error::io(format!("reading from {}", self.peer), e))?;
                    if n == 0 {
                        return if framer.pending() == 0 { Ok(()) } else {
                            Err(Error::Protocol("connection closed inside a message".into()))
                        };
                    }
                    last_rx = Instant::now();
                    probe_sent = false;
                    framer.extend(&buf[..n]);
                    while let Some(frame) = framer.next_frame()? {
                        self.handle(frame, &out)?;
                    }
                }
                cmd = self.commands.recv() => {
                    let Some(cmd) = cmd else { return Ok(()) };
                    let mut bytes = Vec::new();
                    let mut close = self.command(cmd, &mut bytes);
                    // Pipeline: take every queued command into one write.
                    while !close {
                        let Ok(cmd) = self.commands.try_recv() else { break };
                        close = self.command(cmd, &mut bytes);
                    }
                    if close {
                        return Ok(());
                    }
                    if !bytes.is_empty() && out.send(bytes).is_err() {
                        return Err(Error::Closed);
                    }
                }
                _ = tokio::time::sleep_until(probe_at) => {
                    let interval = self.probe_interval.unwrap_or(far);
                    if probe_sent {
                        warn!(peer = %self.peer, "no reply to inactivity probe; dropping the connection");
                        return Err(Error::ProbeTimeout(interval));
                    }
                    trace!(peer = %self.peer, "idle: sending inactivity probe");
                    let mut bytes = Vec::new();
                    encode_request(&mut bytes, &json!("ovnlb-probe"), "echo", &json!([]));
                    let _ = out.send(bytes);
                    probe_sent = true;
                    // Next deadline: one more interval from now.
                    last_rx = Instant::now() - interval;
                }
            }
        }
    }

    /// Queue one command's bytes; `true` when the session must close.
    fn command(&mut self, cmd: Command, bytes: &mut Vec<u8>) -> bool {
        match cmd {
            Command::Request {
                id,
                method,
                params,
                reply,
                hook,
            } => {
                if reply.is_closed() {
                    return false;
                }
                if let Hook::Monitor { key, handler, .. } = &hook {
                    self.monitors.insert(key.clone(), handler.clone());
                }
                debug!(peer = %self.peer, id, %method, "request");
                encode_request_raw(bytes, id, &method, &params);
                self.pending.insert(
                    id,
                    Pending {
                        method,
                        reply,
                        hook,
                    },
                );
            }
            Command::Cancel(id) => {
                self.pending.remove(&id);
            }
            Command::Subscribe(tx) => self.subscribers.push(tx),
            Command::Close => return true,
        }
        false
    }

    fn handle(&mut self, frame: &[u8], out: &mpsc::UnboundedSender<Vec<u8>>) -> Result<()> {
        let env: Envelope<'_> = serde_json::from_slice(frame)
            .map_err(|e| Error::Protocol(format!("not a JSON-RPC 1.0 message: {e}")))?;
        let raw_or_null = |r: Option<&RawValue>| r.map(RawValue::get).unwrap_or("null").to_owned();
        match env.method {
            None => {
                if env.id.is_null() {
                    return Err(Error::Protocol("message has neither method nor id".into()));
                }
                let Some(n) = env.id.as_u64() else {
                    // Our probe's reply, or something we never asked: activity either way.
                    trace!(peer = %self.peer, id = %env.id, "reply without a pending request");
                    return Ok(());
                };
                let Some(p) = self.pending.remove(&n) else {
                    trace!(peer = %self.peer, id = n, "reply to a cancelled request");
                    return Ok(());
                };
                trace!(peer = %self.peer, id = n, method = %p.method, len = frame.len(), "reply");
                let res = if env.error.is_null() {
                    match &p.hook {
                        Hook::Monitor {
                            handler, method, ..
                        } => {
                            let null = RawValue::NULL;
                            handler.on_reply(*method, env.result.unwrap_or(null));
                            Ok(RawValue::NULL.to_owned())
                        }
                        Hook::Unmonitor { key } => {
                            self.monitors.remove(key);
                            Ok(RawValue::NULL.to_owned())
                        }
                        // Undecoded: the caller decodes only what it needs.
                        Hook::None => Ok(env.result.unwrap_or(RawValue::NULL).to_owned()),
                    }
                } else {
                    if let Hook::Monitor { key, .. } = &p.hook {
                        self.monitors.remove(key);
                    }
                    Err(Error::Server {
                        method: p.method.clone(),
                        error: ServerError::from_json(&env.error),
                    })
                };
                let _ = p.reply.send(res);
            }
            Some(method) if !env.id.is_null() => {
                let params: Value =
                    serde_json::from_str(&raw_or_null(env.params)).unwrap_or(Value::Null);
                let reply = if method == "echo" {
                    Message::Response {
                        id: env.id,
                        result: params,
                        error: Value::Null,
                    }
                } else {
                    Message::Response {
                        id: env.id,
                        result: Value::Null,
                        error: json!("unknown method"),
                    }
                };
                let mut bytes = Vec::new();
                reply.encode(&mut bytes);
                out.send(bytes).map_err(|_| Error::Closed)?;
            }
            Some(method) => match method.as_str() {
                "update" | "update2" | "update3" => {
                    let Some(params) = env.params else {
                        return Err(Error::Protocol(format!("{method} without params")));
                    };
                    let key = monitor_key(params);
                    match self.monitors.get(&key) {
                        Some(h) => h.on_update(&method, params),
                        None => {
                            warn!(peer = %self.peer, monitor = %key, "update for an unknown monitor")
                        }
                    }
                }
                "monitor_canceled" => {
                    let params: Value =
                        serde_json::from_str(&raw_or_null(env.params)).unwrap_or(Value::Null);
                    let key = params.get(0).map(|id| id.to_string()).unwrap_or_default();
                    if let Some(h) = self.monitors.remove(&key) {
                        h.on_canceled();
                    }
                    self.broadcast(method, params);
                }
                _ => {
                    let params: Value =
                        serde_json::from_str(&raw_or_null(env.params)).unwrap_or(Value::Null);
                    self.broadcast(method, params)
                }
            },
        }
        Ok(())
    }

    fn broadcast(&mut self, method: String, params: Value) {
        let n = Notification { method, params };
        self.subscribers.retain(|s| s.send(n.clone()).is_ok());
    }
}

/// The envelope of any message; `params` and `result` stay undecoded.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default)]
    id: Value,
    #[serde(default)]
    method: Option<String>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
    #[serde(borrow, default)]
    result: Option<&'a RawValue>,
    #[serde(default)]
    error: Value,
}

/// The monitor id (first param) of an update, as JSON text; the rest is skipped
/// without being built.
fn monitor_key(params: &RawValue) -> String {
    use serde::de::{Deserializer as _, IgnoredAny, SeqAccess, Visitor};
    struct FirstOf;
    impl<'de> Visitor<'de> for FirstOf {
        type Value = Value;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an array")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Value, A::Error> {
            let first = seq.next_element::<Value>()?.unwrap_or(Value::Null);
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(first)
        }
    }
    serde_json::Deserializer::from_str(params.get())
        .deserialize_seq(FirstOf)
        .map(|v| v.to_string())
        .unwrap_or_default()
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    peer: &str,
) -> Result<()> {
    while let Some(mut bytes) = rx.recv().await {
        while let Ok(more) = rx.try_recv() {
            bytes.extend_from_slice(&more);
        }
        trace!(peer, len = bytes.len(), "write");
        wr.write_all(&bytes)
            .await
            .map_err(|e| Error::io(format!("writing to {peer}"), e))?;
        wr.flush()
            .await
            .map_err(|e| Error::io(format!("writing to {peer}"), e))?;
    }
    // The dispatcher is gone; it decides the outcome.
    std::future::pending().await
}
