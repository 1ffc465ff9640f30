#!/usr/bin/env bash
# Validates the admin API's OpenAPI document (`admin-api --print-openapi`, the one served at
# GET /openapi.json) with openapi-spec-validator (PyPI), installed into a virtualenv cached per
# version: no Docker, installed once.
#
# Usage: openapi.sh [install]
#   (none)   install if needed, print the document and validate it; exit 1 when it is invalid
#   install  create the cached virtualenv only
#
# Environment (defaults in brackets):
#   ENGAGENINJA_OPENAPI_VALIDATOR_VERSION  [0.9.0]  openapi-spec-validator version installed
#   ENGAGENINJA_CACHE_DIR                  [${XDG_CACHE_HOME:-$HOME/.cache}/engageninja]
#   ENGAGENINJA_PYTHON                     [python3] the interpreter the virtualenv is made with
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION="${ENGAGENINJA_OPENAPI_VALIDATOR_VERSION:-0.9.0}"
PYTHON="${ENGAGENINJA_PYTHON:-python3}"
CACHE_ROOT="${ENGAGENINJA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/engageninja}"
CACHE="$CACHE_ROOT/openapi-validator-$VERSION"
VENV="$CACHE/venv"

say() { printf 'openapi: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# shellcheck source=services/common.sh
source .ci/services/common.sh

install() { pip_venv "openapi-spec-validator==$VERSION"; }

validate() {
  install
  local doc
  doc=$(mktemp --suffix=.json)
  trap 'rm -f "$doc"' RETURN
  cargo run -q --locked -p engageninja --bin admin-api -- --print-openapi >"$doc"
  "$VENV/bin/openapi-spec-validator" "$doc"
  "$VENV/bin/python" - "$doc" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
count = sum(1 for item in doc["paths"].values() for method in item if method in
            ("get", "put", "post", "delete", "patch", "head", "options", "trace"))
print(f"openapi: {doc['openapi']}, {len(doc['paths'])} paths, {count} operations", file=sys.stderr)
PY
}

case "${1:-}" in
  "") validate ;;
  install) install; say "cached in $CACHE" ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
