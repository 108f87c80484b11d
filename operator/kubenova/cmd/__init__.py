"""Entry points of the control plane's console scripts (``kubenova-manage``, the operator)."""
