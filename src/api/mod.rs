//! The REST API: LXD's `/1.0/networks`, `/1.0/networks/<net>/load-balancers` and
//! `/1.0/networks/<net>/forwards`, field for field, with LXD's envelopes
//! ([`response`]), plus what LXD lacks: `If-Match` checked (412), PATCH that merges,
//! `/state` with the revision applied in NB, and `?wait=<seconds>` on writes to return
//! once NB holds them.
//!
//! [`router`] builds the whole API over an [`AppState`]; [`bind_unix`] and
//! [`serve::serve`] serve it on a unix socket (and HTTPS) until cancelled. Writes are acknowledged once stored; the controller
//! brings NB along (an NB outage is no reason to refuse a write).

pub mod networks;
pub mod objects;
pub mod response;
pub mod serve;
pub mod tls;
pub mod wire;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use serde_json::json;

use crate::lb::network::NbFacts;
use crate::lb::validate::Limits;
use crate::progress::Status;
use crate::store::{Handle, Store};
pub use response::ApiError;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// Desired state; every call runs off the runtime's workers.
    pub store: Handle,
    /// Facts of NB, for checks (routers, switches, derived subnets), `/state` and the
    /// gauges; `None` runs the API on the store alone.
    pub nb: Option<Arc<dyn NbFacts>>,
    /// Facts of SB, for backend health in `/state`; `None` when no SB is configured.
    pub sb: Option<Arc<dyn crate::lb::health::HealthFacts>>,
    /// The controller's progress, for `/state` and `?wait`; `None` without a controller.
    pub status: Option<Status>,
    /// Validation limits.
    pub limits: Limits,
    /// Owner id of our NB rows.
    pub owner: String,
    /// The controller's metrics, for `/1.0/metrics`.
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
    /// Longest time to receive a request's body (a slow body holds a connection busy,
    /// where the connection cap cannot evict it).
    pub body_timeout: Duration,
}

/// Default of [`AppState::body_timeout`].
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

impl AppState {
    /// State over a store only (no NB, no controller).
    pub fn new(store: Arc<dyn Store>) -> AppState {
        AppState {
            store: Handle::new(store),
            nb: None,
            sb: None,
            status: None,
            limits: Limits::default(),
            owner: "ovnlb".into(),
            metrics: None,
            body_timeout: BODY_TIMEOUT,
        }
    }
}

/// Query parameters every endpoint accepts.
#[derive(Debug, Default, Deserialize)]
pub struct Common {
    /// `?project=`: only `default` exists.
    #[serde(default)]
    pub project: Option<String>,
    /// `?recursion=1`: objects instead of URLs.
    #[serde(default)]
    pub recursion: Option<String>,
    /// `?wait=<seconds>`: return once NB holds the write (or fail with 504).
    #[serde(default)]
    pub wait: Option<String>,
    /// `?target=`: cluster member; ignored.
    #[serde(default)]
    pub target: Option<String>,
}

impl Common {
    /// 404 for any project but `default` (projects are out of scope).
    ///
    /// # Errors
    /// `Project not found`.
    pub fn check_project(&self) -> Result<(), ApiError> {
        match self.project.as_deref() {
            None | Some("") | Some("default") => Ok(()),
            Some(_) => Err(ApiError::not_found("Project not found")),
        }
    }

    /// Whether objects are asked for.
    pub fn recursive(&self) -> bool {
        self.recursion
            .as_deref()
            .is_some_and(|r| !r.is_empty() && r != "0")
    }

    /// The `wait` timeout, if asked for.
    ///
    /// # Errors
    /// 400 when it is not a number of seconds.
    pub fn wait(&self) -> Result<Option<Duration>, ApiError> {
        match self.wait.as_deref() {
            None | Some("") => Ok(None),
            Some(w) => w
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0 && *s <= 3600.0)
                .map(|s| Some(Duration::from_secs_f64(s)))
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "Invalid wait \"{w}\": a number of seconds from 0 to 3600"
                    ))
                }),
        }
    }
}

