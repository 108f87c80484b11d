#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Build cert-manager's controller, at the release go.mod pins, into $KUBENOVA_TOOLS_BIN as
# cert-manager-controller-<version> (e.g. cert-manager-controller-v1.11.5). It is built from the
# wrapper module here (go.mod, go.sum), so every dependency is the one go.sum names. A binary
# that is already there is kept: its name carries its version, so a clean clone or CI reuses it,
# and a changed pin builds anew. Pass --force to rebuild anyway.
#
# The first build takes about 3 minutes on two cores; later builds reuse Go's module cache
# (~/go/pkg/mod) and build cache (~/.cache/go-build).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib/env.sh
. "$here/../lib/env.sh"
# shellcheck source=../lib/go.sh
. "$here/../lib/go.sh"
# shellcheck source=common.sh
. "$here/common.sh"

force=0
for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        *) echo "usage: $0 [--force]" >&2; exit 2 ;;
    esac
done

[[ $CERT_MANAGER_VERSION =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]] || {
    echo "build.sh: $here/go.mod pins no release of $CERT_MANAGER_MODULE" \
        "(found '${CERT_MANAGER_VERSION}')" >&2
    exit 1
}

if (( ! force )) && [[ -x "$CERT_MANAGER_BIN" ]]; then
    echo "build.sh: $CERT_MANAGER_BIN is present"
    exit 0
fi

kn_require_go
mkdir -p "$KUBENOVA_TOOLS_BIN"
start=$SECONDS
echo "build.sh: building cert-manager-controller-$CERT_MANAGER_VERSION from" \
    "$CERT_MANAGER_MODULE/cmd/controller..."
# Built beside the target and renamed into place, so an interrupted build never leaves a
# half-written binary under the versioned name, and a running controller is never written over.
tmp="$(mktemp "$KUBENOVA_TOOLS_BIN/.cert-manager-controller-$CERT_MANAGER_VERSION.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
# The version is stamped as cert-manager's own build does, so its log and user agent tell it.
# CGO_ENABLED=0: a static binary, as cert-manager releases it; no C toolchain needed.
# -mod=readonly: go.sum must already hold every dependency; nothing is resolved anew here.
(cd "$here" && CGO_ENABLED=0 GOFLAGS="-buildvcs=false -mod=readonly" go build -trimpath \
    -ldflags "-s -w -X $CERT_MANAGER_MODULE/pkg/util.AppVersion=$CERT_MANAGER_VERSION" \
    -o "$tmp" "$CERT_MANAGER_MODULE/cmd/controller")
chmod 0755 "$tmp"
mv -f "$tmp" "$CERT_MANAGER_BIN"
trap - EXIT
echo "build.sh: cert-manager-controller-$CERT_MANAGER_VERSION built in $((SECONDS - start))s"
