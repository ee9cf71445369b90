#!/usr/bin/env bash
# The API benchmark (issue 4): sustained creates through ovnlbd until 10,000 exist, then
# (BENCH_PEERS=1, the default here; needs root) the real Incus and LXD side by side.
# N=2000 for a quick run; BENCH_PEERS= to leave the peers out. Prints Markdown tables.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export BENCH_PEERS=${BENCH_PEERS-1}
[ -n "$BENCH_PEERS" ] && scripts/install-peers.sh
# NB on tmpfs (its speed is not ours); ovnlbd's state stays on disk (STATE_DIR=/tmp).
[ -d /dev/shm ] && export OVNLB_TEST_TMPDIR=${OVNLB_TEST_TMPDIR:-/dev/shm}
[ -n "$BENCH_PEERS" ] || unset BENCH_PEERS
cargo bench --bench api
