//! Failure paths against a scripted fake OVSDB peer (in-process, over a duplex pipe):
//! split frames, garbage, disconnects mid-transaction, unknown rows, silent peers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ovnlb::ovsdb::{
    self, Cache, ConnectConfig, Datum, Error, Framer, MonitorMethod, MonitorRequests,
    MonitorSelect, Transaction,
};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// The server side of the pipe.
struct Peer {
    io: DuplexStream,
    framer: Framer,
}

impl Peer {
    async fn recv(&mut self) -> Value {
        loop {
            if let Some(v) = self.framer.next_value().unwrap() {
                return v;
            }
            let mut buf = [0u8; 4096];
            let n = self.io.read(&mut buf).await.unwrap();
            assert!(n > 0, "client closed");
            self.framer.extend(&buf[..n]);
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.unwrap();
        self.io.flush().await.unwrap();
    }
}

fn pair(
    cfg: ConnectConfig,
) -> (
    ovsdb::Client,
    tokio::task::JoinHandle<ovsdb::Result<()>>,
    Peer,
) {
    let (a, b) = tokio::io::duplex(1 << 20);
    let (client, conn) = ovsdb::from_stream(a, &cfg, "fake".into());
    let h = tokio::spawn(conn.run());
    (
        client,
        h,
        Peer {
            io: b,
            framer: Framer::default(),
        },
    )
}

fn no_probe() -> ConnectConfig {
    ConnectConfig {
        probe_interval: None,
        ..Default::default()
    }
}

#[tokio::test]
async fn two_messages_in_one_read_and_a_frame_split_in_an_escape() {
    let (c, _h, mut peer) = pair(no_probe());
    let c1 = c.clone();
    let t1 = tokio::spawn(async move { c1.call("a", json!([])).await });
    let c2 = c.clone();
    let t2 = tokio::spawn(async move { c2.call("b", json!([])).await });
    let r1 = peer.recv().await;
    let r2 = peer.recv().await;
    assert!(r1.get("jsonrpc").is_none() && r1["params"] == json!([]));
    // Both replies in one write, in reverse order.
    let both = format!(
        r#"{{"id":{},"result":"for {}","error":null}}{{"id":{},"result":"for {}","error":null}}"#,
        r2["id"],
        r2["method"].as_str().unwrap(),
        r1["id"],
        r1["method"].as_str().unwrap()
    );
    peer.send(both.as_bytes()).await;
    assert_eq!(t1.await.unwrap().unwrap(), json!("for a"));
    assert_eq!(t2.await.unwrap().unwrap(), json!("for b"));

    // A reply cut inside a string escape, and a reply without `result`.
    let c3 = c.clone();
    let t3 = tokio::spawn(async move { c3.call("c", json!([])).await });
    let r3 = peer.recv().await;
    let msg = format!(r#"{{"id":{},"result":"q\"}}{{\\","error":null}}"#, r3["id"]);
    let cut = msg.find('\\').unwrap() + 1;
    peer.send(&msg.as_bytes()[..cut]).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    peer.send(&msg.as_bytes()[cut..]).await;
    assert_eq!(t3.await.unwrap().unwrap(), json!("q\"}{\\"));
    let c4 = c.clone();
    let t4 = tokio::spawn(async move { c4.call("d", json!([])).await });
    let r4 = peer.recv().await;
    peer.send(format!(r#"{{"id":{},"error":"unknown method"}}"#, r4["id"]).as_bytes())
        .await;
    assert_eq!(
        t4.await
            .unwrap()
            .unwrap_err()
            .as_server_error()
            .unwrap()
            .error,
        "unknown method"
    );
}

#[tokio::test]
async fn server_echo_is_answered() {
    let (_c, _h, mut peer) = pair(no_probe());
    peer.send(br#"{"id":"echo","method":"echo","params":["x",1]}"#)
        .await;
    assert_eq!(
        peer.recv().await,
        json!({"id": "echo", "result": ["x", 1], "error": null})
    );
    // Unknown server requests get an error reply, not a crash.
    peer.send(br#"{"id":5,"method":"nonsense","params":[]}"#)
        .await;
    assert_eq!(peer.recv().await["error"], json!("unknown method"));
}

#[tokio::test]
async fn garbage_ends_the_session_and_fails_pending_requests() {
    for garbage in [
        &b"hello"[..],
        b"[1,2]",
        b"{\"id\":1,\"result\":tru}",
        b"{\"method\":7}",
    ] {
        let (c, h, mut peer) = pair(no_probe());
        let c1 = c.clone();
        let t = tokio::spawn(async move { c1.list_dbs().await });
        peer.recv().await;
        peer.send(garbage).await;
        let end = h.await.unwrap().unwrap_err();
        assert!(matches!(end, Error::Codec(_) | Error::Protocol(_)), "{end}");
        assert!(t.await.unwrap().unwrap_err().is_closed());
        assert!(c.is_closed());
        assert!(matches!(c.echo().await.unwrap_err(), Error::Closed));
    }
}

#[tokio::test]
async fn disconnect_mid_transaction_is_indeterminate() {
    let (c, h, mut peer) = pair(no_probe());
    let c1 = c.clone();
    let t = tokio::spawn(async move {
        let mut txn = Transaction::new("OVN_Northbound");
        txn.comment("x");
        c1.transact(&txn).await
    });
    let req = peer.recv().await;
    assert_eq!(req["method"], "transact");
    // Half a reply, then the peer goes away.
    peer.send(br#"{"id":1,"result":[{"#).await;
    drop(peer);
    let e = t.await.unwrap().unwrap_err();
    assert!(e.is_indeterminate(), "{e}");
    assert!(h.await.unwrap().is_err());
    // A transaction on a closed client was never sent: plainly closed.
    let txn = Transaction::new("OVN_Northbound");
    assert!(matches!(c.transact(&txn).await.unwrap_err(), Error::Closed));
}

#[tokio::test(start_paused = true)]
async fn request_timeouts_and_dead_peer_probe() {
    let cfg = ConnectConfig {
        probe_interval: None,
        request_timeout: Duration::from_secs(3),
        ..Default::default()
    };
    let (c, _h, mut peer) = pair(cfg);
    let e = c.list_dbs().await.unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e}");
    let e = c
        .transact(&Transaction::new("OVN_Northbound"))
        .await
        .unwrap_err();
    assert!(e.is_indeterminate(), "{e}");
    // A late reply to a timed-out request is ignored, the session goes on.
    let first = peer.recv().await;
    peer.send(format!(r#"{{"id":{},"result":[],"error":null}}"#, first["id"]).as_bytes())
        .await;
    let c1 = c.clone();
    let t = tokio::spawn(async move { c1.echo().await });
    peer.recv().await; // the transact
    let echo = peer.recv().await;
    peer.send(format!(r#"{{"id":{},"result":["ovnlb"],"error":null}}"#, echo["id"]).as_bytes())
        .await;
    t.await.unwrap().unwrap();

    // Our probe: a silent peer is dropped after two intervals.
    let cfg = ConnectConfig {
        probe_interval: Some(Duration::from_secs(5)),
        ..Default::default()
    };
    let (c, h, mut peer) = pair(cfg);
    let probe = peer.recv().await;
    assert_eq!(probe["method"], "echo");
    let end = h.await.unwrap().unwrap_err();
    assert!(matches!(end, Error::ProbeTimeout(_)), "{end}");
    assert!(c.is_closed());

    // A peer that answers the probe stays.
    let cfg = ConnectConfig {
        probe_interval: Some(Duration::from_secs(5)),
        ..Default::default()
    };
    let (c, h, mut peer) = pair(cfg);
    for _ in 0..3 {
        let probe = peer.recv().await;
        peer.send(format!(r#"{{"id":{},"result":[],"error":null}}"#, probe["id"]).as_bytes())
            .await;
    }
    assert!(!c.is_closed() && !h.is_finished());
}

fn lb_cache() -> (Arc<Cache>, MonitorRequests) {
    let schema = Arc::new(ovsdb::ovn_nb_schema());
    let req: MonitorRequests = BTreeMap::from([(
        "Load_Balancer".to_owned(),
        MonitorSelect {
            columns: Some(vec!["name".into(), "vips".into(), "protocol".into()]),
            conditions: None,
        },
    )]);
    (Cache::new(schema, req.clone(), vec![]), req)
}

const U1: &str = "11111111-1111-1111-1111-111111111111";
const U2: &str = "22222222-2222-2222-2222-222222222222";

#[tokio::test]
async fn monitor_fallbacks_and_update_for_an_unknown_row() {
    let (c, _h, mut peer) = pair(no_probe());
    let (cache, req) = lb_cache();
    let c1 = c.clone();
    let cache1 = cache.clone();
    let t = tokio::spawn(async move {
        c1.monitor("OVN_Northbound", &json!("m"), &req, None, cache1)
            .await
    });
    // monitor_cond_since unknown: fall back to monitor_cond.
    let r = peer.recv().await;
    assert_eq!(
        (r["method"].as_str(), &r["params"][3]),
        (Some("monitor_cond_since"), &json!(ovsdb::ZERO_TXN_ID))
    );
    peer.send(format!(r#"{{"id":{},"error":"unknown method"}}"#, r["id"]).as_bytes())
        .await;
    let r = peer.recv().await;
    assert_eq!(r["method"], "monitor_cond");
    let initial = json!({"Load_Balancer": {U1: {"initial": {"name": "a", "vips": ["map", [["1.1.1.1:80", "2.2.2.2:80"]]]}}}});
    // The reply and an update2 in ONE write: the update applies after the reply.
    let upd = json!({"id": null, "method": "update2", "params": ["m", {"Load_Balancer": {U1: {"modify": {"protocol": "udp"}}}}]});
    peer.send(
        format!(
            r#"{{"id":{},"result":{},"error":null}}{}"#,
            r["id"], initial, upd
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(t.await.unwrap().unwrap(), MonitorMethod::Cond);
    let u1 = U1.parse().unwrap();
    for _ in 0..100 {
        if cache
            .get("Load_Balancer", &u1)
            .is_some_and(|r| r.get_str("protocol") == Some("udp"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let row = cache.get("Load_Balancer", &u1).unwrap();
    assert_eq!(row.get_str("protocol"), Some("udp"));
    assert_eq!(row.get("vips").map_get("1.1.1.1:80"), Some("2.2.2.2:80"));
    assert!(cache.is_ready() && !cache.needs_resync());

    // A delta for a row we do not have: resync, never continue.
    let bad = json!({"id": null, "method": "update2", "params": ["m", {"Load_Balancer": {U2: {"modify": {"name": "x"}}}}]});
    peer.send(bad.to_string().as_bytes()).await;
    tokio::time::timeout(Duration::from_secs(5), cache.resync_needed())
        .await
        .unwrap();
    // Updates for other monitors or unknown tables do not panic either.
    peer.send(br#"{"id":null,"method":"update2","params":["other",{}]}{"id":null,"method":"update3","params":["m"]}"#).await;
    c.echo_or_closed().await;
}

#[tokio::test]
async fn plain_monitor_fallback_uses_rfc7047_updates() {
    let (c, _h, mut peer) = pair(no_probe());
    let (cache, req) = lb_cache();
    let c1 = c.clone();
    let cache1 = cache.clone();
    let t = tokio::spawn(async move {
        c1.monitor("OVN_Northbound", &json!("m"), &req, None, cache1)
            .await
    });
    for m in ["monitor_cond_since", "monitor_cond"] {
        let r = peer.recv().await;
        assert_eq!(r["method"], m);
        peer.send(format!(r#"{{"id":{},"error":"unknown method"}}"#, r["id"]).as_bytes())
            .await;
    }
    let r = peer.recv().await;
    assert_eq!(r["method"], "monitor");
    let initial = json!({"Load_Balancer": {U1: {"new": {"name": "a", "vips": ["map", []], "protocol": ["set", []]}}}});
    peer.send(format!(r#"{{"id":{},"result":{}}}"#, r["id"], initial).as_bytes())
        .await;
    assert_eq!(t.await.unwrap().unwrap(), MonitorMethod::Plain);
    let upd = json!({"id": null, "method": "update", "params": ["m", {"Load_Balancer": {
        U1: {"old": {"name": "a"}, "new": {"name": "b", "vips": ["map", []], "protocol": "tcp"}},
        U2: {"new": {"name": "c", "vips": ["map", []], "protocol": ["set", []]}}}}]});
    peer.send(upd.to_string().as_bytes()).await;
    let del = json!({"id": null, "method": "update", "params": ["m", {"Load_Balancer": {U2: {"old": {"name": "c"}}}}]});
    peer.send(del.to_string().as_bytes()).await;
    let u1 = U1.parse().unwrap();
    let u2 = U2.parse().unwrap();
    for _ in 0..100 {
        if cache
            .get("Load_Balancer", &u1)
            .is_some_and(|r| r.get_str("name") == Some("b"))
            && cache.get("Load_Balancer", &u2).is_none()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        cache.get("Load_Balancer", &u1).unwrap().get("protocol"),
        &Datum::scalar("tcp")
    );
    assert!(cache.get("Load_Balancer", &u2).is_none());
    assert!(!cache.needs_resync());
}

/// Helper trait: a round trip that tolerates the session having been closed.
trait EchoOrClosed {
    async fn echo_or_closed(&self);
}
impl EchoOrClosed for ovsdb::Client {
    async fn echo_or_closed(&self) {
        let _ = tokio::time::timeout(Duration::from_millis(200), self.echo()).await;
    }
}
