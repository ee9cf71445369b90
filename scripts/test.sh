#!/usr/bin/env bash
# Install everything, then run the whole suite: format, lints, every test against real
# ovsdb-server / ovn-northd started by the tests themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo test 2>&1
