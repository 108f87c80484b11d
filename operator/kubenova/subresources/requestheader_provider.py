"""The kube-apiserver's front-proxy settings, followed as they change, so that a rotated
request-header CA is taken up without a restart (k8s.io/apiserver's aggregated servers do the
same with their DynamicRequestHeaderController).

:class:`RequestHeaderProvider` reads ``kube-system/extension-apiserver-authentication`` at
start (a ConfigMap it cannot use there stops the server, naming the key and the reason) and
again every ``KUBENOVA_SUBRESOURCES_REQUESTHEADER_REFRESH`` seconds. A ConfigMap that parses
cleanly and differs from the one in use replaces it: the configuration the app and the
websocket subresources ask for on each request, and the server's TLS context, which is where
the client certificate is verified. One that does not parse (emptied, a CA that is no PEM
certificate, a list that is no JSON) or cannot be read keeps the last good one, with a warning
naming the key and the reason, and is tried again at the next refresh.

Python's ``ssl.SSLContext`` cannot forget a CA once loaded, so each configuration gets a TLS
context of its own and new connections are wrapped with the current one. A connection opened
before a change was verified against the CAs of its time; :meth:`RequestHeaderProvider.
still_trusted` asks again, for each request on it, whether today's CAs vouch for its
certificate, so that a kept-alive connection of a CA no longer trusted is refused too. A
ConfigMap that carries several CAs (a rotation's overlap) trusts each of them.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import ssl
import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Any, Final, cast

from cryptography import exceptions as crypto_exceptions
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from kubernetes import client as k8s_client

from kubenova.subresources import requestheader

LOG = logging.getLogger(__name__)

#: Seconds between two reads of the ConfigMap unless the setting says otherwise.
DEFAULT_REFRESH_S: Final = 60
_WHERE: Final = f"{requestheader.CONFIGMAP_NAMESPACE}/{requestheader.CONFIGMAP_NAME}"
# A read that hangs must not hold up the refreshes that follow it.
_READ_TIMEOUT_S: Final = 10.0

#: The ConfigMap's data as it is now.
ConfigMapReader = Callable[[], Mapping[str, str]]
#: The serving TLS context for one configuration: what gives the context for a new connection
#: (``kubenova.certs.reloading.ReloadingContext.current``, which also follows renewed files).
TlsBuilder = Callable[[requestheader.RequestHeaderConfig], Callable[[], ssl.SSLContext]]


def configmap_reader(api_client: k8s_client.ApiClient | None = None) -> ConfigMapReader:
    """Reads ``kube-system/extension-apiserver-authentication`` from the kube-apiserver (the
    built-in Role ``extension-apiserver-authentication-reader`` allows it)."""
    core = k8s_client.CoreV1Api(api_client)

    def read() -> Mapping[str, str]:
        configmap: Any = core.read_namespaced_config_map(
            requestheader.CONFIGMAP_NAME,
            requestheader.CONFIGMAP_NAMESPACE,
            _request_timeout=_READ_TIMEOUT_S,
        )
        return cast(dict[str, str], configmap.data or {})

    return read


def client_cas(pem: str) -> tuple[x509.Certificate, ...]:
    """The certificates of a PEM bundle; ValueError naming the key when one does not parse."""
    try:
        return tuple(x509.load_pem_x509_certificates(pem.encode()))
    except ValueError as bad:
        raise ValueError(
            f"{requestheader.CLIENT_CA_KEY} in {requestheader.CONFIGMAP_NAME} is not a bundle"
            f" of PEM certificates: {bad}"
        ) from bad


@dataclasses.dataclass(frozen=True, eq=False)
class _Trust:
    """One configuration and what it was made into."""

    config: requestheader.RequestHeaderConfig
    cas: tuple[x509.Certificate, ...]
    ca_ders: frozenset[bytes]
    tls: Callable[[], ssl.SSLContext] | None


class RequestHeaderProvider:
    """The front-proxy configuration in use, and the TLS context that verifies its CAs.

    The constructor reads the ConfigMap and raises what a first read raises (ValueError naming
    the key, the reader's errors, OSError or ``ssl.SSLError`` from ``build_tls``); after that
    nothing raises: :meth:`refresh` keeps the last good configuration instead."""

    def __init__(self, read: ConfigMapReader, build_tls: TlsBuilder | None = None) -> None:
        self._read = read
        self._build_tls = build_tls
        self._lock = threading.Lock()
        self._trust = self._make(requestheader.RequestHeaderConfig.from_configmap(read()))
        # The trust each handed-out context was made from, to judge its connections later.
        self._issued: weakref.WeakKeyDictionary[ssl.SSLContext, _Trust] = (
            weakref.WeakKeyDictionary()
        )
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def current(self) -> requestheader.RequestHeaderConfig:
        """The configuration a request is authenticated with now."""
        return self._trust.config

    def tls_context(self) -> ssl.SSLContext:
        """The serving context for a new connection: the current configuration's CAs."""
        trust = self._trust
        if trust.tls is None:
            raise RuntimeError("this provider was made without a TLS builder")
        context = trust.tls()
        if self._issued.get(context) is not trust:
            with self._lock:
                self._issued[context] = trust
        return context

    def still_trusted(self, connection: ssl.SSLSocket) -> bool:
        """Whether the client certificate the handshake of ``connection`` verified is still
        vouched for by the current CAs. True for a connection without a certificate (it is
        nobody, which authentication tells it) and for one made under CAs all still trusted;
        otherwise its certificate must be signed by a current CA directly (this Python cannot
        tell the intermediates the client sent) and be within its dates."""
        now = self._trust
        then = self._issued.get(connection.context)
        if then is now or (then is not None and then.ca_ders <= now.ca_ders):
            return True
        der = connection.getpeercert(binary_form=True)
        if der is None:
            return True
        return _signed_by_any(x509.load_der_x509_certificate(der), now.cas)

    def refresh(self) -> bool:
        """Read the ConfigMap again and take it up if it changed and parses; whether it was
        taken up. Never raises: a ConfigMap that cannot be used keeps the last good one."""
        try:
            data = self._read()
        except Exception as failed:
            LOG.warning("keeping the front-proxy configuration: cannot read %s: %s", _WHERE, failed)
            return False
        try:
            config = requestheader.RequestHeaderConfig.from_configmap(data)
        except ValueError as bad:
            LOG.warning("keeping the front-proxy configuration: %s", bad)
            return False
        if config == self._trust.config:
            return False
        try:
            trust = self._make(config)
        except ValueError as bad:
            LOG.warning("keeping the front-proxy configuration: %s", bad)
            return False
        except OSError as failed:
            LOG.warning(
                "keeping the front-proxy configuration: no TLS context with the client CAs of"
                " %s %s: %s",
                requestheader.CLIENT_CA_KEY,
                _WHERE,
                failed,
            )
            return False
        self._trust = trust
        LOG.info(
            "took up the front-proxy configuration of %s: client CAs %s, allowed names %s",
            _WHERE,
            "; ".join(ca.subject.rfc4514_string() for ca in trust.cas),
            ", ".join(config.allowed_names) or "any",
        )
        return True

    def start(self, interval_s: float = DEFAULT_REFRESH_S) -> None:
        """Refresh every ``interval_s`` seconds from a daemon thread until :meth:`stop`."""
        if interval_s <= 0:
            raise ValueError(f"the refresh interval must be above 0 seconds, got {interval_s}")
        self._thread = threading.Thread(
            target=self._refresh_every, args=(interval_s,), name="requestheader", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=_READ_TIMEOUT_S)

    def _refresh_every(self, interval_s: float) -> None:
        while not self._stopped.wait(interval_s):
            try:
                self.refresh()
            except Exception:
                # A refresh that fails in a way not foreseen must not end the refreshes.
                LOG.exception("refreshing the front-proxy configuration failed")

    def _make(self, config: requestheader.RequestHeaderConfig) -> _Trust:
        """ValueError for CAs that do not parse; OSError (``ssl.SSLError`` among them) when
        the TLS context cannot be built."""
        cas = client_cas(config.client_ca_pem)
        ders = frozenset(ca.public_bytes(serialization.Encoding.DER) for ca in cas)
        tls = self._build_tls(config) if self._build_tls is not None else None
        return _Trust(config, cas, ders, tls)


def _signed_by_any(leaf: x509.Certificate, cas: tuple[x509.Certificate, ...]) -> bool:
    now = datetime.datetime.now(datetime.UTC)
    if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
        return False
    for ca in cas:
        try:
            leaf.verify_directly_issued_by(ca)
        except (ValueError, TypeError, crypto_exceptions.InvalidSignature):
            continue
        return True
    return False
