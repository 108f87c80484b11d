# shellcheck shell=bash
# The Go toolchain the local stack is built with: hack/kube (Kubernetes), hack/node
# (containerd, CoreDNS, crictl), hack/helm and hack/registry.sh. Source after env.sh.

# The least Go that builds all of it: hack/kube/go.mod's `go` line. The other tools are built at
# their releases with their own go.mod, which ask for no more.
KUBENOVA_GO_MIN="$(awk '$1 == "go" { print $2; exit }' "$KUBENOVA_ROOT/hack/kube/go.mod")"

# kn_go_version: the version of the `go` on PATH (e.g. 1.26.8), or nothing when there is none.
# Run from / with GOTOOLCHAIN=local, so that no go.mod around makes it switch to another Go.
kn_go_version() {
  local out
  out="$(cd / && GOTOOLCHAIN=local go version 2>/dev/null)" || return 0
  out="${out#go version go}"
  printf '%s\n' "${out%% *}"
}

# kn_go_ok: the `go` on PATH is at least $KUBENOVA_GO_MIN.
kn_go_ok() {
  local have
  have="$(kn_go_version)"
  [[ -n $have ]] && [[ "$(printf '%s\n' "$KUBENOVA_GO_MIN" "$have" | sort -V | head -n1)" == \
    "$KUBENOVA_GO_MIN" ]]
}

# kn_require_go: make sure a new enough `go` is first on PATH, fetching it with
# hack/install-go.sh when it is missing (a machine where `make venv` ran has it; a changed pin
# does not). Its output goes to stderr: callers may print a result on stdout.
kn_require_go() {
  kn_go_ok && return 0
  "$KUBENOVA_ROOT/hack/install-go.sh" >&2 || exit 1
  case ":$PATH:" in
    *":$KUBENOVA_GO_ROOT/bin:"*) ;;
    *) PATH="$KUBENOVA_GO_ROOT/bin:$PATH" ;;
  esac
  kn_go_ok || {
    echo "go.sh: no Go >= $KUBENOVA_GO_MIN on PATH even after hack/install-go.sh" >&2
    exit 1
  }
}
