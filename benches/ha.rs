//! The HA benchmark (issue 13), side by side in one run:
//!
//! 1. API creates through one ovnlbd (release binary, its own process) on SQLite and on a
//!    3-member OVNLB cluster, each against a fresh sandbox NB: one at a time (201, and
//!    with `?wait` until NB holds it), then 8 clients until `N` exist and NB holds them.
//! 2. The raw OVNLB floor: one single-row insert transaction at a time to the leader,
//!    through our OVSDB client.
//! 3. Takeover with three ovnlbd on OVNLB (lease period `LEASE`, default 5 s): from
//!    `kill -9` of the active, and from its SIGTERM, until another node says it is active.
//!
//! Run: `scripts/bench-ha.sh` (or `cargo bench --bench ha`); env `N` (10000), `CLIENTS`
//! (8), `ROUNDS` (3 takeovers of each kind), `LEASE` (5).

#[allow(missing_docs)]
#[path = "../tests/common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::Method;
use ovnlb::cli::Client;
use serde_json::json;

fn env(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

use common::bench_lb as lb;

/// As `common::networks`, with the benchmark's listen addresses (198.18.0.0/15) routed.
async fn networks(c: &Client) {
    let up = json!({"name": "uplink", "type": "physical",
                    "config": {"ipv4.routes": "198.18.0.0/15"}});
    common::req(c, Method::POST, "/1.0/networks", Some(up))
        .await
        .unwrap();
    let ovn1 = json!({"name": "ovn1", "type": "ovn",
                      "config": {"network": "uplink", "ovn.router": "lxd-net1-lr",
                                 "ovn.switch": "lxd-net1-ls-int", "ipv4.address": "10.0.0.1/16"}});
    common::req(c, Method::POST, "/1.0/networks", Some(ovn1))
        .await
        .unwrap();
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

/// An ovnlbd process; killed on drop.
struct Node {
    _dir: tempfile::TempDir,
    child: Option<Child>,
    socket: PathBuf,
}

impl Node {
    fn start(nb: &std::path::Path, store: Option<&str>, lease: usize) -> Node {
        let dir = tempfile::Builder::new()
            .prefix("ovnlbd-bench")
            .tempdir_in("/tmp")
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ovnlbd"));
        cmd.arg(format!("--dir={}", dir.path().display()))
            .arg(format!("--nb=unix:{}", nb.display()))
            .arg(format!("--lease-seconds={lease}"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(s) = store {
            cmd.arg(format!("--store={s}"));
        }
        let socket = dir.path().join("unix.socket");
        let child = cmd.spawn().unwrap();
        common::wait_for_socket(&socket);
        Node {
            _dir: dir,
            child: Some(child),
            socket,
        }
    }

    fn client(&self) -> Client {
        Client::unix(&self.socket)
    }

    fn signal(&mut self, sig: &str) {
        if let Some(mut c) = self.child.take() {
            Command::new("kill")
                .args([&format!("-{sig}"), &c.id().to_string()])
                .status()
                .unwrap();
            let _ = c.wait();
        }
    }

    async fn active(&self) -> bool {
        if self.child.is_none() {
            return false;
        }
        let r = tokio::time::timeout(
            Duration::from_secs(1),
            common::req(&self.client(), Method::GET, "/1.0", None),
        )
        .await;
        matches!(r, Ok(Ok(v)) if v["environment"]["ovnlb_reconciler"]["state"] == "active")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.signal("KILL");
    }
}

/// Our rows in NB, as a third party sees them.
fn rows_in_nb(s: &ovnlb::ovsdb::Session) -> usize {
    s.cache().read(|v| {
        v.rows("Load_Balancer")
            .filter(|r| r.get("external_ids").map_get("ovnlb:owner").is_some())
            .count()
    })
}

struct Run {
    one: (f64, f64),
    one_wait: (f64, f64),
    rate_acked: f64,
    rate_nb: f64,
    p50_p99: (f64, f64),
}

/// One engine: `store` `None` is SQLite.
async fn api_run(store: Option<&str>, n: usize, clients: usize) -> Run {
    let ovn = common::Ovn::start();
    let node = Node::start(&ovn.nb.sock, store, 5);
    let c = node.client();
    networks(&c).await;
    let watch = common::nb_session(ovn.nb.unix(), vec![]);
    watch.cache().wait_ready().await;
    let path = "/1.0/networks/ovn1/load-balancers";
    // One at a time, a few present.
    let mut lat = Vec::new();
    for i in 0..100 {
        let t = Instant::now();
        c.request(Method::POST, path, Some(&lb(i)), None)
            .await
            .unwrap();
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let one = (pct(&mut lat, 0.5), pct(&mut lat, 0.99));
    let mut lat = Vec::new();
    for i in 100..200 {
        let t = Instant::now();
        c.request(Method::POST, &format!("{path}?wait=10"), Some(&lb(i)), None)
            .await
            .unwrap();
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let one_wait = (pct(&mut lat, 0.5), pct(&mut lat, 0.99));
    // Clients until n exist.
    let counter = Arc::new(std::sync::atomic::AtomicUsize::new(200));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (c, counter) = (c.clone(), counter.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return lat;
                }
                let t = Instant::now();
                c.request(Method::POST, path, Some(&lb(i)), None)
                    .await
                    .unwrap();
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let acked = t0.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(300);
    while rows_in_nb(&watch) < n {
        assert!(Instant::now() < deadline, "NB did not converge");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let in_nb = t0.elapsed().as_secs_f64();
    let m = (n - 200) as f64;
    Run {
        one,
        one_wait,
        rate_acked: m / acked,
        rate_nb: m / in_nb,
        p50_p99: (pct(&mut all, 0.5), pct(&mut all, 0.99)),
    }
}

fn floor_txn(
    schema: &Arc<ovnlb::ovsdb::DatabaseSchema>,
    name: String,
) -> ovnlb::ovsdb::Transaction {
    let mut txn = ovnlb::ovsdb::Transaction::with_schema(schema.clone());
    txn.insert(
        "Network",
        ovnlb::ovsdb::Row::from([("name".to_owned(), ovnlb::ovsdb::Datum::scalar(name))]),
    );
    txn
}

/// The raw floor through our client to the leader: single-row inserts one at a time
/// (p50 / p99 ms), then `clients` connections inserting at once (transactions per second).
async fn floor(c: &common::Cluster, clients: usize) -> ((f64, f64), f64) {
    let l = c.leader().unwrap();
    let schema = Arc::new(ovnlb::store::ovsdb::ovnlb_schema());
    let client = common::connect(&c.members[l].remote(), &Default::default()).await;
    let mut lat = Vec::new();
    for i in 0..1000 {
        let txn = floor_txn(&schema, format!("floor{i}"));
        let t = Instant::now();
        client.transact(&txn).await.unwrap();
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let per = 1000;
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..clients {
        let client = common::connect(&c.members[l].remote(), &Default::default()).await;
        let schema = schema.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per {
                client
                    .transact(&floor_txn(&schema, format!("par{k}-{i}")))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let rate = (clients * per) as f64 / t0.elapsed().as_secs_f64();
    ((pct(&mut lat, 0.5), pct(&mut lat, 0.99)), rate)
}

/// Rounds of: signal the active, time until another node is active, restart the node.
async fn takeovers(sig: &str, rounds: usize, lease: usize) -> Vec<f64> {
    let ovn = common::Ovn::start();
    let db = common::Cluster::start_ovnlb();
    let store = format!("ovsdb:{}", db.db_string());
    let mut nodes: Vec<Node> = (0..3)
        .map(|_| Node::start(&ovn.nb.sock, Some(&store), lease))
        .collect();
    let mut out = Vec::new();
    for _ in 0..rounds {
        let a = loop {
            let mut act = Vec::new();
            for (i, n) in nodes.iter().enumerate() {
                if n.active().await {
                    act.push(i);
                }
            }
            if act.len() == 1 {
                break act[0];
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let t0 = Instant::now();
        nodes[a].signal(sig);
        'wait: loop {
            for (i, n) in nodes.iter().enumerate() {
                if i != a && n.active().await {
                    break 'wait;
                }
            }
            assert!(t0.elapsed() < Duration::from_secs(60), "no takeover");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        out.push(t0.elapsed().as_secs_f64() * 1000.0);
        nodes[a] = Node::start(&ovn.nb.sock, Some(&store), lease);
    }
    out
}

fn main() {
    let n = env("N", 10000);
    let clients = env("CLIENTS", 8);
    let rounds = env("ROUNDS", 3);
    let lease = env("LEASE", 5);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sqlite = api_run(None, n, clients).await;
        let cluster = common::Cluster::start_ovnlb();
        let ovnlb = api_run(Some(&format!("ovsdb:{}", cluster.db_string())), n, clients).await;
        let (fl, fl_rate) = floor(&cluster, clients).await;
        drop(cluster);
        println!("| measurement ({n} load balancers, {clients} clients) | SQLite | OVNLB (3-member cluster) |");
        println!("|---|---|---|");
        let row = |what: &str, a: String, b: String| println!("| {what} | {a} | {b} |");
        let ms = |(p50, p99): (f64, f64)| format!("{p50:.2} / {p99:.2} ms");
        row("one create at a time, a few present: 201, p50 / p99", ms(sqlite.one), ms(ovnlb.one));
        row("one create at a time, until NB holds it (`?wait`), p50 / p99", ms(sqlite.one_wait), ms(ovnlb.one_wait));
        row(&format!("creates per second, {clients} clients, all acknowledged"), format!("{:.0} /s", sqlite.rate_acked), format!("{:.0} /s", ovnlb.rate_acked));
        row(&format!("creates per second, until NB holds all {n}"), format!("{:.0} /s", sqlite.rate_nb), format!("{:.0} /s", ovnlb.rate_nb));
        row("API latency under load, p50 / p99", ms(sqlite.p50_p99), ms(ovnlb.p50_p99));
        row("floor: one single-row OVNLB insert to the leader, p50 / p99", "-".into(), ms(fl));
        row(&format!("floor: single-row OVNLB inserts per second, {clients} connections"), "-".into(), format!("{fl_rate:.0} /s"));
        println!();
        let kill = takeovers("KILL", rounds, lease).await;
        let term = takeovers("TERM", rounds, lease).await;
        let show = |v: &[f64]| v.iter().map(|t| format!("{t:.0}")).collect::<Vec<_>>().join(", ");
        println!("| takeover (lease period {lease} s), until another node is active | ms per round |");
        println!("|---|---|");
        println!("| `kill -9` of the active | {} |", show(&kill));
        println!("| SIGTERM of the active (lease released) | {} |", show(&term));
    });
}
