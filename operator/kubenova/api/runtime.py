"""The operator's long-lived objects, wired once at start-up."""

from __future__ import annotations

import dataclasses
import logging
import threading

import prometheus_client

from kubenova.api import gone_notices, instance_api
from kubenova.conductor import periodic as periodic_mod
from kubenova.conductor.service import Conductor
from kubenova.config import OperatorSettings
from kubenova.db import engine as db_engine
from kubenova.k8s import client as k8s
from kubenova.rpc import amqp, compute_rpcapi

LOG = logging.getLogger(__name__)


_metrics_lock = threading.Lock()
_metrics_served: tuple[int, str] | None = None


def serve_metrics_once(port: int, addr: str) -> None:
    """Prometheus metrics (kubenova.rpc.metrics, kubenova.scheduler.metrics and the process
    collectors), served once per process: a startup handler that failed after serving them,
    and runs again, must not bind the port a second time."""
    global _metrics_served
    with _metrics_lock:
        if _metrics_served is not None:
            return
        prometheus_client.start_http_server(port, addr=addr)
        _metrics_served = (port, addr)


def db_pool_size(settings: OperatorSettings) -> int:
    """Database connections kept open: one per api worker and conductor lane, and a few for
    the periodic tasks and the status writer, so a burst does not open new ones."""
    return settings.api_workers + max(1, settings.conductor_workers) + 4


@dataclasses.dataclass
class Runtime:
    settings: OperatorSettings
    kube: k8s.KubeClient
    session_factory: db_engine.SessionFactory
    publisher: amqp.Publisher
    conductor: Conductor
    instances: instance_api.InstanceAPI
    consumer: amqp.Consumer
    periodic: periodic_mod.PeriodicTasks
    gone: gone_notices.GoneNotices = dataclasses.field(default_factory=gone_notices.GoneNotices)
    _thread: threading.Thread | None = None

    @classmethod
    def from_env(cls) -> Runtime:
        settings = OperatorSettings.from_env()
        # KUBENOVA_DB_URL: the one database setting, read by the database layer (no default:
        # a URL carries a password, which has no place in the source).
        db_url = db_engine.url_from_env()
        k8s.load_config()
        kube = k8s.KubeClient()
        session_factory = db_engine.make_session_factory(
            db_engine.create_engine(db_url, pool_size=db_pool_size(settings))
        )
        publisher = amqp.Publisher(settings.messaging, sender="kubenova-operator")
        compute = compute_rpcapi.ComputeAPI(publisher)
        conductor = Conductor.build(settings, session_factory, kube, compute)
        instances = instance_api.InstanceAPI(conductor.api, kube)
        consumer = amqp.Consumer(
            settings.messaging,
            settings.messaging.conductor_topic,
            conductor.manager.handle,
            workers=settings.conductor_workers,
        )
        periodic = periodic_mod.PeriodicTasks(
            [
                periodic_mod.PeriodicTask(
                    "check_hypervisors",
                    settings.hypervisor_check_interval_s,
                    conductor.hypervisors.check_hypervisors,
                ),
                periodic_mod.PeriodicTask(
                    "project_server_groups",
                    settings.hypervisor_check_interval_s,
                    conductor.server_groups.project_all,
                ),
                periodic_mod.PeriodicTask(
                    "finish_stale_operations",
                    settings.hypervisor_check_interval_s,
                    conductor.stale.finish_stale,
                ),
                periodic_mod.PeriodicTask(
                    "confirm_resizes",
                    settings.hypervisor_check_interval_s,
                    conductor.resizes.confirm_due,
                ),
                periodic_mod.PeriodicTask(
                    "finish_stale_snapshots",
                    settings.hypervisor_check_interval_s,
                    conductor.snapshots.finish_stale,
                ),
                periodic_mod.PeriodicTask(
                    "sweep_orphans", settings.audit_interval_s, conductor.orphans.sweep
                ),
                periodic_mod.PeriodicTask(
                    "audit_hosts",
                    settings.audit_interval_s,
                    conductor.auditor.audit_all,
                    # Wait for a round of heartbeats: a host's audit needs its report.
                    initial_delay_s=min(30.0, settings.audit_interval_s),
                ),
            ]
        )
        runtime = cls(
            settings, kube, session_factory, publisher, conductor, instances, consumer, periodic
        )
        conductor.projector.on_gone = runtime.gone.gone
        return runtime

    def start(self) -> None:
        # First what fails while RabbitMQ is away: kopf then runs the startup handler again,
        # with a new Runtime, in the same process.
        amqp.declare_topology(self.settings.messaging)
        if self.settings.metrics_port:
            serve_metrics_once(self.settings.metrics_port, self.settings.metrics_addr)
        self._thread = threading.Thread(target=self.consumer.run, name="conductor", daemon=True)
        self._thread.start()
        self.periodic.start()
        self.conductor.projector.start()
        self.conductor.history.start()
        self.conductor.creates.start()

    def stop(self) -> None:
        self.periodic.stop()
        self.consumer.stop()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.conductor.projector.stop()
        self.conductor.history.stop()
        self.conductor.creates.stop()
        self.publisher.close()
