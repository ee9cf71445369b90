//! High availability on OVNLB: three ovnlbd processes on a 3-member OVNLB cluster, one
//! NB. Every node serves the API; exactly one reconciles (the lease), and hands over
//! when it dies, stops or freezes.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hyper::Method;
use serde_json::json;

use common::{req, Cluster, Ovn};

/// One ovnlbd process on the OVNLB cluster.
struct Node {
    dir: tempfile::TempDir,
    child: Option<Child>,
    socket: PathBuf,
    args: Vec<String>,
}

impl Node {
    fn start(ovn: &Ovn, db: &Cluster) -> Node {
        Node::on(&ovn.nb.db(), db)
    }

    /// On the NB at `nb` (a server or a cluster's remotes).
    fn on(nb: &str, db: &Cluster) -> Node {
        let dir = tempfile::Builder::new()
            .prefix("ovnlbd-ha")
            .tempdir_in(common::tmp_base())
            .unwrap();
        let args = vec![
            format!("--dir={}", dir.path().display()),
            format!("--nb={nb}"),
            format!("--store=ovsdb:{}", db.db_string()),
            "--lease-seconds=3".into(),
            "--store-timeout-seconds=3".into(),
        ];
        let mut n = Node {
            socket: dir.path().join("unix.socket"),
            dir,
            child: None,
            args,
        };
        n.spawn();
        n
    }

    fn spawn(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("ovnlbd.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ovnlbd"))
            .args(&self.args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        common::wait_for_socket(&self.socket);
    }

    fn client(&self) -> ovnlb::cli::Client {
        ovnlb::cli::Client::unix(&self.socket)
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    }

    fn kill9(&mut self) {
        self.signal("KILL");
        let _ = self.child.take().unwrap().wait();
    }

    /// SIGTERM, and wait for the process to exit.
    fn stop(&mut self) {
        self.signal("TERM");
        let _ = self.child.take().unwrap().wait();
    }

