"""The message contract shared by the operator and the node-agent.

This package is the only part of the control plane the agent imports (with
:mod:`kubenova.config`). It holds the versioned envelope, the typed payloads, the
pika adapter and the two rpcapi stubs.
"""
