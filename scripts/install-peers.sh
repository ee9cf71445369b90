#!/usr/bin/env bash
# Install the API benchmark's peers (decisions.md §10): Debian's lxd 5.0.2 daemon (network
# forwards) and Incus 6.0.4 from bookworm-backports (load balancers, and the incus client).
# Idempotent. Not needed by the tests or the demo.
set -euo pipefail
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
uri=${uri:-http://deb.debian.org/debian}
list=/etc/apt/sources.list.d/bookworm-backports.sources
if [ ! -f "$list" ]; then
  printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$uri" |
    $SUDO tee "$list" >/dev/null
  $SUDO apt-get update -qq
fi
need=()
dpkg-query -W -f='${Status}' lxd 2>/dev/null | grep -q "install ok installed" || need+=(lxd)
if [ ${#need[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
for p in incus incus-client; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -t bookworm-backports "$p" >/dev/null
done
