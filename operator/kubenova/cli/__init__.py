"""``kubectl nova``: day-2 operations on Instances from the user's machine.

The plugin speaks to the kube-apiserver only, as any kubectl plugin does: it patches an
Instance's spec and reads back what the operator writes into its status and InstanceActions.
It never imports the control plane (an import-linter contract in pyproject.toml keeps it so).
"""
