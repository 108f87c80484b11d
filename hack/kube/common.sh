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

# The one node of the local cluster: its name (the kubelet's, and its certificate's) and the
# address it is reached at. The apiserver is advertised there too, since the `kubernetes`
# Service's endpoint may not be a loopback address and pods must reach it.
KUBENOVA_NODE_NAME="${KUBENOVA_NODE_NAME:-$(hostname -s)}"
node_ip() {
    if [[ -n "${KUBENOVA_NODE_IP:-}" ]]; then
        echo "$KUBENOVA_NODE_IP"
        return
    fi
    # The source address of the default route (`ip route get` only looks the route up).
    ip -4 route get 192.0.2.255 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p' | head -n1
}

# The control plane's other processes, run from the same release's binaries.
CONTROL_PLANE_COMPONENTS=(kube-controller-manager kube-scheduler)
