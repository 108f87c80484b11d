"""One active operator among replicas: a ``coordination.k8s.io/v1`` Lease, and the probes.

``lease`` reads and writes the Lease, ``election`` decides from it whether this process
leads (client-go's rules), ``campaign`` runs that decision in time (wait for the Lease, keep
it, give it back), ``health`` serves what the kubelet probes. None of it knows kopf or the
control plane: ``kubenova.cmd.operator`` wires it around kopf.
"""
