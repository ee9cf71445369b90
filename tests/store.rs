//! The stores: CRUD with revisions and uniqueness in the database, the same rules on
//! SQLite and on OVNLB (standalone and a 3-member Raft cluster); SQLite's durability;
//! OVNLB under concurrent writers, lost leaders and lost quorum.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use ovnlb::lb::model::{ForwardsPost, LoadBalancerPut, LoadBalancersPost, ObjectKind};
use ovnlb::lb::state::resolve;
use ovnlb::lb::validate::Limits;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use ovnlb::store::ovsdb::{OvsdbStore, OvsdbStoreConfig};
use ovnlb::store::{Change, Objects, SqliteStore, Store, StoreError};

use common::net;

fn lb(listen: &str) -> LoadBalancersPost {
    serde_json::from_value(serde_json::json!({
        "listen_address": listen, "description": "web",
        "backends": [{"name": "b1", "target_address": "10.0.0.11", "target_port": "8080"}],
        "ports": [{"protocol": "tcp", "listen_port": "80", "target_backend": ["b1"]}]
    }))
    .unwrap()
}

fn seeded(s: &dyn Store) {
    s.create_network(&net(
        "uplink",
        "physical",
        &[("ipv4.routes", "192.0.2.0/24")],
    ))
    .unwrap();
    s.create_network(&net(
        "ovn1",
        "ovn",
        &[
            ("network", "uplink"),
            ("ovn.router", "r1"),
            ("ovn.switch", "s1"),
            ("ipv4.address", "10.0.0.1/24"),
        ],
    ))
    .unwrap();
    s.create_network(&net(
        "ovn2",
        "ovn",
        &[
            ("network", "uplink"),
            ("ovn.router", "r2"),
            ("ovn.switch", "s2"),
            ("ipv4.address", "10.0.0.1/24"),
        ],
    ))
    .unwrap();
}

/// The changes `rx` announces within a few seconds, until there are `n`.
fn changes(rx: &mut ovnlb::feed::FeedReceiver<Change>, n: usize) -> Vec<Change> {
    let mut got = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < n && Instant::now() < deadline {
        got.extend(rx.try_changed());
        std::thread::sleep(Duration::from_millis(5));
    }
    got.into_iter().collect()
}

#[test]
fn crud_revisions_and_uniqueness_in_the_database() {
    let s = SqliteStore::in_memory().unwrap();
    store_rules(&s);
}

/// The OVNLB engine keeps SQLite's rules: the same calls, the same answers.
#[test]
fn ovnlb_keeps_the_rules_of_sqlite() {
    let db = common::OvsdbServer::start_ovnlb();
    let (rt, s) = open_ovnlb(vec![db.unix()], Duration::from_secs(10));
    store_rules(&s);
    drop(s);
    drop(rt);
}

/// A multi-threaded runtime for the store's session, and the store on `remotes`.
fn open_ovnlb(
    remotes: Vec<ovnlb::ovsdb::Remote>,
    timeout: Duration,
) -> (tokio::runtime::Runtime, OvsdbStore) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let s = rt
        .block_on(OvsdbStore::open(OvsdbStoreConfig {
            remotes,
            tls: None,
            timeout,
        }))
        .unwrap();
    (rt, s)
}

