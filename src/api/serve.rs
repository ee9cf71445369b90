//! Serving the API on its listeners (the unix socket, HTTPS, plain `/metrics`), with what
//! an unauthenticated peer must not be able to take: a cap on connections per listener,
//! a timeout on reading a request head (which also closes idle keep-alive connections and
//! slow senders), a TLS handshake timeout, and a unix socket that comes back if deleted.
//!
//! When a listener is full, a new connection evicts the oldest one with no request in
//! flight; when every connection is busy, the new one is closed. A waiting `?wait`
//! request is busy and never evicted. Shutdown: connections with no request in flight
//! (idle, or still sending a head) are closed at once, the others once their request is
//! answered (`daemon` bounds the wait). What hyper refuses itself (a head it cannot
//! parse, one too large, one cut off by the timeout) is answered with an envelope
//! ([`super::wire`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use super::tls::Peer;

/// Limits of one listener.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServeOptions {
    /// Most connections open at once (the oldest idle one is evicted beyond it).
    pub max_connections: usize,
    /// Longest time to receive a request head, and to wait for the next one on an idle
    /// keep-alive connection.
    pub header_timeout: Duration,
    /// Longest TLS handshake.
    pub handshake_timeout: Duration,
}

/// Default of [`ServeOptions::header_timeout`].
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

