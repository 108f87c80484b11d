#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Stop the cert-manager controller that up.sh started: exactly the process named in
# $KUBENOVA_STATE/run/cert-manager-controller.pid, and only while it still runs our build.
# Idempotent. The CRDs and what was issued stay, so the next up.sh resumes with them.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib/env.sh
. "$here/../lib/env.sh"
# shellcheck source=common.sh
. "$here/common.sh"

if [[ -z "$(cert_manager_pid)" ]]; then
    [[ -e "$CERT_MANAGER_PIDFILE" ]] && echo "down.sh: removing stale $CERT_MANAGER_PIDFILE"
    rm -f "$CERT_MANAGER_PIDFILE"
    echo "down.sh: cert-manager controller not running"
    exit 0
fi
cert_manager_stop
