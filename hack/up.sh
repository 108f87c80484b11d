#!/usr/bin/env bash
# `make up`: the whole local stack and a demo instance, from a fresh machine.
set -euo pipefail
. "$(dirname "$0")/lib/env.sh"
cd "$KUBENOVA_ROOT"
KUBECTL="$KUBENOVA_STATE/bin/kubectl"

step() { printf '\n==> %s\n' "$*"; }

step "services: MariaDB, RabbitMQ, libvirtd, virtlogd, network default"
hack/services.sh up
step "Kubernetes control plane: kube-apiserver (etcd embedded), controller-manager, scheduler"
hack/kube/up.sh
step "the image registry and the node's images"
hack/registry.sh start
hack/images/build.sh pause coredns toolbox
step "the node: containerd, kubelet, kube-proxy, CoreDNS"
hack/node/up.sh
step "CRDs"
"$KUBECTL" apply -f crds/
"$KUBECTL" wait --for=condition=Established --timeout=60s crd --all >/dev/null
step "database: kubenova-manage db sync"
.venv/bin/kubenova-manage db sync
step "test guest image"
hack/guest/build.sh
hack/guest/serve.sh start
step "operator and agent"
hack/stack.sh start
step "flavors, image and the demo instance"
hack/register-image.sh
"$KUBECTL" apply -f examples/01-flavors.yaml
"$KUBECTL" apply -f examples/02-demo-instance.yaml

# Return with the demo usable and its boot over: under software emulation the guest's boot
# takes most of a core for a while, which would also skew a benchmark started right after.
step "waiting for the demo instance to run and its guest to boot"
"$KUBECTL" wait --for=jsonpath='{.status.phase}'=Running --timeout=300s instance/demo
demo_console="$KUBENOVA_INSTANCES_PATH/$("$KUBECTL" get instance demo -o jsonpath='{.metadata.uid}')/console.log"
for _ in $(seq 300); do
  grep -qs 'kubenova-guest: ready' "$demo_console" && break
  sleep 1
done
if grep -qs 'kubenova-guest: ready' "$demo_console"; then
  echo "demo guest ready ($demo_console)"
else
  echo "warning: the demo guest has not said it is ready after 300 s; see $demo_console" >&2
fi

cat <<MSG

Kubenova is up. Watch the demo instance:

  export KUBECONFIG=$KUBECONFIG
  $KUBECTL get instances -w
  $KUBECTL get hypervisors
  tail -f $KUBENOVA_INSTANCES_PATH/\$($KUBECTL get instance demo -o jsonpath='{.metadata.uid}')/console.log

Logs: $KUBENOVA_STATE/logs/   Stop everything: make down
MSG
