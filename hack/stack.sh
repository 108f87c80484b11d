#!/usr/bin/env bash
# The Kubenova processes of the local stack: the operator and this host's agent.
#   hack/stack.sh start   start both (idempotent)
#   hack/stack.sh stop    stop both
set -euo pipefail
. "$(dirname "$0")/lib/env.sh"
. "$KUBENOVA_ROOT/hack/lib/proc.sh"

HOST="${KUBENOVA_HOST:-$(hostname -s)}"

case "${1:-}" in
  start)
    "$KUBENOVA_ROOT/hack/rabbitmq-agent-user.sh" "$HOST" >/dev/null
    proc_start operator "$KUBENOVA_ROOT/.venv/bin/kubenova-operator"
    # The agent gets no database settings, as in a cluster (env.sh exports them for the rest).
    # Its migration URI is this host's libvirtd as a second host's agent reaches it
    # (hack/services.sh libvirt2-up), so that instances can move here.
    # Its serial console server presents the host's QEMU console certificate
    # (hack/lib/console_tls.sh), as libvirt's vnc_tls_x509_cert_dir does in a cluster.
    proc_start "agent-$HOST" env -u KUBENOVA_DB_URL -u KUBENOVA_DB_PASSWORD \
      KUBENOVA_MIGRATION_URI="${KUBENOVA_MIGRATION_URI:-${KUBENOVA_LIBVIRT_URI:-qemu:///system}}" \
      KUBENOVA_SERIAL_CONSOLE_X509_DIR="${KUBENOVA_SERIAL_CONSOLE_X509_DIR:-$KUBENOVA_STATE/console-pki/hosts/$HOST}" \
      "$KUBENOVA_ROOT/.venv/bin/kubenova-agent" --host "$HOST" \
      --amqp-url-file "$KUBENOVA_STATE/agents/$HOST.amqp-url"
    ;;
  stop)
    proc_stop "agent-$HOST"
    proc_stop operator
    ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
