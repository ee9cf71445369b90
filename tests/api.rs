//! The REST API over ovnlbd's real socket, against real NB + northd, one test per
//! behaviour over [`ovn1`] (NB, northd, ovnlbd, the `uplink` and `ovn1` networks): every
//! endpoint, each error class with its status, If-Match, PATCH merge, `?wait`, `/state`,
//! metrics, a restart with the state kept, HTTPS, and random input.

mod common;

use common::*;
use hyper::Method;
use ovnlb::cli::{Client, ClientError};
use serde_json::{json, Value};

fn lb_body(listen: &str, backends: &[(&str, &str)]) -> Value {
    let b: Vec<Value> = backends
        .iter()
        .map(|(n, a)| json!({"name": n, "target_address": a, "target_port": "8080"}))
        .collect();
    let names: Vec<&str> = backends.iter().map(|(n, _)| *n).collect();
    json!({"listen_address": listen, "backends": b,
           "ports": [{"protocol": "tcp", "listen_port": "80", "target_backend": names}]})
}

const LBS: &str = "/1.0/networks/ovn1/load-balancers";
const NAME: &str = "ovnlb-ovn1-lb-192.0.2.10-tcp";

/// The load balancer most tests start from: 192.0.2.10:80 over b1 and b2, created with
/// `?wait` (NB holds it when this returns). The answer, a 201.
async fn with_lb(c: &Client) -> ovnlb::cli::http::Reply {
    let r = c
        .request(
            Method::POST,
            &format!("{LBS}?wait=20"),
            Some(&lb_body(
                "192.0.2.10",
                &[("b1", "10.0.0.11"), ("b2", "10.0.0.12")],
            )),
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201);
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_info_lists_the_extensions() {
    let (_ovn, _d, c) = ovn1().await;
    let info = req(&c, Method::GET, "/1.0", None).await.unwrap();
    let ext: Vec<&str> = info["api_extensions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for e in [
        "network",
        "network_forward",
        "network_load_balancer",
        "network_load_balancer_state",
    ] {
        assert!(ext.contains(&e), "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_without_subnets_gets_them_from_nb() {
    let (_ovn, _d, c) = ovn1().await;
    let n = req(&c, Method::GET, "/1.0/networks/ovn1", None)
        .await
        .unwrap();
    assert_eq!(n["config"]["ipv4.address"], "10.0.0.1/24");
    assert_eq!(n["config"]["ipv6.address"], "fd00::1/64");
    let list = req(&c, Method::GET, "/1.0/networks", None).await.unwrap();
    assert_eq!(list, json!(["/1.0/networks/ovn1", "/1.0/networks/uplink"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_breaking_a_rule_is_refused() {
    let (_ovn, _d, c) = ovn1().await;
    let bad = json!({"name": "ovn2", "type": "ovn",
                     "config": {"network": "uplink", "ovn.router": "no-such-lr", "ovn.switch": "lxd-net1-ls-int"}});
    let (st, msg) = req(&c, Method::POST, "/1.0/networks", Some(bad))
        .await
        .unwrap_err();
    assert_eq!(st, 400);
    assert!(
        msg.contains("config.ovn.router") && msg.contains("no-such-lr"),
        "{msg}"
    );
    let (st, msg) = req(
        &c,
        Method::POST,
        "/1.0/networks",
        Some(json!({"name": "x", "type": "bridge"})),
    )
    .await
    .unwrap_err();
    assert_eq!(st, 400, "{msg}");
    let (st, _) = req(
        &c,
        Method::POST,
        "/1.0/networks",
        Some(json!({"name": "uplink", "type": "physical"})),
    )
    .await
    .unwrap_err();
    assert_eq!(st, 409);
    let list = req(&c, Method::GET, "/1.0/networks", None).await.unwrap();
    assert_eq!(
        list,
        json!(["/1.0/networks/ovn1", "/1.0/networks/uplink"]),
        "nothing created"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_with_wait_returns_once_nb_holds_the_row() {
    let (ovn, _d, c) = ovn1().await;
    let r = with_lb(&c).await;
    assert_eq!(
        r.location.as_deref(),
        Some("/1.0/networks/ovn1/load-balancers/192.0.2.10")
    );
    assert_eq!(
        vips_of(&ovn, NAME).unwrap(),
        json!({"192.0.2.10:80": "10.0.0.11:8080,10.0.0.12:8080"}),
        "in NB when the write returned"
    );
    ovn.sync();
    assert_eq!(
        sorted(ovn.trace("tcp", "192.0.2.10", 80)),
        ["10.0.0.11:8080", "10.0.0.12:8080"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_an_object_with_its_etag_and_its_state() {
    let (_ovn, _d, c) = ovn1().await;
    with_lb(&c).await;
    assert_eq!(
        req(&c, Method::GET, LBS, None).await.unwrap(),
        json!(["/1.0/networks/ovn1/load-balancers/192.0.2.10"])
    );
    let objs = req(&c, Method::GET, &format!("{LBS}?recursion=1"), None)
        .await
        .unwrap();
    assert_eq!(objs[0]["listen_address"], "192.0.2.10");
    assert_eq!(objs[0]["location"], "");
    let one = c.get(&format!("{LBS}/192.0.2.10")).await.unwrap();
    assert_eq!(one.etag.as_deref(), Some("\"1\""));
    assert_eq!(one.metadata["backends"][1]["name"], "b2");
    let state = req(&c, Method::GET, &format!("{LBS}/192.0.2.10/state"), None)
        .await
        .unwrap();
    assert_eq!(state["revision"], 1);
    assert_eq!(state["applied_revision"], 1);
    assert_eq!(state["backend_health"], Value::Null);
    assert_eq!(state["ovn"]["router_attached"], true);
    assert_eq!(state["ovn"]["switch_attached"], true);
    assert_eq!(state["ovn"]["load_balancers"][0]["name"], NAME);
    assert_eq!(state["error"], "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_with_the_current_etag_applies_and_a_stale_one_changes_nothing() {
    let (ovn, _d, c) = ovn1().await;
    with_lb(&c).await;
    let mut put = lb_body("192.0.2.10", &[("b1", "10.0.0.11"), ("b3", "10.0.0.13")]);
    put["description"] = json!("web");
    let r = c
        .request(
            Method::PUT,
            &format!("{LBS}/192.0.2.10?wait=20"),
            Some(&put),
            Some("\"1\""),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        vips_of(&ovn, NAME).unwrap(),
        json!({"192.0.2.10:80": "10.0.0.11:8080,10.0.0.13:8080"})
    );
    let e = c
        .request(
            Method::PUT,
            &format!("{LBS}/192.0.2.10"),
            Some(&lb_body("192.0.2.10", &[("b9", "10.0.0.12")])),
            Some("\"1\""),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Api { status: 412, .. }), "{e}");
    let now = c.get(&format!("{LBS}/192.0.2.10")).await.unwrap();
    assert_eq!(now.etag.as_deref(), Some("\"2\""));
    assert_eq!(now.metadata["backends"][1]["name"], "b3");
}

/// PATCH merges: description kept, config merged, "" removes a key, a null is not a
/// crash, backends untouched unless given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_merges_into_the_stored_object() {
    let (_ovn, _d, c) = ovn1().await;
    with_lb(&c).await;
    let path = format!("{LBS}/192.0.2.10");
    for body in [
        json!({"description": "web"}),
        json!({"config": {"user.a": "1", "user.b": "2"}}),
        json!({"config": {"user.a": ""}}),
        json!({"ports": null}),
    ] {
        req(&c, Method::PATCH, &path, Some(body)).await.unwrap();
    }
    let now = req(&c, Method::GET, &path, None).await.unwrap();
    assert_eq!(now["description"], "web");
    assert_eq!(now["config"], json!({"user.b": "2"}));
    assert_eq!(now["backends"].as_array().unwrap().len(), 2);
    assert_eq!(now["ports"].as_array().unwrap().len(), 1);
}

/// An uplink route in use and a subnet holding backends cannot change; other keys can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn networks_cannot_change_under_their_load_balancers() {
    let (_ovn, _d, c) = ovn1().await;
    with_lb(&c).await;
    let (st, msg) = req(
        &c,
        Method::PATCH,
        "/1.0/networks/uplink",
        Some(json!({"config": {"ipv4.routes": "198.51.100.0/24"}})),
    )
    .await
    .unwrap_err();
    assert_eq!(st, 400);
    assert!(
        msg.contains("in use") && msg.contains("192.0.2.10"),
        "{msg}"
    );
    let (st, msg) = req(
        &c,
        Method::PATCH,
        "/1.0/networks/ovn1",
        Some(json!({"config": {"ipv4.address": "10.1.0.1/24"}})),
    )
    .await
    .unwrap_err();
    assert_eq!(st, 400);
    assert!(msg.contains("target_address"), "{msg}");
    req(
        &c,
        Method::PATCH,
        "/1.0/networks/uplink",
        Some(json!({"config": {"user.note": "ok"}})),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_network_on_the_uplink_cannot_take_an_address_in_use() {
    let (_ovn, _d, c) = ovn1().await;
    with_lb(&c).await;
    let ovn2 = json!({"name": "ovn2", "type": "ovn",
                      "config": {"network": "uplink", "ovn.router": "lxd-net1-lr",
                                 "ovn.switch": "lxd-net1-ls-int", "ovn.prefix": "net2"}});
    req(&c, Method::POST, "/1.0/networks", Some(ovn2))
        .await
        .unwrap();
    let (st, msg) = req(
        &c,
        Method::POST,
        "/1.0/networks/ovn2/load-balancers",
        Some(lb_body("192.0.2.10", &[("b1", "10.0.0.11")])),
    )
    .await
    .unwrap_err();
    assert_eq!(st, 409, "{msg}");
    req(&c, Method::DELETE, "/1.0/networks/ovn2", None)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_error_class_has_its_status_and_changes_nothing() {
    let (ovn, _d, c) = ovn1().await;
    with_lb(&c).await;
    let cases: Vec<(Method, String, Option<Value>, u16, &str)> = vec![
        (
            Method::GET,
            "/1.0/networks/nope/load-balancers".into(),
            None,
            404,
            "Network not found",
        ),
        (
            Method::GET,
            format!("{LBS}/192.0.2.99"),
            None,
            404,
            "Network load balancer not found",
        ),
        (
            Method::GET,
            format!("{LBS}?project=foo"),
            None,
            404,
            "Project not found",
        ),
        (
            Method::GET,
            "/1.0/networks/uplink/load-balancers".into(),
            None,
            400,
            "does not support load balancers",
        ),
        (
            Method::POST,
            LBS.into(),
            Some(lb_body("192.0.2.10", &[("b1", "10.0.0.11")])),
            409,
            "already exists",
        ),
        (
            Method::POST,
            "/1.0/networks/ovn1/forwards".into(),
            Some(json!({"listen_address": "192.0.2.10"})),
            409,
            "192.0.2.10",
        ),
        (
            Method::POST,
            LBS.into(),
            Some(lb_body("198.51.100.1", &[("b1", "10.0.0.11")])),
            400,
            "listen_address",
        ),
        (
            Method::POST,
            LBS.into(),
            Some(
                json!({"listen_address": "192.0.2.11", "ports": [{"protocol": "tcp", "listen_port": "99999", "target_backend": []}]}),
            ),
            400,
            "ports[0].listen_port",
        ),
        (
            Method::POST,
            LBS.into(),
            Some(
                json!({"listen_address": "192.0.2.11", "backends": [{"name": "b1", "target_address": "10.9.9.9"}]}),
            ),
            400,
            "backends[0].target_address",
        ),
        (
            Method::POST,
            LBS.into(),
            Some(json!({"listen_address": ""})),
            400,
            "listen_address",
        ),
        (
            Method::POST,
            LBS.into(),
            Some(json!("not an object")),
            400,
            "Invalid request body",
        ),
        (
            Method::PUT,
            format!("{LBS}/192.0.2.99"),
            Some(json!({})),
            404,
            "Network load balancer not found",
        ),
        (
            Method::DELETE,
            format!("{LBS}/192.0.2.99"),
            None,
            404,
            "Network load balancer not found",
        ),
        (
            Method::DELETE,
            "/1.0/networks/uplink?project=x".into(),
            None,
            404,
            "Project not found",
        ),
    ];
    let before = ovn.nb.dump(&["Load_Balancer"]);
    for (m, path, body, status, text) in cases {
        let (st, msg) = req(&c, m.clone(), &path, body).await.unwrap_err();
        assert_eq!(st, status, "{m} {path}: {msg}");
        assert!(msg.contains(text), "{m} {path}: {msg:?} lacks {text:?}");
    }
    assert_eq!(
        req(&c, Method::GET, LBS, None)
            .await
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(ovn.nb.dump(&["Load_Balancer"]), before, "errors changed NB");
}

/// IPv6: unescaped in the path, any spelling of the address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipv6_load_balancer_is_found_under_any_spelling() {
    let (ovn, _d, c) = ovn1().await;
    req(
        &c,
        Method::POST,
        &format!("{LBS}?wait=20"),
        Some(lb_body("2001:db8::10", &[("b1", "fd00::11")])),
    )
    .await
    .unwrap();
    let v6 = req(&c, Method::GET, &format!("{LBS}/2001:DB8:0::10"), None)
        .await
        .unwrap();
    assert_eq!(v6["listen_address"], "2001:db8::10");
    assert_eq!(
        vips_of(&ovn, "ovnlb-ovn1-lb-2001:db8::10-tcp").unwrap(),
        json!({"[2001:db8::10]:80": "[fd00::11]:8080"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_sends_to_its_default_target() {
    let (ovn, _d, c) = ovn1().await;
    let fwds = "/1.0/networks/ovn1/forwards";
    req(&c, Method::POST, &format!("{fwds}?wait=20"), Some(json!({"listen_address": "192.0.2.20", "config": {"target_address": "10.0.0.13"}, "ports": null})))
        .await
        .unwrap();
    let f = req(&c, Method::GET, &format!("{fwds}?recursion=1"), None)
        .await
        .unwrap();
    assert_eq!(f[0]["config"]["target_address"], "10.0.0.13");
    let fs = req(&c, Method::GET, &format!("{fwds}/192.0.2.20/state"), None)
        .await
        .unwrap();
    assert_eq!(fs["applied_revision"], 1);
    assert_eq!(
        vips_of(&ovn, "ovnlb-ovn1-lb-192.0.2.20-tcp").unwrap(),
        json!({"192.0.2.20": "10.0.0.13"})
    );
}

/// GET and DELETE with a body (as `lxc query` sends them) are fine; DELETE waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_or_delete_with_a_body_is_served() {
    let (ovn, _d, c) = ovn1().await;
    with_lb(&c).await;
    let r = c
        .request(Method::GET, LBS, Some(&Value::String(String::new())), None)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    c.request(
        Method::DELETE,
        &format!("{LBS}/192.0.2.10?wait=20"),
        Some(&Value::String(String::new())),
        None,
    )
    .await
    .unwrap();
    assert!(
        vips_of(&ovn, NAME).is_none(),
        "gone when the delete returned"
    );
}

/// The controller counts its transactions; gauges of NB and our rows; the NB echo probe
/// measures the session's round trip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_transactions_rows_and_keys() {
    let (_ovn, _d, c) = ovn1().await;
    with_lb(&c).await;
    req(
        &c,
        Method::POST,
        "/1.0/networks/ovn1/forwards?wait=20",
        Some(json!({"listen_address": "192.0.2.20", "config": {"target_address": "10.0.0.13"}})),
    )
    .await
    .unwrap();
    let (st, text) = c.text("/1.0/metrics").await.unwrap();
    assert_eq!(st, 200);
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing in:\n{text}"))
            .parse()
            .unwrap()
    };
    assert!(value("ovnlb_transactions_total") >= 2.0, "{text}");
    assert!(value("ovnlb_commit_seconds_count") >= 2.0);
    assert_eq!(value("ovnlb_nb_connected"), 1.0);
    assert_eq!(
        value("ovnlb_owned_rows"),
        2.0,
        "192.0.2.10 tcp and the forward's row"
    );
    assert_eq!(value("ovnlb_keys"), 2.0);
    assert_eq!(value("ovnlb_keys_failing"), 0.0);
    let cr = &c;
    eventually_async(10, "an NB echo round trip recorded", move || async move {
        let c = cr;
        let (_, text) = c.text("/1.0/metrics").await.ok()?;
        let n: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("ovnlb_nb_echo_seconds_count "))?
            .parse()
            .ok()?;
        (n > 0.0).then_some(())
    })
    .await;
}

/// A restart keeps the state, and the new controller finds NB as it should be and
/// records it, touching nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_the_state_and_leaves_nb_as_it_was() {
    let (ovn, d, c) = ovn1().await;
    with_lb(&c).await;
    req(
        &c,
        Method::PATCH,
        &format!("{LBS}/192.0.2.10?wait=20"),
        Some(json!({"description": "web"})),
    )
    .await
    .unwrap();
    let dump = ovn
        .nb
        .dump(&["Load_Balancer", "Logical_Router", "Logical_Switch"]);
    let dir = d.stop().await;
    let d = Daemon::start_in(&ovn.nb, dir).await;
    let c = d.client();
    let again = c.get(&format!("{LBS}/192.0.2.10")).await.unwrap();
    assert_eq!(again.metadata["description"], "web");
    let want: u64 = again.etag.unwrap().trim_matches('"').parse().unwrap();
    let st = eventually_async(20, "the stored revision recorded as applied", || async {
        req(&c, Method::GET, &format!("{LBS}/192.0.2.10/state"), None)
            .await
            .ok()
            .filter(|st| st["applied_revision"] == want)
    })
    .await;
    assert_eq!(st["ovn"]["router_attached"], true);
    assert_eq!(
        ovn.nb
            .dump(&["Load_Balancer", "Logical_Router", "Logical_Switch"]),
        dump
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_network_removes_its_rows_from_nb() {
    let (ovn, _d, c) = ovn1().await;
    with_lb(&c).await;
    req(&c, Method::DELETE, "/1.0/networks/ovn1", None)
        .await
        .unwrap();
    eventually(20, "rows of a deleted network gone", || {
        ovn.nb.dump(&["Load_Balancer"])["Load_Balancer"]
            .is_empty()
            .then_some(())
    })
    .await;
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn client_cert(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let c = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
    let (crt, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&crt, c.cert.pem()).unwrap();
    std::fs::write(&key, c.signing_key.serialize_pem()).unwrap();
    (crt, key)
}

/// HTTPS with client certificates: only certificates of the trust list get in; others
/// (or none) get 403 and `GET /1.0` answers "untrusted"; the server is verified by the
/// client; the CLI works over `--remote`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_client_certificates() {
    init_tracing();
    let nb = OvsdbServer::start();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let state = tempfile::tempdir_in(tmp_base()).unwrap();
    let certs = tempfile::tempdir_in(tmp_base()).unwrap();
    let (good_crt, good_key) = client_cert(certs.path(), "admin");
    let (bad_crt, bad_key) = client_cert(certs.path(), "stranger");
    std::fs::create_dir_all(state.path().join("trust")).unwrap();
    std::fs::copy(&good_crt, state.path().join("trust/admin.crt")).unwrap();
    let d = Daemon::start_with(
        &nb,
        state,
        ovnlb::daemon::Settings {
            https_listen: Some(([127, 0, 0, 1], port).into()),
            ..Default::default()
        },
    )
    .await;
    let server_crt = d.dir.path().join("server.crt");
    assert!(server_crt.exists(), "server certificate generated");
    let url = format!("https://127.0.0.1:{port}");
    let files =
        |crt: Option<&std::path::Path>, key: Option<&std::path::Path>| ovnlb::ovsdb::TlsFiles {
            ca: server_crt.clone(),
            cert: crt.map(Into::into),
            key: key.map(Into::into),
        };
    let good = Client::https(&url, &files(Some(&good_crt), Some(&good_key))).unwrap();
    let bad = Client::https(&url, &files(Some(&bad_crt), Some(&bad_key))).unwrap();
    let none = Client::https(&url, &files(None, None)).unwrap();

    assert_eq!(
        req(&good, Method::GET, "/1.0", None).await.unwrap()["auth"],
        "trusted"
    );
    let up =
        json!({"name": "uplink", "type": "physical", "config": {"ipv4.routes": "192.0.2.0/24"}});
    req(&good, Method::POST, "/1.0/networks", Some(up.clone()))
        .await
        .unwrap();
    for c in [&bad, &none] {
        assert_eq!(
            req(c, Method::GET, "/1.0", None).await.unwrap()["auth"],
            "untrusted"
        );
        let (st, msg) = req(c, Method::GET, "/1.0/networks", None)
            .await
            .unwrap_err();
        assert_eq!((st, msg.as_str()), (403, "not authorized"));
        let other = json!({"name": "up2", "type": "physical"});
        let (st, _) = req(c, Method::POST, "/1.0/networks", Some(other))
            .await
            .unwrap_err();
        assert_eq!(st, 403);
    }
    assert_eq!(
        req(&good, Method::GET, "/1.0/networks", None)
            .await
            .unwrap(),
        json!(["/1.0/networks/uplink"]),
        "nothing created by untrusted clients"
    );
    // The client verifies the server: another CA fails the handshake.
    let wrong = Client::https(
        &url,
        &ovnlb::ovsdb::TlsFiles {
            ca: good_crt.clone(),
            cert: Some(good_crt.clone()),
            key: Some(good_key.clone()),
        },
    )
    .unwrap();
    let e = wrong.get("/1.0").await.unwrap_err();
    assert!(e.to_string().contains("TLS"), "{e}");

    // The CLI over --remote.
    let ovnlb = |crt: &std::path::Path, key: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ovnlb"))
            .args(["network", "list", "-f", "csv", "--remote", &url, "--tls-ca"])
            .arg(&server_crt)
            .arg("--tls-cert")
            .arg(crt)
            .arg("--tls-key")
            .arg(key)
            .output()
            .unwrap()
    };
    let out = ovnlb(&good_crt, &good_key);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "uplink,physical,YES,,,,0,CREATED\n"
    );
    let out = ovnlb(&bad_crt, &bad_key);
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "Error: not authorized"
    );
}

/// Malformed and random input never takes the daemon down or leaves a request without a
/// proper answer: every response is an LXD envelope (or a sync one), never a dropped
/// connection, and the daemon still serves afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_input_gets_envelopes() {
    let (_ovn, _d, c) = ovn1().await;
    // A small deterministic generator (xorshift): the same cases every run.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let atoms = [
        json!(null),
        json!(""),
        json!("192.0.2.50"),
        json!("2001:db8::50"),
        json!("not an ip"),
        json!("80-65536"),
        json!("0"),
        json!("1,2,3-"),
        json!(-1),
        json!(1e300),
        json!(true),
        json!([]),
        json!({}),
        json!(["b1", null, 7]),
        json!("\u{0}\u{ffff}"),
    ];
    let keys = [
        "listen_address",
        "description",
        "config",
        "backends",
        "ports",
        "name",
        "type",
        "target_address",
        "target_port",
        "listen_port",
        "protocol",
        "target_backend",
        "user.x",
        "network",
        "ovn.router",
        "ipv4.address",
    ];
    fn gen(next: &mut impl FnMut() -> u64, atoms: &[Value], keys: &[&str], depth: u32) -> Value {
        match next() % if depth > 2 { 2 } else { 4 } {
            0 | 1 => atoms[(next() % atoms.len() as u64) as usize].clone(),
            2 => Value::Array(
                (0..next() % 3)
                    .map(|_| gen(next, atoms, keys, depth + 1))
                    .collect(),
            ),
            _ => Value::Object(
                (0..next() % 5)
                    .map(|_| {
                        let k = keys[(next() % keys.len() as u64) as usize].to_owned();
                        (k, gen(next, atoms, keys, depth + 1))
                    })
                    .collect(),
            ),
        }
    }
    let paths = [
        "/1.0/networks",
        "/1.0/networks/ovn1",
        "/1.0/networks/uplink",
        "/1.0/networks/ovn1/load-balancers",
        "/1.0/networks/ovn1/load-balancers/192.0.2.50",
        "/1.0/networks/ovn1/load-balancers/2001:db8::50",
        "/1.0/networks/ovn1/forwards",
        "/1.0/networks/ovn1/forwards/192.0.2.50",
        "/1.0/networks/ovn1/forwards/192.0.2.50/state",
        "/1.0/networks/ovn1/load-balancers/zz%00/state?recursion=%ff",
    ];
    let methods = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
    ];
    for _ in 0..600 {
        let m = methods[(next() % methods.len() as u64) as usize].clone();
        let p = paths[(next() % paths.len() as u64) as usize];
        let body = gen(&mut next, &atoms, &keys, 0);
        match c.request(m.clone(), p, Some(&body), None).await {
            Ok(_) | Err(ClientError::Api { .. }) => {}
            Err(e) => panic!("{m} {p} {body}: {e}"),
        }
    }
    // Still serving, and NB holds only what valid requests asked for.
    assert_eq!(
        req(&c, Method::GET, "/1.0", None).await.unwrap()["auth"],
        "trusted"
    );
    let lbs = req(
        &c,
        Method::GET,
        "/1.0/networks/ovn1/load-balancers?recursion=1",
        None,
    )
    .await;
    assert!(lbs.is_ok() || lbs.unwrap_err().0 == 404);
}
