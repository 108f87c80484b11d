#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Build the node's runtime pieces that Debian does not package at the versions we need, from the
# Go module proxy at pinned releases, into $KUBENOVA_TOOLS_BIN (kept across clones):
#   containerd (with its runc shim and ctr)  the CRI runtime the kubelet talks to
#   coredns                                  the cluster's DNS, run as a pod
#   crictl                                   the CRI client, for looking at the node by hand
# runc and the CNI plugins come from Debian (hack/node/up.sh installs them). Each tool is built
# once per version; the version is in its directory's name, so a changed pin builds anew.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib/env.sh
. "$here/../lib/env.sh"
# shellcheck source=../lib/go.sh
. "$here/../lib/go.sh"
# shellcheck source=versions.sh
. "$here/versions.sh"

# go_install DIR TAGS MODULE@VERSION PACKAGE...: build PACKAGEs of one module release into DIR.
go_install() {
    local dir=$1 tags=$2 version=$3 start=$SECONDS
    shift 3
    if [[ -f "$dir/.complete" ]]; then
        return 0
    fi
    kn_require_go
    echo "node/build.sh: building ${*##*/} at $version..."
    rm -rf "$dir.tmp"
    mkdir -p "$dir.tmp"
    local pkgs=() pkg
    for pkg in "$@"; do pkgs+=("$pkg@$version"); done
    # CGO_ENABLED=0: static binaries that run in any container image or on the host alike.
    GOBIN="$dir.tmp" CGO_ENABLED=0 GOFLAGS=-buildvcs=false \
        go install -trimpath -tags "$tags" -ldflags "-s -w" "${pkgs[@]}"
    touch "$dir.tmp/.complete"
    rm -rf "$dir"
    mv "$dir.tmp" "$dir"
    echo "node/build.sh: built in $((SECONDS - start))s into $dir"
}

# containerd's own release build leaves out the snapshotters that need cgo or kernel features
# this node does not use.
go_install "$CONTAINERD_DIR" "no_btrfs,no_devmapper,no_zfs" "$CONTAINERD_VERSION" \
    github.com/containerd/containerd/v2/cmd/containerd \
    github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
    github.com/containerd/containerd/v2/cmd/ctr
go_install "$COREDNS_DIR" "" "$COREDNS_VERSION" github.com/coredns/coredns
go_install "$CRICTL_DIR" "" "$CRICTL_VERSION" sigs.k8s.io/cri-tools/cmd/crictl
