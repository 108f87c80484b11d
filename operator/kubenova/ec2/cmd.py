"""``kubenova-ec2-api``: the EC2-compatible API server.

Reads its settings from the environment (:class:`settings.Ec2Settings`), connects to the
kube-apiserver (in a pod its service account, else ``$KUBECONFIG``) and, when
``KUBENOVA_DB_URL`` is set, reads the database's records of instances terminated lately; serves
until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import threading
from collections.abc import Sequence
from types import FrameType

from kubernetes import config as k8s_config
from sqlalchemy import exc as sa_exc

from kubenova import log
from kubenova.certs import reloading
from kubenova.config import bad_settings
from kubenova.db import engine as db_engine
from kubenova.ec2 import auth, cluster, dispatch, keys, protocol, server, settings, terminated
from kubenova.k8s import client as kube

LOG = logging.getLogger(__name__)


def build_server(
    config: settings.Ec2Settings,
    access_keys: auth.KeyLookup | None = None,
    objects: cluster.Cluster | None = None,
    terminated_instances: terminated.RecentlyTerminated | None = None,
) -> server.Ec2HttpServer | server.Ec2TlsServer:
    """The server ``config`` asks for, bound to its port (0: any free one); the access keys
    and objects of the cluster the current Kubernetes configuration points at, and the
    terminated instances of the database ``config`` names (none without one), unless given."""
    address = (config.listen_host, config.listen_port)
    service = dispatch.Service(
        config.region,
        config.public_url,
        access_keys or keys.SecretKeys(),
        objects or cluster.Cluster(),
        terminated_instances or _terminated_instances(config),
    )
    serving: server.Ec2HttpServer | server.Ec2TlsServer
    if config.tls_cert_file is not None and config.tls_key_file is not None:
        cert, key = config.tls_cert_file, config.tls_key_file
        # Follows the certificate's files, so a renewed certificate is taken up by the next
        # connection without a restart.
        contexts = reloading.ReloadingContext(
            lambda: server.tls_context(str(cert), str(key)), (cert, key)
        )
        contexts.current()  # a certificate that cannot be read fails at start, not later
        serving = server.Ec2TlsServer(address, service, contexts.current)
    else:
        serving = server.Ec2HttpServer(address, service)
    serving.service = dataclasses.replace(service, endpoint=config.endpoint(serving.port))
    return serving


def _terminated_instances(config: settings.Ec2Settings) -> terminated.RecentlyTerminated:
    if not config.database_url:
        LOG.info("no %s: terminated instances are not shown", db_engine.DB_URL_ENV)
        return terminated.RecentlyTerminated()
    # Reads one short query at a time: a few connections serve every request thread.
    engine = db_engine.create_engine(config.database_url, pool_size=4, max_overflow=8)
    return terminated.RecentlyTerminated(
        db_engine.make_session_factory(engine), config.terminated_visible_s
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kubenova-ec2-api",
        description="Serve the EC2 Query API (2016-11-15) over Kubenova's Instances.",
    )
    parser.add_argument("--log-level", default="INFO")
    options = parser.parse_args(argv)
    log.setup("kubenova-ec2-api", options.log_level)
    try:
        config = settings.Ec2Settings.from_env()
        kube.load_config()
        serving = build_server(config)
    except sa_exc.ArgumentError:
        # Not the error's text: it may quote the URL, password and all.
        return bad_settings(
            "kubenova-ec2-api", f"{db_engine.DB_URL_ENV} is not a usable database URL"
        )
    except (OSError, ValueError, k8s_config.ConfigException) as failed:
        return bad_settings("kubenova-ec2-api", failed)
    protocol.service_model()  # loaded before the first request, not during it

    def stop(signum: int, frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever, so it cannot run on the serving thread itself.
        threading.Thread(target=serving.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    LOG.info(
        "serving the EC2 API %s for region %s on %s",
        protocol.API_VERSION,
        config.region,
        serving.service.endpoint,
    )
    serving.serve_forever()
    serving.server_close()
    return 0
