#!/usr/bin/env bash
# scripts/dataplane.sh up DIR SB_DB | down DIR        (manual use: detached daemons)
# scripts/dataplane.sh ns DIR | hosts DIR | down DIR    (tests: they run the daemons)
#
# A real OVN data plane for tests (no kernel module): ovsdb-server (vswitch schema),
# ovs-vswitchd with the userspace datapath and ovn-controller (chassis-1), all inside a
# network namespace of our own, plus namespaces joined by veth pairs:
#   <id>-c1, <id>-c2  backends on lxd-net1-ls-int (ports c1, c2: 10.0.0.11/12, fd00::11/12),
#                     each serving HTTP on 8080 that answers its own name
#   <id>-cl           a client on the uplink (br-ex, physnet): 192.0.2.100/24, 2001:db8::100/64
# The topology of scripts/sandbox.sh must exist in NB, its gateway chassis chassis-1.
# Traffic stays inside these namespaces. `down` kills the daemons and deletes them.
set -euo pipefail
cmd=${1:?usage: $0 up DIR SB_DB | ns DIR | hosts DIR | down DIR}
DIR=${2:?usage: $0 up DIR SB_DB | ns DIR | hosts DIR | down DIR}
mkdir -p "$DIR"; DIR=$(cd "$DIR" && pwd -P)
ID=$(basename "$DIR" | tr -dc 'a-zA-Z0-9' | tail -c 8)
NS=ovnlb-$ID

if [ "$cmd" = down ]; then
  for p in "$DIR"/*.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true; done
  sleep 0.2
  for n in "$NS" "$NS-c1" "$NS-c2" "$NS-cl"; do ip netns pids "$n" 2>/dev/null | xargs -r kill 2>/dev/null || true; ip netns del "$n" 2>/dev/null || true; done
  exit 0
fi
in_ns() { ip netns exec "$NS" "$@"; }
export OVS_RUNDIR=$DIR OVS_LOGDIR=$DIR OVS_DBDIR=$DIR OVN_RUNDIR=$DIR OVN_LOGDIR=$DIR
VSCTL="ovs-vsctl --db=unix:$DIR/db.sock --no-wait"

if [ "$cmd" = ns ]; then
  ip netns add "$NS"
  in_ns ip link set lo up
  echo "$NS"
  exit 0
fi

# veth: $1 = namespace, $2 = its address (v4/len), $3 = v6/len, $4 = MAC, $5 = bridge, $6 = iface-id, $7 = gw4, $8 = gw6
host() {
  local ns=$1 a4=$2 a6=$3 mac=$4 br=$5 iface=$6 gw4=$7 gw6=$8 peer
  peer="v$ID${ns##*-}"
  ip netns add "$ns"
  ip link add "$peer" type veth peer name eth0 netns "$ns"
  ip link set "$peer" netns "$NS"
  ip netns exec "$ns" ip link set lo up
  ip netns exec "$ns" ip link set eth0 address "$mac"
  ip netns exec "$ns" ip addr add "$a4" dev eth0
  ip netns exec "$ns" ip -6 addr add "$a6" dev eth0 nodad
  ip netns exec "$ns" ip link set eth0 up
  ip netns exec "$ns" ethtool -K eth0 tx off >/dev/null
  [ -n "$gw4" ] && ip netns exec "$ns" ip route add default via "$gw4"
  [ -n "$gw6" ] && ip netns exec "$ns" ip -6 route add default via "$gw6"
  in_ns ip link set "$peer" up
  in_ns ethtool -K "$peer" tx off >/dev/null
  if [ -n "$iface" ]; then
    $VSCTL add-port "$br" "$peer" -- set interface "$peer" external_ids:iface-id="$iface"
  else
    $VSCTL add-port "$br" "$peer"
  fi
}

hosts() {
  # ovn-controller creates br-int; wait for it.
  for _ in $(seq 100); do $VSCTL br-exists br-int && break; sleep 0.1; done
  host "$NS-c1" 10.0.0.11/24 fd00::11/64 00:00:00:00:00:11 br-int c1 10.0.0.1 fd00::1
  host "$NS-c2" 10.0.0.12/24 fd00::12/64 00:00:00:00:00:12 br-int c2 10.0.0.1 fd00::1
  host "$NS-cl" 192.0.2.100/24 2001:db8::100/64 00:00:00:00:aa:01 br-ex "" "" ""
  for c in c1 c2; do mkdir -p "$DIR/www-$c"; echo "$c" > "$DIR/www-$c/index.html"; done
}

if [ "$cmd" = hosts ]; then
  hosts
  exit 0
fi

SB=${3:?usage: $0 up DIR SB_DB}
ip netns add "$NS"
in_ns ip link set lo up
ovsdb-tool create "$DIR/conf.db" /usr/share/openvswitch/vswitch.ovsschema
in_ns ovsdb-server "$DIR/conf.db" --remote="punix:$DIR/db.sock" --pidfile="$DIR/ovsdb.pid" \
  --log-file="$DIR/ovsdb.log" --unixctl="$DIR/ovsdb.ctl" --detach --no-chdir
$VSCTL init
in_ns ovs-vswitchd "unix:$DIR/db.sock" --pidfile="$DIR/vswitchd.pid" --log-file="$DIR/vswitchd.log" \
  --unixctl="$DIR/vswitchd.ctl" --detach --no-chdir
$VSCTL set Open_vSwitch . external_ids:system-id=chassis-1 \
  external_ids:ovn-remote="$SB" external_ids:ovn-encap-type=geneve external_ids:ovn-encap-ip=127.0.0.1 \
  external_ids:ovn-bridge-mappings=physnet:br-ex external_ids:ovn-bridge-datapath-type=netdev
$VSCTL add-br br-ex -- set bridge br-ex datapath_type=netdev
in_ns ovn-controller "unix:$DIR/db.sock" --pidfile="$DIR/controller.pid" --log-file="$DIR/controller.log" --detach --no-chdir

hosts
for c in c1 c2; do
  ip netns exec "$NS-$c" python3 -m http.server 8080 --bind :: --directory "$DIR/www-$c" >"$DIR/http-$c.log" 2>&1 &
  echo $! > "$DIR/http-$c.pid"
done
echo "data plane up: namespaces $NS(-c1,-c2,-cl)"
