//! When the controller works a key: the dirty set, per-key backoff with jitter, and the
//! networks whose rows must go.
//!
//! A key is dirty until a round applies it. A key that failed waits out its backoff
//! (1 s doubling to 30 s, each wait drawn from its upper half so that keys which failed
//! together do not retry together) and stays dirty meanwhile. A key whose commit NB
//! answered with a re-plannable error ([`super::apply::is_replannable`]) is re-planned in
//! the next round at once, up to [`MAX_REPLANS`] times in a row; after that it backs off
//! like a failure. No state of a key outlives it: a key that leaves the dirty set
//! without being retried keeps no backoff.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::time::Instant;

use crate::fasthash::HashMap;
use crate::progress::Key;

/// The first wait after a failure.
const FIRST: Duration = Duration::from_secs(1);
/// The longest wait.
const MOST: Duration = Duration::from_secs(30);
/// Re-plans in a row after a conflict before a key backs off (as `ovnlb reconcile`'s
/// default `max_conflicts`).
pub(crate) const MAX_REPLANS: u32 = 5;

/// Why a key is worked: what marked it dirty last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// The controller started, or reloaded the store.
    Load,
    /// Its object changed in the store.
    Stored,
    /// Its network changed in the store.
    Network,
    /// NB changed one of its rows (drift, or a row that is not the echo of our write).
    Drift,
    /// A router or switch changed: its rows may be missing from it or on the wrong one.
    Topology,
    /// NB's cache was reloaded (a reconnection).
    NbResync,
    /// The periodic resync.
    Resync,
    /// Its backoff ended.
    Retry,
    /// NB refused its last commit with a re-plannable error.
    Replan,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Reason::Load => "load",
            Reason::Stored => "stored",
            Reason::Network => "network",
            Reason::Drift => "drift",
            Reason::Topology => "topology",
            Reason::NbResync => "nb-resync",
            Reason::Resync => "resync",
            Reason::Retry => "retry",
            Reason::Replan => "replan",
        })
    }
}

/// A failing key's backoff.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    /// Not retried before.
    at: Instant,
    /// The current step (the wait is drawn from its upper half).
    step: Duration,
}

/// The controller's schedule.
#[derive(Debug, Default)]
pub(crate) struct Schedule {
    /// Keys to reconcile, with why.
    dirty: BTreeMap<Key, Reason>,
    /// Backoff of failing keys; only for keys in `dirty` ([`Schedule::settle`]).
    backoff: HashMap<Key, Backoff>,
    /// Re-plans in a row per key, since its last success or failure.
    replans: HashMap<Key, u32>,
    /// Networks removed from the store whose rows must go.
    removed: BTreeSet<String>,
}

/// A wait drawn from the upper half of `step`: `[step/2, step]`.
fn jittered(step: Duration) -> Duration {
    let half = step / 2;
    let spread = half.as_nanos() as u64;
    let draw = if spread == 0 {
        0
    } else {
        (uuid::Uuid::new_v4().as_u128() as u64) % (spread + 1)
    };
    half + Duration::from_nanos(draw)
}

impl Schedule {
    /// Mark a key dirty (its backoff, if any, still holds). A key already dirty keeps
    /// the reason that marked it first.
    pub(crate) fn mark(&mut self, key: Key, why: Reason) {
        self.dirty.entry(key).or_insert(why);
    }

    /// Mark keys dirty (as [`Schedule::mark`]).
    pub(crate) fn mark_all(&mut self, keys: impl IntoIterator<Item = Key>, why: Reason) {
        for k in keys {
            self.mark(k, why);
        }
    }

    /// The key's object changed: dirty, and due at once (a fix by the user is tried
    /// without waiting out the backoff of what it replaced).
    pub(crate) fn changed(&mut self, key: Key) {
        self.backoff.remove(&key);
        self.replans.remove(&key);
        self.dirty.insert(key, Reason::Stored);
    }

    /// Something the key's rendering read changed (a switch port its backends map
    /// through): dirty, and due at once, since that change may be the fix of its last
    /// failure (an instance's port recreated under a new name).
    pub(crate) fn reread(&mut self, key: Key, why: Reason) {
        self.backoff.remove(&key);
        self.dirty.insert(key, why);
    }

    /// Whether nothing is dirty and no network waits for removal.
    pub(crate) fn is_idle(&self) -> bool {
        self.dirty.is_empty() && self.removed.is_empty()
    }

