#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Build the Helm binaries the chart is linted, rendered and installed with, into
# $KUBENOVA_TOOLS_BIN as helm-<version> (e.g. helm-v4.3.2 and helm-v3.21.4). Helm is not packaged
# by Debian, so it is built from the Go module proxy at the versions pinned in versions.sh.
# A binary that is already there is kept: its name carries its version, so a clean clone or CI
# reuses it, and a changed pin builds anew. Pass --force to rebuild anyway.
#
# The first build of each takes about 5 minutes on two cores; later builds reuse Go's module
# cache (~/go/pkg/mod) and build cache (~/.cache/go-build).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib/env.sh
. "$here/../lib/env.sh"
# shellcheck source=../lib/go.sh
. "$here/../lib/go.sh"
# shellcheck source=versions.sh
. "$here/versions.sh"

force=0
for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        *) echo "usage: $0 [--force]" >&2; exit 2 ;;
    esac
done

mkdir -p "$KUBENOVA_TOOLS_BIN"

build() {
    local version="$1" major out start=$SECONDS
    major="${version%%.*}"
    out="$KUBENOVA_TOOLS_BIN/helm-$version"
    if (( ! force )) && [[ -x "$out" ]]; then
        echo "build.sh: $out is present"
        return 0
    fi
    kn_require_go
    local pkg="helm.sh/helm/$major/cmd/helm@$version"
    echo "build.sh: building helm-$version from $pkg..."
    # `go install pkg@version` builds the module exactly as released (its own go.mod and
    # go.sum), with no module of ours in the way. It goes to a private GOBIN, then is renamed
    # into place, so an interrupted build never leaves a half-written helm-<version> behind.
    local gobin
    gobin="$(mktemp -d "$KUBENOVA_TOOLS_BIN/.helm-$version.XXXXXX")"
    # shellcheck disable=SC2064  # expand now: the trap must remove this build's directory
    trap "rm -rf '$gobin'" RETURN
    # The version is stamped the way Helm's own Makefile does, so `helm version` tells the truth.
    local ldflags="-s -w -X helm.sh/helm/$major/internal/version.version=$version"
    if [[ $major == v3 ]]; then
        # Helm 3 takes the Kubernetes version it renders and lints for (.Capabilities.KubeVersion,
        # the deprecation check) from ldflags, as its Makefile derives them from client-go;
        # without them it assumes Kubernetes 1.20 and refuses the chart's kubeVersion.
        local gomod client_go minor p
        gomod="$(go mod download -json "helm.sh/helm/v3@$version" |
            sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
        client_go="$(awk '$1 == "k8s.io/client-go" { print $2 }' "$gomod")"
        minor="${client_go#v0.}"
        minor="${minor%%.*}"
        [[ $minor =~ ^[0-9]+$ ]] || {
            echo "build.sh: cannot tell the client-go version of helm $version" >&2
            return 1
        }
        for p in pkg/lint/rules pkg/chartutil; do
            ldflags+=" -X helm.sh/helm/v3/$p.k8sVersionMajor=1 -X helm.sh/helm/v3/$p.k8sVersionMinor=$minor"
        done
    fi
    # CGO_ENABLED=0: a static binary, as Helm releases it; no C toolchain needed.
    GOBIN="$gobin" CGO_ENABLED=0 GOFLAGS="-buildvcs=false" go install -trimpath \
        -ldflags "$ldflags" "$pkg"
    mv -f "$gobin/helm" "$out"
    echo "build.sh: helm-$version built in $((SECONDS - start))s"
}

build "$KUBENOVA_HELM_VERSION"
build "$KUBENOVA_HELM3_VERSION"
