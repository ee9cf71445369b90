//! Health-check benchmark (issue 11), two parts. Prints Markdown tables.
//!
//! 1. Detection delay on the real data plane (userspace OVS and ovn-controller in
//!    network namespaces, `scripts/dataplane.sh`): for each setting of interval /
//!    timeout / success_count / failure_count, one load balancer over c1 and c2 with
//!    ovnlbd (the release binary) reading the SB; c1's listener stopped (closed port:
//!    the host answers RST) and started again, then c1's link set down (silent host) and
//!    up: the time until ovnlbd's `/state` says `offline` / `online`, polled every 20 ms.
//! 2. `/state` with 10,000 checked backends: 10,000 switch ports, 100 load balancers of
//!    100 backends each with checks on, northd's 10,000 `Service_Monitor` rows in SB;
//!    `GET …/state` latency over the load balancers, and ovnlbd's RSS; then switch-port
//!    churn: 200 ports of no backend added one transaction each (ovnlbd's CPU time
//!    spent on them), and one backend's port recreated under a new name (the time until
//!    NB's `ip_port_mappings` names it).
//!
//! `scripts/bench-health.sh`; `BENCH_HEALTH_QUICK=1` runs one setting only.

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Dataplane, Ovn};
use hyper::Method;
use ovnlb::cli::Client;
use ovnlb::ovsdb::{Atom, Condition, Datum, Function, Mutation, Mutator, Row};
use serde_json::{json, Value};

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

/// VmRSS and VmHWM (KiB) of a process.
fn rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (kb("VmRSS:"), kb("VmHWM:"))
}

