#!/usr/bin/env bash
# Tests the Python client (clients/python) in its own venv, .venv-pyclient: installs the package
# from the checkout, NumPy too when it can be had (the NumPy input tests skip without it), then
# runs the offline tests (a scripted in-process HTTP server) and, when SQUASH_API is set, the
# live tests against that deployment:
#   scripts/test-python-client.sh
#   (eval "$(scripts/local-stack.sh env)"; scripts/test-python-client.sh)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv-pyclient"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
# --force-reinstall: a local directory of the same version must still replace the installed copy.
rm -rf clients/python/build
"$VENV/bin/pip" install -q --force-reinstall --no-deps ./clients/python
if ! "$VENV/bin/python" -c 'import numpy' 2>/dev/null; then
    "$VENV/bin/pip" install -q numpy \
        || echo "test-python-client: numpy could not be installed; its tests will skip" >&2
fi
if [ -z "${SQUASH_API:-}" ]; then
    echo "test-python-client: SQUASH_API is not set; live tests skip" >&2
fi
"$VENV/bin/python" -m unittest discover -s clients/python/tests -v
