#!/usr/bin/env bash
# The whole serverless stack on this machine, from real parts:
#   SeaweedFS `weed mini` as S3 (scripts/s3-local.sh), the coordinator and worker functions under
#   `cargo lambda watch` (the Lambda Invoke API and function URLs on 127.0.0.1:9000), and the
#   committed GloVe sample index built into s3://squash-test/indexes/glove-20k. The functions
#   reach S3 through scripts/s3-fault-proxy.py (127.0.0.1:8334), which passes everything through
#   unless its rules file ($SQUASH_S3_FAULT_FILE) asks for throttling, 500s, stalls or cut bodies;
#   clients and tests talk to SeaweedFS directly.
#
#   scripts/local-stack.sh up     install what is missing, start everything, upload the sample
#   scripts/local-stack.sh env    print `export ...` lines for clients (eval "$(scripts/local-stack.sh env)")
#   scripts/local-stack.sh down   stop everything `up` started
#
#   SQUASH_STACK_RELEASE=1 runs release builds of the functions (debug by default, as the tests
#   use); SQUASH_STACK_TIMEOUT_MS sets the request budget (5000 by default; deployments 10000).
#
# Once up:
#   curl -s http://127.0.0.1:9000/lambda-url/coordinator/v1/indexes/glove-20k
#   curl -s -X POST http://127.0.0.1:9000/lambda-url/coordinator/v1/indexes/glove-20k/query \
#        -H 'content-type: application/json' -d @tests/data/glove-20k/example-query.json
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv-tools"
CARGO_LAMBDA_VERSION="1.9.2"
STATE_DIR="${SQUASH_STACK_STATE_DIR:-${TMPDIR:-/tmp}/squash-stack-$(id -u)}"
PID_FILE="$STATE_DIR/watch.pid"
LOG_FILE="$STATE_DIR/watch.log"
FAULT_FILE="$STATE_DIR/faults"
S3_FAULT_FILE="$STATE_DIR/s3-faults"
S3_FAULT_LOG="$STATE_DIR/s3-faults.log"
PROXY_PID_FILE="$STATE_DIR/s3-proxy.pid"
PROXY_LOG_FILE="$STATE_DIR/s3-proxy.log"
PROXY_ADDRESS="127.0.0.1:8334"
S3_ADDRESS="127.0.0.1:8333"
PORT=9000
LAMBDA_ENDPOINT="http://127.0.0.1:$PORT"
API="$LAMBDA_ENDPOINT/lambda-url/coordinator"
INDEX_ROOT="s3://squash-test/indexes"
SAMPLE="$ROOT/tests/data/glove-20k"
# Four worker slots (one function each) and a branching of 2: queries over all four slots run a
# tree two levels deep.
WORKERS="worker,worker-1,worker-2,worker-3"
BRANCHING=2
# A large batch's extra parts go to four more names: watch runs one invocation at a time per
# name (on AWS the parts go to the slots' own functions, each in a container of its own). At
# most 8 invocations per request: the four slots and one part per split name.
SPLIT_FUNCTIONS="worker-split-1,worker-split-2,worker-split-3,worker-split-4"
MAX_INVOCATIONS=8
TIMEOUT_MS="${SQUASH_STACK_TIMEOUT_MS:-5000}"
PROFILE=debug
PROFILE_FLAGS=()
if [ "${SQUASH_STACK_RELEASE:-0}" = 1 ]; then
    PROFILE=release
    PROFILE_FLAGS=(--release)
fi
# Each function gets 256 MiB like a small Lambda (cargo lambda watch would say 4096), of which
# the worker's partition cache may hold 64 MiB; tests check the processes' peak RSS against the
# function memory.
FUNCTION_MEMORY_MIB=256
CACHE_BYTES=$((64 << 20))
# S3 is on loopback: a read with no byte for 500 ms has stalled (the default, 2 s, is for S3
# itself); cut off and retried, it still fits a leaf worker's share of the 5 s request budget.
S3_CONNECT_TIMEOUT_MS=500
S3_READ_TIMEOUT_MS=500

