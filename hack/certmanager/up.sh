#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# cert-manager on the local cluster, for the tests of Kubenova's cert-manager mode: build its
# controller if needed (build.sh), apply its CRDs, and run the controller as a host process
# against the local cluster, as hack/kube/up.sh runs kube-controller-manager. Only the
# controller: the CRDs serve one version (v1), so no conversion webhook is needed, and its own
# approver approves CertificateRequests; the validating webhook and the CA injector are left out.
#
#   hack/certmanager/up.sh     # idempotent: a running controller is kept, and checked
#
# Returns once the controller issues: a selfSigned Issuer and a Certificate from it in the
# cert-manager namespace become Ready (then both are deleted). Log in
# $KUBENOVA_STATE/logs/cert-manager-controller.log, pid in
# $KUBENOVA_STATE/run/cert-manager-controller.pid. Stop with hack/certmanager/down.sh.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib/env.sh
. "$here/../lib/env.sh"
# shellcheck source=../lib/go.sh
. "$here/../lib/go.sh"
# shellcheck source=common.sh
. "$here/common.sh"
# shellcheck source=../lib/proc.sh
. "$KUBENOVA_ROOT/hack/lib/proc.sh"

KUBECTL="$KUBENOVA_STATE/bin/kubectl"
start_timeout="${KUBENOVA_CERT_MANAGER_START_TIMEOUT:-120}"
# Its Prometheus metrics, on loopback only (cert-manager's default is every address).
metrics_port="${KUBENOVA_CERT_MANAGER_METRICS_PORT:-9402}"
probe=kubenova-readiness-probe

die() {
    echo "up.sh: $*" >&2
    exit 1
}

# A failure of the controller itself: its log's tail says why.
fail() {
    echo "up.sh: $*" >&2
    if [[ -f "$CERT_MANAGER_LOG" ]]; then
        echo "---- last 40 lines of $CERT_MANAGER_LOG ----" >&2
        tail -n 40 "$CERT_MANAGER_LOG" >&2
    fi
    exit 1
}

"$KUBECTL" --request-timeout=10s get --raw /readyz >/dev/null 2>&1 ||
    die "the local cluster does not answer at $KUBECONFIG (start it with hack/kube/up.sh)"

"$here/build.sh"

# The CRDs, from the very module the controller was built from (Go's module cache; `go mod
# download` fetches it only when the cache lacks it). The files there are Helm templates in
# their labels alone: those take plain values, and anything else left templated is an error,
# not something to apply.
render_crds() {
    local dir file
    kn_require_go
    dir="$(cd "$CERT_MANAGER_DIR" && GOFLAGS=-mod=readonly go mod download -json \
        "$CERT_MANAGER_MODULE" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
    [[ -n "$dir" && -d "$dir/deploy/crds" ]] ||
        die "cannot find deploy/crds of $CERT_MANAGER_MODULE@$CERT_MANAGER_VERSION in Go's" \
            "module cache"
    for file in "$dir"/deploy/crds/crd-*.yaml; do
        echo "---"
        sed -e "s/'{{ template \"cert-manager.name\" . }}'/cert-manager/" \
            -e "s/'{{ .Release.Name }}'/cert-manager/" \
            -e '/^[[:space:]]*# Generated labels {{/d' "$file"
    done
}
crds="$(render_crds)"
if grep -n '{{' <<<"$crds" >&2; then
    die "the CRDs of cert-manager $CERT_MANAGER_VERSION still hold Helm template lines" \
        "(above) that render_crds does not know"
fi
"$KUBECTL" apply --server-side --force-conflicts --field-manager=kubenova-cert-manager \
    -f - <<<"$crds" >/dev/null
crds_applied=(
    crd/certificaterequests.cert-manager.io crd/certificates.cert-manager.io
    crd/challenges.acme.cert-manager.io crd/clusterissuers.cert-manager.io
    crd/issuers.cert-manager.io crd/orders.acme.cert-manager.io
)
"$KUBECTL" wait --for=condition=Established --timeout=60s "${crds_applied[@]}" >/dev/null ||
    die "cert-manager's CRDs are not Established after 60s"
"$KUBECTL" get namespace "$CERT_MANAGER_NAMESPACE" >/dev/null 2>&1 ||
    "$KUBECTL" create namespace "$CERT_MANAGER_NAMESPACE" >/dev/null

