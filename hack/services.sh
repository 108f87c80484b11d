#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# The local stack's services, from Debian's packages, started directly (there is no systemd):
# MariaDB, RabbitMQ (with epmd), virtlogd, libvirtd and libvirt's NAT network `default`.
#
#   hack/services.sh up [--no-libvirt]
#                             install missing packages, start what is not running, create the
#                             database, its user, the vhost, the operator's and this host's
#                             agent's RabbitMQ users; idempotent. --no-libvirt leaves libvirt
#                             as it is (the chart's libvirt pod may be the node's libvirtd)
#   hack/services.sh libvirt-up
#                             the host's virtlogd, libvirtd and network, after waiting for the
#                             chart's libvirt pod, if any, to have stopped its libvirtd
#   hack/services.sh libvirt-down
#                             stop the host's libvirtd and virtlogd if `up` started them, so
#                             that the chart's libvirt pod can run (running guests stay)
#   hack/services.sh libvirt2-up | libvirt2-down | libvirt2-status
#                             a second libvirtd (and virtlogd) in a mount namespace of its own:
#                             a second hypervisor host for migrations (hack/lib/libvirt2.sh).
#                             Not part of `up` or `status`; `down` stops it too, and
#                             libvirt2-down, destroying its guests first
#   hack/services.sh down     stop what `up` started from this state dir, and nothing else
#   hack/services.sh status   one line per service; exits 1 when any is down
#
# A daemon `up` starts gets a pid file $KUBENOVA_STATE/run/<name>.pid (the marker `down` goes
# by) and its log in $KUBENOVA_STATE/logs/. A daemon that was already running is used as it is
# and left running by `down`. Settings come from hack/lib/env.sh. Run as root.
set -euo pipefail

# shellcheck source=lib/env.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/env.sh"
# shellcheck source=lib/daemon.sh
. "$KUBENOVA_ROOT/hack/lib/daemon.sh"
# shellcheck source=lib/rabbitmq.sh
. "$KUBENOVA_ROOT/hack/lib/rabbitmq.sh"
# shellcheck source=lib/console_tls.sh
. "$KUBENOVA_ROOT/hack/lib/console_tls.sh"
# shellcheck source=lib/libvirt2.sh
. "$KUBENOVA_ROOT/hack/lib/libvirt2.sh"

PACKAGES=(
  mariadb-server mariadb-client rabbitmq-server qemu-system-x86 qemu-utils libvirt-daemon
  libvirt-daemon-driver-qemu libvirt-clients libvirt-daemon-system dnsmasq-base libvirt-dev
  pkg-config tini
  chromium # the console proxy's browser tests drive it with Playwright
  tmux     # the e2e test of kubectl nova console types in a terminal
)

MYSQL_SOCKET=/run/mysqld/mysqld.sock
MYSQL_PIDFILE=/run/mysqld/mysqld.pid
LIBVIRT_URI=qemu:///system
NETWORK=default
NETWORK_XML=/usr/share/libvirt/networks/default.xml
# Not a pid file: the network is not a process, but `down` must know whether `up` started it.
NETWORK_MARKER="$KN_RUN_DIR/libvirt-network-$NETWORK.started"

virsh_() { virsh -q -c "$LIBVIRT_URI" "$@"; }

# --- MariaDB ------------------------------------------------------------------------------

mysql_root() { mariadb --protocol=socket --socket="$MYSQL_SOCKET" -uroot; }
mariadb_answers() {
  mysqladmin --protocol=socket --socket="$MYSQL_SOCKET" -uroot --connect-timeout=2 ping
}

