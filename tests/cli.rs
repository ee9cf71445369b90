//! The `ovnlb` binary and the real `lxc` client (Debian's lxd-client) against a running
//! ovnlbd on a real NB: every subcommand, what they print, exit codes and messages.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

/// Run `ovnlb --socket S args…` (stdin: `input`, else /dev/null): (exit ok, stdout, stderr).
fn ovnlb(sock: &Path, args: &[&str], input: Option<&str>) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ovnlb"));
    cmd.arg("--socket").arg(sock).args(args);
    run_with(cmd, input)
}

fn run_with(mut cmd: Command, input: Option<&str>) -> (bool, String, String) {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd.spawn().unwrap();
    if let Some(i) = input {
        child.stdin.take().unwrap().write_all(i.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `ovnlb …` that must succeed; its stdout.
fn ok(sock: &Path, args: &[&str]) -> String {
    let (good, out, err) = ovnlb(sock, args, None);
    assert!(good, "ovnlb {args:?} failed: {err}");
    out
}

/// `ovnlb …` that must fail; its stderr.
fn fails(sock: &Path, args: &[&str]) -> String {
    let (good, out, err) = ovnlb(sock, args, None);
    assert!(!good, "ovnlb {args:?} succeeded: {out}");
    err
}

/// Run `f` with ovnlbd's socket on a blocking thread (the CLI is a child process).
async fn with_socket(d: &Daemon, f: impl FnOnce(&Path) + Send + 'static) {
    let s = d.socket.clone();
    tokio::task::spawn_blocking(move || f(&s)).await.unwrap();
}

/// `network load-balancer …`.
fn lb(rest: &[&'static str]) -> Vec<&'static str> {
    ["network", "load-balancer"]
        .iter()
        .chain(rest)
        .copied()
        .collect()
}

/// `network forward …`.
fn fwd(rest: &[&'static str]) -> Vec<&'static str> {
    ["network", "forward"].iter().chain(rest).copied().collect()
}

/// 192.0.2.10 built verb by verb: `user.k=v`, backends b1 and b2, tcp 80 over both and
/// udp 53 over b1.
fn build_lb(s: &Path) {
    assert_eq!(
        ok(s, &lb(&["create", "ovn1", "192.0.2.10", "user.k=v"])),
        "Network load balancer 192.0.2.10 created\n"
    );
    ok(
        s,
        &lb(&[
            "backend",
            "add",
            "ovn1",
            "192.0.2.10",
            "b1",
            "10.0.0.11",
            "8080",
        ]),
    );
    ok(
        s,
        &lb(&[
            "backend",
            "add",
            "ovn1",
            "192.0.2.10",
            "b2",
            "10.0.0.12",
            "8080",
        ]),
    );
    ok(
        s,
        &lb(&["port", "add", "ovn1", "192.0.2.10", "tcp", "80", "b1,b2"]),
    );
    ok(
        s,
        &lb(&[
            "port",
            "add",
            "ovn1",
            "192.0.2.10",
            "udp",
            "53",
            "target_backend=b1",
        ]),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_verbs_print_what_lxc_prints() {
    init_tracing();
    let ovn = Ovn::start();
    let d = Daemon::start(&ovn.nb).await;
    with_socket(&d, |s| {
        assert_eq!(
            ok(
                s,
                &[
                    "network",
                    "create",
                    "uplink",
                    "--type",
                    "physical",
                    "ipv4.routes=192.0.2.0/24"
                ]
            ),
            "Network uplink created\n"
        );
        ok(
            s,
            &[
                "network",
                "create",
                "ovn1",
                "network=uplink",
                "ovn.router=lxd-net1-lr",
                "ovn.switch=lxd-net1-ls-int",
            ],
        );
        assert_eq!(
            ok(s, &["network", "list"]),
            "\
+--------+----------+---------+-------------+------------+-------------+---------+---------+
|  NAME  |   TYPE   | MANAGED |    IPV4     |    IPV6    | DESCRIPTION | USED BY |  STATE  |
+--------+----------+---------+-------------+------------+-------------+---------+---------+
| ovn1   | ovn      | YES     | 10.0.0.1/24 | fd00::1/64 |             | 0       | CREATED |
+--------+----------+---------+-------------+------------+-------------+---------+---------+
| uplink | physical | YES     |             |            |             | 0       | CREATED |
+--------+----------+---------+-------------+------------+-------------+---------+---------+
"
        );
        ok(s, &["network", "set", "uplink", "user.x=1"]);
        assert_eq!(ok(s, &["network", "get", "uplink", "user.x"]), "1\n");
        ok(s, &["network", "unset", "uplink", "user.x"]);
        assert_eq!(ok(s, &["network", "get", "uplink", "user.x"]), "");
        assert!(
            fails(s, &["network", "set", "uplink", "bogus=1"]).contains("Invalid option \"bogus\"")
        );
        ok(s, &["network", "delete", "ovn1"]);
        assert!(fails(s, &["network", "show", "ovn1"]).contains("Network not found"));
    })
    .await;
}

/// Edit from stdin (not a terminal); a bad key is refused. The socket is
/// group-accessible only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_is_edited_from_stdin() {
    let (_ovn, d, _c) = ovn1().await;
    with_socket(&d, |s| {
        let (good, _, err) = ovnlb(
            s,
            &["network", "edit", "uplink"],
            Some("description: the uplink\nconfig:\n  ipv4.routes: 192.0.2.0/24\n  user.edited: \"yes\"\n"),
        );
        assert!(good, "{err}");
        let shown = ok(s, &["network", "show", "uplink"]);
        assert!(shown.contains("description: the uplink") && shown.contains("user.edited: \"yes\""), "{shown}");
        let (good, _, err) = ovnlb(s, &["network", "edit", "uplink"], Some("config:\n  bogus: x\n"));
        assert!(!good && err.contains("Invalid option \"bogus\""), "{err}");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(s).unwrap().permissions().mode() & 0o777, 0o660);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_balancer_built_verb_by_verb_shows_and_lists_as_lxc() {
    let (_ovn, d, _c) = ovn1().await;
    with_socket(&d, |s| {
        build_lb(s);
        assert_eq!(
            ok(s, &lb(&["show", "ovn1", "192.0.2.10"])),
            r#"description: ""
config:
  user.k: v
backends:
- name: b1
  description: ""
  target_port: "8080"
  target_address: 10.0.0.11
- name: b2
  description: ""
  target_port: "8080"
  target_address: 10.0.0.12
ports:
- description: ""
  protocol: tcp
  listen_port: "80"
  target_backend:
  - b1
  - b2
- description: ""
  protocol: udp
  listen_port: "53"
  target_backend:
  - b1
listen_address: 192.0.2.10
location: ""
"#
        );
        assert_eq!(
            ok(s, &lb(&["list", "ovn1"])),
            "\
+----------------+-------------+-------+
| LISTEN ADDRESS | DESCRIPTION | PORTS |
+----------------+-------------+-------+
| 192.0.2.10     |             | 2     |
+----------------+-------------+-------+
"
        );
        assert_eq!(
            ok(s, &lb(&["list", "ovn1", "-f", "csv"])),
            "192.0.2.10,,2\n"
        );
        assert_eq!(
            ok(s, &lb(&["list", "ovn1", "-f", "compact"])),
            "  LISTEN ADDRESS  DESCRIPTION  PORTS  \n  192.0.2.10                   2      \n"
        );
        let y: serde_json::Value =
            serde_yaml_ng::from_str(&ok(s, &lb(&["list", "ovn1", "-f", "yaml"]))).unwrap();
        assert_eq!(y[0]["listen_address"], "192.0.2.10");
        assert_eq!(y[0]["ports"][1]["protocol"], "udp");
        let j: serde_json::Value =
            serde_json::from_str(&ok(s, &lb(&["list", "ovn1", "-f", "json"]))).unwrap();
        assert_eq!(j[0]["backends"][0]["name"], "b1");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_balancer_key_or_property_is_set_got_and_unset() {
    let (_ovn, d, _c) = ovn1().await;
    with_socket(&d, |s| {
        build_lb(s);
        assert_eq!(ok(s, &lb(&["get", "ovn1", "192.0.2.10", "user.k"])), "v\n");
        ok(
            s,
            &lb(&["set", "ovn1", "192.0.2.10", "description=web", "-p"]),
        );
        assert_eq!(
            ok(s, &lb(&["get", "ovn1", "192.0.2.10", "description", "-p"])),
            "web\n"
        );
        ok(s, &lb(&["unset", "ovn1", "192.0.2.10", "user.k"]));
        assert_eq!(ok(s, &lb(&["get", "ovn1", "192.0.2.10", "user.k"])), "");
    })
    .await;
}

/// The server's message (or lxc's client-side one), non-zero exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_verb_exits_non_zero_with_the_message() {
    let (_ovn, d, _c) = ovn1().await;
    with_socket(&d, |s| {
        build_lb(s);
        assert!(fails(s, &lb(&["port", "remove", "ovn1", "192.0.2.10", "sctp"])).contains("Error: No matching port(s) found"));
        assert!(fails(s, &lb(&["port", "remove", "ovn1", "192.0.2.10"])).contains("Multiple ports match. Use --force to remove them all"));
        assert!(fails(s, &lb(&["port", "add", "ovn1", "192.0.2.10", "tcp", "99999", "b1"])).contains("Port 99999 is out of range"));
        assert!(fails(s, &lb(&["backend", "remove", "ovn1", "192.0.2.10", "b9"])).contains("No matching backend found"));
        assert!(fails(s, &lb(&["create", "ovn1", "198.51.100.1"])).contains("routes"));
        assert!(fails(s, &lb(&["show", "ovn1", "192.0.2.99"])).contains("Error: Network load balancer not found"));
        assert!(fails(s, &lb(&["show", "nope", "192.0.2.10"])).contains("Error: Network not found"));
    })
    .await;
}

/// Edit from stdin, strictly read back; ports and backends changed after it; a backend
/// still in use stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_balancer_is_edited_from_stdin() {
    let (_ovn, d, _c) = ovn1().await;
    with_socket(&d, |s| {
        build_lb(s);
        let (good, _, err) = ovnlb(
            s,
            &lb(&["edit", "ovn1", "192.0.2.10"]),
            Some("description: edited\nbackends:\n- name: b1\n  target_address: 10.0.0.13\n  target_port: \"9000\"\nports:\n- protocol: tcp\n  listen_port: \"80\"\n  target_backend: [b1]\n"),
        );
        assert!(good, "{err}");
        let (good, _, err) = ovnlb(s, &lb(&["edit", "ovn1", "192.0.2.10"]), Some("bogus_field: 1\n"));
        assert!(!good && err.contains("bogus_field"), "{err}");
        ok(s, &lb(&["port", "remove", "ovn1", "192.0.2.10", "tcp", "80"]));
        ok(s, &lb(&["port", "add", "ovn1", "192.0.2.10", "tcp", "80-81", "b1"]));
        assert!(fails(s, &lb(&["backend", "remove", "ovn1", "192.0.2.10", "b1"])).contains("Invalid target backend name \"b1\""));
        ok(s, &lb(&["backend", "add", "ovn1", "192.0.2.10", "b2", "10.0.0.12"]));
        ok(s, &lb(&["backend", "remove", "ovn1", "192.0.2.10", "b2"]));
        let shown = ok(s, &lb(&["show", "ovn1", "192.0.2.10"]));
        assert!(shown.contains("description: edited") && shown.contains("listen_port: 80-81"), "{shown}");
    })
    .await;
}

/// `info` shows the state once NB holds it; then the load balancer is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_shows_the_state_once_nb_holds_it() {
    let (_ovn, d, _c) = ovn1().await;
    with_socket(&d, build_lb).await;
    let s = d.socket.clone();
    eventually(20, "info shows the applied revision", || {
        let out = ok(&s, &lb(&["info", "ovn1", "192.0.2.10"]));
        out.contains("Attached to router: yes").then_some(out)
    })
    .await;
    with_socket(&d, |s| {
        let out = ok(s, &lb(&["info", "ovn1", "192.0.2.10"]));
        assert!(
            out.contains("ovnlb-ovn1-lb-192.0.2.10-tcp") && out.contains("Attached to switch: yes"),
            "{out}"
        );
        assert_eq!(
            ok(s, &lb(&["delete", "ovn1", "192.0.2.10"])),
            "Network load balancer 192.0.2.10 deleted\n"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_verbs_create_list_and_delete() {
    let (_ovn, d, _c) = ovn1().await;
    with_socket(&d, |s| {
        assert_eq!(
            ok(
                s,
                &fwd(&["create", "ovn1", "192.0.2.20", "target_address=10.0.0.13"])
            ),
            "Network forward 192.0.2.20 created\n"
        );
        ok(
            s,
            &fwd(&[
                "port",
                "add",
                "ovn1",
                "192.0.2.20",
                "tcp",
                "80",
                "10.0.0.11",
                "8080",
            ]),
        );
        assert_eq!(
            ok(s, &fwd(&["list", "ovn1"])),
            "\
+----------------+-------------+------------------------+-------+
| LISTEN ADDRESS | DESCRIPTION | DEFAULT TARGET ADDRESS | PORTS |
+----------------+-------------+------------------------+-------+
| 192.0.2.20     |             | 10.0.0.13              | 1     |
+----------------+-------------+------------------------+-------+
"
        );
        assert!(fails(
            s,
            &fwd(&["backend", "add", "ovn1", "192.0.2.20", "b", "10.0.0.1"])
        )
        .contains("no backends"));
        ok(s, &fwd(&["port", "remove", "ovn1", "192.0.2.20", "tcp"]));
        ok(s, &fwd(&["delete", "ovn1", "192.0.2.20"]));
        assert!(fails(s, &fwd(&["show", "ovn1", "192.0.2.20"])).contains("not found"));
    })
    .await;
}

/// The real lxc (5.0.2) through the daemon's socket: `network list/show`, every `network
/// forward` subcommand, `query` on load balancers; what it prints equals what ovnlb
/// prints (or what the API holds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_lxc_client() {
    init_tracing();
    if Command::new("lxc").arg("--version").output().is_err() {
        panic!("lxc not installed: scripts/install-deps.sh installs lxd-client");
    }
    let ovn = Ovn::start();
    let d = Daemon::start(&ovn.nb).await;
    let dir = d.socket.parent().unwrap().to_owned();
    let conf = tempfile::tempdir_in(tmp_base()).unwrap();
    std::fs::write(conf.path().join("config.yml"), "").unwrap();
    let s = d.socket.clone();
    let conf_path = conf.path().to_owned();
    tokio::task::spawn_blocking(move || {
        let lxc = |args: &[&str], input: Option<&str>| {
            let mut c = Command::new("lxc");
            c.env("LXD_DIR", &dir).env("LXD_CONF", &conf_path).args(args);
            run_with(c, input)
        };
        let lxc_ok = |args: &[&str]| {
            let (good, out, err) = lxc(args, None);
            assert!(good, "lxc {args:?}: {err}");
            out
        };
        let s = s.as_path();
        ok(s, &["network", "create", "uplink", "--type", "physical", "ipv4.routes=192.0.2.0/24"]);
        ok(s, &["network", "create", "ovn1", "network=uplink", "ovn.router=lxd-net1-lr", "ovn.switch=lxd-net1-ls-int"]);
        assert_eq!(lxc_ok(&["network", "list"]), ok(s, &["network", "list"]));
        assert_eq!(lxc_ok(&["network", "show", "ovn1"]), ok(s, &["network", "show", "ovn1"]));

        let fw = |rest: &[&str]| -> Vec<String> {
            ["network", "forward"].iter().map(|x| x.to_string()).chain(rest.iter().map(|x| x.to_string())).collect()
        };
        let l = |v: Vec<String>| -> String {
            let r: Vec<&str> = v.iter().map(String::as_str).collect();
            lxc_ok(&r)
        };
        let o = |v: Vec<String>| -> String {
            let r: Vec<&str> = v.iter().map(String::as_str).collect();
            ok(s, &r)
        };
        assert_eq!(l(fw(&["create", "ovn1", "192.0.2.30"])), "Network forward 192.0.2.30 created\n");
        l(fw(&["port", "add", "ovn1", "192.0.2.30", "tcp", "80", "10.0.0.11", "8080"]));
        l(fw(&["port", "add", "ovn1", "192.0.2.30", "udp", "53", "10.0.0.12"]));
        l(fw(&["set", "ovn1", "192.0.2.30", "user.k=yes"]));
        assert_eq!(l(fw(&["get", "ovn1", "192.0.2.30", "user.k"])), "yes\n");
        l(fw(&["set", "ovn1", "192.0.2.30", "target_address=10.0.0.13"]));
        assert_eq!(l(fw(&["show", "ovn1", "192.0.2.30"])), o(fw(&["show", "ovn1", "192.0.2.30"])));
        assert_eq!(l(fw(&["list", "ovn1"])), o(fw(&["list", "ovn1"])));
        assert_eq!(
            l(fw(&["list", "ovn1", "-f", "compact"])),
            o(fw(&["list", "ovn1", "-f", "compact"]))
        );
        assert_eq!(lxc_ok(&["network", "list", "-f", "compact"]), ok(s, &["network", "list", "-f", "compact"]));
        assert_eq!(l(fw(&["list", "ovn1", "-f", "csv"])), "192.0.2.30,,10.0.0.13,2\n");
        // The OVN option of forwards, set and shown; a load-balancer option refused.
        l(fw(&["set", "ovn1", "192.0.2.30", "ovn.neighbor_responder=all"]));
        assert_eq!(l(fw(&["get", "ovn1", "192.0.2.30", "ovn.neighbor_responder"])), "all\n");
        let (good, _, err) = lxc(&["network", "forward", "set", "ovn1", "192.0.2.30", "ovn.reject=true"], None);
        assert!(!good && err.contains("load balancers only"), "{err}");
        l(fw(&["unset", "ovn1", "192.0.2.30", "ovn.neighbor_responder"]));
        l(fw(&["unset", "ovn1", "192.0.2.30", "user.k"]));
        assert_eq!(l(fw(&["get", "ovn1", "192.0.2.30", "user.k"])), "");
        assert_eq!(o(fw(&["get", "ovn1", "192.0.2.30", "user.k"])), "");
        assert!(!l(fw(&["show", "ovn1", "192.0.2.30"])).contains("user.k"), "unset keys are dropped");
        let (good, _, err) = lxc(&["network", "forward", "edit", "ovn1", "192.0.2.30"], Some("description: via lxc\nconfig: {}\nports:\n- protocol: tcp\n  listen_port: \"443\"\n  target_address: 10.0.0.11\n"));
        assert!(good, "{err}");
        assert!(o(fw(&["show", "ovn1", "192.0.2.30"])).contains("description: via lxc"));
        l(fw(&["port", "remove", "ovn1", "192.0.2.30", "tcp", "443"]));
        // A server-side error, printed by lxc as the server gave it.
        let (good, _, err) = lxc(&["network", "forward", "port", "add", "ovn1", "192.0.2.30", "sctp", "80", "10.0.0.11"], None);
        assert!(!good && err.contains("Error: ports[0].protocol: Invalid port protocol in port specification 0"), "{err}");
        let (good, _, err) = lxc(&["network", "forward", "create", "ovn1", "198.51.100.7"], None);
        assert!(!good && err.starts_with("Error: ") && err.contains("routes"), "{err}");
        assert_eq!(l(fw(&["delete", "ovn1", "192.0.2.30"])), "Network forward 192.0.2.30 deleted\n");

        // Load balancers through `lxc query` (5.0.2 has no load-balancer subcommand).
        let lbs = "/1.0/networks/ovn1/load-balancers";
        let body = r#"{"listen_address":"192.0.2.10","backends":[{"name":"b1","target_address":"10.0.0.11","target_port":"8080"}],"ports":[{"protocol":"tcp","listen_port":"80","target_backend":["b1"]}]}"#;
        assert_eq!(lxc_ok(&["query", "-X", "POST", "--data", body, lbs]), "");
        let list: serde_json::Value = serde_json::from_str(&lxc_ok(&["query", lbs])).unwrap();
        assert_eq!(list, serde_json::json!(["/1.0/networks/ovn1/load-balancers/192.0.2.10"]));
        let one: serde_json::Value = serde_json::from_str(&lxc_ok(&["query", &format!("{lbs}/192.0.2.10")])).unwrap();
        assert_eq!(one["backends"][0]["target_address"], "10.0.0.11");
        lxc_ok(&["query", "-X", "PATCH", "--data", r#"{"description":"q"}"#, &format!("{lbs}/192.0.2.10")]);
        assert!(ok(s, &["network", "load-balancer", "show", "ovn1", "192.0.2.10"]).contains("description: q"));
        lxc_ok(&["query", "-X", "PATCH", "--data", r#"{"config":{"ovn.affinity_timeout":"60"}}"#, &format!("{lbs}/192.0.2.10")]);
        let one: serde_json::Value = serde_json::from_str(&lxc_ok(&["query", &format!("{lbs}/192.0.2.10")])).unwrap();
        assert_eq!(one["config"]["ovn.affinity_timeout"], "60");
        let (good, _, err) = lxc(&["query", "-X", "PATCH", "--data", r#"{"config":{"ovn.affinity_timeout":"0"}}"#, &format!("{lbs}/192.0.2.10")], None);
        assert!(!good && err.contains("Invalid value for \"ovn.affinity_timeout\""), "{err}");
        let (good, _, err) = lxc(&["query", "-X", "POST", "--data", body, lbs], None);
        assert!(!good && err.contains("Error: A load balancer for that listen address already exists"), "{err}");
        lxc_ok(&["query", "-X", "DELETE", &format!("{lbs}/192.0.2.10")]);
        assert_eq!(lxc_ok(&["query", lbs]).trim(), "[]");
    })
    .await
    .unwrap();
}

/// The ovnlbd binary: settings from a TOML file overridden by flags, a bad file refused,
/// and SIGTERM: a clean stop (exit 0, socket removed), the state kept for the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ovnlbd_binary_config_and_sigterm() {
    let ovn = Ovn::start();
    let tmp = tempfile::tempdir_in(tmp_base()).unwrap();
    let dir = tmp.path().join("state");
    let conf = tmp.path().join("ovnlbd.toml");
    std::fs::write(
        &conf,
        format!(
            "nb = \"unix:{}\"\nlog_format = \"json\"\nsocket = \"{}/elsewhere.sock\"\n",
            ovn.nb.sock.display(),
            tmp.path().display()
        ),
    )
    .unwrap();
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "nb = \"unix:/x\"\nno_such_key = 1\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ovnlbd"))
        .arg("--config")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no_such_key"));

    let sock = dir.join("unix.socket");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let start = || {
        Command::new(env!("CARGO_BIN_EXE_ovnlbd"))
            .arg("--config")
            .arg(&conf)
            .arg("--dir")
            .arg(&dir)
            .arg("--socket")
            .arg(&sock)
            .arg("--metrics-listen")
            .arg(format!("127.0.0.1:{port}"))
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let child = start();
    eventually(20, "socket", || sock.exists().then_some(())).await;
    let s = sock.clone();
    tokio::task::spawn_blocking(move || {
        ok(
            &s,
            &[
                "network",
                "create",
                "uplink",
                "--type",
                "physical",
                "ipv4.routes=192.0.2.0/24",
            ],
        );
    })
    .await
    .unwrap();
    // Plain /metrics on the metrics listener.
    let metrics = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut t = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        t.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut s = String::new();
        t.read_to_string(&mut s).unwrap();
        s
    })
    .await
    .unwrap();
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(
        metrics.contains("\novnlb_nb_connected ")
            && metrics.contains("ovnlb_commit_seconds_bucket"),
        "{metrics}"
    );
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success(), "exit {:?}", out.status);
    assert!(!sock.exists(), "socket removed");
    let log = String::from_utf8_lossy(&out.stderr);
    let last: serde_json::Value =
        serde_json::from_str(log.lines().last().unwrap()).expect("JSON log lines");
    assert_eq!(last["fields"]["message"], "ovnlbd stopped");

    let mut child = start();
    eventually(20, "socket again", || sock.exists().then_some(())).await;
    let s = sock.clone();
    let shown = tokio::task::spawn_blocking(move || ok(&s, &["network", "show", "uplink"]))
        .await
        .unwrap();
    assert!(shown.contains("ipv4.routes: 192.0.2.0/24"), "{shown}");
    let _ = child.kill();
    let _ = child.wait();
}

/// The example config in `dist/` is valid.
#[test]
fn dist_example_config_parses() {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/dist/ovnlbd.toml");
    let s = ovnlb::daemon::Settings::from_file(std::path::Path::new(p)).unwrap();
    assert_eq!(s.owner.as_deref(), Some("ovnlb"));
    assert_eq!(s.resync_seconds, Some(60));
}

/// The real incus client (6.0.4) through ovnlbd's socket: every `network load-balancer`
/// verb; what it prints equals what ovnlb prints; `info` says what it says against Incus
/// for a load balancer without health checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_incus_client() {
    init_tracing();
    assert!(
        Command::new("incus").arg("--version").output().is_ok(),
        "incus not installed: scripts/install-deps.sh installs incus-client"
    );
    let ovn = Ovn::start();
    let d = Daemon::start(&ovn.nb).await;
    let conf = tempfile::tempdir_in(tmp_base()).unwrap();
    std::fs::write(conf.path().join("config.yml"), "").unwrap();
    let s = d.socket.clone();
    let conf_path = conf.path().to_owned();
    tokio::task::spawn_blocking(move || {
        let incus = |args: &[&str], input: Option<&str>| {
            let mut c = Command::new("incus");
            c.env("INCUS_SOCKET", &s)
                .env("INCUS_CONF", &conf_path)
                .env("HOME", &conf_path)
                .args(["network", "load-balancer"])
                .args(args);
            run_with(c, input)
        };
        let inc = |args: &[&str]| {
            let (good, out, err) = incus(args, None);
            assert!(good, "incus {args:?}: {err}");
            out
        };
        let s = s.as_path();
        ok(s, &["network", "create", "uplink", "--type", "physical", "ipv4.routes=192.0.2.0/24"]);
        ok(s, &["network", "create", "ovn1", "network=uplink", "ovn.router=lxd-net1-lr", "ovn.switch=lxd-net1-ls-int"]);
        let ours = |args: &[&str]| {
            let v: Vec<&str> = ["network", "load-balancer"].iter().chain(args).copied().collect();
            ok(s, &v)
        };
        assert_eq!(
            inc(&["create", "ovn1", "192.0.2.10", "--description", "web"]),
            "Network load balancer 192.0.2.10 created\n"
        );
        inc(&["backend", "add", "ovn1", "192.0.2.10", "b1", "10.0.0.11", "8080"]);
        inc(&["backend", "add", "ovn1", "192.0.2.10", "b2", "10.0.0.12", "8080", "--description", "two"]);
        inc(&["port", "add", "ovn1", "192.0.2.10", "tcp", "80,443", "b1,b2"]);
        inc(&["port", "add", "ovn1", "192.0.2.10", "udp", "53", "b1"]);
        assert_eq!(inc(&["show", "ovn1", "192.0.2.10"]), ours(&["show", "ovn1", "192.0.2.10"]));
        assert_eq!(inc(&["list", "ovn1"]), ours(&["list", "ovn1"]));
        assert_eq!(inc(&["list", "ovn1", "-f", "csv"]), "192.0.2.10,web,2\n");
        inc(&["set", "ovn1", "192.0.2.10", "user.k=v"]);
        assert_eq!(inc(&["get", "ovn1", "192.0.2.10", "user.k"]), "v\n");
        inc(&["unset", "ovn1", "192.0.2.10", "user.k"]);
        // The OVN options: set, got, shown, refused with the server's rule, unset.
        inc(&["set", "ovn1", "192.0.2.10", "ovn.affinity_timeout=60", "ovn.reject=true"]);
        assert_eq!(inc(&["get", "ovn1", "192.0.2.10", "ovn.affinity_timeout"]), "60\n");
        assert!(inc(&["show", "ovn1", "192.0.2.10"]).contains("ovn.reject: \"true\""));
        let (good, _, err) = incus(&["set", "ovn1", "192.0.2.10", "ovn.reject=yes"], None);
        assert!(!good && err.contains("Invalid value for \"ovn.reject\""), "{err}");
        inc(&["unset", "ovn1", "192.0.2.10", "ovn.affinity_timeout"]);
        inc(&["unset", "ovn1", "192.0.2.10", "ovn.reject"]);
        inc(&["set", "ovn1", "192.0.2.10", "description=front", "-p"]);
        assert_eq!(inc(&["get", "ovn1", "192.0.2.10", "description", "-p"]), "front\n");
        // A bad port: the server's rule, printed by incus, exit 1.
        let (good, _, err) = incus(&["port", "add", "ovn1", "192.0.2.10", "tcp", "99999", "b1"], None);
        assert!(!good && err.contains("Port 99999 is out of range 1-65535"), "{err}");
        let (good, _, err) = incus(&["port", "remove", "ovn1", "192.0.2.10"], None);
        assert!(!good && err.contains("Use --force"), "{err}");
        inc(&["port", "remove", "ovn1", "192.0.2.10", "udp"]);
        inc(&["port", "add", "ovn1", "192.0.2.10", "tcp", "8443", "b2"]);
        inc(&["port", "remove", "ovn1", "192.0.2.10", "tcp", "--force"]);
        inc(&["backend", "remove", "ovn1", "192.0.2.10", "b2"]);
        let (good, _, err) = incus(
            &["edit", "ovn1", "192.0.2.10"],
            Some("description: edited\nbackends:\n- name: b1\n  target_address: 10.0.0.13\n  target_port: \"9000\"\nports:\n- protocol: tcp\n  listen_port: \"8080\"\n  target_backend: [b1]\n"),
        );
        assert!(good, "{err}");
        let shown = inc(&["show", "ovn1", "192.0.2.10"]);
        assert!(shown.contains("description: edited") && shown.contains("10.0.0.13"), "{shown}");
        // No health checks: Incus's client says so and exits 1, as against Incus itself.
        let (good, _, err) = incus(&["info", "ovn1", "192.0.2.10"], None);
        assert!(!good && err.contains("No load-balancer health information available"), "{err}");
        assert_eq!(
            inc(&["delete", "ovn1", "192.0.2.10"]),
            "Network load balancer 192.0.2.10 deleted\n"
        );
        assert_eq!(inc(&["list", "ovn1", "-f", "csv"]), "");
    })
    .await
    .unwrap();
}
