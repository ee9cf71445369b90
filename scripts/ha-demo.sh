#!/usr/bin/env bash
# High availability, shown: a sandbox OVN (NB, SB, northd), a 3-member OVNLB cluster
# (scripts/ovnlb-cluster.sh) and three ovnlbd on it. Every node serves the API; one holds
# the reconciler lease and writes NB. A load balancer is created through a standby and
# applied by the active; the active is killed with SIGKILL; a standby takes over after
# the lease period and applies the next change, written through the third node.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --quiet --bins
BIN=$PWD/target/debug
DIR=${DEMO_DIR:-$(mktemp -d /tmp/ovnlb-ha.XXXXXX)}
scripts/sandbox.sh up "$DIR"
scripts/ovnlb-cluster.sh up "$DIR/ovnlb-db"
STORE=ovsdb:$(cat "$DIR/ovnlb-db/remotes")
for n in 1 2 3; do
  mkdir -p "$DIR/node$n"
  "$BIN/ovnlbd" --dir "$DIR/node$n" --nb "unix:$DIR/nb.sock" --store "$STORE" \
    --lease-seconds 3 >"$DIR/node$n/ovnlbd.log" 2>&1 &
  echo $! >"$DIR/node$n.pid"; disown
done
for n in 1 2 3; do
  for _ in $(seq 100); do [ -S "$DIR/node$n/unix.socket" ] && break; sleep 0.1; done
  [ -S "$DIR/node$n/unix.socket" ] || { cat "$DIR/node$n/ovnlbd.log"; exit 1; }
done
on() { local n=$1; shift; echo "\$ [node$n] ovnlb $*"; OVNLB_DIR=$DIR/node$n "$BIN/ovnlb" "$@"; }
role() { curl -s --max-time 2 --unix-socket "$DIR/node$1/unix.socket" http://x/1.0 |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["metadata"]["environment"]["ovnlb_reconciler"]["state"])' 2>/dev/null || echo down; }
roles() { for n in 1 2 3; do printf 'node%s: %s  ' "$n" "$(role $n)"; done; echo; }
active() { for n in 1 2 3; do [ "$(role $n)" = active ] && { echo $n; return; }; done; echo; }

echo "== three ovnlbd on the OVNLB cluster $STORE"
for _ in $(seq 100); do [ -n "$(active)" ] && break; sleep 0.1; done
roles
A=$(active); S=$(( A % 3 + 1 )); T=$(( S % 3 + 1 ))
on "$S" network create uplink --type physical ipv4.routes=192.0.2.0/24
on "$T" network create ovn1 network=uplink ovn.router=lxd-net1-lr ovn.switch=lxd-net1-ls-int
on "$S" network load-balancer create ovn1 192.0.2.10 --description web
on "$T" network load-balancer backend add ovn1 192.0.2.10 c1 10.0.0.11 8080
on "$S" network load-balancer port add ovn1 192.0.2.10 tcp 80 c1
for _ in $(seq 100); do
  ovn-nbctl --db="unix:$DIR/nb.sock" lb-list | grep -q 10.0.0.11:8080 && break; sleep 0.05
done
echo "== NB, written by node$A (the active)"
ovn-nbctl --db="unix:$DIR/nb.sock" lb-list
echo
echo "== kill -9 node$A"
t0=$(date +%s%N)
kill -9 "$(cat "$DIR/node$A.pid")"
rm -f "$DIR/node$A.pid"
until [ -n "$(active)" ]; do sleep 0.05; done
echo "node$(active) took over after $(( ($(date +%s%N) - t0) / 1000000 )) ms (lease period 3 s)"
roles
B=$(active); W=$(( 6 - A - B ))
on "$W" network load-balancer backend add ovn1 192.0.2.10 c2 10.0.0.12 8080
on "$W" network load-balancer port remove ovn1 192.0.2.10 tcp 80
on "$W" network load-balancer port add ovn1 192.0.2.10 tcp 80 c1,c2
for _ in $(seq 100); do
  ovn-nbctl --db="unix:$DIR/nb.sock" lb-list | grep -q 10.0.0.12:8080 && break; sleep 0.05
done
echo "== NB, now written by node$B"
ovn-nbctl --db="unix:$DIR/nb.sock" lb-list
grep -h "reconciler lease\|NB fence" "$DIR"/node*/ovnlbd.log | sed 's/^[^ ]* *//' | cut -c1-160
cat <<MSG

Everything keeps running under $DIR. Stop it:
  for p in $DIR/node*.pid; do kill \$(cat \$p); done; scripts/ovnlb-cluster.sh down $DIR/ovnlb-db; scripts/sandbox.sh down $DIR && rm -rf $DIR
MSG
