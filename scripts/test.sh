#!/usr/bin/env bash
# The whole test suite: installs what the tests need, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --all-targets
cargo test --lib --bins --tests -- --test-threads="${TEST_THREADS:-2}"
cargo test --doc
