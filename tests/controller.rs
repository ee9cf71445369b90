//! The controller against real NB + northd: store changes reach NB, drift is repaired,
//! deletes clean up, unusable networks are left alone.

mod common;

use std::sync::Arc;

use common::*;
use ovnlb::lb::model::LoadBalancersPost;
use ovnlb::reconcile::controller::{Controller, ControllerOptions};
use ovnlb::reconcile::plan::listen_index;
use ovnlb::store::{Objects, SqliteStore, Store};
use tokio_util::sync::CancellationToken;

fn lb(listen: &str, backends: &[&str]) -> LoadBalancersPost {
    let b: Vec<_> = backends.iter().enumerate().map(|(i, a)| serde_json::json!({"name": format!("b{i}"), "target_address": a, "target_port": "8080"})).collect();
    let names: Vec<String> = (0..backends.len()).map(|i| format!("b{i}")).collect();
    serde_json::from_value(serde_json::json!({
        "listen_address": listen, "backends": b,
        "ports": [{"protocol": "tcp", "listen_port": "80", "target_backend": names}]
    }))
    .unwrap()
}

fn attached(ovn: &Ovn, table: &str, name: &str) -> usize {
    ovn.nb.dump(&[table])[table]
        .values()
        .find(|r| r["name"].as_str() == Some(name))
        .map(|r| r["load_balancer"].len())
        .unwrap_or(0)
}

/// An in-memory store with the uplink and `ovn1` on the sandbox topology.
fn store_with_networks() -> Arc<SqliteStore> {
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
                ("ovn.router", "lxd-net1-lr"),
                ("ovn.switch", "lxd-net1-ls-int"),
            ],
        ))
        .unwrap();
    store
}

/// A controller running on a store with the uplink and `ovn1`, against real NB + northd.
struct Running {
    ovn: Ovn,
    store: Arc<SqliteStore>,
    status: ovnlb::progress::Status,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn start() -> Running {
        init_tracing();
        let ovn = Ovn::start();
        let store = store_with_networks();
        let s = nb_session(ovn.nb.unix(), vec![listen_index()]);
        let ctl = Controller::new(
            s,
            store.clone(),
            ControllerOptions {
                resync_every: std::time::Duration::from_secs(3600),
                ..Default::default()
            },
        );
        let status = ctl.status();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(ctl.run(cancel.clone()));
        Running {
            ovn,
            store,
            status,
            cancel,
            task,
        }
    }

    /// Cancelled, the controller stops (within 10 s).
    async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(std::time::Duration::from_secs(10), self.task)
            .await
            .expect("the controller stopped when cancelled")
            .unwrap();
    }

    /// 192.0.2.10 over `backends`, created in the store; returns once NB holds it.
    async fn with_lb(&self, backends: &[&str]) -> uuid::Uuid {
        self.store
            .create("ovn1", &lb("192.0.2.10", backends))
            .unwrap();
        let want = backends
            .iter()
            .map(|b| format!("{b}:8080"))
            .collect::<Vec<_>>()
            .join(",");
        eventually(20, "row created", || {
            (vip(&self.ovn, NAME, "192.0.2.10:80") == Some(want.clone())).then_some(())
        })
        .await;
        our_rows(&self.ovn)[0].0
    }
}

