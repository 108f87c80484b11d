#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR disable=SC2016  # hook and chroot scripts expand where they run
# Build Kubenova's container images without a Docker engine and push them to the registry on
# this machine ($KUBENOVA_REGISTRY, started by hack/registry.sh):
#
#   kubenova/pause         the pod sandbox (a static binary built here); also tagged 3.10
#   kubenova/coredns       the cluster's DNS server (built by hack/node/build.sh); tagged by its version
#   kubenova/toolbox       busybox, for tests (nslookup, wget)
#   kubenova/operator      kubenova-operator, kubenova-manage
#   kubenova/node-agent    kubenova-agent, qemu-img
#   kubenova/libvirt       libvirtd, QEMU, dnsmasq
#   kubenova/mariadb       MariaDB, initialised on first start
#   kubenova/rabbitmq      RabbitMQ with the management plugin
#   kubenova/image-server  the tiny guest image over HTTP, and the snapshots uploaded to it
#   kubenova/console       kubenova-console with noVNC and spice-html5 (hack/console/assets.sh)
#
# Usage: hack/images/build.sh [--refresh] [NAME...]   (default: every image, in that order)
#   --refresh   build the layers made of Debian and PyPI packages again, from what the
#               archives hold now (security updates), instead of reusing cached ones
#
# Everything comes from Debian bookworm's packages (mmdebstrap, using this host's apt
# sources), the project's own wheels, and files under hack/images/. Layers are cached under
# $KUBENOVA_CACHE/images/ by the hash of their inputs, so a second run with nothing changed
# only checks the registry, and a code change rebuilds one small layer. Every image gets the
# same tag, <version>-<hash of every image's inputs>; the tag is printed on stdout and written
# to $KUBENOVA_STATE/images/tag once the registry serves every image under it. How and why:
# docs/images.md.
set -euo pipefail
shopt -s inherit_errexit

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib/env.sh
. "$here/../lib/env.sh"
# shellcheck source=../lib/daemon.sh
. "$KUBENOVA_ROOT/hack/lib/daemon.sh"
# shellcheck source=lib.sh
. "$here/lib.sh"
# shellcheck source=../node/versions.sh
. "$here/../node/versions.sh"

ALL_IMAGES=(pause coredns toolbox operator node-agent libvirt mariadb rabbitmq image-server console)
PAUSE_TAG=3.10
HOST_PACKAGES=(mmdebstrap umoci skopeo jq gcc libc6-dev libvirt-dev pkg-config)

# --- layers: each has recipe_<name> (its inputs, as text) and build_<name> OUT ---------------

# /pause, a static binary compiled here from pause/pause.c.
recipe_pause() {
  declare -f build_pause tar_dir
  sha256sum "$here/pause/pause.c"
  dpkg-query -W gcc libc6-dev
}
build_pause() {
  local stage
  stage="$(mktemp -d)"
  gcc -static -Os -s -Wall -Wextra -Werror -DKUBENOVA_PAUSE_VERSION="\"$PAUSE_TAG\"" \
    -o "$stage/pause" "$here/pause/pause.c"
  tar_dir "$stage" "$1"
  rm -rf "$stage"
}

# busybox from Debian's busybox-static: one static binary and its applets as symlinks, plus
# the passwd and group files a non-root container wants (root, kubenova 65532, nobody).
recipe_busybox() {
  declare -f build_busybox tar_dir
  apt-cache policy busybox-static | sed -n 's/^ *Candidate: //p'
  refresh_salt
}
# busybox_version: the upstream version of the packaged busybox, e.g. 1.35.0.
busybox_version() {
  apt-cache policy busybox-static | sed -n 's/^ *Candidate: \([0-9]*:\)\{0,1\}\([^-]*\)-.*/\2/p'
}
build_busybox() {
  local stage applet
  stage="$(mktemp -d)"
  (cd "$stage" && apt-get download busybox-static) >>"$KN_LOG_DIR/images-apt.log" 2>&1 ||
    die "apt-get download busybox-static failed; see $KN_LOG_DIR/images-apt.log"
  mkdir "$stage/root"
  dpkg-deb --fsys-tarfile "$(echo "$stage"/busybox-static_*.deb)" |
    tar -x -C "$stage/root" ./bin/busybox ./usr/share/doc/busybox-static/copyright
  for applet in $("$stage/root/bin/busybox" --list-full); do
    mkdir -p "$stage/root/$(dirname "$applet")"
    [[ -e $stage/root/$applet ]] || ln -s /bin/busybox "$stage/root/$applet"
  done
  mkdir -p "$stage/root/etc" "$stage/root/root"
  install -d -m 1777 "$stage/root/tmp"
  printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'kubenova:x:65532:65532::/tmp:/bin/sh' \
    'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >"$stage/root/etc/passwd"
  printf '%s\n' 'root:x:0:' 'kubenova:x:65532:' 'nogroup:x:65534:' >"$stage/root/etc/group"
  tar_dir "$stage/root" "$1"
  rm -rf "$stage"
}

