"""The ``kubectl-nova`` executable: kubectl finds it on PATH and runs it for ``kubectl nova``.

Exit codes: 0 success, 1 any failure or refusal (the error on stderr, in kubectl's words),
2 a usage error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import urllib3
from kubernetes.client import exceptions as k8s_exceptions

from kubenova.cli import (
    console_log,
    consoles,
    ec2_credentials,
    evacuate,
    events,
    kube,
    migrate,
    power,
    rebuild,
    resize,
    serial_console,
    snapshot,
)

_EPILOG = """\
examples:
  kubectl nova stop web-1                 stop web-1 and wait until it is stopped
  kubectl nova start web-1 -n prod        start web-1 in namespace prod
  kubectl nova reboot web-1 --hard        power web-1 off and on
  kubectl nova pause web-1 --no-wait      ask, and return without waiting
  kubectl nova snapshot web-1 web-1-img   make the Image web-1-img of web-1's disk
  kubectl nova events web-1               the operations on web-1, oldest first
  kubectl nova evacuate --host node-3     rebuild node-3's instances elsewhere (node-3 is down)
  kubectl nova events web-1 req-0c1d...   one operation and its steps
  kubectl nova vnc web-1 --url            the URL of web-1's console in a browser (noVNC)
  kubectl nova console-log web-1 --tail 20  the last 20 lines of web-1's serial console
  kubectl nova console web-1             type on web-1's serial console (Ctrl-] leaves)
  eval "$(kubectl nova ec2-credentials create)"   an access key of the EC2 API, for aws ec2

Use "kubectl nova VERB --help" for a verb's options.
"""


def _add_connection_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    # The verbs take these after the verb too (kubectl's habit: "stop web-1 -n prod"); there
    # they must not reset a value given before the verb, hence SUPPRESS as their default.
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "-n",
        "--namespace",
        default=default,
        help='the namespace (default: the context\'s namespace, else "default")',
    )
    parser.add_argument(
        "--context", default=default, help="the kubeconfig context to use (default: the current)"
    )
    parser.add_argument(
        "--kubeconfig",
        default=default,
        metavar="PATH",
        help="the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config, else in-cluster)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubectl nova",
        description=(
            "Day-2 operations on Kubenova Instances: power, reboot and the history of\n"
            "operations. Each verb changes the Instance's spec and waits until the operator\n"
            "has applied the change, or says why it did not."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_connection_options(parser, suppress=False)
    common = argparse.ArgumentParser(add_help=False)
    _add_connection_options(common, suppress=True)
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    power.register(verbs, [common])
    events.register(verbs, [common])
    rebuild.register(verbs, [common])
    resize.register(verbs, [common])
    migrate.register(verbs, [common])
    evacuate.register(verbs, [common])
    snapshot.register(verbs, [common])
    consoles.register(verbs, [common])
    console_log.register(verbs, [common])
    serial_console.register(verbs, [common])
    ec2_credentials.register(verbs, [common])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    options = build_parser().parse_args(argv)
    server = ""
    try:
        cluster = kube.connect(options.kubeconfig, options.context, options.namespace)
        server = cluster.server
        return int(options.run(cluster, options))
    except kube.CommandError as exc:
        print(exc, file=sys.stderr)
    except (k8s_exceptions.ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
        print(kube.describe_error(exc, server), file=sys.stderr)
    except KeyboardInterrupt:
        return 130
    return 1


if __name__ == "__main__":
    sys.exit(main())
