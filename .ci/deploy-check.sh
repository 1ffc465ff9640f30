#!/usr/bin/env bash
# Validates the deployment files (deploy/docker-compose.yml, deploy/k8s/) without a Docker
# engine or a cluster, and with no network but the package registries. The validators are
# installed once and cached under ~/.cache/engageninja; later runs take a few seconds.
#
# Usage: deploy-check.sh [install]
#   (none)   install the validators if needed, run every check, exit 1 if any fails
#   install  only install the validators into the cache
#
# The checks, in order:
#   compose         deploy/docker-compose.yml loaded by compose-go, the loader Docker Compose
#                   is built on (deploy/tools/compose-check, built with Go from the module
#                   proxy): interpolation, the Compose Specification schema, references between
#                   services/volumes/secrets, and that build contexts and bind-mounted files
#                   exist. Also `docker compose config -q` where Docker Compose works.
#   compose-secrets the same file refuses to load without its secrets (no default key)
#   k8s             every manifest and the Secret template, kubernetes-validate --strict
#                   (PyPI; it ships the schemas) against Kubernetes $K8S_VERSION; a kind with no
#                   schema for that version is an error, not a warning
#   kustomize       deploy/k8s rendered by `kubectl kustomize` and validated the same (skipped,
#                   and said so, where kubectl is not installed; lint still checks the list)
#   prometheus      deploy/prometheus: `promtool check config`, `promtool check rules` and
#                   `promtool test rules` (alerts.test.yml: when each alert fires and when not),
#                   with Debian's prometheus package (.ci/services/prometheus.sh installs it)
#   grafana         deploy/grafana/dashboards/*.json against Grafana's dashboard schema
#                   (deploy/tools/dashboard-check, the Grafana Foundation SDK's strict decoder
#                   and validator for schema version 42, built with Go from the module proxy)
#   lint            deploy/tools/deploy_lint.py: settings keys and types, secrets never
#                   literal, grace periods, ports, probes, mounts, kustomization resources
#   teeth           broken copies of a manifest, of the compose file, of the alert rules and of
#                   the dashboard must be refused, so a validator that silently accepts
#                   everything fails this script
#
# Environment (defaults in brackets):
#   ENGAGENINJA_KUBERNETES_VALIDATE_VERSION [1.37.0]  kubernetes-validate version installed
#   ENGAGENINJA_K8S_VERSION                 [1.34.0]  Kubernetes version(s) validated
#                                                     against, space-separated (1.25.0-1.37.0)
#   ENGAGENINJA_CACHE_DIR                   [${XDG_CACHE_HOME:-$HOME/.cache}/engageninja]
#   ENGAGENINJA_PYTHON                      [python3] the interpreter the virtualenv is made with
#   ENGAGENINJA_GO                          [go]      the Go command that builds the Go checks
#   ENGAGENINJA_NICE                        [10]      nice level of the builds (leave CPU to cargo)
set -euo pipefail
cd "$(dirname "$0")/.."

KV_VERSION="${ENGAGENINJA_KUBERNETES_VALIDATE_VERSION:-1.37.0}"
K8S_VERSION="${ENGAGENINJA_K8S_VERSION:-1.34.0}"
PYTHON="${ENGAGENINJA_PYTHON:-python3}"
GO="${ENGAGENINJA_GO:-go}"
NICE="${ENGAGENINJA_NICE:-10}"
CACHE_ROOT="${ENGAGENINJA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/engageninja}"
KV_CACHE="$CACHE_ROOT/kubernetes-validate-$KV_VERSION"
VENV="$KV_CACHE/venv"
COMPOSE_CHECK_SRC="deploy/tools/compose-check"
DASHBOARD_CHECK_SRC="deploy/tools/dashboard-check"
COMPOSE_FILE="deploy/docker-compose.yml"
DASHBOARDS="deploy/grafana/dashboards"
K8S_DIR="deploy/k8s"

