#!/usr/bin/env bash
# Prometheus and promtool for the checks and tests that need them: Debian's `prometheus` package
# (2.x), installed once with apt (it stays installed; no service is started: tests start their
# own Prometheus on loopback).
#
# Usage: prometheus.sh install|path
#   install  install the package when `prometheus` or `promtool` is missing, then print the
#            path of the prometheus binary (promtool sits beside it)
#   path     print the path of the prometheus binary; exit 1 when it is not installed
#
# Environment:
#   ENGAGENINJA_PROMETHEUS  a prometheus binary to use instead (its promtool beside it)
set -euo pipefail

say() { printf 'prometheus: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

installed() {
  if [[ -n "${ENGAGENINJA_PROMETHEUS:-}" ]]; then
    [[ -x "$ENGAGENINJA_PROMETHEUS" && -x "$(dirname "$ENGAGENINJA_PROMETHEUS")/promtool" ]] \
      || die "ENGAGENINJA_PROMETHEUS=$ENGAGENINJA_PROMETHEUS: no executable prometheus with promtool beside it"
    echo "$ENGAGENINJA_PROMETHEUS"
    return 0
  fi
  local binary
  binary=$(command -v prometheus 2>/dev/null) || return 1
  [[ -x "$(dirname "$binary")/promtool" ]] || return 1
  echo "$binary"
}

install() {
  installed && return 0
  command -v apt-get >/dev/null 2>&1 \
    || die "prometheus and promtool are missing and apt-get is not here: install Prometheus 2 or set ENGAGENINJA_PROMETHEUS"
  local sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "installing Debian's prometheus package needs root or sudo"
    sudo=(sudo)
  fi
  say "installing Debian's prometheus package (once)"
  local log
  log=$(mktemp)
  if ! { "${sudo[@]}" apt-get update -qq \
      && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; } \
      >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    die "apt-get could not install prometheus (full output: $log)"
  fi
  rm -f "$log"
  installed || die "the prometheus package installed no prometheus and promtool on PATH"
}

case "${1:-}" in
  install) install ;;
  path) installed ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