pid="$(cert_manager_pid)"
if [[ -n "$pid" && "$(cert_manager_argv0 "$pid")" != "$CERT_MANAGER_BIN" ]]; then
    echo "up.sh: the running controller (pid $pid) is another release; replacing it"
    cert_manager_stop
    pid=""
fi
start=$SECONDS
if [[ -n "$pid" ]]; then
    echo "up.sh: cert-manager controller $CERT_MANAGER_VERSION already running (pid $pid)"
else
    rm -f "$CERT_MANAGER_PIDFILE"
    if (exec 3<>"/dev/tcp/127.0.0.1/$metrics_port") 2>/dev/null; then
        die "127.0.0.1:$metrics_port (its metrics) is already in use by another process" \
            "(set KUBENOVA_CERT_MANAGER_METRICS_PORT)"
    fi
    # Keep the previous run's log: when a restart fails, the reason is often in the last one.
    [[ -f "$CERT_MANAGER_LOG" ]] && mv -f "$CERT_MANAGER_LOG" "$CERT_MANAGER_LOG.1"
    # The admin kubeconfig, as the local cluster's other host processes have theirs: what is
    # under test is Kubenova's use of cert-manager, not cert-manager's own RBAC. One replica:
    # nothing to elect. Every controller it has by default (--controllers=*).
    proc_start cert-manager-controller "$CERT_MANAGER_BIN" \
        --kubeconfig="$KUBECONFIG" \
        --leader-elect=false \
        --cluster-resource-namespace="$CERT_MANAGER_NAMESPACE" \
        --metrics-listen-address="127.0.0.1:$metrics_port"
    # The pid file names the process before it has become the controller (setsid and nohup
    # exec into it a moment later, longer on a busy machine), and cert_manager_pid knows the
    # controller by its argv[0]: wait for the exec, failing at once only if it died.
    started_pid="$(tr -dc '0-9' <"$CERT_MANAGER_PIDFILE")"
    for _ in $(seq 1 100); do
        pid="$(cert_manager_pid)"
        [[ -z "$pid" && -d "/proc/$started_pid" ]] || break
        sleep 0.1
    done
    [[ -n "$pid" ]] || fail "the controller exited at once"
fi

# Ready means it issues: a selfSigned Issuer and a Certificate from it, in its own namespace.
probe_objects=(certificate/$probe issuer/$probe secret/$probe-tls)
"$KUBECTL" -n "$CERT_MANAGER_NAMESPACE" delete "${probe_objects[@]}" --ignore-not-found \
    --wait=false >/dev/null
"$KUBECTL" -n "$CERT_MANAGER_NAMESPACE" apply -f - >/dev/null <<EOF
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: {name: $probe}
spec: {selfSigned: {}}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: $probe}
spec:
  secretName: $probe-tls
  commonName: $probe
  duration: 1h
  privateKey: {algorithm: ECDSA, size: 256}
  issuerRef: {name: $probe, kind: Issuer}
EOF
deadline=$((SECONDS + start_timeout))
until [[ "$("$KUBECTL" -n "$CERT_MANAGER_NAMESPACE" get certificate "$probe" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]; do
    if [[ -z "$(cert_manager_pid)" ]]; then
        rm -f "$CERT_MANAGER_PIDFILE"
        fail "the controller (pid $pid) exited before it issued a certificate"
    fi
    if ((SECONDS >= deadline)); then
        conditions='{range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{"\n"}{end}'
        "$KUBECTL" -n "$CERT_MANAGER_NAMESPACE" get certificate "$probe" \
            -o jsonpath="$conditions" >&2 || true
        fail "the controller (pid $pid) issued no certificate within ${start_timeout}s; still" \
            "running (stop it with hack/certmanager/down.sh)"
    fi
    sleep 1
done
"$KUBECTL" -n "$CERT_MANAGER_NAMESPACE" delete "${probe_objects[@]}" --ignore-not-found \
    --wait=false >/dev/null
echo "up.sh: cert-manager controller $CERT_MANAGER_VERSION issues certificates (pid $pid," \
    "$((SECONDS - start))s; log $CERT_MANAGER_LOG)"
