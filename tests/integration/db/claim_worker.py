"""Claim racer used by the claims tests, in their own threads and as a separate process.

As a process: ``python -m tests.integration.db.claim_worker URL --threads N --hosts a,b
--instances u1,u2,...`` connects, prints ``ready``, waits for a line on stdin (so every racer
starts at once), claims, and prints one JSON object {instance uuid: host or null}.

An instance given as ``uuid@host`` claims on that host only; ``--group-id`` with
``--policy`` (and ``--max-per-host``) makes every claim a claim into that server group.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from kubenova.db import api
from kubenova.db import engine as db_engine

FLAVOR = {"vcpus": 1, "memory_mib": 512, "disk_gib": 1}


def claim_first_fitting(
    session_factory: db_engine.SessionFactory,
    instance_uuid: str,
    hosts: Sequence[str],
    server_group: api.ServerGroupClaim | None = None,
) -> str | None:
    """Try the hosts in a random order, as a scheduler tries its alternates; the host that
    took the claim, or None when none had room (or the group refused them all)."""
    order = list(hosts)
    random.shuffle(order)
    for host in order:
        if api.claim_resources(
            session_factory,
            instance_uuid,
            host,
            FLAVOR["vcpus"],
            FLAVOR["memory_mib"],
            FLAVOR["disk_gib"],
            server_group=server_group,
        ):
            return host
    return None


def race(
    session_factory: db_engine.SessionFactory,
    instances: Sequence[str],
    hosts: Sequence[str],
    threads: int,
    server_group: api.ServerGroupClaim | None = None,
) -> dict[str, str | None]:
    """Claim every instance from ``threads`` threads; {uuid: host or None}. An entry
    ``uuid@host`` claims on that host only."""

    def claim(entry: str) -> tuple[str, str | None]:
        uuid, _, only = entry.partition("@")
        return uuid, claim_first_fitting(
            session_factory, uuid, [only] if only else hosts, server_group
        )

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return dict(pool.map(claim, instances))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--hosts", required=True)
    parser.add_argument("--instances", required=True)
    parser.add_argument("--group-id", type=int, default=None)
    parser.add_argument("--policy", default=None)
    parser.add_argument("--max-per-host", type=int, default=None)
    args = parser.parse_args(argv)
    server_group = None
    if args.group_id is not None:
        server_group = api.ServerGroupClaim(args.group_id, args.policy, args.max_per_host)

    engine = db_engine.create_engine(args.url, pool_size=args.threads)
    try:
        session_factory = db_engine.make_session_factory(engine)
        with engine.connect():  # connect before the start signal
            pass
        print("ready", flush=True)
        sys.stdin.readline()
        results = race(
            session_factory,
            args.instances.split(","),
            args.hosts.split(","),
            args.threads,
            server_group,
        )
        print(json.dumps(results), flush=True)
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
