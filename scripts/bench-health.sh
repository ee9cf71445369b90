#!/usr/bin/env bash
# The health-check benchmark (issue 11): detection delay on the real data plane for
# several check settings (closed port, silent host), then /state with 10,000 checked
# backends. BENCH_HEALTH_QUICK=1 runs one setting only. Prints Markdown tables.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
[ -d /dev/shm ] && export OVNLB_TEST_TMPDIR=${OVNLB_TEST_TMPDIR:-/dev/shm}
cargo bench --bench health