/// The `If-Match` header as a revision (quotes stripped, `*` and absence mean none).
///
/// # Errors
/// 412 when it cannot be one of our ETags.
pub fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(v) = headers.get(axum::http::header::IF_MATCH) else {
        return Ok(None);
    };
    let v = v.to_str().unwrap_or("").trim();
    let v = v.strip_prefix("W/").unwrap_or(v).trim_matches('"');
    if v.is_empty() || v == "*" {
        return Ok(None);
    }
    v.parse().map(Some).map_err(|_| {
        ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            format!("ETag doesn't match: \"{v}\" is not a current ETag"),
        )
    })
}

/// The extensions `GET /1.0` lists: LXD's that we implement, and ours.
pub const API_EXTENSIONS: &[&str] = &[
    "etag",
    "patch",
    "network",
    "network_type_ovn",
    "network_forward",
    "network_forward_ports",
    "network_load_balancer",
    "network_load_balancer_health_check",
    "network_load_balancer_state",
    "ovnlb_state_revision",
    "ovnlb_write_wait",
];

async fn server_info(
    State(st): State<AppState>,
    Query(q): Query<Common>,
) -> Result<Response, ApiError> {
    q.check_project()?;
    let writer = st.status.as_ref().map(|s| {
        let w = s.writer();
        json!({"state": w.state, "token": w.token, "since": w.since})
    });
    Ok(response::sync(json!({
        "api_extensions": API_EXTENSIONS,
        "api_status": "stable",
        "api_version": "1.0",
        "auth": "trusted",
        "auth_methods": ["tls"],
        "public": false,
        "config": {},
        "environment": {
            "api_extensions": API_EXTENSIONS,
            "server": "ovnlb",
            "server_name": "ovnlbd",
            "server_version": env!("CARGO_PKG_VERSION"),
            "server_clustered": false,
            "project": "default",
            "storage": "",
            "storage_version": "",
            // Whether this node's controller writes NB (its NB fence), since when.
            "ovnlb_reconciler": writer,
        },
    })))
}

/// The Prometheus text of `st`: the controller's counters and histograms, and gauges of
/// the NB session, the owned rows and the keys.
pub fn metrics_text(st: &AppState) -> String {
    let mut gauges: Vec<crate::metrics::Gauge<'_>> = Vec::new();
    if let Some(nb) = &st.nb {
        let g = nb.gauges(&st.owner);
        gauges.push((
            "ovnlb_nb_connected",
            "1 while connected to a usable NB server.",
            f64::from(u8::from(g.connected)),
        ));
        gauges.push((
            "ovnlb_nb_connections",
            "NB connections made since start.",
            g.connections as f64,
        ));
        gauges.push((
            "ovnlb_owned_rows",
            "Load_Balancer rows in NB owned by this daemon.",
            g.owned_rows as f64,
        ));
    }
    if let Some(status) = &st.status {
        let (keys, failing) = status.counts();
        gauges.push((
            "ovnlb_keys",
            "Load balancers and forwards the controller tracks.",
            keys as f64,
        ));
        gauges.push((
            "ovnlb_keys_failing",
            "Of those, the ones whose last reconcile failed.",
            failing as f64,
        ));
        let w = status.writer();
        gauges.push((
            "ovnlb_reconciler_active",
            "1 while this node's controller holds the NB fence and writes NB.",
            f64::from(u8::from(w.state == "active")),
        ));
        gauges.push((
            "ovnlb_reconciler_since_seconds",
            "Since when (Unix time) the controller is in its present state.",
            w.since as f64,
        ));
    }
    let mut text = match &st.metrics {
        Some(m) => m.render(&gauges),
        None => crate::metrics::Metrics::default().render(&gauges),
    };
    if let Some(sb) = st.sb.as_deref().filter(|sb| sb.ready()) {
        text.push_str(&render_backend_health(&sb.monitors()));
    }
    text
}

