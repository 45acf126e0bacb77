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
cargo test --locked
