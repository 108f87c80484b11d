# shellcheck shell=bash
# The Helm releases Kubenova's chart is built and tested with. Helm 4 is what we install with;
# Helm 3 is kept so the chart stays installable by users who have not moved yet.
# tests/unit/chart/ reads these two lines too, so keep the KEY=vX.Y.Z form.
KUBENOVA_HELM_VERSION=v4.3.2
KUBENOVA_HELM3_VERSION=v3.21.4
