//! Real OVSDB servers for tests: started as child processes in temp dirs on loopback with
//! ephemeral ports, killed on drop (and by a parent-death signal, so a killed test binary
//! leaks nothing).

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ovnlb::ovsdb::{self, Client, ConnectConfig, Datum, Remote, Row, TlsFiles};
use uuid::Uuid;

pub const NB_SCHEMA: &str = "/usr/share/ovn/ovn-nb.ovsschema";
/// ovnlb's own clustered database.
pub const OVNLB_SCHEMA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/ovsdb-schema/ovnlb.ovsschema");

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Where servers keep their files: `OVNLB_TEST_TMPDIR`, else /tmp (short paths: unix
/// socket paths must stay under 107 bytes). The benchmark uses tmpfs so disk I/O does not
/// add noise to the server's commit times.
pub fn tmp_base() -> PathBuf {
    std::env::var_os("OVNLB_TEST_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"))
}

/// Poll `f` until it returns `Some`, or panic after `secs` seconds (a plain thread).
pub fn eventually_blocking<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Poll `f` until it returns `Some`, or panic after `secs` seconds.
pub async fn eventually<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Await `f` until it returns `Some`, or panic after `secs` seconds.
pub async fn eventually_async<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Spawn a daemon as our child, with SIGKILL when we die.
fn spawn(args: &[&str], dir: &Path) -> Child {
    let mut c = Command::new("setpriv");
    c.arg("--pdeathsig")
        .arg("KILL")
        .arg("--")
        .args(args)
        .current_dir(dir);
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c.spawn().unwrap_or_else(|e| panic!("spawn {args:?}: {e}"))
}

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(log: &Path, nth: usize, exclude: Option<u16>) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let ports: Vec<u16> = text
            .lines()
            .filter_map(|l| l.split("listening on port ").nth(1))
            .filter_map(|p| p.trim().parse().ok())
            .filter(|p| Some(*p) != exclude)
            .collect();
        if ports.len() > nth {
            return ports[nth];
        }
        assert!(
            Instant::now() < deadline,
            "no listening port in {}:\n{text}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn wait_for_port_open(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Until a unix socket takes connections (its file appears at `bind`, before `listen`:
/// a client in between is refused).
pub fn wait_for_socket(p: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(p).is_err() {
        assert!(Instant::now() < deadline, "{} never listened", p.display());
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Certificates for mutual TLS, made with the openssl CLI.
pub struct Certs {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A second, unrelated CA (for the "wrong CA" case).
    pub other_ca: PathBuf,
}

impl Certs {
    pub fn generate(dir: &Path) -> Certs {
        let d = |n: &str| dir.join(n);
        let ossl = |args: &[&str]| {
            run(Command::new("openssl").args(args).current_dir(dir));
        };
        for ca in ["ca", "other-ca"] {
            ossl(&[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN=ovnlb test {ca}"),
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.pem"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ]);
        }
        std::fs::write(
            d("leaf.ext"),
            "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
        )
        .unwrap();
        for leaf in ["server", "client"] {
            ossl(&[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-out",
                &format!("{leaf}.key"),
            ]);
            ossl(&[
                "req",
                "-new",
                "-key",
                &format!("{leaf}.key"),
                "-subj",
                &format!("/CN={leaf}"),
                "-out",
                &format!("{leaf}.csr"),
            ]);
            ossl(&[
                "x509",
                "-req",
                "-in",
                &format!("{leaf}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "leaf.ext",
                "-out",
                &format!("{leaf}.pem"),
            ]);
        }
        Certs {
            ca: d("ca.pem"),
            server_cert: d("server.pem"),
            server_key: d("server.key"),
            client_cert: d("client.pem"),
            client_key: d("client.key"),
            other_ca: d("other-ca.pem"),
        }
    }
}

/// One standalone ovsdb-server with the OVN NB schema.
pub struct OvsdbServer {
    pub dir: tempfile::TempDir,
    child: Child,
    pub sock: PathBuf,
    pub tcp_port: u16,
    pub ssl_port: Option<u16>,
    pub certs: Option<Certs>,
    args: Vec<String>,
}

impl OvsdbServer {
    pub fn start() -> OvsdbServer {
        Self::start_with(false, NB_SCHEMA)
    }

    pub fn start_tls() -> OvsdbServer {
        Self::start_with(true, NB_SCHEMA)
    }

    /// A standalone OVNLB database.
    pub fn start_ovnlb() -> OvsdbServer {
        Self::start_with(false, OVNLB_SCHEMA)
    }

    fn start_with(tls: bool, schema: &str) -> OvsdbServer {
        let dir = tempfile::Builder::new()
            .prefix("ovsdb")
            .tempdir_in(tmp_base())
            .unwrap();
        let p = dir.path();
        run(Command::new("ovsdb-tool")
            .arg("create")
            .arg(p.join("nb.db"))
            .arg(schema));
        let sock = p.join("nb.sock");
        let certs = tls.then(|| Certs::generate(p));
        let mut args: Vec<String> = vec![
            "ovsdb-server".into(),
            p.join("nb.db").display().to_string(),
            format!("--remote=punix:{}", sock.display()),
            "--remote=ptcp:0:127.0.0.1".into(),
            format!("--unixctl={}", p.join("nb.ctl").display()),
            format!("--log-file={}", p.join("nb.log").display()),
            "--no-chdir".into(),
        ];
        // ptcp:0 and pssl:0 log their ports in no fixed order: give TLS a chosen port.
        let ssl_port = tls.then(free_port);
        if let (Some(c), Some(port)) = (&certs, ssl_port) {
            args.push(format!("--remote=pssl:{port}:127.0.0.1"));
            args.push(format!("--private-key={}", c.server_key.display()));
            args.push(format!("--certificate={}", c.server_cert.display()));
            args.push(format!("--ca-cert={}", c.ca.display()));
        }
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let child = spawn(&argv, p);
        let tcp_port = wait_for_port(&p.join("nb.log"), 0, ssl_port);
        if let Some(port) = ssl_port {
            wait_for_port_open(port);
        }
        wait_for_socket(&sock);
        OvsdbServer {
            dir,
            child,
            sock,
            tcp_port,
            ssl_port,
            certs,
            args,
        }
    }

    /// Stop the server (the database file stays).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.sock);
    }

    /// Start it again on the same files (a new TCP port).
    pub fn restart(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(self.dir.path().join("nb.log"));
        let argv: Vec<&str> = self.args.iter().map(String::as_str).collect();
        self.child = spawn(&argv, self.dir.path());
        self.tcp_port = wait_for_port(&self.dir.path().join("nb.log"), 0, self.ssl_port);
        wait_for_socket(&self.sock);
    }

    /// Run `ovsdb-tool transact` on the database file (server stopped).
    pub fn offline_transact(&self, ops: &serde_json::Value) -> String {
        run(Command::new("ovsdb-tool")
            .arg("transact")
            .arg(self.dir.path().join("nb.db"))
            .arg(ops.to_string()))
    }

    /// A supervised session on the unix socket, monitoring every NB table.
    pub fn session(&self) -> ovsdb::Session {
        let mut cfg = ovsdb::SessionConfig::new(vec![self.unix()], nb_schema());
        cfg.backoff_min = Duration::from_millis(100);
        cfg.backoff_max = Duration::from_millis(500);
        ovsdb::Session::start(cfg).unwrap()
    }

    pub fn unix(&self) -> Remote {
        Remote::Unix(self.sock.clone())
    }

    pub fn tcp(&self) -> Remote {
        Remote::Tcp(([127, 0, 0, 1], self.tcp_port).into())
    }

    pub fn ssl(&self) -> Remote {
        Remote::Ssl(([127, 0, 0, 1], self.ssl_port.expect("TLS server")).into())
    }

    pub fn tls_files(&self) -> TlsFiles {
        let c = self.certs.as_ref().expect("TLS server");
        TlsFiles {
            ca: c.ca.clone(),
            cert: Some(c.client_cert.clone()),
            key: Some(c.client_key.clone()),
        }
    }

    pub fn db(&self) -> String {
        format!("unix:{}", self.sock.display())
    }

    /// Run ovn-nbctl against this server.
    pub fn nbctl(&self, args: &[&str]) -> String {
        run(Command::new("ovn-nbctl")
            .arg(format!("--db={}", self.db()))
            .arg("--no-leader-only")
            .args(args))
    }

    /// `ovsdb-client dump`, decoded with the schema: table → uuid → row.
    pub fn dump(&self, tables: &[&str]) -> BTreeMap<String, BTreeMap<Uuid, Row>> {
        dump(&self.db(), tables)
    }

    /// A connected client; its connection runs in a task.
    pub async fn client(&self) -> Client {
        connect(&self.unix(), &ConnectConfig::default()).await
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for OvsdbServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connect and run the connection in a task that logs how it ended.
pub async fn connect(remote: &Remote, cfg: &ConnectConfig) -> Client {
    let (client, conn) = ovsdb::connect(remote, cfg)
        .await
        .unwrap_or_else(|e| panic!("connect {remote}: {e}"));
    tokio::spawn(async move {
        if let Err(e) = conn.run().await {
            tracing::debug!(error = %e, "test connection ended");
        }
    });
    client
}

pub fn nb_schema() -> Arc<ovsdb::DatabaseSchema> {
    Arc::new(ovsdb::ovn_nb_schema())
}

/// `ovsdb-client dump -f json` of `tables`, decoded with the pinned schema.
pub fn dump(db: &str, tables: &[&str]) -> BTreeMap<String, BTreeMap<Uuid, Row>> {
    // One table per `ovsdb-client dump` call (later arguments would be its columns).
    if tables.len() > 1 {
        return tables.iter().flat_map(|t| dump(db, &[t])).collect();
    }
    let schema = ovsdb::ovn_nb_schema();
    let mut cmd = Command::new("ovsdb-client");
    cmd.args([
        "dump",
        "-f",
        "json",
        "--no-leader-only",
        db,
        "OVN_Northbound",
    ])
    .args(tables);
    let text = run(&mut cmd);
    let mut framer = ovsdb::Framer::default();
    framer.extend(text.as_bytes());
    let mut out = BTreeMap::new();
    while let Some(v) = framer.next_value().unwrap() {
        let caption = v["caption"].as_str().unwrap();
        let table = caption.trim_end_matches(" table");
        let t = schema.table(table).unwrap();
        let headings: Vec<&str> = v["headings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h.as_str().unwrap())
            .collect();
        let mut rows = BTreeMap::new();
        for r in v["data"].as_array().unwrap() {
            let mut row = Row::new();
            let mut uuid = Uuid::nil();
            for (h, cell) in headings.iter().zip(r.as_array().unwrap()) {
                if *h == "_uuid" {
                    uuid = Datum::from_json(cell).unwrap().uuids().next().unwrap();
                } else if *h != "_version" {
                    row.insert((*h).to_owned(), t.decode(h, cell).unwrap());
                }
            }
            rows.insert(uuid, row);
        }
        out.insert(table.to_owned(), rows);
    }
    out
}

/// A 3-member Raft cluster of the NB database on loopback.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub members: Vec<Member>,
    /// The database's name (`OVN_Northbound`, `OVNLB`).
    pub db_name: &'static str,
}

pub struct Member {
    pub child: Option<Child>,
    pub port: u16,
    pub raft_port: u16,
    pub db: PathBuf,
    pub ctl: PathBuf,
    pub log: PathBuf,
}

impl Member {
    pub fn remote(&self) -> Remote {
        Remote::Tcp(([127, 0, 0, 1], self.port).into())
    }
}

impl Cluster {
    pub fn start() -> Cluster {
        Self::start_db(NB_SCHEMA, "OVN_Northbound")
    }

    /// A 3-member cluster of ovnlb's OVNLB database.
    pub fn start_ovnlb() -> Cluster {
        Self::start_db(OVNLB_SCHEMA, "OVNLB")
    }

    fn start_db(schema: &str, db_name: &'static str) -> Cluster {
        for attempt in 0..5 {
            match Self::try_start(schema, db_name) {
                Some(c) => return c,
                None => eprintln!("cluster start attempt {attempt} hit a port clash; retrying"),
            }
        }
        panic!("could not start a cluster");
    }

    fn try_start(schema: &str, db_name: &'static str) -> Option<Cluster> {
        let dir = tempfile::Builder::new()
            .prefix("ovsdb-cluster")
            .tempdir_in(tmp_base())
            .unwrap();
        let p = dir.path();
        let mut members = Vec::new();
        for i in 0..3 {
            members.push(Member {
                child: None,
                port: free_port(),
                raft_port: free_port(),
                db: p.join(format!("nb{i}.db")),
                ctl: p.join(format!("nb{i}.ctl")),
                log: p.join(format!("nb{i}.log")),
            });
        }
        let raft = |m: &Member| format!("tcp:127.0.0.1:{}", m.raft_port);
        run(Command::new("ovsdb-tool")
            .arg("create-cluster")
            .arg(&members[0].db)
            .arg(schema)
            .arg(raft(&members[0])));
        for i in 1..3 {
            run(Command::new("ovsdb-tool")
                .arg("join-cluster")
                .arg(&members[i].db)
                .arg(db_name)
                .arg(raft(&members[i]))
                .arg(raft(&members[0])));
        }
        let mut c = Cluster {
            dir,
            members,
            db_name,
        };
        for i in 0..3 {
            c.spawn_member(i);
        }
        // Every member listening, and a leader elected.
        for m in &c.members {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let log = std::fs::read_to_string(&m.log).unwrap_or_default();
                if log.contains("Address already in use") {
                    return None;
                }
                if std::net::TcpStream::connect(("127.0.0.1", m.port)).is_ok() {
                    break;
                }
                if Instant::now() > deadline {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        // A leader, and every member joined (until then the survivors of a killed leader
        // have no quorum).
        let deadline = Instant::now() + Duration::from_secs(15);
        while c.leader().is_none()
            || !(0..3).all(|i| c.status(i).contains("Status: cluster member"))
        {
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(c)
    }

    pub fn spawn_member(&mut self, i: usize) {
        let m = &self.members[i];
        let args = [
            "ovsdb-server".to_owned(),
            m.db.display().to_string(),
            format!("--remote=ptcp:{}:127.0.0.1", m.port),
            format!("--unixctl={}", m.ctl.display()),
            format!("--log-file={}", m.log.display()),
            "--no-chdir".into(),
        ];
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let child = spawn(&argv, self.dir.path());
        self.members[i].child = Some(child);
    }

    /// `cluster/status` of member `i`.
    pub fn status(&self, i: usize) -> String {
        Command::new("ovs-appctl")
            .arg("-t")
            .arg(&self.members[i].ctl)
            .args(["cluster/status", self.db_name])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// The index of the member that says it is leader.
    pub fn leader(&self) -> Option<usize> {
        (0..self.members.len()).find(|&i| {
            self.members[i].child.is_some()
                && Command::new("ovs-appctl")
                    .arg("-t")
                    .arg(&self.members[i].ctl)
                    .args(["cluster/status", self.db_name])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).contains("Role: leader"))
                    .unwrap_or(false)
        })
    }

    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn transfer_leadership(&self, i: usize) {
        let _ = Command::new("ovs-appctl")
            .arg("-t")
            .arg(&self.members[i].ctl)
            .args(["cluster/failure-test", "transfer-leadership"])
            .output();
    }

    pub fn remotes(&self) -> Vec<Remote> {
        self.members.iter().map(Member::remote).collect()
    }

    pub fn db_string(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("tcp:127.0.0.1:{}", m.port))
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

/// NB + SB ovsdb-servers and ovn-northd, with the LXD-like topology of
/// `scripts/sandbox.sh` (router `lxd-net1-lr`, switches `lxd-net1-ls-ext` and
/// `lxd-net1-ls-int`, VIFs c1..c3 at 10.0.0.11-13 / fd00::11-13).
pub struct Ovn {
    pub nb: OvsdbServer,
    pub dir: tempfile::TempDir,
    sb: Child,
    northd: Child,
}

impl Ovn {
    pub fn start() -> Ovn {
        let nb = OvsdbServer::start();
        let dir = tempfile::Builder::new()
            .prefix("ovn")
            .tempdir_in(tmp_base())
            .unwrap();
        let p = dir.path();
        run(Command::new("ovsdb-tool")
            .arg("create")
            .arg(p.join("sb.db"))
            .arg("/usr/share/ovn/ovn-sb.ovsschema"));
        let sb_sock = p.join("sb.sock");
        let sb = spawn(
            &[
                "ovsdb-server",
                p.join("sb.db").to_str().unwrap(),
                &format!("--remote=punix:{}", sb_sock.display()),
                &format!("--unixctl={}", p.join("sb.ctl").display()),
                &format!("--log-file={}", p.join("sb.log").display()),
                "--no-chdir",
            ],
            p,
        );
        wait_for_socket(&sb_sock);
        let northd = spawn(
            &[
                "ovn-northd",
                &format!("--ovnnb-db={}", nb.db()),
                &format!("--ovnsb-db=unix:{}", sb_sock.display()),
                &format!("--unixctl={}", p.join("northd.ctl").display()),
                &format!("--log-file={}", p.join("northd.log").display()),
                "--no-chdir",
            ],
            p,
        );
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/sandbox.sh");
        run(Command::new("bash")
            .arg(script)
            .arg("topology")
            .arg(nb.db()));
        let ovn = Ovn {
            nb,
            dir,
            sb,
            northd,
        };
        ovn.sync();
        ovn
    }

    pub fn sb_db(&self) -> String {
        format!("unix:{}", self.dir.path().join("sb.sock").display())
    }

    /// Wait until northd has processed NB (`ovn-nbctl --wait=sb sync`).
    pub fn sync(&self) {
        run(Command::new("ovn-nbctl")
            .arg(format!("--db={}", self.nb.db()))
            .args(["--timeout=30", "--wait=sb", "sync"]));
    }

    /// `ovn-trace` a new connection from the uplink to `dst:port` and return the
    /// backends of the `ct_lb_mark` it hits (empty: not load-balanced).
    pub fn trace(&self, proto: &str, dst: &str, port: u16) -> Vec<String> {
        let v6 = dst.contains(':');
        let (src, ipf) = if v6 {
            ("2001:db8::100", "ip6")
        } else {
            ("192.0.2.100", "ip4")
        };
        let flow = format!(
            "inport == \"lxd-net1-ls-ext-lsp-provider\" && eth.src == 00:00:00:00:aa:01 && eth.dst == 00:00:00:00:ff:01 && \
             {ipf}.src == {src} && {ipf}.dst == {dst} && ip.ttl == 64 && {proto} && {proto}.src == 33333 && {proto}.dst == {port}"
        );
        let out = run(Command::new("ovn-trace")
            .arg(format!("--db={}", self.sb_db()))
            .args(["--ct=new", "--ct=new", "--ct=new", "lxd-net1-ls-ext"])
            .arg(&flow));
        out.split("ct_lb_mark(backends=")
            .nth(1)
            .and_then(|rest| rest.split(')').next())
            .map(|b| {
                b.split(',')
                    .map(|s| s.split(';').next().unwrap_or(s).trim().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Ovn {
    fn drop(&mut self) {
        for c in [&mut self.northd, &mut self.sb] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A real OVN data plane in network namespaces of our own (see `scripts/dataplane.sh`):
/// ovs-vswitchd (userspace datapath) and ovn-controller as chassis-1, backends c1 and c2
/// serving HTTP on 8080 (answering their own name), and a client on the uplink.
pub struct Dataplane {
    pub dir: tempfile::TempDir,
    pub ns: String,
    children: Vec<Child>,
    /// The backends' HTTP servers, by backend (`c1`, `c2`).
    servers: BTreeMap<String, Child>,
}

impl Dataplane {
    const SCRIPT: &'static str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/dataplane.sh");

    pub fn start(sb_db: &str) -> Dataplane {
        let dir = tempfile::Builder::new()
            .prefix("dp")
            .tempdir_in("/tmp")
            .unwrap();
        let d = dir.path().to_path_buf();
        let ns = run(Command::new("bash").arg(Self::SCRIPT).arg("ns").arg(&d))
            .trim()
            .to_owned();
        let mut dp = Dataplane {
            dir,
            ns: ns.clone(),
            children: Vec::new(),
            servers: BTreeMap::new(),
        };
        let env: Vec<(&str, PathBuf)> = [
            "OVS_RUNDIR",
            "OVS_LOGDIR",
            "OVS_DBDIR",
            "OVN_RUNDIR",
            "OVN_LOGDIR",
        ]
        .iter()
        .map(|k| (*k, d.clone()))
        .collect();
        let spawn_ns = |dp: &mut Dataplane, args: &[&str]| {
            let mut c = Command::new("setpriv");
            c.args(["--pdeathsig", "KILL", "--", "ip", "netns", "exec", &ns])
                .args(args)
                .current_dir(&d);
            c.envs(env.iter().map(|(k, v)| (*k, v.as_os_str())));
            c.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            dp.children
                .push(c.spawn().unwrap_or_else(|e| panic!("spawn {args:?}: {e}")));
        };
        run(Command::new("ovsdb-tool")
            .arg("create")
            .arg(d.join("conf.db"))
            .arg("/usr/share/openvswitch/vswitch.ovsschema"));
        let db = format!("unix:{}", d.join("db.sock").display());
        spawn_ns(
            &mut dp,
            &[
                "ovsdb-server",
                d.join("conf.db").to_str().unwrap(),
                &format!("--remote=p{db}"),
                &format!("--unixctl={}", d.join("ovsdb.ctl").display()),
                &format!("--log-file={}", d.join("ovsdb.log").display()),
                "--no-chdir",
            ],
        );
        wait_for_socket(&d.join("db.sock"));
        let vsctl = |args: &[&str]| {
            run(Command::new("ovs-vsctl")
                .arg(format!("--db={db}"))
                .arg("--no-wait")
                .args(args))
        };
        vsctl(&["init"]);
        spawn_ns(
            &mut dp,
            &[
                "ovs-vswitchd",
                &db,
                &format!("--unixctl={}", d.join("vswitchd.ctl").display()),
                &format!("--log-file={}", d.join("vswitchd.log").display()),
                "--no-chdir",
            ],
        );
        vsctl(&[
            "set",
            "Open_vSwitch",
            ".",
            "external_ids:system-id=chassis-1",
            &format!("external_ids:ovn-remote={sb_db}"),
            "external_ids:ovn-encap-type=geneve",
            "external_ids:ovn-encap-ip=127.0.0.1",
            "external_ids:ovn-bridge-mappings=physnet:br-ex",
            "external_ids:ovn-bridge-datapath-type=netdev",
        ]);
        vsctl(&[
            "add-br",
            "br-ex",
            "--",
            "set",
            "bridge",
            "br-ex",
            "datapath_type=netdev",
        ]);
        spawn_ns(
            &mut dp,
            &[
                "ovn-controller",
                &db,
                &format!("--log-file={}", d.join("controller.log").display()),
                "--no-chdir",
            ],
        );
        run(Command::new("bash").arg(Self::SCRIPT).arg("hosts").arg(&d));
        for c in ["c1", "c2"] {
            dp.start_backend(c);
        }
        dp
    }

    /// `args` run in backend `c`'s namespace, killed with the test.
    fn spawn_in(&self, c: &str, args: &[&std::ffi::OsStr]) -> Child {
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--pdeathsig",
            "KILL",
            "--",
            "ip",
            "netns",
            "exec",
            &format!("{}-{c}", self.ns),
        ])
        .args(args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd.spawn().unwrap()
    }

    /// Start backend `c`'s HTTP server on 8080 (tcp, v4 and v6), answering its name.
    pub fn start_backend(&mut self, c: &str) {
        let www = self.dir.path().join(format!("www-{c}"));
        let args: Vec<&std::ffi::OsStr> = [
            "python3",
            "-m",
            "http.server",
            "8080",
            "--bind",
            "::",
            "--directory",
        ]
        .iter()
        .map(std::ffi::OsStr::new)
        .chain([www.as_os_str()])
        .collect();
        let child = self.spawn_in(c, &args);
        self.servers.insert(c.to_owned(), child);
    }

    /// Start backend `c`'s UDP responder on 5353 (v4 and v6): each datagram is answered
    /// with its name.
    pub fn start_udp(&mut self, c: &str) {
        let script = format!(
            "import socket\n\
             s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n\
             s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)\n\
             s.bind(('::', 5353))\n\
             while True:\n    d, a = s.recvfrom(2048)\n    s.sendto(b'{c}', a)\n"
        );
        let args = ["python3", "-c", &script].map(std::ffi::OsStr::new);
        let child = self.spawn_in(c, &args);
        self.servers.insert(format!("udp-{c}"), child);
    }

    /// Stop backend `c`'s UDP responder: its host then answers with a port unreachable.
    pub fn stop_udp(&mut self, c: &str) {
        self.stop_backend(&format!("udp-{c}"));
    }

    /// One UDP datagram to `ip:port` from the client namespace: who answered.
    pub fn udp(&self, ip: &str, port: u16) -> Option<String> {
        let script = format!(
            "import socket\n\
             s = socket.socket(socket.AF_INET6 if ':' in '{ip}' else socket.AF_INET, socket.SOCK_DGRAM)\n\
             s.settimeout(2)\n\
             s.sendto(b'x', ('{ip}', {port}))\n\
             print(s.recv(64).decode())\n"
        );
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &format!("{}-cl", self.ns),
                "python3",
                "-c",
                &script,
            ])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Stop backend `c`'s server: its host then answers a connection with a reset.
    pub fn stop_backend(&mut self, c: &str) {
        if let Some(mut child) = self.servers.remove(c) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Give the client namespace another address on the uplink (`a4`: `192.0.2.x/24`),
    /// another client for [`Dataplane::curl_from`].
    pub fn add_client_address(&self, a4: &str) {
        run(Command::new("ip")
            .args(["netns", "exec", &format!("{}-cl", self.ns)])
            .args(["ip", "addr", "add", a4, "dev", "eth0"]));
    }

    /// GET `url` from the client namespace, from source address `src`, giving up after
    /// `max_secs`: the body, or curl's exit code (7: refused, 28: timed out), and how
    /// long it took.
    pub fn curl_from(
        &self,
        src: &str,
        url: &str,
        max_secs: u32,
    ) -> (Result<String, i32>, std::time::Duration) {
        let t = std::time::Instant::now();
        let out = Command::new("ip")
            .args(["netns", "exec", &format!("{}-cl", self.ns)])
            .args([
                "curl",
                "-s",
                "--interface",
                src,
                "-m",
                &max_secs.to_string(),
                url,
            ])
            .output()
            .unwrap();
        let took = t.elapsed();
        let r = if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(out.status.code().unwrap_or(-1))
        };
        (r, took)
    }

    /// GET `url` from the client namespace: the body, or `None` on failure.
    pub fn curl(&self, url: &str) -> Option<String> {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &format!("{}-cl", self.ns),
                "curl",
                "-s",
                "-m",
                "3",
                url,
            ])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        for c in self.children.iter_mut().chain(self.servers.values_mut()) {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("bash")
            .arg(Self::SCRIPT)
            .arg("down")
            .arg(self.dir.path())
            .output();
    }
}

/// Set the status of SB's `Service_Monitor` rows by hand, as ovn-controller would: those
/// of switch port `port`, or all of them.
pub fn set_monitor_status(ovn: &Ovn, port: Option<&str>, status: &str) {
    let mut find = Command::new("ovn-sbctl");
    find.arg(format!("--db={}", ovn.sb_db())).args([
        "--bare",
        "--columns=_uuid",
        "find",
        "Service_Monitor",
    ]);
    if let Some(p) = port {
        find.arg(format!("logical_port={p}"));
    }
    for u in run(&mut find).split_whitespace() {
        run(Command::new("ovn-sbctl")
            .arg(format!("--db={}", ovn.sb_db()))
            .args(["set", "Service_Monitor", u])
            .arg(format!("status={status}")));
    }
}

/// A network object for tests.
pub fn net(name: &str, kind: &str, cfg: &[(&str, &str)]) -> ovnlb::lb::model::Network {
    ovnlb::lb::model::Network {
        name: name.into(),
        kind: kind.into(),
        config: cfg
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect(),
        ..Default::default()
    }
}

/// A session monitoring the NB tables ovnlb uses (as the CLI and the controller do).
pub fn nb_session(remote: Remote, indexes: Vec<ovsdb::IndexSpec>) -> ovsdb::Session {
    let mut cfg = ovsdb::SessionConfig::new(vec![remote], nb_schema());
    cfg.monitor = ovnlb::nb::monitor_requests();
    cfg.indexes = indexes;
    ovsdb::Session::start(cfg).unwrap()
}

/// ovnlbd run in-process (`ovnlb::daemon::run`) on a temp state dir against an NB.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    cancel: tokio_util::sync::CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<(), ovnlb::daemon::DaemonError>>>,
}

impl Daemon {
    pub async fn start(nb: &OvsdbServer) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("ovnlbd")
            .tempdir_in(tmp_base())
            .unwrap();
        Self::start_in(nb, dir).await
    }

    pub async fn start_in(nb: &OvsdbServer, dir: tempfile::TempDir) -> Daemon {
        Self::start_with(nb, dir, ovnlb::daemon::Settings::default()).await
    }

    /// With `extra` settings (nb and dir are filled in).
    pub async fn start_with(
        nb: &OvsdbServer,
        dir: tempfile::TempDir,
        extra: ovnlb::daemon::Settings,
    ) -> Daemon {
        let settings = ovnlb::daemon::Settings {
            nb: Some(format!("unix:{}", nb.sock.display())),
            dir: Some(dir.path().to_owned()),
            ..extra
        };
        let cancel = tokio_util::sync::CancellationToken::new();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(ovnlb::daemon::run(settings, cancel.clone(), Some(tx)));
        let socket = rx.await.expect("the daemon did not start");
        Daemon {
            dir,
            socket,
            cancel,
            task: Some(task),
        }
    }

    pub fn client(&self) -> ovnlb::cli::Client {
        ovnlb::cli::Client::unix(&self.socket)
    }

    /// Stop gracefully; the state dir is kept (for a restart).
    pub async fn stop(mut self) -> tempfile::TempDir {
        self.cancel.cancel();
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
        let dir = tempfile::Builder::new().tempdir_in(tmp_base()).unwrap();
        std::mem::replace(&mut self.dir, dir)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// One API request: the `metadata` of its sync envelope, or (status, message) of its
/// error envelope.
pub async fn req(
    c: &ovnlb::cli::Client,
    m: hyper::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<serde_json::Value, (u16, String)> {
    c.request(m, path, body.as_ref(), None)
        .await
        .map(|r| r.metadata)
        .map_err(|e| match e {
            ovnlb::cli::ClientError::Api { status, message } => (status, message),
            e => panic!("{e}"),
        })
}

/// The networks most API tests use: `uplink` (physical, 192.0.2.0/24 and 2001:db8::/64)
/// and `ovn1` on the sandbox's `lxd-net1-lr` and `lxd-net1-ls-int`.
pub async fn networks(c: &ovnlb::cli::Client) {
    use serde_json::json;
    let up = json!({"name": "uplink", "type": "physical",
                    "config": {"ipv4.routes": "192.0.2.0/24", "ipv6.routes": "2001:db8::/64"}});
    let r = c
        .request(hyper::Method::POST, "/1.0/networks", Some(&up), None)
        .await
        .unwrap();
    assert_eq!(r.status, 201);
    assert_eq!(r.location.as_deref(), Some("/1.0/networks/uplink"));
    let ovn1 = json!({"name": "ovn1", "type": "ovn",
                      "config": {"network": "uplink", "ovn.router": "lxd-net1-lr",
                                 "ovn.switch": "lxd-net1-ls-int"}});
    req(c, hyper::Method::POST, "/1.0/networks", Some(ovn1))
        .await
        .unwrap();
}

/// Real NB + northd, ovnlbd in-process on them, its client, and [`networks`] created.
pub async fn ovn1() -> (Ovn, Daemon, ovnlb::cli::Client) {
    init_tracing();
    let ovn = Ovn::start();
    let d = Daemon::start(&ovn.nb).await;
    let c = d.client();
    networks(&c).await;
    (ovn, d, c)
}

/// Every `Load_Balancer` row in NB, by UUID.
pub fn lb_rows(ovn: &Ovn) -> Vec<(Uuid, Row)> {
    ovn.nb
        .dump(&["Load_Balancer"])
        .remove("Load_Balancer")
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// The `Load_Balancer` rows ovnlb owns (`ovnlb:owner=ovnlb`).
pub fn our_rows(ovn: &Ovn) -> Vec<(Uuid, Row)> {
    lb_rows(ovn)
        .into_iter()
        .filter(|(_, r)| r["external_ids"].map_get("ovnlb:owner") == Some("ovnlb"))
        .collect()
}

/// The `vips` of the `Load_Balancer` row named `name`, as a JSON object.
pub fn vips_of(ovn: &Ovn, name: &str) -> Option<serde_json::Value> {
    lb_rows(ovn)
        .into_iter()
        .find(|(_, r)| r["name"].as_str() == Some(name))
        .map(|(_, r)| {
            let m: serde_json::Map<String, serde_json::Value> = r["vips"]
                .as_map()
                .unwrap_or_default()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().unwrap().to_owned(),
                        serde_json::json!(v.as_str().unwrap()),
                    )
                })
                .collect();
            serde_json::Value::Object(m)
        })
}

/// The backends of one VIP of our row named `name`.
pub fn vip(ovn: &Ovn, name: &str, vip: &str) -> Option<String> {
    our_rows(ovn)
        .into_iter()
        .find(|(_, r)| r["name"].as_str() == Some(name))
        .and_then(|(_, r)| r["vips"].map_get(vip).map(str::to_owned))
}

/// Log lines, gathered for one test ([`capture_logs`]).
#[derive(Clone, Default)]
pub struct Logs(Arc<std::sync::Mutex<Vec<u8>>>);

impl Logs {
    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Gather this thread's log lines (plain text, spans and fields as `fmt` writes them)
/// until the guard drops: on a `current_thread` runtime, everything the test runs.
pub fn capture_logs() -> (Logs, tracing::subscriber::DefaultGuard) {
    let logs = Logs::default();
    let w = logs.clone();
    let guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(move || w.clone())
            .with_ansi(false)
            .finish(),
    );
    (logs, guard)
}

/// As [`ovn1`], with ovnlbd reading the SB too (backend health in `/state`).
pub async fn ovn1_with_sb() -> (Ovn, Daemon, ovnlb::cli::Client) {
    init_tracing();
    let ovn = Ovn::start();
    let (d, c) = with_sb(&ovn).await;
    (ovn, d, c)
}

/// ovnlbd on `ovn`'s NB and SB, its client, and [`networks`] created.
pub async fn with_sb(ovn: &Ovn) -> (Daemon, ovnlb::cli::Client) {
    let dir = tempfile::Builder::new()
        .prefix("ovnlbd")
        .tempdir_in(tmp_base())
        .unwrap();
    let d = Daemon::start_with(
        &ovn.nb,
        dir,
        ovnlb::daemon::Settings {
            sb: Some(ovn.sb_db()),
            ..Default::default()
        },
    )
    .await;
    let c = d.client();
    networks(&c).await;
    (d, c)
}

/// The benchmarks' listen address `i`: 198.18.0.0/15, one per `i`.
pub fn bench_listen(i: usize) -> String {
    format!("198.{}.{}.{}", 18 + i / 65536, (i / 256) % 256, i % 256)
}

/// The benchmarks' load balancer `i`: two backends in 10.0.0.0/16, one TCP port.
pub fn bench_lb(i: usize) -> serde_json::Value {
    let t = |k: usize| format!("10.0.{}.{}", (i / 250) % 250, (i + k) % 250 + 1);
    serde_json::json!({"listen_address": bench_listen(i),
           "backends": [{"name": "b1", "target_address": t(0), "target_port": "8080"},
                        {"name": "b2", "target_address": t(1), "target_port": "8080"}],
           "ports": [{"protocol": "tcp", "listen_port": "80", "target_backend": ["b1", "b2"]}]})
}
