#!/usr/bin/env bash
# Checks the crate graph's layering (ARCHITECTURE.md): the pure core reaches no async runtime,
# HTTP stack or AWS SDK, and the Lambda functions link nothing of the command line (argument
# parsing, progress bars, plotting).
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0
# Prints the crates of a package's normal (non-dev, non-build) dependency tree, one per line.
normal_tree() {
    cargo tree -q -p "$1" -e normal --prefix none --format '{p}' "${@:2}" \
        | tail -n +2 | awk '{print $1}' | sort -u
}
check() {
    local package="$1" pattern="$2" why="$3"
    shift 3
    local found
    found="$(normal_tree "$package" "$@" | grep -E "^($pattern)$" || true)"
    if [ -n "$found" ]; then
        echo "check-layers: $package must not depend on $(echo "$found" | tr '\n' ' ')($why)" >&2
        fail=1
    fi
}
check squash-kernels 'squash-.*|tokio|hyper|aws-.*' "kernels depend on nothing of squash's"
check squash-core 'tokio|tokio-.*|hyper|hyper-.*|aws-.*|async-trait|squash-storage|squash-service|squash-client|squash-cli' "the core does no I/O"
check squash-storage 'squash-service|squash-client|squash-cli|clap|hyper' "storage knows nothing of serving"
check squash-storage 'aws-.*' "the S3 adapter is behind the s3 feature"
check squash-service 'squash-client|squash-cli|clap|indicatif|plotters|png|aws-.*|lambda_runtime' "the services are free of Lambda and the CLI"
check squash-functions 'squash-cli|clap|indicatif|plotters|png' "the functions link nothing of the CLI"
check squash-cli 'aws-.*' "the main job builds without the AWS SDK" --no-default-features
if [ "$fail" = 0 ]; then echo "check-layers: ok"; fi
exit "$fail"
