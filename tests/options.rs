//! The OVN options as `ovn.*` keys against real NB + SB + northd: each option in NB and
//! in the logical flows (and ovn-trace where it shows), unset removing it, every
//! refusal a 400 that changes nothing, and a port whose last backend left.

mod common;

use std::process::Command;

use common::*;
use hyper::Method;
use serde_json::{json, Value};

const LBS: &str = "/1.0/networks/ovn1/load-balancers";

/// `listen`:80 → c1 and c2 (10.0.0.11/12 or fd00::11/12) on 8080, with `config`.
fn lb(listen: &str, config: Value) -> Value {
    let (a, b) = if listen.contains(':') {
        ("fd00::11", "fd00::12")
    } else {
        ("10.0.0.11", "10.0.0.12")
    };
    json!({"listen_address": listen, "config": config,
           "backends": [{"name": "c1", "target_address": a, "target_port": "8080"},
                        {"name": "c2", "target_address": b, "target_port": "8080"}],
           "ports": [{"protocol": "tcp", "listen_port": "80", "target_backend": ["c1", "c2"]}]})
}

async fn create(c: &ovnlb::cli::Client, body: Value) {
    req(c, Method::POST, &format!("{LBS}?wait=30"), Some(body))
        .await
        .unwrap();
}

/// PUT `body` (its `listen_address` names it) and wait until NB holds it.
async fn put(c: &ovnlb::cli::Client, body: Value) {
    let listen = body["listen_address"].as_str().unwrap().to_owned();
    req(
        c,
        Method::PUT,
        &format!("{LBS}/{listen}?wait=30"),
        Some(body),
    )
    .await
    .unwrap();
}

/// SB's logical flows, once northd has caught up.
fn lflows(ovn: &Ovn) -> String {
    ovn.sync();
    run(Command::new("ovn-sbctl")
        .arg(format!("--db={}", ovn.sb_db()))
        .arg("lflow-list"))
}

/// The `options` and `selection_fields` of our tcp row of `listen`.
fn row_options(ovn: &Ovn, listen: &str) -> (Value, Value) {
    let name = format!("ovnlb-ovn1-lb-{listen}-tcp");
    let (_, row) = our_rows(ovn)
        .into_iter()
        .find(|(_, r)| r["name"].as_str() == Some(name.as_str()))
        .unwrap_or_else(|| panic!("no row {name}"));
    let options: serde_json::Map<String, Value> = row["options"]
        .as_map()
        .unwrap_or_default()
        .iter()
        .map(|(k, v)| (k.as_str().unwrap().to_owned(), json!(v.as_str().unwrap())))
        .collect();
    let fields: Vec<&str> = row["selection_fields"]
        .atoms()
        .filter_map(|a| a.as_str())
        .collect();
    (Value::Object(options), json!(fields))
}

