#!/usr/bin/env bash
# Builds the functions with SAM + cargo-lambda and deploys infra/template.yaml to AWS.
#
#   scripts/deploy.sh --bucket NAME   [options]   indexes live in an existing bucket
#   scripts/deploy.sh --create-bucket [options]   the stack creates a private bucket for them
#
# Options:
#   --stack-name NAME     CloudFormation stack (default squash; at most 52 characters)
#   --region REGION       default: AWS_REGION, AWS_DEFAULT_REGION, then the aws CLI's config
#   --prefix PREFIX       key prefix of the indexes in the bucket (default indexes)
#   --auth AWS_IAM|NONE   API authorization (default AWS_IAM: SigV4-signed requests only)
#   --arch arm64|x86_64   function architecture (default arm64)
#   --branching N         children per worker-tree node (default 4)
#   --param KEY=VALUE     any other template parameter (repeatable), e.g. WorkerMemorySize=3008
#   --skip-build          deploy what the last build left in target/sam-build
#   --guided              let `sam deploy --guided` ask for everything (saves samconfig.toml)
#   --yes                 deploy without asking to confirm the change set
#   --dry-run             print the commands instead of running them (no build, no AWS calls)
#
# Needs cargo, cargo-lambda and the SAM CLI (`pip install cargo-lambda aws-sam-cli`;
# scripts/check-infra.sh puts SAM into .venv-tools, which this script also looks in), and AWS
# credentials allowed to create the stack's functions, roles, API, log groups and bucket.
# The first build compiles the release binaries and takes several minutes.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv-tools"
TEMPLATE="infra/template.yaml"
BUILD_DIR="target/sam-build"

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
}

die() {
    echo "deploy: $*" >&2
    exit 1
}

STACK="squash"
REGION="${AWS_REGION:-${AWS_DEFAULT_REGION:-}}"
BUCKET=""
CREATE_BUCKET=0
PREFIX="indexes"
AUTH="AWS_IAM"
ARCH="arm64"
BRANCHING="4"
EXTRA_PARAMS=()
SKIP_BUILD=0
GUIDED=0
ASSUME_YES=0
DRY_RUN=0

need_value() {
    if [ $# -lt 2 ] || [ -z "$2" ]; then
        die "$1 needs a value (see --help)"
    fi
}

while [ $# -gt 0 ]; do
    case "$1" in
        --bucket) need_value "$@"; BUCKET="$2"; shift 2 ;;
        --create-bucket) CREATE_BUCKET=1; shift ;;
        --stack-name) need_value "$@"; STACK="$2"; shift 2 ;;
        --region) need_value "$@"; REGION="$2"; shift 2 ;;
        --prefix) need_value "$@"; PREFIX="$2"; shift 2 ;;
        --auth) need_value "$@"; AUTH="$2"; shift 2 ;;
        --arch) need_value "$@"; ARCH="$2"; shift 2 ;;
        --branching) need_value "$@"; BRANCHING="$2"; shift 2 ;;
        --param) need_value "$@"; EXTRA_PARAMS+=("$2"); shift 2 ;;
        --skip-build) SKIP_BUILD=1; shift ;;
        --guided) GUIDED=1; shift ;;
        --yes) ASSUME_YES=1; shift ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done

# ------------------------------------------------------------------ arguments

if [ -n "$BUCKET" ] && [ "$CREATE_BUCKET" = 1 ]; then
    die "give either --bucket NAME or --create-bucket, not both"
fi
if [ -z "$BUCKET" ] && [ "$CREATE_BUCKET" = 0 ]; then
    die "say where indexes live: --bucket NAME (an existing bucket) or --create-bucket"
fi
case "$AUTH" in AWS_IAM | NONE) ;; *) die "--auth must be AWS_IAM or NONE, got '$AUTH'" ;; esac
case "$ARCH" in arm64 | x86_64) ;; *) die "--arch must be arm64 or x86_64, got '$ARCH'" ;; esac
case "$BRANCHING" in '' | *[!0-9]*) die "--branching must be a number, got '$BRANCHING'" ;; esac
[[ "$STACK" =~ ^[A-Za-z][A-Za-z0-9-]{0,51}$ ]] ||
    die "--stack-name must start with a letter, hold letters, digits and '-', and have at most 52 characters (function names <stack>-coordinator must fit in 64)"
[[ "$PREFIX" =~ ^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$ ]] ||
    die "--prefix must be a key prefix without leading or trailing '/', got '$PREFIX'"
for param in ${EXTRA_PARAMS[@]+"${EXTRA_PARAMS[@]}"}; do
    [[ "$param" =~ ^[A-Za-z0-9]+=.+$ ]] || die "--param must look like KEY=VALUE, got '$param'"
done

# ------------------------------------------------------------------ tools

# Tools installed into the project's venv (scripts/check-infra.sh, scripts/local-stack.sh) count
# too; SAM calls cargo-lambda through PATH.
if [ -d "$VENV/bin" ]; then
    PATH="$PATH:$VENV/bin"
    export PATH
fi
problems=()
command -v cargo >/dev/null 2>&1 || problems+=("cargo (a Rust toolchain: https://rustup.rs)")
if ! cargo lambda --version >/dev/null 2>&1; then
    problems+=("cargo lambda (pip install cargo-lambda)")
