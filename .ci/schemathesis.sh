#!/usr/bin/env bash
# Fuzzes the admin API against its own OpenAPI document with schemathesis (PyPI), every check
# on: schema-valid requests must be accepted, schema-invalid ones refused, and every answer must
# match the document. Runs the all-in-one binary (`engageninja`, debug build) on 127.0.0.1 with
# a fresh data directory and providers on a closed port, then fuzzes as its demo tenant and as
# the platform admin. Installed into a virtualenv cached per version: no Docker.
#
# Usage: schemathesis.sh [install]
#   (none)   install if needed, build and start engageninja, run; exit 1 on any failure
#   install  create the cached virtualenv only
#
# Environment (defaults in brackets):
#   ENGAGENINJA_SCHEMATHESIS_VERSION   [4.32.5] schemathesis version installed
#   ENGAGENINJA_SCHEMATHESIS_EXAMPLES  [25]     examples per operation and phase
#   ENGAGENINJA_SCHEMATHESIS_SEED      [1]      the generator's seed (a run is reproducible)
#   ENGAGENINJA_SCHEMATHESIS_PORT      [28080]  the admin API's port (the ops port is +11)
#   ENGAGENINJA_CACHE_DIR              [${XDG_CACHE_HOME:-$HOME/.cache}/engageninja]
#   ENGAGENINJA_PYTHON                 [python3] the interpreter the virtualenv is made with
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

VERSION="${ENGAGENINJA_SCHEMATHESIS_VERSION:-4.32.5}"
EXAMPLES="${ENGAGENINJA_SCHEMATHESIS_EXAMPLES:-25}"
SEED="${ENGAGENINJA_SCHEMATHESIS_SEED:-1}"
PORT="${ENGAGENINJA_SCHEMATHESIS_PORT:-28080}"
PYTHON="${ENGAGENINJA_PYTHON:-python3}"
CACHE_ROOT="${ENGAGENINJA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/engageninja}"
CACHE="$CACHE_ROOT/schemathesis-$VERSION"
PLATFORM_KEY="platform-key-for-the-schemathesis-run"

say() { printf 'schemathesis: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# shellcheck source=services/common.sh
source .ci/services/common.sh

install() { pip_venv "schemathesis==$VERSION"; }

# One run of schemathesis as KEY over the operations whose path matches INCLUDE (a regex).
fuzz() {
  local key=$1 include=$2 examples=$3
  shift 3
  # From the run's directory: schemathesis keeps its state (.schemathesis/) in the working one.
  (cd "$DIR" && SCHEMATHESIS_HOOKS="$ROOT/.ci/schemathesis/hooks.py" "$CACHE/venv/bin/schemathesis" run \
    "$URL/openapi.json" --checks all --header "Authorization: Bearer $key" --include-path-regex "$include" "$@" \
    --phases coverage,fuzzing --max-examples "$examples" --seed "$SEED" --request-timeout 5 \
    --continue-on-failure --no-color)
}

run() {
  install
  cargo build -q --locked -p engageninja --bin engageninja
  local status=0
  # Global, not local: the EXIT trap reads them after run() has returned.
  DIR=$(mktemp -d)
  URL="http://127.0.0.1:$PORT"
  ENGAGENINJA_DATA_DIR="$DIR/data" \
    ENGAGENINJA_ADMIN__LISTEN="127.0.0.1:$PORT" \
    ENGAGENINJA_ADMIN__OPS_LISTEN="127.0.0.1:$((PORT + 11))" \
    ENGAGENINJA_ADMIN__PLATFORM_ADMIN_KEY="$PLATFORM_KEY" \
    ENGAGENINJA_ADMIN__REQUESTS_PER_SECOND_PER_KEY=1000000 \
    ENGAGENINJA_ADMIN__CREDENTIAL_CHECKS_PER_TENANT_PER_HOUR=1000000 \
    ENGAGENINJA_PROVIDERS__TWILIO__API_URL=http://127.0.0.1:9 \
    ENGAGENINJA_PROVIDERS__TWILIO__TRUSTHUB_URL=http://127.0.0.1:9 \
    ENGAGENINJA_PROVIDERS__TWILIO__MESSAGING_URL=http://127.0.0.1:9 \
    ENGAGENINJA_PROVIDERS__TWILIO__CONTENT_URL=http://127.0.0.1:9 \
    ENGAGENINJA_PROVIDERS__SES__ENDPOINT=http://127.0.0.1:9 \
    RUST_LOG=warn "${CARGO_TARGET_DIR:-target}/debug/engageninja" >"$DIR/stdout" 2>"$DIR/stderr" &
  PID=$!
  trap 'kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -rf "$DIR"' EXIT
  for _ in $(seq 1 240); do
    grep -q "admin API on" "$DIR/stdout" 2>/dev/null && break
    kill -0 "$PID" 2>/dev/null || { tail -n 20 "$DIR/stderr" >&2; die "engageninja exited"; }
    sleep 0.5
  done
  grep -q "admin API on" "$DIR/stdout" || die "engageninja did not start within 120 s"
  local tenant_key
  tenant_key=$(grep -o 'enk_[0-9a-f]*' "$DIR/stdout" | head -n 1)
  [[ -n "$tenant_key" ]] || die "engageninja printed no demo tenant key"

  # As the demo tenant: every tenant route, the webhooks and the unsubscribe links (the event
  # stream, slow by design, with fewer examples). Then as the platform admin, whose routes may
  # delete tenants, and without revoking the key the run uses.
  say "tenant routes (seed $SEED, $EXAMPLES examples)"
  fuzz "$tenant_key" '^/(v1/(?!admin/|campaigns/[^/]+/events)|webhooks/|unsubscribe/)' "$EXAMPLES" || status=1
  fuzz "$tenant_key" '^/v1/campaigns/[^/]+/events$' 3 || status=1
  say "platform routes"
  fuzz "$PLATFORM_KEY" '^/v1/admin/' "$EXAMPLES" --exclude-operation-id platform_revoke_key || status=1
  if ((status != 0)); then
    say "engageninja's last log lines:"
    tail -n 20 "$DIR/stderr" >&2
    die "the server and its OpenAPI document disagree (above)"
  fi
  say "no failures"
}

case "${1:-}" in
  "") run ;;
  install) install; say "cached in $CACHE" ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
