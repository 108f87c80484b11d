"""``POST instances/{name}/consoleurl?type=novnc|spice-html5``: a console token and the URL
that opens it in a browser, through the console proxy (``kubenova-console``).

The road: the Instance object (its ``metadata.uid`` is the record's uuid) → its record (the
host and the console ports the host reported) → a token minted for that host and port
(:func:`kubenova.console.auth.mint`) → the proxy's page with the token. RBAC has already
decided that the caller may do this; each refusal here says what is missing, as a Status.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any, Protocol
from urllib import parse

from kubenova.compute import states
from kubenova.console import auth
from kubenova.db import engine as db_engine
from kubenova.db import hosts as db_hosts
from kubenova.db import instances as db_instances
from kubenova.db import models
from kubenova.subresources import discovery, requestheader, status

LOG = logging.getLogger(__name__)

DEFAULT_TYPE = auth.ConsoleType.NOVNC
# The consoles a browser URL can open (the serial console is a websocket of its own).
BROWSER_TYPES = (auth.ConsoleType.NOVNC, auth.ConsoleType.SPICE_HTML5)


class InstanceReader(Protocol):
    """Reads Instance objects (:class:`kubenova.k8s.client.KubeClient` does)."""

    def get_instance(self, namespace: str, name: str) -> dict[str, Any] | None: ...


@dataclasses.dataclass(frozen=True)
class ConsolePlace:
    """Where an instance's consoles are, as its record says."""

    uuid: str
    host: str | None
    vm_state: str
    power_state: str
    vnc_port: int | None
    spice_port: int | None
    spice_tls_port: int | None
    # Where the host's consoles are reached (its node's reported console address); None: at
    # the host's name.
    host_address: str | None = None

    @property
    def address(self) -> str:
        """What to connect to for this place's consoles (a name while no address is known)."""
        return self.host_address or self.host or ""


def read_place(session_factory: db_engine.SessionFactory, uuid: str) -> ConsolePlace | None:
    """The consoles' place of the live record ``uuid``, or None when there is none."""
    with db_engine.transaction(session_factory) as session:
        record = db_instances.instance_get(session, uuid)
        if record is None:
            return None
        node = db_hosts.compute_node_get(session, record.host) if record.host else None
        return ConsolePlace(
            uuid=record.uuid,
            host=record.host,
            host_address=node.console_address if node is not None else None,
            vm_state=record.vm_state,
            power_state=record.power_state,
            vnc_port=record.vnc_port,
            spice_port=record.spice_port,
            spice_tls_port=record.spice_tls_port,
        )


def console_type(raw: str | None) -> auth.ConsoleType:
    """The ``type`` query parameter (default ``novnc``), or 400 naming the ones there are."""
    if raw is None or raw == "":
        return DEFAULT_TYPE
    for kind in BROWSER_TYPES:
        if raw == kind.value:
            return kind
    raise status.bad_request(
        f"unknown console type {raw!r}: use {' or '.join(k.value for k in BROWSER_TYPES)}"
    )


def locate(
    kube: InstanceReader,
    read_place: PlaceReader,
    session_factory: db_engine.SessionFactory,
    namespace: str,
    name: str,
    *,
    deleting_ok: bool = False,
) -> tuple[str, ConsolePlace]:
    """The uid of Instance ``namespace/name`` and its record's place; :class:`status.ApiError`
    404 when there is no such Instance, 409 when it has no record yet or (unless
    ``deleting_ok``) is being deleted."""
    obj = kube.get_instance(namespace, name)
    if obj is None:
        raise status.not_found(
            f'{discovery.INSTANCES}.{discovery.INSTANCE_GROUP} "{name}" not found'
            f' in namespace "{namespace}"',
            name=name,
            kind=discovery.INSTANCES,
        )
    metadata = obj.get("metadata") or {}
    if metadata.get("deletionTimestamp") and not deleting_ok:
        raise status.conflict(f'instance "{name}" is being deleted', name=name)
    uuid = str(metadata.get("uid", ""))
    place = read_place(session_factory, uuid) if uuid else None
    if place is None:
        raise status.conflict(
            f'instance "{name}" has no record yet: it is still being created', name=name
        )
    return uuid, place


