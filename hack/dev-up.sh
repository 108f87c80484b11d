#!/usr/bin/env bash
# `make dev-up`: the local cluster with Kubenova's operator and this host's agent run as
# processes on the host (the road `make bench` measures, and a quick one for iterating on the
# code: no image to build), and the demo instance.
set -euo pipefail
. "$(dirname "$0")/lib/env.sh"
cd "$KUBENOVA_ROOT"
KUBECTL="$KUBENOVA_STATE/bin/kubectl"

step() { printf '\n==> %s\n' "$*"; }

hack/cluster-up.sh
# The chart's operator would handle the same objects as the host processes started here.
step "helm uninstall kubenova, if installed"
hack/helm/install.sh --uninstall
step "the host's libvirtd, virtlogd and network default"
hack/services.sh libvirt-up
step "database: kubenova-manage db sync"
.venv/bin/kubenova-manage db sync
hack/guest/serve.sh start
step "operator and agent"
hack/stack.sh start
step "flavors, image and the demo instance"
hack/register-image.sh
hack/demo.sh

cat <<MSG

Kubenova is up, its operator and agent running as host processes. Watch the demo instance:

  export KUBECONFIG=$KUBECONFIG
  $KUBECTL get instances -w
  $KUBECTL get hypervisors
  tail -f $KUBENOVA_INSTANCES_PATH/\$($KUBECTL get instance demo -o jsonpath='{.metadata.uid}')/console.log

Logs: $KUBENOVA_STATE/logs/   Stop everything: make down
MSG
