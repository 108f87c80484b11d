#!/usr/bin/env bash
# `make test`: bring up what the tests need (idempotently), then run every test: the services,
# the cluster (control plane and node) with the images its pods use, the guest image.
# The e2e tests start their own operator and agent processes, so the demo's are
# stopped first (`make up` starts them again).
set -euo pipefail
. "$(dirname "$0")/lib/env.sh"
cd "$KUBENOVA_ROOT"
KUBECTL="$KUBENOVA_STATE/bin/kubectl"

hack/services.sh up
hack/kube/up.sh
hack/registry.sh start
hack/images/build.sh pause coredns toolbox
hack/node/up.sh
"$KUBECTL" apply -f crds/ >/dev/null
"$KUBECTL" wait --for=condition=Established --timeout=60s crd --all >/dev/null
hack/guest/build.sh
hack/guest/serve.sh start
hack/helm/build.sh
hack/stack.sh stop
exec .venv/bin/pytest -q -p no:cacheprovider "$@" tests
