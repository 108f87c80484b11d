#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR disable=SC2016  # the chroot's scripts expand where they run
# Run `make venv` (hack/bootstrap.sh) the way a new user meets it: in a freshly made Debian
# bookworm root filesystem (mmdebstrap --variant=minbase: Essential packages and apt, nothing
# else) with a copy of this checkout in /src, then check that .venv imports libvirt and
# kubenova and that the Go hack/kube builds with is there. This host's packages, Go, .venv and
# caches are invisible in there, so what bootstrap forgets to install fails here.
#
#   hack/ci/fresh-debian.sh [--with PKG,...] [--keep] [-- COMMAND...]
#     --with PKG,...   also install these Debian packages before the run, to stand for a
#                      machine that has more than minbase (e.g. --with python3: Debian's Python
#                      without python3-venv, as on a cloud image). `make` is always installed:
#                      it is what the user types
#     --keep           leave the root filesystem behind (its path is printed) instead of
#                      deleting it
#     COMMAND          run in /src instead of the default check (joined, as a bash script
#                      with set -euo pipefail)
#
# Run as root (`make bootstrap-test`); takes about 2 minutes on two cores and 1.6 GB in /tmp
# (KUBENOVA_FRESH_TMP), with packages from this host's Debian mirror, PyPI and the Go module
# proxy. It is not part of `make test`.
#
# Nothing leaks onto the host: the chroot runs in its own mount and pid namespaces (unshare), so
# its /proc, /dev and /sys mounts vanish with it however it ends, and every process it started is
# killed when it ends. The root filesystem is deleted only once no mount is left under it.
set -euo pipefail
# shellcheck source=../lib/env.sh
. "$(dirname "$0")/../lib/env.sh"

with="make"
keep=0
command=()
while (($#)); do
  case "$1" in
    --with) with+=",${2:?--with needs a package list}"; shift 2 ;;
    --with=*) with+=",${1#--with=}"; shift ;;
    --keep) keep=1; shift ;;
    --) shift; command=("$@"); break ;;
    *) echo "usage: $0 [--with PKG,...] [--keep] [-- COMMAND...]" >&2; exit 2 ;;
  esac
