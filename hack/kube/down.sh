#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Stop the local control plane started by up.sh: exactly the process named in
# $KUBENOVA_STATE/run/kube.pid, and only if it still is our launcher. Idempotent.
# Data (etcd, certificates, kubeconfig) stays, so the next up.sh resumes the same cluster.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib/env.sh
. "$here/../lib/env.sh"
# shellcheck source=common.sh
. "$here/common.sh"

stop_timeout="${KUBENOVA_KUBE_STOP_TIMEOUT:-60}"

# shellcheck source=../lib/proc.sh
. "$KUBENOVA_ROOT/hack/lib/proc.sh"
for component in "${CONTROL_PLANE_COMPONENTS[@]}"; do
    proc_stop "$component"
done

pid="$(kube_pid)"
if [[ -z "$pid" ]]; then
    [[ -e "$KUBE_PIDFILE" ]] && echo "down.sh: removing stale $KUBE_PIDFILE"
    rm -f "$KUBE_PIDFILE"
    echo "down.sh: not running"
    exit 0
fi

# SIGTERM lets kube-apiserver drain and then the launcher close etcd cleanly.
kill -TERM "$pid"
deadline=$((SECONDS + stop_timeout))
while proc_alive "$pid"; do
    if ((SECONDS >= deadline)); then
        echo "down.sh: pid $pid still running after ${stop_timeout}s; sending SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
        break
    fi
    sleep 0.5
done
rm -f "$KUBE_PIDFILE"
echo "down.sh: stopped (pid $pid)"
