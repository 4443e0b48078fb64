#!/usr/bin/env bash
# Fuzzes the decoders of stored objects, the filter parser, the HTTP routes and the vector
# file parsers with libFuzzer (cargo-fuzz), each target for N seconds over its committed corpus
# (fuzz/corpus/<target>). Fails (exit 1) if any target crashes, leaving the crashing input under
# fuzz/artifacts/<target>/ (its path is printed).
#
#   scripts/fuzz.sh [--seconds N] [target...]   default: 60 s per target, every target
#
# Runs on the pinned stable toolchain: RUSTC_BOOTSTRAP=1 lets it take the -Z flags cargo-fuzz
# passes (sanitizer, coverage instrumentation). Installs cargo-fuzz (pinned) into
# $CARGO_FUZZ_ROOT (default ~/.cargo) when missing. Builds into $CARGO_TARGET_DIR/fuzz when
# CARGO_TARGET_DIR is set, else fuzz/target. New inputs found are added to a scratch corpus,
# not to the committed one; see fuzz/README.md to minimize and commit them.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
# Caps per target run: any single allocation over MALLOC_LIMIT_MB or a resident size over
# RSS_LIMIT_MB is reported as a crash (an allocation driven by an unchecked length). The
# largest seed decodes with a few MB; 512 MB leaves room for the zstd bound (32,768 x a block).
RSS_LIMIT_MB=2048
MALLOC_LIMIT_MB=512
# Inputs up to 256 KiB: the largest seed objects (a partition of about 250 vectors) fit.
MAX_LEN=262144
# One input taking longer than this is reported as a hang.
TIMEOUT_S=20

seconds=60
targets=()
while (($#)); do
    case "$1" in
        --seconds) seconds="$2"; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        -*) echo "unknown option $1" >&2; exit 2 ;;
        *) targets+=("$1"); shift ;;
    esac
done

export RUSTC_BOOTSTRAP=1
fuzz_root="${CARGO_FUZZ_ROOT:-${CARGO_HOME:-$HOME/.cargo}}"
export PATH="$fuzz_root/bin:$PATH"
if [[ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
    echo "installing cargo-fuzz $CARGO_FUZZ_VERSION into $fuzz_root" >&2
    cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION" --root "$fuzz_root"
fi

build_args=(--sanitizer "${FUZZ_SANITIZER:-address}")
if [[ -n "${CARGO_TARGET_DIR:-}" ]]; then
    build_args+=(--target-dir "$CARGO_TARGET_DIR/fuzz")
fi
if ((${#targets[@]} == 0)); then
    mapfile -t targets < <(cargo fuzz list)
fi

start=$(date +%s)
cargo fuzz build "${build_args[@]}"
echo "built the fuzz targets in $(($(date +%s) - start)) s" >&2

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
failed=()
for target in "${targets[@]}"; do
    corpus="fuzz/corpus/$target"
    log="$scratch/$target.log"
    mkdir -p "$corpus" "$scratch/$target"
    dict_args=()
    if [[ -f "fuzz/dict/$target.dict" ]]; then
        dict_args=("-dict=fuzz/dict/$target.dict")
    fi
    echo "=== $target: ${seconds} s over $(find "$corpus" -type f | wc -l) corpus inputs" >&2
    status=0
    # The scratch corpus comes first: libFuzzer writes the new inputs it finds there.
    cargo fuzz run "${build_args[@]}" "$target" "$scratch/$target" "$corpus" -- \
        -max_total_time="$seconds" -rss_limit_mb="$RSS_LIMIT_MB" \
        -malloc_limit_mb="$MALLOC_LIMIT_MB" -max_len="$MAX_LEN" -timeout="$TIMEOUT_S" \
        -print_final_stats=1 "${dict_args[@]}" >"$log" 2>&1 || status=$?
    grep -E '^#[0-9]+ +(INITED|DONE)|^stat::(number_of_executed_units|peak_rss_mb)' "$log" >&2 || true
    if ((status != 0)); then
        echo "!!! $target failed (exit $status); the crashing input is named below" >&2
        tail -n 80 "$log" >&2
        failed+=("$target")
    fi
done
echo "fuzzed ${#targets[@]} targets in $(($(date +%s) - start)) s (build included)" >&2
if ((${#failed[@]})); then
    echo "crashes in: ${failed[*]} (inputs under fuzz/artifacts/)" >&2
    exit 1
fi
