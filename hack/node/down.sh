#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Undo hack/node/up.sh: remove every pod sandbox (so CNI releases its addresses and rules), stop
# kube-proxy, the kubelet and containerd, then clean what they leave on the machine: containers'
# shims, mounts, kube-proxy's iptables rules, the pod bridge, the kubepods cgroups and the
# kubelet's /var/log/containers links. Images stay in containerd's store for the next start.
# Idempotent.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib/env.sh
. "$here/../lib/env.sh"
# shellcheck source=common.sh
. "$here/common.sh"

crictl_() {
    "$CRICTL_DIR/crictl" --runtime-endpoint "unix://$CONTAINERD_SOCKET" --timeout 30s "$@"
}

# The kubelet first: with it running, it would start the pods again.
proc_stop kubelet
if [[ -S "$CONTAINERD_SOCKET" && -x "$CRICTL_DIR/crictl" ]]; then
    mapfile -t sandboxes < <(crictl_ pods -q 2>/dev/null || true)
    if ((${#sandboxes[@]})); then
        echo "node/down.sh: removing ${#sandboxes[@]} pod sandbox(es)"
        crictl_ stopp "${sandboxes[@]}" >/dev/null 2>&1 || true
        crictl_ rmp -f "${sandboxes[@]}" >/dev/null 2>&1 || true
    fi
fi
proc_stop containerd
# A container's shim outlives containerd by design; with no sandboxes left, any still running
# for our socket is a leftover.
pkill -f -- "containerd-shim-runc-v2 .*-address $CONTAINERD_SOCKET" 2>/dev/null || true

if proc_running kube-proxy || [[ -x "$KUBENOVA_STATE/bin/kube-proxy" ]]; then
    proc_stop kube-proxy
    "$KUBENOVA_STATE/bin/kube-proxy" --cleanup >/dev/null 2>&1 || true
fi

# Mounts left under the runtime's and the kubelet's directories (overlay roots, shm, secrets'
# tmpfs), deepest first.
# awk, not grep: no mount left is no error.
awk -v runtime="$NODE_RUN_DIR/" -v kubelet="$KUBENOVA_NODE_ROOT/" \
    'index($2, runtime) == 1 || index($2, kubelet) == 1 {print $2}' /proc/mounts \
    | sort -r \
    | while read -r mount_point; do umount -l "$mount_point" 2>/dev/null || true; done

ip link delete "$CNI_BRIDGE" 2>/dev/null || true
rm -rf "$NODE_RUN_DIR/cni-ipam"

# The kubelet's cgroups (one tree per v1 controller), leaves first.
for controller in /sys/fs/cgroup/*/; do
    [[ -d "$controller/kubepods" ]] || continue
    find "$controller/kubepods" -depth -type d -exec rmdir {} + 2>/dev/null || true
done

# The kubelet links every container's log here, whatever its pod-logs directory is.
if [[ -d /var/log/containers ]]; then
    find /var/log/containers -maxdepth 1 -type l -delete
    rmdir /var/log/containers 2>/dev/null || true
fi
echo "node/down.sh: node stopped and cleaned"
