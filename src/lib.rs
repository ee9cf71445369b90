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
//!   is the embedded default.
//!
//! - [`feed`]: coalescing change feeds (never drop, merge instead).
//! - [`fasthash`]: the hash maps of the hot paths (foldhash instead of SipHash).
//!
//! Binaries live in `src/bin/`.

#![warn(missing_docs, unreachable_pub)]

pub mod fasthash;
pub mod feed;
pub mod lb;
pub mod nb;
pub mod ovsdb;
pub mod reconcile;
pub mod store;
