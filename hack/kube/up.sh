#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Start the local control plane: build it if needed, make certificates and kubeconfigs, start
# kube-apiserver with embedded etcd in the background and wait until /readyz says ok, then start
# kube-controller-manager and kube-scheduler (the node's components are hack/node/up.sh's).
#
#   hack/kube/up.sh        # idempotent: returns at once when it is already up
#
# Afterwards: $KUBENOVA_STATE/bin/kubectl with KUBECONFIG=$KUBENOVA_STATE/kubeconfig (both set by
# hack/lib/env.sh); log in $KUBENOVA_STATE/logs/kube-apiserver.log, pid in
# $KUBENOVA_STATE/run/kube.pid, etcd data in $KUBENOVA_STATE/etcd. Stop with hack/kube/down.sh.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib/env.sh
. "$here/../lib/env.sh"
# shellcheck source=common.sh
. "$here/common.sh"

etcd_client_port="${KUBENOVA_ETCD_CLIENT_PORT:-2379}"
etcd_peer_port="${KUBENOVA_ETCD_PEER_PORT:-2380}"
start_timeout="${KUBENOVA_KUBE_START_TIMEOUT:-180}"
pki="$KUBENOVA_STATE/pki"

fail() {
    echo "up.sh: $*" >&2
    if [[ -f "$KUBE_LOG" ]]; then
        echo "---- last 40 lines of $KUBE_LOG ----" >&2
        tail -n 40 "$KUBE_LOG" >&2
    fi
    exit 1
}

wait_ready() {
    local pid="$1" deadline=$((SECONDS + start_timeout))
    # /readyz can pass a moment before the system-namespaces controller has made `default` on a
    # fresh data directory; callers create objects there straight away, so wait for both.
    until kube_ready && "$KUBECTL" --request-timeout=5s get namespace default >/dev/null 2>&1; do
        if ! proc_alive "$pid"; then
            rm -f "$KUBE_PIDFILE"
            fail "kube-apiserver (pid $pid) exited during start-up"
        fi
        if ((SECONDS >= deadline)); then
            fail "kube-apiserver (pid $pid) not ready after ${start_timeout}s; still running" \
                "(stop it with hack/kube/down.sh)"
        fi
        sleep 1
    done
}

"$here/build.sh"

python="$KUBENOVA_ROOT/.venv/bin/python"
[[ -x "$python" ]] || python=python3
node_address="$(node_ip)"
[[ -n "$node_address" ]] || fail "cannot tell this node's address (set KUBENOVA_NODE_IP)"
"$python" "$here/pki.py" --state "$KUBENOVA_STATE" --kubeconfig "$KUBECONFIG" \
    --server "https://127.0.0.1:$KUBENOVA_APISERVER_PORT" \
    --node-name "$KUBENOVA_NODE_NAME" --node-ip "$node_address"

# shellcheck source=../lib/proc.sh
. "$KUBENOVA_ROOT/hack/lib/proc.sh"
kube_config_dir="$KUBENOVA_STATE/kube"

# The controllers (namespace deletion, garbage collection of ownerReferences, Deployments,
# DaemonSets, service-account tokens, node lifecycle...) and the scheduler. Each talks to the
# apiserver as its own user, which RBAC's bootstrap policy already knows.
start_controllers() {
    local common=(
        --bind-address=127.0.0.1
        # One replica of each: nothing to elect.
        --leader-elect=false
    )
    proc_start kube-controller-manager "$KUBENOVA_STATE/bin/kube-controller-manager" \
        "${common[@]}" \
        --kubeconfig="$kube_config_dir/kube-controller-manager.kubeconfig" \
        --authentication-kubeconfig="$kube_config_dir/kube-controller-manager.kubeconfig" \
        --authorization-kubeconfig="$kube_config_dir/kube-controller-manager.kubeconfig" \
        --cluster-name=kubenova \
        --controllers='*,bootstrapsigner,tokencleaner' \
        --use-service-account-credentials=true \
        --service-account-private-key-file="$pki/sa.key" \
        --root-ca-file="$pki/ca.crt" \
        --cluster-signing-cert-file="$pki/ca.crt" \
        --cluster-signing-key-file="$pki/ca.key" \
        --service-cluster-ip-range=10.0.0.0/24 \
        --allocate-node-cidrs=false
    proc_start kube-scheduler "$KUBENOVA_STATE/bin/kube-scheduler" "${common[@]}" \
        --kubeconfig="$kube_config_dir/kube-scheduler.kubeconfig" \
        --authentication-kubeconfig="$kube_config_dir/kube-scheduler.kubeconfig" \
        --authorization-kubeconfig="$kube_config_dir/kube-scheduler.kubeconfig"
}

