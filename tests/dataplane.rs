//! The real data plane: connections to the VIPs reach every backend; after a backend
//! is removed, only the others answer.

mod common;

use std::collections::BTreeSet;

use common::*;
use ovnlb::lb::state::DesiredState;
use ovnlb::reconcile::{reconcile_pass, PassOptions};

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
