//! The real data plane: connections to the VIPs reach every backend; after a backend
//! is removed, only the others answer; a checked backend whose listener stops goes
//! offline and new connections reach only the others, until it comes back. With
//! `ovn.affinity_timeout` one client's connections all reach one backend while other
//! clients are pinned on their own; with `ovn.reject` a VIP with no backend resets at
//! once where it otherwise drops.

mod common;

use std::collections::BTreeSet;

use common::*;
use hyper::Method;
use ovnlb::lb::state::DesiredState;
use ovnlb::reconcile::{reconcile_pass, PassOptions};
use serde_json::json;

const STATE: &str = r#"
networks:
  - name: uplink
    type: physical
    config: {ipv4.routes: 192.0.2.0/24, ipv6.routes: "2001:db8::/64"}
  - name: ovn1
    type: ovn
    config: {network: uplink, ovn.router: lxd-net1-lr, ovn.switch: lxd-net1-ls-int, ovn.prefix: lxd-net1}
    load_balancers:
      - listen_address: 192.0.2.10
        backends: [{name: c1, target_address: 10.0.0.11, target_port: "8080"}, {name: c2, target_address: 10.0.0.12, target_port: "8080"}]
        ports: [{protocol: tcp, listen_port: "80", target_backend: [c1, c2]}]
      - listen_address: "2001:db8::10"
        backends: [{name: c1, target_address: "fd00::11", target_port: "8080"}, {name: c2, target_address: "fd00::12", target_port: "8080"}]
        ports: [{protocol: tcp, listen_port: "80", target_backend: [c1, c2]}]
"#;