# Python 3, libvirt's client library (libvirt-python links it) and qemu-img, for the operator
# and the node-agent alike: one base both images share. qemu-utils is the agent's (overlays);
# keeping it here costs the operator 7 MB and saves a second 70 MB base.
PYTHON_PACKAGES=python3,libvirt0,qemu-utils,ca-certificates
recipe_python_base() { debian_recipe "$PYTHON_PACKAGES" "$(user_hook kubenova 65532)"; }
build_python_base() { debian_rootfs "$1" "$PYTHON_PACKAGES" "$(user_hook kubenova 65532)"; }

# The virtualenv /opt/kubenova, in two layers: `venv` holds the dependencies (large, and
# rebuilt only when the dependency list changes or on --refresh), `app` the kubenova wheel
# alone (small: a code change rebuilds and pushes only this). Both are installed by the base's
# own python3, in a chroot, from wheels built beforehand; pip itself runs from its wheel and is
# not installed.
recipe_venv() {
  declare -f build_venv in_python_root build_dependency_wheels tar_dir
  echo "base ${LAYER_KEYS[python-base]:?}"
  echo "dependencies $(dependencies_key)"
}
build_venv() {
  local work
  work="$(mktemp -d)"
  mkdir "$work/root" "$work/stage"
  tar -xf "$(layer_path python-base "${LAYER_KEYS[python-base]}")" -C "$work/root"
  dependencies >"$work/root/requirements.txt"
  mkdir "$work/none"
  in_python_root "$work/root" "$(build_dependency_wheels)" "$work/none" '
    python3 -m venv --without-pip /opt/kubenova
    /opt/kubenova/bin/python "$PIP" install --requirement /requirements.txt'
  mkdir "$work/stage/opt"
  mv "$work/root/opt/kubenova" "$work/stage/opt/kubenova"
  tar_dir "$work/stage" "$1"
  rm -rf "$work"
}

recipe_app() {
  declare -f build_app in_python_root build_kubenova_wheel tar_dir
  echo "base ${LAYER_KEYS[python-base]:?} venv ${LAYER_KEYS[venv]:?}"
  echo "source $(kubenova_source_digest)"
}
build_app() {
  local work path
  work="$(mktemp -d)"
  mkdir "$work/root" "$work/stage"
  tar -xf "$(layer_path python-base "${LAYER_KEYS[python-base]}")" -C "$work/root"
  tar -xf "$(layer_path venv "${LAYER_KEYS[venv]}")" -C "$work/root"
  (cd "$work/root" && find opt | LC_ALL=C sort) >"$work/before"
  in_python_root "$work/root" "$(build_dependency_wheels)" "$(build_kubenova_wheel)" '
    /opt/kubenova/bin/python "$PIP" install --no-deps kubenova
    /opt/kubenova/bin/kubenova-operator --help >/dev/null
    /opt/kubenova/bin/kubenova-manage --help >/dev/null
    /opt/kubenova/bin/kubenova-agent --help >/dev/null'
  # The layer is what the install added: installing one wheel without its dependencies only
  # adds files (the package, its dist-info, its console scripts).
  (cd "$work/root" && find opt | LC_ALL=C sort) >"$work/after"
  LC_ALL=C comm -13 "$work/before" "$work/after" | while read -r path; do
    [[ -e $work/root/$path || -L $work/root/$path ]] || continue
    mkdir -p "$work/stage/$(dirname "$path")"
    mv "$work/root/$path" "$work/stage/$path"
  done
  tar_dir "$work/stage" "$1"
  rm -rf "$work"
}

