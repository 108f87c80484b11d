# shellcheck shell=bash disable=SC2034  # variables are used by the scripts that source this
# Helpers for running daemons on a machine without an init system. Source after env.sh.
#
# Convention: $KUBENOVA_STATE/run/<name>.pid exists only for a daemon that a hack/ script
# started itself, so "stop what we started" never touches a daemon that was already there.
# Logs go to $KUBENOVA_STATE/logs/<name>.log.

KN_RUN_DIR="$KUBENOVA_STATE/run"
KN_LOG_DIR="$KUBENOVA_STATE/logs"

kn_log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
kn_die() { kn_log "error: $*"; exit 1; }

# kn_pid_alive PID: true when PID is a running process. A zombie counts as gone: PID 1 on these
# machines does not reap orphans, so `kill -0` would call a daemon that exited still alive.
kn_pid_alive() {
  local pid="${1:-}" stat
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  # The state follows the command name, which is in parentheses and may contain spaces.
  stat="${stat##*) }"
  [[ ${stat%% *} != [ZX] ]]
}

# kn_pidfile_pid FILE: print the pid stored in FILE when that process is alive.
kn_pidfile_pid() {
  local pid
  pid=$(head -n1 "$1" 2>/dev/null) || return 1
  kn_pid_alive "$pid" || return 1
  printf '%s\n' "$pid"
}

# kn_pgrep PGREP-ARGS...: like pgrep, without the zombies pgrep also lists.
kn_pgrep() {
  local pid
  for pid in $(pgrep "$@"); do
    if kn_pid_alive "$pid"; then printf '%s\n' "$pid"; fi
  done
}

# kn_pid_comm PID: the process's command name (as in /proc/PID/comm).
kn_pid_comm() { cat "/proc/$1/comm" 2>/dev/null; }

# Markers: which daemons this state dir started.
kn_marker() { printf '%s/%s.pid\n' "$KN_RUN_DIR" "$1"; }
kn_mark_started() { printf '%s\n' "$2" >"$(kn_marker "$1")"; }
kn_unmark() { rm -f "$(kn_marker "$1")"; }
# kn_started_pid NAME [COMM]: print the pid of NAME when we started it and it still runs (as a
# process called COMM, when given, so that a recycled pid is not taken for the daemon).
kn_started_pid() {
  local pid
  pid=$(kn_pidfile_pid "$(kn_marker "$1")") || return 1
  [[ -z ${2:-} || $(kn_pid_comm "$pid") == "$2" ]] || return 1
  printf '%s\n' "$pid"
}
kn_is_marked() { [[ -e $(kn_marker "$1") ]]; }

# kn_wait_until SECONDS WHAT COMMAND...: poll COMMAND every half second until it succeeds.
# Returns 1 after SECONDS. Set KN_WAIT_PID to give up early when that process dies.
kn_wait_until() {
  local timeout=$1 what=$2
  shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if [[ -n ${KN_WAIT_PID:-} ]] && ! kn_pid_alive "$KN_WAIT_PID"; then
      kn_log "$what: process $KN_WAIT_PID exited"
      return 1
    fi
    if ((SECONDS >= deadline)); then
      kn_log "$what: still not ready after ${timeout}s"
      return 1
    fi
    sleep 0.5
  done
}

# kn_wait_gone PID SECONDS: wait for PID to exit; true when it did.
kn_wait_gone() {
  local pid=$1 deadline=$((SECONDS + $2))
  while kn_pid_alive "$pid"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

# kn_terminate PID SECONDS: SIGTERM, then SIGKILL if it has not gone after SECONDS.
kn_terminate() {
  local pid=$1 grace=$2
  kn_pid_alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  if ! kn_wait_gone "$pid" "$grace"; then
    kn_log "process $pid ignored SIGTERM for ${grace}s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    kn_wait_gone "$pid" 10
  fi
}


# kn_spawn LOGFILE COMMAND...: start COMMAND in its own session with its output appended to
# LOGFILE, and print its pid. The new session keeps it alive when the caller's terminal or
# process group goes; fds above 2 are closed so it does not inherit the caller's lock.
kn_spawn() {
  local logfile=$1
  shift
  (
    exec </dev/null >>"$logfile" 2>&1
    for fd in /proc/self/fd/*; do
      fd=${fd##*/}
      if ((fd > 2)); then eval "exec $fd>&-" 2>/dev/null || true; fi
    done
    exec setsid "$@"
  ) &
  printf '%s\n' "$!"
}

# kn_spawn_libvirt_daemon LOGFILE NAME [ARG...]: start virtlogd or libvirtd with kn_spawn, its
# own log in LOGFILE; the daemon writes its pid file itself. libvirtd runs in the foreground
# under tini as a child subreaper: libvirt daemonises QEMU, so a guest's QEMU is an orphan,
# reaped by whichever ancestor is a subreaper, else by pid 1. libvirtd counts a killed QEMU as
# gone only once it is reaped, and a machine whose pid 1 reaps orphans only every second or two
# (measured here: 1.5 s) adds that to every destroy, stop and live migration. A host's init
# (systemd) and the chart's pods (containerd's shim) reap at once; this gives the local
# libvirtds the same. virtlogd has no children to reap and forks itself (-d).
kn_spawn_libvirt_daemon() {
  local logfile=$1 name=$2
  shift 2
  if [[ $name == libvirtd ]]; then
    LIBVIRT_LOG_OUTPUTS="3:file:$logfile" kn_spawn "$logfile" tini -s -- "$name" "$@"
  else
    LIBVIRT_LOG_OUTPUTS="3:file:$logfile" kn_spawn "$logfile" "$name" -d "$@"
  fi
}

# kn_ensure_packages PKG...: apt-get install the Debian packages that are not installed yet, its
# output in $KN_LOG_DIR/apt.log. The lock timeout waits for another apt run instead of failing.
# fd 9 (a caller's lock) is closed because a package's maintainer script may leave a daemon
# behind.
kn_ensure_packages() {
  local missing=() pkg
  for pkg in "$@"; do
    if [[ $(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null) != installed ]]; then
      missing+=("$pkg")
    fi
  done
  ((${#missing[@]})) || return 0
  # Name what is missing, rather than leave it to apt-get's "are you root?".
  ((EUID == 0)) || kn_die "these Debian packages are missing: ${missing[*]}; run this as root," \
    "or install them first: sudo apt-get install ${missing[*]}"
  kn_log "installing ${missing[*]} (apt output in $KN_LOG_DIR/apt.log)"
  if ! {
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 update &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -o DPkg::Lock::Timeout=900 \
        "${missing[@]}"
  } >>"$KN_LOG_DIR/apt.log" 2>&1 9>&-; then
    tail -n 20 "$KN_LOG_DIR/apt.log" >&2
    kn_die "apt-get failed"
  fi
}
