# shellcheck shell=bash disable=SC2034  # variables are used by the scripts that source this
# Shared by hack/node/*.sh; source it after hack/lib/env.sh.

here_node="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.sh
. "$here_node/versions.sh"
# shellcheck source=../kube/common.sh
. "$here_node/../kube/common.sh"
# shellcheck source=../lib/proc.sh
. "$here_node/../lib/proc.sh"
# shellcheck source=../lib/daemon.sh
. "$here_node/../lib/daemon.sh"

# The machine's runtime state (kept across clones, like the images it holds).
KUBENOVA_NODE_ROOT="${KUBENOVA_NODE_ROOT:-/var/lib/kubenova/node}"
CONTAINERD_ROOT="$KUBENOVA_NODE_ROOT/containerd"
KUBELET_ROOT="$KUBENOVA_NODE_ROOT/kubelet"
NODE_LOG_DIR="$KUBENOVA_NODE_ROOT/pod-logs"
NODE_RUN_DIR=/run/kubenova
CONTAINERD_SOCKET="$NODE_RUN_DIR/containerd/containerd.sock"
# This clone's generated configuration.
NODE_CONFIG_DIR="$KUBENOVA_STATE/node"
CNI_CONF_DIR="$NODE_CONFIG_DIR/cni"
CONTAINERD_HOSTS_DIR="$NODE_CONFIG_DIR/registry-hosts"

# Pods' addresses, and the bridge that joins them to the node.
POD_CIDR=10.88.0.0/16
CNI_BRIDGE=kubenova0
# The tenth address of the Service range (10.0.0.0/24, see hack/kube/up.sh), as is usual.
CLUSTER_DNS_IP=10.0.0.10

PAUSE_IMAGE="$KUBENOVA_REGISTRY/kubenova/pause:3.10"
COREDNS_IMAGE="$KUBENOVA_REGISTRY/kubenova/coredns:${COREDNS_VERSION#v}"

NODE_PACKAGES=(runc containernetworking-plugins iptables conntrack iproute2 ethtool socat)

# node_wait SECONDS WHAT COMMAND...: kn_wait_until, and on a timeout the command's own last
# word (why it is not ready) and where the logs are.
node_wait() {
    local timeout=$1 what=$2
    shift 2
    kn_wait_until "$timeout" "$what" "$@" && return 0
    "$@" || true
    kn_log "logs in $KUBENOVA_STATE/logs/"
    return 1
}

# The processes of the node, in the order they start.
NODE_COMPONENTS=(containerd kubelet kube-proxy)
