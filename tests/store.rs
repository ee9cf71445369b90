//! The SQLite store: CRUD with revisions, uniqueness in the database, durability.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use ovnlb::lb::model::{ForwardsPost, LoadBalancerPut, LoadBalancersPost, ObjectKind};
use ovnlb::lb::state::resolve;
use ovnlb::lb::validate::Limits;
use ovnlb::store::{Objects, SqliteStore, Store, StoreError};

use common::net;

fn lb(listen: &str) -> LoadBalancersPost {
    serde_json::from_value(serde_json::json!({
        "listen_address": listen, "description": "web",
        "backends": [{"name": "b1", "target_address": "10.0.0.11", "target_port": "8080"}],
        "ports": [{"protocol": "tcp", "listen_port": "80", "target_backend": ["b1"]}]
    }))
    .unwrap()
}

fn seeded(s: &SqliteStore) {
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

#[test]
fn crud_revisions_and_uniqueness_in_the_database() {
    let s = SqliteStore::in_memory().unwrap();
    seeded(&s);
    let mut changes = s.subscribe();
    assert_eq!(s.create("ovn1", &lb("192.0.2.10")).unwrap(), 1);
    let c: Vec<_> = changes.try_changed().into_iter().collect();
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
    seeded(&s);
    let mut changes = s.subscribe();
    let f = ForwardsPost {
        listen_address: "192.0.2.20".into(),
        ..Default::default()
    };
    s.create("ovn1", &f).unwrap();
    s.create("ovn1", &lb("192.0.2.10")).unwrap();
    let c: Vec<_> = changes.try_changed().into_iter().collect();
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