if pid="$(kube_pid)" && [[ -n "$pid" ]]; then
    echo "up.sh: already running (pid $pid); waiting for /readyz"
    wait_ready "$pid"
    echo "up.sh: kube-apiserver ready at https://127.0.0.1:$KUBENOVA_APISERVER_PORT"
    start_controllers
    exit 0
fi
rm -f "$KUBE_PIDFILE"

# A port already taken would only show up as a bind error deep in the log; say it plainly.
for port in "$KUBENOVA_APISERVER_PORT" "$etcd_client_port" "$etcd_peer_port"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "up.sh: 127.0.0.1:$port is already in use by another process" >&2
        exit 1
    fi
done

# Keep the previous run's log: when a restart fails, the reason is often in the last one.
[[ -f "$KUBE_LOG" ]] && mv -f "$KUBE_LOG" "$KUBE_LOG.1"

args=(
    --etcd-data-dir="$KUBENOVA_STATE/etcd"
    --etcd-client-url="http://127.0.0.1:$etcd_client_port"
    --etcd-peer-url="http://127.0.0.1:$etcd_peer_port"
    --
    # Loopback for the host's clients, the node's address for pods (through the `kubernetes`
    # Service, whose endpoint is the advertised address: it may not be a loopback one).
    --bind-address=0.0.0.0
    --secure-port="$KUBENOVA_APISERVER_PORT"
    --advertise-address="$node_address"
    --service-cluster-ip-range=10.0.0.0/24
    --tls-cert-file="$pki/apiserver.crt"
    --tls-private-key-file="$pki/apiserver.key"
    --client-ca-file="$pki/ca.crt"
    --service-account-issuer=https://kubernetes.default.svc.cluster.local
    --service-account-key-file="$pki/sa.pub"
    --service-account-signing-key-file="$pki/sa.key"
    # Node: a kubelet reads only what its own pods use; NodeRestriction: it writes only its own
    # Node and pods.
    --authorization-mode=Node,RBAC
    --enable-admission-plugins=NodeRestriction
    # The front proxy towards aggregated API servers (kubenova-subresources): the certificate
    # it proxies with, and the CA and name those servers check before they believe the
    # X-Remote-* headers (published in kube-system/extension-apiserver-authentication).
    --requestheader-client-ca-file="$pki/front-proxy-ca.crt"
    --requestheader-allowed-names=front-proxy-client
    --requestheader-username-headers=X-Remote-User
    --requestheader-group-headers=X-Remote-Group
    --requestheader-extra-headers-prefix=X-Remote-Extra-
    --proxy-client-cert-file="$pki/front-proxy-client.crt"
    --proxy-client-key-file="$pki/front-proxy-client.key"
    # Dial an APIService's (and a webhook's) Service at its EndpointSlices' addresses, not at
    # its cluster IP: this apiserver is a host process, which reaches a cluster IP only while
    # kube-proxy's rules are in place, and an aggregated server run on the host (an endpoint
    # at the node's address) would otherwise depend on the node being up.
    --enable-aggregator-routing=true
    --kubelet-client-certificate="$pki/apiserver-kubelet-client.crt"
    --kubelet-client-key="$pki/apiserver-kubelet-client.key"
    --kubelet-certificate-authority="$pki/ca.crt"
    --kubelet-preferred-address-types=InternalIP,Hostname
    --allow-privileged=true
    --profiling=false
    # Without this, shutdown waits for clients' open watches (an operator always has some) until
    # the 60 s request timeout; with it, watches are ended at once and down.sh takes a second.
    --shutdown-watch-termination-grace-period=5s
)

echo "up.sh: starting kube-apiserver $KUBENOVA_K8S_VERSION with embedded etcd (log: $KUBE_LOG)"
start=$SECONDS
# Its own session: it outlives the shell (and the process group) that started it.
setsid nohup "$KUBE_BIN" "${args[@]}" >"$KUBE_LOG" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$KUBE_PIDFILE"
wait_ready "$pid"
echo "up.sh: kube-apiserver ready at https://127.0.0.1:$KUBENOVA_APISERVER_PORT" \
    "(pid $pid, $((SECONDS - start))s)"
start_controllers
