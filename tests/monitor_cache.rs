//! The monitor-fed cache against a real ovsdb-server edited by ovn-nbctl.

mod common;

use std::collections::BTreeMap;

use common::*;
use ovnlb::ovsdb::{
    Condition, Datum, IndexSpec, Mutation, Mutator, Row, Session, SessionConfig, SessionState,
};
use serde_json::json;
use uuid::Uuid;

type Dump = BTreeMap<String, BTreeMap<Uuid, Row>>;

fn non_empty(d: Dump) -> Dump {
    d.into_iter().filter(|(_, rows)| !rows.is_empty()).collect()
}

#[tokio::test]
async fn cache_equals_dump_after_a_burst_of_nbctl_edits() {
    init_tracing();
    let srv = OvsdbServer::start();
    let session = srv.session();
    let cache = session.cache().clone();
    tokio::time::timeout(std::time::Duration::from_secs(20), cache.wait_ready())
        .await
        .unwrap();

    // Every kind of change: inserts, deletes, scalar updates, set add/remove/replace,
    // map add/change/remove/clear, optional values set and cleared, references.
    let script: &[&[&str]] = &[
        &["ls-add", "sw1"],
        &["ls-add", "sw2"],
        &["lsp-add", "sw1", "p1"],
        &[
            "lsp-set-addresses",
            "p1",
            "00:00:00:00:00:11 10.0.0.11",
            "00:00:00:00:00:12 10.0.0.12",
        ],
        &[
            "lsp-set-addresses",
            "p1",
            "00:00:00:00:00:12 10.0.0.12",
            "00:00:00:00:00:13 10.0.0.13",
        ],
        &["lsp-set-addresses", "p1", "router"],
        &["set", "Logical_Switch_Port", "p1", "tag_request=7"],
        &["clear", "Logical_Switch_Port", "p1", "tag_request"],
        &[
            "set",
            "Logical_Switch",
            "sw1",
            "external_ids:a=1",
            "external_ids:b=2",
        ],
        &["set", "Logical_Switch", "sw1", "external_ids:a=changed"],
        &["remove", "Logical_Switch", "sw1", "external_ids", "b"],
        &[
            "set",
            "Logical_Switch",
            "sw1",
            "other_config:subnet=10.0.0.0/24",
        ],
        &["clear", "Logical_Switch", "sw1", "other_config"],
        &["lr-add", "r1"],
        &[
            "lrp-add",
            "r1",
            "rp1",
            "00:00:00:00:ff:01",
            "10.0.0.1/24",
            "fd00::1/64",
        ],
        &[
            "lb-add",
            "lb1",
            "192.0.2.10:80",
            "10.0.0.11:8080,10.0.0.12:8080",
            "tcp",
        ],
        &["lb-add", "lb1", "192.0.2.10:443", "10.0.0.11:8443", "tcp"],
        &["lb-add", "lb2", "192.0.2.11", "10.0.0.11"],
        &["lr-lb-add", "r1", "lb1"],
        &["ls-lb-add", "sw1", "lb1"],
        &["ls-lb-add", "sw1", "lb2"],
        &["lb-del", "lb1", "192.0.2.10:443"],
        &[
            "set",
            "Load_Balancer",
            "lb2",
            "selection_fields=ip_src,ip_dst",
        ],
        &[
            "set",
            "Load_Balancer",
            "lb2",
            "selection_fields=ip_dst,tp_src",
        ],
        &["ls-lb-del", "sw1", "lb2"],
        &["lb-del", "lb2"],
        &["ls-del", "sw2"],
        &["set", "NB_Global", ".", "options:foo=bar"],
    ];
    srv.nbctl(&["init"]);
    for step in script {
        srv.nbctl(step);
    }
    let want = non_empty(srv.dump(&[]));
    let got = eventually(20, "cache equals dump", || {
        let got = non_empty(cache.dump());
        (got == want).then_some(got)
    })
    .await;
    assert!(got.contains_key("Load_Balancer") && got.contains_key("Logical_Router_Port"));
}

