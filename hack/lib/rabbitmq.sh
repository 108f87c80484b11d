# shellcheck shell=bash disable=SC2034  # variables are used by the scripts that source this
# RabbitMQ helpers shared by hack/services.sh and hack/rabbitmq-agent-user.sh.
# Source after env.sh and daemon.sh.

# Exchange names of the messaging contract (kubenova.config.MessagingSettings); the agent
# permissions below are written against them.
KN_AMQP_EXCHANGE="kubenova"
KN_AMQP_DEAD_LETTER_EXCHANGE="kubenova-dlx"

KN_RABBIT_HOME="/var/lib/rabbitmq"
KN_RABBIT_NODE="rabbit@$(hostname -s)"
# Where the broker writes its Erlang VM's pid (Debian's RABBITMQ_MNESIA_BASE/<node>.pid).
KN_RABBIT_PIDFILE="$KN_RABBIT_HOME/mnesia/$KN_RABBIT_NODE.pid"

# kn_rabbitmqctl ARGS...: rabbitmqctl as the rabbitmq user, whose HOME holds the Erlang cookie
# the broker uses. Debian's /usr/sbin wrapper does the same through `su -c "<joined args>"`,
# which re-parses the arguments in a shell; permission regexes must reach it untouched.
kn_rabbitmqctl() {
  if [[ $(id -u) == 0 ]]; then
    runuser -u rabbitmq -- env HOME="$KN_RABBIT_HOME" \
      /usr/lib/rabbitmq/bin/rabbitmqctl "$@"
  else
    HOME="$KN_RABBIT_HOME" /usr/lib/rabbitmq/bin/rabbitmqctl "$@"
  fi
}

# kn_rabbit_registered: true when the node is registered with epmd. Unlike rabbitmqctl, this
# does not start an epmd daemon as a side effect when none runs.
kn_rabbit_registered() {
  epmd -names 2>/dev/null | grep -q "^name ${KN_RABBIT_NODE%@*} at port "
}

# kn_rabbit_running: true when the broker application is up and serving.
kn_rabbit_running() {
  kn_rabbit_registered && kn_rabbitmqctl -q await_startup --timeout 5 >/dev/null 2>&1
}

# rabbitmqctl's exit status for "no such user" (EX_NOUSER).
KN_RABBIT_NO_SUCH_USER=67

# kn_rabbit_ensure_user USER PASSWORD: reset USER's password, or create USER. The password
# travels on stdin so that it never shows in a process listing. Trying the change first costs
# one rabbitmqctl run (about half a second) when the user exists, the usual case.
kn_rabbit_ensure_user() {
  local user=$1 password=$2 rc=0
  printf '%s' "$password" | kn_rabbitmqctl -q change_password "$user" >/dev/null 2>&1 || rc=$?
  if ((rc == KN_RABBIT_NO_SUCH_USER)); then
    printf '%s' "$password" | kn_rabbitmqctl -q add_user "$user" >/dev/null
  elif ((rc != 0)); then
    kn_log "rabbitmqctl change_password $user failed (exit status $rc)"
    return 1
  fi
}

# kn_rabbit_delete_user USER: delete USER; a user that does not exist is not an error.
kn_rabbit_delete_user() {
  local rc=0
  kn_rabbitmqctl -q delete_user "$1" >/dev/null 2>&1 || rc=$?
  ((rc == 0 || rc == KN_RABBIT_NO_SUCH_USER)) || {
    kn_log "rabbitmqctl delete_user $1 failed (exit status $rc)"
    return 1
  }
}

# kn_rabbit_ensure_vhost VHOST
kn_rabbit_ensure_vhost() {
  if ! kn_rabbitmqctl -s list_vhosts | grep -qxF -- "$1"; then
    kn_rabbitmqctl -q add_vhost "$1" >/dev/null
  fi
}

# kn_regex_quote TEXT: TEXT as a literal inside a RabbitMQ (PCRE) permission regex.
kn_regex_quote() {
  printf '%s' "$1" | sed -e 's/[][\.*^$+?(){}|/]/\\&/g'
}
