"""``kubectl nova vnc NAME --url`` and ``kubectl nova spice NAME --url``: the browser URL of
the instance's console, through the console proxy; ``kubectl nova vnc NAME``: the console on a
local port for a native viewer (:mod:`kubenova.cli.vnc_proxy`).

The URL carries a new console token: it opens one browser session and must be opened before
it expires (printed on stderr, so that stdout is the URL alone, for ``xdg-open $(...)``).
Whether the caller may have one is RBAC's decision: ``create`` on ``instances/consoleurl`` in
the group ``subresources.compute.kubenova.io`` (``get`` on ``instances/vnc`` for the port).
"""

from __future__ import annotations

import argparse
import sys

from kubenova.cli import kube, vnc_proxy

NOVNC = "novnc"
SPICE_HTML5 = "spice-html5"


def run_console_url(cluster: kube.Cluster, options: argparse.Namespace) -> int:
    if not options.url and options.verb == "vnc":
        return vnc_proxy.run(
            cluster, options.name, options.address, options.port, options.proxy_only
        )
    if not options.url:
        raise kube.CommandError(
            f"error: kubectl nova {options.verb} NAME needs --url for now: it prints the"
            " browser console's URL (a local port for a native SPICE viewer is not served yet)"
        )
    answer = kube.create_console_url(cluster, options.name, options.console_type)
    url = answer.get("url")
    if not isinstance(url, str) or not url:
        raise kube.CommandError("error: the server's answer holds no console URL")
    print(url)
    expires = answer.get("expires")
    if expires:
        print(
            f"the URL opens one browser session and expires at {expires} if not opened",
            file=sys.stderr,
        )
    return 0


def register(
    verbs: argparse._SubParsersAction[argparse.ArgumentParser],
    common: list[argparse.ArgumentParser],
) -> None:
    for verb, console_type, what in (
        ("vnc", NOVNC, "noVNC"),
        ("spice", SPICE_HTML5, "spice-html5"),
    ):
        native = verb == "vnc"
        parser = verbs.add_parser(
            verb,
            parents=common,
            help=(
                "open an instance's VNC console in a local viewer, or print its noVNC URL"
                if native
                else f"print the URL of an instance's {what} console in a browser"
            ),
            description=(
                (
                    "Serve the instance's VNC console on a local port, through the"
                    " kube-apiserver, and start vncviewer (or remote-viewer) on it. "
                    if native
                    else ""
                )
                + f"With --url, print the URL of the instance's graphical console in {what},"
                " through Kubenova's console proxy. The URL opens one browser session and"
                " expires if not opened in time (10 minutes by default)."
            ),
        )
        parser.add_argument("name", metavar="NAME", help="the Instance's name")
        parser.add_argument(
            "--url",
            action="store_true",
            help="print the browser URL" + ("" if native else " (required for now)"),
        )
        if native:
            parser.add_argument(
                "--address",
                default="127.0.0.1",
                help="the local address to listen on (default: 127.0.0.1)",
            )
            parser.add_argument(
                "--port",
                type=_port,
                default=0,
                help="the local port to listen on (default: 0, any free port)",
            )
            parser.add_argument(
                "--proxy-only",
                action="store_true",
                help="serve the port without starting a viewer",
            )
        parser.set_defaults(run=run_console_url, console_type=console_type)


def _port(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {raw!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535, not {value}")
    return value