# in_python_root ROOT DEPS-WHEELS KUBENOVA-WHEEL SCRIPT: run SCRIPT (sh) chrooted into ROOT,
# with the wheel directories mounted read-only and $PIP naming pip's wheel. A private mount
# namespace: the mounts go away with the process, whatever happens.
in_python_root() {
  mkdir -p "$1/wheels/deps" "$1/wheels/kubenova"
  unshare --mount --propagation private -- sh -euc '
    root=$1 deps=$2 wheel=$3 script=$4
    mount --rbind /dev "$root/dev"
    mount -t proc proc "$root/proc"
    mount --bind -o ro "$deps" "$root/wheels/deps"
    mount --bind -o ro "$wheel" "$root/wheels/kubenova"
    pip=$(cd "$root" && echo wheels/deps/pip-*.whl)
    # SOURCE_DATE_EPOCH makes the compiled .pyc files reproducible (hash-checked, no mtime).
    chroot "$root" env -i PATH=/usr/bin:/bin HOME=/root LANG=C.UTF-8 \
      SOURCE_DATE_EPOCH="$SOURCE_DATE_EPOCH" PIP="/$pip/pip" \
      PIP_NO_INDEX=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
      PIP_NO_WARN_SCRIPT_LOCATION=1 PIP_FIND_LINKS="/wheels/deps /wheels/kubenova" \
      sh -euc "$script"
  ' in-python-root "$@" >>"$KN_LOG_DIR/images-pip.log" 2>&1 ||
    die "installing wheels failed; see $KN_LOG_DIR/images-pip.log"
  rm -rf "$1/wheels"
}

# The files the kubenova wheel is built from: what git tracks or would track (untracked but
# not ignored) in the distribution's source, so a local edit counts before it is committed.
kubenova_sources() {
  git -C "$KUBENOVA_ROOT" ls-files --cached --others --exclude-standard -- \
    pyproject.toml README.md operator node-agent | LC_ALL=C sort -u |
    while read -r file; do [[ -f $KUBENOVA_ROOT/$file ]] && echo "$file"; done
}
kubenova_source_digest() {
  (cd "$KUBENOVA_ROOT" && kubenova_sources | xargs -d '\n' sha256sum) | sha256_text
}

# The kubenova wheel, built from a copy of exactly those files (a build in the working tree
# would write build/ and *.egg-info into it); cached by their digest. Prints its directory.
build_kubenova_wheel() {
  local digest dir src
  digest="$(kubenova_source_digest)"
  dir="$IMAGES_CACHE/wheels/kubenova-${digest:0:16}"
  if [[ ! -d $dir ]]; then
    src="$(mktemp -d)"
    (cd "$KUBENOVA_ROOT" && kubenova_sources | tar -cf - --files-from=-) | tar -xf - -C "$src"
    "$KUBENOVA_ROOT/.venv/bin/python" -m pip wheel --quiet --no-deps --disable-pip-version-check \
      --wheel-dir "$dir.tmp" "$src" >>"$KN_LOG_DIR/images-pip.log" 2>&1 ||
      die "building the kubenova wheel failed; see $KN_LOG_DIR/images-pip.log"
    rm -rf "$src"
    mv "$dir.tmp" "$dir"
  fi
  echo "$dir"
}

# What the distribution depends on, as pyproject.toml declares it (ranges, not pins).
dependencies() {
  "$KUBENOVA_ROOT/.venv/bin/python" - "$KUBENOVA_ROOT/pyproject.toml" <<'EOF'
import sys, tomllib
with open(sys.argv[1], "rb") as handle:
    print("\n".join(tomllib.load(handle)["project"]["dependencies"]))
EOF
  # pip resolves on the venv's Python, but the image runs bookworm's python3 (3.11.2): what a
  # dependency requires only below 3.11.3 is missed, so it is named here (redis, websockify's,
  # wants async-timeout there).
  echo "async-timeout>=4.0.3"
}
dependencies_key() {
  {
    dependencies
    dpkg-query -W libvirt-dev python3
    refresh_salt
  } | sha256_text
}

