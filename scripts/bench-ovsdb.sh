#!/usr/bin/env bash
# The OVSDB client benchmark (issue 2), side by side with ovn-nbctl, python ovsdbapp and
# the python-ovs IDL in one run. N=1000 for a quick run. Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
# Servers on tmpfs: the comparison is about CPU work, not the VM's disk.
[ -d /dev/shm ] && export OVNLB_TEST_TMPDIR=${OVNLB_TEST_TMPDIR:-/dev/shm}
cargo bench --bench ovsdb
