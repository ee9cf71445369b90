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

/// An API error: the HTTP status (also the envelope's `error_code`) and the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// What went wrong, for the client to print.
    pub message: String,
}

impl ApiError {
    /// An error with a status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
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
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = error_body(self.status.as_u16(), &self.message);
        (
            self.status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response()
    }
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
