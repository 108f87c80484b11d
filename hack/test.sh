#!/usr/bin/env bash
# `make test`: bring up what the tests need (idempotently), then run every test.
#
# Two runs of pytest, because two operators must never watch the same cluster at once:
#   1. everything but the chart's tests, with the chart uninstalled: the e2e tests start their
#      own operator and agent processes (the demo's host processes are stopped first), on the
#      host's libvirtd;
#   2. the chart's tests (marker `chart`): Kubenova installed with Helm, as `make up` does, with
#      the chart's own libvirt pod instead of the host's libvirtd, which they leave installed.
set -euo pipefail
. "$(dirname "$0")/lib/env.sh"
cd "$KUBENOVA_ROOT"

hack/cluster-up.sh
# cert-manager's controller, which the tests of the cert-manager mode run (hack/certmanager/up.sh):
# built here, where a first build's minutes do not count against a test's timeout.
hack/certmanager/build.sh
# Everything the tests need is up now: a test that finds it missing fails instead of skipping.
export KUBENOVA_REQUIRE_SERVICES=1
hack/guest/serve.sh start
hack/helm/install.sh --uninstall
hack/services.sh libvirt-up
# The second libvirt host (its own mount namespace): live migration's real destination.
hack/services.sh libvirt2-up
# An uninstall removes the admission policies the chart brought; the host-process tests rely
# on them as on the CRDs.
"$KUBENOVA_STATE/bin/kubectl" apply --server-side --force-conflicts -f crds/ >/dev/null
hack/stack.sh stop
.venv/bin/pytest -q -p no:cacheprovider -m "not chart" "$@" tests
.venv/bin/pytest -q -p no:cacheprovider -m chart "$@" tests
