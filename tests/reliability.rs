//! What a hostile user and a failing machine did to ovnlbd (`reliability-findings.md`,
//! B1-B8 and its weaknesses), one test per behaviour, against real NB + northd.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use hyper::Method;
use ovnlb::cli::Client;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn lb_body(listen: &str, backend: &str) -> Value {
    json!({"listen_address": listen,
           "backends": [{"name": "b1", "target_address": backend, "target_port": "8080"}],
           "ports": [{"protocol": "tcp", "listen_port": "80", "target_backend": ["b1"]}]})
}

/// One raw HTTP/1.1 exchange on the unix socket (`Connection: close`): the whole reply.
async fn raw(socket: &Path, request: &str) -> String {
    let mut s = tokio::net::UnixStream::connect(socket).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut out))
        .await
        .expect("no reply within 30 s")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// A counter or gauge of `/1.0/metrics`.
async fn metric(socket: &Path, name: &str) -> f64 {
    let text = raw(
        socket,
        "GET /1.0/metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

fn row_named(ovn: &Ovn, name: &str) -> Option<(uuid::Uuid, ovnlb::ovsdb::Row)> {
    ovn.nb
        .dump(&["Load_Balancer"])
        .remove("Load_Balancer")
        .unwrap_or_default()
        .into_iter()
        .find(|(_, r)| r["name"].as_str() == Some(name))
}

const LBS: &str = "/1.0/networks/ovn1/load-balancers";

/// A POST that must fail: its (status, message).
async fn post_err(c: &Client, path: &str, body: Value) -> (u16, String) {
    req(c, Method::POST, path, Some(body))
        .await
        .expect_err("the request was accepted")
}

/// An NB server alone and ovnlbd in-process on it, with `extra` settings.
async fn nb_daemon(extra: ovnlb::daemon::Settings) -> (OvsdbServer, Daemon) {
    init_tracing();
    let nb = OvsdbServer::start();
    let dir = tempfile::tempdir_in(tmp_base()).unwrap();
    let d = Daemon::start_with(&nb, dir, extra).await;
    (nb, d)
}

/// `ovnlbd --nb <nb> --dir <dir>`, run under `setpriv` so it is killed if we die (setpriv
/// execs it in its place: the child's pid is ovnlbd's), after the programs of `wrap`
/// (e.g. `prlimit … --`); stdin and stderr null unless the caller says otherwise.
fn ovnlbd(wrap: &[&str], nb: &OvsdbServer, dir: &Path) -> Command {
    let setpriv = ["setpriv", "--pdeathsig", "KILL", "--"];
    let mut argv = wrap.iter().chain(&setpriv);
    let mut c = Command::new(argv.next().unwrap());
    c.args(argv)
        .arg(env!("CARGO_BIN_EXE_ovnlbd"))
        .arg("--nb")
        .arg(format!("unix:{}", nb.sock.display()))
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// The ovnlbd binary as a child process (killed with us) on a temp state dir.
struct Child {
    child: std::process::Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Child {
    async fn start(nb: &OvsdbServer, args: &[&str]) -> Child {
        let dir = tempfile::tempdir_in(tmp_base()).unwrap();
        let socket = dir.path().join("unix.socket");
        let child = ovnlbd(&[], nb, dir.path()).args(args).spawn().unwrap();
        // Accepting connections, not only bound (the file exists before `listen`).
        eventually(20, "socket", || {
            std::os::unix::net::UnixStream::connect(&socket)
                .is_ok()
                .then_some(())
        })
        .await;
        Child {
            child,
            socket,
            _dir: dir,
        }
    }

    /// utime + stime, in clock ticks (1/100 s).
    fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // Fields after the command name (which ends with the last ')').
        let rest: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        rest[11].parse::<u64>().unwrap() + rest[12].parse::<u64>().unwrap()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// B7: `?wait=` is checked before anything is written: a bad value changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_wait_writes_nothing() {
    let (_ovn, _d, c) = ovn1().await;

    for w in ["abc", "-1", "NaN", "3601"] {
        let e = post_err(
            &c,
            &format!("{LBS}?wait={w}"),
            lb_body("192.0.2.41", "10.0.0.11"),
        )
        .await;
        assert_eq!(e.0, 400, "{w}: {e:?}");
        assert!(e.1.contains("Invalid wait"), "{e:?}");
    }
    let e = req(&c, Method::GET, &format!("{LBS}/192.0.2.41"), None)
        .await
        .unwrap_err();
    assert_eq!(e.0, 404, "a create with a bad wait was stored");

    req(
        &c,
        Method::POST,
        LBS,
        Some(lb_body("192.0.2.41", "10.0.0.11")),
    )
    .await
    .unwrap();
    let mut changed = lb_body("192.0.2.41", "10.0.0.11");
    changed["description"] = json!("changed");
    for m in [Method::PUT, Method::PATCH] {
        let e = req(
            &c,
            m.clone(),
            &format!("{LBS}/192.0.2.41?wait=-1"),
            Some(changed.clone()),
        )
        .await
        .unwrap_err();
        assert_eq!(e.0, 400, "{m}");
    }
    let e = req(
        &c,
        Method::DELETE,
        &format!("{LBS}/192.0.2.41?wait=x"),
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(e.0, 400);
    let got = req(&c, Method::GET, &format!("{LBS}/192.0.2.41"), None)
        .await
        .unwrap();
    assert_eq!(got["description"], "", "a write with a bad wait was stored");
}

/// B1: the controller keeps nothing of a deleted network's failing keys, and goes idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_network_with_failing_keys_leaves_the_controller_idle() {
    init_tracing();
    let ovn = Ovn::start();
    // A process of its own, so that its CPU time is its own.
    let d = Child::start(&ovn.nb, &[]).await;
    let c = Client::unix(&d.socket);
    networks(&c).await;
    ovn.nb.nbctl(&["lr-add", "probe-lr"]);
    let tmp = json!({"name": "tmpnet", "type": "ovn",
                     "config": {"network": "uplink", "ovn.router": "probe-lr",
                                "ovn.switch": "lxd-net1-ls-int", "ipv4.address": "10.1.0.1/24"}});
    req(&c, Method::POST, "/1.0/networks", Some(tmp))
        .await
        .unwrap();
    ovn.nb.nbctl(&["lr-del", "probe-lr"]);
    req(
        &c,
        Method::POST,
        "/1.0/networks/tmpnet/load-balancers",
        Some(lb_body("192.0.2.30", "10.1.0.11")),
    )
    .await
    .unwrap();
    eventually_async(20, "the key fails", || async {
        req(
            &c,
            Method::GET,
            "/1.0/networks/tmpnet/load-balancers/192.0.2.30/state",
            None,
        )
        .await
        .ok()
        .filter(|s| s["error"].as_str().is_some_and(|e| !e.is_empty()))
    })
    .await;
    req(&c, Method::DELETE, "/1.0/networks/tmpnet", None)
        .await
        .unwrap();
    // (The stale backoff of the bug expires within 2 s of the failure, then spins.)
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (cpu0, wake0) = (
        d.cpu_ticks(),
        metric(&d.socket, "ovnlb_controller_wakeups_total").await,
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (cpu1, wake1) = (
        d.cpu_ticks(),
        metric(&d.socket, "ovnlb_controller_wakeups_total").await,
    );
    // 3 s are 300 ticks of one core: the bug used all of them.
    assert!(
        cpu1 - cpu0 < 30,
        "ovnlbd used {} of 300 CPU ticks in 3 s with nothing to do",
        cpu1 - cpu0
    );
    assert!(
        wake1 - wake0 < 10.0,
        "the controller woke {} times in 3 s with nothing to do",
        wake1 - wake0
    );
    assert_eq!(metric(&d.socket, "ovnlb_keys_failing").await, 0.0);
}

/// B8: one of our rows stripped of its owner tag blocks its object visibly (WARN, the
/// remedy in `/state`), with backoff rather than a loop; restoring the tag unblocks it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_stripped_of_its_owner_tag_is_reported_not_retried() {
    let (ovn, d, c) = ovn1().await;
    req(
        &c,
        Method::POST,
        &format!("{LBS}?wait=20"),
        Some(lb_body("192.0.2.10", "10.0.0.11")),
    )
    .await
    .unwrap();
    let (uuid, _) = row_named(&ovn, "ovnlb-ovn1-lb-192.0.2.10-tcp").expect("our row");
    let uuid = uuid.to_string();
    ovn.nb.nbctl(&[
        "remove",
        "Load_Balancer",
        &uuid,
        "external_ids",
        "\"ovnlb:owner\"",
    ]);
    let e = req(
        &c,
        Method::PATCH,
        &format!("{LBS}/192.0.2.10?wait=3"),
        Some(json!({"description": "v2"})),
    )
    .await
    .unwrap_err();
    assert_eq!(e.0, 504, "{e:?}");
    let state = req(&c, Method::GET, &format!("{LBS}/192.0.2.10/state"), None)
        .await
        .unwrap();
    let error = state["error"].as_str().unwrap();
    assert!(
        error.contains("owner tag") && error.contains(&uuid),
        "/state names the row and the remedy: {state}"
    );
    let before = metric(&d.socket, "ovnlb_transactions_total").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = metric(&d.socket, "ovnlb_transactions_total").await;
    assert!(
        after - before < 10.0,
        "{} NB transactions in 3 s for one blocked key",
        after - before
    );
    // The documented remedy.
    ovn.nb.nbctl(&[
        "set",
        "Load_Balancer",
        &uuid,
        "external_ids:\"ovnlb:owner\"=ovnlb",
    ]);
    eventually_async(60, "applied once the tag is back", || async {
        req(&c, Method::GET, &format!("{LBS}/192.0.2.10/state"), None)
            .await
            .ok()
            .filter(|s| s["applied_revision"] == s["revision"] && s["error"] == "")
    })
    .await;
}

/// A VIP already held by a row ovnlb does not own, on the network's router, is refused
/// for that object (reported in `/state`) and the foreign row is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vip_held_by_a_foreign_row_is_refused() {
    init_tracing();
    let ovn = Ovn::start();
    ovn.nb.nbctl(&[
        "lb-add",
        "lxd-net1-lb-192.0.2.60-tcp",
        "192.0.2.60:80",
        "10.0.0.99:80",
        "tcp",
    ]);
    ovn.nb
        .nbctl(&["lr-lb-add", "lxd-net1-lr", "lxd-net1-lb-192.0.2.60-tcp"]);
    let d = Daemon::start(&ovn.nb).await;
    let c = d.client();
    networks(&c).await;
    let e = post_err(
        &c,
        &format!("{LBS}?wait=3"),
        lb_body("192.0.2.60", "10.0.0.11"),
    )
    .await;
    assert_eq!(e.0, 504, "{e:?}");
    let state = req(&c, Method::GET, &format!("{LBS}/192.0.2.60/state"), None)
        .await
        .unwrap();
    assert!(
        state["error"]
            .as_str()
            .unwrap()
            .contains("already held by a Load_Balancer row ovnlb does not own"),
        "{state}"
    );
    assert!(row_named(&ovn, "ovnlb-ovn1-lb-192.0.2.60-tcp").is_none());
    let (_, foreign) = row_named(&ovn, "lxd-net1-lb-192.0.2.60-tcp").unwrap();
    assert_eq!(
        foreign["vips"].as_map().unwrap().len(),
        1,
        "foreign row untouched"
    );
}

/// B6: network names follow LXD's rules, `ovn.prefix` holds only what an NB name may;
/// nothing is created by a refused request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_outside_the_rules_are_refused() {
    let (_ovn, _d, c) = ovn1().await;
    let long = "a".repeat(64);
    for name in [
        "a\u{0}b",
        "..",
        ".",
        "\u{202e}x",
        "-rf",
        "a/b",
        "$(id)",
        "a%2Fb",
        &long,
    ] {
        let body = json!({"name": name, "type": "ovn",
                          "config": {"network": "uplink", "ovn.router": "lxd-net1-lr",
                                     "ovn.switch": "lxd-net1-ls-int"}});
        let e = req(&c, Method::POST, "/1.0/networks", Some(body))
            .await
            .unwrap_err();
        assert_eq!(e.0, 400, "{name:?}: {e:?}");
    }
    let big = "p".repeat(100_000);
    // (An empty value unsets the key, as in LXD: the default prefix.)
    for prefix in ["a\u{0}b", "a b", "x\u{202e}", &big] {
        let body = json!({"name": "ovn2", "type": "ovn",
                          "config": {"network": "uplink", "ovn.router": "lxd-net1-lr",
                                     "ovn.switch": "lxd-net1-ls-int", "ovn.prefix": prefix}});
        let e = req(&c, Method::POST, "/1.0/networks", Some(body))
            .await
            .expect_err(&format!(
                "ovn.prefix {:?} accepted",
                &prefix[..prefix.len().min(9)]
            ));
        assert_eq!(e.0, 400, "{prefix:?}: {e:?}");
        assert!(e.1.contains("ovn.prefix"), "names the field: {e:?}");
    }
    let list = req(&c, Method::GET, "/1.0/networks", None).await.unwrap();
    assert_eq!(
        list,
        json!(["/1.0/networks/ovn1", "/1.0/networks/uplink"]),
        "nothing created"
    );
}

/// B3: a second ovnlbd on a state dir in use exits non-zero naming the holder, even with
/// its own socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_one_state_dir_is_refused() {
    init_tracing();
    let ovn = Ovn::start();
    let d = Daemon::start(&ovn.nb).await;
    let other = d.dir.path().join("other.sock");
    let mut second = ovnlbd(&[], &ovn.nb, d.dir.path())
        .arg("--socket")
        .arg(&other)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while second.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = second.kill();
            panic!("a second ovnlbd on the same state dir kept running");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let out = second.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "is in use by another ovnlbd (pid {})",
            std::process::id()
        )),
        "{err}"
    );
    assert!(!other.exists(), "the second daemon never listened");
    // The first is still served.
    req(&d.client(), Method::GET, "/1.0", None).await.unwrap();
}

