# shellcheck shell=bash
# Shared by up.sh and down.sh; source it after hack/lib/env.sh.

KUBE_BIN="$KUBENOVA_STATE/bin/kubenova-kube"
KUBECTL="$KUBENOVA_STATE/bin/kubectl"
KUBE_PIDFILE="$KUBENOVA_STATE/run/kube.pid"
# shellcheck disable=SC2034  # used by up.sh
KUBE_LOG="$KUBENOVA_STATE/logs/kube-apiserver.log"

# Print the pid from the pid file when that process is alive and is our launcher, else nothing.
# Checking argv[0] keeps a recycled pid (the launcher died, another program got its number)
# from being mistaken for the control plane, and from being signalled by down.sh.
kube_pid() {
    local pid argv0
    [[ -r "$KUBE_PIDFILE" ]] || return 0
    pid="$(tr -dc '0-9' < "$KUBE_PIDFILE")"
    [[ -n "$pid" ]] || return 0
    [[ -r "/proc/$pid/cmdline" ]] || return 0
    argv0="$(tr '\0' '\n' < "/proc/$pid/cmdline" | head -n 1)"
    [[ "$argv0" == "$KUBE_BIN" ]] && echo "$pid"
    return 0
}

# Succeed when the API server answers /readyz with "ok" to the admin kubeconfig.
kube_ready() {
    [[ -x "$KUBECTL" && -r "$KUBECONFIG" ]] || return 1
    [[ "$("$KUBECTL" --request-timeout=5s get --raw /readyz 2>/dev/null)" == "ok" ]]
}
