#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Install or upgrade Kubenova in the local cluster with its own chart, the way a user installs it
# on any cluster, with the images of the last `hack/images/build.sh` (its tag) from the registry
# on this machine, then register the tiny guest (served by the chart's image server) as the
# Image `kubenova-tiny`.
#
#   hack/helm/install.sh [HELM-FLAGS...]     e.g. --set operator.logLevel=DEBUG
#   hack/helm/install.sh --uninstall         helm uninstall, after deleting every Instance
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib/env.sh
. "$here/../lib/env.sh"
# shellcheck source=versions.sh
. "$here/versions.sh"

RELEASE="${KUBENOVA_RELEASE:-kubenova}"
NAMESPACE="${KUBENOVA_NAMESPACE:-kubenova-system}"
HELM="$KUBENOVA_TOOLS_BIN/helm-$KUBENOVA_HELM_VERSION"
KUBECTL="$KUBENOVA_STATE/bin/kubectl"

[[ -x "$HELM" ]] || "$here/build.sh"

if [[ "${1:-}" == --uninstall ]]; then
    if "$HELM" status "$RELEASE" -n "$NAMESPACE" >/dev/null 2>&1; then
        # The chart's README: delete the Instances while the operator still runs, so their
        # guests and records go with them; then uninstall.
        "$KUBECTL" delete instances --all --all-namespaces --timeout=120s || true
        "$HELM" uninstall "$RELEASE" -n "$NAMESPACE" --wait --timeout 5m
    fi
    exit 0
fi

tag_file="$KUBENOVA_STATE/images/tag"
[[ -s "$tag_file" ]] || {
    echo "install.sh: no $tag_file; build the images first (make images)" >&2
    exit 1
}
tag="$(cat "$tag_file")"

# The tests apply crds/ with kubectl; such objects are handed to the release (the chart carries
# the same ones) instead of making the install fail on them, and --force-conflicts below lets
# the release own the fields kubectl wrote.
mapfile -t existing < <("$KUBECTL" get -f "$KUBENOVA_ROOT/crds/" -o name --ignore-not-found 2>/dev/null)
if ((${#existing[@]})); then
    "$KUBECTL" label --overwrite "${existing[@]}" app.kubernetes.io/managed-by=Helm >/dev/null
    "$KUBECTL" annotate --overwrite "${existing[@]}" meta.helm.sh/release-name="$RELEASE" \
        meta.helm.sh/release-namespace="$NAMESPACE" >/dev/null
fi

start=$SECONDS
"$HELM" upgrade --install "$RELEASE" "$KUBENOVA_ROOT/charts/kubenova" \
    --namespace "$NAMESPACE" --create-namespace \
    -f "$here/values-local.yaml" --set image.tag="$tag" \
    --force-conflicts --wait --timeout 15m "$@"
echo "install.sh: $RELEASE ($tag) installed in $NAMESPACE in $((SECONDS - start))s"

"$KUBENOVA_ROOT/hack/register-image.sh" \
    "http://$RELEASE-image-server.$NAMESPACE.svc:8080/kubenova-tiny.qcow2"