/// The full ovn-trace text of a new tcp connection from the uplink to `dst:port`.
fn trace_text(ovn: &Ovn, dst: &str, port: u16) -> String {
    let flow = format!(
        "inport == \"lxd-net1-ls-ext-lsp-provider\" && eth.src == 00:00:00:00:aa:01 && eth.dst == 00:00:00:00:ff:01 && \
         ip4.src == 192.0.2.100 && ip4.dst == {dst} && ip.ttl == 64 && tcp && tcp.src == 33333 && tcp.dst == {port}"
    );
    ovn.sync();
    run(Command::new("ovn-trace")
        .arg(format!("--db={}", ovn.sb_db()))
        .args(["--ct=new", "--ct=new", "--ct=new", "lxd-net1-ls-ext"])
        .arg(&flow))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn affinity_learns_with_its_timeout_on_router_and_switch_and_unset_removes_it() {
    let (ovn, _d, c) = ovn1().await;
    create(&c, lb("192.0.2.31", json!({"ovn.affinity_timeout": "60"}))).await;
    assert_eq!(
        row_options(&ovn, "192.0.2.31"),
        (json!({"affinity_timeout": "60"}), json!([]))
    );
    let learn = "commit_lb_aff(vip = \"192.0.2.31:80\", backend = \"10.0.0.11:8080\", proto = tcp, timeout = 60)";
    let flows = lflows(&ovn);
    for stage in ["lr_in_lb_aff_learn", "ls_in_lb_aff_learn"] {
        assert!(
            flows
                .lines()
                .any(|l| l.contains(&format!("({stage}")) && l.contains(learn)),
            "{stage} has no {learn}\n{flows}"
        );
    }
    assert!(flows.contains("chk_lb_aff()"), "{flows}");
    // ovn-trace shows the path of a client not yet known: checked, balanced, learnt.
    let t = trace_text(&ovn, "192.0.2.31", 80);
    assert!(
        t.contains("chk_lb_aff") && t.contains("commit_lb_aff"),
        "{t}"
    );
    // Unset: the option leaves the row, and the flows go.
    put(&c, lb("192.0.2.31", json!({}))).await;
    assert_eq!(row_options(&ovn, "192.0.2.31"), (json!({}), json!([])));
    assert!(!lflows(&ovn).contains("commit_lb_aff(vip = \"192.0.2.31:80\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selection_fields_become_the_hash_fields_of_the_balancing() {
    let (ovn, _d, c) = ovn1().await;
    create(
        &c,
        lb(
            "192.0.2.32",
            json!({"ovn.selection_fields": "ip_src,tp_src"}),
        ),
    )
    .await;
    assert_eq!(
        row_options(&ovn, "192.0.2.32"),
        (json!({}), json!(["ip_src", "tp_src"]))
    );
    let flows = lflows(&ovn);
    assert!(
        flows.lines().any(|l| l.contains("192.0.2.32")
            && l.contains("ct_lb_mark(backends=10.0.0.11:8080,10.0.0.12:8080; hash_fields=\"ip_src,tcp_src\")")),
        "{flows}"
    );
    assert!(trace_text(&ovn, "192.0.2.32", 80).contains("hash_fields=\"ip_src,tcp_src\""));
    put(&c, lb("192.0.2.32", json!({}))).await;
    assert_eq!(row_options(&ovn, "192.0.2.32"), (json!({}), json!([])));
    assert!(!lflows(&ovn).contains("hash_fields"));
}

/// Set every `Service_Monitor` `status`, as ovn-controller would.
fn set_monitors(ovn: &Ovn, status: &str) {
    set_monitor_status(ovn, None, status);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_answers_a_vip_whose_backends_are_all_offline() {
    let (ovn, _d, c) = ovn1_with_sb().await;
    create(
        &c,
        lb(
            "192.0.2.33",
            json!({"ovn.reject": "true", "healthcheck": "true"}),
        ),
    )
    .await;
    assert_eq!(row_options(&ovn, "192.0.2.33").0, json!({"reject": "true"}));
    eventually(30, "monitors", || {
        lflows(&ovn);
        let n = run(Command::new("ovn-sbctl")
            .arg(format!("--db={}", ovn.sb_db()))
            .args(["--bare", "--columns=_uuid", "list", "Service_Monitor"]));
        (n.split_whitespace().count() == 2).then_some(())
    })
    .await;
    // Backends in service: balanced as usual.
    assert_eq!(ovn.trace("tcp", "192.0.2.33", 80).len(), 2);
    set_monitors(&ovn, "offline");
    let t = trace_text(&ovn, "192.0.2.33", 80);
    assert!(
        t.contains("reject {") && !t.contains("ct_lb_mark(backends="),
        "{t}"
    );
    // Without the option the same VIP drops.
    put(&c, lb("192.0.2.33", json!({"healthcheck": "true"}))).await;
    set_monitors(&ovn, "offline");
    let t = trace_text(&ovn, "192.0.2.33", 80);
    assert!(!t.contains("reject {") && t.contains("drop;"), "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_whose_last_backend_left_is_a_vip_without_backends() {
    let (ovn, _d, c) = ovn1().await;
    // What cluster-api-provider-incus sends when its last control-plane machine goes.
    let body = json!({"listen_address": "192.0.2.34", "config": {},
        "backends": [],
        "ports": [{"protocol": "tcp", "listen_port": "6443", "target_backend": []}]});
    create(&c, body).await;
    assert_eq!(
        vip(&ovn, "ovnlb-ovn1-lb-192.0.2.34-tcp", "192.0.2.34:6443").as_deref(),
        Some("")
    );
    let s = req(&c, Method::GET, &format!("{LBS}/192.0.2.34/state"), None)
        .await
        .unwrap();
    assert_eq!(
        s["ports_without_backends"],
        json!([{"protocol": "tcp", "listen_port": "6443"}])
    );
    // OVN drops it; with ovn.reject it rejects.
    let t = trace_text(&ovn, "192.0.2.34", 6443);
    assert!(
        !t.contains("ct_lb_mark(backends=") && !t.contains("reject {"),
        "{t}"
    );
    let body = json!({"listen_address": "192.0.2.34", "config": {"ovn.reject": "true"},
        "backends": [],
        "ports": [{"protocol": "tcp", "listen_port": "6443", "target_backend": []}]});
    put(&c, body).await;
    assert!(trace_text(&ovn, "192.0.2.34", 6443).contains("reject {"));
}

/// The addresses of the router's ARP-responder address sets (`_rtr_lb_<key>_ip4`).
fn responder_addresses(ovn: &Ovn) -> String {
    ovn.sync();
    let out = run(Command::new("ovn-sbctl")
        .arg(format!("--db={}", ovn.sb_db()))
        .args([
            "--format=json",
            "--columns=name,addresses",
            "list",
            "Address_Set",
        ]));
    let v: Value = serde_json::from_str(&out).unwrap();
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            let n = r[0].as_str().unwrap_or("");
            n.starts_with("_rtr_lb_") && n.ends_with("_ip4")
        })
        .map(|r| r[1].to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neighbor_responder_all_answers_for_an_off_link_vip_and_none_for_none() {
    let (ovn, _d, c) = ovn1().await;
    // An uplink route off the router's link (192.0.2.2/24): LXD's routed VIPs.
    req(
        &c,
        Method::PATCH,
        "/1.0/networks/uplink",
        Some(json!({"config": {"ipv4.routes": "192.0.2.0/24,198.51.100.0/24"}})),
    )
    .await
    .unwrap();
    create(&c, lb("198.51.100.10", json!({}))).await;
    create(&c, lb("192.0.2.35", json!({}))).await;
    let set = responder_addresses(&ovn);
    assert!(
        set.contains("192.0.2.35") && !set.contains("198.51.100.10"),
        "{set}"
    );
    put(
        &c,
        lb("198.51.100.10", json!({"ovn.neighbor_responder": "all"})),
    )
    .await;
    assert_eq!(
        row_options(&ovn, "198.51.100.10").0,
        json!({"neighbor_responder": "all"})
    );
    assert!(responder_addresses(&ovn).contains("198.51.100.10"));
    put(
        &c,
        lb("192.0.2.35", json!({"ovn.neighbor_responder": "none"})),
    )
    .await;
    let set = responder_addresses(&ovn);
    assert!(
        set.contains("198.51.100.10") && !set.contains("192.0.2.35"),
        "{set}"
    );
    // On a forward too.
    let fwd = json!({"listen_address": "192.0.2.36", "config": {"ovn.neighbor_responder": "none"},
                     "ports": [{"protocol": "tcp", "listen_port": "22", "target_address": "10.0.0.11"}]});
    req(
        &c,
        Method::POST,
        "/1.0/networks/ovn1/forwards?wait=30",
        Some(fwd),
    )
    .await
    .unwrap();
    assert_eq!(
        row_options(&ovn, "192.0.2.36").0,
        json!({"neighbor_responder": "none"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_option_rule_refuses_with_400_and_changes_nothing() {
    let (ovn, _d, c) = ovn1().await;
    // One affinity load balancer on c1:8080, for the rule of northd before 24.03.
    create(&c, lb("192.0.2.40", json!({"ovn.affinity_timeout": "30"}))).await;
    let before = (
        req(&c, Method::GET, &format!("{LBS}?recursion=1"), None)
            .await
            .unwrap(),
        our_rows(&ovn),
    );
    let version = run(Command::new("ovn-nbctl")
        .arg(format!("--db={}", ovn.nb.db()))
        .args(["get", "NB_Global", ".", "options:northd_internal_version"]));
    let version = version
        .trim()
        .trim_matches('"')
        .split('-')
        .next()
        .unwrap()
        .to_owned();
    let cases: Vec<(Value, &str, String)> = vec![
        (json!({"ovn.affinity_timeout": "0"}), "ovn.affinity_timeout", "out of range".into()),
        (json!({"ovn.affinity_timeout": "65536"}), "ovn.affinity_timeout", "out of range".into()),
        (json!({"ovn.affinity_timeout": "30s"}), "ovn.affinity_timeout", "not a decimal number".into()),
        (json!({"ovn.affinity_timeout": "60", "healthcheck": "true"}), "ovn.affinity_timeout", "health checks".into()),
        (json!({"ovn.affinity_timeout": "60", "ovn.selection_fields": "ip_src"}), "ovn.affinity_timeout", "ovn.selection_fields".into()),
        (json!({"ovn.selection_fields": "eth_src,ip_src"}), "ovn.selection_fields", "eth_src".into()),
        (json!({"ovn.selection_fields": "ip_dst"}), "ovn.selection_fields", "ip_src or tp_src".into()),
        (json!({"ovn.reject": "yes"}), "ovn.reject", "not true or false".into()),
        (json!({"ovn.neighbor_responder": "bogus"}), "ovn.neighbor_responder", "reachable, all, none".into()),
        // The rule of northd older than 24.03: another affinity load balancer targets
        // 10.0.0.11:8080.
        (json!({"ovn.affinity_timeout": "60"}), "ovn.affinity_timeout", format!("load balancer 192.0.2.40 also has session affinity and targets 10.0.0.11:8080; northd older than 24.03 (found {version})")),
    ];
    for (config, key, why) in cases {
        let (status, msg) = req(
            &c,
            Method::POST,
            LBS,
            Some(lb("192.0.2.41", config.clone())),
        )
        .await
        .expect_err("refused");
        assert_eq!(status, 400, "{config}: {msg}");
        assert!(
            msg.contains(&format!("Invalid value for \"{key}\"")) && msg.contains(&why),
            "{config}: {msg}"
        );
    }
    // ip_* on an IPv6 listen address before 25.03.
    let (status, msg) = req(
        &c,
        Method::POST,
        LBS,
        Some(lb(
            "2001:db8::41",
            json!({"ovn.selection_fields": "ip_src"}),
        )),
    )
    .await
    .expect_err("refused");
    assert_eq!(status, 400);
    assert!(
        msg.contains(&format!(
            "ip_src on an IPv6 listen address needs northd 25.03 or later (found {version})"
        )),
        "{msg}"
    );
    // tp_src alone spreads IPv6 clients: accepted.
    create(
        &c,
        lb("2001:db8::42", json!({"ovn.selection_fields": "tp_src"})),
    )
    .await;
    req(
        &c,
        Method::DELETE,
        &format!("{LBS}/2001:db8::42?wait=30"),
        None,
    )
    .await
    .unwrap();
    // Forwards take no load-balancer option; an unknown ovn.* key is refused.
    let fwd = json!({"listen_address": "192.0.2.42", "config": {"ovn.reject": "true"},
                     "ports": [{"protocol": "tcp", "listen_port": "22", "target_address": "10.0.0.11"}]});
    let (status, msg) = req(&c, Method::POST, "/1.0/networks/ovn1/forwards", Some(fwd))
        .await
        .expect_err("refused");
    assert!(
        status == 400 && msg.contains("load balancers only"),
        "{msg}"
    );
    let (status, msg) = req(
        &c,
        Method::POST,
        LBS,
        Some(lb("192.0.2.41", json!({"ovn.skip_snat": "true"}))),
    )
    .await
    .expect_err("refused");
    assert!(
        status == 400 && msg.contains("Invalid option \"ovn.skip_snat\""),
        "{msg}"
    );
    // A bad value on an existing load balancer changes nothing either.
    let (status, _) = req(
        &c,
        Method::PUT,
        &format!("{LBS}/192.0.2.40"),
        Some(lb("192.0.2.40", json!({"ovn.affinity_timeout": "0"}))),
    )
    .await
    .expect_err("refused");
    assert_eq!(status, 400);
    let after = (
        req(&c, Method::GET, &format!("{LBS}?recursion=1"), None)
            .await
            .unwrap(),
        our_rows(&ovn),
    );
    assert_eq!(before, after);
}
