#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Create or update the RabbitMQ user of one host's node-agent, or delete it.
#
#   hack/rabbitmq-agent-user.sh HOST            create/update user agent-HOST
#   hack/rabbitmq-agent-user.sh --delete HOST   delete the user and its URL file
#
# The agent's AMQP URL (with a random password) goes to $KUBENOVA_STATE/agents/HOST.amqp-url,
# mode 0600, one line. A second run reuses the password in that file, so agents that already
# read it keep working.
#
# The user may touch nothing but its own queue `compute.HOST` on the vhost:
#   configure  ^compute\.HOST$                            declare its queue
#   write      ^(kubenova|kubenova-dlx|compute\.HOST)$     publish to the exchange, bind its
#                                                        queue, dead-letter to the DLX
#   read       ^(kubenova|compute\.HOST)$                  bind from the exchange, consume
# and, on the topic exchange `kubenova`, publish only with routing key `conductor` (reports)
# or one under `reply.compute.HOST.` (answers to calls made to this host), and bind only its
# own routing key `compute.HOST`. It cannot publish to the default exchange, declare
# exchanges, or read any other host's queue. Needs root and a running broker.
set -euo pipefail

# shellcheck source=lib/env.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/env.sh"
# shellcheck source=lib/daemon.sh
. "$KUBENOVA_ROOT/hack/lib/daemon.sh"
# shellcheck source=lib/rabbitmq.sh
. "$KUBENOVA_ROOT/hack/lib/rabbitmq.sh"

usage() {
  sed -n '3,7p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

delete=false
case "${1:-}" in
  --delete) delete=true; shift ;;
  -h | --help | "") usage ;;
esac
[[ $# == 1 ]] || usage
host=$1
# The host name becomes part of a user name, a queue name and a regex: allow hostname
# characters only.
[[ $host =~ ^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$ ]] ||
  kn_die "invalid host name: '$host' (letters, digits, dots and dashes only)"

user="agent-$host"
agents_dir="$KUBENOVA_STATE/agents"
url_file="$agents_dir/$host.amqp-url"
vhost="$KUBENOVA_AMQP_VHOST"

kn_rabbit_registered || kn_die "RabbitMQ is not running; start it with hack/services.sh up"

if $delete; then
  kn_rabbit_delete_user "$user" || kn_die "could not delete RabbitMQ user $user"
  rm -f "$url_file"
  kn_log "RabbitMQ user $user is gone"
  exit 0
fi

password=""
if [[ -s $url_file ]]; then
  password=$(sed -n 's|^amqp://[^:/@]*:\([A-Za-z0-9]*\)@.*$|\1|p' "$url_file")
fi
if [[ -z $password ]]; then
  # 32 alphanumerics (about 190 bits), safe inside a URL without escaping.
  password=$(tr -dc 'A-Za-z0-9' </dev/urandom | head -c 32 || true)
  [[ ${#password} == 32 ]] || kn_die "could not generate a password"
fi

vhost_in_url=${vhost//%/%25}
vhost_in_url=${vhost_in_url//\//%2F}
url="amqp://$user:$password@127.0.0.1:5672/$vhost_in_url"
mkdir -p "$agents_dir"
chmod 0700 "$agents_dir"
if [[ ! -f $url_file || $(<"$url_file") != "$url" ]]; then
  tmp=$(mktemp "$agents_dir/.$host.XXXXXX")
  printf '%s\n' "$url" >"$tmp"
  chmod 0600 "$tmp"
  mv -f "$tmp" "$url_file"
fi
chmod 0600 "$url_file"

kn_rabbit_ensure_vhost "$vhost"
kn_rabbit_ensure_user "$user" "$password" || kn_die "could not set up RabbitMQ user $user"

queue=$(kn_regex_quote "compute.$host")
exchange=$(kn_regex_quote "$KN_AMQP_EXCHANGE")
dlx=$(kn_regex_quote "$KN_AMQP_DEAD_LETTER_EXCHANGE")
kn_rabbitmqctl -q set_permissions -p "$vhost" "$user" \
  "^$queue\$" \
  "^($exchange|$dlx|$queue)\$" \
  "^($exchange|$queue)\$" >/dev/null
reply_prefix=$(kn_regex_quote "reply.compute.$host.")
kn_rabbitmqctl -q set_topic_permissions -p "$vhost" "$user" "$KN_AMQP_EXCHANGE" \
  "^(conductor|$reply_prefix.+)\$" \
  "^$queue\$" >/dev/null

kn_log "RabbitMQ user $user may use queue compute.$host on vhost $vhost; URL in $url_file"