/// The ovnlbd child, killed when dropped (also when the benchmark panics).
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// ovnlbd, the release binary, on `ovn`'s NB and SB, with `uplink` and `ovn1`
/// (`ipv4.address`: `subnet`).
async fn ovnlbd(ovn: &Ovn, subnet: &str) -> (tempfile::TempDir, Child, Client) {
    let state = tempfile::tempdir_in("/tmp").unwrap();
    let sock = state.path().join("unix.socket");
    let child = Command::new(env!("CARGO_BIN_EXE_ovnlbd"))
        .arg("--nb")
        .arg(ovn.nb.db())
        .arg("--sb")
        .arg(ovn.sb_db())
        .arg("--dir")
        .arg(state.path())
        .env("RUST_LOG", "warn")
        .spawn()
        .map(Child)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        assert!(Instant::now() < deadline, "ovnlbd did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let c = Client::unix(&sock);
    for body in [
        json!({"name": "uplink", "type": "physical",
               "config": {"ipv4.routes": "192.0.2.0/24", "ipv6.routes": "2001:db8::/64"}}),
        json!({"name": "ovn1", "type": "ovn", "config": {"network": "uplink", "ovn.router": "lxd-net1-lr",
               "ovn.switch": "lxd-net1-ls-int", "ipv4.address": subnet, "ipv6.address": "fd00::1/64"}}),
    ] {
        c.request(Method::POST, "/1.0/networks", Some(&body), None)
            .await
            .unwrap();
    }
    (state, child, c)
}

async fn status(c: &Client, listen: &str, backend: &str) -> Option<String> {
    let r = c
        .get(&format!("/1.0/networks/ovn1/load-balancers/{listen}/state"))
        .await
        .ok()?;
    r.metadata["backend_health"][backend]["ports"][0]["status"]
        .as_str()
        .map(str::to_owned)
}

/// Seconds until `backend` of `listen` reads `want` (polled every 20 ms, at most 600 s).
async fn until(c: &Client, listen: &str, backend: &str, want: &str) -> f64 {
    let t0 = Instant::now();
    while status(c, listen, backend).await.as_deref() != Some(want) {
        assert!(
            t0.elapsed() < Duration::from_secs(600),
            "{backend} never {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    t0.elapsed().as_secs_f64()
}

fn link(dp: &Dataplane, backend: &str, up: bool) {
    let out = Command::new("ip")
        .args(["netns", "exec", &format!("{}-{backend}", dp.ns)])
        .args(["ip", "link", "set", "eth0", if up { "up" } else { "down" }])
        .output()
        .unwrap();
    assert!(out.status.success());
}

async fn detection(settings: &[(u32, u32, u32, u32)]) {
    println!("| interval / timeout / success / failure (s, s, n, n) | closed port → offline | started → online | silent host → offline | link up → online |");
    println!("|---|---|---|---|---|");
    for &(interval, timeout, success, failure) in settings {
        let ovn = Ovn::start();
        let mut dp = Dataplane::start(&ovn.sb_db());
        let (_state, child, c) = ovnlbd(&ovn, "10.0.0.1/24").await;
        let body = json!({"listen_address": "192.0.2.10",
            "config": {"healthcheck": "true", "healthcheck.interval": interval.to_string(),
                       "healthcheck.timeout": timeout.to_string(),
                       "healthcheck.success_count": success.to_string(),
                       "healthcheck.failure_count": failure.to_string()},
            "backends": [{"name": "c1", "target_address": "10.0.0.11", "target_port": "8080"},
                         {"name": "c2", "target_address": "10.0.0.12", "target_port": "8080"}],
            "ports": [{"protocol": "tcp", "listen_port": "80", "target_backend": ["c1", "c2"]}]});
        c.request(
            Method::POST,
            "/1.0/networks/ovn1/load-balancers?wait=30",
            Some(&body),
            None,
        )
        .await
        .unwrap();
        until(&c, "192.0.2.10", "c1", "online").await;
        until(&c, "192.0.2.10", "c2", "online").await;
        dp.stop_backend("c1");
        let closed = until(&c, "192.0.2.10", "c1", "offline").await;
        dp.start_backend("c1");
        let back = until(&c, "192.0.2.10", "c1", "online").await;
        link(&dp, "c1", false);
        let silent = until(&c, "192.0.2.10", "c1", "offline").await;
        link(&dp, "c1", true);
        let up = until(&c, "192.0.2.10", "c1", "online").await;
        println!(
            "| {interval} / {timeout} / {success} / {failure} | {closed:.2} s | {back:.2} s | {silent:.2} s | {up:.2} s |"
        );
        drop(child);
    }
}

/// 10,000 switch ports on the internal switch, in one transaction: `b<i>` carrying
/// 10.0.<i/250 + 1>.<i%250+2>.
async fn switch_ports(ovn: &Ovn, n: usize) {
    let s = common::nb_session(ovn.nb.unix(), vec![]);
    s.cache().wait_ready().await;
    let mut t = s.transaction();
    let mut ports = Vec::new();
    for i in 0..n {
        let row = Row::from([
            ("name".to_owned(), Datum::scalar(format!("b{i}"))),
            (
                "addresses".to_owned(),
                Datum::set([format!(
                    "0a:00:00:{:02x}:{:02x}:{:02x} {}",
                    (i >> 16) & 0xff,
                    (i >> 8) & 0xff,
                    i & 0xff,
                    backend(i)
                )]),
            ),
        ]);
        ports.push(t.insert("Logical_Switch_Port", row));
    }
    attach(&mut t, ports);
    s.transact(&t).await.unwrap();
    s.shutdown();
}

/// ovnlbd's CPU time (user + system), in seconds.
fn cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command's closing parenthesis: fields 3…; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    let hz = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(100.0);
    f.iter().sum::<u64>() as f64 / hz
}

/// Add `ports` (inserted in `t`) to the internal switch.
fn attach(t: &mut ovnlb::ovsdb::Transaction, ports: Vec<Atom>) {
    mutate_ports(t, Mutator::Insert, ports);
}

/// Insert `ports` into, or delete them from, the internal switch's `ports`.
fn mutate_ports(t: &mut ovnlb::ovsdb::Transaction, m: Mutator, ports: Vec<Atom>) {
    t.mutate(
        "Logical_Switch",
        vec![Condition::new(
            "name",
            Function::Eq,
            Datum::scalar("lxd-net1-ls-int"),
        )],
        vec![Mutation::new("ports", m, Datum::from_atoms(ports))],
    );
}

/// One switch port on the internal switch, in its own transaction.
async fn add_port(s: &ovnlb::ovsdb::Session, name: &str, mac: &str, ip: &str) {
    let mut t = s.transaction();
    let row = Row::from([
        ("name".to_owned(), Datum::scalar(name)),
        ("addresses".to_owned(), Datum::set([format!("{mac} {ip}")])),
    ]);
    let port = t.insert("Logical_Switch_Port", row);
    attach(&mut t, vec![port]);
    s.transact(&t).await.unwrap();
}

/// Switch-port churn with `lbs` checked load balancers in place: (ovnlbd's CPU seconds
/// for 200 unrelated ports added one by one, seconds until a recreated backend port is
/// followed into NB).
async fn churn(ovn: &Ovn, pid: u32) -> (f64, f64) {
    let s = common::nb_session(ovn.nb.unix(), vec![]);
    s.cache().wait_ready().await;
    let before = cpu_s(pid);
    for i in 0..200 {
        add_port(
            &s,
            &format!("x{i}"),
            &format!("0a:01:00:00:{:02x}:{:02x}", i >> 8, i & 0xff),
            &format!("10.0.200.{}", i + 2),
        )
        .await;
    }
    // Until ovnlbd has taken them in: its CPU time stops growing for half a second.
    let mut last = cpu_s(pid);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = cpu_s(pid);
        if now - last < 0.01 {
            break;
        }
        last = now;
    }
    let spent = cpu_s(pid) - before;
    // b0 recreated as b0-new (same address): until NB's mapping names b0-new.
    let mut t = s.transaction();
    let b0 = s.cache().read(|v| {
        v.find_by("Logical_Switch_Port", "name", "b0")
            .iter()
            .map(|r| Atom::Uuid(r.uuid))
            .collect::<Vec<_>>()
    });
    mutate_ports(&mut t, Mutator::Delete, b0);
    s.transact(&t).await.unwrap();
    let t0 = Instant::now();
    add_port(&s, "b0-new", "0a:02:00:00:00:00", &backend(0)).await;
    let want = "b0-new:";
    loop {
        let named = common::lb_rows(ovn).iter().any(|(_, r)| {
            r.get("ip_port_mappings")
                .and_then(|m| m.map_get(&backend(0)))
                .is_some_and(|v| v.starts_with(want))
        });
        if named {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "b0-new never mapped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let followed = t0.elapsed().as_secs_f64();
    s.shutdown();
    (spent, followed)
}

fn backend(i: usize) -> String {
    // (From 10.0.1.2: the sandbox's own ports hold 10.0.0.11-13.)
    format!("10.0.{}.{}", i / 250 + 1, i % 250 + 2)
}

async fn many(lbs: usize, per: usize) {
    let ovn = Ovn::start();
    let t0 = Instant::now();
    switch_ports(&ovn, lbs * per).await;
    let ports_s = t0.elapsed().as_secs_f64();
    let (_state, child, c) = ovnlbd(&ovn, "10.0.0.1/16").await;
    let t1 = Instant::now();
    for l in 0..lbs {
        let backends: Vec<Value> = (0..per)
            .map(|j| json!({"name": format!("b{}", l * per + j), "target_address": backend(l * per + j), "target_port": "8080"}))
            .collect();
        let names: Vec<String> = (0..per).map(|j| format!("b{}", l * per + j)).collect();
        let body = json!({"listen_address": format!("192.0.2.{}", l + 1),
            "config": {"healthcheck": "true"}, "backends": backends,
            "ports": [{"protocol": "tcp", "listen_port": "80", "target_backend": names}]});
        c.request(
            Method::POST,
            "/1.0/networks/ovn1/load-balancers?wait=120",
            Some(&body),
            None,
        )
        .await
        .unwrap();
    }
    let create_s = t1.elapsed().as_secs_f64();
    // Until northd has made every monitor and ovnlbd's SB cache holds them.
    let t2 = Instant::now();
    loop {
        let (_, text) = c.text("/1.0/metrics").await.unwrap();
        let n = text
            .lines()
            .filter(|l| l.starts_with("ovnlb_backend_health{"))
            .count();
        if n >= lbs * per {
            break;
        }
        assert!(t2.elapsed() < Duration::from_secs(600), "only {n} monitors");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let monitors_s = t2.elapsed().as_secs_f64();
    let mut lat = Vec::new();
    for k in 0..500 {
        let listen = format!("192.0.2.{}", k % lbs + 1);
        let t = Instant::now();
        let r = c
            .get(&format!("/1.0/networks/ovn1/load-balancers/{listen}/state"))
            .await
            .unwrap();
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(
            r.metadata["backend_health"].as_object().map(|m| m.len()),
            Some(per)
        );
    }
    let (rss_kb, hwm_kb) = rss(child.0.id());
    let (churn_cpu, followed_s) = churn(&ovn, child.0.id()).await;
    println!(
        "| measurement ({} checked backends: {lbs} load balancers × {per}) | result |",
        lbs * per
    );
    println!("|---|---|");
    println!(
        "| {} switch ports inserted (one transaction) | {ports_s:.2} s |",
        lbs * per
    );
    println!("| {lbs} checked load balancers created through the API, each until NB holds it | {create_s:.2} s |");
    println!(
        "| until northd's {} Service_Monitor rows are in ovnlbd's SB cache | {monitors_s:.2} s |",
        lbs * per
    );
    println!(
        "| `GET …/state` of a load balancer with {per} checked backends, p50 / p99 (500 requests) | {:.2} / {:.2} ms |",
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99)
    );
    println!(
        "| ovnlbd RSS at the end / peak | {:.1} / {:.1} MiB |",
        rss_kb as f64 / 1024.0,
        hwm_kb as f64 / 1024.0
    );
    println!("| ovnlbd CPU time for 200 switch ports of no backend, added one transaction each | {churn_cpu:.2} s |");
    println!("| a backend's switch port recreated under a new name, until NB's mapping names it | {:.0} ms |", followed_s * 1000.0);
    drop(child);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::var_os("BENCH_HEALTH_QUICK").is_some();
    let settings: &[(u32, u32, u32, u32)] = if quick {
        &[(1, 1, 1, 2)]
    } else {
        &[(1, 1, 1, 2), (2, 1, 1, 2), (5, 3, 1, 1)]
    };
    if std::env::var_os("BENCH_HEALTH_SCALE_ONLY").is_none() {
        detection(settings).await;
        println!();
    }
    many(100, 100).await;
}