# sql_string TEXT: TEXT as an SQL string literal.
sql_string() {
  local s=${1//\\/\\\\}
  printf "'%s'" "${s//\'/\\\'}"
}

mariadb_up() {
  kn_started_pid mariadb mariadbd >/dev/null || kn_unmark mariadb
  if ! mariadb_answers >/dev/null 2>&1; then
    local other
    other=$(kn_pgrep -x 'mariadbd|mysqld' | head -n1)
    if [[ -n $other ]]; then
      # Someone else is starting it (or it is shutting down): never start a second one.
      kn_log "MariaDB (pid $other) is running but does not answer yet; waiting"
      KN_WAIT_PID=$other kn_wait_until 120 "MariaDB" mariadb_answers ||
        kn_die "MariaDB pid $other does not answer on $MYSQL_SOCKET"
    else
      mariadb_start
    fi
  fi
  mariadb_provision
}

mariadb_start() {
  local log="$KN_LOG_DIR/mariadb.log" pid
  install -d -o mysql -g root -m 0755 /run/mysqld
  if [[ ! -d /var/lib/mysql/mysql ]]; then
    kn_log "initialising the MariaDB data directory"
    mariadb-install-db --user=mysql --datadir=/var/lib/mysql >>"$log" 2>&1 ||
      kn_die "mariadb-install-db failed; see $log"
  fi
  kn_log "starting MariaDB (log: $log)"
  pid=$(kn_spawn "$log" /usr/sbin/mariadbd --user=mysql --bind-address=127.0.0.1 --port=3306 \
    --socket="$MYSQL_SOCKET" --pid-file="$MYSQL_PIDFILE")
  kn_mark_started mariadb "$pid"
  if ! KN_WAIT_PID=$pid kn_wait_until 120 "MariaDB" mariadb_answers; then
    tail -n 20 "$log" >&2
    kn_die "MariaDB did not start; see $log"
  fi
}

mariadb_provision() {
  local db=$KUBENOVA_DB_NAME password
  password=$(sql_string "$KUBENOVA_DB_PASSWORD")
  local sql="CREATE DATABASE IF NOT EXISTS \`${db//\`/\`\`}\` CHARACTER SET utf8mb4;
ALTER DATABASE \`${db//\`/\`\`}\` CHARACTER SET utf8mb4;"
  local host user
  for host in 127.0.0.1 localhost; do
    user="$(sql_string "$KUBENOVA_DB_USER")@$(sql_string "$host")"
    # ALTER as well as CREATE: a second run brings back a password that was changed.
    # The tests create and drop throwaway databases named nova_test_*.
    sql+="
CREATE USER IF NOT EXISTS $user IDENTIFIED BY $password;
ALTER USER $user IDENTIFIED BY $password;
GRANT ALL PRIVILEGES ON \`${db//\`/\`\`}\`.* TO $user;
GRANT ALL PRIVILEGES ON \`nova\\_test\\_%\`.* TO $user;"
  done
  mysql_root <<<"$sql" || kn_die "could not provision the database"
  # Prove the application's own path: TCP, its user, its database.
  MYSQL_PWD=$KUBENOVA_DB_PASSWORD mariadb -h127.0.0.1 -P3306 -u"$KUBENOVA_DB_USER" \
    -e 'SELECT 1' "$db" >/dev/null || kn_die "user $KUBENOVA_DB_USER cannot log in to $db"
}

mariadb_down() {
  local pid
  if pid=$(kn_started_pid mariadb mariadbd); then
    kn_log "stopping MariaDB (pid $pid)"
    mysqladmin --protocol=socket --socket="$MYSQL_SOCKET" -uroot shutdown ||
      kn_log "mysqladmin shutdown failed; sending SIGTERM"
    kn_wait_gone "$pid" 60 || kn_terminate "$pid" 30
  fi
  kn_unmark mariadb
}

mariadb_status() {
  mariadb_answers >/dev/null 2>&1 || { echo "down"; return 1; }
  echo "up   (127.0.0.1:3306, $MYSQL_SOCKET, database $KUBENOVA_DB_NAME)$(origin mariadb mariadbd)"
}

# --- RabbitMQ -----------------------------------------------------------------------------

epmd_pid() { kn_pgrep -u rabbitmq -x epmd | head -n1; }

rabbitmq_up() {
  kn_started_pid rabbitmq beam.smp >/dev/null || kn_unmark rabbitmq
  kn_started_pid epmd epmd >/dev/null || kn_unmark epmd
  RABBIT_WRAPPER_PID=""
  if ! kn_rabbit_registered; then
    rabbitmq_start
  fi
  if ! KN_WAIT_PID=$RABBIT_WRAPPER_PID kn_wait_until 180 "RabbitMQ" \
    kn_rabbitmqctl -q await_startup --timeout 10; then
    tail -n 20 "$KN_LOG_DIR/rabbitmq.log" >&2
    # The wrapper script stops the Erlang VM on SIGTERM; no half-started broker stays behind.
    [[ -z $RABBIT_WRAPPER_PID ]] || kn_terminate "$RABBIT_WRAPPER_PID" 30
    kn_die "RabbitMQ did not start; see $KN_LOG_DIR/rabbitmq.log"
  fi
  if [[ -n $RABBIT_WRAPPER_PID ]]; then
    # The marker holds the Erlang VM's pid, which outlives the wrapper script.
    kn_mark_started rabbitmq "$(head -n1 "$KN_RABBIT_PIDFILE")"
  fi
  rabbitmq_provision
}

# rabbitmq_start: start epmd (if none runs) and the broker as the rabbitmq user; sets
# RABBIT_WRAPPER_PID to the pid of the broker's wrapper script.
rabbitmq_start() {
  local log="$KN_LOG_DIR/rabbitmq.log"
  local as_rabbitmq=(setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups)
  if ! epmd -names >/dev/null 2>&1; then
    # Started here rather than by the Erlang VM, so `down` knows it may stop it.
    ERL_EPMD_ADDRESS=127.0.0.1 "${as_rabbitmq[@]}" epmd -daemon </dev/null >>"$log" 2>&1 9>&-
    kn_wait_until 10 "epmd" epmd -names || kn_die "epmd did not start"
    kn_mark_started epmd "$(epmd_pid)"
  fi
  kn_log "starting RabbitMQ (log: $log)"
  # The broker's own pid file can be stale from an unclean stop; wait for this run's.
  rm -f "$KN_RABBIT_PIDFILE"
  # Foreground mode with console logging, so the log lands in our file. AMQP and Erlang
  # distribution listen on loopback only: this is a development broker.
  RABBIT_WRAPPER_PID=$(kn_spawn "$log" "${as_rabbitmq[@]}" env HOME="$KN_RABBIT_HOME" \
    RABBITMQ_LOGS=- RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1} \
-rabbitmq_management tcp_config $RABBIT_MANAGEMENT_LISTENER" \
    /usr/lib/rabbitmq/bin/rabbitmq-server)
}

rabbitmq_provision() {
  local vhost=$KUBENOVA_AMQP_VHOST user=$KUBENOVA_AMQP_OPERATOR_USER
  kn_rabbit_ensure_vhost "$vhost"
  kn_rabbit_ensure_user "$user" "$KUBENOVA_AMQP_OPERATOR_PASSWORD" ||
    kn_die "could not set up RabbitMQ user $user"
  kn_rabbitmqctl -q set_permissions -p "$vhost" "$user" '.*' '.*' '.*' >/dev/null
  "$KUBENOVA_ROOT/hack/rabbitmq-agent-user.sh" "$(hostname -s)" 9>&-
  rabbitmq_management_up
}

# --- RabbitMQ management API --------------------------------------------------------------
# In a cluster the operator mints each node's agent user through the management plugin's HTTP
# API (kubenova.agent_credentials), as its own user: the tag `administrator` is what lets a
# user manage other users. The integration tests of that path use it here too.

# Loopback only, like AMQP. An Erlang term, passed to the broker at start.
RABBIT_MANAGEMENT_LISTENER='[{ip,"127.0.0.1"},{port,15672}]'

rabbitmq_management_up() {
  local user=$KUBENOVA_AMQP_OPERATOR_USER
  if ! kn_rabbitmqctl -q eval 'application:which_applications().' |
    grep -q '{rabbitmq_management,'; then
    # A broker that was running before this setting existed gets the listener here, before
    # the plugin starts and reads it; one started by rabbitmq_start already has it.
    kn_rabbitmqctl -q eval \
      "application:set_env(rabbitmq_management, tcp_config, $RABBIT_MANAGEMENT_LISTENER)." \
      >/dev/null
    kn_log "enabling RabbitMQ's management plugin (http://127.0.0.1:15672)"
    rabbitmq_plugins -q enable rabbitmq_management >/dev/null ||
      kn_die "could not enable RabbitMQ's management plugin"
  fi
  kn_rabbitmqctl -q set_user_tags "$user" administrator >/dev/null
}

# rabbitmq_plugins ARGS...: rabbitmq-plugins as the rabbitmq user (see kn_rabbitmqctl).
rabbitmq_plugins() {
  if [[ $(id -u) == 0 ]]; then
    runuser -u rabbitmq -- env HOME="$KN_RABBIT_HOME" /usr/lib/rabbitmq/bin/rabbitmq-plugins "$@"
  else
    HOME="$KN_RABBIT_HOME" /usr/lib/rabbitmq/bin/rabbitmq-plugins "$@"
  fi
}

rabbitmq_down() {
  local pid
  if pid=$(kn_started_pid rabbitmq beam.smp); then
    kn_log "stopping RabbitMQ (pid $pid)"
    kn_rabbitmqctl -q stop >/dev/null || kn_log "rabbitmqctl stop failed; sending SIGTERM"
    kn_wait_gone "$pid" 60 || kn_terminate "$pid" 30
  fi
  kn_unmark rabbitmq
  if pid=$(kn_started_pid epmd epmd); then
    if epmd -names 2>/dev/null | grep -q '^name '; then
      kn_log "epmd (pid $pid) still serves other Erlang nodes; leaving it running"
    else
      kn_log "stopping epmd (pid $pid)"
      kn_terminate "$pid" 10
      kn_unmark epmd
    fi
  else
    kn_unmark epmd
  fi
}

rabbitmq_status() {
  kn_rabbit_running || { echo "down"; return 1; }
  echo "up   (127.0.0.1:5672, node $KN_RABBIT_NODE, vhost $KUBENOVA_AMQP_VHOST)$(origin rabbitmq beam.smp)"
}

# --- libvirt ------------------------------------------------------------------------------

# libvirt_daemon_pid NAME: pid of virtlogd/libvirtd from the pid file the daemon writes itself.
libvirt_daemon_pid() {
  local pid
  pid=$(kn_pidfile_pid "/run/$1.pid") || return 1
  [[ $(kn_pid_comm "$pid") == "$1" ]] || return 1
  printf '%s\n' "$pid"
}

libvirt_daemon_up() {
  local name=$1 log="$KN_LOG_DIR/$1.log"
  kn_started_pid "$name" "$name" >/dev/null || kn_unmark "$name"
  libvirt_daemon_pid "$name" >/dev/null && return 0
  kn_log "starting $name (log: $log)"
  # The daemon writes /run/NAME.pid, which gives the pid to record.
  kn_spawn_libvirt_daemon "$log" "$name" >/dev/null
  if ! kn_wait_until 30 "$name" libvirt_daemon_pid "$name"; then
    tail -n 20 "$log" >&2
    kn_die "$name did not start; see $log"
  fi
  kn_mark_started "$name" "$(libvirt_daemon_pid "$name")"
}

# network_field FIELD: a field of `virsh net-info` for the network (Active, Autostart...).
network_field() {
  virsh_ net-info "$NETWORK" 2>/dev/null | awk -F: -v f="$1" '$1 == f {gsub(/ /, "", $2); print $2}'
}

# The cgroup the chart's libvirt image moves its libvirtd into (kubenova-libvirt's entrypoint).
POD_LIBVIRT_CGROUP=/kubenova-libvirt

# foreign_libvirtd: print the pid of a libvirtd this script did not start, if one runs.
foreign_libvirtd() {
  local pid
  for pid in $(kn_pgrep -x libvirtd); do
    # The second host's libvirtd (libvirt2-up) has its own namespace and /run/libvirt.
    [[ $pid == "$(kn_started_pid libvirtd libvirtd)" || $pid == "$(libvirt2_pid libvirtd)" ]] ||
      { printf '%s\n' "$pid"; return 0; }
  done
  return 1
}

# pod_libvirtd PID: true when PID is the libvirtd of the chart's libvirt pod.
pod_libvirtd() { grep -q ":$POD_LIBVIRT_CGROUP\$" "/proc/$1/cgroup" 2>/dev/null; }

no_pod_libvirtd() {
  local pid
  pid=$(foreign_libvirtd) || return 0
  ! pod_libvirtd "$pid"
}

running_guests() { virsh_ list --name 2>/dev/null | grep -c . || true; }

# libvirt_console_tls: this host's console certificate and qemu.conf's TLS settings
# (hack/lib/console_tls.sh), before libvirtd starts; a libvirtd this script started that runs
# with other settings is restarted to read them (its guests keep running).
libvirt_console_tls() {
  local host pid changed
  host=${KUBENOVA_HOST:-$(hostname -s)}
  changed=$(kn_console_tls_setup "$host" "$KN_CONSOLE_HOSTS_DIR/$host" /etc/libvirt/qemu.conf)
  [[ $changed == changed ]] || return 0
  if pid=$(kn_started_pid libvirtd libvirtd); then
    kn_log "restarting libvirtd (pid $pid) to apply console TLS"
    kn_terminate "$pid" 30
    kn_unmark libvirtd
  elif pid=$(foreign_libvirtd); then
    kn_log "warning: libvirtd (pid $pid) was not started here; restart it to apply console TLS"
  fi
}

libvirt_up() {
  local pid
  # Uninstalling the chart deletes its libvirt pod; its libvirtd stops a moment later.
  if ! kn_wait_until 60 "the chart's libvirtd to stop" no_pod_libvirtd; then
    kn_die "the chart's libvirt pod still runs libvirtd (pid $(foreign_libvirtd));" \
      "uninstall the chart (hack/helm/install.sh --uninstall) before using the host's libvirtd"
  fi
  libvirt_daemon_up virtlogd
  libvirt_console_tls
  libvirt_daemon_up libvirtd
  # The first connection probes QEMU's capabilities, which takes seconds under emulation.
  kn_wait_until 90 "libvirtd" virsh_ version ||
    kn_die "libvirtd does not answer on $LIBVIRT_URI; see $KN_LOG_DIR/libvirtd.log"
  if ! virsh_ net-info "$NETWORK" >/dev/null 2>&1; then
    kn_log "defining libvirt network $NETWORK from $NETWORK_XML"
    virsh_ net-define "$NETWORK_XML" >/dev/null
  fi
  if [[ $(network_field Active) != yes ]]; then
    kn_log "starting libvirt network $NETWORK"
    virsh_ net-start "$NETWORK" >/dev/null
    : >"$NETWORK_MARKER"
  fi
  if [[ $(network_field Autostart) != yes ]]; then
    virsh_ net-autostart "$NETWORK" >/dev/null
  fi
}

libvirt_down() {
  local name pid
  # The network is left alone when the libvirtd answering is the chart's pod's.
  if [[ -e $NETWORK_MARKER ]] && no_pod_libvirtd; then
    if [[ $(running_guests) != 0 ]]; then
      kn_log "leaving network $NETWORK active: guests are attached to it"
    elif [[ $(network_field Active) == yes ]]; then
      kn_log "stopping libvirt network $NETWORK"
      virsh_ net-destroy "$NETWORK" >/dev/null || kn_log "could not stop network $NETWORK"
    fi
    rm -f "$NETWORK_MARKER"
  fi
  for name in libvirtd virtlogd; do
    if pid=$(kn_started_pid "$name" "$name"); then
      kn_log "stopping $name (pid $pid)"
      kn_terminate "$pid" 30
    fi
    kn_unmark "$name"
  done
}

libvirt_daemon_status() {
  local pid
  if pid=$(foreign_libvirtd) && pod_libvirtd "$pid"; then
    [[ $1 == virtlogd ]] && { echo "not used (libvirtd is the chart's)"; return 0; }
    echo "up   (the chart's libvirt pod, pid $pid)"
    return 0
  fi
  libvirt_daemon_pid "$1" >/dev/null || { echo "down"; return 1; }
  if [[ $1 == libvirtd ]]; then
    virsh_ version >/dev/null 2>&1 || { echo "down (does not answer on $LIBVIRT_URI)"; return 1; }
    echo "up   ($LIBVIRT_URI)$(origin libvirtd libvirtd)"
  else
    echo "up  $(origin virtlogd virtlogd)"
  fi
}

network_status() {
  [[ $(network_field Active) == yes ]] || { echo "down"; return 1; }
  local origin=" [already running before up]"
  [[ -e $NETWORK_MARKER ]] && origin=" [started by hack/services.sh]"
  echo "up   (bridge $(network_field Bridge), autostart $(network_field Autostart))$origin"
}

# --- commands -----------------------------------------------------------------------------

# origin NAME COMM: who started the daemon, for the status lines.
origin() {
  local pid
  if pid=$(kn_started_pid "$1" "$2"); then
    echo " [pid $pid, started by hack/services.sh]"
  else
    echo " [already running before up]"
  fi
}

cmd_status() {
  local rc=0 line
  line=$(mariadb_status) || rc=1
  printf '%-16s %s\n' mariadb "$line"
  line=$(rabbitmq_status) || rc=1
  printf '%-16s %s\n' rabbitmq "$line"
  line=$(libvirt_daemon_status virtlogd) || rc=1
  printf '%-16s %s\n' virtlogd "$line"
  line=$(libvirt_daemon_status libvirtd) || rc=1
  printf '%-16s %s\n' libvirtd "$line"
  line=$(network_status) || rc=1
  printf '%-16s %s\n' "network $NETWORK" "$line"
  return "$rc"
}

cmd_up() {
  local start=$SECONDS
  kn_ensure_packages "${PACKAGES[@]}"
  mariadb_up
  rabbitmq_up
  if [[ ${1:-} != --no-libvirt ]]; then
    libvirt_up
    cmd_status
  else
    # libvirt may well be down here: whoever needs it starts it later.
    cmd_status || true
  fi
  kn_log "services are up ($((SECONDS - start))s); agent URL for this host:" \
    "$KUBENOVA_STATE/agents/$(hostname -s).amqp-url"
}

cmd_down() {
  # The reverse of up; each step runs even when an earlier one fails.
  local rc=0
  if kn_is_marked libvirtd2 || kn_is_marked virtlogd2; then
    libvirt2_down || rc=1
  fi
  libvirt_down || rc=1
  rabbitmq_down || rc=1
  mariadb_down || rc=1
  kn_log "stopped what hack/services.sh had started"
  return "$rc"
}

usage() {
  sed -n '3,23p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

cmd_libvirt_up() {
  libvirt_up
  printf '%-16s %s\n' libvirtd "$(libvirt_daemon_status libvirtd)"
}

cmd_libvirt_down() {
  local pid
  libvirt_down
  if pid=$(foreign_libvirtd) && ! pod_libvirtd "$pid"; then
    kn_die "a libvirtd not started by hack/services.sh runs (pid $pid): stop it first," \
      "or the chart's libvirt pod, which would share /run/libvirt with it, cannot start"
  fi
}

cmd_libvirt2_up() {
  libvirt2_up
  printf '%-16s %s\n' libvirtd2 "$(libvirt2_status)"
}

cmd_libvirt2_down() { libvirt2_down; }

main() {
  case "${1:-}:$#" in
    up:1 | "up:2" | down:1 | libvirt-up:1 | libvirt-down:1 | libvirt2-up:1 | libvirt2-down:1) ;;
    status:1) cmd_status; return ;;
    libvirt2-status:1)
      local line rc=0
      line=$(libvirt2_status) || rc=1
      printf '%-16s %s\n' libvirtd2 "$line"
      return "$rc"
      ;;
    *) usage ;;
  esac
  [[ $1 != up || $# == 1 || $2 == --no-libvirt ]] || usage
  [[ $(id -u) == 0 ]] || kn_die "hack/services.sh $1 must run as root"
  # One command at a time per state dir; concurrent runs wait instead of racing.
  exec 9>"$KN_RUN_DIR/services.lock"
  flock -w 900 9 || kn_die "another hack/services.sh holds $KN_RUN_DIR/services.lock"
  "cmd_${1//-/_}" "${@:2}"
}

# Sourcing the file (rather than running it) only defines the functions.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  main "$@"
fi
