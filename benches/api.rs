//! API benchmark (issue 4): sustained creates through ovnlbd's REST API, one load
//! balancer per request from several clients, until N exist, with NB converged.
//!
//! ovnlbd runs as its own process (the release binary) on a state dir on disk, against a
//! fresh NB (tmpfs). Each client opens a connection per request, as lxc does. A watcher
//! with its own NB session sees each row appear: "applied in NB" is measured from the
//! moment the request is sent to the moment a third party sees the row in NB.
//!
//! Side by side (`BENCH_PEERS=1`, needs root and `scripts/install-peers.sh`): the real
//! Incus 6.0.4 (load balancers) and LXD 5.0.2 (forwards), started by the tools in
//! `../shared/tools/`, against ovnlbd on a fresh NB of its own: 100 creates one after the
//! other, each until NB holds it (Incus and LXD answer after applying; ovnlbd is asked
//! with `?wait`), with a few and with 1,000 present.
//!
//! Run: `scripts/bench-api.sh` (or `cargo bench --bench api`); env `N` (10000),
//! `CLIENTS` (8), `STATE_DIR` (default /tmp, on disk: every acknowledged write is
//! fsynced), `BENCH_PEERS`, `PEER_TOOLS` (../shared/tools).

#[allow(missing_docs)]
#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::Method;
use ovnlb::cli::Client;
use ovnlb::ovsdb;
use ovnlb::reconcile::plan::listen_index;
use serde_json::json;

use common::{bench_lb as lb, bench_listen as listen};

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

/// (utime + stime in seconds, VmRSS KiB, VmHWM KiB) of a process.
fn usage(pid: u32) -> (f64, u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (ticks / 100.0, kb("VmRSS:"), kb("VmHWM:"))
}

/// The body of peer sample `i`: a load balancer (or forward) on 198.18.0.0/20.
fn peer_body(i: usize, forward: bool) -> serde_json::Value {
    let l = format!("198.18.{}.{}", (i + 1) / 256, (i + 1) % 256);
    if forward {
        json!({"listen_address": l, "ports": [{"protocol": "tcp", "listen_port": "80",
               "target_address": "10.0.0.11", "target_port": "8080"}]})
    } else {
        json!({"listen_address": l,
               "backends": [{"name": "b1", "target_address": "10.0.0.11", "target_port": "8080"},
                            {"name": "b2", "target_address": "10.0.0.12", "target_port": "8080"}],
               "ports": [{"protocol": "tcp", "listen_port": "80", "target_backend": ["b1", "b2"]}]})
    }
}

/// Fill `path` up to `upto` objects (from `*next`), 4 clients at once.
async fn fill(c: &Client, path: &str, forward: bool, next: &mut usize, upto: usize) {
    let start = *next;
    let counter = Arc::new(std::sync::atomic::AtomicUsize::new(start));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (c, counter, path) = (c.clone(), counter.clone(), path.to_owned());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= upto {
                    break;
                }
                c.request(Method::POST, &path, Some(&peer_body(i, forward)), None)
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    *next = upto.max(start);
}

/// 100 creates one after the other: p50 and p99 in ms.
async fn sample(c: &Client, path: &str, forward: bool, next: &mut usize) -> (f64, f64) {
    let mut lat = Vec::new();
    for _ in 0..100 {
        let t = Instant::now();
        c.request(Method::POST, path, Some(&peer_body(*next, forward)), None)
            .await
            .unwrap();
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        *next += 1;
    }
    (pct(&mut lat, 0.5), pct(&mut lat, 0.99))
}

/// A peer daemon started by `../shared/tools/<name>-real-up.sh`; stopped on drop.
struct Peer {
    dir: std::path::PathBuf,
    down: String,
}

