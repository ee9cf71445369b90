//! A supervised session on a real 3-member Raft NB cluster: it follows the leader,
//! resumes monitors, and loses or duplicates no transaction when the leader dies.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use ovnlb::ovsdb::{Datum, Error, Row, Session, SessionConfig, SessionState};
use uuid::Uuid;

fn session(cluster: &Cluster) -> Session {
    let mut cfg =
        SessionConfig::new(cluster.remotes(), nb_schema()).tables(&["Load_Balancer", "NB_Global"]);
    cfg.backoff_min = Duration::from_millis(100);
    cfg.backoff_max = Duration::from_millis(800);
    cfg.connect.request_timeout = Duration::from_secs(5);
    cfg.connect.probe_interval = Some(Duration::from_secs(1));
    Session::start(cfg).unwrap()
}

fn connected_to(s: &Session) -> Option<(String, bool)> {
    match &*s.state().borrow() {
        SessionState::Connected { remote, resumed } => Some((remote.clone(), *resumed)),
        _ => None,
    }
}

fn lb_names(dump: &BTreeMap<String, BTreeMap<Uuid, Row>>) -> Vec<String> {
    let mut v: Vec<String> = dump
        .get("Load_Balancer")
        .into_iter()
        .flat_map(|t| t.values())
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

/// Insert `name` with a client-chosen UUID until it is known to be committed exactly
/// once: a replay after an unknown outcome is refused as `duplicate uuid`.
async fn insert_exactly_once(s: &Session, uuid: Uuid, name: &str) -> usize {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let mut t = s.transaction();
        t.insert_with_uuid(
            "Load_Balancer",
            uuid,
            [("name".to_owned(), Datum::scalar(name))].into(),
        );
        match s.transact(&t).await {
            Ok(_) => return attempts,
            Err(Error::Transaction(te)) if te.error == "duplicate uuid" => return attempts,
            Err(e) => {
                assert!(
                    e.is_indeterminate()
                        || e.is_closed()
                        || matches!(e, Error::Unavailable(_) | Error::Timeout { .. }),
                    "unexpected error: {e}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        assert!(attempts < 200, "{name} never committed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_leadership_transfer_and_resumes() {
    init_tracing();
    let cluster = Cluster::start();
    let s = session(&cluster);
    let (first, _) = eventually(30, "connected", || connected_to(&s)).await;
    let leader = cluster.leader().unwrap();
    assert_eq!(
        first,
        cluster.members[leader].remote().to_string(),
        "leader-only"
    );
    for i in 0..20 {
        insert_exactly_once(&s, Uuid::new_v4(), &format!("before{i}")).await;
    }
    let before = s.connection_count();
    cluster.transfer_leadership(leader);
    // Any member may win the election, the old leader included.
    let (now, resumed, new_leader) = eventually(30, "reconnected to the current leader", || {
        let (remote, resumed) = connected_to(&s).filter(|_| s.connection_count() > before)?;
        let l = cluster.leader()?;
        (remote == cluster.members[l].remote().to_string()).then_some((remote, resumed, l))
    })
    .await;
    assert!(!now.is_empty());
    assert!(
        resumed,
        "the monitor resumes from the last transaction id on a cluster"
    );
    for i in 0..20 {
        insert_exactly_once(&s, Uuid::new_v4(), &format!("after{i}")).await;
    }
    let db = format!("tcp:127.0.0.1:{}", cluster.members[new_leader].port);
    let want = dump(&db, &["Load_Balancer"]);
    eventually(20, "cache equals the server", || {
        (s.cache().dump().get("Load_Balancer") == want.get("Load_Balancer")).then_some(())
    })
    .await;
    assert_eq!(lb_names(&want).len(), 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_during_a_stream_of_transactions() {
    init_tracing();
    let mut cluster = Cluster::start();
    let s = session(&cluster);
    eventually(30, "connected", || connected_to(&s)).await;
    let n = 150;
    let writer = {
        let s = s.clone();
        tokio::spawn(async move {
            let mut retried = 0;
            for i in 0..n {
                if insert_exactly_once(&s, Uuid::new_v4(), &format!("lb{i:03}")).await > 1 {
                    retried += 1;
                }
            }
            retried
        })
    };
    // Kill the leader while the stream runs.
    eventually(30, "stream under way", || {
        (s.cache().rows("Load_Balancer").len() >= 40).then_some(())
    })
    .await;
    let leader = cluster.leader().unwrap();
    cluster.kill(leader);
    let retried = tokio::time::timeout(Duration::from_secs(120), writer)
        .await
        .unwrap()
        .unwrap();
    let new_leader = eventually(30, "new leader", || cluster.leader()).await;
    assert_ne!(new_leader, leader);
    let (remote, _) = eventually(30, "on the new leader", || connected_to(&s)).await;
    assert_eq!(remote, cluster.members[new_leader].remote().to_string());

    let db = format!("tcp:127.0.0.1:{}", cluster.members[new_leader].port);
    let want = dump(&db, &["Load_Balancer"]);
    let names = lb_names(&want);
    let expected: Vec<String> = (0..n).map(|i| format!("lb{i:03}")).collect();
    assert_eq!(
        names, expected,
        "every transaction exactly once (retried {retried})"
    );
    eventually(20, "cache equals the server", || {
        (s.cache().dump().get("Load_Balancer") == want.get("Load_Balancer")).then_some(())
    })
    .await;
}