/// B5 (and issue 10): SIGTERM with 500 `?wait=3600` requests and a partial request
/// pending: every waiter gets a 503 envelope and the process exits within its grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_every_waiter_and_exits() {
    init_tracing();
    let ovn = Ovn::start();
    let tmp = tempfile::tempdir_in(tmp_base()).unwrap();
    let sock = tmp.path().join("unix.socket");
    let mut child = ovnlbd(&[], &ovn.nb, tmp.path()).spawn().unwrap();
    eventually(20, "socket", || sock.exists().then_some(())).await;
    let c = Client::unix(&sock);
    networks(&c).await;
    // A network whose router then goes: its writes are stored but never applied.
    ovn.nb.nbctl(&["lr-add", "gone-lr"]);
    let net = json!({"name": "nowhere", "type": "ovn",
                     "config": {"network": "uplink", "ovn.router": "gone-lr",
                                "ovn.switch": "lxd-net1-ls-int", "ipv6.address": "fd42:9::1/64"}});
    req(&c, Method::POST, "/1.0/networks", Some(net))
        .await
        .unwrap();
    ovn.nb.nbctl(&["lr-del", "gone-lr"]);
    let mut waiters = Vec::new();
    const WAITERS: usize = 500;
    for i in 0..WAITERS {
        let c = c.clone();
        waiters.push(tokio::spawn(async move {
            req(
                &c,
                Method::POST,
                "/1.0/networks/nowhere/load-balancers?wait=3600",
                Some(lb_body(&format!("2001:db8::1:{i:x}"), "fd42:9::11")),
            )
            .await
        }));
    }
    let mut partial = tokio::net::UnixStream::connect(&sock).await.unwrap();
    partial
        .write_all(b"GET /1.0 HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    eventually_async(20, "the waiters are pending", || async {
        req(
            &c,
            Method::GET,
            "/1.0/networks/nowhere/load-balancers",
            None,
        )
        .await
        .ok()
        .filter(|l| l.as_array().is_some_and(|a| a.len() == WAITERS))
    })
    .await;
    let sent = Instant::now();
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    for w in waiters {
        let e = tokio::time::timeout(Duration::from_secs(20), w)
            .await
            .expect("a waiter was not answered")
            .unwrap()
            .unwrap_err();
        assert_eq!(e.0, 503, "{e:?}");
    }
    let status = eventually(20, "ovnlbd exits", || child.try_wait().unwrap()).await;
    assert!(status.success(), "exit {status:?}");
    // (The grace period is 5 s; the deadline above only bounds the test.)
    tracing::info!(took = ?sent.elapsed(), "exited after SIGTERM");
    drop(partial);
}

