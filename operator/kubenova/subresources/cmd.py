"""``kubenova-subresources``: the aggregated API server of Instances' console subresources.

Reads its settings from the environment (:class:`settings.SubresourceSettings`), the
kube-apiserver's front-proxy settings from ``kube-system/extension-apiserver-authentication``
(at start, then again every ``KUBENOVA_SUBRESOURCES_REQUESTHEADER_REFRESH`` seconds:
:mod:`requestheader_provider`) and serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import logging
import signal
import ssl
import threading
from collections.abc import Callable, Sequence
from types import FrameType

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client import exceptions as k8s_exceptions

from kubenova import config, log
from kubenova.certs import reloading
from kubenova.console.proxy import settings as proxy_settings
from kubenova.db import engine as db_engine
from kubenova.k8s import client as kube
from kubenova.subresources import (
    app,
    consolelog,
    consoleurl,
    requestheader,
    requestheader_provider,
    serial,
    server,
    settings,
    vnc,
)

LOG = logging.getLogger(__name__)


def _fail(message: str) -> int:
    return config.bad_settings("kubenova-subresources", message)


def read_request_header_config(
    api_client: k8s_client.ApiClient | None = None,
) -> requestheader.RequestHeaderConfig:
    """The front-proxy settings the kube-apiserver publishes for aggregated servers, as they
    are now."""
    read = requestheader_provider.configmap_reader(api_client)
    return requestheader.RequestHeaderConfig.from_configmap(read())


def _serving_contexts(config: settings.SubresourceSettings) -> requestheader_provider.TlsBuilder:
    """The serving contexts of one front-proxy configuration. They follow the certificate's
    files too: the operator renews it in its Secret and the kubelet swaps the mounted files;
    the next connection takes the new one."""
    files = (config.tls_cert_file, config.tls_key_file)

    def contexts(headers: requestheader.RequestHeaderConfig) -> Callable[[], ssl.SSLContext]:
        return reloading.ReloadingContext(
            lambda: server.tls_context(*files, headers.client_ca_pem), files
        ).current

    return contexts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kubenova-subresources",
        description="Serve Instances' console subresources behind the kube-apiserver.",
    )
    parser.add_argument("--log-level", default="INFO")
    options = parser.parse_args(argv)
    log.setup("kubenova-subresources", options.log_level)
    try:
        # Every setting first, so a bad one is told before anything is reached over the network.
        config = settings.SubresourceSettings.from_env()
        config.check_files()
        # instances/vnc and instances/console reach the hosts as the console proxy does, with
        # its client certificate (KUBENOVA_CONSOLE_X509_DIR).
        x509 = proxy_settings.ProxySettings.from_env()
        engine = proxy_settings.engine_from_env()
    except proxy_settings.SettingError as failed:
        return _fail(str(failed))
    try:
        kube.load_config()
        # instances/consolelog calls the instance's host over the message bus (KUBENOVA_AMQP_URL;
        # a bad KUBENOVA_AMQP_HEARTBEAT is a ValueError naming it).
        console_logs = consolelog.from_env(
            kube.KubeClient(), db_engine.make_session_factory(engine)
        )
        request_headers = requestheader_provider.RequestHeaderProvider(
            requestheader_provider.configmap_reader(), _serving_contexts(config)
        )
    except (OSError, ValueError, k8s_config.ConfigException, k8s_exceptions.ApiException) as failed:
        return _fail(str(failed))
    urls = consoleurl.ConsoleUrls(
        kube.KubeClient(),
        db_engine.make_session_factory(engine),
        config.console_public_url,
        config.console_token_ttl_s,
    )
    try:
        serving = server.SubresourceServer(
            (config.listen_host, config.listen_port),
            app.App(request_headers.current, urls),
            request_headers.tls_context,
        )
    except OSError as failed:
        return _fail(
            f"cannot serve on {config.listen_host}:{config.listen_port}"
            f" (KUBENOVA_SUBRESOURCES_LISTEN_HOST, KUBENOVA_SUBRESOURCES_PORT): {failed}"
        )
    serving.app.console_logs = console_logs
    serving.peer_trust = request_headers.still_trusted
    serving.stream_subresources = vnc.stream_subresources(
        request_headers.current, kube.KubeClient(), db_engine.make_session_factory(engine), x509
    )
    # instances/console reaches every host's serial console server on one port.
    serving.stream_subresources = serial.with_console(
        serving.stream_subresources,
        request_headers.current,
        kube.KubeClient(),
        db_engine.make_session_factory(engine),
        x509,
        config.serial_console_port,
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever, so it cannot run on the serving thread itself.
        threading.Thread(target=serving.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    LOG.info(
        "serving %s on https://%s:%d (console proxy %s)",
        "subresources.compute.kubenova.io/v1",
        config.listen_host,
        serving.port,
        config.console_public_url,
    )
    request_headers.start(config.requestheader_refresh_s)
    serving.serve_forever()
    request_headers.stop()
    serving.server_close()
    engine.dispose()
    return 0
