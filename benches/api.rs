//! API benchmark (issue 4): sustained creates through ovnlbd's REST API, one load
//! balancer per request from several clients, until N exist, with NB converged.
//!
//! ovnlbd runs as its own process (the release binary) on a state dir on disk, against a
//! fresh NB (tmpfs). Each client opens a connection per request, as lxc does. A watcher
//! with its own NB session sees each row appear: "applied in NB" is measured from the
//! moment the request is sent to the moment a third party sees the row in NB.
//!
//! Run: `scripts/bench-api.sh` (or `cargo bench --bench api`); env `N` (10000),
//! `CLIENTS` (8), `STATE_DIR` (default /tmp, on disk: every acknowledged write is
//! fsynced).

#[allow(missing_docs)]
#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::Method;
use ovnlb::cli::Client;
use ovnlb::reconcile::plan::listen_index;
use serde_json::json;

fn listen(i: usize) -> String {
    format!("198.{}.{}.{}", 18 + i / 65536, (i / 256) % 256, i % 256)
}

fn lb(i: usize) -> serde_json::Value {
    let t = |k: usize| format!("10.0.{}.{}", (i / 250) % 250, (i + k) % 250 + 1);
    json!({"listen_address": listen(i),
           "backends": [{"name": "b1", "target_address": t(0), "target_port": "8080"},
                        {"name": "b2", "target_address": t(1), "target_port": "8080"}],
           "ports": [{"protocol": "tcp", "listen_port": "80", "target_backend": ["b1", "b2"]}]})
}

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

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let clients: usize = std::env::var("CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let state_base = std::env::var("STATE_DIR").unwrap_or_else(|_| "/tmp".into());
    let nb = common::OvsdbServer::start();
    let topo = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/sandbox.sh"))
        .arg("topology")
        .arg(nb.db())
        .output()
        .unwrap();
    assert!(topo.status.success());
    let state = tempfile::tempdir_in(&state_base).unwrap();
    let sock = state.path().join("unix.socket");
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_ovnlbd"))
        .arg("--nb")
        .arg(format!("unix:{}", nb.sock.display()))
        .arg("--dir")
        .arg(state.path())
        .env("RUST_LOG", "warn")
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = daemon.id();
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
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = daemon.wait();
}