/// A self-signed client certificate valid from `from` to `until` (years), in `dir`.
fn dated_cert(dir: &Path, name: &str, from: i32, until: i32) -> (PathBuf, PathBuf) {
    let mut p = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
    p.not_before = rcgen::date_time_ymd(from, 1, 1);
    p.not_after = rcgen::date_time_ymd(until, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    let (crt, k) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&crt, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (crt, k)
}

/// ovnlbd in-process with HTTPS on a free port; (daemon, url, server certificate).
async fn https_daemon(
    nb: &OvsdbServer,
    state: tempfile::TempDir,
    extra: ovnlb::daemon::Settings,
) -> (Daemon, String, PathBuf) {
    let port = free_port();
    let d = Daemon::start_with(
        nb,
        state,
        ovnlb::daemon::Settings {
            https_listen: Some(([127, 0, 0, 1], port).into()),
            ..extra
        },
    )
    .await;
    let crt = d.dir.path().join("server.crt");
    (d, format!("https://127.0.0.1:{port}"), crt)
}

fn files(ca: &Path, crt: &Path, key: &Path) -> ovnlb::ovsdb::TlsFiles {
    ovnlb::ovsdb::TlsFiles {
        ca: ca.to_owned(),
        cert: Some(crt.to_owned()),
        key: Some(key.to_owned()),
    }
}

/// Certificates in `trust/` that are expired or not yet valid are refused, as LXD does;
/// one in date is trusted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_or_future_certificate_in_trust_is_refused() {
    init_tracing();
    let nb = OvsdbServer::start();
    let state = tempfile::tempdir_in(tmp_base()).unwrap();
    let certs = tempfile::tempdir_in(tmp_base()).unwrap();
    let trust = state.path().join("trust");
    std::fs::create_dir_all(&trust).unwrap();
    let expired = dated_cert(certs.path(), "expired", 2000, 2001);
    let future = dated_cert(certs.path(), "future", 2999, 3000);
    let good = dated_cert(certs.path(), "good", 2000, 2999);
    for (crt, _) in [&expired, &future, &good] {
        std::fs::copy(crt, trust.join(crt.file_name().unwrap())).unwrap();
    }
    let (_d, url, ca) = https_daemon(&nb, state, Default::default()).await;
    for (crt, key) in [&expired, &future] {
        let c = Client::https(&url, &files(&ca, crt, key)).unwrap();
        let e = req(&c, Method::GET, "/1.0/networks", None)
            .await
            .unwrap_err();
        assert_eq!(e.0, 403, "{}", crt.display());
        let info = req(&c, Method::GET, "/1.0", None).await.unwrap();
        assert_eq!(info["auth"], "untrusted");
    }
    let c = Client::https(&url, &files(&ca, &good.0, &good.1)).unwrap();
    req(&c, Method::GET, "/1.0/networks", None).await.unwrap();
}

