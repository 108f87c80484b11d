#!/usr/bin/env bash
# The demo of `make up` and `make dev-up`: apply the flavors and the Instance `demo`, then wait
# until it is Ready and its guest has finished booting. Under software emulation the boot takes
# most of a core for a while, which would also skew a benchmark started right after, so the
# stack is handed over only once it is done.
set -euo pipefail
. "$(dirname "$0")/lib/env.sh"
cd "$KUBENOVA_ROOT"
KUBECTL="$KUBENOVA_STATE/bin/kubectl"

"$KUBECTL" apply -f examples/01-flavors.yaml
"$KUBECTL" apply -f examples/02-demo-instance.yaml
echo "waiting for the demo instance to run and its guest to boot"
"$KUBECTL" wait --for=condition=Ready --timeout=300s instance/demo
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