# Wheels for every dependency, resolved from PyPI once per dependency list (and refresh);
# libvirt-python compiles against this host's libvirt-dev, the same bookworm libvirt the image
# carries. pip's own wheel comes along: it installs the others, and is not installed itself.
build_dependency_wheels() {
  local key dir
  key="$(dependencies_key)"
  dir="$IMAGES_CACHE/wheels/deps-${key:0:16}"
  if [[ ! -d $dir ]]; then
    log "building the dependencies' wheels (libvirt-python compiles; about a minute)"
    rm -rf "$dir.tmp"
    mapfile -t requirements < <(dependencies)
    nice -n 10 "$KUBENOVA_ROOT/.venv/bin/python" -m pip wheel --quiet --disable-pip-version-check \
      --wheel-dir "$dir.tmp" pip "${requirements[@]}" >>"$KN_LOG_DIR/images-pip.log" 2>&1 ||
      die "building the dependencies' wheels failed; see $KN_LOG_DIR/images-pip.log"
    mv "$dir.tmp" "$dir"
  fi
  echo "$dir"
}

# libvirtd and virtlogd with QEMU for x86 guests (ovmf left out) and dnsmasq for libvirt's
# NAT network. libvirt-daemon-system brings the libvirt-qemu user, the default network and
# the configuration files a host install has.
LIBVIRT_PACKAGES=libvirt-daemon-system,libvirt-daemon-driver-qemu,libvirt-clients
LIBVIRT_PACKAGES+=,qemu-system-x86,qemu-utils,dnsmasq-base,iproute2,iptables
recipe_libvirt_base() { debian_recipe "$LIBVIRT_PACKAGES"; }
build_libvirt_base() { debian_rootfs "$1" "$LIBVIRT_PACKAGES"; }

# MariaDB as the `mysql` user, uid 999 (the uid the upstream image uses). The data directory
# the package initialises at install time is emptied: the entrypoint initialises a fresh one
# (in the pod's volume) on first start. No VOLUME is declared, in this image or the others: a
# runtime would mount an anonymous, root-owned volume there; the chart mounts its own.
MARIADB_HOOKS=(
  "$(user_hook mysql 999)"
  '--customize-hook=find "$1/var/lib/mysql" "$1/var/log/mysql" -mindepth 1 -delete; install -d -o 999 -g 999 -m 0755 "$1/run/mysqld" "$1/var/lib/mysql"'
  # mmdebstrap empties /run last; the socket's directory, owned by mysql, must stay.
  '--customize-hook=find "$1/run" -mindepth 1 -maxdepth 1 ! -name mysqld -exec rm -rf {} +'
  --skip=cleanup/run
)
recipe_mariadb_base() { debian_recipe mariadb-server "${MARIADB_HOOKS[@]}"; }
build_mariadb_base() { debian_rootfs "$1" mariadb-server "${MARIADB_HOOKS[@]}"; }

# RabbitMQ as the `rabbitmq` user, uid 999, home /var/lib/rabbitmq (its data and cookie).
RABBITMQ_HOOKS=(
  "$(user_hook rabbitmq 999 /var/lib/rabbitmq)"
  '--customize-hook=find "$1/var/lib/rabbitmq" "$1/var/log/rabbitmq" -mindepth 1 -delete; install -d -o 999 -g 999 -m 0750 "$1/var/lib/rabbitmq" "$1/var/log/rabbitmq"'
)
recipe_rabbitmq_base() { debian_recipe rabbitmq-server "${RABBITMQ_HOOKS[@]}"; }
build_rabbitmq_base() { debian_rootfs "$1" rabbitmq-server "${RABBITMQ_HOOKS[@]}"; }