    /// `environment.ovnlb_reconciler.state` of `/1.0` (`None`: no answer).
    async fn state(&self) -> Option<String> {
        self.child.as_ref()?;
        let c = self.client();
        let r = tokio::time::timeout(Duration::from_secs(2), req(&c, Method::GET, "/1.0", None))
            .await
            .ok()?
            .ok()?;
        r["environment"]["ovnlb_reconciler"]["state"]
            .as_str()
            .map(str::to_owned)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("ovnlbd.log")).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The states of the nodes, as they say.
async fn states(nodes: &[Node]) -> Vec<Option<String>> {
    let mut v = Vec::new();
    for n in nodes {
        v.push(n.state().await);
    }
    v
}

/// Wait until exactly one node (among the live ones) is active; its index.
async fn one_active(nodes: &[Node], secs: u64) -> usize {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let s = states(nodes).await;
        let active: Vec<usize> = (0..s.len())
            .filter(|&i| s[i].as_deref() == Some("active"))
            .collect();
        if active.len() == 1 {
            return active[0];
        }
        assert!(
            Instant::now() < deadline,
            "no single active node: {s:?}\n{}",
            nodes
                .iter()
                .map(Node::log)
                .collect::<Vec<_>>()
                .join("\n----\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn lb(listen: &str) -> serde_json::Value {
    json!({"listen_address": listen,
           "backends": [{"name": "c1", "target_address": "10.0.0.11", "target_port": "80"}],
           "ports": [{"protocol": "tcp", "listen_port": "80", "target_backend": ["c1"]}]})
}

/// Our NB rows by name: each exactly once.
fn names_once(ovn: &Ovn) -> Vec<String> {
    names_once_in(&ovn.nb.db())
}

async fn three() -> (Ovn, Cluster, Vec<Node>) {
    let ovn = Ovn::start();
    let db = Cluster::start_ovnlb();
    let nodes: Vec<Node> = (0..3).map(|_| Node::start(&ovn, &db)).collect();
    common::networks(&nodes[0].client()).await;
    (ovn, db, nodes)
}

async fn create(n: &Node, listen: &str) {
    req(
        &n.client(),
        Method::POST,
        "/1.0/networks/ovn1/load-balancers",
        Some(lb(listen)),
    )
    .await
    .unwrap();
}

async fn in_nb(ovn: &Ovn, names: &[&str]) {
    common::eventually(20, "the rows in NB", || {
        let have = names_once(ovn);
        names
            .iter()
            .all(|n| have.iter().any(|h| h == n))
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_serves_the_api_and_exactly_one_reconciles() {
    let (ovn, _lb, nodes) = three().await;
    let a = one_active(&nodes, 20).await;
    let (s1, s2) = ((a + 1) % 3, (a + 2) % 3);
    // Written through a standby, waiting until the active applied it (as NB's rows
    // tell the standby); read through every node at once.
    req(
        &nodes[s1].client(),
        Method::POST,
        "/1.0/networks/ovn1/load-balancers?wait=20",
        Some(lb("192.0.2.10")),
    )
    .await
    .unwrap();
    common::eventually_async(
        10,
        "the other standby's /state showing revision 1 applied",
        || async {
            let st = req(
                &nodes[s2].client(),
                Method::GET,
                "/1.0/networks/ovn1/load-balancers/192.0.2.10/state",
                None,
            )
            .await
            .unwrap();
            (st["applied_revision"].as_u64() == Some(1)).then_some(())
        },
    )
    .await;
    for n in &nodes {
        let got = req(
            &n.client(),
            Method::GET,
            "/1.0/networks/ovn1/load-balancers/192.0.2.10",
            None,
        )
        .await
        .unwrap();
        assert_eq!(got["listen_address"], "192.0.2.10");
    }
    // Two nodes on the same address: the second is refused.
    let e = req(
        &nodes[s2].client(),
        Method::POST,
        "/1.0/networks/ovn1/load-balancers",
        Some(lb("192.0.2.10")),
    )
    .await
    .unwrap_err();
    assert_eq!(e.0, 409, "{e:?}");
    in_nb(&ovn, &["ovnlb-ovn1-lb-192.0.2.10-tcp"]).await;
    let s = states(&nodes).await;
    assert_eq!(
        s.iter().filter(|s| s.as_deref() == Some("standby")).count(),
        2,
        "{s:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_active_hands_over_to_exactly_one_other() {
    let (ovn, _lb, mut nodes) = three().await;
    let a = one_active(&nodes, 20).await;
    create(&nodes[a], "192.0.2.10").await;
    in_nb(&ovn, &["ovnlb-ovn1-lb-192.0.2.10-tcp"]).await;
    nodes[a].kill9();
    let b = one_active(&nodes, 30).await;
    assert_ne!(a, b);
    let other = (0..3).find(|&i| i != a && i != b).unwrap();
    create(&nodes[other], "192.0.2.11").await;
    in_nb(
        &ovn,
        &[
            "ovnlb-ovn1-lb-192.0.2.10-tcp",
            "ovnlb-ovn1-lb-192.0.2.11-tcp",
        ],
    )
    .await;
    assert!(nodes[b].log().contains("reconciler lease won"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_releases_the_lease_for_a_standby() {
    let (_ovn, _lb, mut nodes) = three().await;
    let a = one_active(&nodes, 20).await;
    nodes[a].stop();
    assert!(
        nodes[a].log().contains("reconciler lease released"),
        "{}",
        nodes[a].log()
    );
    let b = one_active(&nodes, 30).await;
    assert_ne!(a, b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_active_wakes_up_fenced_and_stands_by() {
    let (ovn, _lb, nodes) = three().await;
    let a = one_active(&nodes, 20).await;
    nodes[a].signal("STOP");
    // Past the lease period: another takes over.
    let deadline = Instant::now() + Duration::from_secs(30);
    let b = loop {
        let s = states(&nodes).await;
        if let Some(b) = (0..3).find(|&i| i != a && s[i].as_deref() == Some("active")) {
            break b;
        }
        assert!(Instant::now() < deadline, "no takeover: {s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // A write while the old active sleeps, then it wakes.
    let other = (0..3).find(|&i| i != a && i != b).unwrap();
    create(&nodes[other], "192.0.2.12").await;
    nodes[a].signal("CONT");
    in_nb(&ovn, &["ovnlb-ovn1-lb-192.0.2.12-tcp"]).await;
    // It stands by, and the new active stays: no flip-flop over several lease periods.
    common::eventually_async(20, "the woken node standing by", || async {
        (nodes[a].state().await.as_deref() == Some("standby")).then_some(())
    })
    .await;
    // It learnt it from NB's fence refusing its first write, or from the lease refusing
    // its renewal, whichever it tried first.
    let log = nodes[a].log();
    assert!(
        log.contains("fenced out of NB by another ovnlbd: stepping down")
            || log.contains("reconciler lease taken by another ovnlbd"),
        "{log}"
    );
    for _ in 0..20 {
        assert_eq!(one_active(&nodes, 5).await, b);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    names_once(&ovn);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_quorum_the_api_answers_503() {
    let (_ovn, mut db, nodes) = three().await;
    let l = db.leader().unwrap();
    for i in 0..3 {
        if i != l {
            db.kill(i);
        }
    }
    let t0 = Instant::now();
    let e = req(
        &nodes[0].client(),
        Method::POST,
        "/1.0/networks/ovn1/load-balancers",
        Some(lb("192.0.2.20")),
    )
    .await
    .unwrap_err();
    assert_eq!(e.0, 503, "{e:?}");
    // A bound far above the 3 s store timeout: the request did not hang.
    assert!(t0.elapsed() < Duration::from_secs(30));
}

/// `schema` with `edit` applied, written to `dir` as `name`.
fn schema_variant(
    dir: &std::path::Path,
    name: &str,
    edit: impl FnOnce(&mut serde_json::Value),
) -> PathBuf {
    let mut s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(common::OVNLB_SCHEMA).unwrap()).unwrap();
    edit(&mut s);
    let p = dir.join(name);
    std::fs::write(&p, s.to_string()).unwrap();
    p
}

/// An additive OVNLB upgrade (`ovsdb-client convert` to a schema with a new column and a
/// new table) under running ovnlbd: their data stays, they keep writing, and the active
/// stays active. A schema the data violates is refused and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_additive_schema_upgrade_runs_under_live_ovnlbd() {
    let (ovn, db, nodes) = three().await;
    let a = one_active(&nodes, 20).await;
    create(&nodes[0], "192.0.2.10").await;
    let leader = db.members[db.leader().unwrap()].port;
    let remote = format!("tcp:127.0.0.1:{leader}");
    let next = schema_variant(db.dir.path(), "ovnlb-1.1.0.ovsschema", |s| {
        s["version"] = json!("1.1.0");
        s["tables"]["Network"]["columns"]["labels"] =
            json!({"type": {"key": "string", "value": "string", "min": 0, "max": "unlimited"}});
        s["tables"]["Note"] = json!({"columns": {"text": {"type": "string"}}, "isRoot": true});
    });
    let out = Command::new("ovsdb-client")
        .args(["convert", &remote])
        .arg(&next)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // Everything is there, and every node writes again (a session cut by the conversion
    // reconnects within the store's timeout).
    for (i, n) in nodes.iter().enumerate() {
        let got = req(
            &n.client(),
            Method::GET,
            "/1.0/networks/ovn1/load-balancers/192.0.2.10",
            None,
        )
        .await
        .unwrap();
        assert_eq!(got["listen_address"], "192.0.2.10");
        create(n, &format!("192.0.2.{}", 20 + i)).await;
    }
    in_nb(
        &ovn,
        &[
            "ovnlb-ovn1-lb-192.0.2.20-tcp",
            "ovnlb-ovn1-lb-192.0.2.21-tcp",
            "ovnlb-ovn1-lb-192.0.2.22-tcp",
        ],
    )
    .await;
    assert_eq!(
        one_active(&nodes, 10).await,
        a,
        "the upgrade moved the reconciler"
    );
    // An index the data breaks (two load balancers with one description): refused.
    let bad = schema_variant(db.dir.path(), "ovnlb-1.2.0-bad.ovsschema", |s| {
        s["version"] = json!("1.2.0");
        s["tables"]["Load_Balancer"]["indexes"] =
            json!([["network", "listen_address"], ["description"]]);
    });
    let out = Command::new("ovsdb-client")
        .args(["convert", &remote])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    let v = Command::new("ovsdb-client")
        .args(["get-schema-version", &remote, "OVNLB"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&v.stdout).trim(), "1.1.0");
}

/// Our NB rows' names in a cluster (read from any member), each once.
fn names_once_in(nb: &str) -> Vec<String> {
    let mut names: Vec<String> = common::dump(nb, &["Load_Balancer"])
        .remove("Load_Balancer")
        .unwrap_or_default()
        .into_values()
        .filter(|r| r["external_ids"].map_get("ovnlb:owner") == Some("ovnlb"))
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    let n = names.len();
    names.dedup();
    assert_eq!(names.len(), n, "an NB row twice: {names:?}");
    names
}

/// The listen addresses of `ovn1`'s load balancers, as the node of `c` lists them, sorted.
async fn listed(c: &ovnlb::cli::Client) -> Vec<String> {
    let v = req(
        c,
        Method::GET,
        "/1.0/networks/ovn1/load-balancers?recursion=1",
        None,
    )
    .await
    .unwrap();
    let mut have: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["listen_address"].as_str().unwrap().to_owned())
        .collect();
    have.sort();
    have
}

/// What a write through the API came to.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// 201: acknowledged, must exist.
    Acked,
    /// 5xx, a timeout or a broken connection: may exist.
    Unknown,
}

/// The proof, on real 3-member clusters for both NB and OVNLB: 8 clients create
/// load balancers through all three ovnlbd while the OVNLB leader is killed, NB's
/// leadership transferred, NB's leader killed and OVNLB's leadership transferred. Every
/// acknowledged create exists on every node, nothing exists twice, and NB ends equal to
/// the desired state, each row once, with one active reconciler.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaders_of_both_clusters_die_under_8_clients_and_nothing_acknowledged_is_lost_or_doubled()
{
    common::init_tracing();
    let mut nb = Cluster::start();
    let nb_db = nb.db_string();
    let topo = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/sandbox.sh"))
        .args(["topology", &nb_db])
        .status()
        .unwrap();
    assert!(topo.success());
    let mut db = Cluster::start_ovnlb();
    let nodes: Vec<Node> = (0..3).map(|_| Node::on(&nb_db, &db)).collect();
    let c0 = nodes[0].client();
    req(
        &c0,
        Method::POST,
        "/1.0/networks",
        Some(json!({"name": "uplink", "type": "physical",
                    "config": {"ipv4.routes": "198.18.0.0/15"}})),
    )
    .await
    .unwrap();
    req(
        &c0,
        Method::POST,
        "/1.0/networks",
        Some(json!({"name": "ovn1", "type": "ovn",
                    "config": {"network": "uplink", "ovn.router": "lxd-net1-lr",
                               "ovn.switch": "lxd-net1-ls-int"}})),
    )
    .await
    .unwrap();
    one_active(&nodes, 20).await;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for k in 0..8usize {
        let c = nodes[k % 3].client();
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let mut out = Vec::new();
            let mut i = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let addr = format!("198.18.{k}.{}", i % 250 + 1);
                i += 1;
                let body = lb(&addr);
                let r = tokio::time::timeout(
                    Duration::from_secs(20),
                    c.request(
                        Method::POST,
                        "/1.0/networks/ovn1/load-balancers",
                        Some(&body),
                        None,
                    ),
                )
                .await;
                let o = match r {
                    Ok(Ok(r)) if r.status == 201 => Outcome::Acked,
                    Ok(Err(ovnlb::cli::ClientError::Api { status, message })) if status < 500 => {
                        panic!("{addr}: {status} {message}")
                    }
                    _ => Outcome::Unknown,
                };
                out.push((addr, o));
                if i == 250 {
                    break;
                }
            }
            out
        }));
    }
    let pause = || tokio::time::sleep(Duration::from_millis(1500));
    pause().await;
    let l = db.leader().expect("an OVNLB leader");
    db.kill(l);
    pause().await;
    db.spawn_member(l);
    pause().await;
    let l = nb.leader().expect("an NB leader");
    nb.transfer_leadership(l);
    pause().await;
    let l = nb.leader().expect("an NB leader");
    nb.kill(l);
    pause().await;
    nb.spawn_member(l);
    pause().await;
    let l = db.leader().expect("an OVNLB leader");
    db.transfer_leadership(l);
    pause().await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut outcomes = Vec::new();
    for w in writers {
        outcomes.extend(w.await.unwrap());
    }
    let acked: Vec<&str> = outcomes
        .iter()
        .filter(|(_, o)| *o == Outcome::Acked)
        .map(|(a, _)| a.as_str())
        .collect();
    assert!(
        acked.len() > 50,
        "too few writes went through: {outcomes:?}"
    );

    // Every acknowledged create, on every node.
    for n in &nodes {
        let mut have = listed(&n.client()).await;
        let n_have = have.len();
        have.dedup();
        assert_eq!(have.len(), n_have, "a load balancer listed twice");
        for a in &acked {
            assert!(have.iter().any(|h| h == a), "acknowledged {a} lost");
        }
        for h in &have {
            assert!(outcomes.iter().any(|(a, _)| a == h), "{h} never written");
        }
    }
    // NB ends equal to the desired state, each row once, one active.
    let mut want: Vec<String> = listed(&c0)
        .await
        .iter()
        .map(|a| format!("ovnlb-ovn1-lb-{a}-tcp"))
        .collect();
    want.sort();
    common::eventually(60, "NB equal to the desired state", || {
        (names_once_in(&nb_db) == want).then_some(())
    })
    .await;
    one_active(&nodes, 20).await;
    let unknown = outcomes.len() - acked.len();
    eprintln!(
        "{} acknowledged, {unknown} unknown, {} exist",
        acked.len(),
        want.len()
    );
}
