#!/usr/bin/env bash
# Register the tiny guest as the Image `kubenova-tiny`.
#   hack/register-image.sh [URL]   where the guest is served (default: the loopback server of
#                                  hack/guest/serve.sh; the chart's image server in a cluster)
set -euo pipefail
. "$(dirname "$0")/lib/env.sh"
URL="${1:-http://127.0.0.1:$KUBENOVA_IMAGE_PORT/kubenova-tiny.qcow2}"
SHA256="$(cat "$KUBENOVA_IMAGES_DIR/kubenova-tiny.qcow2.sha256")"
"$KUBENOVA_STATE/bin/kubectl" apply -f - <<YAML
apiVersion: compute.kubenova.io/v1alpha1
kind: Image
metadata:
  name: kubenova-tiny
spec:
  source:
    url: $URL
  sha256: $SHA256
  diskFormat: qcow2
  minDiskGiB: 1
  minMemoryMiB: 96
YAML
