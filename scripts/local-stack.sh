#!/usr/bin/env bash
# The whole serverless stack on this machine, from real parts:
#   SeaweedFS `weed mini` as S3 (scripts/s3-local.sh), the coordinator and worker functions under
#   `cargo lambda watch` (the Lambda Invoke API and function URLs on 127.0.0.1:9000), and the
#   committed GloVe sample index built into s3://squash-test/indexes/glove-20k.
#
#   scripts/local-stack.sh up     install what is missing, start everything, upload the sample
#   scripts/local-stack.sh env    print `export ...` lines for clients (eval "$(scripts/local-stack.sh env)")
#   scripts/local-stack.sh down   stop everything `up` started
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
PORT=9000
LAMBDA_ENDPOINT="http://127.0.0.1:$PORT"
API="$LAMBDA_ENDPOINT/lambda-url/coordinator"
INDEX_ROOT="s3://squash-test/indexes"
SAMPLE="$ROOT/tests/data/glove-20k"
# Four worker slots (one function each) and a branching of 2: queries over all four slots run a
# tree two levels deep.
WORKERS="worker,worker-1,worker-2,worker-3"
BRANCHING=2
TIMEOUT_MS=5000

print_env() {
    "$ROOT/scripts/s3-local.sh" env
    cat <<EOT
export AWS_ENDPOINT_URL_LAMBDA=$LAMBDA_ENDPOINT
export SQUASH_ROOT=$INDEX_ROOT
export SQUASH_API=$API
export SQUASH_FAULT_FILE=$FAULT_FILE
export SQUASH_STACK_WORKERS=$WORKERS
EOT
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
    echo "local-stack: building the functions and the CLI (debug)" >&2
    cargo build -q -p squash-functions --bins -p shared --bin squash
    local squash
    squash="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/squash"
    echo "local-stack: building the sample index into $INDEX_ROOT/glove-20k" >&2
    "$squash" build --vectors "$SAMPLE/base.fvecs" --attributes "$SAMPLE/base_attrs.csv" \
        --metric cosine --partitions 4 --out "$INDEX_ROOT/glove-20k" >"$STATE_DIR/build.log" 2>&1 \
        || { tail -20 "$STATE_DIR/build.log" >&2; exit 1; }
    : >"$FAULT_FILE"
    # setsid: watch and the function processes it spawns form one process group, stopped together.
    PATH="$VENV/bin:$PATH" SQUASH_WORKER_FUNCTIONS="$WORKERS" SQUASH_BRANCHING="$BRANCHING" \
        SQUASH_TIMEOUT_MS="$TIMEOUT_MS" RUST_LOG="${RUST_LOG:-info}" \
        setsid cargo lambda watch -A 127.0.0.1 -P "$PORT" --ignore-changes \
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
    # Start every worker process now (watch starts them on first use, each through `cargo run`),
    # so the first real query does not pay for it: one query over all four slots, until whole.
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
    "$ROOT/scripts/s3-local.sh" stop
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    env) print_env ;;
    *) echo "usage: $0 up|down|env" >&2; exit 2 ;;
esac
