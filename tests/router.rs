//! The router without sockets (`tower::ServiceExt::oneshot`): what the handlers do
//! around the store, independent of any listener.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use ovnlb::api::{router, AppState};
use ovnlb::feed::FeedReceiver;
use ovnlb::lb::model::{AnyObject, Network, ObjectKind, ObjectRef, PutRef};
use ovnlb::lb::state::DesiredState;
use ovnlb::store::{Change, Result, SqliteStore, Store, StoreError, Stored};
use tower::ServiceExt;

mod common;
use common::{capture_logs, net};

/// A store whose `create_network` waits at a gate until the test opens it (or 10 s
/// pass, so a broken build fails instead of hanging).
struct Gated {
    inner: SqliteStore,
    gate: Mutex<Gate>,
    cv: Condvar,
    /// Set: listing networks fails as a corrupt store does.
    broken: AtomicBool,
}

#[derive(Default)]
struct Gate {
    entered: bool,
    open: bool,
    timed_out: bool,
}

impl Gated {
    fn new() -> Gated {
        Gated {
            inner: SqliteStore::in_memory().unwrap(),
            gate: Mutex::new(Gate::default()),
            cv: Condvar::new(),
            broken: AtomicBool::new(false),
        }
    }

    fn pass(&self) {
        let mut g = self.gate.lock().unwrap();
        g.entered = true;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !g.open {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                g.timed_out = true;
                return;
            }
            g = self.cv.wait_timeout(g, left).unwrap().0;
        }
    }

    fn open(&self) {
        self.gate.lock().unwrap().open = true;
        self.cv.notify_all();
    }
}

impl Store for Gated {
    fn networks(&self) -> Result<Vec<Stored<Network>>> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(StoreError::Corrupt("network row 7 is not JSON".into()));
        }
        self.inner.networks()
    }
    fn network(&self, name: &str) -> Result<Stored<Network>> {
        self.inner.network(name)
    }
    fn create_network(&self, n: &Network) -> Result<u64> {
        self.pass();
        self.inner.create_network(n)
    }
    fn update_network(&self, n: &Network, if_match: Option<u64>) -> Result<u64> {
        self.inner.update_network(n, if_match)
    }
    fn delete_network(&self, name: &str, if_match: Option<u64>) -> Result<()> {
        self.inner.delete_network(name, if_match)
    }
    fn objects(&self, kind: ObjectKind, network: &str) -> Result<Vec<Stored<AnyObject>>> {
        self.inner.objects(kind, network)
    }
    fn object(&self, kind: ObjectKind, network: &str, listen: &str) -> Result<Stored<AnyObject>> {
        self.inner.object(kind, network, listen)
    }
    fn create_object(&self, network: &str, o: ObjectRef<'_>) -> Result<u64> {
        self.inner.create_object(network, o)
    }
    fn update_object(
        &self,
        network: &str,
        listen: &str,
        put: PutRef<'_>,
        if_match: Option<u64>,
    ) -> Result<u64> {
        self.inner.update_object(network, listen, put, if_match)
    }
    fn delete_object(
        &self,
        kind: ObjectKind,
        network: &str,
        listen: &str,
        if_match: Option<u64>,
    ) -> Result<()> {
        self.inner.delete_object(kind, network, listen, if_match)
    }
    fn desired_state(&self) -> Result<DesiredState> {
        self.inner.desired_state()
    }
    fn subscribe(&self) -> FeedReceiver<Change> {
        self.inner.subscribe()
    }
}

