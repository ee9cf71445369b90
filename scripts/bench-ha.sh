#!/usr/bin/env bash
# The HA benchmark (issue 13): API creates on SQLite and on a 3-member OVNLB cluster side
# by side, the raw OVNLB transaction floor, and takeover times after kill -9 and SIGTERM.
# N=2000 for a quick run. Prints Markdown tables.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo bench --bench ha
