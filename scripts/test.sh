#!/usr/bin/env bash
# The test command: formatting, lints, purity of the compute modules, every test, then the S3
# adapter against a local S3 server (SeaweedFS `weed mini`, see scripts/s3-local.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
scripts/check-pure.sh
cargo test --workspace
trap 'scripts/s3-local.sh stop' EXIT
scripts/s3-local.sh start >/dev/null
(
    eval "$(scripts/s3-local.sh env)"
    SQUASH_TEST_S3=1 cargo test -p shared --test s3_store
)
