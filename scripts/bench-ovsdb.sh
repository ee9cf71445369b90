#!/usr/bin/env bash
# The OVSDB client benchmark (issue 2), side by side with ovn-nbctl, python ovsdbapp and
# the python-ovs IDL in one run. N=1000 for a quick run. Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo bench --bench ovsdb