impl ServeOptions {
    /// Limits for one of `listeners` listeners sharing the process's descriptor limit
    /// (`RLIMIT_NOFILE`): an even share of it, less a reserve for NB, the database and the
    /// runtime, between 16 and 16,384.
    pub fn for_share(listeners: usize) -> ServeOptions {
        let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(1 << 20);
        let share = (nofile.saturating_sub(128) / listeners.max(1) as u64).clamp(16, 16_384);
        ServeOptions {
            max_connections: share as usize,
            header_timeout: HEADER_TIMEOUT,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// What a listener is.
pub enum Listener {
    /// The unix socket at its path (bound again if the file is deleted).
    Unix(tokio::net::UnixListener, PathBuf),
    /// Plain HTTP on TCP (`/metrics`).
    Tcp(tokio::net::TcpListener),
    /// HTTPS with client certificates, trusted against the PEM files in the directory.
    Tls(
        tokio::net::TcpListener,
        TlsAcceptor,
        Arc<super::tls::TrustList>,
    ),
}

/// One connection's entry in its listener's table.
struct Slot {
    /// Requests in flight.
    busy: AtomicUsize,
    /// Cancelled to evict it.
    evict: CancellationToken,
}

/// The open connections of one listener, oldest first.
#[derive(Default)]
struct Table {
    next: u64,
    open: BTreeMap<u64, Arc<Slot>>,
}

fn lock(t: &Mutex<Table>) -> std::sync::MutexGuard<'_, Table> {
    t.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Table {
    /// Evict the oldest connection with no request in flight; false when all are busy.
    fn evict_idle(&mut self) -> bool {
        let Some(id) = self
            .open
            .iter()
            .find(|(_, s)| s.busy.load(Ordering::Acquire) == 0)
            .map(|(id, _)| *id)
        else {
            return false;
        };
        if let Some(s) = self.open.remove(&id) {
            s.evict.cancel();
        }
        true
    }
}

/// Removes a connection from its table when it ends.
struct Leave(Arc<Mutex<Table>>, u64);

impl Drop for Leave {
    fn drop(&mut self) {
        lock(&self.0).open.remove(&self.1);
    }
}

/// The router as a hyper service that counts requests in flight and tags each request
/// with its HTTPS peer.
#[derive(Clone)]
struct Counted {
    inner: TowerToHyperService<Router>,
    slot: Arc<Slot>,
    peer: Option<Peer>,
}

/// Decrements a slot's in-flight count when a request's future ends (or is dropped).
struct Busy(Arc<Slot>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

impl hyper::service::Service<hyper::Request<Incoming>> for Counted {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn call(&self, mut req: hyper::Request<Incoming>) -> Self::Future {
        self.slot.busy.fetch_add(1, Ordering::AcqRel);
        let busy = Busy(self.slot.clone());
        if let Some(p) = &self.peer {
            req.extensions_mut().insert(p.clone());
        }
        let fut = self.inner.call(req);
        Box::pin(async move {
            let r = fut.await;
            drop(busy);
            r
        })
    }
}

/// Serve `router` on `listener` until `cancel`, within `opts`.
pub async fn serve(
    mut listener: Listener,
    router: Router,
    opts: ServeOptions,
    cancel: CancellationToken,
) {
    let table = Arc::new(Mutex::new(Table::default()));
    let conns = TaskTracker::new();
    let mut check = tokio::time::interval(Duration::from_secs(2));
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let accepted = tokio::select! {
            r = accept(&listener) => r,
            // (Only a unix socket has a file that can go.)
            _ = check.tick(), if matches!(listener, Listener::Unix(..)) => {
                rebind_if_deleted(&mut listener).await;
                continue;
            }
            _ = cancel.cancelled() => break,
        };
        let (io, addr) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of descriptors: make room by closing an idle connection.
                use rustix::io::Errno;
                let full = [Errno::MFILE, Errno::NFILE].map(Errno::raw_os_error);
                if e.raw_os_error().is_some_and(|n| full.contains(&n)) {
                    lock(&table).evict_idle();
                }
                debug!(error = %e, "accept");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let slot = Arc::new(Slot {
            busy: AtomicUsize::new(0),
            evict: CancellationToken::new(),
        });
        let id = {
            let mut t = lock(&table);
            if t.open.len() >= opts.max_connections && !t.evict_idle() {
                debug!(%addr, max = opts.max_connections, "every connection is busy: refused");
                continue;
            }
            let id = t.next;
            t.next += 1;
            t.open.insert(id, slot.clone());
            id
        };
        let leave = Leave(table.clone(), id);
        let (router, cancel) = (router.clone(), cancel.clone());
        let tls = match &listener {
            Listener::Tls(_, acceptor, trust) => Some((acceptor.clone(), trust.clone())),
            _ => None,
        };
        conns.spawn(async move {
            let _leave = leave;
            let evict = slot.evict.clone();
            let who = addr.clone();
            let run = async move {
                match (io, tls) {
                    (Io::Tcp(tcp), Some((acceptor, trust))) => {
                        let tls = match tokio::time::timeout(
                            opts.handshake_timeout,
                            acceptor.accept(tcp),
                        )
                        .await
                        {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => return debug!(%addr, error = %e, "TLS handshake failed"),
                            Err(_) => return debug!(%addr, "TLS handshake timed out"),
                        };
                        let cert = tls
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .map(|c| Arc::new(c.clone().into_owned()));
                        debug!(%addr, certificate = cert.is_some(), "HTTPS connection");
                        let peer = Peer {
                            cert,
                            trust,
                        };
                        connection(tls, router, slot, Some(peer), opts, cancel).await;
                    }
                    (Io::Tcp(tcp), None) => connection(tcp, router, slot, None, opts, cancel).await,
                    (Io::Unix(u), _) => connection(u, router, slot, None, opts, cancel).await,
                }
            };
            tokio::select! {
                _ = run => {}
                _ = evict.cancelled() => debug!(addr = %who, "idle connection evicted: the listener is full"),
            }
        });
    }
    conns.close();
    conns.wait().await;
}

enum Io {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(l: &Listener) -> std::io::Result<(Io, String)> {
    match l {
        Listener::Unix(u, _) => u.accept().await.map(|(s, _)| (Io::Unix(s), "unix".into())),
        Listener::Tcp(t) | Listener::Tls(t, _, _) => {
            t.accept().await.map(|(s, a)| (Io::Tcp(s), a.to_string()))
        }
    }
}

/// The unix socket's file deleted or replaced: say so, and bind it again.
async fn rebind_if_deleted(l: &mut Listener) {
    let Listener::Unix(u, path) = l else { return };
    let ours = u
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(std::path::Path::to_owned))
        .and_then(|p| std::fs::metadata(p).ok());
    let now = std::fs::metadata(&*path).ok();
    use std::os::unix::fs::MetadataExt;
    let same =
        matches!((&ours, &now), (Some(a), Some(b)) if a.ino() == b.ino() && a.dev() == b.dev());
    if same {
        return;
    }
    warn!(socket = %path.display(), "the API socket file was deleted or replaced: binding it again");
    match super::bind_unix(path).await {
        Ok(n) => *u = n,
        Err(e) => {
            warn!(socket = %path.display(), error = %e, "binding the API socket again failed; will retry")
        }
    }
}

/// Serve one connection: hyper with the head timeout, closed gracefully on `cancel`.
async fn connection<I>(
    io: I,
    router: Router,
    slot: Arc<Slot>,
    peer: Option<Peer>,
    opts: ServeOptions,
    cancel: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = Counted {
        inner: TowerToHyperService::new(router),
        slot: slot.clone(),
        peer,
    };
    let (wire, finish) = super::wire::Wire::new(io);
    let result = {
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(opts.header_timeout)
            .serve_connection(TokioIo::new(wire), svc);
        tokio::pin!(conn);
        tokio::select! {
            r = conn.as_mut() => r,
            _ = cancel.cancelled() => {
                // An idle connection, or one still sending its request head, has nothing
                // in flight: it is closed at once. The others finish their requests.
                if slot.busy.load(Ordering::Acquire) == 0 {
                    return;
                }
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        }
    };
    // What hyper refused gets its envelope; then the stream is closed.
    finish.finish(result, opts.header_timeout).await;
}
