#!/usr/bin/env bash
# Serves $KUBENOVA_IMAGES_DIR over HTTP on 127.0.0.1:$KUBENOVA_IMAGE_PORT, so that an Image can
# point at http://127.0.0.1:$KUBENOVA_IMAGE_PORT/kubenova-tiny.qcow2, with kubenova-image-server
# (kubenova.images.server): GET with byte ranges, and PUT of new files (snapshots) for holders of
# the token in $KUBENOVA_IMAGE_UPLOAD_TOKEN_FILE, which start makes when it is missing.
#
# Usage: hack/guest/serve.sh {start|stop|status}
#   start   idempotent: does nothing when our server already runs; fails when another
#           process holds the port
#   stop    stops only the server whose pid is in the pid file
# Pid file: $KUBENOVA_STATE/run/images-http.pid; log: $KUBENOVA_STATE/logs/images-http.log
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=../lib/env.sh
. "$here/../lib/env.sh"

pid_file="$KUBENOVA_STATE/run/images-http.pid"
log_file="$KUBENOVA_STATE/logs/images-http.log"
url="http://127.0.0.1:$KUBENOVA_IMAGE_PORT/"

# Prints the pid from the pid file when that process is still our HTTP server; a stale file
# (the process is gone, or the pid now belongs to something else) prints nothing. A server
# started by an older version of this script (python -m http.server) counts, so stop stops it.
running_pid() {
	local pid
	pid="$(cat "$pid_file" 2>/dev/null || true)"
	[[ "$pid" =~ ^[0-9]+$ ]] || return 0
	[[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == python* ]] || return 0
	if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null |
		grep -Eq -- "-m (kubenova\.images\.server|http\.server) .*--directory"; then
		echo "$pid"
	fi
}

# The upload token, made once (32 random bytes, hex) and readable by root only.
ensure_token() {
	[ -s "$KUBENOVA_IMAGE_UPLOAD_TOKEN_FILE" ] && return 0
	mkdir -p "$(dirname "$KUBENOVA_IMAGE_UPLOAD_TOKEN_FILE")"
	(umask 077 && python3 -c 'import secrets; print(secrets.token_hex(32))' \
		>"$KUBENOVA_IMAGE_UPLOAD_TOKEN_FILE")
}

port_answers() {
	python3 - "$KUBENOVA_IMAGE_PORT" <<'EOF'
import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
except OSError:
    sys.exit(1)
EOF
}

# True when the port hands out the same image checksum as the one on disk.
serves_our_images() {
	local checksum="$KUBENOVA_IMAGES_DIR/kubenova-tiny.qcow2.sha256"
	[ -f "$checksum" ] || return 1
	python3 - "${url}kubenova-tiny.qcow2.sha256" "$checksum" <<'EOF'
import sys, urllib.request
from pathlib import Path
try:
    with urllib.request.urlopen(sys.argv[1], timeout=2) as response:
        served = response.read()
except OSError:
    sys.exit(1)
sys.exit(0 if served == Path(sys.argv[2]).read_bytes() else 1)
EOF
}

start() {
	local pid
	pid="$(running_pid)"
	if [ -n "$pid" ]; then
		echo "images-http: already serving $KUBENOVA_IMAGES_DIR at $url (pid $pid)"
		return 0
	fi
	if port_answers; then
		if serves_our_images; then
			echo "images-http: $url already serves $KUBENOVA_IMAGES_DIR from a process this" \
				"script did not start; leaving it alone"
			return 0
		fi
		echo "images-http: 127.0.0.1:$KUBENOVA_IMAGE_PORT is taken by another process" >&2
		return 1
	fi
	mkdir -p "$KUBENOVA_IMAGES_DIR"
	ensure_token
	# setsid: the server must outlive the shell that started it and not get its signals. A
	# background child of a script leads no process group, so setsid execs without forking
	# and $! is the server's own pid.
	setsid "$KUBENOVA_ROOT/.venv/bin/python" -m kubenova.images.server --bind 127.0.0.1 \
		--directory "$KUBENOVA_IMAGES_DIR" --port "$KUBENOVA_IMAGE_PORT" \
		--token-file "$KUBENOVA_IMAGE_UPLOAD_TOKEN_FILE" </dev/null >>"$log_file" 2>&1 &
	pid=$!
	echo "$pid" >"$pid_file"
	for _ in $(seq 1 50); do
		if port_answers; then
			echo "images-http: serving $KUBENOVA_IMAGES_DIR at $url (pid $pid)"
			return 0
		fi
		if ! kill -0 "$pid" 2>/dev/null; then
			break
		fi
		sleep 0.1
	done
	echo "images-http: the server did not come up; see $log_file" >&2
	kill "$pid" 2>/dev/null || true
	rm -f "$pid_file"
	return 1
}

stop() {
	local pid
	pid="$(running_pid)"
	if [ -z "$pid" ]; then
		rm -f "$pid_file"
		echo "images-http: not running"
		return 0
	fi
	kill "$pid"
	for _ in $(seq 1 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		kill -9 "$pid" 2>/dev/null || true
	fi
	rm -f "$pid_file"
	echo "images-http: stopped (pid $pid)"
}

status() {
	local pid
	pid="$(running_pid)"
	if [ -n "$pid" ]; then
		echo "images-http: serving $KUBENOVA_IMAGES_DIR at $url (pid $pid)"
	else
		echo "images-http: not running"
		return 3
	fi
}

case "${1:-}" in
	start) start ;;
	stop) stop ;;
	status) status ;;
	*)
		echo "usage: $0 {start|stop|status}" >&2
		exit 2
		;;
esac
