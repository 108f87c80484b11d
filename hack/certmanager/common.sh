# shellcheck shell=bash
# Shared by build.sh, up.sh and down.sh; source it after hack/lib/env.sh.

CERT_MANAGER_DIR="$KUBENOVA_ROOT/hack/certmanager"
CERT_MANAGER_MODULE=github.com/cert-manager/cert-manager
# go.mod is the one place the release is pinned; the binary's name carries it, so a changed pin
# builds anew while a clean clone reuses the binary that is there.
CERT_MANAGER_VERSION="$(awk -v m="$CERT_MANAGER_MODULE" '$1 == m { print $2; exit }' \
    "$CERT_MANAGER_DIR/go.mod")"
CERT_MANAGER_BIN="$KUBENOVA_TOOLS_BIN/cert-manager-controller-$CERT_MANAGER_VERSION"
# shellcheck disable=SC2034  # used by up.sh and down.sh
CERT_MANAGER_PIDFILE="$KUBENOVA_STATE/run/cert-manager-controller.pid"
# shellcheck disable=SC2034  # used by up.sh
CERT_MANAGER_LOG="$KUBENOVA_STATE/logs/cert-manager-controller.log"
# Where a ClusterIssuer's Secrets live.
# shellcheck disable=SC2034  # used by up.sh
CERT_MANAGER_NAMESPACE=cert-manager

# The binary process PID was started from (its argv[0]), or nothing when it is gone.
cert_manager_argv0() {
    tr '\0' '\n' <"/proc/$1/cmdline" 2>/dev/null | head -n 1
}

# Print the pid from the pid file when that process is alive and runs one of our builds (this
# release's or, after a changed pin, an earlier one), else nothing: a recycled pid (the
# controller died, another program got its number) is never taken for it, nor signalled.
cert_manager_pid() {
    local pid stat
    [[ -r "$CERT_MANAGER_PIDFILE" ]] || return 0
    pid="$(tr -dc '0-9' <"$CERT_MANAGER_PIDFILE")"
    [[ -n "$pid" ]] || return 0
    # A zombie counts as gone: pid 1 on these machines does not reap orphans at once.
    stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || return 0
    stat="${stat##*) }"
    [[ ${stat%% *} != [ZX] ]] || return 0
    [[ "$(cert_manager_argv0 "$pid")" == "$KUBENOVA_TOOLS_BIN"/cert-manager-controller-* ]] &&
        echo "$pid"
    return 0
}

# Stop the controller named in the pid file, if it runs: SIGTERM, SIGKILL after 20 s.
cert_manager_stop() {
    local pid
    pid="$(cert_manager_pid)"
    if [[ -n "$pid" ]]; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 40); do
            [[ -n "$(cert_manager_pid)" ]] || break
            sleep 0.5
        done
        if [[ -n "$(cert_manager_pid)" ]]; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
        echo "stopped cert-manager-controller (pid $pid)"
    fi
    rm -f "$CERT_MANAGER_PIDFILE"
}
