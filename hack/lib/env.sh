# Shared settings for the local stack. Source it: `. hack/lib/env.sh`.
# Every script under hack/ uses these names, so the stack has one definition.
KUBENOVA_ROOT="${KUBENOVA_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
KUBENOVA_STATE="${KUBENOVA_STATE:-$KUBENOVA_ROOT/.kubenova}"
export KUBENOVA_ROOT KUBENOVA_STATE
export KUBECONFIG="${KUBECONFIG:-$KUBENOVA_STATE/kubeconfig}"

# Kubernetes release the local control plane and kubectl are built from.
export KUBENOVA_K8S_VERSION="${KUBENOVA_K8S_VERSION:-v1.37.2}"
export KUBENOVA_APISERVER_PORT="${KUBENOVA_APISERVER_PORT:-6443}"

# MariaDB: the `nova` database, reached over loopback TCP.
export KUBENOVA_DB_NAME="${KUBENOVA_DB_NAME:-nova}"
export KUBENOVA_DB_USER="${KUBENOVA_DB_USER:-kubenova}"
export KUBENOVA_DB_PASSWORD="${KUBENOVA_DB_PASSWORD:-kubenova-dev}"
export KUBENOVA_DB_URL="${KUBENOVA_DB_URL:-mysql+pymysql://$KUBENOVA_DB_USER:$KUBENOVA_DB_PASSWORD@127.0.0.1:3306/$KUBENOVA_DB_NAME?charset=utf8mb4}"

# RabbitMQ: vhost `kubenova`; the operator has the whole vhost, each agent its own queue.
export KUBENOVA_AMQP_VHOST="${KUBENOVA_AMQP_VHOST:-kubenova}"
export KUBENOVA_AMQP_OPERATOR_USER="${KUBENOVA_AMQP_OPERATOR_USER:-kubenova-operator}"
export KUBENOVA_AMQP_OPERATOR_PASSWORD="${KUBENOVA_AMQP_OPERATOR_PASSWORD:-kubenova-dev}"
export KUBENOVA_AMQP_URL="${KUBENOVA_AMQP_URL:-amqp://$KUBENOVA_AMQP_OPERATOR_USER:$KUBENOVA_AMQP_OPERATOR_PASSWORD@127.0.0.1:5672/$KUBENOVA_AMQP_VHOST}"

# The tiny guest image, served over loopback HTTP.
export KUBENOVA_IMAGE_PORT="${KUBENOVA_IMAGE_PORT:-8089}"
export KUBENOVA_IMAGES_DIR="${KUBENOVA_IMAGES_DIR:-$KUBENOVA_STATE/images}"
# Snapshots are uploaded to that server (hack/guest/serve.sh runs kubenova-image-server) with
# a token the server and the agents read from this file; the operator makes Images point there.
export KUBENOVA_IMAGE_UPLOAD_TOKEN_FILE="${KUBENOVA_IMAGE_UPLOAD_TOKEN_FILE:-$KUBENOVA_STATE/run/image-upload.token}"
export KUBENOVA_IMAGE_SERVER_URL="${KUBENOVA_IMAGE_SERVER_URL:-http://127.0.0.1:$KUBENOVA_IMAGE_PORT/}"

# Where the agent keeps instance files and its image cache (as the issue asks).
export KUBENOVA_INSTANCES_PATH="${KUBENOVA_INSTANCES_PATH:-/var/lib/kubenova/instances}"
export KUBENOVA_IMAGE_CACHE_PATH="${KUBENOVA_IMAGE_CACHE_PATH:-/var/lib/kubenova/_base}"

# Builds kept on this machine across clones (Go tools, Kubernetes components, image layers), so
# a clean clone, CI's included, reuses them instead of building again. Binaries are named with
# their version, so a changed pin builds anew.
export KUBENOVA_CACHE="${KUBENOVA_CACHE:-/var/cache/kubenova}"
export KUBENOVA_TOOLS_BIN="${KUBENOVA_TOOLS_BIN:-$KUBENOVA_CACHE/bin}"

# The image registry on this machine that serves Kubenova's images to the cluster's node.
export KUBENOVA_REGISTRY="${KUBENOVA_REGISTRY:-127.0.0.1:5000}"

# Go: hack/kube/go.mod asks for a newer Go than Debian packages, so where the machine has none
# new enough, hack/install-go.sh (run by `make venv`) keeps this release under
# $KUBENOVA_GO_ROOT, named by its version; when it is there it comes first. Otherwise Go from
# the official tarball lives in /usr/local/go, which a non-interactive shell (CI) may not have
# on PATH.
export KUBENOVA_GO_VERSION="${KUBENOVA_GO_VERSION:-go1.26.8}"
export KUBENOVA_GO_ROOT="${KUBENOVA_GO_ROOT:-$KUBENOVA_CACHE/go/$KUBENOVA_GO_VERSION}"
if [[ -x "$KUBENOVA_GO_ROOT/bin/go" ]]; then
  case ":$PATH:" in
    *":$KUBENOVA_GO_ROOT/bin:"*) ;;
    *) export PATH="$KUBENOVA_GO_ROOT/bin:$PATH" ;;
  esac
elif ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
  export PATH="/usr/local/go/bin:$PATH"
fi

mkdir -p "$KUBENOVA_STATE/logs" "$KUBENOVA_STATE/run"

# The key every guest's SPICE password is derived from, shared by this machine's agents and
# console proxies (kubenova.console.spice_ticket): made once, kept with the state.
export KUBENOVA_SPICE_TICKET_KEY_FILE="${KUBENOVA_SPICE_TICKET_KEY_FILE:-$KUBENOVA_STATE/run/spice-ticket.key}"
if [ ! -s "$KUBENOVA_SPICE_TICKET_KEY_FILE" ]; then
  (umask 077 && head -c 48 /dev/urandom | base64 >"$KUBENOVA_SPICE_TICKET_KEY_FILE")
fi

# The second libvirtd (hack/services.sh libvirt2-up, hack/lib/libvirt2.sh): a second real
# hypervisor host on this machine, for migrations. Its socket is reachable from outside its
# mount namespace at KUBENOVA_LIBVIRT2_SOCKET.
export KUBENOVA_LIBVIRT2_DIR="${KUBENOVA_LIBVIRT2_DIR:-$KUBENOVA_STATE/libvirt2}"
export KUBENOVA_LIBVIRT2_SOCKET="${KUBENOVA_LIBVIRT2_SOCKET:-$KUBENOVA_LIBVIRT2_DIR/run/libvirt-sock}"
export KUBENOVA_LIBVIRT2_URI="${KUBENOVA_LIBVIRT2_URI:-qemu:///system?socket=$KUBENOVA_LIBVIRT2_SOCKET}"
