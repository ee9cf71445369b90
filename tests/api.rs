//! The REST API over ovnlbd's real socket, against real NB + northd: every endpoint,
//! each error class with its status, If-Match, PATCH merge, `?wait`, `/state`, and a
//! restart with the state kept.

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

fn vips_of(ovn: &Ovn, name: &str) -> Option<Value> {
    ovn.nb
        .dump(&["Load_Balancer"])
        .remove("Load_Balancer")
        .unwrap_or_default()
        .into_values()
        .find(|r| r["name"].as_str() == Some(name))
        .map(|r| {
            let m: serde_json::Map<String, Value> = r["vips"]
                .as_map()
                .unwrap_or_default()
                .iter()
                .map(|(k, v)| (k.as_str().unwrap().to_owned(), json!(v.as_str().unwrap())))
                .collect();
            Value::Object(m)
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_against_real_nb() {
    init_tracing();
    let ovn = Ovn::start();
    let d = Daemon::start(&ovn.nb).await;
    let c = d.client();

    // Server info.
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

    // Networks: create, subnets derived from NB, errors.
    networks(&c).await;
    let n = req(&c, Method::GET, "/1.0/networks/ovn1", None)
        .await
        .unwrap();
    assert_eq!(n["config"]["ipv4.address"], "10.0.0.1/24");
    assert_eq!(n["config"]["ipv6.address"], "fd00::1/64");
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
    assert_eq!(list, json!(["/1.0/networks/ovn1", "/1.0/networks/uplink"]));

    // Create a load balancer and wait until NB holds it.
    let lbs = "/1.0/networks/ovn1/load-balancers";
    let r = c
        .request(
            Method::POST,
            &format!("{lbs}?wait=20"),
            Some(&lb_body(
                "192.0.2.10",
                &[("b1", "10.0.0.11"), ("b2", "10.0.0.12")],
            )),
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201);
    assert_eq!(
        r.location.as_deref(),
        Some("/1.0/networks/ovn1/load-balancers/192.0.2.10")
    );
    let name = "ovnlb-ovn1-lb-192.0.2.10-tcp";
    assert_eq!(
        vips_of(&ovn, name).unwrap(),
        json!({"192.0.2.10:80": "10.0.0.11:8080,10.0.0.12:8080"}),
        "in NB when the write returned"
    );
    ovn.sync();
    assert_eq!(
        sorted(ovn.trace("tcp", "192.0.2.10", 80)),
        ["10.0.0.11:8080", "10.0.0.12:8080"]
    );

    // Lists, one object with its ETag, state.
    assert_eq!(
        req(&c, Method::GET, lbs, None).await.unwrap(),
        json!(["/1.0/networks/ovn1/load-balancers/192.0.2.10"])
    );
    let objs = req(&c, Method::GET, &format!("{lbs}?recursion=1"), None)
        .await
        .unwrap();
    assert_eq!(objs[0]["listen_address"], "192.0.2.10");
    assert_eq!(objs[0]["location"], "");
    let one = c.get(&format!("{lbs}/192.0.2.10")).await.unwrap();
    assert_eq!(one.etag.as_deref(), Some("\"1\""));
    assert_eq!(one.metadata["backends"][1]["name"], "b2");
    let state = req(&c, Method::GET, &format!("{lbs}/192.0.2.10/state"), None)
        .await
        .unwrap();
    assert_eq!(state["revision"], 1);
    assert_eq!(state["applied_revision"], 1);
    assert_eq!(state["backend_health"], Value::Null);
    assert_eq!(state["ovn"]["router_attached"], true);
    assert_eq!(state["ovn"]["switch_attached"], true);
    assert_eq!(state["ovn"]["load_balancers"][0]["name"], name);
    assert_eq!(state["error"], "");

    // PUT with the current ETag; then a stale one is refused and changes nothing.
    let mut put = lb_body("192.0.2.10", &[("b1", "10.0.0.11"), ("b3", "10.0.0.13")]);
    put["description"] = json!("web");
    let r = c
        .request(
            Method::PUT,
            &format!("{lbs}/192.0.2.10?wait=20"),
            Some(&put),
            Some("\"1\""),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        vips_of(&ovn, name).unwrap(),
        json!({"192.0.2.10:80": "10.0.0.11:8080,10.0.0.13:8080"})
    );
    let e = c
        .request(
            Method::PUT,
            &format!("{lbs}/192.0.2.10"),
            Some(&lb_body("192.0.2.10", &[("b9", "10.0.0.12")])),
            Some("\"1\""),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Api { status: 412, .. }), "{e}");
    let now = c.get(&format!("{lbs}/192.0.2.10")).await.unwrap();
    assert_eq!(now.etag.as_deref(), Some("\"2\""));
    assert_eq!(now.metadata["backends"][1]["name"], "b3");

    // PATCH merges: description kept, config merged, "" removes a key, a missing
    // config is not a crash, backends untouched unless given.
    req(
        &c,
        Method::PATCH,
        &format!("{lbs}/192.0.2.10"),
        Some(json!({"config": {"user.a": "1", "user.b": "2"}})),
    )
    .await
    .unwrap();
    req(
        &c,
        Method::PATCH,
        &format!("{lbs}/192.0.2.10"),
        Some(json!({"config": {"user.a": ""}})),
    )
    .await
    .unwrap();
    req(
        &c,
        Method::PATCH,
        &format!("{lbs}/192.0.2.10"),
        Some(json!({"ports": null})),
    )
    .await
    .unwrap();
    let now = req(&c, Method::GET, &format!("{lbs}/192.0.2.10"), None)
        .await
        .unwrap();
    assert_eq!(now["description"], "web");
    assert_eq!(now["config"], json!({"user.b": "2"}));
    assert_eq!(now["backends"].as_array().unwrap().len(), 2);
    assert_eq!(now["ports"].as_array().unwrap().len(), 1);

    // Networks cannot change under their load balancers: an uplink route in use, a
    // subnet holding backends.
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
    // A second network on the same uplink cannot take an address in use.
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

    // Error classes, each with its status, none changing anything.
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
            format!("{lbs}/192.0.2.99"),
            None,
            404,
            "Network load balancer not found",
        ),
        (
            Method::GET,
            format!("{lbs}?project=foo"),
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
            lbs.into(),
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
            lbs.into(),
            Some(lb_body("198.51.100.1", &[("b1", "10.0.0.11")])),
            400,
            "listen_address",
        ),
        (
            Method::POST,
            lbs.into(),
            Some(
                json!({"listen_address": "192.0.2.11", "ports": [{"protocol": "tcp", "listen_port": "99999", "target_backend": []}]}),
            ),
            400,
            "ports[0].listen_port",
        ),
        (
            Method::POST,
            lbs.into(),
            Some(
                json!({"listen_address": "192.0.2.11", "backends": [{"name": "b1", "target_address": "10.9.9.9"}]}),
            ),
            400,
            "backends[0].target_address",
        ),
        (
            Method::POST,
            lbs.into(),
            Some(json!({"listen_address": ""})),
            400,
            "listen_address",
        ),
        (
            Method::POST,
            lbs.into(),
            Some(json!("not an object")),
            400,
            "Invalid request body",
        ),
        (
            Method::PUT,
            format!("{lbs}/192.0.2.99"),
            Some(json!({})),
            404,
            "Network load balancer not found",
        ),
        (
            Method::DELETE,
            format!("{lbs}/192.0.2.99"),
            None,
            404,
            "Network load balancer not found",
        ),
    ];
    let before = ovn.nb.dump(&["Load_Balancer"]);
    for (m, path, body, status, text) in cases {
        let (st, msg) = req(&c, m.clone(), &path, body).await.unwrap_err();
        assert_eq!(st, status, "{m} {path}: {msg}");
        assert!(msg.contains(text), "{m} {path}: {msg:?} lacks {text:?}");
    }
    assert_eq!(
        req(&c, Method::GET, lbs, None)
            .await
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(ovn.nb.dump(&["Load_Balancer"]), before, "errors changed NB");

    // IPv6: unescaped in the path, any spelling of the address.
    req(
        &c,
        Method::POST,
        &format!("{lbs}?wait=20"),
        Some(lb_body("2001:db8::10", &[("b1", "fd00::11")])),
    )
    .await
    .unwrap();
    let v6 = req(&c, Method::GET, &format!("{lbs}/2001:DB8:0::10"), None)
        .await
        .unwrap();
    assert_eq!(v6["listen_address"], "2001:db8::10");
    assert_eq!(
        vips_of(&ovn, "ovnlb-ovn1-lb-2001:db8::10-tcp").unwrap(),
        json!({"[2001:db8::10]:80": "[fd00::11]:8080"})
    );

    // Forwards: default target, listed with it, state.
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

    // GET and DELETE with a body (as `lxc query` sends them) are fine; DELETE waits.
    let r = c
        .request(Method::GET, lbs, Some(&Value::String(String::new())), None)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    c.request(
        Method::DELETE,
        &format!("{lbs}/2001:db8::10?wait=20"),
        Some(&Value::String(String::new())),
        None,
    )
    .await
    .unwrap();
    assert!(vips_of(&ovn, "ovnlb-ovn1-lb-2001:db8::10-tcp").is_none());

    // Metrics: the controller counted its transactions; gauges of NB and our rows.
    let (st, text) = c.text("/1.0/metrics").await.unwrap();
    assert_eq!(st, 200);
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing in:\n{text}"))
            .parse()
            .unwrap()
    };
    assert!(value("ovnlb_transactions_total") >= 5.0, "{text}");
    assert!(value("ovnlb_commit_seconds_count") >= 5.0);
    assert_eq!(value("ovnlb_nb_connected"), 1.0);
    assert_eq!(
        value("ovnlb_owned_rows"),
        2.0,
        "192.0.2.10 tcp and the forward's row"
    );
    assert_eq!(value("ovnlb_keys"), 2.0);
    assert_eq!(value("ovnlb_keys_failing"), 0.0);
    // The NB echo probe measures the session's round trip (every second).
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

    // Restart: the state is kept and NB stays as it was.
    let dump = ovn
        .nb
        .dump(&["Load_Balancer", "Logical_Router", "Logical_Switch"]);
    let dir = d.stop().await;
    let d = Daemon::start_in(&ovn.nb, dir).await;
    let c = d.client();
    let again = req(&c, Method::GET, &format!("{lbs}/192.0.2.10"), None)
        .await
        .unwrap();
    assert_eq!(again["description"], "web");
    // The new controller finds NB as it should be and records it, touching nothing.
    let rev = c
        .get(&format!("{lbs}/192.0.2.10"))
        .await
        .unwrap()
        .etag
        .unwrap();
    let want: u64 = rev.trim_matches('"').parse().unwrap();
    loop {
        let st = req(&c, Method::GET, &format!("{lbs}/192.0.2.10/state"), None)
            .await
            .unwrap();
        if st["applied_revision"] == want {
            assert_eq!(st["ovn"]["router_attached"], true);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        ovn.nb
            .dump(&["Load_Balancer", "Logical_Router", "Logical_Switch"]),
        dump
    );

    // Deleting the network removes its rows from NB.
    req(&c, Method::DELETE, "/1.0/networks/ovn1", None)
        .await
        .unwrap();
    let (st, _) = req(&c, Method::DELETE, "/1.0/networks/uplink?project=x", None)
        .await
        .unwrap_err();
    assert_eq!(st, 404);
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
    init_tracing();
    let ovn = Ovn::start();
    let d = Daemon::start(&ovn.nb).await;
    let c = d.client();
    networks(&c).await;
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