fn hv_sync(ovn: &Ovn) {
    let out = std::process::Command::new("ovn-nbctl")
        .arg(format!("--db={}", ovn.nb.db()))
        .args(["--timeout=30", "--wait=hv", "sync"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The status `/state` gives backend `b` of load balancer `listen` (its first port).
async fn backend_status(c: &ovnlb::cli::Client, listen: &str, b: &str) -> Option<String> {
    req(
        c,
        Method::GET,
        &format!("/1.0/networks/ovn1/load-balancers/{listen}/state"),
        None,
    )
    .await
    .ok()
    .and_then(|s| {
        s["backend_health"][b]["ports"][0]["status"]
            .as_str()
            .map(str::to_owned)
    })
}

/// Who answers at `url`, over `tries` connections.
fn answers(dp: &Dataplane, url: &str, tries: usize) -> BTreeSet<String> {
    (0..tries).filter_map(|_| dp.curl(url)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_reach_every_backend_and_follow_changes() {
    init_tracing();
    let ovn = Ovn::start();
    let dp = Dataplane::start(&ovn.sb_db());
    let s = nb_session(ovn.nb.unix(), vec![]);
    let r = reconcile_pass(
        &s,
        &DesiredState::from_yaml(STATE).unwrap(),
        &PassOptions::default(),
    )
    .await
    .unwrap();
    assert!(r.converged);
    hv_sync(&ovn);
    let both: BTreeSet<String> = ["c1", "c2"].map(String::from).into();
    for url in ["http://192.0.2.10/", "http://[2001:db8::10]/"] {
        // Every backend answers (hashing is per connection: try until both did).
        let seen = eventually(60, "both backends answer", || {
            let a = answers(&dp, url, 10);
            (a == both).then_some(a)
        })
        .await;
        assert_eq!(seen, both, "{url}");
    }
    // Remove backend c2 (from the v4 load balancer's port): only c1 answers.
    let without_c2 = STATE.replacen("target_backend: [c1, c2]", "target_backend: [c1]", 1);
    reconcile_pass(
        &s,
        &DesiredState::from_yaml(&without_c2).unwrap(),
        &PassOptions::default(),
    )
    .await
    .unwrap();
    hv_sync(&ovn);
    assert_eq!(
        answers(&dp, "http://192.0.2.10/", 12),
        BTreeSet::from(["c1".to_owned()])
    );
    // The v6 load balancer is unchanged: both still answer.
    eventually(60, "v6 still balanced", || {
        (answers(&dp, "http://[2001:db8::10]/", 10) == both).then_some(())
    })
    .await;
}

/// Health checks on the real data plane, IPv4 and IPv6, listen port 80 to target port
/// 8080: ovn-controller probes each backend from the checker address; a stopped
/// listener goes offline (in SB, in `/state`) and new connections reach only the other
/// backend; started again, it comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_backend_goes_offline_and_comes_back() {
    init_tracing();
    let ovn = Ovn::start();
    let mut dp = Dataplane::start(&ovn.sb_db());
    let (_d, c) = with_sb(&ovn).await;
    let checks = json!({"healthcheck": "true", "healthcheck.interval": "1",
                        "healthcheck.timeout": "1", "healthcheck.success_count": "1",
                        "healthcheck.failure_count": "2"});
    for (listen, a1, a2) in [
        ("192.0.2.10", "10.0.0.11", "10.0.0.12"),
        ("2001:db8::10", "fd00::11", "fd00::12"),
    ] {
        let body = json!({"listen_address": listen, "config": checks,
            "backends": [{"name": "c1", "target_address": a1, "target_port": "8080"},
                         {"name": "c2", "target_address": a2, "target_port": "8080"}],
            "ports": [{"protocol": "tcp", "listen_port": "80", "target_backend": ["c1", "c2"]}]});
        req(
            &c,
            Method::POST,
            "/1.0/networks/ovn1/load-balancers?wait=20",
            Some(body),
        )
        .await
        .unwrap();
    }
    hv_sync(&ovn);
    let status = |listen: &'static str, b: &'static str| backend_status(&c, listen, b);
    let both: BTreeSet<String> = ["c1", "c2"].map(String::from).into();
    for listen in ["192.0.2.10", "2001:db8::10"] {
        for b in ["c1", "c2"] {
            eventually_async(60, "probed online", || async {
                (status(listen, b).await.as_deref() == Some("online")).then_some(())
            })
            .await;
        }
    }
    for url in ["http://192.0.2.10/", "http://[2001:db8::10]/"] {
        eventually(60, "both backends answer", || {
            (answers(&dp, url, 10) == both).then_some(())
        })
        .await;
    }
    dp.stop_backend("c1");
    for listen in ["192.0.2.10", "2001:db8::10"] {
        eventually_async(60, "c1 offline", || async {
            (status(listen, "c1").await.as_deref() == Some("offline")).then_some(())
        })
        .await;
    }
    let only_c2: BTreeSet<String> = ["c2".to_owned()].into();
    for url in ["http://192.0.2.10/", "http://[2001:db8::10]/"] {
        // Once offline, every new connection reaches c2: none fails.
        eventually(20, "only c2 answers", || {
            let a: Vec<Option<String>> = (0..8).map(|_| dp.curl(url)).collect();
            a.iter().all(|x| x.as_deref() == Some("c2")).then_some(())
        })
        .await;
        assert_eq!(answers(&dp, url, 8), only_c2, "{url}");
    }
    dp.start_backend("c1");
    for listen in ["192.0.2.10", "2001:db8::10"] {
        eventually_async(60, "c1 back online", || async {
            (status(listen, "c1").await.as_deref() == Some("online")).then_some(())
        })
        .await;
    }
    for url in ["http://192.0.2.10/", "http://[2001:db8::10]/"] {
        eventually(60, "both answer again", || {
            (answers(&dp, url, 10) == both).then_some(())
        })
        .await;
    }
}

/// UDP health checks on the real data plane: a backend whose responder stops answers
/// with a port unreachable, goes offline, and new datagrams reach only the other; started
/// again, it comes back (a silent host would stay online: OVN 23.03's UDP limit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_udp_backend_goes_offline_on_port_unreachable() {
    init_tracing();
    let ovn = Ovn::start();
    let mut dp = Dataplane::start(&ovn.sb_db());
    dp.start_udp("c1");
    dp.start_udp("c2");
    let (_d, c) = with_sb(&ovn).await;
    let body = json!({"listen_address": "192.0.2.11",
        "config": {"healthcheck": "true", "healthcheck.interval": "1", "healthcheck.timeout": "1",
                   "healthcheck.success_count": "1", "healthcheck.failure_count": "2"},
        "backends": [{"name": "c1", "target_address": "10.0.0.11", "target_port": "5353"},
                     {"name": "c2", "target_address": "10.0.0.12", "target_port": "5353"}],
        "ports": [{"protocol": "udp", "listen_port": "53", "target_backend": ["c1", "c2"]}]});
    req(
        &c,
        Method::POST,
        "/1.0/networks/ovn1/load-balancers?wait=20",
        Some(body),
    )
    .await
    .unwrap();
    hv_sync(&ovn);
    let status = |b: &'static str| backend_status(&c, "192.0.2.11", b);
    for b in ["c1", "c2"] {
        eventually_async(60, "udp probed online", || async {
            (status(b).await.as_deref() == Some("online")).then_some(())
        })
        .await;
    }
    let both: BTreeSet<String> = ["c1", "c2"].map(String::from).into();
    eventually(60, "both udp backends answer", || {
        let a: BTreeSet<String> = (0..10).filter_map(|_| dp.udp("192.0.2.11", 53)).collect();
        (a == both).then_some(())
    })
    .await;
    dp.stop_udp("c1");
    eventually_async(60, "c1 offline on port unreachable", || async {
        (status("c1").await.as_deref() == Some("offline")).then_some(())
    })
    .await;
    eventually(20, "only c2 answers", || {
        let a: Vec<Option<String>> = (0..8).map(|_| dp.udp("192.0.2.11", 53)).collect();
        a.iter().all(|x| x.as_deref() == Some("c2")).then_some(())
    })
    .await;
    dp.start_udp("c1");
    eventually_async(60, "c1 back online", || async {
        (status("c1").await.as_deref() == Some("online")).then_some(())
    })
    .await;
}

/// Create a load balancer of `ovn1` and wait until NB holds it.
async fn create_lb(c: &ovnlb::cli::Client, body: serde_json::Value) {
    req(
        c,
        Method::POST,
        "/1.0/networks/ovn1/load-balancers?wait=30",
        Some(body),
    )
    .await
    .unwrap();
}

/// The data plane and ovnlbd on its NB, with the networks created.
async fn dataplane_with_ovnlbd() -> (Ovn, Dataplane, Daemon, ovnlb::cli::Client) {
    init_tracing();
    let ovn = Ovn::start();
    let dp = Dataplane::start(&ovn.sb_db());
    let d = Daemon::start(&ovn.nb).await;
    let c = d.client();
    networks(&c).await;
    (ovn, dp, d, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn affinity_pins_each_client_to_one_backend() {
    let (ovn, dp, _d, c) = dataplane_with_ovnlbd().await;
    let body = json!({"listen_address": "192.0.2.20", "config": {"ovn.affinity_timeout": "60"},
        "backends": [{"name": "c1", "target_address": "10.0.0.11", "target_port": "8080"},
                     {"name": "c2", "target_address": "10.0.0.12", "target_port": "8080"}],
        "ports": [{"protocol": "tcp", "listen_port": "80", "target_backend": ["c1", "c2"]}]});
    create_lb(&c, body).await;
    hv_sync(&ovn);
    // Each client's ten connections reach one backend (without affinity they spread:
    // `connections_reach_every_backend_and_follow_changes`).
    let pinned = |src: &str| -> BTreeSet<String> {
        (0..10)
            .filter_map(|_| dp.curl_from(src, "http://192.0.2.20/", 3).0.ok())
            .collect()
    };
    let first = eventually(60, "the VIP answers", || {
        let a = pinned("192.0.2.100");
        (!a.is_empty()).then_some(a)
    })
    .await;
    assert_eq!(first.len(), 1, "one client, one backend: {first:?}");
    // Other clients are pinned on their own: some land on the other backend (all eight
    // on the first one's would be a 1 in 256 chance).
    let mut elsewhere = false;
    for i in 101..109 {
        let src = format!("192.0.2.{i}");
        dp.add_client_address(&format!("{src}/24"));
        let theirs = pinned(&src);
        assert_eq!(theirs.len(), 1, "client {src}: {theirs:?}");
        elsewhere |= theirs != first;
    }
    assert!(elsewhere, "every client pinned to {first:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_resets_a_vip_with_no_backend_where_it_otherwise_drops() {
    let (ovn, dp, _d, c) = dataplane_with_ovnlbd().await;
    let lb = |listen: &str, config: serde_json::Value| {
        json!({"listen_address": listen, "config": config, "backends": [],
               "ports": [{"protocol": "tcp", "listen_port": "80", "target_backend": []}]})
    };
    for body in [
        lb("192.0.2.21", json!({})),
        lb("192.0.2.22", json!({"ovn.reject": "true"})),
    ] {
        create_lb(&c, body).await;
    }
    hv_sync(&ovn);
    // Dropped: curl gives up after its 2 s (exit 28).
    let (dropped, waited) = dp.curl_from("192.0.2.100", "http://192.0.2.21/", 2);
    assert_eq!(dropped, Err(28), "no backend, no reject: dropped");
    // Rejected: refused (exit 7) well inside curl's 1 s.
    let (refused, took) = dp.curl_from("192.0.2.100", "http://192.0.2.22/", 1);
    assert_eq!(refused, Err(7), "no backend, ovn.reject: reset");
    eprintln!("drop: gave up after {waited:?}; reject: refused after {took:?}");
}