    /// Take the dirty keys that are due at `now`, sorted by (network, listen), each
    /// with why; the others stay dirty.
    pub(crate) fn take_due(&mut self, now: Instant) -> Vec<(Key, Reason)> {
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.dirty)
            .into_iter()
            .partition(|(k, _)| self.backoff.get(k).is_none_or(|b| b.at <= now));
        self.dirty.extend(later);
        due
    }

    /// A key failed at `now`: dirty, retried after a jittered, doubling wait. Returns
    /// the wait.
    pub(crate) fn failed(&mut self, key: &Key, now: Instant) -> Duration {
        let step = self
            .backoff
            .get(key)
            .map(|b| (b.step * 2).min(MOST))
            .unwrap_or(FIRST);
        let wait = jittered(step);
        self.backoff.insert(
            key.clone(),
            Backoff {
                at: now + wait,
                step,
            },
        );
        self.replans.remove(key);
        self.dirty.insert(key.clone(), Reason::Retry);
        wait
    }

    /// NB refused a key's commit with a re-plannable error: dirty, re-planned in the
    /// next round. `false` once it has been re-planned [`MAX_REPLANS`] times in a row
    /// (the caller then fails it, which backs it off).
    pub(crate) fn replan(&mut self, key: &Key) -> bool {
        let n = self.replans.entry(key.clone()).or_default();
        *n += 1;
        if *n > MAX_REPLANS {
            return false;
        }
        self.dirty.insert(key.clone(), Reason::Replan);
        true
    }

    /// A key was applied: it starts afresh.
    pub(crate) fn succeeded(&mut self, key: &Key) {
        self.backoff.remove(key);
        self.replans.remove(key);
    }

    /// After a round: keys that left the dirty set without being retried (their network
    /// went, or cannot be used) keep no backoff and no re-plan count.
    pub(crate) fn settle(&mut self) {
        let dirty = &self.dirty;
        self.backoff.retain(|k, _| dirty.contains_key(k));
        self.replans.retain(|k, _| dirty.contains_key(k));
    }

    /// When the earliest backoff ends (`None`: no key is backing off). Dirty keys that
    /// are not backing off wait for news: a re-planned key's conflict is NB changing
    /// (its update follows), an outcome NB left unknown is a reconnection (its resync
    /// follows), and while NB is away a round would only fail to sync again.
    pub(crate) fn next_wake(&self) -> Option<Instant> {
        self.backoff.values().map(|b| b.at).min()
    }

    /// A network left the store: its rows are deleted in the next round.
    pub(crate) fn remove_network(&mut self, network: &str) {
        self.removed.insert(network.to_owned());
    }

    /// A network is (back) in the store: none of its rows are to be deleted.
    pub(crate) fn keep_network(&mut self, network: &str) {
        self.removed.remove(network);
    }

    /// The networks whose rows must go (taken; [`Schedule::remove_network`] puts back
    /// one whose removal failed).
    pub(crate) fn take_removed(&mut self) -> BTreeSet<String> {
        std::mem::take(&mut self.removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(l: &str) -> Key {
        ("n".into(), l.into())
    }

    #[test]
    fn a_failed_key_waits_a_jittered_doubling_step_capped_at_thirty_seconds() {
        let mut s = Schedule::default();
        let now = Instant::now();
        let k = key("10.0.0.1");
        let mut step = FIRST;
        for _ in 0..8 {
            let wait = s.failed(&k, now);
            assert!(
                wait >= step / 2 && wait <= step,
                "{wait:?} not in [{step:?}/2, {step:?}]"
            );
            step = (step * 2).min(MOST);
        }
        assert_eq!(s.backoff[&k].step, MOST);
        assert!(s.take_due(now).is_empty(), "a backing-off key is not due");
        assert_eq!(s.take_due(now + MOST), vec![(k.clone(), Reason::Retry)]);
        s.succeeded(&k);
        assert!(s.backoff.is_empty());
    }

    #[test]
    fn a_conflicted_key_is_replanned_without_backoff_a_bounded_number_of_times() {
        let mut s = Schedule::default();
        let k = key("10.0.0.2");
        for _ in 0..MAX_REPLANS {
            assert!(s.replan(&k));
            assert_eq!(s.next_wake(), None, "a re-planned key does not back off");
            assert_eq!(
                s.take_due(Instant::now()),
                vec![(k.clone(), Reason::Replan)]
            );
        }
        assert!(
            !s.replan(&k),
            "the sixth re-plan in a row backs off instead"
        );
    }

    #[test]
    fn no_backoff_outlives_its_key() {
        let mut s = Schedule::default();
        let now = Instant::now();
        s.failed(&key("a"), now);
        s.failed(&key("b"), now);
        // "a" was taken and not put back (its network went).
        s.dirty.remove(&key("a"));
        s.settle();
        assert!(!s.backoff.contains_key(&key("a")));
        assert!(s.backoff.contains_key(&key("b")));
    }

    #[test]
    fn a_changed_object_is_due_at_once() {
        let mut s = Schedule::default();
        let now = Instant::now();
        let k = key("c");
        s.failed(&k, now);
        s.changed(k.clone());
        assert_eq!(s.take_due(now), vec![(k, Reason::Stored)]);
    }

    #[test]
    fn a_key_whose_switch_port_changed_is_due_at_once() {
        let mut s = Schedule::default();
        let now = Instant::now();
        let k = key("c");
        s.failed(&k, now);
        assert!(s.take_due(now).is_empty(), "backing off");
        s.reread(k.clone(), Reason::Topology);
        assert_eq!(s.take_due(now), vec![(k, Reason::Topology)]);
    }
}
