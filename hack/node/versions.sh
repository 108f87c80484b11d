# shellcheck shell=bash disable=SC2034  # used by the scripts that source this
# The pinned releases of the node's runtime pieces, and where their builds are kept.
CONTAINERD_VERSION=v2.4.2
COREDNS_VERSION=v1.15.0
CRICTL_VERSION=v1.37.0

CONTAINERD_DIR="$KUBENOVA_TOOLS_BIN/containerd-$CONTAINERD_VERSION"
COREDNS_DIR="$KUBENOVA_TOOLS_BIN/coredns-$COREDNS_VERSION"
CRICTL_DIR="$KUBENOVA_TOOLS_BIN/crictl-$CRICTL_VERSION"
