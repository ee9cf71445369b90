//! The controller's metrics, in Prometheus' text exposition format: counters and
//! latency histograms kept with atomics (recording never blocks the controller), gauges
//! computed when scraped.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// A histogram with fixed bucket bounds, in seconds.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Per bucket (not cumulative; summed when rendered).
    counts: Vec<AtomicU64>,
    /// Sum of observations, in nanoseconds.
    sum_ns: AtomicU64,
    count: AtomicU64,
}

/// Latency buckets: 100 µs to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

impl Histogram {
    /// A histogram over `bounds` (ascending).
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Record one observation.
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = self
            .bounds
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_ns
            .fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut acc = 0;
        for (i, b) in self.bounds.iter().enumerate() {
            acc += self.counts[i].load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {acc}");
        }
        acc += self.counts[self.bounds.len()].load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {acc}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_ns.load(Relaxed) as f64 / 1e9);
        let _ = writeln!(out, "{name}_count {}", self.count());
    }
}

/// What the controller counts.
#[derive(Debug)]
pub struct Metrics {
    /// Reconcile rounds that planned keys (a batch of one network).
    pub passes: AtomicU64,
    /// Transactions committed.
    pub transactions: AtomicU64,
    /// Failed transactions and plans (keys then back off).
    pub errors: AtomicU64,
    /// Guards that failed because NB moved under a plan (re-planned).
    pub conflicts: AtomicU64,
    /// NB operations applied (creates, updates, deletes, attaches, detaches).
    pub operations: AtomicU64,
    /// Periodic resyncs.
    pub resyncs: AtomicU64,
    /// Times the controller's loop woke up (an event, a backoff coming due, a resync):
    /// flat while nothing happens.
    pub wakeups: AtomicU64,
    /// Planning time per round (reading the cache).
    pub plan_seconds: Histogram,
    /// Commit time per transaction (until the server's reply).
    pub commit_seconds: Histogram,
    /// Round trip of an `echo` on the controller's NB session (ovnlbd probes it).
    pub nb_echo_seconds: Histogram,
    /// Backend monitors whose status changed in the Southbound.
    pub health_transitions: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            passes: AtomicU64::new(0),
            transactions: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
            operations: AtomicU64::new(0),
            resyncs: AtomicU64::new(0),
            wakeups: AtomicU64::new(0),
            plan_seconds: Histogram::new(LATENCY_BUCKETS),
            commit_seconds: Histogram::new(LATENCY_BUCKETS),
            nb_echo_seconds: Histogram::new(LATENCY_BUCKETS),
            health_transitions: AtomicU64::new(0),
        }
    }
}

/// A gauge computed at scrape time: name, help, value.
pub type Gauge<'a> = (&'a str, &'a str, f64);

impl Metrics {
    /// Add one to a counter.
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Relaxed);
    }

    /// The exposition text, with `gauges` appended.
    pub fn render(&self, gauges: &[Gauge<'_>]) -> String {
        let mut out = String::new();
        for (name, help, c) in [
            (
                "ovnlb_reconcile_passes_total",
                "Reconcile rounds that planned keys.",
                &self.passes,
            ),
            (
                "ovnlb_transactions_total",
                "NB transactions committed.",
                &self.transactions,
            ),
            (
                "ovnlb_backend_health_transitions_total",
                "Backend monitors whose status changed in OVN Southbound.",
                &self.health_transitions,
            ),
            (
                "ovnlb_reconcile_errors_total",
                "Failed plans and transactions (the keys back off).",
                &self.errors,
            ),
            (
                "ovnlb_reconcile_conflicts_total",
                "Plans re-done because NB changed under them.",
                &self.conflicts,
            ),
            (
                "ovnlb_operations_applied_total",
                "NB operations applied.",
                &self.operations,
            ),
            ("ovnlb_resyncs_total", "Periodic resyncs.", &self.resyncs),
            (
                "ovnlb_controller_wakeups_total",
                "Times the controller woke up (events, backoffs due, resyncs).",
                &self.wakeups,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                c.load(Relaxed)
            );
        }
        self.plan_seconds.render(
            &mut out,
            "ovnlb_plan_seconds",
            "Time to plan a batch of keys against the cache.",
        );
        self.commit_seconds.render(
            &mut out,
            "ovnlb_commit_seconds",
            "Time from sending a transaction to its reply.",
        );
        self.nb_echo_seconds.render(
            &mut out,
            "ovnlb_nb_echo_seconds",
            "Round trip of an echo on the NB session, probed every second.",
        );
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::new(&[0.001, 0.01]);
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_secs(1));
        let mut s = String::new();
        h.render(&mut s, "x", "h");
        assert!(s.contains("x_bucket{le=\"0.001\"} 1\n"));
        assert!(s.contains("x_bucket{le=\"0.01\"} 2\n"));
        assert!(s.contains("x_bucket{le=\"+Inf\"} 3\n"));
        assert!(s.contains("x_count 3\n"));
        let m = Metrics::default();
        Metrics::inc(&m.transactions);
        let t = m.render(&[("g", "a gauge", 2.0)]);
        assert!(t.contains("ovnlb_transactions_total 1\n") && t.contains("g 2\n"));
    }
}
