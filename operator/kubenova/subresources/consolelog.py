"""``GET instances/{name}/consolelog?tailLines=N``: the tail of the guest's serial console
log, as ``text/plain``, as ``pods/log`` answers.

The road: the Instance object (its ``metadata.uid`` is the record's uuid) → its record (the
host it is on) → a call to that host's agent (``get_console_output``), which reads the log
where the hypervisor writes it. RBAC has already decided that the caller may read it (``get``
on ``instances/consolelog``); each refusal here says what is missing, as a Status.
"""

from __future__ import annotations

import logging
from typing import Protocol

from kubenova import config
from kubenova.db import engine as db_engine
from kubenova.rpc import call, compute_rpcapi, envelope
from kubenova.subresources import consoleurl, discovery, requestheader, status

LOG = logging.getLogger(__name__)

TAIL_LINES = "tailLines"
#: How long the host has to answer; the kube-apiserver waits longer for an aggregated server.
DEFAULT_TIMEOUT_S = 10.0


class ConsoleOutputAPI(Protocol):
    """Asks a host for a console log (:class:`kubenova.rpc.compute_rpcapi.ComputeAPI`)."""

    def get_console_output(
        self,
        host: str,
        instance_uuid: str,
        tail_lines: int | None,
        *,
        request_id: str,
        timeout_s: float = ...,
    ) -> str: ...


def tail_lines(raw: str | None) -> int | None:
    """The ``tailLines`` query parameter: None (all) when absent, else a whole number >= 0,
    or 400 naming the parameter."""
    if raw is None or raw == "":
        return None
    if not raw.isdigit():
        raise status.bad_request(
            f"{TAIL_LINES} must be a whole number of lines (0 or more), not {raw!r}"
        )
    return int(raw)


class ConsoleLogs:
    """Answers ``instances/consolelog``. ``read_place`` is the database's
    (:func:`kubenova.subresources.consoleurl.read_place`) unless a test stands in."""

    def __init__(
        self,
        kube: consoleurl.InstanceReader,
        session_factory: db_engine.SessionFactory,
        compute: ConsoleOutputAPI,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        read_place: consoleurl.PlaceReader = consoleurl.read_place,
    ) -> None:
        self._kube = kube
        self._session_factory = session_factory
        self._compute = compute
        self._timeout_s = timeout_s
        self._read_place = read_place

    def read(
        self, namespace: str, name: str, raw_tail_lines: str | None, user: requestheader.User
    ) -> str:
        """The console log of Instance ``namespace/name``, or :class:`status.ApiError`."""
        lines = tail_lines(raw_tail_lines)
        uuid, place = consoleurl.locate(
            self._kube, self._read_place, self._session_factory, namespace, name, deleting_ok=True
        )
        if not place.host:
            raise status.conflict(
                f'instance "{name}" is not on a host yet (vm_state {place.vm_state}): it has'
                " no console log until a host builds it",
                name=name,
            )
        request_id = envelope.new_request_id()
        LOG.info(
            "console log of instance %s/%s (%s) on %s for user %s (%s)",
            namespace,
            name,
            uuid,
            place.host,
            user.name,
            request_id,
        )
        try:
            return self._compute.get_console_output(
                place.host, uuid, lines, request_id=request_id, timeout_s=self._timeout_s
            )
        except call.CallTimeout as exc:
            raise status.ApiError(
                504,
                "Timeout",
                f'the console log of instance "{name}" is on host {exc.host}, which did not'
                f" answer within {exc.timeout_s:g} s (is its agent running?)",
                name=name,
                kind=discovery.INSTANCES,
            ) from exc
        except call.Unreachable as exc:
            raise status.unavailable(
                f'the console log of instance "{name}" cannot be asked for: {exc}'
            ) from exc
        except call.RemoteError as exc:
            if exc.type == "InstanceNotFound":
                raise status.not_found(
                    f'instance "{name}" ({uuid}) is not on host {exc.host}, where its record'
                    " says it is",
                    name=name,
                    kind=discovery.INSTANCES,
                ) from exc
            raise status.internal(
                f'host {exc.host} could not read the console log of instance "{name}":'
                f" {exc.message}"
            ) from exc
        except call.CallError as exc:
            raise status.internal(str(exc)) from exc


def from_env(
    kube: consoleurl.InstanceReader, session_factory: db_engine.SessionFactory
) -> ConsoleLogs:
    """The console logs as ``kubenova-subresources`` serves them: hosts are called over the
    message bus of ``KUBENOVA_AMQP_URL`` (:meth:`kubenova.config.MessagingSettings.from_env`),
    as the operator reaches them."""
    caller = call.Caller(config.MessagingSettings.from_env(), sender="kubenova-subresources")
    return ConsoleLogs(kube, session_factory, compute_rpcapi.ComputeAPI(caller=caller))
