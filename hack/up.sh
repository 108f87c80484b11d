#!/usr/bin/env bash
# `make up`: the local cluster, Kubenova installed into it with its Helm chart as a user installs
# it, the flavors and the tiny guest's Image, then the demo instance, Running with its guest
# booted. From a fresh machine.
set -euo pipefail
. "$(dirname "$0")/lib/env.sh"
cd "$KUBENOVA_ROOT"
KUBECTL="$KUBENOVA_STATE/bin/kubectl"

step() { printf '\n==> %s\n' "$*"; }

hack/cluster-up.sh
# The host-process operator of `make dev-up` would handle the same objects as the chart's.
hack/stack.sh stop >/dev/null
step "helm install kubenova charts/kubenova (namespace kubenova-system)"
hack/helm/install.sh
step "flavors and the demo instance"
hack/demo.sh

cat <<MSG

Kubenova is up, installed with its chart (release kubenova, namespace kubenova-system).

  export KUBECONFIG=$KUBECONFIG
  $KUBECTL get pods -n kubenova-system
  $KUBECTL get instances -A -w
  $KUBECTL get hypervisors
  tail -f $KUBENOVA_INSTANCES_PATH/\$($KUBECTL get instance demo -o jsonpath='{.metadata.uid}')/console.log

Upgrade after a change: make images && hack/helm/install.sh      Stop everything: make down
MSG
