#!/usr/bin/env bash
# scripts/sandbox.sh up DIR | down DIR | topology NB_DB
#
# A throw-away OVN control plane under DIR (NB + SB ovsdb-server, ovn-northd; unix
# sockets DIR/nb.sock, DIR/sb.sock) with an LXD-like topology, named as LXD names it:
#   lxd-net1-ls-ext  uplink switch: localnet port (physnet) + router port
#   lxd-net1-lr      router: gateway port 192.0.2.2/24 2001:db8::2/64 (chassis-1),
#                    internal port 10.0.0.1/24 fd00::1/64
#   lxd-net1-ls-int  internal switch: router port + VIFs c1 (10.0.0.11, fd00::11),
#                    c2 (10.0.0.12, fd00::12), c3 (10.0.0.13, fd00::13)
# Daemons run detached with pidfiles in DIR; `down` kills exactly those. `topology NB_DB`
# only creates the topology in a running NB (the tests start their own daemons).
set -euo pipefail
cmd=${1:?usage: $0 up|down DIR | topology NB_DB}
ARG=${2:?usage: $0 up|down DIR | topology NB_DB}

topology() {
  nbctl() { ovn-nbctl --db="$1" "${@:2}"; }
  nbctl "$1" ls-add lxd-net1-ls-ext \
    -- lsp-add lxd-net1-ls-ext lxd-net1-ls-ext-lsp-provider \
    -- lsp-set-addresses lxd-net1-ls-ext-lsp-provider unknown \
    -- lsp-set-type lxd-net1-ls-ext-lsp-provider localnet \
    -- lsp-set-options lxd-net1-ls-ext-lsp-provider network_name=physnet \
    -- lr-add lxd-net1-lr \
    -- lrp-add lxd-net1-lr lxd-net1-lr-lrp-ext 00:00:00:00:ff:01 192.0.2.2/24 2001:db8::2/64 \
    -- lrp-set-gateway-chassis lxd-net1-lr-lrp-ext chassis-1 10 \
    -- lsp-add lxd-net1-ls-ext lxd-net1-ls-ext-lsp-router \
    -- lsp-set-type lxd-net1-ls-ext-lsp-router router \
    -- lsp-set-addresses lxd-net1-ls-ext-lsp-router router \
    -- lsp-set-options lxd-net1-ls-ext-lsp-router router-port=lxd-net1-lr-lrp-ext \
    -- lrp-add lxd-net1-lr lxd-net1-lr-lrp-int 00:00:00:00:ff:02 10.0.0.1/24 fd00::1/64 \
    -- ls-add lxd-net1-ls-int \
    -- lsp-add lxd-net1-ls-int lxd-net1-ls-int-lsp-router \
    -- lsp-set-type lxd-net1-ls-int-lsp-router router \
    -- lsp-set-addresses lxd-net1-ls-int-lsp-router router \
    -- lsp-set-options lxd-net1-ls-int-lsp-router router-port=lxd-net1-lr-lrp-int
  for i in 1 2 3; do
    nbctl "$1" lsp-add lxd-net1-ls-int c$i -- lsp-set-addresses c$i "00:00:00:00:00:1$i 10.0.0.1$i fd00::1$i"
  done
}

if [ "$cmd" = topology ]; then
  topology "$ARG"
  exit 0
fi
DIR=$ARG
mkdir -p "$DIR"; DIR=$(cd "$DIR" && pwd -P)

if [ "$cmd" = down ]; then
  for p in "$DIR"/*.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true; done
  exit 0
fi

for db in nb sb; do
  rm -f "$DIR/$db.db"
  ovsdb-tool create "$DIR/$db.db" "/usr/share/ovn/ovn-$db.ovsschema"
  ovsdb-server "$DIR/$db.db" --remote="punix:$DIR/$db.sock" --pidfile="$DIR/$db.pid" \
    --log-file="$DIR/$db.log" --unixctl="$DIR/$db.ctl" --detach --no-chdir
done
ovn-northd --ovnnb-db="unix:$DIR/nb.sock" --ovnsb-db="unix:$DIR/sb.sock" --pidfile="$DIR/northd.pid" \
  --log-file="$DIR/northd.log" --unixctl="$DIR/northd.ctl" --detach --no-chdir

topology "unix:$DIR/nb.sock"
ovn-nbctl --db="unix:$DIR/nb.sock" --wait=sb sync
echo "sandbox up in $DIR: NB unix:$DIR/nb.sock, SB unix:$DIR/sb.sock"
