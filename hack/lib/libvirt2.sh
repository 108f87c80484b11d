# shellcheck shell=bash
# A second, independent libvirtd on this machine: the second real hypervisor host that live and
# cold migrations move guests to. Source after env.sh and daemon.sh; hack/services.sh runs it as
# `libvirt2-up`, `libvirt2-down` and `libvirt2-status`.
#
# How (../shared/FACTS.md, "Live migration between two libvirt daemons on one machine"): a
# mount namespace of its own (unshare --mount --propagation private) with private directories
# bind-mounted over /etc/libvirt, /run/libvirt, /var/lib/libvirt, /var/cache/libvirt and
# /var/log/libvirt, so it shares no state, socket, pid file or domain with the host's libvirtd.
# Its virtlogd runs in the same namespace (libvirtd finds it by its socket in /run/libvirt).
# It differs from the first daemon where two hosts must differ: its own host_uuid (equal UUIDs
# make libvirt refuse a migration "to the same host"), its own migration, display and websocket
# port ranges. Its network `default` bridges onto the first daemon's virbr0, so a guest keeps
# its NIC and its DHCP server (the first daemon's dnsmasq) wherever it runs; the second daemon
# therefore knows no DHCP leases of its own.
#
# Everything lives under $KUBENOVA_LIBVIRT2_DIR; its socket, seen from outside the namespace, is
# $KUBENOVA_LIBVIRT2_SOCKET (URI $KUBENOVA_LIBVIRT2_URI). Only root QEMU-side paths outside the
# five directories (instance files, image caches) are shared with the first daemon.

# A fixed UUID (the first daemon's is random at each start, there being no SMBIOS here).
LIBVIRT2_HOST_UUID=6b756265-6e6f-7661-2d68-6f7374203200
# Port ranges apart from the first daemon's defaults (migration 49152-49215, display from 5900).
LIBVIRT2_MIGRATION_PORTS=(49300 49363)
LIBVIRT2_DISPLAY_PORTS=(6900 6999)
LIBVIRT2_WEBSOCKET_PORTS=(7000 7099)
# The second host's name, as its agent is called (tests/support/second_host.py): its console
# certificate's name.
LIBVIRT2_HOST="${KUBENOVA_HOST2:-$(hostname -s)-2}"
# The directories the namespace makes private: mount point -> directory under LIBVIRT2_DIR.
LIBVIRT2_BINDS=(/etc/libvirt:etc /run/libvirt:run /var/lib/libvirt:lib /var/cache/libvirt:cache
  /var/log/libvirt:log)

libvirt2_virsh() { virsh -q -c "$KUBENOVA_LIBVIRT2_URI" "$@"; }

# libvirt2_pid NAME: the pid of the second daemon's libvirtd or virtlogd, from its own pid file.
libvirt2_pid() {
  local pid
  pid=$(kn_pidfile_pid "$KUBENOVA_LIBVIRT2_DIR/$1.pid") || return 1
  [[ $(kn_pid_comm "$pid") == "$1" ]] || return 1
  printf '%s\n' "$pid"
}

libvirt2_answers() { libvirt2_virsh version >/dev/null 2>&1; }

# libvirt2_config: the private directories, with a configuration of the second host's own.
# Made again at every start, from the host's /etc/libvirt, without its domains, networks,
# storage pools and autostart links: a second host starts empty.
libvirt2_config() {
  local dir=$KUBENOVA_LIBVIRT2_DIR etc="$KUBENOVA_LIBVIRT2_DIR/etc"
  install -d -m 0755 "$dir" "$dir/run" "$dir/cache" "$dir/log" "$dir/log/qemu" "$dir/lib"
  rm -rf "$etc"
  cp -a /etc/libvirt "$etc"
  find "$etc/qemu" -maxdepth 1 -name '*.xml' -delete
  rm -rf "$etc/qemu/networks" "$etc/qemu/autostart" "$etc/storage" "$etc/secrets"
  install -d -m 0700 "$etc/qemu/networks/autostart" "$etc/secrets"
  cat >"$etc/qemu/networks/default.xml" <<'EOF'
<network>
  <name>default</name>
  <forward mode='bridge'/>
  <bridge name='virbr0'/>
</network>
EOF
  ln -s ../default.xml "$etc/qemu/networks/autostart/default.xml"
  cat >>"$etc/libvirtd.conf" <<EOF

# The second host of the local stack (hack/lib/libvirt2.sh).
host_uuid = "$LIBVIRT2_HOST_UUID"
EOF
  cat >>"$etc/qemu.conf" <<EOF

# The second host of the local stack (hack/lib/libvirt2.sh): ports apart from the first's.
migration_port_min = ${LIBVIRT2_MIGRATION_PORTS[0]}
migration_port_max = ${LIBVIRT2_MIGRATION_PORTS[1]}
remote_display_port_min = ${LIBVIRT2_DISPLAY_PORTS[0]}
remote_display_port_max = ${LIBVIRT2_DISPLAY_PORTS[1]}
remote_websocket_port_min = ${LIBVIRT2_WEBSOCKET_PORTS[0]}
remote_websocket_port_max = ${LIBVIRT2_WEBSOCKET_PORTS[1]}
EOF
  # Its own console certificate (the copy of /etc/libvirt brought the first host's block).
  libvirt2_console_tls >/dev/null
  # QEMU (libvirt-qemu) keeps its per-domain state here; the modes are the package's.
  local sub
  install -d -m 0755 "$dir/lib/images" "$dir/lib/boot"
  install -d -o libvirt-qemu -g libvirt-qemu -m 0750 "$dir/lib/qemu"
  for sub in channel checkpoint dump nvram ram save snapshot; do
    install -d -o libvirt-qemu -g libvirt-qemu -m 0755 "$dir/lib/qemu/$sub"
  done
}

