#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# The OCI registry on this machine that serves Kubenova's images to the cluster: distribution's
# `registry` (the same program as Docker Hub's registry:2 image), built from Go modules and
# serving plain HTTP on loopback at $KUBENOVA_REGISTRY.
#
#   hack/registry.sh start    build the binary when it is not cached, start the registry when
#                             it does not answer yet; idempotent
#   hack/registry.sh stop     stop the registry `start` started from this state dir, and
#                             nothing else
#   hack/registry.sh status   one line; exits 1 when the registry does not answer
#   hack/registry.sh build    only build (or find) the binary, and print its path
#
# The binary is cached as $KUBENOVA_TOOLS_BIN/registry-<version> (a new pin builds anew; the
# first build takes about 4 minutes on two cores). Blobs live in $KUBENOVA_CACHE/registry,
# outside the clone, so a fresh clone (CI's too) finds the layers it pushed before. Pid file
# $KUBENOVA_STATE/run/registry.pid, log $KUBENOVA_STATE/logs/registry.log.
set -euo pipefail

# shellcheck source=lib/env.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/env.sh"
# shellcheck source=lib/daemon.sh
. "$KUBENOVA_ROOT/hack/lib/daemon.sh"
# shellcheck source=lib/go.sh
. "$KUBENOVA_ROOT/hack/lib/go.sh"

# Pinned release; `go list -m -versions github.com/distribution/distribution/v3` lists others.
REGISTRY_VERSION=v3.1.2
REGISTRY_MODULE=github.com/distribution/distribution/v3
REGISTRY_BIN="$KUBENOVA_TOOLS_BIN/registry-$REGISTRY_VERSION"
REGISTRY_DATA="$KUBENOVA_CACHE/registry"
REGISTRY_CONFIG="$KUBENOVA_STATE/registry/config.yml"
REGISTRY_LOG="$KN_LOG_DIR/registry.log"
# /proc/PID/comm holds at most 15 characters of the program's name.
REGISTRY_COMM="$(basename "$REGISTRY_BIN" | cut -c1-15)"

log() { echo "registry: $*" >&2; }

registry_answers() {
  # /v2/ answers 200 with an empty JSON object when the registry is up and needs no auth.
  python3 - "http://$KUBENOVA_REGISTRY/v2/" 2>/dev/null <<'EOF'
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as response:
    sys.exit(0 if response.status == 200 else 1)
EOF
}

build() {
  if [[ -x $REGISTRY_BIN ]]; then
    echo "$REGISTRY_BIN"
    return 0
  fi
  kn_require_go
  mkdir -p "$KUBENOVA_TOOLS_BIN"
  # Two builds at once (up.sh and a test run) must not write the same file.
  exec 8>"$KUBENOVA_TOOLS_BIN/.registry-build.lock"
  flock 8
  if [[ -x $REGISTRY_BIN ]]; then
    echo "$REGISTRY_BIN"
    return 0
  fi
  local gobin start=$SECONDS
  gobin="$(mktemp -d "$KUBENOVA_TOOLS_BIN/.registry-build.XXXXXX")"
  log "building $REGISTRY_MODULE/cmd/registry@$REGISTRY_VERSION (about 4 minutes the first time)"
  # nice: this machine's two cores are shared with the Kubernetes builds. CGO_ENABLED=0 gives
  # a static binary; the -X stamps what `registry --version` prints instead of "+unknown".
  if ! nice -n 10 env GOBIN="$gobin" CGO_ENABLED=0 GOFLAGS=-mod=mod go install -trimpath \
    -ldflags "-s -w -X $REGISTRY_MODULE/version.version=$REGISTRY_VERSION" \
    "$REGISTRY_MODULE/cmd/registry@$REGISTRY_VERSION" >>"$KN_LOG_DIR/registry-build.log" 2>&1; then
    rm -rf "$gobin"
    tail -n 20 "$KN_LOG_DIR/registry-build.log" >&2
    kn_die "building the registry failed; see $KN_LOG_DIR/registry-build.log"
  fi
  # Rename into place, so an interrupted build never leaves a binary that looks finished.
  mv -f "$gobin/registry" "$REGISTRY_BIN"
  rm -rf "$gobin"
  log "built $REGISTRY_BIN in $((SECONDS - start))s"
  echo "$REGISTRY_BIN"
}

write_config() {
  mkdir -p "$(dirname "$REGISTRY_CONFIG")" "$REGISTRY_DATA"
  cat >"$REGISTRY_CONFIG.tmp" <<YAML
# Written by hack/registry.sh; edits are overwritten on the next start.
version: 0.1
log:
  level: info
  formatter: json
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $REGISTRY_DATA
  # Lets a test or a developer remove a tag or a blob through the API.
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
  # Half-finished uploads are cleaned up by age; the defaults (a week, checked daily) suit a
  # developer machine.
http:
  addr: $KUBENOVA_REGISTRY
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
YAML
  mv -f "$REGISTRY_CONFIG.tmp" "$REGISTRY_CONFIG"
}

start() {
  local pid
  if pid=$(kn_started_pid registry "$REGISTRY_COMM") && registry_answers; then
    log "already running at http://$KUBENOVA_REGISTRY (pid $pid)"
    return 0
  fi
  if registry_answers; then
    log "http://$KUBENOVA_REGISTRY already answers (a registry this script did not start);" \
      "using it and leaving it alone"
    return 0
  fi
  if [[ -n ${pid:-} ]]; then
    # Ours, alive, but not answering: give it the time it gets on a fresh start.
    KN_WAIT_PID=$pid kn_wait_until 20 "registry" registry_answers && return 0
    kn_die "registry pid $pid runs but does not answer on $KUBENOVA_REGISTRY; see $REGISTRY_LOG"
  fi
  kn_unmark registry
  build >/dev/null
  write_config
  pid=$(kn_spawn "$REGISTRY_LOG" "$REGISTRY_BIN" serve "$REGISTRY_CONFIG")
  kn_mark_started registry "$pid"
  if ! KN_WAIT_PID=$pid kn_wait_until 30 "registry" registry_answers; then
    tail -n 20 "$REGISTRY_LOG" >&2
    kn_terminate "$pid" 5
    kn_unmark registry
    kn_die "the registry did not come up on $KUBENOVA_REGISTRY; see $REGISTRY_LOG"
  fi
  log "serving http://$KUBENOVA_REGISTRY from $REGISTRY_DATA (pid $pid, log $REGISTRY_LOG)"
}

stop() {
  local pid
  if pid=$(kn_started_pid registry "$REGISTRY_COMM"); then
    log "stopping (pid $pid)"
    kn_terminate "$pid" 20
  elif registry_answers; then
    log "http://$KUBENOVA_REGISTRY answers, but this state dir did not start it; left alone"
  else
    log "not running"
  fi
  kn_unmark registry
}

status() {
  local pid origin=" (not started by this state dir)"
  if pid=$(kn_started_pid registry "$REGISTRY_COMM"); then origin=" (pid $pid)"; fi
  if registry_answers; then
    echo "registry: up   (http://$KUBENOVA_REGISTRY, data $REGISTRY_DATA)$origin"
  else
    echo "registry: down"
    return 1
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  build) build ;;
  *)
    echo "usage: $0 {start|stop|status|build}" >&2
    exit 2
    ;;
esac