#[tokio::test]
async fn read_your_writes_indexes_and_coalesced_changes() {
    init_tracing();
    let srv = OvsdbServer::start();
    let mut cfg = SessionConfig::new(vec![srv.unix()], nb_schema());
    cfg.indexes = vec![
        IndexSpec::Column {
            table: "Load_Balancer".into(),
            column: "name".into(),
        },
        IndexSpec::MapKey {
            table: "Load_Balancer".into(),
            column: "external_ids".into(),
            key: "ovnlb:owner".into(),
        },
    ];
    let session = Session::start(cfg).unwrap();
    let cache = session.cache().clone();
    cache.wait_ready().await;
    let mut sub = cache.subscribe();

    for i in 0..50 {
        let mut t = session.transaction();
        let u = Uuid::new_v4();
        let row: Row = [
            ("name".to_owned(), Datum::scalar(format!("lb{i}"))),
            (
                "external_ids".to_owned(),
                Datum::string_map([("ovnlb:owner", if i % 2 == 0 { "a" } else { "b" })]),
            ),
        ]
        .into();
        t.insert_with_uuid("Load_Balancer", u, row);
        session.transact(&t).await.unwrap();
        // The update precedes the reply on the wire: the row is already cached.
        let r = cache.get("Load_Balancer", &u).expect("read-your-writes");
        assert_eq!(r.get_str("name"), Some(format!("lb{i}").as_str()));
    }
    let by_name = cache.read(|v| v.find_by("Load_Balancer", "name", "lb7"));
    assert_eq!(by_name.len(), 1);
    let owner_a = IndexSpec::MapKey {
        table: "Load_Balancer".into(),
        column: "external_ids".into(),
        key: "ovnlb:owner".into(),
    };
    assert_eq!(cache.lookup(&owner_a, &Datum::scalar("a")).len(), 25);

    // Index follows a change of the key.
    let u7 = by_name[0].uuid;
    let mut t = session.transaction();
    t.mutate(
        "Load_Balancer",
        vec![Condition::uuid(u7)],
        vec![Mutation::new(
            "external_ids",
            Mutator::Insert,
            Datum::string_map([("x", "y")]),
        )],
    );
    t.update(
        "Load_Balancer",
        vec![Condition::uuid(u7)],
        [("name".to_owned(), Datum::scalar("renamed"))].into(),
    );
    session.transact(&t).await.unwrap();
    assert!(cache
        .read(|v| v.find_by("Load_Balancer", "name", "lb7"))
        .is_empty());
    assert_eq!(
        cache
            .read(|v| v.find_by("Load_Balancer", "name", "renamed"))
            .len(),
        1
    );
    assert_eq!(
        cache
            .get("Load_Balancer", &u7)
            .unwrap()
            .get("external_ids")
            .map_get("x"),
        Some("y")
    );

    // Nobody read the feed during 51 transactions: nothing was dropped, all coalesced.
    let ch = sub.try_changed();
    assert_eq!(ch.rows.len(), 50);
    assert!(sub.try_changed().is_empty());
    srv.nbctl(&["lb-del", "renamed"]);
    let ch = tokio::time::timeout(std::time::Duration::from_secs(10), sub.changed())
        .await
        .unwrap();
    assert!(ch.rows.contains(&("Load_Balancer".to_owned(), u7)));
    assert!(cache.get("Load_Balancer", &u7).is_none());
}

#[tokio::test]
async fn standalone_reconnect_rebuilds_the_cache() {
    init_tracing();
    let mut srv = OvsdbServer::start();
    srv.nbctl(&["lb-add", "keep", "192.0.2.1:80", "10.0.0.1:80"]);
    srv.nbctl(&["lb-add", "gone", "192.0.2.2:80", "10.0.0.2:80"]);
    let session = srv.session();
    let cache = session.cache().clone();
    cache.wait_ready().await;
    assert_eq!(cache.rows("Load_Balancer").len(), 2);
    let mut state = session.state();

    // While we are away, a row is deleted and another added.
    srv.stop();
    eventually(20, "session notices", || {
        (!session.is_connected()).then_some(())
    })
    .await;
    srv.offline_transact(&json!(["OVN_Northbound",
        {"op": "delete", "table": "Load_Balancer", "where": [["name", "==", "gone"]]},
        {"op": "insert", "table": "Load_Balancer", "row": {"name": "new"}}]));
    srv.restart();
    state
        .wait_for(|s| matches!(s, SessionState::Connected { .. }))
        .await
        .unwrap();
    let names = eventually(20, "cache rebuilt", || {
        let mut n: Vec<String> = cache
            .rows("Load_Balancer")
            .iter()
            .map(|r| r.get_str("name").unwrap().to_owned())
            .collect();
        n.sort();
        (n == ["keep", "new"]).then_some(n)
    })
    .await;
    assert_eq!(names.len(), 2);
    // Standalone servers never resume.
    assert_eq!(
        *state.borrow(),
        SessionState::Connected {
            remote: srv.unix().to_string(),
            resumed: false
        }
    );
    assert_eq!(non_empty(cache.dump()), non_empty(srv.dump(&[])));
}