def target(place: ConsolePlace, kind: auth.ConsoleType, name: str) -> tuple[str, int, int | None]:
    """The host, port and TLS port a token of ``kind`` points at, or 409 saying why there is
    no such console now. SPICE is relayed over TLS only, so it needs the TLS port."""
    if place.vm_state != states.ACTIVE or place.power_state != states.RUNNING:
        raise status.conflict(
            f'instance "{name}" is not running (vm_state {place.vm_state}, power_state'
            f" {place.power_state}): a console needs a running guest",
            name=name,
        )
    if not place.host:
        raise status.conflict(f'instance "{name}" has no host', name=name)
    if kind is auth.ConsoleType.NOVNC and place.vnc_port is not None:
        return place.host, place.vnc_port, None
    if kind is auth.ConsoleType.SPICE_HTML5 and place.spice_tls_port is not None:
        return place.host, place.spice_port or place.spice_tls_port, place.spice_tls_port
    what = "VNC" if kind is auth.ConsoleType.NOVNC else "SPICE (TLS)"
    raise status.conflict(
        f'instance "{name}" has no {what} console yet: its host {place.host} has not reported'
        " one (the guest may have been started before consoles were enabled; a stop and start"
        " gives it one)",
        name=name,
    )


def browser_url(base_url: str, kind: auth.ConsoleType, token: str, uuid: str) -> str:
    """The proxy's page for ``kind`` with ``token`` (docs/console.md lists the pages)."""
    base = base_url.rstrip("/")
    if kind is auth.ConsoleType.SPICE_HTML5:
        query = parse.urlencode({"path": f"websockify?token={token}"})
        return f"{base}/spice/spice_auto.html?{query}"
    return f"{base}/vnc.html?{parse.urlencode({'token': token, 'instance': uuid})}"


def _rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


PlaceReader = Callable[[db_engine.SessionFactory, str], ConsolePlace | None]


class ConsoleUrls:
    """Answers ``instances/consoleurl``. ``read_place`` and ``mint`` are the database's
    (:func:`read_place`, :func:`kubenova.console.auth.mint`) unless a test stands in."""

    def __init__(
        self,
        kube: InstanceReader,
        session_factory: db_engine.SessionFactory,
        proxy_url: str,
        ttl_s: int,
        *,
        clock: Callable[[], dt.datetime] = models.utcnow,
        read_place: PlaceReader = read_place,
        mint: Callable[..., auth.MintedToken] = auth.mint,
    ) -> None:
        self._kube = kube
        self._session_factory = session_factory
        self._proxy_url = proxy_url
        self._ttl_s = ttl_s
        self._clock = clock
        self._read_place = read_place
        self._mint = mint

    def create(
        self, namespace: str, name: str, type_: str | None, user: requestheader.User
    ) -> dict[str, Any]:
        """Mint a token for the console ``type_`` of Instance ``namespace/name``; the
        ConsoleURL document, or :class:`status.ApiError`."""
        kind = console_type(type_)
        uuid, place = locate(self._kube, self._read_place, self._session_factory, namespace, name)
        host, port, tls_port = target(place, kind, name)
        minted = self._mint(
            self._session_factory,
            uuid,
            kind,
            host,
            port,
            tls_port,
            None,
            self._ttl_s,
            clock=self._clock,
        )
        LOG.info(
            "console token (%s) of instance %s/%s (%s) on %s for user %s, until %s",
            kind.value,
            namespace,
            name,
            uuid,
            host,
            user.name,
            minted.expires.isoformat(),
        )
        return {
            "kind": discovery.CONSOLEURL.kind,
            "apiVersion": discovery.GROUP_VERSION,
            "metadata": {"name": name, "namespace": namespace, "uid": uuid},
            "type": kind.value,
            "url": browser_url(self._proxy_url, kind, minted.token, uuid),
            "expires": _rfc3339(minted.expires),
        }
