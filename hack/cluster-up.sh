#!/usr/bin/env bash
# The local cluster and what runs beside it, shared by `make up`, `make dev-up` and `make test`:
# the host's services (MariaDB and RabbitMQ, which the tests and `make dev-up` use), the control
# plane, the registry with every image, the node (containerd, kubelet, kube-proxy, CoreDNS), the
# CRDs, the tiny guest and Helm. Idempotent.
#
# libvirt is left as it is: the node's libvirtd is either the chart's libvirt pod (`make up`,
# hack/helm/install.sh stops the host's first) or the host's own (`make dev-up` and the tests
# without the chart start it with `hack/services.sh libvirt-up` once the chart is gone).
set -euo pipefail
. "$(dirname "$0")/lib/env.sh"
cd "$KUBENOVA_ROOT"
KUBECTL="$KUBENOVA_STATE/bin/kubectl"

step() { printf '\n==> %s\n' "$*"; }

step "services: MariaDB, RabbitMQ"
hack/services.sh up --no-libvirt
step "Kubernetes control plane: kube-apiserver (etcd embedded), controller-manager, scheduler"
hack/kube/up.sh
step "the test guest image"
hack/guest/build.sh
step "the image registry and Kubenova's images"
hack/registry.sh start
hack/images/build.sh
step "the node: containerd, kubelet, kube-proxy, CoreDNS"
hack/node/up.sh
step "CRDs and Helm"
"$KUBECTL" apply --server-side --force-conflicts -f crds/ >/dev/null
"$KUBECTL" wait --for=condition=Established --timeout=60s crd --all >/dev/null
hack/helm/build.sh
