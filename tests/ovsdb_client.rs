//! The client against a real ovsdb-server: every operation, error classes, probes, TLS,
//! locks.

mod common;

use std::time::Duration;

use common::*;
use ovnlb::ovsdb::{
    Atom, Condition, ConnectConfig, Datum, Error, Mutation, Mutator, Row, Transaction,
    TxnErrorKind, WaitUntil,
};
use serde_json::json;
use uuid::Uuid;

fn row(pairs: &[(&str, Datum)]) -> Row {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

#[tokio::test]
async fn list_dbs_schema_and_rpc_errors_on_unix_and_tcp() {
    init_tracing();
    let srv = OvsdbServer::start();
    for remote in [srv.unix(), srv.tcp()] {
        let c = connect(&remote, &ConnectConfig::default()).await;
        let dbs = c.list_dbs().await.unwrap();
        assert!(
            dbs.contains(&"_Server".to_owned()) && dbs.contains(&"OVN_Northbound".to_owned()),
            "{dbs:?}"
        );
        let s = c.get_schema("OVN_Northbound").await.unwrap();
        assert_eq!(s, *nb_schema());
        c.echo().await.unwrap();
        let e = c.call("no_such_method", json!([])).await.unwrap_err();
        assert_eq!(e.as_server_error().unwrap().error, "unknown method");
        let e = c.get_schema("Nope").await.unwrap_err();
        assert_eq!(e.as_server_error().unwrap().error, "unknown database");
        // Still usable after errors.
        c.echo().await.unwrap();
    }
}

#[tokio::test]
async fn every_operation_type() {
    init_tracing();
    let srv = OvsdbServer::start();
    let c = srv.client().await;
    let s = nb_schema();

    // insert with a named-uuid reference in the same transaction.
    let mut t = Transaction::with_schema(s.clone());
    t.comment("ovnlb test: insert");
    let lb = t.insert(
        "Load_Balancer",
        row(&[
            ("name", Datum::scalar("lb1")),
            ("protocol", Datum::scalar("tcp")),
            (
                "vips",
                Datum::string_map([("192.0.2.10:80", "10.0.0.11:8080")]),
            ),
        ]),
    );
    t.insert(
        "Logical_Switch",
        row(&[
            ("name", Datum::scalar("sw1")),
            ("load_balancer", Datum::from(lb)),
        ]),
    );
    let r = c.transact(&t).await.unwrap();
    let lb_uuid = r.uuid(1).unwrap();
    let sw_uuid = r.uuid(2).unwrap();
    assert!(srv.nbctl(&["ls-lb-list", "sw1"]).contains("lb1"));

    // select.
    let mut t = Transaction::with_schema(s.clone());
    t.select(
        "Logical_Switch",
        vec![Condition::eq("name", Datum::scalar("sw1"))],
        Some(&["_uuid", "load_balancer"]),
    );
    let r = c.transact(&t).await.unwrap();
    let rows = r.rows(0, s.table("Logical_Switch").unwrap()).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0]["load_balancer"].uuids().collect::<Vec<_>>(),
        vec![lb_uuid]
    );

    // update (and clearing a map with an explicit empty value).
    let mut t = Transaction::with_schema(s.clone());
    t.update(
        "Load_Balancer",
        vec![Condition::uuid(lb_uuid)],
        row(&[
            ("vips", Datum::empty_map()),
            ("protocol", Datum::scalar("udp")),
        ]),
    );
    let r = c.transact(&t).await.unwrap();
    assert_eq!(r.count(0), Some(1));
    assert_eq!(
        srv.nbctl(&["get", "Load_Balancer", "lb1", "vips"]).trim(),
        "{}"
    );

    // mutate: map insert and delete by key, set insert and delete.
    let mut t = Transaction::with_schema(s.clone());
    t.mutate(
        "Load_Balancer",
        vec![Condition::uuid(lb_uuid)],
        vec![
            Mutation::new(
                "external_ids",
                Mutator::Insert,
                Datum::string_map([("a", "1"), ("b", "2")]),
            ),
            Mutation::new(
                "selection_fields",
                Mutator::Insert,
                Datum::set(["ip_src", "ip_dst"]),
            ),
        ],
    );
    t.mutate(
        "Load_Balancer",
        vec![Condition::uuid(lb_uuid)],
        vec![
            Mutation::new("external_ids", Mutator::Delete, Datum::set(["a"])),
            Mutation::new("selection_fields", Mutator::Delete, Datum::scalar("ip_dst")),
        ],
    );
    t.mutate(
        "NB_Global",
        vec![],
        vec![Mutation::new("nb_cfg", Mutator::Add, Datum::scalar(1i64))],
    );
    c.transact(&t).await.unwrap();
    assert_eq!(
        srv.nbctl(&["get", "Load_Balancer", "lb1", "external_ids"])
            .trim(),
        "{b=\"2\"}"
    );
    assert_eq!(
        srv.nbctl(&["get", "Load_Balancer", "lb1", "selection_fields"])
            .trim(),
        "[ip_src]"
    );

    // wait that holds, then one that fails: a conflict.
    let mut t = Transaction::with_schema(s.clone());
    t.wait(
        "Load_Balancer",
        vec![Condition::uuid(lb_uuid)],
        &["protocol"],
        WaitUntil::Eq,
        vec![row(&[("protocol", Datum::scalar("udp"))])],
    );
    c.transact(&t).await.unwrap();
    let mut t = Transaction::with_schema(s.clone());
    t.wait(
        "Load_Balancer",
        vec![Condition::uuid(lb_uuid)],
        &["protocol"],
        WaitUntil::Eq,
        vec![row(&[("protocol", Datum::scalar("tcp"))])],
    );
    t.delete("Load_Balancer", vec![Condition::uuid(lb_uuid)]);
    let e = c.transact(&t).await.unwrap_err();
    assert!(e.is_conflict(), "{e}");
    assert_eq!(e.txn_error().unwrap().op_index, Some(0));

    // assert on a lock we hold (refusals are in locks_and_steal).
    assert!(c.lock("ovnlb_test").await.unwrap());
    let mut t = Transaction::with_schema(s.clone());
    t.assert_lock("ovnlb_test");
    c.transact(&t).await.unwrap();

    // delete: the weak reference from the switch disappears.
    let mut t = Transaction::with_schema(s.clone());
    t.delete("Load_Balancer", vec![Condition::uuid(lb_uuid)]);
    assert_eq!(c.transact(&t).await.unwrap().count(0), Some(1));
    let mut t = Transaction::with_schema(s.clone());
    t.select(
        "Logical_Switch",
        vec![Condition::uuid(sw_uuid)],
        Some(&["load_balancer"]),
    );
    let rows = c
        .transact(&t)
        .await
        .unwrap()
        .rows(0, s.table("Logical_Switch").unwrap())
        .unwrap();
    assert!(rows[0]["load_balancer"].is_empty());
}

