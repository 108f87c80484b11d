#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Install or upgrade Kubenova in the local cluster with its own chart, the way a user installs it
# on any cluster, with the images of the last `hack/images/build.sh` (its tag) from the registry
# on this machine, then register the tiny guest (served by the chart's image server) as the
# Image `kubenova-tiny`.
#
#   hack/helm/install.sh [HELM-FLAGS...]     e.g. --set operator.logLevel=DEBUG
#   hack/helm/install.sh --uninstall         helm uninstall, after deleting every Instance
#
# KUBENOVA_INSTALL_HELM=v3.21.4 (the version of a helm-<version> that hack/helm/build.sh built)
# installs with that Helm instead of $KUBENOVA_HELM_VERSION, e.g. the Helm 3 the tests check.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib/env.sh
. "$here/../lib/env.sh"
# shellcheck source=versions.sh
. "$here/versions.sh"

RELEASE="${KUBENOVA_RELEASE:-kubenova}"
NAMESPACE="${KUBENOVA_NAMESPACE:-kubenova-system}"
HELM_VERSION="${KUBENOVA_INSTALL_HELM:-$KUBENOVA_HELM_VERSION}"
HELM="$KUBENOVA_TOOLS_BIN/helm-$HELM_VERSION"
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

# The chart's libvirt pod (values-local.yaml keeps the chart's default, libvirt.mode=container)
# takes the node's /run/libvirt: the host's libvirtd must stop first. Running guests go on, and
# the pod's libvirtd takes them over. The second host's libvirtd (hack/services.sh libvirt2-up,
# for live migration tests) stops too: the pod refuses to start beside any libvirtd.
case " $* " in
*libvirt.mode=host*) ;;
*)
	"$KUBENOVA_ROOT/hack/services.sh" libvirt-down
	"$KUBENOVA_ROOT/hack/services.sh" libvirt2-down
	;;
esac

# Helm 4 applies server-side; --force-conflicts lets it own the fields kubectl wrote (above).
# --server-side=true: by default ("auto") Helm 4 keeps the method of the release it upgrades,
# which for a release Helm 3 made is client-side, where --force-conflicts is refused.
# Helm 3 patches client-side and has neither flag.
apply_flags=(--server-side=true --force-conflicts)
[[ $HELM_VERSION == v3.* ]] && apply_flags=()

start=$SECONDS
"$HELM" upgrade --install "$RELEASE" "$KUBENOVA_ROOT/charts/kubenova" \
    --namespace "$NAMESPACE" --create-namespace \
    -f "$here/values-local.yaml" --set image.tag="$tag" \
    "${apply_flags[@]}" --wait --timeout 15m "$@"
echo "install.sh: $RELEASE ($tag) installed in $NAMESPACE in $((SECONDS - start))s"

"$KUBENOVA_ROOT/hack/register-image.sh" \
    "http://$RELEASE-image-server.$NAMESPACE.svc:8080/kubenova-tiny.qcow2"
