//! The client's error type.

use serde_json::Value;

use super::codec::CodecError;
use super::schema::SchemaError;

/// An RPC-level error reply (`{"error": …, "details": …}` or a bare string).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}{}", details.as_ref().map(|d| format!(": {d}")).unwrap_or_default())]
pub struct ServerError {
    /// The error tag (`"unknown method"`, `"unknown database"`, …).
    pub error: String,
    /// Extra text from the server.
    pub details: Option<String>,
}

impl ServerError {
    /// Decode an `error` member.
    pub fn from_json(v: &Value) -> ServerError {
        match v {
            Value::String(s) => ServerError {
                error: s.clone(),
                details: None,
            },
            Value::Object(o) => ServerError {
                error: o
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown error")
                    .to_owned(),
                details: o.get("details").and_then(Value::as_str).map(Into::into),
            },
            other => ServerError {
                error: other.to_string(),
                details: None,
            },
        }
    }
}

/// How a failed transaction should be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnErrorKind {
    /// A `wait` failed (`timed out`): someone else changed what the plan read. Re-plan
    /// from the fresh cache.
    Conflict,
    /// The transaction can never succeed as written (constraint, referential integrity,
    /// duplicate uuid, syntax): do not retry unchanged.
    Permanent,
    /// A passing condition (resources, I/O, cancelled): retry later.
    Transient,
}

/// A transaction the server refused: one operation's error, or the commit's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("transaction {}: {error}{}", op_index.map(|i| format!("operation {i} failed")).unwrap_or_else(|| "commit failed".into()), details.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
pub struct TxnError {
    /// Classification.
    pub kind: TxnErrorKind,
    /// Index of the failing operation; `None` for a commit-time error.
    pub op_index: Option<usize>,
    /// The error tag (`"constraint violation"`, `"timed out"`, …).
    pub error: String,
    /// The server's details.
    pub details: Option<String>,
}

impl TxnError {
    /// Build from a server error object, classifying it.
    pub fn new(op_index: Option<usize>, e: ServerError) -> TxnError {
        let kind = match e.error.as_str() {
            "timed out" => TxnErrorKind::Conflict,
            "resources exhausted" | "I/O error" | "canceled" | "not owner" => {
                TxnErrorKind::Transient
            }
            _ => TxnErrorKind::Permanent,
        };
        TxnError {
            kind,
            op_index,
            error: e.error,
            details: e.details,
        }
    }
}

/// Everything that can go wrong talking to an OVSDB server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Connecting or reading/writing the transport failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done (names the remote).
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// TLS set-up or handshake failed.
    #[error("TLS: {0}")]
    Tls(String),
    /// The peer sent bytes that are not JSON-RPC: the session is closed.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The peer sent a well-formed message that makes no sense here.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The connection is closed (or closed before the reply came).
    #[error("connection closed")]
    Closed,
    /// The server stopped answering our inactivity probe.
    #[error("no reply to the inactivity probe within {0:?}: peer presumed dead")]
    ProbeTimeout(std::time::Duration),
    /// No reply within the request timeout.
    #[error("{method}: no reply within {timeout:?}")]
    Timeout {
        /// The method called.
        method: String,
        /// The timeout.
        timeout: std::time::Duration,
    },
    /// The server answered with an RPC-level error.
    #[error("{method}: {error}")]
    Server {
        /// The method called.
        method: String,
        /// The error.
        error: ServerError,
    },
    /// A transaction was refused.
    #[error(transparent)]
    Transaction(#[from] TxnError),
    /// A transaction was sent but the connection died (or timed out) before its reply:
    /// it may or may not have committed. Resync and re-plan; never resend blindly.
    #[error("transaction outcome unknown: {0}")]
    Indeterminate(String),
    /// An operation broke the schema; nothing was sent.
    #[error("schema check failed: {0}")]
    Schema(#[from] SchemaError),
    /// Bad configuration (a remote that does not parse, TLS files missing, …).
    #[error("configuration: {0}")]
    Config(String),
    /// No usable server (e.g. none is the cluster leader) within the wait.
    #[error("no usable server: {0}")]
    Unavailable(String),
}

impl Error {
    /// Whether the error means the connection is gone.
    pub fn is_closed(&self) -> bool {
        matches!(
            self,
            Error::Closed | Error::Io { .. } | Error::ProbeTimeout(_) | Error::Codec(_)
        )
    }

    /// The server's RPC-level error, if that is what this is.
    pub fn as_server_error(&self) -> Option<&ServerError> {
        match self {
            Error::Server { error, .. } => Some(error),
            _ => None,
        }
    }

    /// The transaction error, if that is what this is.
    pub fn txn_error(&self) -> Option<&TxnError> {
        match self {
            Error::Transaction(t) => Some(t),
            _ => None,
        }
    }

    /// Whether a transaction may or may not have committed.
    pub fn is_indeterminate(&self) -> bool {
        matches!(self, Error::Indeterminate(_))
    }

    /// Whether a `wait` guard failed (re-plan and retry).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Transaction(t) if t.kind == TxnErrorKind::Conflict)
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;
