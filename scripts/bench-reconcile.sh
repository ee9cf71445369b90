#!/usr/bin/env bash
# The reconciler benchmark (issue 3). N=1000 for a quick run. Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
[ -d /dev/shm ] && export OVNLB_TEST_TMPDIR=${OVNLB_TEST_TMPDIR:-/dev/shm}
cargo bench --bench reconcile