const NAME: &str = "ovnlb-ovn1-lb-192.0.2.10-tcp";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_load_balancer_reaches_nb_attached_and_recorded() {
    let r = Running::start().await;
    let uuid = r.with_lb(&["10.0.0.11", "10.0.0.12"]).await;
    eventually(20, "attached", || {
        (attached(&r.ovn, "Logical_Router", "lxd-net1-lr") == 1
            && attached(&r.ovn, "Logical_Switch", "lxd-net1-ls-int") == 1)
            .then_some(())
    })
    .await;
    let st = eventually(20, "status", || {
        r.status
            .key("ovn1", "192.0.2.10")
            .filter(|s| s.applied_revision == Some(1))
    })
    .await;
    assert_eq!(st.rows, [(NAME.to_owned(), uuid, "tcp".to_owned())]);
    r.ovn.sync();
    assert_eq!(r.ovn.trace("tcp", "192.0.2.10", 80).len(), 2);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_changes_the_row_in_place() {
    let r = Running::start().await;
    let uuid = r.with_lb(&["10.0.0.11", "10.0.0.12"]).await;
    r.store
        .update::<LoadBalancersPost>(
            "ovn1",
            "192.0.2.10",
            &lb("192.0.2.10", &["10.0.0.13"]).put,
            Some(1),
        )
        .unwrap();
    eventually(20, "row updated", || {
        (vip(&r.ovn, NAME, "192.0.2.10:80").as_deref() == Some("10.0.0.13:8080")).then_some(())
    })
    .await;
    assert_eq!(our_rows(&r.ovn)[0].0, uuid, "same row");
    eventually(20, "revision 2 applied", || {
        r.status
            .key("ovn1", "192.0.2.10")
            .filter(|s| s.applied_revision == Some(2))
    })
    .await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_vips_are_repaired_without_a_store_change() {
    let r = Running::start().await;
    let uuid = r.with_lb(&["10.0.0.13"]).await;
    r.ovn.nb.nbctl(&[
        "set",
        "Load_Balancer",
        &uuid.to_string(),
        "vips:\"192.0.2.10:80\"=\"10.0.0.99:80\"",
    ]);
    eventually(20, "vips repaired", || {
        (vip(&r.ovn, NAME, "192.0.2.10:80").as_deref() == Some("10.0.0.13:8080")).then_some(())
    })
    .await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_detached_from_the_router_is_attached_again() {
    let r = Running::start().await;
    let uuid = r.with_lb(&["10.0.0.13"]).await;
    eventually(20, "attached", || {
        (attached(&r.ovn, "Logical_Router", "lxd-net1-lr") == 1).then_some(())
    })
    .await;
    r.ovn
        .nb
        .nbctl(&["lr-lb-del", "lxd-net1-lr", &uuid.to_string()]);
    eventually(20, "re-attached", || {
        (attached(&r.ovn, "Logical_Router", "lxd-net1-lr") == 1).then_some(())
    })
    .await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_row_is_recreated() {
    let r = Running::start().await;
    let uuid = r.with_lb(&["10.0.0.13"]).await;
    r.ovn.nb.nbctl(&["lb-del", &uuid.to_string()]);
    eventually(20, "recreated", || {
        (vip(&r.ovn, NAME, "192.0.2.10:80").as_deref() == Some("10.0.0.13:8080")
            && attached(&r.ovn, "Logical_Switch", "lxd-net1-ls-int") == 1)
            .then_some(())
    })
    .await;
    r.stop().await;
}

/// A network whose router does not exist: reported, nothing touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_whose_router_is_missing_is_reported_and_left_alone() {
    let r = Running::start().await;
    r.with_lb(&["10.0.0.13"]).await;
    r.store
        .create_network(&net(
            "ovn2",
            "ovn",
            &[
                ("network", "uplink"),
                ("ovn.router", "missing-lr"),
                ("ovn.switch", "lxd-net1-ls-int"),
                ("ipv4.address", "10.0.0.1/24"),
            ],
        ))
        .unwrap();
    r.store
        .create("ovn2", &lb("192.0.2.20", &["10.0.0.11"]))
        .unwrap();
    let e = eventually(20, "network error", || r.status.network_error("ovn2")).await;
    assert!(e.contains("Logical_Router \"missing-lr\" not found"), "{e}");
    assert_eq!(our_rows(&r.ovn).len(), 1);
    r.stop().await;
}

/// Delete a load balancer, then its network: nothing of ours stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_leave_nothing_of_ours_in_nb() {
    let r = Running::start().await;
    r.with_lb(&["10.0.0.13"]).await;
    r.store
        .create("ovn1", &lb("192.0.2.11", &["10.0.0.11"]))
        .unwrap();
    eventually(20, "second row", || {
        (our_rows(&r.ovn).len() == 2).then_some(())
    })
    .await;
    r.store
        .delete::<LoadBalancersPost>("ovn1", "192.0.2.10", None)
        .unwrap();
    eventually(20, "row deleted", || {
        (our_rows(&r.ovn).len() == 1).then_some(())
    })
    .await;
    r.store.delete_network("ovn1", None).unwrap();
    eventually(20, "network's rows deleted", || {
        our_rows(&r.ovn).is_empty().then_some(())
    })
    .await;
    assert_eq!(attached(&r.ovn, "Logical_Router", "lxd-net1-lr"), 0);
    r.stop().await;
}

/// The periodic resync, with no event to go by (the controller is not running): drift of
/// rows it has already found clean is still seen and repaired, and a clean NB is left
/// untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resync_repairs_drift_after_a_clean_pass() {
    init_tracing();
    let ovn = Ovn::start();
    let store = store_with_networks();
    for (l, b) in [("192.0.2.10", "10.0.0.11"), ("192.0.2.11", "10.0.0.12")] {
        store.create("ovn1", &lb(l, &[b])).unwrap();
    }
    let s = nb_session(ovn.nb.unix(), vec![listen_index()]);
    s.cache().wait_ready().await;
    let mut ctl = Controller::new(s.clone(), store.clone(), ControllerOptions::default());
    ctl.load().await;
    ctl.resync().await; // creates
    ctl.resync().await; // clean: remembered
    let clean = ovn
        .nb
        .dump(&["Load_Balancer", "Logical_Router", "Logical_Switch"]);
    ctl.resync().await;
    assert_eq!(
        ovn.nb
            .dump(&["Load_Balancer", "Logical_Router", "Logical_Switch"]),
        clean,
        "a resync over a clean NB changes nothing"
    );
    let row = |name: &str| {
        our_rows(&ovn)
            .into_iter()
            .find(|(_, r)| r["name"].as_str() == Some(name))
            .unwrap()
            .0
    };
    let a = row("ovnlb-ovn1-lb-192.0.2.10-tcp");
    let b = row("ovnlb-ovn1-lb-192.0.2.11-tcp");
    // Wait until our cache holds a foreign write.
    let seen = |f: &dyn Fn(&ovnlb::ovsdb::CacheView) -> bool| {
        let s = s.clone();
        let f = |v: &ovnlb::ovsdb::CacheView| f(v);
        s.cache().read(f)
    };

    // A foreign writer changes vips of one row.
    ovn.nb.nbctl(&[
        "set",
        "Load_Balancer",
        &a.to_string(),
        "vips:\"192.0.2.10:80\"=\"10.0.0.99:80\"",
    ]);
    eventually(10, "the cache sees the foreign vips", || {
        seen(&|v| {
            v.get("Load_Balancer", &a)
                .is_some_and(|r| r.get("vips").map_get("192.0.2.10:80") == Some("10.0.0.99:80"))
        })
        .then_some(())
    })
    .await;
    ctl.resync().await;
    assert_eq!(
        vip(&ovn, "ovnlb-ovn1-lb-192.0.2.10-tcp", "192.0.2.10:80").as_deref(),
        Some("10.0.0.11:8080")
    );

    // ... and attaches the other row to a switch of no network of ours.
    ovn.nb
        .nbctl(&["ls-lb-add", "lxd-net1-ls-ext", &b.to_string()]);
    eventually(10, "the cache sees the foreign attachment", || {
        seen(&|v| {
            v.rows("Logical_Switch").any(|r| {
                r.get_str("name") == Some("lxd-net1-ls-ext")
                    && r.get("load_balancer")
                        .contains(&ovnlb::ovsdb::Atom::Uuid(b))
            })
        })
        .then_some(())
    })
    .await;
    ctl.resync().await;
    assert_eq!(attached(&ovn, "Logical_Switch", "lxd-net1-ls-ext"), 0);
    assert_eq!(attached(&ovn, "Logical_Switch", "lxd-net1-ls-int"), 2);
    assert_eq!(attached(&ovn, "Logical_Router", "lxd-net1-lr"), 2);
    assert_eq!(our_rows(&ovn).len(), 2);
}

/// One thread, so that the test's log subscriber sees every line of the controller.
#[tokio::test(flavor = "current_thread")]
async fn a_failing_key_is_logged_in_a_span_naming_the_key_and_why_it_ran() {
    let (logs, _guard) = capture_logs();
    let ovn = Ovn::start();
    // A row we do not own holds the VIP on the network's router: the key is blocked.
    ovn.nb
        .nbctl(&["lb-add", "foreign", "192.0.2.20:80", "10.0.0.5:80", "tcp"]);
    ovn.nb.nbctl(&["lr-lb-add", "lxd-net1-lr", "foreign"]);
    let store = store_with_networks();
    store
        .create("ovn1", &lb("192.0.2.20", &["10.0.0.11"]))
        .unwrap();
    let s = nb_session(ovn.nb.unix(), vec![listen_index()]);
    s.cache().wait_ready().await;
    let mut ctl = Controller::new(s.clone(), store.clone(), ControllerOptions::default());
    ctl.load().await;
    ctl.resync().await;
    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains("reconcile failed"))
        .unwrap_or_else(|| panic!("no failure logged: {text}"));
    assert!(
        line.contains("reconcile{network=ovn1 keys=1}:key{listen=192.0.2.20 reason=load}"),
        "{line}"
    );
    assert!(line.contains("VIP 192.0.2.20:80 is already held"), "{line}");
}
