#!/usr/bin/env bash
# The kernels on aarch64: cross-compiles squash-kernels' tests for aarch64-unknown-linux-gnu and
# runs them under qemu-aarch64, so the NEON paths are held to their scalar twins by the same
# proptests as AVX2. Part of scripts/test.sh. Installs Debian's qemu-user and aarch64 cross
# linker when they are missing (as root, with apt-get). Speed on arm64 is not measured here:
# qemu emulates, so only correctness is checked.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v qemu-aarch64 >/dev/null 2>&1 || missing+=(qemu-user)
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || missing+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "test-aarch64: installing ${missing[*]}" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "test-aarch64: needs ${missing[*]} (apt-get install ${missing[*]})" >&2
        exit 1
    fi
fi
if ! rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu \
    && ! rustup target add aarch64-unknown-linux-gnu >/dev/null 2>&1; then
    echo "test-aarch64: the aarch64-unknown-linux-gnu target cannot be installed here (rustup target add aarch64-unknown-linux-gnu)" >&2
    exit 1
fi
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
cargo test -p squash-kernels --target aarch64-unknown-linux-gnu
