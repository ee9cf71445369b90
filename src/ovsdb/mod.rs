//! A native OVSDB (RFC 7047) client: JSON-RPC 1.0 over tcp, unix and TLS, pipelined
//! requests, transactions checked against the schema, monitors feeding an in-memory
//! cache, inactivity probes, and a supervised session that reconnects and follows the
//! leader of a clustered database. It knows nothing of OVN.
//!
//! Two levels:
//! - [`connect`] gives a [`Client`] and a [`Connection`] to run: one session, no
//!   reconnection (tokio-postgres style).
//! - [`Session::start`] supervises: rotation over remotes, leader-only, backoff, a
//!   [`Cache`] kept across reconnects and resumed with `monitor_cond_since`.
//!
//! ```no_run
//! # async fn f() -> Result<(), ovnlb::ovsdb::Error> {
//! use ovnlb::ovsdb::{connect, ConnectConfig, Condition, Datum, Transaction};
//! let (client, conn) = connect(&"unix:/run/ovn/ovnnb_db.sock".parse()?, &ConnectConfig::default()).await?;
//! tokio::spawn(conn.run());
//! let schema = std::sync::Arc::new(client.get_schema("OVN_Northbound").await?);
//! let mut txn = Transaction::with_schema(schema);
//! txn.select("Load_Balancer", vec![Condition::eq("name", Datum::scalar("lb1"))], None);
//! let reply = client.transact(&txn).await?;
//! # let _ = reply; Ok(()) }
//! ```

mod cache;
mod client;
mod codec;
mod config;
mod connection;
mod datum;
mod error;
mod jsonrpc;
mod schema;
mod session;
mod transport;
mod txn;

pub use cache::{Cache, CacheRow, CacheView, Changes, DeriveKeys, IndexSpec, Subscription};
pub use client::{connect, from_stream, Client, MonitorRequests, MonitorSelect, ZERO_TXN_ID};
pub use codec::{CodecError, Framer, DEFAULT_MAX_MESSAGE};
pub use config::{parse_remotes, ConnectConfig, Remote, TlsFiles};
pub use connection::{AsyncStream, Connection, MonitorHandler, MonitorMethod, Notification};
pub use datum::{Atom, Datum};
pub use error::{Error, Result, ServerError, TxnError, TxnErrorKind};
pub use jsonrpc::Message;
pub use schema::{
    ovn_nb_schema, AtomicType, BaseType, ColumnSchema, ColumnType, DatabaseSchema, RefType,
    SchemaError, TableSchema, OVN_NB_SCHEMA,
};
pub use session::{Session, SessionConfig, SessionState};
pub use transport::{tls_client_config, Stream};
pub use txn::{Condition, Function, Mutation, Mutator, Row, Transaction, TxnReply, WaitUntil};
