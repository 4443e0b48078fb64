#!/usr/bin/env bash
# Fails if a pure module (compute on bytes) reaches for I/O or async.
set -euo pipefail
cd "$(dirname "$0")/../shared/src"
PURE="attributes.rs bench/mod.rs bench/plot.rs codec container cost.rs eval.rs filter index kernels linalg metric.rs protocol.rs search synth/mod.rs synth/truth.rs"
for path in $PURE; do [ -e "$path" ] || { echo "check-pure: $path does not exist" >&2; exit 1; }; done
if grep -rnE '\b(tokio|aws_[a-z_]+|object_store|std::fs|async fn|\.await)\b' $PURE | grep -v '^\S*:[0-9]*:\s*//' ; then
    echo "check-pure: the modules above must stay free of I/O and async" >&2
    exit 1
fi
echo "check-pure: ok"
