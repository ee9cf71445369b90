#!/usr/bin/env bash
# scripts/bench-memory.sh [OVNLBD...]: the memory of a `recursion=1` list of big objects
# (reliability-findings.md, §1): 40 load balancers with 1.9 MB descriptions, then one
# `GET …/load-balancers?recursion=1`, then 4 at once, then all deleted. Prints VmRSS and
# VmHWM (peak) of each ovnlbd given (default: the release build), side by side.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -eq 0 ]; then
  cargo build --release --quiet --bin ovnlbd
  set -- target/release/ovnlbd
fi
T=$(mktemp -d /tmp/ovnlb-mem.XXXXXX)
trap 'scripts/sandbox.sh down "$T/ovn" >/dev/null 2>&1 || true; [ -n "${PID:-}" ] && kill "$PID" 2>/dev/null; rm -rf "$T"' EXIT
scripts/sandbox.sh up "$T/ovn" >/dev/null
kb() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$PID/status"; }
api() { curl -s --unix-socket "$T/d/unix.socket" "$@"; }
python3 -c 'import json; print(json.dumps({"listen_address": "LISTEN", "description": "d" * 1900000,
  "backends": [{"name": "b1", "target_address": "10.0.0.11", "target_port": "8080"}],
  "ports": [{"protocol": "tcp", "listen_port": "80", "target_backend": ["b1"]}]}))' > "$T/body"
printf '%-40s %10s %10s %10s %10s %10s\n' ovnlbd "idle MB" "40 LBs" "1 list HWM" "4 lists HWM" "deleted"
for bin in "$@"; do
  rm -rf "$T/d"; mkdir -p "$T/d"
  "$bin" --nb "unix:$T/ovn/nb.sock" --dir "$T/d" 2>"$T/log" &
  PID=$!
  for _ in $(seq 100); do [ -S "$T/d/unix.socket" ] && break; sleep 0.1; done
  api -X POST -d '{"name":"uplink","type":"physical","config":{"ipv4.routes":"192.0.2.0/24"}}' http://x/1.0/networks >/dev/null
  api -X POST -d '{"name":"ovn1","type":"ovn","config":{"network":"uplink","ovn.router":"lxd-net1-lr","ovn.switch":"lxd-net1-ls-int"}}' http://x/1.0/networks >/dev/null
  idle=$(kb VmRSS)
  for i in $(seq 1 40); do
    sed "s/LISTEN/192.0.2.$i/" "$T/body" | api -X POST --data-binary @- http://x/1.0/networks/ovn1/load-balancers >/dev/null
  done
  sleep 1; loaded=$(kb VmRSS)
  api 'http://x/1.0/networks/ovn1/load-balancers?recursion=1' -o /dev/null
  one=$(kb VmHWM)
  lists=()
  for _ in 1 2 3 4; do api 'http://x/1.0/networks/ovn1/load-balancers?recursion=1' -o /dev/null & lists+=($!); done
  wait "${lists[@]}"
  four=$(kb VmHWM)
  for i in $(seq 1 40); do api -X DELETE "http://x/1.0/networks/ovn1/load-balancers/192.0.2.$i" >/dev/null; done
  sleep 2; after=$(kb VmRSS)
  printf '%-40s %10d %10d %10d %10d %10d\n' "$bin" $((idle/1024)) $((loaded/1024)) $((one/1024)) $((four/1024)) $((after/1024))
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
done
