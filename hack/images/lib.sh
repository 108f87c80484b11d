# shellcheck shell=bash disable=SC2034,SC2016
# (SC2034: the variables set here are read by build.sh; SC2016: hook commands are expanded
# by mmdebstrap, in the chroot, not here.)
# Layers, caching and the OCI layout for hack/images/build.sh. Source after hack/lib/env.sh.
#
# An image here is a list of layers plus a config. Each layer has a recipe: a text naming
# everything it is made from (package lists, hook commands, file hashes). The recipe's sha256
# is the layer's key, and a layer is built only when no tarball with that key is cached:
#
#   $KUBENOVA_CACHE/images/layers/<layer>-<key>.tar   uncompressed layer tarballs
#   $KUBENOVA_CACHE/images/oci/                       one OCI layout (umoci) holding every
#                                                     layer, compressed once, and every image
#   $KUBENOVA_CACHE/images/wheels/                    Python wheels (see build.sh)
#
# In the layout, tag `chain-<key>` is an image made of a list of layers (the key covers the
# list), so images that start with the same layers share their compressed blobs, and tag
# `image-<name>-<key>` is a finished image (layers + config). Tags that no current recipe
# names are removed, and their blobs collected, at the end of a full build.

IMAGES_CACHE="$KUBENOVA_CACHE/images"
LAYERS_DIR="$IMAGES_CACHE/layers"
LAYOUT="$IMAGES_CACHE/oci"
# File times in layers and the images' creation dates, so that the same inputs give the same
# bytes (and the same digests) on every machine. 2024-01-01T00:00:00Z.
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-1704067200}"
CREATED="$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)"

IMAGES_SCRATCH="$IMAGES_CACHE/tmp"

log() { echo "images: $*" >&2; }
die() {
  log "error: $*"
  exit 1
}

sha256_text() { sha256sum | cut -c1-64; }

# refresh_salt: what the package archives looked like when the cache was last refreshed.
# Debian and PyPI packages are named by version ranges, not pinned, so "the same recipe" can
# resolve to newer packages later; `build.sh --refresh` changes this salt, which changes every
# key that resolves packages, so their layers are built again from what the archives hold now.
refresh_salt() { cat "$IMAGES_CACHE/refresh" 2>/dev/null || echo initial; }

# clean_scratch: remove the scratch directory, but never through a mount: an interrupted
# mmdebstrap can leave the host's /dev or /proc mounted in its chroot.
clean_scratch() {
  if grep -qF " $IMAGES_SCRATCH/" /proc/mounts; then
    log "warning: something is still mounted under $IMAGES_SCRATCH; not removing it"
    return 0
  fi
  rm -rf --one-file-system "$IMAGES_SCRATCH"
}

# --- layers -------------------------------------------------------------------------------

# layer_path NAME KEY: where the tarball of layer NAME with KEY is cached.
layer_path() { printf '%s/%s-%s.tar\n' "$LAYERS_DIR" "$1" "${2:0:16}"; }