fn store_rules(s: &dyn Store) {
    seeded(s);
    let mut changes = s.subscribe();
    assert_eq!(s.create("ovn1", &lb("192.0.2.10")).unwrap(), 1);
    let c = self::changes(&mut changes, 1);
    assert_eq!(
        c,
        [ovnlb::store::Change::object(
            "ovn1",
            ObjectKind::LoadBalancer,
            "192.0.2.10"
        )]
    );
    let got = s.get::<LoadBalancersPost>("ovn1", "192.0.2.10").unwrap();
    assert_eq!((got.value, got.revision), (lb("192.0.2.10"), 1));

    // Duplicate on the network: conflict. Same address on another network of the same
    // uplink, as a load balancer or a forward: conflict, from the database itself.
    assert!(matches!(
        s.create("ovn1", &lb("192.0.2.10")),
        Err(StoreError::Conflict(_))
    ));
    let e = s.create("ovn2", &lb("192.0.2.10")).unwrap_err();
    assert!(
        matches!(&e, StoreError::Conflict(m) if m.contains("overlaps with another network")),
        "{e}"
    );
    let f = ForwardsPost {
        listen_address: "192.0.2.10".into(),
        ..Default::default()
    };
    assert!(matches!(s.create("ovn2", &f), Err(StoreError::Conflict(_))));
    assert!(matches!(
        s.create("nope", &lb("192.0.2.11")),
        Err(StoreError::NotFound(_))
    ));

    // Update with If-Match: the right revision passes, a stale one fails.
    let mut put: LoadBalancerPut = lb("192.0.2.10").put;
    put.description = "changed".into();
    put.config.insert("user.k".into(), "v".into());
    assert_eq!(
        s.update::<LoadBalancersPost>("ovn1", "192.0.2.10", &put, Some(1))
            .unwrap(),
        2
    );
    let e = s
        .update::<LoadBalancersPost>("ovn1", "192.0.2.10", &put, Some(1))
        .unwrap_err();
    assert!(matches!(
        e,
        StoreError::PreconditionFailed {
            current: 2,
            expected: 1
        }
    ));
    let got = s.get::<LoadBalancersPost>("ovn1", "192.0.2.10").unwrap();
    assert_eq!(
        (
            got.value.put.description.as_str(),
            got.revision,
            got.value.put.config["user.k"].as_str()
        ),
        ("changed", 2, "v")
    );

    // Delete frees the address on the uplink.
    s.delete::<LoadBalancersPost>("ovn1", "192.0.2.10", Some(2))
        .unwrap();
    assert!(matches!(
        s.get::<LoadBalancersPost>("ovn1", "192.0.2.10"),
        Err(StoreError::NotFound(_))
    ));
    s.create("ovn2", &f).unwrap();
    assert_eq!(s.list::<ForwardsPost>("ovn2").unwrap().len(), 1);

    // Deleting a network takes its objects (and their addresses) along.
    s.delete_network("ovn2", None).unwrap();
    s.create("ovn1", &lb("192.0.2.10")).unwrap();
    assert!(matches!(s.network("ovn2"), Err(StoreError::NotFound(_))));
}

#[test]
fn desired_state_round_trip_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ovnlb.db");
    {
        let s = SqliteStore::open(&path).unwrap();
        seeded(&s);
        s.create("ovn1", &lb("192.0.2.10")).unwrap();
        s.update::<LoadBalancersPost>("ovn1", "192.0.2.10", &lb("192.0.2.10").put, None)
            .unwrap();
    }
    // Reopen: migrations are not run twice, data is there.
    let s = SqliteStore::open(&path).unwrap();
    let st = s.desired_state().unwrap();
    assert_eq!(st.networks.len(), 3);
    let nets = resolve(&st, &Limits::default(), None).unwrap();
    let ovn1 = nets.iter().find(|n| n.net.name == "ovn1").unwrap();
    assert_eq!(
        ovn1.load_balancers[0].1, 2,
        "revision carried into rendering"
    );
}

/// A change names its object's kind, so a reader takes it as what it is: a forward is
/// never read as a load balancer.
#[test]
fn a_change_names_the_kind_of_object_it_touched() {
    let s = SqliteStore::in_memory().unwrap();
    change_kinds(&s);
}

#[test]
fn ovnlb_changes_name_the_kind_of_object_they_touched() {
    let db = common::OvsdbServer::start_ovnlb();
    let (_rt, s) = open_ovnlb(vec![db.unix()], Duration::from_secs(10));
    change_kinds(&s);
}

fn change_kinds(s: &dyn Store) {
    seeded(s);
    let mut changes = s.subscribe();
    let f = ForwardsPost {
        listen_address: "192.0.2.20".into(),
        ..Default::default()
    };
    s.create("ovn1", &f).unwrap();
    s.create("ovn1", &lb("192.0.2.10")).unwrap();
    let c = self::changes(&mut changes, 2);
    assert_eq!(
        c,
        [
            ovnlb::store::Change::object("ovn1", ObjectKind::LoadBalancer, "192.0.2.10"),
            ovnlb::store::Change::object("ovn1", ObjectKind::Forward, "192.0.2.20"),
        ]
    );
    assert!(matches!(
        s.get::<LoadBalancersPost>("ovn1", "192.0.2.20"),
        Err(StoreError::NotFound(m)) if m == "Network load balancer"
    ));
    assert_eq!(
        s.get::<ForwardsPost>("ovn1", "192.0.2.20").unwrap().value,
        f
    );
}

