"""``kubenova-manage ca``: an administrator's view and rotation of Kubenova's CA.

    kubenova-manage ca status  [--namespace NS]                  the CAs and their dates
    kubenova-manage ca rotate  [--namespace NS] [--signs-in S]   announce a new CA now
    kubenova-manage ca promote [--namespace NS]                  the announced CA signs now

The operator rotates its CA by itself two thirds into the CA's life. These commands are for
the other times: a key that may have leaked, a policy of yearly rotation, a test of what a
rotation does. They take the same two steps, trust before signing (docs/certificates.md):
``rotate`` announces a new CA, trusted at once and signing ``--signs-in`` seconds later
(default a day, time for the kubelets to bring every pod the new bundle); ``promote`` makes it
sign at once. Run in the operator's pod (``kubectl exec deploy/kubenova-operator --
kubenova-manage ca rotate``) they also make the operator's certificate pass at once (the
Secrets of the servers' certificates, the published bundles, the APIServices' caBundle), which
otherwise comes within ``certificates.checkIntervalSeconds``. Elsewhere they use $KUBECONFIG
and leave that pass to the operator.

The namespace is the CA's: ``--namespace``, else the pod's (``POD_NAMESPACE``), else the
chart's default, ``kubenova-system``.
"""

from __future__ import annotations

import argparse
import datetime
import os
from collections.abc import Sequence
from typing import Protocol

from cryptography import x509

from kubenova.certs import bundle, lifetime, renewal, store
from kubenova.k8s import client as k8s_client
from kubenova.k8s import objects

DEFAULT_NAMESPACE = "kubenova-system"


class CommandFailed(Exception):
    """A refusal to print in one line (the CLI's CommandError)."""


class _Pass(Protocol):
    def run_once(self) -> Sequence[object]: ...


def add_parser(categories: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``ca`` category and its commands."""
    ca = categories.add_parser("ca", help="Kubenova's CA: its status, and rotation when asked")
    commands = ca.add_subparsers(dest="command", required=True, metavar="COMMAND")
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument(
        "--namespace",
        "-n",
        default=None,
        help=f"the CA's namespace (default: $POD_NAMESPACE, else {DEFAULT_NAMESPACE})",
    )
    commands.add_parser(
        "status", parents=[where], help="the CAs, trusted and signing"
    ).set_defaults(ca_command=status)
    rotate = commands.add_parser(
        "rotate", parents=[where], help="announce a new CA: trusted now, signing later"
    )
    rotate.add_argument(
        "--signs-in",
        type=_seconds,
        default=int(bundle.PROPAGATION.total_seconds()),
        help="seconds until the new CA signs (default: a day)",
    )
    rotate.set_defaults(ca_command=rotate_ca)
    commands.add_parser(
        "promote", parents=[where], help="the announced CA signs from now on"
    ).set_defaults(ca_command=promote_ca)


def run(args: argparse.Namespace) -> int:
    """Run the ``ca`` command ``args`` names; raises :class:`CommandFailed`."""
    k8s_client.load_config()
    namespace = args.namespace or os.environ.get("POD_NAMESPACE") or DEFAULT_NAMESPACE
    try:
        lines = args.ca_command(objects.NamespacedObjects(namespace), args, _certificate_pass())
    except ValueError as exc:
        raise CommandFailed(str(exc)) from exc
    for line in lines:
        print(line)
    return 0


def status(ca_store: objects.Store, _args: argparse.Namespace, _pass: _Pass | None) -> list[str]:
    state = store.trust_state(ca_store)
    lines = [
        f"current:  {_describe(state.current.cert)}, signing",
    ]
    if state.upcoming is not None:
        lines.append(
            f"next:     {_describe(state.upcoming.pair.cert)}, trusted, signs from "
            f"{lifetime.rfc3339(state.upcoming.signs_from)}"
        )
    for old in state.retiring:
        lines.append(
            f"retiring: {_describe(old.cert)}, trusted until {lifetime.rfc3339(old.retire_at)}"
        )
    return lines


def rotate_ca(ca_store: objects.Store, args: argparse.Namespace, pass_: _Pass | None) -> list[str]:
    state = store.announce(ca_store, signs_in=datetime.timedelta(seconds=args.signs_in))
    assert state.upcoming is not None
    lines = [
        f"announced {_describe(state.upcoming.pair.cert)}: trusted now, signs from "
        f"{lifetime.rfc3339(state.upcoming.signs_from)}"
    ]
    return lines + _after(pass_)


def promote_ca(
    ca_store: objects.Store, _args: argparse.Namespace, pass_: _Pass | None
) -> list[str]:
    state = store.promote(ca_store)
    lines = [f"promoted {_describe(state.current.cert)}: it signs from now on"]
    lines += [
        f"retiring {_describe(old.cert)}: trusted until {lifetime.rfc3339(old.retire_at)}"
        for old in state.retiring
    ]
    return lines + _after(pass_)


def _after(pass_: _Pass | None) -> list[str]:
    if pass_ is None:
        return ["the operator reissues certificates and publishes the bundles at its next pass"]
    outcomes = pass_.run_once()
    return [f"certificate pass done ({len(outcomes)} certificates checked)"]


def _certificate_pass() -> _Pass | None:
    """The operator's certificate pass where its settings are (its pod), else None."""
    try:
        return renewal.Renewer.from_env()
    except ValueError:
        return None


def _describe(cert: x509.Certificate) -> str:
    return f"serial {cert.serial_number:x} (expires {lifetime.rfc3339(cert.not_valid_after_utc)})"


def _seconds(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of seconds: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {value}")
    return value