impl Peer {
    fn up(name: &str) -> (Peer, std::path::PathBuf) {
        let tools = std::env::var("PEER_TOOLS")
            .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/tools").into());
        let dir = std::path::PathBuf::from(format!("/tmp/bp-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        let out = Command::new(format!("{tools}/{name}-real-up.sh"))
            .arg(&dir)
            .env("ROUTES4", "198.51.100.0/24,192.0.2.8/29,198.18.0.0/20")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let sock = if name == "incus" {
            dir.join("incus/unix.socket")
        } else {
            dir.join("lxd/unix.socket")
        };
        (
            Peer {
                dir,
                down: format!("{tools}/{name}-real-down.sh"),
            },
            sock,
        )
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = Command::new(&self.down)
            .arg(&self.dir)
            .arg("--purge")
            .output();
    }
}

/// `ovnlb_nb_echo_seconds` as ovnlbd's `/1.0/metrics` shows it: cumulative buckets, sum
/// and count.
struct Echo {
    buckets: Vec<(String, u64)>,
    sum: f64,
    count: u64,
}

impl Echo {
    async fn read(c: &Client) -> Echo {
        let (_, text) = c.text("/1.0/metrics").await.unwrap();
        let mut e = Echo {
            buckets: Vec::new(),
            sum: 0.0,
            count: 0,
        };
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("ovnlb_nb_echo_seconds_bucket{le=\"") {
                let (le, n) = rest.split_once("\"} ").unwrap();
                e.buckets.push((le.to_owned(), n.parse().unwrap()));
            } else if let Some(v) = l.strip_prefix("ovnlb_nb_echo_seconds_sum ") {
                e.sum = v.parse().unwrap();
            } else if let Some(v) = l.strip_prefix("ovnlb_nb_echo_seconds_count ") {
                e.count = v.parse().unwrap();
            }
        }
        e
    }

    /// The samples taken between `before` and `self`: their mean, and the bucket that
    /// holds the worst of them.
    fn since(&self, before: &Echo) -> String {
        let n = self.count - before.count;
        if n == 0 {
            return "no sample".into();
        }
        let worst = self
            .buckets
            .iter()
            .zip(&before.buckets)
            .find(|((_, a), (_, b))| a - b == n)
            .map_or("?", |((le, _), _)| le.as_str());
        format!(
            "{:.3} ms / ≤ {} ms ({n} samples)",
            (self.sum - before.sum) * 1000.0 / n as f64,
            worst
                .parse::<f64>()
                .map_or(worst.to_owned(), |s| format!("{}", s * 1000.0))
        )
    }
}

/// ovnlbd (its own NB and state) for the side-by-side samples.
async fn ours() -> (
    common::OvsdbServer,
    tempfile::TempDir,
    std::process::Child,
    Client,
) {
    let nb = common::OvsdbServer::start();
    let topo = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/sandbox.sh"))
        .arg("topology")
        .arg(nb.db())
        .output()
        .unwrap();
    assert!(topo.status.success());
    let state =
        tempfile::tempdir_in(std::env::var("STATE_DIR").unwrap_or_else(|_| "/tmp".into())).unwrap();
    let sock = state.path().join("unix.socket");
    let child = Command::new(env!("CARGO_BIN_EXE_ovnlbd"))
        .arg("--nb")
        .arg(format!("unix:{}", nb.sock.display()))
        .arg("--dir")
        .arg(state.path())
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    while !sock.exists() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let c = Client::unix(&sock);
    for body in [
        json!({"name": "uplink", "type": "physical", "config": {"ipv4.routes": "198.18.0.0/15"}}),
        json!({"name": "ovn1", "type": "ovn", "config": {"network": "uplink", "ovn.router": "lxd-net1-lr",
               "ovn.switch": "lxd-net1-ls-int", "ipv4.address": "10.0.0.1/16"}}),
    ] {
        c.request(Method::POST, "/1.0/networks", Some(&body), None)
            .await
            .unwrap();
    }
    (nb, state, child, c)
}

/// The side-by-side rows.
async fn peers() {
    println!();
    println!("| one create, until NB holds it (100 one after the other) | a few present: p50 / p99 | 1,000 present: p50 / p99 |");
    println!("|---|---|---|");
    for (peer, forward, what) in [("incus", false, "load balancer"), ("lxd", true, "forward")] {
        let collection = if forward {
            "forwards"
        } else {
            "load-balancers"
        };
        let path = format!("/1.0/networks/ovn1/{collection}");
        let (nb, state, mut child, c) = ours().await;
        let wpath = format!("{path}?wait=10");
        let mut next = 0;
        fill(&c, &path, forward, &mut next, 10).await;
        let few = sample(&c, &wpath, forward, &mut next).await;
        fill(&c, &path, forward, &mut next, 1000).await;
        let k = sample(&c, &wpath, forward, &mut next).await;
        println!(
            "| ovnlbd, {what} | {:.2} / {:.2} ms | {:.2} / {:.2} ms |",
            few.0, few.1, k.0, k.1
        );
        let _ = child.kill();
        let _ = child.wait();
        drop((nb, state));
        let (p, sock) = Peer::up(peer);
        let c = Client::unix(&sock);
        let mut next = 0;
        fill(&c, &path, forward, &mut next, 10).await;
        let few = sample(&c, &path, forward, &mut next).await;
        let t = Instant::now();
        fill(&c, &path, forward, &mut next, 1000).await;
        let filled = t.elapsed();
        let k = sample(&c, &path, forward, &mut next).await;
        println!(
            "| {peer} (real), {what} | {:.2} / {:.2} ms | {:.2} / {:.2} ms (filling 110 → 1,000 took {:.0} s) |",
            few.0, few.1, k.0, k.1, filled.as_secs_f64()
        );
        drop(p);
    }
}

#[tokio::main]
async fn main() {
    if std::env::var("BENCH_ONLY_PEERS").is_ok() {
        return peers().await;
    }
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let clients: usize = std::env::var("CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let state_base = std::env::var("STATE_DIR").unwrap_or_else(|_| "/tmp".into());
    let (nb, _state, mut daemon, c) = ours().await;
    let pid = daemon.id();

    // The watcher: its own NB session; records when each pending listen address shows up.
    let watch = common::nb_session(nb.unix(), vec![listen_index()]);
    watch.cache().wait_ready().await;
    let pending: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let applied: Arc<Mutex<Vec<f64>>> = Arc::default();
    let mut sub = watch.cache().subscribe();
    let (p2, a2, w2) = (pending.clone(), applied.clone(), watch.clone());
    let watcher = tokio::spawn(async move {
        loop {
            let ch = sub.changed().await;
            let now = Instant::now();
            let mut p = p2.lock().unwrap();
            w2.cache().read(|v| {
                for (table, uuid) in &ch.rows {
                    if table != "Load_Balancer" {
                        continue;
                    }
                    if let Some(l) = v
                        .get(table, uuid)
                        .and_then(|r| r.get("external_ids").map_get("ovnlb:listen-address"))
                    {
                        if let Some(t0) = p.remove(l) {
                            a2.lock().unwrap().push((now - t0).as_secs_f64() * 1000.0);
                        }
                    }
                }
            });
        }
    });

    // The NB echo round trip on ovnlbd's own session (probed every second): idle first.
    let e0 = Echo::read(&c).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let e1 = Echo::read(&c).await;
    let (cpu0, _, _) = usage(pid);
    let t0 = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let api_lat: Arc<Mutex<Vec<f64>>> = Arc::default();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (next, c, pending, api_lat) =
            (next.clone(), c.clone(), pending.clone(), api_lat.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let body = lb(i);
                let start = Instant::now();
                pending.lock().unwrap().insert(listen(i), start);
                c.request(
                    Method::POST,
                    "/1.0/networks/ovn1/load-balancers",
                    Some(&body),
                    None,
                )
                .await
                .unwrap();
                api_lat
                    .lock()
                    .unwrap()
                    .push(start.elapsed().as_secs_f64() * 1000.0);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let acked = t0.elapsed();
    let e2 = Echo::read(&c).await;
    while !pending.lock().unwrap().is_empty() {
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(
            t0.elapsed() < Duration::from_secs(600),
            "NB never converged"
        );
    }
    let converged = t0.elapsed();
    let (cpu1, rss, hwm) = usage(pid);
    watcher.abort();
    let mut applied = applied.lock().unwrap().clone();
    let mut api = api_lat.lock().unwrap().clone();
    assert_eq!(applied.len(), n);
    let rows = nb.dump(&["Load_Balancer"])["Load_Balancer"].len();
    assert_eq!(rows, n, "one row per load balancer in NB");

    println!(
        "| measurement ({n} load balancers, {clients} clients, state on {state_base}) | result |"
    );
    println!("|---|---|");
    println!(
        "| creates per second, all {n} acknowledged | {:.0} /s ({:.2} s) |",
        n as f64 / acked.as_secs_f64(),
        acked.as_secs_f64()
    );
    println!(
        "| creates per second, until NB holds all {n} | {:.0} /s ({:.2} s) |",
        n as f64 / converged.as_secs_f64(),
        converged.as_secs_f64()
    );
    println!(
        "| API latency (request to 201), p50 / p99 | {:.2} / {:.2} ms |",
        pct(&mut api, 0.5),
        pct(&mut api, 0.99)
    );
    println!("| request to the row seen in NB by a third party, p50 / p99 | {:.2} / {:.2} ms (target p99 < 100 ms) |", pct(&mut applied, 0.5), pct(&mut applied, 0.99));
    println!(
        "| ovnlbd CPU over the run | {:.2} s ({:.0}% of one core) |",
        cpu1 - cpu0,
        100.0 * (cpu1 - cpu0) / converged.as_secs_f64()
    );
    println!(
        "| ovnlbd RSS at the end / peak | {:.1} / {:.1} MiB |",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    println!(
        "| NB echo round trip on ovnlbd's session, idle: mean / worst | {} |",
        e1.since(&e0)
    );
    println!(
        "| NB echo round trip on ovnlbd's session, while {clients} clients write: mean / worst | {} |",
        e2.since(&e1)
    );
    // One create at a time on top of the N present, each until NB holds it.
    let mut lat = Vec::new();
    for k in 0..100 {
        let body = lb(n + k);
        let t = Instant::now();
        c.request(
            Method::POST,
            "/1.0/networks/ovn1/load-balancers?wait=10",
            Some(&body),
            None,
        )
        .await
        .unwrap();
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "| one create at a time with {n} present, until NB holds it (`?wait`), p50 / p99 | {:.2} / {:.2} ms |",
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99)
    );
    // The server's floor for the same: one transaction inserting a row and attaching it
    // to the router and the switch (their sets hold every row), straight from a session.
    let find = |t: &str, n: &str| {
        watch.cache().read(|v| {
            v.rows(t)
                .find(|r| r.get_str("name") == Some(n))
                .map(|r| r.uuid)
                .unwrap()
        })
    };
    let (router, switch) = (
        find("Logical_Router", "lxd-net1-lr"),
        find("Logical_Switch", "lxd-net1-ls-int"),
    );
    let mut floor = Vec::new();
    for k in 0..100 {
        let u = uuid::Uuid::new_v4();
        let mut t = watch.transaction();
        let row: ovsdb::Row = [
            (
                "name".to_owned(),
                ovsdb::Datum::scalar(format!("floor-{k}")),
            ),
            (
                "protocol".to_owned(),
                ovsdb::Datum::scalar("tcp".to_owned()),
            ),
            (
                "vips".to_owned(),
                ovsdb::Datum::string_map([(
                    format!("{}:80", listen(2 * n + k)),
                    "10.0.0.11:8080".to_owned(),
                )]),
            ),
        ]
        .into();
        t.insert_with_uuid("Load_Balancer", u, row);
        for (table, target) in [("Logical_Router", router), ("Logical_Switch", switch)] {
            t.mutate(
                table,
                vec![ovsdb::Condition::uuid(target)],
                vec![ovsdb::Mutation::new(
                    "load_balancer",
                    ovsdb::Mutator::Insert,
                    ovsdb::Datum::from_atoms(vec![ovsdb::Atom::Uuid(u)]),
                )],
            );
        }
        let t0 = Instant::now();
        watch.transact(&t).await.unwrap();
        floor.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "| floor: that create as one raw transaction (insert + attach to router and switch), p50 / p99 | {:.2} / {:.2} ms |",
        pct(&mut floor, 0.5),
        pct(&mut floor, 0.99)
    );
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = daemon.wait();
    drop(watch);
    if std::env::var("BENCH_PEERS").is_ok_and(|v| !v.is_empty()) {
        peers().await;
    }
}