# layer_key NAME: sets LAYER_KEYS[NAME], the sha256 of recipe_NAME's output, once per run.
# (Functions here set globals instead of printing, so that no state is lost in a subshell.)
declare -A LAYER_KEYS=()
layer_key() {
  [[ -n ${LAYER_KEYS[$1]:-} ]] || LAYER_KEYS[$1]="$("recipe_${1//-/_}" | sha256_text)"
}

# ensure_layer NAME: build layer NAME's tarball (build_NAME OUT) unless it is cached.
ensure_layer() {
  local name=$1 out rc start=$SECONDS
  layer_key "$name"
  out="$(layer_path "$name" "${LAYER_KEYS[$name]}")"
  [[ ! -f $out ]] || return 0
  log "building layer $name (${LAYER_KEYS[$name]:0:16})"
  mkdir -p "$LAYERS_DIR"
  rm -f "$out.tmp"
  # A subshell with errexit of its own: `build || die` would run build with errexit off.
  set +e
  (
    set -e
    "build_${name//-/_}" "$out.tmp"
  )
  rc=$?
  set -e
  ((rc == 0)) || die "building layer $name failed"
  mv -f "$out.tmp" "$out"
  log "layer $name built in $((SECONDS - start))s ($(du -h "$out" | cut -f1) uncompressed)"
}

# tar_dir DIR OUT: a layer tarball of DIR's contents, the same bytes for the same tree: sorted,
# numeric owners as they are on disk, times clamped to SOURCE_DATE_EPOCH, no atime/ctime.
# DIR itself becomes the image's "/", which everyone must be able to enter.
tar_dir() {
  chmod 0755 "$1"
  tar --create --file="$2" --directory="$1" --sort=name --numeric-owner --format=pax \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    --mtime="@$SOURCE_DATE_EPOCH" --clamp-mtime .
}

# --- Debian root filesystems (mmdebstrap) --------------------------------------------------

# The host's enabled apt sources, the only place packages come from. Each file is handed to
# mmdebstrap as a mirror (it understands both the one-line and the deb822 format).
apt_source_files() {
  local file
  for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
    /etc/apt/sources.list.d/*.sources; do
    [[ -s $file ]] && grep -qvE '^[[:space:]]*(#|$)' "$file" && echo "$file"
  done
  return 0
}

# Left out of every root filesystem: documentation (but not the copyright files, which the
# licences ask for), manual pages, translations. Containers read none of them.
DPKG_EXCLUDES=(
  --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/man/*'
  --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-exclude=/usr/share/lintian/*'
)

# Merged /usr the way debootstrap makes it (symlinks, and the usr-is-merged package). Without
# it, apt satisfies init-system-helpers' "usrmerge | usr-is-merged" with usrmerge, which brings
# perl (50 MB) to convert a /usr that mmdebstrap has already merged.
MERGED_USR_HOOKS=/usr/share/mmdebstrap/hooks/merged-usr

# mmdebstrap copies this host's /etc/hostname and /etc/resolv.conf into the root filesystem.
# Neither belongs in an image (the runtime mounts its own over them), so they are replaced
# by an empty resolv.conf and a hosts file that resolves localhost, which servers such as
# RabbitMQ need even where no runtime provides one.
HOSTS_HOOK='--customize-hook=rm -f "$1/etc/hostname"; : >"$1/etc/resolv.conf"; printf "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" >"$1/etc/hosts"'

# debian_recipe PACKAGES HOOK...: the recipe text of a Debian root filesystem.
debian_recipe() {
  local packages=$1 file
  shift
  echo "mmdebstrap bookworm variant=essential packages=$packages hook-dir=$MERGED_USR_HOOKS"
  printf 'dpkgopt %s\n' "${DPKG_EXCLUDES[@]}"
  printf 'hook %s\n' "$@" "$HOSTS_HOOK"
  for file in $(apt_source_files); do
    echo "source $file"
    cat "$file"
  done
  echo "refresh $(refresh_salt)"
}

# debian_rootfs OUT PACKAGES HOOK...: Debian bookworm's essential packages plus PACKAGES (comma
# separated, their dependencies but not their recommends) as a layer tarball. Each HOOK is a
# mmdebstrap option such as --essential-hook=... or --customize-hook=...; "$1" in a hook is
# the root directory. mmdebstrap never starts a daemon (policy-rc.d) and, with
# SOURCE_DATE_EPOCH set, writes the same tarball for the same packages.
debian_rootfs() {
  local out=$1 packages=$2 sources=() file
  shift 2
  for file in $(apt_source_files); do sources+=("$file"); done
  ((${#sources[@]})) || die "no apt sources enabled on this host"
  # Device nodes are left out: the runtime gives every container its own /dev.
  nice -n 10 mmdebstrap --quiet --mode=root --variant=essential --format=tar \
    --include="$packages" --hook-dir="$MERGED_USR_HOOKS" "${DPKG_EXCLUDES[@]}" \
    --aptopt='Acquire::Languages "none"' "$@" "$HOSTS_HOOK" \
    bookworm - "${sources[@]}" 2>>"$KN_LOG_DIR/images-mmdebstrap.log" |
    tar --delete --wildcards './dev/?*' >"$out"
  [[ ${PIPESTATUS[0]} == 0 ]] || die "mmdebstrap failed; see $KN_LOG_DIR/images-mmdebstrap.log"
}

# user_hook NAME UID [HOME]: a hook that adds a system user and its group with fixed ids,
# before the packages that would otherwise pick them (so a pod's runAsUser and a volume's
# owner can be written down in advance).
user_hook() {
  local name=$1 id=$2 home=${3:-/nonexistent}
  printf -- "--essential-hook=echo '%s:x:%s:%s::%s:/usr/sbin/nologin' >>\"\$1/etc/passwd\";" \
    "$name" "$id" "$id" "$home"
  printf " echo '%s:x:%s:' >>\"\$1/etc/group\";" "$name" "$id"
  printf " echo '%s:!:19723::::::' >>\"\$1/etc/shadow\"; echo '%s:!::' >>\"\$1/etc/gshadow\"\n" \
    "$name" "$name"
}

# --- the OCI layout -----------------------------------------------------------------------

# (grep without -q: with pipefail, grep -q leaving early would fail umoci with SIGPIPE.)
layout_has() { umoci list --layout "$LAYOUT" 2>/dev/null | grep -xF "$1" >/dev/null; }

# layout_digest TAG: the manifest digest TAG points at.
layout_digest() {
  jq -r --arg tag "$1" \
    'first(.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $tag)
      | .digest) // empty' "$LAYOUT/index.json"
}

# ensure_chain LAYER...: sets CHAIN_TAG to an image of these layers (in order, no config yet)
# in the layout, and CHAIN_TAGS to it and its prefixes. Each prefix is cached too, so a new
# top layer compresses only itself.
ensure_chain() {
  local tag=chain-empty parent key layer
  CHAIN_TAGS=("$tag")
  if [[ ! -f $LAYOUT/index.json ]]; then
    mkdir -p "$(dirname "$LAYOUT")"
    umoci init --layout "$LAYOUT"
  fi
  if ! layout_has "$tag"; then
    umoci new --image "$LAYOUT:$tag"
  fi
  key=empty
  for layer in "$@"; do
    parent=$tag
    key="$(printf '%s %s %s' "$key" "$layer" "${LAYER_KEYS[$layer]}" | sha256_text)"
    tag="chain-${key:0:32}"
    if ! layout_has "$tag"; then
      log "compressing layer $layer into the layout"
      nice -n 10 umoci raw add-layer --image "$LAYOUT:$parent" --tag "$tag" \
        --history.created_by="hack/images: layer $layer (${LAYER_KEYS[$layer]:0:16})" \
        --history.created="$CREATED" "$(layer_path "$layer" "${LAYER_KEYS[$layer]}")"
    fi
    CHAIN_TAGS+=("$tag")
  done
  CHAIN_TAG=$tag
}

# registry_digest REPO TAG: the digest of the manifest the registry serves for REPO:TAG.
# Prints nothing when the registry does not have it.
registry_digest() {
  local digest
  # pipefail: a tag the registry lacks fails skopeo, and so the whole pipeline.
  digest="$(skopeo inspect --raw --tls-verify=false "docker://$KUBENOVA_REGISTRY/$1:$2" \
    2>/dev/null | sha256sum)" || return 0
  echo "sha256:${digest%% *}"
}

# push TAG REPO REMOTE-TAG: copy the layout's TAG to the registry, unless it already serves
# that very manifest there. skopeo sends only the blobs the registry lacks.
push() {
  local tag=$1 repo=$2 remote=$3 digest
  digest="$(layout_digest "$tag")"
  if [[ $(registry_digest "$repo" "$remote") == "$digest" ]]; then
    return 0
  fi
  skopeo copy --quiet --dest-tls-verify=false "oci:$LAYOUT:$tag" \
    "docker://$KUBENOVA_REGISTRY/$repo:$remote" >/dev/null ||
    die "pushing $repo:$remote to $KUBENOVA_REGISTRY failed"
  [[ $(registry_digest "$repo" "$remote") == "$digest" ]] ||
    die "the registry serves another manifest for $repo:$remote than the one pushed"
  log "pushed $KUBENOVA_REGISTRY/$repo:$remote ($digest)"
}
