//! Health checks against real NB + SB + northd: the keys, what renders into NB (one
//! `Load_Balancer_Health_Check` per VIP, `ip_port_mappings` through the backends' switch
//! ports), the `Service_Monitor` rows northd makes of them, a monitor set offline
//! dropping its backend in ovn-trace, the switch port followed live, and every
//! validation rule refusing with 400 and changing nothing.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::*;
use hyper::Method;
use serde_json::{json, Value};

const LBS: &str = "/1.0/networks/ovn1/load-balancers";

/// 192.0.2.30:80 → c1 and c2 (10.0.0.11/12) on 8080, with `config`.
fn checked_lb(config: Value) -> Value {
    json!({"listen_address": "192.0.2.30", "config": config,
           "backends": [{"name": "c1", "target_address": "10.0.0.11", "target_port": "8080"},
                        {"name": "c2", "target_address": "10.0.0.12", "target_port": "8080"}],
           "ports": [{"protocol": "tcp", "listen_port": "80", "target_backend": ["c1", "c2"]}]})
}

/// A `Service_Monitor`'s key: (logical_port, ip, port, protocol).
type MonitorKey = (String, String, i64, String);

/// SB `Service_Monitor` rows: key → (src_ip, options, status).
fn monitors(ovn: &Ovn) -> BTreeMap<MonitorKey, (String, Value, Value)> {
    let out = run(Command::new("ovn-sbctl")
        .arg(format!("--db={}", ovn.sb_db()))
        .args([
            "--format=json",
            "--columns=logical_port,ip,port,protocol,src_ip,options,status",
            "list",
            "Service_Monitor",
        ]));
    let v: Value = serde_json::from_str(&out).unwrap();
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let s = |i: usize| r[i].as_str().unwrap_or("").to_owned();
            (
                (s(0), s(1), r[2].as_i64().unwrap(), s(3)),
                (s(4), r[5].clone(), r[6].clone()),
            )
        })
        .collect()
}

