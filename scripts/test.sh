#!/usr/bin/env bash
# The test command: formatting, lints, purity of the compute modules, then every test.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
scripts/check-pure.sh
cargo test --workspace