# hack/images/<image>/rootfs/ as a layer: entrypoints and configuration, owned by root. Small
# and on top, so editing an entrypoint rebuilds nothing else.
files_recipe() {
  declare -f build_files tar_dir
  (cd "$here/$1/rootfs" && find . -print0 | LC_ALL=C sort -z |
    while IFS= read -r -d '' path; do
      if [[ -L $path ]]; then
        echo "link $path $(readlink "$path")"
      elif [[ -d $path ]]; then
        echo "dir $path"
      elif [[ -x $path ]]; then
        echo "executable $path $(sha256sum <"$path")"
      else
        echo "file $path $(sha256sum <"$path")"
      fi
    done)
}
# Modes are normalised (git keeps only the executable bit; a checkout's umask varies).
build_files() {
  local stage
  stage="$(mktemp -d)"
  cp -a "$here/$1/rootfs/." "$stage/"
  chown -R 0:0 "$stage"
  find "$stage" -type d -exec chmod 0755 {} +
  find "$stage" -type f -perm /111 -exec chmod 0755 {} +
  find "$stage" -type f ! -perm /111 -exec chmod 0644 {} +
  tar_dir "$stage" "$2"
  rm -rf "$stage"
}
recipe_libvirt_files() { files_recipe libvirt; }
build_libvirt_files() { build_files libvirt "$1"; }
recipe_mariadb_files() { files_recipe mariadb; }
build_mariadb_files() { build_files mariadb "$1"; }
recipe_rabbitmq_files() { files_recipe rabbitmq; }
build_rabbitmq_files() { build_files rabbitmq "$1"; }

# The tiny guest image (hack/guest/build.sh builds it, cached) under /srv/images.
GUEST_IMAGE=kubenova-tiny.qcow2
recipe_guest_image() {
  declare -f build_guest_image tar_dir
  "$KUBENOVA_ROOT/hack/guest/build.sh" >/dev/null
  cat "$KUBENOVA_IMAGES_DIR/$GUEST_IMAGE.sha256"
}
build_guest_image() {
  local stage
  stage="$(mktemp -d)"
  install -d -m 0755 "$stage/srv/images"
  install -m 0644 "$KUBENOVA_IMAGES_DIR/$GUEST_IMAGE" "$KUBENOVA_IMAGES_DIR/$GUEST_IMAGE.sha256" \
    "$stage/srv/images/"
  (cd "$stage/srv/images" && sha256sum -c --quiet <(echo "$(cat "$GUEST_IMAGE.sha256")  $GUEST_IMAGE")) ||
    die "$KUBENOVA_IMAGES_DIR/$GUEST_IMAGE does not match its checksum"
  tar_dir "$stage" "$1"
  rm -rf "$stage"
}