/// A Prometheus label value, escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `ovnlb_backend_health`: one series per backend monitor (switch port, address,
/// target port, protocol) with its status as a label, value 1.
fn render_backend_health(monitors: &[crate::lb::health::Monitor]) -> String {
    let mut out = String::from(
        "# HELP ovnlb_backend_health Backend monitors in OVN Southbound, by status (pending: never probed).\n# TYPE ovnlb_backend_health gauge\n",
    );
    for m in monitors {
        out.push_str(&format!(
            "ovnlb_backend_health{{logical_port=\"{}\",ip=\"{}\",port=\"{}\",protocol=\"{}\",status=\"{}\"}} 1\n",
            label(&m.port),
            label(&m.ip),
            m.target_port,
            label(&m.protocol),
            label(&m.status)
        ));
    }
    out
}

async fn metrics(State(st): State<AppState>) -> Response {
    use axum::response::IntoResponse;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        metrics_text(&st),
    )
        .into_response()
}

/// The plain `/metrics` router (for `metrics_listen`).
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("not found")
}

/// The API's routes over `state`.
pub fn router(state: AppState) -> Router {
    let lbs = "/1.0/networks/{net}/load-balancers";
    let fwds = "/1.0/networks/{net}/forwards";
    use crate::lb::model::{ForwardsPost as Fwd, LoadBalancersPost as Lb};
    Router::new()
        .route("/1.0", get(server_info))
        .route("/1.0/", get(server_info))
        .route("/1.0/metrics", get(metrics))
        .route("/1.0/networks", get(networks::list).post(networks::create))
        .route(
            "/1.0/networks/{net}",
            get(networks::show)
                .put(networks::put)
                .patch(networks::patch)
                .delete(networks::delete),
        )
        .route(lbs, get(objects::list::<Lb>).post(objects::create::<Lb>))
        .route(
            &format!("{lbs}/{{addr}}"),
            get(objects::show::<Lb>)
                .put(objects::put::<Lb>)
                .patch(objects::patch::<Lb>)
                .delete(objects::delete::<Lb>),
        )
        .route(&format!("{lbs}/{{addr}}/state"), get(objects::state::<Lb>))
        .route(fwds, get(objects::list::<Fwd>).post(objects::create::<Fwd>))
        .route(
            &format!("{fwds}/{{addr}}"),
            get(objects::show::<Fwd>)
                .put(objects::put::<Fwd>)
                .patch(objects::patch::<Fwd>)
                .delete(objects::delete::<Fwd>),
        )
        .route(
            &format!("{fwds}/{{addr}}/state"),
            get(objects::state::<Fwd>),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        })
        .layer(axum::middleware::from_fn(tls::guard))
        .layer(axum::middleware::from_fn(response::log_server_errors))
        .with_state(state)
}

/// Bind the API's unix socket at `path` (mode 0660; a stale socket nobody answers on is
/// replaced, a live one is an error).
///
/// # Errors
/// When the socket cannot be bound, or another daemon listens on it.
pub async fn bind_unix(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if path.exists() {
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("{}: another daemon is listening", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(listener)
}

/// Read the body of a write as JSON, with LXD-style errors.
///
/// # Errors
/// 400 naming what does not decode.
pub fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("Invalid request body: {e}")))
}

/// The body of a write, with its errors as LXD envelopes: 413 past the body limit
/// (2 MiB), 400 for a body that cannot be read (a bad chunk size, a connection cut), 408
/// when it has not all arrived within [`AppState::body_timeout`].
pub struct Body(pub axum::body::Bytes);

/// The body limit (axum's default).
pub const BODY_LIMIT: usize = 2 << 20;

impl axum::extract::FromRequest<AppState> for Body {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &AppState) -> Result<Self, ApiError> {
        let read = axum::body::Bytes::from_request(req, state);
        let Ok(read) = tokio::time::timeout(state.body_timeout, read).await else {
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "Request body not received within {} s",
                    state.body_timeout.as_secs()
                ),
            ));
        };
        read.map(Body).map_err(|r| {
            let status = r.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    status,
                    format!("Request body too large: at most {BODY_LIMIT} bytes"),
                )
            } else {
                ApiError::new(status, format!("Invalid request body: {}", r.body_text()))
            }
        })
    }
}

/// Handlers' shared state extractor.
pub type AppStateExt = State<AppState>;
