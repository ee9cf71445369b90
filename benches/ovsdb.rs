//! OVSDB client benchmark, side by side with the peers in one run (issue 2):
//!
//! - 10,000 `Load_Balancer` rows (one VIP, 4 backends, `external_ids`, all referenced from
//!   one `Logical_Router`) inserted (a) by our client in one transaction, (b) as the same
//!   pre-built JSON written raw to the socket (the floor), (c) by one batched `ovn-nbctl`
//!   call, (d) by python ovsdbapp in one transaction; each on a fresh ovsdb-server;
//! - cache load of those rows: ours vs the python-ovs IDL's initial sync;
//! - 1,000 small updates, pipelined vs one at a time;
//! - RSS of a process holding the 10,000 cached rows.
//!
//! Run: `scripts/bench-ovsdb.sh` (or `cargo bench --bench ovsdb`); `N=1000` for a
//! smaller run. Prints a Markdown table. `BENCH_DEBUG=1` prints the phases of (a) and (b)
//! (and traces with `RUST_LOG=ovnlb=trace`); `BENCH_ONLY_INSERT=1` stops after them.

#[allow(missing_docs)]
#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::OvsdbServer;
use ovnlb::ovsdb::{
    self, Atom, Cache, Condition, ConnectConfig, Datum, Framer, MonitorRequests, MonitorSelect,
    Mutation, Mutator, Row, Transaction,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PY: &str = "/usr/bin/python3";

fn lb_fields(i: usize) -> (String, String, String) {
    let vip = format!("198.{}.{}.{}:80", 18 + i / 65536, (i / 256) % 256, i % 256);
    let backends: Vec<String> = (1..=4)
        .map(|b| format!("10.{}.{}.{}:8080", i / 65536, (i / 256) % 256, b))
        .collect();
    (format!("bench-lb-{i:05}"), vip, backends.join(","))
}

/// The input data, prepared before any timer (as the raw JSON and the ovn-nbctl script
/// are): names, VIPs and backend lists as strings.
type Fields = Vec<(String, String, String)>;

fn lb_row(i: usize, f: &(String, String, String)) -> Row {
    let (name, vip, backends) = f.clone();
    Row::from([
        ("name".to_owned(), Datum::scalar(name)),
        ("protocol".to_owned(), Datum::scalar("tcp")),
        ("vips".to_owned(), Datum::string_map([(vip, backends)])),
        (
            "external_ids".to_owned(),
            Datum::string_map([
                ("ovnlb:owner".to_owned(), "bench".to_owned()),
                ("ovnlb:index".to_owned(), i.to_string()),
            ]),
        ),
    ])
}

/// The whole insert as one checked transaction, from the prepared strings.
fn build_txn(fields: &Fields, schema: &Arc<ovsdb::DatabaseSchema>) -> Transaction {
    let mut t = Transaction::with_schema(schema.clone());
    let refs: Vec<Atom> = fields
        .iter()
        .enumerate()
        .map(|(i, f)| t.insert("Load_Balancer", lb_row(i, f)))
        .collect();
    t.mutate(
        "Logical_Router",
        vec![Condition::eq("name", Datum::scalar("bench-lr"))],
        vec![Mutation::new(
            "load_balancer",
            Mutator::Insert,
            Datum::set(refs),
        )],
    );
    t
}

fn fresh_server() -> OvsdbServer {
    let srv = OvsdbServer::start();
    srv.nbctl(&["lr-add", "bench-lr"]);
    srv
}

fn check_attached(srv: &OvsdbServer, n: usize) {
    let d = srv.dump(&["Logical_Router", "Load_Balancer"]);
    assert_eq!(d["Load_Balancer"].len(), n, "rows inserted");
    let lr = d["Logical_Router"].values().next().unwrap();
    assert_eq!(lr["load_balancer"].len(), n, "rows attached");
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn ours_insert(fields: &Fields) -> (f64, OvsdbServer) {
    let n = fields.len();
    let srv = fresh_server();
    let client = common::connect(&srv.unix(), &ConnectConfig::default()).await;
    let schema = Arc::new(ovsdb::ovn_nb_schema());
    let t0 = Instant::now();
    let txn = build_txn(fields, &schema);
    let t1 = Instant::now();
    client.transact(&txn).await.unwrap();
    let el = ms(t0.elapsed());
    if std::env::var("BENCH_DEBUG").is_ok() {
        eprintln!(
            "  (a) build {:.1} ms, transact {:.1} ms",
            ms(t1 - t0),
            ms(t1.elapsed())
        );
    }
    check_attached(&srv, n);
    (el, srv)
}

async fn raw_insert(n: usize, bytes: &[u8]) -> f64 {
    let srv = fresh_server();
    let mut s = tokio::net::UnixStream::connect(&srv.sock).await.unwrap();
    let mut framer = Framer::default();
    let mut buf = vec![0u8; 64 * 1024];
    let t0 = Instant::now();
    s.write_all(bytes).await.unwrap();
    let written = t0.elapsed();
    loop {
        let k = s.read(&mut buf).await.unwrap();
        assert!(k > 0);
        framer.extend(&buf[..k]);
        if framer.next_frame().unwrap().is_some() {
            break;
        }
    }
    let el = ms(t0.elapsed());
    if std::env::var("BENCH_DEBUG").is_ok() {
        eprintln!(
            "  (b) written after {:.1} ms, reply complete at {el:.1} ms",
            ms(written)
        );
    }
    check_attached(&srv, n);
    el
}

fn nbctl_insert(n: usize) -> f64 {
    let srv = fresh_server();
    let mut script = format!("ovn-nbctl --db={} --no-leader-only", srv.db());
    for i in 0..n {
        let (name, vip, backends) = lb_fields(i);
        script.push_str(&format!(
            " -- --id=@lb{i} create Load_Balancer name={name} protocol=tcp 'vips:\"{vip}\"=\"{backends}\"' \
             'external_ids:\"ovnlb:owner\"=bench' 'external_ids:\"ovnlb:index\"=\"{i}\"'"
        ));
    }
    script.push_str(" -- add Logical_Router bench-lr load_balancer");
    for i in 0..n {
        script.push_str(&format!(" @lb{i}"));
    }
    script.push_str(" >/dev/null\n");
    let path = srv.dir.path().join("nbctl.sh");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    // One invocation with 10,000 commands exceeds ARG_MAX: run it under `ulimit -s unlimited`.
    let t0 = Instant::now();
    let st = Command::new("bash")
        .arg("-c")
        .arg(format!("ulimit -s unlimited; . {}", path.display()))
        .status()
        .unwrap();
    let el = ms(t0.elapsed());
    assert!(st.success());
    check_attached(&srv, n);
    el
}

fn python(args: &[&str]) -> serde_json::Value {
    let out = Command::new(PY)
        .arg("scripts/bench_python_peers.py")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn ovsdbapp_insert(n: usize) -> (f64, f64) {
    let srv = fresh_server();
    let t0 = Instant::now();
    let v = python(&["ovsdbapp-insert", &srv.db(), &n.to_string()]);
    let total = ms(t0.elapsed());
    check_attached(&srv, n);
    (v["txn"].as_f64().unwrap() * 1000.0, total)
}

fn lb_monitor() -> MonitorRequests {
    BTreeMap::from([
        ("Load_Balancer".to_owned(), MonitorSelect::default()),
        ("Logical_Router".to_owned(), MonitorSelect::default()),
    ])
}

/// A cache of the load balancers and routers, loaded through `client`.
async fn load_cache(client: &ovsdb::Client) -> Arc<Cache> {
    let cache = Cache::new(Arc::new(ovsdb::ovn_nb_schema()), lb_monitor(), vec![]);
    let id = serde_json::json!("m");
    client
        .monitor("OVN_Northbound", &id, &lb_monitor(), None, cache.clone())
        .await
        .unwrap();
    cache
}

async fn cache_load(srv: &OvsdbServer, n: usize) -> f64 {
    let t0 = Instant::now();
    let client = common::connect(&srv.unix(), &ConnectConfig::default()).await;
    let cache = load_cache(&client).await;
    let el = ms(t0.elapsed());
    assert_eq!(cache.rows("Load_Balancer").len(), n);
    el
}

/// The floor for a cache load: the same monitor request on a raw socket, until the whole
/// reply has arrived (nothing decoded).
async fn raw_monitor(srv: &OvsdbServer) -> f64 {
    let t0 = Instant::now();
    let mut s = tokio::net::UnixStream::connect(&srv.sock).await.unwrap();
    let req = serde_json::json!({"id": 1, "method": "monitor_cond_since",
        "params": ["OVN_Northbound", "m", {"Load_Balancer": [{}], "Logical_Router": [{}]}, ovsdb::ZERO_TXN_ID]});
    s.write_all(req.to_string().as_bytes()).await.unwrap();
    let mut framer = Framer::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let k = s.read(&mut buf).await.unwrap();
        assert!(k > 0);
        framer.extend(&buf[..k]);
        if framer.next_frame().unwrap().is_some() {
            return ms(t0.elapsed());
        }
    }
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Child mode: hold the cache and report RSS (before connecting, and with the rows).
async fn rss_child(sock: &str) {
    let before = rss_kb();
    let (client, conn) = ovsdb::connect(&sock.parse().unwrap(), &ConnectConfig::default())
        .await
        .unwrap();
    tokio::spawn(conn.run());
    let cache = load_cache(&client).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    println!(
        "{} {} {}",
        before,
        rss_kb(),
        cache.rows("Load_Balancer").len()
    );
}

async fn updates(srv: &OvsdbServer, pipelined: bool) -> f64 {
    let client = common::connect(&srv.unix(), &ConnectConfig::default()).await;
    let schema = Arc::new(ovsdb::ovn_nb_schema());
    let d = srv.dump(&["Load_Balancer"]);
    let uuids: Vec<_> = d["Load_Balancer"].keys().take(1000).copied().collect();
    let txns: Vec<Transaction> = uuids
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let mut t = Transaction::with_schema(schema.clone());
            t.mutate(
                "Load_Balancer",
                vec![Condition::uuid(*u)],
                vec![Mutation::new(
                    "external_ids",
                    Mutator::Insert,
                    Datum::string_map([("k", format!("{pipelined}{i}"))]),
                )],
            );
            t
        })
        .collect();
    let t0 = Instant::now();
    if pipelined {
        let hs: Vec<_> = txns
            .into_iter()
            .map(|t| {
                let c = client.clone();
                tokio::spawn(async move { c.transact(&t).await.unwrap() })
            })
            .collect();
        for h in hs {
            h.await.unwrap();
        }
    } else {
        for t in &txns {
            client.transact(t).await.unwrap();
        }
    }
    ms(t0.elapsed())
}

#[tokio::main]
async fn main() {
    if let Ok(sock) = std::env::var("OVNLB_BENCH_RSS_CHILD") {
        return rss_child(&sock).await;
    }
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` / listing: nothing to run.
    }
    if std::env::var("BENCH_DEBUG").is_ok() {
        common::init_tracing();
    }
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let runs = 5;
    eprintln!("benchmark: {n} load balancers, {runs} runs of the fast cases");

    let fields: Fields = (0..n).map(lb_fields).collect();
    let bytes = {
        let t = build_txn(&fields, &Arc::new(ovsdb::ovn_nb_schema()));
        let mut v = Vec::new();
        serde_json::to_writer(
            &mut v,
            &serde_json::json!({"id": 1, "method": "transact", "params": t.params()}),
        )
        .unwrap();
        v
    };
    let mut a = vec![];
    let mut b = vec![];
    let mut keep = None;
    // Alternate which goes first: the server's commit time drifts between runs.
    for r in 0..runs {
        if r % 2 == 1 {
            b.push(raw_insert(n, &bytes).await);
        }
        let (t, srv) = ours_insert(&fields).await;
        a.push(t);
        keep = Some(srv);
        if r % 2 == 0 {
            b.push(raw_insert(n, &bytes).await);
        }
    }
    let srv = keep.unwrap();
    let (a, b) = (median(a), median(b));
    eprintln!("(a) ours {a:.0} ms, (b) raw {b:.0} ms");
    if std::env::var("BENCH_ONLY_INSERT").is_ok() {
        return;
    }
    let c = nbctl_insert(n);
    eprintln!("(c) ovn-nbctl {c:.0} ms");
    let (d_txn, d_total) = ovsdbapp_insert(n);
    eprintln!("(d) ovsdbapp {d_txn:.0} ms ({d_total:.0} ms with interpreter start)");

    let mut ours_load = vec![];
    let mut floor_load = vec![];
    let mut idl_load = vec![];
    let mut idl_rss = 0;
    for _ in 0..runs {
        floor_load.push(raw_monitor(&srv).await);
        ours_load.push(cache_load(&srv, n).await);
        let v = python(&["idl-load", &srv.db()]);
        assert_eq!(v["rows"].as_u64(), Some(n as u64));
        idl_load.push(v["load"].as_f64().unwrap() * 1000.0);
        idl_rss = v["rss_kb"].as_u64().unwrap();
    }
    let (ours_load, idl_load, floor_load) =
        (median(ours_load), median(idl_load), median(floor_load));
    eprintln!("cache load: ours {ours_load:.1} ms, python IDL {idl_load:.1} ms");

    let out = Command::new(std::env::current_exe().unwrap())
        .env("OVNLB_BENCH_RSS_CHILD", srv.unix().to_string())
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&out.stdout);
    let f: Vec<u64> = line
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    let (rss_before, rss_after) = (f[0], f[1]);
    assert_eq!(f[2], n as u64);

    let piped = median(vec![
        updates(&srv, true).await,
        updates(&srv, true).await,
        updates(&srv, true).await,
    ]);
    let serial = median(vec![
        updates(&srv, false).await,
        updates(&srv, false).await,
        updates(&srv, false).await,
    ]);

    println!("| measurement ({n} load balancers) | result |");
    println!("|---|---|");
    println!(
        "| (a) ours: rows + checked transaction built from the strings, committed | {a:.0} ms |"
    );
    println!("| (b) raw pre-built JSON on the socket (floor) | {b:.0} ms |");
    println!(
        "| (a)/(b) | {:.2}x (target ≤ 1.2x); (a) − (b) = {:.0} ms of client work |",
        a / b,
        a - b
    );
    println!("| (c) one batched ovn-nbctl (`ulimit -s unlimited`) | {c:.0} ms |");
    println!("| (d) python ovsdbapp, one transaction (in-process) | {d_txn:.0} ms |");
    println!("| cache load, ours (connect + monitor reply applied) | {ours_load:.1} ms |");
    println!("| cache load, python-ovs IDL initial sync | {idl_load:.1} ms |");
    println!(
        "| cache load floor: raw monitor reply on the socket, undecoded | {floor_load:.1} ms |"
    );
    println!(
        "| IDL / ours, end to end | {:.1}x (target ≥ 5x) |",
        idl_load / ours_load
    );
    println!(
        "| client-side cost above the floor: ours / IDL | {:.1} ms / {:.1} ms ({:.0}x) |",
        ours_load - floor_load,
        idl_load - floor_load,
        (idl_load - floor_load) / (ours_load - floor_load).max(0.1)
    );
    println!("| RSS of a process holding the rows: ours | {:.1} MB ({:.1} MB before connecting) (target < 40 MB) |", rss_after as f64 / 1024.0, rss_before as f64 / 1024.0);
    println!(
        "| RSS: python-ovs IDL holding the same rows | {:.1} MB |",
        idl_rss as f64 / 1024.0
    );
    println!(
        "| 1,000 single-op updates, pipelined | {piped:.0} ms ({:.0} µs/op) |",
        piped
    );
    println!(
        "| 1,000 single-op updates, one at a time | {serial:.0} ms ({:.0} µs/op) |",
        serial
    );
}
