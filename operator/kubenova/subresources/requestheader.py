"""Who is asking: the user the kube-apiserver names in its request headers, believed only from
the kube-apiserver itself.

The kube-apiserver proxies a request to an aggregated server with its front-proxy client
certificate (``--proxy-client-cert-file``) and the caller it authenticated in
``X-Remote-User``, ``X-Remote-Group`` and ``X-Remote-Extra-*``. Anyone who can reach this
server can send such headers, so they count only on a connection whose client certificate the
TLS layer verified against the request-header CA (``--requestheader-client-ca-file``) and whose
common name is one of ``--requestheader-allowed-names`` (any name when that list is empty,
as Kubernetes has it). The kube-apiserver publishes all of that in the ConfigMap
``kube-system/extension-apiserver-authentication``, which every aggregated server reads, and
rewrites when its CA rotates (:mod:`kubenova.subresources.requestheader_provider` follows it).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeAlias
from urllib import parse

from kubenova.subresources import status

CONFIGMAP_NAMESPACE = "kube-system"
CONFIGMAP_NAME = "extension-apiserver-authentication"
CLIENT_CA_KEY = "requestheader-client-ca-file"


class Headers(Protocol):
    """What the server's request headers offer (``email.message.Message`` has it)."""

    def get_all(self, name: str, failobj: Any = None) -> list[str] | Any: ...

    def keys(self) -> list[str]: ...


@dataclasses.dataclass(frozen=True)
class RequestHeaderConfig:
    """The kube-apiserver's ``--requestheader-*`` settings, as an aggregated server needs them."""

    client_ca_pem: str
    allowed_names: tuple[str, ...] = ()
    username_headers: tuple[str, ...] = ("X-Remote-User",)
    group_headers: tuple[str, ...] = ("X-Remote-Group",)
    extra_headers_prefixes: tuple[str, ...] = ("X-Remote-Extra-",)

    def __post_init__(self) -> None:
        if "BEGIN CERTIFICATE" not in self.client_ca_pem:
            raise ValueError("the request-header client CA holds no PEM certificate")
        if not self.username_headers:
            raise ValueError("at least one username header is needed")

    @classmethod
    def from_configmap(cls, data: Mapping[str, str]) -> RequestHeaderConfig:
        """Read the ConfigMap ``kube-system/extension-apiserver-authentication``'s data; its
        lists are JSON arrays. ValueError when the kube-apiserver has no front proxy set up."""
        ca = data.get(CLIENT_CA_KEY, "")
        if not ca:
            raise ValueError(
                f"{CONFIGMAP_NAMESPACE}/{CONFIGMAP_NAME} has no {CLIENT_CA_KEY}:"
                " the kube-apiserver runs without --requestheader-client-ca-file, so it cannot"
                " proxy to aggregated API servers"
            )
        if "BEGIN CERTIFICATE" not in ca:
            raise ValueError(f"{CLIENT_CA_KEY} in {CONFIGMAP_NAME} holds no PEM certificate")

        def names(key: str, default: tuple[str, ...]) -> tuple[str, ...]:
            raw = data.get(key)
            if not raw:
                return default
            try:
                value = json.loads(raw)
            except ValueError as bad:
                raise ValueError(f"{key} in {CONFIGMAP_NAME} is not JSON: {bad}") from bad
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"{key} in {CONFIGMAP_NAME} is not a JSON list of strings")
            return tuple(value)

        return cls(
            client_ca_pem=ca,
            allowed_names=names("requestheader-allowed-names", ()),
            username_headers=names("requestheader-username-headers", ("X-Remote-User",)),
            group_headers=names("requestheader-group-headers", ("X-Remote-Group",)),
            extra_headers_prefixes=names(
                "requestheader-extra-headers-prefix", ("X-Remote-Extra-",)
            ),
        )


#: A configuration, or what gives the current one for each request
#: (:meth:`kubenova.subresources.requestheader_provider.RequestHeaderProvider.current`).
ConfigSource: TypeAlias = RequestHeaderConfig | Callable[[], RequestHeaderConfig]


def resolve(source: ConfigSource) -> RequestHeaderConfig:
    """The configuration ``source`` holds now."""
    return source if isinstance(source, RequestHeaderConfig) else source()


@dataclasses.dataclass(frozen=True)
class User:
    """The caller the kube-apiserver authenticated (and already authorized)."""

    name: str
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)


def common_name(peer_cert: Mapping[str, Any] | None) -> str | None:
    """The subject's common name of a certificate as ``SSLSocket.getpeercert()`` gives it.

    ``getpeercert()`` is None without a client certificate and empty when the certificate was
    not verified; both give None here."""
    if not peer_cert:
        return None
    subject: Sequence[Sequence[tuple[str, str]]] = peer_cert.get("subject", ())
    for rdn in subject:
        for key, value in rdn:
            if key == "commonName":
                return value
    return None


def authenticate(
    config: RequestHeaderConfig, peer_cert: Mapping[str, Any] | None, headers: Headers
) -> User:
    """The user named by ``headers``, or :class:`status.ApiError` 401 when the connection is
    not the kube-apiserver's (no verified front-proxy certificate, or a name not allowed) or
    names no user."""
    name = common_name(peer_cert)
    if name is None:
        raise status.unauthorized(
            "this server answers the kube-apiserver only: send the request to the"
            " kube-apiserver, which authenticates you and authorizes it with RBAC"
        )
    if config.allowed_names and name not in config.allowed_names:
        raise status.unauthorized(
            f"client certificate {name!r} is not one of the request-header allowed names"
        )
    user = _first(headers, config.username_headers)
    if not user:
        raise status.unauthorized("the proxied request names no user")
    groups = tuple(g for h in config.group_headers for g in _all(headers, h) if g)
    return User(user, groups, _extra(headers, config.extra_headers_prefixes))


def _all(headers: Headers, name: str) -> list[str]:
    values = headers.get_all(name)
    return [str(v).strip() for v in values] if values else []


def _first(headers: Headers, names: Sequence[str]) -> str:
    for name in names:
        for value in _all(headers, name):
            if value:
                return value
    return ""


def _extra(headers: Headers, prefixes: Sequence[str]) -> dict[str, tuple[str, ...]]:
    extra: dict[str, list[str]] = {}
    lowered = [p.lower() for p in prefixes]
    for header in dict.fromkeys(headers.keys()):
        for prefix in lowered:
            if header.lower().startswith(prefix):
                # Kubernetes escapes the key's reserved characters as a URL does.
                key = parse.unquote(header[len(prefix) :]).lower()
                extra.setdefault(key, []).extend(_all(headers, header))
    return {key: tuple(values) for key, values in extra.items()}
