#!/usr/bin/env bash
# scripts/repro-reliability.sh [OVNLBD...]: the reproductions of reliability-findings.md
# (B1, B3-B8) run against each ovnlbd given (default: the release build), side by side,
# on a sandbox OVN per binary. B2 is run only where it is refused (an ovnlbd that
# accepts it commits a 282 MB row and northd grows to 7 GB): pass B2=1 to run it anyway.
# Prints one line per case and binary.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -eq 0 ]; then
  cargo build --release --quiet --bin ovnlbd
  set -- target/release/ovnlbd
fi
T=$(mktemp -d /tmp/ovnlb-repro.XXXXXX)
PID=
cleanup() {
  [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null || true
  for d in "$T"/ovn*; do [ -d "$d" ] && scripts/sandbox.sh down "$d" >/dev/null 2>&1; done
  pkill -f "$T" 2>/dev/null || true
  rm -rf "$T"
}
trap cleanup EXIT
LB='{"listen_address":"ADDR","backends":[{"name":"b1","target_address":"BACKEND","target_port":"8080"}],"ports":[{"protocol":"tcp","listen_port":"80","target_backend":["b1"]}]}'
lb() { echo "$LB" | sed "s/ADDR/$1/; s/BACKEND/$2/"; }
code() { curl -s -o /dev/null -w '%{http_code}' --max-time "${MAXT:-10}" --unix-socket "$S" "$@"; }
api() { curl -s --max-time 10 --unix-socket "$S" "$@"; }
metric() { api http://x/1.0/metrics | awk -v m="$1" '$1 == m { print $2 }'; }
cpu() { awk '{ print $14 + $15 }' "/proc/$PID/stat"; }   # utime+stime, in ticks
row() { printf '%-4s %-30s %s\n' "$1" "$2" "$3"; }

start() { # start BIN [extra args]: a fresh sandbox and state dir, ovnlbd on them
  local bin=$1; shift
  N=$((${N:-0} + 1)); O=$T/ovn$N; D=$T/d$N; S=$D/unix.socket
  scripts/sandbox.sh up "$O" >/dev/null 2>&1
  NB="unix:$O/nb.sock"
  mkdir -p "$D"
  setsid "$bin" --nb "$NB" --dir "$D" "$@" 2>"$D/log" &
  PID=$!
  for _ in $(seq 100); do [ -S "$S" ] && break; sleep 0.1; done
  api -X POST -d '{"name":"uplink","type":"physical","config":{"ipv4.routes":"192.0.2.0/24"}}' http://x/1.0/networks >/dev/null
  api -X POST -d '{"name":"ovn1","type":"ovn","config":{"network":"uplink","ovn.router":"lxd-net1-lr","ovn.switch":"lxd-net1-ls-int"}}' http://x/1.0/networks >/dev/null
}
stop() { kill -9 "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=; scripts/sandbox.sh down "$O" >/dev/null 2>&1; }
nbctl() { ovn-nbctl --db="$NB" "$@"; }

for bin in "$@"; do
  name=$bin
  # B1: a network deleted while its key fails; CPU over the next 5 s.
  start "$bin"
  nbctl lr-add probe-lr
  api -X POST -d '{"name":"tmpnet","type":"ovn","config":{"network":"uplink","ovn.router":"probe-lr","ovn.switch":"lxd-net1-ls-int","ipv4.address":"10.1.0.1/24"}}' http://x/1.0/networks >/dev/null
  nbctl lr-del probe-lr
  api -X POST -d "$(lb 192.0.2.30 10.1.0.11)" http://x/1.0/networks/tmpnet/load-balancers >/dev/null || true
  sleep 2; api -X DELETE http://x/1.0/networks/tmpnet >/dev/null; sleep 1
  c0=$(cpu); sleep 5; c1=$(cpu)
  row B1 "$name" "idle CPU after the delete: $(( (c1 - c0) * 100 / 500 ))% of a core"
  # B8: owner tag removed, then the object updated.
  api -X POST -d "$(lb 192.0.2.10 10.0.0.11)" 'http://x/1.0/networks/ovn1/load-balancers?wait=10' >/dev/null
  u=$(nbctl --bare --columns=_uuid find Load_Balancer name=ovnlb-ovn1-lb-192.0.2.10-tcp)
  nbctl remove Load_Balancer "$u" external_ids '"ovnlb:owner"'
  st=$(MAXT=20 code -X PATCH -d '{"description":"v2"}' 'http://x/1.0/networks/ovn1/load-balancers/192.0.2.10?wait=3')
  t0=$(metric ovnlb_transactions_total); sleep 5; t1=$(metric ovnlb_transactions_total)
  err=$(api http://x/1.0/networks/ovn1/load-balancers/192.0.2.10/state | python3 -c 'import json,sys; print(json.load(sys.stdin)["metadata"]["error"][:60] or "(empty)")')
  row B8 "$name" "PATCH ?wait=3 -> $st; NB transactions in 5 s: $((${t1%.*} - ${t0%.*})); /state error: $err"
  # B7: a bad ?wait on a create.
  st=$(code -X POST -d "$(lb 192.0.2.41 10.0.0.11)" 'http://x/1.0/networks/ovn1/load-balancers?wait=abc')
  row B7 "$name" "POST ?wait=abc -> $st; then GET -> $(code http://x/1.0/networks/ovn1/load-balancers/192.0.2.41)"
  # B6: a NUL byte in a network name.
  st=$(code -X POST -d '{"name":"n\u0000ul","type":"ovn","config":{"network":"uplink","ovn.router":"lxd-net1-lr","ovn.switch":"lxd-net1-ls-int"}}' http://x/1.0/networks)
  row B6 "$name" "network name with a NUL -> $st"
  # B3: a second daemon on the same state dir, with its own socket.
  setsid "$bin" --nb "$NB" --dir "$D" --socket "$D/other.sock" 2>"$D/second.log" &
  P2=$!; sleep 3
  if kill -0 "$P2" 2>/dev/null; then
    row B3 "$name" "second daemon on the same dir: still running after 3 s (two controllers)"
    kill -9 "$P2"
  else
    wait "$P2" && rc=0 || rc=$?
    row B3 "$name" "second daemon on the same dir: exit $rc: $(tail -1 "$D/second.log" | cut -c1-90)"
  fi
  # B2: 4096 backends x listen ports 1-4096.
  python3 -c 'import json; print(json.dumps({"listen_address":"192.0.2.99","backends":[{"name":"b%d"%i,"target_address":"10.0.0.11"} for i in range(4096)],"ports":[{"protocol":"tcp","listen_port":"1-4096","target_backend":["b%d"%i for i in range(4096)]}]}))' > "$T/bomb"
  if [ "${B2:-0}" = 1 ] || grep -qa max_endpoints "$bin"; then
    st=$(MAXT=30 code -X POST --data-binary @"$T/bomb" http://x/1.0/networks/ovn1/load-balancers)
    row B2 "$name" "4096 backends x 1-4096 -> $st; NB rows for it: $(nbctl --bare --columns=name find Load_Balancer name=ovnlb-ovn1-lb-192.0.2.99-tcp | wc -l)"
  else
    row B2 "$name" "skipped (this ovnlbd has no endpoint cap: it would commit a 282 MB row; B2=1 runs it)"
  fi
  stop

  # B5: SIGTERM with 100 ?wait=3600 pending and a partial request.
  start "$bin"
  nbctl lr-add gone-lr
  api -X POST -d '{"name":"nowhere","type":"ovn","config":{"network":"uplink","ovn.router":"gone-lr","ovn.switch":"lxd-net1-ls-int","ipv4.address":"10.9.0.1/24"}}' http://x/1.0/networks >/dev/null
  nbctl lr-del gone-lr
  pids=()
  for i in $(seq 1 100); do
    curl -s -o "$T/w$i" -w '%{http_code}' --max-time 60 --unix-socket "$S" -X POST -d "$(lb 192.0.2.$((100 + i)) 10.9.0.11)" 'http://x/1.0/networks/nowhere/load-balancers?wait=3600' > "$T/c$i" &
    pids+=($!)
  done
  python3 - "$S" <<'EOF' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b"GET /1.0 HTTP/1.1\r\nHost: x\r\n")
time.sleep(60)
EOF
  partial=$!
  sleep 2
  t0=$(date +%s.%N); kill -TERM "$PID"
  for _ in $(seq 150); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
  t1=$(date +%s.%N)
  if kill -0 "$PID" 2>/dev/null; then exited="still running 15 s after SIGTERM"; else exited="exited $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s after SIGTERM"; fi
  kill -9 "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=
  wait "${pids[@]}" 2>/dev/null || true; kill "$partial" 2>/dev/null || true
  n503=$( (cat "$T"/c* | grep -o 503 || true) | wc -l)
  row B5 "$name" "$exited; waiters answered 503: $n503 of 100"
  rm -f "$T"/c* "$T"/w*
  scripts/sandbox.sh down "$O" >/dev/null 2>&1

  # B4: 1,100 idle TLS connections without a certificate at nofile 1024.
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  N=$((N + 1)); O=$T/ovn$N; D=$T/d$N; S=$D/unix.socket
  scripts/sandbox.sh up "$O" >/dev/null 2>&1; mkdir -p "$D"
  prlimit --nofile=1024:1024 -- "$bin" --nb "unix:$O/nb.sock" --dir "$D" --https-listen "127.0.0.1:$port" 2>"$D/log" &
  PID=$!
  for _ in $(seq 100); do [ -S "$S" ] && break; sleep 0.1; done
  python3 - "$port" <<'EOF' &
import socket, ssl, sys, time
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
held = []
for _ in range(1100):
    try:
        s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
        held.append(ctx.wrap_socket(s))
    except Exception:
        pass
time.sleep(40)
EOF
  flood=$!
  sleep 12
  fds=$(ls "/proc/$PID/fd" | wc -l)
  t=$(curl -s -o /dev/null -w '%{http_code} in %{time_total} s' --max-time 5 --unix-socket "$S" http://x/1.0 || true)
  row B4 "$name" "1100 idle TLS, nofile 1024: ovnlbd holds $fds fds; unix GET /1.0 -> $t"
  kill "$flood" 2>/dev/null || true
  stop
done
