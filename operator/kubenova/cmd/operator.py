"""``kubenova-operator``: run the control plane (api, scheduler, conductor) under kopf."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import kopf

from kubenova import log


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kubenova-operator", description="Run the Kubenova operator."
    )
    parser.add_argument(
        "--peering",
        default=None,
        help="kopf peering name for running several replicas with one active (default: standalone)",
    )
    parser.add_argument("--log-level", default=os.environ.get("KUBENOVA_LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    log.setup("kubenova-operator", args.log_level)
    # Importing the module registers its handlers with kopf's default registry.
    from kubenova.api import handlers  # noqa: F401

    asyncio.run(
        kopf.operator(
            clusterwide=True,
            standalone=args.peering is None,
            peering_name=args.peering,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
