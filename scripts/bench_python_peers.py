#!/usr/bin/python3
"""Benchmark peers in Python (Debian's python3-ovsdbapp and python3-openvswitch).

  bench_python_peers.py ovsdbapp-insert DB N   insert N load balancers (1 VIP, 4 backends,
                                               external_ids) attached to router "bench-lr"
                                               in ONE ovsdbapp transaction
  bench_python_peers.py idl-load DB            initial sync of Load_Balancer and
                                               Logical_Router by the python-ovs IDL

Prints one JSON line with the timings in seconds.
"""
import json
import sys
import time


def lb_fields(i):
    vip = "198.%d.%d.%d:80" % (18 + i // 65536, (i // 256) % 256, i % 256)
    backends = ",".join("10.%d.%d.%d:8080" % (i // 65536, (i // 256) % 256, b) for b in range(1, 5))
    return "bench-lb-%05d" % i, vip, backends


def ovsdbapp_insert(db, n):
    from ovsdbapp.backend.ovs_idl import connection
    from ovsdbapp.schema.ovn_northbound import impl_idl

    t0 = time.monotonic()
    idl = connection.OvsdbIdl.from_server(db, "OVN_Northbound")
    conn = connection.Connection(idl=idl, timeout=3600)
    api = impl_idl.OvnNbApiIdlImpl(conn)
    t1 = time.monotonic()
    with api.transaction(check_error=True) as txn:
        lbs = []
        for i in range(n):
            name, vip, backends = lb_fields(i)
            lbs.append(txn.add(api.lb_add(name, vip, backends.split(","), "tcp",
                                          external_ids={"ovnlb:owner": "bench", "ovnlb:index": str(i)})))
        # ovsdbapp replaces commands by their rows: one transaction, as ours.
        txn.add(api.db_add("Logical_Router", "bench-lr", "load_balancer", *lbs))
        t_built = time.monotonic()
    t2 = time.monotonic()
    print(json.dumps({"connect": t1 - t0, "build": t_built - t1, "txn": t2 - t1}))
    conn.stop()


def idl_load(db):
    import ovs.db.idl
    import ovs.poller

    t0 = time.monotonic()
    helper = ovs.db.idl.SchemaHelper(location="/usr/share/ovn/ovn-nb.ovsschema")
    helper.register_table("Load_Balancer")
    helper.register_table("Logical_Router")
    idl = ovs.db.idl.Idl(db, helper)
    seq = idl.change_seqno
    while True:
        idl.run()
        if idl.change_seqno != seq and idl.has_ever_connected():
            break
        poller = ovs.poller.Poller()
        idl.wait(poller)
        poller.block()
    t1 = time.monotonic()
    rows = len(idl.tables["Load_Balancer"].rows)
    rss_kb = 0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
    print(json.dumps({"load": t1 - t0, "rows": rows, "rss_kb": rss_kb}))
    idl.close()


if __name__ == "__main__":
    if sys.argv[1] == "ovsdbapp-insert":
        ovsdbapp_insert(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1] == "idl-load":
        idl_load(sys.argv[2])
    else:
        sys.exit(__doc__)