print_env() {
    "$ROOT/scripts/s3-local.sh" env
    cat <<EOT
export AWS_ENDPOINT_URL_LAMBDA=$LAMBDA_ENDPOINT
export SQUASH_ROOT=$INDEX_ROOT
export SQUASH_API=$API
export SQUASH_FAULT_FILE=$FAULT_FILE
export SQUASH_STACK_WORKERS=$WORKERS
export SQUASH_STACK_SPLIT_FUNCTIONS=$SPLIT_FUNCTIONS
export SQUASH_S3_FAULT_FILE=$S3_FAULT_FILE
export SQUASH_S3_FAULT_LOG=$S3_FAULT_LOG
export SQUASH_STACK_WATCH_PID_FILE=$PID_FILE
export SQUASH_STACK_FUNCTION_MEMORY_MIB=$FUNCTION_MEMORY_MIB
export SQUASH_STACK_CACHE_BYTES=$CACHE_BYTES
export SQUASH_STACK_TIMEOUT_MS=$TIMEOUT_MS
EOT
}

start_proxy() {
    if [ -f "$PROXY_PID_FILE" ] && kill -0 "$(cat "$PROXY_PID_FILE")" 2>/dev/null; then
        return 0
    fi
    : >"$S3_FAULT_FILE"
    : >"$S3_FAULT_LOG"
    setsid python3 "$ROOT/scripts/s3-fault-proxy.py" --listen "$PROXY_ADDRESS" \
        --upstream "$S3_ADDRESS" --rules "$S3_FAULT_FILE" --log "$S3_FAULT_LOG" \
        >"$PROXY_LOG_FILE" 2>&1 </dev/null &
    echo $! >"$PROXY_PID_FILE"
    for _ in $(seq 100); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$PROXY_ADDRESS/" || true)" != "000" ] && return 0
        sleep 0.1
    done
    echo "local-stack: the S3 fault proxy did not start; see $PROXY_LOG_FILE" >&2
    exit 1
}

stop_proxy() {
    if [ -f "$PROXY_PID_FILE" ]; then
        local pid
        pid="$(cat "$PROXY_PID_FILE")"
        kill "$pid" 2>/dev/null && echo "local-stack: stopped the S3 fault proxy (pid $pid)" >&2
        rm -f "$PROXY_PID_FILE"
    fi
}

running_pid() {
    [ -f "$PID_FILE" ] || return 1
    local pid
    pid="$(cat "$PID_FILE")"
    kill -0 "$pid" 2>/dev/null && echo "$pid"
}