/// The managed health-check columns of our row named `name`: (LBHC vip → options,
/// ip_port_mappings).
fn checks_of(ovn: &Ovn, name: &str) -> (BTreeMap<String, Options>, Options) {
    let d = ovn
        .nb
        .dump(&["Load_Balancer", "Load_Balancer_Health_Check"]);
    let (_, row) = d["Load_Balancer"]
        .iter()
        .find(|(_, r)| r["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no row {name}"));
    let str_map = |d: &ovnlb::ovsdb::Datum| -> BTreeMap<String, String> {
        d.as_map()
            .unwrap_or_default()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().unwrap().to_owned(),
                    v.as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let checks = row["health_check"]
        .uuids()
        .map(|u| {
            let hc = &d["Load_Balancer_Health_Check"][&u];
            (
                hc["vip"].as_str().unwrap().to_owned(),
                str_map(&hc["options"]),
            )
        })
        .collect();
    (checks, str_map(&row["ip_port_mappings"]))
}

const NAME: &str = "ovnlb-ovn1-lb-192.0.2.30-tcp";

/// Create a load balancer on `ovn1`, returning once NB holds it.
async fn create(c: &ovnlb::cli::Client, body: Value) {
    req(c, Method::POST, &format!("{LBS}?wait=20"), Some(body))
        .await
        .unwrap();
}

/// A string map column.
type Options = BTreeMap<String, String>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_info_lists_the_health_check_extension() {
    let (_ovn, _d, c) = ovn1().await;
    let info = req(&c, Method::GET, "/1.0", None).await.unwrap();
    let ext = info["api_extensions"].as_array().unwrap();
    assert!(ext.contains(&json!("network_load_balancer_health_check")));
    assert!(ext.contains(&json!("network_load_balancer_state")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checked_load_balancer_renders_a_check_per_vip_and_northd_monitors_each_backend() {
    let (ovn, _d, c) = ovn1().await;
    create(
        &c,
        checked_lb(json!({"healthcheck": "true", "healthcheck.interval": "2"})),
    )
    .await;
    let (checks, mappings) = checks_of(&ovn, NAME);
    let options = BTreeMap::from([
        ("interval".to_owned(), "2".to_owned()),
        ("timeout".to_owned(), "30".to_owned()),
        ("success_count".to_owned(), "3".to_owned()),
        ("failure_count".to_owned(), "3".to_owned()),
    ]);
    assert_eq!(
        checks,
        BTreeMap::from([("192.0.2.30:80".to_owned(), options)])
    );
    assert_eq!(
        mappings,
        BTreeMap::from([
            ("10.0.0.11".to_owned(), "c1:10.0.0.254".to_owned()),
            ("10.0.0.12".to_owned(), "c2:10.0.0.254".to_owned()),
        ])
    );
    ovn.sync();
    let m = monitors(&ovn);
    let keys: Vec<_> = m.keys().cloned().collect();
    assert_eq!(
        keys,
        [
            (
                "c1".to_owned(),
                "10.0.0.11".to_owned(),
                8080,
                "tcp".to_owned()
            ),
            (
                "c2".to_owned(),
                "10.0.0.12".to_owned(),
                8080,
                "tcp".to_owned()
            ),
        ],
        "one monitor per backend, on its target port"
    );
    for (src, opts, _) in m.values() {
        assert_eq!(src, "10.0.0.254");
        assert!(opts.to_string().contains(r#"["interval","2"]"#), "{opts}");
    }
    // Never probed (no chassis here): in service.
    assert_eq!(
        sorted(ovn.trace("tcp", "192.0.2.30", 80)),
        ["10.0.0.11:8080", "10.0.0.12:8080"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipv6_checked_load_balancer_maps_bracketed_addresses() {
    let (ovn, _d, c) = ovn1().await;
    let body = json!({"listen_address": "2001:db8::30", "config": {"healthcheck": "on"},
        "backends": [{"name": "c1", "target_address": "fd00:0::11", "target_port": "8080"}],
        "ports": [{"protocol": "tcp", "listen_port": "80", "target_backend": ["c1"]}]});
    req(&c, Method::POST, &format!("{LBS}?wait=20"), Some(body))
        .await
        .unwrap();
    let (checks, mappings) = checks_of(&ovn, "ovnlb-ovn1-lb-2001:db8::30-tcp");
    assert_eq!(checks.keys().collect::<Vec<_>>(), ["[2001:db8::30]:80"]);
    assert_eq!(
        mappings,
        BTreeMap::from([(
            "[fd00::11]".to_owned(),
            "c1:[fd00::ffff:ffff:ffff:fffe]".to_owned()
        )])
    );
    ovn.sync();
    assert!(monitors(&ovn).contains_key(&(
        "c1".to_owned(),
        "fd00::11".to_owned(),
        8080,
        "tcp".to_owned()
    )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monitor_offline_drops_its_backend_from_the_vip() {
    let (ovn, _d, c) = ovn1().await;
    create(&c, checked_lb(json!({"healthcheck": "true"}))).await;
    ovn.sync();
    run(Command::new("ovn-sbctl")
        .arg(format!("--db={}", ovn.sb_db()))
        .args(["set", "Service_Monitor"])
        .arg(
            run(Command::new("ovn-sbctl")
                .arg(format!("--db={}", ovn.sb_db()))
                .args([
                    "--bare",
                    "--columns=_uuid",
                    "find",
                    "Service_Monitor",
                    "logical_port=c1",
                ]))
            .trim(),
        )
        .arg("status=offline"));
    eventually(20, "the offline backend leaves the VIP", || {
        (ovn.trace("tcp", "192.0.2.30", 80) == ["10.0.0.12:8080"]).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turning_checks_off_removes_them_and_the_mappings() {
    let (ovn, _d, c) = ovn1().await;
    create(&c, checked_lb(json!({"healthcheck": "true"}))).await;
    req(
        &c,
        Method::PATCH,
        &format!("{LBS}/192.0.2.30?wait=20"),
        Some(json!({"config": {"healthcheck": "false"}})),
    )
    .await
    .unwrap();
    let (checks, mappings) = checks_of(&ovn, NAME);
    assert!(
        checks.is_empty() && mappings.is_empty(),
        "{checks:?} {mappings:?}"
    );
    assert!(
        ovn.nb.dump(&["Load_Balancer_Health_Check"])["Load_Balancer_Health_Check"].is_empty(),
        "the checks went with their references"
    );
    ovn.sync();
    assert!(monitors(&ovn).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_options_update_the_check_in_place() {
    let (ovn, _d, c) = ovn1().await;
    create(&c, checked_lb(json!({"healthcheck": "true"}))).await;
    let before = ovn.nb.dump(&["Load_Balancer_Health_Check"])["Load_Balancer_Health_Check"]
        .keys()
        .copied()
        .collect::<Vec<_>>();
    req(
        &c,
        Method::PATCH,
        &format!("{LBS}/192.0.2.30?wait=20"),
        Some(json!({"config": {"healthcheck.failure_count": "5"}})),
    )
    .await
    .unwrap();
    let after = ovn.nb.dump(&["Load_Balancer_Health_Check"]);
    let after = &after["Load_Balancer_Health_Check"];
    assert_eq!(
        after.keys().copied().collect::<Vec<_>>(),
        before,
        "same row"
    );
    assert_eq!(
        after.values().next().unwrap()["options"].map_get("failure_count"),
        Some("5")
    );
}

/// An instance recreated under a new switch port name is followed without a user edit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_moved_to_another_switch_port_is_followed() {
    let (ovn, _d, c) = ovn1().await;
    create(&c, checked_lb(json!({"healthcheck": "true"}))).await;
    ovn.nb.nbctl(&["lsp-del", "c1"]);
    ovn.nb.nbctl(&[
        "lsp-add",
        "lxd-net1-ls-int",
        "c1-new",
        "--",
        "lsp-set-addresses",
        "c1-new",
        "00:00:00:00:00:21 10.0.0.11 fd00::11",
    ]);
    eventually(20, "the mapping follows the port", || {
        (checks_of(&ovn, NAME).1.get("10.0.0.11").map(String::as_str) == Some("c1-new:10.0.0.254"))
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_health_check_rule_refuses_with_400_and_changes_nothing() {
    let (ovn, _d, c) = ovn1().await;
    // A load balancer checked with the defaults, for the shared-backend rule.
    create(
        &c,
        json!({"listen_address": "192.0.2.31", "config": {"healthcheck": "true"},
            "backends": [{"name": "c1", "target_address": "10.0.0.11", "target_port": "8080"}],
            "ports": [{"protocol": "tcp", "listen_port": "80", "target_backend": ["c1"]}]}),
    )
    .await;
    let nb_before = ovn
        .nb
        .dump(&["Load_Balancer", "Load_Balancer_Health_Check"]);
    let no_port = {
        let mut b = checked_lb(json!({"healthcheck": "true"}));
        b["backends"][1]["target_address"] = json!("10.0.0.99");
        b
    };
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        (
            LBS,
            checked_lb(json!({"healthcheck": "true", "healthcheck.interval": "x"})),
            "config.healthcheck.interval",
            "not an unsigned integer",
        ),
        (
            LBS,
            checked_lb(json!({"healthcheck": "true", "healthcheck.timeout": "2147484"})),
            "config.healthcheck.timeout",
            "more than OVN can hold",
        ),
        (
            LBS,
            checked_lb(json!({"healthcheck": "true", "healthcheck.grace": "1"})),
            "config.healthcheck.grace",
            "Invalid option",
        ),
        (
            LBS,
            no_port,
            "backends",
            "Couldn't find a logical switch port for \"10.0.0.99\"",
        ),
        (
            LBS,
            checked_lb(json!({"healthcheck": "true", "healthcheck.interval": "3"})),
            "config.healthcheck",
            "is health-checked by load balancer 192.0.2.31 with other options",
        ),
        (
            "/1.0/networks/ovn1/forwards",
            json!({"listen_address": "192.0.2.32", "config": {"healthcheck": "true"}}),
            "config.healthcheck",
            "network forwards have no health checks",
        ),
    ];
    for (path, body, field, text) in cases {
        let (st, msg) = req(&c, Method::POST, path, Some(body.clone()))
            .await
            .unwrap_err();
        assert_eq!(st, 400, "{body}: {msg}");
        assert!(msg.contains(field) && msg.contains(text), "{body}: {msg}");
    }
    assert_eq!(
        req(&c, Method::GET, LBS, None).await.unwrap(),
        json!(["/1.0/networks/ovn1/load-balancers/192.0.2.31"]),
        "nothing stored"
    );
    assert_eq!(
        ovn.nb
            .dump(&["Load_Balancer", "Load_Balancer_Health_Check"]),
        nb_before,
        "NB untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_checker_address_must_be_usable() {
    let (_ovn, _d, c) = ovn1().await;
    let net = |name: &str, config: Value| {
        let mut cfg = json!({"network": "uplink", "ovn.router": "lxd-net1-lr",
                             "ovn.switch": "lxd-net1-ls-int", "ovn.prefix": name});
        for (k, v) in config.as_object().unwrap() {
            cfg[k] = v.clone();
        }
        json!({"name": name, "type": "ovn", "config": cfg})
    };
    for (body, field, text) in [
        (
            net("n2", json!({"ipv4.address": "10.0.0.254/24"})),
            "config.ipv4.address",
            "reserved for OVN load-balancer health checks",
        ),
        (
            net("n3", json!({"ipv4.healthcheck.address": "10.9.0.254"})),
            "config.ipv4.healthcheck.address",
            "not in the network's subnet",
        ),
        (
            net("n4", json!({"ipv4.healthcheck.address": "fd00::fe"})),
            "config.ipv4.healthcheck.address",
            "is not an IPv4 address",
        ),
        (
            net("n5", json!({"ipv6.healthcheck.address": "fd00::1"})),
            "config.ipv6.healthcheck.address",
            "router's address",
        ),
    ] {
        let (st, msg) = req(&c, Method::POST, "/1.0/networks", Some(body.clone()))
            .await
            .map(|v| panic!("{body} accepted: {v}"))
            .unwrap_err();
        assert_eq!(st, 400, "{body}: {msg}");
        assert!(msg.contains(field) && msg.contains(text), "{body}: {msg}");
    }
    req(
        &c,
        Method::POST,
        "/1.0/networks",
        Some(net("n6", json!({"ipv4.healthcheck.address": "10.0.0.200"}))),
    )
    .await
    .unwrap();
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Set the status of `port`'s monitors by hand (as ovn-controller would).
fn set_status(ovn: &Ovn, port: &str, status: &str) {
    set_monitor_status(ovn, Some(port), status);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checker_that_ipam_could_hand_out_is_warned_of_in_state() {
    let (ovn, _d, c) = ovn1_with_sb().await;
    create(&c, checked_lb(json!({"healthcheck": "true"}))).await;
    let warnings = |c: ovnlb::cli::Client| async move {
        req(&c, Method::GET, &format!("{LBS}/192.0.2.30/state"), None)
            .await
            .unwrap()["healthcheck"]["warnings"]
            .clone()
    };
    // No IPAM on the switch: nothing hands the address out.
    assert_eq!(warnings(c.clone()).await, json!([]));
    ovn.nb.nbctl(&[
        "set",
        "Logical_Switch",
        "lxd-net1-ls-int",
        "other_config:subnet=10.0.0.0/24",
    ]);
    let w = eventually_async(20, "a warning", || {
        let c = c.clone();
        async move {
            let w = warnings(c).await;
            (w != json!([])).then_some(w)
        }
    })
    .await;
    assert!(
        w[0].as_str()
            .unwrap()
            .contains("10.0.0.254 is not in the switch's other_config:exclude_ips"),
        "{w}"
    );
    ovn.nb.nbctl(&[
        "set",
        "Logical_Switch",
        "lxd-net1-ls-int",
        "other_config:exclude_ips=\"10.0.0.2..10.0.0.9 10.0.0.254\"",
    ]);
    eventually_async(20, "the warning gone", || {
        let c = c.clone();
        async move { (warnings(c).await == json!([])).then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_reports_each_backend_by_its_target_port_as_sb_has_it() {
    let (ovn, _d, c) = ovn1_with_sb().await;
    create(
        &c,
        checked_lb(json!({"healthcheck": "true", "healthcheck.interval": "2"})),
    )
    .await;
    ovn.sync();
    let state = || async {
        req(&c, Method::GET, &format!("{LBS}/192.0.2.30/state"), None)
            .await
            .unwrap()
    };
    let s = eventually_async(20, "both monitors seen, never probed", || async {
        let s = state().await;
        (s["backend_health"]["c1"]["ports"][0]["status"] == "pending"
            && s["backend_health"]["c2"]["ports"][0]["status"] == "pending")
            .then_some(s)
    })
    .await;
    assert_eq!(
        s["backend_health"]["c1"],
        json!({"address": "10.0.0.11",
               "ports": [{"protocol": "tcp", "port": 80, "target_port": 8080, "status": "pending"}]})
    );
    assert_eq!(
        s["healthcheck"],
        json!({"interval": 2, "timeout": 30, "success_count": 3, "failure_count": 3,
               "source_addresses": ["10.0.0.254", "fd00::ffff:ffff:ffff:fffe"], "warnings": []})
    );
    assert_eq!(s["backend_health_error"], "");
    set_status(&ovn, "c1", "offline");
    eventually_async(20, "c1 offline in /state", || async {
        (state().await["backend_health"]["c1"]["ports"][0]["status"] == "offline").then_some(())
    })
    .await;
    assert_eq!(
        state().await["backend_health"]["c2"]["ports"][0]["status"],
        "pending"
    );
    // What /state says is what northd does.
    eventually(20, "c1 out of the VIP", || {
        (ovn.trace("tcp", "192.0.2.30", 80) == ["10.0.0.12:8080"]).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_without_a_southbound_says_so() {
    let (_ovn, _d, c) = ovn1().await;
    create(&c, checked_lb(json!({"healthcheck": "true"}))).await;
    let s = req(&c, Method::GET, &format!("{LBS}/192.0.2.30/state"), None)
        .await
        .unwrap();
    assert_eq!(s["backend_health"], Value::Null);
    assert!(
        s["backend_health_error"]
            .as_str()
            .unwrap()
            .contains("no OVN Southbound database configured"),
        "{s}"
    );
    assert_eq!(s["healthcheck"]["interval"], 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_of_an_unchecked_load_balancer_has_no_health() {
    let (_ovn, _d, c) = ovn1_with_sb().await;
    create(&c, checked_lb(json!({}))).await;
    let s = req(&c, Method::GET, &format!("{LBS}/192.0.2.30/state"), None)
        .await
        .unwrap();
    assert_eq!(s["backend_health"], Value::Null);
    assert_eq!(s["healthcheck"], Value::Null);
    assert_eq!(s["backend_health_error"], "");
}

/// `ovnlb … info` and the real `incus … info` print the backend health.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_prints_backend_health_with_ovnlb_and_the_real_incus() {
    let (ovn, d, c) = ovn1_with_sb().await;
    create(&c, checked_lb(json!({"healthcheck": "true"}))).await;
    ovn.sync();
    set_status(&ovn, "c1", "offline");
    eventually_async(20, "c1 offline in /state", || async {
        (req(&c, Method::GET, &format!("{LBS}/192.0.2.30/state"), None)
            .await
            .unwrap()["backend_health"]["c1"]["ports"][0]["status"]
            == "offline")
            .then_some(())
    })
    .await;
    let socket = d.socket.clone();
    tokio::task::spawn_blocking(move || {
        let ours = Command::new(env!("CARGO_BIN_EXE_ovnlb"))
            .arg("--socket")
            .arg(&socket)
            .args(["network", "load-balancer", "info", "ovn1", "192.0.2.30"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&ours.stdout);
        assert!(ours.status.success(), "{}", String::from_utf8_lossy(&ours.stderr));
        assert!(
            text.contains("Health checks: every 10 s, timeout 30 s, online after 3, offline after 3, from 10.0.0.254, fd00::ffff:ffff:ffff:fffe\n")
                && text.contains("Backend health:\n  c1 (10.0.0.11):\n    - tcp/80: offline (target port 8080)\n")
                && text.contains("  c2 (10.0.0.12):\n    - tcp/80: pending (target port 8080)\n"),
            "{text}"
        );
        let conf = tempfile::tempdir_in(tmp_base()).unwrap();
        std::fs::write(conf.path().join("config.yml"), "").unwrap();
        let incus = Command::new("incus")
            .env("INCUS_SOCKET", &socket)
            .env("INCUS_CONF", conf.path())
            .env("HOME", conf.path())
            .args(["network", "load-balancer", "info", "ovn1", "192.0.2.30"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&incus.stdout);
        assert!(incus.status.success(), "{}", String::from_utf8_lossy(&incus.stderr));
        assert!(
            text.contains("c1 (10.0.0.11):") && text.contains("tcp/80: offline")
                && text.contains("c2 (10.0.0.12):") && text.contains("tcp/80: pending"),
            "{text}"
        );
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_health_transition_is_counted_and_each_monitor_is_a_metric() {
    let (ovn, _d, c) = ovn1_with_sb().await;
    create(&c, checked_lb(json!({"healthcheck": "true"}))).await;
    ovn.sync();
    let metrics = || async { c.text("/1.0/metrics").await.unwrap().1 };
    eventually_async(20, "both monitors in /metrics", || async {
        let t = metrics().await;
        (t.contains(r#"ovnlb_backend_health{logical_port="c1",ip="10.0.0.11",port="8080",protocol="tcp",status="pending"} 1"#)
            && t.contains(r#"logical_port="c2""#))
        .then_some(())
    })
    .await;
    set_status(&ovn, "c1", "offline");
    let t = eventually_async(20, "the transition counted", || async {
        let t = metrics().await;
        t.contains("ovnlb_backend_health_transitions_total 1")
            .then_some(t)
    })
    .await;
    assert!(
        t.contains(r#"ovnlb_backend_health{logical_port="c1",ip="10.0.0.11",port="8080",protocol="tcp",status="offline"} 1"#),
        "{t}"
    );
}

/// With an SB configured but not (yet) reachable, `/state` of a checked load balancer is a
/// 503, not a page of `unknown`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_is_503_while_the_southbound_is_not_ready() {
    init_tracing();
    let ovn = Ovn::start();
    let dir = tempfile::Builder::new()
        .prefix("ovnlbd")
        .tempdir_in(tmp_base())
        .unwrap();
    let nowhere = dir.path().join("no-sb.sock");
    let d = Daemon::start_with(
        &ovn.nb,
        dir,
        ovnlb::daemon::Settings {
            sb: Some(format!("unix:{}", nowhere.display())),
            ..Default::default()
        },
    )
    .await;
    let c = d.client();
    networks(&c).await;
    create(&c, checked_lb(json!({"healthcheck": "true"}))).await;
    let (st, msg) = req(&c, Method::GET, &format!("{LBS}/192.0.2.30/state"), None)
        .await
        .unwrap_err();
    assert_eq!(
        (st, msg.as_str()),
        (503, "OVN southbound database not available")
    );
}
