#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Simulated hypervisor hosts: node-agents on the test driver, for benchmarks and tests of many
# hosts on one machine. One agent process simulates many hosts (kubenova-agent --hosts-file):
# each host still has its own RabbitMQ user, queue, heartbeat and records, on a test hypervisor
# of its own (see node-agent/kubenova_agent/fleet.py).
#
#   hack/sim-hosts.sh start N [--prefix P] [--processes K] [--vcpus V] [--memory-mib M]
#                             [--disk-gib D] [--zones a,b,c] [--label K=V]... [--log-level L]
#                             [--hypervisor URI] [--workers W] [--sync-interval S]
#   hack/sim-hosts.sh stop [--prefix P]
#   hack/sim-hosts.sh kill [--prefix P] [--process J]
#   hack/sim-hosts.sh retire [--prefix P]
#   hack/sim-hosts.sh stats [--prefix P]
#
# start: hosts P-001 ... P-N (prefix default `sim`; 8 vCPUs, 16384 MiB, 200 GiB unless told),
#   spread over K agent processes (default 1), process J serving every K-th host from the J-th.
#   Each host gets its RabbitMQ user agent-P-NNN with the permissions hack/rabbitmq-agent-user.sh
#   gives (its own queue only), all created in one `rabbitmqctl import_definitions` (one run
#   for any number of hosts, instead of three half-second rabbitmqctl runs per host), and its
#   URL in $KUBENOVA_STATE/agents/P-NNN.amqp-url. Process J's hosts file is
#   $KUBENOVA_STATE/agents/sim-P-J.hosts, its pid file $KUBENOVA_STATE/run/sim-P-J.pid and its
#   log $KUBENOVA_STATE/logs/sim-P-J.log. --zones spreads the hosts round-robin over the label
#   topology.kubernetes.io/zone=a, =b, ...; --label adds labels to every host, and every host
#   carries kubenova.io/sim-prefix=P. Hosts a running process of the prefix serves are left as
#   they are; the others go to new processes. Each host simulates on a test hypervisor of its
#   own inside its process, unless --hypervisor names one (kubenova-agent --test-hypervisor):
#   test+unix:///default is libvirtd's, shared by the hosts and outliving their processes, so
#   that a killed agent process finds its hosts' guests again, as on real hosts. A simulated
#   host handles W messages at once (default 2: KUBENOVA_AGENT_WORKERS, 8 on a real host) and
#   syncs its power states every S seconds (default 30: KUBENOVA_SYNC_INTERVAL, 2 on a real
#   host; lifecycle events report every change at once, the sync is the fallback): a thousand
#   hosts in one process at the real hosts' settings spend its interpreter on threads and
#   syncs.
# stop: SIGTERM every process of the prefix (SIGKILL after 60 s): each host tells the conductor
#   it stops. Nothing is deleted: the hosts' records, Hypervisor objects, queues and RabbitMQ
#   users stay, and the hosts go down.
# kill: SIGKILL the prefix's process J (default: every one), as a crash would end it: its hosts
#   say nothing and go down after service_down_time.
# retire: stop, then delete the prefix's Hypervisor objects (kubectl delete hypervisors -l
#   kubenova.io/sim-prefix=P), which forgets the hosts that are down and run nothing, as Nova's
#   `service delete` does: hosts of a finished benchmark do not stay listed, and counted, as
#   down. A host that still has instances is kept (its Hypervisor says why).
# stats: how many processes of the prefix run, how many hosts they serve, their summed RSS and
#   the CPU time they have used.
set -euo pipefail

# shellcheck source=lib/env.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/env.sh"
# shellcheck source=lib/daemon.sh
. "$KUBENOVA_ROOT/hack/lib/daemon.sh"
# shellcheck source=lib/proc.sh
. "$KUBENOVA_ROOT/hack/lib/proc.sh"
# shellcheck source=lib/rabbitmq.sh
. "$KUBENOVA_ROOT/hack/lib/rabbitmq.sh"

AGENT="$KUBENOVA_ROOT/.venv/bin/kubenova-agent"
AGENTS_DIR="$KUBENOVA_STATE/agents"
ZONE_LABEL="topology.kubernetes.io/zone"
PREFIX_LABEL="kubenova.io/sim-prefix"

