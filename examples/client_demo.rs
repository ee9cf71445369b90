//! Wire one load balancer into an LXD-like OVN topology with ovnlb's native OVSDB client:
//! a supervised session with a live cache, one transaction (insert with a deterministic
//! UUID, attach to the router and the internal switch, guarded by `wait`), and the
//! result read back from the cache. Run by `scripts/demo.sh`.
//!
//! `cargo run --example client_demo -- unix:/path/to/nb.sock`

use std::collections::BTreeMap;
use std::sync::Arc;

use ovnlb::nb::{self, LoadBalancer, LogicalRouter, LogicalSwitch, Table};
use ovnlb::ovsdb::{
    self, Atom, Condition, Datum, Mutation, Mutator, Session, SessionConfig, WaitUntil,
};
use uuid::Uuid;

const ROUTER: &str = "lxd-net1-lr";
const SWITCH: &str = "lxd-net1-ls-int";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let remotes = ovsdb::parse_remotes(
        &std::env::args()
            .nth(1)
            .unwrap_or_else(|| "unix:/var/run/ovn/ovnnb_db.sock".into()),
    )?;
    let mut cfg = SessionConfig::new(remotes, Arc::new(ovsdb::ovn_nb_schema()));
    cfg.monitor = nb::monitor_requests();
    let session = Session::start(cfg)?;
    session.cache().wait_ready().await;

    let find = |table: &str, name: &str| session.cache().read(|v| v.find_by(table, "name", name));
    let (routers, switches) = (
        find(LogicalRouter::NAME, ROUTER),
        find(LogicalSwitch::NAME, SWITCH),
    );
    let ([router], [switch]) = (routers.as_slice(), switches.as_slice()) else {
        return Err(format!("need exactly one router {ROUTER} and one switch {SWITCH}").into());
    };
    let router = LogicalRouter::from_row(router).ok_or("router row")?;
    let switch = LogicalSwitch::from_row(switch).ok_or("switch row")?;

    let name = "ovnlb-demo-lb-192.0.2.10-tcp";
    let uuid = Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes());
    let lb = LoadBalancer {
        uuid,
        name: name.into(),
        vips: BTreeMap::from([(
            "192.0.2.10:80".into(),
            "10.0.0.11:8080,10.0.0.12:8080".into(),
        )]),
        protocol: Some("tcp".into()),
        external_ids: BTreeMap::from([("ovnlb:owner".into(), "demo".into())]),
        ..Default::default()
    };

    let mut txn = session.transaction();
    txn.comment("ovnlb client demo");
    // Guards: the router and switch still exist as read.
    for (table, u) in [
        (LogicalRouter::NAME, router.uuid),
        (LogicalSwitch::NAME, switch.uuid),
    ] {
        txn.wait(
            table,
            vec![Condition::uuid(u)],
            &["name"],
            WaitUntil::Ne,
            vec![],
        );
    }
    txn.insert_with_uuid(LoadBalancer::NAME, uuid, lb.to_row());
    let attach = vec![Mutation::new(
        "load_balancer",
        Mutator::Insert,
        Datum::scalar(Atom::Uuid(uuid)),
    )];
    txn.mutate(
        LogicalRouter::NAME,
        vec![Condition::uuid(router.uuid)],
        attach.clone(),
    );
    txn.mutate(
        LogicalSwitch::NAME,
        vec![Condition::uuid(switch.uuid)],
        attach,
    );
    match session.transact(&txn).await {
        Ok(_) => println!("created {name} ({uuid}) and attached it to {ROUTER} and {SWITCH}"),
        Err(ovsdb::Error::Transaction(e)) if e.error == "duplicate uuid" => {
            println!(
                "{name} ({uuid}) exists already: the client-chosen UUID made the replay a no-op"
            )
        }
        Err(e) => return Err(e.into()),
    }

    // Read-your-writes: the monitor update preceded the reply.
    let cached = session
        .cache()
        .get(LoadBalancer::NAME, &uuid)
        .ok_or("not in the cache")?;
    let cached = LoadBalancer::from_row(&cached).ok_or("bad row")?;
    println!(
        "cache: {} vips={:?} protocol={:?}",
        cached.name, cached.vips, cached.protocol
    );
    let router = session
        .cache()
        .get(LogicalRouter::NAME, &router.uuid)
        .ok_or("router gone")?;
    println!(
        "cache: {ROUTER}.load_balancer contains it: {}",
        router.get("load_balancer").contains(&Atom::Uuid(uuid))
    );
    session.shutdown();
    Ok(())
}