# libvirt2_start_daemons: run inside the namespace (by `libvirt2_in_namespace`); mounts the
# private directories when asked, then starts whichever of virtlogd and libvirtd is not running.
libvirt2_start_daemons() {
  local mount=$1 bind name
  if [[ $mount == mount ]]; then
    for bind in "${LIBVIRT2_BINDS[@]}"; do
      mount --bind "$KUBENOVA_LIBVIRT2_DIR/${bind#*:}" "${bind%%:*}"
    done
  fi
  for name in virtlogd libvirtd; do
    libvirt2_pid "$name" >/dev/null && continue
    kn_spawn_libvirt_daemon "$KN_LOG_DIR/${name}2.log" "$name" \
      -p "$KUBENOVA_LIBVIRT2_DIR/$name.pid" >/dev/null
    kn_wait_until 30 "${name} (second host)" libvirt2_pid "$name" ||
      kn_die "the second host's $name did not start; see $KN_LOG_DIR/${name}2.log"
  done
}

# libvirt2_console_tls: the second host's console certificate and its qemu.conf's TLS
# settings (hack/lib/console_tls.sh); prints "changed" when qemu.conf changed.
libvirt2_console_tls() {
  kn_console_tls_setup "$LIBVIRT2_HOST" "$KN_CONSOLE_HOSTS_DIR/$LIBVIRT2_HOST" \
    "$KUBENOVA_LIBVIRT2_DIR/etc/qemu.conf"
}

libvirt2_up() {
  local ns_pid name pid changed=
  # A daemon that runs keeps its configuration: its certificate is renewed in place, and a
  # libvirtd that runs without the TLS settings is restarted (its guests keep running).
  if [[ -e $KUBENOVA_LIBVIRT2_DIR/etc/qemu.conf ]]; then
    changed=$(libvirt2_console_tls)
  fi
  if [[ $changed == changed ]] && pid=$(libvirt2_pid libvirtd); then
    kn_log "restarting the second host's libvirtd (pid $pid) to apply console TLS"
    kn_terminate "$pid" 30
  fi
  if libvirt2_pid libvirtd >/dev/null && libvirt2_pid virtlogd >/dev/null && libvirt2_answers; then
    return 0
  fi
  kn_ensure_packages util-linux libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients tini
  # One of the two still running holds the namespace: the other is started inside it.
  ns_pid=$(libvirt2_pid virtlogd || libvirt2_pid libvirtd || true)
  if [[ -z $ns_pid ]]; then
    kn_log "starting the second host's virtlogd and libvirtd (logs: $KN_LOG_DIR/{virtlogd2,libvirtd2}.log)"
    libvirt2_config
    rm -f "$KUBENOVA_LIBVIRT2_DIR"/run/*-sock "$KUBENOVA_LIBVIRT2_DIR"/*.pid
    unshare --mount --propagation private -- "$BASH" "$KUBENOVA_ROOT/hack/lib/libvirt2.sh" mount 9>&-
  else
    kn_log "restarting what is missing of the second host's daemons (namespace of pid $ns_pid)"
    nsenter --mount="/proc/$ns_pid/ns/mnt" -- "$BASH" "$KUBENOVA_ROOT/hack/lib/libvirt2.sh" \
      no-mount 9>&-
  fi
  for name in virtlogd libvirtd; do
    kn_mark_started "${name}2" "$(libvirt2_pid "$name")"
  done
  # The first connection probes QEMU's capabilities, which takes seconds under emulation.
  kn_wait_until 90 "the second host's libvirtd" libvirt2_answers ||
    kn_die "the second libvirtd does not answer on $KUBENOVA_LIBVIRT2_URI"
  if [[ $(libvirt2_virsh net-info default 2>/dev/null | awk '$1 == "Active:" {print $2}') != yes ]]; then
    libvirt2_virsh net-start default >/dev/null
  fi
}

libvirt2_down() {
  local name pid domain
  if libvirt2_answers; then
    # A guest left without its daemon would hold the namespace and its files forever.
    for domain in $(libvirt2_virsh list --uuid 2>/dev/null); do
      kn_log "destroying guest $domain of the second host"
      libvirt2_virsh destroy "$domain" >/dev/null 2>&1 || true
    done
  fi
  for name in libvirtd virtlogd; do
    if pid=$(libvirt2_pid "$name"); then
      kn_log "stopping the second host's $name (pid $pid)"
      kn_terminate "$pid" 30
    fi
    kn_unmark "${name}2"
  done
}

libvirt2_status() {
  local pid
  pid=$(libvirt2_pid libvirtd) || { echo "down"; return 1; }
  libvirt2_answers || { echo "down (does not answer on $KUBENOVA_LIBVIRT2_URI)"; return 1; }
  echo "up   ($KUBENOVA_LIBVIRT2_URI) [pid $pid, virtlogd pid $(libvirt2_pid virtlogd || echo none)]"
}

# Run as a script (by libvirt2_up, inside the new or the existing namespace): start the daemons.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  set -euo pipefail
  # shellcheck source=env.sh
  . "$(dirname "${BASH_SOURCE[0]}")/env.sh"
  # shellcheck source=daemon.sh
  . "$KUBENOVA_ROOT/hack/lib/daemon.sh"
  libvirt2_start_daemons "${1:?mount or no-mount}"
fi