done
# The default check: what `make up` and `make test` need from bootstrap. The Go part resolves
# hack/kube's module graph (its go.mod needs a new Go) and compiles one of its packages, which
# proves the toolchain whole without the long Kubernetes build.
if ((${#command[@]} == 0)); then
  command=('make venv
.venv/bin/python -c "import libvirt, kubenova
print(\"import libvirt, kubenova: ok; libvirt\", libvirt.getVersion())"
. hack/lib/env.sh
echo "go: $(command -v go): $(go version)"
cd hack/kube
go list -m k8s.io/kubernetes
CGO_ENABLED=0 go build -o /dev/null k8s.io/klog/v2
echo "go build in hack/kube: ok"')
fi

log() { printf '[%s] fresh-debian: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

((EUID == 0)) || die "run as root (it builds a root filesystem and chroots into it)"
command -v mmdebstrap >/dev/null 2>&1 || {
  log "installing mmdebstrap"
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -qq mmdebstrap ||
    die "apt-get install mmdebstrap failed"
}

# The fresh root uses this host's Debian mirrors (a user's machine has its own; these are the
# ones this host can reach), for the suites a Debian installation has: the release, its
# updates and its security updates. Backports is left out, as the installer does.
mirror_for() {
  apt-get indextargets --format '$(RELEASE) $(REPO_URI)' 'Created-By: Packages' 2>/dev/null |
    awk -v suite="$1" '$1 == suite { print $2; exit }'
}
mirror="$(mirror_for bookworm)"
security="$(mirror_for bookworm-security)"
mirror="${mirror:-http://deb.debian.org/debian/}"
security="${security:-http://deb.debian.org/debian-security/}"

tmp_base="${KUBENOVA_FRESH_TMP:-/tmp}"
root="$(mktemp -d "$tmp_base/fresh-debian.XXXXXX")"
child=""
# shellcheck disable=SC2329  # the EXIT trap runs it
cleanup() {
  local status=$? init=""
  # Normally the namespaces are gone already. After a signal, end them: unshare ignores SIGTERM
  # while its child runs, so it gets SIGKILL, and --kill-child then kills the child, the pid
  # namespace's init, with which the kernel kills everything else in there. Wait for that init
  # (a zombie counts as gone: nobody may reap it here).
  if [[ -n $child ]] && kill -0 "$child" 2>/dev/null; then
    init="$(pgrep -P "$child" | head -n1 || true)"
    kill -KILL "$child" 2>/dev/null || true
    wait "$child" 2>/dev/null || true
    local deadline=$((SECONDS + 30)) state
    while [[ -n $init ]] && ((SECONDS < deadline)); do
      state="$(cat "/proc/$init/stat" 2>/dev/null)" || break
      state="${state##*) }"
      [[ ${state%% *} == [ZX] ]] && break
      sleep 0.2
    done
  fi
  if grep -qF " $root/" /proc/self/mountinfo; then
    log "mounts remain under $root; not deleting it:"
    grep -F " $root/" /proc/self/mountinfo >&2
  elif ((keep)); then
    log "kept the root filesystem: $root"
  else
    rm -rf --one-file-system "$root"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A network that inspects TLS needs its CA, which a machine on it keeps where Debian's
# ca-certificates takes local CAs from; they join the system's bundle when that package is
# installed, as on this host. Put there before any package is, since --with may bring it.
ca_hook=()
if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
  ca_hook=(--setup-hook='mkdir -p "$1/usr/local/share/ca-certificates" &&
    cp /usr/local/share/ca-certificates/*.crt "$1/usr/local/share/ca-certificates/"')
fi

start=$SECONDS
log "building a minbase bookworm root in $root (mirror $mirror, with $with)"
# --aptopt: the same apt a fresh install has, minus translations nobody reads here.
mmdebstrap --quiet --mode=root --variant=minbase --include="$with" "${ca_hook[@]}" \
  --aptopt='Acquire::Languages "none"' \
  bookworm "$root" \
  "deb $mirror bookworm main" \
  "deb $mirror bookworm-updates main" \
  "deb $security bookworm-security main" ||
  die "mmdebstrap failed"
# mmdebstrap leaves resolv.conf and hosts empty for the image's runtime to fill; a machine has
# its own.
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
log "root filesystem ready in $((SECONDS - start))s"

# A copy of the checkout as a clone would have it: no .git, and none of this host's .venv,
# state or caches.
mkdir "$root/src"
tar -C "$KUBENOVA_ROOT" -cf - --exclude=./.git --exclude=./.venv --exclude=./.kubenova \
  --exclude=__pycache__ --exclude='*.egg-info' --exclude=.mypy_cache --exclude=.ruff_cache \
  --exclude=.pytest_cache --exclude=./build --exclude=./dist . | tar -C "$root/src" -xf -

# Inside the namespaces: a /dev of its own (a tmpfs with bind mounts of the host's few harmless
# device nodes, its own devpts and /dev/shm) rather than the host's whole /dev, /proc of its own
# pid namespace, and /sys read-only.
inner='
set -euo pipefail
root=$1
shift
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$root/sys"
mount -t tmpfs -o nosuid,mode=0755 tmpfs "$root/dev"
for node in null zero full random urandom tty; do
  : >"$root/dev/$node"
  mount --bind "/dev/$node" "$root/dev/$node"
done
mkdir "$root/dev/pts" "$root/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts "$root/dev/pts"
ln -s pts/ptmx "$root/dev/ptmx"
mount -t tmpfs -o nosuid,nodev tmpfs "$root/dev/shm"
ln -s /proc/self/fd "$root/dev/fd"
ln -s /proc/self/fd/0 "$root/dev/stdin"
ln -s /proc/self/fd/1 "$root/dev/stdout"
ln -s /proc/self/fd/2 "$root/dev/stderr"
exec chroot "$root" "$@"
'
# A clean environment, as a root login has it; the proxy and CA bundle settings this host's
# network needs are passed on.
envs=(HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8
  TERM=dumb)
for name in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY GOPROXY \
  PIP_INDEX_URL SSL_CERT_FILE SSL_CERT_DIR PIP_CERT REQUESTS_CA_BUNDLE CURL_CA_BUNDLE; do
  if [[ -n ${!name:-} ]]; then envs+=("$name=${!name}"); fi
done

run_start=$SECONDS
log "running in the fresh root, in /src: ${command[*]}"
set +e
unshare --mount --propagation private --pid --fork --kill-child \
  bash -c "$inner" inner "$root" /usr/bin/env -i "${envs[@]}" \
  /bin/bash -c 'set -euo pipefail; cd /src; eval "$1"' run "${command[*]}" &
child=$!
wait "$child"
status=$?
set -e
child=""
log "command exited $status after $((SECONDS - run_start))s (total $((SECONDS - start))s)"
exit "$status"
