#!/usr/bin/env bash
# `make down`: stop what `make up` (or `make dev-up`) started, and nothing else.
set -euo pipefail
. "$(dirname "$0")/lib/env.sh"
cd "$KUBENOVA_ROOT"
KUBECTL="$KUBENOVA_STATE/bin/kubectl"
. hack/lib/proc.sh

if "$KUBECTL" get --raw /readyz >/dev/null 2>&1; then
  # The chart's release: its instances are deleted while its operator runs, then it goes.
  hack/helm/install.sh --uninstall
  # Instances of the host-process stack, deleted while its operator and agent run (starting
  # them if `make test` or a hand stopped them), so no domain outlives the stack that made it.
  if [[ -n "$("$KUBECTL" get instances --all-namespaces -o name 2>/dev/null)" ]]; then
    hack/stack.sh start
    "$KUBECTL" delete instances --all --all-namespaces --timeout=90s || true
  fi
fi
hack/stack.sh stop
# cert-manager's controller (hack/certmanager/up.sh, which the tests start), before the
# apiserver it talks to.
hack/certmanager/down.sh
hack/guest/serve.sh stop
hack/node/down.sh
hack/kube/down.sh
hack/registry.sh stop
hack/services.sh down
