# Start and stop the project's own long-running processes by pid file.
# Usage: . hack/lib/proc.sh; proc_start NAME CMD...; proc_stop NAME; proc_running NAME

proc_pidfile() { echo "$KUBENOVA_STATE/run/$1.pid"; }

# proc_alive PID: true when PID runs. A zombie counts as gone: PID 1 on these machines does not
# reap orphans, so `kill -0` would call a process that exited still alive.
proc_alive() {
  local stat
  [[ ${1:-} =~ ^[0-9]+$ ]] || return 1
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  [[ ${stat%% *} != [ZX] ]]
}

proc_running() {
  local pidfile; pidfile="$(proc_pidfile "$1")"
  [[ -f "$pidfile" ]] && proc_alive "$(cat "$pidfile")"
}

# proc_start NAME CMD... : run CMD in the background (own session), log to logs/NAME.log.
proc_start() {
  local name="$1"; shift
  if proc_running "$name"; then
    echo "$name is already running (pid $(cat "$(proc_pidfile "$name")"))"
    return 0
  fi
  setsid nohup "$@" >>"$KUBENOVA_STATE/logs/$name.log" 2>&1 < /dev/null &
  echo $! >"$(proc_pidfile "$name")"
  echo "started $name (pid $!, log $KUBENOVA_STATE/logs/$name.log)"
}

# proc_stop NAME : SIGTERM the process in the pid file, SIGKILL after 20 s.
proc_stop() {
  local name="$1" pidfile pid
  pidfile="$(proc_pidfile "$name")"
  [[ -f "$pidfile" ]] || return 0
  pid="$(cat "$pidfile")"
  if proc_alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do proc_alive "$pid" || break; sleep 0.5; done
    proc_alive "$pid" && kill -KILL "$pid" 2>/dev/null || true
    echo "stopped $name (pid $pid)"
  fi
  rm -f "$pidfile"
}
