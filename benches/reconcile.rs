//! Reconciler benchmark (issue 3), side by side in one run on fresh NB servers:
//!
//! - reconcile 10,000 load balancers (tcp and udp, 4 backends each: 20,000 rows) from
//!   empty with `ovnlb reconcile`'s pass, against the raw floor (the same transaction,
//!   pre-built, written to a raw socket);
//! - a no-op pass over them;
//! - one-backend changes through the store and the controller, latency until NB holds
//!   them (p50/p99), with 100 and with 10,000 present;
//! - LXD's way: one `ovn-nbctl` process per operation (lb-add, lr-lb-add, ls-lb-add),
//!   sampled as 100 load balancers at 0, 2,500 and 10,000 present.
//!
//! Run: `scripts/bench-reconcile.sh` (or `cargo bench --bench reconcile`); `N=1000` for a
//! smaller run, `BENCH_SKIP_LXD=1` to leave out the (slow) LXD sampling.

#[allow(missing_docs)]
#[path = "../tests/common/mod.rs"]
mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::OvsdbServer;
use ovnlb::lb::model::{LoadBalancersPost, Network};
use ovnlb::lb::state::{DesiredNetwork, DesiredState};
use ovnlb::ovsdb::{self, Framer, Session};
use ovnlb::reconcile::controller::{Controller, ControllerOptions};
use ovnlb::reconcile::plan::{listen_index, vip_index};
use ovnlb::reconcile::{reconcile_pass, resolve_with, transaction, PassOptions};
use ovnlb::store::{Objects, SqliteStore, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn listen(i: usize) -> String {
    format!("198.{}.{}.{}", 18 + i / 65536, (i / 256) % 256, i % 256)
}

fn lb(i: usize, gen: usize) -> LoadBalancersPost {
    let b: Vec<_> = (1..=4)
        .map(|k| serde_json::json!({"name": format!("b{k}"), "target_address": format!("10.0.{}.{}", (i / 250) % 250, i % 250 + 1), "target_port": format!("{}", 8000 + k + gen)}))
        .collect();
    serde_json::from_value(serde_json::json!({
        "listen_address": listen(i), "backends": b,
        "ports": [
            {"protocol": "tcp", "listen_port": "80", "target_backend": ["b1", "b2", "b3", "b4"]},
            {"protocol": "udp", "listen_port": "53", "target_backend": ["b1", "b2", "b3", "b4"]}
        ]
    }))
    .unwrap()
}

fn networks() -> Vec<Network> {
    let n = common::net;
    vec![
        n("uplink", "physical", &[("ipv4.routes", "198.18.0.0/15")]),
        n(
            "ovn1",
            "ovn",
            &[
                ("network", "uplink"),
                ("ovn.router", "lxd-net1-lr"),
                ("ovn.switch", "lxd-net1-ls-int"),
                ("ipv4.address", "10.0.0.1/16"),
            ],
        ),
    ]
}

fn state(n: usize) -> DesiredState {
    let nets = networks();
    DesiredState {
        networks: vec![
            DesiredNetwork {
                network: nets[0].clone(),
                ..Default::default()
            },
            DesiredNetwork {
                network: nets[1].clone(),
                load_balancers: (0..n).map(|i| lb(i, 0)).collect(),
                ..Default::default()
            },
        ],
    }
}

fn server() -> OvsdbServer {
    let srv = OvsdbServer::start();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/sandbox.sh");
    let st = Command::new("bash")
        .arg(script)
        .arg("topology")
        .arg(srv.db())
        .output()
        .unwrap();
    assert!(st.status.success());
    srv
}

fn session(srv: &OvsdbServer) -> Session {
    common::nb_session(srv.unix(), vec![listen_index(), vip_index()])
}

fn count_rows(srv: &OvsdbServer) -> usize {
    srv.dump(&["Load_Balancer"])
        .get("Load_Balancer")
        .map_or(0, |t| t.len())
}

/// The pass's own transaction, pre-built, on a raw socket: the floor.
async fn raw_floor(n: usize) -> f64 {
    let srv = server();
    let s = session(&srv);
    s.cache().wait_ready().await;
    let nets = resolve_with(&s, &state(n), &Default::default()).unwrap();
    let plan = s
        .cache()
        .read(|v| ovnlb::reconcile::plan::plan_network("ovnlb", &nets[0], v))
        .unwrap();
    let txn = transaction(&plan, s.schema());
    let mut bytes = b"{\"id\":1,\"method\":\"transact\",\"params\":".to_vec();
    txn.encode_params(&mut bytes);
    bytes.push(b'}');
    let mut sock = tokio::net::UnixStream::connect(&srv.sock).await.unwrap();
    let mut framer = Framer::default();
    let mut buf = vec![0u8; 64 * 1024];
    let t0 = Instant::now();
    sock.write_all(&bytes).await.unwrap();
    loop {
        let k = sock.read(&mut buf).await.unwrap();
        framer.extend(&buf[..k]);
        if framer.next_frame().unwrap().is_some() {
            break;
        }
    }
    let el = ms(t0.elapsed());
    assert_eq!(count_rows(&srv), 2 * n);
    el
}

/// The ad-hoc pass from empty, and a no-op pass after it.
async fn pass_from_empty(n: usize) -> (f64, f64) {
    let srv = server();
    let s = session(&srv);
    s.cache().wait_ready().await;
    let st = state(n);
    let t0 = Instant::now();
    let r = reconcile_pass(&s, &st, &PassOptions::default())
        .await
        .unwrap();
    let el = ms(t0.elapsed());
    assert!(r.converged && r.errors.is_empty());
    assert_eq!(count_rows(&srv), 2 * n);
    let t1 = Instant::now();
    let r = reconcile_pass(
        &s,
        &st,
        &PassOptions {
            dry_run: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let noop = ms(t1.elapsed());
    assert!(r.plans.is_empty());
    (el, noop)
}

/// Controller latency of single-backend changes with `n` present: store write → NB row
/// holds the new VIP target (seen in the cache).
async fn change_latency(n: usize, samples: usize) -> (f64, f64, f64, (f64, f64), (f64, f64)) {
    let srv = server();
    let s = session(&srv);
    s.cache().wait_ready().await;
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    for net in networks() {
        store.create_network(&net).unwrap();
    }
    // Fill NB through the pass (fast), and the store row by row.
    reconcile_pass(&s, &state(n), &PassOptions::default())
        .await
        .unwrap();
    for i in 0..n {
        let mut l = lb(i, 0);
        l.normalise();
        store.create("ovn1", &l).unwrap();
    }
    // The floor: the same kind of update as one direct transaction (vips of one row,
    // guarded by a wait), no controller, no store.
    let mut direct = Vec::new();
    for k in 0..50 {
        let i = (k * 104729) % n;
        let rows = s
            .cache()
            .read(|v| v.lookup(&listen_index(), &ovsdb::Datum::scalar(listen(i))));
        let row = rows
            .iter()
            .find(|r| r.get_str("protocol") == Some("tcp"))
            .unwrap()
            .clone();
        let mut t = s.transaction();
        t.wait(
            "Load_Balancer",
            vec![ovsdb::Condition::uuid(row.uuid)],
            &["vips"],
            ovsdb::WaitUntil::Eq,
            vec![[("vips".to_owned(), row.get("vips").clone())].into()],
        );
        let vips = ovsdb::Datum::string_map([(
            format!("{}:80", listen(i)),
            format!("10.0.0.1:{}", 1000 + k),
        )]);
        t.update(
            "Load_Balancer",
            vec![ovsdb::Condition::uuid(row.uuid)],
            [("vips".to_owned(), vips)].into(),
        );
        let t0 = Instant::now();
        s.transact(&t).await.unwrap();
        direct.push(ms(t0.elapsed()));
    }
    direct.sort_by(f64::total_cmp);
    let direct_p50 = direct[direct.len() / 2];
    // The controller's periodic resync with nothing to do: memoised rows compared with
    // the cache (a controller of its own, not running).
    // (The pass above wrote revision 0; a first controller brings NB to the store's
    // revisions, then a fresh one's first resync compares every row: nothing is known
    // clean yet.)
    let mut probe = Controller::new(s.clone(), store.clone(), ControllerOptions::default());
    probe.load().await;
    probe.resync().await;
    let mut probe = Controller::new(s.clone(), store.clone(), ControllerOptions::default());
    probe.load().await;
    let t0 = Instant::now();
    probe.resync().await;
    let first_resync = ms(t0.elapsed());
    let mut resync = Vec::new();
    for _ in 0..5 {
        let t0 = Instant::now();
        probe.resync().await;
        resync.push(ms(t0.elapsed()));
    }
    drop(probe);
    resync.sort_by(f64::total_cmp);
    let resync_ms = resync[resync.len() / 2];
    let ctl = Controller::new(
        s.clone(),
        store.clone(),
        ControllerOptions {
            resync_every: Duration::from_secs(3600),
            ..Default::default()
        },
    );
    let status = ctl.status();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(ctl.run(cancel.clone()));
    // Wait for the initial full pass to settle (every key applied).
    let listen_last = listen(n - 1);
    while status
        .key("ovn1", &listen_last)
        .and_then(|k| k.applied_revision)
        .is_none()
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut lat = Vec::new();
    let mut sub = s.cache().subscribe();
    for k in 0..samples {
        let i = (k * 7919) % n;
        let want = format!("10.0.{}.{}:{}", (i / 250) % 250, i % 250 + 1, 8001 + k + 1);
        let rows = lb(i, k + 1);
        sub.try_changed();
        let t0 = Instant::now();
        store
            .update::<LoadBalancersPost>("ovn1", &listen(i), &rows.put, None)
            .unwrap();
        let vip = format!("{}:80", listen(i));
        loop {
            let seen = s.cache().read(|v| {
                v.lookup(&listen_index(), &ovsdb::Datum::scalar(listen(i)))
                    .iter()
                    .any(|r| {
                        r.get("vips")
                            .map_get(&vip)
                            .is_some_and(|b| b.starts_with(&want))
                    })
            });
            if seen {
                break;
            }
            let _ = tokio::time::timeout(Duration::from_secs(5), sub.changed()).await;
        }
        lat.push(ms(t0.elapsed()));
    }
    // Drift: a foreign writer corrupts a row's vips; time until the controller has put
    // the declared value back.
    let mut drift = Vec::new();
    for k in 0..50 {
        let i = (k * 31337 + 17) % n;
        let rows = s
            .cache()
            .read(|v| v.lookup(&listen_index(), &ovsdb::Datum::scalar(listen(i))));
        let row = rows
            .iter()
            .find(|r| r.get_str("protocol") == Some("tcp"))
            .unwrap()
            .clone();
        let good = row.get("vips").clone();
        let mut t = s.transaction();
        let bad =
            ovsdb::Datum::string_map([(format!("{}:80", listen(i)), "10.0.0.1:1".to_owned())]);
        t.update(
            "Load_Balancer",
            vec![ovsdb::Condition::uuid(row.uuid)],
            [("vips".to_owned(), bad)].into(),
        );
        sub.try_changed();
        let t0 = Instant::now();
        s.transact(&t).await.unwrap();
        loop {
            if s.cache()
                .get("Load_Balancer", &row.uuid)
                .is_some_and(|r| *r.get("vips") == good)
            {
                break;
            }
            let _ = tokio::time::timeout(Duration::from_secs(5), sub.changed()).await;
        }
        drift.push(ms(t0.elapsed()));
    }
    drift.sort_by(f64::total_cmp);
    let drift_p = (
        drift[drift.len() / 2],
        drift[(drift.len() * 99 / 100).min(drift.len() - 1)],
    );
    cancel.cancel();
    let _ = task.await;
    lat.sort_by(f64::total_cmp);
    (
        lat[lat.len() / 2],
        lat[(lat.len() * 99 / 100).min(lat.len() - 1)],
        direct_p50,
        drift_p,
        (resync_ms, first_resync),
    )
}

/// LXD's way: ovn-nbctl per operation, 100 load balancers on top of `present`.
async fn lxd_way(present: usize) -> f64 {
    let srv = server();
    if present > 0 {
        let s = session(&srv);
        s.cache().wait_ready().await;
        reconcile_pass(&s, &state(present), &PassOptions::default())
            .await
            .unwrap();
        s.shutdown();
    }
    let db = srv.db();
    let nbctl = |args: &[&str]| {
        let st = Command::new("ovn-nbctl")
            .arg(format!("--db={db}"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
    };
    let t0 = Instant::now();
    for k in 0..100 {
        let i = present + k;
        let name = format!("lxd-net1-lb-{}-tcp", listen(i));
        let backends: Vec<String> = (1..=4)
            .map(|b| format!("10.0.{}.{}:{}", (i / 250) % 250, i % 250 + 1, 8000 + b))
            .collect();
        nbctl(&[
            "--may-exist",
            "lb-add",
            &name,
            &format!("{}:80", listen(i)),
            &backends.join(","),
            "tcp",
        ]);
        nbctl(&["--may-exist", "lr-lb-add", "lxd-net1-lr", &name]);
        nbctl(&["--may-exist", "ls-lb-add", "lxd-net1-ls-int", &name]);
    }
    ms(t0.elapsed()) / 100.0
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    eprintln!("reconcile benchmark: {n} load balancers ({} rows)", 2 * n);
    let mut floor = vec![];
    let mut ours = vec![];
    let mut noop = vec![];
    for _ in 0..3 {
        floor.push(raw_floor(n).await);
        let (a, b) = pass_from_empty(n).await;
        ours.push(a);
        noop.push(b);
    }
    let med = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (floor, ours, noop) = (med(floor), med(ours), med(noop));
    eprintln!("from empty: ours {ours:.0} ms, floor {floor:.0} ms; no-op {noop:.1} ms");
    let (p50_small, p99_small, direct_small, _, _) = change_latency(100, 100).await;
    let (p50, p99, direct, drift, resync) = change_latency(n, 200).await;
    eprintln!("change: {p50:.2}/{p99:.2} ms at {n}, {p50_small:.2}/{p99_small:.2} at 100");
    let lxd: Vec<(usize, f64)> = if std::env::var("BENCH_SKIP_LXD").is_ok() {
        vec![]
    } else {
        vec![
            (0, lxd_way(0).await),
            (n / 4, lxd_way(n / 4).await),
            (n, lxd_way(n).await),
        ]
    };

    println!("| measurement | result |");
    println!("|---|---|");
    println!(
        "| reconcile {n} LBs ({} rows) from empty: `ovnlb reconcile` pass | {ours:.0} ms |",
        2 * n
    );
    println!("| the same transaction, pre-built, raw on the socket (floor) | {floor:.0} ms |");
    println!("| pass / floor | {:.2}x (target ≤ 1.5x) |", ours / floor);
    println!("| no-op pass over {n}, `ovnlb reconcile` (parse, validate, render, compare) | {noop:.1} ms (target < 50 ms) |");
    println!("| no-op pass over {n}, the controller's periodic resync (rows memoised; keys whose rows and topology keep the versions of a clean plan skip the compare) | {:.1} ms (target < 50 ms) |", resync.0);
    println!("| the same, the first resync of a fresh controller (render all, compare every row, record) | {:.1} ms |", resync.1);
    println!("| one-backend change via the controller, {n} present: p50 / p99 | {p50:.2} / {p99:.2} ms (target p50 < 5 ms) |");
    println!("| the same with 100 present: p50 / p99 | {p50_small:.2} / {p99_small:.2} ms |");
    println!("| floor: the same update as one direct transaction, p50, {n} / 100 present | {direct:.2} / {direct_small:.2} ms |");
    println!("| drift repair (a foreign writer corrupts vips) until NB holds the declared value again, {n} present: p50 / p99 | {:.2} / {:.2} ms (goal: within a second) |", drift.0, drift.1);
    for (present, per) in lxd {
        println!("| LXD's way (ovn-nbctl per operation, 3 per LB), {present} present | {per:.1} ms per LB |");
    }
}
