"""What an action is given: the namespace the access key acts in, the region, and the cluster."""

from __future__ import annotations

import dataclasses

from kubenova.ec2 import cluster


@dataclasses.dataclass(frozen=True)
class Context:
    #: The namespace of the access key that signed the request: the only one it may touch.
    namespace: str
    region: str
    #: This server's URL as clients reach it (DescribeRegions' Endpoint).
    endpoint: str
    cluster: cluster.Cluster
    request_id: str