/// A certificate removed from `trust/` stops working on a connection already open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_removed_from_trust_stops_working_on_an_open_connection() {
    init_tracing();
    let nb = OvsdbServer::start();
    let state = tempfile::tempdir_in(tmp_base()).unwrap();
    let certs = tempfile::tempdir_in(tmp_base()).unwrap();
    let trust = state.path().join("trust");
    std::fs::create_dir_all(&trust).unwrap();
    let (crt, key) = dated_cert(certs.path(), "admin", 2000, 2999);
    std::fs::copy(&crt, trust.join("admin.crt")).unwrap();
    let (_d, url, ca) = https_daemon(&nb, state, Default::default()).await;
    let addr = url.strip_prefix("https://").unwrap().to_owned();
    let tls = ovnlb::ovsdb::tls_client_config(&files(&ca, &crt, &key)).unwrap();
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let s = tokio_rustls::TlsConnector::from(tls)
        .connect("127.0.0.1".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake::<
        _,
        http_body_util::Empty<hyper::body::Bytes>,
    >(hyper_util::rt::TokioIo::new(s))
    .await
    .unwrap();
    tokio::spawn(conn);
    let get = || {
        hyper::Request::get("/1.0/networks")
            .header("host", "x")
            .body(http_body_util::Empty::new())
            .unwrap()
    };
    // (Each body is read whole and the sender awaited, so the connection is reused.)
    let mut status = async || {
        use http_body_util::BodyExt;
        send.ready().await.unwrap();
        let r = send.send_request(get()).await.unwrap();
        let st = r.status();
        r.into_body().collect().await.unwrap();
        st
    };
    assert_eq!(status().await, 200);
    std::fs::remove_file(trust.join("admin.crt")).unwrap();
    assert_eq!(
        status().await,
        403,
        "the same connection after the certificate left trust/"
    );
}