#[tokio::test]
async fn client_uuids_and_error_classes() {
    init_tracing();
    let srv = OvsdbServer::start();
    let c = srv.client().await;
    let s = nb_schema();
    let u = Uuid::new_v4();
    let mut t = Transaction::with_schema(s.clone());
    t.insert_with_uuid("Load_Balancer", u, row(&[("name", Datum::scalar("mine"))]));
    let r = c.transact(&t).await.unwrap();
    assert_eq!(r.uuid(0), Some(u));
    // A replay is refused, not duplicated.
    let e = c.transact(&t).await.unwrap_err();
    let te = e.txn_error().unwrap();
    assert_eq!(
        (te.kind, te.error.as_str()),
        (TxnErrorKind::Permanent, "duplicate uuid")
    );
    assert_eq!(srv.dump(&["Load_Balancer"])["Load_Balancer"].len(), 1);

    // Deleting and re-inserting one client UUID in one transaction fails too.
    let mut t = Transaction::with_schema(s.clone());
    t.delete("Load_Balancer", vec![Condition::uuid(u)]);
    t.insert_with_uuid("Load_Balancer", u, row(&[("name", Datum::scalar("again"))]));
    assert_eq!(
        c.transact(&t).await.unwrap_err().txn_error().unwrap().error,
        "duplicate uuid"
    );

    // Commit-time error: a strong reference to a row that does not exist.
    let mut t = Transaction::new("OVN_Northbound");
    t.insert(
        "Logical_Switch",
        row(&[
            ("name", Datum::scalar("x")),
            ("ports", Datum::scalar(Atom::Uuid(Uuid::new_v4()))),
        ]),
    );
    let e = c.transact(&t).await.unwrap_err();
    let te = e.txn_error().unwrap();
    assert_eq!(
        (te.op_index, te.error.as_str(), te.kind),
        (
            None,
            "referential integrity violation",
            TxnErrorKind::Permanent
        )
    );

    // A per-operation constraint violation the server finds (unchecked builder).
    let mut t = Transaction::new("OVN_Northbound");
    t.insert(
        "Logical_Router_Port",
        row(&[("name", Datum::scalar("p")), ("networks", Datum::empty())]),
    );
    let e = c.transact(&t).await.unwrap_err();
    assert_eq!(e.txn_error().unwrap().op_index, Some(0), "{e}");

    // The checked builder refuses the same before sending.
    let mut t = Transaction::with_schema(s.clone());
    t.insert(
        "Logical_Router_Port",
        row(&[("name", Datum::scalar("p")), ("networks", Datum::empty())]),
    );
    let e = c.transact(&t).await.unwrap_err();
    assert!(matches!(e, Error::Schema(_)), "{e}");
    assert!(
        e.to_string().contains("Logical_Router_Port.networks"),
        "{e}"
    );
}

#[tokio::test]
async fn idle_tcp_session_survives_server_probes() {
    init_tracing();
    let srv = OvsdbServer::start();
    // Our own probe off: only answering the server's echo keeps the session alive.
    let cfg = ConnectConfig {
        probe_interval: None,
        ..Default::default()
    };
    let c = connect(&srv.tcp(), &cfg).await;
    c.echo().await.unwrap();
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert!(!c.is_closed());
    c.echo().await.unwrap();
    // And with our probe on, an idle session stays up too.
    let cfg = ConnectConfig {
        probe_interval: Some(Duration::from_millis(300)),
        ..Default::default()
    };
    let c2 = connect(&srv.tcp(), &cfg).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    c2.echo().await.unwrap();
}

