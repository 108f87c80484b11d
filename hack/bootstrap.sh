#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# `make venv`, the first step of `make up` and `make test`: on a fresh Debian bookworm machine
# (as root), install what the later steps build with, then create .venv with kubenova and its
# development tools. hack/ci/fresh-debian.sh proves it on a freshly made Debian root.
#
# What a fresh machine lacks, and why it is needed:
#   - python3 with venv's ensurepip: Debian moves ensurepip into python3-venv, and without it
#     `python3 -m venv --help` works but creating a venv fails.
#   - gcc, python3-dev, libvirt-dev and pkg-config: libvirt-python comes as source only, and pip
#     compiles it against Python's and libvirt's headers.
#   - Go >= hack/kube/go.mod's, which Debian does not package: hack/install-go.sh (why and how
#     there). It builds Kubernetes, containerd, Helm and the registry, long after this step, so
#     a machine that cannot have it is told so now.
# The services and the node's runtime (MariaDB, RabbitMQ, libvirtd, QEMU, runc, iproute2, ...)
# are installed by the scripts that start them (hack/services.sh, hack/node/up.sh, ...).
set -euo pipefail
. "$(dirname "$0")/lib/env.sh"
# shellcheck source=lib/daemon.sh
. "$KUBENOVA_ROOT/hack/lib/daemon.sh"
cd "$KUBENOVA_ROOT"

packages=(gcc libc6-dev pkg-config libvirt-dev)
# Debian's python3, or none yet: Debian's packages bring its headers and ensurepip. A python3
# of another origin first on PATH (pyenv, a python.org build) comes with both.
python3="$(command -v python3 || true)"
if [[ -z $python3 || $(readlink -f "$python3") == /usr/bin/python3* ]]; then
  packages+=(python3 python3-dev python3-venv)
fi
kn_ensure_packages "${packages[@]}"

# Checked rather than assumed, for a python3 that did not come from Debian.
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
  kn_die "kubenova needs Python >= 3.11; $(command -v python3) is $(python3 -V 2>&1)"
python3 -c 'import ensurepip, venv' 2>/dev/null ||
  kn_die "$(command -v python3) cannot create a venv: it has no ensurepip" \
    "(Debian: apt-get install python3-venv)"
python3 -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' ||
  kn_die "$(command -v python3) has no Python.h to build libvirt-python with" \
    "(Debian: apt-get install python3-dev)"

# A .venv whose pip does not run is what `python3 -m venv` leaves when ensurepip is missing
# (or its python3 is gone): make it anew rather than install into it.
if ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
  python3 -m venv --clear .venv
fi
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[dev]'

hack/install-go.sh
