#!/usr/bin/env bash
# moto's server mode (PyPI `moto[server]`): a local stand-in for AWS SES v2 (SendEmail with
# Simple or Raw content after CreateEmailIdentity; sent mail readable at /moto-api/data.json).
# Installed with pip into a virtualenv cached per version: no Docker.
#
# Usage: moto.sh install|start|stop|status|restart|url
#   install  create the cached virtualenv and pip-install moto[server] into it (once per version)
#   start    install if needed, start moto_server on 127.0.0.1 in the background and wait until
#            it answers; prints the URL on stdout (for ENGAGENINJA_MOTO_URL); a no-op when it is
#            already running (on a timeout it prints the log's last lines and stops it)
#   stop     stop the server (SIGTERM, then SIGKILL after a grace period)
#   status   exit 0 and say so when running and answering, 1 otherwise
#   url      print the URL (http://127.0.0.1:PORT)
#
# Environment (defaults in brackets):
#   ENGAGENINJA_MOTO_VERSION        [5.2.5]  moto version installed
#   ENGAGENINJA_MOTO_PORT           [19050]  port on 127.0.0.1
#   ENGAGENINJA_MOTO_START_TIMEOUT  [60]     seconds to wait for readiness
#   ENGAGENINJA_SERVICES_DIR        [/tmp/engageninja-services] pid and log under $DIR/moto
#   ENGAGENINJA_CACHE_DIR           [${XDG_CACHE_HOME:-$HOME/.cache}/engageninja]
#   ENGAGENINJA_PYTHON              [python3] the interpreter the virtualenv is made with
#   ENGAGENINJA_NICE                [10]     nice level of the server
set -euo pipefail

VERSION="${ENGAGENINJA_MOTO_VERSION:-5.2.5}"
PORT="${ENGAGENINJA_MOTO_PORT:-19050}"
START_TIMEOUT="${ENGAGENINJA_MOTO_START_TIMEOUT:-60}"
NICE="${ENGAGENINJA_NICE:-10}"
PYTHON="${ENGAGENINJA_PYTHON:-python3}"
SERVICES_DIR="${ENGAGENINJA_SERVICES_DIR:-/tmp/engageninja-services}"
CACHE_ROOT="${ENGAGENINJA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/engageninja}"
CACHE="$CACHE_ROOT/moto-$VERSION"
VENV="$CACHE/venv"
DATA="$SERVICES_DIR/moto"
LOG="$DATA/moto.log"
PIDFILE="$DATA/moto.pid"
URL="http://127.0.0.1:$PORT"

say() { printf 'moto: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# ---------------------------------------------------------------------------- install
install() { pip_venv "moto[server]==$VERSION"; }

# ---------------------------------------------------------------------------- process
pid_alive() {
  [[ -f "$PIDFILE" ]] || return 1
  local pid
  pid=$(cat "$PIDFILE")
  [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
  # The pid must still be our server (pids get reused): match the script and the port.
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "moto_server -H 127.0.0.1 -p $PORT"
}

# moto answers its own API (the recorded state) once it serves requests.
probe() {
  "$PYTHON" - "$URL/moto-api/data.json" <<'PY'
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=3) as answer:
        answer.read()
        sys.exit(0 if answer.status == 200 else 1)
except Exception as e:
    print(f"no answer: {e}", file=sys.stderr)
    sys.exit(1)
PY
}

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start() {
  mkdir -p "$DATA"
  if pid_alive; then
    if probe >/dev/null 2>&1; then
      say "already running (pid $(cat "$PIDFILE")) on $URL"
      echo "$URL"
      return 0
    fi
    say "already started (pid $(cat "$PIDFILE")), waiting for it to be ready"
  else
    install
    if port_in_use "$PORT"; then
      die "port 127.0.0.1:$PORT is taken by another process (set ENGAGENINJA_MOTO_PORT)"
    fi
    say "starting moto $VERSION on $URL, log $LOG"
    printf '\n===== start %s =====\n' "$(date -Is)" >>"$LOG"
    # setsid: not killed with the caller's terminal or process group; nice: leave CPU to builds.
    # setsid, nice and the interpreter exec one another, so $! is the server's pid.
    setsid nice -n "$NICE" "$VENV/bin/python" "$VENV/bin/moto_server" -H 127.0.0.1 -p "$PORT" \
      >>"$LOG" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
  fi
  local started=$SECONDS
  until probe >/dev/null 2>&1; do
    if ! pid_alive; then
      say "moto exited during startup; last lines of $LOG:"
      tail -n 40 "$LOG" >&2
      rm -f "$PIDFILE"
      exit 1
    fi
    if (( SECONDS - started >= START_TIMEOUT )); then
      say "moto did not become ready within ${START_TIMEOUT}s; last lines of $LOG:"
      tail -n 40 "$LOG" >&2
      stop
      exit 1
    fi
    sleep 0.5
  done
  say "ready after $(( SECONDS - started ))s (pid $(cat "$PIDFILE")): $URL"
  echo "$URL"
}

status() {
  if pid_alive; then
    if out=$(probe 2>&1); then
      say "running (pid $(cat "$PIDFILE")) on $URL"
      return 0
    fi
    say "process $(cat "$PIDFILE") is up but not answering on $URL: $out"
    return 1
  fi
  say "not running"
  return 1
}

case "${1:-}" in
  install) install; say "cached in $CACHE" ;;
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  status) status ;;
  url) echo "$URL" ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