#[tokio::test]
async fn pipelined_requests_match_by_id() {
    init_tracing();
    let srv = OvsdbServer::start();
    let c = srv.client().await;
    let s = nb_schema();
    let mut handles = Vec::new();
    for i in 0..200 {
        let c = c.clone();
        let s = s.clone();
        handles.push(tokio::spawn(async move {
            let mut t = Transaction::with_schema(s);
            t.insert(
                "Load_Balancer",
                row(&[("name", Datum::scalar(format!("lb{i}")))]),
            );
            let r = c.transact(&t).await.unwrap();
            (i, r.uuid(0).unwrap())
        }));
    }
    let mut got = Vec::new();
    for h in handles {
        got.push(h.await.unwrap());
    }
    let dump = srv.dump(&["Load_Balancer"]);
    for (i, u) in got {
        assert_eq!(
            dump["Load_Balancer"][&u]["name"],
            Datum::scalar(format!("lb{i}"))
        );
    }
}

/// The next notification named `method`, skipping others.
async fn next_event(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<ovnlb::ovsdb::Notification>,
    method: &str,
) -> serde_json::Value {
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("notification in time")
            .expect("open");
        if n.method == method {
            return n.params;
        }
    }
}

#[tokio::test]
async fn locks_and_steal() {
    init_tracing();
    let srv = OvsdbServer::start();
    let a = srv.client().await;
    let b = srv.client().await;
    let mut a_events = a.notifications();
    let mut b_events = b.notifications();
    assert!(a.lock("ovnlb").await.unwrap());
    assert!(!b.lock("ovnlb").await.unwrap());
    let mut t = Transaction::new("OVN_Northbound");
    t.assert_lock("ovnlb");
    a.transact(&t).await.unwrap();
    // b is queued for the lock, not holding it: its assert is refused.
    let e = b.transact(&t).await.unwrap_err();
    assert_eq!(e.txn_error().unwrap().error, "not owner");
    // The server wants a queued request withdrawn before a steal.
    b.unlock("ovnlb").await.unwrap();
    assert!(b.steal("ovnlb").await.unwrap());
    assert_eq!(next_event(&mut a_events, "stolen").await, json!(["ovnlb"]));
    assert!(a.transact(&t).await.is_err());
    // b holds it; a queues behind it and is told `locked` when b lets go.
    a.unlock("ovnlb").await.unwrap();
    assert!(!a.lock("ovnlb").await.unwrap());
    b.unlock("ovnlb").await.unwrap();
    assert_eq!(next_event(&mut a_events, "locked").await, json!(["ovnlb"]));
    a.transact(&t).await.unwrap();
    while let Ok(n) = b_events.try_recv() {
        assert_ne!(n.method, "stolen");
    }
}

#[tokio::test]
async fn mutual_tls() {
    init_tracing();
    let srv = OvsdbServer::start_tls();
    let ok = ConnectConfig {
        tls: Some(srv.tls_files()),
        ..Default::default()
    };
    let c = connect(&srv.ssl(), &ok).await;
    assert!(c
        .list_dbs()
        .await
        .unwrap()
        .contains(&"OVN_Northbound".to_owned()));
    // Past the server's 5 s probe, still up (TLS path answers echo too).
    tokio::time::sleep(Duration::from_secs(7)).await;
    c.echo().await.unwrap();

    // A wrong CA: the server is not trusted.
    let certs = srv.certs.as_ref().unwrap();
    let mut files = srv.tls_files();
    files.ca = certs.other_ca.clone();
    let e = ovnlb::ovsdb::connect(
        &srv.ssl(),
        &ConnectConfig {
            tls: Some(files),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(e, Error::Tls(_)), "{e}");
    assert!(e.to_string().contains("certificate"), "{e}");

    // No client certificate: the server hangs up; the first request fails clearly.
    let mut files = srv.tls_files();
    files.cert = None;
    files.key = None;
    let r = ovnlb::ovsdb::connect(
        &srv.ssl(),
        &ConnectConfig {
            tls: Some(files),
            ..Default::default()
        },
    )
    .await;
    match r {
        Err(e) => assert!(matches!(e, Error::Tls(_) | Error::Io { .. }), "{e}"),
        Ok((c, conn)) => {
            let h = tokio::spawn(conn.run());
            let e = c.list_dbs().await.unwrap_err();
            assert!(e.is_closed(), "{e}");
            let end = h.await.unwrap().unwrap_err();
            assert!(
                end.to_string().contains("certificate") || end.is_closed(),
                "{end}"
            );
        }
    }

    // An ssl: remote without TLS files is a configuration error.
    let e = ovnlb::ovsdb::connect(&srv.ssl(), &ConnectConfig::default())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e}");
}
