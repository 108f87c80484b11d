# shellcheck shell=bash
# TLS for guests' VNC and SPICE consoles on the local libvirtds: each daemon's qemu.conf turns
# TLS on (vnc_tls with x509 client verification, spice_tls) and names a directory holding that
# host's certificate from Kubenova's CA. Source after env.sh and daemon.sh; both the host's
# libvirtd (hack/services.sh libvirt-up) and the second one (hack/lib/libvirt2.sh) call
# `kn_console_tls_setup` before they start a daemon, because libvirt refuses to start a guest
# with TLS consoles when the files are missing.
#
# The CA is a pair of files in $KN_CONSOLE_CA_DIR, made on first use, and kept the same as the
# cluster's Secret kubenova-ca whenever a cluster answers: an existing Secret wins (its pair is
# copied into the files), and a missing one is created from the files, so that the console
# proxy's client certificate, which the operator issues from the Secret, is one QEMU trusts.
# Why it is done this way: the docstring of operator/kubenova/certs/host_dir.py.

# Apart from the cluster's $KUBENOVA_STATE/pki, which is private to root: QEMU, running as
# libvirt-qemu, must reach each host's directory.
KN_CONSOLE_CA_DIR="${KUBENOVA_CONSOLE_CA_DIR:-$KUBENOVA_STATE/console-pki/ca}"
# The namespace of the CA Secret: the operator's (a host process reads `default`).
KN_CONSOLE_CA_NAMESPACE="${KUBENOVA_CONSOLE_CA_NAMESPACE:-default}"
KN_CONSOLE_CA_SECRET=kubenova-ca
# Each local host's x509 directory: $KN_CONSOLE_HOSTS_DIR/<host>.
KN_CONSOLE_HOSTS_DIR="$KUBENOVA_STATE/console-pki/hosts"
KN_CONSOLE_TLS_BEGIN="# BEGIN kubenova console TLS (hack/lib/console_tls.sh)"
KN_CONSOLE_TLS_END="# END kubenova console TLS"

kn_console_kubectl() {
  "$KUBENOVA_STATE/bin/kubectl" --request-timeout=5s -n "$KN_CONSOLE_CA_NAMESPACE" "$@"
}

# kn_console_cluster_answers: true when the local cluster's apiserver answers.
kn_console_cluster_answers() {
  [[ -x $KUBENOVA_STATE/bin/kubectl && -e $KUBECONFIG ]] &&
    kn_console_kubectl get --raw /readyz >/dev/null 2>&1
}

# kn_console_ca_pull: the Secret's CA into the files, when a cluster answers and has one.
kn_console_ca_pull() {
  local crt key
  crt=$(kn_console_kubectl get secret "$KN_CONSOLE_CA_SECRET" \
    -o 'jsonpath={.data.tls\.crt}' 2>/dev/null) || return 0
  key=$(kn_console_kubectl get secret "$KN_CONSOLE_CA_SECRET" \
    -o 'jsonpath={.data.tls\.key}' 2>/dev/null) || return 0
  [[ -n $crt && -n $key ]] || return 0
  install -d -m 0700 "$KN_CONSOLE_CA_DIR"
  if [[ $(base64 -d <<<"$crt") != $(cat "$KN_CONSOLE_CA_DIR/ca.crt" 2>/dev/null) ]]; then
    kn_log "console TLS: using the CA of Secret $KN_CONSOLE_CA_NAMESPACE/$KN_CONSOLE_CA_SECRET"
    (umask 077 && base64 -d <<<"$key" >"$KN_CONSOLE_CA_DIR/ca.key")
    base64 -d <<<"$crt" >"$KN_CONSOLE_CA_DIR/ca.crt"
  fi
}

# kn_console_ca_push: create the Secret from the files when a cluster answers and has none.
kn_console_ca_push() {
  kn_console_kubectl get secret "$KN_CONSOLE_CA_SECRET" >/dev/null 2>&1 && return 0
  kn_log "console TLS: creating Secret $KN_CONSOLE_CA_NAMESPACE/$KN_CONSOLE_CA_SECRET from $KN_CONSOLE_CA_DIR"
  kn_console_kubectl create secret tls "$KN_CONSOLE_CA_SECRET" \
    --cert="$KN_CONSOLE_CA_DIR/ca.crt" --key="$KN_CONSOLE_CA_DIR/ca.key" >/dev/null
}

# kn_console_tls_setup HOST CERT_DIR QEMU_CONF: write HOST's certificate into CERT_DIR and
# point QEMU_CONF at it (a block of its own, replaced at every call). Prints "changed" when
# QEMU_CONF changed, which a running libvirtd only reads at its next start.
kn_console_tls_setup() {
  local host=$1 dir=$2 conf=$3 cluster=no before
  local manage="$KUBENOVA_ROOT/.venv/bin/kubenova-manage"
  [[ -x $manage ]] || kn_die "console TLS needs $manage: run \`make venv\` first"
  install -d -m 0755 "$(dirname "$KN_CONSOLE_CA_DIR")" "$KN_CONSOLE_HOSTS_DIR"
  if kn_console_cluster_answers; then
    cluster=yes
    kn_console_ca_pull
  fi
  "$manage" console-certs --host "$host" --dir "$dir" --ca-dir "$KN_CONSOLE_CA_DIR" \
    --address 127.0.0.1 --group libvirt-qemu >/dev/null
  if [[ $cluster == yes ]]; then
    kn_console_ca_push
  fi
  before=$(cat "$conf")
  kn_console_tls_strip "$conf"
  cat >>"$conf" <<EOF
$KN_CONSOLE_TLS_BEGIN
vnc_tls = 1
vnc_tls_x509_verify = 1
vnc_tls_x509_cert_dir = "$dir"
spice_tls = 1
spice_tls_x509_cert_dir = "$dir"
$KN_CONSOLE_TLS_END
EOF
  [[ $(cat "$conf") == "$before" ]] || echo changed
}

# kn_console_tls_strip QEMU_CONF: remove the block kn_console_tls_setup wrote, if any.
kn_console_tls_strip() {
  sed -i "\\|^$KN_CONSOLE_TLS_BEGIN\$|,\\|^$KN_CONSOLE_TLS_END\$|d" "$1"
}
