#!/usr/bin/env bash
# Install what ovnlb's build, tests, demo and benchmarks need (Debian). Idempotent: does
# nothing when everything is already there.
#   OVS/OVN: ovsdb-server/tool/client, ovn-northd, ovn-nbctl, ovn-trace, ovn-controller,
#            ovs-vswitchd (data plane), the OVN NB schema
#   tests:   openssl (test certificates), setpriv (util-linux), iproute2 and ethtool (network
#            namespaces of the data-plane test), curl
#   peers:   lxd-client (lxc compatibility), incus-client from bookworm-backports (incus
#            compatibility, decisions.md §10), python3-openvswitch, python3-ovsdbapp
set -euo pipefail
PKGS=(ovn-central ovn-host openvswitch-switch openvswitch-common ethtool iproute2 openssl curl
      util-linux lxd-client python3-openvswitch python3-ovsdbapp)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  echo "installing: ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# The incus client comes from bookworm-backports (6.0.4, with the load-balancer verbs).
if ! dpkg-query -W -f='${Status}' incus-client 2>/dev/null | grep -q "install ok installed"; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  list=/etc/apt/sources.list.d/bookworm-backports.sources
  if [ ! -f "$list" ]; then
    uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "${uri:-http://deb.debian.org/debian}" | $SUDO tee "$list" >/dev/null
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -t bookworm-backports incus-client >/dev/null
fi
command -v cargo >/dev/null || { echo "cargo (Rust toolchain) is required" >&2; exit 1; }