install_cargo_lambda() {
    [ -x "$VENV/bin/cargo-lambda" ] && return 0
    echo "local-stack: installing cargo-lambda==$CARGO_LAMBDA_VERSION into $VENV" >&2
    [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "cargo-lambda==$CARGO_LAMBDA_VERSION"
}

up() {
    mkdir -p "$STATE_DIR"
    if running_pid >/dev/null; then
        echo "local-stack: already up (watch pid $(cat "$PID_FILE")); API at $API" >&2
        print_env
        return 0
    fi
    install_cargo_lambda
    "$ROOT/scripts/s3-local.sh" start >/dev/null
    eval "$(print_env)"
    # Build the functions and the CLI first: watch then only starts the binaries.
    echo "local-stack: building the functions and the CLI ($PROFILE)" >&2
    cargo build -q "${PROFILE_FLAGS[@]}" -p squash-functions --bins -p squash-cli --bin squash
    local squash
    squash="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/$PROFILE/squash"
    echo "local-stack: building the sample index into $INDEX_ROOT/glove-20k" >&2
    "$squash" build --vectors "$SAMPLE/base.fvecs" --attributes "$SAMPLE/base_attrs.csv" \
        --metric cosine --partitions 4 --out "$INDEX_ROOT/glove-20k" >"$STATE_DIR/build.log" 2>&1 \
        || { tail -20 "$STATE_DIR/build.log" >&2; exit 1; }
    : >"$FAULT_FILE"
    start_proxy
    # setsid: watch and the function processes it spawns form one process group, stopped together.
    # The memory size goes through --env-var: watch sets its own value before those.
    PATH="$VENV/bin:$PATH" SQUASH_WORKER_FUNCTIONS="$WORKERS" SQUASH_BRANCHING="$BRANCHING" \
        SQUASH_SPLIT_FUNCTIONS="$SPLIT_FUNCTIONS" SQUASH_MAX_INVOCATIONS="$MAX_INVOCATIONS" \
        SQUASH_TIMEOUT_MS="$TIMEOUT_MS" RUST_LOG="${RUST_LOG:-info}" \
        AWS_ENDPOINT_URL_S3="http://$PROXY_ADDRESS" SQUASH_CACHE_BYTES="$CACHE_BYTES" \
        SQUASH_S3_CONNECT_TIMEOUT_MS="$S3_CONNECT_TIMEOUT_MS" \
        SQUASH_S3_READ_TIMEOUT_MS="$S3_READ_TIMEOUT_MS" \
        setsid cargo lambda watch -A 127.0.0.1 -P "$PORT" --ignore-changes "${PROFILE_FLAGS[@]}" \
        --env-var "AWS_LAMBDA_FUNCTION_MEMORY_SIZE=$FUNCTION_MEMORY_MIB" \
        >"$LOG_FILE" 2>&1 </dev/null &
    echo $! >"$PID_FILE"
    local started=$SECONDS
    until [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 30 "$API/health" || true)" = "200" ]; do
        if ! running_pid >/dev/null; then
            echo "local-stack: cargo lambda watch exited; last log lines:" >&2
            tail -30 "$LOG_FILE" >&2
            rm -f "$PID_FILE"
            exit 1
        fi
        if (( SECONDS - started > 300 )); then
            echo "local-stack: the coordinator did not answer within 300 s; see $LOG_FILE" >&2
            down
            exit 1
        fi
        sleep 0.5
    done
    # Start every function's process now: watch starts them on first use, each through `cargo
    # run`, which would wait for the build lock a running `cargo test` holds. The worker slots
    # through one query over all four, until whole; the split functions by an empty worker
    # request each, straight through the Invoke API.
    local warm_query
    warm_query="{\"vector\": [$(python3 -c 'print(", ".join(["0.1"] * 50))')], \"k\": 1, \"options\": {\"min_partitions\": 4}}"
    until curl -s --max-time 60 -X POST "$API/v1/indexes/glove-20k/query" \
            -H 'content-type: application/json' -d "$warm_query" | grep -q '"partial":false'; do
        if (( SECONDS - started > 300 )); then
            echo "local-stack: the workers did not all answer within 300 s; see $LOG_FILE" >&2
            down
            exit 1
        fi
        sleep 0.5
    done
    local split_function
    for split_function in ${SPLIT_FUNCTIONS//,/ }; do
        until curl -s --max-time 60 -X POST \
                "$LAMBDA_ENDPOINT/2015-03-31/functions/$split_function/invocations" \
                -d '{"protocol_version": 1, "request_id": "warm-up", "index": "glove-20k", "index_version": "warm-up", "queries": [], "tasks": []}' \
                | grep -q '"protocol_version":1'; do
            if (( SECONDS - started > 300 )); then
                echo "local-stack: $split_function did not answer within 300 s; see $LOG_FILE" >&2
                down
                exit 1
            fi
            sleep 0.5
        done
    done
    echo "local-stack: up. API $API (watch pid $(cat "$PID_FILE"), log $LOG_FILE)" >&2
    echo "local-stack: try: curl -s $API/v1/indexes/glove-20k" >&2
    print_env
}

down() {
    local pid
    if pid="$(running_pid)"; then
        kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
        for _ in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 -- "-$pid" 2>/dev/null || true
        echo "local-stack: stopped cargo lambda watch (pid $pid)" >&2
    fi
    rm -f "$PID_FILE"
    stop_proxy
    "$ROOT/scripts/s3-local.sh" stop
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    env) print_env ;;
    *) echo "usage: $0 up|down|env" >&2; exit 2 ;;
esac
