#!/usr/bin/env bash
# The synthetic scale run: for each size, generate a data set (`squash synth`), build its index,
# evaluate recall@10/QPS and measure cost per query (`squash cost`), timing every step. Results
# (stdout of each step, `/usr/bin/time -v` reports, JSON reports) go to $OUT/<size>/.
#
#   scripts/scale-run.sh [SIZE...]        sizes in vectors, default: 250000 500000 1000000
#
# Settings (environment): DIM (128), QUERIES (generated queries, 1000), EVAL_QUERIES (per
# workload, 300), COST_QUERIES (per workload, 100), COST_SLOTS (worker slots of the cost step, 8:
# enough 2048 MB containers to cache a 10M x 128 index; each invocation timed alone, as on
# Lambda, `squash cost --invocations-alone`), SEED (1), OUT (/dev/shm/squash-scale: data
# in memory keeps the disk free), SQUASH (the release squash under $CARGO_TARGET_DIR or
# target/), KEEP=1 keeps each size's data and index after its run.
set -euo pipefail
cd "$(dirname "$0")/.."
DIM=${DIM:-128}
QUERIES=${QUERIES:-1000}
EVAL_QUERIES=${EVAL_QUERIES:-300}
COST_QUERIES=${COST_QUERIES:-100}
COST_SLOTS=${COST_SLOTS:-8}
SEED=${SEED:-1}
OUT=${OUT:-/dev/shm/squash-scale}
SQUASH=${SQUASH:-${CARGO_TARGET_DIR:-target}/release/squash}
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(250000 500000 1000000)
[ -x "$SQUASH" ] || { echo "scale-run: build first: cargo build --release --no-default-features -p squash-cli --bin squash" >&2; exit 1; }
TIME=()
[ -x /usr/bin/time ] && TIME=(/usr/bin/time -v)

for N in "${SIZES[@]}"; do
    dir="$OUT/$N"
    data="$dir/data"
    index="$dir/index/synth-$N"
    mkdir -p "$dir"
    echo "== $N x $DIM ($(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg))"
    started=$(date +%s)
    "${TIME[@]}" "$SQUASH" synth --num-vectors "$N" --dim "$DIM" --num-queries "$QUERIES" \
        --seed "$SEED" --out "$data" >"$dir/synth.out" 2>"$dir/synth.time"
    synth_done=$(date +%s)
    "${TIME[@]}" "$SQUASH" build --vectors "$data/base.fvecs" --attributes "$data/base_attrs.csv" \
        --metric l2 --seed "$SEED" --out "$index" >"$dir/build.out" 2>"$dir/build.time"
    build_done=$(date +%s)
    "$SQUASH" eval --index "$index" --workloads "$data/workloads.json" --k 10 \
        --max-queries "$EVAL_QUERIES" --json >"$dir/eval.json" 2>/dev/null
    eval_done=$(date +%s)
    "$SQUASH" cost --index "$index" --workloads "$data/workloads.json" --k 10 \
        --max-queries "$COST_QUERIES" --slots "$COST_SLOTS" --invocations-alone \
        --json >"$dir/cost.json" 2>/dev/null
    cost_done=$(date +%s)
    printf '{"synth_s": %d, "build_s": %d, "eval_s": %d, "cost_s": %d, "total_s": %d}\n' \
        $((synth_done - started)) $((build_done - synth_done)) $((eval_done - build_done)) \
        $((cost_done - eval_done)) $((cost_done - started)) >"$dir/steps.json"
    cat "$dir/synth.out" "$dir/build.out" "$dir/steps.json"
    grep -E "Maximum resident|Elapsed" "$dir/build.time" || true
    [ "${KEEP:-0}" = 1 ] || rm -rf "$data" "$dir/index"
done
