#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Provide the Go that the local stack is built with (see hack/lib/go.sh), unless a new enough
# `go` is already on PATH. Run by hack/bootstrap.sh (`make venv`), so that a machine without it
# learns so in the first minute of `make up` or `make test` rather than after the services are
# up; the Go build scripts run it again when the pin has changed since. Run as root.
#
# hack/kube/go.mod's `go` line asks for Go 1.26 (Kubernetes v1.37 needs it; its `tool`
# directive, 1.24). Debian bookworm packages Go 1.19 and bookworm-backports 1.23, so no Debian
# Go builds it, and go.dev's downloads may be out of reach where the Go module proxy is not. So
# the release $KUBENOVA_GO_VERSION (hack/lib/env.sh) comes from the Go module proxy as the module
# golang.org/toolchain, the way the go command itself fetches a newer toolchain (GOTOOLCHAIN),
# checked against the Go checksum database. The go command of Debian's golang package (or any
# older Go already here) fetches it; a Debian Go installed for that is removed afterwards. It is
# kept in $KUBENOVA_GO_ROOT, which hack/lib/env.sh puts first on PATH; /usr/bin/go and
# /usr/local/go are left as they are.
set -euo pipefail
. "$(dirname "$0")/lib/env.sh"
# shellcheck source=lib/daemon.sh
. "$KUBENOVA_ROOT/hack/lib/daemon.sh"
# shellcheck source=lib/go.sh
. "$KUBENOVA_ROOT/hack/lib/go.sh"

if kn_go_ok; then
  kn_log "Go $(kn_go_version) ($(command -v go)) is new enough" \
    "(hack/kube/go.mod: go $KUBENOVA_GO_MIN)"
  exit 0
fi

version="${KUBENOVA_GO_VERSION#go}"
# The pin may lag behind go.mod only by mistake; catch it here rather than after the download.
if [[ "$(printf '%s\n' "$KUBENOVA_GO_MIN" "$version" | sort -V | head -n1)" != \
  "$KUBENOVA_GO_MIN" ]]; then
  kn_die "KUBENOVA_GO_VERSION=$KUBENOVA_GO_VERSION is older than hack/kube/go.mod's" \
    "go $KUBENOVA_GO_MIN"
fi

manual_help="Or install Go >= $KUBENOVA_GO_MIN yourself: from https://go.dev/dl/ into /usr/local/go
(hack/lib/env.sh finds it there), or anywhere on PATH."

case "$(uname -m)" in
  x86_64) arch=amd64 ;;
  aarch64) arch=arm64 ;;
  *) kn_die "no Go toolchain known for $(uname -m) here. $manual_help" ;;
esac
module="golang.org/toolchain@v0.0.1-go$version.linux-$arch"

# One install at a time: the build scripts may ask for Go at once (see hack/lib/go.sh).
mkdir -p "$(dirname "$KUBENOVA_GO_ROOT")"
exec 9>"$KUBENOVA_GO_ROOT.lock"
flock 9
if [[ -x "$KUBENOVA_GO_ROOT/bin/go" ]] && PATH="$KUBENOVA_GO_ROOT/bin:$PATH" kn_go_ok; then
  kn_log "Go $version is in $KUBENOVA_GO_ROOT"
  exit 0
fi

# The go command that fetches it: any Go is enough for `go mod download` (Go >= 1.16). Go trusts
# the system's CAs only, so those come with it.
# debian_go_package: Debian's golang-1.N-go that golang-go stands for (golang-go itself would put
# that old Go on every PATH as /usr/bin/go).
debian_go_package() {
  apt-cache depends golang-go 2>/dev/null |
    sed -n 's/^ *Depends: \(golang-1\.[0-9]*-go\)$/\1/p' | head -n1
}
have="$(kn_go_version)"
fetcher="$(command -v go || true)"
# After a change of pin, the Go of the previous one is still kept beside.
for candidate in "$(dirname "$KUBENOVA_GO_ROOT")"/go*/bin/go; do
  if [[ -z $fetcher && -x $candidate ]]; then fetcher="$candidate"; fi
done
packages=(ca-certificates)
remove_after=()
if [[ -z $fetcher ]]; then
  debian_go="$(debian_go_package)"
  if [[ -z $debian_go ]]; then
    # A fresh machine may have no package lists yet.
    apt-get -o DPkg::Lock::Timeout=900 update -qq >/dev/null 2>&1 || true
    debian_go="$(debian_go_package)"
  fi
  [[ -n $debian_go ]] || kn_die "no Debian golang package to fetch Go with. $manual_help"
  fetcher="${debian_go#golang-}"
  fetcher="/usr/lib/go-${fetcher%-go}/bin/go"
  if [[ $(dpkg-query -W -f='${db:Status-Status}' "$debian_go" 2>/dev/null) != installed ]]; then
    packages+=("$debian_go")
    # Only the means of fetching: the next pin is fetched by the Go installed here.
    remove_after=("$debian_go" "${debian_go%-go}-src")
  fi
fi
kn_ensure_packages "${packages[@]}"
[[ -x $fetcher ]] || kn_die "expected Debian's Go at $fetcher. $manual_help"

found="${have:+Go $have at $(command -v go), too old}"
kn_log "fetching Go $version ($module) from the Go module proxy with" \
  "$(GOTOOLCHAIN=local "$fetcher" version | cut -d' ' -f3) (found: ${found:-no Go on PATH})"
work="$(mktemp -d "$KUBENOVA_GO_ROOT.tmp.XXXXXX")"
trap 'rm -rf "$work"' EXIT
# A module cache of its own (writable, so that it can be moved from and removed): the
# toolchain is moved out of it, and the user's module cache is left alone. GOTOOLCHAIN=local:
# a fetcher that knows toolchain switching must not switch.
if ! json="$(cd "$work" && GOMODCACHE="$work/mod" GOPATH="$work/gopath" GOFLAGS=-modcacherw \
  GO111MODULE=on GOTOOLCHAIN=local "$fetcher" mod download -json "$module" 2>"$work/error")"; then
  cat "$work/error" >&2
  printf '%s\n' "$json" >&2
  kn_die "could not fetch $module from the Go module proxy" \
    "(GOPROXY=$("$fetcher" env GOPROXY)). $manual_help"
fi
dir="$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
[[ -n $dir && -f $dir/bin/go ]] || kn_die "$module holds no bin/go (go mod download said: $json)"
mv "$dir" "$work/go"
# A module zip keeps no file modes: make the programs executable, as the go command does after
# it switches to a downloaded toolchain.
chmod -R a+rX "$work/go"
find "$work/go/bin" "$work/go/pkg/tool" "$work/go/lib" -type f -exec chmod a+x {} +
got="$(cd / && GOTOOLCHAIN=local "$work/go/bin/go" version)"
[[ $got == "go version go$version linux/$arch" ]] || kn_die "the fetched Go says: $got"
rm -rf "$KUBENOVA_GO_ROOT"
mv "$work/go" "$KUBENOVA_GO_ROOT"
if ((${#remove_after[@]})); then
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 purge -y "${remove_after[@]}" \
    >>"$KN_LOG_DIR/apt.log" 2>&1 || kn_log "warning: could not remove ${remove_after[*]}"
fi
kn_log "installed Go $version in $KUBENOVA_GO_ROOT; hack/ scripts find it through" \
  "hack/lib/env.sh (for a shell of yours: export PATH=$KUBENOVA_GO_ROOT/bin:\$PATH)"
