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

/// Log lines, gathered for one test.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_store_failure_is_a_500_envelope_logged_once_in_its_request_span() {
    let logs = Logs::default();
    let w = logs.clone();
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(move || w.clone())
            .with_ansi(false)
            .finish(),
    );
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
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
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
    let logs = Logs::default();
    let w = logs.clone();
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(move || w.clone())
            .with_ansi(false)
            .finish(),
    );
    let app = router(AppState::new(Arc::new(Gated::new())));
    let r = app
        .oneshot(request("GET", "/1.0/networks/nope", ""))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(!text.contains("request failed"), "{text}");
}
