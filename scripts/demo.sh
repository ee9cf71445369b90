#!/usr/bin/env bash
# The README's first command: install, start a sandbox OVN, wire a load balancer into it
# with ovnlb's native OVSDB client (examples/client_demo.rs), then reconcile a whole
# desired state (dist/desired-example.yaml) with `ovnlb reconcile`, and show with
# ovn-trace that northd load-balances the VIPs to the backends.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
DIR=${DEMO_DIR:-$(mktemp -d /tmp/ovnlb-demo.XXXXXX)}
scripts/sandbox.sh up "$DIR"
cargo run --quiet --example client_demo -- "unix:$DIR/nb.sock"
ovn-nbctl --db="unix:$DIR/nb.sock" --wait=sb sync
echo
echo "== NB: load balancers on the router and the internal switch"
ovn-nbctl --db="unix:$DIR/nb.sock" lr-lb-list lxd-net1-lr
ovn-nbctl --db="unix:$DIR/nb.sock" ls-lb-list lxd-net1-ls-int
echo
echo "== ovn-trace: a new TCP connection from the uplink to 192.0.2.10:80"
ovn-trace --db="unix:$DIR/sb.sock" --ct=new --ct=new --ct=new lxd-net1-ls-ext \
  'inport == "lxd-net1-ls-ext-lsp-provider" && eth.src == 00:00:00:00:aa:01 &&
   eth.dst == 00:00:00:00:ff:01 && ip4.src == 192.0.2.100 && ip4.dst == 192.0.2.10 &&
   ip.ttl == 64 && tcp && tcp.src == 33333 && tcp.dst == 80' | grep -m1 -o 'ct_lb_mark(backends=[^)]*)'
trace() { # proto dst port
  ovn-trace --db="unix:$DIR/sb.sock" --ct=new --ct=new --ct=new lxd-net1-ls-ext \
    "inport == \"lxd-net1-ls-ext-lsp-provider\" && eth.src == 00:00:00:00:aa:01 && eth.dst == 00:00:00:00:ff:01 &&
     $4.src == $5 && $4.dst == $2 && ip.ttl == 64 && $1 && $1.src == 33333 && $1.dst == $3" |
    grep -m1 -o 'ct_lb_mark(backends=[^)]*)'
}
echo
echo "== ovnlb reconcile -f dist/desired-example.yaml (dry run, then for real)"
cargo run --quiet --bin ovnlb -- reconcile --nb "unix:$DIR/nb.sock" -f dist/desired-example.yaml --dry-run
cargo run --quiet --bin ovnlb -- reconcile --nb "unix:$DIR/nb.sock" -f dist/desired-example.yaml
ovn-nbctl --db="unix:$DIR/nb.sock" --wait=sb sync
echo "== ovn-trace of each VIP"
echo -n "tcp 192.0.2.20:80     -> "; trace tcp 192.0.2.20 80 ip4 192.0.2.100
echo -n "udp 192.0.2.20:53     -> "; trace udp 192.0.2.20 53 ip4 192.0.2.100
echo -n "tcp [2001:db8::20]:443 -> "; trace tcp 2001:db8::20 443 ip6 2001:db8::100
echo -n "tcp 192.0.2.21:2222   -> "; trace tcp 192.0.2.21 2222 ip4 192.0.2.100
echo -n "tcp 192.0.2.21:8443   -> "; trace tcp 192.0.2.21 8443 ip4 192.0.2.100
cat <<MSG

The sandbox keeps running. Try more:
  export OVN_NB_DB=unix:$DIR/nb.sock OVN_SB_DB=unix:$DIR/sb.sock
  ovn-nbctl list Load_Balancer
  cargo run --example client_demo -- unix:$DIR/nb.sock   # idempotent: a replay is refused, nothing duplicated
  cargo run --bin ovnlb -- reconcile --nb unix:$DIR/nb.sock -f dist/desired-example.yaml   # a second pass: nothing to do
  (edit dist/desired-example.yaml, or change a VIP with ovn-nbctl, and reconcile again)
Stop it:
  scripts/sandbox.sh down $DIR && rm -rf $DIR
MSG
