#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Build the local cluster's Kubernetes binaries, all from the one pinned release: kubenova-kube
# (kube-apiserver + embedded etcd), kubectl, kube-controller-manager, kube-scheduler, kubelet and
# kube-proxy. They are built once per set of inputs (go.mod, go.sum, *.go, this script) into
# $KUBENOVA_CACHE/kube/<release>-<hash>/, which a clean clone on the same machine reuses, then
# copied into $KUBENOVA_STATE/bin. Pass --force to rebuild anyway.
#
# The first build compiles most of Kubernetes and takes several minutes on two cores; later
# builds reuse Go's module cache (~/go/pkg/mod) and build cache (~/.cache/go-build).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib/env.sh
. "$here/../lib/env.sh"

force=0
for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        *) echo "usage: $0 [--force]" >&2; exit 2 ;;
    esac
done

bin_dir="$KUBENOVA_STATE/bin"
# name=package: each binary and the command it is built from.
commands=(
    kubenova-kube=.
    kubectl=k8s.io/kubernetes/cmd/kubectl
    kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager
    kube-scheduler=k8s.io/kubernetes/cmd/kube-scheduler
    kubelet=k8s.io/kubernetes/cmd/kubelet
    kube-proxy=k8s.io/kubernetes/cmd/kube-proxy
)
inputs=("$here/go.mod" "$here/go.sum" "$here/build.sh" "$here"/*.go)

# go.mod is the truth for what gets built; the version in env.sh names it for everyone else.
# A mismatch means one was changed without the other, and the stamped version would lie.
pinned="$(awk '$1 == "k8s.io/kubernetes" { print $2 }' "$here/go.mod")"
if [[ "$pinned" != "$KUBENOVA_K8S_VERSION" ]]; then
    echo "build.sh: go.mod pins k8s.io/kubernetes $pinned but KUBENOVA_K8S_VERSION is" \
        "$KUBENOVA_K8S_VERSION; change both together (see the comment at the top of go.mod)" >&2
    exit 1
fi

inputs_hash="$(cat "${inputs[@]}" | sha256sum | cut -c1-16)"
cache_dir="$KUBENOVA_CACHE/kube/$pinned-$inputs_hash"

install_from_cache() {
    local entry name
    mkdir -p "$bin_dir"
    for entry in "${commands[@]}"; do
        name="${entry%%=*}"
        # Copy beside the target and rename: a running binary is never written in place.
        cp -f "$cache_dir/$name" "$bin_dir/$name.tmp"
        mv -f "$bin_dir/$name.tmp" "$bin_dir/$name"
    done
}

cached() {
    local entry
    for entry in "${commands[@]}"; do
        [[ -x "$cache_dir/${entry%%=*}" ]] || return 1
    done
}

installed() {
    local entry
    for entry in "${commands[@]}"; do
        cmp -s "$cache_dir/${entry%%=*}" "$bin_dir/${entry%%=*}" || return 1
    done
}

if (( ! force )) && cached; then
    if ! installed; then
        install_from_cache
    fi
    echo "build.sh: Kubernetes $pinned binaries up to date in $bin_dir (cache $cache_dir)"
    exit 0
fi

# Stamp the release the way Kubernetes' own build does (hack/lib/version.sh), so /version and
# `kubectl version` report it instead of v0.0.0-master, and kubectl's skew check is meaningful.
version="${pinned#v}"
major="${version%%.*}"
minor="${version#*.}"
minor="${minor%%.*}"
build_date="$(cd "$here" && go list -m -f '{{if .Time}}{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}{{end}}' k8s.io/kubernetes)"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$pinned -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=${build_date:-1970-01-01T00:00:00Z}"
done

mkdir -p "$cache_dir"
build() {
    local name="$1" pkg="$2" start=$SECONDS
    echo "build.sh: building $name from $pkg ($pinned)..."
    # Build beside the target and rename, so an interrupted build never leaves a binary that
    # looks complete.
    # CGO_ENABLED=0: static binaries, as Kubernetes releases them; no C toolchain needed.
    (cd "$here" && CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags "$ldflags" \
        -o "$cache_dir/$name.tmp" "$pkg")
    mv -f "$cache_dir/$name.tmp" "$cache_dir/$name"
    echo "build.sh: $name built in $((SECONDS - start))s"
}
for entry in "${commands[@]}"; do
    name="${entry%%=*}"
    if (( force )) || [[ ! -x "$cache_dir/$name" ]]; then
        build "$name" "${entry#*=}"
    fi
done
install_from_cache