/// B4: 2,000 idle unix connections and 1,100 idle TCP connections to HTTPS (no
/// certificate, no handshake) at a descriptor limit of 1024 never stop a real request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_never_stop_a_request() {
    init_tracing();
    let nb = OvsdbServer::start();
    let tmp = tempfile::tempdir_in(tmp_base()).unwrap();
    let sock = tmp.path().join("unix.socket");
    let port = free_port();
    let mut child = ovnlbd(&["prlimit", "--nofile=1024:1024", "--"], &nb, tmp.path())
        .arg("--https-listen")
        .arg(format!("127.0.0.1:{port}"))
        .spawn()
        .unwrap();
    eventually(20, "socket", || sock.exists().then_some(())).await;
    let mut idle_tcp = Vec::new();
    for _ in 0..1100 {
        if let Ok(s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            idle_tcp.push(s);
        }
    }
    let mut idle_unix = Vec::new();
    for _ in 0..2000 {
        if let Ok(s) = tokio::net::UnixStream::connect(&sock).await {
            idle_unix.push(s);
        }
    }
    let c = Client::unix(&sock);
    for _ in 0..3 {
        let r = tokio::time::timeout(Duration::from_secs(10), req(&c, Method::GET, "/1.0", None))
            .await
            .expect("a request was not answered while idle connections were held");
        assert_eq!(r.unwrap()["api_version"], "1.0");
    }
    let https = Client::https(
        &format!("https://127.0.0.1:{port}"),
        &ovnlb::ovsdb::TlsFiles {
            ca: tmp.path().join("server.crt"),
            cert: None,
            key: None,
        },
    )
    .unwrap();
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        req(&https, Method::GET, "/1.0", None),
    )
    .await
    .expect("HTTPS was not answered while idle connections were held");
    assert_eq!(r.unwrap()["auth"], "untrusted");
    drop((idle_tcp, idle_unix));
    let _ = child.kill();
    let _ = child.wait();
}

