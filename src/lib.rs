//! ovnlb: network load balancers and network forwards for OVN.
//!
//! # Layout
//!
//! - [`ovsdb`]: the native OVSDB client (RFC 7047): framing, JSON-RPC 1.0, data model,
//!   schemas, transactions, monitors and cache, supervised sessions (reconnect, TLS,
//!   clustered leader-only). Knows nothing of OVN.
//! - [`nb`]: typed rows of the OVN Northbound tables ovnlb touches, checked against the
//!   pinned schema in `ovsdb-schema/`.
//! - [`lb`]: load balancers and forwards: the LXD API model, validation, the desired
//!   state file, and rendering into NB rows. Pure, no I/O.
//! - [`reconcile`]: plans desired rows against the live NB cache and applies them in
//!   guarded transactions.
//! - [`store`]: durable desired state behind a small trait; SQLite (the spec's tables)
//!   is the embedded default; OVNLB, an OVSDB database of our own on a Raft cluster,
//!   the engine for several ovnlbd at once.
//! - [`progress`]: the controller's progress as the API reads it (`/state`, `?wait`):
//!   written by the controller, read by the API.
//! - [`api`]: the LXD-compatible REST API (axum) over a store, the progress model and
//!   an NB session; LXD's envelopes, ETags, PATCH, `/state`; its own serve loop with
//!   connection caps and timeouts.
//! - [`cli`]: the `ovnlb network …` commands and their HTTP client of ovnlbd's socket.
//! - [`daemon`]: ovnlbd as a library: settings, and `run` (store, NB session,
//!   controller, API) until cancelled.
//!
//! - [`feed`]: coalescing change feeds (never drop, merge instead).
//! - [`metrics`]: the controller's counters and latency histograms (Prometheus text).
//! - [`fasthash`]: the hash maps of the hot paths (foldhash instead of SipHash).
//! - [`tls`]: a client's TLS files and the rustls configuration built from them (the
//!   OVSDB client and the CLI).
//!
//! Binaries live in `src/bin/`.
//!
//! # The dependency rule
//!
//! Data flows one way: API → store → controller → NB. The arrows between modules:
//! `ovsdb` → nothing of ours but leaf utilities (`feed`, `fasthash`, `tls`); `nb` → `ovsdb`;
//! `lb` → `nb` types only, pure, no I/O; `store` → `lb`, and `ovsdb` for the clustered
//! engine (it speaks OVSDB to its own OVNLB database, never to NB); `reconcile` → `ovsdb`, `nb`,
//! `lb`, `store`, `progress`, `metrics`; `api` → `lb`, `store`, `progress`, `metrics`,
//! never `ovsdb`, `nb` or `reconcile`; `daemon` wires them; `cli` → `lb` types, its HTTP
//! client, `tls`; binaries → `daemon`, `cli`. `tests/dependency_rule.rs` reads every
//! `crate::…` path and fails naming the file and line of any other arrow.

#![warn(missing_docs, unreachable_pub)]

pub mod api;
pub mod cli;
pub mod daemon;
pub mod fasthash;
pub mod feed;
pub mod lb;
pub mod metrics;
pub mod nb;
pub mod ovsdb;
pub mod progress;
pub mod reconcile;
pub mod store;
pub mod tls;