#[tokio::test]
async fn monitor_cancel_stops_updates() {
    init_tracing();
    let srv = OvsdbServer::start();
    let c = srv.client().await;
    let req: ovnlb::ovsdb::MonitorRequests = [(
        "Load_Balancer".to_owned(),
        ovnlb::ovsdb::MonitorSelect::default(),
    )]
    .into();
    let cache = ovnlb::ovsdb::Cache::new(nb_schema(), req.clone(), vec![]);
    c.monitor("OVN_Northbound", &json!("m1"), &req, None, cache.clone())
        .await
        .unwrap();
    srv.nbctl(&["lb-add", "a", "192.0.2.1:80", "10.0.0.1:80"]);
    eventually(10, "first lb cached", || {
        (cache.rows("Load_Balancer").len() == 1).then_some(())
    })
    .await;
    c.monitor_cancel(&json!("m1")).await.unwrap();
    srv.nbctl(&["lb-add", "b", "192.0.2.2:80", "10.0.0.2:80"]);
    c.echo().await.unwrap();
    assert_eq!(
        cache.rows("Load_Balancer").len(),
        1,
        "no update after monitor_cancel"
    );
    // Cancelling an unknown monitor is a server error, not a crash.
    assert!(c
        .monitor_cancel(&json!("nope"))
        .await
        .unwrap_err()
        .as_server_error()
        .is_some());
}

#[tokio::test]
async fn database_removed_and_restored_the_session_recovers() {
    init_tracing();
    let srv = OvsdbServer::start();
    srv.nbctl(&["lb-add", "before", "192.0.2.1:80", "10.0.0.1:80"]);
    let session = srv.session();
    let cache = session.cache().clone();
    cache.wait_ready().await;
    let ctl = srv.dir.path().join("nb.ctl");
    let appctl = |args: &[&str]| {
        let out = std::process::Command::new("ovs-appctl")
            .arg("-t")
            .arg(&ctl)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // db-change-aware: the server cancels our monitor; the session notices and retries.
    appctl(&["ovsdb-server/remove-db", "OVN_Northbound"]);
    eventually(20, "session sees the database gone", || {
        (!session.is_connected()).then_some(())
    })
    .await;
    appctl(&[
        "ovsdb-server/add-db",
        srv.dir.path().join("nb.db").to_str().unwrap(),
    ]);
    srv.nbctl(&["lb-add", "after", "192.0.2.2:80", "10.0.0.2:80"]);
    eventually(30, "cache has both", || {
        (cache.rows("Load_Balancer").len() == 2).then_some(())
    })
    .await;
    assert!(session.is_connected());
}

/// A `MapKeys` index finds a row under each key of its map, and follows the map's
/// changes (a key added, a key removed, the row deleted); the same lookup without the
/// index (a scan) agrees.
#[tokio::test]
async fn a_map_keys_index_finds_rows_by_each_key() {
    init_tracing();
    let srv = OvsdbServer::start();
    let vips = IndexSpec::MapKeys {
        table: "Load_Balancer".into(),
        column: "vips".into(),
    };
    let mut cfg = SessionConfig::new(vec![srv.unix()], nb_schema());
    cfg.indexes = vec![vips.clone()];
    let session = Session::start(cfg).unwrap();
    let cache = session.cache().clone();
    cache.wait_ready().await;
    let plain = srv.session();
    plain.cache().wait_ready().await;
    srv.nbctl(&["lb-add", "a", "192.0.2.1:80", "10.0.0.1:80"]);
    srv.nbctl(&["lb-add", "a", "192.0.2.2:80", "10.0.0.2:80"]);
    srv.nbctl(&["lb-add", "b", "192.0.2.2:80", "10.0.0.3:80"]);
    let names = |c: &ovnlb::ovsdb::Cache, vip: &str| {
        let mut n: Vec<String> = c
            .lookup(&vips, &Datum::scalar(vip))
            .iter()
            .map(|r| r.get_str("name").unwrap().to_owned())
            .collect();
        n.sort();
        n
    };
    for c in [&cache, plain.cache()] {
        eventually(20, "both rows", || {
            (c.rows("Load_Balancer").len() == 2).then_some(())
        })
        .await;
        eventually(20, "indexed", || {
            (names(c, "192.0.2.1:80") == ["a"]).then_some(())
        })
        .await;
        assert_eq!(names(c, "192.0.2.2:80"), ["a", "b"]);
    }
    srv.nbctl(&["lb-del", "a", "192.0.2.2:80"]);
    eventually(20, "a key removed", || {
        (names(&cache, "192.0.2.2:80") == ["b"]).then_some(())
    })
    .await;
    assert_eq!(names(&cache, "192.0.2.1:80"), ["a"]);
    srv.nbctl(&["lb-del", "b"]);
    eventually(20, "the row deleted", || {
        names(&cache, "192.0.2.2:80").is_empty().then_some(())
    })
    .await;
    eventually(20, "the scan agrees", || {
        (names(plain.cache(), "192.0.2.2:80").is_empty()
            && names(plain.cache(), "192.0.2.1:80") == ["a"])
        .then_some(())
    })
    .await;
}
