"""``kubenova-console``: Kubenova's console proxy (Nova's novncproxy and spicehtml5proxy).

Configured by the environment (:class:`settings.ProxySettings`, ``KUBENOVA_CONSOLE_*``) and
``KUBENOVA_DB_URL``; it serves the pages under ``KUBENOVA_CONSOLE_WEB_DIR`` and relays consoles
until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Sequence
from types import FrameType

from kubenova import config, log
from kubenova.console.proxy import server, settings
from kubenova.db import engine as db_engine

LOG = logging.getLogger(__name__)


def _fail(message: str) -> int:
    return config.bad_settings("kubenova-console", message)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kubenova-console",
        description="Serve noVNC and spice-html5 and relay their consoles to the hosts over TLS.",
    )
    parser.add_argument("--log-level", default="INFO")
    options = parser.parse_args(argv)
    log.setup("kubenova-console", options.log_level)
    try:
        config = settings.ProxySettings.from_env()
        config.check_files()
        engine = settings.engine_from_env()
    except settings.SettingError as failed:
        return _fail(str(failed))
    try:
        proxy = server.ConsoleProxyServer(config, db_engine.make_session_factory(engine))
    except OSError as failed:
        # The files are there (check_files): a certificate that does not load, or an address
        # that is in use or unknown.
        return _fail(
            f"cannot serve on {config.listen_host}:{config.listen_port}"
            " (KUBENOVA_CONSOLE_LISTEN_HOST, KUBENOVA_CONSOLE_PORT) with the certificates of"
            f" KUBENOVA_CONSOLE_X509_DIR and KUBENOVA_CONSOLE_TLS_CERT/_KEY: {failed}"
        )

    def stop(signum: int, frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever, so it cannot run on the serving thread itself.
        threading.Thread(target=proxy.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    LOG.info(
        "serving consoles on %s:%s (%s), pages from %s",
        config.listen_host,
        proxy.port,
        "https" if config.serves_tls else "http",
        config.web_dir,
    )
    proxy.serve_forever()
    proxy.server_close()
    engine.dispose()
    return 0