/// B4: a request head sent a byte at a time, and an idle keep-alive connection, are
/// closed after the header timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_heads_and_idle_connections_are_closed() {
    init_tracing();
    let (_nb, d) = nb_daemon(ovnlb::daemon::Settings {
        header_timeout_seconds: Some(1),
        ..Default::default()
    })
    .await;
    let mut slow = tokio::net::UnixStream::connect(&d.socket).await.unwrap();
    let idle = tokio::net::UnixStream::connect(&d.socket).await.unwrap();
    let closed = async {
        let mut buf = [0u8; 512];
        for b in b"GET /1.0 HTTP/1.1\r\nHost: x\r\nX-Slow: ".iter().cycle() {
            if slow.write_all(&[*b]).await.is_err() {
                return;
            }
            // A read that ends (EOF or error) means the server closed it.
            match tokio::time::timeout(Duration::from_millis(300), slow.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), closed)
        .await
        .expect("a slow request head was still open after 20 s");
    let mut idle = idle;
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(20), idle.read(&mut buf))
        .await
        .expect("an idle connection was still open after 20 s");
    assert!(matches!(n, Ok(0) | Err(_)));
}

fn backends_body(listen: &str, n: usize, listen_port: &str) -> Value {
    let backends: Vec<Value> = (0..n)
        .map(|i| json!({"name": format!("b{i}"), "target_address": format!("10.0.{}.{}", i / 250, 1 + i % 250)}))
        .collect();
    let names: Vec<String> = (0..n).map(|i| format!("b{i}")).collect();
    json!({"listen_address": listen, "backends": backends,
           "ports": [{"protocol": "tcp", "listen_port": listen_port, "target_backend": names}]})
}

/// ovn1 with a /16 subnet (room for 4096 backends).
async fn wide_networks(c: &Client) {
    let up = json!({"name": "uplink", "type": "physical",
                    "config": {"ipv4.routes": "192.0.2.0/24"}});
    req(c, Method::POST, "/1.0/networks", Some(up))
        .await
        .unwrap();
    let ovn1 = json!({"name": "ovn1", "type": "ovn",
                      "config": {"network": "uplink", "ovn.router": "lxd-net1-lr",
                                 "ovn.switch": "lxd-net1-ls-int", "ipv4.address": "10.0.0.1/16"}});
    req(c, Method::POST, "/1.0/networks", Some(ovn1))
        .await
        .unwrap();
}

/// B2: a load balancer whose VIP × backend pairs, or whose NB row, would pass the caps
/// is refused with a 400 naming the rule, and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_balancer_that_renders_too_much_is_refused() {
    init_tracing();
    let ovn = Ovn::start();
    let dir = tempfile::tempdir_in(tmp_base()).unwrap();
    let d = Daemon::start_with(
        &ovn.nb,
        dir,
        ovnlb::daemon::Settings {
            max_row_bytes: Some(32 << 10),
            ..Default::default()
        },
    )
    .await;
    let c = d.client();
    wide_networks(&c).await;
    // bomb.sh: 4096 backends x 4096 listen ports, 240 KB of request.
    let e = post_err(&c, LBS, backends_body("192.0.2.10", 4096, "1-4096")).await;
    assert_eq!(e.0, 400);
    assert!(
        e.1.contains("ports: Too many endpoints") && e.1.contains("16777216"),
        "{e:?}"
    );
    // 4096 endpoints, inside the endpoint cap, but ~60 KB of VIPs in one row.
    let e = post_err(&c, LBS, backends_body("192.0.2.10", 4096, "80")).await;
    assert_eq!(e.0, 400);
    assert!(
        e.1.contains("Too large for OVN") && e.1.contains("32768 bytes per row"),
        "{e:?}"
    );
    let e = req(&c, Method::GET, &format!("{LBS}/192.0.2.10"), None)
        .await
        .unwrap_err();
    assert_eq!(e.0, 404, "nothing stored");
    // Inside both: accepted and applied.
    req(
        &c,
        Method::POST,
        &format!("{LBS}?wait=20"),
        Some(backends_body("192.0.2.10", 1000, "80")),
    )
    .await
    .unwrap();
}

