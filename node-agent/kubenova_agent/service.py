"""The agent's process: the consumer (its thread and its lanes), the periodic-task thread and
the lifecycle-event worker.

Messages are handled on ``settings.workers`` consumer lanes, each message about one instance on
the same lane (``amqp.Consumer``), and acknowledged once handled: a stop that waits a minute for
its guest holds up only the instances whose messages share its lane, not the whole host.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from kubenova.rpc import amqp, conductor_rpcapi
from kubenova_agent import manager as compute_manager
from kubenova_agent.settings import AgentSettings
from kubenova_agent.virt import driver as virt_driver

LOG = logging.getLogger(__name__)


class AgentService:
    """Wires the driver, the manager and the message bus together, and runs them."""

    def __init__(
        self,
        settings: AgentSettings,
        driver: virt_driver.ComputeDriver,
        labels: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.driver = driver
        self.publisher = amqp.Publisher(
            settings.messaging, sender=f"kubenova-agent.{settings.host}"
        )
        self.manager = compute_manager.ComputeManager(
            settings.host, driver, conductor_rpcapi.ConductorAPI(self.publisher), labels
        )
        self.consumer = amqp.Consumer(
            settings.messaging,
            settings.messaging.compute_topic(settings.host),
            self.manager.handle,
            declare_own_queue=True,
            workers=settings.workers,
            out_of_turn=compute_manager.OUT_OF_TURN,
        )
        self._stop = threading.Event()
        self._periodic: threading.Thread | None = None

    def start(self) -> None:
        """Initialise the host, then start the periodic tasks; returns at once."""
        self.driver.init_host()
        self.manager.start_lifecycle_events()
        self._periodic = threading.Thread(
            target=self._run_periodic, name=f"periodic-{self.settings.host}", daemon=True
        )
        self._periodic.start()

    def run(self) -> None:
        """Start and consume on the calling thread until :meth:`stop`."""
        self.start()
        self.consumer.run()

    def stop(self) -> None:
        self._stop.set()
        self.consumer.stop()
        if self._periodic is not None:
            self._periodic.join(timeout=10)
        self.manager.stop_lifecycle_events()
        try:
            # After the last heartbeat (same thread order), so nothing marks it up again.
            self.manager.report_stopping()
        except Exception:
            LOG.warning("could not tell the conductor that this host is stopping", exc_info=True)
        self.publisher.close()

    def _run_periodic(self) -> None:
        tasks: list[tuple[float, Callable[[], None]]] = [
            (self.settings.heartbeat_interval_s, self.manager.report_compute_node),
            (self.settings.sync_interval_s, self.manager.sync_power_states),
        ]
        next_due = [0.0 for _ in tasks]
        elapsed = 0.0
        tick = min(interval for interval, _ in tasks)
        while not self._stop.is_set():
            for index, (interval, task) in enumerate(tasks):
                if elapsed >= next_due[index]:
                    next_due[index] = elapsed + interval
                    try:
                        task()
                    except Exception:
                        # A periodic task must never kill the thread: log and try next time.
                        LOG.exception("periodic task %s failed", task.__name__)
            self._stop.wait(tick)
            elapsed += tick
