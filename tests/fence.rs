//! The NB fence against real NB + northd: two ovnlbd on one NB for one owner never both
//! write. The later one claims the fence; the earlier one's writes are refused by the
//! guard and it steps down, for good. Racing claims never share an epoch. On a Raft
//! cluster the guard holds through a follower, where a lock is granted twice.

mod common;

use std::process::Command;

use common::*;
use hyper::Method;
use serde_json::json;

const LBS: &str = "/1.0/networks/ovn1/load-balancers";

fn lb(listen: &str) -> serde_json::Value {
    json!({"listen_address": listen,
           "backends": [{"name": "c1", "target_address": "10.0.0.11", "target_port": "8080"}],
           "ports": [{"protocol": "tcp", "listen_port": "80", "target_backend": ["c1"]}]})
}

/// The owner `ovnlb`'s token in NB (`None`: not claimed).
fn token(ovn: &Ovn) -> Option<String> {
    let out = Command::new("ovn-nbctl")
        .arg(format!("--db={}", ovn.nb.db()))
        .args([
            "get",
            "NB_Global",
            ".",
            "external_ids:\"ovnlb:fence:ovnlb\"",
        ])
        .output()
        .unwrap();
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .trim_matches('"')
            .to_owned()
    })
}

fn has_row(ovn: &Ovn, listen: &str) -> bool {
    our_rows(ovn)
        .iter()
        .any(|(_, r)| r["external_ids"].map_get("ovnlb:listen-address") == Some(listen))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_ovnlbd_on_the_same_nb_fences_the_first_out() {
    init_tracing();
    let ovn = Ovn::start();
    let d1 = Daemon::start(&ovn.nb).await;
    let c1 = d1.client();
    networks(&c1).await;
    req(
        &c1,
        Method::POST,
        &format!("{LBS}?wait=30"),
        Some(lb("192.0.2.10")),
    )
    .await
    .unwrap();
    assert!(has_row(&ovn, "192.0.2.10"));
    let first = token(&ovn).expect("claimed by the first");
    assert_eq!(ovnlb::reconcile::fence::epoch(&first), Some(1), "{first}");

    let d2 = Daemon::start(&ovn.nb).await;
    let c2 = d2.client();
    networks(&c2).await;
    let second = eventually(30, "the second claims", || {
        token(&ovn).filter(|t| *t != first)
    })
    .await;
    assert_eq!(ovnlb::reconcile::fence::epoch(&second), Some(2), "{second}");

    // The first is fenced out: its write is stored but never reaches NB, and its
    // ?wait says no controller applies it.
    let (status, msg) = req(
        &c1,
        Method::POST,
        &format!("{LBS}?wait=20"),
        Some(lb("192.0.2.11")),
    )
    .await
    .expect_err("not applied");
    assert_eq!(status, 503, "{msg}");
    assert!(msg.contains("took over NB"), "{msg}");
    assert!(!has_row(&ovn, "192.0.2.11"));
    // The second writes.
    req(
        &c2,
        Method::POST,
        &format!("{LBS}?wait=30"),
        Some(lb("192.0.2.12")),
    )
    .await
    .unwrap();
    assert!(has_row(&ovn, "192.0.2.12") && !has_row(&ovn, "192.0.2.11"));
    assert_eq!(
        token(&ovn).as_deref(),
        Some(second.as_str()),
        "no flip-flop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_with_a_stale_token_is_refused_by_the_guard() {
    use ovnlb::reconcile::apply::{commit, Outcome};
    use ovnlb::reconcile::fence;
    init_tracing();
    let ovn = Ovn::start();
    let s = nb_session(ovn.nb.unix(), vec![]);
    s.cache().wait_ready().await;
    let old = fence::claim(&s, "ovnlb", "a").await.unwrap();
    let new = fence::claim(&s, "ovnlb", "b").await.unwrap();
    assert_eq!((old.token.as_str(), new.token.as_str()), ("a:1", "b:2"));
    assert!(new.holds(fence::current(&s, "ovnlb").as_deref()));
    let state = ovnlb::lb::state::DesiredState::from_yaml(
        "networks:\n- {name: uplink, type: physical, config: {ipv4.routes: 192.0.2.0/24}}\n- name: ovn1\n  type: ovn\n  config: {network: uplink, ovn.router: lxd-net1-lr, ovn.switch: lxd-net1-ls-int}\n  load_balancers:\n  - listen_address: 192.0.2.20\n    backends: [{name: c1, target_address: 10.0.0.11}]\n    ports: [{protocol: tcp, listen_port: \"80\", target_backend: [c1]}]\n",
    )
    .unwrap();
    let nets = ovnlb::lb::state::resolve(&state, &Default::default(), Some(&s)).unwrap();
    let plan = s
        .cache()
        .read(|v| ovnlb::reconcile::plan::plan_network("ovnlb", &nets[0], v))
        .unwrap();
    assert!(matches!(
        commit(&s, &plan, Some(&old)).await,
        Outcome::Fenced(_)
    ));
    assert!(!has_row(&ovn, "192.0.2.20"));
    assert!(matches!(
        commit(&s, &plan, Some(&new)).await,
        Outcome::Applied
    ));
    assert!(has_row(&ovn, "192.0.2.20"));
    s.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_claims_never_share_an_epoch() {
    init_tracing();
    let ovn = Ovn::start();
    let sessions: Vec<_> = (0..4).map(|_| nb_session(ovn.nb.unix(), vec![])).collect();
    for s in &sessions {
        s.cache().wait_ready().await;
    }
    let mut claims = tokio::task::JoinSet::new();
    for (i, s) in sessions.iter().enumerate() {
        let s = s.clone();
        claims.spawn(async move {
            ovnlb::reconcile::fence::claim(&s, "ovnlb", &format!("h{i}"))
                .await
                .unwrap()
        });
    }
    let won = claims.join_all().await;
    // Each claim succeeds in turn (a loser re-reads and takes the next epoch), so the
    // epochs are 1..=4, each once: no two holders ever shared one.
    let mut epochs: Vec<u64> = won
        .iter()
        .map(|f| ovnlb::reconcile::fence::epoch(&f.token).unwrap())
        .collect();
    epochs.sort_unstable();
    assert_eq!(epochs, [1, 2, 3, 4]);
    let last = won.iter().find(|f| f.token.ends_with(":4")).unwrap();
    assert_eq!(token(&ovn).as_deref(), Some(last.token.as_str()));
    for s in sessions {
        s.shutdown();
    }
}

/// Why a lock is never the fence: on a Raft cluster each member keeps its own lock
/// table, so the same lock is granted on two members at once (`ha-design.md` §2.1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ovsdb_lock_is_granted_on_two_cluster_members_at_once() {
    init_tracing();
    let cluster = Cluster::start();
    let cfg = ovnlb::ovsdb::ConnectConfig::default();
    let a = connect(&cluster.members[0].remote(), &cfg).await;
    let b = connect(&cluster.members[1].remote(), &cfg).await;
    assert!(a.lock("ovnlbd").await.unwrap(), "granted on member 0");
    assert!(
        b.lock("ovnlbd").await.unwrap(),
        "granted on member 1 as well"
    );
}

/// The token is replicated data, so the guard holds whichever member a writer reaches:
/// a claim made through one member fences a writer talking to a follower.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fence_holds_through_a_follower_of_the_cluster() {
    use ovnlb::ovsdb::{Row, SessionConfig, Transaction};
    use ovnlb::reconcile::fence;
    init_tracing();
    let cluster = Cluster::start();
    let leader = eventually(30, "a leader", || cluster.leader()).await;
    let follower = (0..3).find(|i| *i != leader).unwrap();
    let pinned = |i: usize| {
        let mut cfg = SessionConfig::new(vec![cluster.members[i].remote()], nb_schema())
            .tables(&["NB_Global", "Load_Balancer"]);
        cfg.leader_only = false;
        ovnlb::ovsdb::Session::start(cfg).unwrap()
    };
    let (on_leader, on_follower) = (pinned(leader), pinned(follower));
    for s in [&on_leader, &on_follower] {
        s.cache().wait_ready().await;
    }
    let stale = fence::claim(&on_follower, "ovnlb", "old").await.unwrap();
    let fresh = fence::claim(&on_leader, "ovnlb", "new").await.unwrap();
    assert_eq!(
        (stale.token.as_str(), fresh.token.as_str()),
        ("old:1", "new:2")
    );
    // The old holder writes through the follower: refused by the guard.
    let mut t = Transaction::with_schema(on_follower.schema().clone());
    stale.guard(&mut t);
    t.insert(
        "Load_Balancer",
        Row::from([("name".to_owned(), ovnlb::ovsdb::Datum::scalar("stale"))]),
    );
    let e = on_follower.transact(&t).await.expect_err("fenced");
    assert!(fence::Fence::refused(&e), "{e}");
    // The new holder writes through the follower too.
    let mut t = Transaction::with_schema(on_follower.schema().clone());
    fresh.guard(&mut t);
    t.insert(
        "Load_Balancer",
        Row::from([("name".to_owned(), ovnlb::ovsdb::Datum::scalar("fresh"))]),
    );
    on_follower.transact(&t).await.unwrap();
    for s in [on_leader, on_follower] {
        s.shutdown();
    }
}