/// B2: an object stored under a larger limit, too big for the limit it now runs with,
/// fails alone (reported in `/state`, never committed); other objects are applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_too_big_for_nb_fails_alone() {
    init_tracing();
    let ovn = Ovn::start();
    let d = Daemon::start(&ovn.nb).await;
    let c = d.client();
    wide_networks(&c).await;
    let dir = d.stop().await;
    // Stored under the default limits (as by an older ovnlbd), not yet applied.
    {
        use ovnlb::store::Objects;
        let store = ovnlb::store::SqliteStore::open(dir.path().join("ovnlb.db")).unwrap();
        let lb: ovnlb::lb::model::LoadBalancersPost =
            serde_json::from_value(backends_body("192.0.2.10", 4096, "80")).unwrap();
        store.create("ovn1", &lb).unwrap();
        let d = Daemon::start_with(
            &ovn.nb,
            dir,
            ovnlb::daemon::Settings {
                max_row_bytes: Some(32 << 10),
                ..Default::default()
            },
        )
        .await;
        let c = d.client();
        req(
            &c,
            Method::POST,
            &format!("{LBS}?wait=20"),
            Some(lb_body("192.0.2.11", "10.0.0.11")),
        )
        .await
        .unwrap();
        let state = eventually_async(20, "the big one fails", || async {
            req(&c, Method::GET, &format!("{LBS}/192.0.2.10/state"), None)
                .await
                .ok()
                .filter(|s| s["error"] != "")
        })
        .await;
        assert!(
            state["error"]
                .as_str()
                .unwrap()
                .contains("Too large for OVN"),
            "{state}"
        );
        assert!(row_named(&ovn, "ovnlb-ovn1-lb-192.0.2.10-tcp").is_none());
        assert!(row_named(&ovn, "ovnlb-ovn1-lb-192.0.2.11-tcp").is_some());
    }
}

/// B2: an NB message over ovnlbd's limit drops the session with the limit in the WARN
/// log (not "connection closed"); `nb_max_message_bytes` sets the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_nb_message_over_the_limit_is_logged_with_the_limit() {
    init_tracing();
    let ovn = Ovn::start();
    // ~1.2 MB of foreign rows: one monitor snapshot over a 1 MiB limit.
    for i in 0..12 {
        let backends: Vec<String> = (0..8000)
            .map(|j| format!("10.{}.{}.{}:80", i, j / 250, 1 + j % 250))
            .collect();
        ovn.nb.nbctl(&[
            "lb-add",
            &format!("big{i}"),
            &format!("198.51.100.{}:80", i + 1),
            &backends.join(","),
        ]);
    }
    let tmp = tempfile::tempdir_in(tmp_base()).unwrap();
    let conf = tmp.path().join("ovnlbd.toml");
    std::fs::write(
        &conf,
        "nb_max_message_bytes = 1048576\nmax_row_bytes = 262144\n",
    )
    .unwrap();
    let mut child = ovnlbd(&[], &ovn.nb, tmp.path())
        .arg("--config")
        .arg(&conf)
        .env("RUST_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let sock = tmp.path().join("unix.socket");
    eventually(20, "socket", || sock.exists().then_some(())).await;
    eventually_async(20, "a failed connection", || async {
        (metric(&sock, "ovnlb_nb_connections").await == 0.0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let out = tokio::task::spawn_blocking(move || {
        let _ = child.wait();
        let mut s = String::new();
        use std::io::Read;
        child.stderr.take().unwrap().read_to_string(&mut s).unwrap();
        s
    })
    .await
    .unwrap();
    assert!(
        out.lines().any(|l| l.contains("WARN")
            && l.contains("message larger than the 1048576-byte limit")),
        "{out}"
    );
}

/// B3: a deleted API socket file is noticed and bound again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_socket_is_bound_again() {
    init_tracing();
    let nb = OvsdbServer::start();
    let d = Daemon::start(&nb).await;
    std::fs::remove_file(&d.socket).unwrap();
    eventually(20, "the socket is back", || {
        std::os::unix::net::UnixStream::connect(&d.socket)
            .is_ok()
            .then_some(())
    })
    .await;
    req(&d.client(), Method::GET, "/1.0", None).await.unwrap();
}

/// An object created and deleted while NB is frozen is never written to NB when it
/// returns (the store's changes are taken before a round works from them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_deleted_while_nb_was_away_is_never_written() {
    let (ovn, _d, c) = ovn1().await;
    req(
        &c,
        Method::POST,
        &format!("{LBS}?wait=20"),
        Some(lb_body("192.0.2.70", "10.0.0.11")),
    )
    .await
    .unwrap();
    let pid = ovn.nb.pid().to_string();
    let signal = |s: &str| {
        assert!(Command::new("kill")
            .args([s, &pid])
            .status()
            .unwrap()
            .success())
    };
    signal("-STOP");
    req(
        &c,
        Method::POST,
        LBS,
        Some(lb_body("192.0.2.77", "10.0.0.11")),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    req(&c, Method::DELETE, &format!("{LBS}/192.0.2.77"), None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    signal("-CONT");
    // A later write is applied: everything before it has been through the controller.
    req(
        &c,
        Method::POST,
        &format!("{LBS}?wait=30"),
        Some(lb_body("192.0.2.78", "10.0.0.11")),
    )
    .await
    .unwrap();
    let log = Command::new("ovsdb-tool")
        .args(["-m", "show-log"])
        .arg(ovn.nb.dir.path().join("nb.db"))
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&log.stdout);
    assert!(log.contains("ovnlb-ovn1-lb-192.0.2.78-tcp"), "{log}");
    assert!(
        !log.contains("ovnlb-ovn1-lb-192.0.2.77-tcp"),
        "NB was written the deleted object"
    );
}

/// Send `request` and read until the reply holds an LXD envelope's last field, or EOF.
async fn raw_reply(socket: &Path, request: &[u8]) -> String {
    let s = tokio::net::UnixStream::connect(socket).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    // (The server may answer and close before the whole request is written.)
    let request = request.to_vec();
    tokio::spawn(async move { wr.write_all(&request).await });
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
            if String::from_utf8_lossy(&out).contains("\"type\"") && out.ends_with(b"}") {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("no reply within 20 s");
    String::from_utf8_lossy(&out).into_owned()
}

/// What hyper refuses before the router (a head it cannot parse, one too large, one the
/// header timeout cuts off) is answered with an LXD envelope, never an empty body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_request_heads_are_envelopes() {
    let (_nb, d) = nb_daemon(ovnlb::daemon::Settings {
        header_timeout_seconds: Some(1),
        ..Default::default()
    })
    .await;
    let bad = raw_reply(&d.socket, b"GET /1.0 HTTP/1.1\r\nHo st: x\r\n\r\n").await;
    assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
    assert!(bad.contains("application/json"), "{bad}");
    assert!(
        bad.contains("\"error_code\":400") && bad.contains("Malformed request"),
        "{bad}"
    );
    let mut many = b"GET /1.0 HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..200 {
        many.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    let big = raw_reply(&d.socket, &many).await;
    assert!(big.starts_with("HTTP/1.1 431"), "{big}");
    assert!(
        big.contains("\"error_code\":431") && big.contains("Request header fields too large"),
        "{big}"
    );
    // Half a head, then nothing: 408 once the header timeout (1 s) passes.
    let slow = raw(&d.socket, "GET /1.0 HTTP/1.1\r\nHost: x\r\n").await;
    assert!(slow.starts_with("HTTP/1.1 408"), "{slow}");
    assert!(
        slow.contains("\"error_code\":408")
            && slow.contains("Request head not received within 1 s"),
        "{slow}"
    );
    // The router's own errors are untouched.
    let missing = raw(
        &d.socket,
        "GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    assert!(missing.contains("\"error_code\":404"), "{missing}");
}

/// A body over the limit (413) and a bad chunk (400) are answered with LXD envelopes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_errors_are_envelopes() {
    init_tracing();
    let nb = OvsdbServer::start();
    let d = Daemon::start(&nb).await;
    let mut request =
        b"POST /1.0/networks HTTP/1.1\r\nHost: x\r\nContent-Length: 3000000\r\n\r\n".to_vec();
    request.resize(request.len() + 2_200_000, b' ');
    let big = raw_reply(&d.socket, &request).await;
    assert!(big.starts_with("HTTP/1.1 413"), "{big}");
    assert!(big.contains("application/json"), "{big}");
    assert!(
        big.contains("\"error_code\":413") && big.contains("Request body too large"),
        "{big}"
    );
    let chunk = raw_reply(
        &d.socket,
        b"POST /1.0/networks HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\n{}\r\n0\r\n\r\n",
    )
    .await;
    assert!(chunk.starts_with("HTTP/1.1 400"), "{chunk}");
    assert!(
        chunk.contains("\"error_code\":400") && chunk.contains("Invalid request body"),
        "{chunk}"
    );
}

