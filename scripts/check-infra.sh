#!/usr/bin/env bash
# Validates the AWS SAM template offline: the SAM transform (`sam validate`) and cfn-lint
# (`sam validate --lint`). No AWS account or credentials are needed; only a region name is.
#
#   scripts/check-infra.sh [TEMPLATE]     (default infra/template.yaml)
#
# Installs aws-sam-cli from PyPI into .venv-tools the first time (about 80 s, 340 MB); later runs
# reuse it and take a few seconds.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv-tools"
SAM="$VENV/bin/sam"
SAM_VERSION="1.170.0"
TEMPLATE="${1:-infra/template.yaml}"
REGION="us-east-1"

if [ ! -x "$SAM" ]; then
    echo "check-infra: installing aws-sam-cli==$SAM_VERSION into $VENV" >&2
    [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "aws-sam-cli==$SAM_VERSION"
fi
[ -f "$TEMPLATE" ] || { echo "check-infra: no template at $TEMPLATE" >&2; exit 1; }

# sam reads AWS_DEFAULT_REGION (or a profile), not only AWS_REGION; set both so no config file
# is consulted. Telemetry off: the check needs no network.
export AWS_REGION="$REGION" AWS_DEFAULT_REGION="$REGION" SAM_CLI_TELEMETRY=0

echo "check-infra: $("$SAM" --version), $("$VENV/bin/cfn-lint" --version)"
"$VENV/bin/python" - "$TEMPLATE" <<'PY'
import sys
from samtranslator.yaml_helper import yaml_parse
with open(sys.argv[1]) as f:
    template = yaml_parse(f.read())
for section in ("Parameters", "Conditions", "Resources", "Outputs"):
    names = list(template.get(section, {}))
    print(f"check-infra: {section.lower()} ({len(names)}): {', '.join(names)}")
PY
# Plain `sam validate` runs the SAM transform (serverless resources, globals, events);
# `--lint` runs cfn-lint instead (properties, intrinsics, references, conditions, IAM policy
# syntax). Neither covers the other, so both run.
echo "check-infra: sam validate (SAM transform)"
"$SAM" validate --template "$TEMPLATE" --region "$REGION"
echo "check-infra: sam validate --lint (cfn-lint)"
"$SAM" validate --lint --template "$TEMPLATE" --region "$REGION"
echo "check-infra: ok"
