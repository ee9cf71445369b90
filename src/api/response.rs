//! LXD's response envelopes, and the error type every handler returns.
//!
//! Sync: `{"type":"sync","status":"Success","status_code":200,"operation":"",
//! "error_code":0,"error":"","metadata":…}`; error: `{"type":"error","status":"",
//! "status_code":0,"operation":"","error_code":N,"error":"…","metadata":null}` with HTTP
//! status N. Never async: clients such as lxc do not poll operations.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use std::sync::Arc;
use tracing::Instrument;

use crate::lb::validate::{ErrorKind, ValidationError};
use crate::store::StoreError;

/// A sync envelope around `metadata`, HTTP 200.
pub fn sync(metadata: impl Serialize) -> Response {
    sync_with(StatusCode::OK, metadata)
}

/// LXD's sync envelope, serialized in one pass from its metadata.
#[derive(Serialize)]
struct SyncEnvelope<T: Serialize> {
    r#type: &'static str,
    status: &'static str,
    status_code: u16,
    operation: &'static str,
    error_code: u16,
    error: &'static str,
    metadata: T,
}

fn sync_with(status: StatusCode, metadata: impl Serialize) -> Response {
    let body = SyncEnvelope {
        r#type: "sync",
        status: "Success",
        status_code: 200,
        operation: "",
        error_code: 0,
        error: "",
        metadata,
    };
    (status, axum::Json(body)).into_response()
}

/// A sync envelope with an `ETag` header (quoted, as LXD sends it).
pub fn sync_etag(metadata: impl Serialize, revision: u64) -> Response {
    let mut r = sync(metadata);
    if let Ok(v) = HeaderValue::from_str(&format!("\"{revision}\"")) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

/// `s` as one URL path segment: every byte but RFC 3986's unreserved characters and
/// `:` (IPv6 listen addresses stay readable, as LXD lists them) percent-encoded.
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// 201 Created with `Location` and `metadata: {}` (as Incus answers a create).
pub fn created(location: &str) -> Response {
    let mut r = sync_with(StatusCode::CREATED, json!({}));
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// An API error: the HTTP status (also the envelope's `error_code`), the message, and
/// for a failure of ours the error that caused it. The cause never reaches the client
/// beyond the message; it rides on the response to the request span, which logs every
/// 5xx once ([`log_server_errors`]).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// What went wrong, for the client to print.
    pub message: String,
    /// What caused it, when something of ours failed.
    #[source]
    pub cause: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

/// Errors compare by what the client sees: status and message.
impl PartialEq for ApiError {
    fn eq(&self, other: &Self) -> bool {
        self.status == other.status && self.message == other.message
    }
}

impl Eq for ApiError {}

impl ApiError {
    /// An error with a status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            cause: None,
        }
    }

    /// 500 for `cause` failing (the store, serializing what it holds): its text is the
    /// message, and it is kept for the log.
    pub fn internal_from(cause: impl std::error::Error + Send + Sync + 'static) -> ApiError {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: cause.to_string(),
            cause: Some(Arc::new(cause)),
        }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    /// 409.
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, message)
    }

    /// 500, for the store failing.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// Broken rules: 409 when every one is a collision with something that exists, 503
    /// when every one waits on NB, else 400. The message lists them all, each naming the field and the rule.
    pub fn invalid(errors: &[ValidationError]) -> ApiError {
        let all = |k: ErrorKind| !errors.is_empty() && errors.iter().all(|e| e.kind == k);
        let status = if all(ErrorKind::Conflict) {
            StatusCode::CONFLICT
        } else if all(ErrorKind::Unavailable) {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::BAD_REQUEST
        };
        let message = errors
            .iter()
            .map(|e| {
                if e.field.is_empty() {
                    e.message.clone()
                } else {
                    format!("{}: {}", e.field, e.message)
                }
            })
            .collect::<Vec<_>>()
            .join("; ");
        ApiError::new(status, message)
    }

    /// A store error, with `what` naming a missing object LXD's way (e.g.
    /// `Network load balancer not found`).
    pub fn from_store(e: StoreError, what: &str) -> ApiError {
        match e {
            StoreError::NotFound(_) => ApiError::not_found(what),
            StoreError::Conflict(m) => ApiError::conflict(m),
            StoreError::PreconditionFailed { current, expected } => ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                format!("ETag doesn't match: stored revision is \"{current}\", If-Match gave \"{expected}\""),
            ),
            StoreError::Unavailable(m) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, m),
            other => ApiError::internal_from(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = error_body(self.status.as_u16(), &self.message);
        let status = self.status;
        let mut r = (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response();
        if status.is_server_error() {
            r.extensions_mut().insert(Arc::new(self));
        }
        r
    }
}

/// Middleware: each request in a `request{method, path}` span (`path`: the route's
/// pattern, never the client's bytes), and every 5xx logged once inside it, with its
/// message and cause: 500 as an error, the others (NB not at hand, a `?wait` that ran
/// out or was cut by shutdown) as warnings.
pub async fn log_server_errors(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("(no route)", |p| p.as_str())
        .to_owned();
    let span = tracing::info_span!("request", method = %req.method(), path = %path);
    let r = next.run(req).instrument(span.clone()).await;
    let status = r.status();
    if status.is_server_error() {
        let _in = span.entered();
        let e = r.extensions().get::<Arc<ApiError>>();
        let message = e.map_or("", |e| e.message.as_str());
        let cause = e.and_then(|e| e.cause.as_ref()).map(|c| c.to_string());
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(status = status.as_u16(), message, cause, "request failed");
        } else {
            tracing::warn!(status = status.as_u16(), message, cause, "request failed");
        }
    }
    r
}

/// LXD's error envelope for HTTP status `code`, serialized.
pub fn error_body(code: u16, message: &str) -> Vec<u8> {
    let body = json!({
        "type": "error",
        "status": "",
        "status_code": 0,
        "operation": "",
        "error_code": code,
        "error": message,
        "metadata": null,
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::segment;

    #[test]
    fn listed_urls_are_percent_encoded() {
        assert_eq!(segment("ovn1"), "ovn1");
        assert_eq!(segment("2001:db8::10"), "2001:db8::10");
        assert_eq!(segment("..%2F..%2Fetc"), "..%252F..%252Fetc");
        assert_eq!(segment("a\0b/c d"), "a%00b%2Fc%20d");
    }
}