say() { printf 'deploy-check: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# shellcheck source=.ci/services/common.sh
source .ci/services/common.sh

# ---------------------------------------------------------------------------- install
# tomli: the lint reads TOML; Python 3.11+ has tomllib built in.
install_kubernetes_validate() {
  CACHE="$KV_CACHE" pip_venv "kubernetes-validate==$KV_VERSION" "tomli==2.2.1; python_version < '3.11'"
}

# A Go check's binary is cached per hash of its sources and the Go version, so editing its
# directory or upgrading Go rebuilds it, and nothing else does.
go_tool_bin() {
  local src=$1 hash
  hash=$({ cat "$src/go.mod" "$src/go.sum" "$src"/*.go; "$GO" version; } | sha256sum | cut -c1-16)
  echo "$CACHE_ROOT/$(basename "$src")/$hash/$(basename "$src")"
}

# Builds the Go check in SRC once and prints its binary.
install_go_tool() {
  local src=$1 bin
  need "$GO" "Go 1.24 or newer builds $src"
  bin=$(go_tool_bin "$src")
  if [[ ! -x "$bin" ]]; then
    mkdir -p "$(dirname "$bin")"
    locked "$(dirname "$bin")/.build.lock" build_go_tool "$src" "$bin"
  fi
  echo "$bin"
}

build_go_tool() {
  local src=$1 bin=$2 dir log
  [[ -x "$bin" ]] && return 0
  dir=$(dirname "$bin")
  log="$dir/build.log"
  say "building $src with $("$GO" env GOVERSION) into $dir (once)"
  # -mod=readonly: exactly the versions and checksums of go.mod/go.sum; GOTOOLCHAIN=local: use
  # this Go, never fetch another; GOWORK=off: no workspace file changes the build.
  if ! (cd "$src" \
      && GOFLAGS=-mod=readonly GOTOOLCHAIN=local GOWORK=off \
        nice -n "$NICE" "$GO" build -trimpath -o "$bin.tmp" .) >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    die "could not build $src (full output: $log)"
  fi
  mv -f "$bin.tmp" "$bin"
  # Binaries of older sources are never used again.
  find "$(dirname "$dir")" -mindepth 1 -maxdepth 1 -type d ! -path "$dir" -exec rm -rf {} +
  say "built $(basename "$src")"
}

install() {
  install_kubernetes_validate
  COMPOSE_CHECK=$(install_go_tool "$COMPOSE_CHECK_SRC")
  DASHBOARD_CHECK=$(install_go_tool "$DASHBOARD_CHECK_SRC")
  PROMTOOL="$(dirname "$(.ci/services/prometheus.sh install)")/promtool"
}

# ---------------------------------------------------------------------------- checks
PASSED=0
FAILED=0
FAILED_NAMES=()
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# check NAME DESCRIPTION COMMAND...: runs one check, records it, never stops the script.
check() {
  local name=$1 description=$2
  shift 2
  printf '\n==> %s: %s\n' "$name" "$description" >&2
  if "$@"; then
    PASSED=$((PASSED + 1))
    say "$name: ok"
  else
    FAILED=$((FAILED + 1))
    FAILED_NAMES+=("$name")
    say "$name: FAILED"
  fi
}

# Values for the variables the compose file requires, for validation only: compose refuses to
# interpolate without them. They are not keys and are never used by anything.
compose_env() {
  env ENGAGENINJA_CREDENTIAL_KEYS=validation-only-not-a-key \
    ENGAGENINJA_PLATFORM_ADMIN_KEY=validation-only-not-a-key \
    GRAFANA_ADMIN_PASSWORD=validation-only-not-a-password \
    "$@"
}

docker_compose_works() {
  command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1
}

check_compose() {
  compose_env "$COMPOSE_CHECK" "$COMPOSE_FILE" || return 1
  if docker_compose_works; then
    say "also: docker compose config -q"
    # --env-file /dev/null: the result must not depend on a local deploy/.env.
    compose_env docker compose --env-file /dev/null -f "$COMPOSE_FILE" config -q || return 1
  else
    say "docker compose is not installed here: compose-go alone (the same loader) decides"
  fi
}

check_compose_secrets() {
  local out
  if out=$(env -u ENGAGENINJA_CREDENTIAL_KEYS -u ENGAGENINJA_PLATFORM_ADMIN_KEY -u GRAFANA_ADMIN_PASSWORD \
      "$COMPOSE_CHECK" "$COMPOSE_FILE" 2>&1); then
    say "$COMPOSE_FILE loads without ENGAGENINJA_CREDENTIAL_KEYS, ENGAGENINJA_PLATFORM_ADMIN_KEY and GRAFANA_ADMIN_PASSWORD: a secret has a default"
    return 1
  fi
  local variable missing=0
  for variable in ENGAGENINJA_CREDENTIAL_KEYS ENGAGENINJA_PLATFORM_ADMIN_KEY GRAFANA_ADMIN_PASSWORD; do
    if grep -q "required variable $variable is missing" <<<"$out"; then
      say "refused without $variable"
    else
      say "no 'required variable $variable' error: it is not required, or has a default"
      missing=1
    fi
  done
  return "$missing"
}

# kubernetes-validate exits 0 when it has no schema for a kind (a typo in kind or apiVersion,
# or an API the version removed) and only warns: count any warning or error as a failure.
kubernetes_validate() {
  local out status=0 version args=()
  for version in $K8S_VERSION; do
    args+=(-k "$version")
  done
  out=$("$VENV/bin/kubernetes-validate" --strict "${args[@]}" "$@" 2>&1) || status=$?
  printf '%s\n' "$out" | sed 's/^/  /' >&2
  if grep -Eq '^(WARN|ERROR)|Couldn.t parse' <<<"$out"; then
    return 1
  fi
  return "$status"
}

check_k8s() {
  kubernetes_validate "$K8S_DIR"/manifests/*.yaml "$K8S_DIR/secret.template.yaml"
}

check_kustomize() {
  if ! command -v kubectl >/dev/null 2>&1; then
    say "kubectl is not installed: not rendered (lint checks the resource list)"
    return 0
  fi
  kubectl kustomize "$K8S_DIR" >"$WORK/rendered.yaml" || return 1
  say "rendered $(grep -c '^kind:' "$WORK/rendered.yaml") objects"
  kubernetes_validate "$WORK/rendered.yaml"
}

check_prometheus() {
  "$PROMTOOL" check config deploy/prometheus/prometheus.yml || return 1
  "$PROMTOOL" check rules deploy/prometheus/alerts.yml || return 1
  # The test file names alerts.yml relative to itself.
  (cd deploy/prometheus && "$PROMTOOL" test rules alerts.test.yml)
}

check_grafana() {
  "$DASHBOARD_CHECK" "$DASHBOARDS"/*.json
}

check_lint() {
  "$VENV/bin/python" deploy/tools/deploy_lint.py .
}

# Each broken copy must be refused; a validator that accepts it is broken itself.
expect_refused() {
  local what=$1
  shift
  if "$@" >"$WORK/refused.log" 2>&1; then
    say "NOT refused: $what"
    sed 's/^/  /' "$WORK/refused.log" >&2
    return 1
  fi
  say "refused as it should be: $what"
}

check_teeth() {
  local status=0 manifest="$K8S_DIR/manifests/20-dispatcher.yaml"
  mkdir -p "$WORK/teeth"
  # A misspelt field (strict mode), a wrong type, a kind without a schema.
  sed 's/^\( *\)terminationGracePeriodSeconds:/\1terminationGracePeriodSecond:/' "$manifest" >"$WORK/teeth/field.yaml"
  sed 's/^  replicas: .*/  replicas: three/' "$manifest" >"$WORK/teeth/type.yaml"
  sed 's/^kind: Deployment$/kind: Deploymnet/' "$manifest" >"$WORK/teeth/kind.yaml"
  for broken in field type kind; do
    cmp -s "$manifest" "$WORK/teeth/$broken.yaml" && { say "could not break $manifest ($broken)"; status=1; continue; }
    expect_refused "$manifest with a broken $broken" kubernetes_validate "$WORK/teeth/$broken.yaml" || status=1
  done
  # The compose file with a misspelt key, in a copy of deploy/ so its relative paths resolve
  # and the work tree is never touched.
  mkdir -p "$WORK/teeth/repo"
  cp -R deploy "$WORK/teeth/repo/"
  local compose="$WORK/teeth/repo/$COMPOSE_FILE"
  sed -i 's/^\( *\)stop_grace_period:/\1stop_grace_periods:/' "$compose"
  if cmp -s "$COMPOSE_FILE" "$compose"; then
    say "could not break $COMPOSE_FILE"
    status=1
  else
    expect_refused "$COMPOSE_FILE with a misspelt key" compose_env "$COMPOSE_CHECK" "$compose" || status=1
  fi
  # An alert whose threshold moved must fail its tests; a dashboard panel with a misspelt field
  # must be refused.
  mkdir -p "$WORK/teeth/prometheus"
  cp deploy/prometheus/alerts.yml deploy/prometheus/alerts.test.yml "$WORK/teeth/prometheus/"
  sed -i 's/> 0.05$/> 0.5/' "$WORK/teeth/prometheus/alerts.yml"
  if cmp -s deploy/prometheus/alerts.yml "$WORK/teeth/prometheus/alerts.yml"; then
    say "could not break deploy/prometheus/alerts.yml"
    status=1
  else
    expect_refused "alerts.yml with a provider error threshold of 50%" \
      bash -c 'cd "$1" && "$2" test rules alerts.test.yml' _ "$WORK/teeth/prometheus" "$PROMTOOL" || status=1
  fi
  local dashboard
  dashboard=$(find "$DASHBOARDS" -name '*.json' | head -n 1)
  sed 's/"gridPos"/"gridPosition"/' "$dashboard" >"$WORK/teeth/dashboard.json"
  if cmp -s "$dashboard" "$WORK/teeth/dashboard.json"; then
    say "could not break $dashboard"
    status=1
  else
    expect_refused "$dashboard with a misspelt panel field" "$DASHBOARD_CHECK" "$WORK/teeth/dashboard.json" || status=1
  fi
  return "$status"
}

run() {
  local started=$SECONDS
  install
  say "kubernetes-validate $KV_VERSION (Kubernetes $K8S_VERSION), $("$PROMTOOL" --version 2>&1 | head -n 1)"
  check compose "$COMPOSE_FILE (compose-go loader)" check_compose
  check compose-secrets "$COMPOSE_FILE requires its secrets" check_compose_secrets
  check k8s "$K8S_DIR manifests and Secret template (kubernetes-validate --strict)" check_k8s
  check kustomize "$K8S_DIR/kustomization.yaml rendered (kubectl kustomize)" check_kustomize
  check prometheus "deploy/prometheus (promtool: config, rules, rule tests)" check_prometheus
  check grafana "$DASHBOARDS (Grafana dashboard schema 42: deploy/tools/dashboard-check)" check_grafana
  check lint "cross-checks (deploy/tools/deploy_lint.py)" check_lint
  check teeth "broken copies are refused" check_teeth
  printf '\n' >&2
  if ((FAILED > 0)); then
    say "failed: ${FAILED_NAMES[*]}"
  fi
  say "took $((SECONDS - started))s"
  # One closing line in the plain 'N passed, N failed' form.
  echo "deploy-check: $PASSED passed, $FAILED failed"
  ((FAILED == 0))
}

case "${1:-}" in
  "") run ;;
  install) install; say "cached in $CACHE_ROOT" ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
