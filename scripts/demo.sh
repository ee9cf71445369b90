#!/usr/bin/env bash
# The README's first command: install, start a sandbox OVN, and wire a load balancer
# into it with ovnlb's native OVSDB client (examples/client_demo.rs), then show that
# northd load-balances the VIP to the backends (ovn-trace).
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
cat <<MSG

The sandbox keeps running. Try more:
  export OVN_NB_DB=unix:$DIR/nb.sock OVN_SB_DB=unix:$DIR/sb.sock
  ovn-nbctl list Load_Balancer
  cargo run --example client_demo -- unix:$DIR/nb.sock   # idempotent: a replay is refused, nothing duplicated
Stop it:
  scripts/sandbox.sh down $DIR && rm -rf $DIR
MSG
