//! The controller's progress, as the API reads it (`/state`, `?wait`, the key gauges):
//! the controller writes it, the API reads it, neither reaches into the other.
//! [`Status::close`] answers every waiter at once when the daemon stops.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::fasthash::HashMap;

/// A key: (network, listen address).
pub type Key = (String, String);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the controller knows of one key, for `/state`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyStatus {
    /// The store revision last applied to NB.
    pub applied_revision: Option<u64>,
    /// The last error, empty when fine.
    pub error: String,
    /// NB rows: (name, uuid, protocol).
    pub rows: Vec<(String, Uuid, String)>,
}

/// Shared view of the controller's progress.
#[derive(Debug, Clone, Default)]
pub struct Status {
    keys: Arc<Mutex<HashMap<Key, KeyStatus>>>,
    networks: Arc<Mutex<HashMap<String, String>>>,
    /// Woken after each round that updated `keys`.
    changed: Arc<tokio::sync::Notify>,
    /// Cancelled when the daemon shuts down: every waiter is answered at once.
    closed: CancellationToken,
    /// Whether this controller writes NB ([`Writer`]).
    writer: Arc<Mutex<Writer>>,
}

/// Whether a controller writes NB, as its NB fence says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Writer {
    /// `starting` (before NB is ready), `standby` (another ovnlbd holds the reconciler
    /// lease), `claiming`, `active`, `fenced-out`, or
    /// `unfenced` (a controller run without a fence).
    pub state: &'static str,
    /// Its token while `active`; the other writer's when `fenced-out`.
    pub token: String,
    /// Since when (seconds since the Unix epoch; 0 before anything happened).
    pub since: u64,
}

/// [`Status::wait_for`] gave up because the controller stopped: the daemon is shutting
/// down, or another ovnlbd fenced it out of NB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no controller applies changes here (the server is shutting down, or another ovnlbd took over NB for this owner)")]
pub struct Closed;

impl Status {
    /// The status of one key.
    pub fn key(&self, network: &str, listen: &str) -> Option<KeyStatus> {
        lock(&self.keys)
            .get(&(network.to_owned(), listen.to_owned()))
            .cloned()
    }

    /// Wait until `done` holds for the key's status (`None`: unknown key), or `timeout`.
    /// Returns the last status seen, and whether `done` held.
    ///
    /// # Errors
    /// [`Closed`] as soon as [`Status::close`] is called (the daemon is stopping).
    pub async fn wait_for(
        &self,
        network: &str,
        listen: &str,
        timeout: Duration,
        done: impl Fn(Option<&KeyStatus>) -> bool,
    ) -> Result<(Option<KeyStatus>, bool), Closed> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Registered before looking, so an update in between is not missed.
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.closed.is_cancelled() {
                return Err(Closed);
            }
            let k = self.key(network, listen);
            if done(k.as_ref()) {
                return Ok((k, true));
            }
            tokio::select! {
                _ = notified => {}
                _ = self.closed.cancelled() => return Err(Closed),
                _ = tokio::time::sleep_until(deadline) => {
                    let k = self.key(network, listen);
                    let ok = done(k.as_ref());
                    return Ok((k, ok));
                }
            }
        }
    }

    /// Answer every waiter of [`Status::wait_for`], now and later, with [`Closed`].
    pub fn close(&self) {
        self.closed.cancel();
    }

    /// Set whether this controller writes NB.
    pub fn set_writer(&self, state: &'static str, token: &str) {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        *lock(&self.writer) = Writer {
            state,
            token: token.to_owned(),
            since,
        };
    }

    /// Whether this controller writes NB.
    pub fn writer(&self) -> Writer {
        let w = lock(&self.writer).clone();
        if w.state.is_empty() {
            Writer {
                state: "starting",
                ..w
            }
        } else {
            w
        }
    }

    /// (keys known, keys whose last attempt failed).
    pub fn counts(&self) -> (usize, usize) {
        let keys = lock(&self.keys);
        (
            keys.len(),
            keys.values().filter(|k| !k.error.is_empty()).count(),
        )
    }

    /// A network's error (missing router, ambiguous names, invalid config), if any.
    pub fn network_error(&self, network: &str) -> Option<String> {
        lock(&self.networks).get(network).cloned()
    }

    /// Writer: change the keys' statuses in one step; waiters are woken afterwards.
    pub fn update_keys<T>(&self, f: impl FnOnce(&mut HashMap<Key, KeyStatus>) -> T) -> T {
        let out = f(&mut lock(&self.keys));
        self.changed.notify_waiters();
        out
    }

    /// Writer: set (or clear, with `None`) a network's error.
    pub fn set_network_error(&self, network: &str, error: Option<String>) {
        let mut n = lock(&self.networks);
        match error {
            Some(e) => n.insert(network.to_owned(), e),
            None => n.remove(network),
        };
    }
}