/// The child half of `acknowledged_writes_survive_kill_9`.
#[test]
fn child_writer() {
    let Ok(path) = std::env::var("OVNLB_STORE_CHILD") else {
        return;
    };
    let s = SqliteStore::open(&path).unwrap();
    seeded(&s);
    for i in 0.. {
        s.create(
            "ovn1",
            &lb(&format!("192.0.{}.{}", 2 + i / 250, i % 250 + 1)),
        )
        .unwrap();
        println!("acked {i}");
    }
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ovnlb.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_writer", "--nocapture", "--test-threads=1"])
        .env("OVNLB_STORE_CHILD", &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acked = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("acked ") {
            let n: usize = n.parse().unwrap();
            acked = Some(n);
            if n >= 200 {
                break;
            }
        }
    }
    // SIGKILL mid-stream: no chance to flush anything.
    child.kill().unwrap();
    child.wait().unwrap();
    let acked = acked.expect("writes were acknowledged");
    let s = SqliteStore::open(&path).unwrap();
    let n = s.list::<LoadBalancersPost>("ovn1").unwrap().len();
    assert!(n > acked, "{n} stored, {} acknowledged", acked + 1);
}

/// A database opened while its file cannot be written (immutable) refuses writes, and
/// takes them again once the file is writable, without a restart.
#[test]
fn a_database_opened_read_only_recovers() {
    let dir = tempfile::tempdir_in(common::tmp_base()).unwrap();
    let path = dir.path().join("ovnlb.db");
    drop(SqliteStore::open(&path).unwrap());
    let chattr = |flag: &str| {
        Command::new("chattr")
            .arg(flag)
            .arg(&path)
            .status()
            .is_ok_and(|s| s.success())
    };
    if !chattr("+i") {
        // (chattr needs root and a file system with attributes: ext4, xfs, btrfs.)
        eprintln!("skipped: chattr +i is not possible here");
        return;
    }
    let s = SqliteStore::open(&path);
    let write = |s: &SqliteStore| {
        s.create_network(&net(
            "uplink",
            "physical",
            &[("ipv4.routes", "192.0.2.0/24")],
        ))
    };
    let refused = s.as_ref().map(write).map_err(ToString::to_string);
    assert!(chattr("-i"));
    match refused {
        Ok(Err(StoreError::Db(e))) => assert!(e.to_string().contains("readonly"), "{e}"),
        other => panic!("a write to an immutable database: {other:?}"),
    }
    let s = s.expect("an immutable database opens read-only");
    write(&s).expect("written once the file is writable again");
    assert_eq!(s.networks().unwrap().len(), 1);
}

/// Two ovnlbd on one OVNLB cluster create the same address at once (two load balancers
/// on two networks of one uplink, or a load balancer and a forward): one wins, the other
/// is refused with a conflict, every time.
#[test]
fn ovnlb_two_nodes_creating_one_address_at_once_one_wins() {
    let c = common::Cluster::start_ovnlb();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let open = |remotes: Vec<ovnlb::ovsdb::Remote>| {
        rt.block_on(OvsdbStore::open(OvsdbStoreConfig {
            remotes,
            tls: None,
            timeout: Duration::from_secs(10),
        }))
        .unwrap()
    };
    let mut r = c.remotes();
    let a = open(r.clone());
    r.rotate_left(1);
    let b = open(r);
    seeded(&a);
    for i in 0..20u32 {
        let addr = format!("192.0.2.{}", 100 + i);
        let f = ForwardsPost {
            listen_address: addr.clone(),
            ..Default::default()
        };
        let go = std::sync::Barrier::new(2);
        let (ra, rb) = std::thread::scope(|s| {
            let ha = s.spawn(|| {
                go.wait();
                a.create("ovn1", &lb(&addr))
            });
            let hb = s.spawn(|| {
                go.wait();
                if i % 2 == 0 {
                    b.create("ovn2", &lb(&addr))
                } else {
                    b.create("ovn2", &f)
                }
            });
            (ha.join().unwrap(), hb.join().unwrap())
        });
        let won = [&ra, &rb].iter().filter(|r| r.is_ok()).count();
        let lost = [&ra, &rb]
            .iter()
            .filter(|r| matches!(r, Err(StoreError::Conflict(_))))
            .count();
        assert_eq!((won, lost), (1, 1), "{addr}: {ra:?} / {rb:?}");
    }
}

