#!/usr/bin/env bash
# `make down`: stop what `make up` started, and nothing else.
set -euo pipefail
. "$(dirname "$0")/lib/env.sh"
cd "$KUBENOVA_ROOT"
KUBECTL="$KUBENOVA_STATE/bin/kubectl"
. hack/lib/proc.sh

# Delete instances while the operator and agent still run, so no domain is orphaned.
if proc_running operator && "$KUBECTL" get --raw /readyz >/dev/null 2>&1; then
  "$KUBECTL" delete instances --all --all-namespaces --timeout=60s || true
fi
hack/stack.sh stop
hack/guest/serve.sh stop
hack/kube/down.sh
hack/services.sh down
