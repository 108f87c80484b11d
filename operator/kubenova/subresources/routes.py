"""Which answer a request path asks for: a health check, a discovery document, or a
subresource of one Instance. Pure: no I/O, so every path the server serves is tested here.

Paths are those the kube-apiserver proxies unchanged, e.g.
``/apis/subresources.compute.kubenova.io/v1/namespaces/demo/instances/web-1/consoleurl``.
"""

from __future__ import annotations

import dataclasses
import enum
from urllib import parse

from kubenova.subresources import discovery, status


class Kind(enum.Enum):
    HEALTH = "health"
    GROUP_LIST = "group-list"
    GROUP = "group"
    RESOURCE_LIST = "resource-list"
    SUBRESOURCE = "subresource"
    OPENAPI_V2 = "openapi-v2"
    OPENAPI_V3 = "openapi-v3"


HEALTH_PATHS = frozenset({"/healthz", "/readyz", "/livez"})
_PREFIX = ("apis", discovery.GROUP, discovery.VERSION)


@dataclasses.dataclass(frozen=True)
class Route:
    kind: Kind
    namespace: str = ""
    name: str = ""
    subresource: str = ""
    query: dict[str, list[str]] = dataclasses.field(default_factory=dict)

    def param(self, key: str) -> str | None:
        """The first value of query parameter ``key``, or None."""
        values = self.query.get(key)
        return values[0] if values else None

    @property
    def methods(self) -> tuple[str, ...]:
        """The HTTP methods this route answers."""
        if self.kind is Kind.SUBRESOURCE:
            sub = discovery.SUBRESOURCES[self.subresource]
            return ("POST",) if "create" in sub.verbs else ("GET",)
        return ("GET",)


def resolve(target: str) -> Route:
    """The route of a request target (path and query), or :class:`status.ApiError` 404."""
    split = parse.urlsplit(target)
    query = parse.parse_qs(split.query, keep_blank_values=True)
    path = split.path.rstrip("/") or "/"
    if path in HEALTH_PATHS or any(path.startswith(p + "/") for p in HEALTH_PATHS):
        return Route(Kind.HEALTH)
    if path == "/openapi/v2":
        return Route(Kind.OPENAPI_V2)
    if path == "/openapi/v3":
        return Route(Kind.OPENAPI_V3)
    parts = [parse.unquote(p) for p in path.strip("/").split("/")]
    if parts == ["apis"]:
        return Route(Kind.GROUP_LIST)
    if parts == list(_PREFIX[:2]):
        return Route(Kind.GROUP)
    if parts == list(_PREFIX):
        return Route(Kind.RESOURCE_LIST)
    rest = parts[len(_PREFIX) :]
    if (
        tuple(parts[: len(_PREFIX)]) == _PREFIX
        and len(rest) == 5
        and rest[0] == "namespaces"
        and rest[2] == discovery.INSTANCES
        and all(rest)
    ):
        _, namespace, _, name, sub = rest
        if sub not in discovery.SUBRESOURCES:
            raise status.not_found(
                f"the server could not find the requested resource: {discovery.INSTANCES}/{sub}"
                f" (known: {', '.join(discovery.SUBRESOURCES)})"
            )
        return Route(Kind.SUBRESOURCE, namespace, name, sub, query)
    raise status.not_found(f"the server could not find the requested resource: {path}")