usage() {
  sed -n '8,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# host_name PREFIX INDEX: P-001 (three digits at least, so names sort in order).
host_name() { printf '%s-%03d' "$1" "$2"; }

# process_pids PREFIX: "INDEX PID" for each agent process of PREFIX whose pid file names a live
# process.
process_pids() {
  local pidfile name pid
  for pidfile in "$KN_RUN_DIR/sim-$1-"*.pid; do
    [[ -e $pidfile ]] || continue
    name=$(basename "$pidfile" .pid)
    # Only sim-P-<digits>: prefix "sim" must not take the processes of prefix "sim-big".
    [[ $name =~ ^sim-$1-([0-9]+)$ ]] || continue
    pid=$(kn_pidfile_pid "$pidfile") || continue
    printf '%s %s\n' "${BASH_REMATCH[1]}" "$pid"
  done
}

# hosts_file PREFIX INDEX: the hosts file of the prefix's process INDEX.
hosts_file() { printf '%s/sim-%s-%s.hosts' "$AGENTS_DIR" "$1" "$2"; }

# url_password FILE: the password inside an agent's URL file, or nothing.
url_password() {
  [[ -s $1 ]] || return 0
  sed -n 's|^amqp://[^:/@]*:\([A-Za-z0-9]*\)@.*$|\1|p' "$1"
}

# write_url_file HOST PASSWORD: the agent's URL file, mode 0600, replaced atomically.
write_url_file() {
  local host=$1 password=$2 file="$AGENTS_DIR/$1.amqp-url" vhost url tmp
  vhost=${KUBENOVA_AMQP_VHOST//%/%25}
  vhost=${vhost//\//%2F}
  url="amqp://agent-$host:$password@127.0.0.1:5672/$vhost"
  if [[ ! -f $file || $(<"$file") != "$url" ]]; then
    tmp=$(mktemp "$AGENTS_DIR/.$host.XXXXXX")
    printf '%s\n' "$url" >"$tmp"
    chmod 0600 "$tmp"
    mv -f "$tmp" "$file"
  fi
  chmod 0600 "$file"
}

# ensure_users HOST...: every host's RabbitMQ user, password and permissions, in one import.
# The permission rules are hack/rabbitmq-agent-user.sh's; see its header for what they allow.
# Lines of "user password configure write read topic-write topic-read" go to a small Python
# program on stdin (so no password reaches a command line), which writes the definitions
# document; rabbitmqctl reads it from stdin too. Importing merges: other users are untouched.
ensure_users() {
  local host password queue exchange dlx
  mkdir -p "$AGENTS_DIR"
  chmod 0700 "$AGENTS_DIR"
  exchange=$(kn_regex_quote "$KN_AMQP_EXCHANGE")
  dlx=$(kn_regex_quote "$KN_AMQP_DEAD_LETTER_EXCHANGE")
  kn_rabbit_ensure_vhost "$KUBENOVA_AMQP_VHOST"
  for host in "$@"; do
    password=$(url_password "$AGENTS_DIR/$host.amqp-url")
    if [[ -z $password ]]; then
      # 32 alphanumerics (about 190 bits), safe inside a URL without escaping.
      password=$(tr -dc 'A-Za-z0-9' </dev/urandom | head -c 32 || true)
      [[ ${#password} == 32 ]] || kn_die "could not generate a password"
    fi
    write_url_file "$host" "$password"
    queue=$(kn_regex_quote "compute.$host")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "agent-$host" "$password" \
      "^$queue\$" "^($exchange|$dlx|$queue)\$" "^($exchange|$queue)\$" \
      '^conductor$' "^$queue\$"
  done | "$KUBENOVA_ROOT/.venv/bin/python" -c '
import base64, hashlib, json, os, sys
vhost, exchange = sys.argv[1], sys.argv[2]
users, permissions, topic_permissions = [], [], []
for line in sys.stdin:
    user, password, configure, write, read, topic_write, topic_read = line.rstrip("\n").split("\t")
    # RabbitMQ 3.x rabbit_password_hashing_sha256: base64(salt + sha256(salt + password)).
    salt = os.urandom(4)
    digest = hashlib.sha256(salt + password.encode()).digest()
    users.append({
        "name": user,
        "password_hash": base64.b64encode(salt + digest).decode(),
        "hashing_algorithm": "rabbit_password_hashing_sha256",
        "tags": [],
    })
    permissions.append(
        {"user": user, "vhost": vhost, "configure": configure, "write": write, "read": read}
    )
    topic_permissions.append({
        "user": user, "vhost": vhost, "exchange": exchange,
        "write": topic_write, "read": topic_read,
    })
json.dump(
    {"users": users, "permissions": permissions, "topic_permissions": topic_permissions},
    sys.stdout,
    indent=1,
)
print()
' "$KUBENOVA_AMQP_VHOST" "$KN_AMQP_EXCHANGE" |
    kn_rabbitmqctl -q import_definitions --format json >/dev/null ||
    kn_die "could not import the RabbitMQ users of the simulated hosts"
}

cmd_start() {
  local count="" prefix=sim processes=1 vcpus=8 memory=16384 disk=200 zones="" log_level=INFO
  local hypervisor="" workers=2 sync_interval=30
  local -a labels=()
  while (($#)); do
    case "$1" in
      --prefix) prefix=${2:?}; shift 2 ;;
      --processes) processes=${2:?}; shift 2 ;;
      --vcpus) vcpus=${2:?}; shift 2 ;;
      --memory-mib) memory=${2:?}; shift 2 ;;
      --disk-gib) disk=${2:?}; shift 2 ;;
      --zones) zones=${2:?}; shift 2 ;;
      --label) labels+=("${2:?}"); shift 2 ;;
      --log-level) log_level=${2:?}; shift 2 ;;
      --hypervisor) hypervisor=${2:?}; shift 2 ;;
      --workers) workers=${2:?}; shift 2 ;;
      --sync-interval) sync_interval=${2:?}; shift 2 ;;
      -h | --help) usage ;;
      -*) kn_die "unknown option $1" ;;
      *) [[ -z $count ]] || usage; count=$1; shift ;;
    esac
  done
  [[ $count =~ ^[1-9][0-9]*$ ]] || kn_die "start wants a number of hosts, got '${count}'"
  for value in "$processes" "$vcpus" "$memory" "$disk" "$workers" "$sync_interval"; do
    [[ $value =~ ^[1-9][0-9]*$ ]] || kn_die "not a positive integer: '$value'"
  done
  # The prefix becomes part of host names, which name Hypervisor objects (lower-case DNS
  # names), RabbitMQ users, queues and permission regexes.
  [[ $prefix =~ ^[a-z0-9]([a-z0-9-]{0,40}[a-z0-9])?$ ]] ||
    kn_die "invalid prefix '$prefix' (lower-case letters, digits and dashes)"
  local label
  for label in "${labels[@]}"; do
    [[ $label == ?*=* ]] || kn_die "--label wants KEY=VALUE, got '$label'"
  done
  local -a zone_list=()
  [[ -z $zones ]] || IFS=, read -r -a zone_list <<<"$zones"
  [[ -x $AGENT ]] || kn_die "$AGENT is missing: run make venv"
  # A hosts file's fields are separated by blanks.
  [[ $AGENTS_DIR != *[[:space:]]* ]] || kn_die "KUBENOVA_STATE must not contain blanks: $AGENTS_DIR"
  kn_rabbit_registered || kn_die "RabbitMQ is not running; start it with hack/services.sh up"

  local -a hosts=()
  local i
  for ((i = 1; i <= count; i++)); do hosts+=("$(host_name "$prefix" "$i")"); done
  kn_log "RabbitMQ users for ${#hosts[@]} hosts ($prefix-*)"
  ensure_users "${hosts[@]}"

  # Hosts that a running process serves stay with it.
  local -A served=()
  local index pid line file next=1
  while read -r index pid; do
    ((index < next)) || next=$((index + 1))
    file=$(hosts_file "$prefix" "$index")
    if [[ ! -r $file ]]; then
      # Removed by hand: which hosts it serves is not known; the new process numbers go on
      # after it, and a host of it started again would have two agents, so say so.
      kn_log "warning: process $index of $prefix (pid $pid) runs without its hosts file" \
        "$file; hosts it serves may be started twice (stop it first: $0 stop --prefix $prefix)"
      continue
    fi
    while read -r line; do
      [[ -z $line || $line == \#* ]] || served[${line%% *}]=$index
    done <"$file"
  done < <(process_pids "$prefix")

  local -a chunks=()
  local host zone_label="" label_fields position=0
  for ((i = 0; i < count; i++)); do
    host=${hosts[i]}
    [[ -z ${served[$host]:-} ]] || continue
    label_fields=""
    if ((${#zone_list[@]})); then
      label_fields=" $ZONE_LABEL=${zone_list[i % ${#zone_list[@]}]}"
    fi
    chunks[position % processes]+="$host $AGENTS_DIR/$host.amqp-url$label_fields"$'\n'
    position=$((position + 1))
  done

  local -a argv=(env -u KUBENOVA_DB_URL -u KUBENOVA_DB_PASSWORD
    KUBENOVA_AGENT_WORKERS="$workers" KUBENOVA_SYNC_INTERVAL="$sync_interval" "$AGENT" --driver test
    --vcpus "$vcpus" --memory-mib "$memory" --disk-gib "$disk" --log-level "$log_level"
    # Every host says which simulation it belongs to, so a benchmark can keep its instances
    # on its own hosts (nodeSelector) and away from real ones.
    --label "$PREFIX_LABEL=$prefix")
  for label in "${labels[@]}"; do argv+=(--label "$label"); done
  [[ -z $hypervisor ]] || argv+=(--test-hypervisor "$hypervisor")
  local chunk file name started=0
  for chunk in "${chunks[@]}"; do
    [[ -n $chunk ]] || continue
    file=$(hosts_file "$prefix" "$next")
    name="sim-$prefix-$next"
    printf '%s' "$chunk" >"$file"
    # No database settings, as in a cluster (env.sh exports them for the operator).
    pid=$(kn_spawn "$KN_LOG_DIR/$name.log" "${argv[@]}" --hosts-file "$file")
    printf '%s\n' "$pid" >"$(proc_pidfile "$name")"
    started=$((started + 1))
    next=$((next + 1))
  done
  kn_log "$position simulated hosts in $started new processes ($((count - position)) already" \
    "running); logs in $KN_LOG_DIR/sim-$prefix-J.log"
}

# signal_processes PREFIX SIGNAL WAIT_S [INDEX]: send SIGNAL to the prefix's processes (or
# process INDEX), wait up to WAIT_S seconds for them to end, SIGKILL what is left, and remove
# their pid files.
signal_processes() {
  local prefix=$1 signal=$2 wait_s=$3 only=${4:-}
  local -a indexes=() pids=()
  local index pid
  while read -r index pid; do
    [[ -z $only || $index == "$only" ]] || continue
    indexes+=("$index")
    pids+=("$pid")
  done < <(process_pids "$prefix")
  # All at once: one by one, each would wait for its hosts' shutdown in turn.
  ((${#pids[@]} == 0)) || kill "-$signal" "${pids[@]}" 2>/dev/null || true
  local deadline=$((SECONDS + wait_s)) alive
  while :; do
    alive=()
    for pid in "${pids[@]}"; do
      if kn_pid_alive "$pid"; then alive+=("$pid"); fi
    done
    ((${#alive[@]})) || break
    if ((SECONDS >= deadline)); then
      kn_log "${#alive[@]} agent processes ignored SIG$signal for ${wait_s}s; killing them"
      kill -KILL "${alive[@]}" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
  for index in "${indexes[@]}"; do rm -f "$(proc_pidfile "sim-$prefix-$index")"; done
  printf '%s\n' "${#pids[@]}"
}

prefix_option() {
  case "${1:-}" in
    --prefix) printf '%s\n' "${2:?}" ;;
    *) usage ;;
  esac
}

cmd_stop() {
  local prefix=sim stopped name
  (($# == 0)) || prefix=$(prefix_option "$@")
  stopped=$(signal_processes "$prefix" TERM 60)
  # Pid files of processes that had already exited.
  for name in "$KN_RUN_DIR/sim-$prefix-"*.pid; do
    [[ -e $name && $(basename "$name" .pid) =~ ^sim-$prefix-[0-9]+$ ]] && rm -f "$name"
  done
  kn_log "stopped $stopped agent processes of the simulated hosts $prefix-*"
}

cmd_retire() {
  local prefix=sim
  (($# == 0)) || prefix=$(prefix_option "$@")
  cmd_stop --prefix "$prefix"
  "$KUBENOVA_STATE/bin/kubectl" delete hypervisors -l "$PREFIX_LABEL=$prefix" --wait=false \
    >/dev/null || kn_die "could not delete the Hypervisors of $prefix-*"
  kn_log "retired the simulated hosts $prefix-*"
}

cmd_kill() {
  local prefix=sim only="" killed
  while (($#)); do
    case "$1" in
      --prefix) prefix=${2:?}; shift 2 ;;
      --process) only=${2:?}; shift 2 ;;
      *) usage ;;
    esac
  done
  killed=$(signal_processes "$prefix" KILL 10 "$only")
  kn_log "killed $killed agent processes of the simulated hosts $prefix-*"
}

cmd_stats() {
  local prefix=sim
  (($# == 0)) || prefix=$(prefix_option "$@")
  local index pid count=0 hosts=0 rss_kib=0 ticks=0 rss stat line
  local -a fields
  while read -r index pid; do
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null) || continue
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    # Fields after the parenthesised command name: utime and stime are the 12th and 13th.
    read -r -a fields <<<"${stat##*) }"
    count=$((count + 1))
    rss_kib=$((rss_kib + ${rss:-0}))
    ticks=$((ticks + fields[11] + fields[12]))
    while read -r line; do
      [[ -z $line || $line == \#* ]] || hosts=$((hosts + 1))
    done <"$(hosts_file "$prefix" "$index")"
  done < <(process_pids "$prefix")
  local hz
  hz=$(getconf CLK_TCK)
  printf 'processes=%d hosts=%d rss_mib=%d cpu_s=%d.%02d\n' "$count" "$hosts" \
    $((rss_kib / 1024)) $((ticks / hz)) $(((ticks % hz) * 100 / hz))
}

case "${1:-}" in
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  kill) shift; cmd_kill "$@" ;;
  retire) shift; cmd_retire "$@" ;;
  stats) shift; cmd_stats "$@" ;;
  *) usage ;;
esac
