#!/usr/bin/env bash
# Installs the console proxy's web pages into $KUBENOVA_STATE/console/web (or the directory
# given), where kubenova-console serves them from (KUBENOVA_CONSOLE_WEB_DIR):
#   vnc.html           Kubenova's noVNC page (operator/kubenova/console/proxy/web/)
#   novnc/             noVNC's library (npm @novnc/novnc: core/ and vendor/)
#   spice/             spice-html5 (npm @spice-project/spice-html5), spice_auto.html among it
# Nothing is fetched at run time. The npm registry is asked only when the pinned versions or
# the page changed since the last install (the stamp file).
#
# Usage: hack/console/assets.sh [DIR]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=../lib/env.sh
. "$here/../lib/env.sh"
# shellcheck source=../lib/daemon.sh
. "$KUBENOVA_ROOT/hack/lib/daemon.sh"

NOVNC_VERSION=1.7.0
SPICE_HTML5_VERSION=0.2.1
pages="$KUBENOVA_ROOT/operator/kubenova/console/proxy/web"
dest="${1:-$KUBENOVA_STATE/console/web}"
stamp="$dest/.installed"

want="novnc=$NOVNC_VERSION spice-html5=$SPICE_HTML5_VERSION pages=$(cat "$pages"/* | sha256sum | cut -d' ' -f1)"
if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then
  exit 0
fi

command -v npm >/dev/null || kn_ensure_packages npm

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
kn_log "console assets: npm pack @novnc/novnc@$NOVNC_VERSION @spice-project/spice-html5@$SPICE_HTML5_VERSION"
# npm pack checks each tarball against the registry's integrity digest.
(cd "$work" && npm pack --silent "@novnc/novnc@$NOVNC_VERSION" \
  "@spice-project/spice-html5@$SPICE_HTML5_VERSION" >/dev/null)

staging="$work/web"
mkdir -p "$staging/novnc" "$staging/spice"
tar -xzf "$work/novnc-novnc-$NOVNC_VERSION.tgz" -C "$staging/novnc" --strip-components=1 \
  package/core package/vendor package/LICENSE.txt package/AUTHORS
tar -xzf "$work/spice-project-spice-html5-$SPICE_HTML5_VERSION.tgz" -C "$staging/spice" \
  --strip-components=1 package/src package/spice_auto.html package/spice.html package/spice.css \
  package/COPYING package/COPYING.LESSER
cp "$pages"/* "$staging/"
printf '%s\n' "$want" >"$staging/.installed"

# Replaced whole, so a running proxy never serves a half-installed tree for long.
mkdir -p "$(dirname "$dest")"
rm -rf "$dest.old"
[[ -e $dest ]] && mv "$dest" "$dest.old"
mv "$staging" "$dest"
rm -rf "$dest.old"
kn_log "console assets installed in $dest"
