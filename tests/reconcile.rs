//! Reconciling desired state into a real NB with ovn-northd, checked with ovn-trace.

mod common;

use std::process::Command;

use common::*;
use ovnlb::lb::render::row_uuid;
use ovnlb::lb::state::DesiredState;
use ovnlb::ovsdb::Session;
use ovnlb::reconcile::{reconcile_pass, PassOptions, ReconcileError};

const STATE: &str = r#"
networks:
  - name: uplink
    type: physical
    config: {ipv4.routes: 192.0.2.0/24, ipv6.routes: "2001:db8::/64", ipv4.ovn.ranges: 192.0.2.200-192.0.2.250}
  - name: ovn1
    type: ovn
    config: {network: uplink, ovn.router: lxd-net1-lr, ovn.switch: lxd-net1-ls-int, ovn.prefix: lxd-net1}
    load_balancers:
      - listen_address: 192.0.2.10
        backends:
          - {name: c1, target_address: 10.0.0.11, target_port: "8080"}
          - {name: c2, target_address: 10.0.0.12, target_port: "8080"}
          - {name: c3, target_address: 10.0.0.13, target_port: "9000-9001"}
        ports:
          - {protocol: tcp, listen_port: "80", target_backend: [c1, c2]}
          - {protocol: tcp, listen_port: "443-444", target_backend: [c3]}
          - {protocol: udp, listen_port: "53", target_backend: [c1, c2]}
      - listen_address: "2001:db8::10"
        backends: [{name: c1, target_address: "fd00::11"}, {name: c2, target_address: "fd00::12"}]
        ports: [{protocol: tcp, listen_port: "80", target_backend: [c1, c2]}, {protocol: udp, listen_port: "5353", target_backend: [c2]}]
      - listen_address: 192.0.2.12
        backends: [{name: c1, target_address: 10.0.0.11, target_port: "8080"}]
        ports: [{protocol: tcp, listen_port: "80-82", target_backend: [c1]}]
    forwards:
      - listen_address: 192.0.2.11
        config: {target_address: 10.0.0.13}
        ports: [{protocol: udp, listen_port: "5000", target_address: 10.0.0.11, target_port: "6000"}]
"#;

