#!/usr/bin/env bash
# The test command: formatting, lints, purity of the compute modules, every test (the kernels'
# also on aarch64 under qemu), then the tests that need real parts: the S3 adapter against a local S3 server, and the serverless
# path (curl -> cargo lambda watch -> coordinator -> worker tree -> S3) against the local stack
# (scripts/local-stack.sh, stopped again on exit): faults injected through it and a bounded
# load test, and the Python client offline and against that stack. Between the two, short fuzz
# runs of everything that parses bytes.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
scripts/check-layers.sh
scripts/check-infra.sh
cargo test --workspace
# The kernel proptests again on aarch64 under qemu: NEON against the scalar twins.
scripts/test-aarch64.sh
# Short fuzz runs of the decoders, the filter parser, the HTTP routes and the vector readers
# (libFuzzer; the long runs are in RELIABILITY.md).
scripts/fuzz.sh --seconds "${SQUASH_FUZZ_SECONDS:-45}"
trap 'scripts/local-stack.sh down' EXIT
scripts/local-stack.sh up >/dev/null
(
    eval "$(scripts/local-stack.sh env)"
    # --workspace keeps the dependency features of the first `cargo test`, so nothing rebuilds.
    SQUASH_TEST_S3=1 cargo test --workspace --test s3_store
    SQUASH_TEST_STACK=1 cargo test --workspace --test local_stack -- --test-threads=1 \
        --nocapture --skip worker_process_killed_mid_query --skip failing_or_slow_workers
    SQUASH_TEST_STACK=1 cargo test --workspace --test rust_client
    # Faults injected on purpose (S3 through the fault proxy, objects damaged at rest, a slow
    # worker, killed builds), then a bounded load test with the functions' memory.
    SQUASH_TEST_STACK=1 cargo test --workspace --test faults -- --test-threads=1 --nocapture
    SQUASH_TEST_STACK=1 cargo test --workspace --test load -- --nocapture
    # Heavy requests within every documented limit (huge answers, exact batches past their
    # budget, a cheap query behind one, require_complete against the deadline, big integers),
    # with the functions' memory watched during each and for 30 s after.
    SQUASH_TEST_STACK=1 cargo test --workspace --test heavy_requests -- --test-threads=1 \
        --nocapture
    # Writes through the stack: read-your-writes, 8 concurrent writers, two compactions at
    # once in SeaweedFS, writers and compactions killed with SIGKILL.
    SQUASH_TEST_STACK=1 cargo test --workspace --test writes -- --test-threads=1 --nocapture
    scripts/test-python-client.sh
    # Near the end: a worker stalls for 20 s on purpose, and the emulator then rejects its late
    # answers; once so far it also answered the next batch query with a bare 500 (its own, not
    # squash's error body), so the tests comparing answers run before it.
    SQUASH_TEST_STACK=1 cargo test --workspace --test local_stack -- --exact \
        failing_or_slow_workers_are_retried_then_named_missing
    # Last: it kills a worker process, which the emulator does not restart.
    SQUASH_TEST_STACK=1 cargo test --workspace --test local_stack -- --exact \
        worker_process_killed_mid_query_is_named_missing
)
