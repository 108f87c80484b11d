#!/usr/bin/env bash
# Create .venv with kubenova and its development tools. libvirt-python compiles
# against libvirt's headers, so those Debian packages come first.
set -euo pipefail
. "$(dirname "$0")/lib/env.sh"
cd "$KUBENOVA_ROOT"
need=()
for pkg in libvirt-dev pkg-config gcc; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if ((${#need[@]})); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=900 "${need[@]}"
fi
if [[ ! -x .venv/bin/python ]]; then
  # Debian's own python3 needs python3-venv for this; a pyenv or python.org build has it.
  if ! python3 -m venv --help >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=900 python3-venv
  fi
  python3 -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[dev]'