async fn pass(s: &Session, yaml: &str) -> ovnlb::reconcile::PassReport {
    let st = DesiredState::from_yaml(yaml).unwrap();
    let r = reconcile_pass(s, &st, &PassOptions::default())
        .await
        .unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert!(r.converged);
    r
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test]
async fn every_kind_of_vip_is_load_balanced_as_declared() {
    init_tracing();
    let ovn = Ovn::start();
    let s = nb_session(ovn.nb.unix(), vec![]);
    let r = pass(&s, STATE).await;
    assert_eq!(r.plans.len(), 1);
    ovn.sync();
    // IPv4 tcp, N:1 target ports.
    assert_eq!(
        sorted(ovn.trace("tcp", "192.0.2.10", 80)),
        ["10.0.0.11:8080", "10.0.0.12:8080"]
    );
    // A range mapped 1:1 onto a target range.
    assert_eq!(ovn.trace("tcp", "192.0.2.10", 443), ["10.0.0.13:9000"]);
    assert_eq!(ovn.trace("tcp", "192.0.2.10", 444), ["10.0.0.13:9001"]);
    // udp, with the same port as the listen port (no target port given: 0 -> same port).
    assert_eq!(
        sorted(ovn.trace("udp", "192.0.2.10", 53)),
        ["10.0.0.11:8080", "10.0.0.12:8080"]
    );
    // IPv6.
    assert_eq!(
        sorted(ovn.trace("tcp", "2001:db8::10", 80)),
        ["[fd00::11]:80", "[fd00::12]:80"]
    );
    assert_eq!(ovn.trace("udp", "2001:db8::10", 5353), ["[fd00::12]:5353"]);
    // A listen range onto one target port (many-to-one).
    for p in [80, 81, 82] {
        assert_eq!(ovn.trace("tcp", "192.0.2.12", p), ["10.0.0.11:8080"]);
    }
    // Forward: a port mapping, and the default target for everything else (whole IP).
    assert_eq!(ovn.trace("udp", "192.0.2.11", 5000), ["10.0.0.11:6000"]);
    assert_eq!(ovn.trace("tcp", "192.0.2.11", 22), ["10.0.0.13"]);
    // Not declared: not load-balanced.
    assert!(ovn.trace("tcp", "192.0.2.10", 8080).is_empty());
    // LXD's names, attached to the router and the internal switch.
    let names: Vec<String> = lb_rows(&ovn)
        .into_iter()
        .map(|(_, r)| r["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        names.contains(&"lxd-net1-lb-2001:db8::10-udp".to_owned()),
        "{names:?}"
    );
    let attached = |t: &str| {
        ovn.nb.dump(&[t])[t]
            .values()
            .map(|r| r["load_balancer"].len())
            .max()
            .unwrap_or(0)
    };
    assert_eq!(attached("Logical_Router"), names.len());
    assert_eq!(attached("Logical_Switch"), names.len());
    assert!(!ovn
        .nb
        .nbctl(&["ls-lb-list", "lxd-net1-ls-ext"])
        .contains("lxd-net1-lb"));
}

#[tokio::test]
async fn edits_in_place_deletes_leave_nothing_and_foreign_rows_survive() {
    init_tracing();
    let ovn = Ovn::start();
    // A foreign row with the very name we will use, attached to our router.
    ovn.nb.nbctl(&[
        "lb-add",
        "lxd-net1-lb-192.0.2.10-tcp",
        "192.0.2.99:80",
        "10.0.0.13:80",
        "tcp",
    ]);
    ovn.nb
        .nbctl(&["lr-lb-add", "lxd-net1-lr", "lxd-net1-lb-192.0.2.10-tcp"]);
    let foreign: Vec<_> = lb_rows(&ovn);
    let s = nb_session(ovn.nb.unix(), vec![]);
    pass(&s, STATE).await;
    let ours = row_uuid("ovnlb", "ovn1", "192.0.2.10", "tcp");
    assert!(lb_rows(&ovn).iter().any(|(u, _)| *u == ours));

    // An edit keeps the row's UUID.
    let edited = STATE.replace(
        "{name: c2, target_address: 10.0.0.12, target_port: \"8080\"}",
        "{name: c2, target_address: 10.0.0.12, target_port: \"8081\"}",
    );
    let r = pass(&s, &edited).await;
    let ops: Vec<String> = r.plans[0].ops.iter().map(ToString::to_string).collect();
    assert!(ops.iter().all(|o| o.starts_with("update")), "{ops:?}");
    assert!(lb_rows(&ovn).iter().any(|(u, r)| *u == ours
        && r["vips"].map_get("192.0.2.10:80") == Some("10.0.0.11:8080,10.0.0.12:8081")));
    ovn.sync();
    assert_eq!(
        sorted(ovn.trace("tcp", "192.0.2.10", 80)),
        ["10.0.0.11:8080", "10.0.0.12:8081"]
    );
    // A second pass plans nothing.
    let dry = reconcile_pass(
        &s,
        &DesiredState::from_yaml(&edited).unwrap(),
        &PassOptions {
            dry_run: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(dry.plans.is_empty() && dry.converged);

    // Everything removed: nothing of ours is left, the foreign row is untouched.
    let empty = STATE
        .split("    load_balancers:")
        .next()
        .unwrap()
        .to_owned();
    pass(&s, &empty).await;
    assert_eq!(lb_rows(&ovn), foreign);
    assert!(ovn
        .nb
        .nbctl(&["lr-lb-list", "lxd-net1-lr"])
        .contains("192.0.2.99:80"));
    assert!(!ovn
        .nb
        .nbctl(&["ls-lb-list", "lxd-net1-ls-int"])
        .contains("lxd-net1-lb"));
}

#[tokio::test]
async fn drift_is_repaired_and_duplicates_collapse() {
    init_tracing();
    let ovn = Ovn::start();
    let s = nb_session(ovn.nb.unix(), vec![]);
    pass(&s, STATE).await;
    let want = ovn
        .nb
        .dump(&["Load_Balancer", "Logical_Router", "Logical_Switch"]);
    let ours = row_uuid("ovnlb", "ovn1", "192.0.2.10", "tcp").to_string();
    let ours_udp = row_uuid("ovnlb", "ovn1", "192.0.2.10", "udp").to_string();
    let ours_v6 = row_uuid("ovnlb", "ovn1", "2001:db8::10", "tcp").to_string();
    // Someone edits vips, deletes a row, detaches one from the router and the switch.
    ovn.nb.nbctl(&[
        "set",
        "Load_Balancer",
        &ours,
        "vips:\"192.0.2.10:80\"=\"10.0.0.13:80\"",
    ]);
    ovn.nb.nbctl(&["lb-del", &ours_udp]);
    ovn.nb.nbctl(&["lr-lb-del", "lxd-net1-lr", &ours_v6]);
    ovn.nb.nbctl(&["ls-lb-del", "lxd-net1-ls-int", &ours_v6]);
    // And a duplicate of ours appears (same name and tags, another UUID).
    ovn.nb.nbctl(&[
        "--id=@lb",
        "create",
        "Load_Balancer",
        "name=lxd-net1-lb-192.0.2.12-tcp",
        "protocol=tcp",
        "external_ids:\"ovnlb:owner\"=ovnlb",
        "external_ids:\"ovnlb:network\"=ovn1",
        "--",
        "add",
        "Logical_Router",
        "lxd-net1-lr",
        "load_balancer",
        "@lb",
    ]);
    let r = pass(&s, STATE).await;
    let ops: Vec<String> = r.plans[0].ops.iter().map(ToString::to_string).collect();
    assert!(
        ops.iter()
            .any(|o| o.starts_with("update") && o.contains(&ours)),
        "{ops:?}"
    );
    assert!(
        ops.iter()
            .any(|o| o.starts_with("create") && o.contains(&ours_udp)),
        "{ops:?}"
    );
    assert!(ops.iter().any(|o| o.starts_with("delete")), "{ops:?}");
    assert_eq!(
        ops.iter().filter(|o| o.starts_with("attach")).count(),
        4,
        "udp row twice, v6 row twice: {ops:?}"
    );
    let got = ovn
        .nb
        .dump(&["Load_Balancer", "Logical_Router", "Logical_Switch"]);
    assert_eq!(
        got["Load_Balancer"], want["Load_Balancer"],
        "back to exactly what it was, same UUIDs"
    );
    let lb_sets = |d: &std::collections::BTreeMap<
        String,
        std::collections::BTreeMap<uuid::Uuid, ovnlb::ovsdb::Row>,
    >,
                   t: &str| {
        d[t].values()
            .map(|r| r["load_balancer"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        lb_sets(&got, "Logical_Router"),
        lb_sets(&want, "Logical_Router")
    );
    assert_eq!(
        lb_sets(&got, "Logical_Switch"),
        lb_sets(&want, "Logical_Switch")
    );
}

#[tokio::test]
async fn an_interrupted_pass_converges_and_invalid_state_changes_nothing() {
    init_tracing();
    let ovn = Ovn::start();
    let s = nb_session(ovn.nb.unix(), vec![]);
    // "Killed midway": only the rows were created, nothing attached.
    let st = DesiredState::from_yaml(STATE).unwrap();
    let dry = reconcile_pass(
        &s,
        &st,
        &PassOptions {
            dry_run: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut partial = dry.plans[0].clone();
    partial
        .ops
        .retain(|o| matches!(o, ovnlb::reconcile::plan::Op::Create { .. }));
    s.transact(&ovnlb::reconcile::transaction(&partial, s.schema()))
        .await
        .unwrap();
    let r = pass(&s, STATE).await;
    assert!(r.plans[0]
        .ops
        .iter()
        .all(|o| matches!(o, ovnlb::reconcile::plan::Op::Attach { .. })));
    ovn.sync();
    assert_eq!(ovn.trace("tcp", "192.0.2.10", 443), ["10.0.0.13:9000"]);

    // Invalid desired state: every error reported, nothing applied.
    let before = lb_rows(&ovn);
    let bad = STATE
        .replace("listen_port: \"443-444\"", "listen_port: \"0\"")
        .replace("192.0.2.12", "198.51.100.1");
    let e = reconcile_pass(
        &s,
        &DesiredState::from_yaml(&bad).unwrap(),
        &PassOptions::default(),
    )
    .await
    .unwrap_err();
    let ReconcileError::Invalid(errs) = e else {
        panic!("{e}")
    };
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert_eq!(lb_rows(&ovn), before);
}

#[tokio::test]
async fn the_cli() {
    init_tracing();
    let ovn = Ovn::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.yaml");
    std::fs::write(&file, STATE).unwrap();
    let ovnlb = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_ovnlb"))
            .args([
                "reconcile",
                "--nb",
                &ovn.nb.db(),
                "-f",
                file.to_str().unwrap(),
            ])
            .args(args)
            .output()
            .unwrap()
    };
    let out = ovnlb(&["--dry-run"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("create Load_Balancer lxd-net1-lb-192.0.2.10-tcp"),
        "{text}"
    );
    assert!(
        text.contains("attach lxd-net1-lb-192.0.2.10-tcp to Logical_Router lxd-net1-lr"),
        "{text}"
    );
    assert!(lb_rows(&ovn).is_empty(), "a dry run changes nothing");

    let out = ovnlb(&["--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["converged"], true);
    assert!(v["plans"][0]["ops"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o["op"] == "create"));
    assert_eq!(lb_rows(&ovn).len(), 7);

    let out = ovnlb(&[]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to do"));

    std::fs::write(
        &file,
        STATE.replace(
            "protocol: udp, listen_port: \"53\"",
            "protocol: icmp, listen_port: \"53\"",
        ),
    )
    .unwrap();
    let out = ovnlb(&[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("load balancer 192.0.2.10 of network ovn1: ports[2].protocol: Invalid port protocol in port specification 2"), "{err}");
    assert_eq!(lb_rows(&ovn).len(), 7, "nothing applied");

    let out = Command::new(env!("CARGO_BIN_EXE_ovnlb"))
        .args([
            "reconcile",
            "--nb",
            "tcp:nowhere",
            "-f",
            file.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("tcp:nowhere"));
}

#[tokio::test]
async fn reconcile_from_the_store_carries_revisions() {
    init_tracing();
    let ovn = Ovn::start();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ovnlb.db");
    {
        use ovnlb::lb::model::LoadBalancersPost;
        use ovnlb::store::{Objects, SqliteStore, Store};
        let store = SqliteStore::open(&db).unwrap();
        for n in DesiredState::from_yaml(STATE).unwrap().networks {
            store.create_network(&n.network).unwrap();
            for lb in &n.load_balancers {
                let mut lb = lb.clone();
                lb.normalise();
                store.create(&n.network.name, &lb).unwrap();
                store
                    .update::<LoadBalancersPost>(
                        &n.network.name,
                        &lb.listen_address,
                        &lb.put,
                        Some(1),
                    )
                    .unwrap();
            }
        }
    }
    let out = Command::new(env!("CARGO_BIN_EXE_ovnlb"))
        .args([
            "reconcile",
            "--nb",
            &ovn.nb.db(),
            "--db",
            db.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = lb_rows(&ovn);
    assert_eq!(
        rows.len(),
        5,
        "tcp+udp, tcp+udp, tcp: the forward is not stored here"
    );
    assert!(rows
        .iter()
        .all(|(_, r)| r["external_ids"].map_get("ovnlb:revision") == Some("2")));
    ovn.sync();
    assert_eq!(
        sorted(ovn.trace("tcp", "192.0.2.10", 80)),
        ["10.0.0.11:8080", "10.0.0.12:8080"]
    );
    let out = Command::new(env!("CARGO_BIN_EXE_ovnlb"))
        .args([
            "reconcile",
            "--nb",
            &ovn.nb.db(),
            "--db",
            "/nonexistent/x.db",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such store"));
}

#[tokio::test]
async fn owners_are_isolated_prune_removes_only_ours_and_tls_works() {
    init_tracing();
    let nb = OvsdbServer::start_tls();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/sandbox.sh");
    assert!(Command::new("bash")
        .arg(script)
        .arg("topology")
        .arg(nb.db())
        .status()
        .unwrap()
        .success());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.yaml");
    std::fs::write(&file, STATE).unwrap();
    let tls = nb.tls_files();
    let ssl = nb.ssl().to_string();
    let ovnlb = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_ovnlb"))
            .args([
                "reconcile",
                "--nb",
                &ssl,
                "--nb-ca",
                tls.ca.to_str().unwrap(),
            ])
            .args([
                "--nb-cert",
                tls.cert.as_ref().unwrap().to_str().unwrap(),
                "--nb-key",
                tls.key.as_ref().unwrap().to_str().unwrap(),
            ])
            .args(args)
            .output()
            .unwrap()
    };
    let owned_by = |o: &str| {
        nb.dump(&["Load_Balancer"])
            .remove("Load_Balancer")
            .unwrap_or_default()
            .into_values()
            .filter(|r| r["external_ids"].map_get("ovnlb:owner") == Some(o))
            .count()
    };
    // Over mutual TLS, two owners reconcile the same state side by side.
    for owner in ["ovnlb", "other"] {
        let out = ovnlb(&["-f", file.to_str().unwrap(), "--owner", owner]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!((owned_by("ovnlb"), owned_by("other")), (7, 7));
    // The same names under two owners: each pass only ever sees its own rows.
    let out = ovnlb(&[
        "-f",
        file.to_str().unwrap(),
        "--owner",
        "other",
        "--dry-run",
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to do"));

    // A file without network ovn1: without --prune its rows stay, with --prune ours go,
    // the other owner's stay.
    let empty = STATE.split("  - name: ovn1").next().unwrap().to_owned();
    std::fs::write(&file, &empty).unwrap();
    assert!(ovnlb(&["-f", file.to_str().unwrap()]).status.success());
    assert_eq!(owned_by("ovnlb"), 7);
    let out = ovnlb(&["-f", file.to_str().unwrap(), "--prune"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!((owned_by("ovnlb"), owned_by("other")), (0, 7));

    // A wrong CA: a clear error, non-zero exit.
    let out = Command::new(env!("CARGO_BIN_EXE_ovnlb"))
        .args([
            "reconcile",
            "--nb",
            &ssl,
            "--nb-ca",
            nb.certs.as_ref().unwrap().other_ca.to_str().unwrap(),
            "--timeout",
            "3",
            "-f",
            file.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no usable NB server") && err.contains("certificate"),
        "{err}"
    );
}