fi
command -v sam >/dev/null 2>&1 || problems+=("sam (pip install aws-sam-cli, or scripts/check-infra.sh)")
if [ ${#problems[@]} -gt 0 ]; then
    for problem in "${problems[@]}"; do echo "deploy: missing: $problem" >&2; done
    echo "deploy: install them with: pip install cargo-lambda aws-sam-cli" >&2
    [ "$DRY_RUN" = 1 ] || exit 1
    echo "deploy: (dry run: printing the commands anyway)" >&2
fi

if [ -z "$REGION" ] && command -v aws >/dev/null 2>&1; then
    REGION="$(aws configure get region 2>/dev/null || true)"
fi
[ -n "$REGION" ] || die "no AWS region: pass --region or set AWS_REGION"
# SAM reads AWS_DEFAULT_REGION (or a profile), not only AWS_REGION.
export AWS_REGION="$REGION" AWS_DEFAULT_REGION="$REGION"

# ------------------------------------------------------------------ commands

run() {
    printf '+'
    printf ' %q' "$@"
    printf '\n'
    [ "$DRY_RUN" = 1 ] || "$@"
}

if [ "$CREATE_BUCKET" = 1 ]; then
    # Explicitly empty, so an update does not keep a bucket named by an earlier deploy.
    BUCKET_PARAM='ExistingBucketName=""'
else
    BUCKET_PARAM="ExistingBucketName=$BUCKET"
fi
PARAMS=(
    "$BUCKET_PARAM"
    "IndexPrefix=$PREFIX"
    "ApiAuth=$AUTH"
    "Architecture=$ARCH"
    "Branching=$BRANCHING"
    ${EXTRA_PARAMS[@]+"${EXTRA_PARAMS[@]}"}
)

if command -v aws >/dev/null 2>&1; then
    echo "deploy: checking AWS credentials"
    if [ "$DRY_RUN" = 1 ]; then
        run aws sts get-caller-identity --region "$REGION" --output text --query Arn
    elif ! identity="$(aws sts get-caller-identity --region "$REGION" --output text --query Arn 2>&1)"; then
        echo "$identity" >&2
        die "no usable AWS credentials (aws configure, aws sso login, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)"
    else
        echo "deploy: deploying as $identity to $REGION"
    fi
else
    echo "deploy: no aws CLI to check credentials with; sam reports missing ones itself"
fi

if [ "$SKIP_BUILD" = 0 ]; then
    echo "deploy: building the coordinator, worker and compactor binaries ($ARCH, release) with cargo-lambda"
    run sam build --beta-features --template "$TEMPLATE" --build-dir "$BUILD_DIR" \
        --parameter-overrides "Architecture=$ARCH"
elif [ "$DRY_RUN" = 0 ] && [ ! -f "$BUILD_DIR/template.yaml" ]; then
    die "--skip-build, but there is no build in $BUILD_DIR"
fi

DEPLOY=(sam deploy --template-file "$BUILD_DIR/template.yaml" --stack-name "$STACK"
    --region "$REGION" --capabilities CAPABILITY_IAM
    --no-fail-on-empty-changeset --parameter-overrides "${PARAMS[@]}")
if [ "$GUIDED" = 1 ]; then
    # Guided mode asks for the artifact bucket itself (and refuses --resolve-s3).
    DEPLOY+=(--guided)
else
    # SAM's managed bucket holds the uploaded function zips.
    DEPLOY+=(--resolve-s3)
    if [ "$ASSUME_YES" = 1 ]; then
        DEPLOY+=(--no-confirm-changeset)
    else
        DEPLOY+=(--confirm-changeset)
    fi
fi
echo "deploy: deploying stack $STACK"
run "${DEPLOY[@]}"

# ------------------------------------------------------------------ outputs

output() {
    python3 -c '
import json, sys
wanted = sys.argv[1]
for item in json.load(sys.stdin):
    if item.get("OutputKey") == wanted:
        print(item.get("OutputValue", ""))
' "$1" <<<"$OUTPUTS"
}

if [ "$DRY_RUN" = 1 ]; then
    run sam list stack-outputs --stack-name "$STACK" --region "$REGION" --output json
    API_URL="https://API_ID.execute-api.$REGION.amazonaws.com"
    INDEX_ROOT="s3://${BUCKET:-BUCKET}/$PREFIX"
else
    OUTPUTS="$(sam list stack-outputs --stack-name "$STACK" --region "$REGION" --output json)"
    API_URL="$(output ApiUrl)"
    INDEX_ROOT="$(output IndexRoot)"
fi

if [ "$AUTH" = AWS_IAM ]; then
    SIGN="--aws-sigv4 \"aws:amz:$REGION:execute-api\" --user \"\$AWS_ACCESS_KEY_ID:\$AWS_SECRET_ACCESS_KEY\" \\
     -H \"x-amz-security-token: \$AWS_SESSION_TOKEN\" "
    SIGN_NOTE="
Requests must be signed (ApiAuth=AWS_IAM): the caller needs execute-api:Invoke on the API.
With a profile or SSO, export its keys first: eval \"\$(aws configure export-credentials --format env)\"
(drop the x-amz-security-token header for long-term keys)."
else
    SIGN=""
    SIGN_NOTE="
The API is open to anyone with the URL (ApiAuth=NONE)."
fi

cat <<EOT

API URL:    $API_URL
Index root: $INDEX_ROOT
$SIGN_NOTE

Build an index into the bucket (AWS credentials in the environment):
  squash build --vectors base.fvecs --attributes base_attrs.csv --metric cosine --out $INDEX_ROOT/NAME

Then:
  curl -s $SIGN"$API_URL/v1/indexes"
  curl -s $SIGN-H 'content-type: application/json' \\
     -d @tests/data/glove-20k/example-query.json "$API_URL/v1/indexes/NAME/query"
EOT