/// Eight writers through three nodes while the leader is killed, restarted and moved:
/// every acknowledged create is stored, none twice; a write whose outcome the store could
/// not learn in time is reported unavailable, never as a conflict with itself.
#[test]
fn ovnlb_no_acknowledged_write_is_lost_or_doubled_when_leaders_die() {
    let mut c = common::Cluster::start_ovnlb();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut stores = Vec::new();
    let mut r = c.remotes();
    for _ in 0..3 {
        stores.push(
            rt.block_on(OvsdbStore::open(OvsdbStoreConfig {
                remotes: r.clone(),
                tls: None,
                timeout: Duration::from_secs(10),
            }))
            .unwrap(),
        );
        r.rotate_left(1);
    }
    seeded(&stores[0]);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (acked, unknown) = std::thread::scope(|s| {
        let writers: Vec<_> = (0..8u32)
            .map(|w| {
                let store = &stores[w as usize % 3];
                let stop = &stop;
                s.spawn(move || {
                    let (mut acked, mut unknown) = (Vec::new(), Vec::new());
                    for j in 0..2000u32 {
                        if stop.load(std::sync::atomic::Ordering::SeqCst) {
                            break;
                        }
                        let addr = format!("198.51.{}.{}", w * 8 + j / 250, j % 250 + 1);
                        match store.create("ovn1", &lb(&addr)) {
                            Ok(1) => acked.push(addr),
                            Err(StoreError::Unavailable(_)) => unknown.push(addr),
                            other => panic!("{addr}: {other:?}"),
                        }
                    }
                    (acked, unknown)
                })
            })
            .collect();
        let pause = |ms| std::thread::sleep(Duration::from_millis(ms));
        pause(500);
        for round in 0..2 {
            let l = common::eventually_blocking(15, "a leader", || c.leader());
            c.kill(l);
            pause(2500);
            c.spawn_member(l);
            pause(1500);
            if let Some(l) = c.leader() {
                c.transfer_leadership(l);
            }
            eprintln!("round {round}: leader {l} killed, restarted, leadership moved");
            pause(1000);
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut acked = Vec::new();
        let mut unknown = Vec::new();
        for w in writers {
            let (a, u) = w.join().unwrap();
            acked.extend(a);
            unknown.extend(u);
        }
        (acked, unknown)
    });
    assert!(
        acked.len() > 100,
        "only {} writes went through",
        acked.len()
    );
    for (i, s) in stores.iter().enumerate() {
        eprintln!("node {i}: {:?}", s.stats());
    }
    // Read back through a fresh session: the rows the cluster holds.
    drop(stores);
    let check = rt
        .block_on(OvsdbStore::open(OvsdbStoreConfig {
            remotes: c.remotes(),
            tls: None,
            timeout: Duration::from_secs(10),
        }))
        .unwrap();
    let stored: Vec<String> = check
        .list::<LoadBalancersPost>("ovn1")
        .unwrap()
        .into_iter()
        .map(|s| s.value.listen_address)
        .collect();
    let set: BTreeSet<&String> = stored.iter().collect();
    assert_eq!(set.len(), stored.len(), "an address stored twice");
    let lost: Vec<&String> = acked.iter().filter(|a| !set.contains(a)).collect();
    assert!(lost.is_empty(), "acknowledged and lost: {lost:?}");
    let strays = stored
        .iter()
        .filter(|a| !acked.contains(a) && !unknown.contains(a))
        .count();
    assert_eq!(strays, 0, "rows nobody wrote");
    eprintln!(
        "{} acknowledged, {} unknown (of which {} committed)",
        acked.len(),
        unknown.len(),
        unknown.iter().filter(|a| set.contains(a)).count()
    );
}

/// Without quorum a write fails as unavailable once the store's timeout has passed: it
/// does not hang, and it does not claim to have committed.
#[test]
fn ovnlb_without_quorum_a_write_fails_unavailable() {
    let mut c = common::Cluster::start_ovnlb();
    let (rt, s) = open_ovnlb(c.remotes(), Duration::from_secs(2));
    seeded(&s);
    let l = c.leader().unwrap();
    for i in 0..3 {
        if i != l {
            c.kill(i);
        }
    }
    let t0 = Instant::now();
    let e = s.create("ovn1", &lb("192.0.2.10")).unwrap_err();
    assert!(matches!(e, StoreError::Unavailable(_)), "{e}");
    // Within a bound far above the timeout (a hang would never return).
    assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
    drop(s);
    drop(rt);
}

/// `ovnlbd migrate` copies a SQLite store into an empty OVNLB database, revisions kept,
/// and refuses a database that holds desired state already.
#[test]
fn migrate_copies_sqlite_into_an_empty_ovnlb_and_refuses_a_full_one() {
    let dir = tempfile::tempdir_in(common::tmp_base()).unwrap();
    let path = dir.path().join("ovnlb.db");
    {
        let s = SqliteStore::open(&path).unwrap();
        seeded(&s);
        s.create("ovn1", &lb("192.0.2.10")).unwrap();
        s.update::<LoadBalancersPost>("ovn1", "192.0.2.10", &lb("192.0.2.10").put, None)
            .unwrap();
        let f = ForwardsPost {
            listen_address: "192.0.2.20".into(),
            ..Default::default()
        };
        s.create("ovn2", &f).unwrap();
    }
    let db = common::OvsdbServer::start_ovnlb();
    let to = format!("ovsdb:unix:{}", db.sock.display());
    let migrate = || {
        Command::new(env!("CARGO_BIN_EXE_ovnlbd"))
            .args(["migrate", "--from"])
            .arg(&path)
            .args(["--to", &to])
            .output()
            .unwrap()
    };
    let out = migrate();
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("migrated 3 networks, 1 load balancers and 1 forwards"),
        "{out:?}"
    );
    let sqlite = SqliteStore::open(&path).unwrap();
    let (_rt, s) = open_ovnlb(vec![db.unix()], Duration::from_secs(10));
    assert_eq!(s.desired_state().unwrap(), sqlite.desired_state().unwrap());
    assert_eq!(s.networks().unwrap(), sqlite.networks().unwrap());
    assert_eq!(
        s.get::<LoadBalancersPost>("ovn1", "192.0.2.10")
            .unwrap()
            .revision,
        2
    );
    // The copied address is taken on the uplink in OVNLB too.
    assert!(matches!(
        s.create("ovn2", &lb("192.0.2.10")),
        Err(StoreError::Conflict(_))
    ));
    let again = migrate();
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("not empty"),
        "{again:?}"
    );
}

