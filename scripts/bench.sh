#!/usr/bin/env bash
# The side-by-side benchmark in one command: squash against FAISS (IVF-Flat, HNSW), hnswlib,
# LanceDB (IVF-PQ) and numpy brute force, on the same data, workloads and single thread.
#
#   scripts/bench.sh [--quick] [--out DIR] [--data-dir DIR]
#
#   --quick     the committed sample (tests/data/glove-20k), at most 100 queries per workload and
#               2 settings per engine, debug build of squash (a few minutes at most; CI runs it)
#   --out       where results go (default bench-out/, git-ignored)
#   --data-dir  folder of data sets (default ../shared/data beside the checkout; quick:
#               tests/data)
#
# Steps: (1) the pinned Python venv .venv-bench, or $SQUASH_BENCH_VENV
# (scripts/bench/requirements.txt; pip runs only when the requirements changed), (2) cargo
# build of the squash CLI, (3) the peer engines -> DIR/peers.json, (4) `squash bench`, which
# measures squash and writes the tables, plots and JSON next to it, (5) where everything is.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; }

QUICK=0
OUT="bench-out"
DATA_DIR=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --out) [ $# -ge 2 ] || { usage >&2; exit 2; }; OUT="$2"; shift ;;
        --data-dir) [ $# -ge 2 ] || { usage >&2; exit 2; }; DATA_DIR="$2"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "bench.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
if [ -z "$DATA_DIR" ]; then
    if [ "$QUICK" = 1 ]; then DATA_DIR="$ROOT/tests/data"; else DATA_DIR="$ROOT/../shared/data"; fi
fi
[ -d "$DATA_DIR" ] || { echo "bench.sh: no data directory $DATA_DIR" >&2; exit 1; }
DATA_DIR="$(cd "$DATA_DIR" && pwd)"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
STARTED=$SECONDS
step() { echo "== bench.sh [$((SECONDS - STARTED))s] $*" >&2; }

# 1. The pinned venv. A stamp of the requirements file (and the interpreter) skips pip when
# nothing changed; a venv whose interpreter no longer runs is made again.
# SQUASH_BENCH_VENV puts it elsewhere (CI keeps one outside its fresh clones).
VENV="${SQUASH_BENCH_VENV:-$ROOT/.venv-bench}"
REQUIREMENTS="$ROOT/scripts/bench/requirements.txt"
PYTHON="${PYTHON:-python3}"
step "python venv $VENV"
if [ -x "$VENV/bin/python" ] && ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
    rm -rf "$VENV"
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
STAMP="$({ cat "$REQUIREMENTS"; "$VENV/bin/python" -VV; } | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$VENV/.requirements-stamp" 2>/dev/null || true)" != "$STAMP" ]; then
    step "pip install -r scripts/bench/requirements.txt"
    "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQUIREMENTS"
    echo "$STAMP" >"$VENV/.requirements-stamp"
else
    step "requirements already installed"
fi

# 2. The squash CLI, found through cargo's own idea of the target directory (CARGO_TARGET_DIR).
# The benchmark reads local folders only, so the full run's release build leaves out the AWS SDK
# (the `aws` feature), which would take most of its compile time.
if [ "$QUICK" = 1 ]; then PROFILE=debug; BUILD_FLAGS=(); else PROFILE=release; BUILD_FLAGS=(--release --no-default-features); fi
step "cargo build ${BUILD_FLAGS[*]} -p squash-cli --bin squash"
cargo build "${BUILD_FLAGS[@]}" -p squash-cli --bin squash
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps \
    | "$VENV/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
SQUASH="$TARGET_DIR/$PROFILE/squash"
[ -x "$SQUASH" ] || { echo "bench.sh: no squash binary at $SQUASH" >&2; exit 1; }

# 3. The peer engines, after the tests of their scoring (a second).
"$VENV/bin/python" -m unittest discover -s "$ROOT/scripts/bench"
PEERS_ARGS=(--data-dir "$DATA_DIR" --out "$OUT/peers.json")
if [ "$QUICK" = 1 ]; then PEERS_ARGS+=(--quick --datasets glove-20k); fi
step "peers: scripts/bench/peers.py ${PEERS_ARGS[*]}"
PEERS_STARTED=$SECONDS
"$VENV/bin/python" "$ROOT/scripts/bench/peers.py" "${PEERS_ARGS[@]}"
step "peers done in $((SECONDS - PEERS_STARTED))s"

# 4. squash's half.
BENCH_ARGS=(bench --data-dir "$DATA_DIR" --peers "$OUT/peers.json" --out "$OUT" --plot)
if [ "$QUICK" = 1 ]; then BENCH_ARGS+=(--quick); fi
step "squash ${BENCH_ARGS[*]}"
"$SQUASH" "${BENCH_ARGS[@]}"

# 5. Where the results are.
step "done in $((SECONDS - STARTED))s; results in $OUT:"
ls -l "$OUT" >&2