/// The state files are created private whatever the umask: the database and the server
/// key 0600 from the start, `trust/` 0750.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_files_are_created_private() {
    use std::os::unix::fs::PermissionsExt;
    init_tracing();
    let nb = OvsdbServer::start();
    let state = tempfile::tempdir_in(tmp_base()).unwrap();
    let (d, _, _) = https_daemon(&nb, state, Default::default()).await;
    let mode = |p: &str| {
        std::fs::metadata(d.dir.path().join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("ovnlb.db"), 0o600);
    assert_eq!(mode("server.key"), 0o600);
    assert_eq!(mode("trust"), 0o750);
}

/// A body sent too slowly is cut off with a 408 envelope: a request in flight is never
/// evicted by the connection cap, so its body has a deadline of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_is_cut_off() {
    init_tracing();
    let (_nb, d) = nb_daemon(ovnlb::daemon::Settings {
        body_timeout_seconds: Some(1),
        ..Default::default()
    })
    .await;
    // (The connection stays open for writing: a closed half would end the body early.)
    let mut s = tokio::net::UnixStream::connect(&d.socket).await.unwrap();
    s.write_all(b"POST /1.0/networks HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        .await
        .unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(20), async {
        while !out.ends_with(b"}") {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("no reply within 20 s");
    let reply = String::from_utf8_lossy(&out);
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(
        reply.contains("\"error_code\":408") && reply.contains("Request body not received"),
        "{reply}"
    );
}
