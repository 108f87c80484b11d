#!/usr/bin/env bash
# The local cluster and what runs beside it, shared by `make up`, `make dev-up` and `make test`:
# the host's services (MariaDB, RabbitMQ and libvirtd, which the tests and the chart's host-mode
# agent use), the control plane, the registry with every image, the node (containerd, kubelet,
# kube-proxy, CoreDNS), the CRDs, the tiny guest and Helm. Idempotent.
set -euo pipefail
. "$(dirname "$0")/lib/env.sh"
cd "$KUBENOVA_ROOT"
KUBECTL="$KUBENOVA_STATE/bin/kubectl"

step() { printf '\n==> %s\n' "$*"; }

step "services: MariaDB, RabbitMQ, libvirtd, virtlogd, network default"
hack/services.sh up
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
