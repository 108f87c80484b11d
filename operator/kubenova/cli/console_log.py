"""``kubectl nova console-log NAME [--tail N]``: the guest's serial console output, as
``kubectl logs`` prints a pod's.

It reads the Instance's ``consolelog`` subresource through the kube-apiserver, which lets the
caller in only with ``get`` on ``instances/consolelog`` in the group
``subresources.compute.kubenova.io`` (the ClusterRole ``kubenova-console-user`` grants it).
The log is printed as the host keeps it, capped to its last MiB.
"""

from __future__ import annotations

import argparse
import sys

from kubernetes.client import exceptions as k8s_exceptions

from kubenova.cli import kube
from kubenova.k8s.resources import INSTANCES, SUBRESOURCES_GROUP, SUBRESOURCES_VERSION

#: ``--tail``'s default, as kubectl logs': every line the host returns.
ALL_LINES = -1
# The host has 10 s to answer the server; the kube-apiserver's own answer comes before this.
_REQUEST_TIMEOUT = (10.0, 60.0)


def tail(raw: str) -> int:
    """``--tail``'s value: a number of lines >= 0, or -1 for all of them."""
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of lines: {raw!r}") from None
    if value < ALL_LINES:
        raise argparse.ArgumentTypeError(f"must be 0 or more lines, or -1 for all: {value}")
    return value


def read_console_log(cluster: kube.Cluster, name: str, tail_lines: int) -> str:
    """GET the Instance's ``consolelog`` subresource: its console output as text."""
    path = (
        f"/apis/{SUBRESOURCES_GROUP}/{SUBRESOURCES_VERSION}/namespaces/{cluster.namespace}"
        f"/{INSTANCES}/{name}/consolelog"
    )
    query = [] if tail_lines == ALL_LINES else [("tailLines", str(tail_lines))]
    request = cluster.api.param_serialize(
        method="GET",
        resource_path=path,
        query_params=query,
        header_params={"Accept": "text/plain, application/json"},
        auth_settings=["BearerToken"],
    )
    response = cluster.api.call_api(*request, _request_timeout=_REQUEST_TIMEOUT)
    text = (response.read() or b"").decode(errors="replace")  # type: ignore[no-untyped-call]
    if not 200 <= response.status <= 299:
        raise k8s_exceptions.ApiException.from_response(http_resp=response, body=text, data=None)
    return text


def run_console_log(cluster: kube.Cluster, options: argparse.Namespace) -> int:
    sys.stdout.write(read_console_log(cluster, options.name, options.tail))
    sys.stdout.flush()
    return 0


def register(
    verbs: argparse._SubParsersAction[argparse.ArgumentParser],
    common: list[argparse.ArgumentParser],
) -> None:
    parser = verbs.add_parser(
        "console-log",
        parents=common,
        help="print an instance's serial console output",
        description=(
            "Print what the instance's guest wrote to its serial console (boot messages, a"
            " login prompt), as its host keeps it: at most the last MiB."
        ),
    )
    parser.add_argument("name", metavar="NAME", help="the Instance's name")
    parser.add_argument(
        "--tail",
        type=tail,
        default=ALL_LINES,
        metavar="N",
        help="print only the last N lines (default -1: all the host returns)",
    )
    parser.set_defaults(run=run_console_log)
