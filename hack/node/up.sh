#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Make this machine the local cluster's one node: containerd (with runc and the CNI plugins),
# the kubelet and kube-proxy, then CoreDNS; wait until the Node is Ready and DNS answers.
# Needs the control plane (hack/kube/up.sh) and the registry (hack/registry.sh), which serves
# the pause image. Idempotent: what already runs is left as it is.
#
# Runtime state lives outside the clone, because it is the machine's: containerd's images and
# snapshots and the kubelet's pods under $KUBENOVA_NODE_ROOT (/var/lib/kubenova/node), sockets
# under /run/kubenova. Configuration is generated into $KUBENOVA_STATE/node. hack/node/down.sh
# undoes all of it.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib/env.sh
. "$here/../lib/env.sh"
# shellcheck source=common.sh
. "$here/common.sh"

kn_ensure_packages "${NODE_PACKAGES[@]}"
"$here/build.sh"

node_address="$(node_ip)"
[[ -n "$node_address" ]] || kn_die "cannot tell this node's address (set KUBENOVA_NODE_IP)"
mkdir -p "$NODE_CONFIG_DIR" "$CNI_CONF_DIR" "$NODE_RUN_DIR" "$CONTAINERD_ROOT" "$KUBELET_ROOT" \
    "$NODE_LOG_DIR"

# --- containerd ---------------------------------------------------------------------------
mkdir -p "$CONTAINERD_HOSTS_DIR/$KUBENOVA_REGISTRY"
# The registry on this machine speaks plain HTTP on loopback.
cat >"$CONTAINERD_HOSTS_DIR/$KUBENOVA_REGISTRY/hosts.toml" <<TOML
server = "http://$KUBENOVA_REGISTRY"
[host."http://$KUBENOVA_REGISTRY"]
  capabilities = ["pull", "resolve", "push"]
TOML
cat >"$NODE_CONFIG_DIR/containerd.toml" <<TOML
version = 3
root = "$CONTAINERD_ROOT"
state = "$NODE_RUN_DIR/containerd"
[grpc]
  address = "$CONTAINERD_SOCKET"
[ttrpc]
  address = "$CONTAINERD_SOCKET.ttrpc"
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "$PAUSE_IMAGE"
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = "$CONTAINERD_HOSTS_DIR"
[plugins.'io.containerd.cri.v1.runtime']
  # Root here lacks CAP_SYS_RESOURCE, so a negative oom_score_adj is refused and every sandbox
  # would fail to start; this keeps containers at or above containerd's own score.
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
      BinaryName = "/usr/sbin/runc"
      # No systemd on this machine: cgroups are managed through cgroupfs.
      SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "$CNI_CONF_DIR"
    max_conf_num = 1
TOML

# One bridge for every pod, with addresses from host-local IPAM; traffic leaving the node is
# masqueraded. hairpinMode lets a pod reach itself through a Service.
cat >"$CNI_CONF_DIR/10-kubenova.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "kubenova",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$CNI_BRIDGE",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_CIDR"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$NODE_RUN_DIR/cni-ipam"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON

if ! proc_running containerd; then
    proc_start containerd "$CONTAINERD_DIR/containerd" --config "$NODE_CONFIG_DIR/containerd.toml"
fi
node_wait 60 "containerd" "$CONTAINERD_DIR/ctr" --address "$CONTAINERD_SOCKET" version

# --- kubelet ------------------------------------------------------------------------------
pki="$KUBENOVA_STATE/pki"
cat >"$NODE_CONFIG_DIR/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine's cgroup hierarchy is v1; kubelet >= 1.35 refuses it unless told otherwise.
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$CONTAINERD_SOCKET
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $pki/kubelet-serving.crt
tlsPrivateKeyFile: $pki/kubelet-serving.key
clusterDomain: cluster.local
clusterDNS: [$CLUSTER_DNS_IP]
# Pods that ask for the node's DNS get none: nothing outside this machine is reachable, and the
# cluster's names are CoreDNS's.
resolvConf: ""
healthzBindAddress: 127.0.0.1
healthzPort: 10248
# The kubelet would otherwise add iptables chains of its own (KUBE-FIREWALL drops non-loopback
# traffic to 127/8); kube-proxy keeps the ones Services need.
makeIPTablesUtilChains: false
failSwapOn: false
serializeImagePulls: false
podLogsDir: $NODE_LOG_DIR
volumePluginDir: $KUBELET_ROOT/volume-plugins
# A development machine's disk is shared with everything else: evict only when nearly full.
evictionHard:
  memory.available: "200Mi"
  nodefs.available: "2%"
  imagefs.available: "2%"
imageGCHighThresholdPercent: 95
imageGCLowThresholdPercent: 90
YAML
if ! proc_running kubelet; then
    proc_start kubelet "$KUBENOVA_STATE/bin/kubelet" \
        --config="$NODE_CONFIG_DIR/kubelet.yaml" \
        --kubeconfig="$KUBENOVA_STATE/kube/kubelet.kubeconfig" \
        --root-dir="$KUBELET_ROOT" \
        --hostname-override="$KUBENOVA_NODE_NAME" \
        --node-ip="$node_address" \
        --node-labels="kubenova.io/hypervisor=true"
fi

# --- kube-proxy ---------------------------------------------------------------------------
cat >"$NODE_CONFIG_DIR/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $KUBENOVA_STATE/kube/kube-proxy.kubeconfig
hostnameOverride: $KUBENOVA_NODE_NAME
mode: iptables
clusterCIDR: $POD_CIDR
bindAddress: 0.0.0.0
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# Leave the machine's conntrack table size as it is.
conntrack:
  maxPerCore: 0
YAML
if ! proc_running kube-proxy; then
    proc_start kube-proxy "$KUBENOVA_STATE/bin/kube-proxy" --config="$NODE_CONFIG_DIR/kube-proxy.yaml"
fi

node_wait 180 "Node $KUBENOVA_NODE_NAME Ready" "$KUBECTL" wait --timeout=5s \
    --for=condition=Ready "node/$KUBENOVA_NODE_NAME"

# --- CoreDNS ------------------------------------------------------------------------------
"$KUBECTL" apply -f - >/dev/null <<YAML
$(sed -e "s|@COREDNS_IMAGE@|$COREDNS_IMAGE|" -e "s|@CLUSTER_DNS_IP@|$CLUSTER_DNS_IP|" \
    "$here/coredns.yaml")
YAML
node_wait 180 "CoreDNS" "$KUBECTL" -n kube-system rollout status deployment/coredns --timeout=5s
echo "node/up.sh: node $KUBENOVA_NODE_NAME Ready ($node_address); CoreDNS at $CLUSTER_DNS_IP"