/// Three standbys that saw the same lease race to take it over: one wins, every time
/// (the compare-and-swap is checked on the state it commits on).
#[test]
fn ovnlb_racing_standbys_one_takes_the_lease() {
    let c = common::Cluster::start_ovnlb();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut stores = Vec::new();
    let mut r = c.remotes();
    for _ in 0..3 {
        stores.push(
            rt.block_on(OvsdbStore::open(OvsdbStoreConfig {
                remotes: r.clone(),
                tls: None,
                timeout: Duration::from_secs(10),
            }))
            .unwrap(),
        );
        r.rotate_left(1);
    }
    rt.block_on(async {
        let mut seen = None;
        for round in 0..30u64 {
            let (a, b, c) = tokio::join!(
                stores[0].acquire_lease("reconciler", "a", seen.as_ref()),
                stores[1].acquire_lease("reconciler", "b", seen.as_ref()),
                stores[2].acquire_lease("reconciler", "c", seen.as_ref()),
            );
            let won: Vec<u64> = [a, b, c].into_iter().filter_map(|r| r.unwrap()).collect();
            assert_eq!(won, [round + 1], "round {round}");
            // The next round races from what the winner committed.
            seen = Some(common::eventually_blocking(
                10,
                "the winner's lease",
                || {
                    stores[0]
                        .lease("reconciler")
                        .filter(|l| l.epoch == round + 1)
                },
            ));
        }
    });
}
