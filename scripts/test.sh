#!/usr/bin/env bash
# The project's test command: formatting, lints, then every test.
# Tools that later tests need (Prometheus, Chromium) are installed by scripts/deps.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d ../shared/data ]; then
  echo "error: the reference data is expected at ../shared/data (see README)" >&2
  exit 2
fi
scripts/deps.sh
cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
# The end-to-end and fault tests spend most of their time waiting on real time (a real
# Prometheus scraping the emulator, leases expiring), not on the CPU: running five tests of
# a binary at once rather than one per core takes about a minute and a half off the suite.
RUST_TEST_THREADS="${RUST_TEST_THREADS:-5}" cargo test --locked
