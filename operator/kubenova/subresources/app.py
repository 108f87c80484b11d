"""One request in, one answer out: routing, the front-proxy check and the subresources,
without sockets (:mod:`kubenova.subresources.server` carries the bytes).

Health checks and the (empty) OpenAPI documents answer anyone (the kubelet probes without a
certificate); everything else first needs the kube-apiserver's front-proxy certificate and
the user it names.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Protocol

from kubenova.subresources import discovery, requestheader, routes, status

LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Answer:
    code: int
    body: dict[str, Any] | str
    # An answer that holds a console token must not be kept by any cache.
    secret: bool = False


class ConsoleUrlMaker(Protocol):
    """Makes ConsoleURL documents (:class:`kubenova.subresources.consoleurl.ConsoleUrls`)."""

    def create(
        self, namespace: str, name: str, type_: str | None, user: requestheader.User
    ) -> dict[str, Any]: ...


class ConsoleLogReader(Protocol):
    """Reads console logs (:class:`kubenova.subresources.consolelog.ConsoleLogs`)."""

    def read(
        self, namespace: str, name: str, raw_tail_lines: str | None, user: requestheader.User
    ) -> str: ...


# instances/vnc and instances/console are websockets, answered by
# kubenova.subresources.streams before the app.
_NOT_YET = {
    discovery.CONSOLELOG.name: "the serial console's log is not served yet",
}


class App:
    def __init__(
        self, request_headers: requestheader.ConfigSource, console_urls: ConsoleUrlMaker
    ) -> None:
        # Asked for each request: the front-proxy CA and allowed names follow the ConfigMap.
        self._request_headers = request_headers
        self._console_urls = console_urls
        # None: instances/consolelog answers 501, as before the server could call hosts.
        self.console_logs: ConsoleLogReader | None = None

    def handle(
        self,
        method: str,
        target: str,
        peer_cert: dict[str, Any] | None,
        headers: requestheader.Headers,
    ) -> Answer:
        """The answer to ``method target``; never raises for a request's fault."""
        try:
            return self._handle(method, target, peer_cert, headers)
        except status.ApiError as refused:
            return Answer(refused.code, refused.body())
        except Exception:
            LOG.exception("%s %s failed", method, target.split("?", 1)[0])
            return Answer(500, status.internal("internal error; see the server's log").body())

    def _handle(
        self,
        method: str,
        target: str,
        peer_cert: dict[str, Any] | None,
        headers: requestheader.Headers,
    ) -> Answer:
        route = routes.resolve(target)
        if method not in route.methods:
            path = target.split("?", 1)[0]
            raise status.method_not_allowed(method, path, " or ".join(route.methods))
        if route.kind is routes.Kind.HEALTH:
            return Answer(200, "ok")
        # Public, as the kube-apiserver's own: they describe the API, not anyone's data.
        if route.kind is routes.Kind.OPENAPI_V2:
            return Answer(200, discovery.openapi_v2())
        if route.kind is routes.Kind.OPENAPI_V3:
            return Answer(200, discovery.openapi_v3())
        config = requestheader.resolve(self._request_headers)
        user = requestheader.authenticate(config, peer_cert, headers)
        if route.kind is routes.Kind.GROUP_LIST:
            return Answer(200, discovery.group_list())
        if route.kind is routes.Kind.GROUP:
            return Answer(200, discovery.group())
        if route.kind is routes.Kind.RESOURCE_LIST:
            return Answer(200, discovery.resource_list())
        if route.subresource == discovery.CONSOLEURL.name:
            body = self._console_urls.create(route.namespace, route.name, route.param("type"), user)
            return Answer(201, body, secret=True)
        if route.subresource == discovery.CONSOLELOG.name and self.console_logs is not None:
            tail = route.param("tailLines")
            return Answer(200, self.console_logs.read(route.namespace, route.name, tail, user))
        raise status.not_implemented(
            f"instances/{route.subresource}:"
            f" {_NOT_YET.get(route.subresource, 'not served by this server')}"
        )
