#!/usr/bin/env bash
# scripts/ovnlb-cluster.sh up DIR | down DIR
#
# A 3-member Raft cluster of ovnlb's own OVNLB database (ovsdb-schema/ovnlb.ovsschema),
# each member its own ovsdb-server process, as ovn-ctl runs NB: member i keeps
# DIR/ovnlb$i.db, serves clients on tcp:127.0.0.1:$((BASE+i-1)) and unix:DIR/ovnlb$i.sock,
# talks Raft on tcp:127.0.0.1:$((BASE+10+i-1)); pid, log and unixctl files in DIR.
# BASE defaults to 16651. Writes DIR/remotes (for ovnlbd --store ovsdb:$(cat DIR/remotes)).
# On real hosts run one member per host (the same three as OVN central), with ssl:
# remotes and --private-key/--certificate/--ca-cert as for NB.
set -euo pipefail
cmd=${1:?usage: $0 up|down DIR}
DIR=${2:?usage: $0 up|down DIR}
mkdir -p "$DIR"; DIR=$(cd "$DIR" && pwd -P)
SCHEMA=$(cd "$(dirname "$0")/.." && pwd -P)/ovsdb-schema/ovnlb.ovsschema
BASE=${BASE:-16651}

if [ "$cmd" = down ]; then
  for i in 1 2 3; do
    [ -f "$DIR/ovnlb$i.pid" ] && kill "$(cat "$DIR/ovnlb$i.pid")" 2>/dev/null || true
  done
  exit 0
fi

rm -f "$DIR"/ovnlb[123].db "$DIR"/.ovnlb*.~lock~
raft() { echo "tcp:127.0.0.1:$((BASE + 10 + $1 - 1))"; }
ovsdb-tool create-cluster "$DIR/ovnlb1.db" "$SCHEMA" "$(raft 1)"
for i in 2 3; do
  ovsdb-tool join-cluster "$DIR/ovnlb$i.db" OVNLB "$(raft $i)" "$(raft 1)"
done
for i in 1 2 3; do
  ovsdb-server "$DIR/ovnlb$i.db" --remote="punix:$DIR/ovnlb$i.sock" \
    --remote="ptcp:$((BASE + i - 1)):127.0.0.1" --pidfile="$DIR/ovnlb$i.pid" \
    --log-file="$DIR/ovnlb$i.log" --unixctl="$DIR/ovnlb$i.ctl" --detach --no-chdir \
    2>>"$DIR/stderr.log"
done
REMOTES="tcp:127.0.0.1:$BASE,tcp:127.0.0.1:$((BASE + 1)),tcp:127.0.0.1:$((BASE + 2))"
echo "$REMOTES" >"$DIR/remotes"
# Every member joined and a leader elected (until then a lost member leaves no quorum).
for _ in $(seq 200); do
  n=0; leader=
  for i in 1 2 3; do
    st=$(ovs-appctl -t "$DIR/ovnlb$i.ctl" cluster/status OVNLB 2>/dev/null) || continue
    grep -q '^Status: cluster member' <<<"$st" && n=$((n + 1))
    grep -q '^Role: leader' <<<"$st" && leader=$i
  done
  [ "$n" -eq 3 ] && [ -n "$leader" ] && break
  sleep 0.05
done
[ "$n" -eq 3 ] && [ -n "$leader" ] || { echo "the OVNLB cluster did not form" >&2; exit 1; }
echo "OVNLB cluster up in $DIR (leader: member $leader): $REMOTES"
