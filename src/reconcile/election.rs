//! Which of several ovnlbd sharing one OVNLB database reconciles: the holder of the
//! lease row `Lease{name: "reconciler"}` (`../shared/docs/ha-design.md` §5.3). An
//! OVSDB lock is never the authority (it is per server on a cluster).
//!
//! - The holder renews every [`ElectionOptions::renew`] with a transaction guarded on
//!   `holder == me && epoch == E` (`renew_seq += 1`).
//! - A standby watches the row in its cache; when it has seen no change for
//!   [`ElectionOptions::period`] on its own monotonic clock, or the row released, it
//!   takes over with one compare-and-swap from what it saw (`epoch + 1`): of racing
//!   standbys one wins.
//! - The holder steps down on its own when it could not renew for the period less two
//!   renewals (before any standby may take over), or when a renewal is refused.
//! - A graceful stop stops the controller first, then releases the lease (`holder = ""`),
//!   so a standby takes over at once.
//!
//! The elected controller still claims the NB fence before writing: a holder that froze
//! past its lease and woke up is refused by NB, not only by this election.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::store::ovsdb::{LeaseRow, OvsdbStore};

/// The lease of the reconciler.
pub const LEASE: &str = "reconciler";

/// How the election runs.
#[derive(Debug, Clone)]
pub struct ElectionOptions {
    /// This ovnlbd's name in the lease.
    pub holder: String,
    /// How long a standby waits without seeing a renewal before it takes over.
    pub period: Duration,
    /// How often the holder renews.
    pub renew: Duration,
}

impl ElectionOptions {
    /// `holder`, with a 5 s period and 1 s renewals.
    pub fn new(holder: &str) -> ElectionOptions {
        ElectionOptions {
            holder: holder.to_owned(),
            period: Duration::from_secs(5),
            renew: Duration::from_secs(1),
        }
    }
}

/// Run the election until `cancel`, telling `elected` whether this ovnlbd holds the
/// lease; then wait for `controller` (started by the caller with `stopped` as its
/// cancellation) to stop, and release the lease if it is held.
pub async fn run(
    store: Arc<OvsdbStore>,
    opts: ElectionOptions,
    elected: watch::Sender<bool>,
    controller: tokio::task::JoinHandle<()>,
    stopped: CancellationToken,
    cancel: CancellationToken,
) {
    let mut held: Option<u64> = None;
    // The lease as last seen, and when it last changed.
    let mut seen: Option<LeaseRow> = store.lease(LEASE);
    let mut seen_at = Instant::now();
    let mut renewed_at = Instant::now();
    let tick = (opts.renew / 4).max(Duration::from_millis(50));
    let mut cache = store.session().cache().subscribe();
    loop {
        match held {
            None => {
                let now = store.lease(LEASE);
                if now != seen {
                    seen = now;
                    seen_at = Instant::now();
                }
                let free = seen.as_ref().is_none_or(|l| l.holder.is_empty());
                if free || seen_at.elapsed() >= opts.period {
                    match store
                        .acquire_lease(LEASE, &opts.holder, seen.as_ref())
                        .await
                    {
                        Ok(Some(epoch)) => {
                            info!(
                                holder = %opts.holder,
                                epoch,
                                previous = seen.as_ref().map_or("none", |l| l.holder.as_str()),
                                "reconciler lease won: this ovnlbd is the active reconciler"
                            );
                            held = Some(epoch);
                            renewed_at = Instant::now();
                            elected.send_replace(true);
                        }
                        Ok(None) => {
                            // Another took it (or renewed meanwhile): start watching anew.
                            seen = store.lease(LEASE);
                            seen_at = Instant::now();
                        }
                        Err(e) => warn!(error = %e, "taking the reconciler lease"),
                    }
                }
            }
            Some(epoch) => {
                if renewed_at.elapsed() >= opts.renew {
                    match store.renew_lease(LEASE, &opts.holder, epoch).await {
                        Ok(true) => renewed_at = Instant::now(),
                        Ok(false) => {
                            warn!(holder = %opts.holder, epoch, "reconciler lease taken by another ovnlbd: standing by");
                            held = None;
                            elected.send_replace(false);
                            seen = store.lease(LEASE);
                            seen_at = Instant::now();
                        }
                        Err(e) => warn!(error = %e, "renewing the reconciler lease"),
                    }
                }
                // Unrenewed for nearly the period: a standby may take over soon; stop
                // writing before it can.
                if held.is_some() && renewed_at.elapsed() + opts.renew * 2 >= opts.period {
                    warn!(holder = %opts.holder, epoch, "reconciler lease not renewed in time: standing by");
                    held = None;
                    elected.send_replace(false);
                    seen = store.lease(LEASE);
                    seen_at = Instant::now();
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = cache.changed(), if held.is_none() => {}
            () = cancel.cancelled() => break,
        }
    }
    elected.send_replace(false);
    stopped.cancel();
    let _ = controller.await;
    if let Some(epoch) = held {
        match store.release_lease(LEASE, &opts.holder, epoch).await {
            Ok(true) => info!(holder = %opts.holder, epoch, "reconciler lease released"),
            Ok(false) => info!(holder = %opts.holder, epoch, "reconciler lease was no longer ours"),
            Err(e) => {
                warn!(error = %e, "releasing the reconciler lease (a standby takes over once it expires)")
            }
        }
    }
}
