#!/usr/bin/env bash
# Builds the deployable Lambda packages with cargo-lambda (release, zig as the linker):
#   target/lambda/coordinator/bootstrap.zip, target/lambda/worker/bootstrap.zip and
#   target/lambda/compactor/bootstrap.zip
# (under CARGO_TARGET_DIR's parent layout: cargo-lambda writes to <target dir>/lambda/).
#
#   scripts/package.sh [--arch arm64|x86_64|auto]
#
# arm64 (Graviton, the SAM template's default) needs the aarch64-unknown-linux-gnu Rust target;
# `auto` (the default) uses arm64 when that target is installed or can be installed, and x86_64
# otherwise, saying so. Each zip is checked: one `bootstrap` ELF for the requested machine.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv-tools"
CARGO_LAMBDA_VERSION="1.9.2"
ARCH="auto"
while [ $# -gt 0 ]; do
    case "$1" in
        --arch) ARCH="${2:-}"; shift 2 ;;
        -h | --help) sed -n 2,11p "$0"; exit 0 ;;
        *) echo "package: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
case "$ARCH" in arm64 | x86_64 | auto) ;; *) echo "package: --arch must be arm64, x86_64 or auto, got '$ARCH'" >&2; exit 2 ;; esac

if [ ! -x "$VENV/bin/cargo-lambda" ]; then
    echo "package: installing cargo-lambda==$CARGO_LAMBDA_VERSION into $VENV" >&2
    [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "cargo-lambda==$CARGO_LAMBDA_VERSION"
fi
export PATH="$VENV/bin:$PATH"

have_arm64_target() {
    rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu \
        || rustup target add aarch64-unknown-linux-gnu >/dev/null 2>&1
}
if [ "$ARCH" = "auto" ]; then
    if have_arm64_target; then
        ARCH="arm64"
    else
        echo "package: the aarch64-unknown-linux-gnu target cannot be installed here; building x86_64 (deploy with --arch x86_64 / Architecture=x86_64)" >&2
        ARCH="x86_64"
    fi
elif [ "$ARCH" = "arm64" ] && ! have_arm64_target; then
    echo "package: arm64 needs the aarch64-unknown-linux-gnu target (rustup target add aarch64-unknown-linux-gnu)" >&2
    exit 1
fi
case "$ARCH" in
    arm64) ARCH_FLAG="--arm64"; ELF_MACHINE=183 ;;   # EM_AARCH64
    x86_64) ARCH_FLAG="--x86-64"; ELF_MACHINE=62 ;;  # EM_X86_64
esac

TARGET_DIR="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
LAMBDA_DIR="$TARGET_DIR/lambda"
started=$SECONDS
echo "package: cargo lambda build --release $ARCH_FLAG (coordinator, worker, compactor) into $LAMBDA_DIR" >&2
cargo lambda build --release "$ARCH_FLAG" --output-format zip --lambda-dir "$LAMBDA_DIR" \
    -p squash-functions --bin coordinator --bin worker --bin compactor

for function in coordinator worker compactor; do
    python3 - "$LAMBDA_DIR/$function/bootstrap.zip" "$ELF_MACHINE" <<'PY'
import struct, sys, zipfile
path, machine = sys.argv[1], int(sys.argv[2])
with zipfile.ZipFile(path) as archive:
    names = archive.namelist()
    if names != ["bootstrap"]:
        sys.exit(f"package: {path} holds {names}, expected only 'bootstrap'")
    info = archive.getinfo("bootstrap")
    head = archive.open("bootstrap").read(20)
if head[:4] != b"\x7fELF":
    sys.exit(f"package: {path}: bootstrap is not an ELF executable")
found = struct.unpack_from("<H", head, 18)[0]
if found != machine:
    sys.exit(f"package: {path}: bootstrap is for ELF machine {found}, expected {machine}")
if (info.external_attr >> 16) & 0o111 == 0:
    sys.exit(f"package: {path}: bootstrap is not executable")
import os
print(f"package: {path}: {os.path.getsize(path) / 1e6:.1f} MB zip, bootstrap {info.file_size / 1e6:.1f} MB")
PY
done
echo "package: $ARCH packages built in $((SECONDS - started)) s" >&2