# The console proxy's pages under /usr/share/kubenova-console (its KUBENOVA_CONSOLE_WEB_DIR):
# Kubenova's vnc.html, noVNC's library and spice-html5, as hack/console/assets.sh installs them
# (from npm, at the versions it pins, into its own cache; it asks npm again only when those or
# the page change).
recipe_console_web() {
  declare -f build_console_web tar_dir
  sha256sum "$KUBENOVA_ROOT/hack/console/assets.sh"
  cat "$KUBENOVA_ROOT"/operator/kubenova/console/proxy/web/* | sha256sum
}
build_console_web() {
  local stage
  "$KUBENOVA_ROOT/hack/console/assets.sh" >&2
  stage="$(mktemp -d)"
  install -d -m 0755 "$stage/usr/share"
  cp -a "$KUBENOVA_STATE/console/web" "$stage/usr/share/kubenova-console"
  rm -f "$stage/usr/share/kubenova-console/.installed"
  [[ -f $stage/usr/share/kubenova-console/vnc.html && -d $stage/usr/share/kubenova-console/spice ]] ||
    die "hack/console/assets.sh left no vnc.html or spice/ in $KUBENOVA_STATE/console/web"
  tar_dir "$stage" "$1"
  rm -rf "$stage"
}

# /coredns, the cluster's DNS server: a static binary that hack/node/build.sh builds from the
# Go module at the version pinned in hack/node/versions.sh.
recipe_coredns() {
  [[ -x $COREDNS_DIR/coredns ]] || "$KUBENOVA_ROOT/hack/node/build.sh" >&2
  declare -f build_coredns tar_dir
  echo "$COREDNS_VERSION"
  sha256sum "$COREDNS_DIR/coredns"
}
build_coredns() {
  local stage
  stage="$(mktemp -d)"
  install -D -m 0755 "$COREDNS_DIR/coredns" "$stage/coredns"
  tar_dir "$stage" "$1"
  rm -rf "$stage"
}

# --- images: layers and config --------------------------------------------------------------

# image_spec NAME: sets LAYERS (names, bottom first) and CONFIG (umoci config options).
image_spec() {
  local python_env=(--config.env=PATH=/opt/kubenova/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    --config.env=LANG=C.UTF-8 --config.env=PYTHONUNBUFFERED=1 --config.env=PYTHONDONTWRITEBYTECODE=1)
  local debian_env=(--config.env=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    --config.env=LANG=C.UTF-8)
  case $1 in
    pause)
      LAYERS=(pause)
      CONFIG=(--config.user=65535:65535 --config.entrypoint=/pause --config.workingdir=/)
      DESCRIPTION="The pod sandbox: holds a pod's namespaces, reaps zombies"
      ;;
    coredns)
      LAYERS=(coredns)
      CONFIG=(--config.user=65532:65532 --config.entrypoint=/coredns --config.workingdir=/
        --config.exposedports=1053/udp --config.exposedports=1053/tcp)
      DESCRIPTION="CoreDNS, the cluster's DNS server"
      ;;
    toolbox)
      LAYERS=(busybox)
      CONFIG=(--config.user=65532:65532 --config.env=PATH=/usr/sbin:/usr/bin:/sbin:/bin
        --config.cmd=sh --config.workingdir=/tmp)
      DESCRIPTION="busybox (nslookup, wget, sh) for tests"
      ;;
    operator)
      LAYERS=(python-base venv app)
      CONFIG=(--config.user=65532:65532 "${python_env[@]}" --config.entrypoint=kubenova-operator
        --config.workingdir=/tmp --config.exposedports=8080/tcp)
      DESCRIPTION="Kubenova's control plane: api, scheduler, conductor (kubenova-operator, kubenova-manage)"
      ;;
    node-agent)
      LAYERS=(python-base venv app)
      CONFIG=(--config.user=0:0 "${python_env[@]}" --config.entrypoint=kubenova-agent
        --config.workingdir=/var/lib/kubenova)
      DESCRIPTION="Kubenova's node-agent (nova-compute): drives the host's libvirtd"
      ;;
    libvirt)
      LAYERS=(libvirt-base libvirt-files)
      CONFIG=(--config.user=0:0 "${debian_env[@]}" --config.entrypoint=/usr/local/bin/kubenova-libvirt
        --config.workingdir=/)
      DESCRIPTION="libvirtd and virtlogd with QEMU for x86 guests"
      ;;
    mariadb)
      LAYERS=(mariadb-base mariadb-files)
      CONFIG=(--config.user=999:999 "${debian_env[@]}" --config.entrypoint=/usr/local/bin/kubenova-mariadb
        --config.workingdir=/var/lib/mysql --config.exposedports=3306/tcp)
      DESCRIPTION="MariaDB server, initialised on first start"
      ;;
    rabbitmq)
      LAYERS=(rabbitmq-base rabbitmq-files)
      CONFIG=(--config.user=999:999 "${debian_env[@]}" --config.env=HOME=/var/lib/rabbitmq
        --config.env=RABBITMQ_NODENAME=rabbit@localhost
        --config.entrypoint=/usr/local/bin/kubenova-rabbitmq --config.workingdir=/var/lib/rabbitmq
        --config.exposedports=5672/tcp --config.exposedports=15672/tcp)
      DESCRIPTION="RabbitMQ server with the management plugin"
      ;;
    image-server)
      # kubenova-image-server (the operator's layers: the same blobs in the registry) and the
      # tiny guest; uploads need the token and a writable snapshots/ (the chart mounts both).
      LAYERS=(python-base venv app guest-image)
      CONFIG=(--config.user=65532:65532 "${python_env[@]}"
        --config.entrypoint=kubenova-image-server --config.cmd=--directory=/srv/images
        --config.cmd=--bind=0.0.0.0 --config.cmd=--port=8080
        --config.workingdir=/srv/images --config.exposedports=8080/tcp)
      DESCRIPTION="The tiny test guest ($GUEST_IMAGE and its .sha256) over HTTP on port 8080, and snapshots uploaded to it"
      ;;
    console)
      # kubenova-console (the operator's layers: websockify is among the dependencies) and the
      # web pages it serves; the chart mounts its certificates.
      LAYERS=(python-base venv app console-web)
      CONFIG=(--config.user=65532:65532 "${python_env[@]}" --config.entrypoint=kubenova-console
        --config.workingdir=/tmp --config.exposedports=6080/tcp)
      DESCRIPTION="Kubenova's console proxy: noVNC and spice-html5, relayed to the hosts' QEMU over TLS"
      ;;
    *) die "unknown image $1 (known: ${ALL_IMAGES[*]})" ;;
  esac
  CONFIG+=(
    "--config.label=org.opencontainers.image.title=kubenova/$1"
    "--config.label=org.opencontainers.image.description=$DESCRIPTION"
    "--config.label=org.opencontainers.image.source=$SOURCE_URL"
    "--config.label=org.opencontainers.image.version=$VERSION"
    "--config.label=org.opencontainers.image.licenses=Apache-2.0"
  )
}

# image_key NAME: sets IMAGE_KEYS[NAME], the hash of everything image NAME is made of. The
# revision label is left out on purpose: a commit that changes nothing an image is built from
# keeps its tag.
declare -A IMAGE_KEYS=()
image_key() {
  local layer text=""
  [[ -z ${IMAGE_KEYS[$1]:-} ]] || return 0
  image_spec "$1"
  for layer in "${LAYERS[@]}"; do
    layer_key "$layer"
    text+="$layer ${LAYER_KEYS[$layer]}"$'\n'
  done
  text+="$(printf '%s\n' "${CONFIG[@]}" "$CREATED")"
  IMAGE_KEYS[$1]="$(sha256_text <<<"$text")"
}

# build_image NAME: the finished image in the layout; sets IMAGE_TAG to its layout tag.
build_image() {
  local name=$1 layer start=$SECONDS
  image_key "$name"
  IMAGE_TAG="image-$name-${IMAGE_KEYS[$name]:0:32}"
  layout_has "$IMAGE_TAG" && return 0
  image_spec "$name"
  log "building kubenova/$name"
  for layer in "${LAYERS[@]}"; do ensure_layer "$layer"; done
  ensure_chain "${LAYERS[@]}"
  umoci config --image "$LAYOUT:$CHAIN_TAG" --tag "$IMAGE_TAG" "${CONFIG[@]}" \
    "--config.label=org.opencontainers.image.revision=$REVISION" \
    --created="$CREATED" --author=Kubenova --history.created="$CREATED" \
    --history.created_by="hack/images/build.sh: kubenova/$name config"
  log "kubenova/$name built in $((SECONDS - start))s"
}

# --- main -------------------------------------------------------------------------------------


main() {
  local refresh=0 names=() name arg tag set_key missing=()
  for arg in "$@"; do
    case $arg in
      --refresh) refresh=1 ;;
      -*)
        echo "usage: $0 [--refresh] [NAME...]   NAME: ${ALL_IMAGES[*]}" >&2
        exit 2
        ;;
      *) names+=("$arg") ;;
    esac
  done
  ((${#names[@]})) || names=("${ALL_IMAGES[@]}")
  VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$KUBENOVA_ROOT/pyproject.toml" | head -n1)"
  REVISION="$(git -C "$KUBENOVA_ROOT" rev-parse HEAD 2>/dev/null || echo unknown)"
  SOURCE_URL="$(git -C "$KUBENOVA_ROOT" remote get-url origin 2>/dev/null ||
    echo "${KUBENOVA_IMAGE_SOURCE:-https://github.com/kubenova/kubenova}")"
  for name in "${names[@]}"; do image_spec "$name"; done

  [[ $(id -u) == 0 ]] || die "run as root (mmdebstrap and chroot need it)"
  [[ -x $KUBENOVA_ROOT/.venv/bin/python ]] || die "no .venv: run \`make venv\` first"
  kn_ensure_packages "${HOST_PACKAGES[@]}"
  mkdir -p "$IMAGES_CACHE" "$KUBENOVA_STATE/images"
  # One build at a time: two would write the same layout and cache files.
  exec 9>"$IMAGES_CACHE/.lock"
  flock 9
  # Scratch space (mmdebstrap's chroots, staging trees) on the cache's disk, not in /tmp,
  # and gone at the end, even after a failure.
  clean_scratch
  mkdir -p "$IMAGES_SCRATCH"
  export TMPDIR=$IMAGES_SCRATCH
  trap clean_scratch EXIT
  if ((refresh)); then date -u +%Y-%m-%dT%H:%M:%SZ >"$IMAGES_CACHE/refresh"; fi

  "$KUBENOVA_ROOT/hack/registry.sh" start

  # The pause image first, and under its own tag at once: a node's kubelet needs it before
  # anything else, and it does not depend on the other images' inputs.
  if [[ " ${names[*]} " == *" pause "* ]]; then
    build_image pause
    push "$IMAGE_TAG" kubenova/pause "$PAUSE_TAG"
  fi

  # The tag all images share: the project's version and a hash of every image's inputs.
  set_key=""
  for name in "${ALL_IMAGES[@]}"; do
    image_key "$name"
    set_key+="$name ${IMAGE_KEYS[$name]}"$'\n'
  done
  set_key="$(sha256_text <<<"$set_key")"
  tag="$VERSION-${set_key:0:12}"

  for name in "${names[@]}"; do
    build_image "$name"
    push "$IMAGE_TAG" "kubenova/$name" "$tag"
    # The cluster's DNS is named by CoreDNS's version (hack/node/coredns.yaml), like pause.
    if [[ $name == coredns ]]; then push "$IMAGE_TAG" kubenova/coredns "${COREDNS_VERSION#v}"; fi
    # Tests name the toolbox by busybox's version, a tag that outlives code changes.
    if [[ $name == toolbox ]]; then push "$IMAGE_TAG" kubenova/toolbox "$(busybox_version)"; fi
  done

  for name in "${ALL_IMAGES[@]}"; do
    [[ -n $(registry_digest "kubenova/$name" "$tag") ]] || missing+=("$name")
  done
  if ((${#missing[@]})); then
    log "not writing $KUBENOVA_STATE/images/tag: the registry lacks ${missing[*]} at $tag" \
      "(build them too, or run without names)"
  else
    echo "$tag" >"$KUBENOVA_STATE/images/tag.tmp"
    mv -f "$KUBENOVA_STATE/images/tag.tmp" "$KUBENOVA_STATE/images/tag"
  fi
  # Only a full build knows every current layer, so only it may forget the others.
  if ((${#names[@]} == ${#ALL_IMAGES[@]})); then prune_layout; fi
  log "images: $KUBENOVA_REGISTRY/kubenova/{$(IFS=,; echo "${names[*]}")}:$tag"
  echo "$tag"
}

# prune_layout: drop the layout's tags, cached tarballs and wheels no current recipe names.
prune_layout() {
  local keep=() tag layer name removed=0
  for name in "${ALL_IMAGES[@]}"; do
    image_spec "$name"
    keep+=("image-$name-${IMAGE_KEYS[$name]:0:32}")
    ensure_chain "${LAYERS[@]}"
    keep+=("${CHAIN_TAGS[@]}")
  done
  while read -r tag; do
    [[ $tag == chain-* || $tag == image-* ]] || continue
    [[ " ${keep[*]} " != *" $tag "* ]] || continue
    umoci rm --image "$LAYOUT:$tag"
    removed=1
  done < <(umoci list --layout "$LAYOUT")
  # gc reads every blob (about 10 s), so only when a tag went.
  if ((removed)); then umoci gc --layout "$LAYOUT"; fi
  for layer in "${!LAYER_KEYS[@]}"; do keep+=("$(layer_path "$layer" "${LAYER_KEYS[$layer]}")"); done
  for layer in "$LAYERS_DIR"/*.tar; do
    [[ -e $layer ]] || continue
    [[ " ${keep[*]} " == *" $layer "* ]] || rm -f "$layer"
  done
  keep+=("$(build_dependency_wheels)" "$(build_kubenova_wheel)")
  for layer in "$IMAGES_CACHE"/wheels/*; do
    [[ " ${keep[*]} " == *" $layer "* ]] || rm -rf "$layer"
  done
}

main "$@"
