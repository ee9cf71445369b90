#!/usr/bin/env bash
# The README's first command, the main job: install what is needed, start a sandbox OVN
# (NB, SB, northd) with an LXD-like topology and a real data plane (ovs-vswitchd and
# ovn-controller in network namespaces, backends c1 and c2 serving HTTP), start ovnlbd on
# SQLite, create a health-checked load balancer with the ovnlb CLI, and show it wired and
# healthy: the NB rows on the router and switch, ovnlb's own view of it with both
# backends online, ovn-trace load-balancing a connection to the VIP, and curl reaching
# both backends through it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --quiet --bins
BIN=$PWD/target/debug
DIR=${DEMO_DIR:-$(mktemp -d /tmp/ovnlb-demo.XXXXXX)}
scripts/sandbox.sh up "$DIR"
DP=$DIR/$(basename "$DIR")
scripts/dataplane.sh up "$DP" "unix:$DIR/sb.sock"
NS=ovnlb-$(basename "$DP" | tr -dc 'a-zA-Z0-9' | tail -c 8)
export OVNLB_DIR=$DIR/ovnlb
mkdir -p "$OVNLB_DIR"
"$BIN/ovnlbd" --nb "unix:$DIR/nb.sock" --sb "unix:$DIR/sb.sock" --log-format text >"$DIR/ovnlbd.log" 2>&1 &
echo $! >"$DIR/ovnlbd.pid"
for _ in $(seq 100); do [ -S "$OVNLB_DIR/unix.socket" ] && break; sleep 0.1; done
[ -S "$OVNLB_DIR/unix.socket" ] || { cat "$DIR/ovnlbd.log"; exit 1; }
ovnlb() { echo "\$ ovnlb $*"; "$BIN/ovnlb" "$@"; }

echo "== ovnlbd runs on $OVNLB_DIR (SQLite: ovnlb.db, API: unix.socket)"
ovnlb network create uplink --type physical ipv4.routes=192.0.2.0/24 ipv6.routes=2001:db8::/64
ovnlb network create ovn1 network=uplink ovn.router=lxd-net1-lr ovn.switch=lxd-net1-ls-int
ovnlb network list
ovnlb network load-balancer create ovn1 192.0.2.10 --description web \
  healthcheck=true healthcheck.interval=2 healthcheck.success_count=1
ovnlb network load-balancer backend add ovn1 192.0.2.10 c1 10.0.0.11 8080
ovnlb network load-balancer backend add ovn1 192.0.2.10 c2 10.0.0.12 8080
ovnlb network load-balancer port add ovn1 192.0.2.10 tcp 80 c1,c2
ovnlb network load-balancer show ovn1 192.0.2.10
# The controller applies each change within milliseconds; wait until /state says so.
for _ in $(seq 100); do
  "$BIN/ovnlb" network load-balancer info ovn1 192.0.2.10 | grep -q "Applied revision: 4" && break
  sleep 0.05
done
# ovn-controller probes each backend from 10.0.0.254; wait until both are online.
for _ in $(seq 300); do
  [ "$("$BIN/ovnlb" network load-balancer info ovn1 192.0.2.10 | grep -c ': online')" = 2 ] && break
  sleep 0.2
done
ovnlb network load-balancer info ovn1 192.0.2.10
ovn-nbctl --db="unix:$DIR/nb.sock" --wait=hv sync
echo
echo "== NB: the row on the router and the internal switch"
ovn-nbctl --db="unix:$DIR/nb.sock" lr-lb-list lxd-net1-lr
ovn-nbctl --db="unix:$DIR/nb.sock" ls-lb-list lxd-net1-ls-int
echo
echo "== ovn-trace: a new TCP connection from the uplink to 192.0.2.10:80"
ovn-trace --db="unix:$DIR/sb.sock" --ct=new --ct=new --ct=new lxd-net1-ls-ext \
  'inport == "lxd-net1-ls-ext-lsp-provider" && eth.src == 00:00:00:00:aa:01 &&
   eth.dst == 00:00:00:00:ff:01 && ip4.src == 192.0.2.100 && ip4.dst == 192.0.2.10 &&
   ip.ttl == 64 && tcp && tcp.src == 33333 && tcp.dst == 80' | grep -m1 -o 'ct_lb_mark(backends=[^)]*)'
echo
echo "== the data plane: new connections from the uplink client to http://192.0.2.10/"
for _ in 1 2 3 4 5 6; do ip netns exec "$NS-cl" curl -s -m 3 http://192.0.2.10/; done | sort | uniq -c
cat <<MSG

ovnlbd and the sandbox keep running. Try more:
  export OVNLB_DIR=$OVNLB_DIR OVN_NB_DB=unix:$DIR/nb.sock OVN_SB_DB=unix:$DIR/sb.sock
  $BIN/ovnlb network load-balancer port add ovn1 192.0.2.10 udp 53 c1
  $BIN/ovnlb network forward create ovn1 192.0.2.20 target_address=10.0.0.13
  $BIN/ovnlb network load-balancer list ovn1
  ovn-nbctl lb-list                                      # what ovnlbd wrote
  ovn-nbctl set Load_Balancer <uuid> vips:\\"192.0.2.10:80\\"=\\"10.0.0.99:80\\"   # drift: repaired at once
  kill \$(cat $DP/http-c1.pid)                             # c1 goes offline in info; curl reaches c2 only
  ip netns exec $NS-cl curl -s http://192.0.2.10/
  LXD_DIR=$OVNLB_DIR lxc network forward list ovn1      # the real lxc client works too
  curl -s --unix-socket $OVNLB_DIR/unix.socket 'http://x/1.0/networks/ovn1/load-balancers?recursion=1'
  cat $DIR/ovnlbd.log
Stop it (ovnlbd, northd, NB, SB, the data plane):
  scripts/dataplane.sh down $DP; scripts/sandbox.sh down $DIR && rm -rf $DIR
MSG
