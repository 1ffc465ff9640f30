# shellcheck shell=bash
# Shared by kafka.sh and cassandra.sh (sourced, not run). Each script defines `say`,
# `pid_alive` (is $PIDFILE our JVM?) and PIDFILE before calling these.

need() { command -v "$1" >/dev/null 2>&1 || die "$1 is not installed ($2)"; }

# Stops the JVM in $PIDFILE: SIGTERM, up to 30 s for a clean shutdown, then SIGKILL.
stop() {
  if ! pid_alive; then
    rm -f "$PIDFILE"
    say "not running"
    return 0
  fi
  local pid
  pid=$(cat "$PIDFILE")
  say "stopping pid $pid"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do
    [[ -d "/proc/$pid" ]] || break
    sleep 0.5
  done
  if [[ -d "/proc/$pid" ]]; then
    say "still running after 30s, killing it"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
  fi
  rm -f "$PIDFILE"
  say "stopped"
}
