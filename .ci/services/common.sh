# shellcheck shell=bash
# Shared by the service scripts and the Python tools of .ci (sourced, not run). Each script
# defines `say` and `die`; `stop` also needs `pid_alive` (is $PIDFILE our process?) and PIDFILE.

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

# Runs a step under `flock` on LOCKFILE when flock exists: parallel runs (CI steps) install
# once, and the loser finds it done.
locked() {
  local lockfile=$1
  shift
  if command -v flock >/dev/null 2>&1; then
    (flock 9; "$@") 9>"$lockfile"
  else
    "$@"
  fi
}

# Installs pip packages ("$@") into the virtualenv $CACHE/venv, once: one install at a time
# (parallel CI steps; the loser finds it installed), and the marker $CACHE/installed (the
# `pip freeze`) says it completed. Needs CACHE and PYTHON.
pip_venv() {
  [[ -f "$CACHE/installed" ]] && return 0
  mkdir -p "$CACHE"
  locked "$CACHE/.install.lock" pip_venv_unlocked "$@"
}

pip_venv_unlocked() {
  [[ -f "$CACHE/installed" ]] && return 0
  need "$PYTHON" "Python 3.9 or newer runs the Python tools"
  say "installing $* into $CACHE/venv (once)"
  rm -rf "${CACHE:?}/venv"
  if ! { "$PYTHON" -m venv "$CACHE/venv" \
      && "$CACHE/venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@"; } \
      >"$CACHE/install.log" 2>&1; then
    tail -n 30 "$CACHE/install.log" >&2
    die "could not install $* (full output: $CACHE/install.log)"
  fi
  "$CACHE/venv/bin/python" -m pip freeze >"$CACHE/installed"
  say "installed $*"
}
