"""What an action is given: the namespace the access key acts in, the region, the cluster, and
the instances terminated a short while ago."""

from __future__ import annotations

import dataclasses

from kubenova.ec2 import cluster, terminated


@dataclasses.dataclass(frozen=True)
class Context:
    #: The namespace of the access key that signed the request: the only one it may touch.
    namespace: str
    region: str
    #: This server's URL as clients reach it (DescribeRegions' Endpoint).
    endpoint: str
    cluster: cluster.Cluster
    request_id: str
    #: The database's records of instances deleted lately (none without a database).
    terminated: terminated.RecentlyTerminated = dataclasses.field(
        default_factory=terminated.RecentlyTerminated
    )
