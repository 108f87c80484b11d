#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Build the local control plane (kubenova-kube: kube-apiserver + embedded etcd) and a kubectl of
# the same release into $KUBENOVA_STATE/bin. Skipped when both binaries are newer than every
# input (go.mod, go.sum, *.go, this script); pass --force to rebuild anyway.
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
targets=("$bin_dir/kubenova-kube" "$bin_dir/kubectl")
inputs=("$here/go.mod" "$here/go.sum" "$here/build.sh" "$here"/*.go)

# go.mod is the truth for what gets built; the version in env.sh names it for everyone else.
# A mismatch means one was changed without the other, and the stamped version would lie.
pinned="$(awk '$1 == "k8s.io/kubernetes" { print $2 }' "$here/go.mod")"
if [[ "$pinned" != "$KUBENOVA_K8S_VERSION" ]]; then
    echo "build.sh: go.mod pins k8s.io/kubernetes $pinned but KUBENOVA_K8S_VERSION is" \
        "$KUBENOVA_K8S_VERSION; change both together (see the comment at the top of go.mod)" >&2
    exit 1
fi

up_to_date() {
    local t i
    for t in "${targets[@]}"; do
        [[ -x "$t" ]] || return 1
        for i in "${inputs[@]}"; do
            [[ "$t" -nt "$i" ]] || return 1
        done
    done
}

if (( ! force )) && up_to_date; then
    echo "build.sh: $bin_dir/{kubenova-kube,kubectl} are up to date ($KUBENOVA_K8S_VERSION)"
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

mkdir -p "$bin_dir"
build() {
    local out="$1" pkg="$2" start=$SECONDS
    echo "build.sh: building $(basename "$out") from $pkg ($pinned)..."
    # Build beside the target and rename, so an interrupted build never leaves a binary that
    # looks newer than its inputs.
    # CGO_ENABLED=0: static binaries, as Kubernetes releases them; no C toolchain needed.
    (cd "$here" && CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags "$ldflags" \
        -o "$out.tmp" "$pkg")
    mv -f "$out.tmp" "$out"
    echo "build.sh: $(basename "$out") built in $((SECONDS - start))s"
}
build "$bin_dir/kubenova-kube" .
build "$bin_dir/kubectl" k8s.io/kubernetes/cmd/kubectl