fn request(method: &str, path: &str, body: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

/// One runtime thread: a store call made on it would stop every other request.
#[tokio::test(flavor = "current_thread")]
async fn a_write_waiting_on_the_store_does_not_stall_other_requests() {
    let store = Arc::new(Gated::new());
    let app = router(AppState::new(store.clone()));
    let write = tokio::spawn(app.clone().oneshot(request(
        "POST",
        "/1.0/networks",
        r#"{"name": "up", "type": "physical", "config": {"ipv4.routes": "192.0.2.0/24"}}"#,
    )));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !store.gate.lock().unwrap().entered {
        assert!(
            !write.is_finished(),
            "the write was answered without reaching the store"
        );
        assert!(
            Instant::now() < deadline,
            "the write never reached the store"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let info = app
        .clone()
        .oneshot(request("GET", "/1.0", ""))
        .await
        .unwrap();
    assert_eq!(info.status(), StatusCode::OK);
    assert!(
        !store.gate.lock().unwrap().timed_out,
        "GET /1.0 was answered only after the store call gave up: the call held the runtime"
    );
    store.open();
    let created = write.await.unwrap().unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    assert!(store.network("up").is_ok());
}

#[tokio::test(flavor = "current_thread")]
async fn a_store_failure_is_a_500_envelope_logged_once_in_its_request_span() {
    let (logs, _guard) = capture_logs();
    let store = Arc::new(Gated::new());
    store.broken.store(true, Ordering::SeqCst);
    let app = router(AppState::new(store));
    let r = app
        .oneshot(request("GET", "/1.0/networks?recursion=1", ""))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error_code"], 500);
    assert_eq!(
        v["error"],
        "corrupt stored value: network row 7 is not JSON"
    );
    let text = logs.text();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("request failed"))
        .collect();
    assert_eq!(lines.len(), 1, "logged once: {text}");
    let line = lines[0];
    assert!(line.contains("ERROR"), "{line}");
    assert!(
        line.contains("request{method=GET path=/1.0/networks}"),
        "in the request span, with the route's pattern: {line}"
    );
    assert!(line.contains("corrupt stored value"), "{line}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_client_error_is_not_logged_as_a_failure() {
    let (logs, _guard) = capture_logs();
    let app = router(AppState::new(Arc::new(Gated::new())));
    let r = app
        .oneshot(request("GET", "/1.0/networks/nope", ""))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let text = logs.text();
    assert!(!text.contains("request failed"), "{text}");
}

/// The router over an in-memory store holding `uplink` and `ovn1` (its subnets given,
/// so no NB is needed), and 192.0.2.10 on it.
async fn app_with_lb() -> axum::Router {
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    store
        .create_network(&net(
            "uplink",
            "physical",
            &[("ipv4.routes", "192.0.2.0/24")],
        ))
        .unwrap();
    store
        .create_network(&net(
            "ovn1",
            "ovn",
            &[
                ("network", "uplink"),
                ("ovn.router", "lr"),
                ("ovn.switch", "ls"),
                ("ipv4.address", "10.0.0.1/24"),
            ],
        ))
        .unwrap();
    let app = router(AppState::new(store));
    let r = call(
        &app,
        "POST",
        "/1.0/networks/ovn1/load-balancers",
        None,
        r#"{"listen_address": "192.0.2.10", "description": "web",
            "backends": [{"name": "b1", "target_address": "10.0.0.11", "target_port": "8080"}],
            "ports": [{"protocol": "tcp", "listen_port": "80", "target_backend": ["b1"]}]}"#,
    )
    .await;
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.2);
    app
}

/// One request through the router: status, ETag, body as JSON.
async fn call(
    app: &axum::Router,
    method: &str,
    path: &str,
    if_match: Option<&str>,
    body: &str,
) -> (StatusCode, Option<String>, serde_json::Value) {
    let mut r = request(method, path, body);
    if let Some(m) = if_match {
        r.headers_mut().insert("if-match", m.parse().unwrap());
    }
    let resp = app.clone().oneshot(r).await.unwrap();
    let status = resp.status();
    let etag = resp
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {bytes:?}"));
    (status, etag, v)
}

const LB: &str = "/1.0/networks/ovn1/load-balancers/192.0.2.10";

#[tokio::test(flavor = "current_thread")]
async fn answers_and_refusals_are_lxd_envelopes() {
    let app = app_with_lb().await;
    let (st, _, v) = call(&app, "GET", "/1.0", None, "").await;
    assert_eq!(st, StatusCode::OK);
    for (k, want) in [
        ("type", serde_json::json!("sync")),
        ("status", serde_json::json!("Success")),
        ("status_code", serde_json::json!(200)),
        ("error_code", serde_json::json!(0)),
        ("error", serde_json::json!("")),
    ] {
        assert_eq!(v[k], want, "{k}");
    }
    for (method, path, status) in [
        ("GET", "/1.0/nothing-here", StatusCode::NOT_FOUND),
        ("POST", "/1.0", StatusCode::METHOD_NOT_ALLOWED),
        (
            "GET",
            LB.replace("10", "99").as_str(),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let (st, _, v) = call(&app, method, path, None, "").await;
        assert_eq!(st, status, "{method} {path}");
        assert_eq!(v["type"], "error", "{method} {path}");
        assert_eq!(v["error_code"], status.as_u16(), "{method} {path}");
        assert_eq!(v["metadata"], serde_json::Value::Null);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn if_match_takes_the_quoted_weak_and_star_forms() {
    let app = app_with_lb().await;
    let put = |d: &str| {
        format!(
            r#"{{"description": "{d}", "backends": [{{"name": "b1", "target_address": "10.0.0.11", "target_port": "8080"}}],
                "ports": [{{"protocol": "tcp", "listen_port": "80", "target_backend": ["b1"]}}]}}"#
        )
    };
    let (_, etag, _) = call(&app, "GET", LB, None, "").await;
    assert_eq!(etag.as_deref(), Some("\"1\""));
    let (st, _, v) = call(&app, "PUT", LB, Some("\"1\""), &put("a")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, _, v) = call(&app, "PUT", LB, Some("W/\"2\""), &put("b")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, _, v) = call(&app, "PUT", LB, Some("*"), &put("c")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, _, v) = call(&app, "PUT", LB, Some("\"1\""), &put("stale")).await;
    assert_eq!(st, StatusCode::PRECONDITION_FAILED);
    assert!(v["error"].as_str().unwrap().contains("ETag"), "{v}");
    let (st, _, _) = call(&app, "PUT", LB, Some("\"abc\""), &put("junk")).await;
    assert_eq!(st, StatusCode::PRECONDITION_FAILED);
    let (_, etag, v) = call(&app, "GET", LB, None, "").await;
    assert_eq!(etag.as_deref(), Some("\"4\""));
    assert_eq!(
        v["metadata"]["description"], "c",
        "refused writes changed nothing"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_patch_merges_config_key_by_key_and_keeps_what_it_omits() {
    let app = app_with_lb().await;
    for body in [
        r#"{"config": {"user.a": "1", "user.b": "2"}}"#,
        r#"{"config": {"user.a": ""}}"#,
        r#"{"ports": null, "listen_address": "192.0.2.77", "unknown": 1}"#,
    ] {
        let (st, _, v) = call(&app, "PATCH", LB, None, body).await;
        assert_eq!(st, StatusCode::OK, "{body}: {v}");
    }
    let (_, _, v) = call(&app, "GET", LB, None, "").await;
    let m = &v["metadata"];
    assert_eq!(m["description"], "web");
    assert_eq!(m["config"], serde_json::json!({"user.b": "2"}));
    assert_eq!(m["listen_address"], "192.0.2.10", "not editable");
    assert_eq!(m["backends"].as_array().unwrap().len(), 1);
    assert_eq!(m["ports"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn bodies_and_projects_that_cannot_be_served_are_refused() {
    let app = app_with_lb().await;
    for (method, path, body, status, text) in [
        (
            "PATCH",
            LB,
            "[1, 2]",
            StatusCode::BAD_REQUEST,
            "a JSON object is expected",
        ),
        (
            "PUT",
            LB,
            "{not json",
            StatusCode::BAD_REQUEST,
            "Invalid request body",
        ),
        (
            "POST",
            "/1.0/networks/ovn1/load-balancers",
            r#"{"listen_address": 7}"#,
            StatusCode::BAD_REQUEST,
            "Invalid request body",
        ),
        (
            "GET",
            "/1.0/networks?project=other",
            "",
            StatusCode::NOT_FOUND,
            "Project not found",
        ),
        (
            "DELETE",
            "/1.0/networks/ovn1/load-balancers/192.0.2.10?project=other",
            "",
            StatusCode::NOT_FOUND,
            "Project not found",
        ),
    ] {
        let (st, _, v) = call(&app, method, path, None, body).await;
        assert_eq!(st, status, "{method} {path} {body}: {v}");
        assert!(
            v["error"].as_str().unwrap().contains(text),
            "{method} {path}: {v}"
        );
    }
    let (st, etag, _) = call(&app, "GET", LB, None, "").await;
    assert_eq!(
        (st, etag.as_deref()),
        (StatusCode::OK, Some("\"1\"")),
        "nothing changed"
    );
}
